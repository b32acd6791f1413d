"""What a latency score changes: the shrinker on the CIFAR-10 proxy scored by MACs and by
measured latency, at the same budget and seeds (issue 25, "What it changes").

    python benchmarks/latency_search.py table            # the space's latency table, once
    python benchmarks/latency_search.py search --seed 0  # the latency-scored search (0, 1, 2)
    python benchmarks/latency_search.py verify           # step 1 trained again: = the MACs run
    python benchmarks/latency_search.py agree            # why the scores choose alike (no training)
    python benchmarks/latency_search.py proxyfull        # found cells at the full budget
    python benchmarks/latency_search.py measure          # deployed: params, MACs, latency
    python benchmarks/latency_search.py report           # tables and the plot

The MACs-scored searches are ``shrink_search.py search --data cifar10 [--seed N]`` (issue 22's
runs, read from ``benchmarks/results/shrink_search/``). The latency-scored search is the same
spec, protocol (``protocol_cifar10.json``: 2 epochs, batch 128, no halving), workers and seed,
with the score ``acc - 0.1 * (log10(latency) - log10(5))``: the same weight, 0.1 a decade, on
the latency (ms) of the ImageNet network the cell is deployed in (the spec's ``deploy`` line,
3x224x224) predicted from a table of its pieces. The variant spec is written beside the results
(``latency_search_space.shrink``; only its search block's name and score differ).

**The replay.** Both searches sample a step's candidates from the same live edges with the same
seed, and a candidate's training depends on its job alone (cell, seed, settings, data), not on
the score. So until the first step where the two scores choose different edges they train the
same candidates with the same results, and ``search`` starts the latency-scored run from the
MACs-scored one's log: those steps' entries (and all of the step where the choices part) are
written rescored (``latency`` from the run's table, ``score`` from the variant, each marked
``replayed_from``), and ``shrinkc shrink --resume`` goes on from there, training what differs,
measuring each chosen snapshot and deciding every step itself (``--no-replay`` trains it all).
``verify`` trains step 1 of the latency-scored search again and checks that every candidate's
accuracy, curve and MACs equal the MACs-scored run's.

The table is measured once on this machine with the CPU clock (it starts from
``latency_model.py``'s table, which holds every piece of the space, measuring what it lacks) (``--clock cpu``: this process's
CPU time on one thread, which another job on the other core disturbs less than the wall clock;
the fingerprint records it). ``measure`` times every found cell in the deployment network and
the references (ShrinkCNN-A, MobileNetV2, MobileNetV3-Large and -Small, EfficientNet-B0) with
the wall clock at 1 and 2 threads, batch 1, in two passes (the second in reverse order; the
median of the two medians), and gives the prediction beside it. ``proxyfull`` trains each found
cell on the proxy at the paper's full budget (20 epochs, patience 3; the rank part's two
seeds), so that accuracy is compared at equal footing. Every part resumes and skips what is
done; results: ``benchmarks/results/latency_search/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import shrink_search as S  # noqa: E402
import shrink_search_cifar10 as C  # noqa: E402

OUT = S.ROOT / "benchmarks" / "results" / "latency_search"
TABLE = OUT / "table_cpu.json"
MODEL_TABLE = S.ROOT / "benchmarks" / "results" / "latency_model_table.json"
VARIANT = OUT / "latency_search_space.shrink"
SCORE = "score acc - 0.1 * (log10(latency) - log10(5))"
REFERENCES = {"ShrinkCNN-A": "specs/shrinkcnn_a.shrink", "MobileNetV2": "specs/mobilenetv2.shrink",
              "MobileNetV3-Large": "specs/zoo/mobilenet_v3_large.shrink",
              "MobileNetV3-Small": "specs/zoo/mobilenet_v3_small.shrink",
              "EfficientNet-B0": "specs/zoo/efficientnet_b0.shrink"}
PLOT = S.ROOT / "docs" / "reports" / "latency_vs_macs.png"


def _load(name: str) -> dict:
    path = OUT / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save(name: str, doc: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = OUT / f".{name}.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, OUT / f"{name}.json")


def variant() -> Path:
    """The shipped space with its search scored by latency (written once, then checked)."""
    text = (S.ROOT / S.SPEC).read_text()
    lines = [SCORE if ln.strip().startswith("score ") else ln for ln in text.splitlines()]
    out = "\n".join(ln.replace("search ShrinkCNN {", "search ShrinkCNN_Latency {")
                    for ln in lines).replace(SCORE, "    " + SCORE) + "\n"
    assert out != text and "ShrinkCNN_Latency" in out and SCORE in out
    OUT.mkdir(parents=True, exist_ok=True)
    if not VARIANT.exists() or VARIANT.read_text() != out:
        VARIANT.write_text(out)
    return VARIANT


def part_table(args) -> None:
    if TABLE.exists():
        print(f"table: {TABLE} exists")
        return
    t = time.perf_counter()
    # latency_model.py's table (CPU clock, 1 thread) holds every piece of this space: start
    # from it where it is, measuring only what it lacks
    start = ["--table", str(MODEL_TABLE)] if MODEL_TABLE.exists() else []
    r = subprocess.run([sys.executable, "-m", "shrinkc", "latency", str(variant()), "--space",
                        "--clock", "cpu", *start, "--save-table", str(TABLE), "--quiet",
                        "--json"],
                       capture_output=True, text=True, cwd=S.ROOT)
    if r.returncode != 0:
        sys.exit(r.stderr)
    doc = json.loads(r.stdout)
    _save("table_build", {"seconds": round(time.perf_counter() - t, 1),
                          "entries": doc["table"]["entries"],
                          "fingerprint": doc["fingerprint"]})
    print(f"table: {doc['table']['entries']} pieces in {time.perf_counter() - t:.0f} s")


def part_search(args) -> None:
    C.setup()
    if not TABLE.exists():
        sys.exit(f"build the table first: python {sys.argv[0]} table")
    S.cfg.SEED = args.seed
    spec = variant().relative_to(S.ROOT).as_posix()
    part = S.seeded("latency_search")
    flags = ["--workers", str(args.workers), *S.cfg.RECOMMENDED,
             *(["--seed", str(args.seed)] if args.seed else []), "--latency-table", str(TABLE)]
    out = S.RESULTS / "runs" / f"{part}{S.cfg.TAG}"
    if not (out / "run.json").exists():
        S.timed_search(part, spec, [*flags, "--max-steps", "0"])  # run.json, latency.json
        if not args.no_replay:
            _replay(out, S.seeded("search"), part)
    S.timed_search(part, spec, flags)


def _replay(out: Path, macs_part: str, part: str) -> None:
    """Start the latency-scored run from the MACs-scored run of the same seed, as far as the
    two are the same search.

    Both sample a step's candidates from the same live edges with the same seed, and a
    candidate's training depends only on its job (cell, seed, settings, data), not on the
    score: until the first step where the two scores choose different edges, the two runs
    train exactly the same candidates with exactly the same results (``verify`` trains a step
    again to show it). So the MACs-scored run's entries of those steps, and all of the step
    where they part, are written into the new run's log rescored (``latency`` predicted from
    the run's own table, ``score`` from the variant's expression, each marked
    ``replayed_from``), and the search resumes from there: it trains from the first step
    that differs, measures each chosen snapshot, and decides every step itself."""
    from shrinkc.search import latency as latency_score
    from shrinkc.search import rules
    from shrinkc.search.logentry import Entry

    macs = S.load(macs_part)
    if "log" not in macs or macs.get("invocations", [{}])[-1].get("interrupted", False):
        sys.exit(f"run the MACs-scored search first: shrink_search.py search --seed "
                 f"{S.cfg.SEED} --data cifar10 ({macs_part} is not finished)")
    checked, search, space = _variant_parts()
    scorer = latency_score.prepare(checked, search, space, None,
                                   out / latency_score.TABLE_FILE, resume=True, quiet=True)
    expr = _variant_score(checked, search)
    log, edges, parted = [], rules.live_edges(space), None
    for step in sorted({e["step"] for e in macs["log"]}):
        entries = []
        for e in (e for e in macs["log"] if e["step"] == step):
            e = {k: v for k, v in e.items() if k not in latency_score.MEASURED}
            after = rules.remove(space, edges, tuple(e["edge"]))
            e[latency_score.NAME] = scorer.predict(after)
            e["score"] = rules.score(expr, {**e, "edges": len(after)})
            e["replayed_from"] = macs_part
            entries.append(Entry(**e))
        new = rules.rank(entries)[0]
        for e in entries:
            e.chosen = e is new
        log += entries
        was = next(e for e in macs["log"] if e["step"] == step and e["chosen"])
        if new.edge != was["edge"]:
            parted = step
            break
        edges = rules.remove(space, edges, tuple(was["edge"]))
    (out / "log.jsonl").write_text("".join(e.line() + "\n" for e in log))
    doc = S.load(part)
    doc["replayed"] = {"from": macs_part, "entries": len(log), "steps": log[-1].step,
                       "parted_at_step": parted}
    S.save(part, doc)
    print(f"replayed {len(log)} candidates of {macs_part} (steps 1-{log[-1].step}); "
          + (f"the scores part at step {parted}" if parted else "the scores never part"))


def part_agree(args) -> None:
    """Why the two scores choose alike (no training): over every step of each finished
    MACs-scored search, the candidates' predicted latency against their MACs (Kendall tau
    within the step), the spread of each cost term against the spread of accuracy, and, for
    larger weights on the cost term, the first step where a latency-scored choice would
    differ from the MACs-scored one made with the same weight, among the candidates the run
    saw (along its own path)."""
    from scipy.stats import kendalltau

    from shrinkc.search import latency as latency_score
    from shrinkc.search import rules

    C.setup()
    checked, search, space = _variant_parts()
    scorer = latency_score.prepare(checked, search, space, str(TABLE), OUT / ".agree.json",
                                   resume=False, quiet=True)
    weights = (0.1, 0.3, 1.0, 3.0)
    doc = {"weights": list(weights), "seeds": {}}
    for seed in S.SEARCH_SEEDS:
        macs = S.load(S.seeded("search", seed))
        if "log" not in macs:
            continue
        edges, steps, parts = rules.live_edges(space), [], dict.fromkeys(weights)
        for step in sorted({e["step"] for e in macs["log"]}):
            es = [e for e in macs["log"] if e["step"] == step]
            lat = [scorer.predict(rules.remove(space, edges, tuple(e["edge"]))) for e in es]
            acc = [e["acc"] for e in es]
            m_term = [math.log10(e["macs"]) for e in es]
            l_term = [math.log10(x) for x in lat]
            for w in weights:
                if parts[w] is None and _pick(es, m_term, w) != _pick(es, l_term, w):
                    parts[w] = step
            tau = kendalltau(m_term, l_term).statistic if len(es) > 2 else None
            steps.append({"step": step, "candidates": len(es),
                          "tau_macs_latency": None if tau is None or math.isnan(tau)
                          else round(tau, 3),
                          "acc_spread": round(max(acc) - min(acc), 4),
                          "macs_term_spread": round(0.1 * (max(m_term) - min(m_term)), 4),
                          "latency_term_spread": round(0.1 * (max(l_term) - min(l_term)), 4)})
            edges = rules.remove(space, edges, tuple(next(e["edge"] for e in es if e["chosen"])))
        taus = [x["tau_macs_latency"] for x in steps if x["tau_macs_latency"] is not None]
        doc["seeds"][str(seed)] = {
            "steps": steps, "first_parting_step": {str(w): parts[w] for w in weights},
            "median_tau": statistics.median(taus) if taus else None,
            "median_acc_spread": statistics.median(x["acc_spread"] for x in steps),
            "median_latency_term_spread": statistics.median(x["latency_term_spread"]
                                                            for x in steps),
            "median_macs_term_spread": statistics.median(x["macs_term_spread"] for x in steps)}
        d = doc["seeds"][str(seed)]
        print(f"seed {seed}: {len(steps)} steps; within a step tau(MACs, latency) median "
              f"{d['median_tau']}; spreads (median): accuracy {d['median_acc_spread']:.3f}, "
              f"0.1 x log10 MACs {d['median_macs_term_spread']:.4f}, 0.1 x log10 latency "
              f"{d['median_latency_term_spread']:.4f}; first step where the choices part, by "
              f"weight: {d['first_parting_step']}")
    (OUT / ".agree.json").unlink(missing_ok=True)
    _save("agree", doc)


def _pick(es: list[dict], term: list[float], w: float) -> int:
    """The candidate a score ``acc - w * term`` chooses (the driver's ties: fewer edges, then
    the lower edge)."""
    return min(range(len(es)),
               key=lambda i: (-(es[i]["acc"] - w * term[i]), es[i]["edges"], es[i]["edge"]))


def part_verify(args) -> None:
    """What the replay rests on, checked: step 1 of the latency-scored search trained here,
    now (``--max-steps 1``), against the same step of the MACs-scored run of the same seed:
    every candidate's accuracy, curve and MACs must be equal."""
    C.setup()
    S.cfg.SEED = args.seed
    part = S.seeded("latency_verify")
    S.timed_search(part, variant().relative_to(S.ROOT).as_posix(),
                   ["--workers", str(args.workers), *S.cfg.RECOMMENDED,
                    *(["--seed", str(args.seed)] if args.seed else []),
                    "--latency-table", str(TABLE), "--max-steps", "1"])
    here = {tuple(e["edge"]): e for e in S.load(part)["log"] if e["step"] == 1}
    there = {tuple(e["edge"]): e for e in S.load(S.seeded("search"))["log"] if e["step"] == 1}
    same = {f"{a}-{b}": all(here[(a, b)][k] == there[(a, b)][k] for k in ("acc", "curve", "macs"))
            for a, b in there}
    doc = S.load(part)
    doc["same_as_macs_run"] = {"candidates": len(same), "equal": sum(same.values()),
                               "by_edge": same, "edges_equal": here.keys() == there.keys()}
    S.save(part, doc)
    print(f"step 1: {sum(same.values())} of {len(same)} candidates equal to {S.seeded('search')}'s"
          f" (same candidates: {here.keys() == there.keys()})")


