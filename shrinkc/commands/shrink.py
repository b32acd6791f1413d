"""The search: ``shrinkc shrink``.

Its flags are made from the settings' declarations (``search/table.py``): the spec's settings a
flag overrides (``TrainSettings``, ``ShrinkSettings``), how the search runs (``RunSettings``,
which a ``--config`` YAML file may also set) and ``--max-steps``.
"""

from __future__ import annotations

from shrinkc.console import UsageError

# the spec settings' flags, in the order --help shows them
_SPEC_FLAGS = ("candidates", "seed", "halving")
_TRAIN_FLAGS = ("epochs", "batch", "schedule")


def cmd_shrink(args, report) -> int:
    from shrinkc.search import table, tasks
    from shrinkc.search.driver import Options, run

    _check(args)
    overrides = {**table.from_flags(args, table.ShrinkSettings),
                 **table.from_flags(args, table.TrainSettings)}
    opts = Options(spec=args.spec, out=args.output, resume=args.resume, quiet=args.quiet,
                   max_steps=args.max_steps, search=args.search, inherit=args.inherit,
                   overrides=overrides, **table.values(_run_settings(args)))
    result = run(opts, report)
    best = result["best"]
    if best is not None:
        print(f"{result['steps']} step(s), {result['trained']} candidates in the log; "
              f"best: {result['out']}/{best['file']} ({best['edges']} edges, score "
              f"{best['score']:.4f}, {tasks.of_metrics(best).summary(best)}) -> "
              f"{result['out']}/best.shrink")
    return 0


def _run_settings(args):
    """How the search runs: each flag given, else the --config file's value, else the
    default."""
    from shrinkc.search.table import RunSettings, from_flags

    config = {}
    if args.config is not None:
        from shrinkc.search.config import load

        config = load(args.config)
    given = {k: v for k, v in from_flags(args, RunSettings).items() if v is not None}
    return RunSettings(**{**config, **given})


def _check(args) -> None:
    """Numbers out of range are usage errors (exit 2), before anything is loaded or trained.
    ``--max-steps 0`` checks everything and writes run.json without training a step."""
    from shrinkc.search import table

    problem = table.check_flags(args, table.Options, table.ShrinkSettings, table.TrainSettings)
    if problem is not None:
        raise UsageError(problem)


def register(sub) -> None:
    """Add ``shrink`` to ``shrinkc``'s subparsers."""
    from shrinkc.search import table

    r = sub.add_parser("shrink", help="AutoShrink search over a space's edges")
    r.add_argument("spec", help="a search-space file (space, proxy network, search block)")
    r.add_argument("-o", "--output", required=True, help="run directory")
    table.add_flags(r, table.ShrinkSettings, _SPEC_FLAGS)
    table.add_flags(r, table.TrainSettings, _TRAIN_FLAGS)
    table.add_flags(r, table.Options, ("max_steps",))
    table.add_flags(r, table.RunSettings)
    yaml_keys = ", ".join(k for k, row in table.rows(table.RunSettings).items()
                          if table.YAML in row.sources)
    r.add_argument("--config", metavar="RUN.yaml",
                   help=f"how the search runs ({yaml_keys}) from a YAML file; flags override it")
    r.add_argument("--resume", action="store_true", help="continue the run in -o")
    r.add_argument("--inherit", action="store_true",
                   help="start candidates from the current DAG's trained weights and fine-tune "
                   "them (train setting finetune, default 2 epochs) instead of training from scratch")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--search", help="which search block (default: the file's last)")
    r.set_defaults(func=cmd_shrink)
