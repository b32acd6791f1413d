"""ONNX for deployment: ``--opset`` (13 to the newest) and ``--input CxHxW``.

For every shipped image network (the search spaces aside) at opsets 13, 17 and the default, at
its own input size and at 160x160: the full ONNX check passes and onnxruntime matches the
generated PyTorch module at batch 1 and 3 (the default opset at the network's own size is
``tests/test_onnx.py``'s parity, not repeated here). Then the errors: opsets out of range, an op
missing from an opset, malformed ``--input`` values and sizes a network cannot take.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
np = pytest.importorskip("numpy")

from test_onnx import TOLERANCE, _rel_err, _session, torch, trained  # noqa: F401 - fixtures

from shrinkc.backends import onnx as onnx_backend
from shrinkc.backends.onnx import cnn as onnx_cnn
from shrinkc.backends.onnx.common import MIN_OPSET, first_opset, require_op
from shrinkc.cli import main
from shrinkc.compiler import compile_file
from shrinkc.compiler.errors import ShrinkError

from conftest import CNN_SPECS, SPECS, TEST_SPECS

DEPLOY_SPECS = [p for p in CNN_SPECS if not re.search(r"^space\s", p.read_text(), re.M)]
NAMES = [p.stem for p in DEPLOY_SPECS]
OPSETS = [13, 17, None]  # None: no --opset, the default (the newest)
OWN_SIZE = 224  # every deploy spec's input (checked below)
SIZES = [OWN_SIZE, 160]
# the default opset at the spec's own size is test_onnx.py's test_parity_with_pytorch[NAME-folded]
# (the same compile, weights, inputs and tolerance): not repeated
PARITY_CASES = [pytest.param(name, opset, size, id=f"{name}-opset{opset or 'default'}-{size}")
                for name in NAMES for opset in OPSETS for size in SIZES
                if not (opset is None and size == OWN_SIZE)]
BATCHES = (1, 3)
TINY = TEST_SPECS / "tiny.shrink"  # uses hswish: HardSwish, or its decomposition before 14
TINY_LM = TEST_SPECS / "tiny_rnn_space.shrink"


def test_the_shipped_image_networks_are_all_here():
    assert sorted(NAMES) == ["mobilenetv2", "shrinkcnn_a", "shrinkcnn_b", "shrinkcnn_found"]
    assert all(compile_file(p).input_shape.as_list() == [3, OWN_SIZE, OWN_SIZE]
               for p in DEPLOY_SPECS)


@pytest.fixture(scope="module")
def refs(trained, torch):  # noqa: F811 - pytest fixtures imported above
    """Per (spec, size): the PyTorch module's inputs and outputs at batch 1 and 3. At the
    spec's own size, ``test_onnx``'s; at another, fresh ones through the same module (its
    layers do not depend on the input size)."""
    cache: dict[tuple[str, int], tuple[dict, dict]] = {}

    def get(name: str, size: int) -> tuple[dict, dict, dict]:
        t = trained(name)
        c, h, w = t["graph"].input_shape.as_list()
        if (h, w) == (size, size):
            return t, t["inputs"], t["refs"]
        if (name, size) not in cache:
            gen = torch.Generator().manual_seed(size)
            inputs, outputs = {}, {}
            with torch.no_grad():
                for batch in BATCHES:
                    x = torch.randn(batch, c, size, size, generator=gen)
                    inputs[batch], outputs[batch] = x.numpy(), t["model"](x).numpy()
            cache[name, size] = inputs, outputs
        return t, *cache[name, size]

    return get


def _compile(spec: Path, out: Path, *extra: str) -> onnx.ModelProto:
    assert main(["compile", str(spec), "--target", "onnx", "-o", str(out), *extra]) == 0
    return onnx.load(out / f"{spec.stem}.onnx")


def _opset_of(model) -> int:
    (v,) = [o.version for o in model.opset_import if o.domain == ""]
    return v


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("name, opset, size", PARITY_CASES)
def test_opset_and_size_match_pytorch(refs, tmp_path, name, opset, size):
    t, inputs, outputs = refs(name, size)
    extra = ["--weights", str(t["weights"])]
    if opset is not None:
        extra += ["--opset", str(opset)]
    if size != t["graph"].input_shape.h:
        extra += ["--input", f"3x{size}x{size}"]
    model = _compile(t["spec"], tmp_path, *extra)
    onnx.checker.check_model(model, full_check=True)
    assert _opset_of(model) == (opset or onnx_backend.OPSET)
    assert model.graph.input[0].type.tensor_type.shape.dim[2].dim_value == size
    sess = _session(model.SerializeToString())
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    for batch in BATCHES:
        (y,) = sess.run([out.name], {inp.name: inputs[batch]})
        assert y.shape == outputs[batch].shape
        err = _rel_err(y, outputs[batch])
        assert err <= TOLERANCE, f"batch {batch}: relative error {err:.2e}"


@pytest.mark.parametrize("functions", [False, True], ids=["flat", "functions"])
@pytest.mark.parametrize("opset", [13, 14])
def test_hswish_before_and_from_opset_14(trained, tmp_path, opset, functions):  # noqa: F811
    """tiny.shrink's hswish is HardSwish from opset 14 and x * HardSigmoid(x) before; both
    match PyTorch's Hardswish, flat and in functions (which need IR version 8)."""
    t = trained("tiny")
    extra = ["--functions"] if functions else []
    model = _compile(TINY, tmp_path, "--opset", str(opset), "--weights", str(t["weights"]),
                     *extra)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node} | {n.op_type for f in model.functions
                                                   for n in f.node}
    assert ("HardSwish" in ops) == (opset >= 14)
    assert ("HardSigmoid" in ops) == (opset < 14)
    if functions:
        assert model.ir_version >= 8
        assert all(o.version == opset for f in model.functions for o in f.opset_import)
    sess = _session(model.SerializeToString())
    for batch in BATCHES:
        (y,) = sess.run(None, {"img": t["inputs"][batch]})
        assert _rel_err(y, t["refs"][batch]) <= TOLERANCE


