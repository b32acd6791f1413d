"""``shrinkc bench FILE.onnx``: onnxruntime's latency and throughput for a model on this machine.

Random inputs of the model's own shapes and types (the batch dimension set by ``--batch``;
a language model's open time axis, ``time``, by ``--seq``, default :data:`SEQ`), ``--warmup``
runs not counted, then ``--runs`` timed runs one after another on onnxruntime's
CPU provider with ``--threads`` intra-op threads (one inter-op thread). Reported: the p50 and
p90 latency (ms, numpy's linear percentiles), the mean and the fastest run, and the
throughput (batch items per second over all the timed runs; for a language model also
tokens per second). numpy and onnxruntime load only here.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from shrinkc.compiler.errors import ShrinkError
from shrinkc.console import stdout_console

LIMITS = {"--threads": 1024, "--batch": 65536, "--runs": 1_000_000, "--warmup": 1_000_000,
          "--seq": 65536}
SEQ = 35
"""The default sequence length of a language model's time axis: the unrolled length (BPTT)
that ShrinkRNN's training on Penn Treebank uses, as DARTS and AWD-LSTM do."""
TIME = "time"  # the name shrinkc gives a language model's open time axis


def _count(flag: str, least: int):
    """An argparse type: a whole number from ``least`` to ``LIMITS[flag]`` (a usage error,
    exit 2, for anything else)."""
    def parse(text: str) -> int:
        t = text.strip()
        if not (t.isascii() and t.isdigit() and len(t) <= 9) or not least <= int(t) <= LIMITS[flag]:
            shown = text if len(text) <= 20 else text[:17] + "..."
            raise argparse.ArgumentTypeError(
                f"must be a whole number from {least} to {LIMITS[flag]:,}, got '{shown}'")
        return int(t)

    return parse


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


def _session(path: Path, threads: int):
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
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: no advice about the model on stderr
    try:
        return ort, ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
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


def measure(session, feeds: dict, runs: int, warmup: int) -> list[float]:
    """Seconds of each of ``runs`` calls of ``session.run`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        session.run(None, feeds)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - t)
    return times


def summary(times: list[float], batch: int) -> dict:
    """p50, p90, mean and min latency in milliseconds, and items per second."""
    import numpy as np

    ms = np.asarray(times) * 1e3
    p50, p90 = np.percentile(ms, [50, 90])
    return {"p50_ms": round(float(p50), 4), "p90_ms": round(float(p90), 4),
            "mean_ms": round(float(ms.mean()), 4), "min_ms": round(float(ms.min()), 4),
            "images_per_s": round(batch * len(times) / float(np.sum(times)), 2)}


def cmd_bench(args, report) -> int:
    path = Path(args.model)
    ort, session = _session(path, args.threads)
    feeds, batch = _feeds(session, args.batch, path, args.seq)
    timed = any(TIME in inp.shape[1:] for inp in session.get_inputs())
    try:
        times = measure(session, feeds, args.runs, args.warmup)
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
        "threads": args.threads, "batch": batch, "warmup": args.warmup, "runs": args.runs,
        **summary(times, batch),
    }
    if timed:  # a language model: sequences of --seq tokens
        result["seq"] = args.seq
        result["tokens_per_s"] = round(batch * args.seq * len(times) / sum(times), 2)
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
    console.print(f"input {inputs}{seq}; {threads}, {r['runs']} runs after {r['warmup']} "
                  "warm-up")
    table = Table(box=box.SIMPLE, pad_edge=False, show_edge=False)
    for col in ("p50", "p90", "mean", "min", "throughput"):
        table.add_column(col, justify="right")
    rate = (f"{r['tokens_per_s']:,.1f} tokens/s" if "seq" in r
            else f"{r['images_per_s']:,.1f} images/s")
    table.add_row(*(f"{r[k]:.2f} ms" for k in ("p50_ms", "p90_ms", "mean_ms", "min_ms")), rate)
    console.print(table)


def register(sub) -> None:
    """Add ``bench`` to ``shrinkc``'s subparsers."""
    b = sub.add_parser("bench", help="onnxruntime latency (p50, p90) and throughput of an "
                                     "ONNX file on this machine")
    b.add_argument("model", metavar="FILE.onnx")
    b.add_argument("--threads", type=_count("--threads", 1), default=1,
                   help="onnxruntime intra-op threads (default: 1)")
    b.add_argument("--batch", type=_count("--batch", 1),
                   help="the batch size (default: the model's fixed batch, else 1)")
    b.add_argument("--runs", type=_count("--runs", 1), default=100,
                   help="timed runs (default: 100)")
    b.add_argument("--warmup", type=_count("--warmup", 0), default=10,
                   help="untimed runs first (default: 10)")
    b.add_argument("--seq", type=_count("--seq", 1), default=SEQ,
                   help=f"language models: time steps per sequence (default: {SEQ}, the "
                        "unrolled length ShrinkRNN trains with)")
    b.add_argument("--json", action="store_true", help="print JSON")
    b.set_defaults(func=cmd_bench)
