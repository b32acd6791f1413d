"""Activations (``compiler/ops.py``'s ``ACTS``, added for the mobile zoo, issue 12), each
checked against plain PyTorch written here (``F.hardsigmoid``, ``F.mish``, ...) and
onnxruntime at old and new opsets: every activation has a reference, the lowering per opset,
activations as cell arguments, an unknown one's suggestion, and an activation after a cell's
output (after a residual, a conditional one, a concat), which round-trips and diffs."""

from __future__ import annotations

from pathlib import Path

import pytest

from shrinkc.backends import onnx as onnx_backend
from shrinkc.cli import main
from shrinkc.compiler import compile_file
from shrinkc.compiler.ops import ACTS

from conftest import generate_module
from ops_helpers import _build, _close, _onnx_out, _params, _spec

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional
ort = pytest.importorskip("onnxruntime")


# --------------------------------------------------------------------------- activations

# each activation as one writes it in plain PyTorch: the reference
REFERENCE_ACTS = {
    "relu": F.relu, "relu6": F.relu6, "swish": F.silu, "silu": F.silu,
    "hswish": F.hardswish, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
    "identity": lambda x: x,
    "hsigmoid": F.hardsigmoid, "gelu": F.gelu, "mish": F.mish, "elu": F.elu, "selu": F.selu,
    "celu": F.celu, "leaky_relu": F.leaky_relu, "hardtanh": F.hardtanh, "softplus": F.softplus,
    "softsign": F.softsign,
}


def test_every_activation_has_a_reference_here():
    assert set(REFERENCE_ACTS) == set(ACTS)


def _act_net(tmp_path: Path, act: str) -> Path:
    return _spec(tmp_path, f"""
        cell Block(w: int) {{
            input x
            a = conv(w, k=3) {act} <- x
            output a
        }}

        network Net {{
            input image[3, 9, 9]
            stage Block(8) x 1
        }}
    """, f"act_{act}")


@pytest.mark.parametrize("act", sorted(set(ACTS) - {"identity"}))
def test_activation_against_plain_pytorch_and_onnxruntime(tmp_path, act):
    graph, model = _build(_act_net(tmp_path, act), tmp_path)
    assert graph.cost.params == _params(model) == 3 * 8 * 9 + 2 * 8  # conv + BN, by hand
    block = model.stage1[0].a
    conv, bn = block.conv, block.bn
    torch.manual_seed(1)
    x = torch.randn(2, 3, 9, 9) * 3  # wide enough to reach every activation's bends
    with torch.no_grad():
        ref = REFERENCE_ACTS[act](F.batch_norm(
            F.conv2d(x, conv.weight, padding=1), bn.running_mean, bn.running_var, bn.weight,
            bn.bias, eps=1e-5))
        _close(model(x), ref, 1e-6)
    for opset in (13, 17, 18, 20, onnx_backend.OPSET):
        _close(_onnx_out(graph, model, x, opset=opset), ref.numpy(), 1e-5)


@pytest.mark.parametrize("act, opset, op_type", [
    ("gelu", 19, "Erf"), ("gelu", 20, "Gelu"), ("mish", 17, "Softplus"), ("mish", 18, "Mish"),
    ("hsigmoid", 13, "HardSigmoid")])
def test_activation_lowering_per_opset(tmp_path, act, opset, op_type):
    graph = compile_file(_act_net(tmp_path, act))
    model = onnx_backend.generate(graph, opset=opset)
    types = {n.op_type for n in model.graph.node}
    assert op_type in types
    assert not types & {"Gelu", "Mish"} or opset >= {"gelu": 20, "mish": 18}.get(act, 0)


def test_activations_as_cell_arguments(tmp_path):
    """An act parameter takes the new activations, and a variant swaps them."""
    spec = _spec(tmp_path, """
        cell Block(w: int, act = hsigmoid) {
            input x
            a = conv(w, k=3) act <- x
            output a
        }

        network Net(act = gelu) {
            input image[3, 8, 8]
            stage Block(8, act) x 2
        }

        network Mish = Net(act = mish)
    """)
    graph, module, path = generate_module(spec, tmp_path, "gen_args")
    assert "nn.Mish" in path.read_text()
    model = module.build().eval()
    assert isinstance(model.stage1[0].a.act, nn.Mish)
    assert isinstance(module.build(act=nn.GELU).stage1[1].a.act, nn.GELU)


