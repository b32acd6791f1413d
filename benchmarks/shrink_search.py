"""The AutoShrink search (CNN or RNN) in the paper's setting, three ways, in one table.

1. ``shrinkc shrink`` as the paper does it: every candidate trained from scratch;
2. the same with ``--inherit``: candidates start from the current DAG's weights and are
   fine-tuned (``finetune`` epochs);
3. random search over the same space with as many trained candidates as (1).

Scores found during a search are not comparable across methods (an inherited candidate has
seen more training), so each method's best cell is also **re-trained from scratch** with the
same budget and seed, and that score is the one to compare.

    python benchmarks/shrink_search.py                    # the full paper setting (hours)
    python benchmarks/shrink_search.py --max-steps 3 --epochs 3 --workers 2   # a quick look
    python benchmarks/shrink_search.py --spec specs/shrinkrnn_space.shrink \
        --data ../shared/data/penn_proxy                   # ShrinkRNN on the proxy corpus

Settings come from the spec (CNN: K=10, keep 0.01, 20 epochs, patience 3; RNN: K=10,
keep 0.25, SGD lr 20, batch 128, up to 10 epochs).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def shrink(spec: str, out: Path, extra: list[str]) -> float:
    """Run (or, when ``out`` already holds a run, resume) a search; returns its wall time,
    counting the candidates' own seconds for a run finished in earlier invocations."""
    resume = ["--resume"] if (out / "run.json").exists() else []
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "shrinkc", "shrink", spec, "-o", str(out), "--quiet",
                    *extra, *resume], check=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if resume:  # the run spans invocations: count its candidates' training time instead
        return sum(e.get("seconds", 0.0) for e in log(out)) / max(1, _workers(extra))
    return wall


def _workers(extra: list[str]) -> int:
    return int(extra[extra.index("--workers") + 1]) if "--workers" in extra else 1