def _variant_parts():
    """The variant spec checked, its search block and its space."""
    from shrinkc.compiler import ir
    from shrinkc.compiler.pipeline import check

    checked = check(str(variant()))
    search = next(i for i in checked.sources.main.items if isinstance(i, ir.SearchDef))
    search = checked.program.defs(ir.SearchDef)[search.name]
    space = next(i for i in checked.sources.main.items
                 if isinstance(i, ir.SpaceDef) and i.name == search.space)
    return checked, search, space


def _variant_score(checked, search):
    """The variant's score expression, as the search reads it."""
    from shrinkc.search import tasks
    from shrinkc.search.settings import settings as read_settings

    return read_settings(search, {}, task=tasks.of(checked.program.networks[search.network])).score


def _best(log: list[dict]) -> dict:
    snaps = [e for e in log if e.get("chosen") and e.get("edge") is not None]
    return max(snaps, key=lambda e: (e["score"], -e["edges"]))


def found_cells(sp) -> dict[str, dict]:
    """Each finished search's best snapshot: its edges, step and log entry, by name."""
    out = {}
    for seed in S.SEARCH_SEEDS:
        for part, name in (("search", "MACs"), ("latency_search", "latency")):
            doc = S.load(S.seeded(part, seed))
            if "log" not in doc or doc.get("invocations", [{}])[-1].get("interrupted", False):
                continue  # not run, or not finished
            best = _best(doc["log"])
            out[f"{name} score, seed {seed}"] = {
                "edges": S._edges_after(sp, doc["log"], best["step"]), "step": best["step"],
                "proxy_acc": best["acc"], "proxy_macs": best["macs"],
                "predicted_ms": best.get("latency"), "search_measured_ms":
                best.get("latency_measured")}
    return out


