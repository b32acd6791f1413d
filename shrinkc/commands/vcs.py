"""Architectures under version control: ``shrinkc diff``, ``viz`` and ``schema``.

``register(subparsers)`` adds the commands to ``shrinkc``'s parser. Each command is
``func(args, report) -> int`` like the others in :mod:`shrinkc.commands`.

``diff`` exits like diff(1): 0 when the two specs mean the same, 1 when they differ, 2 on
trouble (wrong usage, a missing file, a spec with errors).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import sys
from pathlib import Path
from typing import Any

from shrinkc.compiler.errors import ShrinkError
from shrinkc.console import UsageError

# --------------------------------------------------------------------------- diff


# A spec at least this large (a cell of about 2,000 nodes) is read in a second process while
# this one reads the other: the two specs are independent, and reading one (parsing, checks,
# hashing, costing) is most of a diff. Smaller specs take a few tenths of a second in all.
PARALLEL_BYTES = 64 * 1024


def _side(spec: str, report) -> Any:
    from shrinkc.compiler.analysis.semdiff import side
    from shrinkc.compiler.pipeline import check

    checked = check(spec)
    for w in checked.warnings:
        report(w)
    return side(checked)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _worth_a_process(a: str, b: str) -> bool:
    if not hasattr(os, "fork") or _cores() < 2:
        return False
    try:
        return min(os.stat(a).st_size, os.stat(b).st_size) >= PARALLEL_BYTES
    except OSError:  # let the reading say what is wrong
        return False


class _Forked:
    """``_side(spec)`` in a forked child. ``result(report)`` reports the child's warnings (in
    this process, in order) and returns its Side, or raises its ShrinkError; None when the
    child did not finish (killed, or a bug: the caller then reads the spec itself, so that
    any traceback is this process's own). ``stop()`` ends a child no longer wanted."""

    def __init__(self, spec: str):
        sys.stdout.flush()
        sys.stderr.flush()
        read, write = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read)
            os.close(write)
            raise
        if pid == 0:  # the child: never returns, never runs the parent's exit handlers
            code = 1
            try:
                os.close(read)
                warnings: list = []
                try:
                    out: tuple = ("side", warnings, _side(spec, warnings.append))
                except ShrinkError as e:  # pickled whole (ShrinkError.__reduce__)
                    out = ("error", warnings, e)
                data = pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)
                with os.fdopen(write, "wb") as f:
                    f.write(data)
                code = 0
            except BaseException:  # noqa: BLE001 - a bug or ^C: the parent reads the spec
                pass
            finally:
                os._exit(code)
        os.close(write)
        self.pid: int | None = pid
        self.read: int | None = read

    def result(self, report) -> Any:
        pipe, self.read = os.fdopen(self.read, "rb"), None  # closed by the file from now on
        with pipe:
            data = pipe.read()
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        if not data or not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            return None
        kind, warnings, value = pickle.loads(data)  # our own child's, through our own pipe
        for w in warnings:
            report(w)
        if kind == "error":
            raise value
        return value

    def stop(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            self.pid = None
        if self.read is not None:
            with contextlib.suppress(OSError):
                os.close(self.read)
            self.read = None


def cmd_diff(args, report) -> int:
    from shrinkc.compiler.analysis.semdiff import diff_sides, render

    forked = None
    if _worth_a_process(args.a, args.b):
        with contextlib.suppress(OSError):  # no process to be had: read both here
            forked = _Forked(args.b)
    try:
        a = _side(args.a, report)
        b = forked.result(report) if forked is not None else None
        if b is None:
            b = _side(args.b, report)
        d = diff_sides(a, b, Path(args.a).as_posix(), Path(args.b).as_posix())
    except ShrinkError as e:  # trouble, not a difference: exit 2 as diff(1) does
        report(e.diagnostic)
        return 2
    finally:
        if forked is not None:
            forked.stop()
    if args.json:
        print(json.dumps(d, indent=2))
    elif args.brief:
        if not d["equal"]:
            print(f"Specs {d['a']} and {d['b']} differ")
    else:
        sys.stdout.write(render(d))
    return 0 if d["equal"] else 1


# --------------------------------------------------------------------------- viz


def _picture(args, report) -> str:
    from shrinkc.backends import viz
    from shrinkc.compiler.errors import did_you_mean
    from shrinkc.compiler.pipeline import build_graph, check

    if args.cell is None and (args.stage or args.symbolic):
        raise UsageError("--stage and --symbolic need --cell NAME")
    checked = check(args.spec)
    for w in checked.warnings:
        report(w)
    cells = checked.program.cells
    has_network = args.network is not None or bool(checked.networks)
    if args.cell is not None:
        if args.cell not in cells:
            raise ShrinkError(f"no cell '{args.cell}' in {args.spec}", None,
                              did_you_mean(args.cell, cells, "cells"))
        if args.symbolic or not has_network:
            if args.stage:
                raise ShrinkError(f"{args.spec} has no network: --stage has nothing to pick")
            return viz.cell_definition_dot(cells[args.cell])
        graph = build_graph(checked, args.network)
        if args.stage is None and args.cell not in graph.cells_used:
            return viz.cell_definition_dot(cells[args.cell])  # a cell the network does not use
        return viz.cell_instance_dot(graph, args.cell, args.stage)
    if has_network:
        return viz.network_dot(build_graph(checked, args.network))
    if not cells:
        raise ShrinkError(f"{args.spec} defines no network and no cell: nothing to draw")
    return viz.cells_dot(checked.program, Path(args.spec).stem)


def cmd_viz(args, report) -> int:
    from shrinkc.backends import viz

    if args.output is not None:
        fmt = Path(args.output).suffix.lower().lstrip(".")
        if fmt not in viz.FORMATS:
            raise UsageError(f"cannot tell the picture format of '{args.output}' "
                               f"(use .svg, .png, .pdf or .dot)")
    source = _picture(args, report)
    if args.output is None:
        sys.stdout.write(source)
        return 0
    viz.write(source, args.output)
    print(f"wrote {Path(args.output).as_posix()}")
    return 0


# --------------------------------------------------------------------------- schema


def ir_schema() -> dict:
    """JSON Schema (draft 2020-12) of the graph IR that ``compile --target ir`` writes."""
    from shrinkc.compiler import ir
    from shrinkc.compiler.version import __version__

    schema = ir.graph_adapter().json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "shrinkc IR (Graph)",
        "description": f"One network of a .shrink spec, instantiated and costed (shrinkc "
                       f"{__version__}; written by 'shrinkc compile --target ir').",
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }


