"""The bad-input corpus: every file in ``tests/bad/*.shrink`` is a realistic mistake, and
``shrinkc check`` must report it as ``file:line:col: error: message`` (exit 1, no traceback).

Each case states what it expects in its first comment lines::

    # what the mistake is
    # expect: LINE:COL: substring of the message
    # hint: substring of the hint            (optional)
    # note: substring of the note            (optional)

``# expect: includes/other.shrink:LINE:COL: ...`` says that the error is located in another
file (relative to the case). Files in ``tests/bad/includes/`` are helpers that cases include;
they are not cases themselves.
"""

from __future__ import annotations

import posixpath
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from shrinkc.cli import main

ROOT = Path(__file__).resolve().parent.parent
BAD = ROOT / "tests" / "bad"
CASES = sorted(BAD.glob("*.shrink"))  # not recursive: tests/bad/includes/ holds helpers
IDS = [p.stem for p in CASES]

# run as a real process too: one of each stage of the compiler, and the odd inputs
SUBPROCESS_SAMPLE = [
    "syntax_missing_paren", "syntax_missing_version", "non_utf8_stray_byte", "include_cycle",
    "unknown_op_near_miss", "cycle", "sum_channel_mismatch", "zero_width_through_stage",
]

_EXPECT = re.compile(r"^(?:(?P<file>[^:\s]+\.shrink):)?(?P<line>\d+):(?P<col>\d+): (?P<message>.+)$")


@dataclass(frozen=True)
class Expected:
    where: str  # the path the error must be reported at, as the CLI shows it
    line: int
    col: int
    message: str
    hint: str | None
    note: str | None


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def expected(case: Path) -> Expected:
    """The expectation in the leading comments of ``case`` (read as bytes: some cases are not
    UTF-8, but their comments are ASCII)."""
    fields: dict[str, str] = {}
    for raw in case.read_bytes().split(b"\n"):
        line = raw.decode("ascii", errors="replace").rstrip()
        if not line.startswith("#"):
            break
        m = re.match(r"^# (expect|hint|note): (.+)$", line)
        if m:
            assert m[1] not in fields, f"{case.name}: two '# {m[1]}:' lines"
            fields[m[1]] = m[2]
    assert "expect" in fields, f"{case.name}: no '# expect: LINE:COL: message' comment"
    m = _EXPECT.match(fields["expect"])
    assert m, f"{case.name}: malformed expectation {fields['expect']!r}"
    where = _rel(case)
    if m["file"]:
        where = posixpath.normpath(posixpath.join(posixpath.dirname(where), m["file"]))
    return Expected(where, int(m["line"]), int(m["col"]), m["message"], fields.get("hint"),
                    fields.get("note"))


def assert_reported(case: Path, rc: int, out: str, err: str) -> None:
    exp = expected(case)
    assert "Traceback" not in out + err
    assert rc == 1, f"exit code {rc}, stderr:\n{err}"
    lines = err.splitlines()
    assert lines, "nothing on stderr"
    m = re.match(rf"^{re.escape(exp.where)}:(\d+):(\d+): error: (.*)$", lines[0])
    assert m, f"first line of stderr is not '{exp.where}:LINE:COL: error: ...':\n{err}"
    assert (int(m[1]), int(m[2])) == (exp.line, exp.col), f"wrong location:\n{err}"
    assert exp.message in m[3], f"message does not contain {exp.message!r}:\n{err}"
    if exp.hint is not None:
        hints = [ln for ln in lines if ln.startswith("  hint: ")]
        assert hints and exp.hint in hints[0], f"hint does not contain {exp.hint!r}:\n{err}"
    if exp.note is not None:
        notes = [ln for ln in lines if ln.startswith("  note: ")]
        assert notes and exp.note in notes[0], f"note does not contain {exp.note!r}:\n{err}"
    # the source line and a caret under the location follow the first line
    if len(lines) > 2 and lines[2].lstrip().startswith("^"):
        assert lines[2].index("^") == 4 + exp.col - 1


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # paths in messages are as given: tests/bad/...


