from shrinkc.cli import main

raise SystemExit(main())
