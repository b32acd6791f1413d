"""Does the AutoShrink search find something? Measured against random search, in parts.

On the paper's CNN space (``specs/shrinkcnn_space.shrink``, default digits proxy), each part is
run on its own, writes its raw results to ``benchmarks/results/shrink_search/PART.json`` after
every finished training, and resumes from there when run again:

    python benchmarks/shrink_search.py rank      # >= 20 random cells, 2 seeds each, full budget
    python benchmarks/shrink_search.py search    # the recommended AutoShrink run, timed
    python benchmarks/shrink_search.py paper     # the paper's procedure (from scratch), timed
    python benchmarks/shrink_search.py random    # random search, same candidate-epoch budget
    python benchmarks/shrink_search.py retrain   # each method's best + references, 3 seeds
    python benchmarks/shrink_search.py rnn       # the ShrinkRNN search on the PTB proxy, timed
    python benchmarks/shrink_search.py rnn_retrain   # its best cell + references, full budget
    python benchmarks/shrink_search.py cluttered --cells 3   # the harder proxy: does it separate?
    python benchmarks/shrink_search.py report    # the tables and docs/search_pareto.png

``rank`` measures whether a cheap evaluation ranks cells as full training does. Every training
records its learning curve (validation accuracy after each epoch), and with a constant learning
rate and no schedule the first r epochs of a full run are exactly what a run with ``epochs=r``
and the same seed trains, so one full run per cell and seed gives the score of every shorter
budget. The report gives Kendall tau between the r-epoch scores of one seed and the full scores
of the other seed, next to tau between the two seeds' full scores (the noise ceiling).

``search`` runs ``shrinkc shrink`` with the settings this benchmark recommends (``--epochs``,
``--halving``, see the report); ``random`` samples cells of the space and trains each with the
same per-candidate protocol until the search's candidate-epochs are spent; ``retrain`` trains
each method's best cell, the complete DAG and ShrinkCNN-A's cell in the proxy network from
scratch at the paper's full budget (20 epochs, patience 3) with 3 seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

from hostinfo import cpu_flags

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SPEC = "specs/shrinkcnn_space.shrink"
RESULTS = ROOT / "benchmarks" / "results" / "shrink_search"
RANK_SEEDS = (101, 202)
RETRAIN_SEEDS = (11, 22, 33)
SEARCH_SEEDS = (0, 1, 2)  # the search seeds of the search and random parts (--seed)
# the settings this benchmark recommends for the search, per proxy data (chosen from the rank
# and budget parts' runs on each: on digits, 2 epochs at batch 32 with halving ranked best of
# the fast protocols; on cluttered digits, one epoch at batch 32 ranks at 0.99 of the noise
# ceiling for half the training of the first 2 epochs at batch 128 (0.93, session 12's choice):
# four protocols were compared on the same 20 cells, so the 0.99 carries a selection bias)
RECOMMENDED_BY_DATA = {
    None: ["--epochs", "2", "--halving", "2", "--batch", "32"],
    "cluttered-digits": ["--epochs", "1", "--halving", "0", "--batch", "32"],
    # on the CIFAR-10 proxy: chosen by ``choose_protocol`` from its rank and budget parts
    # (the cheapest at 0.8 of the noise ceiling), fixed in protocol_cifar10.json at the first
    # search so that every search seed and random search use the same
    "cifar10": None,
}
TARGET_FRACTION = 0.8  # of the noise ceiling: the protocol the search should rank at
RECOMMENDED = RECOMMENDED_BY_DATA[None]
# the search part's earlier runs, kept under their own names: part -> (cell name, how it ran);
# a part exists only for the data it ran on (search_b32 and search_e2b128 on cluttered digits:
# search_b32_cluttered, search_e2b128_cluttered)
EARLIER = {
    "search_avx2": ("autoshrink, AVX2 fp32",
                    " ".join(RECOMMENDED) + ", fp32 on an AVX2 CPU (session 10)"),
    "search_b128": ("autoshrink, batch 128", "--epochs 2 --halving 2, batch 128, fp32 on an "
                    "AVX2 CPU (session 9)"),
    "search_b32": ("autoshrink, batch 32", "--epochs 2 --halving 2 --batch 32, bf16 "
                   "(session 11)"),
    "search_e2b128": ("autoshrink, 2 epochs at batch 128", "--epochs 2 --halving 0 --batch 128, "
                      "bf16 (session 12)"),
    "paper": ("autoshrink, paper procedure", "the paper's procedure: from scratch, up to 20 "
              "epochs, patience 3, batch 128, no halving; --precision auto"),
}
# the random part's earlier runs (fp32 on the AVX2 CPU beside search_avx2; on cluttered digits
# batch 32 beside search_b32, 2 epochs at batch 128 beside search_e2b128)
RANDOM_EARLIER = {"random_avx2": "random search, AVX2 fp32",
                  "random_b32": "random search, batch 32",
                  "random_e2b128": "random search, 2 epochs at batch 128"}


# short names for the shared data sets (``--data cifar10``: the paper's CIFAR-10 proxy)
SHARED = ROOT.parent / "shared" / "data"
DATA_ALIASES = {"cifar10": str(SHARED / "cifar10" / "proxy.npz")}

# --data: the proxy data of every part but ``cluttered`` (None: the default digits). A part run
# on other data keeps its results apart: PART_TAG.json, runs/PART_TAG, search_pareto_TAG.png.
DATA: str | None = None
DATA_NAME: str | None = None  # --data as given (cifar10, cluttered-digits, a path)
TAG = ""
SEED = 0  # --seed: the search seed of the search and random parts (0: the spec's)


def seeded(part: str, seed: int | None = None) -> str:
    """The name a search or random part's results are kept under for a search seed (seed 0,
    the spec's own, keeps the plain name)."""
    seed = SEED if seed is None else seed
    return part if not seed else f"{part}_s{seed}"


