"""The CIFAR-10 proxy's report: does the search find efficient cells on real images?

Reads what ``shrink_search.py --data cifar10`` wrote under ``benchmarks/results/shrink_search/``
(the ``*_cifar10.json`` parts) and prints the tables of ``docs/reports/`` and draws
``docs/reports/search_cifar10_pareto.png``; ``proxyfull`` trains each method's best cell at
the paper's full budget on the proxy itself (the rank part's seeds), so that it can be set
against the rank part's random cells on the same footing:

    python benchmarks/shrink_search_cifar10.py proxyfull   # resumable, like the other parts
    python benchmarks/shrink_search_cifar10.py report --plot NAME.png   # tables, targets, plot
    python benchmarks/shrink_search_cifar10.py select      # a final selection stage (below)
    python benchmarks/shrink_search_cifar10.py select_retrain   # its choices, tested

``select`` measures a change to how a method picks its result, fixed before it ran (session 19):
each method (AutoShrink's step snapshots, random search's cells) takes its top ``SELECT_K``
distinct cells by its own cheap search score, trains each once at the paper's full budget on
the proxy (seed ``SELECT_SEED``, the validation split) and keeps the best full-budget score.
Both methods get the same stage and the same extra cost (``SELECT_K`` full trainings), so the
comparison with random search stays at equal compute. ``select_retrain`` trains the chosen
cells on train10k.npz and tests them once, as the retrain part does (a cell already re-trained
there is not trained again).

Every accuracy that chooses anything here is a validation accuracy; test accuracies
(``test.npz``, read once per re-trained network by the retrain part) are only reported.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import shrink_search as S  # noqa: E402

OUT = S.ROOT / "docs" / "reports"


def setup() -> S.Space:
    S.cfg.DATA, S.cfg.DATA_NAME, S.cfg.TAG = S.DATA_ALIASES["cifar10"], "cifar10", "_cifar10"
    S.cfg.RECOMMENDED = S.load("protocol").get("flags")
    return S.Space()


def score(acc: float, macs: int) -> float:
    """The spec's score line: acc - 0.1 (log10 MACs - 6)."""
    return acc - 0.1 * (math.log10(macs) - 6)


def part_proxyfull(args) -> None:
    sp = setup()
    doc = S.load("proxyfull")
    cells = S.best_cells(sp)
    cells.pop("random, full budget", None)  # that one is a rank cell already
    doc["cells"] = cells
    jobs = {f"{n}/{s}": sp.job(c, s, precision=args.precision)
            for n, c in cells.items() for s in S.RANK_SEEDS}
    S.train_all("proxyfull", doc, jobs, args.workers)


SELECT_K = 3  # fixed before the first selection ran: the top 3 of each method's cheap ranking
SELECT_SEED = S.RANK_SEEDS[0]  # one full training per cell, the rank part's first seed


def _first_distinct(sp: S.Space, ranked, k: int) -> list[dict]:
    """The first ``k`` non-isomorphic cells of ``ranked`` ((edges, record) pairs, best first,
    drawn lazily), each record with its cell's hash and edges added."""
    picked: dict[str, dict] = {}
    for cell, record in ranked:
        h = sp.cell_hash(cell)
        if h not in picked:
            picked[h] = {"hash": h, "edges": [list(e) for e in cell], **record}
        if len(picked) == k:
            break
    return list(picked.values())


def _top_snapshots(sp: S.Space, log: list[dict], k: int) -> list[dict]:
    """A search's top ``k`` distinct step snapshots by their step winners' scores, best first
    (ties: fewer edges, then the earlier step)."""
    from shrink_search_methods import _edges_after

    snaps = sorted((e for e in log if e.get("chosen") and e.get("edge") is not None),
                   key=lambda e: (-e["score"], e["edges"], e["step"]))
    return _first_distinct(sp, ((_edges_after(sp, log, e["step"]),
                                 {"cheap_score": e["score"], "step": e["step"]})
                                for e in snaps), k)


