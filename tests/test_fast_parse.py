"""The parser's fast loop (``parser._fast_parser``: lark's contextual lexer, the newline
post-lexer and the LALR loop in one function) gives what lark's own parse gives: the same
IR, locations and comments, and the same errors (it leaves a text with an error to lark).
"""

from __future__ import annotations

import random

import pytest

from shrinkc.compiler.errors import ShrinkError
from shrinkc.compiler.syntax import parser

from conftest import ROOT


def _texts() -> list[str]:
    files = sorted(ROOT.glob("specs/**/*.shrink")) + sorted(ROOT.glob("tests/**/*.shrink"))
    texts = []
    for f in files:
        try:
            texts.append(f.read_text("utf-8"))
        except UnicodeDecodeError:  # the corpus's non-UTF-8 files
            continue
    rng = random.Random(11)
    out = []
    for t in texts:
        out += [t, t.replace("    ", "\t"), t.replace("\n", "\r\n"), t.replace(" ", " \f", 3),
                t.replace("\n", "  \n"), t.replace("(", " ( ").replace(",", " ,")]
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


def test_the_fast_loop_is_used():
    assert parser._fast_parser(parser._lark()) is not None, \
        "lark is not laid out as the fast loop expects: every parse falls back to lark's"


def test_fast_loop_and_lark_agree(monkeypatch):
    texts = _texts()
    fast = [_result(t) for t in texts]

    def lark_only(text: str):
        raise parser._Fallback

    monkeypatch.setattr(parser, "_fast_loop", lambda: lark_only)
    slow = [_result(t) for t in texts]
    assert sum(r[0] == "ok" for r in fast) > 100
    for text, a, b in zip(texts, fast, slow):
        assert a == b, text[:200]


@pytest.mark.parametrize("text", ["shrink 1\n", "shrink 1\r\ncell C {\r\n input x\r\n output x\r\n}\r\n"])
def test_small_texts(text):
    assert _result(text)[0] == "ok"
