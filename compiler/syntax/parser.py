"""Text -> program IR. The grammar lives in ``grammar/shrink.lark``; this module builds
``compiler.ir`` objects as lark reduces each rule (no parse tree in between), attaches
comments to statements so the printer can keep them, and maps lark's exceptions to located
errors.

Parsing never builds modules and never evaluates anything: that is the passes' job.
"""

from __future__ import annotations

import math
import os
import re
import stat
import threading
from collections.abc import Iterator
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from lark import Lark, Token
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
)
from lark.grammar import Rule

from .. import ir
from ..errors import ShrinkError
from .printer import BLANK

LANGUAGE_VERSION = 1

_CONTINUE_AFTER = {"->", "<-", ",", "=", "+", "-", "*", "/", "//", "%", ":", "{"}
_OPEN = {"(": ")", "[": "]"}


class _Newlines:
    """Post-lexer: a newline ends a statement except inside brackets or after an operator.

    Tokens pass straight through (no look-ahead): lark's contextual lexer picks what it
    accepts from the parser's current state, so a post-lexer must not hold tokens back.
    """

    always_accept = ("_NL",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        depth = 0
        prev: Token | None = None
        for tok in stream:
            if tok.type == "_NL":
                if depth or prev is None or prev.type == "_NL" or prev.value in _CONTINUE_AFTER:
                    continue
            elif tok.value in _OPEN:
                depth += 1
            elif tok.value in (")", "]") and depth > 0:
                depth -= 1
            yield tok
            prev = tok


_comments = threading.local()


def _collect_comment(tok: Token) -> None:
    _comments.items.append(tok)


def _private_cache(grammar: str) -> str | bool:
    """Where lark may keep the LALR tables: a file in a per-user folder that only this user
    can write (``$XDG_CACHE_HOME/shrinkc`` or ``~/.cache/shrinkc``, made with mode 0700), or
    False (no cache) when no such folder can be had. The tables are a pickle, and loading a
    pickle runs code: a file that someone else could have written is never read."""
    import hashlib

    import lark

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = Path(base) / "shrinkc"
    uid = os.getuid() if hasattr(os, "getuid") else None
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = folder.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_mode & 0o022 or (uid is not None
                                                                   and st.st_uid != uid):
            return False
        key = hashlib.sha256(f"{lark.__version__}\0{_OPTIONS_TAG}\0{grammar}".encode()
                             ).hexdigest()[:24]
        path = folder / f"lalr-{key}.pickle"
        if path.is_symlink() or path.exists():
            fst = path.lstat()
            if not stat.S_ISREG(fst.st_mode) or fst.st_mode & 0o022 or (uid is not None
                                                                         and fst.st_uid != uid):
                return False
        return str(path)
    except OSError:
        return False


# what the cached tables were built for, besides the grammar and lark's version: a cache
# written by a shrinkc that built parse trees (``propagate_positions``) is not this one's
_OPTIONS_TAG = "inline-ir-1"


@lru_cache(maxsize=1)
def _lark() -> Lark:
    text = resources.files("shrinkc.grammar").joinpath("shrink.lark").read_text("utf-8")
    lk = Lark(
        text,
        parser="lalr",
        lexer="contextual",
        postlex=_Newlines(),
        maybe_placeholders=True,
        lexer_callbacks={"COMMENT": _collect_comment},
        transformer=_Callbacks(),  # the IR is built while parsing: no parse tree
        cache=_private_cache(text),  # never lark's default: a predictable name in /tmp
    )
    _locate(lk)
    return lk


# --------------------------------------------------------------------------- the parse loop


_SKIP = "[ \t\f]*"  # blanks that _fast_parser's scanners skip before a token


class _Fallback(Exception):
    """The fast loop met something it leaves to lark: a syntax error, an unknown lark."""


def _fast_parser(lk: Lark) -> Any:
    """lark's contextual lexer, ``_Newlines`` and LALR loop in one function, with lark's own
    tables, per-state scanners and callbacks (so the same tokens, with the same positions,
    and the same reductions): lark's generators, ``LineCounter`` and ``Token.__new__`` cost
    about half of a large parse. It raises ``_Fallback`` where lark would raise (a syntax
    error); ``parse`` then runs lark's own parse on the text from the start, which raises
    lark's exception, as before. None when lark is not laid out as this expects."""
    try:
        from lark.lexer import ContextualLexer, UnlessCallback
        from lark.parsers.lalr_analysis import Shift

        frontend = lk.parser
        lexer = frontend.lexer.lexer
        parser = frontend.parser.parser
        table = parser.parse_table
        callbacks = parser.callbacks
        start_state, end_state = table.start_states["start"], table.end_states["start"]
        if type(lexer) is not ContextualLexer or not isinstance(frontend.lexer.postlexer,
                                                                _Newlines):
            return None
        # parser state -> (match functions, lexer callbacks, ignored types, newline types)
        by_state = {}
        # the same with the blanks before a token skipped in its match (``_SKIP``), for a
        # text without "\r": there WS matches exactly the blanks [ \t\f] that the skip takes
        # and no other terminal starts with one, so skipping them is matching WS, ignored
        skipping: dict | None = {}
        ws = lexer.root_lexer.terminals_by_name.get("WS")
        if ws is None or ws.pattern.to_regexp() != "[ \t\f\r]+":  # pragma: no cover
            skipping = None
        for state, basic in lexer.lexers.items():
            scanner = basic.scanner  # built on first use, with basic.callback
            # terminal -> the scanner of lark's UnlessCallback on it (a NAME that is one of
            # the keywords this state's lexer knows)
            keyword_scanners = {name: cb.scanner for name, cb in basic.callback.items()
                                if type(cb) is UnlessCallback}
            by_state[state] = (tuple(mre.match for mre in scanner._mres), basic.callback,
                               basic.ignore_types, basic.newline_types, keyword_scanners)
            if skipping is not None and "WS" in basic.ignore_types and "WS" not in basic.callback:
                skipping[state] = (tuple(re.compile(_SKIP + "(?:" + mre.pattern + ")",
                                                    mre.flags).match for mre in scanner._mres),
                                   *by_state[state][1:])
            else:  # pragma: no cover - every state's lexer takes WS
                skipping = None
        # parser state -> terminal or rule name -> (True, next state) for a shift, or
        # (False, (size, rule name, callback)) for a reduction; callback None: ``_first``
        # (the value is the only child's, the span too)
        rules = {}
        actions = {}
        for state, row in table.states.items():
            actions[state] = out = {}
            for sym, (action, arg) in row.items():
                if action is Shift:
                    out[sym] = (True, arg)
                    continue
                if arg not in rules:
                    cb = callbacks[arg]
                    size = len(arg.expansion)
                    if cb is _first and size != 1:  # pragma: no cover - _locate's rule
                        return None
                    rules[arg] = (size, arg.origin.name, None if cb is _first else cb)
                out[sym] = (False, rules[arg])
        if any(isinstance(k, str) for k in callbacks):  # pragma: no cover - no terminal callbacks
            return None
    except (AttributeError, KeyError, ImportError, TypeError):  # pragma: no cover - another lark
        return None
    new_str = str.__new__
    continue_after, opening = _CONTINUE_AFTER, _OPEN

    def run(text: str) -> Any:
        lexers = skipping if skipping is not None and "\r" not in text else by_state
        keywords_seen: dict[Any, dict[str, str | None]] = {}
        state = start_state
        state_stack = [state]
        value_stack: list = []
        push_state, push_value = state_stack.append, value_stack.append
        pos, line, line_start, end = 0, 1, 0, len(text)
        depth = 0
        prev: Token | None = None
        at_end = False
        while True:
            if pos < end:
                matchers, term_callbacks, ignore, newline_types, keyword_scanners = lexers[state]
                for match in matchers:
                    m = match(text, pos)
                    if m:
                        break
                else:
                    raise _Fallback
                type_ = m.lastgroup
                value = m.group(type_)  # the token, after any blanks skipped
                pos = m.end()
                start = pos - len(value)
                if type_ in newline_types:
                    newlines = value.count("\n")
                    if newlines:
                        line_before, line = line, line + newlines
                        column = start - line_start + 1
                        line_start = start + value.rindex("\n") + 1
                    else:
                        line_before, column = line, start - line_start + 1
                else:
                    line_before, column = line, start - line_start + 1
                if type_ in ignore:
                    if type_ in term_callbacks:  # a comment: kept for the printer
                        t = new_str(Token, value)
                        t.type, t.value, t.start_pos, t.line, t.column = (type_, value, start,
                                                                          line_before, column)
                        t.end_line, t.end_column, t.end_pos = line, pos - line_start + 1, pos
                        term_callbacks[type_](t)
                    continue
                t = new_str(Token, value)
                t.type, t.value, t.start_pos, t.line, t.column = type_, value, start, line_before, column
                t.end_line, t.end_column, t.end_pos = line, pos - line_start + 1, pos
                if type_ in term_callbacks:  # a keyword, which the scanner matched as a NAME
                    scanner = keyword_scanners.get(type_)
                    if scanner is None:  # pragma: no cover - the grammar's only one is lark's
                        t = term_callbacks[type_](t)
                        type_ = t.type
                    else:  # lark's UnlessCallback, its answer kept per scanner and text
                        memo = keywords_seen.get(scanner)
                        if memo is None:
                            memo = keywords_seen[scanner] = {}
                        res = memo.get(value, memo)
                        if res is memo:
                            res = memo[value] = scanner.fullmatch(value)
                        if res is not None:
                            t.type = type_ = res
                # _Newlines
                if type_ == "_NL":
                    if depth or prev is None or prev.type == "_NL" or prev.value in continue_after:
                        continue
                elif value in opening:
                    depth += 1
                elif depth > 0 and (value == ")" or value == "]"):
                    depth -= 1
                prev = t
            else:  # the end of the text: $END, through the same loop
                if prev is not None:
                    t = Token.new_borrow_pos("$END", "", prev)
                else:
                    t = Token("$END", "", 0, 1, 1)
                type_, at_end = "$END", True
            # ParserState.feed_token
            while True:
                try:
                    shift, arg = actions[state][type_]
                except KeyError:
                    raise _Fallback from None
                if shift:
                    if at_end:  # pragma: no cover - lark asserts that this does not happen
                        raise _Fallback
                    state = arg
                    push_state(state)
                    push_value(t)
                    break
                size, origin, cb = arg
                if cb is None:
                    del state_stack[-1]
                else:
                    children = value_stack[-size:]
                    del state_stack[-size:]
                    del value_stack[-size:]
                    push_value(cb(children))
                state = actions[state_stack[-1]][origin][1]
                push_state(state)
                if at_end and state == end_state:
                    return value_stack[-1]

    return run


@lru_cache(maxsize=1)
def _fast_loop() -> Any:
    """``_fast_parser`` of ``_lark()``, or a loop that leaves every text to lark."""
    run = _fast_parser(_lark())
    if run is None:  # pragma: no cover - another lark
        def run(text: str) -> Any:
            raise _Fallback
    return run


# --------------------------------------------------------------------------- errors

_FRIENDLY = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": 'a quoted path ("...")',
    "_NL": "end of line",
    "$END": "end of file",
}


