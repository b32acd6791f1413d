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

    def render(self, source_line: str | None = None, color: bool = False,
               highlight: Callable[[str], str] | None = None) -> str:
        """The message as the command line prints it; ``highlight`` colours the source line."""
        where = f"{self.loc.file}:{self.loc.line}:{self.loc.col}" if self.loc else "shrinkc"
        sev = self.severity
        if color:
            sev = ("\x1b[1;31m" if sev == "error" else "\x1b[1;35m") + sev + "\x1b[0m"
        out = [f"{where}: {sev}: {self.message}"]
        if source_line is not None and self.loc is not None:
            text = source_line.rstrip("\n").replace("\t", " ")
            out.append(f"    {highlight(text) if color and highlight else text}")
            width = max(1, min(self.loc.end_col - self.loc.col, len(text) - self.loc.col + 1))
            if self.loc.end_line != self.loc.line:
                width = max(1, len(text) - self.loc.col + 1)
            out.append("    " + " " * (self.loc.col - 1) + "^" + "~" * (width - 1))
        if self.hint:
            out.append(f"  hint: {self.hint}")
        if self.note:
            out.append(f"  note: {self.note}")
        return "\n".join(out)


class ShrinkError(Exception):
    """An error in a user's spec, data or command line arguments that is reported, not raised."""

    def __init__(self, message: str, loc: Loc | None = None, hint: str | None = None,
                 note: str | None = None):
        super().__init__(message)
        self.diagnostic = Diagnostic("error", message, loc, hint, note)

    def __str__(self) -> str:  # pragma: no cover - convenience for debugging
        return self.diagnostic.render()


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