def recommended(flag: str) -> int:
    return int(RECOMMENDED[RECOMMENDED.index(flag) + 1])


# --------------------------------------------------------------------------- shared


class Space:
    """The paper space and its proxy network, ready to make jobs from."""

    def __init__(self, spec: str = SPEC, data: str | None = ""):
        data = DATA if data == "" else data
        from shrinkc.compiler import check
        from shrinkc.compiler.ir import SearchDef, SpaceDef
        from shrinkc.compiler.pipeline import build_graph
        from shrinkc.data import images
        from shrinkc.search.settings import settings as read_settings

        self.spec, self.data = spec, data
        checked = check(ROOT / spec)
        self.parsed = checked.sources.main
        self.space = next(i for i in self.parsed.items if isinstance(i, SpaceDef))
        self.search = next(i for i in checked.program.items if isinstance(i, SearchDef))
        self.settings = read_settings(self.search, {})
        shape = tuple(build_graph(checked, self.search.network).input_shape.as_list())
        self.overrides = {"classes": images.load(data, shape).classes}

    def job(self, edges, seed: int, precision: str = "fp32", **train):
        from shrinkc.search.job import make_job

        return make_job(path=str(ROOT / self.spec), program=self.parsed, space=self.space.name,
                        edges=tuple(map(tuple, edges)), network=self.search.network,
                        overrides=self.overrides, train=replace(self.settings.train, **train),
                        data=self.data, seed=seed, threads=1, precision=precision)

    def score(self, acc: float, macs: int) -> float:
        from shrinkc.search import rules

        return rules.score(self.settings.score, {"acc": acc, "macs": macs})

    def cell_hash(self, edges) -> str:
        from shrinkc.compiler.analysis.cellhash import cell_hash
        from shrinkc.compiler.ir import SpaceDef
        from shrinkc.compiler.passes.space import expand
        from shrinkc.search import rules

        prog = rules.with_edges(self.parsed, self.space.name, tuple(map(tuple, edges)))
        return cell_hash(expand(prog.defs(SpaceDef)[self.space.name]))

    def random_cells(self, n: int, seed: int, exclude=()) -> list[tuple]:
        """``n`` distinct random cells of the space (by cell hash): a random number of edges
        (2 to all), a random subset of that size, cleaned up."""
        from shrinkc.compiler.passes.space import cleanup, node_count
        from shrinkc.search import rules

        rng = random.Random(seed)
        full = rules.live_edges(self.space)
        nodes = node_count(self.space)
        seen, cells = set(exclude), []
        while len(cells) < n:
            k = rng.randint(2, len(full))
            edges = cleanup(tuple(sorted(rng.sample(full, k), key=lambda e: (e[1], e[0]))), nodes)
            if not rules.valid(edges):
                continue
            h = self.cell_hash(edges)
            if h not in seen:
                seen.add(h)
                cells.append(edges)
        return cells


