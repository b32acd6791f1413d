"""The ONNX graph with the weights a user deploys (issue 25, "First, our own graph").

onnxruntime runs our graph and ``torch.onnx.export(dynamo=True)``'s with the same fusions and
node counts; what a checkpoint's values can change is speed, through subnormal floats: a
multiply that reads or yields one takes a microcode assist on x86, and onnxruntime leaves
flush-to-zero off. Batch-norm terms that decayed into the subnormal range (channels that
stopped varying) made both graphs of ShrinkCNN-A about 30 times slower. The backend flushes
them: no initializer it writes holds a subnormal value, and the outputs do not move (to 1e-6
against the unflushed graph, to 1e-5 against PyTorch, which keeps them).
``benchmarks/onnx_trained_weights.py`` has the timings.
"""

from __future__ import annotations

from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
np = pytest.importorskip("numpy")

from onnx import helper, numpy_helper

from shrinkc.backends.onnx import cnn
from shrinkc.backends.onnx.checkpoint import random_weights
from shrinkc.backends.onnx.common import flush_subnormals, serialize
from shrinkc.cli import main
from shrinkc.compiler import compile_file

from conftest import ROOT, TEST_SPECS, generate_module

TINY = np.finfo(np.float32).tiny
SHRINKCNN_A = ROOT / "specs" / "shrinkcnn_a.shrink"
SPECS = [SHRINKCNN_A, TEST_SPECS / "tiny.shrink"]
IDS = [p.stem for p in SPECS]


def _subnormals(arrays) -> int:
    return sum(int(((a != 0) & (np.abs(a) < TINY)).sum()) for a in arrays
               if a.dtype == np.float32)


def _decay(state: dict, seed: int = 0) -> dict:
    """``state`` with a tenth of every batch norm's channels (at least one) decayed: all four
    terms multiplied by 0.9**n, n in [800, 900), into and through the subnormal range, as a
    channel that stopped firing leaves them after a long training run."""
    out = dict(state)
    rng = np.random.default_rng(seed)
    for name in state:
        if not name.endswith(".bn.running_var"):
            continue
        bn = name[: -len("running_var")]
        dead = rng.random(state[name].shape[0]) < 0.1
        dead[rng.integers(dead.size)] = True
        decay = 0.9 ** rng.integers(800, 900, int(dead.sum())).astype(np.float64)
        for t in ("weight", "bias", "running_mean", "running_var"):
            a = np.array(state[bn + t], np.float32)
            a[dead] = (a[dead].astype(np.float64) * decay).astype(np.float32)
            out[bn + t] = a
    return out


