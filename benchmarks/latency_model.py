"""How well the latency table predicts a whole network's latency: predicted against measured.

Networks (image networks only; the language models of ``specs/`` are skipped):

* ``--cells`` (50) random cells of ``specs/shrinkcnn_space.shrink``, each in the search's
  deployment network (ShrinkCNN_ImageNet at 3x224x224, its ``deploy`` line). Drawn as
  ``benchmarks/shrink_search.py`` draws them (``Space.random_cells``): seeded (``--seed``),
  a random number of edges from 2 to all, a random subset of that size, cleaned up (edges
  out of nodes the input cannot reach dropped), kept if valid and not drawn before (by cell
  hash); so the cells span every edge count;
* every image spec of ``specs/`` and ``specs/zoo/``: each file's default network (the last
  it defines), and for ``specs/shrinkcnn_space.shrink`` also its deployment network with the
  complete cell (``shrinkcnn_space@deploy``).

The table: ONE latency table (``backends/latency``) with every piece any candidate of the
space can put into the deployment network (``space_pieces`` on the complete cell) and the
pieces of every spec network, built on this machine before anything else (pieces measured
alone by ``measure_piece``; protocol: 1 thread, batch 1, the ``--clock``, onnxruntime's
defaults otherwise, a piece's timed runs stopping when the median's 95% interval is within
+-1%, at 1000 runs, or after ``--piece-seconds`` (2) of timed runs), saved to
``benchmarks/results/latency_model_table.json`` as it grows; a rerun loads it and measures
only what it lacks. Predicted: ``L.predict(graph, table).ms`` (the table has no
calibration: the raw prediction).

Measured: every network twice, in two separate passes over all networks (pass 1 in a seeded
shuffled order mixing cells and specs, pass 2 in the reverse order), each a fresh
onnxruntime session of a freshly generated model (random weights) measured by
``measure_model`` with the table's fingerprint (same clock, threads, batch, spinning, graph
optimisation) and at most ``--network-seconds`` (3) of timed runs after 10 warm-up runs (at
least 20 runs). A network's measured latency is the median of its two passes' medians;
pass 1 against pass 2 is the measurement's own noise (``|a - b| / mean``: median, 90th
percentile, fraction within +-10%, Kendall tau between the passes).

Clock: ``--clock cpu`` (default) times each run by this process's CPU time, which with one
thread is the latency the run would have had alone: robust while another job uses the other
core; ``--clock wall`` for an idle machine (results then go to ``*_wall*.json``). The
fingerprint (CPU model, instruction sets, onnxruntime, threads, clock, ...) is recorded with
every timing; figures of two fingerprints are never mixed.

Reported, for the random cells, the spec networks and all together: Kendall tau-b between
predicted and measured, the mean absolute percentage error (MAPE), the fraction within +-10%
of measured and the median ratio predicted/measured; the same for the baseline to beat, MACs
as a predictor (``measured ~ a * MACs + b``, least squares over all networks, in-sample and
leave-one-out; its tau is MACs' own); and the product's calibration (``L.calibrate`` on each
network's ``L.calibration_record``: kernel times, values concatenated, a constant) fitted on
the other networks (leave-one-out), and fitted on the random cells alone (what ``shrinkc
latency --calibrate-cells`` gives a user). Targets (issue), judged on the calibrated
leave-one-out predictor: at least 90% of networks within +-10%, tau at least 0.9. A
per-network table for the specs, the networks outside +-10%, and a summary table are
printed. Another ``--seed`` writes ``*_seedN.json`` and its own table: fresh cells to judge a
change of the predictor on (``--seed 4321``: 6.3 minutes on an idle machine).

    nice -n 10 python benchmarks/latency_model.py [--cells 50] [--seed 1234] [--clock cpu|wall]
                                                   [--quick]

``--quick``: 3 cells and 3 specs, a table of only the pieces they need, results to
``latency_model_quick.json`` (a smoke run never overwrites the real results). Writes
``benchmarks/results/latency_model.json`` after every measured network (every network's
figures, both passes in full, the protocols, fingerprint, table path and the statistics);
a rerun skips what is done. On the 2-core Xeon this was written on, at ``nice -n 5`` while a
search held both cores, the first full run took 36 minutes: 17 for the table's 1,779 pieces
(1,353 of them the space's), 19 for the two passes over 67 networks. Needs onnx and
onnxruntime.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import shrink_search_space  # noqa: E402
from hostinfo import cpu_flags  # noqa: E402

SPACE_SPEC = "specs/shrinkcnn_space.shrink"
RESULTS = ROOT / "benchmarks" / "results"
TARGET_WITHIN = 0.9  # of networks within +-10% of measured
TARGET_TAU = 0.9
WITHIN = 0.10
GROUPS = ("cells", "specs", "all")
DASH = "-"


# --------------------------------------------------------------------------- networks


DEFAULT_SEED = 1234


def spec_files() -> list[Path]:
    """The image specs of specs/ and specs/zoo/ (language models skipped, as tests/conftest.py
    does)."""
    files = sorted((ROOT / "specs").glob("*.shrink")) + sorted((ROOT / "specs" / "zoo").glob("*.shrink"))
    return [p for p in files if "recurrent cell" not in p.read_text()]


def spec_graphs(limit: int | None = None) -> dict[str, dict]:
    """name -> {graph, spec, how}: each spec's default network, and the space spec's
    deployment network with the complete cell."""
    from shrinkc.compiler.deploy import deployment_graph
    from shrinkc.compiler.pipeline import build_graph, check

    out: dict[str, dict] = {}
    for path in spec_files():
        rel = path.relative_to(ROOT).as_posix()
        name = rel.removeprefix("specs/").removesuffix(".shrink")
        checked = check(path)
        out[name] = {"graph": build_graph(checked), "spec": rel, "how": "default network"}
        if rel == SPACE_SPEC:
            out[f"{name}@deploy"] = {"graph": deployment_graph(checked), "spec": rel,
                                     "how": "deployment network, complete cell"}
        if limit is not None and len(out) >= limit:
            break
    return dict(list(out.items())[:limit])


class Space:
    """The shipped CNN space, its deployment network, and random cells of it."""

    def __init__(self) -> None:
        from shrinkc.compiler import ir
        from shrinkc.compiler.pipeline import check

        self.checked = check(ROOT / SPACE_SPEC)
        self.parsed = self.checked.sources.main
        self.space = next(i for i in self.parsed.items if isinstance(i, ir.SpaceDef))

    def graph(self, edges):
        from shrinkc.compiler.deploy import deployment_graph

        return deployment_graph(self.checked, None, edges)

    def full_graph(self):
        from shrinkc.compiler.passes.space import complete_edges, node_count

        return self.graph(complete_edges(node_count(self.space)))

    # random cells drawn by shrink_search.py's own method (the same cells for the same seed)
    cell_hash = shrink_search_space.Space.cell_hash
    random_cells = shrink_search_space.Space.random_cells


# --------------------------------------------------------------------------- statistics


def kendall_tau_b(x: list[float], y: list[float]) -> float:
    """Kendall's tau-b (ties in either counted as neither concordant nor discordant)."""
    n = len(x)
    conc = disc = tie_x = tie_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx = (x[i] > x[j]) - (x[i] < x[j])
            dy = (y[i] > y[j]) - (y[i] < y[j])
            tie_x += dx == 0
            tie_y += dy == 0
            s = dx * dy
            conc += s > 0
            disc += s < 0
    n0 = n * (n - 1) // 2
    den = math.sqrt((n0 - tie_x) * (n0 - tie_y))
    return (conc - disc) / den if den else float("nan")


