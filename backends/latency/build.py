"""Building a latency table: each piece measured alone by the one routine
(``measure.py``), the layout onnxruntime ran it in read from the graph it optimised, and
the overhead terms the predictor adds or subtracts (a run's, a node's, a layout reorder's).

* ``run_ms`` and ``node_ms``: a chain of 1 and of 33 Relu nodes on one value per batch item;
  ``node_ms`` is the slope, ``run_ms`` the chain of one less its node: what a run costs
  beyond its nodes. A piece measured alone pays ``run_ms`` once; a network pays it once in all.
* ``nchwc_block`` and ``reorder_in`` / ``reorder_out``: where onnxruntime's CPU provider runs
  convolutions in its blocked layout (NCHWc; x86), a piece measured alone reorders its input
  into it and its output back, which a network whose neighbouring pieces are blocked too
  does not. What a piece's reorders took of its time is read from onnxruntime's profile of
  it (a share, kept in its entry); a reorder no piece had alone is priced by a fit of both
  reorders measured alone at up to six sizes spanning the pieces' outputs
  (:func:`reorder_sizes`): ``ms + ms_per_mvalue * values / 1e6`` (least squares, the run
  overhead subtracted).
* each piece's ``kernel_ms``: the sum of its nodes' median kernel times in the same profile
  (:data:`PROFILE_RUNS` runs after :data:`PROFILE_WARMUP`), what a calibrated table predicts
  from (``predict.py``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from shrinkc.compiler import ir
from shrinkc.compiler.errors import ShrinkError

from .fingerprint import Fingerprint
from .measure import (
    Protocol,
    bound_runner,
    make_session,
    measure_model,
    measure_session,
    random_feeds,
)
from .pieces import NCHWC_DOMAIN, Piece, chain_model, piece_model, reorder_model
from .table import Entry, LatencyTable

REORDER_SIZES = ((16, 7, 7), (64, 14, 14), (128, 28, 28), (64, 56, 56), (32, 112, 112),
                 (64, 112, 112))
CHAIN = 33
PROFILE_RUNS = 60  # kernel times of 20 runs a piece left the calibrated model 3-5 points worse
PROFILE_WARMUP = 5

Progress = Callable[[int, int, str], None]
"""``(done, total, what)``: called before each measurement of a table being built."""


def _layout(path: Path) -> tuple[tuple[bool, ...], bool]:
    """Which graph inputs onnxruntime reordered into NCHWc, and whether the output came out
    of a reorder, in the optimised model at ``path``."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    g = model.graph
    reordered_in = {i for n in g.node if n.op_type == "ReorderInput" and n.domain == NCHWC_DOMAIN
                    for i in n.input}
    reordered_out = {o for n in g.node if n.op_type == "ReorderOutput"
                     and n.domain == NCHWC_DOMAIN for o in n.output}
    inits = {t.name for t in g.initializer}
    ins = tuple(i.name in reordered_in for i in g.input if i.name not in inits)
    return ins, any(o.name in reordered_out for o in g.output)


def kernel_medians(events: list[dict], skip: int = 0) -> dict[tuple[str, str], float]:
    """Each node's median kernel time (microseconds) in onnxruntime's profile ``events``, by
    (operator, node name), its first ``skip`` runs left out where it ran more often."""
    import statistics

    durs: dict[tuple[str, str], list[float]] = {}
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            args = e.get("args", {})
            durs.setdefault((args.get("op_name", ""), e["name"]), []).append(float(e["dur"]))
    return {k: statistics.median(v[skip:] if len(v) > skip else v) for k, v in durs.items()}


def _profile(session, feeds: dict, runs: int, warmup: int, inputs: list[str]
             ) -> tuple[float, tuple[float, ...], float]:
    """onnxruntime's profile of ``warmup + runs`` runs, each node's first ``warmup`` left
    out: the sum of the nodes' median kernel times (ms), and the share of it the piece's
    ReorderInput nodes took, per blocked graph input, and its ReorderOutput nodes took."""
    import json
    import os

    run = bound_runner(session, feeds)
    for _ in range(warmup + runs):
        run()
    path = session.end_profiling()
    try:
        with open(path, encoding="utf-8") as f:
            events = json.load(f)
    finally:
        os.remove(path)
    med = kernel_medians(events, warmup)
    total = sum(med.values())
    if not total:
        return 0.0, (0.0,) * len(inputs), 0.0
    out = sum(v for (op, _), v in med.items() if op == "ReorderOutput") / total
    ins = sum(v for (op, _), v in med.items() if op == "ReorderInput") / total
    return total / 1000, tuple(ins / max(1, len(inputs)) for _ in inputs), out


