"""``shrinkc latency SPEC``: a network's latency on this machine (or on the device of a table),
predicted from a table of measured pieces, and measured with ``--measure``.

Without ``--table`` it builds the table the network needs here, measuring each distinct piece
alone (``backends/latency``); with ``--table FILE`` it reads one (a table from another device
predicts that device; pieces it lacks are measured here only when it is this machine's, with
these settings). ``--space [NAME]`` builds the table for a whole search space: every piece any
candidate of the space can put into the network (the spec's search network, or
``--network``). ``--save-table FILE`` writes the table (atomically). ``--measure`` also
measures the whole network by the same routine and fingerprint, and ``--calibrate`` records
the network in the table and fits the calibration over the networks recorded so far
(``predict.calibrate``: one scale with a few, the pieces' kernel times, the values
concatenated and a constant from six on); ``--calibrate-cells N`` records N random cells of
the search's space instead. ``--json`` prints ``predicted_ms`` and ``measured_ms`` (null
unless measured) among the rest. numpy, onnx and onnxruntime load only here.
"""

from __future__ import annotations

import json
import sys
import time

from shrinkc.compiler import ir
from shrinkc.compiler.errors import ShrinkError
from shrinkc.console import UsageError, stdout_console

from . import measuring


def _protocol(args, table=None):
    """The measuring protocol from the flags, defaulting to the table's where one is read."""
    from shrinkc.backends.latency import Protocol

    base = table.protocol if table is not None else Protocol()
    fields = measuring.given(args)
    if table is not None:  # what the fingerprint says, unless a flag says otherwise
        fp = table.fingerprint
        for k, v in (("threads", fp.intra_op_threads), ("batch", fp.batch),
                     ("spinning", fp.spinning), ("clock", fp.clock)):
            fields.setdefault(k, v)
    kw = {**{k: getattr(base, k) for k in base.__dataclass_fields__}, **fields}
    try:
        return Protocol(**kw)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _space(checked, name: str | None) -> ir.SpaceDef:
    spaces = {i.name: i for i in checked.sources.main.items if isinstance(i, ir.SpaceDef)}
    if name is None:
        searches = [i for i in checked.sources.main.items if isinstance(i, ir.SearchDef)]
        if searches and searches[-1].space in spaces:
            name = searches[-1].space
        elif len(spaces) == 1:
            name = next(iter(spaces))
        else:
            raise ShrinkError(f"{checked.sources.main.file} defines "
                              f"{'no space' if not spaces else 'several spaces'}", None,
                              "name one: --space NAME" if spaces else
                              "--space builds a table for a search space defined in the spec")
    if name not in spaces:
        from shrinkc.compiler.errors import did_you_mean

        raise ShrinkError(f"no space '{name}' in {checked.sources.main.file}", None,
                          did_you_mean(name, spaces, "spaces"))
    return spaces[name]  # type: ignore[return-value]


def _complete_graph(args, checked, space: ir.SpaceDef, network: str | None, shape):
    """The network built with ``space``'s complete cell (every edge)."""
    from shrinkc.compiler.pipeline import build_graph, check
    from shrinkc.compiler.syntax.printer import print_program

    if space.edges is not None:
        items = tuple(i.model_copy(update={"edges": None})
                      if isinstance(i, ir.SpaceDef) and i.name == space.name else i
                      for i in checked.sources.main.items)
        text = print_program(checked.sources.main.model_copy(update={"items": items}))
        checked = check(args.spec, text)
    return build_graph(checked, network, input_shape=shape)


