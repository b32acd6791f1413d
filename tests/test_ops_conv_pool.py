"""Convolution, pooling and batch-norm variants for the mobile zoo (issue 12), each checked
against plain PyTorch written here and onnxruntime: a projecting residual on an odd
resolution, SqueezeNet's biased convolutions without batch norm, pool padding and ceil_mode,
defaults written out that make no difference (diff, fmt), bool cell parameters, and batch
norm's eps and momentum (folded or kept in ONNX). Parameter counts are worked out by hand."""

from __future__ import annotations

import pytest

from shrinkc.backends import onnx as onnx_backend
from shrinkc.cli import main
from shrinkc.compiler import compile_file

from conftest import generate_module
from ops_helpers import _build, _close, _onnx_out, _params, _spec

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional
ort = pytest.importorskip("onnxruntime")


# --------------------------------------------------------------------------- odd resolutions


def test_projecting_residual_on_an_odd_resolution(tmp_path):
    """input 64x7x7, output 128x4x4: a 1x1 stride-2 conv maps 7 to 4 (ceil(7 / 2))."""
    spec = _spec(tmp_path, """
        cell Down(w: int) {
            input x
            a = conv(w, k=3, stride=2) relu <- x
            b = conv(w, k=3) <- a
            output b + x
        }

        network Net {
            input image[64, 7, 7]
            stage Down(128) x 1
        }
    """)
    graph, model = _build(spec, tmp_path)
    assert graph.out_shape.as_list() == [128, 4, 4]
    # a: 64*128*9 + 2*128; b: 128*128*9 + 2*128; residual: 64*128 + 2*128
    assert graph.cost.params == _params(model) == 73984 + 147712 + 8448
    assert graph.cost.macs == (64 * 128 * 9 + 128 * 128 * 9 + 64 * 128) * 16
    cell = model.stage1[0]
    x = torch.randn(2, 64, 7, 7)

    def cbn(m, x, stride, pad):
        y = F.conv2d(x, m.conv.weight, stride=stride, padding=pad)
        return F.batch_norm(y, m.bn.running_mean, m.bn.running_var, m.bn.weight, m.bn.bias)

    with torch.no_grad():
        ref = cbn(cell.b, F.relu(cbn(cell.a, x, 2, 1)), 1, 1) + cbn(cell.residual, x, 2, 0)
        _close(model(x), ref, 1e-5)
    _close(_onnx_out(graph, model, x), ref.numpy(), 1e-5)
    _close(_onnx_out(graph, model, x, fold_bn=False, opset=13), ref.numpy(), 1e-5)


# --------------------------------------------------------------------------- conv and pool variants

FIRE = """
    cell Fire(s: int, e: int) {
        input x
        sq = conv(s, bias=true, bn=false) relu <- x
        e1 = conv(e, bias=true, bn=false) relu <- sq
        e3 = conv(e, k=3, bias=true, bn=false) relu <- sq
        output concat(e1, e3)
    }

    network Squeeze(classes = 10) {
        input image[3, 33, 33]
        stem conv(64, k=3, stride=2, padding=0, bias=true, bn=false) relu ->
            maxpool(3, stride=2, ceil_mode=true)
        stage Fire(16, 64) x 1
        head conv(classes, k=3, padding=0, bias=true) relu -> global_avgpool
    }
"""


