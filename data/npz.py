"""A user's ``.npz`` of proxy data (``x_train, y_train, x_val, y_val``), read with what it
declares bounded before anything is allocated.

An ``.npz`` is a zip archive of ``.npy`` arrays, and a small one can declare a great deal: a
264 KB file deflates to 256 MiB of zeros, and uint8 images become float32 (4 bytes a value)
and are standardised (a copy more). So the archive's table of contents and each array's
``.npy`` header (at most numpy's 10,000 bytes, checked before it is read) are read first; the
names, shapes and dtypes are checked against the network's input; then the memory that
loading will take at its peak (``peak_bytes``: the raw array being converted, the float32
images and the copy that standardising makes) is compared with what the file may take
(``allowance``: at most ``INFLATION`` times its size on disk, never less than
``SMALL_FILE_BYTES``, never more than the caller's cap). Only then is any array read, one at
a time, and converted in place. numpy and the standard library only.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shrinkc.compiler.errors import ShrinkError

KEYS = ("x_train", "y_train", "x_val", "y_val")
MAX_CLASSES = 100_000  # labels are class indices 0..K-1; more classes than this is not a label
MAX_HEADER = 10_000  # numpy's own limit on a .npy header (np.lib.format's max_header_size)
MAX_BYTES = 8 << 30  # the most proxy data may take in memory (images.MAX_BYTES)
SMALL_FILE_BYTES = 512 << 20  # what any file may take in memory, however small it is
INFLATION = 256  # what a file may take in memory, in times its size on disk
MAGIC = b"\x93NUMPY"
HOW = "save it with numpy.savez(path, x_train=..., y_train=..., x_val=..., y_val=...)"


def size_text(n: int) -> str:
    """``n`` bytes as a person reads them (``264.0 KiB``, ``3.3 GiB``)."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} bytes"


def allowance(file_size: int, cap: int) -> int:
    """The memory a data file of ``file_size`` bytes may take once loaded: ``INFLATION``
    times its size, at least ``SMALL_FILE_BYTES``, at most ``cap``. Real images compress
    a few times at most (a float32 copy of uint8 images is 4 times their bytes); a file that
    unfolds to more is mostly repeated bytes, and no file under 1 MB brings a command near
    1.5 GB of memory."""
    return min(cap, max(SMALL_FILE_BYTES, INFLATION * file_size))


def _names(names, most: int = 8) -> str:
    """Some of an archive's names, for a message (long or many names cut)."""
    shown = [n if len(n) <= 40 else n[:37] + "..." for n in sorted(names)[:most]]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more:,} more" if more > 0 else "")


@dataclass(frozen=True)
class Member:
    """An array of an archive as its ``.npy`` header declares it."""

    key: str
    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    dtype: np.dtype
    header_bytes: int

    @property
    def count(self) -> int:
        out = 1
        for d in self.shape:
            out *= d
        return out

    @property
    def nbytes(self) -> int:
        return self.count * self.dtype.itemsize