def shrinka_job(sp: Space, seed: int, precision: str = "fp32"):
    """ShrinkCNN-A's released cell (5 nodes, 6 edges) in the search's proxy network."""
    from shrinkc.search.job import Job

    cell = (ROOT / "specs" / "shrinkcnn_a.shrink").read_text()
    cell = cell[cell.index("cell ShrinkA"):cell.index("network ShrinkCNN_A")]
    text = ("shrink 1\n\n" + cell + "network Proxy(classes = 10) {\n"
            "    input image[3, 32, 32]\n    stem conv(32, k=3) relu\n"
            "    stage ShrinkA(16) x 1\n    stage ShrinkA(32) x 1 downsample maxpool(2)\n"
            "    stage ShrinkA(64) x 1 downsample maxpool(2)\n"
            "    head global_avgpool -> linear(classes)\n}\n")
    return Job(path=str(ROOT / "benchmarks" / "shrinka_proxy.shrink"), text=text,
               network="Proxy", overrides=sp.overrides, train=sp.settings.train,
               data=sp.data, seed=seed, threads=1, edges=6, precision=precision)


def load(part: str) -> dict:
    path = RESULTS / f"{part}{TAG}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def save(part: str, doc: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{part}{TAG}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


def _evaluate(job):
    from shrinkc.search.train import evaluate

    return evaluate(job)


def train_all(part: str, doc: dict, jobs: dict, workers: int, fns: dict | None = None) -> dict:
    """Train the named jobs not yet in ``doc['runs']``, saving after each one finishes
    (``fns``: a picklable function per job name that trains it, instead of ``evaluate``)."""
    runs = doc.setdefault("runs", {})
    todo = {k: j for k, j in jobs.items() if k not in runs}
    print(f"{part}: {len(jobs) - len(todo)} of {len(jobs)} trainings done, {len(todo)} to go",
          flush=True)
    if not todo:
        return doc
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit((fns or {}).get(k, _evaluate), j): k for k, j in todo.items()}
        for f in as_completed(futures):
            k = futures[f]
            r = f.result()
            quality, cost = ("ppl", "flops") if "ppl" in r else ("acc", "macs")  # RNN or CNN
            runs[k] = {x: r[x] for x in (quality, "test_acc", cost, "params", "epochs", "curve",
                                         "seconds", "cpu_seconds") if x in r}
            save(part, doc)
            print(f"  {k}: {quality} {r[quality]:.4f} in {r['epochs']} epochs, "
                  f"{r['seconds']:.0f} s ({time.perf_counter() - t0:.0f} s in)", flush=True)
    return doc


# --------------------------------------------------------------------------- parts


# the reference cells the rank part trains beside its random cells (from the CIFAR-10 rank on)
REFERENCES = ("complete DAG", "ShrinkCNN-A cell")


def reference_job(sp: Space, name: str, seed: int, precision: str, **train):
    from shrinkc.search import rules

    if name == "complete DAG":
        return sp.job(rules.live_edges(sp.space), seed, precision=precision, **train)
    job = shrinka_job(sp, seed, precision)
    return replace(job, train=replace(job.train, **train))


