"""Building specs: ``shrinkc compile``, ``stats``, ``check`` and ``fmt``.

Heavy modules (jinja2, numpy, onnx, rich) load only in the command that needs them, so that
``shrinkc compile`` starts fast and never imports torch.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from shrinkc.compiler.errors import Diagnostic, ShrinkError
from shrinkc.compiler.ir import Loc
from shrinkc.compiler.units import human
from shrinkc.console import UsageError, stdout_console

TARGETS = ("pytorch", "onnx", "ir")


def graph_of(args, report):
    """Check ``args.spec``, report its warnings, and build ``args.network`` (or the last),
    at the input shape ``args.input`` (``--input``) where given."""
    from shrinkc.compiler.pipeline import build_graph, check

    text = getattr(args, "input", None)
    dynamic = is_dynamic(text)
    shape = input_shape(text)  # usage errors before the spec's
    checked = check(args.spec)
    for w in checked.warnings:
        report(w)
    graph = build_graph(checked, getattr(args, "network", None),
                        input_shape=None if dynamic else shape)
    if dynamic and graph.kind != "lm" and shape[0] != graph.input_shape.c:
        # CxHxW: built at the spec's own height and width with C channels
        graph = build_graph(checked, getattr(args, "network", None),
                            input_shape=(shape[0], *graph.input_shape.as_list()[1:]))
    return graph


def is_dynamic(text: str | None) -> bool:
    """``--input CxHxW`` with the letters H and W: any height and width (ONNX only)."""
    return text is not None and bool(re.fullmatch(r"\s*\d{1,9}x[hH]x[wW]\s*", text))


def input_shape(text: str | None) -> tuple[int, ...] | None:
    """``--input CxHxW`` (or ``C`` for a network with a flat input) as numbers; a usage
    error for anything else."""
    if text is None:
        return None
    from shrinkc.compiler.passes.elaborate import MAX_CHANNELS, MAX_SIZE

    shown = text if len(text) <= 40 else text[:37] + "..."
    if is_dynamic(text):
        text = text.lower().replace("h", "1").replace("w", "1")  # C checked below
    parts = text.strip().lower().split("x")
    if len(parts) not in (1, 3) or not all(p.isascii() and p.isdigit() for p in parts):
        raise UsageError(f"--input must be CxHxW (such as 3x160x160), got '{shown}'")
    if any(len(p) > 9 for p in parts):  # no int of thousands of digits
        raise UsageError(f"--input {shown}: a dimension is too large")
    dims = tuple(int(p) for p in parts)
    if any(d < 1 for d in dims):
        raise UsageError(f"--input {shown}: every dimension must be positive")
    if dims[0] > MAX_CHANNELS:
        raise UsageError(f"--input {shown}: at most {MAX_CHANNELS:,} channels")
    if any(d > MAX_SIZE for d in dims[1:]):
        raise UsageError(f"--input {shown}: a height or width is at most {MAX_SIZE:,}")
    return dims


# --------------------------------------------------------------------------- compile


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


def _targets(args) -> list[str]:
    targets = list(dict.fromkeys(t.strip() for t in args.target.split(",") if t.strip()))
    for t in targets:
        if t not in TARGETS:
            raise UsageError(f"unknown target '{t}' (choose from {', '.join(TARGETS)})")
    if not targets:
        raise UsageError("no target given (choose from " + ", ".join(TARGETS) + ")")
    onnx_only = [f for f, on in (("--weights", args.weights), ("--no-fold-bn", args.no_fold_bn),
                                 ("--functions", args.functions),
                                 ("--opset", args.opset is not None),
                                 ("--precision", args.precision is not None),
                                 ("--calibrate", args.calibrate is not None)) if on]
    if onnx_only and "onnx" not in targets:
        raise UsageError(f"{', '.join(onnx_only)} only applies to --target onnx")
    if args.calibrate is not None and args.precision != "int8":
        raise UsageError("--calibrate only applies to --precision int8")
    return targets


def _onnx_export():
    """``backends.onnx.export`` (imported for the onnx target only), or an error naming the
    package to install."""
    try:
        _import_numpy_without_blas_threads()
        from shrinkc.backends.onnx import export
    except ImportError as e:
        raise ShrinkError(f"the onnx target needs the '{e.name}' package", None,
                          "pip install 'shrinkc[onnx]'") from None
    return export


def _export_opset(args) -> int:
    """The opset of the ONNX model, from ``--opset`` and the backend's rules for the other
    options (a refusal is a usage error)."""
    export = _onnx_export()
    try:
        return export.export_opset(args.precision or "fp32", _opset(args.opset),
                                   weights=bool(args.weights), functions=args.functions)
    except export.OptionError as e:
        raise UsageError(str(e)) from None


def _opset(text: str | None) -> int | None:
    """``--opset N`` checked against the opsets shrinkc writes."""
    if text is None:
        return None
    from shrinkc.backends.onnx.common import MIN_OPSET, OPSET

    shown = text if len(text) <= 20 else text[:17] + "..."
    t = text.strip()
    if not (t.isascii() and t.isdigit() and len(t) <= 4) or not MIN_OPSET <= int(t) <= OPSET:
        raise UsageError(f"--opset must be a number from {MIN_OPSET} to {OPSET}, got '{shown}' "
                         f"(default: {OPSET}, the newest that onnx and onnxruntime here support)")
    return int(t)


def _onnx(args, graph, summary: str) -> tuple[bytes, str]:
    """The serialized ONNX model of ``graph`` and what to say about it."""
    export = _onnx_export()
    precision = args.precision or "fp32"
    calibrated: list[tuple] = []

    def calibration():
        calibrated.append(_calibration(args, graph))
        return calibrated[0]

    dynamic = is_dynamic(getattr(args, "input", None))
    try:
        model = export.export(graph, args.weights, precision=precision, opset=args.opset,
                              fold_bn=not args.no_fold_bn, functions=args.functions,
                              dynamic_hw=dynamic, calibration=calibration)
    except export.OptionError as e:
        raise UsageError(str(e)) from None
    source = Path(args.weights).name if args.weights else None
    how = [f"opset {args.opset}",
           "time loop as Scan" if graph.kind == "lm"
           else "batch norm kept" if args.no_fold_bn else "batch norm folded",
           f"weights from {source}" if source else "random weights"]
    if args.functions:
        how.append("cells as functions")
    if dynamic:
        how.append("any height and width")
    if precision == "fp16":
        how.append("fp16 (float32 inputs and outputs)")
    elif calibrated:
        images, data_name = calibrated[0]
        how.append(f"int8 QDQ calibrated on {len(images)} images of {data_name}")
    return export.serialize(model), f"{summary}; {', '.join(how)}"


def _calibration(args, graph):
    """The images that calibrate an int8 model, as the network takes them, and their name:
    ``--calibrate DATA``'s training images (an .npz's ``x_train``, an image folder's or a
    CIFAR batches folder's training split, decoded once into the decoded-data cache; read and
    checked, and standardised, as ``shrinkc shrink --data`` reads them), or else the built-in
    proxy data, scikit-learn's digits resized to the network's input; at most
    ``CALIBRATION_IMAGES`` of them."""
    from shrinkc.backends.onnx.precision import calibration_indices, calibration_subset
    from shrinkc.data import images

    shape = tuple(graph.input_shape.as_list())
    if args.calibrate is None:
        if len(shape) != 3:
            raise ShrinkError(f"the built-in calibration data (digits) are images; "
                              f"{graph.network} takes {'x'.join(map(str, shape))}", None,
                              "pass --calibrate DATA.npz")
        # the images of digits(shape).x_train that calibration_subset keeps, resizing only
        # those (resizing all 1,797 digits to 224x224 took longer than calibrating)
        x = images.digits_train_sample(shape, calibration_indices)
        return x, "the digits proxy data"
    path = Path(args.calibrate)
    for split, found in ([] if path.is_dir() else _npz_image_shapes(path)):
        if found != shape:  # said of this network, not of the search's proxy network
            raise ShrinkError(f"--calibrate: {path}: {split} images are "
                              f"{'x'.join(map(str, found))} but {graph.network} takes "
                              f"{'x'.join(map(str, shape))}", None,
                              "resize the images, or compile for their size with --input CxHxW")
    try:
        if path.is_dir():  # an image folder or CIFAR folder
            data = images.prepare(args.calibrate, shape).data
        else:
            data = images.load_npz(args.calibrate, shape)
    except ShrinkError as e:
        raise ShrinkError(f"--calibrate: {e.diagnostic.message}", None,
                          e.diagnostic.hint) from None
    return calibration_subset(data.x_train), Path(args.calibrate).name


def _npz_image_shapes(path: Path) -> list[tuple[str, tuple[int, ...]]]:
    """The C x H x W of an .npz's images, from the arrays' headers, read within the data
    reader's limits (``data/npz.py``)."""
    from shrinkc.data import npz

    return npz.image_shapes(path)


