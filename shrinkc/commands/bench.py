"""``shrinkc bench FILE.onnx``: onnxruntime's latency and throughput for a model on this machine.

Timed by shrinkc's one measuring routine (``backends/latency/measure.py``): random inputs of
the model's own shapes and types (the batch dimension set by ``--batch``; a language model's
open time axis, ``time``, by ``--seq``, default :data:`SEQ`) bound once, ``--warmup`` runs not
counted, then timed runs one after another on onnxruntime's CPU provider with ``--threads``
intra-op threads (one inter-op thread), thread spinning on or off (``--no-spin``), graph
optimisation ``all``: exactly ``--runs`` of them, or with ``--tolerance T`` until the median
is stable to that fraction (from 20 runs on) or ``--runs`` is reached. Reported: the median
(p50) and p90 latency (ms, linear percentiles), the quartiles and their range, the mean and
the fastest run, why it stopped, the throughput (batch items per second over all the timed
runs; for a language model also tokens per second) and the fingerprint of the measurement
(CPU, cores, onnxruntime, threads, batch, spinning, clock). numpy and onnxruntime load only
here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from shrinkc.compiler.errors import ShrinkError
from shrinkc.console import stdout_console

from . import measuring

SEQ = 35
RUNS = 100  # bench's timed runs (with --tolerance: the most)
MAX_SECONDS = 60.0  # with --tolerance: the most seconds of timed runs
"""The default sequence length of a language model's time axis: the unrolled length (BPTT)
that ShrinkRNN's training on Penn Treebank uses, as DARTS and AWD-LSTM do."""
TIME = "time"  # the name shrinkc gives a language model's open time axis


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


def _protocol(args):
    """The measuring protocol of the flags: exactly ``--runs`` runs, or with ``--tolerance``
    until the median is stable (at least 20 runs, or ``--runs`` when fewer) or ``--runs``."""
    from shrinkc.backends.latency.measure import Protocol

    adaptive = args.tolerance is not None
    runs = args.max_runs if args.max_runs is not None else RUNS
    try:
        return Protocol(**{**measuring.given(args), "batch": args.batch or 1, "max_runs": runs,
                           "min_runs": min(20, runs) if adaptive else runs,
                           "tolerance": args.tolerance if adaptive else 0.0,
                           "max_seconds": (args.max_seconds or MAX_SECONDS) if adaptive
                           else 1e9})
    except ValueError as e:
        from shrinkc.console import UsageError

        raise UsageError(str(e)) from None


def _session(path: Path, protocol):
    """An onnxruntime session of ``path`` on the CPU, or a ShrinkError saying why not."""
    if not path.exists():
        raise ShrinkError(f"no such file: {path.as_posix()}")
    if not path.is_file():
        raise ShrinkError(f"{path.as_posix()} is not a regular file")
    try:
        import numpy  # noqa: F401
        import onnxruntime as ort
    except ImportError as e:
        raise ShrinkError(f"bench needs the '{e.name}' package", None,
                          "pip install 'shrinkc[onnx]'") from None
    from shrinkc.backends.latency.measure import make_session

    try:
        return ort, make_session(path, protocol)
    except Exception as e:  # onnxruntime's own error types: not a model it can run
        raise ShrinkError(f"cannot load {path.as_posix()} as an ONNX model: {_first_line(e)}",
                          None, "compile one with: shrinkc compile SPEC --target onnx") from None


DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
          "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8",
          "tensor(uint8)": "uint8", "tensor(bool)": "bool"}


MAX_INPUT_BYTES = 16 << 30  # one batch of one input: more is not a model bench can run


