"""Diagnostics: every error a user can cause is a located message, never a traceback.

A :class:`ShrinkError` carries one or more :class:`Diagnostic` objects. The command line
prints them as ``file:line:col: error: message`` followed by the offending source line, a
caret, and a hint. Warnings (for example a pruned dead node) use the same type and are
collected by the passes into a list the caller prints.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .ir import Loc


@dataclass(frozen=True)
class Diagnostic:
    severity: str  # "error" or "warning"
    message: str
    loc: Loc | None = None
    hint: str | None = None
    note: str | None = None  # context, e.g. the stage whose arguments led to this error
    quote: bool = True  # False for a file that is not a spec: its lines are never echoed

    def render(self, source_line: str | None = None, color: bool = False,
               highlight: Callable[[str], str] | None = None) -> str:
        """The message as the command line prints it; ``highlight`` colours the source line."""
        where = (f"{escaped(self.loc.file)}:{self.loc.line}:{self.loc.col}" if self.loc
                 else "shrinkc")
        sev = self.severity
        if color:
            sev = ("\x1b[1;31m" if sev == "error" else "\x1b[1;35m") + sev + "\x1b[0m"
        out = [f"{where}: {sev}: {escaped(self.message)}"]
        if source_line is not None and self.loc is not None and self.quote:
            out += _quoted(source_line, self.loc, highlight if color else None)
        if self.hint:
            out.append(f"  hint: {escaped(self.hint)}")
        if self.note:
            out.append(f"  note: {escaped(self.note)}")
        return "\n".join(out)


QUOTE_WIDTH = 120  # longest source excerpt shown under a message


def _visible(ch: str) -> str:
    """A character as a terminal may show it: control characters (terminal escapes among
    them) as ``\\xNN``, tabs as a space."""
    if ch == "\t":
        return " "
    code = ord(ch)
    if code < 0x20 or 0x7F <= code < 0xA0:
        return f"\\x{code:02x}"
    return ch


def escaped(text: str) -> str:
    """User text inside a message (a key decoded from a YAML escape, a file name) with its
    control characters as ``\\xNN``: no terminal escape reaches the terminal raw. Line breaks
    stay (a message may have several lines)."""
    return "".join(c if c == "\n" else _visible(c) for c in str(text))


def _quoted(source_line: str, loc: Loc, highlight: Callable[[str], str] | None) -> list[str]:
    """The source line (escaped, and cut to :data:`QUOTE_WIDTH` around the location) and a
    caret line under the located span."""
    raw = source_line.rstrip("\n")
    start = max(0, min(loc.col - 1, len(raw)))
    stop = len(raw) if loc.end_line != loc.line else max(start + 1, min(loc.end_col - 1, len(raw)))
    lo = max(0, start - QUOTE_WIDTH // 2)
    hi = min(len(raw), max(lo + QUOTE_WIDTH, start + 1))
    parts = [_visible(c) for c in raw[lo:hi]]
    text = "".join(parts)
    caret_at = len("".join(parts[: start - lo]))
    width = max(1, len("".join(parts[start - lo: min(stop, hi) - lo])))
    if lo > 0:
        text, caret_at = "..." + text, caret_at + 3
    if hi < len(raw):
        text += "..."
    plain = all(len(p) == 1 for p in parts) and lo == 0 and hi == len(raw)
    shown = highlight(text) if highlight and plain else text
    return [f"    {shown}", "    " + " " * caret_at + "^" + "~" * (width - 1)]


class ShrinkError(Exception):
    """An error in a user's spec, data or command line arguments that is reported, not raised.

    ``quote=False`` keeps the command line from echoing the located source line: for files
    that turned out not to be specs (binary, not UTF-8, not starting like a spec), whose
    content may be anything, secrets included."""

    def __init__(self, message: str, loc: Loc | None = None, hint: str | None = None,
                 note: str | None = None, *, quote: bool = True):
        super().__init__(message)
        self.diagnostic = Diagnostic("error", message, loc, hint, note, quote)

    def __reduce__(self):  # whole, with its location and hint, out of a worker process
        d = self.diagnostic
        return (_rebuild, (d.message, d.loc, d.hint, d.note, d.quote))

    def __str__(self) -> str:  # pragma: no cover - convenience for debugging
        return self.diagnostic.render()


def _rebuild(message: str, loc: Loc | None, hint: str | None, note: str | None,
             quote: bool) -> ShrinkError:
    return ShrinkError(message, loc, hint, note, quote=quote)


def warning(message: str, loc: Loc | None = None, hint: str | None = None) -> Diagnostic:
    return Diagnostic("warning", message, loc, hint)


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The closest valid name to ``name``, for 'did you mean' hints."""
    matches = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(name: str, candidates: Iterable[str], what: str = "") -> str | None:
    candidates = sorted(set(candidates))
    best = closest(name, candidates)
    if best is not None:
        return f"did you mean '{best}'?"
    if candidates and len(candidates) <= 12:
        return f"valid {what or 'names'}: " + ", ".join(candidates)
    return None