def quantile(xs: list[float], q: float) -> float:
    from shrinkc.backends.latency.measure import quantile as q_sorted

    return q_sorted(sorted(xs), q)


def linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares ``y = a x + b``."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    a = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return a, my - a * mx


def errors(pred: list[float], meas: list[float], rank_by: list[float] | None = None) -> dict:
    """Tau-b (of ``rank_by`` where given, else of ``pred``) against measured, MAPE, the
    fraction within +-10%, the median ratio predicted/measured, the worst error."""
    rel = [(p - m) / m for p, m in zip(pred, meas)]
    return {"n": len(rel),
            "tau_b": round(kendall_tau_b(rank_by or pred, meas), 4) if len(rel) > 1 else None,
            "mape": round(statistics.fmean(abs(r) for r in rel), 4) if rel else None,
            "within_10": round(sum(abs(r) <= WITHIN for r in rel) / len(rel), 4) if rel else None,
            "median_ratio": round(statistics.median(p / m for p, m in zip(pred, meas)), 4)
            if rel else None,
            "max_abs_err": round(max(abs(r) for r in rel), 4) if rel else None}


def noise(a: list[float], b: list[float]) -> dict:
    """Pass 1 against pass 2: ``|a - b| / mean(a, b)``'s median and 90th percentile, the
    fraction within +-10% of each other, tau between the passes."""
    d = [abs(x - y) / ((x + y) / 2) for x, y in zip(a, b)]
    return {"n": len(d), "median_rel_diff": round(statistics.median(d), 4) if d else None,
            "p90_rel_diff": round(quantile(d, 0.9), 4) if d else None,
            "max_rel_diff": round(max(d), 4) if d else None,
            "within_10": round(sum(x <= WITHIN for x in d) / len(d), 4) if d else None,
            "tau_b_passes": round(kendall_tau_b(a, b), 4) if len(d) > 1 else None}


