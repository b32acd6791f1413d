"""Helpers for the data-source tests (test_data_*.py): random Pillow images of every mode,
image folders in torchvision's ImageFolder layout, CIFAR-10 python batches in the real
format, what Pillow itself makes of an image file, and the decoded-data cache's arrays.
Every test there runs with its own cache (conftest's ``cache_dir``)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from shrinkc.compiler.errors import ShrinkError
from shrinkc.data import cache, images

from conftest import TEST_SPECS

Image = pytest.importorskip("PIL.Image")


TINY = TEST_SPECS / "tiny_space.shrink"  # a proxy network on 1x8x8 images, classes = 10


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


def _error(data, shape=(3, 8, 8), subset=None) -> ShrinkError:
    with pytest.raises(ShrinkError) as e:
        images.prepare(str(data), shape, subset)
    return e.value


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