def part_rank(args) -> None:
    sp = Space()
    doc = load("rank")
    if "cells" not in doc:
        doc = {"protocol": {"spec": SPEC, "data": DATA or "digits", "train": sp.settings.train.as_dict(),
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
    fast = FAST_BY_DATA.get(DATA_NAME) or (("constant", recommended("--epochs"),
                                             recommended("--batch")),)
    precision = rank["protocol"].get("precision", "fp32")
    seeds = BUDGET_SEEDS_BY_DATA.get(DATA_NAME, RANK_SEEDS)
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
    if DATA:
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


def timed_search(part: str, spec: str, extra: list[str]) -> None:
    """Run (or resume) ``shrinkc shrink spec extra`` into runs/PART, timing each invocation,
    and keep its log in PART.json."""
    doc = load(part)
    out = RESULTS / "runs" / f"{part}{TAG}"
    resume = ["--resume"] if (out / "run.json").exists() else []
    data = ["--data", DATA] if DATA else []
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


def part_search(args) -> None:
    global RECOMMENDED
    if RECOMMENDED is None:
        RECOMMENDED = choose_protocol(Space())["flags"]
    timed_search(seeded("search"), SPEC, ["--workers", str(args.workers), *RECOMMENDED,
                                          *(["--seed", str(SEED)] if SEED else [])])


def part_paper(args) -> None:
    """The paper's procedure, timed: the spec's own settings (every candidate trained from
    scratch for up to 20 epochs, patience 3, batch 128, no halving), in --precision auto's
    precision. Resumes an interrupted run."""
    timed_search("paper", SPEC, ["--workers", str(args.workers), "--halving", "0"])


RNN_SPEC = "specs/shrinkrnn_space.shrink"
RNN_DATA = ROOT.parent / "shared" / "data" / "penn_proxy"
RNN_SETTINGS = ["--epochs", "2"]  # the paper: up to 10 epochs; see the report


def part_rnn(args) -> None:
    """The ShrinkRNN search on the PTB proxy corpus, timed (resumes an interrupted run)."""
    if DATA:
        sys.exit("the rnn part searches the PTB proxy corpus: run it without --data")
    timed_search("rnn", RNN_SPEC, ["--data", str(RNN_DATA), "--workers", str(args.workers),
                                   *RNN_SETTINGS])


RNN_SEEDS = (11, 22)


def part_rnn_retrain(args) -> None:
    """The RNN search's best cell, the released ShrinkRNN cell and the complete DAG, each in
    the proxy language model at the search's full budget (up to 10 epochs, patience 2), with
    2 seeds: does the 2-epoch search's choice hold up?"""
    from shrinkc.compiler import check
    from shrinkc.compiler.ir import SearchDef, SpaceDef
    from shrinkc.data import corpus
    from shrinkc.search import rules
    from shrinkc.search.job import Job, make_job
    from shrinkc.search.settings import settings as read_settings

    if DATA:
        sys.exit("the rnn_retrain part uses the PTB proxy corpus: run it without --data")
    search = load("rnn")
    if "log" not in search:
        sys.exit("run the rnn part first")
    checked = check(ROOT / RNN_SPEC)
    parsed = checked.sources.main
    space = next(i for i in parsed.items if isinstance(i, SpaceDef))
    block = next(i for i in checked.program.items if isinstance(i, SearchDef))
    settings = read_settings(block, {}, lm=True)
    train = settings.train
    overrides = {"vocab": corpus.load(str(RNN_DATA)).size}
    snaps = [e for e in search["log"] if e.get("chosen") and e.get("edge") is not None]
    best = max(snaps, key=lambda e: (e["score"], -e["edges"]))
    edges = rules.live_edges(space)
    for e in sorted(snaps, key=lambda e: e["step"]):
        if e["step"] <= best["step"]:
            edges = rules.remove(space, edges, tuple(e["edge"]))
    cells = {"autoshrink": edges, "complete DAG": rules.live_edges(space)}

    def job(name: str, seed: int):
        if name == "ShrinkRNN cell":  # the released cell, its own activations, in ProxyLM
            text = (ROOT / "specs" / "shrinkrnn.shrink").read_text()
            cell = text[text.index("recurrent cell"):text.index("network ShrinkRNN")]
            net = (ROOT / RNN_SPEC).read_text()
            net = net[net.index("network ProxyLM"):net.index("search ShrinkRNN")]
            net = net.replace("ShrinkRNNSearch", "ShrinkRNNCell")
            return Job(path=str(ROOT / "benchmarks" / "shrinkrnn_proxy.shrink"),
                       text="shrink 1\n\n" + cell + net, network="ProxyLM",
                       overrides=overrides, train=train, data=str(RNN_DATA), seed=seed,
                       threads=1, edges=12)
        return make_job(path=str(ROOT / RNN_SPEC), program=parsed, space=space.name,
                        edges=tuple(cells[name]), network="ProxyLM", overrides=overrides,
                        train=train, data=str(RNN_DATA), seed=seed, threads=1)

    doc = load("rnn_retrain")
    doc["cells"] = {k: [list(e) for e in v] for k, v in cells.items()}
    names = [*cells, "ShrinkRNN cell"]
    jobs = {f"{n}/{s}": job(n, s) for n in names for s in RNN_SEEDS}
    runs = train_all("rnn_retrain", doc, jobs, args.workers)["runs"]
    print(f"\n{'cell':<16} {'edges':>5} {'ppl per seed':>20} {'FLOPs':>8} {'score':>9}")
    for n in names:
        got = [runs[f"{n}/{s}"] for s in RNN_SEEDS if f"{n}/{s}" in runs]
        if got:
            ppl = sum(g["ppl"] for g in got) / len(got)
            score = rules.score(settings.score,
                                {"ppl": ppl, "flops": got[0]["flops"]})
            print(f"{n:<16} {len(cells.get(n, range(12))):>5} "
                  f"{' / '.join(format(g['ppl'], '.1f') for g in got):>20} "
                  f"{got[0]['flops']:>8,} {score:>9.3f}")


def part_random(args) -> None:
    global RECOMMENDED
    sp = Space()
    if RECOMMENDED is None:
        RECOMMENDED = choose_protocol(sp)["flags"]
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
                            "cells": n, "sample_seed": 4321 + SEED, "precision": precision},
               "cells": [list(map(list, c)) for c in sp.random_cells(n, 4321 + SEED)],
               "runs": {}}
    precision = doc["protocol"].get("precision", "fp32")
    jobs = {f"{i}": sp.job(c, 7000 + 1000 * SEED + i, precision=precision, epochs=epochs,
                           batch=batch)
            for i, c in enumerate(doc["cells"])}
    t = time.perf_counter()
    train_all(part, doc, jobs, args.workers)
    doc.setdefault("wall_s", []).append(round(time.perf_counter() - t, 1))
    save(part, doc)


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


