"""The parser (``compiler/syntax``): lark's LALR parser builds a tree with positions, a lark
``Transformer`` turns it into IR. Its results are lark's own: the same with lark's tables
built afresh as with the cached ones, the same for texts that differ only in blanks and line
ends, and the same when threads parse at once (each collects its own comments).

(The name is historical: this file tested a copy of lark's parse loop, removed in issue 23.)
"""

from __future__ import annotations

import random
import re
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import pytest
from lark import Lark

from shrinkc.compiler.errors import ShrinkError
from shrinkc.compiler.syntax import lexing, parser

from conftest import ROOT


def _sources() -> list[str]:
    files = sorted(ROOT.glob("specs/**/*.shrink")) + sorted(ROOT.glob("tests/**/*.shrink"))
    texts = []
    for f in files:
        try:
            texts.append(f.read_text("utf-8"))
        except UnicodeDecodeError:  # the corpus's non-UTF-8 files
            continue
    return texts


def _variants(t: str) -> list[str]:
    """Texts that mean what ``t`` means: other blanks, other line ends."""
    return [t.replace("    ", "\t"), t.replace("\n", "\r\n"), t.replace(" ", " \f", 3),
            t.replace("\n", "  \n"), t.replace("(", " ( ").replace(",", " ,")]


def _texts() -> list[str]:
    rng = random.Random(11)
    out = []
    for t in _sources():
        out += [t, *_variants(t)]
        for _ in range(2):  # a random edit: most of these are syntax errors
            i = rng.randrange(len(t) + 1)
            out.append(t[:i] + rng.choice(' \t\n#(),=<-+*/"x1.e;{}[]\r') + t[i + 1:])
    return out


def _result(text: str) -> tuple:
    try:
        p = parser.parse(text, "x.shrink")
        return ("ok", p.model_dump(), repr(p))
    except ShrinkError as e:
        d = e.diagnostic
        return ("error", d.message, repr(d.loc), d.hint, d.note)


def test_cached_tables_parse_as_lark_builds_them(monkeypatch):
    """The tables lark keeps in the private cache give what tables built afresh give: the
    same IR, locations, comments and errors."""
    texts = _texts()
    cached = [_result(t) for t in texts]
    grammar = resources.files("shrinkc.grammar").joinpath("shrink.lark").read_text("utf-8")
    fresh = Lark(grammar, parser="lalr", lexer="contextual", postlex=lexing.Newlines(),
                 maybe_placeholders=True, propagate_positions=True,
                 lexer_callbacks={"COMMENT": lexing._collect_comment})
    monkeypatch.setattr(lexing, "shrink_lark", lambda: fresh)
    monkeypatch.setattr(parser, "shrink_lark", lambda: fresh)
    again = [_result(t) for t in texts]
    assert sum(r[0] == "ok" for r in cached) > 100
    for text, a, b in zip(texts, cached, again):
        assert a == b, text[:200]


def test_blanks_and_line_ends_do_not_change_the_ir():
    """IR equality leaves locations out: a text and its variants give equal programs (the
    comments taken out first, as the variants change their text too)."""
    n = 0
    for t in _sources():
        t = re.sub(r"#[^\n]*", "", t)
        try:
            want = parser.parse(t, "x.shrink")
        except ShrinkError:
            continue
        for v in _variants(t):
            assert parser.parse(v, "x.shrink") == want, v[:200]
        n += 1
    assert n > 50


def test_threads_parse_at_once():
    """Comments are collected per thread: parses running at once keep their own."""
    texts = [t for t in _sources() if "#" in t][:40]
    alone = [_result(t) for t in texts]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(_result, texts * 3))
    assert together == alone * 3


@pytest.mark.parametrize("text", ["shrink 1\n", "shrink 1\r\ncell C {\r\n input x\r\n output x\r\n}\r\n"])
def test_small_texts(text):
    assert _result(text)[0] == "ok"
