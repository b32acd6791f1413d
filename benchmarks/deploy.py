"""ShrinkCNN-A and MobileNetV2 as deployed: fp32, fp16 and int8 ONNX side by side.

For each network: parameters and MACs (``shrinkc stats``), then the three files as a user
makes them, each by a fresh ``shrinkc compile --target onnx --weights w.safetensors
[--precision fp16|int8]`` (cold wall time recorded): fp32 and fp16 at the default opset,
int8 at its default (25), calibrated on the built-in proxy data (the digits resized to
224x224). The weights are shrinkc's seeded random ones (written to a .safetensors file, since
int8 needs ``--weights``): right for sizes and latency, not for accuracy. Then onnxruntime
latency at batch 1 with 1 and 2 intra-op threads: all twelve sessions (2 networks x 3
precisions x 2 thread counts) open at once and timed one run each in turn, round after round
(the order reversed every other round), so that the machine's load falls on all alike;
medians. The thread pools do not spin between runs (``session.intra_op.allow_spinning=0``),
so that one session's idle threads do not take the cores from the next. Each row shows its
ratio to fp32; "rel err" is the relative error of the logits against fp32 on 8 digits
images (random weights: a check that the file computes the same network, no accuracy).

    python benchmarks/deploy.py [--runs 100] [--warmup 10]

Raw results: benchmarks/results/deploy.json, with the CPU's model and the instruction-set
flags that decide how fast int8 and fp16 run (``cpu_flags``: AVX2, AVX-512, VNNI, AMX, ...,
from /proc/cpuinfo).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hostinfo import CPU_FLAGS, cpu_flags  # noqa: F401  (CPU_FLAGS: for the tests)

ROOT = Path(__file__).resolve().parent.parent
SPECS = {"ShrinkCNN-A": "specs/shrinkcnn_a.shrink", "MobileNetV2": "specs/mobilenetv2.shrink"}
PRECISIONS = ("fp32", "fp16", "int8")
THREADS = (1, 2)
RESULTS = ROOT / "benchmarks" / "results" / "deploy.json"


def compile_variants(spec: str, tmp: Path) -> dict:
    """Random weights as .safetensors, then one cold ``shrinkc compile`` per precision."""
    import safetensors.numpy

    from shrinkc.backends.onnx.checkpoint import random_weights
    from shrinkc.compiler import compile_file

    graph = compile_file(ROOT / spec)
    stem = Path(spec).stem
    tmp.mkdir(parents=True, exist_ok=True)
    weights = tmp / f"{stem}.safetensors"
    safetensors.numpy.save_file(random_weights(graph), weights)
    out = {"params": graph.cost.params, "macs": graph.cost.macs,
           "input": graph.input_shape.as_list(), "input_name": graph.input_name, "files": {}}
    for p in PRECISIONS:
        cmd = [sys.executable, "-m", "shrinkc", "compile", spec, "--target", "onnx", "-o",
               str(tmp / p), "--weights", str(weights), "--precision", p]
        t = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        dt = time.perf_counter() - t
        if r.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
        path = tmp / p / f"{stem}.onnx"
        out["files"][p] = {"path": path, "bytes": path.stat().st_size, "compile_s": round(dt, 2),
                           "said": r.stdout.strip()}
        print(f"  {r.stdout.strip()}  [{dt:.1f} s]", flush=True)
    return out


def session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def measure(nets: dict, runs: int, warmup: int) -> dict:
    """Per (network, precision, threads): the seconds of ``runs`` single runs, interleaved."""
    import numpy as np

    from shrinkc.data import images

    sessions, feeds, rel = {}, {}, {}
    for net, info in nets.items():
        c, h, w = info["input"]
        x = np.repeat(images.digits((1, h, w)).x_val[:8], c, axis=1)
        ref = None
        for p in PRECISIONS:
            for t in THREADS:
                sessions[net, p, t] = session(info["files"][p]["path"], t)
                feeds[net, p, t] = {info["input_name"]: x[:1]}
            y = sessions[net, p, 1].run(None, {info["input_name"]: x})[0]
            ref = y if ref is None else ref
            rel[net, p] = float(np.linalg.norm(y - ref) / np.linalg.norm(ref))
    keys = list(sessions)
    for _ in range(warmup):
        for k in keys:
            sessions[k].run(None, feeds[k])
    times: dict = {k: [] for k in keys}
    for i in range(runs):
        for k in keys if i % 2 == 0 else keys[::-1]:
            t = time.perf_counter()
            sessions[k].run(None, feeds[k])
            times[k].append(time.perf_counter() - t)
    return {"times": times, "rel": rel}


def ms(v: list[float]) -> float:
    return statistics.median(v) * 1e3


def report(nets: dict, m: dict, runs: int, warmup: int, load: tuple[float, float]) -> None:
    import onnxruntime as ort

    print(f"\nDeployment: batch 1 at 3x224x224, onnxruntime {ort.__version__} (CPU), "
          f"{os.cpu_count()} CPUs, load average {load[0]:.2f} at start, {load[1]:.2f} at end; "
          f"medians of {runs} interleaved runs after {warmup} warm-up")
    cpu = cpu_flags()
    if cpu["source"]:
        has = [f for f, on in cpu["flags"].items() if on]
        print(f"CPU: {cpu['model']}; {', '.join(has) or 'none of ' + ', '.join(CPU_FLAGS)}")
    head = (f"{'network':<12} {'prec':<5} {'params':>10} {'MACs':>7} {'file MB':>8} {'x fp32':>6} "
            f"{'1 thr ms':>9} {'x fp32':>6} {'2 thr ms':>9} {'x fp32':>6} {'rel err':>8} "
            f"{'compile s':>9}")
    print(head)
    print("-" * len(head))
    for net, info in nets.items():
        base = info["files"]["fp32"]
        for p in PRECISIONS:
            f = info["files"][p]
            lat = [ms(m["times"][net, p, t]) for t in THREADS]
            ref = [ms(m["times"][net, "fp32", t]) for t in THREADS]
            print(f"{net:<12} {p:<5} {info['params']:>10,} {info['macs'] / 1e6:>6.1f}M "
                  f"{f['bytes'] / 1e6:>8.2f} {f['bytes'] / base['bytes']:>6.2f} "
                  f"{lat[0]:>9.2f} {lat[0] / ref[0]:>6.2f} {lat[1]:>9.2f} {lat[1] / ref[1]:>6.2f} "
                  f"{m['rel'][net, p]:>8.1e} {f['compile_s']:>9.1f}")
    print("\nnotes: seeded random weights (int8 calibrated on the digits proxy data, 64 images "
          "resized to 224x224): sizes and latency, not accuracy; fp32 and fp16 at opset 28, "
          "int8 at 25; fp16 keeps float32 inputs and outputs; compile s: one cold "
          "`shrinkc compile` process (int8's includes loading the digits and calibrating).")


def machine(load: tuple[float, float]) -> dict:
    """What the numbers were measured on."""
    return {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "cpu": cpu_flags(), "load_average_start": round(load[0], 2),
            "load_average_end": round(load[1], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    args = ap.parse_args()

    import onnx
    import onnxruntime as ort

    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="shrinkc-deploy-") as d:
        nets = {}
        for net, spec in SPECS.items():
            print(f"{net} ({spec})", flush=True)
            nets[net] = compile_variants(spec, Path(d) / net)
        m = measure(nets, args.runs, args.warmup)
    load = (load0, os.getloadavg()[0])
    report(nets, m, args.runs, args.warmup, load)
    out = {
        "machine": machine(load),
        "versions": {"onnx": onnx.__version__, "onnxruntime": ort.__version__,
                     "python": platform.python_version()},
        "settings": {"batch": 1, "threads": list(THREADS), "runs": args.runs,
                     "warmup": args.warmup, "interleaved": True, "allow_spinning": False,
                     "weights": "seeded random (shrinkc's random_weights)",
                     "int8_calibration": "digits proxy data, 64 images at 224x224"},
        "seconds": round(time.perf_counter() - t0, 1),
        "networks": {
            net: {
                "spec": SPECS[net], "params": info["params"], "macs": info["macs"],
                "variants": {
                    p: {"bytes": info["files"][p]["bytes"],
                        "size_vs_fp32": round(info["files"][p]["bytes"]
                                              / info["files"]["fp32"]["bytes"], 4),
                        "compile_s": info["files"][p]["compile_s"],
                        "compile_output": info["files"][p]["said"],
                        "rel_err_vs_fp32": m["rel"][net, p],
                        "latency_ms": {
                            str(t): {"median": round(ms(m["times"][net, p, t]), 4),
                                     "vs_fp32": round(ms(m["times"][net, p, t])
                                                      / ms(m["times"][net, "fp32", t]), 4),
                                     "runs": [round(s * 1e3, 4) for s in m["times"][net, p, t]]}
                            for t in THREADS},
                    } for p in PRECISIONS},
            } for net, info in nets.items()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