# --------------------------------------------------------------------------- held-out test


RETRAIN_DATA = SHARED / "cifar10" / "train10k.npz"  # 10,000 training images, proxy.npz's val
TEST_DATA = SHARED / "cifar10" / "test.npz"  # final reports only: read once per network
TEST_SEEDS = (11, 22)
WEIGHTS = RESULTS / "weights_cifar10"


def _test_arrays(train_path: str, test_path: str):
    """test.npz's images as the network takes them: N x C x H x W float32, standardised with
    the mean and standard deviation of ``train_path``'s training images, as ``load_npz``
    standardises its own splits."""
    import numpy as np

    with np.load(train_path) as f:
        x = f["x_train"].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    std = x.std(axis=(0, 2, 3), keepdims=True) + 1e-6
    with np.load(test_path) as f:
        xt = f["x_test"].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        yt = f["y_test"].astype(np.int64)
    return ((xt - mean) / std).astype(np.float32), yt


def _retrain_and_test(job, test_path: str, weights: str | None) -> dict:
    """Train ``job`` from scratch (its data's validation split stops it early), take the
    weights of its best validation epoch, evaluate them once on ``test_path``, and save them
    as safetensors to ``weights`` (when given)."""
    import torch

    from shrinkc.compiler.pipeline import build_graph, check
    from shrinkc.data import images
    from shrinkc.search import train as T

    start, cpu = time.perf_counter(), time.process_time()
    torch.set_num_threads(int(job.threads))
    graph = build_graph(check(job.path, job.text), job.network, job.overrides or None)
    torch.manual_seed(job.seed)
    model = T.build_module(graph)
    data = images.load_npz(job.data, tuple(graph.input_shape.as_list()))
    acc, epochs, curve, ckpt = T.train(model, data, job.train, job.seed, job.precision,
                                       keep_best=True)
    model.load_state_dict(ckpt["best_model"])
    x, y = _test_arrays(job.data, test_path)
    x = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
    test_acc = T.accuracy(model, x, torch.from_numpy(y), job.precision)
    if weights:
        from safetensors.torch import save_file

        Path(weights).parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        tmp = weights + ".tmp"
        save_file(state, tmp, metadata={"network": job.network, "seed": str(job.seed),
                                         "val_acc": f"{acc:.4f}", "test_acc": f"{test_acc:.4f}"})
        os.replace(tmp, weights)
    return {"acc": acc, "test_acc": test_acc, "macs": graph.cost.macs,
            "params": graph.cost.params, "epochs": epochs, "curve": curve,
            "seconds": round(time.perf_counter() - start, 3),
            "cpu_seconds": round(time.process_time() - cpu, 3)}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()


def retrain_cells(sp: Space, doc: dict, seeds) -> dict[str, list]:
    """The cells the retrain part trains (the complete DAG and each method's best), kept in
    ``doc``; the runs of a method whose best cell changed since are dropped, to train again."""
    from shrinkc.search import rules

    cells = {"complete DAG": [list(e) for e in rules.live_edges(sp.space)], **best_cells(sp)}
    for name, cell in doc.get("cells", {}).items():
        if cells.get(name) != cell:
            for s in seeds:
                doc.get("runs", {}).pop(f"{name}/{s}", None)
    doc["cells"] = cells
    return cells