def statistics_of(nets: dict[str, dict], names: list[str]) -> dict:
    """Every statistic of the report over the networks ``names`` (all measured twice)."""
    done = [n for n in names if len(nets[n].get("passes", {})) == 2]
    groups = {"cells": [n for n in done if nets[n]["kind"] == "cell"],
              "specs": [n for n in done if nets[n]["kind"] == "spec"], "all": done}
    out: dict = {"baseline_fit": None}
    if len(done) >= 3:
        macs = [nets[n]["macs"] for n in done]
        meas = [nets[n]["measured_ms"] for n in done]
        a, b = linear_fit(macs, meas)
        loo = {}
        for i, n in enumerate(done):
            ai, bi = linear_fit(macs[:i] + macs[i + 1:], meas[:i] + meas[i + 1:])
            loo[n] = ai * macs[i] + bi
        out["baseline_fit"] = {"ms_per_gmac": round(a * 1e9, 4), "offset_ms": round(b, 4),
                               "over": len(done)}
        for n in done:
            nets[n]["macs_fit_ms"] = round(a * nets[n]["macs"] + b, 4)
            nets[n]["macs_loo_ms"] = round(loo[n], 4)
        # the table calibrated by one scale, as `shrinkc latency --calibrate` does with a few
        # measured networks: the median measured/predicted ratio of the OTHER networks
        ratios = {n: nets[n]["measured_ms"] / nets[n]["predicted"]["predicted_ms"] for n in done}
        for n in done:
            scale = statistics.median(r for m, r in ratios.items() if m != n)
            nets[n]["scaled_loo_ms"] = round(scale * nets[n]["predicted"]["predicted_ms"], 4)
        # the product's calibration (`shrinkc latency --measure --calibrate`, L.calibrate:
        # kernel times, values concatenated, a constant), fitted on the OTHER networks; and
        # fitted on the random cells alone (what a user calibrating on the search space
        # would have), predicting every network
        if all("record" in nets[n] for n in done):
            cells = [n for n in done if nets[n]["kind"] == "cell"]
            for n in done:
                nets[n]["calibrated_loo_ms"] = round(calibrated(
                    [nets[m]["record"] for m in done if m != n], nets[n]["record"]), 4)
            if len(cells) >= 6:
                out["cells_calibration"] = fit_calibration([nets[m]["record"] for m in cells])
                for n in done:
                    others = [nets[m]["record"] for m in cells if m != n]
                    nets[n]["cells_calibrated_ms"] = round(calibrated(others, nets[n]["record"]), 4)
            out["calibration"] = fit_calibration([nets[m]["record"] for m in done])
    for g, members in groups.items():
        meas = [nets[n]["measured_ms"] for n in members]
        res = {"table": errors([nets[n]["predicted"]["predicted_ms"] for n in members], meas),
               "noise": noise([nets[n]["passes"]["1"]["median_ms"] for n in members],
                              [nets[n]["passes"]["2"]["median_ms"] for n in members])}
        if out["baseline_fit"] is not None and members:
            res["table_scaled_loo"] = errors([nets[n]["scaled_loo_ms"] for n in members], meas)
            for k in ("calibrated_loo", "cells_calibrated"):
                if all(f"{k}_ms" in nets[n] for n in members):
                    res[k] = errors([nets[n][f"{k}_ms"] for n in members], meas)
            macs = [float(nets[n]["macs"]) for n in members]
            res["macs_fit"] = errors([nets[n]["macs_fit_ms"] for n in members], meas, macs)
            res["macs_loo"] = errors([nets[n]["macs_loo_ms"] for n in members], meas, macs)
        out[g] = res
    return out