@pytest.mark.parametrize("opset", [13, 17])
def test_language_model_at_older_opsets(opset):
    """Split without num_outputs (before 18) and the batch without Shape's start and end
    (before 15): the same outputs as at the newest opset, with and without a given state."""
    graph = compile_file(TINY_LM)
    new = _session(onnx_backend.serialize(onnx_backend.generate(graph)))
    model = onnx_backend.generate(graph, opset=opset)
    onnx.checker.check_model(model, full_check=True)
    assert _opset_of(model) == opset
    old = _session(onnx_backend.serialize(model))
    rng = np.random.default_rng(opset)
    tokens = rng.integers(0, graph.lm.vocab, (3, 9))
    hidden = rng.standard_normal((3, graph.lm.hidden)).astype(np.float32)
    for feed in ({"tokens": tokens}, {"tokens": tokens, "hidden": hidden}):
        for a, b in zip(old.run(None, feed), new.run(None, feed)):
            assert np.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_default_is_the_newest_opset_unchanged(tmp_path):
    a = tmp_path / "a"
    b = tmp_path / "b"
    c = tmp_path / "c"
    spec = SPECS / "shrinkcnn_a.shrink"
    _compile(spec, a)
    _compile(spec, b, "--opset", str(onnx_backend.OPSET))
    _compile(spec, c, "--input", "3x224x224")  # the spec's own size: the same network
    data = (a / "shrinkcnn_a.onnx").read_bytes()
    assert data == (b / "shrinkcnn_a.onnx").read_bytes() == (c / "shrinkcnn_a.onnx").read_bytes()
    assert _opset_of(onnx.load(a / "shrinkcnn_a.onnx")) == onnx_backend.OPSET


def test_input_size_changes_macs_not_params(capsys):
    assert main(["stats", str(SPECS / "mobilenetv2.shrink"), "--json"]) == 0
    import json

    full = json.loads(capsys.readouterr().out)
    assert main(["stats", str(SPECS / "mobilenetv2.shrink"), "--json", "--input", "3x160x160"]) == 0
    small = json.loads(capsys.readouterr().out)
    assert small["input"] == [3, 160, 160] and small["params"] == full["params"]
    assert small["macs"] < full["macs"] * 0.6


# --------------------------------------------------------------------------- errors


def _usage_error(capsys, *args: str) -> str:
    rc = main(list(args))
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    return err


def _spec_error(capsys, *args: str) -> str:
    rc = main(list(args))
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "error:" in err and "Traceback" not in err
    return err


@pytest.mark.parametrize("value", ["12", "29", "0", "-1", "abc", "13.5", "", "99999999999999"])
def test_opset_out_of_range_is_a_usage_error(tmp_path, capsys, value):
    err = _usage_error(capsys, "compile", str(TINY), "--target", "onnx", "-o", str(tmp_path),
                       "--opset", value)
    assert f"--opset must be a number from {MIN_OPSET} to {onnx_backend.OPSET}" in err
    assert not list(tmp_path.iterdir())


def test_opset_needs_the_onnx_target(tmp_path, capsys):
    err = _usage_error(capsys, "compile", str(TINY), "-o", str(tmp_path), "--opset", "13")
    assert "--opset only applies to --target onnx" in err


def test_generate_checks_the_opset():
    graph = compile_file(TINY)
    for bad in (12, onnx_backend.newest_opset() + 1):
        with pytest.raises(ShrinkError, match="out of range"):
            onnx_backend.generate(graph, opset=bad)