def _feeds(session, batch: int | None, path: Path, seq: int = SEQ) -> tuple[dict, int]:
    """Random inputs for every input of ``session`` and the batch they have: the first
    dimension is the batch (``batch`` where the model leaves it open; a fixed one must
    equal it); an open dimension named ``time`` (a language model's) is ``seq`` long; every
    other dimension must be fixed."""
    import numpy as np

    rng = np.random.default_rng(0)
    feeds, batches = {}, set()
    for inp in session.get_inputs():
        if inp.type not in DTYPES:
            raise ShrinkError(f"{path.as_posix()}: the input '{inp.name}' has the type "
                              f"{inp.type}, which bench cannot make data for")
        shape = list(inp.shape)
        if not shape:
            raise ShrinkError(f"{path.as_posix()}: the input '{inp.name}' is a scalar; bench "
                              "needs a batch dimension")
        for i, d in enumerate(shape[1:], start=1):
            if d == TIME:
                shape[i] = seq
            elif not isinstance(d, int):
                raise ShrinkError(f"{path.as_posix()}: the input '{inp.name}' has a dynamic "
                                  f"dimension {i} ('{d}'); bench needs every size but the "
                                  "batch fixed", None,
                                  "an image network compiled by shrinkc has them fixed "
                                  "(--input CxHxW sets them; a language model's time axis "
                                  "takes --seq)")
        if isinstance(shape[0], int):
            if batch is not None and batch != shape[0]:
                raise ShrinkError(f"{path.as_posix()}: the input '{inp.name}' has a fixed batch "
                                  f"of {shape[0]}, not {batch}", None,
                                  f"leave --batch out, or use --batch {shape[0]}")
        else:
            shape[0] = batch or 1
        batches.add(shape[0])
        dtype = np.dtype(DTYPES[inp.type])
        size = math.prod(shape) * dtype.itemsize
        if min(shape) < 1 or size > MAX_INPUT_BYTES:
            raise ShrinkError(f"{path.as_posix()}: the input '{inp.name}' has the shape "
                              f"{'x'.join(map(str, shape))}, "
                              + ("a size below 1" if min(shape) < 1 else
                                 f"more than {MAX_INPUT_BYTES >> 30} GiB of data"), None,
                              "bench runs a model on one batch held in memory")
        try:
            if dtype.kind == "f":
                feeds[inp.name] = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
            else:  # token ids and flags: zeros are valid for any vocabulary
                feeds[inp.name] = np.zeros(shape, dtype=dtype)
        except (MemoryError, ValueError):
            raise ShrinkError(f"--batch {shape[0]}: not enough memory for the input "
                              f"'{inp.name}'") from None
    return feeds, max(batches)


def summary(m) -> dict:
    """p50 (the median), p90, quartiles, mean and min latency in milliseconds and items per
    second, of a :class:`~shrinkc.backends.latency.measure.Measurement` that kept its times."""
    from shrinkc.backends.latency.measure import quantile

    ms = sorted(m.times_ms)
    batch = m.fingerprint.batch
    return {"p50_ms": round(m.median_ms, 4), "p90_ms": round(quantile(ms, 0.9), 4),
            "q1_ms": round(m.q1_ms, 4), "q3_ms": round(m.q3_ms, 4),
            "iqr_ms": round(m.iqr_ms, 4), "mean_ms": round(m.mean_ms, 4),
            "min_ms": round(m.min_ms, 4),
            "images_per_s": round(batch * len(ms) * 1e3 / sum(ms), 2)}


def cmd_bench(args, report) -> int:
    from shrinkc.backends.latency.measure import measure_session

    path = Path(args.model)
    protocol = _protocol(args)
    ort, session = _session(path, protocol)
    feeds, batch = _feeds(session, args.batch, path, args.seq)
    if batch != protocol.batch:  # the model's own fixed batch
        from dataclasses import replace

        protocol = replace(protocol, batch=batch)
    timed = any(TIME in inp.shape[1:] for inp in session.get_inputs())
    first = next(iter(feeds.values()))
    fingerprint = protocol.fingerprint(tuple(first.shape[1:]))
    try:
        m = measure_session(session, feeds, protocol, fingerprint, keep_times=True)
    except MemoryError:
        raise ShrinkError(f"--batch {batch}: not enough memory to run {path.as_posix()}") from None
    except Exception as e:  # onnxruntime's own error types
        raise ShrinkError(f"onnxruntime cannot run {path.as_posix()}: {_first_line(e)}") from None
    meta = session.get_modelmeta().custom_metadata_map
    result = {
        "file": path.as_posix(), "bytes": path.stat().st_size,
        "network": meta.get("network"), "precision": meta.get("precision", "fp32"),
        "onnxruntime": ort.__version__, "provider": "CPUExecutionProvider",
        "inputs": [{"name": name, "shape": list(x.shape), "type": str(x.dtype)}
                   for name, x in feeds.items()],
        "threads": protocol.threads, "batch": batch, "warmup": protocol.warmup,
        "runs": m.runs, "run_limit": protocol.max_runs, "tolerance": protocol.tolerance, "stopped": m.stopped,
        "spinning": protocol.spinning, "clock": protocol.clock,
        **summary(m),
        "ci95_ms": [round(x, 4) for x in m.ci95_ms],
        "fingerprint": fingerprint.to_dict(),
    }
    if timed:  # a language model: sequences of --seq tokens
        result["seq"] = args.seq
        result["tokens_per_s"] = round(result["images_per_s"] * args.seq, 2)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    _print(result)
    return 0