def fit_calibration(records: list[dict]) -> dict:
    """``L.calibrate``'s calibration fitted on ``records`` (a scratch table's)."""
    import shrinkc.backends.latency as L

    scratch = L.LatencyTable(L.current(), L.Protocol())  # calibrate sets its calibration only
    cal = L.calibrate(scratch, records)
    return {"basis": cal["basis"], "terms": cal["terms"], "over": len(records)}


def calibrated(records: list[dict], record: dict) -> float:
    """``record``'s network predicted by the calibration fitted on ``records``."""
    cal = fit_calibration(records)
    t = cal["terms"]
    raw = record["kernel_ms"] if cal["basis"] == "kernel" else record["wall_ms"]
    return t["pieces_ms"] * raw + t["concat_mvalues"] * record["concat_mvalues"] + t["constant_ms"]


# --------------------------------------------------------------------------- table


def build(pieces: dict, path: Path, protocol, log) -> tuple[object, float]:
    """The table at ``path`` with every piece of ``pieces`` (measured here where it lacks
    them), saved as it grows; and the seconds it took."""
    import shrinkc.backends.latency as L

    table = L.load(path) if path.exists() else None
    if table is not None:
        L.check_same(table.fingerprint, protocol.fingerprint().device(),
                     f"{path} cannot take measurements from here")
    else:
        table = L.LatencyTable(protocol.fingerprint().device(), protocol)
    todo = [p for k, p in pieces.items() if k not in table.entries]
    t0 = time.monotonic()
    state = {"saved": time.monotonic(), "shown": -1}
    log(f"table {path.relative_to(ROOT)}: {len(pieces)} pieces needed, "
        f"{len(pieces) - len(todo)} already measured, {len(todo)} to measure")
    if not todo and table.overhead:
        return table, 0.0

    def progress(done: int, total: int, what: str) -> None:
        now = time.monotonic()
        if table.overhead and now - state["saved"] > 30:  # type: ignore[attr-defined]
            L.save(table, path)
            state["saved"] = now
        if done // 50 != state["shown"] // 50 or done < 3:
            state["shown"] = done
            el = now - t0
            eta = el / done * (total - done) if done else float("nan")
            log(f"  table {done + 1}/{total} ({el:.0f} s, about {eta / 60:.0f} min left): "
                f"{what[:70]}")

    L.build_table(todo, table.protocol, table, progress)  # type: ignore[attr-defined]
    L.save(table, path)
    return table, time.monotonic() - t0


# --------------------------------------------------------------------------- measuring


def measure(graph, protocol, table_fp) -> tuple[dict, float]:
    """One measurement of ``graph``'s network: a fresh model and session."""
    import shrinkc.backends.latency as L
    from shrinkc.backends.onnx import generate

    t = time.monotonic()
    m = L.measure_model(generate(graph), protocol)
    L.check_same(table_fp, m.fingerprint.device(), f"{graph.network}'s measurement")
    return m.to_dict(), time.monotonic() - t


def write(path: Path, out: dict) -> None:
    from shrinkc.compiler.fsutil import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(out, indent=1, allow_nan=False) + "\n")


# --------------------------------------------------------------------------- report


def fmt(x, spec: str = ".3f", none: str = "-") -> str:
    return none if x is None else format(x, spec)


