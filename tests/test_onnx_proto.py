"""The models the ONNX backend builds with ``onnx.helper``, checked by the onnx package itself.

For every shipped spec and test spec, at opsets 13, 17 and 28, flat, with functions, with batch
norms kept and with a dynamic input size: the full checker (with shape inference) passes, the
opset and IR version are what ``onnx.helper`` says they must be, and a model is built the same
way twice (deterministic bytes). A small spec also runs in onnx's reference evaluator
(``onnx.reference``), which must give onnxruntime's outputs. The opset questions the backend
asks (``common.has_op``, ``first_opset``) are ``onnx.defs``'s answers.
"""

from __future__ import annotations

import pytest

onnx = pytest.importorskip("onnx")
np = pytest.importorskip("numpy")
ort = pytest.importorskip("onnxruntime")

from shrinkc.backends import onnx as onnx_backend  # noqa: E402
from shrinkc.backends.onnx import common  # noqa: E402
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
def test_every_model_passes_the_full_check(graphs, name):
    graph = graphs[name]
    for v in _variants(graph):
        model = onnx_backend.generate(graph, **v)
        data = onnx_backend.serialize(model)
        assert data == onnx_backend.serialize(onnx_backend.generate(graph, **v)), (name, v)
        onnx.checker.check_model(onnx.ModelProto.FromString(data), full_check=True)
        opset = v.get("opset", onnx_backend.OPSET)
        assert model.opset_import[0].version == opset
        ir = onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", opset)])
        assert model.ir_version == (max(ir, 8) if v.get("functions") else ir), (name, v)


def _feeds(sess, rng) -> dict:
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else 2 for d in i.shape]
        feeds[i.name] = (rng.integers(0, 10, shape) if "int64" in i.type
                         else rng.standard_normal(shape).astype(np.float32))
    return feeds


def test_onnxs_reference_evaluator_gives_onnxruntimes_outputs(graphs):
    """The ONNX standard's own reading of the model (onnx.reference) against onnxruntime
    (image networks: the evaluator's Scan takes no time axis 1, which the language models'
    loop uses)."""
    from onnx.reference import ReferenceEvaluator

    for v in ({"opset": 13}, {}, {"functions": True}):
        model = onnx_backend.generate(graphs["tiny"], **v)
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        feeds = _feeds(sess, np.random.default_rng(0))
        got = sess.run(None, feeds)
        ref = ReferenceEvaluator(model).run(None, feeds)
        for a, b in zip(got, ref):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_opset_questions_are_onnx_defs_answers():
    assert common.first_opset("HardSwish") == 14 and common.first_opset("Gelu") == 20
    assert common.first_opset("NoSuchOp") is None and not common.has_op("NoSuchOp", 17)
    assert not common.has_op("Mish", 17) and common.has_op("Mish", 18)
    assert common.newest_opset() == min(common.OPSET, onnx.defs.onnx_opset_version())
