"""The op table (``compiler/ops.py``) and the backends' tables keyed by op name stay in step;
shape rules and costs read through the table match numbers worked out by hand."""

from __future__ import annotations

import dataclasses

import pytest

from shrinkc.backends import layout
from shrinkc.backends.onnx import cnn as onnx_cnn
from shrinkc.backends.onnx import lm as onnx_lm
from shrinkc.backends.pytorch import cnn as pytorch_cnn
from shrinkc.backends.pytorch import lm as pytorch_lm
from shrinkc.backends.pytorch import source as pytorch_source
from shrinkc.compiler import ops
from shrinkc.compiler.ir import Cost, OpInst, Shape

# (backend table, what it is keyed by)
OP_TABLES = {
    "backends/pytorch/cnn.py OP_MODULES": lambda: pytorch_cnn.OP_MODULES,
    "backends/onnx/cnn.py OP_NODES": lambda: onnx_cnn.OP_NODES,
    "backends/layout.py OP_LAYOUT": lambda: layout.OP_LAYOUT,
}
ACT_TABLES = {
    "backends/pytorch/source.py ACT_MODULES": lambda: pytorch_source.ACT_MODULES,
    "backends/onnx/cnn.py ACT_NODES": lambda: onnx_cnn.ACT_NODES,
}
RECURRENT_ACT_TABLES = {
    "backends/pytorch/lm.py ACT_FUNCTIONS": lambda: pytorch_lm.ACT_FUNCTIONS,
    "backends/onnx/lm.py ACT_OPS": lambda: onnx_lm.ACT_OPS,
}


def table_mismatches() -> list[str]:
    """One line per backend table whose keys differ from the op or activation table's."""
    out = []
    for tables, want in ((OP_TABLES, set(ops.OPS)), (ACT_TABLES, set(ops.ACTS)),
                         (RECURRENT_ACT_TABLES, set(ops.RECURRENT_ACTS))):
        for name, table in tables.items():
            keys = set(table())
            if keys != want:
                out.append(f"{name}: lacks {sorted(want - keys)}, has extra {sorted(keys - want)}")
    return out


def test_every_backend_table_covers_the_op_and_activation_tables():
    assert table_mismatches() == []


def test_table_check_reports_a_new_op_for_every_backend(monkeypatch):
    fake = dataclasses.replace(ops.OPS["identity"], name="fakeop", title="FakeOp")
    monkeypatch.setitem(ops.OPS, "fakeop", fake)
    found = table_mismatches()
    assert found == [f"{name}: lacks ['fakeop'], has extra []" for name in OP_TABLES]


def test_table_check_reports_a_new_activation_for_every_backend(monkeypatch):
    monkeypatch.setitem(ops.ACTS, "fakeact", ops.ActSig("fakeact", "FakeAct"))
    monkeypatch.setattr(ops, "RECURRENT_ACTS", (*ops.RECURRENT_ACTS, "fakeact"))
    found = table_mismatches()
    assert found == [f"{name}: lacks ['fakeact'], has extra []"
                     for name in (*ACT_TABLES, *RECURRENT_ACT_TABLES)]


def test_table_check_reports_a_backend_entry_without_an_op(monkeypatch):
    monkeypatch.setitem(layout.OP_LAYOUT, "gone", layout.OpLayout(lambda site: []))
    assert table_mismatches() == ["backends/layout.py OP_LAYOUT: lacks [], has extra ['gone']"]


def test_every_op_has_a_title_and_family():
    for name, sig in ops.OPS.items():
        assert sig.name == name and sig.title
        assert sig.family in ("conv", "sepconv", "dwconv", "pool", "linear", "other")
        if sig.stride is not None:
            assert sig.param(sig.stride) is not None
    assert ops.DOWNSAMPLE_OPS == ("maxpool", "avgpool")
    assert set(ops.RECURRENT_ACTS) <= set(ops.ACTS)


def _op(name: str, **given) -> OpInst:
    """``name`` with its defaults filled in, as elaboration does."""
    attrs = {p.name: p.default for p in ops.OPS[name].params if not p.optional}
    attrs.update(given)
    return OpInst(op=name, attrs=attrs)