# packages a generated file imports: a file named after one would shadow it for every script
# in its folder (``torch.py`` beside ``model.py`` breaks ``import torch``)
SHADOWING = frozenset({"torch"})
STDOUT = "-"  # ``-o -``: the one target on stdout (a folder named "-" is ``-o ./-``)


def cmd_compile(args, report) -> int:
    from shrinkc.compiler.fsutil import atomic_write, ensure_dir

    targets = _targets(args)
    to_stdout = args.output == STDOUT
    if to_stdout and len(targets) != 1:
        raise UsageError("-o - writes one target to stdout: give one --target (or -o DIR)")
    if to_stdout and targets == ["onnx"] and sys.stdout.isatty():
        raise UsageError("an ONNX model is binary: redirect stdout to a file, or give -o DIR")
    if is_dynamic(args.input) and targets != ["onnx"]:
        raise UsageError(f"--input {args.input.strip()} (any height and width) is for --target "
                         "onnx only; the PyTorch module takes any size as it is")
    args.opset = _export_opset(args) if "onnx" in targets else None
    graph = graph_of(args, report)
    stem = Path(args.spec).stem
    if "pytorch" in targets and stem in SHADOWING and not to_stdout:
        raise ShrinkError(f"refusing to write {stem}.py: a file of that name shadows the "
                          f"'{stem}' package for every script in {Path(args.output).as_posix()}",
                          None, f"rename {Path(args.spec).name} (the output is named after it)")
    summary = f"{graph.network}: {graph.cost.params:,} params, {human(graph.cost.macs)} MACs"
    # Everything is generated (and weights checked) before anything is written.
    outputs: list[tuple[str, str | bytes, str]] = []
    for t in targets:
        if t == "pytorch":
            from shrinkc.backends.pytorch import generate

            outputs.append((f"{stem}.py", generate(graph), summary))
        elif t == "onnx":
            data, what = _onnx(args, graph, summary)
            outputs.append((f"{stem}.onnx", data, what))
        else:
            outputs.append((f"{stem}.ir.json", graph.model_dump_json(indent=1) + "\n", summary))
    if to_stdout:  # the one output, and nothing else, on stdout
        ((_, data, _),) = outputs
        if isinstance(data, bytes):
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
        else:
            sys.stdout.write(data)
        return 0
    out = ensure_dir(Path(args.output))
    for name, data, what in outputs:
        path = out / name
        atomic_write(path, data)
        print(f"wrote {path.as_posix()} ({what})")
    return 0


