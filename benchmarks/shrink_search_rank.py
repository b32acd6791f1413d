"""shrink_search's ranking parts and their analysis: ``rank`` (random cells at the full
budget), ``budget`` (short protocols trained as their own runs), ``cluttered`` (the harder
proxy), ``rank_table`` (Kendall tau of each cheap protocol against the full budget) and
``choose_protocol`` (the search protocol picked from it)."""

from __future__ import annotations

import sys

import shrink_search_config as cfg
from shrink_search_config import RANK_SEEDS, SPEC, TARGET_FRACTION, load, recommended, save
from shrink_search_space import REFERENCES, Space, reference_job, train_all


def part_rank(args) -> None:
    sp = Space()
    doc = load("rank")
    if "cells" not in doc:
        doc = {"protocol": {"spec": SPEC, "data": cfg.DATA or "digits", "train": sp.settings.train.as_dict(),
                            "seeds": list(RANK_SEEDS), "sample_seed": 1234,
                            "precision": args.precision},
               "cells": [list(map(list, c)) for c in sp.random_cells(args.cells, 1234)],
               "references": list(REFERENCES), "runs": {}}
    precision = doc["protocol"].get("precision", "fp32")
    jobs = {f"{i}/{s}": sp.job(c, s, precision=precision)
            for i, c in enumerate(doc["cells"]) for s in RANK_SEEDS}
    jobs.update({f"{name}/{s}": reference_job(sp, name, s, precision)
                 for name in doc.get("references", ()) for s in RANK_SEEDS})
    # the largest cells first: the pool ends with short jobs on both workers
    def size(key: str) -> int:
        name = key.split("/")[0]
        return len(doc["cells"][int(name)]) if name.isdigit() else {"complete DAG": 28}.get(name, 6)

    jobs = dict(sorted(jobs.items(), key=lambda kv: -size(kv[0])))
    train_all("rank", doc, jobs, args.workers)


# (schedule, epochs, batch) the budget part measures; batch None: the spec's (128)
FAST = (("linear", 1, None), ("linear", 2, None), ("constant", 2, 32), ("linear", 2, 32),
        ("constant", 2, 16))
# on cluttered digits: batch 32 (the digits recommendation), and what could rank as well as
# the first two epochs at batch 128 for less: one epoch at batch 32 or 64 (four or two times
# the steps of one at 128), two at 64 (session 13)
FAST_BY_DATA = {None: FAST, "cluttered-digits": (("constant", 2, 32), ("constant", 1, 32),
                                                  ("constant", 1, 64), ("constant", 2, 64)),
                # on CIFAR-10 (20 to 40 s a candidate-epoch): 2 epochs at batch 32 with a constant
                # rate; the first epoch is what a 1-epoch run with the same seed trains (batch 128
                # is read off the rank part's curves; batch 64 not measured, for time)
                "cifar10": (("constant", 2, 32),)}
# the rank seeds the budget part trains with (default: both): on CIFAR-10 the first only, for
# time, so its ranking is measured one way (the short runs of seed 101 against the full runs
# of seed 202)
BUDGET_SEEDS_BY_DATA = {"cifar10": RANK_SEEDS[:1]}


def fast_key(schedule: str, epochs: int, batch: int | None) -> str:
    return f"{schedule}-{epochs}" + (f"-b{batch}" if batch else "")


