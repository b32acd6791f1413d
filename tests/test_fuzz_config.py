"""Fuzzing the run-configuration reader (``shrinkc shrink --config run.yaml``, issue 24): random
YAML documents are read or refused with a message, never a traceback, each within 10 s and
within a memory limit.

Each example is a document of settings (the real keys, old spellings, misspellings and junk)
whose values nest at random (flow and block lists and mappings), carry anchors, aliases and
tags (``!!python/...``, ``!!binary``, ``!!timestamp``, verbatim and local ones), numbers
beyond any range (5,000 digits, huge hex and base-60 literals, ``1e999``), YAML escapes that
decode to control characters and lone surrogates, directives and extra documents; a few
bytes are then inserted or removed (NUL, non-UTF-8, BOM, CR, tabs). The reader runs in this
process as the command line runs it (``load``, then ``RunSettings``), and what it prints is
checked: no terminal control, encodable, short. The worst cases (alias bombs, deep nesting,
one scalar the size of the whole file, a file over the limit) run in a subprocess with an
address-space limit, as ``tests/test_hostile.py`` does, and are timed in CPU seconds (the
machine may be busy with other work).
"""

from __future__ import annotations

import io
import re
import resource
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shrinkc.compiler.errors import ShrinkError
from shrinkc.console import Reporter
from shrinkc.search.config import KEYS, MAX_CONFIG_BYTES, load
from shrinkc.search.table import RunSettings

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
MEMORY = 1 << 30  # the address space a worst case may take (the reader and its imports: ~0.3 GiB)
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # printed raw: none but \n

JUNK_KEYS = ["worker", "Workers", "WORKERS", "device ", "<<", "?", "-", "~", "null", "true",
             "0", "1.5", "'workers'", '"device"', '"\\e]0;x\\a"', '"\\ud800"', "é", "data:x",
             "[workers]", "{device: cpu}", "*a0", "&a1 workers", "!!str workers",
             "!!python/name:os.system", "x" * 300]
KEY = st.one_of(st.sampled_from(sorted(KEYS)), st.sampled_from(JUNK_KEYS),
                st.text(st.characters(codec="utf-8"), min_size=1, max_size=8))

TAGS = ["!!int", "!!float", "!!str", "!!bool", "!!null", "!!timestamp", "!!binary", "!!set",
        "!!omap", "!!pairs", "!!seq", "!!map", "!!merge", "!!value", "!!python/name:os.system",
        "!!python/object/apply:os.system", "!!python/object:object", "!!python/tuple",
        "!!python/bytes", "!local", "!<tag:yaml.org,2002:int>", "!<x>", "!e!x", "!"]
LITERALS = ["0", "1", "-1", "2", "256", "257", "0.25", "8", "1e999", "-1e999", ".inf", "-.inf",
            ".nan", ".NaN", "~", "null", "", "true", "no", "on", "yes", "auto", "cpu", "cuda",
            "ray", "local", "fp32", "bf16", "127.0.0.1:6379", "garbage::://", "5000/1000",
            "1/0", "-0", "0x10", "0o17", "017", "0b101", "1_000", "190:20:30", "2001-12-14",
            "9" * 5000, "0x" + "f" * 3000, "-0b" + "1" * 3000, "1" + ":59" * 400,
            "1." + "0" * 400 + "1e-400", "=", "<<", "|", ">", "@x", "`x", "%x", "a: b",
            "[", "]", "{", "}", ",", "#x", "&", "*", "!", "'", '"', "\\", "\t1"]
ESCAPES = ["a", " ", "é", "\\e", "\\a", "\\0", "\\x1b", "\\x9b", "\\u202e", "\\ud800",
           "\\U0010ffff", "\\N", "\\L", "\\P", "\\_", "\\t", "\\r\\n", "\\\\", '\\"', "]0;t",
           "\\q", "\\x", "\\u12"]
SCALAR = st.one_of(
    st.sampled_from(LITERALS),
    st.integers(-(2**80), 2**80).map(str),
    st.floats().map(repr),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12),
    st.lists(st.sampled_from(ESCAPES), max_size=8).map(lambda p: '"' + "".join(p) + '"'),
    st.text(max_size=8).map(lambda t: "'" + t.replace("'", "''") + "'"),
)
ANCHORS = ["a0", "a1", "a2"]