def part_retrain_test(args) -> None:
    """Every method's best cell, the complete DAG and ShrinkCNN-A's cell, trained from
    scratch on train10k.npz at the full budget (proxy.npz's validation split stops them
    early) with 2 seeds, each evaluated once on test.npz with its best validation epoch's
    weights; the first seed's weights are saved as safetensors under WEIGHTS."""
    from functools import partial


    sp = Space()
    doc = load("retrain")
    cells = retrain_cells(sp, doc, TEST_SEEDS)
    doc["protocol"] = {"train": str(RETRAIN_DATA.name), "test": str(TEST_DATA.name),
                       "seeds": list(TEST_SEEDS), "train_settings": sp.settings.train.as_dict(),
                       "weights": "best validation epoch", "precision": args.precision}
    retrain = str(RETRAIN_DATA)
    jobs = {f"{name}/{s}": replace(sp.job(c, s, precision=args.precision), data=retrain)
            for name, c in cells.items() for s in TEST_SEEDS}
    jobs.update({f"ShrinkCNN-A cell/{s}": replace(shrinka_job(sp, s, args.precision),
                                                  data=retrain) for s in TEST_SEEDS})
    fns = {k: partial(_retrain_and_test, test_path=str(TEST_DATA),
                      weights=str(WEIGHTS / f"{slug(k.split('/')[0])}.safetensors")
                      if k.endswith(f"/{TEST_SEEDS[0]}") else None) for k in jobs}
    train_all("retrain", doc, jobs, args.workers, fns)


def part_retrain(args) -> None:
    if DATA_NAME == "cifar10":
        return part_retrain_test(args)

    sp = Space()
    doc = load("retrain")
    cells = retrain_cells(sp, doc, RETRAIN_SEEDS)
    doc.setdefault("precision", args.precision)  # fp32: the references were trained so
    jobs = {f"{name}/{s}": sp.job(c, s, precision=doc["precision"])
            for name, c in cells.items() for s in RETRAIN_SEEDS}
    jobs.update({f"ShrinkCNN-A cell/{s}": shrinka_job(sp, s, doc["precision"])
                 for s in RETRAIN_SEEDS})
    train_all("retrain", doc, jobs, args.workers)


# --------------------------------------------------------------------------- report


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
        for sched, e, batch in FAST_BY_DATA.get(DATA_NAME, FAST):  # short runs trained as their own (the budget part)
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
    for part, how in (("search", " ".join(RECOMMENDED or load("protocol").get("flags", []))
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
    ax.set_ylabel(f"validation accuracy ({DATA or 'digits'} proxy)")
    ax.set_title("AutoShrink CNN space: accuracy against cost")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out = ROOT / "docs" / f"search_pareto{TAG}.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out.relative_to(ROOT)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=("rank", "budget", "search", "paper", "random", "retrain", "rnn",
                                     "rnn_retrain", "cluttered", "report"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0,
                    help="search seed of the search and random parts (0: the spec's own); "
                    "each seed's results are kept apart (search_s1, random_s1, ...)")
    ap.add_argument("--cells", type=int, default=20, help="random cells in the rank part")
    ap.add_argument("--data", help="proxy data (shrinkc shrink --data), e.g. cluttered-digits; "
                    "results are kept apart under its name")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="training precision of the rank and retrain parts' runs, recorded in "
                    "their JSON at the first run (the search and random parts take --precision "
                    "auto's choice)")
    args = ap.parse_args()
    global DATA, DATA_NAME, TAG, RECOMMENDED, SEED
    DATA, DATA_NAME, SEED = DATA_ALIASES.get(args.data, args.data), args.data, args.seed
    RECOMMENDED = RECOMMENDED_BY_DATA.get(args.data, RECOMMENDED_BY_DATA[None])
    TAG = "_" + args.data.replace("-digits", "").replace("/", "_") if args.data else ""
    {"rank": part_rank, "budget": part_budget, "search": part_search, "paper": part_paper,
     "random": part_random, "retrain": part_retrain,
     "rnn": part_rnn, "rnn_retrain": part_rnn_retrain, "cluttered": part_cluttered, "report": part_report}[args.part](args)


if __name__ == "__main__":
    main()