# --------------------------------------------------------------------------- stats


def _chain(layers) -> dict:
    return {
        "ops": [layer.op.op for layer in layers],
        "output": layers[-1].out_shape.as_list() if layers else None,
        "params": sum(layer.cost.params for layer in layers),
        "macs": sum(layer.cost.macs for layer in layers),
    }


def _lm_stats(graph, hashes: dict[str, str]) -> dict:
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


def stats_dict(graph) -> dict:
    """What ``shrinkc stats --json`` prints."""
    from shrinkc.compiler.analysis.cellhash import cell_hashes

    hashes = cell_hashes(graph)
    if graph.kind == "lm":
        return _lm_stats(graph, hashes)
    cells = graph.program.cells
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
            name: {"nodes": cells[name].node_count, "edges": cells[name].edges,
                   "hash": hashes[name]}
            for name in graph.cells_used
        },
        "stem": _chain(graph.stem),
        "stages": [{"name": s.name, "cell": s.cells[0].cell, "depth": len(s.cells),
                    "output": s.out_shape.as_list(), "params": s.cost.params,
                    "macs": s.cost.macs} for s in graph.stages],
        "head": _chain(graph.head),
    }


def _print_lm_stats(d: dict, console) -> None:
    from rich.table import Table

    console.print(f"{d['network']}  ({d['source']}, language model, vocabulary {d['vocab']:,})")
    table = Table(box=None, pad_edge=False)
    table.add_column("part")
    table.add_column("params", justify="right")
    for part, n in d["parts"].items():
        table.add_row(part, f"{n:,}")
    table.add_row("total", f"{d['params']:,}", style="bold", end_section=True)
    console.print(table)
    console.print(f"{d['params']:,} parameters, {d['edges']} live edges, {human(d['flops'])} "
                  f"FLOPs per step (edges x hidden^2), {human(d['macs'])} MACs per token")


