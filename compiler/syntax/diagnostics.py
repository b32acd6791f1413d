"""What is wrong with a text, said as a located error: lark's syntax errors turned into
messages with hints, and the checks before and after lark parses (a text that is not a
spec, brackets nested too deep, a statement too deep for the passes).

The hints read the text around the error (an open bracket, a following ``=``, the word
before a ``(``), not only the parser's state, which is why they are written out here rather
than matched against examples (lark's ``match_examples``).
"""

from __future__ import annotations

import re

from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from .. import ir
from ..errors import ShrinkError
from .lexing import LANGUAGE_VERSION, shrink_lark

_FRIENDLY = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": 'a quoted path ("...")',
    "SHAPE": "an input shape (CxHxW, such as 3x224x224)",
    "_NL": "end of line",
    "$END": "end of file",
}


def _describe(term: str) -> str:
    if term in _FRIENDLY:
        return _FRIENDLY[term]
    try:
        pattern = shrink_lark().get_terminal(term).pattern
    except KeyError:
        return term
    if pattern.type == "str":
        return f"'{pattern.value}'"
    return term.lower()


def _expected(names: set[str]) -> str:
    shown = sorted({_describe(n) for n in names})
    if len(shown) > 8:
        shown = shown[:8] + ["..."]
    return ", ".join(shown)


_COMMENT_LINES = re.compile(r"#[^\n]*")
_STATEMENT_WORDS = {"include", "op", "cell", "space", "network", "search", "input", "output", "stem",
                    "stage", "head", "recurrent", "tokens", "embed", "decoder"}


def _open_bracket(text: str) -> str | None:
    """The innermost bracket left open at the end of ``text`` (comments skipped)."""
    stack: list[str] = []
    for ch in _COMMENT_LINES.sub("", text):
        if ch in "([":
            stack.append(ch)
        elif ch in ")]" and stack:
            stack.pop()
    return stack[-1] if stack else None


def syntax_error(err: UnexpectedInput, file: str, text: str) -> ShrinkError:
    line = getattr(err, "line", 1) or 1
    col = getattr(err, "column", 1) or 1
    if isinstance(err, UnexpectedCharacters):
        ch = text[err.pos_in_stream] if err.pos_in_stream < len(text) else "?"
        loc = ir.Loc(file=file, line=line, col=col, end_line=line, end_col=col + 1)
        hint = None
        if ch == "'":
            hint = "strings use double quotes"
        elif ch == '"':
            rest = text[err.pos_in_stream + 1:].split("\n", 1)[0]
            hint = ("only include takes a quoted path" if '"' in rest
                    else 'close the string with " on the same line')
        elif ch == ";":
            hint = "a statement ends at the end of its line; no ';' is needed"
        elif ch in "{}":
            hint = "braces open and close cell and network bodies only"
        return ShrinkError(f"unexpected character {ch!r}", loc, hint)
    if isinstance(err, (UnexpectedToken, UnexpectedEOF)):
        tok = getattr(err, "token", None)
        expected = set(getattr(err, "expected", ()) or ())
        if tok is None or tok.type == "$END":
            lines = text.splitlines() or [""]
            line, col = len(lines), len(lines[-1]) + 1
            what = "end of file"
        elif tok.type == "_NL":
            what = "end of line"
            line, col = tok.line, tok.column
        else:
            what = f"{tok.value!r}"
            line, col = tok.line, tok.column
        width = len(tok.value) if tok is not None and tok.type not in ("_NL", "$END") else 1
        loc = ir.Loc(file=file, line=line, col=col, end_line=line, end_col=col + width)
        hint = f"expected {_expected(expected)}" if expected else None
        at_end = tok is None or tok.type == "$END" or tok.start_pos is None
        start = len(text) if at_end else tok.start_pos
        if "SHRINK" in expected and not _COMMENT_LINES.sub("", text[:start]).strip():
            return ShrinkError(
                "a .shrink file starts with its language version",
                loc,
                f"write 'shrink {LANGUAGE_VERSION}' on the first line",
            )
        closer = {"(": "RPAR", "[": "RSQB"}.get(_open_bracket(text[:start]) or "")
        if tok is not None and tok.type in ("NAME", "INT", "FLOAT") and closer in expected:
            hint = "missing " + " or ".join(_describe(t) for t in ("COMMA", closer) if t in expected) + "?"
        if at_end and "RBRACE" in expected:
            hint = "missing '}' at the end of the block?"
        if tok is not None and tok.type not in ("_NL", "$END") and "_NL" in expected:
            after = text[tok.end_pos:].lstrip(" \t") if tok.end_pos is not None else ""
            if tok.value in _STATEMENT_WORDS or (after.startswith("=") and not after.startswith("==")):
                hint = "one statement per line: start a new line before " + repr(tok.value)
        if expected == {"LPAR"}:
            lines = text.split("\n")  # lark counts lines by "\n" only
            prefix = lines[line - 1][: col - 1] if 0 < line <= len(lines) else ""
            before = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*$", prefix)
            if before and before.group(1) in ("concat", "sum", "mean"):
                word = before.group(1)
                hint = f"'{word}' is a merge, written {word}(a, b); it cannot name a node"
        offer = _what_the_language_offers(tok, text, file, line, col)
        if offer is not None:
            return offer
        return ShrinkError(f"unexpected {what}", loc, hint)
    return ShrinkError(str(err).splitlines()[0], ir.Loc(file=file, line=line, col=col))


