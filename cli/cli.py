"""The ``shrinkc`` command line: compile, stats, check, fmt.

Exit codes: 0 success, 1 an error in the user's input (spec, data, files), 2 wrong
command-line usage. Errors are printed as ``file:line:col: error: message`` with the source
line and a hint; never as a traceback. Heavy modules (jinja2, torch) load only when needed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from shrinkc.compiler.errors import Diagnostic, ShrinkError
from shrinkc.compiler.ir import Loc


def _source_line(diag: Diagnostic, texts: dict[str, str]) -> str | None:
    if diag.loc is None:
        return None
    text = texts.get(diag.loc.file)
    if text is None:
        try:
            text = Path(diag.loc.file).read_bytes().decode("utf-8", errors="replace")
        except OSError:
            return None
        texts[diag.loc.file] = text
    lines = text.split("\n")  # as the parser counts lines (not str.splitlines())
    line = lines[diag.loc.line - 1] if 0 < diag.loc.line <= len(lines) else None
    return None if line is None else line.rstrip("\r")


class Reporter:
    def __init__(self, stream=None):
        self.stream = stream = stream or sys.stderr
        self.color = hasattr(stream, "isatty") and stream.isatty() and "NO_COLOR" not in os.environ
        self.texts: dict[str, str] = {}
        self.errors = 0

    def __call__(self, diag: Diagnostic) -> None:
        if diag.severity == "error":
            self.errors += 1
        print(diag.render(_source_line(diag, self.texts), self.color), file=self.stream)


def _human(n: int) -> str:
    return f"{n / 1e9:.2f}G" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n:,}"


# --------------------------------------------------------------------------- commands


def _graph(args, report: Reporter):
    from shrinkc.compiler.pipeline import build_graph, check

    checked = check(args.spec)
    for w in checked.warnings:
        report(w)
    return build_graph(checked, getattr(args, "network", None))


def _import_numpy_without_blas_threads() -> None:
    """Import numpy with OpenBLAS limited to one thread: compiling does no linear algebra,
    and starting a BLAS thread pool is a good part of numpy's import time."""
    if "numpy" in sys.modules:
        return
    old = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        import numpy  # noqa: F401
    finally:
        if old is None:
            del os.environ["OPENBLAS_NUM_THREADS"]
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = old


def cmd_compile(args, report: Reporter) -> int:
    from shrinkc.compiler.fsutil import atomic_write, ensure_dir

    targets = list(dict.fromkeys(t.strip() for t in args.target.split(",") if t.strip()))
    known = ("pytorch", "onnx", "ir")
    for t in targets:
        if t not in known:
            raise UsageError(f"unknown target '{t}' (choose from {', '.join(known)})")
    if not targets:
        raise UsageError("no target given (choose from " + ", ".join(known) + ")")
    onnx_only = [f for f, on in (("--weights", args.weights), ("--no-fold-bn", args.no_fold_bn),
                                 ("--functions", args.functions)) if on]
    if onnx_only and "onnx" not in targets:
        raise UsageError(f"{', '.join(onnx_only)} only applies to --target onnx")
    graph = _graph(args, report)
    stem = Path(args.spec).stem
    summary = f"{graph.network}: {graph.cost.params:,} params, {_human(graph.cost.macs)} MACs"
    # Everything is generated (and weights checked) before anything is written.
    outputs: list[tuple[str, str | bytes, str]] = []
    for t in targets:
        if t == "pytorch":
            from shrinkc.backends.pytorch import generate

            outputs.append((f"{stem}.py", generate(graph), summary))
        elif t == "onnx":
            try:
                _import_numpy_without_blas_threads()
                from shrinkc.backends import onnx as onnx_backend
                from shrinkc.backends.weights import load_weights
            except ImportError as e:
                raise ShrinkError(f"the onnx target needs the '{e.name}' package", None,
                                  "pip install 'shrinkc[onnx]'") from None

            weights = load_weights(args.weights, graph) if args.weights else None
            source = Path(args.weights).name if args.weights else None
            model = onnx_backend.generate(graph, weights, fold_bn=not args.no_fold_bn,
                                          functions=args.functions, weights_source=source)
            how = [f"opset {onnx_backend.OPSET}",
                   "time loop as Scan" if graph.lm is not None
                   else "batch norm kept" if args.no_fold_bn else "batch norm folded",
                   f"weights from {source}" if source else "random weights"]
            if args.functions:
                how.append("cells as functions")
            outputs.append((f"{stem}.onnx", onnx_backend.serialize(model),
                            f"{summary}; {', '.join(how)}"))
        else:
            outputs.append((f"{stem}.ir.json", graph.model_dump_json(indent=1) + "\n", summary))
    out = ensure_dir(Path(args.output))
    for name, data, what in outputs:
        path = out / name
        atomic_write(path, data)
        print(f"wrote {path.as_posix()} ({what})")
    return 0


