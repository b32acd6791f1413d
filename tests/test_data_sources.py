"""The data people have (issue 22, part 1): image folders in torchvision's ImageFolder layout
and CIFAR-10/100's python batches, for ``shrinkc shrink --data`` and ``compile --calibrate``.

Every image mode decodes to what Pillow itself makes of the file (open, convert, bilinear
resize); class indices follow the sorted folder names; hidden and other files are ignored; a
broken image, an empty class folder, a class missing from val/, a malicious pickle (nothing of
it runs), a --subset larger than the data and a tampered cache are located errors (or, for
the cache, decoded again with a warning); --subset is deterministic and recorded, and
--resume with another one is refused; the decoded-data cache is used on a second load and on
--resume. The images are made here with Pillow, small, in tmp_path.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from shrinkc.compiler.errors import ShrinkError
from shrinkc.data import cache, cifar, folders, images

from conftest import TEST_SPECS, run_shrink

Image = pytest.importorskip("PIL.Image")

TINY = TEST_SPECS / "tiny_space.shrink"  # a proxy network on 1x8x8 images, classes = 10
MODES = ("RGB", "L", "P", "RGBA", "CMYK", "I;16", "I", "F", "LA", "1")
SAVE_AS = {"RGB": ".jpg", "L": ".png", "P": ".gif", "RGBA": ".png", "CMYK": ".tiff",
           "I;16": ".png", "I": ".tif", "F": ".tiff", "LA": ".png", "1": ".bmp"}


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    """Each test's own decoded-data cache (also for the shrinkc processes it starts)."""
    where = tmp_path / "cache"
    monkeypatch.setenv(cache.ENV, str(where))
    return where


def _pixels(rng, mode: str, w: int, h: int):
    """A random Pillow image of ``mode``."""
    if mode in ("I;16", "I"):
        a = rng.integers(0, 65536, (h, w)).astype(np.uint16 if mode == "I;16" else np.int32)
        return Image.fromarray(a, mode) if mode == "I" else Image.fromarray(a)
    if mode == "F":
        return Image.fromarray((rng.random((h, w)) * 300 - 20).astype(np.float32), "F")
    rgba = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA")
    if mode == "P":
        return rgba.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return rgba.convert(mode)


