"""Source spans of what the parser makes: an ``ir.Loc`` from a lark token, or from a rule's
``meta`` (lark's ``propagate_positions``: from the start of the rule's first token to the end
of its last, brackets around an inlined child included)."""

from __future__ import annotations

from typing import Any

from lark import Token

from .. import ir


def span(file: str, meta: Any) -> ir.Loc:
    """The span of a rule (``meta``), or only the file when lark gave it no position."""
    if getattr(meta, "empty", True):
        return ir.Loc(file=file)
    return ir.Loc(file=file, line=meta.line, col=meta.column, end_line=meta.end_line,
                  end_col=meta.end_column)


def token_span(file: str, tok: Token) -> ir.Loc:
    """The span of one token."""
    return ir.Loc(file=file, line=tok.line, col=tok.column, end_line=tok.end_line or tok.line,
                  end_col=tok.end_column or tok.column + len(tok))
