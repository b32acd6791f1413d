"""The decoded-data cache: image folders and CIFAR batches are decoded once, and the arrays
kept on disk, so that the search's workers, ``--resume`` and ``compile --calibrate`` read them
instead of decoding again.

A cache file is an ``.npz`` (no pickles: read with ``allow_pickle=False``) named
``<key>-<sha256>.npz``: ``key`` says what it holds (the data's content hash, the network's
input shape, the split, the subset; see ``images.prepare``) and ``sha256`` is the hash of the
file's own bytes, checked on every read: a file changed after it was written is detected (and
decoded again, with a warning). Files are written to a temporary file in the cache folder and
renamed into place, so a killed process leaves no half-written cache. The folder is
``$SHRINKC_CACHE``, else ``$XDG_CACHE_HOME/shrinkc/data``, else ``~/.cache/shrinkc/data``;
delete it at any time to free the space.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from shrinkc.compiler.errors import ShrinkError

from . import npz

ENV = "SHRINKC_CACHE"
NAME = re.compile(r"^([0-9a-f]{64})-([0-9a-f]{64})\.npz$")
Warn = Callable[[str], None]


def folder() -> Path:
    """The cache folder (not created here)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "shrinkc" / "data"


def key(*parts: str) -> str:
    """A cache key: the sha256 of ``parts``."""
    return hashlib.sha256("\0".join(("shrinkc decoded data v1", *parts)).encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's contents, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_cache_file(path: str | Path) -> bool:
    """Whether ``path`` is named as a cache file (``<key>-<sha256>.npz``)."""
    return NAME.match(Path(path).name) is not None


def verify(path: Path) -> bool:
    """Whether a cache file's bytes still hash to the sha256 in its name."""
    m = NAME.match(path.name)
    try:
        return m is not None and file_sha256(path) == m.group(2)
    except OSError:
        return False


def find(k: str, warn: Warn) -> Path | None:
    """The verified cache file of key ``k``, or None; a file that fails its check is removed
    with a warning (the caller decodes again)."""
    where = folder()
    if not where.is_dir():
        return None
    for path in sorted(where.glob(f"{k}-*.npz")):
        if not NAME.match(path.name):
            continue
        if verify(path):
            return path
        warn(f"the decoded-data cache {path.as_posix()} was changed after it was written; "
             "decoding the data again")
        with contextlib.suppress(OSError):
            path.unlink()
    return None


def store(k: str, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` as the cache file of key ``k`` (atomically); its path."""
    where = folder()
    hint = f"set {ENV} to a writable folder for the decoded-data cache"
    try:
        where.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{k[:16]}.", suffix=".tmp", dir=where)
    except OSError as e:
        raise ShrinkError(f"cannot write the decoded-data cache in {where.as_posix()}: "
                          f"{e.strerror}", None, hint) from None
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        path = where / f"{k}-{file_sha256(Path(tmp))}.npz"
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise ShrinkError(f"cannot write the decoded-data cache in {where.as_posix()}: "
                              f"{e.strerror}", None, hint) from None
        raise
    return path


def read(path: Path, cap: int = npz.MAX_BYTES) -> dict[str, np.ndarray]:
    """A cache file's arrays (verified by the caller), refused before reading where they
    declare more than the file may take in memory (``npz.allowance``, at most ``cap``)."""
    return npz.read_all(path, cap)
