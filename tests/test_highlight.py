"""Syntax highlighting (``compiler/syntax/highlight.py``): the Pygments lexer tokenizes every
spec without an error token and gives keywords and builtins their kinds, its entry point,
ANSI colouring of a line with a plain fallback without Pygments; and the compiler imports
neither Pygments nor Graphviz."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest

from conftest import ROOT, SPECS, TEST_SPECS

# --------------------------------------------------------------------------- highlighting


SHIPPED = sorted(SPECS.glob("*.shrink")) + sorted(TEST_SPECS.rglob("*.shrink"))


@pytest.mark.parametrize("spec", SHIPPED, ids=lambda p: p.name)
def test_lexer_tokenizes_specs_without_errors(spec):
    pytest.importorskip("pygments")
    from pygments.token import Error

    from shrinkc.compiler.syntax.highlight import ShrinkLexer

    text = spec.read_text()
    tokens = list(ShrinkLexer().get_tokens(text))
    assert [t for t in tokens if t[0] is Error] == []
    assert "".join(v for _, v in tokens) == text


def test_lexer_token_kinds():
    pytest.importorskip("pygments")
    from pygments.token import Keyword, Name

    from shrinkc.compiler.syntax.highlight import ShrinkLexer

    toks = [(t, v) for t, v in ShrinkLexer().get_tokens(
        "stage ShrinkA(12, act) x 1 downsample maxpool(2)\n    n3 = sepconv(w) <- x, n1\n"
        "    output concat(a, b) + x if shapes match\n") if v.strip()]
    kinds = {v: t for t, v in toks}
    assert kinds["stage"] in Keyword and kinds["downsample"] in Keyword
    assert kinds["sepconv"] in Name.Builtin and kinds["maxpool"] in Name.Builtin
    xs = [t for t, v in toks if v == "x"]
    assert xs[0] in Keyword and xs[1] not in Keyword and xs[2] not in Keyword
    assert ShrinkLexer.aliases == ["shrink"] and ShrinkLexer.filenames == ["*.shrink"]


def test_lexer_entry_point_when_installed():
    pytest.importorskip("pygments")
    from importlib.metadata import entry_points

    if not any(ep.name == "shrink" for ep in entry_points(group="pygments.lexers")):
        pytest.skip("the pygments.lexers entry point is not installed (pip install -e . again)")
    from pygments.lexers import get_lexer_by_name, get_lexer_for_filename

    assert type(get_lexer_by_name("shrink")).__name__ == "ShrinkLexer"
    assert type(get_lexer_for_filename("net.shrink")).__name__ == "ShrinkLexer"


def test_highlight_line_colours_and_falls_back(monkeypatch):
    from shrinkc.compiler.syntax import highlight

    line = "    n1 = sepconv(w, k=3) act <- x  # comment"
    out = highlight.highlight_line(line)
    if importlib.util.find_spec("pygments") is not None:
        assert "\x1b[" in out
        assert re.sub(r"\x1b\[[0-9;]*m", "", out) == line
        assert highlight.highlight_line(line + "\n").endswith("\n")
    monkeypatch.setattr(highlight, "ShrinkLexer", None)
    assert highlight.highlight_line(line) == line


def test_compiler_does_not_import_pygments_or_graphviz():
    code = ("import sys; from shrinkc.compiler.pipeline import build_graph, check; "
            "import shrinkc.compiler.analysis.cellhash, shrinkc.compiler.analysis.semdiff, shrinkc.commands.vcs; "
            "build_graph(check('specs/shrinkcnn_a.shrink')); "
            "print(sorted(m for m in ('pygments', 'graphviz') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       check=True)
    assert r.stdout.strip() == "[]"
