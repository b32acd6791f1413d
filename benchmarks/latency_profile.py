"""Where a network's time goes against its pieces': onnxruntime's own profile, by operator.

For each network named, its ONNX model and each of its pieces (``network_pieces``: what the
latency table measures) are profiled by onnxruntime (1 thread, batch 1, graph optimisation
"all", as the table is measured; 10 warm-up runs, then ``--runs`` profiled runs of the network
and half as many of each piece). The median kernel time of each node is summed by operator,
for the network and over its pieces (a piece that occurs n times counts n times). Where the
two differ, the latency model's sum of pieces cannot be right: a fusion the pieces lack
(Add, ReorderInput/Output) or a kernel that runs slower in the whole network (Conv, Concat).

    python benchmarks/latency_profile.py shrinkcnn_found cell00

Names: a spec of ``specs/`` or ``specs/zoo/`` as ``latency_model.py`` names them, or
``cellNN`` (random cell NN of ``latency_model_wall.json``, in the deployment network).
Measure on an idle machine. Writes ``benchmarks/results/latency_profile.json``.

``--kernel-model`` asks whether pieces' kernel times predict better than their wall times. It
profiles every piece of the 67 networks of ``latency_model_wall.json`` (``--runs`` runs each,
after 5 warm-up runs). It then predicts each network with the wall table, its entries' times
replaced by the pieces' summed kernel times (reorders included, so the table's reorder shares
still apply), and compares the predictions with the measured times: raw, times one scale, and
fitted with the pieces' output size and a constant (least squares weighted by 1/measured, each
network left out of its own fit). Nothing of it is in the product yet. Writes
``latency_kernel_model.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import latency_model as LM  # noqa: E402
from hostinfo import cpu_flags  # noqa: E402

OUT = LM.RESULTS / "latency_profile.json"


def _events(model, runs: int, warmup: int, *, warm_apart: bool) -> list[dict]:
    """onnxruntime's profile events of ``runs`` runs of ``model`` (1 thread, batch 1) after
    ``warmup`` runs: in a session of their own that is not profiled (``warm_apart``), or
    profiled with the rest."""
    from shrinkc.backends.latency.measure import Protocol, bound_runner, make_session, random_feeds

    protocol = Protocol(threads=1, batch=1, clock="wall")
    with tempfile.TemporaryDirectory(prefix="shrinkc-profile-") as tmp:
        if warm_apart:
            warm = make_session(model, protocol)
            feeds = random_feeds(warm, 1)
            run = bound_runner(warm, feeds)
            for _ in range(warmup):
                run()
            del warm
        session = make_session(model, protocol, None, profile=Path(tmp) / "profile")
        if not warm_apart:
            feeds = random_feeds(session, 1)
        run = bound_runner(session, feeds)
        for _ in range(runs if warm_apart else warmup + runs):
            run()
        with open(session.end_profiling(), encoding="utf-8") as f:
            return json.load(f)


def _kernel_medians(events: list[dict], skip: int = 0) -> dict[tuple[str, str], float]:
    """Each node's median kernel ms, by (operator, node): the table builder's parser."""
    from shrinkc.backends.latency.build import kernel_medians

    return {k: us / 1000 for k, us in kernel_medians(events, skip).items()}


def profile(model, runs: int) -> tuple[dict[str, float], float]:
    """(median kernel ms summed by operator, median model_run ms) over ``runs`` profiled
    runs after 10 unprofiled warm-up runs."""
    events = _events(model, runs, 10, warm_apart=True)
    by: Counter = Counter()
    for (op, _), ms in _kernel_medians(events).items():
        by[op] += ms
    total = [e["dur"] / 1000 for e in events
             if e.get("cat") == "Session" and e["name"] == "model_run"]
    return dict(by), statistics.median(total) if total else float("nan")


def graph_of(name: str):
    if name.startswith("cell"):
        nets = json.loads((LM.RESULTS / "latency_model_wall.json").read_text())["networks"]
        return LM.Space().graph(tuple(map(tuple, nets[name]["edges"])))
    return LM.spec_graphs()[name]["graph"]


def piece_kernels(model, runs: int) -> tuple[float, float]:
    """(kernel ms of a piece's nodes but its layout reorders, of its reorders): medians over
    ``runs`` profiled runs after 5 warm-up runs in the same session."""
    kernel = reorder = 0.0
    for (op, _), ms in _kernel_medians(_events(model, runs, 5, warm_apart=False), 5).items():
        if op.startswith("Reorder"):
            reorder += ms
        else:
            kernel += ms
    return kernel, reorder


def _loo(rows: list[dict], features) -> list[float]:
    """Each network's prediction from a least-squares fit (weighted by 1/measured) of
    measured on ``features(row)`` over the other networks."""
    import numpy as np

    a = np.array([features(r) for r in rows], dtype=float)
    y = np.array([r["measured_ms"] for r in rows])
    w = 1 / y
    out = []
    for i in range(len(rows)):
        keep = np.arange(len(rows)) != i
        coef, *_ = np.linalg.lstsq(a[keep] * w[keep, None], y[keep] * w[keep], rcond=None)
        out.append(float(a[i] @ coef))
    return out


def kernel_model(runs: int) -> None:
    from dataclasses import replace

    import shrinkc.backends.latency as L
    from shrinkc.backends.latency.pieces import network_pieces, piece_model

    nets = json.loads((LM.RESULTS / "latency_model_wall.json").read_text())["networks"]
    table = L.load(LM.RESULTS / "latency_model_wall_table.json")
    run_ms = table.overhead["run_ms"]
    graphs = {n: graph_of(n) for n in nets}
    pieces = {}
    for g in graphs.values():
        for part in network_pieces(g).parts:
            pieces.setdefault(part.piece.key, part.piece)
    t0 = time.monotonic()
    kernels = {k: piece_kernels(piece_model(p), runs) for k, p in pieces.items()}
    print(f"profiled {len(pieces)} pieces in {time.monotonic() - t0:.0f} s")
    rows = []
    for name, g in graphs.items():
        flow = network_pieces(g)
        kt = L.LatencyTable(table.fingerprint, table.protocol, dict(table.entries),
                            dict(table.overhead))
        for part in flow.parts:
            k = part.piece.key
            kt.entries[k] = replace(table.entries[k], ms=sum(kernels[k]) + run_ms)
        out_mv = sum(p.piece.out.c * (p.piece.out.h or 1) * (p.piece.out.w or 1)
                     for p in flow.parts) / 1e6
        rows.append({"network": name, "kind": nets[name]["kind"],
                     "measured_ms": nets[name]["measured_ms"],
                     "table_ms": L.predict_pieces(flow, table).ms,
                     "kernel_ms": L.predict_pieces(flow, kt).ms, "out_mvalues": out_mv})
    predictors = {
        "wall table (today's)": [r["table_ms"] for r in rows],
        "kernel table, raw": [r["kernel_ms"] for r in rows],
        "kernel table x one scale": _loo(rows, lambda r: [r["kernel_ms"]]),
        "kernel table, output size, constant": _loo(
            rows, lambda r: [r["kernel_ms"], r["out_mvalues"], 1.0]),
        "wall table, output size, constant": _loo(
            rows, lambda r: [r["table_ms"], r["out_mvalues"], 1.0]),
    }
    summary = {}
    print(f"{'predictor (leave-one-out where fitted)':<40} {'all':>5} {'cells':>6} {'specs':>6} "
          f"{'MAPE %':>7}")
    for label, pred in predictors.items():
        rel = [(p - r["measured_ms"]) / r["measured_ms"] for p, r in zip(pred, rows)]
        within = [abs(x) <= LM.WITHIN for x in rel]

        def frac(kind, within=within):
            sel = [w for w, r in zip(within, rows) if kind in (None, r["kind"])]
            return sum(sel) / len(sel)

        summary[label] = {"within_10": frac(None), "cells": frac("cell"), "specs": frac("spec"),
                          "mape": statistics.fmean(abs(x) for x in rel),
                          "tau_b": LM.kendall_tau_b(pred, [r["measured_ms"] for r in rows])}
        s = summary[label]
        print(f"{label:<40} {s['within_10']:>5.0%} {s['cells']:>6.0%} {s['specs']:>6.0%} "
              f"{100 * s['mape']:>7.1f}")
    out = LM.RESULTS / "latency_kernel_model.json"
    out.write_text(json.dumps({"benchmark": "latency_profile --kernel-model",
                               "command": " ".join(["python", *sys.argv]), "cpu": cpu_flags(),
                               "runs": runs, "pieces": {k: list(v) for k, v in kernels.items()},
                               "networks": rows, "summary": summary}, indent=1) + "\n")
    print(f"wrote {out.relative_to(LM.ROOT)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("networks", nargs="*")
    ap.add_argument("--runs", type=int, default=60, help="profiled runs of a network (60)")
    ap.add_argument("--kernel-model", action="store_true",
                    help="profile every piece of latency_model_wall.json's networks and "
                         "compare kernel-time predictions with the measured times")
    args = ap.parse_args()
    if args.kernel_model:
        return kernel_model(max(5, args.runs // 3))
    if not args.networks:
        ap.error("name at least one network, or --kernel-model")

    from shrinkc.backends.latency.pieces import network_pieces, piece_model
    from shrinkc.backends.onnx import generate

    out = {"benchmark": "latency_profile", "command": " ".join(["python", *sys.argv]),
           "cpu": cpu_flags(), "runs": args.runs, "networks": {}}
    for name in args.networks:
        graph = graph_of(name)
        net, net_run = profile(generate(graph), args.runs)
        pieces: Counter = Counter()
        cache: dict[str, tuple[dict, float]] = {}
        piece_runs = 0.0
        for part in network_pieces(graph).parts:
            key = part.piece.key
            if key not in cache:
                cache[key] = profile(piece_model(part.piece), max(5, args.runs // 2))
            pieces.update(cache[key][0])
            piece_runs += cache[key][1]
        out["networks"][name] = {"network": {"by_op": net, "model_run_ms": net_run},
                                 "pieces": {"by_op": dict(pieces), "model_run_ms": piece_runs,
                                            "distinct": len(cache)}}
        print(f"{name}: network {net_run:.3f} ms a run ({sum(net.values()):.3f} in kernels); "
              f"its pieces {piece_runs:.3f} ms ({sum(pieces.values()):.3f} in kernels)")
        print(f"  {'operator':<20} {'network ms':>10} {'pieces ms':>10}")
        for op in sorted(set(net) | set(pieces), key=lambda o: -max(net.get(o, 0), pieces[o])):
            print(f"  {op:<20} {net.get(op, 0.0):>10.3f} {pieces[op]:>10.3f}")
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(LM.ROOT)}")


if __name__ == "__main__":
    main()
