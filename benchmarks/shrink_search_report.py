"""shrink_search's ``report`` part: the ranking, re-training, search-cost and cluttered-proxy
tables, the random cells that dominate each re-trained cell, and docs/search_pareto.png."""

from __future__ import annotations

import shrink_search_config as cfg
from shrink_search_config import (
    EARLIER,
    RANDOM_EARLIER,
    RANK_SEEDS,
    RETRAIN_SEEDS,
    ROOT,
    load,
    save,
)
from shrink_search_methods import budget_of
from shrink_search_rank import rank_table
from shrink_search_space import Space


def part_report(args) -> None:
    import statistics

    sp = Space()
    rank = rank_table(sp)
    if rank:
        print(f"\nRanking: Kendall tau over {rank['cells']} random cells, r-epoch scores of one "
              "seed against full scores of the other (mean of both ways)")
        print(f"{'metric':<7} {'protocol':<15} {'epochs':>6} {'tau':>7} {'ceiling':>8} "
              f"{'fraction':>9}")
        for row in rank["rows"]:
            how = row.get("protocol", "constant-b128")
            print(f"{row['metric']:<7} {how:<15} {row['epochs']:>6} {row['tau']:>7.3f} "
                  f"{row['ceiling']:>8.3f} {row['fraction']:>9.2f}")
        print("constant-b128: read off the full runs' curves; the others trained as their own "
              "runs (the budget part): schedule-epochs[-batch]")
        print(f"full-budget accuracy of the cells (mean of 2 seeds): {rank['acc_range'][0]:.4f} "
              f"to {rank['acc_range'][1]:.4f}; the two seeds of a cell differ by "
              f"{rank['seed_gap_median']:.4f} (median), up to {rank['seed_gap_max']:.4f}; "
              f"median {rank['epochs_full_median']} epochs before early stopping")
    doc = load("retrain")
    runs = doc.get("runs", {})
    rows = []
    if runs:
        print("\nRe-trained from scratch at the full budget (20 epochs, patience 3), "
              f"seeds {RETRAIN_SEEDS}")
        names = list(doc.get("cells", {})) + ["ShrinkCNN-A cell"]
        width = max(24, *map(len, names))
        head = (f"{'cell':<{width}} {'edges':>5} {'acc mean':>9} {'spread':>7} {'MACs':>12} "
                f"{'params':>8} {'score':>7}")
        print(head)
        print("-" * len(head))
        for name in names:
            got = [runs[f"{name}/{s}"] for s in RETRAIN_SEEDS if f"{name}/{s}" in runs]
            if not got:
                continue
            accs = [g["acc"] for g in got]
            edges = len(doc["cells"][name]) if name in doc.get("cells", {}) else 6
            mean = statistics.mean(accs)
            row = {"cell": name, "edges": edges, "acc_mean": mean,
                   "acc_spread": max(accs) - min(accs), "seeds": len(got),
                   "macs": got[0]["macs"], "params": got[0]["params"],
                   "score": sp.score(mean, got[0]["macs"])}
            rows.append(row)
            print(f"{name:<{width}} {edges:>5} {mean:>9.4f} {row['acc_spread']:>7.4f} "
                  f"{row['macs']:>12,} {row['params']:>8,} {row['score']:>7.4f}")
    print("\nSearch cost:")
    for part, how in (("search", " ".join(cfg.RECOMMENDED or load("protocol").get("flags", []))
                       + ", --precision auto = "
                       + str(load("search").get("machine", {}).get("precision"))),
                      *((p, h) for p, (_, h) in EARLIER.items())):
        search = load(part)
        if "log" not in search:
            continue
        trained = [e for e in search["log"] if "isomorphic_to" not in e]
        wall = sum(i["wall_s"] for i in search.get("invocations", []))
        cpu = sum(e.get("cpu_seconds", 0.0) for e in trained)
        print(f"AutoShrink ({how}): {wall / 60:.1f} min wall, "
              f"{len(trained)} trainings, {budget_of(search['log'])} candidate-epochs, "
              f"{cpu / 60:.1f} CPU-minutes in the workers ({cpu / 120:.1f} min on 2 idle "
              "workers)")
    first = [r for k, r in load("rank").get("runs", {}).items()
             if k.endswith(f"/{RANK_SEEDS[0]}") and k.split("/")[0].isdigit()]
    if first:
        print(f"random, full budget: {len(first)} random cells (the rank part's seed "
              f"{RANK_SEEDS[0]}), {sum(r['epochs'] for r in first)} candidate-epochs")
    for part, name in {"random": "random search", **RANDOM_EARLIER}.items():
        rnd = load(part)
        if rnd.get("runs"):
            print(f"{name}: {len(rnd['runs'])} cells x {rnd['protocol']['epochs']} epochs "
                  f"({rnd['protocol'].get('precision', 'fp32')}), "
                  f"{sum(rnd.get('wall_s', [0])) / 60:.1f} min wall")
    cl = load("cluttered")
    if cl.get("runs"):
        rank_runs = load("rank").get("runs", {})
        print("\nThe harder proxy (--data cluttered-digits) against digits, full budget, "
              f"seeds {RANK_SEEDS}")
        print(f"{'cell':<8} {'edges':>5} {'MACs':>12} {'digits acc':>16} {'cluttered acc':>16}")
        for i, cell in cl["cells"].items():
            accs = {name: [r[f"{i}/{s}"]["acc"] for s in RANK_SEEDS if f"{i}/{s}" in r]
                    for name, r in (("digits", rank_runs), ("cluttered", cl["runs"]))}
            macs = next((r["macs"] for k, r in cl["runs"].items() if k.startswith(f"{i}/")), 0)
            print(f"{'cell ' + i:<8} {len(cell):>5} {macs:>12,} "
                  f"{' / '.join(f'{a:.3f}' for a in accs['digits']):>16} "
                  f"{' / '.join(f'{a:.3f}' for a in accs['cluttered']):>16}")
    dominated = dominating(rows)
    for name, who in dominated.items():
        print(f"{name}: dominated by {len(who)} random cell(s) (higher mean accuracy and fewer "
              f"MACs){': ' + ', '.join(who) if who else ''}")
    save("report", {"rank": rank, "retrain": rows, "dominated_by": dominated})
    pareto(sp, rows)