def part_budget(args) -> None:
    """Short budgets trained as their own runs, not read off a full run's curve: a learning
    rate that decays to zero over the budget (``schedule``), and smaller batches (more steps
    in the same epochs). The rank part's cells and seeds, each trained from scratch with every
    ``FAST`` protocol; their scores are ranked against the other seed's full-budget scores,
    as the rank part's curves are."""
    sp = Space()
    rank = load("rank")
    if "cells" not in rank:
        sys.exit("run the rank part first: the budget part ranks against its full scores")
    doc = load("budget")
    # in the rank part's precision
    fast = FAST_BY_DATA.get(cfg.DATA_NAME) or (("constant", recommended("--epochs"),
                                             recommended("--batch")),)
    precision = rank["protocol"].get("precision", "fp32")
    seeds = BUDGET_SEEDS_BY_DATA.get(cfg.DATA_NAME, RANK_SEEDS)
    doc["protocol"] = {"fast": [list(f) for f in fast], "seeds": list(seeds),
                       "precision": precision}
    jobs = {}
    for sched, e, batch in fast:
        extra = {"batch": batch} if batch else {}
        for i, c in enumerate(rank["cells"]):
            for s in seeds:
                jobs[f"{fast_key(sched, e, batch)}/{i}/{s}"] = sp.job(
                    c, s, precision=precision, epochs=e, schedule=sched, **extra)
    # the first seed's runs first: with them alone the ranking is measured one way
    jobs = dict(sorted(jobs.items(), key=lambda kv: kv[0].split("/")[2] != str(RANK_SEEDS[0])))
    train_all("budget", doc, jobs, args.workers)