def log(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="specs/shrinkcnn_space.shrink")
    ap.add_argument("--max-steps", type=int)
    ap.add_argument("--epochs", type=int, help="epochs from scratch (default: the spec's)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="keep the run directories here; run again with the same "
                    "--out to resume an interrupted benchmark")
    ap.add_argument("--data", help="proxy data: .npz (CNN) or a PTB-layout folder (RNN)")
    args = ap.parse_args()

    from shrinkc.compiler import check
    from shrinkc.compiler.ir import SearchDef, SpaceDef
    from shrinkc.compiler.passes.space import cleanup, node_count
    from shrinkc.search import rules
    from shrinkc.search.job import make_job
    from shrinkc.search.settings import settings as read_settings
    from shrinkc.search.train import evaluate

    base = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="shrink-bench-"))
    common = ["--workers", str(args.workers), "--seed", str(args.seed)]
    if args.data:
        common += ["--data", args.data]
    if args.max_steps:
        common += ["--max-steps", str(args.max_steps)]
    if args.epochs:
        common += ["--epochs", str(args.epochs)]

    checked = check(ROOT / args.spec)
    parsed = checked.sources.main
    space = next(i for i in parsed.items if isinstance(i, SpaceDef))
    search = next(i for i in checked.program.items if isinstance(i, SearchDef))
    is_lm = checked.program.networks[search.network].is_lm
    settings = read_settings(search, {"epochs": args.epochs, "seed": args.seed}, lm=is_lm)

    rows = {}
    t_scratch = shrink(args.spec, base / "scratch", common)
    t_inherit = shrink(args.spec, base / "inherit", common + ["--inherit"])
    n_trained = sum(1 for e in log(base / "scratch") if "isomorphic_to" not in e)

    # random search: as many random sub-DAGs of the space, each trained from scratch
    rng = random.Random(args.seed)
    n = node_count(space)
    full = rules.live_edges(space)
    cells = []
    while len(cells) < n_trained:
        k = rng.randint(1, len(full))
        edges = cleanup(tuple(sorted(rng.sample(full, k), key=lambda e: (e[1], e[0]))), n)
        if rules.valid(edges):
            cells.append(edges)
    if is_lm:
        from shrinkc.search.data import corpus

        classes = {"vocab": corpus.load(args.data).size}
    else:
        from shrinkc.compiler.pipeline import build_graph
        from shrinkc.search.data import images as proxy_data

        shape = tuple(build_graph(checked, search.network).input_shape.as_list())
        classes = {"classes": proxy_data.load(args.data, shape).classes}

    def job(edges, seed):
        return make_job(path=args.spec, program=parsed, space=space.name, edges=edges,
                        network=search.network, overrides=classes, train=settings.train,
                        data=args.data, seed=seed, threads=1)

    t = time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(evaluate, [job(c, rules.candidate_seed(args.seed, 1000, (i, 0)))
                                           for i, c in enumerate(cells)]))
    t_random = time.perf_counter() - t
    random_scored = [(rules.score(settings.score, {**r, "edges": len(c)}), c, r)
                     for c, r in zip(cells, results)]
    best_random = max(random_scored, key=lambda x: (x[0], -len(x[1])))

    def best_of(run: Path):
        best = parse_best(run / "best.shrink")
        entry = max((e for e in log(run) if e["chosen"] and e["edge"] is not None),
                    key=lambda e: (e["score"], -e["edges"]))
        return best, entry

    def parse_best(path: Path):
        from shrinkc.compiler.passes.space import all_edges

        sp = next(i for i in check(path).sources.main.items if isinstance(i, SpaceDef))
        return cleanup(all_edges(sp), n)

    # re-train each method's best cell from scratch, same budget and seed
    finals = {}
    for name in ("scratch", "inherit"):
        edges, entry = best_of(base / name)
        finals[name] = (edges, entry)
    finals["random"] = (best_random[1], {"score": best_random[0], **best_random[2]})
    retrain_seed = rules.candidate_seed(args.seed, 9999, (0, 0))
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        retrained = dict(zip(finals, pool.map(evaluate, [job(e, retrain_seed) for e, _ in finals.values()])))

    times = {"scratch": t_scratch, "inherit": t_inherit, "random": t_random}
    counts = {"scratch": n_trained, "inherit": len(log(base / "inherit")), "random": len(cells)}
    print(f"AutoShrink {'RNN' if is_lm else 'CNN'} search, {args.spec}, {args.workers} worker(s), "
          f"epochs {settings.train['epochs']}, max steps {args.max_steps or 'all'}")
    quality, cost = ("ppl", "flops") if is_lm else ("acc", "macs")
    head = (f"{'method':<22} {'wall s':>8} {'trained':>8} {'edges':>6} {'found score':>12} "
            f"{'retrained score':>16} {quality:>7} {cost.upper():>12}")
    print(head)
    print("-" * len(head))
    labels = {"scratch": "shrink (paper)", "inherit": "shrink --inherit", "random": "random search"}
    for name, (edges, entry) in finals.items():
        r = retrained[name]
        rs = rules.score(settings.score, {**r, "edges": len(edges)})
        rows[name] = rs
        print(f"{labels[name]:<22} {times[name]:>8.1f} {counts[name]:>8} {len(edges):>6} "
              f"{entry['score']:>12.4f} {rs:>16.4f} {r[quality]:>7.4g} {r[cost]:>12,}")
    print(f"\n--inherit: {t_scratch / t_inherit:.2f}x faster than from scratch (target >= 3x); "
          f"retrained best score {rows['inherit'] - rows['scratch']:+.4f} vs from scratch "
          f"(target >= -0.01)")
    iso = sum(1 for e in log(base / "scratch") if "isomorphic_to" in e)
    print(f"isomorphic candidates not re-trained (from scratch run): {iso} of {n_trained}")
    print(f"run directories: {base}")


if __name__ == "__main__":
    main()