def part_proxyfull(args) -> None:
    sp = C.setup()
    doc = S.load("latency_proxyfull")  # kept there while it trains (resumable)
    cells = found_cells(sp)
    doc["cells"] = {k: v["edges"] for k, v in cells.items()}
    doc.setdefault("runs", {})
    jobs = {f"{n}/{s}": sp.job(c, s, precision=args.precision)
            for n, c in doc["cells"].items() for s in S.RANK_SEEDS}
    earlier = S.load("proxyfull")  # issue 22's: the same cells at the same seeds
    for key in jobs:
        name, seed = key.rsplit("/", 1)
        for other, edges in earlier.get("cells", {}).items():
            if sorted(map(tuple, edges)) == sorted(map(tuple, doc["cells"][name])) and \
                    f"{other}/{seed}" in earlier.get("runs", {}):
                doc["runs"].setdefault(key, earlier["runs"][f"{other}/{seed}"])
    # a cell both scores found is trained once, under its first name
    first = {}
    for key in jobs:
        name, seed = key.rsplit("/", 1)
        first.setdefault((tuple(sorted(map(tuple, doc["cells"][name]))), seed), key)
    S.train_all("latency_proxyfull", doc, {k: j for k, j in jobs.items()
                                            if k in first.values()}, args.workers)
    for key in jobs:
        name, seed = key.rsplit("/", 1)
        twin = first[(tuple(sorted(map(tuple, doc["cells"][name]))), seed)]
        if twin in doc["runs"]:
            doc["runs"].setdefault(key, doc["runs"][twin])
    _save("proxyfull", doc)


