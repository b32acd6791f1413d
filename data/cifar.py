"""CIFAR-10 and CIFAR-100 as downloaded: the python batches folder that torchvision's download
leaves on disk (``cifar-10-batches-py``: ``data_batch_1`` .. ``data_batch_5``, ``test_batch``,
``batches.meta``; ``cifar-100-python``: ``train``, ``test``, ``meta``).

The batches are pickles, and loading a pickle can run any code. They are read by an unpickler
that builds only what those files hold (dicts, lists, bytes, numbers and numpy arrays of plain
numbers): any other global a pickle names (``os.system``, ``builtins.eval``, any class) is
refused before it is looked up, so a file that would run code is an error and nothing of it
runs.

Only the training batches are read: the search's validation images are a fixed stratified
seeded split of them (``VAL_FRACTION``), never the test batch (test data is never used to
choose anything). numpy only; the caller converts and resizes.
"""

from __future__ import annotations

import codecs
import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shrinkc.compiler.errors import ShrinkError

CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_META = "batches.meta"
CIFAR100_TRAIN = ("train",)
CIFAR100_META = "meta"
VAL_FRACTION = 0.1  # of the training images: the search's validation split
MAX_PICKLE_BYTES = 1 << 30  # one batch file; CIFAR's are about 30 MB (CIFAR-100's train 150 MB)

_RECONSTRUCT = np.ndarray(0).__reduce__()[0]  # numpy's array rebuilder, whatever its module


@dataclass(frozen=True)
class Layout:
    """Which CIFAR a folder holds: its training batch files, its meta file, the meta key of
    the class names, and the batches' label key."""

    name: str
    train: tuple[str, ...]
    meta: str
    names_key: bytes
    labels_key: bytes


CIFAR10 = Layout("CIFAR-10", CIFAR10_TRAIN, CIFAR10_META, b"label_names", b"labels")
CIFAR100 = Layout("CIFAR-100", CIFAR100_TRAIN, CIFAR100_META, b"fine_label_names",
                  b"fine_labels")


def layout(folder: Path) -> Layout | None:
    """The CIFAR layout ``folder`` holds (by its files' names), or None."""
    for lay in (CIFAR10, CIFAR100):
        if (folder / lay.meta).is_file() and (folder / lay.train[0]).is_file():
            return lay
    return None


def files(folder: Path, lay: Layout) -> list[Path]:
    """The files read of a CIFAR folder (meta first); a missing one is an error."""
    out = [folder / lay.meta, *(folder / name for name in lay.train)]
    for path in out:
        if not path.is_file():
            which = "CIFAR10" if lay is CIFAR10 else "CIFAR100"
            raise ShrinkError(f"{path.as_posix()}: missing from the {lay.name} batches folder",
                              None, f"download CIFAR again (torchvision.datasets.{which}"
                              "(root, download=True))")
    return out


def _dtype(*args):
    """``numpy.dtype`` for plain numbers only (an object array could hold anything)."""
    d = np.dtype(*args)
    if d.hasobject:
        raise pickle.UnpicklingError("an array of Python objects")
    return d


