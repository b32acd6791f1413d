"""What a benchmark ran on: the CPU's model and the instruction sets that decide which kernels
run (AVX2, AVX-512, bf16, fp16, VNNI, AMX), from /proc/cpuinfo; recorded in the benchmarks'
JSON."""

from __future__ import annotations

from pathlib import Path

# the instruction sets onnxruntime's int8 and fp16 kernels use where present
CPU_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
             "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """The CPU's model name and, for each of :data:`CPU_FLAGS`, whether it has it (read from
    ``cpuinfo``'s first processor); ``{"source": None}`` where there is no such file."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return {"source": None}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor is enough
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    return {"source": str(cpuinfo), "model": fields.get("model name"),
            "flags": {f: f in flags for f in CPU_FLAGS}}
