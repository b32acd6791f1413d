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
* with a calibration in the table (fitted on measured networks, :func:`calibrate`):
  ``scale * that + offset_ms``.

:func:`space_keys` (``space.py``) lists what a search space needs, for a table built before a
search; :func:`predict_ms` is the number alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shrinkc.compiler import ir
from shrinkc.compiler.errors import ShrinkError

from .pieces import Pieces, network_pieces
from .table import Entry, LatencyTable

BLOCKED_ACTS = frozenset({"relu", "sigmoid", "tanh"})
"""Activations onnxruntime runs in the blocked layout when their input is blocked."""
FUSING_OPS = frozenset({"conv", "sepconv", "dwconv"})  # end in a Conv a Sum can fuse into
STATISTICS = ("median", "min")


@dataclass(frozen=True)
class Prediction:
    """A predicted latency (ms) and where it comes from."""

    ms: float  # calibrated where the table has a calibration
    raw_ms: float  # before calibration
    by_part: dict[str, float] = field(default_factory=dict)  # stem, stages, head, run
    pieces: int = 0
    layout_ms: float = 0.0  # the layout corrections (included)
    calibrated: bool = False

    def to_dict(self) -> dict:
        r = lambda x: round(float(x), 4)  # noqa: E731
        return {"predicted_ms": r(self.ms), "raw_ms": r(self.raw_ms),
                "layout_correction_ms": r(self.layout_ms), "calibrated": self.calibrated,
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


def predict_pieces(flow: Pieces, table: LatencyTable, what: str = "the network",
                   statistic: str = "median") -> Prediction:
    """The prediction for a network's pieces (see the module's documentation)."""
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}")
    parts = flow.parts
    table.require({p.piece.key for p in parts}, what)
    entries = [table.entries[p.piece.key] for p in parts]
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
    cal = table.calibration
    scale, offset = (cal["scale"], cal["offset_ms"]) if cal else (1.0, 0.0)
    shown = {k: v * scale for k, v in by_part.items()}
    shown["run"] = run * scale + offset
    return Prediction(ms=scale * raw + offset, raw_ms=raw, by_part=shown, pieces=len(parts),
                      layout_ms=layout, calibrated=cal is not None)


def predict(graph: ir.Graph, table: LatencyTable, statistic: str = "median") -> Prediction:
    """``graph``'s network's latency on the table's device, predicted (no onnxruntime call):
    a located error if the table lacks a piece it needs."""
    return predict_pieces(network_pieces(graph), table, graph.network, statistic)


def predict_ms(graph: ir.Graph, table: LatencyTable) -> float:
    """The predicted latency alone, in milliseconds (for a search's score)."""
    return predict(graph, table).ms


def calibrate(table: LatencyTable, pairs: list[tuple[str, float, float]]) -> dict:
    """Fit ``measured = scale * predicted`` over ``(network, raw predicted ms, measured ms)``
    (the median of the networks' measured/predicted ratios) and store it in the table;
    measured figures must have the table's fingerprint (the caller checks).

    One scale, no offset: pieces measured alone run warm in cache, so a whole network is
    slower than their sum by a fraction (``benchmarks/latency_model.py``: 0.80 of measured at
    the median over 67 networks); a scale fitted on the other networks brought the error to
    6.0% (MAPE, leave-one-out), where a least-squares scale and offset gave 18%, its offset
    swamping the smallest networks. (A table with an ``offset_ms`` still predicts with it.)"""
    import statistics

    ratios = [m / p for _, p, m in pairs if p > 0 and m > 0]
    if not ratios:
        raise ShrinkError("a calibration needs at least one measured network")
    table.calibration = {"scale": round(statistics.median(ratios), 6), "offset_ms": 0.0,
                         "networks": [{"network": name, "predicted_ms": round(p, 4),
                                       "measured_ms": round(m, 4)} for name, p, m in pairs]}
    return table.calibration


__all__ = ["BLOCKED_ACTS", "Prediction", "calibrate", "needed_keys", "predict", "predict_ms",
           "predict_pieces"]
