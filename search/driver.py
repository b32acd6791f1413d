"""``shrinkc shrink``: the AutoShrink search driver, its run directory, resume and executors.

The rules live in ``passes/shrink.py`` (pure); candidates are trained by
``shrinkc.search.train.evaluate`` (torch), in this process, in local worker processes
(``--workers N``) or on a Ray cluster (``--executor ray``). This module imports neither torch
nor ray at import time.

Run directory:
  run.json       what was searched (spec hash, settings, data): ``--resume`` refuses a mismatch
  log.jsonl      one line per evaluated candidate; ``chosen: true`` on each step's removed edge
  step-NN.shrink the spec after step NN, canonically formatted (compiles as it is)
  best.shrink    the best-scoring snapshot (ties: fewer edges)
  scores.png     best and mean candidate score against live edges
Every file is written atomically, after every candidate, so a run killed at any moment
resumes from its last finished candidate and ends with the same log and the same edges.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from shrinkc.compiler import ir
from shrinkc.compiler.analysis.cellhash import cell_hash
from shrinkc.compiler.errors import ShrinkError, warning
from shrinkc.compiler.fsutil import atomic_write, ensure_dir
from shrinkc.compiler.passes.space import expand as expand_space
from shrinkc.compiler.pipeline import Checked, build_graph, check
from shrinkc.compiler.syntax.printer import print_program

from . import rules
from .job import Job, Parent, make_job
from .settings import recorded
from .settings import settings as read_settings

Edge = tuple[int, int]


@dataclass
class Options:
    spec: str
    out: str
    data: str | None = None
    workers: int = 1
    threads: int = 1
    executor: str = "local"
    address: str | None = None
    resume: bool = False
    quiet: bool = False
    max_steps: int | None = None
    search: str | None = None
    inherit: bool = False  # start candidates from the current DAG's trained weights
    overrides: dict = field(default_factory=dict)  # candidates, epochs, seed, ...


# --------------------------------------------------------------------------- executors


class _Executor:
    def map(self, jobs: list[Job]):  # yields results in job order
        raise NotImplementedError

    def close(self) -> None:
        pass


class _InProcess(_Executor):
    def map(self, jobs):
        from shrinkc.search.train import evaluate

        for job in jobs:
            yield evaluate(job)


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: end this worker when the driver dies (even by kill -9), instead of
    training the rest of the queued candidates for nobody."""
    import os
    import threading

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


class _Processes(_Executor):
    def __init__(self, workers: int):
        import multiprocessing
        import os
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_exit_with_parent, initargs=(os.getpid(),))

    def map(self, jobs):
        from shrinkc.search.train import evaluate

        futures = [self.pool.submit(evaluate, job) for job in jobs]
        try:
            for f in futures:
                yield f.result()
        finally:
            for f in futures:
                f.cancel()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class _Ray(_Executor):
    def __init__(self, address: str | None, workers: int):
        try:
            import ray
        except ImportError:
            raise ShrinkError("--executor ray needs Ray", None,
                              "pip install 'shrinkc[ray]'") from None
        from shrinkc.search.train import evaluate

        self.ray = ray
        if not ray.is_initialized():
            kwargs = {"address": address} if address else {"num_cpus": workers}
            ray.init(log_to_driver=False, include_dashboard=False, **kwargs)
        self.remote = ray.remote(num_cpus=1)(evaluate)

    def map(self, jobs):
        refs = [self.remote.remote(job) for job in jobs]
        for ref in refs:
            yield self.ray.get(ref)


def _executor(opts: Options) -> _Executor:
    if opts.executor == "ray":
        return _Ray(opts.address, opts.workers)
    if opts.workers > 1:
        return _Processes(opts.workers)
    return _InProcess()


# --------------------------------------------------------------------------- progress


