"""``--input CxHxW`` with the letters H and W: an ONNX model for any height and width.

One file, fed 224, 160 and 96 pixel images, matches the generated PyTorch module (with the
same trained-like weights) at each; a network whose output depends on the size, and the
commands where a symbolic size means nothing, are errors.
"""

from __future__ import annotations

import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
np = pytest.importorskip("numpy")

from test_onnx import TOLERANCE, _rel_err, torch, trained  # noqa: F401 - fixtures

from shrinkc.cli import main

from conftest import TEST_SPECS


@pytest.mark.parametrize("name", ["shrinkcnn_a", "mobilenetv2"])
def test_one_file_takes_any_height_and_width(name, trained, torch, tmp_path):  # noqa: F811
    t = trained(name)
    out = tmp_path / "o"
    assert main(["compile", str(t["spec"]), "--target", "onnx", "--input", "3xHxW",
                 "--weights", str(t["weights"]), "-o", str(out)]) == 0
    model = onnx.load(out / f"{name}.onnx")
    onnx.checker.check_model(model, full_check=True)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]
    assert {p.key: p.value for p in model.metadata_props}["input"] == "any height and width"
    sess = ort.InferenceSession(str(out / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(3)
    for size, batch in ((224, 1), (160, 3), (96, 2)):
        x = torch.randn(batch, 3, size, size, generator=gen)
        with torch.no_grad():
            ref = t["model"](x).numpy()
        (got,) = sess.run(None, {model.graph.input[0].name: x.numpy()})
        assert got.shape == ref.shape
        assert _rel_err(got, ref) <= TOLERANCE, (size, batch)


def test_a_head_that_does_not_pool_globally_cannot_take_any_size(tmp_path, capsys):
    spec = tmp_path / "flat.shrink"
    spec.write_text("shrink 1\n\nnetwork Flat(classes = 10) {\n    input image[3, 8, 8]\n"
                    "    stem conv(4, k=3) relu\n    head flatten -> linear(classes)\n}\n")
    assert main(["check", str(spec)]) == 0
    assert main(["compile", str(spec), "--target", "onnx", "--input", "3xHxW",
                 "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "flat.shrink:3:" in err and "head does not pool globally" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["stats", "--input", "3xHxW"], "stats counts MACs at one size"),
    (["compile", "--target", "pytorch", "--input", "3xHxW"], "is for --target onnx only"),
    (["compile", "--target", "onnx", "--input", "3xHxQ"], "--input must be CxHxW"),
])
def test_symbolic_sizes_where_they_mean_nothing_are_usage_errors(argv, message, tmp_path,
                                                                  capsys):
    spec = str(TEST_SPECS / "tiny.shrink")
    out = ["-o", str(tmp_path)] if argv[0] == "compile" else []
    assert main([argv[0], spec, *argv[1:], *out]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
