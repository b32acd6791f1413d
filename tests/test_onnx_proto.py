"""The ONNX backend's own protobuf writer (``backends/onnx/proto.py``) and opset tables
(``backends/onnx/common.py``), against the onnx package they stand in for.

The writer must write what protobuf writes: for every shipped spec, at opsets 13, 17 and 28,
flat, with functions and with a dynamic input size, onnx parses the bytes and serializes them
back to the same bytes (deterministic protobuf serialization is canonical: fields in number
order, proto2 presence), and the full checker passes. The tables must say what ``onnx.defs``
and ``onnx.helper`` say, for every op of the default domain and every opset to 28.
"""

from __future__ import annotations

import pytest

onnx = pytest.importorskip("onnx")
np = pytest.importorskip("numpy")

from shrinkc.backends import onnx as onnx_backend  # noqa: E402
from shrinkc.backends.onnx import common, proto  # noqa: E402
from shrinkc.compiler import compile_file  # noqa: E402

from conftest import ALL_SHIPPED, TEST_SPECS  # noqa: E402

SPECS = ALL_SHIPPED + sorted(TEST_SPECS.glob("*.shrink"))
VARIANTS = [{"opset": 13}, {"opset": 17}, {}, {"functions": True}, {"fold_bn": False},
            {"dynamic_hw": True}]


@pytest.fixture(scope="module")
def graphs():
    return {p.stem: compile_file(p) for p in SPECS}


def _variants(graph):
    for v in VARIANTS:
        if graph.kind == "lm" and (v.get("functions") or v.get("dynamic_hw")
                                   or "fold_bn" in v):
            continue
        if v.get("dynamic_hw") and not any(layer.op.op.startswith("global_")
                                           for layer in graph.head):
            continue
        yield v


@pytest.mark.parametrize("name", [p.stem for p in SPECS])
def test_bytes_are_protobufs_own_and_pass_the_full_check(graphs, name):
    graph = graphs[name]
    for v in _variants(graph):
        data = onnx_backend.serialize(onnx_backend.build(graph, **v))
        model = onnx.ModelProto.FromString(data)
        assert model.SerializeToString(deterministic=True) == data, (name, v)
        onnx.checker.check_model(model, full_check=True)
        assert model.opset_import[0].version == v.get("opset", onnx_backend.OPSET)


def test_generate_gives_onnx_model_of_the_same_bytes(graphs):
    graph = graphs["shrinkcnn_a"]
    model = onnx_backend.generate(graph, opset=17)
    assert isinstance(model, onnx.ModelProto)
    assert onnx_backend.serialize(model) == onnx_backend.serialize(
        onnx_backend.build(graph, opset=17))


def test_helper_functions_set_the_fields_onnx_helper_sets():
    """Each stand-in next to onnx.helper's own function, on the values the backend gives."""
    h = proto.helper
    cases = [
        ("make_node", ("Conv", ["x", "w"], ["y"]),
         {"name": "c", "domain": "", "pads": [1, 1, 1, 1], "group": 3, "alpha": 0.5,
          "mode": "constant", "skip": None}),
        ("make_node", ("Relu", ["x"], ["y"]), {"name": ""}),
        ("make_tensor", ("", onnx.TensorProto.FLOAT, [], [0.25]), {}),
        ("make_tensor", ("", onnx.TensorProto.FLOAT, [1], [0.0]), {}),
        ("make_tensor", ("", onnx.TensorProto.INT64, [4], [0, 2, 12, -1]), {}),
        ("make_tensor", ("", onnx.TensorProto.INT32, [2], [3, -7]), {}),
        ("make_tensor", ("", onnx.TensorProto.FLOAT16, [], [0.7071067690849304]), {}),
        ("make_tensor", ("", onnx.TensorProto.FLOAT16, [5], [1.0, -2.5, 65504.0, 1e-7, -0.0]),
         {}),
        ("make_tensor", ("", onnx.TensorProto.FLOAT16, [2],
                         np.array([0.1, -3.0], np.float16)), {}),
        ("make_tensor_value_info", ("x", onnx.TensorProto.FLOAT, ["batch", 3, "h", 8]),
         {"doc_string": "the input"}),
        ("make_opsetid", ("", 17), {}),
    ]
    for fn, args, kwargs in cases:
        ours = getattr(h, fn)(*args, **kwargs)
        theirs = getattr(onnx.helper, fn)(*args, **kwargs)
        assert ours.SerializeToString() == theirs.SerializeToString(deterministic=True), fn
    for array in (np.arange(6, dtype=np.float32).reshape(2, 3), np.array([7], np.int64),
                  np.array(2.5, np.float32), np.array([[0.1, -7e-8], [6e4, 1.0]], np.float16)):
        ours = proto.numpy_helper.from_array(array, "")
        theirs = onnx.numpy_helper.from_array(array, "")
        assert ours.SerializeToString() == theirs.SerializeToString(deterministic=True)
    with pytest.raises(AttributeError):  # a field the writer does not declare
        proto.NodeProto(no_such_field=1)


def test_the_opset_tables_are_onnxs():
    """Up to the newest opset both know (an older onnx package knows fewer)."""
    newest = min(common.OPSET, onnx.defs.onnx_opset_version())
    first: dict[str, int] = {}
    for s in onnx.defs.get_all_schemas_with_history():
        if s.domain in ("", "ai.onnx") and s.since_version <= newest:
            first[s.name] = min(first.get(s.name, s.since_version), s.since_version)
    assert first == {op: v for op, v in common.FIRST_OPSET.items() if v <= newest}
    for op in first:
        for opset in range(1, newest + 1):
            try:
                onnx.defs.get_schema(op, opset, "")
                exists = True
            except onnx.defs.SchemaError:
                exists = False
            assert common.has_op(op, opset) == exists, (op, opset)
    for opset in range(common.MIN_OPSET, newest + 1):
        ids = [onnx.helper.make_opsetid("", opset)]
        assert common.ir_version(opset) == onnx.helper.find_min_ir_version_for(ids)
    assert not common.has_op("NoSuchOp", 17) and common.first_opset("NoSuchOp") is None