class _Progress:
    def __init__(self, quiet: bool, total: int):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.total = total
        self.done = 0
        self.spent = 0.0
        self.start = time.monotonic()

    def update(self, step: int, k: int, n: int, edges: int, seconds: float | None) -> None:
        if seconds is not None:
            self.done += 1
            self.spent += seconds
        if self.quiet:
            return
        elapsed = time.monotonic() - self.start
        left = ""
        if self.done and self.total > self.done:
            per = elapsed / max(1, self.done)
            left = f", ~{_hms(per * (self.total - self.done))} left"
        width = 24
        filled = int(width * min(1.0, self.done / max(1, self.total)))
        bar = "#" * filled + "." * (width - filled)
        line = (f"[{bar}] step {step} ({edges} edges), candidate {k}/{n}, "
                f"{_hms(elapsed)} elapsed{left}")
        if self.tty:
            print("\r" + line.ljust(100), end="", file=sys.stderr, flush=True)
        elif seconds is not None:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty and not self.quiet:
            print(file=sys.stderr)


def _hms(s: float) -> str:
    s = int(s)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


# --------------------------------------------------------------------------- the search


def _find_search(checked: Checked, name: str | None) -> ir.SearchDef:
    mine = [i for i in checked.sources.main.items if isinstance(i, ir.SearchDef)]
    if name is not None:
        found = [s for s in mine if s.name == name]
        if not found:
            raise ShrinkError(f"no search '{name}' in {checked.sources.main.file}")
        return checked.program.defs(ir.SearchDef)[name]  # type: ignore[return-value]
    if not mine:
        raise ShrinkError(f"{checked.sources.main.file} has no search block", None,
                          "a search-space file ends with: search NAME { space S  network P ... }")
    return checked.program.defs(ir.SearchDef)[mine[-1].name]  # type: ignore[return-value]