def test_conv_3x3_stride_2_shape_and_cost():
    op, x = _op("conv", out=32, k=3, stride=2), Shape(c=16, h=15, w=15)
    y = ops.infer(op, x)
    # pad = 1: (15 + 2 - 2 - 1) // 2 + 1 = 8
    assert y == Shape(c=32, h=8, w=8)
    # weights 16 * 32 * 3 * 3 = 4608, BN 2 * 32 = 64; MACs 4608 * 8 * 8 = 294912
    assert ops.cost(op, x, y) == Cost(params=4672, macs=294912)
    assert ops.op_stride(op) == 2


def test_grouped_conv_cost():
    op, x = _op("conv", out=32, k=1, groups=4), Shape(c=16, h=7, w=7)
    y = ops.infer(op, x)
    assert y == Shape(c=32, h=7, w=7)
    # weights 16 / 4 * 32 = 128, BN 64; MACs 128 * 49 = 6272
    assert ops.cost(op, x, y) == Cost(params=192, macs=6272)


def test_sepconv_5x5_shape_and_cost():
    op, x = _op("sepconv", out=24, k=5), Shape(c=8, h=10, w=12)
    y = ops.infer(op, x)
    assert y == Shape(c=24, h=10, w=12)
    # depthwise 8 * 25 = 200, pointwise 8 * 24 = 192, BN 48; MACs (200 + 192) * 120 = 47040
    assert ops.cost(op, x, y) == Cost(params=440, macs=47040)


def test_dwconv_dilated_stride_2():
    op, x = _op("dwconv", k=3, stride=2, dilation=2), Shape(c=12, h=9, w=9)
    y = ops.infer(op, x)
    # pad = 2: (9 + 4 - 4 - 1) // 2 + 1 = 5
    assert y == Shape(c=12, h=5, w=5)
    # weights 12 * 9 = 108, BN 24; MACs 108 * 25 = 2700
    assert ops.cost(op, x, y) == Cost(params=132, macs=2700)


def test_linear_shape_and_cost():
    op, x = _op("linear", out=10), Shape(c=64)
    y = ops.infer(op, x)
    assert y == Shape(c=10)
    # 64 * 10 weights + 10 biases; 640 MACs
    assert ops.cost(op, x, y) == Cost(params=650, macs=640)
    assert ops.op_stride(op) == 1


def test_pools_and_shape_only_ops():
    x = Shape(c=6, h=7, w=7)
    pool = _op("maxpool", k=3)  # stride 0: the window; (7 - 3) // 3 + 1 = 2
    assert ops.infer(pool, x) == Shape(c=6, h=2, w=2)
    assert ops.op_stride(pool) == 3
    assert ops.cost(pool, x, Shape(c=6, h=2, w=2)) == Cost()
    assert ops.infer(_op("avgpool", k=3, stride=1, padding=1), x) == x
    assert ops.infer(_op("global_avgpool"), x) == Shape(c=6)
    assert ops.infer(_op("flatten"), x) == Shape(c=294)
    assert ops.infer(_op("flatten"), Shape(c=5)) == Shape(c=5)
    assert ops.infer(_op("dropout"), x) == x


@pytest.mark.parametrize("op, x, message", [
    (_op("conv", out=6, groups=4), Shape(c=8, h=4, w=4),
     "groups=4 must divide both input channels (8) and output channels (6)"),
    (_op("maxpool", k=2, padding=2), Shape(c=1, h=4, w=4),
     "padding 2 must be at most half the window 2"),
    (_op("sepconv", out=4, k=3, stride=1), Shape(c=4),
     "sepconv needs an image-shaped input (CxHxW), got a flat vector of 4"),
    (_op("linear", out=4), Shape(c=4, h=2, w=2), "linear needs a flat input, got 4x2x2"),
    (_op("avgpool", k=5), Shape(c=3, h=4, w=4),
     "input 3x4x4 is too small for avgpool (the output would be 0x0)"),
])
def test_shape_errors(op, x, message):
    with pytest.raises(ops.ShapeError) as e:
        ops.infer(op, x)
    assert str(e.value) == message
