"""A network's latency predicted from a table, with no onnxruntime call: milliseconds of
Python for a network of hundreds of pieces, so a search can ask it for every candidate.

The prediction (:func:`predict`) is

    run_ms + sum over pieces of (piece_ms - run_ms) + layout corrections

* each piece's median (``table.py``), less the cost of a run that its measurement alone
  included (``run_ms``), which the network pays once; a piece's nodes' own overhead is in its
  time (it was measured with them); merges (concatenations, sums) and residual adds are
  pieces of their own;
* layout corrections, where onnxruntime runs convolutions in its blocked layout (NCHWc): a
  piece measured alone reordered its input into that layout and its output back out of it
  (the table records which); in the network a tensor is reordered only where its producer
  and a consumer disagree. A tensor is blocked when its producer is (a convolution or pool
  as measured; a concatenation or sum when all its inputs are, a concatenation's inputs
  each a whole number of blocks; a ReLU, sigmoid or tanh alone when its input is); it
  needs one reorder out when a consumer takes the plain layout (or it is the network's
  output) and one reorder in, shared, when it is plain and a consumer took the blocked
  layout alone. What the pieces paid alone for their reorders (their share of each piece's
  time in onnxruntime's profile, recorded in the table) is taken off, and the reorders the
  network has are added at the table's fitted reorder costs. A residual add (or a sum of
  two) whose inputs are blocked and one of them comes from a convolution without an
  activation that feeds nothing else is fused into it by onnxruntime (the convolution
  accumulates into the buffer), and so is a ReLU, sigmoid or tanh alone after such an add:
  they cost nothing. An activation alone that repeats an earlier one on the same input
  costs nothing either (onnxruntime's common subexpression elimination keeps one);
* with a calibration in the table (fitted on measured networks, :func:`calibrate`), on the
  **kernel basis** the same sum with each piece's profiled kernel time (``kernel_ms``) in
  place of its wall time less a run, then

      pieces_ms * that + concat_mvalues * (millions of values the network concatenates)
      + constant_ms

  A piece measured alone pays for handing its output back as a fresh graph output, which a
  network pays once; its kernels do not include that. And a network's concatenations copy
  inputs that have left the cache, where a piece's are warm (in onnxruntime's profile of a
  large cell its Concat kernels ran 40% slower than alone, its convolutions 19%). Fitted on
  the 67 networks of ``benchmarks/latency_model.py`` (each left out of its own fit) this took
  the networks within +-10% from 81% (the wall sum) to 96%. With fewer than
  :data:`MIN_FIT` measured networks, or a table without kernel times (version 1), the
  calibration is one scale of the wall sum (the median measured/predicted ratio). A
  calibrated prediction is never below the cost of an empty run (``run_ms``).

:func:`space_keys` (``space.py``) lists what a search space needs, for a table built before a
search; :func:`predict_ms` is the number alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shrinkc.compiler import ir
from shrinkc.compiler.errors import ShrinkError

from .pieces import Pieces, network_pieces
from .table import REBUILD, Entry, LatencyTable

BLOCKED_ACTS = frozenset({"relu", "sigmoid", "tanh"})
"""Activations onnxruntime runs in the blocked layout when their input is blocked."""
FUSING_OPS = frozenset({"conv", "sepconv", "dwconv"})  # end in a Conv a Sum can fuse into
STATISTICS = ("median", "min")
MIN_FIT = 6  # measured networks a three-term calibration is fitted on, at least


@dataclass(frozen=True)
class Prediction:
    """A predicted latency (ms) and where it comes from."""

    ms: float  # calibrated where the table has a calibration
    raw_ms: float  # before calibration
    by_part: dict[str, float] = field(default_factory=dict)  # stem, stages, head, run
    pieces: int = 0
    layout_ms: float = 0.0  # the layout corrections (included)
    calibrated: bool = False
    basis: str = "wall"  # what raw_ms sums: the pieces' wall times or their kernel times
    concat_mvalues: float = 0.0  # millions of values the network's concatenations write

    def to_dict(self) -> dict:
        r = lambda x: round(float(x), 4)  # noqa: E731
        return {"predicted_ms": r(self.ms), "raw_ms": r(self.raw_ms), "basis": self.basis,
                "layout_correction_ms": r(self.layout_ms), "calibrated": self.calibrated,
                "concat_mvalues": r(self.concat_mvalues),
                "pieces": self.pieces, "by_part": {k: r(v) for k, v in self.by_part.items()}}


def needed_keys(graph: ir.Graph) -> set[str]:
    """The table keys ``graph``'s network needs."""
    return network_pieces(graph).keys()