def test_an_op_missing_from_the_opset_is_a_located_error(tmp_path, capsys, monkeypatch):
    """Every node is checked against the opset as it is emitted: an op the opset lacks (here
    HardSwish, emitted without its pre-14 decomposition) is an error at the spec statement
    that needs it, naming the op and the first opset that has it."""
    monkeypatch.setitem(onnx_cnn.ACT_NODES, "hswish",
                        lambda b, x, name: b.node("HardSwish", [x], name))
    err = _spec_error(capsys, "compile", str(TINY), "--target", "onnx", "-o",
                      str(tmp_path / "out"), "--opset", "13")
    line = next(i for i, t in enumerate(TINY.read_text().splitlines(), 1) if "hswish <-" in t)
    assert f"tiny.shrink:{line}:" in err
    assert "the activation 'hswish' needs the ONNX op HardSwish, which opset 13 does not have" in err
    assert "since opset 14" in err and "--opset 14 or newer" in err
    assert not (tmp_path / "out").exists()


def test_require_op_names_the_first_opset():
    assert first_opset("Gelu") == 20 and first_opset("Mish") == 18
    assert first_opset("HardSwish") == 14 and first_opset("NoSuchOp") is None
    with pytest.raises(ShrinkError) as e:
        require_op("Gelu", 17, "the activation 'gelu'", None)
    assert "opset 17 does not have" in str(e.value) and "since opset 20" in str(e.value)
    require_op("Gelu", 20, "the activation 'gelu'", None)  # no error


@pytest.mark.parametrize("value,needle", [
    ("3x0x160", "every dimension must be positive"),
    ("0x160x160", "every dimension must be positive"),
    ("abc", "--input must be CxHxW"),
    ("3x160", "--input must be CxHxW"),
    ("1x3x160x160", "--input must be CxHxW"),
    ("3x-160x160", "--input must be CxHxW"),
    ("3x160x160x", "--input must be CxHxW"),
    ("", "--input must be CxHxW"),
    ("3x99999999999999999999x160", "too large"),
    ("3x70000x70000", "a height or width is at most 65,536"),
    ("9999999x8x8", "at most 1,048,576 channels"),
])
@pytest.mark.parametrize("command", ["compile", "stats"])
def test_malformed_input_is_a_usage_error(tmp_path, capsys, command, value, needle):
    extra = ["--target", "onnx", "-o", str(tmp_path / "out")] if command == "compile" else []
    err = _usage_error(capsys, command, str(SPECS / "shrinkcnn_a.shrink"), *extra,
                       "--input", value)
    assert needle in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("size,needles", [
    # pooling below 1x1: the located downsample of stage 4
    ("3x8x8", ["shrinkcnn_a.shrink:22:", "too small for maxpool"]),
    # odd sizes: a projecting residual stops matching the cell's output
    ("3x30x30", ["shrinkcnn_a.shrink:13:", "the residual cannot match the output resolution",
                 "instantiated by the stage at"]),
])
@pytest.mark.parametrize("command", ["compile", "stats"])
def test_an_input_the_network_cannot_take_is_a_located_error(tmp_path, capsys, command, size,
                                                              needles):
    extra = ["--target", "onnx", "-o", str(tmp_path / "out")] if command == "compile" else []
    err = _spec_error(capsys, command, str(SPECS / "shrinkcnn_a.shrink"), *extra, "--input", size)
    for needle in needles:
        assert needle in err, err
    assert "note: " in err and f"with --input {size} in place of the spec's input shape" in err
    assert not (tmp_path / "out").exists()


def test_input_of_a_language_model_is_a_located_error(tmp_path, capsys):
    err = _spec_error(capsys, "compile", str(SPECS / "shrinkrnn.shrink"), "--target", "onnx",
                      "-o", str(tmp_path), "--input", "3x160x160")
    assert "shrinkrnn.shrink:" in err and "is a language model" in err


def test_input_with_the_wrong_number_of_dimensions_is_a_located_error(tmp_path, capsys):
    err = _spec_error(capsys, "compile", str(SPECS / "shrinkcnn_a.shrink"), "-o", str(tmp_path),
                      "--input", "64")
    assert "shrinkcnn_a.shrink:17:" in err and "has 1 dimension(s)" in err
    assert "give --input as CxHxW" in err


def test_input_for_the_pytorch_target(tmp_path):
    assert main(["compile", str(SPECS / "mobilenetv2.shrink"), "-o", str(tmp_path),
                 "--input", "3x192x160"]) == 0
    text = (tmp_path / "mobilenetv2.py").read_text()
    assert "torch.randn(1, 3, 192, 160)" in text