def stats_dict(graph) -> dict:
    from shrinkc.compiler.cellhash import cell_hashes

    hashes = cell_hashes(graph)
    cells = graph.program.cells
    stages = []
    for s in graph.stages:
        stages.append({
            "name": s.name,
            "cell": s.cells[0].cell,
            "depth": len(s.cells),
            "output": s.out_shape.as_list(),
            "params": s.cost.params,
            "macs": s.cost.macs,
        })

    def chain(layers):
        return {
            "ops": [layer.op.op for layer in layers],
            "output": layers[-1].out_shape.as_list() if layers else None,
            "params": sum(layer.cost.params for layer in layers),
            "macs": sum(layer.cost.macs for layer in layers),
        }

    if graph.lm is not None:
        lm = graph.lm
        return {
            "network": graph.network,
            "source": graph.source,
            "spec_hash": graph.spec_hash,
            "kind": "language model",
            "input": ["batch", "time"],
            "output": ["batch", "time", lm.vocab],
            "params": graph.cost.params,
            "macs": graph.cost.macs,
            "flops": lm.flops,
            "edges": graph.edges,
            "vocab": lm.vocab, "embed": lm.embed, "hidden": lm.hidden, "tied": lm.tied,
            "dropout": lm.dropout,
            "cells": {lm.cell.cell: {"nodes": len(lm.cell.nodes), "edges": graph.edges,
                                     "hash": hashes[lm.cell.cell]}},
            "parts": {
                "embedding": lm.vocab * lm.embed,
                "cell": lm.cell.cost.params,
                "decoder": graph.cost.params - lm.vocab * lm.embed - lm.cell.cost.params,
            },
            "stages": [],
        }
    return {
        "network": graph.network,
        "source": graph.source,
        "spec_hash": graph.spec_hash,
        "input": graph.input_shape.as_list(),
        "output": graph.out_shape.as_list(),
        "params": graph.cost.params,
        "macs": graph.cost.macs,
        "edges": graph.edges,
        "cells": {
            name: {"nodes": len(cells[name].nodes) + 1, "edges": cells[name].edges,
                   "hash": hashes[name]}
            for name in graph.cells_used
        },
        "stem": chain(graph.stem),
        "stages": stages,
        "head": chain(graph.head),
    }


