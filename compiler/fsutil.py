"""Atomic file output: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from .errors import ShrinkError


def ensure_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ShrinkError(f"cannot use {path.as_posix()} as output directory: it is a file") from None
    except OSError as e:
        raise ShrinkError(f"cannot create output directory {path.as_posix()}: {e.strerror}") from None
    if not os.access(path, os.W_OK):
        raise ShrinkError(f"output directory {path.as_posix()} is not writable")
    return path


def _target(path: Path) -> Path:
    """Where writing ``path`` really goes: through symlinks to their target (the link stays a
    link); refused where that is not a regular file (a device, a FIFO, a folder)."""
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    try:
        st = path.stat()
    except FileNotFoundError:
        return path
    except OSError as e:
        raise ShrinkError(f"cannot write {path.as_posix()}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ShrinkError(f"cannot write {path.as_posix()}: it is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise ShrinkError(f"cannot write {path.as_posix()}: it is not a regular file (a device, "
                          "FIFO or socket); shrinkc never replaces one",
                          None, "choose another output path")
    return path


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place. A
    symlink at ``path`` is written through (its target is replaced, the link kept); a device,
    FIFO or folder there is refused."""
    shown = Path(path).as_posix()
    path = _target(Path(path))
    mode = "wb" if isinstance(data, bytes) else "w"
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise ShrinkError(f"cannot write {shown}: {e.strerror}") from None
    try:
        with os.fdopen(fd, mode, **({} if mode == "wb" else {"encoding": "utf-8", "newline": "\n"})) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise ShrinkError(f"cannot write {path.as_posix()}: {e.strerror}") from None
        raise