def _graphs(sp) -> dict[str, tuple]:
    """(graph, kind) of every network ``measure`` times: found cells deployed, references."""
    from shrinkc.compiler.deploy import deployment_graph
    from shrinkc.compiler.pipeline import build_graph, check

    checked = check(str(S.ROOT / S.SPEC))
    out = {name: (deployment_graph(checked, None, [tuple(e) for e in c["edges"]]), "found")
           for name, c in found_cells(sp).items()}
    for name, path in REFERENCES.items():
        out[name] = (build_graph(check(str(S.ROOT / path))), "reference")
    return out


def part_measure(args) -> None:
    from shrinkc.backends import latency as L
    from shrinkc.backends.onnx import generate

    sp = C.setup()
    doc = _load("measure")
    nets = doc.setdefault("networks", {})
    table = L.load(TABLE) if TABLE.exists() else None
    graphs = _graphs(sp)
    for threads in (1, 2):
        protocol = L.Protocol(threads=threads, max_seconds=5.0)
        for rnd, order in enumerate((list(graphs), list(reversed(graphs)))):
            for name in order:
                key = f"t{threads}/pass{rnd + 1}"
                rec = nets.setdefault(name, {})
                if key in rec:
                    continue
                graph, kind = graphs[name]
                m = L.measure_model(generate(graph), protocol)
                rec.update({"kind": kind, "params": graph.cost.params, "macs": graph.cost.macs,
                            key: m.to_dict()})
                if table is not None and kind == "found":
                    rec["predicted_ms"] = round(L.predict(graph, table).ms, 4)
                doc["fingerprint"] = m.fingerprint.to_dict()
                _save("measure", doc)
                print(f"  {name} {key}: {m.median_ms:.2f} ms", flush=True)


