"""Our ONNX graph against torch.onnx.export(dynamo=True)'s, with the weights a user deploys.

Issue 25 reported ShrinkCNN-A's graph from ``shrinkc compile --target onnx`` 5 to 8% slower in
onnxruntime than the exporter's graph of the same module with trained-like weights (batch-norm
statistics and affine terms drawn at random), and at parity with fresh ones. For each set of
weights this benchmark builds both graphs from one state_dict (``shrinkc compile --weights
w.pt`` in a fresh process, and ``torch.onnx.export(model, (x,), dynamo=True)``) and compares:

structure
    the graphs onnxruntime runs (``ORT_ENABLE_ALL``, saved with
    ``SessionOptions.optimized_model_filepath``): node counts by op, convolutions by fused
    activation and bias, subnormal values in the initializers before and after optimisation,
    subnormal values among the activations (every intermediate tensor of the unoptimised
    graph, one input), how far each graph's folded convolution weights are from the batch-norm
    folding done in float64 (units in the last place), and how many distinct node orders
    onnxruntime chose for the sessions of one graph (its NCHWc layout pass numbers new nodes
    in a different order in each session, so each session runs the independent branches of a
    cell in its own order: one session per graph measures that order as much as the graph).
time
    one intra-op thread, batch 1, sequential execution; ``--sessions`` sessions per graph
    (each with its own node order), runs interleaved: in each round every session runs once,
    in an order that rotates and reverses from round to round. Each run's thread CPU time
    (``time.thread_time``: what a loaded machine disturbs least) and wall time. The ratio of
    a graph to the exporter's is the median over rounds and session pairs of the per-pair
    ratio; the table also gives the median milliseconds and the spread of the per-session
    medians.

Weights (each a state_dict of the generated PyTorch module, seed 0):
    fresh     the module as constructed (batch norm: weight 1, bias 0, mean 0, variance 1)
    trained   issue 25's trained-like weights, as ``benchmarks/onnx_export.py`` draws them:
              batch-norm weight U(0.5, 1.5), bias N(0, 0.1), running mean N(0, 0.1), running
              variance U(0.5, 2); convolutions as constructed
    decayed   ``trained``, then a tenth of every batch norm's channels with all four terms
              multiplied by 0.9**n, n from 800 to 899: channels that stopped firing, whose
              terms decayed geometrically into and through float32's subnormal range
              (below 2**-126): a synthetic stress case of what a long training run leaves
The graph ``shrinkc (no flush)`` is this checkout's backend with ``common.flush_subnormals``
replaced by the identity: the graph shrinkc wrote before subnormals were flushed.

    nice -n 10 python benchmarks/onnx_trained_weights.py [--sessions 6] [--rounds 60]
                                                          [--decayed-rounds 6] [--spec S]

Writes ``benchmarks/results/onnx_trained_weights.json`` (every run's times included). Needs
torch, onnx, onnxruntime and onnxscript.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from hostinfo import cpu_flags  # noqa: E402

TINY = np.finfo(np.float32).tiny
EXPORTER = "torch.onnx.export"
OURS = "shrinkc"
NO_FLUSH = "shrinkc (no flush)"


# --------------------------------------------------------------------------- weights, graphs


def module(spec: str, tmp: Path):
    """The generated PyTorch module class's builder (``shrinkc compile --target pytorch``)."""
    subprocess.run([sys.executable, "-m", "shrinkc", "compile", spec, "--target", "pytorch",
                    "-o", str(tmp)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    loader = importlib.util.spec_from_file_location("generated", tmp / f"{Path(spec).stem}.py")
    mod = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod.build


def weights(build, recipe: str):
    """The module with the weights of ``recipe`` (see the module's docstring), in eval mode."""
    import torch

    torch.manual_seed(0)
    model = build().eval()
    if recipe == "fresh":
        return model
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                if recipe == "decayed":
                    dead = torch.rand(m.weight.shape) < 0.1
                    decay = 0.9 ** torch.randint(800, 900, (int(dead.sum()),)).double()
                    for t in (m.weight, m.bias, m.running_mean, m.running_var):
                        t[dead] = (t[dead].double() * decay).float()
    return model


def build_graphs(spec: str, build, recipe: str, tmp: Path) -> tuple[dict[str, Path], dict]:
    """Our graph (a fresh ``shrinkc compile`` process), ours without the flush, and the
    exporter's, from one state_dict; and that state_dict."""
    import onnx
    import torch

    from shrinkc.backends.onnx import cnn
    from shrinkc.backends.onnx.checkpoint import load_weights
    from shrinkc.backends.onnx.common import serialize
    from shrinkc.compiler import compile_file

    model = weights(build, recipe)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    w = tmp / f"{recipe}.pt"
    torch.save(state, w)
    out = tmp / f"{recipe}_ours"
    subprocess.run([sys.executable, "-m", "shrinkc", "compile", spec, "--target", "onnx",
                    "--weights", str(w), "-o", str(out)], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    paths = {OURS: out / f"{Path(spec).stem}.onnx"}
    graph = compile_file(ROOT / spec)
    flush = cnn.flush_subnormals
    cnn.flush_subnormals = lambda a: a  # the backend as it was before the flush
    try:
        paths[NO_FLUSH] = tmp / f"{recipe}_noflush.onnx"
        paths[NO_FLUSH].write_bytes(serialize(cnn.generate_cnn(graph, load_weights(w, graph))))
    finally:
        cnn.flush_subnormals = flush
    theirs = tmp / f"{recipe}_exported" / "model.onnx"
    theirs.parent.mkdir()
    x = torch.randn(1, *graph.input_shape.as_list())
    torch.onnx.export(model, (x,), str(theirs), dynamo=True, verbose=False)
    m = onnx.load(theirs)  # one file, no external data, so sessions load alike
    theirs = tmp / f"{recipe}_exported.onnx"
    onnx.save(m, theirs)
    paths[EXPORTER] = theirs
    return paths, {k: v.numpy() for k, v in state.items() if v.is_floating_point()}


# --------------------------------------------------------------------------- structure


def subnormals(arrays) -> int:
    return sum(int(((a != 0) & (np.abs(a) < TINY)).sum()) for a in arrays
               if a.dtype == np.float32)


def initializers(path: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}


def optimised(path: Path, out: Path):
    """The graph onnxruntime runs (ORT_ENABLE_ALL, one thread)."""
    import onnx
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.optimized_model_filepath = str(out)
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return onnx.load(out)


def same_graph(a: Path, b: Path) -> bool:
    """Whether two models have the same nodes and initializers (metadata aside)."""
    import onnx

    ga, gb = onnx.load(a).graph, onnx.load(b).graph
    return (list(ga.node) == list(gb.node) and list(ga.initializer) == list(gb.initializer))


def structure(model) -> dict:
    """Node counts by op, and convolutions by fused activation and bias."""
    from onnx import helper

    ops: dict[str, int] = {}
    convs: dict[str, int] = {}
    for n in model.graph.node:
        key = f"{n.domain + ':' if n.domain else ''}{n.op_type}"
        ops[key] = ops.get(key, 0) + 1
        if n.op_type in ("Conv", "FusedConv"):
            a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
            act = a.get("activation", b"")
            act = act.decode() if isinstance(act, bytes) else str(act)
            bias = len(n.input) > 2 and bool(n.input[2])
            k = f"activation={act or 'none'} bias={'yes' if bias else 'no'}"
            convs[k] = convs.get(k, 0) + 1
    return {"nodes": len(model.graph.node), "ops": dict(sorted(ops.items())),
            "convs": dict(sorted(convs.items()))}


def activation_subnormals(path: Path, shape: list[int]) -> dict:
    """Subnormal values among every intermediate tensor of the unoptimised graph."""
    import onnx
    import onnxruntime as ort

    m = onnx.shape_inference.infer_shapes(onnx.load(path))
    have = {o.name for o in m.graph.output}
    m.graph.output.extend(v for v in m.graph.value_info if v.name not in have)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal([1, *shape]).astype(np.float32)
    outs = [o for o in s.run(None, {s.get_inputs()[0].name: x}) if o.dtype == np.float32]
    return {"subnormal": subnormals(outs), "values": int(sum(o.size for o in outs))}


def folding_ulps(inits: dict[str, np.ndarray], state: dict[str, np.ndarray]) -> dict:
    """Distance, in float32 units in the last place, of each folded convolution weight from
    the batch-norm folding computed in float64 and rounded once, where that is a normal float32
    computed from normal inputs (the exporter names a folded bias ``<weight>_bias``; we name it
    ``<conv>.bias``)."""
    ulps = []
    for name, w in inits.items():
        if not name.endswith(".weight") or w.ndim != 4:
            continue
        conv = name[: -len(".weight")]
        bn = conv.rsplit(".", 1)[0] + ".bn"
        if f"{bn}.running_var" not in state or conv.rsplit(".", 1)[-1] not in ("conv",
                                                                                "pointwise"):
            continue
        g, v = state[f"{bn}.weight"].astype(np.float64), state[f"{bn}.running_var"]
        ref = (state[name].astype(np.float64)
               * (g / np.sqrt(v.astype(np.float64) + 1e-5)).reshape(-1, 1, 1, 1))
        ref32 = ref.astype(np.float32)
        # where units in the last place mean something (a normal result) and the inputs are
        # not subnormal (which we read as zero, as the CPU's denormals-are-zero mode would)
        inputs_normal = ((np.abs(g) >= TINY) & ((v >= TINY) | (v == 0))).reshape(-1, 1, 1, 1)
        keep = ((np.abs(ref32) >= TINY) & inputs_normal
                & ~((state[name] != 0) & (np.abs(state[name]) < TINY)))
        ulps.append(np.abs(w.view(np.int32).astype(np.int64)
                           - ref32.view(np.int32).astype(np.int64))[keep])
    if not ulps:
        return {}
    u = np.concatenate(ulps)
    return {"weights": int(u.size), "exact": int((u == 0).sum()), "max_ulp": int(u.max()),
            "mean_ulp": float(u.mean())}


# --------------------------------------------------------------------------- time


def order_of(path: Path) -> str:
    import onnx

    return hashlib.sha256("|".join(n.name for n in onnx.load(path).graph.node)
                          .encode()).hexdigest()[:12]


def time_graphs(paths: dict[str, Path], shape: list[int], sessions: int, rounds: int,
                tmp: Path) -> dict:
    """Interleaved runs of ``sessions`` sessions per graph (see the module's docstring)."""
    import onnxruntime as ort

    labels = list(paths)
    sess, orders = {}, {}
    for k in range(sessions):  # created interleaved, each graph first in turn
        for lab in labels[k % len(labels):] + labels[:k % len(labels)]:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            saved = tmp / f"order_{labels.index(lab)}_{k}.onnx"
            opts.optimized_model_filepath = str(saved)
            sess[lab, k] = ort.InferenceSession(str(paths[lab]), opts,
                                                providers=["CPUExecutionProvider"])
            orders[lab, k] = order_of(saved)
            saved.unlink()
    x = np.random.default_rng(0).standard_normal([1, *shape]).astype(np.float32)
    feeds = {key: {s.get_inputs()[0].name: x} for key, s in sess.items()}
    for _ in range(3):
        for key, s in sess.items():
            s.run(None, feeds[key])
    cpu = {key: [] for key in sess}
    wall = {key: [] for key in sess}
    keys = list(sess)
    for r in range(rounds):
        shift = r % len(keys)
        order = keys[shift:] + keys[:shift]
        for key in (order if (r // len(keys)) % 2 == 0 else order[::-1]):
            t0, c0 = time.perf_counter(), time.thread_time()
            sess[key].run(None, feeds[key])
            cpu[key].append(time.thread_time() - c0)
            wall[key].append(time.perf_counter() - t0)
    out = {}
    for lab in labels:
        per = [statistics.median(cpu[lab, k]) * 1e3 for k in range(sessions)]
        row = {"cpu_ms": statistics.median(t * 1e3 for k in range(sessions)
                                           for t in cpu[lab, k]),
               "wall_ms": statistics.median(t * 1e3 for k in range(sessions)
                                            for t in wall[lab, k]),
               "session_cpu_ms": per, "orders": len({orders[lab, k] for k in range(sessions)}),
               "runs_cpu_s": [cpu[lab, k] for k in range(sessions)],
               "runs_wall_s": [wall[lab, k] for k in range(sessions)]}
        for what, t in (("cpu", cpu), ("wall", wall)):
            row[f"ratio_{what}"] = statistics.median(
                t[lab, k][i] / t[EXPORTER, k][i] for k in range(sessions) for i in range(rounds))
        out[lab] = row
    return out


# --------------------------------------------------------------------------- report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="specs/shrinkcnn_a.shrink")
    ap.add_argument("--recipes", default="fresh,trained,decayed")
    ap.add_argument("--sessions", type=int, default=6,
                    help="sessions per graph (a multiple of 3: each graph's session is created "
                         "first, second and third equally often)")
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--decayed-rounds", type=int, default=6,
                    help="rounds for 'decayed' (a run with subnormals takes ~0.4 s of CPU)")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" /
                                          "onnx_trained_weights.json"))
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    from shrinkc.compiler import compile_file

    ort.set_default_logger_severity(3)  # not the warning on saving an NCHWc graph, each time
    load0 = os.getloadavg()
    host = cpu_flags()
    shape = compile_file(ROOT / args.spec).input_shape.as_list()
    result = {"spec": args.spec, "cpu": host, "cpus": os.cpu_count(), "niceness": os.nice(0),
              "onnxruntime": ort.__version__, "torch": torch.__version__,
              "protocol": {"threads": 1, "batch": 1, "sessions_per_graph": args.sessions,
                           "rounds": args.rounds, "decayed_rounds": args.decayed_rounds,
                           "clock": "thread CPU time (time.thread_time) and wall"},
              "recipes": {}}
    print(f"{args.spec} in onnxruntime {ort.__version__}, torch {torch.__version__}: "
          f"{host.get('model')}, {os.cpu_count()} CPUs, AVX-512 "
          f"{'yes' if host.get('flags', {}).get('avx512f') else 'no'}, AMX "
          f"{'yes' if host.get('flags', {}).get('amx_tile') else 'no'}; load average "
          f"{load0[0]:.2f} at start; niceness {os.nice(0)}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        build = module(args.spec, tmp)
        for recipe in args.recipes.split(","):
            paths, state = build_graphs(args.spec, build, recipe, tmp)
            rec: dict = {"graphs": {}}
            for lab, p in paths.items():
                raw = initializers(p)
                opt = optimised(p, tmp / f"opt_{recipe}_{list(paths).index(lab)}.onnx")
                from onnx import numpy_helper

                rec["graphs"][lab] = {
                    "optimised": structure(opt),
                    "subnormal_initializer_values": subnormals(raw.values()),
                    "subnormal_optimised_initializer_values": subnormals(
                        numpy_helper.to_array(i) for i in opt.graph.initializer),
                    "activations": activation_subnormals(p, shape),
                    "folding": folding_ulps(
                        {k.replace(".weight_bias", ".bias"): v for k, v in raw.items()}, state)}
            rec["ours_same_as_no_flush"] = same_graph(paths[OURS], paths[NO_FLUSH])
            rounds = args.decayed_rounds if recipe == "decayed" else args.rounds
            t = time_graphs(paths, shape, args.sessions, rounds, tmp)
            for lab, row in t.items():
                rec["graphs"][lab]["time"] = row
            rec["load_average_after"] = os.getloadavg()
            result["recipes"][recipe] = rec
            report(recipe, rec, rounds, args.sessions)
    result["load_average"] = [load0, os.getloadavg()]
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.json}")


def report(recipe: str, rec: dict, rounds: int, sessions: int) -> None:
    g = rec["graphs"]
    print(f"\n== weights: {recipe}  ({sessions} sessions per graph x {rounds} rounds; load "
          f"average {rec['load_average_after'][0]:.2f} after)")
    print(f"  {'graph':<20} {'nodes':>5} {'fused conv act/bias':<34} {'subn. init':>10} "
          f"{'subn. act':>9} {'fold ulp max':>12} {'orders':>6} {'CPU ms':>7} {'wall ms':>8} "
          f"{'x exp. CPU':>10} {'x exp. wall':>11} {'session CPU ms':<24}")
    for lab, r in g.items():
        conv = ", ".join(f"{k.replace('activation=', '').replace(' bias=', '/')}:{v}"
                         for k, v in r["optimised"]["convs"].items())
        t = r["time"]
        sess = " ".join(f"{v:.1f}" for v in t["session_cpu_ms"])
        print(f"  {lab:<20} {r['optimised']['nodes']:>5} {conv:<34} "
              f"{r['subnormal_initializer_values']:>10} {r['activations']['subnormal']:>9} "
              f"{r['folding'].get('max_ulp', '-'):>12} {t['orders']:>6} {t['cpu_ms']:>7.2f} "
              f"{t['wall_ms']:>8.2f} {t['ratio_cpu']:>10.3f} {t['ratio_wall']:>11.3f} {sess:<24}")
    ours, theirs = g[OURS]["optimised"]["ops"], g[EXPORTER]["optimised"]["ops"]
    diff = {k: (ours.get(k, 0), theirs.get(k, 0)) for k in sorted(set(ours) | set(theirs))
            if ours.get(k, 0) != theirs.get(k, 0)}
    print(f"  optimised graphs differ only in: {diff or 'nothing'} (ours, exporter's)")
    if rec["ours_same_as_no_flush"]:
        print(f"  control: '{OURS}' and '{NO_FLUSH}' are the same graph (no subnormal to flush); "
              "their difference in time is this run's noise")


if __name__ == "__main__":
    main()