def dominating(rows: list[dict]) -> dict[str, list[str]]:
    """For each re-trained cell, the rank part's random cells (full budget, mean of 2 seeds)
    with higher accuracy and fewer MACs."""
    doc = load("rank")
    runs, out = doc.get("runs", {}), {}
    cells = []
    for i in range(len(doc.get("cells", []))):
        got = [runs[f"{i}/{s}"] for s in RANK_SEEDS if f"{i}/{s}" in runs]
        if len(got) == len(RANK_SEEDS):
            cells.append((f"cell {i}", got[0]["macs"], sum(g["acc"] for g in got) / len(got)))
    for r in rows:
        out[r["cell"]] = [name for name, macs, acc in cells
                          if acc > r["acc_mean"] and macs < r["macs"]]
    return out


def pareto(sp: Space, rows: list[dict]) -> None:
    """docs/search_pareto.png: accuracy against proxy MACs for the rank part's random cells
    (mean of 2 seeds), each method's best and the references (mean of 3 seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doc = load("rank")
    runs, pts = doc.get("runs", {}), []
    for i in range(len(doc.get("cells", []))):
        got = [runs[f"{i}/{s}"] for s in RANK_SEEDS if f"{i}/{s}" in runs]
        if len(got) == len(RANK_SEEDS):
            pts.append((got[0]["macs"], sum(g["acc"] for g in got) / len(got)))
    if not pts:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([p[0] / 1e6 for p in pts], [p[1] for p in pts], s=18, c="0.6",
               label=f"random cells ({len(pts)}, mean of 2 seeds)")
    front, best = [], -1.0
    for m, a in sorted(pts):
        if a > best:
            front.append((m, a))
            best = a
    ax.plot([p[0] / 1e6 for p in front], [p[1] for p in front], c="0.6", lw=1, ls="--",
            label="Pareto front of the random cells")
    marks = {"autoshrink": ("*", "C3"), "random search": ("s", "C0"),
             "random, full budget": ("P", "C4"),
             "complete DAG": ("^", "C2"), "ShrinkCNN-A cell": ("D", "C1")}
    others = iter([("o", "C5"), ("v", "C6"), ("X", "C7"), ("h", "C8"), ("<", "C9"), ("o", "k")])
    for r in rows:
        m, c = marks.get(r["cell"]) or next(others, ("o", "k"))
        ax.errorbar(r["macs"] / 1e6, r["acc_mean"], yerr=r["acc_spread"] / 2, fmt=m, c=c, ms=10,
                    label=f"{r['cell']} (3 seeds)")
    ax.set_xscale("log")
    ax.set_xlabel("proxy network MACs (millions, log scale)")
    ax.set_ylabel(f"validation accuracy ({cfg.DATA or 'digits'} proxy)")
    ax.set_title("AutoShrink CNN space: accuracy against cost")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out = ROOT / "docs" / f"search_pareto{cfg.TAG}.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out.relative_to(ROOT)}")
