"""Text -> program IR: the entry points of the front end.

lark parses the text (``grammar/shrink.lark``, set up in :mod:`.lexing`) into a tree with
positions; :mod:`.comments` gives the comments the lexer collected to its statements;
:mod:`.transformer` turns the tree into ``compiler.ir`` objects; :mod:`.diagnostics` says
what is wrong, located. Files are read by :mod:`.source` (``read_source``, also here for the
modules that import it from this one).

Parsing never builds modules and never evaluates anything: that is the passes' job.
"""

from __future__ import annotations

from pathlib import Path

from lark.exceptions import UnexpectedInput

from .. import ir
from ..errors import ShrinkError
from . import comments
from .diagnostics import check_depth, check_nesting, looks_like_a_spec, syntax_error, too_deep
from .lexing import COMMENTS, LANGUAGE_VERSION, shrink_lark
from .source import MAX_SPEC_BYTES, read_source
from .transformer import to_ir

__all__ = ["LANGUAGE_VERSION", "MAX_SPEC_BYTES", "parse", "parse_file", "read_source"]


def parse(text: str, file: str = "<string>") -> ir.Program:
    """Parse one ``.shrink`` text into a program IR (includes are not followed here)."""
    if "\x00" in text:
        idx = text.index("\x00")
        line = text.count("\n", 0, idx) + 1
        col = idx - (text.rfind("\n", 0, idx) + 1) + 1
        raise ShrinkError("NUL byte in source", ir.Loc(file=file, line=line, col=col, end_line=line,
                                                       end_col=col + 1), quote=False)
    looks_like_a_spec(text, file)
    check_nesting(text, file)
    COMMENTS.items = []
    try:
        tree = shrink_lark().parse(text)
    except UnexpectedInput as e:
        raise syntax_error(e, file, text) from None
    finally:
        collected, COMMENTS.items = COMMENTS.items, []
    check_depth(tree, text, file)
    by_statement, at_end, header = comments.attach(tree, collected)
    try:
        version, vloc, version_comment, items = to_ir(tree, file, by_statement)
    except RecursionError:
        raise too_deep(text, file) from None
    if version != LANGUAGE_VERSION:
        raise ShrinkError(
            f"unknown language version {version}",
            vloc,
            f"this shrinkc reads 'shrink {LANGUAGE_VERSION}'",
        )
    return ir.Program(
        version=version, items=items, end_comments=at_end, file=file, header_comments=header,
        version_comment=version_comment,
    )


def parse_file(path: str | Path, display: str | None = None) -> ir.Program:
    path = Path(path)
    display = display or path.as_posix()
    return parse(read_source(path, display), display)