class Archive:
    """An ``.npz`` opened for reading: its array names (``keys``), each array's header
    (``member``) and data (``read``); every problem a ``ShrinkError`` naming the file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.shown = self.path.as_posix()
        try:
            if self.path.exists() and not self.path.is_file():
                raise ShrinkError(f"cannot read {self.shown} as .npz: not a regular file")
            with open(self.path, "rb") as f:
                start = f.read(len(MAGIC))
            self.size = self.path.stat().st_size
        except FileNotFoundError:
            raise ShrinkError(f"no such data file: {self.shown}") from None
        except OSError as e:
            raise ShrinkError(f"cannot read {self.shown}: {e.strerror or e}") from None
        if start == MAGIC:
            raise self.error("it is a single array (.npy), not an archive of named arrays")
        if not start.startswith(b"PK"):
            raise self.error("not a numpy .npz archive (nor .npy)")
        try:
            self.zip = zipfile.ZipFile(self.path)
            infos = self.zip.infolist()
        except ShrinkError:
            raise
        except Exception as e:  # noqa: BLE001 - zipfile raises many kinds on a damaged archive
            raise self.error(f"not a numpy .npz archive ({_why(e)})") from None
        self._by_name = {i.filename: i for i in infos}  # the last of a repeated name, as zipfile
        self.keys = sorted({n[:-4] if n.endswith(".npy") else n for n in self._by_name})

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if hasattr(self, "zip"):
            self.zip.close()

    def error(self, why: str, hint: str | None = HOW) -> ShrinkError:
        return ShrinkError(f"cannot read {self.shown} as .npz: {why}", None, hint)

    def missing(self, wanted) -> str | None:
        """The first name of ``wanted`` the archive lacks, or None."""
        return next((k for k in wanted if self._info(k) is None), None)

    def found_text(self) -> str:
        return _names(self.keys) or "no arrays"

    def _info(self, key: str) -> zipfile.ZipInfo | None:
        # as numpy's NpzFile: the member named exactly so, else the name with .npy
        return self._by_name.get(key) or self._by_name.get(key + ".npy")

    def member(self, key: str) -> Member:
        """The header of array ``key`` (which must exist), read and checked without its data:
        at most ``MAX_HEADER`` bytes are read."""
        info = self._info(key)
        assert info is not None, key
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise self.error(f"'{key}' is compressed with a method numpy does not use (only "
                             "stored or deflated, as numpy.savez and savez_compressed write)")
        try:
            with self.zip.open(info) as f:
                head = f.read(len(MAGIC) + 2)
                if len(head) < len(MAGIC) + 2 or head[:len(MAGIC)] != MAGIC:
                    raise self.error(f"'{key}' is not a numpy array (.npy)")
                version = (head[-2], head[-1])
                if version not in ((1, 0), (2, 0), (3, 0)):
                    raise self.error(f"'{key}' is a .npy of format version "
                                     f"{version[0]}.{version[1]}, which numpy does not write")
                width = 2 if version == (1, 0) else 4
                raw = f.read(width)
                length = int.from_bytes(raw, "little")
                if len(raw) < width or length > MAX_HEADER:
                    raise self.error(f"'{key}' has a header of {length:,} bytes (numpy's "
                                     f"arrays have at most {MAX_HEADER:,})")
                header = f.read(length)
                if len(header) < length:
                    raise self.error(f"'{key}' is cut short (its header is incomplete)")
        except ShrinkError:
            raise
        except Exception as e:  # noqa: BLE001 - a damaged member: zlib, CRC, encryption, ...
            raise self.error(f"'{key}' cannot be read ({_why(e)})") from None
        if version == (3, 0):  # utf-8 field names; one without any reads as version 2.0
            if not header.isascii():
                raise self.error(f"'{key}' has a dtype with non-ASCII field names", None)
            version = (2, 0)
        buf = io.BytesIO(MAGIC + bytes(version) + raw + header)
        try:
            with warnings.catch_warnings():  # numpy's note on a header written by Python 2
                warnings.simplefilter("ignore")
                np.lib.format.read_magic(buf)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(buf)
            shape = tuple(int(d) for d in shape)
            if any(d < 0 for d in shape):
                raise ValueError("a negative dimension")
        except Exception as e:  # noqa: BLE001 - any header numpy cannot read is damage
            raise self.error(f"'{key}' has a damaged header ({_why(e)})") from None
        m = Member(key, info, shape, dtype, len(MAGIC) + 2 + width + length)
        if info.file_size < m.header_bytes + m.nbytes:  # what zipfile will give at most
            raise self.error(f"'{key}' is cut short: its header declares {m.nbytes:,} bytes "
                             f"of data, the archive holds {max(0, info.file_size - m.header_bytes):,}")
        return m

    def read(self, m: Member) -> np.ndarray:
        """The data of a checked member (``member``), as numpy reads it."""
        if m.dtype.hasobject:
            raise self.error(f"'{m.key}' holds Python objects, not numbers")
        try:
            with self.zip.open(m.info) as f, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return np.lib.format.read_array(f, allow_pickle=False,
                                                max_header_size=MAX_HEADER)
        except Exception as e:  # noqa: BLE001 - zlib, CRC, a short member, ...
            raise self.error(f"'{m.key}' cannot be read ({_why(e)})") from None


def _why(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "pickl" in text:  # numpy's advice to unpickle: never relayed
        return "it holds Python objects"
    return text[:200]


def read_all(path: str | Path, cap: int) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (a decoded-data cache file), refused before reading when
    their declared bytes exceed ``allowance(file size, cap)``."""
    with Archive(path) as a:
        members = [a.member(k) for k in a.keys]
        total = sum(m.nbytes for m in members)
        limit = allowance(a.size, cap)
        if total > limit:
            raise ShrinkError(f"{a.shown}: its arrays would take {size_text(total)} of memory, "
                              f"more than the {size_text(limit)} allowed for a file of "
                              f"{size_text(a.size)}")
        return {m.key: a.read(m) for m in members}


