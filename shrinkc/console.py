"""What the command line shows a person: located diagnostics, usage errors, tables."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from shrinkc.compiler.errors import Diagnostic

QUOTED_FILE_BYTES = 4 * 1024 * 1024  # files larger than a spec may be are never read to quote


class UsageError(Exception):
    """Wrong command-line usage: exit 2, with the command's usage line."""


def _source_line(diag: Diagnostic, texts: dict[str, str]) -> str | None:
    if diag.loc is None:
        return None
    text = texts.get(diag.loc.file)
    if text is None:
        path = Path(diag.loc.file)
        try:  # a regular file of a spec's size only (an error may point into a .pt file)
            if not path.is_file() or path.stat().st_size > QUOTED_FILE_BYTES:
                return None
            text = path.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            return None
        texts[diag.loc.file] = text
    lines = text.split("\n")  # as the parser counts lines (not str.splitlines())
    line = lines[diag.loc.line - 1] if 0 < diag.loc.line <= len(lines) else None
    return None if line is None else line.rstrip("\r")


class Reporter:
    """Prints diagnostics as ``file:line:col: error: message``, the source line and a hint."""

    def __init__(self, stream=None):
        self.stream = stream = stream or sys.stderr
        self.color = hasattr(stream, "isatty") and stream.isatty() and "NO_COLOR" not in os.environ
        self.texts: dict[str, str] = {}
        self.errors = 0

    def __call__(self, diag: Diagnostic) -> None:
        if diag.severity == "error":
            self.errors += 1
        highlight = None
        if self.color:  # the source line highlighted with Pygments where it is installed
            from shrinkc.compiler.syntax.highlight import highlight_line as highlight
        print(diag.render(_source_line(diag, self.texts), self.color, highlight), file=self.stream)


def stdout_console():
    """A rich console on stdout (imported on use: ``shrinkc compile`` never loads rich). A
    closed pipe is raised as the ``BrokenPipeError`` it is, for the command line to report
    ("cannot write the output") like every other command, where rich would exit 1 silently."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    return _Console(highlight=False, soft_wrap=True)
