"""shrink_search's shared machinery: the paper space and its proxy network (``Space``, which
makes training jobs and samples random cells), the reference cells' jobs (the complete DAG,
ShrinkCNN-A's cell), and ``train_all``, which trains a part's jobs in a process pool and saves
after each one."""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from multiprocessing import get_context

import shrink_search_config as cfg
from shrink_search_config import ROOT, SPEC, save


class Space:
    """The paper space and its proxy network, ready to make jobs from."""

    def __init__(self, spec: str = SPEC, data: str | None = ""):
        data = cfg.DATA if data == "" else data
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
        """``n`` distinct random cells of the space (by cell hash): ``rules.random_cells``."""
        from shrinkc.search import rules

        return rules.random_cells(self.parsed, self.space, n, seed, tuple(exclude))


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
    walls = doc.setdefault("wall_s", [])  # one per sitting, kept as it goes: a sitting cut
    walls.append(0.0)                      # short (a session's end) keeps what it ran
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit((fns or {}).get(k, _evaluate), j): k for k, j in todo.items()}
        for f in as_completed(futures):
            k = futures[f]
            r = f.result()
            quality, cost = ("ppl", "flops") if "ppl" in r else ("acc", "macs")  # RNN or CNN
            runs[k] = {x: r[x] for x in (quality, "test_acc", cost, "params", "epochs", "curve",
                                         "seconds", "cpu_seconds") if x in r}
            walls[-1] = round(time.perf_counter() - t0, 1)
            save(part, doc)
            print(f"  {k}: {quality} {r[quality]:.4f} in {r['epochs']} epochs, "
                  f"{r['seconds']:.0f} s ({time.perf_counter() - t0:.0f} s in)", flush=True)
    return doc


# the reference cells the rank part trains beside its random cells (from the CIFAR-10 rank on)
REFERENCES = ("complete DAG", "ShrinkCNN-A cell")


def reference_job(sp: Space, name: str, seed: int, precision: str, **train):
    from shrinkc.search import rules

    if name == "complete DAG":
        return sp.job(rules.live_edges(sp.space), seed, precision=precision, **train)
    job = shrinka_job(sp, seed, precision)
    return replace(job, train=replace(job.train, **train))