def _plot(path: Path, snapshots: list[dict], log: list[dict]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    xs, best, mean = [], [], []
    for s in snapshots:
        scores = [e["score"] for e in log if e["step"] == s["step"] and e["score"] > float("-inf")]
        if not scores:
            continue
        xs.append(s["edges"])
        best.append(max(scores))
        mean.append(sum(scores) / len(scores))
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    ax.plot(xs, best, "o-", label="best candidate")
    ax.plot(xs, mean, "s--", label="mean candidate", alpha=0.7)
    ax.invert_xaxis()
    ax.set_xlabel("live edges after the step")
    ax.set_ylabel("score")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def _write_log(path: Path, log: list[dict]) -> None:
    atomic_write(path, "".join(json.dumps(e, sort_keys=True) + "\n" for e in log))


def _read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            raise ShrinkError(f"{path}:{n}: damaged log line", None,
                              "delete the line (the candidate is re-run) and --resume") from None
    return out


def run(opts: Options, report=None) -> dict:
    checked = check(opts.spec)
    for w in checked.warnings:
        if report:
            report(w)
    search = _find_search(checked, opts.search)
    is_lm = checked.program.networks[search.network].is_lm
    settings = read_settings(search, opts.overrides, lm=is_lm)
    parsed = checked.sources.main
    spaces = {i.name: i for i in parsed.items if isinstance(i, ir.SpaceDef)}
    if search.space not in spaces:
        raise ShrinkError(f"space '{search.space}' must be defined in {parsed.file} itself",
                          search.locs.get("space"), "the shrinker rewrites the file it is given")
    space = spaces[search.space]

    # the proxy network and its data, checked before anything is trained
    graph = build_graph(checked, search.network)
    from shrinkc.search.data import images as proxy_data

    net = checked.program.networks[search.network]
    knob, classes = ("vocab", 0) if is_lm else ("classes", 0)
    if is_lm:
        from shrinkc.search.data import corpus

        classes = corpus.load(opts.data).size
    else:
        classes = proxy_data.load(opts.data, tuple(graph.input_shape.as_list())).classes
    overrides = {}
    if knob in {p.name for p in net.params}:
        overrides[knob] = classes
    elif graph.out_shape.c != classes:  # type: ignore[union-attr]
        raise ShrinkError(f"network {search.network} outputs {graph.out_shape.c} values but the "  # type: ignore[union-attr]
                          f"data has {classes} {'tokens' if is_lm else 'classes'}", net.loc,
                          f"give the network a '{knob}' parameter")

    out = ensure_dir(Path(opts.out))
    text = checked.sources.texts[parsed.file]
    meta = {
        "spec": parsed.file,
        "spec_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "search": search.name,
        "settings": recorded(settings),
        "data": opts.data or ("generated corpus" if is_lm else proxy_data.DIGITS),
        "max_steps": opts.max_steps,
        "inherit": opts.inherit,
    }
    log_path, meta_path = out / "log.jsonl", out / "run.json"
    if meta_path.exists() or log_path.exists():
        if not opts.resume:
            raise ShrinkError(f"{out.as_posix()} already holds a run", None,
                              "pass --resume to continue it, or choose another -o")
        old = json.loads(meta_path.read_text()) if meta_path.exists() else meta
        differs = [k for k in meta if k != "max_steps" and old.get(k) != meta[k]]
        if differs:
            raise ShrinkError(f"cannot resume: {differs[0]} differs from the run in {out.as_posix()}",
                              None, "resume with the same spec, data and settings")
    atomic_write(meta_path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    log = _read_log(log_path) if opts.resume else []

    edges = rules.live_edges(space)
    initial, goal = len(edges), rules.target(len(edges), settings.keep)
    remaining = sum(min(settings.candidates, n) for n in range(goal + 1, initial + 1))
    progress = _Progress(opts.quiet, remaining)
    snapshots: list[dict] = []
    executor = None
    step = 1
    parent: Parent | None = None

    def new_job(edges: tuple[Edge, ...], seed: int, parent: Parent | None = None,
                keep_state: bool = False) -> Job:
        return make_job(path=opts.spec, program=parsed, space=space.name, edges=edges,
                        network=search.network, overrides=overrides, train=settings.train,
                        data=opts.data, seed=seed, threads=opts.threads, parent=parent,
                        keep_state=keep_state)
    cand_dir = out / "candidates"
    try:
        if opts.inherit:
            parent_text = print_program(rules.with_edges(parsed, space.name, edges))
            first = out / "parent-00.pt"
            if not first.exists():
                job = new_job(edges, rules.candidate_seed(settings.seed, 0, (0, 0)),
                              keep_state=True)
                executor = executor or _executor(opts)
                (result,) = list(executor.map([job]))
                log = [e for e in log if e["step"] != 0]
                log.insert(0, {"step": 0, "edge": None, "edges": len(edges), "chosen": True,
                               "score": rules.score(settings.score, {**result, "edges": len(edges)}),
                               **{k: v for k, v in result.items() if k != "state"}})
                _write_log(log_path, log)
                atomic_write(first, result["state"])
            parent = Parent(text=parent_text, state=first.read_bytes())
        while len(edges) > goal and (opts.max_steps is None or step <= opts.max_steps):
            removable = rules.shrink_space(edges, space)
            if not removable:
                break
            cands = rules.sample(removable, settings.candidates, settings.seed, step)
            done = {tuple(e["edge"]): e for e in log if e["step"] == step}
            todo = [c for c in cands if c not in done]
            # a candidate isomorphic to one trained earlier in the run (or in this step) is
            # not trained again: it takes that candidate's metrics (not with --inherit, where
            # the result depends on the parent's weights)
            trained_hashes = {e["hash"]: e for e in log if "hash" in e and "isomorphic_to" not in e}
            plan: list[tuple[Edge, Job | None, str]] = []
            for c in todo:
                after = rules.remove(space, edges, c)
                h = cell_hash(expand_space(rules.with_edges(parsed, space.name, after).defs(
                    ir.SpaceDef)[space.name]))  # type: ignore[arg-type]
                dup = parent is None and (h in trained_hashes or any(p[2] == h for p in plan))
                plan.append((c, None if dup else new_job(
                    after, rules.candidate_seed(settings.seed, step, c), parent,
                    keep_state=parent is not None), h))
            for k, c in enumerate(cands):
                if c in done:
                    progress.update(step, k + 1, len(cands), len(edges), None)
            jobs = [job for _, job, _ in plan if job is not None]
            results = iter(())
            if jobs:
                executor = executor or _executor(opts)
                results = executor.map(jobs)
            for c, job, h in plan:
                if job is None:
                    twin = trained_hashes.get(h) or next(done[p[0]] for p in plan if p[2] == h)
                    entry = {**twin, "step": step, "edge": list(c), "chosen": False,
                             "seconds": 0.0, "isomorphic_to": [twin["step"], twin["edge"]]}
                    seconds = 0.0
                else:
                    result = next(results)
                    if "state" in result:
                        ensure_dir(cand_dir)
                        atomic_write(cand_dir / f"step-{step:02d}-{c[0]}-{c[1]}.pt", result["state"])
                    metrics = {**result, "edges": job.edges}
                    entry = {"step": step, "edge": list(c), "edges": job.edges, "hash": h,
                             "score": rules.score(settings.score, metrics), "chosen": False,
                             **{k: v for k, v in result.items() if k != "state"}}
                    trained_hashes.setdefault(h, entry)
                    seconds = result["seconds"]
                log.append(entry)
                done[c] = entry
                _write_log(log_path, log)
                progress.update(step, len(done), len(cands), len(edges), seconds)
            entries = [done[c] for c in cands]
            ranked = sorted(entries, key=lambda e: (-e["score"], e["edges"], e["edge"]))
            chosen = ranked[: settings.drop]
            for e in entries:
                e["chosen"] = any(e is ch for ch in chosen)
            if parent is not None:
                kept = out / f"parent-{step:02d}.pt"
                if not kept.exists():  # not already done before an interruption
                    win = cand_dir / f"step-{step:02d}-{chosen[0]['edge'][0]}-{chosen[0]['edge'][1]}.pt"
                    atomic_write(kept, win.read_bytes())
            _write_log(log_path, log)
            edges = rules.remove(space, edges, tuple(tuple(e["edge"]) for e in chosen))
            if parent is not None:
                parent = Parent(text=print_program(rules.with_edges(parsed, space.name, edges)),
                                state=(out / f"parent-{step:02d}.pt").read_bytes())
                for f in cand_dir.glob(f"step-{step:02d}-*.pt"):
                    f.unlink()
            snap_text = print_program(rules.with_edges(parsed, space.name, edges))
            name = f"step-{step:02d}.shrink"
            atomic_write(out / name, snap_text)
            best_entry = chosen[0]
            snapshots.append({"step": step, "edges": len(edges), "file": name, "text": snap_text,
                              **{k: best_entry[k] for k in ("score", "acc", "macs", "ppl", "flops",
                                                            "params") if k in best_entry}})
            best = rules.best_snapshot(snapshots)
            atomic_write(out / "best.shrink", best["text"])  # type: ignore[index]
            _plot(out / "scores.png", snapshots, log)
            step += 1
    except KeyboardInterrupt:
        progress.close()
        raise ShrinkError(f"interrupted; continue with: shrinkc shrink {opts.spec} -o {opts.out} "
                          "--resume") from None
    finally:
        if executor is not None:
            executor.close()
    progress.close()
    best = rules.best_snapshot(snapshots)
    if best is None:
        if report:
            report(warning("no step was run (the space is already at its keep fraction)"))
        return {"steps": 0, "best": None, "trained": 0}
    return {
        "steps": len(snapshots),
        "trained": len(log),
        "best": {k: v for k, v in best.items() if k != "text"},
        "initial_edges": initial,
        "final_edges": len(edges),
        "out": out.as_posix(),
    }
