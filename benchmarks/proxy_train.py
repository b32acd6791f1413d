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

    python benchmarks/proxy_train.py [--reps 3] [--data DIR] [--bf16]
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


def _cnn(spec: str):
    from shrinkc.compiler.pipeline import build_graph, check
    from shrinkc.search.data import images

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--data", help="RNN corpus folder (default: ../shared/data/penn_proxy)")
    ap.add_argument("--bf16", action="store_true",
                    help="add the shrinker in bf16 autocast (fast only with native bf16)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from shrinkc.compiler.pipeline import build_graph, check
    from shrinkc.search.data import corpus as corpora

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
