"""Image folders (``data/folders.py``, prepared by ``data/images.py``): every Pillow image
mode decodes to what Pillow itself makes of the file (open, convert, bilinear resize; 16-bit
grey scaled, not clipped); train/ and val/ folders, or class folders alone split 80/20
(stratified, seeded); class indices follow the sorted folder names; hidden and other files
are ignored, a symlink loop is walked once, mixed sizes are resized; a broken image, an
empty class folder, a class missing from val/ and too much data are located errors. The
images are made here with Pillow, small, in tmp_path."""

from __future__ import annotations

import numpy as np
import pytest

from shrinkc.data import folders, images

from data_helpers import _cached, _error, _expected, _save, _tree

Image = pytest.importorskip("PIL.Image")

pytestmark = pytest.mark.usefixtures("cache_dir")  # each test's own decoded-data cache
MODES = ("RGB", "L", "P", "RGBA", "CMYK", "I;16", "I", "F", "LA", "1")
SAVE_AS = {"RGB": ".jpg", "L": ".png", "P": ".gif", "RGBA": ".png", "CMYK": ".tiff",
           "I;16": ".png", "I": ".tif", "F": ".tiff", "LA": ".png", "1": ".bmp"}


# ----------------------------------------------------------------------------- image modes


@pytest.mark.parametrize("mode", MODES)
def test_every_image_mode_decodes_as_pillow_does(tmp_path, mode):
    path = _save(tmp_path / f"img{SAVE_AS[mode]}", mode, size=(13, 9))
    with Image.open(path) as im:
        assert im.mode == mode or (mode, im.mode) in {("I;16", "I;16"), ("1", "1")}, im.mode
    for channels, (h, w) in ((1, (8, 8)), (3, (8, 8)), (3, (20, 16)), (1, (9, 13))):
        got = folders.decode(path, channels, (h, w))
        assert got.dtype == np.uint8 and got.shape == (h, w, channels)
        np.testing.assert_array_equal(got, _expected(path, channels, h, w))


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(path)
    half = tmp_path / "half.png"
    Image.fromarray(np.full((4, 4), 32896, np.uint16)).save(half)
    assert (folders.decode(path, 1, (4, 4)) == 255).all()
    assert (folders.decode(half, 1, (4, 4)) == 128).all()


# ----------------------------------------------------------------------------- layouts


