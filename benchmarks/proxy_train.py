"""Proxy training speed: a plain fp32 loop against the shrinker's own training, side by side.

One table: seconds per epoch of the complete CNN proxy (``specs/shrinkcnn_space.shrink``,
digits at 32x32) and of the complete RNN proxy (``specs/shrinkrnn_space.shrink`` on
``../shared/data/penn_proxy``, or the generated corpus without it), each as

* a plain fp32 loop written here (the model the backend generates, NCHW, Adam or SGD as the
  spec says, one training epoch and one validation pass), and
* the shrinker's training: ``search.train.evaluate`` on a one-epoch job, timed as the shrinker
  logs it (compile, build, data and validation included), in fp32 and in the precision
  ``--precision auto`` (the default) picks on this machine: bf16 autocast where the CPU has
  native bf16 (AVX512-BF16 or AMX), fp32 elsewhere. ``--bf16`` adds bf16 rows where auto
  picks fp32 (to see how slow emulated bf16 is).

Rows are measured interleaved, ``--reps`` times, one thread each, and reported as medians,
with GFLOP/s (2 flops per multiply-accumulate, backward counted as twice the forward) and the
fraction of one core's fp32 peak (FMA width x 2 FMA units x clock, read from /proc/cpuinfo).
The target (issue 10): the shrinker's CNN epoch, with default settings, at most 0.5x the plain
loop's. Raw results go to ``benchmarks/results/proxy_train.json``.

``--data cifar10`` times the complete DAG on the CIFAR-10 proxy instead
(``../shared/data/cifar10/proxy.npz``: 5,000 training and 1,000 validation images at 32x32), at
``--batch`` (the spec's 128, or the search's 32), in rows: the plain fp32 loop (NCHW, Adam),
and the shrinker's ``search.train.train`` (channels-last, batch-norm recalibration, validation)
in fp32 and bf16. A CIFAR epoch takes half a minute, and the machine may be shared, so each row
is measured on ``--steps`` training steps, interleaved with the others, ``--reps`` times; its
epoch is extrapolated: the steps an epoch has x the median CPU seconds a step, plus the
measured per-epoch passes (the plain loop's validation; the shrinker's recalibration and
validation). Times are CPU seconds of the process (one thread: what a worker costs), wall
beside them. Besides fp32, bf16 peak: AMX-BF16 (1,024 flops a cycle a core: one 16x16x32
TDPBF16PS every 16 cycles) and AVX512-BF16 (VDPBF16PS: 32 multiply-accumulates a 512-bit
instruction, 2 a cycle), at the clock /proc/cpuinfo reports: approximate, as AMX runs at a
lower licence clock and a VM may not report the turbo clock. ``--variants`` times, the same
way, the changes tried on search/train.py's loop (layout, optimizer, zeroing, validation
batch, malloc) against the current code. Results are merged into the JSON under ``cifar10``.

    python benchmarks/proxy_train.py [--reps 3] [--data DIR] [--bf16]
    python benchmarks/proxy_train.py --data cifar10 [--batch 128] [--steps 12] [--reps 3] [--variants]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

from hostinfo import cpu_flags

ROOT = Path(__file__).resolve().parent.parent
PENN = ROOT.parent / "shared" / "data" / "penn_proxy"
CIFAR = ROOT.parent / "shared" / "data" / "cifar10" / "proxy.npz"
RESULTS = ROOT / "benchmarks" / "results" / "proxy_train.json"


def core_peak_gflops() -> tuple[float, str]:
    """One core's fp32 peak: FMA lanes (8 with AVX2, 16 with AVX-512) x 2 units x 2 flops x
    the clock /proc/cpuinfo reports."""
    flags, mhz = "", 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = line
            elif line.startswith("cpu MHz") and not mhz:
                mhz = float(line.split(":")[1])
    except OSError:
        pass
    lanes = 16 if " avx512f" in flags else 8 if " avx2" in flags else 4
    ghz = mhz / 1000 or 2.0
    return lanes * 2 * 2 * ghz, f"{lanes} fp32 lanes x 2 FMA units x 2 flops x {ghz:.2f} GHz"


def core_bf16_peak_gflops() -> dict:
    """One core's bf16 peaks (approximate; see the module's docstring): AMX-BF16 and
    AVX512-BF16 at the clock /proc/cpuinfo reports, 0 where the CPU lacks the instructions."""
    flags = cpu_flags().get("flags", {})
    fp32, _ = core_peak_gflops()
    ghz = fp32 / (16 * 2 * 2) if flags.get("avx512f") else fp32 / (8 * 2 * 2)
    amx = 1024 * ghz if flags.get("amx_bf16") else 0.0
    avx = 128 * ghz if flags.get("avx512_bf16") else 0.0
    return {"amx_bf16": amx, "avx512_bf16": avx,
            "how": f"AMX: 16x16x32 bf16 MACs per TDPBF16PS, one per 16 cycles = 1024 flops/cycle; "
                   f"AVX512-BF16: 2 VDPBF16PS x 32 MACs x 2 flops = 128 flops/cycle; "
                   f"x {ghz:.2f} GHz (approximate)"}


def _cnn(spec: str):
    from shrinkc.compiler.pipeline import build_graph, check
    from shrinkc.data import images

    checked = check(ROOT / spec)
    graph = build_graph(checked, "Proxy")
    data = images.load(None, tuple(graph.input_shape.as_list()))
    return checked, graph, data


def plain_cnn_epoch(graph, data, lr: float, batch: int) -> float:
    """One epoch and a validation pass of a plain fp32 NCHW loop; seconds."""
    import torch
    import torch.nn.functional as F

    from shrinkc.search.train import build_module

    torch.manual_seed(0)
    model = build_module(graph)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    xv = torch.from_numpy(data.x_val)
    start = time.perf_counter()
    model.train()
    perm = torch.randperm(len(x))
    for i in range(0, len(x), batch):
        idx = perm[i:i + batch]
        if len(idx) < 2:
            continue
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        for i in range(0, len(xv), 512):
            model(xv[i:i + 512])
    return time.perf_counter() - start


def plain_lm_epoch(graph, corpus, lr: float, batch: int, bptt: int, clip: float) -> float:
    """One epoch of truncated BPTT and a validation pass, plain fp32; seconds."""
    import torch
    import torch.nn.functional as F

    from shrinkc.search.train import build_module

    torch.manual_seed(0)
    model = build_module(graph)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    ids = torch.from_numpy(corpus.train)
    cols = len(ids) // batch
    data = ids[: batch * cols].view(batch, cols)
    valid = torch.from_numpy(corpus.valid)
    valid = valid[: 10 * (len(valid) // 10)].view(10, -1)
    start = time.perf_counter()
    model.train()
    hidden = None
    for i in range(0, data.size(1) - 1, bptt):
        n = min(bptt, data.size(1) - 1 - i)
        logits, hidden = model(data[:, i:i + n], hidden)
        hidden = hidden.detach()
        loss = F.cross_entropy(logits.reshape(-1, corpus.size), data[:, i + 1:i + 1 + n].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
    model.eval()
    with torch.no_grad():
        hidden = None
        for i in range(0, valid.size(1) - 1, bptt):
            _, hidden = model(valid[:, i:i + min(bptt, valid.size(1) - 1 - i)], hidden)
    return time.perf_counter() - start


def shrinker_epoch(spec: str, checked, network: str, overrides: dict, data: str | None,
                   lm: bool, precision: str) -> float:
    """The seconds the shrinker logs for a one-epoch candidate (the complete DAG)."""
    from shrinkc.compiler import ir
    from shrinkc.search import rules
    from shrinkc.search.job import make_job
    from shrinkc.search.settings import settings as read_settings
    from shrinkc.search.train import evaluate

    parsed = checked.sources.main
    space = next(i for i in parsed.items if isinstance(i, ir.SpaceDef))
    search = next(i for i in checked.program.items if isinstance(i, ir.SearchDef))
    settings = read_settings(search, {"epochs": 1}, lm=lm)
    job = make_job(path=spec, program=parsed, space=space.name, edges=rules.live_edges(space),
                   network=network, overrides=overrides, train=settings.train, data=data,
                   seed=0, threads=1, precision=precision)
    return float(evaluate(job)["seconds"])


def _cifar_data(path: Path, shape):
    from shrinkc.data.images import load_npz

    return load_npz(path, shape)


def _subset(data, n: int):
    """The first ``n`` training images (and all validation images) of ``data``."""
    import types

    return types.SimpleNamespace(x_train=data.x_train[:n], y_train=data.y_train[:n],
                                 x_val=data.x_val, y_val=data.y_val)


def _clock():
    return time.process_time(), time.perf_counter()


def _since(t0) -> tuple[float, float]:
    c, w = _clock()
    return c - t0[0], w - t0[1]


def plain_cnn_steps(graph, data, lr: float, batch: int, steps: int) -> dict:
    """``steps`` steps of the plain fp32 NCHW loop and its validation pass (batch 512)."""
    import torch
    import torch.nn.functional as F

    from shrinkc.search.train import build_module

    torch.manual_seed(0)
    model = build_module(graph)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    xv = torch.from_numpy(data.x_val)
    perm = torch.randperm(len(x))
    model.train()
    t0 = _clock()
    for i in range(steps):
        idx = perm[i * batch:(i + 1) * batch]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    step = _since(t0)
    model.eval()
    t0 = _clock()
    with torch.no_grad():
        for i in range(0, len(xv), 512):
            model(xv[i:i + 512])
    return {"steps": step, "per_epoch": _since(t0)}


def shrinker_steps(graph, data, settings: dict, steps: int, precision: str) -> dict:
    """search.train.train for one epoch on ``steps`` batches of training images (at least
    512, so recalibration is whole) and the whole validation split; the per-epoch passes
    (recalibration and validation, the same functions) timed again on the trained model and
    subtracted, so that ``steps`` is the training steps alone."""
    import torch

    from shrinkc.search.table import TrainSettings
    from shrinkc.search.train import accuracy, build_module, recalibrate_bn, train

    batch = int(settings["batch"])
    torch.manual_seed(0)
    model = build_module(graph)
    sub = _subset(data, max(steps * batch, 512))
    t0 = _clock()
    _, _, curve, _ = train(model, sub, TrainSettings.of("image", **{**settings, "epochs": 1}), 0, precision)
    total = _since(t0)
    x = torch.from_numpy(sub.x_train).contiguous(memory_format=torch.channels_last)
    xv = torch.from_numpy(data.x_val).contiguous(memory_format=torch.channels_last)
    t0 = _clock()
    recalibrate_bn(model, x, batch, precision)
    accuracy(model, xv, torch.from_numpy(data.y_val), precision)
    fixed = _since(t0)
    n_steps = len(sub.x_train) // batch
    scale = steps / n_steps  # the steps of a subset larger than steps x batch (batch 32)
    return {"steps": tuple((t - f) * scale for t, f in zip(total, fixed)), "per_epoch": fixed,
            "curve": curve}


def _dense_cat_mode():
    """A torch-function mode under which torch.cat's backward hands each input a dense copy of
    its slice of the gradient (rather than a strided view): tried against bf16's slow
    accumulation of channel slices of a channels-last gradient (same values, bitwise)."""
    import torch
    from torch.overrides import TorchFunctionMode

    class Cat(torch.autograd.Function):
        @staticmethod
        def forward(ctx, dim, *tensors):
            ctx.dim, ctx.sizes = dim, [t.shape[dim] for t in tensors]
            return torch.cat(tensors, dim)

        @staticmethod
        def backward(ctx, grad):
            fmt = (torch.channels_last if grad.dim() == 4
                   and grad.is_contiguous(memory_format=torch.channels_last)
                   else torch.contiguous_format)
            return (None, *(p.clone(memory_format=fmt) for p in grad.split(ctx.sizes, ctx.dim)))

    class Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is torch.cat and torch.is_grad_enabled() and len(args[0]) > 1:
                dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
                return Cat.apply(dim % args[0][0].dim(), *args[0])
            return func(*args, **kwargs)

    return Mode()


def variant_steps(graph, data, batch: int, steps: int, precision: str = "bf16",
                  channels_last: bool = True, adam: dict | None = None,
                  set_to_none: bool = True, dense_cat: bool = False,
                  val_batch: int = 128) -> dict:
    """search.train.train's step (channels-last, autocast, Adam, zero_grad) with one thing
    changed; ``steps`` steps, then its per-epoch passes (recalibration, validation)."""
    import contextlib

    import torch
    import torch.nn.functional as F

    from shrinkc.search.train import _autocast, accuracy, build_module, recalibrate_bn

    torch.manual_seed(0)
    model = build_module(graph)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    xv = torch.from_numpy(data.x_val)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        xv = xv.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=0.004, **(adam or {}))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    mode = _dense_cat_mode() if dense_cat else contextlib.nullcontext()
    model.train()
    t0 = _clock()
    for i in range(steps):
        idx = perm[i * batch:(i + 1) * batch]
        with mode, _autocast(precision):
            loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=set_to_none)
        loss.backward()
        opt.step()
    step = _since(t0)
    t0 = _clock()
    recalibrate_bn(model, x, batch, precision)
    accuracy(model, xv, torch.from_numpy(data.y_val), precision, batch=val_batch)
    return {"steps": step, "per_epoch": _since(t0),
            "weights_sum": float(sum(p.detach().double().sum() for p in model.parameters()))}


def _variant_rows(graph, data, batch: int, steps: int) -> dict:
    def v(**kw):
        return lambda: variant_steps(graph, data, batch, steps, **kw)

    return {
        "current (bf16, CL, val 128)": v(),
        "val batch 512 (before)": v(val_batch=512),
        "NCHW": v(channels_last=False),
        "Adam foreach=True": v(adam={"foreach": True}),
        "Adam fused=True": v(adam={"fused": True}),
        "zero_grad(set_to_none=F)": v(set_to_none=False),
        "dense cat gradients": v(dense_cat=True),
        "fp32 (CL, val 128)": v(precision="fp32"),
        "fp32 val batch 512": v(precision="fp32", val_batch=512),
    }


def cifar_main(args) -> None:
    import torch

    torch.set_num_threads(1)
    from shrinkc.compiler.pipeline import build_graph, check
    from shrinkc.search.train import build_module

    spec = "specs/shrinkcnn_space.shrink"
    t0 = _clock()
    graph = build_graph(check(ROOT / spec), "Proxy")
    build_module(graph)
    build = _since(t0)
    data = _cifar_data(Path(args.cifar), tuple(graph.input_shape.as_list()))
    batch, steps = args.batch, args.steps
    settings = {"optimizer": "adam", "lr": 0.004, "weight_decay": 0.0, "momentum": 0.9,
                "batch": batch, "epochs": 1, "patience": 3, "schedule": "constant"}
    rows = {
        "plain fp32 loop (NCHW)": lambda: plain_cnn_steps(graph, data, 0.004, batch, steps),
        "shrinker train() fp32": lambda: shrinker_steps(graph, data, settings, steps, "fp32"),
        "shrinker train() bf16": lambda: shrinker_steps(graph, data, settings, steps, "bf16"),
    }
    if args.variants:
        rows = _variant_rows(graph, data, batch, steps)
    runs: dict[str, list[dict]] = {k: [] for k in rows}
    for rep in range(args.reps):
        order = list(rows) if rep % 2 == 0 else list(rows)[::-1]
        for name in order:
            runs[name].append(rows[name]())
            r = runs[name][-1]
            print(f"  rep {rep + 1}: {name}: {r['steps'][0] / steps * 1000:.0f} ms CPU a step, "
                  f"per-epoch passes {r['per_epoch'][0]:.2f} s", flush=True)
    _cifar_report(runs, args, graph, data, build)


def _cifar_report(runs, args, graph, data, build) -> None:
    import torch

    batch, steps = args.batch, args.steps
    n_train, n_val = len(data.x_train), len(data.x_val)
    epoch_steps = sum(1 for i in range(0, n_train, batch) if min(n_train, i + batch) - i >= 2)
    flops = 2 * graph.cost.macs * (3 * n_train + n_val)  # useful work of an epoch
    fp32_peak, how = core_peak_gflops()
    bf16 = core_bf16_peak_gflops()
    load = os.getloadavg()
    print(f"\nCIFAR-10 proxy ({n_train} + {n_val} images at 32x32), complete DAG "
          f"({graph.cost.macs / 1e6:.1f}M MACs an image), batch {batch}, 1 thread; "
          f"{'variants: ' if args.variants else ''}{steps} steps a row, median of {args.reps}, "
          f"interleaved; epoch = {epoch_steps} steps x median step + per-epoch passes "
          f"(extrapolated)")
    print(f"{cpu_flags().get('model')}, torch {torch.__version__}, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"peaks of one core: fp32 {fp32_peak:.0f} GFLOP/s ({how}); bf16 AMX "
          f"{bf16['amx_bf16']:.0f}, AVX512-BF16 {bf16['avx512_bf16']:.0f} GFLOP/s (approximate)")
    print(f"spec compile + module build (per candidate): {build[0]:.2f} s CPU\n")
    head = (f"{'row':<26} {'ms/step':>8} {'wall':>7} {'passes s':>8} {'s/epoch':>8} "
            f"{'ratio':>6} {'GFLOP/s':>8} {'fp32pk':>7} {'bf16pk':>7} reps")
    print(head)
    print("-" * len(head))
    out, base = {}, None
    for name, rs in runs.items():
        step = statistics.median(r["steps"][0] for r in rs) / steps
        wall = statistics.median(r["steps"][1] for r in rs) / steps
        fixed = statistics.median(r["per_epoch"][0] for r in rs)
        epoch = epoch_steps * step + fixed
        base = base or epoch
        gflops = flops / epoch / 1e9
        out[name] = {"step_cpu_s": [r["steps"][0] / steps for r in rs],
                     "step_wall_s": [r["steps"][1] / steps for r in rs],
                     "per_epoch_passes_cpu_s": [r["per_epoch"][0] for r in rs],
                     "median_step_cpu_s": step, "median_step_wall_s": wall,
                     "epoch_cpu_s_extrapolated": epoch, "ratio_to_first_row": epoch / base,
                     "gflops": gflops, "fraction_of_fp32_peak": gflops / fp32_peak,
                     "fraction_of_amx_bf16_peak": gflops / bf16["amx_bf16"] if bf16["amx_bf16"] else None,
                     "curves": [r.get("curve") for r in rs],
                     "weights_sums": [r.get("weights_sum") for r in rs]}
        same = [r.get("curve", r.get("weights_sum")) for r in rs]
        out[name]["same_result_every_rep"] = (all(v == same[0] for v in same)
                                              if same[0] is not None else None)
        bf = f"{gflops / bf16['amx_bf16']:>6.1%}" if bf16["amx_bf16"] else "     -"
        print(f"{name:<26} {step * 1000:>8.0f} {wall * 1000:>7.0f} {fixed:>8.2f} {epoch:>8.1f} "
              f"{epoch / base:>5.2f}x {gflops:>8.1f} {gflops / fp32_peak:>6.1%} {bf} "
              f"{ {True: 'same', False: 'DIFFERS', None: '-'}[out[name]['same_result_every_rep']]}")
    key = f"{'variants' if args.variants else 'rows'}_batch_{batch}"
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    old.setdefault("cifar10", {})[key] = {
        "data": str(args.cifar), "batch": batch, "steps": steps, "reps": args.reps,
        "epoch_steps": epoch_steps, "extrapolated": True, "times": "process CPU seconds",
        "flops_per_epoch": flops, "macs_per_image": graph.cost.macs,
        "build_cpu_s": build[0], "peak_fp32_gflops": fp32_peak, "peak_fp32": how,
        "peak_bf16": bf16, "rows": out, "cpu": cpu_flags(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
        "load_average_end": list(load), "nice": os.nice(0),
    }
    RESULTS.write_text(json.dumps(old, indent=2) + "\n")
    print(f"raw results: {RESULTS.relative_to(ROOT)} (cifar10.{key})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--data", help="RNN corpus folder (default: ../shared/data/penn_proxy), or "
                    "cifar10: the CIFAR-10 proxy's CNN rows instead")
    ap.add_argument("--cifar", default=str(CIFAR), help="the CIFAR proxy .npz (--data cifar10)")
    ap.add_argument("--batch", type=int, default=128, help="--data cifar10: batch size")
    ap.add_argument("--steps", type=int, default=12, help="--data cifar10: steps a row")
    ap.add_argument("--variants", action="store_true",
                    help="--data cifar10: time the changes tried on search/train.py instead")
    ap.add_argument("--bf16", action="store_true",
                    help="add the shrinker in bf16 autocast (fast only with native bf16)")
    args = ap.parse_args()
    if args.data == "cifar10":
        cifar_main(args)
        return

    import torch

    torch.set_num_threads(1)
    from shrinkc.compiler.pipeline import build_graph, check
    from shrinkc.data import corpus as corpora

    cnn_spec, rnn_spec = "specs/shrinkcnn_space.shrink", "specs/shrinkrnn_space.shrink"
    cnn_checked, cnn_graph, images = _cnn(cnn_spec)
    rnn_data = args.data or (str(PENN) if PENN.is_dir() else None)
    corpus = corpora.load(rnn_data)
    rnn_checked = check(ROOT / rnn_spec)
    rnn_graph = build_graph(rnn_checked, "ProxyLM", {"vocab": corpus.size})

    from shrinkc.search.settings import resolve_precision

    default = resolve_precision("auto")  # for the CNN; an RNN search takes fp32 on CPUs
    precisions = ["fp32", "bf16"] if args.bf16 or default == "bf16" else ["fp32"]
    rows = {
        "CNN plain fp32 loop": lambda: plain_cnn_epoch(cnn_graph, images, 0.004, 128),
        **{f"CNN shrinker ({p})": (lambda p=p: shrinker_epoch(
            cnn_spec, cnn_checked, "Proxy", {}, None, False, p)) for p in precisions},
        "RNN plain fp32 loop": lambda: plain_lm_epoch(rnn_graph, corpus, 20.0, 128, 35, 0.25),
        **{f"RNN shrinker ({p})": (lambda p=p: shrinker_epoch(
            rnn_spec, rnn_checked, "ProxyLM", {"vocab": corpus.size}, rnn_data, True, p))
           for p in precisions},
    }
    times: dict[str, list[float]] = {k: [] for k in rows}
    for rep in range(args.reps):
        order = list(rows) if rep % 2 == 0 else list(rows)[::-1]
        for name in order:
            times[name].append(rows[name]())
            print(f"  rep {rep + 1}: {name}: {times[name][-1]:.2f} s", flush=True)

    _report(times, args.reps, cnn_graph, rnn_graph, images, corpus, rnn_data, default)


def _report(times: dict[str, list[float]], reps: int, cnn_graph, rnn_graph, images, corpus,
            rnn_data: str | None, default: str) -> None:
    """The table (medians, ratio to the plain loop, GFLOP/s, fraction of peak) and the JSON."""
    import torch

    n_train, n_val = len(images.x_train), len(images.x_val)
    tokens = len(corpus.train) + len(corpus.valid)
    flops = {  # per epoch: training images 3x the forward, validation 1x
        "CNN": 2 * cnn_graph.cost.macs * (3 * n_train + n_val),
        "RNN": 2 * rnn_graph.cost.macs * (3 * len(corpus.train) + len(corpus.valid)),
    }
    peak, how = core_peak_gflops()
    print(f"\nProxy training, one epoch, 1 thread, median of {reps} "
          f"({platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}; load average "
          f"{os.getloadavg()[0]:.2f})")
    print(f"CNN: {n_train} + {n_val} digits at 32x32, {cnn_graph.cost.macs / 1e6:.1f}M MACs per "
          f"image; RNN: {tokens:,} tokens, {rnn_graph.cost.macs / 1e6:.2f}M MACs per token")
    print(f"peak of one core: {peak:.0f} GFLOP/s ({how})\n")
    head = f"{'row':<24} {'s/epoch':>8} {'vs plain':>9} {'GFLOP/s':>8} {'of peak':>8}"
    print(head)
    print("-" * len(head))
    out = {}
    for name, ts in times.items():
        kind = name[:3]
        med = statistics.median(ts)
        plain = statistics.median(times[f"{kind} plain fp32 loop"])
        gflops = flops[kind] / med / 1e9
        out[name] = {"seconds": ts, "median": med, "ratio_to_plain": med / plain,
                     "gflops": gflops, "fraction_of_peak": gflops / peak}
        print(f"{name:<24} {med:>8.2f} {med / plain:>8.2f}x {gflops:>8.1f} "
              f"{gflops / peak:>7.1%}")
    ratio = out[f"CNN shrinker ({default})"]["ratio_to_plain"]
    print(f"\nCNN: the shrinker's epoch with default settings (--precision auto = {default} "
          f"here; compile and build included) is {ratio:.2f}x the plain loop's: "
          f"{'meets' if ratio <= 0.5 else 'MISSES'} the target of <= 0.5x")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "reps": reps, "peak_gflops": peak, "peak": how, "rows": out,
        "default_precision": default, "target_ratio": ratio, "cpu": cpu_flags(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__, "load_average_end": os.getloadavg()[0],
        "rnn_data": rnn_data or "generated corpus", "flops_per_epoch": flops,
        "finite": all(math.isfinite(r["median"]) for r in out.values()),
    }, indent=2) + "\n")
    print(f"raw results: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