def _print_cnn_stats(d: dict, console) -> None:
    from rich import box
    from rich.table import Table

    def shape(s) -> str:
        return "x".join(map(str, s))

    console.print(f"{d['network']}  ({d['source']}, input {shape(d['input'])})")
    table = Table(box=box.SIMPLE, show_footer=True, pad_edge=False, show_edge=False)
    table.add_column("part", footer="total")
    table.add_column("cell")
    table.add_column("depth", justify="right")
    table.add_column("output")
    table.add_column("params", justify="right", footer=f"{d['params']:,}")
    table.add_column("MACs", justify="right", footer=f"{d['macs']:,}")
    lat = d.get("latency")
    if lat:
        table.add_column("ms (predicted)", justify="right", footer=f"{lat['predicted_ms']:.2f}")

    def ms(part: dict) -> tuple[str, ...]:
        return (f"{part['predicted_ms']:.2f}",) if lat else ()

    table.add_row("stem", "-", "", shape(d["stem"]["output"] or d["input"]),
                  f"{d['stem']['params']:,}", f"{d['stem']['macs']:,}", *ms(d["stem"]))
    for s in d["stages"]:
        table.add_row(s["name"], s["cell"], f"x{s['depth']}", shape(s["output"]),
                      f"{s['params']:,}", f"{s['macs']:,}", *ms(s))
    table.add_row("head", "-", "", shape(d["output"]), f"{d['head']['params']:,}",
                  f"{d['head']['macs']:,}", *ms(d["head"]))
    console.print(table)
    console.print(f"{d['params']:,} parameters, {human(d['macs'])} MACs, "
                  f"{d['edges']} live edges in {len(d['cells'])} distinct cell(s)")
    if lat:
        console.print(f"predicted latency {lat['predicted_ms']:.2f} ms (run overhead "
                      f"{lat['by_part'].get('run', 0.0):.2f} ms) on {lat['device']}, from "
                      f"{lat['table']}")


def _predicted_latency(graph, d: dict, path: str) -> dict:
    """The latency predicted from the table at ``path`` (``backends/latency``), in all and per
    part (each stage's, the stem's and the head's ``predicted_ms`` are set in ``d``)."""
    from shrinkc.backends import latency

    table = latency.load(path)
    p = latency.predict(graph, table)
    for name, part in (("stem", d["stem"]), *((s["name"], s) for s in d["stages"]),
                       ("head", d["head"])):
        part["predicted_ms"] = round(p.by_part.get(name, 0.0), 4)
    return {**p.to_dict(), "table": table.source, "device": table.fingerprint.summary()}