def _measured(rec: dict, threads: int) -> float | None:
    xs = [rec[k]["median_ms"] for k in (f"t{threads}/pass1", f"t{threads}/pass2") if k in rec]
    return statistics.median(xs) if xs else None


def part_report(args) -> None:
    sp = C.setup()
    cells = found_cells(sp)
    full = _load("proxyfull").get("runs", {})
    nets = _load("measure").get("networks", {})
    rows = []
    for name in [*cells, *REFERENCES]:
        rec = nets.get(name, {})
        accs = [full[f"{name}/{s}"]["acc"] for s in S.RANK_SEEDS if f"{name}/{s}" in full]
        rows.append({"name": name, "params": rec.get("params"), "macs": rec.get("macs"),
                     "ms_1": _measured(rec, 1), "ms_2": _measured(rec, 2),
                     "predicted_ms": rec.get("predicted_ms"),
                     "edges": len(cells[name]["edges"]) if name in cells else None,
                     "proxy_macs": cells.get(name, {}).get("proxy_macs"),
                     "proxy_acc_full": statistics.mean(accs) if accs else None,
                     "proxy_acc_full_spread": max(accs) - min(accs) if len(accs) > 1 else None})
    f = lambda x, fmt: "-" if x is None else format(x, fmt)  # noqa: E731
    print(f"{'network':<22} {'edges':>5} {'params':>10} {'MACs':>8} {'1 thr ms':>8} "
          f"{'2 thr ms':>8} {'pred ms':>8} {'proxy acc':>9} {'spread':>6}")
    for r in rows:
        print(f"{r['name']:<22} {f(r['edges'], 'd'):>5} {f(r['params'], ','):>10} "
              f"{f(r['macs'] and r['macs'] / 1e6, '.1f'):>7}M {f(r['ms_1'], '.2f'):>8} "
              f"{f(r['ms_2'], '.2f'):>8} {f(r['predicted_ms'], '.2f'):>8} "
              f"{f(r['proxy_acc_full'], '.4f'):>9} {f(r['proxy_acc_full_spread'], '.3f'):>6}")
    pairs = []
    for seed in S.SEARCH_SEEDS:
        a = next((r for r in rows if r["name"] == f"MACs score, seed {seed}"), None)
        b = next((r for r in rows if r["name"] == f"latency score, seed {seed}"), None)
        if a and b and a["ms_1"] and b["ms_1"]:
            pairs.append({"seed": seed, "latency_ratio": b["ms_1"] / a["ms_1"],
                          "acc_difference": (b["proxy_acc_full"] or math.nan)
                          - (a["proxy_acc_full"] or math.nan)})
    for p in pairs:
        print(f"seed {p['seed']}: latency-scored cell at {p['latency_ratio']:.2f}x the MACs-scored "
              f"cell's latency (1 thread), proxy accuracy {p['acc_difference']:+.4f}")
    _save("report", {"rows": rows, "pairs": pairs})
    _plot(rows)