@st.composite
def _scalar(draw) -> str:
    text = draw(SCALAR)
    if draw(st.integers(0, 5)) == 0:
        text = f"{draw(st.sampled_from(TAGS))} {text}"
    if draw(st.integers(0, 6)) == 0:
        return f"*{draw(st.sampled_from(ANCHORS))}"  # an alias, defined or not
    if draw(st.integers(0, 6)) == 0:
        text = f"&{draw(st.sampled_from(ANCHORS))} {text}"
    return text


def _flow(children):
    pairs = st.tuples(KEY, children).map(lambda kv: f"{kv[0]}: {kv[1]}")
    return st.one_of(
        st.lists(children, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.lists(pairs, max_size=4).map(lambda xs: "{" + ", ".join(xs) + "}"),
        st.tuples(st.sampled_from(ANCHORS), children).map(lambda t: f"&{t[0]} {t[1]}"),
        st.tuples(st.sampled_from(TAGS), children).map(lambda t: f"{t[0]} {t[1]}"),
    )


VALUE = st.recursive(_scalar(), _flow, max_leaves=12)


@st.composite
def _block(draw, depth: int = 0) -> str:
    """A value in block style under a key at ``depth``: a scalar, flow, or an indented list
    or mapping (nesting further)."""
    kind = draw(st.integers(0, 4 if depth < 3 else 1))
    if kind <= 1:
        return " " + draw(VALUE)
    pad = "  " * (depth + 1)
    items = []
    for _ in range(draw(st.integers(1, 3))):
        inner = draw(_block(depth + 1))
        items.append(f"{pad}- {inner.lstrip()}" if kind == 2 else f"{pad}{draw(KEY)}:{inner}")
    return "\n" + "\n".join(items)


HEADERS = ["", "", "", "---\n", "%YAML 1.1\n---\n", "%YAML 1.2\n---\n", "%TAG !e! tag:x,2000:\n---\n",
           "# how the search runs\n", "\ufeff", "--- !!map\n", "? workers\n: 1\n", "- workers\n",
           "{", "[workers, 1]\n", "%YAML 9.9\n---\n"]
TRAILERS = ["", "", "...\n", "---\nworkers: 1\n", "--- *a0\n", "# end", "\n\n\n", "workers"]


@st.composite
def documents(draw) -> bytes:
    lines = [f"{draw(KEY)}:{draw(_block())}" for _ in range(draw(st.integers(0, 6)))]
    text = draw(st.sampled_from(HEADERS)) + "\n".join(lines) + "\n" + draw(st.sampled_from(TRAILERS))
    raw = text.encode("utf-8", "surrogatepass")
    for at, junk in draw(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(
            [b"", b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\r", b"\t",
             b"\x1b]0;x\x07", b"\xc2\x85", b"\xe2\x80\xa8", b": ", b"- ", b"\n  ", b"&a0 ",
             b"*a0", b"!!python/name:os.system "])), max_size=3)):
        i = at % (len(raw) + 1)
        raw = raw[:i] + junk + raw[i + (1 if not junk else 0):]  # b"": a byte deleted
    return raw


def _read(path: Path) -> str:
    """Read ``path`` as ``shrinkc shrink --config`` does; returns what is printed ('' when
    it is read), and fails the test on anything but a message."""
    try:
        RunSettings(**load(path))
    except ShrinkError as e:
        out = io.StringIO()
        Reporter(out)(e.diagnostic)
        return out.getvalue()
    return ""


def _well_said(printed: str) -> None:
    assert not RAW_CONTROL.search(printed), printed[:500]
    printed.encode("utf-8")  # no lone surrogate: any terminal, pipe or log can take it
    assert len(printed) < 3000, printed[:500]


