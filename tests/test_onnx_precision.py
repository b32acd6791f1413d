"""Reduced precision (``compile --precision fp16|int8``) and ``shrinkc bench``.

fp16: ShrinkCNN-A and MobileNetV2 (seeded random weights) within a relative error of 1e-2 of
their fp32 models in onnxruntime, float32 inputs and outputs. int8: a small proxy network
trained here on the digits (the default proxy data), exported at fp32 and int8 (onnxruntime's
static quantization, calibrated on the built-in data and on an .npz), keeps its validation
accuracy within 1 point and its file is at least 3.5x smaller. Then ``bench --json``'s fields
and values, and the errors: each a message with the right exit code, never a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
np = pytest.importorskip("numpy")
pytest.importorskip("onnxconverter_common")

from shrinkc.cli import main

from conftest import ROOT, SPECS, TEST_SPECS

TINY_LM = TEST_SPECS / "tiny_rnn_space.shrink"

# A small proxy network on the digits at their own 8x8: few MACs, so it trains in seconds on
# one thread, and enough weights (mostly in the head) that the int8 file's fixed cost per
# layer (scales, zero points, int32 biases, Q/DQ nodes: about 60 kB here) does not hide the
# 4x of the weights themselves (a 345k-parameter variant came out 3.4x smaller).
PROXY = """\
shrink 1

cell Block(w: int) {
    input x
    n1 = sepconv(w, k=3) relu <- x
    n2 = conv(w, k=1) relu <- x
    n3 = sepconv(w, k=3) <- n1
    n4 = conv(w, k=1) <- x, n2
    output concat(n3, n4) + x
}

network DigitsNet(classes = 10) {
    input image[1, 8, 8]
    stem conv(32, k=3) relu
    stage Block(32) x 1
    stage Block(96) x 1 downsample maxpool(2)
    head conv(384, k=1) relu -> global_avgpool -> linear(1536) relu -> linear(classes)
}
"""
TRAIN = {"optimizer": "adam", "lr": 0.004, "batch": 64, "epochs": 4, "patience": 0,
         "momentum": 0.0, "weight_decay": 0.0, "schedule": "cosine"}


def _session(path: Path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _run(path: Path, x):
    sess = _session(path)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _rel_err(got, ref) -> float:
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


def _compile(spec: Path, out: Path, *extra: str) -> Path:
    assert main(["compile", str(spec), "--target", "onnx", "-o", str(out), *extra]) == 0
    return out / f"{spec.stem}.onnx"


def _meta(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}


def _fails(capsys, argv: list[str], rc: int, *needles: str) -> str:
    """``shrinkc argv`` exits with ``rc`` and a message holding ``needles``, no traceback."""
    capsys.readouterr()
    assert main(argv) == rc
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


# --------------------------------------------------------------------------- fp16


@pytest.mark.parametrize("name", ["shrinkcnn_a", "mobilenetv2"])
def test_fp16_within_1e_2_of_fp32(tmp_path, name):
    spec = SPECS / f"{name}.shrink"
    fp32 = _compile(spec, tmp_path / "fp32")
    fp16 = _compile(spec, tmp_path / "fp16", "--precision", "fp16")
    model = onnx.load(fp16)
    onnx.checker.check_model(model, full_check=True)
    f16 = onnx.TensorProto.FLOAT16
    weights = [t for t in model.graph.initializer if len(t.dims) == 4]
    assert weights and all(t.data_type == f16 for t in weights)  # every conv weight
    # keep_io_types: the caller feeds and reads float32, as at fp32
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert _meta(fp16)["precision"] == "fp16" and _meta(fp16)["network"] == _meta(fp32)["network"]
    assert 1.9 < fp32.stat().st_size / fp16.stat().st_size < 2.1
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    ref, got = _run(fp32, x), _run(fp16, x)
    assert got.dtype == np.float32 and got.shape == ref.shape
    err = _rel_err(got, ref)
    assert err <= 1e-2, f"relative error {err:.2e}"


def test_fp16_at_an_older_opset_and_size(tmp_path):
    spec = SPECS / "shrinkcnn_a.shrink"
    args = ("--opset", "13", "--input", "3x160x160")
    fp32 = _compile(spec, tmp_path / "fp32", *args)
    fp16 = _compile(spec, tmp_path / "fp16", *args, "--precision", "fp16")
    assert [o.version for o in onnx.load(fp16).opset_import if o.domain == ""] == [13]
    x = np.random.default_rng(1).standard_normal((1, 3, 160, 160)).astype(np.float32)
    assert _rel_err(_run(fp16, x), _run(fp32, x)) <= 1e-2


# Activations with float constants (Clip's bounds, Gelu's erf form before opset 20)
ACTS = """\
shrink 1