def _describe(term: str) -> str:
    if term in _FRIENDLY:
        return _FRIENDLY[term]
    try:
        pattern = _lark().get_terminal(term).pattern
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


def _syntax_error(err: UnexpectedInput, file: str, text: str) -> ShrinkError:
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


# --------------------------------------------------------------------------- tree -> IR


# The fields set of every location the parser makes: one set, as pydantic changes a model's
# set only when it sets a field, which a frozen model refuses, or on a copy (model_copy)
_LOC_FIELDS = {"file", "line", "col", "end_line", "end_col"}
_set = object.__setattr__


def _span(file: str, line: int, col: int, end_line: int, end_col: int) -> ir.Loc:
    """``ir.Loc(file=file, line=line, ...)`` for the parser's positions, which are ints by
    construction (lark's counts): the same object, made without pydantic's validation (a
    large spec has five locations a line)."""
    loc = _new_loc(ir.Loc)
    _set(loc, "__dict__", {"file": file, "line": line, "col": col, "end_line": end_line,
                           "end_col": end_col})
    _set(loc, "__pydantic_fields_set__", _LOC_FIELDS)
    _set(loc, "__pydantic_extra__", None)
    _set(loc, "__pydantic_private__", None)
    return loc


_new_loc = ir.Loc.__new__