def top_cells(sp: S.Space, k: int) -> dict[str, list[dict]]:
    """Each finished method's top ``k`` distinct cells by its own search score, best first
    (ties: fewer edges, then the earlier): AutoShrink's step snapshots (a snapshot's score is
    its step winner's), random search's cells, and the paper's procedure's snapshots once it
    has finished (its scores are single full-budget trainings, not cheap ones)."""
    out = {}
    for seed in S.SEARCH_SEEDS:
        tag = "" if seed == 0 else f", seed {seed}"
        doc = S.load(S.seeded("search", seed))
        if "log" in doc:
            out[f"autoshrink{tag}"] = _top_snapshots(sp, doc["log"], k)
        rnd = S.load(S.seeded("random", seed))
        if rnd.get("runs") and len(rnd["runs"]) == len(rnd["cells"]):
            runs = rnd["runs"]

            def cheap(i, runs=runs):
                return sp.score(runs[i]["acc"], runs[i]["macs"])

            order = sorted(runs, key=lambda i: (-cheap(i), len(rnd["cells"][int(i)]), int(i)))
            out[f"random search{tag}"] = _first_distinct(sp, (
                (rnd["cells"][int(i)], {"index": int(i), "cheap_score": cheap(i)})
                for i in order), k)
    paper = S.load("paper")
    if "log" in paper and any("interrupted" not in i for i in paper.get("invocations", [])):
        out[S.EARLIER["paper"][0]] = _top_snapshots(sp, paper["log"], k)
    return out


def _trained_before(sp: S.Space) -> dict[str, dict]:
    """Full-budget proxy runs at SELECT_SEED that the rank and proxyfull parts already have
    (the same job: cell, data, budget, bf16, seed), by cell hash."""
    out = {}
    rank = S.load("rank")
    for i, cell in enumerate(rank.get("cells", [])):
        r = rank.get("runs", {}).get(f"{i}/{SELECT_SEED}")
        if r:
            out[sp.cell_hash(cell)] = {**r, "from": f"rank {i}/{SELECT_SEED}"}
    proxyfull = S.load("proxyfull")
    for name, cell in proxyfull.get("cells", {}).items():
        r = proxyfull.get("runs", {}).get(f"{name}/{SELECT_SEED}")
        if r:
            out[sp.cell_hash(cell)] = {**r, "from": f"proxyfull {name}/{SELECT_SEED}"}
    return out


def part_select(args) -> None:
    sp = setup()
    if args.precision != "bf16":
        raise SystemExit("select reuses the rank and proxyfull parts' bf16 runs: --precision bf16")
    doc = S.load("select")
    doc["protocol"] = {"k": SELECT_K, "seed": SELECT_SEED, "precision": args.precision,
                       "data": "proxy.npz, full budget, validation split",
                       "train_settings": sp.settings.train.as_dict()}
    doc["candidates"] = top_cells(sp, SELECT_K)
    runs = doc.setdefault("runs", {})
    before = _trained_before(sp)
    jobs = {}
    for cands in doc["candidates"].values():
        for c in cands:
            key = f"{c['hash']}/{SELECT_SEED}"
            if key not in runs and c["hash"] in before:
                runs[key] = before[c["hash"]]
            elif key not in runs:
                jobs[key] = sp.job(c["edges"], SELECT_SEED, precision=args.precision)
    S.save("select", doc)
    S.train_all("select", doc, jobs, args.workers)
    print_selection(sp, doc)


def selection(sp: S.Space, doc: dict) -> dict[str, dict]:
    """Each method's chosen cell: the best full-budget score of its candidates (ties: fewer
    edges, then the better cheap rank); None where a candidate is not trained yet."""
    out = {}
    for method, cands in doc.get("candidates", {}).items():
        got = [(c, doc["runs"].get(f"{c['hash']}/{SELECT_SEED}")) for c in cands]
        if any(r is None for _, r in got):
            continue
        scored = [(score(r["acc"], r["macs"]), -len(c["edges"]), -i, c, r)
                  for i, (c, r) in enumerate(got)]
        best = max(scored, key=lambda t: t[:3])
        out[method] = {**best[3], "full_acc": best[4]["acc"], "full_score": best[0],
                       "rank": cands.index(best[3]) + 1}
    return out