def cmd_stats(args, report: Reporter) -> int:
    graph = _graph(args, report)
    d = stats_dict(graph)
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    if graph.lm is not None:
        print(f"{d['network']}  ({d['source']}, language model, vocabulary {d['vocab']:,})")
        for part, n in d["parts"].items():
            print(f"{part:<10} {n:>12,} parameters")
        print(f"{d['params']:,} parameters, {d['edges']} live edges, {_human(d['flops'])} FLOPs "
              f"per step (edges x hidden^2), {_human(d['macs'])} MACs per token")
        for name, c in d["cells"].items():
            print(f"cell {name}: {c['nodes']} nodes, {c['edges']} edges, hash {c['hash'][:16]}")
        return 0
    rows = [("stem", "-", "", "x".join(map(str, d["stem"]["output"] or d["input"])),
             d["stem"]["params"], d["stem"]["macs"])]
    for s in d["stages"]:
        rows.append((s["name"], s["cell"], f"x{s['depth']}", "x".join(map(str, s["output"])),
                     s["params"], s["macs"]))
    rows.append(("head", "-", "", "x".join(map(str, d["output"])), d["head"]["params"],
                 d["head"]["macs"]))
    print(f"{d['network']}  ({d['source']}, input {'x'.join(map(str, d['input']))})")
    header = f"{'part':<10} {'cell':<20} {'depth':>5}  {'output':<14} {'params':>12} {'MACs':>14}"
    print(header)
    print("-" * len(header))
    for name, cell, depth, shape, p, m in rows:
        print(f"{name:<10} {cell:<20} {depth:>5}  {shape:<14} {p:>12,} {m:>14,}")
    print("-" * len(header))
    print(f"{'total':<10} {'':<20} {'':>5}  {'':<14} {d['params']:>12,} {d['macs']:>14,}")
    print(f"{d['params']:,} parameters, {_human(d['macs'])} MACs, "
          f"{d['edges']} live edges in {len(d['cells'])} distinct cell(s)")
    for name, c in d["cells"].items():
        print(f"cell {name}: {c['nodes']} nodes, {c['edges']} edges, hash {c['hash'][:16]}")
    return 0


def cmd_check(args, report: Reporter) -> int:
    from shrinkc.compiler.pipeline import build_graph, check

    failed = 0
    for spec in args.specs:
        try:
            checked = check(spec)
            for w in checked.warnings:
                report(w)
            nets = checked.networks
            for name in nets:
                build_graph(checked, name)
            what = f"{len(checked.program.cells)} cell(s), {len(nets)} network(s)"
            if not args.quiet:
                print(f"{spec}: ok ({what})")
        except ShrinkError as e:
            report(e.diagnostic)
            failed += 1
        except RecursionError:
            report(Diagnostic("error", "spec is nested too deeply", Loc(file=spec),
                              "simplify deeply nested expressions"))
            failed += 1
    return 1 if failed else 0