def _print(r: dict) -> None:
    from rich import box
    from rich.table import Table

    console = stdout_console()
    size = f"{r['bytes'] / 1e6:.2f} MB" if r["bytes"] >= 1e5 else f"{r['bytes'] / 1e3:.1f} kB"
    what = ", ".join(x for x in (r["network"], r["precision"], size) if x)
    console.print(f"{r['file']}  ({what}; onnxruntime {r['onnxruntime']}, CPU)")
    inputs = ", ".join(f"{i['name']} {'x'.join(map(str, i['shape']))} {i['type']}"
                       for i in r["inputs"])
    threads = f"{r['threads']} thread{'s' if r['threads'] != 1 else ''}"
    seq = f" (sequences of {r['seq']} tokens)" if "seq" in r else ""
    stop = {"stable": f", median stable to {r['tolerance']:.1%}",
            "time limit": ", stopped at the time limit"}.get(r["stopped"], "")
    if r["stopped"] == "run limit" and r["tolerance"]:
        stop = f", median not stable to {r['tolerance']:.1%} by the run limit"
    console.print(f"input {inputs}{seq}; {threads}, {r['runs']} runs after {r['warmup']} "
                  f"warm-up{stop}; spinning {'on' if r['spinning'] else 'off'}, "
                  f"{r['clock']} clock")
    table = Table(box=box.SIMPLE, pad_edge=False, show_edge=False)
    for col in ("p50", "p90", "IQR", "mean", "min", "throughput"):
        table.add_column(col, justify="right")
    rate = (f"{r['tokens_per_s']:,.1f} tokens/s" if "seq" in r
            else f"{r['images_per_s']:,.1f} images/s")
    table.add_row(f"{r['p50_ms']:.2f} ms", f"{r['p90_ms']:.2f} ms", f"{r['iqr_ms']:.2f} ms",
                  *(f"{r[k]:.2f} ms" for k in ("mean_ms", "min_ms")), rate)
    console.print(table)
    fp = r["fingerprint"]
    console.print(f"on {fp['cpu_model']} ({fp['cores_usable']} of {fp['cores']} cores; "
                  f"{', '.join(fp['cpu_flags']) or 'no listed instruction sets'})")


def register(sub) -> None:
    """Add ``bench`` to ``shrinkc``'s subparsers."""
    b = sub.add_parser("bench", help="onnxruntime latency (p50, p90) and throughput of an "
                                     "ONNX file on this machine")
    b.add_argument("model", metavar="FILE.onnx")
    measuring.add_flags(
        b, ("threads", "batch", "max_runs", "tolerance", "max_seconds", "clock", "warmup"),
        {"threads": "1", "batch": "the model's fixed batch, else 1", "max_runs": str(RUNS),
         "max_seconds": f"{MAX_SECONDS:g}", "clock": "wall", "warmup": "10"},
        spellings={"max_runs": "--runs"},
        helps={"max_runs": "timed runs; with --tolerance, the most runs",
               "tolerance": "run until the median's 95%% interval is within this fraction of "
                            "it (0.01 is 1%%), from 20 runs on, or --runs is reached",
               "max_seconds": "with --tolerance: stop after this many seconds of timed runs"})
    b.add_argument("--seq", type=measuring.count("--seq", 1, 65536), default=SEQ,
                   help=f"language models: time steps per sequence (default: {SEQ}, the "
                        "unrolled length ShrinkRNN trains with)")
    b.add_argument("--json", action="store_true", help="print JSON")
    b.set_defaults(func=cmd_bench)