def print_selection(sp: S.Space, doc: dict) -> None:
    chosen = selection(sp, doc)
    print(f"\nFinal selection: each method's top {SELECT_K} by its cheap score, trained at the "
          f"full budget on the proxy (seed {SELECT_SEED})")
    print(f"{'method':<24} {'#':>2} {'edges':>5} {'MACs':>7} {'cheap':>6} {'full acc':>8} "
          f"{'full score':>10}")
    for method, cands in doc["candidates"].items():
        for i, c in enumerate(cands, 1):
            r = doc["runs"].get(f"{c['hash']}/{SELECT_SEED}")
            mark = " <" if chosen.get(method, {}).get("hash") == c["hash"] else ""
            full = (f"{r['acc']:>8.3f} {score(r['acc'], r['macs']):>10.4f}" if r
                    else f"{'-':>8} {'-':>10}")
            macs = f"{r['macs'] / 1e6:.1f}M" if r else "-"
            print(f"{method:<24} {i:>2} {len(c['edges']):>5} {macs:>7} "
                  f"{c['cheap_score']:>6.3f} {full}{mark}")


def part_select_retrain(args) -> None:
    """The selection's chosen cells re-trained on train10k.npz and tested once on test.npz,
    as the retrain part does (its runs reused where the chosen cell is the method's old best)."""
    from functools import partial

    from shrink_search_retrain import (
        RETRAIN_DATA,
        TEST_DATA,
        TEST_SEEDS,
        WEIGHTS,
        _retrain_and_test,
        slug,
    )

    sp = setup()
    chosen = selection(sp, S.load("select"))
    retrain = S.load("retrain")
    doc = S.load("select_retrain")
    doc["protocol"] = retrain.get("protocol")
    doc["cells"] = {m: c["edges"] for m, c in chosen.items()}
    runs = doc.setdefault("runs", {})
    old = {sp.cell_hash(c): n for n, c in retrain.get("cells", {}).items()}
    jobs, fns = {}, {}
    for method, c in chosen.items():
        for s in TEST_SEEDS:
            key = f"{method}/{s}"
            if key in runs:
                continue
            if c["hash"] in old and f"{old[c['hash']]}/{s}" in retrain.get("runs", {}):
                runs[key] = {**retrain["runs"][f"{old[c['hash']]}/{s}"],
                             "from": f"retrain {old[c['hash']]}/{s}"}
                continue
            jobs[key] = replace(sp.job(c["edges"], s, precision=args.precision),
                                data=str(RETRAIN_DATA))
            fns[key] = partial(_retrain_and_test, test_path=str(TEST_DATA),
                               weights=str(WEIGHTS / f"{slug(method)}__selected.safetensors")
                               if s == TEST_SEEDS[0] else None)
    S.save("select_retrain", doc)
    S.train_all("select_retrain", doc, jobs, args.workers, fns)


def imagenet_cost(sp: S.Space, edges) -> tuple[int, int]:
    """(params, MACs) of the cell with ``edges`` in ShrinkCNN's ImageNet network (the
    network benchmarks/found_cell.py writes)."""
    from found_cell import NETWORK

    from shrinkc.compiler import check, parse
    from shrinkc.compiler.ir import CellDef, Program, SpaceDef
    from shrinkc.compiler.passes.space import expand
    from shrinkc.compiler.pipeline import build_graph
    from shrinkc.compiler.syntax.printer import print_program
    from shrinkc.search import rules

    prog = rules.with_edges(sp.parsed, sp.space.name, tuple(map(tuple, edges)))
    cell = expand(prog.defs(SpaceDef)[sp.space.name])
    cell = CellDef(name="FoundCell", params=cell.params, body=cell.body)
    net = parse("shrink 1\n" + NETWORK.format(cell="FoundCell")).items[0]
    text = print_program(Program(items=(cell, net)))
    graph = build_graph(check("imagenet.shrink", text))
    return graph.cost.params, graph.cost.macs


def _mean_runs(runs: dict, name: str, seeds) -> list[dict]:
    return [runs[f"{name}/{s}"] for s in seeds if f"{name}/{s}" in runs]


