"""A latency table: the measured latency of every piece a network (or a search space) needs on
one device, with the fingerprint they were all measured with. A versioned JSON file a user can
commit beside the spec::

    {
      "format": "shrinkc latency table",
      "version": 2,
      "fingerprint": {"cpu_model": ..., "onnxruntime": "1.32.0", "intra_op_threads": 1, ...},
      "protocol": {"warmup": 10, "min_runs": 20, "max_runs": 1000, "tolerance": 0.01, ...},
      "overhead": {"run_ms": 0.03, "node_ms": 0.0002, "nchwc_block": 16,
                   "kernel_profile": {"runs": 60, "warmup": 5},
                   "reorder_in": {"ms": ..., "ms_per_mvalue": ...}, "reorder_out": {...}},
      "calibration": null,
      "entries": {
        "conv(dilation=1,groups=1,k=3,out=44,stride=2)+relu 3x224x224->44x112x112":
          {"ms": 1.234, "q1_ms": ..., "q3_ms": ..., "min_ms": ..., "runs": 60,
           "stopped": "stable", "in_nchwc": [false], "out_nchwc": true,
           "in_reorder": [0.0], "out_reorder": 0.31, "kernel_ms": 0.987},
        ...
      }
    }

``ms`` is a piece's median; ``kernel_ms`` the sum of its nodes' median kernel times in
onnxruntime's own profile (what the calibrated predictor sums: a piece's time beyond its
kernels, spent handing a fresh output back, is one a network does not pay per piece);
``in_nchwc`` / ``out_nchwc`` say whether onnxruntime ran the piece alone in its blocked layout (NCHWc) at an input / at the output, which the predictor uses to
correct for the layout reorders a whole network does not have (``predict.py``). Every problem
with a file is a located error: the file, the line of the offending entry, what is wrong, and
a hint (:func:`load`). Tables are written atomically (:func:`save`). Version 1 (no kernel
times, a calibration of one scale) is still read; it predicts from the pieces' medians.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from shrinkc.compiler.errors import ShrinkError
from shrinkc.compiler.fsutil import Stamp, atomic_write, stamp
from shrinkc.compiler.ir import Loc

from .fingerprint import Fingerprint, check_same
from .measure import STOPS, Measurement, Protocol

FORMAT = "shrinkc latency table"
VERSION = 2
READS = (1, 2)  # the versions this shrinkc reads
MAX_TABLE_BYTES = 256 << 20
REBUILD = "build it again: shrinkc latency SPEC --save-table FILE"


@dataclass(frozen=True)
class Entry:
    """One piece's measured latency (ms) and the layout onnxruntime ran it in."""

    ms: float  # the median
    q1_ms: float
    q3_ms: float
    min_ms: float
    runs: int
    stopped: str
    in_nchwc: tuple[bool, ...] = ()
    out_nchwc: bool = False
    # the share of the piece's time its reorders into the blocked layout took, per input, and
    # its reorder out of it (onnxruntime's profile)
    in_reorder: tuple[float, ...] = ()
    out_reorder: float = 0.0
    # the sum of its nodes' median kernel times (onnxruntime's profile); None in a version 1
    # table
    kernel_ms: float | None = None

    @classmethod
    def of(cls, m: Measurement, in_nchwc: tuple[bool, ...] = (), out_nchwc: bool = False,
           in_reorder: tuple[float, ...] = (), out_reorder: float = 0.0,
           kernel_ms: float | None = None) -> Entry:
        r = lambda x: round(float(x), 6)  # noqa: E731  # as saved: equal after a round trip
        return cls(r(m.median_ms), r(m.q1_ms), r(m.q3_ms), r(m.min_ms), m.runs, m.stopped,
                   in_nchwc, out_nchwc, tuple(round(x, 4) for x in in_reorder),
                   round(out_reorder, 4), None if kernel_ms is None else r(kernel_ms))

    def to_dict(self) -> dict:
        r = lambda x: round(float(x), 6)  # noqa: E731
        d = {"ms": r(self.ms), "q1_ms": r(self.q1_ms), "q3_ms": r(self.q3_ms),
             "min_ms": r(self.min_ms), "runs": self.runs, "stopped": self.stopped,
             "in_nchwc": list(self.in_nchwc), "out_nchwc": self.out_nchwc,
             "in_reorder": [round(x, 4) for x in self.in_reorder],
             "out_reorder": round(self.out_reorder, 4)}
        if self.kernel_ms is not None:
            d["kernel_ms"] = r(self.kernel_ms)
        return d