def _outputs(model: bytes, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    s = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def _rel_err(got, ref) -> float:
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


# --------------------------------------------------------------------------- the flush


def test_flush_subnormals_zeroes_subnormals_only_and_copies_only_when_it_must():
    a = np.array([1.0, -2.5e-3, 0.0, -0.0, TINY, -TINY, 1e-40, -3e-45, 2e-39], np.float32)
    assert _subnormals([a]) == 3
    got = flush_subnormals(a)
    assert got is not a and got.dtype == np.float32
    assert got.tolist() == [1.0, np.float32(-2.5e-3), 0.0, 0.0, TINY, -TINY, 0.0, 0.0, 0.0]
    assert _subnormals([a]) == 3  # the caller's array (a checkpoint's tensor) is left alone
    clean = np.array([1.0, 0.0, TINY, -7.0], np.float32)
    assert flush_subnormals(clean) is clean


@pytest.mark.parametrize("fold_bn", [True, False], ids=["folded", "kept"])
@pytest.mark.parametrize("functions", [False, True], ids=["flat", "functions"])
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_no_initializer_holds_a_subnormal_value(spec, fold_bn, functions):
    """Decayed batch-norm channels put subnormal values in the checkpoint; folded (scale and
    shift products) or kept, none reaches the model."""
    graph = compile_file(spec)
    weights = _decay(random_weights(graph))
    assert _subnormals(weights.values()) > 0
    model = cnn.generate_cnn(graph, weights, fold_bn=fold_bn, functions=functions)
    inits = [numpy_helper.to_array(i) for i in model.graph.initializer]
    assert _subnormals(inits) == 0
    assert _subnormals(weights.values()) > 0  # the caller's weights are not flushed in place


def test_a_language_models_initializers_hold_no_subnormal_value():
    """The language-model backend flushes too: a tenth of each weight matrix's values pushed
    into the subnormal range reach no initializer, and the rest are the checkpoint's."""
    from shrinkc.backends.onnx import generate

    graph = compile_file(TEST_SPECS / "tiny_rnn_space.shrink")  # TinyLM
    weights = random_weights(graph)
    rng = np.random.default_rng(0)
    decayed = {}
    for name, a in weights.items():
        b = a.copy()
        hit = rng.random(b.shape) < 0.1
        b[hit] = (b[hit] * TINY / 4).astype(np.float32)
        decayed[name] = b
    assert _subnormals(decayed.values()) > 0
    inits = {i.name: numpy_helper.to_array(i) for i in generate(graph, decayed).graph.initializer}
    assert _subnormals(inits.values()) == 0
    for name, a in inits.items():
        if name in decayed:
            keep = ~((decayed[name] != 0) & (np.abs(decayed[name]) < TINY))
            assert np.array_equal(a[keep], decayed[name][keep]) and not a[~keep].any()


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_flushing_moves_no_output(spec, monkeypatch):
    """The flushed graph's outputs against the graph with every subnormal kept (the backend as
    it was): equal to 1e-6."""
    graph = compile_file(spec)
    weights = _decay(random_weights(graph), seed=1)
    flushed = serialize(cnn.generate_cnn(graph, weights))
    monkeypatch.setattr(cnn, "flush_subnormals", lambda a: a)
    kept = serialize(cnn.generate_cnn(graph, weights))
    assert flushed != kept
    x = np.random.default_rng(2).standard_normal([3, *graph.input_shape.as_list()])
    x = x.astype(np.float32)
    assert _rel_err(_outputs(flushed, x), _outputs(kept, x)) <= 1e-6


def test_shipped_specs_with_random_weights_are_written_as_before(monkeypatch):
    """Random weights hold no subnormal: the flush leaves ShrinkCNN-A's bytes as they were."""
    graph = compile_file(SHRINKCNN_A)
    now = serialize(cnn.generate_cnn(graph))
    monkeypatch.setattr(cnn, "flush_subnormals", lambda a: a)
    assert serialize(cnn.generate_cnn(graph)) == now


# --------------------------------------------------------------------------- against PyTorch


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _trained_module(torch, spec: Path, out: Path, decayed: bool):
    """The generated module with trained-like weights (every parameter random at its layer's
    scale; batch-norm statistics and affine terms random) and, with ``decayed``, a tenth of
    the batch-norm channels decayed into the subnormal range; its state_dict saved."""
    graph, module, _ = generate_module(spec, out)
    torch.manual_seed(sum(map(ord, spec.stem)))
    model = module.build().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * (2.0 / max(1, p[0].numel())) ** 0.5
                    if p.dim() > 1 else torch.randn_like(p) * 0.1)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.3, 2.0)
        if decayed:
            state = {k: v.numpy() for k, v in model.state_dict().items()
                     if v.is_floating_point()}
            model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v))
                                   for k, v in _decay(state).items()}, strict=False)
    weights = out / "w.pt"
    torch.save(model.state_dict(), weights)
    return graph, model, weights