def test_conv_with_bias_without_bn_and_ceil_mode_pool(tmp_path):
    """SqueezeNet's pieces: biased convolutions without batch norm, padding 0, ceil_mode."""
    graph, model = _build(_spec(tmp_path, FIRE), tmp_path)
    # 33 -> conv 3x3 stride 2 padding 0 -> 16 -> maxpool 3 stride 2 ceil -> 8 -> head conv 3x3 -> 6
    assert [layer.out_shape.as_list() for layer in graph.stem] == [[64, 16, 16], [64, 8, 8]]
    stem = 3 * 64 * 9 + 64
    fire = (64 * 16 + 16) + (16 * 64 + 64) + (16 * 64 * 9 + 64)
    head = 128 * 10 * 9 + 10 + 2 * 10  # bias and a batch norm
    assert graph.cost.params == _params(model) == stem + fire + head
    assert graph.cost.macs == 3 * 64 * 9 * 16 * 16 + (64 * 16 + 16 * 64 + 16 * 64 * 9) * 64 \
        + 128 * 10 * 9 * 36
    assert "stage1.0.sq.bn.weight" not in model.state_dict()
    assert "stage1.0.sq.conv.bias" in model.state_dict()
    x = torch.randn(2, 3, 33, 33)
    c = model.stage1[0]
    with torch.no_grad():
        y = F.relu(F.conv2d(x, model.stem[0].conv.weight, model.stem[0].conv.bias, stride=2))
        y = F.max_pool2d(y, 3, 2, ceil_mode=True)
        sq = F.relu(F.conv2d(y, c.sq.conv.weight, c.sq.conv.bias))
        y = torch.cat([F.relu(F.conv2d(sq, c.e1.conv.weight, c.e1.conv.bias)),
                       F.relu(F.conv2d(sq, c.e3.conv.weight, c.e3.conv.bias, padding=1))], 1)
        h = model.head[0]
        y = F.batch_norm(F.conv2d(y, h.conv.weight, h.conv.bias), h.bn.running_mean,
                         h.bn.running_var, h.bn.weight, h.bn.bias)
        ref = F.relu(y).mean(dim=(2, 3))
        _close(model(x), ref, 1e-5)
    for opset, fold in ((13, False), (13, True), (onnx_backend.OPSET, True)):
        _close(_onnx_out(graph, model, x, opset=opset, fold_bn=fold), ref.numpy(), 1e-5)


@pytest.mark.parametrize("pool, size", [
    ("maxpool(3, stride=2, padding=1, ceil_mode=true)", 9),
    ("avgpool(3, stride=2, ceil_mode=true)", 8),
    ("avgpool(2, ceil_mode=true)", 9),
    ("maxpool(2, stride=2, padding=1, ceil_mode=true)", 9),
])
def test_pool_padding_and_ceil_mode(tmp_path, pool, size):
    spec = _spec(tmp_path, f"""
        network Net {{
            input image[4, 17, 17]
            stem {pool}
        }}
    """)
    graph, model = _build(spec, tmp_path)
    assert graph.out_shape.as_list() == [4, size, size]
    x = torch.randn(2, 4, 17, 17)
    # the reference: PyTorch's functional pooling with the same arguments
    call = pool.replace("maxpool(", "F.max_pool2d(x, ").replace("avgpool(", "F.avg_pool2d(x, ")
    ref = eval(call.replace("true", "True"), {"F": F, "x": x})
    assert list(ref.shape[1:]) == [4, size, size]
    _close(model(x), ref, 1e-6)
    for opset in (13, onnx_backend.OPSET):
        _close(_onnx_out(graph, model, x, opset=opset), ref.numpy(), 1e-5)


def test_written_defaults_are_no_difference(tmp_path, capsys):
    """bias=false and bn=true say what leaving them out says: same hash, no diff, same code."""
    a = _spec(tmp_path, FIRE, "a")
    b = _spec(tmp_path, FIRE.replace("conv(classes, k=3, padding=0, bias=true)",
                                     "conv(classes, k=3, padding=0, bias=true, bn=true)")
              .replace("maxpool(3, stride=2, ceil_mode=true)",
                       "maxpool(3, stride=2, ceil_mode=true, padding=0)"), "b")
    assert main(["diff", str(a), str(b)]) == 0
    c = _spec(tmp_path, FIRE.replace("sq = conv(s, bias=true, bn=false)",
                                     "sq = conv(s, bias=false, bn=false)"), "c")
    capsys.readouterr()
    assert main(["diff", str(a), str(c)]) == 1
    out = capsys.readouterr().out
    assert "sq: conv(s, bias=true, bn=false) -> conv(s, bn=false)" in out
    assert "params 26" in out or "(-16)" in out