@dataclass
class LatencyTable:
    """Pieces' latencies on one device (one fingerprint), and the overhead terms."""

    fingerprint: Fingerprint
    protocol: Protocol
    entries: dict[str, Entry] = field(default_factory=dict)
    overhead: dict = field(default_factory=dict)
    calibration: dict | None = None
    source: str | None = None  # the file it was read from
    read_as: Stamp | None = field(default=None, repr=False, compare=False)  # that file, then

    def add(self, key: str, entry: Entry, fingerprint: Fingerprint) -> None:
        """Add a piece measured with ``fingerprint``: refused unless it is the table's."""
        check_same(self.fingerprint, fingerprint.device(), f"the piece '{key}'",
                   self._loc(), "build a separate table for the other settings or machine")
        self.entries[key] = entry

    def merge(self, other: LatencyTable) -> None:
        """Take ``other``'s entries (and overhead terms where this table has none): refused
        unless both have one fingerprint."""
        check_same(self.fingerprint, other.fingerprint,
                   f"the table {other.source or '(built here)'}", other._loc(),
                   "tables of two fingerprints are never merged")
        self.entries.update(other.entries)
        if not self.overhead:
            self.overhead = dict(other.overhead)

    def missing(self, keys) -> list[str]:
        return sorted({k for k in keys if k not in self.entries})

    def require(self, keys, what: str) -> None:
        """A located error naming the pieces ``what`` needs that the table lacks."""
        gone = self.missing(keys)
        if not gone:
            if not self.overhead:
                raise ShrinkError(f"{self.source or 'the table'} has no overhead terms", self._loc(),
                                  REBUILD, quote=False)
            return
        shown = "; ".join(gone[:3]) + (f"; and {len(gone) - 3} more" if len(gone) > 3 else "")
        raise ShrinkError(f"{self.source or 'the table'} lacks {len(gone)} piece(s) that {what} "
                          f"needs: {shown}", self._loc(),
                          "measure them on the table's device (shrinkc latency SPEC --table FILE "
                          "--save-table FILE adds what is missing), or build a table for the "
                          "whole search space", quote=False)

    def digest(self) -> str:
        """sha256 of the table's canonical JSON: what a search records of the table it scored
        with (and a resumed search compares)."""
        import hashlib

        text = json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def _loc(self) -> Loc | None:
        return Loc(file=self.source) if self.source else None

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION,
                "fingerprint": self.fingerprint.to_dict(), "protocol": self.protocol.to_dict(),
                "overhead": self.overhead, "calibration": self.calibration,
                "entries": {k: self.entries[k].to_dict() for k in sorted(self.entries)}}


# --------------------------------------------------------------------------- files


def save(table: LatencyTable, path: str | Path) -> None:
    """Write ``table`` to ``path`` atomically (a reader sees the old file or the new one).
    Written back to the file it was read from, it replaces that file only if the file is as
    it was read (size, time, sha256): a table measured for minutes never overwrites an edit
    or another run's table saved meanwhile (the error says so, and nothing is written)."""
    text = json.dumps(table.to_dict(), indent=1, allow_nan=False) + "\n"
    unchanged = None
    if table.read_as is not None and table.source is not None:
        try:
            same = Path(path).resolve() == Path(table.source).resolve()
        except OSError:
            same = False
        unchanged = table.read_as if same else None
    atomic_write(Path(path), text, unchanged=unchanged, doing="measured pieces for")


class _Bad(Exception):
    def __init__(self, what: str, near: str | None = None, hint: str = REBUILD):
        super().__init__(what)
        self.what, self.near, self.hint = what, near, hint


def _locate(text: str, near: str | None) -> tuple[int, int]:
    """Line and column of the first occurrence of ``near`` (a JSON-encoded key) in ``text``."""
    at = text.find(near) if near else -1
    if at < 0:
        return 1, 1
    line = text.count("\n", 0, at) + 1
    return line, at - (text.rfind("\n", 0, at) + 1) + 1


def _key(name: str) -> str:
    return json.dumps(name) + ":"


def _number(d: dict, name: str, where: str, near: str, positive: bool = False,
            whole: bool = False) -> float:
    v = d.get(name)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (whole and not isinstance(v, int)):
        raise _Bad(f"{where}: '{name}' is {'missing' if v is None else repr(v)}, not a "
                   f"{'whole number' if whole else 'number'}", near)
    if not math.isfinite(v):
        raise _Bad(f"{where}: '{name}' is {v}: a latency is a finite number", near,
                   "measure the piece again (a NaN or infinite time is a failed measurement)")
    if v < 0 or (positive and v == 0):
        raise _Bad(f"{where}: '{name}' is {v}: a latency is {'positive' if positive else 'never negative'}",
                   near, "measure the piece again")
    return v


