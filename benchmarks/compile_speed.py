"""Cold-process time of `shrinkc compile --target pytorch` next to a cold `import torch`.

Target: compiling ShrinkCNN-A takes under a quarter of the time of importing torch, because
the compiler never imports torch. Runs are interleaved and the median is reported, so a
noisy machine affects both sides alike.

    python benchmarks/compile_speed.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cold(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--spec", default="specs/shrinkcnn_a.shrink")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as out:
        cases = {
            f"shrinkc compile {args.spec}": [sys.executable, "-m", "shrinkc", "compile", args.spec,
                                             "--target", "pytorch", "-o", out],
            "python -c 'import torch'": [sys.executable, "-c", "import torch"],
            "python -c 'pass' (interpreter start)": [sys.executable, "-c", "pass"],
        }
        times: dict[str, list[float]] = {k: [] for k in cases}
        for cmd in cases.values():  # warm the file cache once
            cold(cmd)
        for _ in range(args.runs):
            for name, cmd in cases.items():
                times[name].append(cold(cmd))
    med = {k: statistics.median(v) for k, v in times.items()}
    torch_t = med["python -c 'import torch'"]
    print(f"{'command (cold process)':<44} {'median s':>9} {'min s':>8} {'vs import torch':>16}")
    for k, v in times.items():
        print(f"{k:<44} {med[k]:>9.3f} {min(v):>8.3f} {med[k] / torch_t:>15.2f}x")
    ratio = med[next(iter(cases))] / torch_t
    verdict = "meets" if ratio < 0.25 else "MISSES"
    print(f"\ncompile / import torch = {ratio:.2f} ({verdict} the target of < 0.25), {args.runs} runs")


if __name__ == "__main__":
    main()