def _reorder(table: LatencyTable, direction: str, shape: ir.Shape) -> float:
    fit = table.overhead.get(f"reorder_{direction}")
    if not fit or shape.flat:
        return 0.0
    values = shape.c * shape.h * shape.w * table.fingerprint.batch / 1e6  # type: ignore[operator]
    return fit["ms"] + fit["ms_per_mvalue"] * values


def _common_activations(parts) -> dict[int, int]:
    """Activations alone that repeat an earlier one on the same input (a cell whose ops
    each begin with a ReLU of the same node): onnxruntime's common subexpression
    elimination keeps one, so each repeat maps to the part it merges into and costs
    nothing."""
    merged: dict[int, int] = {}
    first: dict[tuple, int] = {}
    for j, p in enumerate(parts):
        if p.piece.kind == "op" and p.piece.op.op == "identity":  # type: ignore[union-attr]
            key = (p.piece.key, tuple(merged.get(i, i) for i in p.inputs))
            if key in first:
                merged[j] = first[key]
            else:
                first[key] = j
    return merged


def _binary_add(p) -> bool:
    """A residual add, or a sum of two inputs (a cell's node merging two ops): what
    onnxruntime's NCHWc transformer can fuse into a convolution that feeds it."""
    return p.piece.kind == "add" or (p.piece.kind == "sum" and len(p.inputs) == 2)


def _stat(e: Entry, statistic: str) -> float:
    return e.ms if statistic == "median" else e.min_ms


def calibration_terms(table: LatencyTable) -> tuple[str, float, float, float] | None:
    """The table's calibration as (basis, pieces_ms, concat_mvalues, constant_ms); a version
    1 calibration ``{"scale", "offset_ms"}`` is the wall basis with no concatenation term."""
    cal = table.calibration
    if not cal:
        return None
    if "terms" not in cal:
        return "wall", float(cal["scale"]), 0.0, float(cal["offset_ms"])
    t = cal["terms"]
    return (cal["basis"], float(t["pieces_ms"]), float(t["concat_mvalues"]),
            float(t["constant_ms"]))