def _entry(key: str, d: object) -> Entry:
    near = _key(key)
    where = f"the entry '{key}'"
    if not isinstance(d, dict):
        raise _Bad(f"{where} is not an object", near)
    ms = _number(d, "ms", where, near, positive=True)
    q1, q3, low = (_number(d, n, where, near) for n in ("q1_ms", "q3_ms", "min_ms"))
    runs = int(_number(d, "runs", where, near, positive=True, whole=True))
    stopped = d.get("stopped")
    if stopped not in STOPS:
        raise _Bad(f"{where}: 'stopped' is {stopped!r}, not one of {', '.join(STOPS)}", near)
    ins, out = d.get("in_nchwc", []), d.get("out_nchwc", False)
    if not (isinstance(ins, list) and all(isinstance(b, bool) for b in ins)
            and isinstance(out, bool)):
        raise _Bad(f"{where}: 'in_nchwc' must be a list of true/false and 'out_nchwc' true or "
                   "false", near)
    shares_in, share_out = d.get("in_reorder", []), d.get("out_reorder", 0.0)
    if not (isinstance(shares_in, list) and len(shares_in) in (0, len(ins))
            and all(_share(x) for x in shares_in) and _share(share_out)):
        raise _Bad(f"{where}: 'in_reorder' must be a list of shares (0 to 1), one per input, "
                   "and 'out_reorder' a share", near)
    kernel = _number(d, "kernel_ms", where, near) if "kernel_ms" in d else None
    return Entry(ms, q1, q3, low, runs, stopped, tuple(ins), out, tuple(shares_in), share_out,
                 kernel)


def _share(x: object) -> bool:
    return (isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
            and 0 <= x <= 1)


def _overhead(d: object) -> dict:
    near = _key("overhead")
    if not isinstance(d, dict):
        raise _Bad("'overhead' is not an object", near)
    for name in ("run_ms", "node_ms"):
        _number(d, name, "the overhead", near)
    block = d.get("nchwc_block", 0)
    if isinstance(block, bool) or not isinstance(block, int) or block < 0:
        raise _Bad(f"the overhead's 'nchwc_block' is {block!r}, not a block size", near)
    for name in ("reorder_in", "reorder_out"):
        part = d.get(name)
        if part is None:
            continue
        if not isinstance(part, dict):
            raise _Bad(f"the overhead's '{name}' is not an object", near)
        _number(part, "ms", f"the overhead's '{name}'", near)
        _number(part, "ms_per_mvalue", f"the overhead's '{name}'", near)
    return d


def _finite(d: dict, name: str, where: str, near: str) -> None:
    v = d.get(name)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _Bad(f"{where}'s '{name}' is {'missing' if v is None else repr(v)}, not a finite "
                   "number", near, "calibrate again: shrinkc latency SPEC --measure --calibrate "
                   "--save-table FILE")


def _calibration(d: object) -> dict | None:
    """A calibration: ``{"basis": "kernel" | "wall", "terms": {"pieces_ms": a,
    "concat_mvalues": b, "constant_ms": c}, "networks": [...]}`` (``predict.py``), or a
    version 1 table's ``{"scale": a, "offset_ms": c}`` (the wall basis)."""
    if d is None:
        return None
    near = _key("calibration")
    if not isinstance(d, dict):
        raise _Bad("'calibration' is not an object (or null)", near)
    if "terms" not in d:
        _number(d, "scale", "the calibration", near, positive=True)
        _finite(d, "offset_ms", "the calibration", near)
        _networks(d.get("networks", []), near)
        return d
    if d.get("basis") not in ("kernel", "wall"):
        raise _Bad(f"the calibration's 'basis' is {d.get('basis')!r}, not \"kernel\" or "
                   "\"wall\"", near)
    terms = d["terms"]
    if not isinstance(terms, dict):
        raise _Bad("the calibration's 'terms' is not an object", near)
    _number(terms, "pieces_ms", "the calibration's terms", near, positive=True)
    _number(terms, "concat_mvalues", "the calibration's terms", near)
    _finite(terms, "constant_ms", "the calibration's terms", near)
    _networks(d.get("networks", []), near)
    return d


