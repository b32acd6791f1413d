"""``shrinkc shrink``: the AutoShrink search loop.

The rules are in ``rules.py`` (pure) and the search block's settings in ``settings.py``. Each
step's candidates become ``Job``s (``job.py``) that an executor (``executors.py``) trains with
``train.evaluate``: in this process, in local worker processes (``--workers N``) or on a Ray
cluster (``--executor ray``). What a run keeps is in its run directory (``rundir.py``); the
log is written after every candidate, so a run killed at any moment resumes from its last
finished candidate and ends with the same log and the same edges. This module imports neither
torch nor ray.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from shrinkc.compiler import ir
from shrinkc.compiler.analysis.cellhash import cell_hash
from shrinkc.compiler.errors import Diagnostic, ShrinkError, warning
from shrinkc.compiler.passes.space import expand as expand_space
from shrinkc.compiler.pipeline import Checked, build_graph, check
from shrinkc.compiler.syntax.printer import print_program

from . import latency as latency_score
from . import rules, tasks
from .executors import Executor, make_executor
from .job import Job, Parent, make_job
from .logentry import Entry
from .progress import Progress
from .rundir import RunDir
from .runjson import meta
from .settings import Settings, resolve_device, resolve_precision
from .settings import settings as read_settings
from .table import Options

Edge = tuple[int, int]
Report = Callable[[Diagnostic], None]


@dataclass(frozen=True)
class _Search:
    """What a run searches, fixed for the whole run: the spec as written (snapshots rewrite
    its space's edges), its text, the search block, the space, the settings, the proxy
    network's task, and its overrides (class or vocabulary count, from the data).
    """

    opts: Options
    parsed: ir.Program
    text: str
    search: ir.SearchDef
    space: ir.SpaceDef
    settings: Settings
    task: tasks.Task
    overrides: dict
    sources: dict[str, str]  # the spec and every file it includes: name -> sha256
    precision: str  # fp32 or bf16: --train-precision with auto decided once, for every worker
    device: str  # cpu or cuda: --device with auto decided once
    source: str | None = None  # the data the workers load: opts.data, or its decoded cache
    data_record: dict = field(default_factory=dict)  # run.json's keys about the data
    checked: Checked | None = None  # the spec, checked: the deployment network is built from it
    latency: latency_score.Latency | None = None  # when the score uses latency (``_run``)

    def metrics(self, result: dict, edges: tuple[Edge, ...], n: int) -> dict:
        """A trained candidate's score variables: its result, its edge count and, when the
        score uses it, its deployment network's predicted latency."""
        out = {**result, "edges": n}
        if self.latency is not None:
            out[latency_score.NAME] = self.latency.predict(edges)
        return out

    def program(self, edges: tuple[Edge, ...]) -> ir.Program:
        """The spec with the space cut down to ``edges``."""
        return rules.with_edges(self.parsed, self.space.name, edges)

    def job(self, edges: tuple[Edge, ...], seed: int, parent: Parent | None = None,
            keep_state: bool = False, epochs: int | None = None, resume: bytes | None = None,
            keep_checkpoint: bool = False, restarts: list[int] | None = None) -> Job:
        """The job that trains the proxy network with the space cut down to ``edges``
        (for ``epochs``, when given: a successive-halving round's budget; ``restarts``: the
        earlier rounds' budgets, where a learning-rate schedule starts again)."""
        train = self.settings.train
        if epochs is not None:
            train = replace(train, epochs=epochs)
        if restarts and train.schedule != "constant":
            train = replace(train, restarts=tuple(restarts))
        return make_job(path=self.opts.spec, program=self.parsed, space=self.space.name,
                        edges=edges, network=self.search.network, overrides=self.overrides,
                        train=train, data=self.source, seed=seed,
                        threads=self.opts.threads, parent=parent, keep_state=keep_state,
                        precision=self.precision, device=self.device, resume=resume,
                        keep_checkpoint=keep_checkpoint)


@dataclass
class _Run:
    """A run as it goes: its directory, the log, the live edges, this session's snapshots,
    the parent the candidates start from (``--inherit``), the executor (started when first
    needed) and the progress display."""

    rundir: RunDir
    log: list[Entry]
    edges: tuple[Edge, ...]
    progress: Progress
    snapshots: list[dict] = field(default_factory=list)
    parent: Parent | None = None
    executor: Executor | None = None

    def train(self, opts: Options, jobs: list[Job]) -> Iterator[dict]:
        """Train ``jobs``; yields their results in order."""
        if self.executor is None:
            gpus = opts.gpus_per_candidate if jobs and jobs[0].device == "cuda" else 0.0
            self.executor = make_executor(opts.executor, opts.workers, opts.address, gpus,
                                          opts.ray_timeout)
        return self.executor.map(jobs)


@dataclass(frozen=True)
class _Planned:
    """A candidate of a step: the edge it removes, the hash of its cell, and its job (None: it
    is isomorphic to a candidate trained before, and takes that candidate's metrics)."""

    edge: Edge
    hash: str
    job: Job | None


def run(opts: Options, report: Report | None = None) -> dict:
    """Run (or resume) a search; returns a summary: steps, candidates in the log, the best
    snapshot and its metrics, edges before and after, and the run directory."""
    s = _prepare(opts, report)
    rundir = RunDir(opts.out)
    rundir.lock()  # held until the run ends; a second process on the folder is refused
    try:
        return _run(s, rundir, report)
    finally:
        rundir.unlock()


def _run(s: _Search, rundir: RunDir, report: Report | None) -> dict:
    """``run`` with the run folder locked."""
    opts = s.opts
    if latency_score.used(s.settings.score):  # settled before anything is trained
        s = replace(s, latency=latency_score.prepare(
            s.checked, s.search, s.space, opts.latency_table,
            rundir.out / latency_score.TABLE_FILE, opts.resume, opts.quiet))
    log = rundir.start(_meta(s), opts.resume)
    if s.latency is not None:
        rundir.write_latency_table(s.latency.table)
    edges = rules.live_edges(s.space)
    goal = rules.target(len(edges), s.settings.keep)
    rounds = 1 if opts.inherit else len(rules.rungs(s.settings.train.epochs, s.settings.halving))
    total = sum(sum(rules.round_sizes(min(s.settings.candidates, n), rounds,
                                      s.settings.halving, s.settings.drop))
                for n in range(goal + 1, len(edges) + 1))
    resumed = sum(1 for e in log if e.step >= 1)
    state = _Run(rundir, log, edges, Progress(opts.quiet, total, resumed))
    try:
        if opts.inherit:
            state.parent = _first_parent(s, state)
        step = 1
        while len(state.edges) > goal and (opts.max_steps is None or step <= opts.max_steps):
            if not _step(s, state, step):
                break
            step += 1
    except KeyboardInterrupt:
        raise ShrinkError(f"interrupted; continue with: shrinkc shrink {opts.spec} -o {opts.out} "
                          "--resume") from None
    finally:
        state.progress.close()
        if state.executor is not None:
            state.executor.close()
    return _summary(state, len(edges), report, opts.max_steps)


# --------------------------------------------------------------------------- before training


def _prepare(opts: Options, report: Report | None) -> _Search:
    """Check the spec, find the search block and its space, read its settings, and check the
    proxy network against its data, all before anything is trained or written."""
    checked = check(opts.spec)
    for w in checked.warnings:
        if report:
            report(w)
    search = _find_search(checked, opts.search)
    task = tasks.of(checked.program.networks[search.network])
    settings = read_settings(search, opts.overrides, task=task)
    if opts.inherit and settings.halving:
        raise ShrinkError("successive halving does not combine with --inherit (inherited "
                          "candidates are fine-tuned for the same few epochs each)",
                          search.locs.get("shrink"), "drop --inherit, or set halving=0")
    parsed = checked.sources.main
    spaces = {i.name: i for i in parsed.items if isinstance(i, ir.SpaceDef)}
    if search.space not in spaces:
        raise ShrinkError(f"space '{search.space}' must be defined in {parsed.file} itself",
                          search.locs.get("space"), "the shrinker rewrites the file it is given")
    overrides, source, record = _proxy_overrides(checked, search, task, opts, report)
    device = resolve_device(opts.device)
    return _Search(opts, parsed, checked.sources.texts[parsed.file], search,
                   spaces[search.space], settings, task, overrides, _sources(checked),
                   resolve_precision(opts.train_precision, device=device, task=task), device,
                   source, record, checked)


def _sources(checked: Checked) -> dict[str, str]:
    """The sha256 of the spec and of every file it includes, by name (relative to the spec's
    folder; the spec last)."""
    import hashlib
    import posixpath

    here = posixpath.dirname(checked.sources.main.file)
    out = {}
    for prog in checked.sources.programs:
        name = posixpath.relpath(prog.file, here or ".")
        out[name] = hashlib.sha256(checked.sources.texts[prog.file].encode()).hexdigest()
    return out


def _find_search(checked: Checked, name: str | None) -> ir.SearchDef:
    """The search block ``name``, or the spec file's last one."""
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


def _proxy_overrides(checked: Checked, search: ir.SearchDef, task: tasks.Task, opts: Options,
                     report: Report | None = None) -> tuple[dict, str | None, dict]:
    """Load the proxy data (a damaged file is an error here; an image folder or CIFAR folder
    is decoded once, into the decoded-data cache) and fit the proxy network to it: its
    ``classes`` or ``vocab`` parameter (the task's ``knob``), or an error when it has none and
    does not fit. With it, what the workers load and what run.json records of the data."""
    graph = build_graph(checked, search.network)
    net = checked.program.networks[search.network]
    size, source, record = task.prepare(opts.data, graph, opts.subset, report,
                                        not opts.quiet, net.loc)
    if task.knob in {p.name for p in net.params}:
        return {task.knob: size}, source, record
    outputs = graph.out_shape.c
    if outputs != size:
        raise ShrinkError(f"network {search.network} outputs {outputs} values but the data "
                          f"has {size} {task.unit}", net.loc,
                          f"give the network a '{task.knob}' parameter")
    return {}, source, record


def _meta(s: _Search) -> dict:
    """run.json's contents for this run."""
    from shrinkc.compiler.version import __version__

    return meta(s.parsed.file, s.text, s.search.name, s.settings, s.task.data_name(s.opts.data),
                s.opts.max_steps, s.opts.inherit, sources=s.sources, version=__version__,
                precision=s.precision, device=s.device,
                latency=s.latency.record() if s.latency is not None else None, **s.data_record)


def _first_parent(s: _Search, state: _Run) -> Parent:
    """With ``--inherit``: the complete DAG trained from scratch (step 0 of the log, once),
    which the first step's candidates start from."""
    text = print_program(s.program(state.edges))
    first = state.rundir.parent_state(0)
    if not first.exists():
        job = s.job(state.edges, rules.candidate_seed(s.settings.seed, 0, (0, 0)),
                    keep_state=True)
        (result,) = list(state.train(s.opts, [job]))
        n = len(state.edges)
        metrics = s.metrics(result, state.edges, n)
        state.log = [e for e in state.log if e.step != 0]
        state.log.insert(0, Entry(step=0, edge=None, edges=n, chosen=True,
                                  score=rules.score(s.settings.score, metrics),
                                  **_results(metrics)))
        state.rundir.write_log(state.log)
        state.rundir.write_parent_state(0, result["state"])
    return Parent(text=text, state=state.rundir.read_state(first, 0))


# --------------------------------------------------------------------------- one step


def _results(metrics: dict) -> dict:
    """What a log entry keeps of a candidate's metrics: not its weights, checkpoint or edge
    count (the entry's ``edges`` is the job's)."""
    return {k: v for k, v in metrics.items() if k not in ("state", "checkpoint", "edges")}



def _step(s: _Search, state: _Run, step: int) -> bool:
    """Run step ``step``: sample its candidates, train those not in the log yet, remove the
    winners' edges and snapshot. False when no edge can be removed.

    With successive halving (``halving`` = eta), a step runs in rounds: every candidate is
    trained for the first budget of ``rules.rungs``, the best 1/eta go on to the next, and so
    on, while a round has more candidates than winners to pick; the winners are the best of
    the last round. A candidate in a later round continues its training from the checkpoint
    its earlier round left in the run folder, and ends exactly as one run with its seed and
    the longer budget would (a learning-rate schedule restarts at each earlier round's
    budget, see ``train._schedule``, so that this holds for it too); without the
    checkpoint (a resumed run, an isomorphic twin) it is trained from scratch for the longer
    budget, with the same result. The step's checkpoints go once it is decided."""
    removable = rules.shrink_space(state.edges, s.space)
    if not removable:
        return False
    cands = rules.sample(removable, s.settings.candidates, s.settings.seed, step)
    state.progress.step(step, len(state.edges))
    budgets = rules.rungs(s.settings.train.epochs, s.settings.halving)
    if state.parent is not None:
        budgets = budgets[-1:]  # --inherit fine-tunes instead (halving is refused with it)
    entries: list[Entry] = []
    for rung, budget in enumerate(budgets):
        if rung > 0:
            cands = rules.survivors(entries, s.settings.halving, s.settings.drop)
            if len(cands) <= s.settings.drop:  # they are the winners: nothing left to decide
                break
        entries = _round(s, state, step, cands, rung if len(budgets) > 1 else None,
                         budget if rung < len(budgets) - 1 else None, budgets[:rung])
    chosen = _choose(s, state, step, entries)
    _remove_and_snapshot(s, state, step, chosen)
    if len(budgets) > 1:
        state.rundir.drop_candidate_states(step)
    return True


def _round(s: _Search, state: _Run, step: int, cands: list[Edge], rung: int | None,
           epochs: int | None, restarts: list[int] | None = None) -> list[Entry]:
    """Train the candidates ``cands`` of a step (one round of it, with halving: ``rung``,
    for ``epochs``; None: the train settings' own, with a learning-rate schedule restarting
    at the earlier rounds' budgets ``restarts``) that the log lacks; their log entries."""
    done = {e.edge_key: e for e in state.log if e.step == step and e.rung == rung}
    plan, trained = _plan(s, state, step, [c for c in cands if c not in done], rung, epochs,
                          restarts)
    _train_and_record(s, state, step, plan, trained, done, len(cands), rung)
    return [done[c] for c in cands]


def _plan(s: _Search, state: _Run, step: int, todo: list[Edge], rung: int | None = None,
          epochs: int | None = None, restarts: list[int] | None = None,
          ) -> tuple[list[_Planned], dict[str, Entry]]:
    """The jobs of a step's candidates not yet in the log, and the log's trained candidates
    (of the same round) by cell hash. A candidate isomorphic to one trained earlier in the run
    (or in this step) is not trained again (not with --inherit, where the result depends on
    the parent's weights).
    """
    trained = {e.hash: e for e in state.log
               if e.hash is not None and e.trained and e.rung == rung}
    plan: list[_Planned] = []
    for c in todo:
        after = rules.remove(s.space, state.edges, c)
        space = s.program(after).defs(ir.SpaceDef)[s.space.name]
        h = cell_hash(expand_space(space))  # type: ignore[arg-type]
        dup = state.parent is None and (h in trained or any(p.hash == h for p in plan))
        job = None if dup else s.job(
            after, rules.candidate_seed(s.settings.seed, step, c), state.parent,
            keep_state=state.parent is not None, epochs=epochs, restarts=restarts,
            resume=state.rundir.read_checkpoint(step, c, rung - 1) if rung else None,
            keep_checkpoint=rung is not None and epochs is not None)
        plan.append(_Planned(c, h, job))
    return plan, trained


def _train_and_record(s: _Search, state: _Run, step: int, plan: list[_Planned],
                      trained: dict[str, Entry], done: dict[Edge, Entry], n: int,
                      rung: int | None = None) -> None:
    """Train the planned jobs and log each candidate as it finishes (an isomorphic one takes
    its twin's metrics); the log is written after every candidate."""
    jobs = [p.job for p in plan if p.job is not None]
    results = state.train(s.opts, jobs) if jobs else iter(())
    where = {} if rung is None else {"rung": rung}
    for p in plan:
        if p.job is None:
            twin = trained.get(p.hash) or next(done[q.edge] for q in plan if q.hash == p.hash)
            entry = Entry(**{**twin.as_dict(exclude=latency_score.MEASURED),
                             "step": step, "edge": list(p.edge), "chosen": False,
                             "seconds": 0.0, "cpu_seconds": 0.0,
                             "isomorphic_to": [twin.step, twin.edge], **where})
        else:
            result = next(results)
            if "state" in result:
                state.rundir.write_candidate_state(step, p.edge, result["state"])
            if "checkpoint" in result:
                state.rundir.write_checkpoint(step, p.edge, rung or 0, result["checkpoint"])
            metrics = s.metrics(result, rules.remove(s.space, state.edges, p.edge), p.job.edges)
            entry = Entry(step=step, edge=list(p.edge), edges=p.job.edges, hash=p.hash,
                          score=rules.score(s.settings.score, metrics), chosen=False,
                          **where, **_results(metrics))
            trained.setdefault(p.hash, entry)
        state.log.append(entry)
        done[p.edge] = entry
        state.rundir.write_log(state.log)
        state.progress.finished(step, len(state.edges), len(done), n)


def _choose(s: _Search, state: _Run, step: int, entries: list[Entry]) -> list[Entry]:
    """Mark the step's best ``drop`` candidates chosen (ties: fewer edges, then the lower
    edge) and log it; with --inherit the first winner's weights become the next parent."""
    chosen = rules.rank(entries)[: s.settings.drop]
    for e in entries:
        e.chosen = any(e is ch for ch in chosen)
    if state.parent is not None:
        state.rundir.promote_candidate_state(step, chosen[0].edge)
    state.rundir.write_log(state.log)
    return chosen


def _remove_and_snapshot(s: _Search, state: _Run, step: int, chosen: list[Entry]) -> None:
    """Remove the chosen edges for good, move the parent on (--inherit), and write the step's
    snapshot, the best snapshot so far and the scores plot."""
    state.edges = rules.remove(s.space, state.edges, tuple(e.edge_key for e in chosen))
    text = print_program(s.program(state.edges))
    if state.parent is not None:
        state.parent = Parent(text=text,
                              state=state.rundir.read_state(state.rundir.parent_state(step), step))
        state.rundir.drop_candidate_states(step)
    if s.latency is not None and s.latency.here and chosen[0].get("latency_measured") is None:
        chosen[0].add(**s.latency.measure(state.edges))  # between steps: nothing trains now
        state.rundir.write_log(state.log)
    name = state.rundir.snapshot(step, text)
    state.snapshots.append({"step": step, "edges": len(state.edges), "file": name, "text": text,
                            **{k: v for k in tasks.SNAPSHOT_METRICS
                               if (v := chosen[0].get(k)) is not None}})
    state.rundir.best(rules.best_snapshot(state.snapshots)["text"])  # type: ignore[index]
    state.rundir.plot(state.snapshots, state.log)


# --------------------------------------------------------------------------- after the search


def _summary(state: _Run, initial: int, report: Report | None,
             max_steps: int | None = None) -> dict:
    """What ``run`` returns; a warning when no step was run (and why)."""
    best = rules.best_snapshot(state.snapshots)
    if best is None:
        if report:
            why = ("--max-steps 0: everything was checked and run.json written, nothing trained"
                   if max_steps == 0 else "the space is already at its keep fraction")
            report(warning(f"no step was run ({why})"))
        return {"steps": 0, "best": None, "trained": 0}
    return {
        "steps": len(state.snapshots),
        "trained": len(state.log),
        "best": {k: v for k, v in best.items() if k != "text"},
        "initial_edges": initial,
        "final_edges": len(state.edges),
        "out": state.rundir.out.as_posix(),
    }
