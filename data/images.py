"""Proxy-task data for the shrinker: scikit-learn's bundled digits (plain, or cluttered: a
harder task made from them), or a user's ``.npz``.

Everything is checked before any training starts; a problem is a ``ShrinkError`` naming the
array and what is wrong. Nothing is downloaded. numpy only (torch is not imported here).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shrinkc.compiler.errors import ShrinkError

from . import cache, npz

DIGITS = "digits"
CLUTTERED = "cluttered-digits"  # --data cluttered-digits: the harder built-in proxy
NPZ_KEYS = npz.KEYS
MAX_CLASSES = npz.MAX_CLASSES  # labels are class indices 0..K-1
MAX_BYTES = npz.MAX_BYTES  # the most proxy data may take in memory, float32 and standardised


file_sha256 = cache.file_sha256  # the sha256 of a file's contents (corpus.py uses it too)


def fingerprint(data: str | None) -> str:
    """What run.json records of the proxy data's contents: the .npz file's sha256, or
    ``digits`` or ``cluttered-digits`` for the built-in data."""
    if data in (None, DIGITS, CLUTTERED):
        return data or DIGITS
    return file_sha256(data)


@dataclass
class ProxyData:
    x_train: np.ndarray  # float32, N x C x H x W, standardised
    y_train: np.ndarray  # int64
    x_val: np.ndarray
    y_val: np.ndarray
    classes: int
    name: str

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def _resize(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of N x C x H x W images (align_corners=False), in numpy."""
    n, c, h0, w0 = x.shape
    if (h0, w0) == (h, w):
        return x

    def axis(src: int, dst: int):
        pos = (np.arange(dst) + 0.5) * src / dst - 0.5
        pos = np.clip(pos, 0, src - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, src - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    ylo, yhi, yf = axis(h0, h)
    xlo, xhi, xf = axis(w0, w)
    rows = x[:, :, ylo, :] * (1 - yf)[None, None, :, None] + x[:, :, yhi, :] * yf[None, None, :, None]
    return rows[:, :, :, xlo] * (1 - xf) + rows[:, :, :, xhi] * xf


def _stratified_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        k = int(round(len(idx) * val_fraction))
        val.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _standardise(x_train: np.ndarray, x_val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x_train.mean(axis=(0, 2, 3), keepdims=True)
    std = x_train.std(axis=(0, 2, 3), keepdims=True) + 1e-6
    return ((x_train - mean) / std).astype(np.float32), ((x_val - mean) / std).astype(np.float32)


def _bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits (``sklearn.datasets.load_digits``): the 1,797 8x8 images
    (float64, 0..16) and their labels (int64)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ShrinkError("the built-in proxy data needs scikit-learn", None,
                          "pip install 'shrinkc[search]', or pass --data file.npz") from None
    d = load_digits()
    return d.images, d.target.astype(np.int64)


def _load_digits(shape: tuple[int, ...]):
    """scikit-learn's digits as (N, 1, 8, 8) float32 in [0, 1], their labels, and ``shape``
    (C, H, W) checked."""
    if len(shape) != 3:
        raise ShrinkError(f"the digits proxy data needs an image-shaped network input, got {shape}")
    images, target = _bundled_digits()
    return (images.astype(np.float32) / 16.0)[:, None, :, :], target, shape


def digits(shape: tuple[int, ...]) -> ProxyData:
    """scikit-learn's 1,797 8x8 digits, resized to ``shape`` (C x H x W), channels repeated,
    with a fixed stratified 80/20 train/validation split."""
    x, target, (c, h, w) = _load_digits(shape)
    x = np.repeat(_resize(x, h, w), c, axis=1)
    y = target.astype(np.int64)
    tr, va = _stratified_split(y, 0.2, seed=0)
    x_train, x_val = _standardise(x[tr], x[va])
    return ProxyData(x_train, y[tr], x_val, y[va], classes=10, name="digits")


def _resize_matrix(src: int, dst: int) -> np.ndarray:
    """The dst x src matrix of ``_resize`` along one axis (float64)."""
    pos = np.clip((np.arange(dst) + 0.5) * src / dst - 0.5, 0, src - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, src - 1)
    f = pos - lo
    m = np.zeros((dst, src))
    np.add.at(m, (np.arange(dst), lo), 1 - f)
    np.add.at(m, (np.arange(dst), hi), f)
    return m


def digits_train_sample(shape: tuple[int, ...], pick) -> np.ndarray:
    """``digits(shape).x_train[pick(len(x_train))]`` (``pick``: the indices to keep, or None
    for all) without resizing the images left out: the mean and standard deviation that
    standardise them are those of every resized training image, computed from the 8x8
    images (bilinear resizing is linear: the mean and the mean square of a resized image
    are a linear and a quadratic form of the small one), in float64. The same images as
    ``digits``' up to rounding (float32: about 1e-6), in a fraction of its time and memory
    (``compile --precision int8`` calibrates on 256 of them)."""
    x, target, (c, h, w) = _load_digits(shape)
    tr, _ = _stratified_split(target.astype(np.int64), 0.2, seed=0)
    small = x[tr, 0].astype(np.float64)  # N x 8 x 8
    ry, rx = _resize_matrix(small.shape[1], h), _resize_matrix(small.shape[2], w)
    a, b = ry.sum(axis=0), rx.sum(axis=0)  # each small pixel's weight in the resized sum
    gy, gx = ry.T @ ry, rx.T @ rx
    count = len(small) * h * w
    mean = np.einsum("i,nij,j->", a, small, b) / count
    square = np.einsum("nij,ik,jl,nkl->", small, gy, gx, small) / count
    std = np.sqrt(max(square - mean * mean, 0.0)) + 1e-6
    idx = pick(len(tr))
    keep = x[tr] if idx is None else x[tr[idx]]
    out = ((_resize(keep, h, w) - np.float32(mean)) / np.float32(std)).astype(np.float32)
    return np.repeat(out, c, axis=1) if c > 1 else out


def cluttered_digits(shape: tuple[int, ...]) -> ProxyData:
    """A harder built-in proxy made from the same bundled digits, after the "cluttered MNIST"
    benchmarks: each digit, resized to a random size between 3/8 and 5/8 of the canvas, is
    pasted at a random place on a canvas of the network's input size, over six fragments
    (a fifth of the canvas wide) cut from other random digits, with Gaussian noise (sigma
    0.1); a fixed seed, the same stratified 80/20 split as ``digits``. On ``digits`` every
    reasonable cell of the paper's space reaches 0.99 validation accuracy and cells differ by
    a few images; here the task leaves room between good and poor cells."""
    if len(shape) != 3 or min(shape[1:]) < 8:
        raise ShrinkError(f"the cluttered-digits proxy data needs an image input of at least "
                          f"8x8, got {shape}")
    c, h, w = shape
    images, target = _bundled_digits()
    imgs = (images.astype(np.float32) / 16.0)[:, None, :, :]
    n = len(imgs)
    rng = np.random.default_rng(2020)
    canvas = np.zeros((n, h, w), dtype=np.float32)
    lo, hi = max(4, 3 * min(h, w) // 8), max(5, 5 * min(h, w) // 8)
    frag = max(2, min(h, w) // 5)
    sized = {size: _resize(imgs, size, size)[:, 0] for size in range(lo, hi + 1)}

    def paste(i: int, img: np.ndarray, y: int, x: int) -> None:
        ph, pw = img.shape
        canvas[i, y:y + ph, x:x + pw] = np.maximum(canvas[i, y:y + ph, x:x + pw], img)

    for i in range(n):
        for _ in range(6):
            size = int(rng.integers(lo, hi + 1))
            other = sized[size][int(rng.integers(n))]
            y0, x0 = (int(v) for v in rng.integers(0, size - frag + 1, size=2))
            paste(i, other[y0:y0 + frag, x0:x0 + frag], int(rng.integers(0, h - frag + 1)),
                  int(rng.integers(0, w - frag + 1)))
        size = int(rng.integers(lo, hi + 1))
        paste(i, sized[size][i], int(rng.integers(0, h - size + 1)),
              int(rng.integers(0, w - size + 1)))
    canvas += rng.normal(0.0, 0.1, size=canvas.shape).astype(np.float32)
    x = np.repeat(canvas[:, None], c, axis=1)
    y = target
    tr, va = _stratified_split(y, 0.2, seed=0)
    x_train, x_val = _standardise(x[tr], x[va])
    return ProxyData(x_train, y[tr], x_val, y[va], classes=10, name=CLUTTERED)


def load_npz(path: str | Path, shape: tuple[int, ...]) -> ProxyData:
    """``x_train, y_train, x_val, y_val`` with images as N x C x H x W floats or
    N x H x W x C uint8; checked against the proxy network's input ``shape``, and the memory
    loading takes bounded before any array is read (``npz``)."""
    x_train, y_train, x_val, y_val = npz.load_images(path, shape, MAX_BYTES)
    classes = int(max(y_train.max(), y_val.max())) + 1
    return ProxyData(x_train, y_train, x_val, y_val, classes, str(path))


def load(data: str | None, shape: tuple[int, ...]) -> ProxyData:
    """The proxy data ``data`` names, for a network whose input is ``shape``: the built-in
    digits (None, ``digits``), ``cluttered-digits``, an ``.npz``, an image folder or a CIFAR
    batches folder (decoded once, then read from the cache: see ``prepare``)."""
    if data == CLUTTERED:
        return cluttered_digits(shape)
    if data in (None, DIGITS):
        return digits(shape)
    if Path(data).is_dir():
        return prepare(data, shape).data
    if cache.is_cache_file(data):
        return _load_cache_file(Path(data), shape)
    return load_npz(data, shape)


# --------------------------------------------------------------------------- folders, CIFAR

FOLDER_VAL_FRACTION = 0.2  # class folders alone: the validation split
SPLIT_SEED = 0  # the seed of every split and subset this module makes


@dataclass
class Prepared:
    """Proxy data as the search uses it: the arrays, what its workers load (``source``: the
    name as given, or the decoded-data cache file of an image folder or CIFAR folder), and
    what run.json records of it (``record``: ``data_sha256``, ``data_split``, ``subset`` and
    ``subset_sha256``)."""

    data: ProxyData
    source: str | None
    record: dict


def parse_subset(text: str) -> tuple[int, int]:
    """``--subset N/M`` as (N, M); ValueError saying what is wrong."""
    parts = str(text).split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"--subset is N/M (training/validation images, e.g. 5000/1000), "
                         f"got '{text}'")
    n, m = (int(p) for p in parts)
    if n < 1 or m < 1:
        raise ValueError(f"--subset takes at least one training and one validation image, "
                         f"got '{text}'")
    return n, m


def prepare(data: str | None, shape: tuple[int, ...], subset: str | None = None,
            report=None, progress: bool = True) -> Prepared:
    """The proxy data ``data`` names, with what the search records of it.

    An image folder (``folders``) or a CIFAR batches folder (``cifar``) is decoded once,
    converted to the network's channels and resized to its input (H, W) with Pillow, split
    (class folders alone: a stratified seeded 80/20 split; CIFAR: a stratified seeded 10% of
    the training batches is the validation split, and the test batch is never read), and
    kept in the decoded-data cache (``cache``), keyed by the hash of the files' contents and
    the input shape; later loads read the cache. ``subset`` (``N/M``) keeps N training and
    M validation images, stratified by class and seeded, as a cache file of their own; the
    sha256 of the chosen indices is recorded. Before decoding, the memory the images would
    take is checked against ``MAX_BYTES``. ``report`` receives warnings (a tampered cache);
    ``progress``: a progress bar while decoding, on a terminal."""
    if data is None or not Path(data).is_dir():
        if subset is not None:
            raise ShrinkError(f"--subset takes part of an image folder or a CIFAR batches "
                              f"folder; {data or DIGITS} is neither", None,
                              "drop --subset, or save the subset you want as an .npz")
        return Prepared(load(data, shape), data, {"data_sha256": fingerprint(data)})
    return _prepare_folder(Path(data), shape, subset, report, progress)


def _warner(report):
    from shrinkc.compiler.errors import warning

    def warn(message: str) -> None:
        if report is not None:
            report(warning(message))
        else:
            import sys

            print(f"warning: {message}", file=sys.stderr)

    return warn


def _prepare_folder(root: Path, shape: tuple[int, ...], subset: str | None, report,
                    progress: bool) -> Prepared:
    from . import cifar, folders

    shown = root.as_posix()
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise ShrinkError(f"{shown}: image data needs a network whose input is 1 or 3 "
                          f"channels of H x W, got {'x'.join(map(str, shape))}")
    c, h, w = shape
    wanted = None
    if subset is not None:
        try:
            wanted = parse_subset(subset)
        except ValueError as e:
            raise ShrinkError(str(e)) from None
    lay = cifar.layout(root)
    inner = [n for n in ("cifar-10-batches-py", "cifar-100-python") if (root / n).is_dir()]
    if lay is None and inner:
        raise ShrinkError(f"{shown}: holds {inner[0]}/, not CIFAR's batches themselves", None,
                          f"pass --data {(root / inner[0]).as_posix()}")
    if lay is not None:
        files = cifar.files(root, lay)
        content = _files_sha256(root, files)
        count = sum(p.stat().st_size for p in files[1:]) // (3 * 32 * 32 + 1)
        split = (f"{lay.name} training batches: a stratified {1 - cifar.VAL_FRACTION:.0%}/"
                 f"{cifar.VAL_FRACTION:.0%} split (seed {SPLIT_SEED}); the test batch is not read")
        kind = f"cifar:{lay.name}"
    else:
        tree = folders.scan(root)
        content = folders.content_sha256(root, [f for fs in tree.files.values() for f, _ in fs])
        count = tree.count
        split = ("train/ and val/ folders" if "all" not in tree.files else
                 f"class folders: a stratified {1 - FOLDER_VAL_FRACTION:.0%}/"
                 f"{FOLDER_VAL_FRACTION:.0%} split (seed {SPLIT_SEED})")
        kind = "folder"
    _check_memory(shown, count, shape, wanted)
    k = cache.key(kind, content, f"{c}x{h}x{w}", split)
    warn = _warner(report)
    path = cache.find(k, warn)
    if path is None:
        if lay is not None:
            arrays = _decode_cifar(root, lay, shape, progress)
        else:
            arrays = _decode_tree(tree, shape, progress)
        if not len(arrays["y_val"]):
            raise ShrinkError(f"{shown}: too few images to split off validation images "
                              f"({len(arrays['y_train'])} in all)", None,
                              "add images (each class's validation share is rounded), or "
                              "give train/ and val/ folders")
        path = cache.store(k, arrays)
    record = {"data_sha256": content, "data_split": split, "subset": None,
              "subset_sha256": None}
    if wanted is not None:
        path, record["subset_sha256"] = _subset(shown, path, k, wanted, warn)
        record["subset"] = f"{wanted[0]}/{wanted[1]}"
    proxy = _load_cache_file(path, shape)
    proxy.name = shown
    return Prepared(proxy, path.as_posix(), record)


def _files_sha256(root: Path, paths: list[Path]) -> str:
    """The sha256 of some files' names (relative to ``root``) and contents."""
    h = hashlib.sha256(b"shrinkc data files\n")
    for path in paths:
        try:
            digest = file_sha256(path)
        except OSError as e:
            raise ShrinkError(f"cannot read {path.as_posix()}: {e.strerror}") from None
        h.update(f"{path.relative_to(root).as_posix()}\0{digest}\n".encode())
    return h.hexdigest()


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def _check_memory(shown: str, count: int, shape: tuple[int, ...],
                  subset: tuple[int, int] | None) -> None:
    """Refuse, before decoding, data whose images would take more than ``MAX_BYTES``:
    decoded (one byte a value), or loaded for training (the subset's, with one): as
    float32, standardised, at the peak ``npz.peak_bytes`` counts."""
    c, h, w = shape
    per = c * h * w
    n = sum(subset) if subset is not None else count
    used = npz.peak_bytes([(n, per, 1)])  # as if all were training images: an upper bound
    size = f"{'x'.join(map(str, shape))}"
    if count * per > MAX_BYTES or used > MAX_BYTES:
        what = "decoded" if count * per > MAX_BYTES else "as float32, standardised"
        total, n = (count * per, count) if count * per > MAX_BYTES else (used, n)
        raise ShrinkError(f"{shown}: {n:,} images of {size} would take {_gib(total)} {what}, "
                          f"more than the {_gib(MAX_BYTES)} allowed", None,
                          "take fewer images (--subset N/M) or give the network a smaller "
                          "input")


def _decode_tree(tree, shape: tuple[int, ...], progress: bool) -> dict[str, np.ndarray]:
    """An image folder's images decoded and split: the cache file's arrays."""
    from . import folders

    c, h, w = shape
    names = list(tree.files)
    paths = [tree.root / f for n in names for f, _ in tree.files[n]]
    labels = np.array([i for n in names for _, i in tree.files[n]], dtype=np.int64)
    x = folders.decode_all(paths, c, (h, w), progress)
    if "all" in tree.files:
        tr, va = _stratified_split(labels, FOLDER_VAL_FRACTION, seed=SPLIT_SEED)
    else:
        tr = np.arange(len(tree.files["train"]))
        va = np.arange(len(tr), len(labels))
    return {"x_train": x[tr], "y_train": labels[tr], "x_val": x[va], "y_val": labels[va],
            "classes": np.array(tree.classes, dtype=str)}


def _decode_cifar(root: Path, lay, shape: tuple[int, ...], progress: bool) -> dict[str, np.ndarray]:
    """A CIFAR folder's training images converted to the network's input and split: the
    cache file's arrays."""
    from . import cifar, folders

    c, h, w = shape
    x, y, classes = cifar.read(root, lay)
    if (c, h, w) != (3, 32, 32):
        Image = folders.pillow()
        out = np.empty((len(x), h, w, c), dtype=np.uint8)
        for i, img in folders.progress(list(x), progress, "converting CIFAR images"):
            out[i] = folders.convert(Image.fromarray(img, "RGB"), c, (h, w))
        x = out
    tr, va = _stratified_split(y, cifar.VAL_FRACTION, seed=SPLIT_SEED)
    return {"x_train": x[tr], "y_train": y[tr], "x_val": x[va], "y_val": y[va],
            "classes": np.array(classes, dtype=str)}


def stratified_pick(y: np.ndarray, n: int, seed: int = SPLIT_SEED) -> np.ndarray:
    """``n`` indices of ``y`` (sorted), stratified by class: each class keeps its share of
    ``n`` (rounded by largest remainder, at least one image a class), chosen at random with
    ``seed``. Needs ``len(classes) <= n <= len(y)``."""
    labels, counts = np.unique(y, return_counts=True)
    exact = n * counts / len(y)
    quota = np.minimum(counts, np.maximum(1, np.floor(exact).astype(np.int64)))
    while quota.sum() > n:  # the at-least-one rule overshot: take from the most over
        over = np.where(quota > 1, quota - exact, -np.inf)
        quota[int(np.argmax(over))] -= 1
    while quota.sum() < n:  # the largest remainders first (ties: the lower class)
        room = np.where(quota < counts, exact - quota, -np.inf)
        quota[int(np.argmax(room))] += 1
    rng = np.random.default_rng(seed)
    picked = [np.flatnonzero(y == label)[rng.permutation(int(count))[:q]]
              for label, count, q in zip(labels, counts, quota)]
    return np.sort(np.concatenate(picked))


def _subset(shown: str, path: Path, k: str, wanted: tuple[int, int], warn) -> tuple[Path, str]:
    """The cache file of ``wanted`` (N training, M validation images) of the decoded data in
    ``path``, and the sha256 of the chosen indices."""
    arrays = cache.read(path, MAX_BYTES)
    n_classes = len(arrays["classes"])
    for (n, split) in zip(wanted, ("train", "val")):
        have = len(arrays[f"y_{split}"])
        what = "training" if split == "train" else "validation"
        if n > have:
            raise ShrinkError(f"{shown}: --subset asks for {n:,} {what} images but the data "
                              f"has {have:,}", None,
                              f"ask for at most {len(arrays['y_train'])}/{len(arrays['y_val'])}")
        if n < n_classes:
            raise ShrinkError(f"{shown}: --subset asks for {n:,} {what} images but the data "
                              f"has {n_classes} classes", None,
                              "take at least one image of each class")
    picks = {s: stratified_pick(arrays[f"y_{s}"], n) for n, s in zip(wanted, ("train", "val"))}
    h = hashlib.sha256()
    for s in ("train", "val"):
        h.update(f"{s}:{len(picks[s])}:".encode())
        h.update(picks[s].astype("<i8").tobytes())
    digest = h.hexdigest()
    sub_key = cache.key(k, f"subset {wanted[0]}/{wanted[1]}", digest)
    found = cache.find(sub_key, warn)
    if found is None:
        kept = {f"{a}_{s}": arrays[f"{a}_{s}"][picks[s]]
                for a in ("x", "y") for s in ("train", "val")}
        found = cache.store(sub_key, {**kept, "classes": arrays["classes"]})
    return found, digest


def _load_cache_file(path: Path, shape: tuple[int, ...]) -> ProxyData:
    """A decoded-data cache file, checked against the sha256 in its name, as ``load_npz``
    reads it; with its class count (the length of its ``classes``, from its header)."""
    if not cache.verify(path):
        raise ShrinkError(f"the decoded-data cache {path.as_posix()} is missing or was changed "
                          "after it was written", None,
                          "run the command again: the data is decoded again")
    proxy = load_npz(path, shape)
    with npz.Archive(path) as a:
        if a.missing(["classes"]) is None:
            found = a.member("classes").shape
            proxy.classes = found[0] if len(found) == 1 else proxy.classes
    return proxy
