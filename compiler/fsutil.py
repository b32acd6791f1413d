"""Atomic file output: a reader sees the old file or the new one, never half of one.

A file that is read, changed and written back (``fmt``) is replaced only if it is still what
was read: :func:`stamp` records its size, modification time and content hash when it is
read, and ``atomic_write(..., unchanged=...)`` compares them again just before the rename and
writes nothing when they differ (an edit saved meanwhile is never lost)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Stamp:
    """What a regular file was when it was read: its size, modification time and sha256."""

    size: int
    mtime_ns: int
    sha256: str


def stamp(path: Path) -> Stamp | None:
    """The :class:`Stamp` of the regular file at ``path`` (through symlinks) now; None when
    there is none (missing, unreadable, or not a regular file). Size and time come from the
    open file, before and after its bytes are hashed: a file written meanwhile gets a stamp
    that matches neither its old nor its new self."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            return None
        digest = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
        after = os.fstat(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        return Stamp(-1, -1, "")  # written while it was read: never equal to a stamp taken before
    return Stamp(after.st_size, after.st_mtime_ns, digest.hexdigest())


def _target(path: Path, follow: bool = True) -> Path:
    """Where writing ``path`` really goes: through symlinks to their target (the link stays a
    link); refused where that is not a regular file (a device, a FIFO, a folder). With
    ``follow=False`` a symlink is refused instead (a run folder's own files)."""
    if path.is_symlink():
        if not follow:
            raise ShrinkError(f"cannot write {path.as_posix()}: it is a symbolic link, and "
                              "shrinkc writes only its own files here, never through a link",
                              None, "remove the link, or choose another output folder")
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


def atomic_write(path: Path, data: str | bytes, *, unchanged: Stamp | None = None,
                 doing: str = "worked on", follow: bool = True) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place. A
    symlink at ``path`` is written through (its target is replaced, the link kept) unless
    ``follow`` is False (then it is refused); a device, FIFO or folder there is refused.

    With ``unchanged`` (the :func:`stamp` taken when the file was read), the file is compared
    again just before the rename: if its size, modification time or content differ (an
    edit saved while shrinkc ``doing`` it), nothing is written and the error says so."""
    shown = Path(path).as_posix()
    path = _target(Path(path), follow)
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
        if unchanged is not None and stamp(path) != unchanged:
            raise ShrinkError(f"{shown} changed while shrinkc {doing} it: nothing was written "
                              "(the file is as it was saved)", None,
                              "run the command again on the file as it is now")
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise ShrinkError(f"cannot write {path.as_posix()}: {e.strerror}") from None
        raise


def check_own(path: Path, hint: str, directory: bool = False) -> None:
    """Refuse ``path`` (a name shrinkc itself writes and reads in a folder of its own) when it
    is a symbolic link, or not what shrinkc puts there (a folder with ``directory``, a
    regular file otherwise); a missing one is fine."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise ShrinkError(f"cannot use {path.as_posix()}: {e.strerror}", None, hint) from None
    if stat.S_ISLNK(mode):
        raise ShrinkError(f"{path.as_posix()} is a symbolic link: shrinkc follows no link "
                          "to its own files", None, hint)
    if directory and not stat.S_ISDIR(mode):
        raise ShrinkError(f"{path.as_posix()} is not a folder", None, hint)
    if not directory and not stat.S_ISREG(mode):
        raise ShrinkError(f"{path.as_posix()} is not a regular file (a folder, device, FIFO or "
                          "socket): shrinkc writes a file of that name", None, hint)


def read_own(path: Path, hint: str, limit: int | None = None) -> bytes:
    """The bytes of one of shrinkc's own files, without following a link to it (refused, as
    is a file that is not a regular one); beyond ``limit`` bytes only ``limit + 1`` are
    read. Failures are errors with ``hint``."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise ShrinkError(f"cannot read {path.as_posix()}: {e.strerror}", None, hint) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ShrinkError(f"cannot read {path.as_posix()}: not a regular file", None, hint)
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read() if limit is None else f.read(limit + 1)
    except OSError as e:
        raise ShrinkError(f"cannot read {path.as_posix()}: {e.strerror}", None, hint) from None
    finally:
        os.close(fd)