def _search_cost(method: str, doc: dict) -> dict:
    """A shrinker run's cost from its benchmark record: candidates, candidate-epochs, the wall
    time of its sittings and its workers' CPU time."""
    trained = [e for e in doc["log"] if "isomorphic_to" not in e]
    return {"method": method, "candidates": len(doc["log"]), "trained": len(trained),
            "candidate_epochs": S.budget_of(doc["log"]),
            "wall_min": sum(i["wall_s"] for i in doc.get("invocations", [])) / 60,
            "sittings": len(doc.get("invocations", [])),
            "cpu_min": sum(e.get("cpu_seconds", 0.0) for e in trained) / 60,
            "finished": any("interrupted" not in i for i in doc.get("invocations", []))}


def search_costs() -> list[dict]:
    """Each search, random search and the paper's procedure: candidates, candidate-epochs,
    wall and CPU."""
    rows = []
    for seed in S.SEARCH_SEEDS:
        doc = S.load(S.seeded("search", seed))
        if "log" in doc:
            rows.append(_search_cost(f"autoshrink, seed {seed}", doc))
        rnd = S.load(S.seeded("random", seed))
        if rnd.get("runs"):
            runs = rnd["runs"].values()
            rows.append({"method": f"random search, seed {seed}", "candidates": len(rnd["runs"]),
                         "trained": len(rnd["runs"]),
                         "candidate_epochs": sum(r["epochs"] for r in runs),
                         "wall_min": sum(rnd.get("wall_s", [0])) / 60,
                         "cpu_min": sum(r.get("cpu_seconds", 0.0) for r in runs) / 60,
                         "finished": len(rnd["runs"]) == len(rnd["cells"])})
    paper = S.load("paper")
    if "log" in paper:
        rows.append(_search_cost("paper procedure", paper))
    return rows


