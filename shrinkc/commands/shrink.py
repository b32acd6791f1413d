"""The search: ``shrinkc shrink``."""

from __future__ import annotations

from shrinkc.compiler.units import human
from shrinkc.console import UsageError

# how a search runs: flag default, used when neither the flag nor --config sets it
RUN_DEFAULTS = {"workers": 1, "threads": 1, "executor": "local", "address": None,
                "precision": "auto", "device": "auto", "gpus_per_candidate": 1.0, "data": None,
                "subset": None}


def cmd_shrink(args, report) -> int:
    from shrinkc.search.driver import Options, run

    _check_ranges(args)
    how = _run_settings(args)
    overrides = {"candidates": args.candidates, "epochs": args.epochs, "seed": args.seed,
                 "halving": args.halving, "schedule": args.schedule, "batch": args.batch}
    opts = Options(spec=args.spec, out=args.output, resume=args.resume, quiet=args.quiet,
                   max_steps=args.max_steps, search=args.search, inherit=args.inherit,
                   overrides=overrides, **how)
    result = run(opts, report)
    best = result["best"]
    if best is not None:
        what = (f"ppl {best['ppl']:.2f}, {human(best['flops'])} FLOPs" if "ppl" in best
                else f"acc {best['acc']:.4f}, {human(best['macs'])} MACs")
        print(f"{result['steps']} step(s), {result['trained']} candidates in the log; "
              f"best: {result['out']}/{best['file']} ({best['edges']} edges, score "
              f"{best['score']:.4f}, {what}) -> {result['out']}/best.shrink")
    return 0


def _run_settings(args) -> dict:
    """How the search runs: each flag given, else the --config file's value, else the
    default."""
    config = {}
    if args.config is not None:
        from shrinkc.search.config import load

        config = load(args.config)
    return {k: getattr(args, k) if getattr(args, k) is not None else config.get(k, default)
            for k, default in RUN_DEFAULTS.items()}


MAX_THREADS = 256  # torch threads per candidate
MAX_WORKERS = 256  # local worker processes, or Ray CPUs


def _check_ranges(args) -> None:
    """Numbers out of range are usage errors (exit 2), before anything is loaded or trained.
    ``--max-steps 0`` checks everything and writes run.json without training a step."""
    if args.gpus_per_candidate is not None and not 0 < args.gpus_per_candidate <= 8:
        raise UsageError(f"--gpus-per-candidate must be above 0 and at most 8, got "
                         f"{args.gpus_per_candidate}")
    limits = (("--workers", args.workers, 1, MAX_WORKERS),
              ("--threads", args.threads, 1, MAX_THREADS),
              ("--max-steps", args.max_steps, 0, None),
              ("--candidates", args.candidates, 1, None),
              ("--epochs", args.epochs, 1, None),
              ("--batch", args.batch, 2, None),
              ("--halving", args.halving, 0, None))
    for flag, value, lo, hi in limits:
        if value is None:
            continue
        if value < lo or (hi is not None and value > hi):
            want = f"from {lo} to {hi}" if hi is not None else f"at least {lo}"
            raise UsageError(f"{flag} must be {want}, got {value}")
    if args.subset is not None:
        from shrinkc.search.data.images import parse_subset

        try:
            parse_subset(args.subset)
        except ValueError as e:
            raise UsageError(str(e)) from None


def register(sub) -> None:
    """Add ``shrink`` to ``shrinkc``'s subparsers."""
    r = sub.add_parser("shrink", help="AutoShrink search over a space's edges")
    r.add_argument("spec", help="a search-space file (space, proxy network, search block)")
    r.add_argument("-o", "--output", required=True, help="run directory")
    r.add_argument("--data", help="proxy data: an .npz (x_train, y_train, x_val, y_val); an "
                   "image folder (DIR/train/<class>/*, DIR/val/<class>/*, or class folders "
                   "alone: split 80/20, stratified, seed 0); or CIFAR-10/100's python batches "
                   "folder (cifar-10-batches-py, cifar-100-python: the training batches, a "
                   "stratified 10%% of them for validation; the test batch is never read). "
                   "Folders are decoded once into a cache ($SHRINKC_CACHE, default "
                   "~/.cache/shrinkc/data). Default: scikit-learn's digits; 'cluttered-digits':"
                   " the same digits at random places and sizes among fragments of others, a "
                   "harder task")
    r.add_argument("--subset", metavar="N/M",
                   help="with an image folder or CIFAR folder: N training and M validation "
                   "images of it, stratified by class, seed 0 (the paper's proxy: 5000/1000); "
                   "recorded in run.json, so --resume with another subset is refused")
    r.add_argument("--candidates", type=int, help="candidates per step (K)")
    r.add_argument("--max-steps", type=int, help="stop after N removal steps")
    r.add_argument("--epochs", type=int, help="training epochs per candidate")
    r.add_argument("--batch", type=int,
                   help="training batch size per candidate (default: the spec's "
                   "train(batch=...), else 128); smaller batches take more steps in the same "
                   "epochs, which short budgets need (benchmarks/shrink_search.py)")
    r.add_argument("--seed", type=int, help="search seed")
    r.add_argument("--halving", type=int, metavar="ETA",
                   help="successive halving inside each step: train every candidate briefly, "
                   "keep the best 1/ETA for a budget ETA times longer, up to --epochs "
                   "(0: off, the paper's procedure; default: the spec's shrink(halving=...))")
    r.add_argument("--schedule", choices=("constant", "linear", "cosine"),
                   help="learning rate over each candidate's epochs: constant (the paper), or "
                   "decayed to zero over the --epochs budget (default: the spec's "
                   "train(schedule=...), else constant)")
    r.add_argument("--config", metavar="RUN.yaml",
                   help="how the search runs (device, precision, workers, threads, executor, "
                   "address, gpus_per_candidate, data, subset) from a YAML file; flags "
                   "override it")
    r.add_argument("--workers", type=int, help="local worker processes (default 1)")
    r.add_argument("--device", choices=("auto", "cpu", "cuda"),
                   help="where candidates train; auto (default): CUDA when a GPU is visible")
    r.add_argument("--precision", choices=("auto", "fp32", "bf16"),
                   help="train candidates in fp32 or in bf16 autocast; auto (default): bf16 "
                        "on GPUs that have it and CPUs with native bf16 (AVX512-BF16, AMX), "
                        "else fp32")
    r.add_argument("--threads", type=int,
                   help="torch threads per candidate (fixed, so results do not depend on "
                   "workers; default 1)")
    r.add_argument("--executor", choices=("local", "ray"), help="default: local")
    r.add_argument("--gpus-per-candidate", type=float, metavar="G",
                   help="with --executor ray on GPUs: the GPUs each candidate asks Ray for "
                   "(default 1; 0.25 lets four small candidates share a GPU)")
    r.add_argument("--address", help="Ray cluster address (with --executor ray)")
    r.add_argument("--resume", action="store_true", help="continue the run in -o")
    r.add_argument("--inherit", action="store_true",
                   help="start candidates from the current DAG's trained weights and fine-tune "
                   "them (train setting finetune, default 2 epochs) instead of training from scratch")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--search", help="which search block (default: the file's last)")
    r.set_defaults(func=cmd_shrink)
