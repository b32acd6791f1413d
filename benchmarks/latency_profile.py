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
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import latency_model as LM  # noqa: E402
from hostinfo import cpu_flags  # noqa: E402

OUT = LM.RESULTS / "latency_profile.json"


def profile(model, runs: int) -> tuple[dict[str, float], float]:
    """(median kernel ms summed by operator, median model_run ms) over ``runs`` profiled
    runs after 10 unprofiled warm-up runs."""
    from shrinkc.backends.latency.measure import Protocol, bound_runner, make_session, random_feeds

    protocol = Protocol(threads=1, batch=1, clock="wall")
    with tempfile.TemporaryDirectory(prefix="shrinkc-profile-") as tmp:
        warm = make_session(model, protocol)
        feeds = random_feeds(warm, 1)
        run = bound_runner(warm, feeds)
        for _ in range(10):
            run()
        del warm
        session = make_session(model, protocol, None, profile=Path(tmp) / "profile")
        run = bound_runner(session, feeds)
        for _ in range(runs):
            run()
        with open(session.end_profiling(), encoding="utf-8") as f:
            events = json.load(f)
    kernels: dict[tuple[str, str], list[float]] = defaultdict(list)
    total = []
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            kernels[(e["args"].get("op_name", ""), e["name"])].append(e["dur"] / 1000)
        elif e.get("cat") == "Session" and e["name"] == "model_run":
            total.append(e["dur"] / 1000)
    by: Counter = Counter()
    for (op, _), durs in kernels.items():
        by[op] += statistics.median(durs)
    return dict(by), statistics.median(total) if total else float("nan")


def graph_of(name: str):
    if name.startswith("cell"):
        nets = json.loads((LM.RESULTS / "latency_model_wall.json").read_text())["networks"]
        return LM.Space().graph(tuple(map(tuple, nets[name]["edges"])))
    return LM.spec_graphs()[name]["graph"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("networks", nargs="+")
    ap.add_argument("--runs", type=int, default=60, help="profiled runs of a network (60)")
    args = ap.parse_args()

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