def part_cluttered(args) -> None:
    """Does the harder built-in proxy separate cells? A few of the rank part's cells, 2 seeds
    each, at the full budget on ``--data cluttered-digits``."""
    if cfg.DATA:
        sys.exit("the cluttered part compares with the digits rank part: run it without --data")
    sp = Space(data="cluttered-digits")
    rank = load("rank")
    doc = load("cluttered")
    if "cells" not in doc:
        picks = sorted(range(len(rank["cells"])), key=lambda i: len(rank["cells"][i]))
        chosen = [picks[0], picks[len(picks) // 2], picks[-1]][: args.cells]
        doc = {"protocol": {"data": "cluttered-digits", "seeds": list(RANK_SEEDS)},
               "cells": {str(i): rank["cells"][i] for i in chosen}, "runs": {}}
    jobs = {f"{i}/{s}": sp.job(c, s) for i, c in doc["cells"].items() for s in RANK_SEEDS}
    train_all("cluttered", doc, jobs, args.workers)


def choose_protocol(sp: Space) -> dict:
    """The cheapest cheap protocol whose score ranks cells at TARGET_FRACTION of the noise
    ceiling or more (Kendall tau, the rank part's cells; validation accuracy only), in epochs
    per candidate, then by its ranking; the closest to it when none does. Decided once, kept in
    ``protocol.json`` (this data's tag)."""
    import statistics

    doc = load("protocol")
    if doc:
        return doc
    table = rank_table(sp)
    if not table:
        sys.exit("run the rank part first: the protocol is chosen from its ranking")
    full = list(load("rank")["runs"].values())
    b128 = statistics.median(r.get("cpu_seconds", r["seconds"]) / r["epochs"] for r in full)
    rows = []
    for row in table["rows"]:
        if row["metric"] != "score" or not row["epochs"] or row["epochs"] > 2:
            continue  # 'MACs only' trains nothing: it is no search protocol
        name = row.get("protocol", "constant-b128")
        batch = int(name.split("-b")[1].split()[0]) if "-b" in name else 128
        per_epoch = row.get("median_s_per_epoch", b128)
        rows.append({**row, "protocol": name, "batch": batch,
                     "cpu_s_per_candidate": per_epoch * row["epochs"]})
    good = [r for r in rows if r["fraction"] >= TARGET_FRACTION]
    # cheapest in candidate-epochs (an epoch costs about the same CPU at batch 32 and 128:
    # benchmarks/proxy_train.py), then the better ranking
    pick = (min(good, key=lambda r: (r["epochs"], -r["fraction"])) if good
            else max(rows, key=lambda r: r["fraction"]))
    doc = {"chosen": pick, "met_target": bool(good), "target_fraction": TARGET_FRACTION,
           "candidates": rows,
           "flags": ["--epochs", str(pick["epochs"]), "--halving", "0",
                     "--batch", str(pick["batch"])]}
    save("protocol", doc)
    return doc


def kendall(a: list[float], b: list[float]) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def rank_table(sp: Space) -> dict:
    import statistics

    doc = load("rank")
    runs, cells = doc.get("runs", {}), doc.get("cells", [])
    done = [i for i in range(len(cells)) if all(f"{i}/{s}" in runs for s in RANK_SEEDS)]
    if len(done) < 3:
        return {}
    a, b = ([runs[f"{i}/{s}"] for i in done] for s in RANK_SEEDS)

    def fast(run, r):  # what a run with epochs=r would have reported: the best of its first r
        return max(run["curve"][:r])

    gaps = [abs(x["acc"] - y["acc"]) for x, y in zip(a, b)]
    accs = [(x["acc"] + y["acc"]) / 2 for x, y in zip(a, b)]
    out = {"cells": len(done), "rows": [],
           "seed_gap_median": statistics.median(gaps), "seed_gap_max": max(gaps),
           "acc_range": [min(accs), max(accs)],
           "epochs_full_median": statistics.median([r["epochs"] for r in a + b])}
    for metric in ("score", "acc"):
        def val(run, acc, metric=metric):
            return sp.score(acc, run["macs"]) if metric == "score" else acc

        ceiling = kendall([val(x, x["acc"]) for x in a], [val(y, y["acc"]) for y in b])
        for r in (1, 2, 3, 4, 5):
            # the r-epoch scores of one seed against the full scores of the other, both ways
            t = (kendall([val(x, fast(x, r)) for x in a], [val(y, y["acc"]) for y in b])
                 + kendall([val(y, fast(y, r)) for y in b], [val(x, x["acc"]) for x in a])) / 2
            out["rows"].append({"metric": metric, "epochs": r, "tau": t, "ceiling": ceiling,
                                "fraction": t / ceiling if ceiling > 0 else float("nan")})
        if metric == "score":  # no training at all: the cost term alone ranks the cells
            t = (kendall([val(x, 0.0) for x in a], [val(y, y["acc"]) for y in b])
                 + kendall([val(y, 0.0) for y in b], [val(x, x["acc"]) for x in a])) / 2
            out["rows"].append({"metric": metric, "epochs": 0, "protocol": "MACs only",
                                "tau": t, "ceiling": ceiling,
                                "fraction": t / ceiling if ceiling > 0 else float("nan")})
        budget = load("budget").get("runs", {})
        for sched, e, batch in FAST_BY_DATA.get(cfg.DATA_NAME, FAST):  # short runs trained as their own (the budget part)
            key = fast_key(sched, e, batch)
            got = {s: [budget.get(f"{key}/{i}/{s}") for i in done] for s in RANK_SEEDS}
            # each seed whose short runs are all done, against the other seed's full runs
            ways = [(got[s], full) for s, full in zip(RANK_SEEDS, (b, a))
                    if all(r is not None for r in got[s])]
            if not ways:
                continue
            # CPU seconds where recorded (wall seconds on a shared machine say little)
            cpu = statistics.median(x.get("cpu_seconds", x["seconds"]) / e
                                    for fs, _ in ways for x in fs)
            # with a constant rate, the first r epochs of a run are a run with epochs=r
            for r in range(1, e + 1) if sched == "constant" else (e,):
                t = statistics.mean(kendall([val(x, fast(x, r)) for x in fs],
                                            [val(y, y["acc"]) for y in full])
                                    for fs, full in ways)
                name = key if r == e else fast_key(sched, r, batch) + f" (of {key})"
                out["rows"].append({"metric": metric, "epochs": r, "protocol": name, "tau": t,
                                    "ceiling": ceiling, "median_s_per_epoch": cpu,
                                    "directions": len(ways),
                                    "fraction": t / ceiling if ceiling > 0 else float("nan")})
    return out