# --------------------------------------------------------------------------- proxy data


def image_shapes(path: str | Path) -> list[tuple[str, tuple[int, ...]]]:
    """The C x H x W of the images of an .npz's ``x_train`` and ``x_val`` (N x C x H x W
    floats, or N x H x W x C uint8), read from the arrays' headers (at most ``MAX_HEADER``
    bytes each); none that the headers do not say (``load_images`` then says what is wrong
    with the file)."""
    out = []
    try:
        with Archive(path) as a:
            for split in ("x_train", "x_val"):
                if a.missing([split]) is None:
                    m = a.member(split)
                    if len(m.shape) == 4:
                        out.append((split, (m.shape[3], *m.shape[1:3]) if m.dtype == np.uint8
                                    else m.shape[1:]))
    except ShrinkError:
        pass
    return out


def peak_bytes(splits, label_itemsize: int = 8) -> int:
    """The most memory loading proxy data takes at once. ``splits``: (images, values per
    image, raw itemsize) of each split, the training split first; the raw itemsize is 0
    where the images are float32 already (they are then converted in place). Each split is
    read and converted to float32, the raw array and the converted one held together for a
    moment; the splits are kept as float32, and standardising holds one float32 copy of
    the training images more (numpy's standard deviation); the labels as read and as
    int64."""
    held = peak = 0
    for n, per, raw in splits:
        peak = max(peak, held + n * per * (raw + 4))
        held += 4 * n * per
    if splits:
        peak = max(peak, held + 4 * splits[0][0] * splits[0][1])
    return peak + sum(n for n, _, _ in splits) * (8 + label_itemsize)


def _shape_text(shape) -> str:
    return "x".join(map(str, shape))


