"""Data sources on the command line, end to end: ``shrinkc shrink --data`` on an image folder
records the data in run.json and trains on it, and ``compile --precision int8 --calibrate``
calibrates on an image folder."""

from __future__ import annotations

import json

import pytest

from conftest import run_shrink
from data_helpers import TINY, _tree

pytestmark = pytest.mark.usefixtures("cache_dir")  # each test's own decoded-data cache


def test_shrink_on_an_image_folder_end_to_end(tmp_path):
    root = tmp_path / "imgs"
    _tree(root, split_layout=True, per_class=6, size=(11, 9))
    out = tmp_path / "run"
    r = run_shrink(TINY, out, "--data", str(root), "--max-steps", "1")
    assert "1 step(s)" in r.stdout and (out / "best.shrink").exists()
    meta = json.loads((out / "run.json").read_text())
    assert meta["data"] == str(root) and meta["data_split"] == "train/ and val/ folders"
    assert len(meta["data_sha256"]) == 64 and meta["subset"] is None
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all(0 <= e["acc"] <= 1 for e in log)


CAL = """\
shrink 1
network Small(classes = 3) {
    input image[3, 8, 8]
    stem conv(8, k=3) relu
    head global_avgpool -> linear(classes)
}
"""


def test_compile_int8_calibrates_on_an_image_folder(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxconverter_common")
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    import onnx

    from shrinkc.cli import main
    from shrinkc.compiler import compile_file
    from shrinkc.search.train import build_module

    spec = tmp_path / "small.shrink"
    spec.write_text(CAL)
    torch.manual_seed(0)
    model = build_module(compile_file(spec))
    st.save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                 tmp_path / "w.safetensors")
    root = tmp_path / "imgs"
    _tree(root, split_layout=True, per_class=4)
    out = tmp_path / "out"
    assert main(["compile", str(spec), "--target", "onnx", "-o", str(out), "--precision",
                 "int8", "--weights", str(tmp_path / "w.safetensors"), "--calibrate",
                 str(root)]) == 0
    meta = {p.key: p.value for p in onnx.load(out / "small.onnx").metadata_props}
    assert meta["calibration"] == "imgs (12 images)"