def _loc(file: str, meta: Any) -> ir.Loc:
    if getattr(meta, "empty", True):
        return ir.Loc(file=file)
    return _span(file, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_loc(file: str, tok: Token) -> ir.Loc:
    return _span(file, tok.line, tok.column, tok.end_line or tok.line,
                 tok.end_column or tok.column + len(tok))


# --------------------------------------------------------------------------- IR while parsing
#
# lark calls back as it reduces each rule (``transformer=``), so no parse tree is built. The
# methods of ``_ToIR`` (one per rule or alias) take the rule's ``meta`` (its span, as lark's
# ``propagate_positions`` would give it) and its children, already turned into IR. Two kinds:
#
# * expressions, calls, names and the like run at once;
# * statements and blocks (``_DEFERRED``, and any rule with one among its children) need
#   their comments, which can be given out only once every statement's span is known: they
#   return a ``_Deferred`` and run, bottom up, after the parse (``_ToIR.finish``).
#
# Errors keep the order of a walk over the finished tree: syntax errors first (the whole text
# parses before anything is raised), then the first error in bottom-up, left-to-right order.


class _Meta:
    """The span of a rule: from the start of its first child to the end of its last one
    (brackets around an inlined child included, as lark's ``propagate_positions`` does);
    ``depth``: how deep the rule's subtree is."""

    __slots__ = ("line", "column", "end_line", "end_column", "depth")
    empty = False

    def __init__(self, line: int, column: int, end_line: int, end_column: int, depth: int):
        self.line, self.column, self.end_line, self.end_column = line, column, end_line, end_column
        self.depth = depth


class _Deferred:
    """A statement or block whose IR is built after the parse (``_ToIR.finish``)."""

    __slots__ = ("data", "method", "meta", "children")

    def __init__(self, data: str, method: Any, meta: _Meta, children: list):
        self.data, self.method, self.meta, self.children = data, method, meta, children


class _Failed:
    """Stands for every value built after the first error of an expression (raised when the
    parse is done, unless a syntax error comes first)."""

    __slots__ = ("error",)

    def __init__(self, error: ShrinkError):
        self.error = error


class _Build:
    """The state of the parse in progress (one at a time: ``_PARSE_LOCK``)."""

    def __init__(self) -> None:
        self.reset(None, "", "")

    def reset(self, to_ir: Any, text: str, file: str) -> None:
        self.ir = to_ir
        self.text, self.file = text, file
        self.spans: list[_Meta] = []  # one per rule value on lark's value stack
        self.meta: _Meta | None = None  # the span of the rule being reduced
        self.failed: _Failed | None = None


_BUILD = _Build()
_PARSE_LOCK = threading.Lock()

# A statement nested deeper than this (a chain of thousands of operators) is an error: the
# passes after the parser recurse along expressions.
MAX_DEPTH = 500


class _Callbacks:
    """What lark calls for each rule: ``_ToIR``'s method of that name, for the parse in
    progress (``_BUILD``); the rules it has no method for become lark ``Tree``s."""

    def __getattr__(self, name: str) -> Any:
        method = None if name.startswith("_") else getattr(_ToIR, name, None)
        if not callable(method) or name == "finish":
            raise AttributeError(name)
        build = _BUILD
        if name in _DEFERRED:
            def deferred(children: list) -> Any:
                return _Deferred(name, method, build.meta, children)

            return deferred

        def now(children: list) -> Any:
            if build.failed is not None:
                return build.failed
            for c in children:  # a rule around statements waits for them
                if type(c) is _Deferred:
                    return _Deferred(name, method, build.meta, children)
            try:
                return method(build.ir, build.meta, children)
            except ShrinkError as e:
                build.failed = _Failed(e)
                return build.failed

        return now


def _locate(lk: Lark) -> None:
    """Wrap lark's callback of every rule so that it keeps the spans (``_BUILD.spans``, in
    step with lark's value stack) and hands the rule's span to ``_ToIR``: lark's own
    ``propagate_positions`` does this for parse trees only."""
    build = _BUILD
    callbacks = lk._callbacks  # the dict the LALR parser calls
    for rule, inner in list(callbacks.items()):
        if not isinstance(rule, Rule):
            continue
        expansion = rule.expansion
        if not expansion:  # pragma: no cover - the grammar has no empty rule
            raise RuntimeError(f"empty rule {rule}: no span to give it")
        if (rule.options.expand1 and rule.alias is None and len(expansion) == 1
                and not expansion[0].is_term and not expansion[0].name.startswith("_")):
            # ``?name: other``: the value is the child's, and so is its span (one on the
            # stack for the child, one for this rule: the same)
            callbacks[rule] = _first
            continue
        rules = sum(1 for sym in expansion if not sym.is_term)
        # a rule that is inlined into its parent (``_name``, or ``?name`` with one child)
        # adds no level to the tree
        inlined = rule.origin.name.startswith("_") or (
            rule.options.expand1 and rule.alias is None and len(expansion) == 1)
        callbacks[rule] = _spanning(inner, build, rules, expansion[0].is_term,
                                    expansion[-1].is_term, 0 if inlined else 1)


def _first(children: list) -> Any:
    return children[0]


def _spanning(inner: Any, build: _Build, rules: int, first_token: bool, last_token: bool,
              level: int):
    def reduce(children: list) -> Any:
        spans = build.spans
        if rules == 1:
            only = spans.pop()
            depth = only.depth + level
            first = children[0] if first_token else only
            last = children[-1] if last_token else only
        elif rules:
            mine = spans[-rules:]
            del spans[-rules:]
            depth = max(m.depth for m in mine) + level
            first = children[0] if first_token else mine[0]
            last = children[-1] if last_token else mine[-1]
        else:
            depth = level
            first, last = children[0], children[-1]
        meta = build.meta = _Meta(first.line, first.column, last.end_line, last.end_column, depth)
        if depth > MAX_DEPTH and build.failed is None:
            build.failed = _Failed(_too_deep(build.text, build.file))
        spans.append(meta)
        return inner(children)

    return reduce


class _ToIR:
    """The IR of each rule (or alias), bottom up: the method named after the rule takes the
    rule's ``meta`` and its children, already IR (see ``_Callbacks``)."""

    def __init__(self, file: str):
        self.file = file
        self.comments: dict[Any, Any] = {}  # id(meta) -> comments for that statement

    def finish(self, value: Any) -> Any:
        """The IR of a deferred statement or block (its deferred children first)."""
        if type(value) is _Failed:
            raise value.error
        if type(value) is not _Deferred:
            return value
        children = value.children
        for i, c in enumerate(children):
            if type(c) is _Deferred or type(c) is _Failed:
                children[i] = self.finish(c)
        return value.method(self, value.meta, children)

    def _c(self, meta: Any) -> ir.Comments:
        return self.comments.get(id(meta), ir.NO_COMMENTS)

    # expressions
    def _int(self, tok: Token) -> int:
        try:
            return int(tok.replace("_", ""))
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            raise ShrinkError("integer literal is too long", _tok_loc(self.file, tok)) from None

    def int(self, meta, children):
        (tok,) = children
        return ir.Num(value=self._int(tok), loc=_tok_loc(self.file, tok))

    def float(self, meta, children):
        (tok,) = children
        value = float(tok)
        if not math.isfinite(value) or (value == 0 and any(c in "123456789" for c in
                                                           tok.lower().split("e")[0])):
            raise ShrinkError(f"number {tok} is out of range: a float holds about 1e-308 to "
                              "1.8e308", _tok_loc(self.file, tok),
                              "write a number a float can hold", quote=False)
        return ir.Num(value=value, loc=_tok_loc(self.file, tok))

    def ref(self, meta, children):
        (tok,) = children
        return ir.Ref(name=str(tok), loc=_tok_loc(self.file, tok))

    def _bin(op):  # noqa: N805 - a factory used in the class body
        def method(self, meta, children):
            left, right = children
            return ir.BinOp(op=op, left=left, right=right, loc=_loc(self.file, meta))

        return method

    add, sub, mul = _bin("+"), _bin("-"), _bin("*")
    floordiv, truediv, mod = _bin("//"), _bin("/"), _bin("%")

    def neg(self, meta, children):
        (operand,) = children
        if isinstance(operand, ir.Num):
            return ir.Num(value=-operand.value, loc=_loc(self.file, meta))
        return ir.Neg(operand=operand, loc=_loc(self.file, meta))

    # calls
    def kwarg(self, meta, children):
        name, value = children
        return ir.Arg(name=str(name), value=value, loc=_loc(self.file, meta))

    def posarg(self, meta, children):
        (value,) = children
        return ir.Arg(name=None, value=value, loc=_loc(self.file, meta))

    def args(self, meta, children):
        return tuple(children)

    def opcall(self, meta, children):
        name, args = children
        return ir.OpCall(op=str(name), args=tuple(args or ()), loc=_loc(self.file, meta))

    def _act(self, tok: Token | None) -> ir.Expr | None:
        return None if tok is None else ir.Ref(name=str(tok), loc=_tok_loc(self.file, tok))

    # top level
    def version(self, meta, children):
        (tok,) = children
        return ("version", self._int(tok), _tok_loc(self.file, tok), self._c(meta).trailing)

    def include(self, meta, children):
        (tok,) = children
        return ir.Include(path=str(tok)[1:-1], comments=self._c(meta), loc=_tok_loc(self.file, tok))

    def preset(self, meta, children):
        name, call, act = children
        return ir.OpPreset(
            name=str(name), call=call, act=self._act(act), comments=self._c(meta),
            loc=_tok_loc(self.file, name),
        )

    def params(self, meta, children):
        return tuple(p for p in children if p is not None)

    def param(self, meta, children):
        name, typ, default = children
        if typ is not None and str(typ) not in ("int", "float", "act", "bool"):
            raise ShrinkError(
                f"unknown parameter type '{typ}'",
                _tok_loc(self.file, typ),
                "parameter types are int, float, act and bool",
            )
        return ir.Param(
            name=str(name),
            type=None if typ is None else str(typ),
            default=default,
            loc=_tok_loc(self.file, name),
        )

    def names(self, meta, children):
        return tuple(children)

    def merge(self, meta, children):
        (tok,) = children
        return str(tok)

    def merged_sources(self, meta, children):
        merge, names = children
        return merge, tuple(str(n) for n in names), True, _loc(self.file, meta)

    def plain_sources(self, meta, children):
        (names,) = children
        if isinstance(names, Token):
            names = (names,)
        return "concat", tuple(str(n) for n in names), False, _loc(self.file, meta)

    def input_stmt(self, meta, children):
        name, channels, state = children
        return ir.InputStmt(
            name=str(name), channels=None if channels is None else str(channels),
            state=None if state is None else str(state),
            comments=self._c(meta), loc=_tok_loc(self.file, name),
        )

    def node_stmt(self, meta, children):
        name, call, act, sources = children
        merge, inputs, explicit, sloc = sources if sources is not None else ("concat", (), False, ir.NOWHERE)
        return ir.NodeStmt(
            name=str(name), op=call, act=self._act(act), inputs=inputs, merge=merge,
            explicit_merge=explicit, comments=self._c(meta), loc=_tok_loc(self.file, name),
            inputs_loc=sloc,
        )

    def residual(self, meta, children):
        name, if_match = children
        return str(name), "if_match" if if_match is not None else "project"

    def if_match(self, meta, children):
        return True

    def output_stmt(self, meta, children):
        sources, residual, act = children
        merge, nodes, explicit, _ = sources
        res, mode = residual if residual is not None else (None, "project")
        return ir.OutputStmt(
            nodes=nodes, merge=merge, explicit_merge=explicit, residual=res, residual_mode=mode,
            act=self._act(act), comments=self._c(meta), loc=_loc(self.file, meta),
        )

    def recurrent(self, meta, children):
        return True

    def cell(self, meta, children):
        recurrent, name, params, *body = children
        return ir.CellDef(
            name=str(name), recurrent=bool(recurrent), params=params or (), body=tuple(body),
            end_comments=self.comments.get(("end", id(meta)), ()),
            comments=self._c(meta), loc=_tok_loc(self.file, name),
        )

    def net_input(self, meta, children):
        name, *shape = children
        return ir.NetInput(
            name=str(name), shape=tuple(shape), comments=self._c(meta),
            loc=_tok_loc(self.file, name),
        )

    def _lm(self, kind, meta, **fields):
        return ir.LMStmt(kind=kind, comments=self._c(meta), loc=_loc(self.file, meta), **fields)

    def net_tokens(self, meta, children):
        return self._lm("tokens", meta, value=children[0])

    def net_embed(self, meta, children):
        return self._lm("embed", meta, value=children[0])

    def net_recurrent(self, meta, children):
        name, hidden = children
        return self._lm("recurrent", meta, name=str(name), value=hidden)

    def net_dropout(self, meta, children):
        return self._lm("dropout", meta, args=tuple(children[0] or ()))

    def net_stochastic(self, meta, children):
        return ir.StochasticDepthStmt(value=children[0], comments=self._c(meta),
                                      loc=_loc(self.file, meta))

    def net_decoder(self, meta, children):
        return self._lm("decoder", meta, name=str(children[0]))

    def layer(self, meta, children):
        call, act = children
        return ir.Layer(op=call, act=self._act(act), loc=_loc(self.file, meta))

    def chain(self, meta, children):
        return tuple(children)

    def stem(self, meta, children):
        (layers,) = children
        return ir.Chain(kind="stem", layers=layers, comments=self._c(meta), loc=_loc(self.file, meta))

    def head(self, meta, children):
        (layers,) = children
        return ir.Chain(kind="head", layers=layers, comments=self._c(meta), loc=_loc(self.file, meta))

    def downsample(self, meta, children):
        (call,) = children
        return call

    def first(self, meta, children):
        (args,) = children
        return tuple(args or ())

    def stage(self, meta, children):
        name, call, repeat, down, first = children
        return ir.StageStmt(
            name=None if name is None else str(name), cell=call, repeat=repeat, downsample=down,
            first=first or (), comments=self._c(meta), loc=_loc(self.file, meta),
        )

    def network(self, meta, children):
        name, params, *body = children
        return ir.NetworkDef(
            name=str(name), params=params or (), body=tuple(body),
            end_comments=self.comments.get(("end", id(meta)), ()),
            comments=self._c(meta), loc=_tok_loc(self.file, name),
        )

    def variant(self, meta, children):
        name, base, args = children
        return ir.VariantDef(
            name=str(name), base=str(base), args=tuple(args or ()), comments=self._c(meta),
            loc=_tok_loc(self.file, name),
        )

    # search spaces
    def space_nodes(self, meta, children):
        (n,) = children
        return "nodes", n, meta

    def ops_list(self, meta, children):
        return "ops", ("list", tuple(children), None), meta

    def ops_cycle(self, meta, children):
        *calls, seed = children
        return "ops", ("cycle", tuple(calls), seed), meta

    def shuffle(self, meta, children):
        (tok,) = children
        return self._int(tok)

    def space_act(self, meta, children):
        (tok,) = children
        return "act", self._act(tok), meta

    def edge(self, meta, children):
        a, b = children
        return self._int(a), self._int(b)

    def space_edges(self, meta, children):
        return "edges", tuple(e for e in children if e is not None), meta

    def space(self, meta, children):
        recurrent, name, params, *body = children
        fields: dict[str, Any] = {}
        locs: dict[str, ir.Loc] = {}
        comments: dict[str, ir.Comments] = {}
        for stmt in body:
            if isinstance(stmt, ir.InputStmt):
                key, value, loc, c = "input", stmt.name, stmt.loc, stmt.comments
            elif isinstance(stmt, ir.OutputStmt):
                key, value, loc, c = "output", stmt, stmt.loc, None
            else:
                key, value, smeta = stmt
                loc, c = _loc(self.file, smeta), self._c(smeta)
            if key in fields:
                raise ShrinkError(f"'{key}' is given twice in space '{name}'", loc)
            fields[key], locs[key] = value, loc
            if c is not None and c != ir.NO_COMMENTS:
                comments[key] = c
        where = _tok_loc(self.file, name)
        for key in ("nodes", "ops", "output"):
            if key not in fields:
                raise ShrinkError(f"space '{name}' has no '{key}'", where,
                                  {"nodes": "write e.g. nodes 8", "ops": "write e.g. ops conv(w)",
                                   "output": "write e.g. output concat(leaves) + x"}[key])
        rule, ops, seed = fields["ops"]
        return ir.SpaceDef(
            name=str(name), recurrent=bool(recurrent), params=params or (), input_name=fields.get("input", "x"),
            nodes=fields["nodes"], ops=ops, rule=rule, shuffle=seed, act=fields.get("act"),
            edges=fields.get("edges"), output=fields["output"], stmt_comments=comments,
            end_comments=self.comments.get(("end", id(meta)), ()), comments=self._c(meta),
            loc=where, locs=ir.LocMap(at=locs),
        )

    def search_space(self, meta, children):
        return "space", str(children[0]), meta

    def search_network(self, meta, children):
        return "network", str(children[0]), meta

    def search_train(self, meta, children):
        return "train", tuple(children[0] or ()), meta

    def search_shrink(self, meta, children):
        return "shrink", tuple(children[0] or ()), meta

    def search_score(self, meta, children):
        return "score", children[0], meta

    def search(self, meta, children):
        name, *body = children
        fields: dict[str, Any] = {}
        locs: dict[str, ir.Loc] = {}
        comments: dict[str, ir.Comments] = {}
        for key, value, smeta in body:
            loc = _loc(self.file, smeta)
            if key in fields:
                raise ShrinkError(f"'{key}' is given twice in search '{name}'", loc)
            fields[key], locs[key] = value, loc
            c = self._c(smeta)
            if c != ir.NO_COMMENTS:
                comments[key] = c
        return ir.SearchDef(
            name=str(name), **fields, stmt_comments=comments,
            end_comments=self.comments.get(("end", id(meta)), ()), comments=self._c(meta),
            loc=_tok_loc(self.file, name), locs=ir.LocMap(at=locs),
        )

    def call(self, meta, children):
        name, *args = children
        return ir.Call(func=str(name), args=tuple(args), loc=_loc(self.file, meta))

    def start(self, meta, children):
        (_, version, vloc, comment), *items = children
        return version, vloc, comment, tuple(items)


# --------------------------------------------------------------------------- comments

_STATEMENTS = {
    "include", "preset", "cell", "network", "variant", "input_stmt", "node_stmt",
    "output_stmt", "net_input", "stem", "head", "stage", "version",
    "space", "space_nodes", "ops_list", "ops_cycle", "space_act", "space_edges",
    "search", "search_space", "search_network", "search_train", "search_shrink", "search_score",
    "net_tokens", "net_embed", "net_recurrent", "net_dropout", "net_decoder", "net_stochastic",
}
_BLOCKS = {"cell", "network", "space", "search"}
_DEFERRED = _STATEMENTS | {"start"}


def _topdown(root: Any) -> Iterator[_Deferred]:
    """The deferred statements and blocks under ``root``, parents first, in source order."""
    stack = [root]
    while stack:
        node = stack.pop()
        if type(node) is _Deferred:
            yield node
            stack.extend(reversed(node.children))


class _Holders:
    """Where comments can go: every statement's first line (and a block's closing line), the
    end line of each statement (for trailing comments) and the lines that open a block."""

    def __init__(self, root: Any):
        self.at: list[tuple[int, int, str, Any]] = []  # (line, order, kind, meta)
        self.ends: dict[int, Any] = {}  # end line of a statement -> meta (innermost wins)
        self.block_lines: set[int] = set()
        order = 0
        for sub in _topdown(root):
            if sub.data not in _STATEMENTS or sub.meta.empty:
                continue
            order += 1
            self.at.append((sub.meta.line, order, "stmt", sub.meta))
            if sub.data in _BLOCKS:
                self.block_lines.add(sub.meta.line)
                self.at.append((sub.meta.end_line, order + 10**6, "end", sub.meta))
            elif sub.meta.end_line not in self.ends or sub.data not in ("include", "preset",
                                                                         "variant"):
                self.ends[sub.meta.end_line] = sub.meta
        self.at.sort(key=lambda h: (h[0], h[1]))

    def trailing_owner(self, tok: Token, taken: dict[int, str]) -> Any | None:
        """The statement a comment trails: one ending on its line before it, or a block
        opened on its line; None when the comment stands on a line of its own."""
        line = tok.line
        if line in self.ends and self.ends[line].end_column <= tok.column \
                and id(self.ends[line]) not in taken:
            return self.ends[line]
        if line in self.block_lines:  # after a block's opening brace: keep it on that line
            meta = next(h[3] for h in self.at if h[0] == line and h[2] == "stmt")
            if id(meta) not in taken:
                return meta
        return None

    def leading_key(self, line: int) -> tuple[Any, int | None]:
        """(key, line of the statement) of the comment block on ``line``: the next statement,
        the end of the enclosing block, the file's header or its end."""
        target = next((h for h in self.at if h[0] > line or (h[0] == line and h[2] == "end")),
                      None)
        if target is None:
            return "eof", None
        if target[2] == "end":
            return ("end", id(target[3])), target[0]
        if target[1] == 1:  # before the version line
            return "header", None
        return id(target[3]), target[0]


def _comment_block(lines: list[tuple[int, str]], next_line: int | None) -> tuple[str, ...]:
    """Comment lines as one block, with a blank where the source had blank lines between
    them, and after them when the statement they lead does not follow at once."""
    out: list[str] = []
    last = None
    for line, text in lines:
        if last is not None and line > last + 1:
            out.append(BLANK)
        out.append(text)
        last = line
    if next_line is not None and last is not None and next_line > last + 1:
        out.append(BLANK)
    return tuple(out)


def _attach_comments(root: Any, comments: list[Token]) -> tuple[dict, tuple, tuple]:
    """Give each comment to a statement: trailing when it ends the statement's last line,
    otherwise leading of the next statement (or the end of the enclosing block or file)."""
    if not comments:  # nothing to place: no need to list where comments could go
        return {}, (), ()
    holders = _Holders(root)
    groups: dict[Any, list[tuple[int, str]]] = {}  # key -> [(line, text)]
    stmt_line: dict[Any, int] = {}
    trailing: dict[int, str] = {}
    for tok in comments:
        text = str(tok)[1:].rstrip()
        owner = holders.trailing_owner(tok, trailing)
        if owner is not None:
            trailing[id(owner)] = text
            continue
        key, line = holders.leading_key(tok.line)
        if line is not None:
            stmt_line[key] = line
        groups.setdefault(key, []).append((tok.line, text))

    def texts(key: Any) -> tuple[str, ...]:
        return _comment_block(groups.get(key, []),
                              stmt_line.get(key) if isinstance(key, int) else None)

    out: dict[Any, Any] = {}
    for key in {k for k in groups if isinstance(k, int)} | set(trailing):
        out[key] = ir.Comments(leading=texts(key), trailing=trailing.get(key))
    for key in groups:
        if isinstance(key, tuple):
            out[key] = texts(key)
    return out, texts("eof"), texts("header")


# --------------------------------------------------------------------------- entry points


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
            kind = next((what for test, what in _KINDS if test(st.st_mode)), "not a file")
            raise ShrinkError(f"{display} is {kind}, not a regular file: refused", loc,
                              f"shrinkc reads a {kind} from a regular file only")
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


_FIRST_WORDS = re.compile(r"(?:shrink|include|op|cell|space|network|search)\b")


def _looks_like_a_spec(text: str, file: str) -> None:
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


_NESTING_EVENTS = re.compile(r'[\n"#()\[\]]')


def _check_nesting(text: str, file: str) -> None:
    """Brackets nested deeper than :data:`MAX_NESTING` are an error at the bracket that goes
    too deep, found before the parser recurses into them."""
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


def _too_deep(text: str, file: str) -> ShrinkError:
    """A statement too long for the parser's recursion (thousands of chained operators):
    an error at the line with the most operators."""
    lines = text.split("\n")
    n = max(range(len(lines)), key=lambda i: sum(lines[i].count(c) for c in "+-*/%,"))
    return ShrinkError("a statement is nested too deeply to compile", ir.Loc(
        file=file, line=n + 1, col=1, end_line=n + 1, end_col=2),
        "split the expression over named parameters or nodes", quote=False)


def parse(text: str, file: str = "<string>") -> ir.Program:
    """Parse one ``.shrink`` text into a program IR (includes are not followed here)."""
    if "\x00" in text:
        idx = text.index("\x00")
        line = text.count("\n", 0, idx) + 1
        col = idx - (text.rfind("\n", 0, idx) + 1) + 1
        raise ShrinkError("NUL byte in source", ir.Loc(file=file, line=line, col=col, end_line=line,
                                                       end_col=col + 1), quote=False)
    _looks_like_a_spec(text, file)
    _check_nesting(text, file)
    to_ir = _ToIR(file)
    lk = _lark()
    with _PARSE_LOCK:
        _comments.items = []
        _BUILD.reset(to_ir, text, file)
        try:
            try:
                root = _fast_loop()(text)
            except _Fallback:  # lark's own parse, from the start, says what is wrong
                _comments.items = []
                _BUILD.reset(to_ir, text, file)
                root = lk.parse(text)
        except UnexpectedInput as e:
            raise _syntax_error(e, file, text) from None
        finally:
            collected = list(getattr(_comments, "items", []))
            _comments.items = []
            spans = len(_BUILD.spans)
            _BUILD.reset(None, "", "")
    if spans != 1:  # pragma: no cover - lark no longer calls the callbacks _locate wrapped
        raise RuntimeError("the parser lost track of positions: is this lark supported?")
    to_ir.comments, at_end, header = _attach_comments(root, collected)
    try:
        version, vloc, version_comment, items = to_ir.finish(root)
    except RecursionError:
        raise _too_deep(text, file) from None
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
