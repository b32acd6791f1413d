"""Reading a spec (or another text file shrinkc reads) safely: regular files only, at most
:data:`MAX_SPEC_BYTES`, UTF-8 without NUL bytes; every failure a located error that echoes
none of the file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .. import ir
from ..errors import ShrinkError

MAX_SPEC_BYTES = 4 * 1024 * 1024  # a spec (or an include) is text a person writes
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _read_regular(path: Path, display: str, loc: ir.Loc | None,
                  kind: str = ".shrink file") -> bytes:
    """The bytes of ``path`` if it is a regular file of at most :data:`MAX_SPEC_BYTES`:
    FIFOs, devices and sockets are refused before anything is read (no hang on a FIFO,
    no endless read of /dev/zero)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ShrinkError(f"no such file: {display}", loc) from None
    except IsADirectoryError:
        raise ShrinkError(f"{display} is a directory, not a {kind}", loc) from None
    except OSError as e:
        raise ShrinkError(f"cannot read {display}: {e.strerror}", loc) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ShrinkError(f"{display} is a directory, not a {kind}", loc)
        if not stat.S_ISREG(st.st_mode):
            what, kind = kind, next((w for test, w in _KINDS if test(st.st_mode)), "not a file")
            raise ShrinkError(f"{display} is {kind}, not a regular file: refused", loc,
                              f"shrinkc reads a {what} from a regular file only")
        too_big = ShrinkError(f"{display} is larger than {MAX_SPEC_BYTES // 2**20} MiB: refused",
                              loc, f"a {kind} is a small text file")
        if st.st_size > MAX_SPEC_BYTES:
            raise too_big
        chunks, size = [], 0
        while size <= MAX_SPEC_BYTES:
            chunk = os.read(fd, MAX_SPEC_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_SPEC_BYTES:  # it grew while we read it
            raise too_big
        return b"".join(chunks)
    except OSError as e:
        raise ShrinkError(f"cannot read {display}: {e.strerror}", loc) from None
    finally:
        os.close(fd)


def read_source(path: Path, display: str | None = None, loc: ir.Loc | None = None,
                kind: str = ".shrink file") -> str:
    """Read a spec (or another text file shrinkc reads, a ``kind`` of file) as UTF-8,
    turning I/O and decoding failures into located errors. Only regular files are read; a
    file that is binary or not UTF-8 is refused without echoing any of it (a spec may be a
    symlink to anything)."""
    display = display or str(path)
    data = _read_regular(path, display, loc, kind)
    if b"\x00" in data:
        at = data.index(b"\x00")
        line = data.count(b"\n", 0, at) + 1
        col = at - (data.rfind(b"\n", 0, at) + 1) + 1
        raise ShrinkError(f"not a {kind}: a NUL byte (a binary file?)",
                          ir.Loc(file=display, line=line, col=col, end_line=line, end_col=col + 1),
                          f"a {kind} is UTF-8 text", quote=False)
    try:
        return data.decode("utf-8").removeprefix("\ufeff")  # editors may write a BOM
    except UnicodeDecodeError as e:
        before = data[: e.start]
        line = before.count(b"\n") + 1
        col = e.start - (before.rfind(b"\n") + 1) + 1
        raise ShrinkError(
            f"invalid UTF-8 byte 0x{data[e.start]:02x}",
            ir.Loc(file=display, line=line, col=col, end_line=line, end_col=col + 1),
            f"a {kind} is UTF-8 text", quote=False,
        ) from None