def predict_pieces(flow: Pieces, table: LatencyTable, what: str = "the network",
                   statistic: str = "median", basis: str | None = None) -> Prediction:
    """The prediction for a network's pieces (see the module's documentation): on the
    calibration's basis (``basis`` overrides it, and drops the calibration if it differs)."""
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}")
    parts = flow.parts
    table.require({p.piece.key for p in parts}, what)
    entries = [table.entries[p.piece.key] for p in parts]
    cal = calibration_terms(table)
    if basis is None:
        basis = cal[0] if cal else "wall"
    elif cal and cal[0] != basis:
        cal = None
    if basis == "kernel":
        lacking = next((p.piece.key for p, e in zip(parts, entries) if e.kernel_ms is None), None)
        if lacking is not None:
            raise ShrinkError(f"{table.source or 'the table'} has no kernel time for the piece "
                              f"'{lacking}' (a version 1 table?), and its calibration is on "
                              "kernel times", table._loc(), REBUILD, quote=False)
    block = int(table.overhead.get("nchwc_block", 0) or 0)
    run = float(table.overhead.get("run_ms", 0.0))
    merged = _common_activations(parts)
    inputs = [tuple(merged.get(i, i) for i in p.inputs) for p in parts]
    output = merged.get(flow.output, flow.output)
    consumers: dict[int, list[tuple[int, int]]] = {}
    for j in range(len(parts)):
        if j not in merged:
            for s, i in enumerate(inputs[j]):
                consumers.setdefault(i, []).append((j, s))

    # which outputs are blocked in the network, and which inputs take the blocked layout
    blocked: list[bool] = []
    for j, (p, e) in enumerate(zip(parts, entries)):
        piece = p.piece
        ins = [i >= 0 and blocked[i] for i in inputs[j]]
        if not block:
            blocked.append(False)
        elif piece.kind == "concat":
            blocked.append(all(ins) and all(s.c % block == 0 for s in piece.ins))
        elif piece.kind in ("add", "sum"):
            blocked.append(all(ins))
        elif piece.kind == "op" and piece.op.op == "identity":  # type: ignore[union-attr]
            blocked.append(ins[0] and piece.op.act in BLOCKED_ACTS)  # type: ignore[union-attr]
        elif piece.kind == "op":
            blocked.append(e.out_nchwc)
        else:
            blocked.append(False)

    def takes(j: int, s: int) -> bool:
        piece = parts[j].piece
        if piece.kind == "op" and piece.op.op != "identity":  # type: ignore[union-attr]
            ins = entries[j].in_nchwc
            return s < len(ins) and ins[s]
        return blocked[j]

    def cost(j: int) -> float:
        if basis == "kernel":
            return entries[j].kernel_ms  # type: ignore[return-value]
        return max(_stat(entries[j], statistic) - run, 0.0)

    by_part: dict[str, float] = {p.part: 0.0 for p in parts}  # in the network's order
    layout = 0.0
    fused: set[int] = set()
    if block:
        for j, p in enumerate(parts):  # residual adds fused into a convolution
            if _binary_add(p) and blocked[j] and any(
                    i >= 0 and parts[i].piece.kind == "op"
                    and parts[i].piece.op.op in FUSING_OPS  # type: ignore[union-attr]
                    and parts[i].piece.op.act is None  # type: ignore[union-attr]
                    and len(consumers.get(i, ())) == 1 for i in inputs[j]):
                fused.add(j)
            elif (p.piece.kind == "op" and p.piece.op.op == "identity"  # type: ignore[union-attr]
                  and j not in merged and inputs[j][0] in fused and blocked[j]
                  and len(consumers.get(inputs[j][0], ())) == 1):
                fused.add(j)  # and the activation after it, into the same convolution
        for i in range(-1, len(parts)):
            uses = consumers.get(i, [])
            if not uses and (i < 0 or i != output):
                continue
            shape = parts[i].piece.out if i >= 0 else parts[uses[0][0]].piece.ins[uses[0][1]]
            is_blocked = i >= 0 and blocked[i]
            wanted = [takes(j, s) for j, s in uses]
            full_out = is_blocked and (i == output or not all(wanted))
            full_in = not is_blocked and any(wanted)
            # what the pieces paid alone for reorders here (their profiled share of their
            # time); a reorder the network has too is priced the same, one no piece had alone
            # by the table's fitted cost
            out_paid = (entries[i].out_reorder * cost(i) if i >= 0 and
                        parts[i].piece.kind == "op" and entries[i].out_nchwc else None)
            in_paid = [((entries[j].in_reorder[s] if s < len(entries[j].in_reorder) else 0.0)
                        * cost(j), j) for j, s in uses if parts[j].piece.kind == "op"
                       and s < len(entries[j].in_nchwc) and entries[j].in_nchwc[s]]
            # the producer's side goes to its part, the consumers' to theirs
            here = parts[i].part if i >= 0 else parts[uses[0][0]].part
            changes = [(here, -(out_paid or 0.0))] + [(parts[j].part, -ms) for ms, j in in_paid]
            if full_out:
                changes.append((here, _reorder(table, "out", shape) if out_paid is None
                                else out_paid))
            if full_in:
                first = parts[in_paid[0][1] if in_paid else uses[0][0]].part
                changes.append((first, max(ms for ms, _ in in_paid) if in_paid
                                else _reorder(table, "in", shape)))
            for where, delta in changes:
                if delta:
                    by_part[where] += delta
                    layout += delta
    for j, p in enumerate(parts):
        if j not in fused and j not in merged:
            by_part[p.part] = by_part.get(p.part, 0.0) + cost(j)
    raw = run + sum(by_part.values())
    concat = {p.part: 0.0 for p in parts}
    for p in parts:
        if p.piece.kind == "concat":
            concat[p.part] += _values(p.piece.out) * table.fingerprint.batch / 1e6
    total_concat = sum(concat.values())
    if cal is None:
        return Prediction(ms=raw, raw_ms=raw, by_part={**by_part, "run": run},
                          pieces=len(parts), layout_ms=layout, basis=basis,
                          concat_mvalues=total_concat)
    _, scale, per_mvalue, constant = cal
    shown = {k: v * scale + per_mvalue * concat[k] for k, v in by_part.items()}
    shown["run"] = run * scale + constant
    # never below a run's own cost: a fitted constant (negative: a tenth of a millisecond
    # here) could otherwise take a tiny network below zero, and a score's log10 with it
    ms = max(scale * raw + per_mvalue * total_concat + constant, run, 1e-6)
    return Prediction(ms=ms, raw_ms=raw,
                      by_part=shown, pieces=len(parts), layout_ms=layout, calibrated=True,
                      basis=basis, concat_mvalues=total_concat)


