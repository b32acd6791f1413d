"""shrinkc's ONNX backend next to torch.onnx.export (dynamo=True) on ShrinkCNN-A.

(a) cold-process wall time: ``python -m shrinkc compile SPEC --target onnx`` (random weights,
    and with ``--weights w.pt``) against a fresh process that imports the generated PyTorch
    module, loads the same ``w.pt`` and calls ``torch.onnx.export(model, (x,), path,
    dynamo=True)``. Target: shrinkc at least 20x faster.
(b) onnxruntime latency of the two graphs (same weights), batch 1, 2 intra-op threads,
    median of N runs after warmup, runs of the two sessions interleaved. Target: ratio <= 1.

Needs torch, onnx, onnxruntime and onnxscript (the dynamo exporter's dependency).

    python benchmarks/onnx_export.py [--runs 5] [--export-runs 3] [--latency-runs 100]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cold(cmd: list[str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
    return dt


def prepare(spec: str, tmp: Path) -> tuple[Path, Path]:
    """The generated PyTorch module and a state_dict with random weights and BN statistics."""
    import torch

    subprocess.run([sys.executable, "-m", "shrinkc", "compile", spec, "--target", "pytorch",
                    "-o", str(tmp)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    py = tmp / f"{Path(spec).stem}.py"
    loader = importlib.util.spec_from_file_location("generated", py)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)  # type: ignore[union-attr]
    torch.manual_seed(0)
    model = module.build().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    weights = tmp / "w.pt"
    torch.save(model.state_dict(), weights)
    return py, weights


def latency(paths: dict[str, Path], input_name: dict[str, str], shape: list[int], runs: int,
            warmup: int) -> tuple[dict[str, list[float]], float]:
    import numpy as np
    import onnxruntime as ort

    sessions = {}
    for name, path in paths.items():
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        sessions[name] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal([1, *shape]).astype(np.float32)
    outs = {n: s.run(None, {input_name[n]: x})[0] for n, s in sessions.items()}
    a, b = outs.values()
    rel = float(np.linalg.norm(a - b) / np.linalg.norm(b))
    for _ in range(warmup):
        for n, s in sessions.items():
            s.run(None, {input_name[n]: x})
    times: dict[str, list[float]] = {n: [] for n in sessions}
    order = list(sessions)
    for i in range(runs):  # interleaved, alternating which goes first
        for n in order if i % 2 == 0 else order[::-1]:
            t = time.perf_counter()
            sessions[n].run(None, {input_name[n]: x})
            times[n].append(time.perf_counter() - t)
    return times, rel


def _export_script(tmp: Path, py: Path, weights: Path, spec: str) -> Path:
    """A script that exports the generated module with torch.onnx.export(dynamo=True)."""
    script = tmp / "export.py"
    script.write_text(textwrap.dedent(f"""
        import importlib.util
        import torch
        loader = importlib.util.spec_from_file_location("generated", {str(py)!r})
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
        model = module.build().eval()
        model.load_state_dict(torch.load({str(weights)!r}, weights_only=True))
        x = torch.randn(1, *{list(onnx_shape(spec))!r})
        torch.onnx.export(model, (x,), {str(tmp / "exported" / "model.onnx")!r},
                          dynamo=True, verbose=False)
    """))
    (tmp / "exported").mkdir()
    return script


def _cold_times(cases: dict[str, list[str]], exporter: str, runs: int,
                export_runs: int) -> dict[str, list[float]]:
    """Cold-process wall times of each command, interleaved (the file cache warmed once)."""
    times: dict[str, list[float]] = {k: [] for k in cases}
    for k, cmd in cases.items():
        if k != exporter:
            cold(cmd)
    for i in range(max(runs, export_runs)):
        for k, cmd in cases.items():
            if i < (export_runs if k == exporter else runs):
                times[k].append(cold(cmd))
    return times


def _report_export(spec: str, times: dict[str, list[float]], exporter: str, load0: float) -> None:
    import onnx
    import onnxruntime as ort
    import torch

    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"ONNX export of {spec} (torch {torch.__version__}, onnx {onnx.__version__}, "
          f"onnxruntime {ort.__version__}; {os.cpu_count()} CPUs, load average "
          f"{load0:.2f} at start, {os.getloadavg()[0]:.2f} at end)\n")
    print("(a) cold-process wall time")
    print(f"  {'command':<52} {'runs':>4} {'median s':>9} {'min s':>7} {'exporter / this':>16}")
    for k, v in times.items():
        print(f"  {k:<52} {len(v):>4} {med[k]:>9.3f} {min(v):>7.3f} "
              f"{med[exporter] / med[k]:>15.1f}x")
    first = next(iter(times))
    speedup = med[exporter] / med[first]
    best = min(times[exporter]) / min(times[first])
    print(f"  -> shrinkc is {speedup:.1f}x faster (medians; {best:.1f}x by best runs), "
          f"{'meets' if speedup >= 20 else 'MISSES'} the target of >= 20x\n")


def _report_latency(lat: dict[str, list[float]], models: tuple, shape: list[int], rel: float,
                    runs: int, warmup: int) -> None:
    def ops(m) -> str:
        opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
        return f"opset {opset}, {len(m.graph.node)} nodes"

    lm = {k: statistics.median(v) * 1e3 for k, v in lat.items()}
    print(f"(b) onnxruntime latency, batch 1 x {'x'.join(map(str, shape))}, 2 intra-op threads, "
          f"median of {runs} after {warmup} warmup")
    print(f"  {'graph':<20} {'graph':<24} {'median ms':>10} {'p10 ms':>8} {'p90 ms':>8}")
    for (k, v), m in zip(lat.items(), models):
        q = statistics.quantiles([t * 1e3 for t in v], n=10)
        print(f"  {k:<20} {ops(m):<24} {lm[k]:>10.2f} {q[0]:>8.2f} {q[-1]:>8.2f}")
    ratio = lm["shrinkc"] / lm["torch.onnx.export"]
    paired = statistics.median(a / b for a, b in zip(lat["shrinkc"], lat["torch.onnx.export"]))
    print(f"  -> shrinkc / exporter = {ratio:.3f} (ratio of medians; median of paired ratios "
          f"{paired:.3f}), {'meets' if ratio <= 1.0 else 'MISSES'} the target of <= 1.0")
    print(f"  outputs agree to a relative error of {rel:.1e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="specs/shrinkcnn_a.shrink")
    ap.add_argument("--runs", type=int, default=5, help="cold runs of shrinkc compile")
    ap.add_argument("--export-runs", type=int, default=3, help="cold runs of torch.onnx.export")
    ap.add_argument("--latency-runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    args = ap.parse_args()

    import onnx

    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        py, weights = prepare(args.spec, tmp)
        stem = Path(args.spec).stem
        cases = {
            "shrinkc compile --target onnx (random weights)":
                [sys.executable, "-m", "shrinkc", "compile", args.spec, "--target", "onnx",
                 "-o", str(tmp / "ours")],
            "shrinkc compile --target onnx --weights w.pt":
                [sys.executable, "-m", "shrinkc", "compile", args.spec, "--target", "onnx",
                 "-o", str(tmp / "ours_w"), "--weights", str(weights)],
            "torch.onnx.export(dynamo=True) in a fresh process":
                [sys.executable, str(_export_script(tmp, py, weights, args.spec))],
        }
        exporter = list(cases)[-1]
        times = _cold_times(cases, exporter, args.runs, args.export_runs)
        ours = tmp / "ours_w" / f"{stem}.onnx"
        theirs = tmp / "exported" / "model.onnx"
        mo = onnx.load(ours, load_external_data=False)
        mt = onnx.load(theirs, load_external_data=False)
        shape = list(onnx_shape(args.spec))
        lat, rel = latency({"shrinkc": ours, "torch.onnx.export": theirs},
                           {"shrinkc": mo.graph.input[0].name,
                            "torch.onnx.export": mt.graph.input[0].name},
                           shape, args.latency_runs, args.warmup)
    _report_export(args.spec, times, exporter, load0)
    _report_latency(lat, (mo, mt), shape, rel, args.latency_runs, args.warmup)


def onnx_shape(spec: str) -> list[int]:
    from shrinkc.compiler import compile_file

    return compile_file(ROOT / spec).input_shape.as_list()


if __name__ == "__main__":
    main()