def test_train_and_val_folders(tmp_path):
    root = tmp_path / "imgs"
    files = _tree(root, split_layout=True)
    (root / "test" / "ant").mkdir(parents=True)  # never read (an empty class there is fine)
    p = images.prepare(str(root), (3, 8, 8))
    arrays = _cached(p)
    assert [str(c) for c in arrays["classes"]] == ["Moth", "ant", "zebra"]  # sorted order
    for split in ("train", "val"):
        want = np.stack([_expected(f, 3, 8, 8) for f in files[split]])
        np.testing.assert_array_equal(arrays[f"x_{split}"], want)
        assert arrays[f"y_{split}"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert p.data.classes == 3 and p.data.x_train.shape == (12, 3, 8, 8)
    assert p.data.x_train.dtype == np.float32 and p.data.y_train.dtype == np.int64
    # standardised as load_npz does it: on the training images, per channel
    x = arrays["x_train"].transpose(0, 3, 1, 2).astype(np.float32) / 255
    mean, std = x.mean(axis=(0, 2, 3), keepdims=True), x.std(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(p.data.x_train, (x - mean) / (std + 1e-6), atol=1e-5)
    assert p.record["data_split"] == "train/ and val/ folders"
    assert p.record["subset"] is None and len(p.record["data_sha256"]) == 64


def test_class_folders_alone_are_split_80_20_stratified_and_seeded(tmp_path):
    root = tmp_path / "imgs"
    files = _tree(root, split_layout=False, per_class=10, size=(7, 5))
    p = images.prepare(str(root), (1, 6, 6))
    arrays = _cached(p)
    assert np.bincount(arrays["y_val"]).tolist() == [2, 2, 2]
    assert np.bincount(arrays["y_train"]).tolist() == [8, 8, 8]
    every = np.stack([_expected(f, 1, 6, 6) for f in files["all"]])
    labels = np.repeat(np.arange(3), 10)
    tr, va = images._stratified_split(labels, 0.2, seed=0)
    np.testing.assert_array_equal(arrays["x_train"], every[tr])
    np.testing.assert_array_equal(arrays["x_val"], every[va])
    assert "80%/20%" in p.record["data_split"] and "seed 0" in p.record["data_split"]
    assert images.prepare(str(root), (1, 6, 6)).source == p.source  # the same, again


def test_a_symlink_loop_is_walked_once(tmp_path):
    root = tmp_path / "imgs"
    _save(root / "a" / "x.png")
    _save(root / "b" / "y.png")
    (root / "a" / "loop").symlink_to(root / "a")
    tree = folders.scan(root)
    assert tree.files["all"] == [("a/x.png", 0), ("b/y.png", 1)]


def test_mixed_sizes_are_resized(tmp_path):
    root = tmp_path / "imgs"
    for i, size in enumerate(((5, 7), (31, 12), (8, 8), (64, 3))):
        _save(root / "train" / "a" / f"{i}.png", "RGB", size, i)
        _save(root / "val" / "a" / f"{i}.png", "L", size, i + 10)
    arrays = _cached(images.prepare(str(root), (3, 8, 8)))
    assert arrays["x_train"].shape == (4, 8, 8, 3) and arrays["x_val"].shape == (4, 8, 8, 3)
    np.testing.assert_array_equal(arrays["x_val"][3], _expected(root / "val/a/3.png", 3, 8, 8))


def test_folder_errors_are_located(tmp_path):
    root = tmp_path / "imgs"
    _tree(root, split_layout=True, per_class=2)
    bad = root / "train" / "ant" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    e = _error(root)
    assert bad.as_posix() in str(e) and "cannot decode" in str(e) and e.diagnostic.hint
    bad.unlink()
    whole = _save(tmp_path / "whole.jpg", "RGB", (40, 40), 7).read_bytes()
    truncated = root / "train" / "ant" / "cut.jpg"
    truncated.write_bytes(whole[: len(whole) // 2])
    e = _error(root)
    assert truncated.as_posix() in str(e) and "cannot decode" in str(e)
    truncated.unlink()
    images.prepare(str(root), (3, 8, 8))  # fine again

    empty = root / "val" / "zebra"
    for f in list(empty.iterdir()):
        if f.is_file() and f.suffix.lower() in folders.EXTENSIONS:
            f.unlink()
    e = _error(root)
    assert empty.as_posix() in str(e) and "empty class folder" in str(e) and e.diagnostic.hint

    root2 = tmp_path / "imgs2"
    _tree(root2, split_layout=True, per_class=1)
    _save(root2 / "train" / "wasp" / "a.png")
    e = _error(root2)
    assert "class 'wasp' is in train/ but not in val/" in str(e)
    assert (root2 / "train" / "wasp").as_posix() in str(e) and e.diagnostic.hint
    _save(root2 / "val" / "wasp" / "a.png")
    _save(root2 / "val" / "bee" / "a.png")
    assert "class 'bee' is in val/ but not in train/" in str(_error(root2))

    only_train = tmp_path / "imgs3"
    _save(only_train / "train" / "a" / "x.png")
    assert "has train/ but no val/" in str(_error(only_train))
    nothing = tmp_path / "imgs4"
    nothing.mkdir()
    (nothing / "readme.txt").write_text("hi")
    e = _error(nothing)
    assert "no class folders" in str(e) and nothing.as_posix() in str(e) and e.diagnostic.hint
    assert "1 or 3 channels" in str(_error(root2, shape=(2, 8, 8)))


def test_memory_is_bounded_before_decoding(tmp_path, monkeypatch):
    root = tmp_path / "imgs"
    _tree(root, split_layout=True, per_class=2)
    monkeypatch.setattr(images, "MAX_BYTES", 10_000)
    monkeypatch.setattr(folders, "decode", lambda *a: pytest.fail("decoded anyway"))
    e = _error(root, shape=(3, 32, 32))
    assert "12 images of 3x32x32" in str(e) and "GiB" in str(e) and "--subset" in e.diagnostic.hint