@pytest.mark.parametrize("decayed", [False, True], ids=["trained", "decayed"])
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_onnxruntime_matches_pytorch_with_trained_like_weights(spec, decayed, torch, tmp_path):
    graph, model, weights = _trained_module(torch, spec, tmp_path, decayed)
    if decayed:
        assert _subnormals(v.numpy() for v in model.state_dict().values()
                           if v.is_floating_point()) > 0
    out = tmp_path / "onnx"
    assert main(["compile", str(spec), "--target", "onnx", "--weights", str(weights),
                 "-o", str(out)]) == 0
    path = out / f"{spec.stem}.onnx"
    assert _subnormals(numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer) == 0
    x = torch.randn(2, *graph.input_shape.as_list(), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = model(x).numpy()
    got = _outputs(path.read_bytes(), x.numpy())
    assert got.shape == ref.shape
    assert _rel_err(got, ref) <= 1e-5
    assert float(np.abs(got - ref).max()) <= 1e-5 * float(np.abs(ref).max())


# --------------------------------------------------------------------------- the exporter


def _extended(path: Path, out: Path):
    """The graph after onnxruntime's hardware-independent optimisations (ORT_ENABLE_EXTENDED:
    batch norm folding, Conv + activation fusion); the NCHWc layout pass of ORT_ENABLE_ALL
    depends on the CPU and numbers its nodes differently in every session."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(out)
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return onnx.load(out)


def _convs(model) -> dict:
    """Convolutions by op, fused activation, bias, weight shape and the rest of their
    attributes (ONNX's defaults filled in)."""
    shapes = {i.name: tuple(i.dims) for i in model.graph.initializer}
    out: dict = {}
    for n in model.graph.node:
        if n.op_type in ("Conv", "FusedConv"):
            a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
            key = (n.op_type, (a.get("activation") or b"").decode() or None,
                   len(n.input) > 2 and bool(n.input[2]), shapes[n.input[1]],
                   a.get("group", 1), tuple(a.get("strides", [1, 1])),
                   tuple(a.get("pads", [0, 0, 0, 0])), tuple(a.get("dilations", [1, 1])),
                   a.get("auto_pad", b"NOTSET"))
            out[key] = out.get(key, 0) + 1
    return out


def _ops(model, head: set[str]) -> dict:
    """Nodes by op, but for those of the head in ``head``."""
    ops: dict = {}
    for n in model.graph.node:
        if n.op_type not in head:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return ops


@pytest.mark.slow
@pytest.mark.parametrize("decayed", [False, True], ids=["trained", "decayed"])
def test_onnxruntime_fuses_our_graph_as_the_exporters(decayed, torch, tmp_path):
    """ShrinkCNN-A with trained-like weights: after onnxruntime's optimisations our graph has
    the exporter's convolutions (fused activation, bias, kernel, group, stride) and its other
    nodes but for the head (our GlobalAveragePool + Flatten for its ReduceMean), and no
    subnormal value where the exporter's graph has them."""
    pytest.importorskip("onnxscript")
    _, model, weights = _trained_module(torch, SHRINKCNN_A, tmp_path, decayed)
    assert main(["compile", str(SHRINKCNN_A), "--target", "onnx", "--weights", str(weights),
                 "--input", "3x64x64", "-o", str(tmp_path / "ours")]) == 0
    theirs = tmp_path / "theirs.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 64, 64),), str(theirs), dynamo=True,
                      verbose=False)
    ours = _extended(tmp_path / "ours" / "shrinkcnn_a.onnx", tmp_path / "ours_x.onnx")
    exp = _extended(theirs, tmp_path / "theirs_x.onnx")
    assert _convs(ours) == _convs(exp)
    assert _ops(ours, {"GlobalAveragePool", "Flatten"}) == _ops(exp, {"ReduceMean"})
    assert not {"BatchNormalization", "Relu"} & set(_ops(ours, set()))
    sub_ours = _subnormals(numpy_helper.to_array(i) for i in ours.graph.initializer)
    sub_exp = _subnormals(numpy_helper.to_array(i) for i in exp.graph.initializer)
    assert sub_ours == 0
    if decayed:
        assert sub_exp > 0  # what the exporter writes: each costs an assist per multiply