def test_fmt_keeps_the_new_arguments(tmp_path, capsys):
    spec = _spec(tmp_path, FIRE)
    assert main(["fmt", str(spec)]) == 0
    text = spec.read_text()
    assert "sq = conv(s, bias=true, bn=false) relu <- x" in text
    assert "maxpool(3, stride=2, ceil_mode=true)" in text
    assert main(["fmt", "--check", str(spec)]) == 0


def test_bool_cell_parameter(tmp_path):
    spec = _spec(tmp_path, """
        cell Block(w: int, b = true, norm: bool = false) {
            input x
            a = conv(w, k=3, bias=b, bn=norm) relu <- x
            output a
        }

        network Net {
            input image[3, 8, 8]
            stage Block(8) x 1
            stage Block(8, b=false, norm=true) x 1
        }
    """)
    graph, module, path = generate_module(spec, tmp_path, "gen_bool")
    assert "b: bool = True" in path.read_text()
    model = module.build()
    assert graph.cost.params == _params(model) == (3 * 8 * 9 + 8) + (8 * 8 * 9 + 2 * 8)


# --------------------------------------------------------------------------- batch-norm settings


def test_batch_norm_eps_and_momentum(tmp_path):
    spec = _spec(tmp_path, """
        cell Block(w: int) {
            input x
            a = conv(w, k=1, eps=0.01, momentum=0.3) relu <- x
            b = dwconv(k=3, eps=0.5) <- a
            c = sepconv(w, k=3, eps=0.2, momentum=0.05) <- b
            output c
        }

        network Net {
            input image[3, 7, 7]
            stage Block(8) x 1
        }
    """)
    graph, model = _build(spec, tmp_path)
    assert graph.cost.params == _params(model) == (3 * 8 + 2 * 8 + 8 * 9 + 2 * 8
                                                   + 8 * 9 + 8 * 8 + 2 * 8)  # by hand
    a, b, c = model.stage1[0].a, model.stage1[0].b, model.stage1[0].c
    assert (a.bn.eps, a.bn.momentum, b.bn.eps, b.bn.momentum) == (0.01, 0.3, 0.5, 0.1)
    assert (c.bn.eps, c.bn.momentum) == (0.2, 0.05)
    torch.manual_seed(3)
    x = torch.randn(2, 3, 7, 7)

    def bn(m, y, eps):
        return F.batch_norm(y, m.running_mean, m.running_var, m.weight, m.bias, eps=eps)

    with torch.no_grad():
        y = F.relu(bn(a.bn, F.conv2d(x, a.conv.weight), 0.01))
        y = bn(b.bn, F.conv2d(y, b.conv.weight, padding=1, groups=8), 0.5)
        y = F.conv2d(F.conv2d(y, c.depthwise.weight, padding=1, groups=8), c.pointwise.weight)
        ref = bn(c.bn, y, 0.2)
        _close(model(x), ref, 1e-5)
    for fold in (True, False):  # folded into the conv with the op's eps, or kept
        _close(_onnx_out(graph, model, x, fold_bn=fold), ref.numpy(), 1e-5)
        _close(_onnx_out(graph, model, x, fold_bn=fold, opset=13), ref.numpy(), 1e-5)


def test_default_batch_norm_settings_are_no_difference(tmp_path):
    """eps=1e-5 and momentum=0.1 written out are PyTorch's defaults: the same op, hash and
    diff as without them."""
    a = _spec(tmp_path, """
        cell Block(w: int) {
            input x
            a = conv(w, k=3, eps=0.00001, momentum=0.1) relu <- x
            output a
        }

        network Net {
            input image[3, 8, 8]
            stage Block(8) x 1
        }
    """, "a")
    b = _spec(tmp_path, (tmp_path / "a.shrink").read_text().replace(
        ", eps=0.00001, momentum=0.1", "").removeprefix("shrink 1\n\n"), "b")
    ga, gb = compile_file(a), compile_file(b)
    assert ga.stages[0].cells[0].nodes[1].op == gb.stages[0].cells[0].nodes[1].op
    assert main(["diff", str(a), str(b)]) == 0