def part_report(args) -> None:
    sp = setup()
    report: dict = {}
    rank = S.rank_table(sp)
    report["rank"] = rank
    if rank:
        print(f"Ranking on the CIFAR-10 proxy: Kendall tau over {rank['cells']} random cells, "
              "a cheap protocol's score (one seed) against the full budget's (the other seed)")
        print(f"{'protocol':<28} {'epochs':>6} {'tau':>6} {'ceiling':>8} {'fraction':>8} "
              f"{'CPU s/epoch':>11}")
        for row in rank["rows"]:
            if row["metric"] != "score":
                continue
            s_epoch = row.get("median_s_per_epoch")
            print(f"{row.get('protocol', 'constant-b128'):<28} {row['epochs']:>6} "
                  f"{row['tau']:>6.3f} {row['ceiling']:>8.3f} {row['fraction']:>8.2f} "
                  f"{'' if s_epoch is None else format(s_epoch, '.1f'):>11}")
        print(f"full-budget validation accuracy of the random cells: {rank['acc_range'][0]:.3f} "
              f"to {rank['acc_range'][1]:.3f}; two seeds of a cell differ by "
              f"{rank['seed_gap_median']:.3f} (median), up to {rank['seed_gap_max']:.3f}")
    protocol = S.load("protocol")
    report["protocol"] = protocol
    if protocol:
        c = protocol["chosen"]
        print(f"\nchosen protocol: {c['protocol']}, {c['epochs']} epoch(s): tau {c['tau']:.3f} = "
              f"{c['fraction']:.2f} of the ceiling ({'meets' if protocol['met_target'] else 'MISSES'}"
              f" the {protocol['target_fraction']} target), flags {' '.join(protocol['flags'])}")

    # the proxy at the full budget: random cells, references, each method's best
    rank_doc, proxyfull = S.load("rank"), S.load("proxyfull")
    points = []
    for i, cell in enumerate(rank_doc.get("cells", [])):
        got = _mean_runs(rank_doc["runs"], str(i), S.RANK_SEEDS)
        if len(got) == len(S.RANK_SEEDS):
            acc = statistics.mean(g["acc"] for g in got)
            points.append({"cell": f"random cell {i}", "edges": len(cell), "macs": got[0]["macs"],
                           "acc": acc, "score": score(acc, got[0]["macs"])})
    named = [(n, rank_doc.get("runs", {})) for n in rank_doc.get("references", ())]
    named += [(n, proxyfull.get("runs", {})) for n in proxyfull.get("cells", {})]
    proxy_named = []
    for name, runs in named:
        got = _mean_runs(runs, name, S.RANK_SEEDS)
        if got:
            acc = statistics.mean(g["acc"] for g in got)
            proxy_named.append({"cell": name, "macs": got[0]["macs"], "acc": acc,
                                "spread": max(g["acc"] for g in got) - min(g["acc"] for g in got),
                                "score": score(acc, got[0]["macs"]), "seeds": len(got)})
    report["proxy_full_budget"] = {"random": points, "named": proxy_named}
    if proxy_named:
        print("\nThe proxy at the full budget (validation accuracy, mean of "
              f"{len(S.RANK_SEEDS)} seeds)")
        print(f"{'cell':<28} {'MACs':>12} {'val acc':>8} {'score':>7} {'dominated by':>13}")
        for r in proxy_named:
            r["dominated_by"] = [p["cell"] for p in points
                                 if p["acc"] > r["acc"] and p["macs"] < r["macs"]]
            print(f"{r['cell']:<28} {r['macs']:>12,} {r['acc']:>8.4f} {r['score']:>7.4f} "
                  f"{len(r['dominated_by']):>13}")
        best = max(points, key=lambda p: p["score"], default=None)
        if best:
            print(f"best random cell by score: {best['cell']} ({best['edges']} edges, "
                  f"{best['macs']:,} MACs, acc {best['acc']:.4f}, score {best['score']:.4f})")

    costs = search_costs()
    report["search_costs"] = costs
    if costs:
        print("\nSearch cost (2 workers on 2 cores; CPU: the workers' training)")
        print(f"{'method':<24} {'candidates':>10} {'cand-epochs':>11} {'wall min':>9} "
              f"{'CPU min':>8}")
        for r in costs:
            sittings = r.get("sittings", 1)
            print(f"{r['method']:<24} {r['candidates']:>10} {r['candidate_epochs']:>11} "
                  f"{r['wall_min']:>9.1f} {r['cpu_min']:>8.1f}"
                  f"{'' if r['finished'] else '  (unfinished)'}"
                  f"{f'  ({sittings} sittings)' if sittings > 1 else ''}")

    retrain = S.load("retrain")
    rows = test_rows(sp, retrain, list(retrain.get("cells", {})) + ["ShrinkCNN-A cell"])
    report["retrain"] = rows
    if rows:
        print(f"\nRe-trained on train10k.npz (full budget, early stopping on the validation "
              f"split), seeds {S.TEST_SEEDS}, test.npz read once per network; "
              "test score = test acc - 0.1 (log10 MACs - 6)")
        head = (f"{'cell':<26} {'edges':>5} {'test acc':>8} {'spread':>6} {'test score':>10} "
                f"{'proxy MACs':>11} {'params':>7} {'ImageNet params':>15} {'ImageNet MACs':>13}")
        print(head)
        print("-" * len(head))
        for r in rows:
            print(f"{r['cell']:<26} {r['edges']:>5} {r['test_acc']:>8.4f} "
                  f"{r['test_spread']:>6.4f} {r['test_score']:>10.4f} {r['macs']:>11,} "
                  f"{r['params']:>7,} {r['imagenet_params']:>15,} "
                  f"{r['imagenet_macs'] / 1e6:>12.1f}M")
        report["targets"] = targets(rows)
        for k, v in report["targets"].items():
            print(f"target {k}: {v}")
    report["selection"] = report_selection(sp, rows)
    S.save("report", report)
    # the plot's test panel: the selection's choices beside the methods' first choices, where
    # they differ
    first = {r["cell"]: sorted(map(tuple, retrain["cells"][r["cell"]])) for r in rows
             if r["cell"] in retrain.get("cells", {})}
    chosen = report["selection"].get("chosen", {})
    selected = [{**r, "cell": f"{r['cell']}, selected"}
                for r in report["selection"].get("retrain", [])
                if first.get(r["cell"]) != sorted(map(tuple, chosen[r["cell"]]["edges"]))]
    if args.plot:
        plot(points, proxy_named, rows + selected, args.plot)
    else:
        print("\n(no plot: --plot NAME.png writes one under docs/reports/; reports are history, "
              "so give a new report a new name)")