def _networks(nets: object, near: str) -> None:
    """The measured networks a calibration was fitted on (``predict.calibration_record``'s):
    a later ``--calibrate`` fits on them again."""
    if not isinstance(nets, list):
        raise _Bad("the calibration's 'networks' is not a list", near)
    for i, n in enumerate(nets):
        where = f"the calibration's network {i + 1}"
        if not isinstance(n, dict) or not isinstance(n.get("network"), str):
            raise _Bad(f"{where} is not an object with a 'network' name", near)
        _number(n, "measured_ms", where, near, positive=True)
        _number(n, "wall_ms" if "wall_ms" in n else "predicted_ms", where, near, positive=True)
        if n.get("kernel_ms") is not None:
            _number(n, "kernel_ms", where, near, positive=True)
        if "concat_mvalues" in n:
            _number(n, "concat_mvalues", where, near)


def parse(text: str, source: str) -> LatencyTable:
    """The table in ``text`` (read from ``source``), or a located error."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ShrinkError(f"{source} is not a latency table: not JSON ({e.msg})",
                          Loc(file=source, line=e.lineno, col=e.colno, end_line=e.lineno,
                              end_col=e.colno + 1),
                          "a latency table is the JSON file shrinkc latency --save-table "
                          "writes", quote=False) from None
    try:
        return _table(data, source)
    except _Bad as bad:
        line, col = _locate(text, bad.near)
        raise ShrinkError(bad.what, Loc(file=source, line=line, col=col, end_line=line,
                                        end_col=col + 1), bad.hint) from None


def _table(data: object, source: str) -> LatencyTable:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _Bad(f"{source} is not a latency table (no \"format\": \"{FORMAT}\")",
                   _key("format"), "a latency table is the JSON file shrinkc latency "
                                   "--save-table writes")
    version = data.get("version")
    if version not in READS:
        raise _Bad(f"latency table version {version!r}: this shrinkc reads versions "
                   f"{', '.join(map(str, READS))}",
                   _key("version"), REBUILD + " (with this shrinkc)")
    try:
        fp = Fingerprint.from_dict(data.get("fingerprint"))  # type: ignore[arg-type]
    except (ValueError, TypeError) as e:
        raise _Bad(str(e), _key("fingerprint")) from None
    try:
        protocol = Protocol.from_dict(data.get("protocol") or {})
    except (ValueError, TypeError) as e:
        raise _Bad(f"the protocol: {e}", _key("protocol")) from None
    entries = data.get("entries")
    if not isinstance(entries, dict):
        raise _Bad("'entries' is missing or not an object", _key("entries"))
    table = LatencyTable(fp.device(), protocol, {k: _entry(k, v) for k, v in entries.items()},
                         _overhead(data.get("overhead", {})),
                         _calibration(data.get("calibration")), source)
    return table


def load(path: str | Path, expect: Fingerprint | None = None) -> LatencyTable:
    """Read the table at ``path``; with ``expect``, refuse one measured with another
    fingerprint (a located error listing the fields that differ)."""
    p = Path(path)
    shown = p.as_posix()
    try:
        if p.is_dir():
            raise ShrinkError(f"{shown} is a directory, not a latency table")
        if p.stat().st_size > MAX_TABLE_BYTES:
            raise ShrinkError(f"{shown} is larger than a latency table can be "
                              f"({MAX_TABLE_BYTES >> 20} MiB)", Loc(file=shown), quote=False)
        read_as = stamp(p)  # before the bytes: a write between the two never goes unseen
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ShrinkError(f"no such latency table: {shown}", None,
                          "build one with shrinkc latency SPEC --save-table FILE") from None
    except OSError as e:
        raise ShrinkError(f"cannot read {shown}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ShrinkError(f"{shown} is not a latency table: not UTF-8 text", Loc(file=shown),
                          "a latency table is the JSON file shrinkc latency --save-table "
                          "writes", quote=False) from None
    table = parse(text, shown)
    table.read_as = read_as
    if expect is not None:
        line, col = _locate(text, _key("fingerprint"))
        check_same(table.fingerprint, expect.device(),
                   f"{shown} cannot be used here",
                   Loc(file=shown, line=line, col=col, end_line=line, end_col=col + 1),
                   "build a table on this machine with these settings, or use the table's own "
                   "(threads, batch, spinning, clock) when measuring")
    return table


__all__ = ["FORMAT", "READS", "VERSION", "Entry", "LatencyTable", "load", "parse", "save"]