class _Budget:
    """The bytes an unpickler may still build."""

    def __init__(self, left: int):
        self.left = left

    def charge(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise pickle.UnpicklingError("it builds more data than the file holds")


class _Array(np.ndarray):
    """An array as the unpickler builds it: the data its state brings is charged to the
    unpickler's budget before numpy takes it (numpy copies it where its byte order is not
    the machine's, so one string the pickle holds once could fill many arrays)."""

    def __setstate__(self, state):
        try:
            shape, dtype = state[-4], state[-3]
            count = 1
            for d in shape:
                count *= int(d)
            need = count * np.dtype(dtype).itemsize
        except Exception:  # noqa: BLE001 - a malformed state: numpy says what is wrong
            need = 0
        self._budget.charge(need)
        super().__setstate__(state)


class _Unpickler(pickle.Unpickler):
    """An unpickler that builds only what CIFAR's batches hold, and no more data than
    ``budget`` bytes: each string encoded to bytes and each array's data is charged, so a
    pickle that builds the same data many times over is refused before it fills memory."""

    def __init__(self, file, budget: int):
        super().__init__(file, encoding="bytes")
        self.budget = _Budget(budget)
        self._allowed = {
            ("numpy.core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): _dtype,
            ("_codecs", "encode"): self._latin1,
        }

    def _reconstruct(self, cls, shape, dtype):
        """numpy's array rebuilder, for ``numpy.ndarray`` only (its data comes with the
        state that follows: charged then)."""
        if cls is not np.ndarray:
            raise pickle.UnpicklingError("it rebuilds an array of another type")
        arr = _RECONSTRUCT(_Array, (0,), dtype)
        arr._budget = self.budget
        self.budget.charge(0 if shape == (0,) else 1 << 40)  # numpy's pickles always say (0,)
        return arr

    def _latin1(self, text: str, encoding: str = "latin1") -> bytes:
        """``_codecs.encode`` as protocol 2 pickles of bytes use it: latin-1 only."""
        if encoding.lower().replace("-", "") not in ("latin1", "latin_1", "iso88591"):
            raise pickle.UnpicklingError(f"the codec {encoding!r}")
        self.budget.charge(len(text))
        return codecs.encode(text, "latin1")

    def find_class(self, module: str, name: str):
        # the only globals a CIFAR batch names: numpy's array rebuilder (numpy.core before
        # numpy 2, numpy._core since), the array type, dtypes of plain numbers, and the
        # latin-1 encoder that protocol 2 pickles of bytes written by Python 3 name
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"it names {module}.{name}") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("it names a persistent object")


def read_pickle(path: Path) -> dict:
    """A CIFAR batch file as the dict it holds (bytes keys), read safely: a pickle that names
    anything CIFAR's do not is refused before any of it runs."""
    shown = path.as_posix()
    try:
        size = path.stat().st_size
        if size > MAX_PICKLE_BYTES:
            raise ShrinkError(f"{shown}: {size:,} bytes, more than a CIFAR batch "
                              f"({MAX_PICKLE_BYTES >> 20} MiB at most)")
        raw = path.read_bytes()
    except OSError as e:
        raise ShrinkError(f"cannot read {shown}: {e.strerror}") from None
    try:
        obj = _Unpickler(io.BytesIO(raw), 3 * len(raw) + (1 << 20)).load()
    except pickle.UnpicklingError as e:
        raise ShrinkError(f"{shown}: refused to load this pickle: {e}", None,
                          "a CIFAR batch holds only a dict of arrays, lists and bytes; "
                          "download CIFAR again from its source") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, RecursionError, OverflowError, UnicodeError) as e:
        raise ShrinkError(f"{shown}: not a CIFAR batch (a damaged pickle: "
                          f"{str(e) or type(e).__name__})", None,
                          "download CIFAR again from its source") from None
    if not isinstance(obj, dict):
        raise ShrinkError(f"{shown}: not a CIFAR batch (it holds a {type(obj).__name__}, "
                          "not a dict)")
    return {k: v.view(np.ndarray) if isinstance(v, np.ndarray) else v for k, v in obj.items()}


def read(folder: Path, lay: Layout) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The training images of a CIFAR folder as N x 32 x 32 x 3 uint8 (RGB), their labels
    (int64) and the class names, checked."""
    meta_path, *batches = files(folder, lay)
    meta = read_pickle(meta_path)
    names = meta.get(lay.names_key)
    if not isinstance(names, list) or not names or not all(isinstance(n, bytes) for n in names):
        raise ShrinkError(f"{meta_path.as_posix()}: no list of class names "
                          f"('{lay.names_key.decode()}')")
    classes = [n.decode("utf-8", "replace") for n in names]
    xs, ys = [], []
    for path in batches:
        batch = read_pickle(path)
        x, y = batch.get(b"data"), batch.get(lay.labels_key)
        shown = path.as_posix()
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 \
                or x.shape[1] != 3 * 32 * 32:
            what = (f"shape {x.shape}, dtype {x.dtype}" if isinstance(x, np.ndarray)
                    else type(x).__name__)
            raise ShrinkError(f"{shown}: 'data' is not N x 3072 uint8 ({what})")
        if isinstance(y, np.ndarray):
            y = y.tolist()
        if not isinstance(y, list) or len(y) != len(x) \
                or not all(isinstance(v, int) and 0 <= v < len(classes) for v in y):
            raise ShrinkError(f"{shown}: '{lay.labels_key.decode()}' is not a list of "
                              f"{len(x)} labels from 0 to {len(classes) - 1}")
        xs.append(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(y, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys), classes
