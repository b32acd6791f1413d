"""The fingerprint of a latency measurement: what machine, runtime and settings it was taken
with. Every number the latency package produces carries one, and numbers of two different
fingerprints are never mixed (:func:`check_same`).

The fields: the CPU's model name and the instruction sets that decide which kernels
onnxruntime runs (and a digest of the whole flag list), the logical cores and those this
process may use, the onnxruntime version and execution provider, the graph optimisation
level, the intra-op and inter-op threads, whether intra-op threads spin, the batch and the
data type. The input size is a property of each measurement (a piece's shapes are in its
key), so it is compared only where a caller gives it (:attr:`Fingerprint.input`).
"""

from __future__ import annotations

import hashlib
import os
import platform
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from shrinkc.compiler.errors import ShrinkError

CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
             "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8",
             "amx_bf16", "neon", "asimd", "asimddp", "sve", "i8mm", "bf16")
"""The instruction sets onnxruntime's CPU kernels (MLAS) choose between, where the CPU lists
them (x86's /proc/cpuinfo ``flags``, Arm's ``Features``)."""

OPT_LEVELS = ("disable", "basic", "extended", "layout", "all")
"""onnxruntime's graph optimisation levels by the names shrinkc records (``layout`` exists
from onnxruntime 1.22 on)."""


@dataclass(frozen=True)
class Fingerprint:
    """What a latency was measured with; equal fingerprints may be compared and summed."""

    cpu_model: str
    cpu_flags: tuple[str, ...]  # those of CPU_FLAGS the CPU has
    cpu_flags_sha256: str  # of the sorted full flag list: a CPU with any other flag differs
    cores: int  # logical cores of the machine
    cores_usable: int  # those this process may run on (its affinity)
    machine: str  # x86_64, aarch64, ...
    onnxruntime: str
    provider: str
    graph_optimization: str
    intra_op_threads: int
    inter_op_threads: int
    spinning: bool
    batch: int
    clock: str = "wall"  # what a run is timed by (measure.CLOCKS)
    dtype: str = "float32"
    input: tuple[int, ...] | None = None  # the network's input (C, H, W); None for a table

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cpu_flags"] = list(self.cpu_flags)
        if self.input is None:
            del d["input"]
        else:
            d["input"] = list(self.input)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Fingerprint:
        """The fingerprint a dict describes; a ValueError naming the first bad field."""
        if not isinstance(d, dict):
            raise ValueError("the fingerprint is not an object")
        names = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"the fingerprint has an unknown field '{unknown[0]}'")
        values = {}
        for name, f in names.items():
            if name not in d:
                if name in ("dtype", "input", "clock"):
                    continue
                raise ValueError(f"the fingerprint lacks '{name}'")
            v = d[name]
            if name in ("cpu_flags", "input"):
                item = str if name == "cpu_flags" else int
                if not (isinstance(v, list) and all(
                        isinstance(x, item) and not isinstance(x, bool) for x in v)):
                    raise ValueError(f"the fingerprint's '{name}' is not a list of "
                                     f"{'names' if name == 'cpu_flags' else 'sizes'}")
                values[name] = tuple(v)
                continue
            want = {"int": int, "bool": bool, "str": str}[str(f.type)]
            if not isinstance(v, want) or (want is int and isinstance(v, bool)):
                raise ValueError(f"the fingerprint's '{name}' is not a {str(f.type)}")
            values[name] = v
        return cls(**values)

    def summary(self) -> str:
        """One line for people: ``Intel(R) Xeon(R) ..., onnxruntime 1.32.0, 1 thread, ...``."""
        t = self.intra_op_threads
        return (f"{self.cpu_model}, onnxruntime {self.onnxruntime}, {t} thread"
                f"{'s' if t != 1 else ''}, batch {self.batch}, spinning "
                f"{'on' if self.spinning else 'off'}, {self.clock} clock")

    def device(self) -> Fingerprint:
        """The fingerprint without the input size: what a latency table is keyed by."""
        return replace(self, input=None)

    def with_input(self, shape) -> Fingerprint:
        return replace(self, input=tuple(int(s) for s in shape))


def differences(a: Fingerprint, b: Fingerprint, *, input: bool = False) -> list[str]:
    """The fields in which ``a`` and ``b`` differ, as ``name: a-value vs b-value`` (the input
    size only with ``input``)."""
    out = []
    for f in fields(Fingerprint):
        if f.name == "input" and not input:
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if x != y:
            if f.name == "cpu_flags":
                only_a, only_b = sorted(set(x) - set(y)), sorted(set(y) - set(x))
                out.append(f"cpu_flags: {' '.join(only_a) or '-'} only in one, "
                           f"{' '.join(only_b) or '-'} only in the other")
            else:
                out.append(f"{f.name}: {_short(x)} vs {_short(y)}")
    return out


def _short(v) -> str:
    text = str(v)
    return text if len(text) <= 40 else text[:37] + "..."


def check_same(a: Fingerprint, b: Fingerprint, what: str, loc=None, hint: str | None = None,
               *, input: bool = False) -> None:
    """A located error unless ``a`` and ``b`` are the same (``what`` says which two numbers
    would have been mixed)."""
    diff = differences(a, b, input=input)
    if diff:
        shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
        raise ShrinkError(f"{what}: measured with another fingerprint ({shown}); latencies of "
                          "two fingerprints are never mixed", loc,
                          hint or "measure again with the same settings on the same machine, "
                                  "or build a table for this one", quote=False)


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str, set[str]]:
    """The first processor's model name and flags (x86 ``flags``, Arm ``Features``)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return platform.processor() or "unknown", set()
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "Hardware", "cpu model") and model is None:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
        elif not line.strip() and model and flags:
            break
    return model or platform.processor() or "unknown", flags


def opt_level_name(level) -> str:
    """shrinkc's name of an onnxruntime ``GraphOptimizationLevel``."""
    text = str(level).rsplit(".", 1)[-1]
    return {"ORT_DISABLE_ALL": "disable", "ORT_ENABLE_BASIC": "basic",
            "ORT_ENABLE_EXTENDED": "extended", "ORT_ENABLE_LAYOUT": "layout",
            "ORT_ENABLE_ALL": "all"}.get(text, text)


def current(*, threads: int = 1, batch: int = 1, spinning: bool = False,
            graph_optimization: str = "all", inter_op_threads: int = 1, clock: str = "wall",
            input: tuple[int, ...] | None = None) -> Fingerprint:
    """The fingerprint of a measurement taken here, now, with these settings."""
    import onnxruntime as ort

    model, flags = _cpuinfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        usable = os.cpu_count() or 1
    return Fingerprint(
        cpu_model=model, cpu_flags=tuple(f for f in CPU_FLAGS if f in flags),
        cpu_flags_sha256=hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest(),
        cores=os.cpu_count() or 1, cores_usable=usable, machine=platform.machine(),
        onnxruntime=ort.__version__, provider="CPUExecutionProvider",
        graph_optimization=graph_optimization, intra_op_threads=threads,
        inter_op_threads=inter_op_threads, spinning=spinning, batch=batch, clock=clock,
        input=None if input is None else tuple(input))


__all__ = ["CPU_FLAGS", "OPT_LEVELS", "Fingerprint", "check_same", "current", "differences",
           "opt_level_name"]