def _plot(rows: list[dict]) -> None:
    """Measured latency (1 thread) against MACs: the latency model benchmark's random cells and
    networks, the references and the found cells marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = S.ROOT / "benchmarks" / "results" / "latency_model.json"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if model.exists():
        doc = json.loads(model.read_text())
        for kind, colour, label in (("cell", "0.7", "random cells"),
                                    ("spec", "0.45", "specs/ and specs/zoo/")):
            pts = [(n["macs"] / 1e6, n["measured_ms"])
                   for n in doc.get("networks", {}).values()
                   if isinstance(n, dict) and n.get("kind") == kind and n.get("measured_ms")]
            if pts:
                ax.scatter(*zip(*pts, strict=True), s=10, c=colour,
                           label=f"{label} (latency_model.py, CPU clock)")
    for r in rows:
        if r["macs"] and r["ms_1"]:
            found = "score" in r["name"]
            ax.scatter(r["macs"] / 1e6, r["ms_1"], s=60 if found else 25,
                       label=r["name"] if found else None,
                       marker=("*" if "latency" in r["name"] else "o") if found else "s")
            if not found:
                ax.annotate(r["name"], (r["macs"] / 1e6, r["ms_1"]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("MACs (millions), 224x224, log scale")
    ax.set_ylabel("measured latency (ms), 1 thread, batch 1, log scale")
    ax.legend(fontsize=7)
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=120)
    print(f"wrote {PLOT.relative_to(S.ROOT)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=("table", "agree", "search", "verify", "proxyfull",
                                     "measure", "report"))
    ap.add_argument("--seed", type=int, default=0, choices=S.SEARCH_SEEDS)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-replay", action="store_true",
                    help="search: train every step, not only those after the MACs run's")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    args = ap.parse_args()
    globals()[f"part_{args.part}"](args)


if __name__ == "__main__":
    main()