def test_corpus_is_large_enough():
    assert len(CASES) >= 40


def test_helpers_are_used_and_not_cases():
    helpers = sorted((BAD / "includes").glob("*.shrink"))
    assert helpers
    texts = b"\n".join(p.read_bytes() for p in CASES)
    for h in helpers:
        assert f'"includes/{h.name}"'.encode() in texts, f"{h.name} is included by no case"
        assert h not in CASES


def test_non_utf8_cases_really_are_not_utf8():
    odd = [p for p in CASES if p.stem.startswith("non_utf8")]
    assert odd
    for p in odd:
        with pytest.raises(UnicodeDecodeError):
            p.read_bytes().decode("utf-8")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bad_spec_is_reported(case, capsys):
    rc = main(["check", _rel(case)])
    out, err = capsys.readouterr()
    assert_reported(case, rc, out, err)


@pytest.mark.parametrize("name", SUBPROCESS_SAMPLE)
def test_bad_spec_is_reported_by_the_command(name):
    case = BAD / f"{name}.shrink"
    r = subprocess.run([sys.executable, "-m", "shrinkc", "check", _rel(case)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, check=False)
    assert_reported(case, r.returncode, r.stdout, r.stderr)


@pytest.mark.parametrize("name", ["unknown_op_near_miss", "zero_width_through_stage"])
def test_compile_of_a_bad_spec_writes_nothing(name, tmp_path, capsys):
    case = BAD / f"{name}.shrink"
    out_dir = tmp_path / "out"
    rc = main(["compile", _rel(case), "-o", str(out_dir)])
    out, err = capsys.readouterr()
    assert_reported(case, rc, out, err)
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_check_goes_on_after_a_bad_file(capsys):
    bad, good = BAD / "cycle.shrink", ROOT / "specs" / "mobilenetv2.shrink"
    rc = main(["check", _rel(bad), _rel(good)])
    out, err = capsys.readouterr()
    assert rc == 1
    assert err.startswith(f"{_rel(bad)}:")
    assert f"{_rel(good)}: ok" in out


def test_byte_order_mark_is_accepted(tmp_path, capsys):
    spec = ROOT / "specs" / "mobilenetv2.shrink"
    path = tmp_path / "bom.shrink"
    path.write_bytes(b"\xef\xbb\xbf" + spec.read_bytes())
    assert main(["check", str(path)]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_crlf_line_endings_are_accepted(tmp_path, capsys):
    spec = ROOT / "specs" / "mobilenetv2.shrink"
    path = tmp_path / "crlf.shrink"
    path.write_bytes(spec.read_bytes().replace(b"\n", b"\r\n"))
    assert main(["check", str(path)]) == 0


# --------------------------------------------------------------------------- exit code 2


@pytest.mark.parametrize("argv", [
    [],
    ["check"],
    ["frobnicate", "specs/mobilenetv2.shrink"],
    ["check", "--no-such-option", "specs/mobilenetv2.shrink"],
    ["compile"],
    ["stats", "specs/mobilenetv2.shrink", "--json", "extra-argument"],
], ids=["nothing", "check-no-file", "unknown-command", "unknown-option", "compile-no-file",
        "extra-argument"])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage: shrinkc" in err and "shrinkc: error: " in err
    assert "Traceback" not in err


def test_unknown_target_exits_2(tmp_path, capsys):
    rc = main(["compile", "specs/mobilenetv2.shrink", "--target", "nope", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "unknown target 'nope'" in err
    assert not (tmp_path / "o").exists()


def test_usage_error_exits_2_as_a_process():
    r = subprocess.run([sys.executable, "-m", "shrinkc", "check"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 2
    assert "shrinkc: error: " in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("argv", [
    ["check", "tests/bad/no_such_file.shrink"],
    ["check", "tests/bad"],
    ["stats", "tests/bad/unknown_op_near_miss.shrink"],
], ids=["missing-file", "directory", "stats-of-bad-spec"])
def test_input_errors_exit_1_not_2(argv, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "error: " in err and "usage:" not in err and "Traceback" not in err