def _save(path: Path, mode: str = "RGB", size: tuple[int, int] = (12, 10), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = _pixels(np.random.default_rng(seed), mode, *size)
    img.save(path)
    return path


def _expected(path: Path, channels: int, h: int, w: int) -> np.ndarray:
    """What Pillow itself makes of a file: opened, 16-bit grey scaled to 8 bits (the one
    documented step of ours), converted to L or RGB, resized bilinearly; H x W x C."""
    with Image.open(path) as im:
        if im.mode in ("I;16", "I"):
            wide = np.asarray(im).astype(np.int64)
            im = Image.fromarray(np.clip((wide + 128) // 257, 0, 255).astype(np.uint8), "L")
        im = im.convert("L" if channels == 1 else "RGB")
        if im.size != (w, h):
            im = im.resize((w, h), Image.Resampling.BILINEAR)
        a = np.asarray(im)
    return a[:, :, None] if a.ndim == 2 else a


def _cached(prepared) -> dict:
    return cache.read(Path(prepared.source))


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


def _tree(root: Path, split_layout: bool, per_class: int = 4, classes=("zebra", "ant", "Moth"),
          size=(12, 10)) -> dict[str, list[Path]]:
    """An image folder of RGB images; the image files by split (or 'all'), in reading
    order."""
    out: dict[str, list[Path]] = {}
    exts = (".jpg", ".PNG", ".Jpeg", ".bmp", ".TIFF", ".webp", ".ppm", ".gif")
    seed = 0
    for split in (("train", "val") if split_layout else ("all",)):
        base = root / split if split_layout else root
        for name in sorted(classes):
            for i in range(per_class):
                seed += 1
                _save(base / name / f"img{i:02d}{exts[(seed + i) % len(exts)]}", "RGB",
                      size, seed)
                out.setdefault(split, []).append(base / name / f"img{i:02d}"
                                                 f"{exts[(seed + i) % len(exts)]}")
            # ignored: hidden files and folders, other files
            (base / name / "notes.txt").write_text("not an image")
            (base / name / ".DS_Store").write_bytes(b"\0\1")
            _save(base / name / ".hidden.png", "RGB", size, 99)
            _save(base / name / ".thumbs" / "t.png", "RGB", size, 98)
        (base / ".Trash").mkdir(exist_ok=True)
        _save(base / ".Trash" / "x.png")
    return out


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


def _error(data, shape=(3, 8, 8), subset=None) -> ShrinkError:
    with pytest.raises(ShrinkError) as e:
        images.prepare(str(data), shape, subset)
    return e.value


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


# ----------------------------------------------------------------------------- CIFAR


def _cifar10(root: Path, per_batch: int = 20, seed: int = 0, numpy_core: bool = False
             ) -> tuple[np.ndarray, np.ndarray]:
    """A cifar-10-batches-py folder in the real format (protocol 2 pickles of dicts with
    bytes keys), of random images; the training images (N x 32 x 32 x 3) and labels.
    ``numpy_core``: the arrays name numpy.core.multiarray, as the real (Python 2, numpy 1)
    files do."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
             b"ship", b"truck"]

    def dump(name: str, obj) -> None:
        raw = pickle.dumps(obj, protocol=2)
        if numpy_core:  # and the dtype's byte order as a Python 2 str, as in the real files
            raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            raw = raw.replace(b"X\x01\x00\x00\x00|", b"U\x01|")
        (root / name).write_bytes(raw)

    dump("batches.meta", {b"label_names": names, b"num_cases_per_batch": per_batch,
                          b"num_vis": 3072})
    xs, ys = [], []
    for i in range(1, 7):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.permutation(np.arange(per_batch) % 10)]
        name = f"data_batch_{i}" if i <= 5 else "test_batch"
        dump(name, {b"batch_label": f"batch {i}".encode(), b"labels": labels, b"data": data,
                    b"filenames": [f"{i}_{k}.png".encode() for k in range(per_batch)]})
        if i <= 5:
            xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(np.array(labels))
    return np.concatenate(xs), np.concatenate(ys)


@pytest.mark.parametrize("numpy_core", [False, True])
def test_cifar10_batches_are_read(tmp_path, numpy_core):
    root = tmp_path / "cifar-10-batches-py"
    x, y = _cifar10(root, numpy_core=numpy_core)
    p = images.prepare(str(root), (3, 32, 32))
    arrays = _cached(p)
    assert [str(c) for c in arrays["classes"]][:3] == ["airplane", "automobile", "bird"]
    tr, va = images._stratified_split(y, 0.1, seed=0)
    np.testing.assert_array_equal(arrays["x_train"], x[tr])
    np.testing.assert_array_equal(arrays["x_val"], x[va])
    np.testing.assert_array_equal(arrays["y_val"], y[va])
    assert np.bincount(arrays["y_val"]).tolist() == [1] * 10  # 10% of each class
    assert p.data.classes == 10 and "test batch is not read" in p.record["data_split"]
    # the test batch is never read: damaging it changes nothing
    (root / "test_batch").write_bytes(b"garbage")
    assert images.prepare(str(root), (3, 32, 32)).source == p.source
    # converted and resized as Pillow does it
    grey = _cached(images.prepare(str(root), (1, 16, 12)))
    want = folders.convert(Image.fromarray(x[tr[5]], "RGB"), 1, (16, 12))
    ref = np.asarray(Image.fromarray(x[tr[5]], "RGB").convert("L").resize(
        (12, 16), Image.Resampling.BILINEAR))[:, :, None]
    np.testing.assert_array_equal(want, ref)
    np.testing.assert_array_equal(grey["x_train"][5], ref)


def test_cifar100_batches_are_read(tmp_path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, (1000, 3072), dtype=np.uint8)
    fine = [i % 100 for i in range(1000)]
    meta = {b"fine_label_names": [f"c{i:03d}".encode() for i in range(100)],
            b"coarse_label_names": [f"s{i}".encode() for i in range(20)]}
    (root / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    (root / "train").write_bytes(pickle.dumps(
        {b"filenames": [b"x"] * 1000, b"batch_label": b"training batch 1 of 1",
         b"fine_labels": fine, b"coarse_labels": [f // 5 for f in fine], b"data": data},
        protocol=2))
    p = images.prepare(str(root), (3, 32, 32))
    arrays = _cached(p)
    assert p.data.classes == 100 and np.bincount(arrays["y_val"]).tolist() == [1] * 100
    assert str(arrays["classes"][42]) == "c042"
    both = np.concatenate([arrays["x_train"], arrays["x_val"]]).reshape(1000, -1)
    assert sorted(map(bytes, both)) == sorted(
        bytes(r) for r in data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).reshape(1000, -1))
    few = tmp_path / "few"
    _tree(few, split_layout=False, per_class=2)
    assert "too few images to split off validation images" in str(_error(few))


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalEvil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("where", ["data_batch_3", "batches.meta"])
@pytest.mark.parametrize("payload", ["system", "eval", "object array", "codec"])
def test_a_malicious_cifar_pickle_is_refused_and_nothing_runs(tmp_path, where, payload):
    root = tmp_path / "cifar-10-batches-py"
    _cifar10(root)
    marker = tmp_path / "PWNED"
    evil = {"system": _Evil(marker), "eval": _EvalEvil(marker),
            "object array": np.array([_Evil(marker)], dtype=object),
            "codec": None}[payload]
    raw = pickle.dumps({b"data": evil, b"labels": []}, protocol=2)
    if payload == "codec":  # _codecs.encode is allowed for latin-1 only
        raw = (b"\x80\x02}q\x00C\x04dataq\x01c_codecs\nencode\nq\x02X\x03\x00\x00\x00"
               b"abcX\x05\x00\x00\x00rot13\x86R\x00s.")
    (root / where).write_bytes(raw)
    with pytest.raises(ShrinkError) as e:
        images.prepare(str(root), (3, 32, 32))
    assert (root / where).as_posix() in str(e.value)
    assert "refused to load this pickle" in str(e.value) and e.value.diagnostic.hint
    assert not marker.exists()
    # the same file through the plain pickle module would have run the payload
    if payload in ("system", "eval"):
        pickle.loads(raw)
        assert marker.exists()


def test_cifar_damage_and_layout_errors(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    _cifar10(root)
    (root / "data_batch_2").write_bytes(b"\x80\x02}q\x00(")  # cut short
    e = _error(root, (3, 32, 32))
    assert "data_batch_2" in str(e) and "not a CIFAR batch" in str(e)
    (root / "data_batch_2").unlink()
    assert "data_batch_2: missing" in str(_error(root, (3, 32, 32)))
    (root / "data_batch_2").write_bytes(pickle.dumps({b"data": np.zeros((2, 5), np.uint8),
                                                      b"labels": [0, 1]}, protocol=2))
    assert "'data' is not N x 3072 uint8" in str(_error(root, (3, 32, 32)))
    e = _error(tmp_path, (3, 32, 32))  # the folder above it
    assert "holds cifar-10-batches-py/" in str(e) and root.as_posix() in e.diagnostic.hint


# ----------------------------------------------------------------------------- subset


def test_subset_is_stratified_deterministic_and_recorded(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    x, y = _cifar10(root, per_batch=40)  # 200 images: 180 training, 20 validation
    p = images.prepare(str(root), (3, 32, 32), "50/10")
    arrays = _cached(p)
    assert p.record["subset"] == "50/10" and len(p.record["subset_sha256"]) == 64
    assert np.bincount(arrays["y_train"]).tolist() == [5] * 10
    assert np.bincount(arrays["y_val"]).tolist() == [1] * 10
    again = images.prepare(str(root), (3, 32, 32), "50/10")
    assert again.record == p.record and again.source == p.source
    np.testing.assert_array_equal(_cached(again)["x_train"], arrays["x_train"])
    full = _cached(images.prepare(str(root), (3, 32, 32)))
    kept = {bytes(r) for r in arrays["x_train"].reshape(50, -1)}
    assert kept <= {bytes(r) for r in full["x_train"].reshape(180, -1)}
    assert images.prepare(str(root), (3, 32, 32), "51/10").record["subset_sha256"] \
        != p.record["subset_sha256"]


def test_stratified_pick_shares_and_at_least_one_a_class():
    y = np.array([0] * 70 + [1] * 20 + [2] * 9 + [3] * 1)
    for n in (4, 10, 33, 99, 100):
        idx = images.stratified_pick(y, n)
        counts = np.bincount(y[idx], minlength=4)
        assert counts.sum() == n and len(set(idx.tolist())) == n and (counts >= 1).all()
        assert (np.abs(counts - n * np.bincount(y) / len(y)) <= 1.0 + (counts == 1)).all()
        np.testing.assert_array_equal(idx, images.stratified_pick(y, n))


def test_subset_errors(tmp_path):
    root = tmp_path / "imgs"
    _tree(root, split_layout=True, per_class=3)
    e = _error(root, subset="10/3")
    assert "--subset asks for 10 training images but the data has 9" in str(e)
    assert root.as_posix() in str(e) and "at most 9/9" in e.diagnostic.hint
    assert "10 validation images but the data has 9" in str(_error(root, subset="9/10"))
    assert "3 classes" in str(_error(root, subset="2/3"))
    assert "--subset takes part of an image folder" in str(_error("digits", subset="5/5"))
    for bad in ("5", "5/x", "0/3", "1/2/3", "-1/2"):
        with pytest.raises(ValueError):
            images.parse_subset(bad)


# ----------------------------------------------------------------------------- the cache


def test_the_cache_is_used_and_a_tampered_one_is_decoded_again(tmp_path, monkeypatch,
                                                               cache_dir):
    root = tmp_path / "imgs"
    _tree(root, split_layout=True, per_class=2)
    first = images.prepare(str(root), (3, 8, 8))
    assert Path(first.source).parent == cache_dir and cache.is_cache_file(first.source)

    real = folders.decode
    monkeypatch.setattr(folders, "decode", lambda *a: pytest.fail("decoded again"))
    second = images.prepare(str(root), (3, 8, 8))
    assert second.source == first.source
    np.testing.assert_array_equal(second.data.x_val, first.data.x_val)
    # a worker reads the cache file it is given, checked
    np.testing.assert_array_equal(images.load(first.source, (3, 8, 8)).x_train,
                                  first.data.x_train)

    # tampered: the check fails, a warning says so, and the data is decoded again
    raw = bytearray(Path(first.source).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    Path(first.source).write_bytes(bytes(raw))
    with pytest.raises(ShrinkError, match="was changed after it was written"):
        images.load(first.source, (3, 8, 8))
    monkeypatch.setattr(folders, "decode", real)
    warnings = []
    third = images.prepare(str(root), (3, 8, 8), report=warnings.append)
    assert len(warnings) == 1 and "was changed after it was written" in warnings[0].message
    assert third.source == first.source and cache.verify(Path(third.source))
    np.testing.assert_array_equal(third.data.x_train, first.data.x_train)
    # the content is hashed, not the names, sizes and times: a changed image is new data
    ppm = root / "val" / "ant" / "same.ppm"
    _save(ppm, "RGB", (12, 10), 1)
    before = images.prepare(str(root), (3, 8, 8)).record["data_sha256"]
    st = ppm.stat()
    _save(ppm, "RGB", (12, 10), 2)  # a PPM of the same dimensions: the same size
    os.utime(ppm, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert ppm.stat().st_size == st.st_size
    assert images.prepare(str(root), (3, 8, 8)).record["data_sha256"] != before


def test_cache_write_failure_is_an_error(tmp_path, monkeypatch):
    root = tmp_path / "imgs"
    _tree(root, split_layout=True, per_class=1)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv(cache.ENV, str(blocker / "cache"))
    e = _error(root)
    assert "cannot write the decoded-data cache" in str(e) and cache.ENV in e.diagnostic.hint


# ----------------------------------------------------------------------------- end to end


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


def test_subset_resumes_only_with_the_same_subset(tmp_path):
    root = tmp_path / "imgs"
    _tree(root, split_layout=True, per_class=5)
    out = tmp_path / "run"
    run_shrink(TINY, out, "--data", str(root), "--subset", "9/6", "--max-steps", "0")
    meta = json.loads((out / "run.json").read_text())
    assert meta["subset"] == "9/6" and len(meta["subset_sha256"]) == 64
    for extra, message in (
            (("--subset", "12/6"), "cannot resume: the run began with --subset 9/6, not 12/6"),
            ((), "cannot resume: the run began with --subset 9/6; give it again")):
        r = run_shrink(TINY, out, "--data", str(root), *extra, "--max-steps", "0", "--resume",
                       check_rc=False)
        assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr
    run_shrink(TINY, out, "--data", str(root), "--subset", "9/6", "--max-steps", "0",
               "--resume")
    other = tmp_path / "run2"
    run_shrink(TINY, other, "--data", str(root), "--max-steps", "0")
    r = run_shrink(TINY, other, "--data", str(root), "--subset", "9/6", "--max-steps", "0",
                   "--resume", check_rc=False)
    assert r.returncode == 1 and "the run began without --subset (not --subset 9/6)" in r.stderr
    # more than the data: an error before anything is written
    r = run_shrink(TINY, tmp_path / "big", "--data", str(root), "--subset", "100/5",
                   check_rc=False)
    assert r.returncode == 1 and "--subset asks for 100 training images but the data has 15" \
        in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "big" / "run.json").exists()
    r = run_shrink(TINY, tmp_path / "bad", "--data", str(root), "--subset", "x/5",
                   check_rc=False)
    assert r.returncode == 2 and "--subset is N/M" in r.stderr


def test_resume_and_its_workers_read_the_cache(tmp_path, monkeypatch, capsys):
    """The first run decodes; --resume (in this process, with decoding made to fail) reads
    the decoded-data cache, and so does the candidate training it runs."""
    pytest.importorskip("torch")
    from shrinkc.cli import main

    root = tmp_path / "cifar-10-batches-py"
    _cifar10(root, per_batch=40)  # 180 training images, 20 validation images
    out = tmp_path / "run"
    run_shrink(TINY, out, "--data", str(root), "--subset", "30/10", "--max-steps", "1")
    monkeypatch.setattr(folders, "decode", lambda *a: pytest.fail("decoded again"))
    monkeypatch.setattr(folders, "convert", lambda *a: pytest.fail("converted again"))
    monkeypatch.setattr(cifar, "read", lambda *a: pytest.fail("read the batches again"))
    argv = ["shrink", str(TINY), "-o", str(out), "--quiet", "--data", str(root), "--subset",
            "30/10", "--resume", "--max-steps", "2"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "2 step(s)" in capsys.readouterr().out


def test_run_config_takes_subset(tmp_path):
    from shrinkc.search import config

    good = tmp_path / "run.yaml"
    good.write_text("subset: 5000/1000\ndata: imgs\n")
    assert config.load(good)["subset"] == "5000/1000"
    bad = tmp_path / "bad.yaml"
    bad.write_text("subset: 5000-1000\n")
    with pytest.raises(ShrinkError, match="subset is N/M") as e:
        config.load(bad)
    assert e.value.diagnostic.loc.line == 1


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