def _what_the_language_offers(tok: Token | None, text: str, file: str, line: int,
                              col: int) -> ShrinkError | None:
    """Syntax the language does not have, said as what it offers instead: a merge that is
    not concat, sum or mean (``output mul(a, b)``), and a node with several names
    (``x1, x2 = split(2) <- x``)."""
    if tok is None or tok.value not in ("(", ","):
        return None
    lines = text.split("\n")
    prefix = lines[line - 1][: col - 1] if 0 < line <= len(lines) else ""
    rest = lines[line - 1][col:] if 0 < line <= len(lines) else ""
    if tok.value == "(":
        name = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*$", prefix)
        merging = re.match(r"\s*output\b", prefix) or "<-" in prefix
        if name and merging and name.group(1) not in ("concat", "sum", "mean"):
            word, start = name.group(1), name.start(1) + 1
            return ShrinkError(
                f"'{word}' is not a merge: inputs and outputs are merged by concat, sum or mean",
                ir.Loc(file=file, line=line, col=start, end_line=line, end_col=start + len(word)),
                f"write sum(...), mean(...) or concat(...); an op goes before '<-' "
                f"(n = {word}(...) <- a)")
    elif re.fullmatch(r"\s*[A-Za-z_][A-Za-z0-9_]*\s*", prefix) and "=" in rest:
        return ShrinkError("a node has one name: this line would define several",
                           ir.Loc(file=file, line=line, col=col, end_line=line, end_col=col + 1),
                           "write one node per line; a channel split is one chunk per node: "
                           "x1 = chunk(2, 0) <- x, then x2 = chunk(2, 1) <- x")
    return None


# --------------------------------------------------------------------------- checks


_FIRST_WORDS = re.compile(r"(?:shrink|include|op|cell|space|network|search)\b")


def looks_like_a_spec(text: str, file: str) -> None:
    """Refuse, without quoting it, a text whose first statement is not a statement of the
    language: an include or a symlink that led to some other file (/etc/passwd, an
    environment dump) must not be echoed into a log."""
    for n, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if _FIRST_WORDS.match(stripped):
            return
        raise ShrinkError(f"{file} does not look like a .shrink spec", ir.Loc(
            file=file, line=n, col=1, end_line=n, end_col=2),
            f"a spec starts with 'shrink {LANGUAGE_VERSION}' (its first line that is not a "
            "comment is not shown, as the file may be anything)", quote=False)


MAX_NESTING = 100  # brackets inside brackets
MAX_EXPR_DEPTH = 100  # operators inside operators (syntax/transformer.py)


_NESTING_EVENTS = re.compile(r'[\n"#()\[\]]')


def check_nesting(text: str, file: str) -> None:
    """Brackets nested deeper than :data:`MAX_NESTING` are an error at the bracket that goes
    too deep, found before the text is parsed."""
    if text.count("(") + text.count("[") <= MAX_NESTING:
        return
    depth, line, line_start = 0, 1, 0
    in_comment = in_string = False
    for m in _NESTING_EVENTS.finditer(text):
        ch = m.group()
        if ch == "\n":
            line, line_start, in_comment, in_string = line + 1, m.end(), False, False
        elif in_comment:
            continue
        elif ch == '"':
            in_string = not in_string
        elif in_string:
            continue
        elif ch == "#":
            in_comment = True
        elif ch in "([":
            depth += 1
            if depth > MAX_NESTING:
                col = m.start() - line_start + 1
                raise ShrinkError(f"brackets are nested more than {MAX_NESTING} deep",
                                  ir.Loc(file=file, line=line, col=col, end_line=line,
                                         end_col=col + 1), "simplify the expression")
        else:
            depth = max(0, depth - 1)


def too_deep(text: str, file: str) -> ShrinkError:
    """A statement too deep for the passes, which recurse along expressions (thousands of
    chained operators): an error at the line with the most operators."""
    lines = text.split("\n")
    n = max(range(len(lines)), key=lambda i: sum(lines[i].count(c) for c in "+-*/%,"))
    return ShrinkError("a statement is nested too deeply to compile", ir.Loc(
        file=file, line=n + 1, col=1, end_line=n + 1, end_col=2),
        "split the expression over named parameters or nodes", quote=False)


# A statement nested deeper than this (a chain of thousands of operators) is an error: the
# passes after the parser recurse along expressions.
MAX_DEPTH = 500


def check_depth(tree: Tree, text: str, file: str) -> None:
    """:func:`too_deep` when ``tree`` is more than :data:`MAX_DEPTH` rules deep (lark's trees
    are walked without recursion)."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise too_deep(text, file)
        for c in node.children:
            if type(c) is Tree:
                stack.append((c, depth + 1))
