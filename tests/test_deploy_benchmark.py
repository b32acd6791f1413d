"""``benchmarks/deploy.py`` records the CPU it measured on: the instruction sets that decide
how fast int8 (VNNI, AMX) and fp16 run, from /proc/cpuinfo."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import deploy  # noqa: E402

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx2 fma f16c avx512f avx512bw avx512vl avx512_vnni amx_tile amx_int8

processor\t: 1
model name\t: another
flags\t\t: fpu
"""


def test_cpu_flags_from_the_first_processor(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO)
    cpu = deploy.cpu_flags(info)
    assert cpu["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert set(cpu["flags"]) == set(deploy.CPU_FLAGS)
    on = {f for f, v in cpu["flags"].items() if v}
    assert on == {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                  "amx_tile", "amx_int8"}
    assert deploy.cpu_flags(tmp_path / "none") == {"source": None}


def test_the_results_record_the_cpu():
    m = deploy.machine((1.0, 2.0))
    assert m["load_average_start"] == 1.0 and "cpu" in m
    if Path("/proc/cpuinfo").exists():
        assert m["cpu"]["model"] and all(isinstance(v, bool) for v in m["cpu"]["flags"].values())
