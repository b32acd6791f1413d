"""Blocks of the mobile zoo (issue 12), each checked against plain PyTorch written here and
onnxruntime: squeeze-excite, stochastic depth (whole samples dropped in training, identity at
inference, left out of ONNX), a residual from a node, channel split and shuffle
(ShuffleNetV2's unit), and two-input cells with a FactorizedReduce (DARTS-style wiring).
Parameter counts are worked out by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from shrinkc.backends import onnx as onnx_backend
from shrinkc.cli import main

from ops_helpers import _build, _close, _onnx_out, _params, _spec

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional
ort = pytest.importorskip("onnxruntime")


# --------------------------------------------------------------------------- squeeze-excite


def _se_net(tmp_path: Path, args: str) -> Path:
    return _spec(tmp_path, f"""
        cell Block(w: int) {{
            input x
            a = conv(w, k=3) relu <- x
            s = se({args}) <- a
            output s
        }}

        network Net {{
            input image[3, 9, 9]
            stage Block(16) x 1
        }}
    """, "se_" + args.replace(", ", "_").replace("=", ""))


@pytest.mark.parametrize("args, act, gate", [
    ("4", F.relu, torch.sigmoid),
    ("6, act=swish, gate=hsigmoid", F.silu, F.hardsigmoid)])
def test_squeeze_excite_against_plain_pytorch(tmp_path, args, act, gate):
    spec = _se_net(tmp_path, args)
    graph, model = _build(spec, tmp_path)
    s = int(args.split(",")[0])
    # conv 3x3 + BN, then the SE's two biased 1x1 convs: 16 -> s -> 16
    assert graph.cost.params == _params(model) == 3 * 16 * 9 + 2 * 16 + (16 * s + s + s * 16 + 16)
    # MACs: the conv's, and the SE's two 1x1 convs on the pooled vector
    assert graph.cost.macs == 3 * 16 * 9 * 81 + 2 * 16 * s
    block = model.stage1[0]
    sd = block.s.state_dict()
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == [
        ("fc1.weight", (s, 16, 1, 1)), ("fc1.bias", (s,)), ("fc2.weight", (16, s, 1, 1)),
        ("fc2.bias", (16,))]
    torch.manual_seed(2)
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        a = F.relu(F.batch_norm(F.conv2d(x, block.a.conv.weight, padding=1),
                                block.a.bn.running_mean, block.a.bn.running_var,
                                block.a.bn.weight, block.a.bn.bias))
        v = a.mean(dim=(2, 3))  # squeeze: (N, 16)
        v = act(v @ sd["fc1.weight"].flatten(1).T + sd["fc1.bias"])  # excite
        v = gate(v @ sd["fc2.weight"].flatten(1).T + sd["fc2.bias"])
        ref = a * v[:, :, None, None]
        _close(model(x), ref, 1e-5)
    for opset in (13, 17, onnx_backend.OPSET):
        _close(_onnx_out(graph, model, x, opset=opset), ref.numpy(), 1e-5)


# --------------------------------------------------------------------------- stochastic depth


def test_stochastic_depth_drops_whole_samples_in_training(tmp_path):
    spec = _spec(tmp_path, """
        cell Block(w: int) {
            input x
            a = conv(w, k=3) <- x
            output a + x
        }

        network Net {
            input image[4, 5, 5]
            stochastic_depth 0.6
            stage Block(4) x 2
        }
    """)
    graph, model = _build(spec, tmp_path)
    # torchvision's rule: p * i / cells, i from 0
    assert [c.drop_path for c in graph.stages[0].cells] == [0.0, 0.3]
    block = model.stage1[1]
    assert block.drop_path.p == 0.3
    x = torch.randn(256, 4, 5, 5)
    block.eval()
    with torch.no_grad():
        branch = block.a(x)
        assert torch.equal(block(x), branch + x)  # identity at inference
        block.train()
        block.a.eval()  # batch norm on its running statistics: the branch stays `branch`
        torch.manual_seed(5)
        y = block(x)
    dropped = torch.isclose(y, x, atol=1e-6).flatten(1).all(1)
    kept = torch.isclose(y, x + branch / 0.7, atol=1e-5).flatten(1).all(1)
    assert bool((dropped ^ kept).all())  # each sample: its whole branch dropped, or scaled
    assert 0.2 < dropped.float().mean() < 0.4  # about 0.3 of 256
    # inference graphs (ONNX) leave it out
    _close(_onnx_out(graph, model.eval(), x[:2]), model(x[:2]).detach().numpy(), 1e-5)


def test_stochastic_depth_round_trips_and_diffs(tmp_path, capsys):
    text = """
        cell Block(w: int) {
            input x
            a = conv(w, k=3) <- x
            output a + x if shapes match relu
        }

        network Net {
            input image[4, 5, 5]
            stochastic_depth 0.2
            stage Block(4) x 2
        }
    """
    a = _spec(tmp_path, text, "a")
    assert main(["fmt", "--check", str(a)]) == 0
    b = _spec(tmp_path, text.replace("0.2", "0.4"), "b")
    assert main(["diff", str(a), str(b)]) == 1
    assert "drop_path" in capsys.readouterr().out


# --------------------------------------------------------------------------- residual from a node


@pytest.mark.parametrize("out_mult, stride", [(1, 1), (2, 1), (2, 2)])
def test_residual_from_a_node(tmp_path, out_mult, stride):
    """``output b + s``: the residual adds the node s, projected (1x1 conv + BN with the
    stride between s and the output) where the shapes differ."""
    spec = _spec(tmp_path, f"""
        cell Block(w: int, stride: int) {{
            input x
            s = conv(w, k=1) relu <- x
            a = conv(w, k=3, stride=stride) relu <- s
            b = conv(w * {out_mult}, k=3) <- a
            output b + s relu
        }}

        network Net {{
            input image[3, 8, 8]
            stage Block(4, 1) x 2 first(stride={stride})
        }}
    """, f"resnode_{out_mult}_{stride}")
    graph, model = _build(spec, tmp_path)
    first = graph.stages[0].cells[0]
    assert first.residual_from == "s"
    assert first.residual == ("identity" if out_mult == 1 and stride == 1 else "project")
    w, o = 4, 4 * out_mult
    per_cell = lambda cin: cin * w + 2 * w + w * w * 9 + 2 * w + w * o * 9 + 2 * o  # noqa: E731
    proj = (w * o + 2 * o) if first.residual == "project" else 0
    proj2 = (w * o + 2 * o) if out_mult == 2 else 0  # second cell: stride 1, channels differ
    assert graph.cost.params == _params(model) == per_cell(3) + proj + per_cell(o) + proj2
    x = torch.randn(2, 3, 8, 8)

    def cbn(m, x, stride=1, pad=None):
        k = m.conv.weight.shape[-1]
        y = F.conv2d(x, m.conv.weight, stride=stride, padding=k // 2 if pad is None else pad)
        return F.batch_norm(y, m.bn.running_mean, m.bn.running_var, m.bn.weight, m.bn.bias)

    def block(cell, x, stride):
        s = F.relu(cbn(cell.s, x))
        b = cbn(cell.b, F.relu(cbn(cell.a, s, stride)))
        short = s if isinstance(cell.residual, nn.Identity) else cbn(cell.residual, s, stride, 0)
        return F.relu(b + short)

    with torch.no_grad():
        ref = block(model.stage1[1], block(model.stage1[0], x, stride), 1)
        _close(model(x), ref, 1e-5)
    _close(_onnx_out(graph, model, x), ref.numpy(), 1e-5)
    _close(_onnx_out(graph, model, x, fold_bn=False, opset=13), ref.numpy(), 1e-5)


# --------------------------------------------------------------------------- split and shuffle


def test_chunk_and_shuffle_against_plain_pytorch(tmp_path):
    """ShuffleNetV2's unit: half the channels pass, the other half is convolved; the halves
    are joined and their channels interleaved."""
    spec = _spec(tmp_path, """
        cell Unit(c: int) {
            input x
            left = chunk(2, 0) <- x
            right = chunk(2, 1) <- x
            conv = conv(c // 2, k=3) relu <- right
            out = shuffle(2) <- left, conv
            output out
        }

        network Net {
            input image[8, 6, 6]
            stage Unit(8) x 2
        }
    """)
    graph, model = _build(spec, tmp_path)
    assert graph.cost.params == _params(model) == 2 * (4 * 4 * 9 + 2 * 4)  # by hand
    assert [n.out_shape.c for n in graph.stages[0].cells[0].nodes] == [8, 4, 4, 4, 8]
    torch.manual_seed(6)
    x = torch.randn(2, 8, 6, 6)

    def unit(cell, x):
        a, b = x[:, :4], x[:, 4:]
        b = F.relu(F.batch_norm(F.conv2d(b, cell.conv.conv.weight, padding=1),
                                cell.conv.bn.running_mean, cell.conv.bn.running_var,
                                cell.conv.bn.weight, cell.conv.bn.bias))
        y = torch.cat([a, b], 1)
        # interleaved by hand: channel i of group g goes to position 2 * i + g
        out = torch.empty_like(y)
        out[:, 0::2], out[:, 1::2] = y[:, :4], y[:, 4:]
        return out

    with torch.no_grad():
        ref = unit(model.stage1[1], unit(model.stage1[0], x))
        _close(model(x), ref, 1e-6)
    for opset in (13, onnx_backend.OPSET):
        _close(_onnx_out(graph, model, x, opset=opset), ref.numpy(), 1e-5)


# --------------------------------------------------------------------------- two-input cells


def test_two_input_cells_and_factorized_reduce_against_plain_pytorch(tmp_path, capsys):
    """DARTS-style wiring: each cell takes the outputs of the two cells before it (the stem's
    counts twice); a reduction cell halves the resolution, so the next cell brings its first
    input down with a FactorizedReduce. Checked against a few lines of plain PyTorch, by
    hand-counted parameters, and onnxruntime at opsets 13 and the newest, with and without
    batch-norm folding and as ONNX functions."""
    spec = _spec(tmp_path, """
        cell Normal(c: int) {
            input s0, s1
            a = conv(c, k=1) <- s0
            b = conv(c, k=3) relu <- s1
            n = identity <- sum(a, b)
            output concat(n, b)
        }

        cell Reduce(c: int) {
            input s0, s1
            a = conv(c, k=3, stride=2) <- s0
            b = maxpool(3, stride=2, padding=1) <- s1
            output concat(a, b)
        }

        cell AfterReduce(c: int) {
            input s0, s1
            r = identity relu <- s0
            a = factorized_reduce(c) <- r
            b = conv(c, k=1) <- s1
            output sum(a, b)
        }

        network Net {
            input image[3, 8, 8]
            stem conv(4, k=3)
            stage Normal(4) x 2
            stage Reduce(8) x 1
            stage AfterReduce(8) x 1
            head global_avgpool -> linear(3)
        }
    """)
    graph, model = _build(spec, tmp_path)
    bn = lambda c: 2 * c  # noqa: E731  (a batch norm's weight and bias)
    # by hand: stem 3->4 (3x3); Normal(4) on (s0 4ch, s1 4ch), then on (4ch, 8ch);
    # Reduce(8) on (8ch @8x8, 8ch @8x8) -> 8 + 8 = 16ch @4x4; AfterReduce(8) on (8ch @8x8,
    # 16ch @4x4): FactorizedReduce 8 -> 2 x 4, conv 16 -> 8; head 8 -> 3
    stem = 3 * 4 * 9 + bn(4)
    normal1 = (4 * 4 + bn(4)) + (4 * 4 * 9 + bn(4))
    normal2 = (4 * 4 + bn(4)) + (8 * 4 * 9 + bn(4))
    reduce = 8 * 8 * 9 + bn(8)
    after = (2 * 8 * 4 + bn(8)) + (16 * 8 + bn(8))
    head = 8 * 3 + 3
    assert graph.cost.params == _params(model) == stem + normal1 + normal2 + reduce + after + head
    cell = graph.stages[2].cells[0]
    assert (cell.prev_shape.as_list(), cell.in_shape.as_list()) == ([8, 8, 8], [16, 4, 4])
    # MACs of the FactorizedReduce: two 1x1 convs 8 -> 4 at 4x4
    assert cell.nodes[3].cost.macs == 2 * 8 * 4 * 16

    def conv_bn(m, x, stride=1, padding=0):
        x = F.conv2d(x, m.conv.weight, stride=stride, padding=padding)
        return F.batch_norm(x, m.bn.running_mean, m.bn.running_var, m.bn.weight, m.bn.bias)

    def fr(m, x):
        y = torch.cat([F.conv2d(x, m.conv_1.weight, stride=2),
                       F.conv2d(x[:, :, 1:, 1:], m.conv_2.weight, stride=2)], 1)
        return F.batch_norm(y, m.bn.running_mean, m.bn.running_var, m.bn.weight, m.bn.bias)

    def reference(x):
        s = conv_bn(model.stem, x, padding=1)
        s0, s1 = s, s
        for c in model.stage1:
            a = conv_bn(c.a, s0)
            b = F.relu(conv_bn(c.b, s1, padding=1))
            s0, s1 = s1, torch.cat([a + b, b], 1)
        c = model.stage2[0]
        s0, s1 = s1, torch.cat([conv_bn(c.a, s0, stride=2, padding=1),
                                F.max_pool2d(s1, 3, 2, 1)], 1)
        c = model.stage3[0]
        y = fr(c.a, F.relu(s0)) + conv_bn(c.b, s1)
        return F.linear(y.mean([2, 3]), model.head[1].weight, model.head[1].bias)

    torch.manual_seed(7)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        ref = reference(x)
        _close(model(x), ref, 1e-6)
    for opset in (13, onnx_backend.OPSET):
        for fold in (True, False):
            _close(_onnx_out(graph, model, x, opset=opset, fold_bn=fold), ref.numpy(), 1e-5)
    weights = {k: v.numpy() for k, v in model.state_dict().items()
               if not k.endswith("num_batches_tracked")}
    m = onnx_backend.generate(graph, weights, functions=True)
    (y,) = ort.InferenceSession(onnx_backend.serialize(m), providers=["CPUExecutionProvider"]
                                ).run(None, {graph.input_name: x.numpy()})
    _close(y, ref.numpy(), 1e-5)
    # the language round-trips: the spec above is written as fmt writes it, so fmt --check
    # finds nothing to change (exit 0; 1 would mean fmt rewrites it, e.g. drops an input);
    # viz reads the two inputs
    assert main(["fmt", "--check", str(spec)]) == 0, capsys.readouterr().err
    assert main(["viz", str(spec), "-o", str(tmp_path / "net.svg")]) == 0
    assert "Input" in (tmp_path / "net.svg").read_text()
