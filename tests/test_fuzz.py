"""Fuzzing the front end: mutated specs are reported (exit 0 or 1), never a traceback or a hang.

Each example takes a shipped spec (``specs/*.shrink``, and the small specs of ``tests/specs/``,
which use every feature of the language) and applies a few realistic edits: lines deleted,
duplicated or swapped; characters and tokens deleted or inserted; numbers replaced by 0, -1 or
huge values; names replaced by other names of the same file. The mutant is written beside
copies of every spec, so that ``include "shrinkcnn_a.shrink"`` still resolves.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shrinkc.cli import main

ROOT = Path(__file__).resolve().parent.parent
SEEDS = [*sorted((ROOT / "specs").glob("*.shrink")),
         *sorted((ROOT / "tests" / "specs").glob("*.shrink"))]
TEXTS = {p.name: p.read_text(encoding="utf-8") for p in SEEDS}

NUMBER = re.compile(r"(?<![A-Za-z_0-9.])\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CHARS = list("()[]{},=<->+-*/%#\"':;.x_0123456789 \t\n") + ["\r", "\x00", "\ufeff", "é", "\xa0"]
TOKENS = [
    "shrink 1", "include", "op", "cell", "network", "input", "output", "stem", "stage", "head",
    "first", "downsample", "x", "if shapes match", "<-", "->", "+", "=", ",", "(", ")", "[", "]",
    "{", "}", ":", "//", "concat", "sum", "mean", "leaves", "conv", "sepconv", "dwconv",
    "maxpool(2)", "avgpool", "global_avgpool", "flatten", "linear", "dropout", "identity",
    "relu", "swish", "int", "float", "act", "0", "-1", "1.5", "1e999", '"specs.shrink"', "\n",
    "space", "search", "nodes", "ops", "cycle(", "shuffle", "edges", "0 -> 1", "train(", "score",
    "recurrent", "tokens", "embed", "hidden", "decoder", "tied", "input x, h",
]
NUMBERS = ["0", "-1", "1", "2", "0.0", "0.5", "1.0", "999999999", "10000000000000000000000000000000",
           "1e999", "3.7", "-0"]

# One edit: a kind and a few raw integers, reduced modulo the text's size when applied, so
# that hypothesis can shrink a failing example to a small edit on a small index.
EDITS = st.tuples(
    st.sampled_from(["del_line", "dup_line", "swap_lines", "del_char", "ins_char", "ins_token",
                     "del_token", "number", "name"]),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=10_000),
)


def _apply(text: str, edit: tuple[str, int, int, int]) -> str:
    kind, a, b, c = edit
    if not text:
        return text
    lines = text.split("\n")
    if kind == "del_line":
        del lines[a % len(lines)]
    elif kind == "dup_line":
        i = a % len(lines)
        lines.insert(b % (len(lines) + 1), lines[i])
    elif kind == "swap_lines":
        i, j = a % len(lines), b % len(lines)
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == "del_char":
        i = a % len(text)
        return text[:i] + text[i + 1 + c % 3:]
    elif kind == "ins_char":
        i = a % (len(text) + 1)
        return text[:i] + CHARS[b % len(CHARS)] + text[i:]
    elif kind == "ins_token":
        i = a % (len(text) + 1)
        return text[:i] + " " + TOKENS[b % len(TOKENS)] + " " + text[i:]
    elif kind == "del_token":
        toks = list(NAME.finditer(text)) + list(NUMBER.finditer(text))
        if toks:
            m = toks[a % len(toks)]
            return text[: m.start()] + text[m.end():]
    elif kind == "number":
        nums = list(NUMBER.finditer(text))
        if nums:
            m = nums[a % len(nums)]
            return text[: m.start()] + NUMBERS[b % len(NUMBERS)] + text[m.end():]
    elif kind == "name":
        names = list(NAME.finditer(text))
        if names:
            m = names[a % len(names)]
            other = names[b % len(names)].group()
            return text[: m.start()] + other + text[m.end():]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    for p in SEEDS:
        shutil.copy(p, d / p.name)
    return d


def test_edits_change_text():
    text = TEXTS["shrinkcnn_a.shrink"]
    for kind in ("del_line", "del_char", "ins_token", "number", "name"):
        assert _apply(text, (kind, 7, 3, 0)) != text or kind == "name"


@settings(max_examples=150, deadline=2000, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.sampled_from(sorted(TEXTS)), edits=st.lists(EDITS, min_size=1, max_size=4))
def test_mutated_specs_never_crash(spec_dir, capsys, seed, edits):
    text = TEXTS[seed]
    for edit in edits:
        text = _apply(text, edit)
    # written under the seed's own name, so that a mutated shrinkcnn_a is what b includes
    path = spec_dir / seed
    path.write_text(text, encoding="utf-8", newline="")
    targets = [path]
    if seed == "shrinkcnn_a.shrink":  # shrinkcnn_b includes it
        targets.append(spec_dir / "shrinkcnn_b.shrink")
    try:
        rc = main(["check", *map(str, targets)])
    finally:
        path.write_text(TEXTS[seed], encoding="utf-8", newline="")
    out, err = capsys.readouterr()
    assert rc in (0, 1), (rc, err)
    assert "Traceback" not in out + err
    if rc == 1:
        assert err.strip(), "an error must say what is wrong"
        assert re.search(r"^(\S+:\d+:\d+|shrinkc): error: ", err, re.MULTILINE), err


def _comments(text: str) -> list[str]:
    """Every comment of a spec (outside quoted paths), as fmt keeps it: without the '#' and
    trailing blanks."""
    out = []
    for line in text.replace("\r\n", "\n").split("\n"):
        in_string = False
        for i, ch in enumerate(line):
            if ch == '"':
                in_string = not in_string
            elif ch == "#" and not in_string:
                out.append(line[i + 1:].rstrip())
                break
    return sorted(out)


@settings(max_examples=150, deadline=2000, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(sorted(TEXTS)), edits=st.lists(EDITS, min_size=1, max_size=3))
def test_fmt_of_a_mutated_spec_loses_nothing(seed, edits):
    """For every mutant that parses, fmt's output parses to the same program, keeps every
    comment, and formatting it again changes nothing."""
    from shrinkc.compiler import ShrinkError, parse
    from shrinkc.compiler.syntax.printer import print_program

    text = TEXTS[seed]
    for edit in edits:
        text = _apply(text, edit)
    try:
        program = parse(text, seed)
    except (ShrinkError, RecursionError):
        return
    formatted = print_program(program)
    assert parse(formatted, seed) == program
    assert print_program(parse(formatted, seed)) == formatted
    assert _comments(formatted) == _comments(text)