def _shrink_files(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(q for q in p.rglob("*.shrink") if q.is_file())
        elif p.exists():
            files.append(p)
        else:
            raise ShrinkError(f"no such file or directory: {p.as_posix()}")
    return files


def cmd_fmt(args, report: Reporter) -> int:
    from shrinkc.compiler.fsutil import atomic_write
    from shrinkc.compiler.parser import parse, read_source
    from shrinkc.compiler.printer import print_program

    changed = failed = 0
    for path in _shrink_files(args.paths):
        shown = path.as_posix()
        try:
            text = read_source(path, shown)
            new = print_program(parse(text, shown))
        except ShrinkError as e:
            report(e.diagnostic)
            failed += 1
            continue
        if new == text:
            continue
        changed += 1
        if args.check:
            print(f"would reformat {shown}")
        else:
            atomic_write(path, new)
            print(f"reformatted {shown}")
    if failed:
        return 1
    return 1 if (args.check and changed) else 0


def cmd_shrink(args, report: Reporter) -> int:
    from shrinkc.compiler.shrinker import Options, run

    if args.workers < 1 or args.threads < 1:
        raise UsageError("--workers and --threads take a positive number")
    overrides = {"candidates": args.candidates, "epochs": args.epochs, "seed": args.seed}
    opts = Options(spec=args.spec, out=args.output, data=args.data, workers=args.workers,
                   threads=args.threads, executor=args.executor, address=args.address,
                   resume=args.resume, quiet=args.quiet, max_steps=args.max_steps,
                   search=args.search, inherit=args.inherit, overrides=overrides)
    result = run(opts, report)
    best = result["best"]
    if best is not None:
        what = (f"ppl {best['ppl']:.2f}, {_human(best['flops'])} FLOPs" if "ppl" in best
                else f"acc {best['acc']:.4f}, {_human(best['macs'])} MACs")
        print(f"{result['steps']} step(s), {result['trained']} candidates in the log; "
              f"best: {result['out']}/{best['file']} ({best['edges']} edges, score "
              f"{best['score']:.4f}, {what}) -> {result['out']}/best.shrink")
    return 0


# --------------------------------------------------------------------------- entry point


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # exit 2, as argparse does, with our prefix
        self.print_usage(sys.stderr)
        print(f"shrinkc: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def make_parser() -> argparse.ArgumentParser:
    from shrinkc import __version__

    p = _Parser(prog="shrinkc", description="Compile .shrink architecture specs.")
    p.add_argument("--version", action="version", version=f"shrinkc {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    c = sub.add_parser("compile", help="compile a spec to standalone PyTorch, ONNX or IR JSON")
    c.add_argument("spec")
    c.add_argument("-o", "--output", default="build", help="output directory (default: build)")
    c.add_argument("--target", default="pytorch",
                   help="comma-separated: pytorch (default), onnx, ir")
    c.add_argument("--network", help="which network of the file (default: its last one)")
    c.add_argument("--weights", metavar="FILE",
                   help="onnx: state_dict of the generated PyTorch module, saved with torch.save "
                        "(.pt) or safetensors (.safetensors); default: seeded random weights")
    c.add_argument("--no-fold-bn", action="store_true",
                   help="onnx: keep BatchNormalization nodes (default: fold them into the convs)")
    c.add_argument("--functions", action="store_true",
                   help="onnx: emit each cell as an ONNX local function (default: a flat graph)")
    c.set_defaults(func=cmd_compile)

    s = sub.add_parser("stats", help="per-stage parameters, MACs and output shapes")
    s.add_argument("spec")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument("--network", help="which network of the file (default: its last one)")
    s.set_defaults(func=cmd_stats)

    k = sub.add_parser("check", help="check specs; errors as file:line:col")
    k.add_argument("specs", nargs="+")
    k.add_argument("-q", "--quiet", action="store_true", help="print only problems")
    k.set_defaults(func=cmd_check)

    r = sub.add_parser("shrink", help="AutoShrink search over a space's edges")
    r.add_argument("spec", help="a search-space file (space, proxy network, search block)")
    r.add_argument("-o", "--output", required=True, help="run directory")
    r.add_argument("--data", help="proxy data .npz (x_train, y_train, x_val, y_val); "
                   "default: scikit-learn's digits")
    r.add_argument("--candidates", type=int, help="candidates per step (K)")
    r.add_argument("--max-steps", type=int, help="stop after N removal steps")
    r.add_argument("--epochs", type=int, help="training epochs per candidate")
    r.add_argument("--seed", type=int, help="search seed")
    r.add_argument("--workers", type=int, default=1, help="local worker processes")
    r.add_argument("--threads", type=int, default=1,
                   help="torch threads per candidate (fixed, so results do not depend on workers)")
    r.add_argument("--executor", choices=("local", "ray"), default="local")
    r.add_argument("--address", help="Ray cluster address (with --executor ray)")
    r.add_argument("--resume", action="store_true", help="continue the run in -o")
    r.add_argument("--inherit", action="store_true",
                   help="start candidates from the current DAG's trained weights and fine-tune "
                   "them (train setting finetune, default 2 epochs) instead of training from scratch")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--search", help="which search block (default: the file's last)")
    r.set_defaults(func=cmd_shrink)

    f = sub.add_parser("fmt", help="format specs canonically, in place")
    f.add_argument("paths", nargs="+", help="files or folders")
    f.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 if a file is not formatted")
    f.set_defaults(func=cmd_fmt)

    from shrinkc.vcs import register as register_vcs

    register_vcs(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    report = Reporter()
    try:
        return args.func(args, report)
    except UsageError as e:
        parser.print_usage(sys.stderr)
        print(f"shrinkc: error: {e}", file=sys.stderr)
        return 2
    except ShrinkError as e:
        report(e.diagnostic)
        return 1
    except KeyboardInterrupt:
        print("shrinkc: interrupted", file=sys.stderr)
        return 130
    except RecursionError:
        report(Diagnostic("error", "spec is nested too deeply", None,
                          "simplify deeply nested expressions"))
        return 1