def cmd_schema(args, report) -> int:
    text = json.dumps(ir_schema(), indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return 0
    from shrinkc.compiler.fsutil import atomic_write

    atomic_write(Path(args.output), text)
    print(f"wrote {Path(args.output).as_posix()}")
    return 0


# --------------------------------------------------------------------------- wiring


def register(sub) -> None:
    """Add ``diff``, ``viz`` and ``schema`` to ``shrinkc``'s subparsers."""
    d = sub.add_parser("diff", help="semantic diff of two specs: exit 0 equal, 1 different",
                       description="Compare two specs by meaning: node names, statement order "
                                   "and formatting do not count. Exit 0 when equal, 1 when "
                                   "different, 2 on trouble, like diff(1).")
    d.add_argument("a", help="the old spec")
    d.add_argument("b", help="the new spec")
    d.add_argument("--json", action="store_true", help="print the differences as JSON")
    d.add_argument("-q", "--brief", action="store_true", help="only say whether they differ")
    d.set_defaults(func=cmd_diff)

    v = sub.add_parser("viz", help="draw a network or a cell with Graphviz",
                       description="Draw the network (its stages, with each cell it uses) or, "
                                   "with --cell, one cell as a DAG. Rendering .svg, .png or "
                                   ".pdf needs Graphviz's 'dot'; .dot needs nothing.")
    v.add_argument("spec")
    v.add_argument("-o", "--output",
                   help="picture to write: .svg, .png, .pdf or .dot (default: DOT on stdout)")
    v.add_argument("--cell", help="draw this cell instead of the network")
    v.add_argument("--stage", help="with --cell: the stage whose instance to draw "
                                   "(default: the first stage that repeats the cell)")
    v.add_argument("--symbolic", action="store_true",
                   help="with --cell: draw the definition, widths as written (e.g. 'w')")
    v.add_argument("--network", help="which network of the file (default: its last one)")
    v.set_defaults(func=cmd_viz)

    s = sub.add_parser("schema", help="JSON Schema of the IR that --target ir writes")
    s.add_argument("-o", "--output", help="file to write (default: stdout)")
    s.set_defaults(func=cmd_schema)