def _values(shape: ir.Shape) -> int:
    return shape.c * (shape.h or 1) * (shape.w or 1)  # type: ignore[operator]


def predict(graph: ir.Graph, table: LatencyTable, statistic: str = "median") -> Prediction:
    """``graph``'s network's latency on the table's device, predicted (no onnxruntime call):
    a located error if the table lacks a piece it needs."""
    return predict_pieces(network_pieces(graph), table, graph.network, statistic)


def predict_ms(graph: ir.Graph, table: LatencyTable) -> float:
    """The predicted latency alone, in milliseconds (for a search's score)."""
    return predict(graph, table).ms


def calibration_record(flow: Pieces, table: LatencyTable, network: str,
                       measured_ms: float) -> dict:
    """What a calibration keeps of one measured network: its measured time and the
    predictor's uncalibrated sums on both bases (``kernel_ms`` None where the table has no
    kernel times), and the values it concatenates."""
    wall = predict_pieces(flow, table, network, basis="wall")
    has_kernels = all(table.entries[p.piece.key].kernel_ms is not None for p in flow.parts)
    kernel = predict_pieces(flow, table, network, basis="kernel").raw_ms if has_kernels else None
    r = lambda x: None if x is None else round(float(x), 6)  # noqa: E731
    return {"network": network, "measured_ms": r(measured_ms), "wall_ms": r(wall.raw_ms),
            "kernel_ms": r(kernel), "concat_mvalues": r(wall.concat_mvalues)}


def _weighted_fit(rows: list[list[float]], ys: list[float]) -> list[float]:
    """Least squares of ``ys`` on ``rows``, each row weighted by 1/y (relative errors)."""
    import numpy as np

    a = np.array(rows, dtype=float)
    y = np.array(ys, dtype=float)
    coef, *_ = np.linalg.lstsq(a / y[:, None], np.ones_like(y), rcond=None)
    return [float(c) for c in coef]


def calibrate(table: LatencyTable, records: list[dict]) -> dict:
    """Fit the table's calibration on measured networks (:func:`calibration_record`'s
    records; a version 1 record ``{"network", "predicted_ms", "measured_ms"}`` counts as its
    wall sum) and store it in the table. Measured figures must have the table's fingerprint
    (the caller checks).

    With at least :data:`MIN_FIT` networks and kernel times for all of them: ``measured =
    pieces_ms * kernel sum + concat_mvalues * values concatenated + constant_ms``, least
    squares weighted by 1/measured (each network's relative error counts alike); without a
    concatenation term if its coefficient comes out negative. Otherwise one scale of the
    wall sum, the median of the measured/predicted ratios: robust with two or three networks,
    where a fitted offset swamps the small ones."""
    import statistics

    rows = [{**r, "wall_ms": r.get("wall_ms", r.get("predicted_ms")),
             "kernel_ms": r.get("kernel_ms")} for r in records]
    rows = [r for r in rows if (r["measured_ms"] or 0) > 0 and (r["wall_ms"] or 0) > 0]
    if not rows:
        raise ShrinkError("a calibration needs at least one measured network")
    ys = [r["measured_ms"] for r in rows]
    terms = None
    if len(rows) >= MIN_FIT and all(r["kernel_ms"] for r in rows):
        a, b, c = _weighted_fit([[r["kernel_ms"], r["concat_mvalues"] or 0.0, 1.0]
                                 for r in rows], ys)
        if b < 0:
            (a, c), b = _weighted_fit([[r["kernel_ms"], 1.0] for r in rows], ys), 0.0
        if a > 0:
            terms = ("kernel", a, b, c)
    if terms is None:
        terms = ("wall", statistics.median(y / r["wall_ms"] for y, r in zip(ys, rows)), 0.0, 0.0)
    basis, a, b, c = terms
    table.calibration = {"basis": basis,
                         "terms": {"pieces_ms": round(a, 6), "concat_mvalues": round(b, 6),
                                   "constant_ms": round(c, 6)},
                         "networks": rows}
    return table.calibration


__all__ = ["BLOCKED_ACTS", "MIN_FIT", "Prediction", "calibrate", "calibration_record",
           "calibration_terms", "needed_keys", "predict", "predict_ms", "predict_pieces"]