@pytest.fixture(scope="module")
def conf(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz_config") / "run.yaml"


FUZZ = settings(max_examples=120, deadline=timedelta(seconds=10), derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


@FUZZ
@given(raw=documents())
def test_random_yaml_documents_are_read_or_refused_with_a_message(conf, raw):
    conf.write_bytes(raw)
    _well_said(_read(conf))


@FUZZ
@given(raw=st.one_of(st.binary(max_size=300),
                     st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_random_bytes_are_read_or_refused_with_a_message(conf, raw):
    conf.write_bytes(raw)
    _well_said(_read(conf))


@FUZZ
@given(key=st.sampled_from(sorted(KEYS)), value=VALUE)
def test_every_setting_takes_any_value_or_says_why(conf, key, value):
    conf.write_text(f"{key}: {value}\n", encoding="utf-8", errors="surrogatepass")
    _well_said(_read(conf))


def test_python_tags_run_nothing(conf, tmp_path):
    marker = tmp_path / "pwned"
    for tag in ("!!python/object/apply:os.system", "!!python/object/apply:pathlib.Path.touch"):
        conf.write_text(f"workers: {tag} [{str(marker)!r}]\n")
        printed = _read(conf)
        assert "is a single value" in printed or "is not allowed" in printed, printed
    conf.write_text(f"workers: !!python/object/apply:os.system {str('touch ' + str(marker))!r}\n")
    assert "is not allowed" in _read(conf)
    assert not marker.exists()


# ----------------------------------------------------------------- worst cases, in a subprocess


def _laughs(levels: int = 9, width: int = 9) -> str:
    """The billion laughs: each level an anchored list of ``width`` aliases of the one below."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def _fill(prefix: str, unit: str, suffix: str = "\n") -> str:
    """``prefix`` + ``unit`` repeated to just under the size limit + ``suffix``."""
    n = (MAX_CONFIG_BYTES - len(prefix) - len(suffix)) // len(unit)
    return prefix + unit * n + suffix


WORST = {
    "laughs as the value": "workers: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
                           + "\n".join(f"device: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]"
                                       for i in range(1, 10)) + "\n",
    "laughs in keys": "workers: 1\n" + _laughs(),
    "laughs merged": _laughs().replace("l0:", "workers:", 1) + "<<: *l9\n",
    "laughs as a key": "workers: 1\n" + _laughs() + "? [*l9, *l9]\n: 1\n",
    "aliases to fill": _fill("a: &a [1, 2, 3]\nworkers: [", "*a, ", "]\n"),
    "deep flow lists": _fill("workers: ", "["),
    "deep flow maps": _fill("workers: ", "{a: "),
    "deep block lists": _fill("workers:\n", "- "),
    "deep indentation": "workers:\n" + "".join(" " * i + "- \n" for i in range(170)),
    "one long list": _fill("workers: [", "1,", "]\n"),
    "many keys": _fill("", "workers: 1\n"),
    "a 16 KiB integer": _fill("workers: ", "9"),
    "a 16 KiB hex integer": _fill("ray_timeout: 0x", "f"),
    "a 16 KiB base-60 integer": _fill("workers: 1", ":59"),
    "a 16 KiB float": _fill("ray_timeout: 1", "0", ".5\n"),
    "a 16 KiB name": _fill("address: ", "a"),
    "a 16 KiB key": _fill("", "w", ": 1\n"),
    "a 16 KiB tag": _fill("workers: !<", "x", "> 1\n"),
    "a 16 KiB escape": _fill('workers: "', "\\e", '"\n'),
    "over the limit": _fill("workers: ", "9") + "9" * 100,
    "over the spec limit": "workers: 1\n" + "#" * (5 << 20) + "\n",
}

CHILD = textwrap.dedent("""
    import sys, time
    from shrinkc.compiler.errors import ShrinkError
    from shrinkc.console import Reporter
    from shrinkc.search.config import load
    from shrinkc.search.table import RunSettings
    start = time.process_time()
    try:
        RunSettings(**load(sys.argv[1]))
    except ShrinkError as e:
        Reporter()(e.diagnostic)
    print(f"{time.process_time() - start:.3f}")
""")


def _limited():  # pragma: no cover - runs in the child
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


@pytest.mark.parametrize("text", WORST.values(), ids=WORST.keys())
def test_worst_cases_stay_small_and_fast(tmp_path, text):
    conf = tmp_path / "run.yaml"
    conf.write_text(text)
    r = subprocess.run([sys.executable, "-c", CHILD, str(conf)], capture_output=True, text=True,
                       timeout=120, cwd=ROOT, preexec_fn=_limited, stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    # the reading alone, not the start-up; in CPU seconds, as other work may share the machine
    assert float(r.stdout.strip()) < 10, r.stdout
    _well_said(r.stderr)