def test_unknown_activation_lists_the_new_ones(tmp_path, capsys):
    spec = _spec(tmp_path, """
        cell Block(w: int, depth: int = 2) {
            input x
            a = conv(w, k=3) hsigmoud <- x
            output a
        }

        network Net {
            input image[3, 8, 8]
            stage Block(8) x 1
        }
    """)
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "unknown activation 'hsigmoud'" in err and "did you mean 'hsigmoid'?" in err


# --------------------------------------------------------------------------- output activation


@pytest.mark.parametrize("output, shape", [
    ("output b + x relu", [8, 6, 6]),                       # identity residual, then relu
    ("output b + x relu", [16, 3, 3]),                      # projected residual, then relu
    ("output b + x if shapes match relu6", [8, 6, 6]),      # the rule applies: add
    ("output b + x if shapes match relu6", [16, 3, 3]),     # the rule does not: no add
    ("output concat(a, b) hswish", [16, 6, 6]),             # no residual
])
def test_activation_after_the_output(tmp_path, output, shape):
    w, stride = shape[0], 6 // shape[1]
    spec = _spec(tmp_path, f"""
        cell Block(w: int, stride: int) {{
            input x
            a = conv(w, k=3, stride=stride) relu <- x
            b = conv(w, k=3) <- a
            {output}
        }}

        network Net {{
            input image[8, 6, 6]
            stage Block({w if "concat" not in output else w // 2}, {stride}) x 1
        }}
    """, f"out_{abs(hash((output, w)))}")
    graph, model = _build(spec, tmp_path)
    assert graph.out_shape.as_list() == shape
    cell = model.stage1[0]
    torch.manual_seed(4)
    x = torch.randn(2, 8, 6, 6)

    def cbn(m, x, stride=1, pad=1):
        y = F.conv2d(x, m.conv.weight, stride=stride, padding=pad)
        return F.batch_norm(y, m.bn.running_mean, m.bn.running_var, m.bn.weight, m.bn.bias)

    with torch.no_grad():
        a = F.relu(cbn(cell.a, x, stride))
        b = cbn(cell.b, a)
        if "concat" in output:
            ref = F.hardswish(torch.cat([a, b], 1))
        elif "if shapes" in output:
            ref = F.relu6(b + x if shape == [8, 6, 6] else b)
        else:
            short = x if shape == [8, 6, 6] else cbn(cell.residual, x, stride, 0)
            ref = F.relu(b + short)
        _close(model(x), ref, 1e-5)
    _close(_onnx_out(graph, model, x), ref.numpy(), 1e-5)
    _close(_onnx_out(graph, model, x, opset=13, fold_bn=False), ref.numpy(), 1e-5)


def test_output_activation_round_trips_and_diffs(tmp_path, capsys):
    text = """
        cell Block(w: int, act = relu) {
            input x
            a = conv(w, k=3) <- x
            output a + x act
        }

        network Net {
            input image[8, 6, 6]
            stage Block(8) x 1
        }
    """
    a = _spec(tmp_path, text, "a")
    assert main(["fmt", "--check", str(a)]) == 0
    b = _spec(tmp_path, text.replace("a + x act", "a + x"), "b")
    assert main(["diff", str(a), str(b)]) == 1
    assert "~ output: act act -> linear" in capsys.readouterr().out
    graph = compile_file(a)
    assert graph.stages[0].cells[0].act == "relu"
    gb = compile_file(b)  # in the IR's JSON, absent when there is none: older files stand
    assert "act" not in gb.stages[0].cells[0].model_dump(exclude={"nodes"})
    assert "act" not in gb.program.cells["Block"].output.model_dump()