def report(out: dict, names: list[str]) -> None:
    nets, st = out["networks"], out["stats"]
    done = [n for n in names if "measured_ms" in nets[n] and "predicted" in nets[n]]
    fp = out["fingerprint"]
    print(f"\nLatency model: predicted (table) against measured, batch 1, 1 thread, "
          f"{fp['clock']} clock; {fp['cpu_model']}, onnxruntime {fp['onnxruntime']}; load "
          f"average {out['machine']['load_average_start']:.2f} at start, "
          f"{out['machine']['load_average_end']:.2f} at end")
    head = (f"{'network':<28} {'MACs':>8} {'pred ms':>8} {'meas ms':>8} {'err %':>7} "
            f"{'pass1':>8} {'pass2':>8} {'noise %':>7} {'MACs fit %':>10}")

    def row(n: str) -> str:
        d = nets[n]
        p, m = d["predicted"]["predicted_ms"], d["measured_ms"]
        a, b = d["passes"]["1"]["median_ms"], d["passes"]["2"]["median_ms"]
        fit = d.get("macs_fit_ms")
        return (f"{n:<28} {d['macs'] / 1e6:>7.1f}M {p:>8.2f} {m:>8.2f} "
                f"{100 * (p - m) / m:>+7.1f} {a:>8.2f} {b:>8.2f} "
                f"{100 * abs(a - b) / ((a + b) / 2):>7.1f} "
                f"{fmt(None if fit is None else 100 * (fit - m) / m, '>+10.1f', DASH.rjust(10))}")

    print("\nSpec networks")
    print(head)
    print("-" * len(head))
    for n in done:
        if nets[n]["kind"] == "spec":
            print(row(n))
    cells = [n for n in done if nets[n]["kind"] == "cell"]
    misses = [n for n in done if abs(nets[n]["predicted"]["predicted_ms"] - nets[n]["measured_ms"])
              > WITHIN * nets[n]["measured_ms"]]
    print(f"\nNetworks outside +-10% of measured ({len(misses)} of {len(done)}; layout: the "
          "predictor's layout correction, ms)")
    if misses:
        print(head + f" {'layout':>7}")
        for n in sorted(misses, key=lambda n: -abs(nets[n]["predicted"]["predicted_ms"]
                                                    / nets[n]["measured_ms"] - 1)):
            print(row(n) + f" {nets[n]['predicted']['layout_correction_ms']:>+7.2f}")
    if cells:
        ms = [nets[n]["measured_ms"] for n in cells]
        print(f"\nRandom cells: {len(cells)}, {min(nets[n]['edges_count'] for n in cells)} to "
              f"{max(nets[n]['edges_count'] for n in cells)} edges, measured "
              f"{min(ms):.1f} to {max(ms):.1f} ms")
    fit = st.get("baseline_fit")
    if fit:
        print(f"MACs baseline: measured ~ {fit['ms_per_gmac']:.3f} ms/GMAC * MACs + "
              f"{fit['offset_ms']:.3f} ms (least squares over {fit['over']} networks)")
    head = (f"{'group':<6} {'predictor':<18} {'n':>3} {'tau-b':>6} {'MAPE %':>7} "
            f"{'in 10%':>7} {'med ratio':>9} {'worst %':>8}")
    print("\nSummary (tau-b: Kendall's, predicted or MACs against measured; in 10%: fraction of "
          "networks within +-10% of measured)")
    print(head)
    print("-" * len(head))
    labels = {"table": "table (predict)", "table_scaled_loo": "table x scale, LOO",
              "calibrated_loo": "calibrated, LOO", "cells_calibrated": "calibrated on cells",
              "macs_fit": "MACs fit", "macs_loo": "MACs fit, LOO"}
    for g in GROUPS:
        res = st.get(g, {})
        for k, label in labels.items():
            e = res.get(k)
            if not e or not e["n"]:
                continue
            print(f"{g:<6} {label:<18} {e['n']:>3} {fmt(e['tau_b'], '>6.3f', DASH.rjust(6))} "
                  f"{100 * e['mape']:>7.1f} {100 * e['within_10']:>6.0f}% "
                  f"{e['median_ratio']:>9.3f} {100 * e['max_abs_err']:>8.1f}")
        z = res.get("noise")
        if z and z["n"]:
            print(f"{g:<6} {'noise: pass 1 vs 2':<18} {z['n']:>3} "
                  f"{fmt(z['tau_b_passes'], '>6.3f', DASH.rjust(6))} "
                  f"{'':>7} {100 * z['within_10']:>6.0f}%   median |a-b|/mean "
                  f"{100 * z['median_rel_diff']:.1f}%, 90th pct {100 * z['p90_rel_diff']:.1f}%, "
                  f"max {100 * z['max_rel_diff']:.1f}%")
    for k, label in (("calibration", "all networks"), ("cells_calibration", "the random cells")):
        c = st.get(k)
        if c:
            t = c["terms"]
            print(f"calibration on {label} ({c['over']}): {c['basis']} basis, "
                  f"{t['pieces_ms']:.4f} x pieces + {t['concat_mvalues']:.4f} ms/Mvalue "
                  f"concatenated + {t['constant_ms']:+.4f} ms")
    a = st.get("all", {}).get("calibrated_loo") or st.get("all", {}).get("table")
    if a and a["n"]:
        ok_w = a["within_10"] >= TARGET_WITHIN
        ok_t = a["tau_b"] is not None and a["tau_b"] >= TARGET_TAU
        which = "calibrated, LOO" if st.get("all", {}).get("calibrated_loo") else "table"
        print(f"\ntargets (all networks, {which}): within +-10% >= {TARGET_WITHIN:.0%}: "
              f"{a['within_10']:.0%} ({'met' if ok_w else 'MISSED'}); tau-b >= {TARGET_TAU}: "
              f"{fmt(a['tau_b'], '.3f')} ({'met' if ok_t else 'MISSED'})")


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=50, help="random cells of the space (50)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED,
                    help=f"the cells' seed and pass 1's order ({DEFAULT_SEED}; another seed "
                         "writes *_seedN*.json, its own table included)")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--piece-seconds", type=float, default=2.0,
                    help="a piece's timed runs stop after this many seconds (2)")
    ap.add_argument("--network-seconds", type=float, default=3.0,
                    help="a network's timed runs stop after this many seconds (3)")
    ap.add_argument("--quick", action="store_true",
                    help="3 cells and 3 specs, a table of their pieces only: a smoke run "
                         "(latency_model_quick*.json)")
    ap.add_argument("--predict-only", action="store_true",
                    help="measure nothing: predict every network again with the current "
                         "predictor and table, against the measurements already in the "
                         "results file (after a change to the predictor)")
    args = ap.parse_args()
    if args.quick:
        args.cells = min(args.cells, 3)

    import onnx
    import onnxruntime as ort

    import shrinkc.backends.latency as L

    stem = "latency_model" + ("_quick" if args.quick else "") + \
        ("_wall" if args.clock == "wall" else "") + \
        ("" if args.seed == DEFAULT_SEED else f"_seed{args.seed}")
    results = RESULTS / f"{stem}.json"
    table_path = RESULTS / f"{stem}_table.json"
    t_start, load0 = time.monotonic(), os.getloadavg()[0]

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t_start:6.0f} s] {msg}", flush=True)

    piece_protocol = L.Protocol(threads=1, batch=1, clock=args.clock,
                                max_seconds=args.piece_seconds)
    net_protocol = replace(piece_protocol, max_seconds=args.network_seconds)
    fp = piece_protocol.fingerprint().device()

    # the networks
    sp = Space()
    cells = sp.random_cells(args.cells, args.seed)
    graphs: dict[str, dict] = {}
    for i, edges in enumerate(cells):
        graphs[f"cell{i:02d}"] = {"graph": sp.graph(edges), "spec": SPACE_SPEC, "kind": "cell",
                                  "edges": [list(e) for e in edges],
                                  "how": "random cell in the deployment network"}
    for name, d in spec_graphs(3 if args.quick else None).items():
        graphs[name] = {**d, "kind": "spec"}
    names = list(graphs)
    log(f"{len(cells)} random cells and {len(names) - len(cells)} spec networks")

    # resume
    out: dict = json.loads(results.read_text()) if results.exists() else {}
    if out:
        old = L.Fingerprint.from_dict(out["fingerprint"])
        if L.differences(old, fp):
            raise SystemExit(f"{results.relative_to(ROOT)} was measured with another "
                             f"fingerprint ({'; '.join(L.differences(old, fp))}): move it away "
                             "to measure here")
    nets: dict = out.get("networks", {})
    for name, d in graphs.items():
        g = d["graph"]
        entry = nets.setdefault(name, {})
        if entry.get("edges", d.get("edges")) != d.get("edges") or \
                entry.get("spec", d["spec"]) != d["spec"]:
            raise SystemExit(f"{results.relative_to(ROOT)}: {name} is another network there "
                             "(another --seed?): move the file away or use the same settings")
        entry.update({"kind": d["kind"], "spec": d["spec"], "network": g.network,
                      "how": d["how"], "input": g.input_shape.as_list(), "macs": g.cost.macs,
                      "params": g.cost.params})
        if "edges" in d:
            entry["edges"] = d["edges"]
            entry["edges_count"] = len(d["edges"])
        entry.setdefault("passes", {})
    command = "python benchmarks/latency_model.py " + " ".join(sys.argv[1:])
    if args.predict_only:
        missing = [n for n in names if len(nets[n]["passes"]) != 2]
        if missing:
            raise SystemExit(f"--predict-only: {len(missing)} networks are not measured twice "
                             f"in {results.relative_to(ROOT)} (e.g. {missing[0]}): measure first")
        out["predicted_again"] = {"command": command, "date": time.strftime("%Y-%m-%d")}
    out.update({
        "benchmark": "latency_model",
        "command": out["command"] if args.predict_only else command,
        "fingerprint": fp.to_dict(),
        "versions": {"onnx": onnx.__version__, "onnxruntime": ort.__version__,
                     "python": platform.python_version()},
        "settings": {"cells": args.cells, "seed": args.seed, "clock": args.clock,
                     "quick": args.quick, "space": SPACE_SPEC,
                     "deployment": "ShrinkCNN_ImageNet at 3x224x224",
                     "piece_protocol": piece_protocol.to_dict(),
                     "network_protocol": net_protocol.to_dict(),
                     "measured": "median of two passes' medians; pass 2 in reverse order; "
                                 "a fresh model and onnxruntime session per measurement"},
        "networks": nets,
    })
    out.setdefault("machine", {})
    if not args.predict_only:
        out["machine"].update({"cpus": os.cpu_count(), "processor": platform.processor()
                               or platform.machine(), "cpu": cpu_flags(),
                               "load_average_start": round(load0, 2)})

    # the table
    needed: dict = {}
    if not args.quick:
        needed.update(L.space_pieces(sp.full_graph(), sp.space))
    for d in graphs.values():
        for part in L.network_pieces(d["graph"]).parts:
            needed.setdefault(part.piece.key, part.piece)
    if args.predict_only:
        table = L.load(table_path)
        lacking = [k for k in needed if k not in table.entries]  # type: ignore[attr-defined]
        if lacking:
            raise SystemExit(f"--predict-only: the table lacks {len(lacking)} pieces "
                             f"(e.g. {lacking[0]}): build it first")
        took = 0.0
    else:
        table, took = build(needed, table_path, piece_protocol, log)
    out["table"] = {"path": table_path.relative_to(ROOT).as_posix(),
                    "pieces": len(table.entries),  # type: ignore[attr-defined]
                    "needed": len(needed),
                    "protocol": table.protocol.to_dict(),  # type: ignore[attr-defined]
                    "overhead": table.overhead,  # type: ignore[attr-defined]
                    "sha256": table.digest()}  # type: ignore[attr-defined]
    if took:
        out["table"]["build_seconds_last_run"] = round(took, 1)
    tfp = table.fingerprint  # type: ignore[attr-defined]
    for name, d in graphs.items():
        nets[name]["predicted"] = L.predict(d["graph"], table).to_dict()  # type: ignore[arg-type]
    write(results, out)

    # the two passes
    order = names[:]
    random.Random(args.seed).shuffle(order)
    for k, seq in (("1", order), ("2", order[::-1])):
        todo = [n for n in seq if k not in nets[n]["passes"]]  # none with --predict-only
        log(f"pass {k}: {len(todo)} of {len(seq)} networks to measure")
        for i, n in enumerate(todo):
            m, secs = measure(graphs[n]["graph"], net_protocol, tfp)
            m["seconds"] = round(secs, 2)
            m["load_average"] = round(os.getloadavg()[0], 2)
            nets[n]["passes"][k] = m
            if len(nets[n]["passes"]) == 2:
                a, b = nets[n]["passes"]["1"]["median_ms"], nets[n]["passes"]["2"]["median_ms"]
                nets[n]["measured_ms"] = round(statistics.median([a, b]), 5)
            write(results, out)
            log(f"  pass {k} {i + 1}/{len(todo)} {n:<24} {m['median_ms']:9.3f} ms (IQR "
                f"{m['iqr_ms']:.3f}, {m['runs']} runs, {m['stopped']}), predicted "
                f"{nets[n]['predicted']['predicted_ms']:9.3f} ms [{secs:.1f} s]")

    if not args.predict_only:
        out["machine"]["load_average_end"] = round(os.getloadavg()[0], 2)
    for n in names:  # what a calibration keeps of each measured network
        if "measured_ms" in nets[n]:
            nets[n]["record"] = L.calibration_record(
                L.network_pieces(graphs[n]["graph"]), table, n,  # type: ignore[arg-type]
                nets[n]["measured_ms"])
    out["stats"] = statistics_of(nets, names)
    out["seconds_last_run"] = round(time.monotonic() - t_start, 1)
    write(results, out)
    report(out, names)
    print(f"\nwrote {results.relative_to(ROOT)} (table: {table_path.relative_to(ROOT)})")


if __name__ == "__main__":
    main()
