"""shrink_search's search methods: the timed ``shrinkc shrink`` runs (the ``search`` and
``paper`` parts), random search on the same candidate-epochs (``random``), and what their
results give: the candidate-epochs a search trained (``budget_of``) and each method's best cell
(``best_cells``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import shrink_search_config as cfg
from hostinfo import cpu_flags
from shrink_search_config import (
    EARLIER,
    RANDOM_EARLIER,
    RANK_SEEDS,
    RESULTS,
    ROOT,
    SEARCH_SEEDS,
    SPEC,
    load,
    recommended,
    save,
    seeded,
)
from shrink_search_rank import choose_protocol
from shrink_search_space import Space, train_all


def timed_search(part: str, spec: str, extra: list[str]) -> None:
    """Run (or resume) ``shrinkc shrink spec extra`` into runs/PART, timing each invocation,
    and keep its log in PART.json."""
    doc = load(part)
    out = RESULTS / "runs" / f"{part}{cfg.TAG}"
    resume = ["--resume"] if (out / "run.json").exists() else []
    data = ["--data", cfg.DATA] if cfg.DATA else []
    cmd = [sys.executable, "-m", "shrinkc", "shrink", spec, "-o", str(out), "--quiet", *extra,
           *data, *resume]
    t = time.perf_counter()
    # SIGTERM (or Ctrl-C) stops the search; the time it ran and its log so far are kept, and
    # running the part again resumes it
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    finished = False
    try:
        subprocess.run(cmd, check=True, cwd=ROOT)
        finished = True
    finally:
        doc.setdefault("invocations", []).append(
            {"command": " ".join(["shrinkc", *cmd[3:]]),
             "wall_s": round(time.perf_counter() - t, 1),
             "load_average_end": round(os.getloadavg()[0], 2),
             **({} if finished else {"interrupted": True})})
        if (out / "log.jsonl").exists():
            _keep_log(part, doc, out)


def _keep_log(part: str, doc: dict, out: Path) -> None:
    run = json.loads((out / "run.json").read_text())
    doc["machine"] = {"precision": run.get("precision"), "device": run.get("device"),
                      "cpu": cpu_flags(), "cpus": os.cpu_count()}
    doc["log"] = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    save(part, doc)


def part_search(args) -> None:
    if cfg.RECOMMENDED is None:
        cfg.RECOMMENDED = choose_protocol(Space())["flags"]
    timed_search(seeded("search"), SPEC, ["--workers", str(args.workers), *cfg.RECOMMENDED,
                                          *(["--seed", str(cfg.SEED)] if cfg.SEED else [])])


def part_paper(args) -> None:
    """The paper's procedure, timed: the spec's own settings (every candidate trained from
    scratch for up to 20 epochs, patience 3, batch 128, no halving), in --precision auto's
    precision. Resumes an interrupted run."""
    timed_search("paper", SPEC, ["--workers", str(args.workers), "--halving", "0"])


def part_random(args) -> None:
    sp = Space()
    if cfg.RECOMMENDED is None:
        cfg.RECOMMENDED = choose_protocol(sp)["flags"]
    search = load(seeded("search"))
    if "log" not in search:
        sys.exit("run the search part first (with the same --seed): random search spends the "
                 "same candidate-epochs")
    budget = budget_of(search["log"])
    epochs, batch = recommended("--epochs"), recommended("--batch")
    # the precision the search trained in (recorded in its run.json), so that both methods
    # train their candidates the same way
    precision = search.get("machine", {}).get("precision") or "fp32"
    part = seeded("random")
    doc = load(part)
    if "cells" not in doc:
        n = max(1, budget // epochs)
        doc = {"protocol": {"budget_epochs": budget, "epochs": epochs, "batch": batch,
                            "cells": n, "sample_seed": 4321 + cfg.SEED, "precision": precision},
               "cells": [list(map(list, c)) for c in sp.random_cells(n, 4321 + cfg.SEED)],
               "runs": {}}
    precision = doc["protocol"].get("precision", "fp32")
    jobs = {f"{i}": sp.job(c, 7000 + 1000 * cfg.SEED + i, precision=precision, epochs=epochs,
                           batch=batch)
            for i, c in enumerate(doc["cells"])}
    train_all(part, doc, jobs, args.workers)  # records each sitting's wall time


def budget_of(log: list[dict]) -> int:
    """The candidate-epochs a search trained: the epochs of every training it ran (a halving
    survivor's later round counts only the epochs it added to its earlier one)."""
    total, before = 0, {}
    for e in log:
        if "isomorphic_to" in e:
            continue
        key = (e["step"], tuple(e["edge"] or ()))
        total += e["epochs"] - before.get(key, 0)
        before[key] = e["epochs"]
    return total


def best_cells(sp: Space) -> dict[str, list]:
    """Each method's best cell: the search's best snapshot, random search's best score."""
    out = {}
    searches = {"search": "autoshrink", **{seeded("search", k): f"autoshrink, seed {k}"
                                           for k in SEARCH_SEEDS[1:]},
                **{part: name for part, (name, _) in EARLIER.items()}}
    for part, name in searches.items():
        search = load(part)
        calls = search.get("invocations", [])
        if calls and all("interrupted" in c for c in calls):
            continue  # a search cut short (the paper's procedure between sittings): no result yet
        if "log" in search:
            snaps = [e for e in search["log"] if e.get("chosen") and e.get("edge") is not None]
            best = max(snaps, key=lambda e: (e["score"], -e["edges"]))
            out[name] = _edges_after(sp, search["log"], best["step"])
    for part, name in {"random": "random search", **{seeded("random", k): f"random search, seed {k}"
                                                     for k in SEARCH_SEEDS[1:]},
                       **RANDOM_EARLIER}.items():
        rnd = load(part)
        if rnd.get("runs") and len(rnd["runs"]) == len(rnd["cells"]):  # finished runs only
            i = max(rnd["runs"], key=lambda k: (sp.score(rnd["runs"][k]["acc"],
                                                         rnd["runs"][k]["macs"]), -int(k)))
            out[name] = rnd["cells"][int(i)]
    rank = load("rank")
    first = {k.split("/")[0]: r for k, r in rank.get("runs", {}).items()
             if k.endswith(f"/{RANK_SEEDS[0]}") and k.split("/")[0].isdigit()}  # random cells
    if first:  # random search at the paper's full budget: the rank part's first seed
        i = max(first, key=lambda k: (sp.score(first[k]["acc"], first[k]["macs"]), -int(k)))
        out["random, full budget"] = rank["cells"][int(i)]
    return out


def _edges_after(sp: Space, log: list[dict], step: int) -> list:
    """The live edges after ``step`` of a run, replayed from its log."""
    from shrinkc.search import rules

    edges = rules.live_edges(sp.space)
    for s in range(1, step + 1):
        for e in log:
            if e["step"] == s and e["chosen"]:
                edges = rules.remove(sp.space, edges, tuple(e["edge"]))
    return [list(e) for e in edges]