def test_rows(sp: S.Space, doc: dict, names: list[str]) -> list[dict]:
    """The retrain part's tested networks (``doc``: a retrain part's results), one row each:
    test accuracy and score (mean of the seeds, spread), proxy and ImageNet costs."""
    rows = []
    for name in names:
        got = _mean_runs(doc.get("runs", {}), name, S.TEST_SEEDS)
        if not got:
            continue
        tests = [g["test_acc"] for g in got]
        edges = len(doc["cells"][name]) if name in doc.get("cells", {}) else 6
        params, macs = ((3_617_085, 383_677_672) if name == "ShrinkCNN-A cell"
                        else imagenet_cost(sp, doc["cells"][name]))
        rows.append({"cell": name, "edges": edges, "seeds": len(got),
                     "val_acc": statistics.mean(g["acc"] for g in got),
                     "test_acc": statistics.mean(tests), "test_spread": max(tests) - min(tests),
                     "test_scores": [score(t, got[0]["macs"]) for t in tests],
                     "test_score": score(statistics.mean(tests), got[0]["macs"]),
                     "macs": got[0]["macs"], "params": got[0]["params"],
                     "imagenet_params": params, "imagenet_macs": macs,
                     "epochs": [g["epochs"] for g in got],
                     "cpu_min": sum(g.get("cpu_seconds", 0) for g in got) / 60})
    return rows


def report_selection(sp: S.Space, rows: list[dict]) -> dict:
    """The final selection stage's choices (``select``), their test scores
    (``select_retrain``), the targets again with both methods selecting so, and whether a
    random cell of the rank part dominates a chosen cell at the full budget (seed
    SELECT_SEED's runs on both sides)."""
    sel = S.load("select")
    if not sel:
        return {}
    print_selection(sp, sel)
    chosen = selection(sp, sel)
    rank = S.load("rank")
    random_runs = [rank["runs"][f"{i}/{SELECT_SEED}"] for i in range(len(rank.get("cells", [])))
                   if f"{i}/{SELECT_SEED}" in rank.get("runs", {})]
    doc = S.load("select_retrain")
    sel_rows = test_rows(sp, doc, list(doc.get("cells", {})))
    out: dict = {"chosen": chosen, "retrain": sel_rows}
    if not sel_rows:
        return out
    print("\nThe chosen cells re-trained on train10k.npz and tested once (as above); "
          "dominated: random cells of the rank part with better accuracy and fewer MACs at the "
          f"full budget on the proxy (seed {SELECT_SEED})")
    print(f"{'method':<24} {'rank':>4} {'edges':>5} {'proxy MACs':>11} {'test acc':>8} "
          f"{'spread':>6} {'test score':>10} {'dominated':>9}")
    for r in sel_rows:
        c = chosen[r["cell"]]
        full = sel["runs"][f"{c['hash']}/{SELECT_SEED}"]
        r["dominated_by"] = sum(1 for q in random_runs
                                if q["acc"] > full["acc"] and q["macs"] < full["macs"])
        print(f"{r['cell']:<24} {c['rank']:>4} {r['edges']:>5} {r['macs']:>11,} "
              f"{r['test_acc']:>8.4f} {r['test_spread']:>6.4f} {r['test_score']:>10.4f} "
              f"{r['dominated_by']:>9}")
    anchor = [r for r in rows if r["cell"] == "ShrinkCNN-A cell"]
    out["targets"] = targets(sel_rows + anchor)
    for k, v in out["targets"].items():
        print(f"with the selection stage, {k}: {v}")
    return out