def cmd_stats(args, report) -> int:
    if is_dynamic(args.input):
        raise UsageError(f"--input {args.input.strip()}: stats counts MACs at one size; give "
                         "it as numbers, such as 3x160x160")
    graph = graph_of(args, report)
    d = stats_dict(graph)
    if getattr(args, "latency_table", None):
        d["latency"] = _predicted_latency(graph, d, args.latency_table)
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    console = stdout_console()
    (_print_lm_stats if graph.kind == "lm" else _print_cnn_stats)(d, console)
    for name, c in d["cells"].items():
        console.print(f"cell {name}: {c['nodes']} nodes, {c['edges']} edges, "
                      f"hash {c['hash'][:16]}")
    return 0


# --------------------------------------------------------------------------- check, fmt


def cmd_check(args, report) -> int:
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


def cmd_fmt(args, report) -> int:
    """Format each file in place. A file is replaced only if it is still what was read (size,
    modification time and content hash, compared just before the rename): an edit saved
    while fmt works is never lost; that file is an error (nothing written) and the others
    go on."""
    from shrinkc.compiler.fsutil import Stamp, atomic_write, stamp
    from shrinkc.compiler.syntax.parser import parse, read_source
    from shrinkc.compiler.syntax.printer import print_program

    changed = failed = 0
    for path in _shrink_files(args.paths):
        shown = path.as_posix()
        try:
            # before the read: a change from here on shows at the comparison before writing
            read = stamp(path) or Stamp(-1, -1, "")  # none yet: nothing will match it
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
            continue
        try:
            atomic_write(path, new, unchanged=read, doing="formatted")
        except ShrinkError as e:
            report(e.diagnostic)
            failed += 1
            continue
        print(f"reformatted {shown}")
    if failed:
        return 1
    return 1 if (args.check and changed) else 0


# --------------------------------------------------------------------------- wiring


def register(sub) -> None:
    """Add ``compile``, ``stats``, ``check`` and ``fmt`` to ``shrinkc``'s subparsers."""
    c = sub.add_parser("compile", help="compile a spec to standalone PyTorch, ONNX or IR JSON")
    c.add_argument("spec")
    c.add_argument("-o", "--output", default="build",
                   help="output directory (default: build); '-' writes the one --target to "
                        "stdout")
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
    c.add_argument("--opset", metavar="N",
                   help="onnx: the ONNX opset to write, 13 to 28 (default: 28, the newest)")
    c.add_argument("--input", metavar="CxHxW",
                   help="the input shape, such as 3x160x160, in place of the spec's (any target); "
                   "onnx: 3xHxW for one file that takes any height and width")
    c.add_argument("--precision", choices=("fp32", "fp16", "int8"),
                   help="onnx: fp32 (default); fp16 weights and activations (float32 inputs "
                        "and outputs); int8 by onnxruntime's static quantization (QDQ), which "
                        "needs --weights")
    c.add_argument("--calibrate", metavar="DATA",
                   help="int8: calibrate on this data's training images: an .npz's x_train, "
                        "an image folder or a CIFAR batches folder (as shrink --data reads "
                        "them; default: the digits proxy data resized to the network's input)")
    c.set_defaults(func=cmd_compile)

    s = sub.add_parser("stats", help="per-stage parameters, MACs and output shapes")
    s.add_argument("spec")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument("--network", help="which network of the file (default: its last one)")
    s.add_argument("--input", metavar="CxHxW",
                   help="the input shape, such as 3x160x160, in place of the spec's")
    s.add_argument("--latency-table", metavar="FILE",
                   help="also the latency predicted per stage from this table (shrinkc latency "
                        "--save-table writes one)")
    s.set_defaults(func=cmd_stats)

    k = sub.add_parser("check", help="check specs; errors as file:line:col")
    k.add_argument("specs", nargs="+")
    k.add_argument("-q", "--quiet", action="store_true", help="print only problems")
    k.set_defaults(func=cmd_check)

    f = sub.add_parser("fmt", help="format specs canonically, in place")
    f.add_argument("paths", nargs="+", help="files or folders")
    f.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 if a file is not formatted")
    f.set_defaults(func=cmd_fmt)