def _progress(quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None
    start = time.monotonic()

    def show(done: int, total: int, what: str) -> None:
        shown = what if len(what) <= 60 else what[:57] + "..."
        sys.stderr.write(f"\r\x1b[Kmeasuring {done + 1}/{total} ({time.monotonic() - start:.0f} s)"
                         f": {shown}")
        sys.stderr.flush()
    show.end = lambda: (sys.stderr.write("\r\x1b[K"), sys.stderr.flush())  # type: ignore[attr-defined]
    return show


def cmd_latency(args, report) -> int:
    from .build import graph_of, input_shape, is_dynamic

    if args.input is not None and is_dynamic(args.input):
        raise UsageError(f"--input {args.input.strip()}: a latency is taken at one size; give "
                         "it as numbers, such as 3x224x224")
    if args.calibrate and not (args.measure and args.save_table):
        raise UsageError("--calibrate records a measured network in the table: it needs "
                         "--measure and --save-table FILE")
    if args.calibrate_cells is not None and (args.calibrate_cells < 1 or not args.save_table):
        raise UsageError("--calibrate-cells N measures N >= 1 random cells of the search's space "
                         "in its deployment network and records them in the table: it needs "
                         "--save-table FILE")
    try:
        import numpy  # noqa: F401
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise ShrinkError(f"latency needs the '{e.name}' package", None,
                          "pip install 'shrinkc[onnx]'") from None
    from shrinkc.backends import latency as L
    from shrinkc.compiler.pipeline import check

    shape = input_shape(args.input)
    table = L.load(args.table) if args.table else None
    protocol = _protocol(args, table)
    graph = graph_of(args, report)
    flow = L.network_pieces(graph)
    pieces = {p.piece.key: p.piece for p in flow.parts}
    space_name = None
    if args.space is not None:
        checked = check(args.spec)
        space = _space(checked, args.space or None)
        space_name = space.name
        network, deploy_shape = _search_network(checked)
        if args.network:  # the network asked for, at its own input (or --input)
            network, deploy_shape = args.network, None
        full = _complete_graph(args, checked, space, network, shape or deploy_shape)
        pieces.update(L.space_pieces(full, space))
    here = protocol.fingerprint().device()
    missing = [k for k in pieces if table is None or k not in table.entries]
    measured_here = 0
    if missing:
        if table is not None and L.differences(table.fingerprint, here):
            table.require(pieces, f"{graph.network}" + (f" with space '{space_name}'"
                                                        if space_name else ""))
        show = _progress(args.quiet)
        try:
            table = L.build_table([pieces[k] for k in missing], protocol, table, show)
        finally:
            if show is not None:
                show.end()  # type: ignore[attr-defined]
        measured_here = len(missing)
    assert table is not None
    prediction = L.predict_pieces(flow, table, graph.network)
    measurement = None
    if args.measure:
        L.check_same(table.fingerprint, here, f"{table.source or 'the table'} and a measurement "
                     "here", table._loc(), "measure on the table's device with its settings")
        from shrinkc.backends.onnx import generate

        measurement = L.measure_model(generate(graph), protocol)
        if args.calibrate:
            kept = [n for n in (table.calibration or {}).get("networks", [])
                    if n.get("network") != graph.network]
            L.calibrate(table, [*kept, L.calibration_record(flow, table, graph.network,
                                                            measurement.median_ms)])
            prediction = L.predict_pieces(flow, table, graph.network)
    if args.calibrate_cells:
        L.check_same(table.fingerprint, here, f"{table.source or 'the table'} and measurements "
                     "here", table._loc(), "calibrate on the table's device with its settings")
        _calibrate_cells(args, table, protocol)
        prediction = L.predict_pieces(flow, table, graph.network)
    if args.save_table:
        L.save(table, args.save_table)
    result = _result(graph, flow, prediction, measurement, table, protocol, measured_here,
                     space_name, args.save_table)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result)
    return 0


def _calibrate_cells(args, table, protocol) -> None:
    """Measure ``--calibrate-cells`` random cells of the spec's search space (seeded, 0) in
    its deployment network, add what pieces they lack to ``table``, record each and fit the
    table's calibration over every network recorded (``predict.calibrate``)."""
    import hashlib

    from shrinkc.backends import latency as L
    from shrinkc.backends.onnx import generate
    from shrinkc.compiler.deploy import deployment_graph
    from shrinkc.compiler.pipeline import check
    from shrinkc.search.rules import random_cells

    checked = check(args.spec)
    searches = [i for i in checked.program.items if isinstance(i, ir.SearchDef)]
    if not searches or searches[-1].space is None:
        raise ShrinkError(f"{checked.sources.main.file} has no search with a space", None,
                          "--calibrate-cells draws cells of the search's space; calibrate on "
                          "other networks with --measure --calibrate")
    search = searches[-1]
    space = next(i for i in checked.sources.main.items
                 if isinstance(i, ir.SpaceDef) and i.name == search.space)
    cells = random_cells(checked.sources.main, space, args.calibrate_cells, seed=0)
    graphs = []
    for edges in cells:
        g = deployment_graph(checked, search, edges)
        tag = hashlib.sha256(repr(tuple(edges)).encode()).hexdigest()[:10]
        graphs.append((f"{g.network} [{space.name} cell {tag}]", edges, g))
    flows = [L.network_pieces(g) for _, _, g in graphs]
    lacking = {p.piece.key: p.piece for f in flows for p in f.parts
               if p.piece.key not in table.entries}
    show = _progress(args.quiet)
    try:
        if lacking:
            L.build_table(list(lacking.values()), protocol, table, show)
        records = []
        for i, ((name, edges, g), f) in enumerate(zip(graphs, flows)):
            if show is not None:
                show(i, len(graphs), f"calibrating: {name}")
            m = L.measure_model(generate(g), protocol)
            records.append({**L.calibration_record(f, table, name, m.median_ms),
                            "edges": [list(e) for e in edges]})
    finally:
        if show is not None:
            show.end()  # type: ignore[attr-defined]
    names = {r["network"] for r in records}
    kept = [n for n in (table.calibration or {}).get("networks", []) if n.get("network") not in names]
    L.calibrate(table, [*kept, *records])


def _search_network(checked) -> tuple[str | None, tuple[int, ...] | None]:
    """The network a search space's pieces are taken in, and its input: the last search's
    deployment network (its ``deploy`` line), else its proxy network."""
    searches = [i for i in checked.sources.main.items if isinstance(i, ir.SearchDef)]
    if not searches:
        return None, None
    s = searches[-1]
    return (s.deploy, s.deploy_input) if s.deploy else (s.network, None)