def targets(rows: list[dict]) -> dict:
    """The issue's targets, from the test scores: each search seed's best cell against the
    random search of the same seed and against ShrinkCNN-A's cell."""
    by = {r["cell"]: r for r in rows}
    out = {}
    anchor = by.get("ShrinkCNN-A cell")
    wins, seeds = 0, 0
    for seed in S.SEARCH_SEEDS:
        found = by.get("autoshrink" if seed == 0 else f"autoshrink, seed {seed}")
        rnd = by.get("random search" if seed == 0 else f"random search, seed {seed}")
        if found and rnd:
            seeds += 1
            wins += found["test_score"] >= rnd["test_score"]
            out[f"seed {seed} vs random search"] = (
                f"{found['test_score']:.4f} vs {rnd['test_score']:.4f}")
        if found and anchor:
            out[f"seed {seed} vs ShrinkCNN-A cell"] = (
                f"{found['test_score']:.4f} vs {anchor['test_score']:.4f} "
                f"({'at least' if found['test_score'] >= anchor['test_score'] else 'below'})")
    out["search at least random search"] = f"{wins} of {seeds} seeds measured (target: 2 of 3)"
    paper = by.get(S.EARLIER["paper"][0])
    if paper:  # one seed, at several times the searches' cost: against each reference
        for name in ("ShrinkCNN-A cell", "random, full budget",
                     *(f"random search{'' if k == 0 else f', seed {k}'}" for k in S.SEARCH_SEEDS)):
            if name in by:
                ref = by[name]["test_score"]
                out[f"paper procedure vs {name}"] = (
                    f"{paper['test_score']:.4f} vs {ref:.4f} "
                    f"({'at least' if paper['test_score'] >= ref else 'below'})")
    return out


def plot(points: list[dict], named: list[dict], rows: list[dict], name: str) -> None:
    """Left: the proxy at the full budget (validation accuracy; random cells, references,
    each method's best). Right: the re-trained networks' test accuracy. Both against proxy
    MACs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not points and not rows:
        return
    if rows:
        fig, (left, right) = plt.subplots(1, 2, figsize=(14, 4.8))
    else:  # nothing re-trained yet: the proxy alone
        fig, left = plt.subplots(figsize=(7, 4.8))
        right = None
    marks = iter([("*", "C3"), ("s", "C0"), ("^", "C2"), ("D", "C1"), ("P", "C4"), ("o", "C5"),
                  ("v", "C6"), ("X", "C7"), ("h", "C8"), ("<", "C9"), (">", "k")])
    style = {}

    def mark(name):
        """A cell's marker and colour; a method's selected cell takes its method's, hollow."""
        base = name.removesuffix(", selected")
        if base not in style:
            style[base] = next(marks, ("o", "k"))
        m, c = style[base]
        return m, c, "none" if base != name else c

    if points:
        left.scatter([p["macs"] / 1e6 for p in points], [p["acc"] for p in points], s=18,
                     c="0.6", label=f"random cells ({len(points)})")
    for r in named:
        m, c, face = mark(r["cell"])
        left.errorbar(r["macs"] / 1e6, r["acc"], yerr=r["spread"] / 2, fmt=m, c=c, mfc=face,
                      ms=9, label=r["cell"])
    left.set_title("CIFAR-10 proxy, full budget (validation, mean of 2 seeds)")
    left.set_ylabel("validation accuracy")
    for r in rows:
        m, c, face = mark(r["cell"])
        right.errorbar(r["macs"] / 1e6, r["test_acc"], yerr=r["test_spread"] / 2, fmt=m, c=c,
                       mfc=face, ms=9, label=r["cell"])
    if right is not None:
        right.set_title("re-trained on 10,000 images: test accuracy (2 seeds)")
        right.set_ylabel("test accuracy (test.npz, 2,000 images)")
    from matplotlib.ticker import FormatStrFormatter

    for ax in (left, right) if right is not None else (left,):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.set_xlabel("proxy network MACs (millions, log scale)")
        if ax is left:
            ax.legend(fontsize=7, loc="lower right")
        else:  # the test panel's points fill its corners: its legend goes beside it
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / name
    fig.savefig(out, dpi=100)
    print(f"wrote {out.relative_to(S.ROOT)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=("proxyfull", "report", "select", "select_retrain"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    ap.add_argument("--plot", metavar="NAME.png",
                    help="report: draw the Pareto plot to docs/reports/NAME.png")
    args = ap.parse_args()
    if args.plot and (Path(args.plot).name != args.plot or not args.plot.endswith(".png")):
        ap.error("--plot takes a file name ending in .png (written under docs/reports/)")
    {"proxyfull": part_proxyfull, "report": part_report, "select": part_select,
     "select_retrain": part_select_retrain}[args.part](args)


if __name__ == "__main__":
    main()