def load_images(path: str | Path, shape: tuple[int, ...], cap: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``x_train, y_train, x_val, y_val`` of an ``.npz``: images stored as N x C x H x W
    floats or N x H x W x C uint8, returned as float32 N x C x H x W standardised with the
    training images' per-channel mean and standard deviation, labels as int64; checked
    against the network's input ``shape``, and refused before any array is read when
    loading would take more memory than ``allowance(file size, cap)``."""
    with Archive(path) as a:
        missing = a.missing(KEYS)
        if missing:
            raise ShrinkError(f"{a.shown}: missing array '{missing}'", None,
                              f"found {a.found_text()}; need {', '.join(KEYS)}")
        members = {k: a.member(k) for k in KEYS}
        for split in ("train", "val"):
            _check_header(a.shown, split, members[f"x_{split}"], members[f"y_{split}"], shape)
        xs = [members["x_train"], members["x_val"]]
        per = 1
        for d in shape:
            per *= d
        need = peak_bytes([(m.shape[0], per, 0 if m.dtype == np.float32 else m.dtype.itemsize)
                           for m in xs],
                          max(members["y_train"].dtype.itemsize, members["y_val"].dtype.itemsize))
        limit = allowance(a.size, cap)
        if need > limit:
            n_train, n_val = (m.shape[0] for m in xs)
            raise ShrinkError(
                f"{a.shown}: loading it would take {size_text(need)} of memory ({n_train:,} + "
                f"{n_val:,} images of {_shape_text(shape)} as float32, standardised), more "
                f"than the {size_text(limit)} allowed for a file of {size_text(a.size)}", None,
                f"a data file may take {INFLATION} times its size in memory, at least "
                f"{size_text(SMALL_FILE_BYTES)} and at most {size_text(cap)}: save fewer "
                "images in it (e.g. x_train[:N]), or give the network a smaller input "
                "(--subset N/M takes part of an image folder or a CIFAR batches folder)")
        out = {}
        for split in ("train", "val"):
            x = _converted(a.shown, split, a.read(members[f"x_{split}"]))
            y = _checked_labels(a.shown, split, a.read(members[f"y_{split}"]))
            out[split] = (x, y)
    x_train, x_val = out["train"][0], out["val"][0]
    if not standardise_in_place(x_train, x_val):
        raise ShrinkError(f"{a.shown}: the images' values are too large to standardise", None,
                          "scale them to a range like 0..1")
    return x_train, out["train"][1], x_val, out["val"][1]


def _check_header(shown: str, split: str, x: Member, y: Member, shape: tuple[int, ...]) -> None:
    """What the headers of one split's arrays say, checked before their data is read."""
    if len(x.shape) != 4:
        raise ShrinkError(f"{shown}: x_{split} has shape {x.shape}; expected N x C x H x W "
                          "(float) or N x H x W x C (uint8)")
    uint8 = x.dtype == np.uint8
    if not uint8 and not (x.dtype.fields is None and x.dtype.subdtype is None
                          and np.issubdtype(x.dtype, np.floating)):
        raise ShrinkError(f"{shown}: x_{split} has dtype {x.dtype}; expected float or uint8")
    if len(y.shape) != 1 or y.dtype.fields is not None or y.dtype.subdtype is not None \
            or not np.issubdtype(y.dtype, np.integer):
        raise ShrinkError(f"{shown}: y_{split} must be a 1-D array of integer labels, "
                          f"got shape {y.shape} and dtype {y.dtype}")
    if y.shape[0] != x.shape[0]:
        raise ShrinkError(f"{shown}: x_{split} has {x.shape[0]} images but y_{split} has "
                          f"{y.shape[0]} labels")
    if y.shape[0] == 0:
        raise ShrinkError(f"{shown}: x_{split} is empty")
    image = (x.shape[3], x.shape[1], x.shape[2]) if uint8 else x.shape[1:]
    if tuple(image) != tuple(shape):
        raise ShrinkError(
            f"{shown}: x_{split} images are {_shape_text(image)} but the proxy "
            f"network takes {_shape_text(shape)}", None,
            "resize the data or change the proxy network's input")


def _converted(shown: str, split: str, x: np.ndarray) -> np.ndarray:
    """One split's images as float32 N x C x H x W (uint8 scaled to 0..1), converted with
    one copy at most; the same values and memory layout as ``x.transpose(0, 3, 1, 2)
    .astype(np.float32) / 255.0`` and ``x.astype(np.float32)``."""
    if x.dtype == np.uint8:
        x = x.transpose(0, 3, 1, 2).astype(np.float32)
        x /= 255.0
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            x = x.astype(np.float32, copy=False)
    if not all_finite(x):
        raise ShrinkError(f"{shown}: x_{split} contains NaN or infinite values (as float32)")
    return x


def all_finite(x: np.ndarray, chunk: int = 1 << 20) -> bool:
    """``np.isfinite(x).all()``, a part of ``x``'s first axis at a time."""
    if x.ndim == 0 or x.size == 0:
        return bool(np.isfinite(x).all())
    step = max(1, chunk // max(1, x[0].size))
    return all(bool(np.isfinite(x[i:i + step]).all()) for i in range(0, len(x), step))


def _checked_labels(shown: str, split: str, y: np.ndarray) -> np.ndarray:
    if y.min() < 0:
        raise ShrinkError(f"{shown}: y_{split} has a negative label ({y.min()})", None,
                          "labels are class indices 0..K-1")
    if y.max() >= MAX_CLASSES:  # compared as stored: a uint64 2**64-1 stays what it is
        raise ShrinkError(f"{shown}: y_{split} has the label {y.max()}; labels are class "
                          f"indices 0..K-1, with at most {MAX_CLASSES:,} classes", None,
                          "number the classes 0, 1, 2, ...")
    return y.astype(np.int64)


def standardise_in_place(x_train: np.ndarray, x_val: np.ndarray) -> bool:
    """Both splits standardised with the training images' per-channel mean and standard
    deviation (plus 1e-6), in place: the values of ``images._standardise``, without its
    copies. False where a value is no longer finite."""
    with np.errstate(over="ignore", invalid="ignore"):
        mean = x_train.mean(axis=(0, 2, 3), keepdims=True)
        std = x_train.std(axis=(0, 2, 3), keepdims=True) + 1e-6
        for x in (x_train, x_val):
            x -= mean
            x /= std
    return all_finite(x_train) and all_finite(x_val)


__all__ = ["Archive", "allowance", "image_shapes", "load_images", "peak_bytes", "read_all",
           "size_text"]