def measure_piece(piece: Piece, protocol: Protocol, profile_runs: int = PROFILE_RUNS
                  ) -> tuple[Entry, Fingerprint]:
    """A piece's latency alone, the layout onnxruntime ran it in, and from onnxruntime's
    profile of ``profile_runs`` further runs (after :data:`PROFILE_WARMUP`) its kernel time
    and what its layout reorders took of it."""
    model = piece_model(piece)
    with tempfile.TemporaryDirectory(prefix="shrinkc-latency-") as tmp:
        path = Path(tmp) / "optimized.onnx"
        try:
            probe = make_session(model, protocol, path, profile=Path(tmp) / "profile")
        except Exception as e:  # onnxruntime's own error types
            text = str(e).strip()
            raise ShrinkError(f"onnxruntime cannot run the piece '{piece.key}': "
                              f"{text.splitlines()[0][:300] if text else type(e).__name__}"
                              ) from None
        ins, out = _layout(path) if path.exists() else ((False,) * len(piece.ins), False)
        feeds = random_feeds(probe, protocol.batch)
        blocked_inputs = [n for n, b in zip(feeds, ins) if b]
        kernel, per, share_out = _profile(probe, feeds, profile_runs, PROFILE_WARMUP,
                                          blocked_inputs)
        shares: tuple[tuple[float, ...], float] = ((0.0,) * len(ins), 0.0)
        if any(ins) or out:
            it = iter(per)
            shares = (tuple(next(it) if b else 0.0 for b in ins), share_out)
        del probe
    session = make_session(model, protocol)
    fp = protocol.fingerprint(tuple(piece.ins[0].as_list()))
    m = measure_session(session, feeds, protocol, fp)
    return Entry.of(m, ins, out, *shares, kernel_ms=kernel), fp


def nchwc_block() -> int:
    """onnxruntime's NCHWc block size on this CPU (channels per block), 0 where it has no
    blocked layout."""
    import numpy as np

    try:
        session = make_session(reorder_model("in", ir.Shape(c=4, h=1, w=1), 4), Protocol())
        return int(session.run(None, {"x": np.zeros((1, 4, 1, 1), np.float32)})[0].shape[1])
    except Exception:  # no NCHWc kernels in this build or on this CPU
        return 0


def _fit(points: list[tuple[float, float]]) -> dict:
    """Least squares ``y = a + b x`` over ``(x, y)``; ``a`` and ``b`` at least 0."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    b = max(b, 0.0)
    a = max(my - b * mx, 0.0)
    return {"ms": round(a, 6), "ms_per_mvalue": round(b, 6),
            "points": [[round(x, 6), round(y, 6)] for x, y in points]}


def reorder_sizes(pieces: Iterable[Piece], block: int = 16) -> tuple[tuple[int, int, int], ...]:
    """Up to six tensor sizes spanning those of ``pieces``' outputs (channels rounded up to a
    block), smallest to largest, to fit the reorder costs on; :data:`REORDER_SIZES` where the
    pieces have no image-shaped output."""
    shapes = sorted({(-(-p.out.c // block) * block, p.out.h, p.out.w) for p in pieces
                     if not p.out.flat}, key=lambda s: (s[0] * s[1] * s[2], s))
    if not shapes:
        return REORDER_SIZES
    if len(shapes) <= 6:
        return tuple(shapes)  # type: ignore[arg-type]
    return tuple(shapes[round(i * (len(shapes) - 1) / 5)] for i in range(6))  # type: ignore[misc]


def measure_overhead(protocol: Protocol, progress: Progress | None = None,
                     sizes: tuple[tuple[int, int, int], ...] = REORDER_SIZES) -> dict:
    """The overhead terms of a table (see the module's documentation); the reorders are
    measured at ``sizes`` (C, H, W)."""
    steps = 2 + 2 * len(sizes)
    if progress:
        progress(0, steps, "overhead: a run and a node")
    one = measure_model(chain_model(1), protocol).median_ms
    many = measure_model(chain_model(CHAIN), protocol).median_ms
    node = max((many - one) / (CHAIN - 1), 0.0)
    run = max(one - node, 0.0)
    out: dict = {"run_ms": round(run, 6), "node_ms": round(node, 6),
                 "kernel_profile": {"runs": PROFILE_RUNS, "warmup": PROFILE_WARMUP}}
    block = nchwc_block()
    out["nchwc_block"] = block
    if block:
        done = 2
        for direction in ("in", "out"):
            points = []
            for c, h, w in sizes:
                if progress:
                    progress(done, steps, f"overhead: reorder {direction} {c}x{h}x{w}")
                done += 1
                c = -(-c // block) * block
                m = measure_model(reorder_model(direction, ir.Shape(c=c, h=h, w=w), block),
                                  protocol)
                points.append((c * h * w * protocol.batch / 1e6, max(m.median_ms - run, 0.0)))
            out[f"reorder_{direction}"] = _fit(points)
    return out


def build_table(pieces: Iterable[Piece], protocol: Protocol,
                table: LatencyTable | None = None,
                progress: Progress | None = None) -> LatencyTable:
    """A table with every piece of ``pieces`` (those ``table`` lacks measured here and added
    to it; refused if ``table`` was measured with another fingerprint)."""
    fp = protocol.fingerprint().device()
    if table is None:
        table = LatencyTable(fp, protocol)
    else:
        from .fingerprint import check_same

        check_same(table.fingerprint, fp, f"{table.source or 'the table'} cannot take "
                   "measurements from here", table._loc(),
                   "build a new table (--save-table) for this machine and these settings")
    todo = {p.key: p for p in pieces if p.key not in table.entries}
    sizes = reorder_sizes(todo.values())
    total = len(todo) + (0 if table.overhead else 2 + 2 * len(sizes))
    if not table.overhead:
        table.overhead = measure_overhead(protocol, progress, sizes)
    done = total - len(todo)
    for key, piece in sorted(todo.items()):
        if progress:
            progress(done, total, key)
        entry, piece_fp = measure_piece(piece, protocol)
        table.add(key, entry, piece_fp)
        done += 1
    return table


__all__ = ["PROFILE_RUNS", "PROFILE_WARMUP", "REORDER_SIZES", "build_table", "kernel_medians",
           "measure_overhead", "measure_piece", "nchwc_block", "reorder_sizes"]
