from shrinkc.cli import run

run()