cell Mixed(w: int) {
    input x
    a = conv(w, k=3) relu6 <- x
    b = conv(w, k=1) gelu <- x
    c = sepconv(w, k=3) mish <- a
    d = conv(w, k=1) hswish <- b, c
    output concat(c, d) + x
}

network Acts {
    input image[3, 32, 32]
    stem conv(16, k=3) swish
    stage Mixed(16) x 2
    head global_avgpool -> linear(10)
}
"""


@pytest.mark.parametrize("name, options", [
    ("shrinkcnn_a", {}), ("shrinkcnn_a", {"opset": 13, "fold_bn": False}),
    ("mobilenetv2", {"opset": 17}), ("acts", {"opset": 13}), ("acts", {"opset": 19}),
    ("acts", {"dynamic_hw": True})])
def test_fp16_is_the_converters_model(tmp_path, name, options):
    """``precision.to_fp16`` (what ``--precision fp16`` writes) is onnxconverter-common's
    ``convert_float_to_float16(keep_io_types=True)`` of the fp32 model without the shape
    inference it runs first: the same initializers (bit for bit), nodes, inputs, outputs and
    metadata as the converter's defaults, and the same outputs in onnxruntime, bit for bit."""
    import warnings

    from onnxconverter_common import float16

    from shrinkc.backends import onnx as onnx_backend
    from shrinkc.backends.onnx import precision
    from shrinkc.compiler import compile_file

    if name == "acts":
        spec = tmp_path / "acts.shrink"
        spec.write_text(ACTS)
    else:
        spec = SPECS / f"{name}.shrink"
    graph = compile_file(spec)
    ours = precision.to_fp16(onnx_backend.generate(graph, **options))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = float16.convert_float_to_float16(onnx_backend.generate(graph, **options),
                                               keep_io_types=True)
    onnx.checker.check_model(ours, full_check=True)

    def wire(items) -> list[bytes]:
        return [m.SerializeToString(deterministic=True) for m in items]

    assert wire(ours.graph.initializer) == wire(ref.graph.initializer)
    assert sorted(wire(ours.graph.node)) == sorted(wire(ref.graph.node))
    # relu6 and gelu's float constants (flat graphs hold them as scalar initializers)
    assert any(not t.dims for t in ours.graph.initializer) == (name != "shrinkcnn_a")
    assert wire(ours.graph.input) == wire(ref.graph.input)
    assert wire(ours.graph.output) == wire(ref.graph.output)
    assert wire(ours.opset_import) == wire(ref.opset_import)
    assert {p.key: p.value for p in ours.metadata_props}.items() >= {
        "precision": "fp16", "io_types": "float32"}.items()
    assert len(ours.graph.value_info) < len(ref.graph.value_info)  # no inferred shapes
    shape = [2, *graph.input_shape.as_list()]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    outs = []
    for m in (ref, ours):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        sess = ort.InferenceSession(m.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
        outs.append(sess.run(None, {sess.get_inputs()[0].name: x})[0])
    assert outs[0].dtype == outs[1].dtype == np.float32
    assert np.array_equal(outs[0], outs[1])


# --------------------------------------------------------------------------- int8


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    """The proxy network trained on the digits (4 epochs, one thread: about 15 s), its
    weights as .pt and .safetensors, and its fp32 model."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from shrinkc.compiler import compile_file
    from shrinkc.data import images
    from shrinkc.search.table import TrainSettings
    from shrinkc.search.train import build_module, train

    d = tmp_path_factory.mktemp("proxy")
    spec = d / "digits.shrink"
    spec.write_text(PROXY)
    data = images.digits((1, 8, 8))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: more threads only wait on each other
    try:
        model = build_module(compile_file(spec))
        train(model, data, TrainSettings.of("image", **TRAIN), seed=0)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    torch.save(state, d / "w.pt")
    st = pytest.importorskip("safetensors.torch")
    st.save_file(state, d / "w.safetensors")
    fp32 = _compile(spec, d / "fp32", "--weights", str(d / "w.pt"))
    return {"spec": spec, "dir": d, "data": data, "weights": d / "w.pt", "fp32": fp32}


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32), (3, 17, 29), (1, 224, 224)])
def test_calibration_images_are_the_digits_images(shape):
    """The built-in calibration images (``digits_train_sample``: only the chosen ones resized,
    standardised by statistics computed from the 8x8 images) are ``digits(shape)``'s."""
    pytest.importorskip("sklearn")
    from shrinkc.backends.onnx.precision import calibration_indices, calibration_subset
    from shrinkc.data import images

    ref = images.digits(shape).x_train
    got = images.digits_train_sample(shape, calibration_indices)
    want = calibration_subset(ref)
    assert got.shape == want.shape == (64, *shape) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    every = images.digits_train_sample(shape, lambda n: None)
    np.testing.assert_allclose(every, ref, rtol=0, atol=1e-6)


def _accuracy(path: Path, data) -> float:
    return float((_run(path, data.x_val).argmax(1) == data.y_val).mean())


def test_int8_keeps_accuracy_and_is_3_5x_smaller(proxy, tmp_path):
    """Calibrated on the built-in proxy data (the digits at the network's input)."""
    int8 = _compile(proxy["spec"], tmp_path, "--precision", "int8", "--weights",
                    str(proxy["weights"]))
    model = onnx.load(int8)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert [o.version for o in model.opset_import if o.domain == ""] == [25]
    meta = _meta(int8)
    assert meta["precision"] == "int8" and "digits" in meta["calibration"]
    assert meta["weights"] == "w.pt"
    data = proxy["data"]
    fp32_acc, int8_acc = _accuracy(proxy["fp32"], data), _accuracy(int8, data)
    assert fp32_acc >= 0.9  # the network learned the task
    assert abs(int8_acc - fp32_acc) <= 0.01, (fp32_acc, int8_acc)
    ratio = proxy["fp32"].stat().st_size / int8.stat().st_size
    assert ratio >= 3.5, f"only {ratio:.2f}x smaller"


def test_int8_model_does_not_depend_on_the_calibration_batch(proxy, monkeypatch):
    """MinMax ranges are minima and maxima over the batches: calibrating in batches of 8
    (``CALIBRATION_BATCH``, for memory) gives the model that batches of 64 give."""
    from shrinkc.backends import onnx as onnx_backend
    from shrinkc.backends.onnx import precision
    from shrinkc.backends.onnx.checkpoint import load_weights
    from shrinkc.compiler import compile_file

    graph = compile_file(proxy["spec"])
    weights = load_weights(proxy["weights"], graph)
    x = precision.calibration_subset(proxy["data"].x_train)
    models = []
    for batch in (precision.CALIBRATION_BATCH, 64):
        monkeypatch.setattr(precision, "CALIBRATION_BATCH", batch)
        model = onnx_backend.generate(graph, weights, opset=precision.INT8_OPSET)
        models.append(precision.quantize_int8(model, x, "digits").SerializeToString())
    assert models[0] == models[1]


def test_int8_calibrated_on_an_npz(proxy, tmp_path):
    """--calibrate reads an .npz as ``shrink --data`` does (x_train is what calibrates)."""
    data = proxy["data"]
    npz = tmp_path / "cal.npz"
    np.savez(npz, x_train=data.x_train, y_train=data.y_train, x_val=data.x_val, y_val=data.y_val)
    int8 = _compile(proxy["spec"], tmp_path / "out", "--precision", "int8", "--weights",
                    str(proxy["weights"]), "--calibrate", str(npz), "--opset", "17")
    assert [o.version for o in onnx.load(int8).opset_import if o.domain == ""] == [17]
    assert _meta(int8)["calibration"] == "cal.npz (64 images)"  # of 1,437: the default limit
    assert abs(_accuracy(int8, data) - _accuracy(proxy["fp32"], data)) <= 0.01


def test_int8_compile_never_imports_torch(proxy, tmp_path):
    """With .safetensors weights, compiling to int8 (and fp16) loads no torch."""
    code = (
        "import sys\n"
        "from shrinkc.cli import main\n"
        "for p in ('int8', 'fp16'):\n"
        f"    rc = main(['compile', {str(proxy['spec'])!r}, '--target', 'onnx', '-o', "
        f"{str(tmp_path)!r} + '/' + p, '--precision', p, '--weights', "
        f"{str(proxy['dir'] / 'w.safetensors')!r}])\n"
        "    assert rc == 0, rc\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "int8" / "digits.onnx").is_file()
    assert (tmp_path / "fp16" / "digits.onnx").is_file()


# --------------------------------------------------------------------------- errors


def test_precision_usage_errors(capsys, tmp_path, proxy):
    spec, w = str(proxy["spec"]), str(proxy["weights"])
    out = str(tmp_path / "out")
    base = ["compile", spec, "-o", out]
    _fails(capsys, [*base, "--target", "onnx", "--precision", "int8"], 2, "--weights")
    _fails(capsys, [*base, "--precision", "fp16"], 2, "--precision only applies to --target onnx")
    _fails(capsys, [*base, "--target", "onnx", "--calibrate", "x.npz"], 2,
           "--calibrate only applies to --precision int8")
    _fails(capsys, [*base, "--target", "onnx", "--precision", "fp16", "--calibrate", "x.npz"],
           2, "--calibrate only applies to --precision int8")
    _fails(capsys, [*base, "--target", "onnx", "--precision", "int8", "--weights", w,
                    "--opset", "28"], 2, "up to opset 25")
    _fails(capsys, [*base, "--target", "onnx", "--precision", "fp16", "--functions"], 2,
           "--functions")
    with pytest.raises(SystemExit) as e:
        main([*base, "--target", "onnx", "--precision", "int4"])
    assert e.value.code == 2
    assert not (tmp_path / "out").exists()


def test_the_export_rules_are_the_backends():
    """What may be exported is decided in ``backends/onnx/export.py``; the command line only
    reports its refusals (as usage errors, above)."""
    from shrinkc.backends.onnx import OPSET
    from shrinkc.backends.onnx.export import OptionError, export, export_opset
    from shrinkc.backends.onnx.precision import INT8_OPSET
    from shrinkc.compiler import compile_file
    from shrinkc.compiler.errors import ShrinkError

    assert export_opset() == export_opset("fp16") == OPSET
    assert export_opset("int8", weights=True) == INT8_OPSET
    assert export_opset("fp16", 13) == 13 and export_opset("fp32", 17, functions=True) == 17
    for args, kwargs, needle in ((("int8",), {}, "trained weights"),
                                 (("int8", OPSET), {"weights": True}, "up to opset 25"),
                                 (("fp16",), {"functions": True}, "flat graph"),
                                 (("int4",), {}, "unknown precision")):
        with pytest.raises(OptionError, match=needle):
            export_opset(*args, **kwargs)
    with pytest.raises(ShrinkError, match="language model"):
        export(compile_file(TINY_LM), precision="fp16")


def test_calibration_data_errors(capsys, tmp_path, proxy):
    """Each bad calibration file is a message naming it and what is wrong; nothing is
    written."""
    spec, w = str(proxy["spec"]), str(proxy["weights"])
    out = tmp_path / "out"
    argv = ["compile", spec, "--target", "onnx", "-o", str(out), "--precision", "int8",
            "--weights", w, "--calibrate"]
    data = proxy["data"]
    wrong = tmp_path / "wrong.npz"  # images of another size than the network takes
    x16 = np.zeros((20, 1, 16, 16), np.float32)
    y = np.zeros(20, np.int64)
    np.savez(wrong, x_train=x16, y_train=y, x_val=x16, y_val=y)
    _fails(capsys, [*argv, str(wrong)], 1, "--calibrate", "1x16x16 but DigitsNet takes 1x8x8",
           "--input")
    val = tmp_path / "val.npz"  # the validation images too, as uint8 N x H x W x C
    np.savez(val, x_train=data.x_train[:20], y_train=y, x_val=np.zeros((20, 16, 16, 1), np.uint8),
             y_val=y)
    _fails(capsys, [*argv, str(val)], 1, "x_val images are 1x16x16 but DigitsNet takes 1x8x8")
    missing = tmp_path / "missing.npz"
    np.savez(missing, x_train=data.x_train)
    _fails(capsys, [*argv, str(missing)], 1, "--calibrate", "missing array 'y_train'")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    _fails(capsys, [*argv, str(garbage)], 1, "--calibrate", "cannot read")
    nan = tmp_path / "nan.npz"
    xn = data.x_train.copy()
    xn[0, 0, 0, 0] = np.nan
    np.savez(nan, x_train=xn, y_train=data.y_train, x_val=data.x_val, y_val=data.y_val)
    _fails(capsys, [*argv, str(nan)], 1, "NaN")
    _fails(capsys, [*argv, str(tmp_path / "nowhere.npz")], 1, "no such data file")
    assert not out.exists()


def test_language_models_stay_fp32(capsys, tmp_path):
    _fails(capsys, ["compile", str(TINY_LM), "--target", "onnx", "-o", str(tmp_path),
                    "--precision", "fp16"], 1, "language model")


# --------------------------------------------------------------------------- bench


def _bench(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["bench", *argv])
    return rc, capsys.readouterr().out


def test_bench_json(capsys, proxy):
    rc, out = _bench(capsys, str(proxy["fp32"]), "--json", "--runs", "30", "--warmup", "3",
                     "--batch", "4", "--threads", "2")
    assert rc == 0
    r = json.loads(out)
    assert r["file"] == proxy["fp32"].as_posix()
    assert r["bytes"] == proxy["fp32"].stat().st_size
    assert r["network"] == "DigitsNet" and r["precision"] == "fp32"
    assert r["onnxruntime"] == ort.__version__ and r["provider"] == "CPUExecutionProvider"
    assert r["inputs"] == [{"name": "image", "shape": [4, 1, 8, 8], "type": "float32"}]
    assert (r["threads"], r["batch"], r["runs"], r["warmup"]) == (2, 4, 30, 3)
    assert 0 < r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] < 1000
    assert r["min_ms"] <= r["mean_ms"]
    # throughput: batch items over the timed runs' total time (the mean latency's)
    assert r["images_per_s"] == pytest.approx(4 * 1000 / r["mean_ms"], rel=1e-2)


def test_bench_table_and_defaults(capsys, proxy, tmp_path):
    int8 = _compile(proxy["spec"], tmp_path, "--precision", "int8", "--weights",
                    str(proxy["weights"]))
    rc, out = _bench(capsys, str(int8), "--runs", "5")
    assert rc == 0
    assert "p50" in out and "p90" in out and "images/s" in out
    assert "int8" in out and "1 thread," in out and "5 runs after 10 warm-up" in out
    assert "1x1x8x8" in out  # batch 1 by default


def test_bench_errors(capsys, tmp_path):
    _fails(capsys, ["bench", str(tmp_path / "nowhere.onnx")], 1, "no such file")
    _fails(capsys, ["bench", str(tmp_path)], 1, "not a regular file")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 this is not a protobuf model \xff" * 10)
    _fails(capsys, ["bench", str(junk)], 1, "cannot load", "as an ONNX model")
    dyn = _compile(TEST_SPECS / "tiny_space.shrink", tmp_path / "dyn", "--input", "3xHxW")
    _fails(capsys, ["bench", str(dyn)], 1, "dynamic dimension", "height")
    for flag, value in (("--runs", "0"), ("--threads", "0"), ("--batch", "-1"),
                        ("--warmup", "x"), ("--batch", "9" * 40)):
        with pytest.raises(SystemExit) as e:
            main(["bench", str(junk), flag, value])
        assert e.value.code == 2
        assert "Traceback" not in capsys.readouterr().err


def test_bench_language_model_at_a_sequence_length(capsys, tmp_path):
    """A language model's open time axis takes --seq (default 35): the tokens fed are
    batch x seq, and the throughput is also given in tokens."""
    from shrinkc.commands.bench import SEQ

    lm = _compile(TINY_LM, tmp_path / "lm")
    rc, out = _bench(capsys, str(lm), "--json", "--runs", "4", "--warmup", "1", "--batch", "2")
    assert rc == 0
    r = json.loads(out)
    assert SEQ == 35 and r["seq"] == SEQ
    assert r["inputs"] == [{"name": "tokens", "shape": [2, SEQ], "type": "int64"}]
    assert r["tokens_per_s"] == pytest.approx(r["images_per_s"] * SEQ, rel=1e-3)  # rounded
    rc, out = _bench(capsys, str(lm), "--seq", "7", "--runs", "3", "--warmup", "0")
    assert rc == 0 and "tokens 1x7 int64 (sequences of 7 tokens)" in out and "tokens/s" in out
    with pytest.raises(SystemExit) as e:
        main(["bench", str(lm), "--seq", "0"])
    assert e.value.code == 2
