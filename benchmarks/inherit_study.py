"""Why do inherited candidates (``shrinkc shrink --inherit``) lose accuracy against their parent?

The complete DAG of ``specs/shrinkcnn_space.shrink`` is trained from scratch (the paper's full
budget, as ``--inherit`` does at step 0), then step 1's first candidates (the edges the search
samples with seed 0) are started from its weights four ways, each with its learning curve:

- ``inherited, no update``: the inherited weights, one epoch at lr 1e-9 (the batch-norm
  statistics are recomputed for the child; the weights do not move): what inheritance alone
  keeps;
- ``fine-tune lr 4e-3``: what ``--inherit`` did (a fresh Adam at the search's lr, 2 epochs);
- ``fine-tune lr 4e-4``: the same at a tenth of the learning rate (``--inherit``'s default
  since this study: ``finetune_lr`` 0 is a tenth of ``lr``);
- ``scratch, 2 epochs``: the same budget without inheritance.

    python benchmarks/inherit_study.py [--children 6] [--workers 1]

Raw results: ``benchmarks/results/inherit_study.json`` (written after each training; a rerun
resumes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "inherit_study.json"
VARIANTS = {
    "inherited, no update": {"finetune_lr": 1e-9, "finetune": 1},
    "fine-tune lr 4e-3": {"finetune_lr": 4e-3, "finetune": 2},
    "fine-tune lr 4e-4": {"finetune_lr": 4e-4, "finetune": 2},
    "scratch, 2 epochs": {"epochs": 2},
}


def _evaluate(job):
    from shrinkc.search.train import evaluate

    r = evaluate(job)
    return {k: r[k] for k in ("acc", "epochs", "curve", "seconds", "macs")} | (
        {"state": r["state"]} if "state" in r else {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--children", type=int, default=6)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()

    from shrinkc.compiler.syntax.printer import print_program
    from shrinkc.search import rules
    from shrinkc.search.job import Parent

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from shrink_search import Space

    sp = Space()
    doc = json.loads(OUT.read_text()) if OUT.exists() else {"runs": {}}
    full = rules.live_edges(sp.space)
    parent_file = OUT.with_name("inherit_study_parent.pt")  # not committed (.gitignore)
    if not parent_file.exists():
        t = time.perf_counter()
        job = replace(sp.job(full, rules.candidate_seed(0, 0, (0, 0))), keep_state=True)
        r = _evaluate(job)
        parent_file.write_bytes(r.pop("state"))
        doc["parent"] = r
        print(f"parent: acc {r['acc']:.4f} in {r['epochs']} epochs, "
              f"{time.perf_counter() - t:.0f} s", flush=True)
        _save(doc)
    parent = Parent(text=print_program(rules.with_edges(sp.parsed, sp.space.name, full)),
                    state=parent_file.read_bytes())
    edges = rules.sample(rules.shrink_space(full, sp.space), 10, 0, 1)[: args.children]
    jobs = {}
    for e in edges:
        child = rules.remove(sp.space, full, e)
        seed = rules.candidate_seed(0, 1, e)
        for name, train in VARIANTS.items():
            job = sp.job(child, seed, **train)
            if name != "scratch, 2 epochs":
                job = replace(job, parent=parent)
            jobs[f"{e[0]}-{e[1]}/{name}"] = job
    todo = {k: j for k, j in jobs.items() if k not in doc["runs"]}
    print(f"{len(jobs) - len(todo)} of {len(jobs)} done", flush=True)
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_evaluate, j): k for k, j in todo.items()}
        for f in as_completed(futures):
            doc["runs"][futures[f]] = f.result()
            _save(doc)
            r = doc["runs"][futures[f]]
            print(f"  {futures[f]}: curve {[round(c, 4) for c in r['curve']]}", flush=True)
    report(doc, edges)


def _save(doc: dict) -> None:
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, OUT)


def report(doc: dict, edges) -> None:
    import statistics

    print(f"\nparent (complete DAG, from scratch): validation accuracy {doc['parent']['acc']:.4f} "
          f"after {doc['parent']['epochs']} epochs")
    head = f"{'child (edge removed)':<22}" + "".join(f"{v:>24}" for v in VARIANTS)
    print(head)
    print("-" * len(head))
    cols = {v: [] for v in VARIANTS}
    for e in edges:
        row = f"{f'{e[0]}->{e[1]}':<22}"
        for v in VARIANTS:
            r = doc["runs"].get(f"{e[0]}-{e[1]}/{v}")
            if r is None:
                row += f"{'-':>24}"
                continue
            cols[v].append(r["curve"][-1])
            row += f"{' / '.join(f'{c:.3f}' for c in r['curve']):>24}"
        print(row)
    print(f"{'median (last epoch)':<22}" + "".join(
        f"{statistics.median(c):>24.3f}" if c else f"{'-':>24}" for c in cols.values()))


if __name__ == "__main__":
    main()