def _result(graph, flow, prediction, measurement, table, protocol, measured_here, space,
            saved) -> dict:
    r = {"network": graph.network, "source": graph.source,
         "input": graph.input_shape.as_list(),
         **prediction.to_dict(),
         "distinct_pieces": len(flow.keys()),
         "measured_ms": None if measurement is None else round(measurement.median_ms, 4),
         "error_pct": None, "measurement": None,
         "table": {"source": table.source, "saved": saved, "entries": len(table.entries),
                   "measured_here": measured_here, "space": space,
                   "overhead": {k: table.overhead.get(k) for k in ("run_ms", "node_ms",
                                                                   "nchwc_block")},
                   "calibration": table.calibration},
         "protocol": protocol.to_dict(),
         "fingerprint": table.fingerprint.to_dict()}
    if measurement is not None:
        r["error_pct"] = round(100 * (prediction.ms / measurement.median_ms - 1), 2)
        r["measurement"] = measurement.to_dict()
    return r


def _print(r: dict) -> None:
    console = stdout_console()
    fp = r["fingerprint"]
    console.print(f"{r['network']}  ({r['source']}, input {'x'.join(map(str, r['input']))})")
    t = r["table"]
    where = t["source"] or "built here"
    extra = f", {t['measured_here']} piece(s) measured here" if t["measured_here"] else ""
    cal = ", calibrated" if r["calibrated"] else ""
    console.print(f"predicted {r['predicted_ms']:.2f} ms  ({r['pieces']} pieces, "
                  f"{r['distinct_pieces']} distinct; layout correction "
                  f"{r['layout_correction_ms']:+.2f} ms{cal}; table: {where}, "
                  f"{t['entries']} entries{extra})")
    if r["measured_ms"] is not None:
        m = r["measurement"]
        console.print(f"measured  {r['measured_ms']:.2f} ms  (median; IQR {m['q1_ms']:.2f}-"
                      f"{m['q3_ms']:.2f} ms, {m['runs']} runs, {m['stopped']})  "
                      f"prediction {r['error_pct']:+.1f}%")
    parts = ", ".join(f"{k} {v:.2f}" for k, v in r["by_part"].items())
    console.print(f"by part (ms): {parts}")
    threads = fp["intra_op_threads"]
    console.print(f"on {fp['cpu_model']} ({fp['cores_usable']} of {fp['cores']} cores), "
                  f"onnxruntime {fp['onnxruntime']}, {threads} thread{'s' if threads != 1 else ''}, "
                  f"batch {fp['batch']}, spinning {'on' if fp['spinning'] else 'off'}, "
                  f"{fp['clock']} clock, optimisation {fp['graph_optimization']}")
    if t["saved"]:
        console.print(f"table written to {t['saved']}")


def register(sub) -> None:
    """Add ``latency`` to ``shrinkc``'s subparsers."""
    p = sub.add_parser("latency", help="predicted (and measured) onnxruntime latency of a "
                                       "network from a table of measured pieces")
    p.add_argument("spec")
    p.add_argument("--network", help="which network of the file (default: its last one; with "
                                     "--space, the search's network)")
    p.add_argument("--input", metavar="CxHxW",
                   help="the input shape, such as 3x224x224, in place of the spec's")
    p.add_argument("--table", metavar="FILE",
                   help="read the latency table (default: build the one needed, here)")
    p.add_argument("--save-table", metavar="FILE", help="write the table (JSON) to FILE")
    p.add_argument("--space", nargs="?", const="", metavar="NAME",
                   help="build the table for every candidate of the search space NAME "
                        "(default: the search's space)")
    p.add_argument("--measure", action="store_true",
                   help="also measure the whole network by the same routine")
    p.add_argument("--calibrate", action="store_true",
                   help="with --measure and --save-table: record the measured network in the "
                        "table and fit its calibration over the recorded networks (one scale "
                        "with fewer than six; kernel times, concatenated values and a constant "
                        "from six on)")
    p.add_argument("--calibrate-cells", type=int, metavar="N",
                   help="with --save-table: measure N random cells of the search's space (seeded) "
                        "in its deployment network, record them and fit the table's calibration "
                        "(16 is a good number; at least six fit the kernel-time model)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--quiet", action="store_true", help="no progress while measuring")
    from shrinkc.backends.latency import Protocol

    g = p.add_argument_group("measuring protocol (default: the table's, else as shown)")
    defaults = Protocol()
    measuring.add_flags(g, ("threads", "batch", "clock", "warmup", "max_runs", "tolerance",
                            "max_seconds"),
                        {k: f"{getattr(defaults, k):g}" if isinstance(getattr(defaults, k), float)
                         else str(getattr(defaults, k))
                         for k in ("threads", "batch", "clock", "warmup", "max_runs",
                                   "tolerance", "max_seconds")})
    p.set_defaults(func=cmd_latency)
