"""The mobile zoo (``specs/zoo/``, issue 12) against torchvision's architectures, as written
in plain PyTorch in zoo_references.py (nothing there comes from shrinkc). For every spec:

* its parameter count equals torchvision's published one (``num_params`` of its weights), in
  ``stats --json``, in the compiled graph and in the generated module; its multiply-adds at
  224x224 equal torchvision's published GFLOPS to their rounding (DARTS aside);
* the generated module's ``state_dict`` holds the reference's tensors, shape by shape, in the
  order its layers run, and every batch norm has the reference's eps and momentum;
* with the generated module's weights copied into the reference by position, both compute the
  same output (eval mode), and onnxruntime computes it too (batch 1), also from one ONNX file
  at another input size;
* torch.fx traces the generated module, and it trains;

and EfficientNet's stochastic depth is torchvision's.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from shrinkc.backends import onnx as onnx_backend
from shrinkc.cli import main
from shrinkc.compiler import compile_file

from conftest import ROOT, ZOO_SPECS, generate_module
from zoo_references import NAMES, ZOO_REFERENCES, Residual, _sizes

torch = pytest.importorskip("torch")
fx = pytest.importorskip("torch.fx")
ort = pytest.importorskip("onnxruntime")
nn = torch.nn
F = torch.nn.functional


ZOO = ROOT / "specs" / "zoo"  # conftest.ZOO_SPECS


def test_every_zoo_spec_has_a_reference():
    assert [p.stem for p in ZOO_SPECS] == NAMES


# --------------------------------------------------------------------------- the checks


def _randomize(model) -> None:
    """Seeded random weights and batch-norm statistics, so that equal outputs mean something."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn_like(p) * (2.0 / p[0].numel()) ** 0.5)
            else:
                p.copy_(torch.randn_like(p) * 0.1)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 2.0)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """spec name -> (graph, generated model with random weights, reference with the same)."""
    cache: dict = {}

    def get(name):
        if name not in cache:
            out = tmp_path_factory.mktemp(name)
            graph, module, _ = generate_module(ZOO / f"{name}.shrink", out, f"zoo_{name}")
            model = module.build().eval()
            _randomize(model)
            ref = ZOO_REFERENCES[name][1]().eval()
            ref.load_state_dict(dict(zip(ref.state_dict(), model.state_dict().values())))
            cache[name] = graph, model, ref
        return cache[name]

    return get


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_parameters_equal_torchvision(name, built, capsys):
    expected = ZOO_REFERENCES[name][0]
    assert main(["stats", str(ZOO / f"{name}.shrink"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == expected
    graph, model, ref = built(name)
    assert graph.cost.params == _count(model) == _count(ref) == expected


# spec -> torchvision's published cost at 224x224, in billions of multiply-adds: the "GFLOPS"
# of each weight's documentation page (pytorch.org/vision/stable/models/generated/
# torchvision.models.NAME.html; torchvision counts a multiply-add once, so its GFLOPS are
# GMACs), rounded to 2 decimals there, and the weights' metadata they are printed from
# (``"_ops"`` in torchvision/models/NAME.py, 3 decimals). DARTS is not torchvision's.
TORCHVISION_GMACS = {
    "resnet18": (1.81, 1.814),
    "resnet50": (4.09, 4.089),
    "mobilenet_v3_small": (0.06, 0.057),
    "mobilenet_v3_large": (0.22, 0.217),
    "efficientnet_b0": (0.39, 0.386),
    "mnasnet1_0": (0.31, 0.314),
    "squeezenet1_1": (0.35, 0.349),
    "shufflenet_v2_x1_0": (0.14, 0.145),
}


def test_every_torchvision_network_has_published_macs():
    assert sorted(TORCHVISION_GMACS) == [n for n in NAMES if n != "darts_v2_cifar"]


@pytest.mark.parametrize("name", sorted(TORCHVISION_GMACS))
def test_macs_equal_torchvision(name, capsys):
    """The multiply-adds of ``stats`` (and of the compiled graph) at the spec's 224x224 agree
    with torchvision's published figure to its rounding, and with its metadata to 3 decimals."""
    docs, meta = TORCHVISION_GMACS[name]
    assert main(["stats", str(ZOO / f"{name}.shrink"), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    graph = compile_file(ZOO / f"{name}.shrink")
    assert graph.input_shape.as_list() == [3, 224, 224]
    assert stats["macs"] == graph.cost.macs
    gmacs = stats["macs"] / 1e9
    assert round(gmacs, 2) == docs, f"{gmacs:.4f} GMACs; torchvision's documentation: {docs}"
    assert round(gmacs, 3) == meta, f"{gmacs:.4f} GMACs; torchvision's metadata: {meta}"


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_holds_torchvisions_tensors_in_order(name, built):
    _, model, _ = built(name)
    ref = ZOO_REFERENCES[name][1]()  # fresh: the shapes of its own construction
    assert [tuple(t.shape) for t in model.state_dict().values()] == \
        [tuple(t.shape) for t in ref.state_dict().values()]
    norms = [(m.eps, m.momentum) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms == [(m.eps, m.momentum) for m in ref.modules() if isinstance(m, nn.BatchNorm2d)]


@pytest.mark.parametrize("name", NAMES)
def test_same_function_as_the_reference_and_onnxruntime(name, built):
    graph, model, ref = built(name)
    torch.manual_seed(1)
    x = torch.randn(1, 3, *[_sizes(name)[0]] * 2)
    with torch.no_grad():
        got, want = model(x).numpy(), ref(x).numpy()
    scale = float(np.abs(want).max())
    assert scale > 0
    assert float(np.abs(got - want).max()) <= 1e-4 * scale
    weights = {k: v.numpy() for k, v in model.state_dict().items()
               if not k.endswith("num_batches_tracked")}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(
        onnx_backend.serialize(onnx_backend.generate(graph, weights)), opts,
        providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {graph.input_name: x.numpy()})
    assert float(np.abs(y - got).max()) <= 1e-4 * scale


@pytest.mark.parametrize("name", NAMES)
def test_one_onnx_file_for_any_size(name, built):
    """``--input 3xHxW``: the zoo's heads pool globally, so one graph takes 160x160 too."""
    graph, model, _ = built(name)
    weights = {k: v.numpy() for k, v in model.state_dict().items()
               if not k.endswith("num_batches_tracked")}
    sess = ort.InferenceSession(
        onnx_backend.serialize(onnx_backend.generate(graph, weights, dynamic_hw=True)),
        providers=["CPUExecutionProvider"])
    x = torch.randn(1, 3, *[_sizes(name)[1]] * 2)
    with torch.no_grad():
        want = model(x).numpy()
    (y,) = sess.run(None, {graph.input_name: x.numpy()})
    assert float(np.abs(y - want).max()) <= 1e-4 * float(np.abs(want).max())


@pytest.mark.parametrize("name", NAMES)
def test_fx_traces_and_trains(name, built):
    """torch.fx traces the generated module to the same function; and it trains (stochastic
    depth, channel shuffle and squeeze-excite included): six Adam steps on one fixed batch of
    four 32x32 images, each with a class of its own, bring the cross-entropy below where it
    began and below half of ln 4, the least that an output the same for every image can
    reach. Each image's class is the one its first output ranks highest among those not yet
    taken, so that no target starts behind a dead ReLU (SqueezeNet's logits are ReLU'd: with
    fixed classes one image's target logit can stay at 0, the loss then stalls near
    ln(1000) / 4)."""
    import copy
    import math

    from conftest import losses_on_one_batch

    model = copy.deepcopy(built(name)[1])  # training changes batch-norm statistics
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, *[min(96, _sizes(name)[0])] * 2, generator=gen)
    traced = fx.symbolic_trace(model)
    with torch.no_grad():
        assert torch.allclose(traced(x), model(x), rtol=1e-5, atol=1e-6)
    images = torch.randn(4, 3, 32, 32, generator=gen)
    with torch.no_grad():
        torch.manual_seed(0)  # the dropout masks that losses_on_one_batch draws
        first = model.train()(images)
    classes: list[int] = []
    for row in first:
        classes.append(next(c for c in row.argsort(descending=True).tolist() if c not in classes))
    labels = torch.tensor(classes)
    losses = losses_on_one_batch(model, lambda m: F.cross_entropy(m(images), labels),
                                 steps=6, lr=3e-3)
    assert all(p.grad is not None for p in model.parameters())
    shown = ", ".join(f"{v:.3f}" for v in losses)
    assert losses[-1] < losses[0], shown
    assert min(losses[1:]) < math.log(4) / 2, shown


def test_efficientnet_stochastic_depth_is_torchvisions(built):
    """torchvision's EfficientNet drops block i's residual branch with probability
    0.2 * i / 16 in training (blocks from 0, where the block adds its input)."""
    _, model, ref = built("efficientnet_b0")
    blocks = [b for stage in list(model.children())[1:8] for b in stage]
    assert len(blocks) == 16
    residual = [isinstance(m, Residual) and m.use_res
                for stage in ref.features[1:8] for m in stage]
    got = [b.drop_path.p if b.use_residual else None for b in blocks]
    want = [0.2 * i / 16 if r else None for i, r in enumerate(residual)]
    assert got == [pytest.approx(p, rel=1e-9) if p is not None else None for p in want]
    assert got.count(None) == 7
