"""Syntax highlighting of ``.shrink`` text: a Pygments lexer and ANSI colouring of one line.

Pygments is optional. Without it this module still imports, :func:`highlight_line` returns
the line unchanged, and ``ShrinkLexer`` is ``None``. Nothing else in the compiler imports
Pygments; the error printer calls :func:`highlight_line` when it writes to a terminal.

Registered with Pygments as the ``shrink`` lexer (``*.shrink``), so ``pygmentize -l shrink``
and tools built on Pygments (Sphinx, MkDocs) colour specs.
"""

from __future__ import annotations

from typing import ClassVar

from .. import ops

KEYWORDS = ("shrink", "include", "op", "cell", "network", "input", "output", "stage", "stem",
            "head", "downsample", "first", "space", "nodes", "ops", "cycle", "shuffle", "edges",
            "search", "deploy", "train", "score", "recurrent", "tokens", "embed", "hidden", "decoder",
            "tied", "untied")
RESIDUAL_WORDS = ("if", "shapes", "match")
TYPES = ("int", "float", "act", "bool")
MERGES = ("concat", "sum", "mean", "leaves")
OPS = tuple(ops.OPS)  # the op table's names
ACTIVATIONS = tuple(a for a in ops.ACTIVATIONS if a not in OPS)  # identity is coloured as an op

try:
    from pygments.lexer import RegexLexer, bygroups, words
    from pygments.token import Comment, Keyword, Name, Number, Operator, Punctuation, String, Text
except ImportError:  # pragma: no cover - exercised where Pygments is not installed
    RegexLexer = None  # type: ignore[assignment,misc]

if RegexLexer is not None:

    class ShrinkLexer(RegexLexer):
        """Lexer for shrinkc's ``.shrink`` architecture specs."""

        name = "Shrink"
        aliases: ClassVar[list[str]] = ["shrink"]
        filenames: ClassVar[list[str]] = ["*.shrink"]
        mimetypes: ClassVar[list[str]] = ["text/x-shrink"]

        _id = r"[A-Za-z_][A-Za-z0-9_]*"
        tokens: ClassVar[dict] = {
            "root": [
                (r"[ \t\f\r]+", Text),
                (r"\n", Text),
                (r"#[^\n]*", Comment.Single),
                (r'"[^"\n]*"', String.Double),
                # definitions: the defined name
                (r"(cell|network|space|search)([ \t]+)(" + _id + ")",
                 bygroups(Keyword.Declaration, Text, Name.Class)),
                (r"(op)([ \t]+)(" + _id + r")(?=[ \t]*=)",
                 bygroups(Keyword.Declaration, Text, Name.Function)),
                # stage NAME: Cell(...)
                (r"(stage)([ \t]+)(" + _id + r")([ \t]*)(:)",
                 bygroups(Keyword, Text, Name.Label, Text, Punctuation)),
                # ``x N`` after a stage's cell: the repeat
                (r"\bx(?=[ \t]+(?!if\b)[0-9(A-Za-z_])", Keyword),
                (words(KEYWORDS, suffix=r"\b"), Keyword),
                (words(RESIDUAL_WORDS, suffix=r"\b"), Keyword),
                (words(TYPES, suffix=r"\b"), Keyword.Type),
                (words(MERGES, suffix=r"\b"), Name.Builtin),
                (words(OPS, suffix=r"\b"), Name.Builtin),
                (words(ACTIVATIONS, suffix=r"\b"), Name.Constant),
                (r"(" + _id + r")([ \t]*)(=)(?!=)", bygroups(Name.Variable, Text, Operator)),
                (_id, Name),
                (r"[0-9]+(?:x[0-9]+)+\b", Number.Integer),  # deploy ... input 3x224x224
                (r"[0-9]+\.[0-9]*([eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+|\.[0-9]+([eE][-+]?[0-9]+)?",
                 Number.Float),
                (r"[0-9][0-9_]*", Number.Integer),
                (r"<-|->|//|[-+*/%=]", Operator),
                (r"[()\[\]{},:]", Punctuation),
            ],
        }

else:  # pragma: no cover
    ShrinkLexer = None  # type: ignore[assignment,misc]


def highlight_line(text: str) -> str:
    """``text`` (one line of a spec) with ANSI colours; unchanged when Pygments is missing."""
    if ShrinkLexer is None:
        return text
    try:
        from pygments import highlight
        from pygments.formatters import TerminalFormatter
    except ImportError:  # pragma: no cover
        return text
    end = text[len(text.rstrip("\r\n")):]
    body = text[:len(text) - len(end)]
    out = highlight(body, ShrinkLexer(), TerminalFormatter())
    return out.rstrip("\n") + end
