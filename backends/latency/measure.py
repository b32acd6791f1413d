"""The one measuring routine: every latency figure of shrinkc goes through :func:`measure_model`
(or, for a session already made, :func:`measure_session`).

The protocol (:class:`Protocol`), recorded with every number:

* onnxruntime on the CPU (``CPUExecutionProvider``), sequential execution, the graph
  optimisation level ``graph_optimization`` (``all`` by default, as onnxruntime itself), a
  batch of ``batch``, ``threads`` intra-op threads and one inter-op thread, intra-op thread
  spinning (``session.intra_op.allow_spinning``) on or off;
* random float inputs (seed 0) of the model's shapes bound once with onnxruntime's I/O
  binding, so a run times the model and not the copying of its inputs;
* ``warmup`` untimed runs, then timed runs in blocks of ``block``; after each block, from
  ``min_runs`` on, it stops when the median is stable to ``tolerance``: the distribution-free
  95% confidence interval of the median (order statistics ``n/2 -+ 0.98 sqrt(n)``) lies
  within ``+-tolerance`` of the median; else at ``max_runs`` runs or after ``max_seconds`` of
  timed runs. ``tolerance=0`` runs exactly ``max_runs`` times.
* reported (:class:`Measurement`): the median, the quartiles and their range (IQR), the
  confidence interval of the median, mean and fastest run, how many runs, why it stopped,
  and the :class:`~.fingerprint.Fingerprint`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from shrinkc.compiler.errors import ShrinkError

from .fingerprint import OPT_LEVELS, Fingerprint, current

STOPS = ("stable", "run limit", "time limit")
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
"""The clocks a run is timed by: ``wall``, the latency itself (``time.perf_counter``), or
``cpu``, the CPU time of this process (``time.process_time``), which with one thread is the
latency the run would have had without the time other processes took from it: the clock for
a machine that is busy with something else (a search training beside it). The fingerprint
records which; numbers of the two clocks are never mixed."""


@dataclass(frozen=True)
class Protocol:
    """How a latency is measured (see the module's documentation)."""

    threads: int = 1
    batch: int = 1
    spinning: bool = True  # onnxruntime's default
    graph_optimization: str = "all"
    warmup: int = 10
    min_runs: int = 20
    max_runs: int = 1000
    tolerance: float = 0.01  # the median's 95% interval within +-1% of it
    max_seconds: float = 10.0
    block: int = 10
    clock: str = "wall"  # or "cpu": this process's CPU time, for one thread on a busy machine

    def __post_init__(self) -> None:
        if self.clock not in CLOCKS:
            raise ValueError(f"clock must be one of {', '.join(CLOCKS)}")
        if self.clock == "cpu" and self.threads != 1:
            raise ValueError("the cpu clock times one thread: it needs threads=1")
        if self.graph_optimization not in OPT_LEVELS:
            raise ValueError(f"graph_optimization must be one of {', '.join(OPT_LEVELS)}")
        if min(self.threads, self.batch, self.max_runs, self.block) < 1 or self.warmup < 0:
            raise ValueError("threads, batch, max_runs and block are at least 1, warmup 0")
        if not (0 <= self.tolerance < 1 and self.max_seconds > 0):
            raise ValueError("tolerance is in [0, 1) and max_seconds positive")

    def fingerprint(self, input: tuple[int, ...] | None = None) -> Fingerprint:
        """The fingerprint of a measurement taken here with this protocol."""
        return current(threads=self.threads, batch=self.batch, spinning=self.spinning,
                       graph_optimization=self.graph_optimization, clock=self.clock,
                       input=input)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Protocol:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


@dataclass(frozen=True)
class Measurement:
    """One measured latency, in milliseconds, with how it was taken."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    ci95_ms: tuple[float, float]  # the median's distribution-free 95% confidence interval
    mean_ms: float
    min_ms: float
    runs: int
    warmup: int
    stopped: str  # one of STOPS
    tolerance: float
    fingerprint: Fingerprint
    times_ms: tuple[float, ...] = field(default=(), repr=False)

    @property
    def iqr_ms(self) -> float:
        return self.q3_ms - self.q1_ms

    def to_dict(self, times: bool = False) -> dict:
        d = {"median_ms": _r(self.median_ms), "q1_ms": _r(self.q1_ms), "q3_ms": _r(self.q3_ms),
             "iqr_ms": _r(self.iqr_ms), "ci95_ms": [_r(x) for x in self.ci95_ms],
             "mean_ms": _r(self.mean_ms), "min_ms": _r(self.min_ms), "runs": self.runs,
             "warmup": self.warmup, "stopped": self.stopped, "tolerance": self.tolerance,
             "fingerprint": self.fingerprint.to_dict()}
        if times:
            d["times_ms"] = [_r(t) for t in self.times_ms]
        return d


def _r(x: float) -> float:
    return round(float(x), 5)


def quantile(sorted_xs: list[float], q: float) -> float:
    """The ``q`` quantile of sorted values, interpolated linearly (numpy's default)."""
    pos = (len(sorted_xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def median_interval(sorted_xs: list[float]) -> tuple[float, float]:
    """The distribution-free 95% confidence interval of the median: the order statistics at
    ranks ``n/2 -+ 1.96 sqrt(n) / 2`` (clamped to the sample)."""
    n = len(sorted_xs)
    half = 1.96 * math.sqrt(n) / 2
    lo = max(0, math.floor(n / 2 - half) - 1)  # 0-based ranks
    hi = min(n - 1, math.ceil(n / 2 + half))
    return sorted_xs[lo], sorted_xs[hi]


def is_stable(sorted_xs: list[float], tolerance: float) -> bool:
    """Whether the median's 95% interval lies within ``+-tolerance`` of the median."""
    if tolerance <= 0 or len(sorted_xs) < 3:
        return False
    med = quantile(sorted_xs, 0.5)
    lo, hi = median_interval(sorted_xs)
    return med > 0 and med - lo <= tolerance * med and hi - med <= tolerance * med


def time_runs(run: Callable[[], object], protocol: Protocol,
              clock: Callable[[], float] | None = None,
              before: Callable[[], object] | None = None) -> tuple[list[float], str]:
    """Call ``run`` ``protocol.warmup`` times untimed, then time calls until the protocol
    stops; returns the seconds of each timed call and why it stopped (:data:`STOPS`).
    ``clock``: the protocol's (:data:`CLOCKS`) unless given; the time limit is on the same
    clock. ``before``, if given, is called untimed before every run (to set a cache state)."""
    clock = clock or CLOCKS[protocol.clock]
    for _ in range(protocol.warmup):
        if before is not None:
            before()
        run()
    times: list[float] = []
    while True:
        for _ in range(min(protocol.block, protocol.max_runs - len(times))):
            if before is not None:
                before()
            t = clock()
            run()
            times.append(clock() - t)
        if len(times) >= protocol.max_runs:
            return times, "run limit"
        if len(times) >= protocol.min_runs and is_stable(sorted(times), protocol.tolerance):
            return times, "stable"
        if sum(times) >= protocol.max_seconds:
            return times, "time limit"


def summarize(times_s: list[float], stopped: str, protocol: Protocol,
              fingerprint: Fingerprint, keep_times: bool = False) -> Measurement:
    ms = sorted(t * 1e3 for t in times_s)
    return Measurement(
        median_ms=quantile(ms, 0.5), q1_ms=quantile(ms, 0.25), q3_ms=quantile(ms, 0.75),
        ci95_ms=median_interval(ms), mean_ms=sum(ms) / len(ms), min_ms=ms[0], runs=len(ms),
        warmup=protocol.warmup, stopped=stopped, tolerance=protocol.tolerance,
        fingerprint=fingerprint, times_ms=tuple(t * 1e3 for t in times_s) if keep_times else ())


# --------------------------------------------------------------------------- onnxruntime


def session_options(protocol: Protocol):
    """onnxruntime session options for ``protocol``: its threads, spinning and
    optimisation level, sequential execution, errors only in the log."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = protocol.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    levels = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
              "extended": "ORT_ENABLE_EXTENDED", "layout": "ORT_ENABLE_LAYOUT",
              "all": "ORT_ENABLE_ALL"}
    level = getattr(ort.GraphOptimizationLevel, levels[protocol.graph_optimization], None)
    if level is None:
        raise ShrinkError(f"onnxruntime {ort.__version__} has no graph optimisation level "
                          f"'{protocol.graph_optimization}'", None, "use 'all' or 'extended'")
    opts.graph_optimization_level = level
    opts.add_session_config_entry("session.intra_op.allow_spinning",
                                  "1" if protocol.spinning else "0")
    opts.log_severity_level = 3
    return opts


def make_session(model, protocol: Protocol, optimized: str | Path | None = None,
                 profile: str | Path | None = None):
    """An onnxruntime CPU session of ``model`` (a ModelProto, its bytes, or a file);
    ``optimized``: where onnxruntime writes the graph it optimised (to see its layout);
    ``profile``: the prefix of the file onnxruntime profiles its runs into."""
    import onnxruntime as ort

    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    elif isinstance(model, Path):
        model = str(model)
    opts = session_options(protocol)
    if optimized is not None:
        opts.optimized_model_filepath = str(optimized)
    if profile is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(profile)
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def random_feeds(session, batch: int) -> dict:
    """Random float32 inputs (seed 0) for a session whose inputs are float and fixed but for
    an open first dimension (the batch)."""
    import numpy as np

    rng = np.random.default_rng(0)
    feeds = {}
    for inp in session.get_inputs():
        shape = [batch if i == 0 and not isinstance(d, int) else d
                 for i, d in enumerate(inp.shape)]
        if not all(isinstance(d, int) for d in shape):
            raise ShrinkError(f"the input '{inp.name}' has an open dimension besides the batch "
                              f"({inp.shape}): a latency needs every size fixed")
        feeds[inp.name] = rng.standard_normal(shape, dtype=np.float32)
    return feeds


def bound_runner(session, feeds: dict) -> Callable[[], object]:
    """A call that runs ``session`` on ``feeds`` bound once (onnxruntime's I/O binding: the
    inputs are not copied per run; the outputs are allocated by onnxruntime)."""
    import onnxruntime as ort

    binding = session.io_binding()
    values = {name: ort.OrtValue.ortvalue_from_numpy(x) for name, x in feeds.items()}
    for name, v in values.items():
        binding.bind_ortvalue_input(name, v)
    for out in session.get_outputs():
        binding.bind_output(out.name, "cpu")
    options = ort.RunOptions()

    def run() -> None:
        session.run_with_iobinding(binding, options)

    run.keep = values  # type: ignore[attr-defined]  # the inputs live as long as the runner
    return run


def measure_session(session, feeds: dict, protocol: Protocol, fingerprint: Fingerprint,
                    keep_times: bool = False) -> Measurement:
    """Time ``session`` on ``feeds`` by ``protocol``; ``fingerprint`` is recorded with it."""
    times, stopped = time_runs(bound_runner(session, feeds), protocol)
    return summarize(times, stopped, protocol, fingerprint, keep_times)


def measure_model(model, protocol: Protocol, keep_times: bool = False) -> Measurement:
    """The latency of ``model`` (a ModelProto, its bytes, or a file) on this machine by
    ``protocol``, with its fingerprint (the input size: the first input's, without the
    batch)."""
    session = make_session(model, protocol)
    feeds = random_feeds(session, protocol.batch)
    first = next(iter(feeds.values()))
    fp = protocol.fingerprint(tuple(first.shape[1:]))
    return measure_session(session, feeds, protocol, fp, keep_times)


__all__ = ["CLOCKS", "STOPS", "Measurement", "Protocol", "bound_runner", "is_stable", "make_session",
           "measure_model", "measure_session", "median_interval", "quantile", "random_feeds",
           "session_options", "summarize", "time_runs"]
