"""The version-control commands on the command line (``shrinkc/commands/vcs.py``): diff's
exit codes (0 equal, 1 different, 2 for usage errors and trouble, as a user sees them too);
``shrinkc schema`` and the IR of every shipped spec validating against it; and diff reading
the second spec in a forked process: the same output, warnings, errors and exit codes as in
one process, and only where it is worth a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shrinkc.cli import main
from shrinkc.commands.vcs import _Forked as _FORKED
from shrinkc.commands.vcs import _side as _SIDE

from conftest import ROOT, SPECS
from vcs_helpers import RENAMED, A, B


@pytest.mark.parametrize("argv", [["diff"], ["diff", A], ["diff", A, B, "--nope"], []])
def test_diff_usage_errors_exit_2(argv, chdir_root):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2


def test_diff_trouble_exits_2_not_1(tmp_path, capsys, chdir_root):
    assert main(["diff", A, str(tmp_path / "missing.shrink")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.shrink"
    bad.write_text("shrink 1\ncell C {\n    input x\n    a = sepcnv(4) <- x\n    output a\n}\n")
    assert main(["diff", str(bad), A]) == 2
    assert f"{bad}:4:9: error: unknown op 'sepcnv'" in capsys.readouterr().err


def _run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shrinkc", *args], capture_output=True,
                          text=True, cwd=ROOT, check=False, **kw)


def test_diff_exit_codes_as_a_user_sees_them(tmp_path):
    spec = tmp_path / "renamed.shrink"
    spec.write_text(RENAMED)
    assert _run("diff", A, str(spec)).returncode == 0
    r = _run("diff", A, B)
    assert r.returncode == 1 and "relu -> swish" in r.stdout
    assert _run("diff", A).returncode == 2
    r = _run("diff", A, "nope.shrink")
    assert r.returncode == 2 and "Traceback" not in r.stderr


# --------------------------------------------------------------------------- schema


def test_schema_to_stdout_and_file(tmp_path, capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    # one object schema per kind of network (image network, language model), each with the
    # fields of the IR JSON
    kinds = [schema["$defs"][v["$ref"].rsplit("/", 1)[1]] for v in schema["oneOf"]]
    assert [k["title"] for k in kinds] == ["CNNGraph", "LMGraph"]
    for kind in kinds:
        assert {"network", "stages", "program", "lm"} <= set(kind["properties"])
    out = tmp_path / "shrink-ir.schema.json"
    assert main(["schema", "-o", str(out)]) == 0
    assert json.loads(out.read_text()) == schema


@pytest.mark.parametrize("spec", sorted(p.name for p in SPECS.glob("*.shrink")))
def test_schema_validates_real_ir(tmp_path, spec, chdir_root):
    jsonschema = pytest.importorskip("jsonschema")
    from shrinkc.cli import main as shrinkc_main
    from shrinkc.commands.vcs import ir_schema

    schema = ir_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert shrinkc_main(["compile", f"specs/{spec}", "--target", "ir", "-o", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / f"{Path(spec).stem}.ir.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(doc)) == []
    assert list(validator.iter_errors({**doc, "cost": {"params": "many", "macs": 0}}))
    assert list(validator.iter_errors({**doc, "surprise": 1}))


# --------------------------------------------------------------------------- diff in two processes

_DEAD = ("shrink 1\ncell C(w: int) {\n    input x\n    a = conv(w) relu <- x\n"
         "    dead = conv(w) <- x\n    output a\n}\nnetwork N {\n    input image[3, 8, 8]\n"
         "    stage C(4) x 1\n    head global_avgpool -> linear(10)\n}\n")


def _diff_both_ways(monkeypatch, capsys, *argv: str) -> tuple:
    """``shrinkc diff ARGV`` in one process, then with the second spec read in a forked child
    (``PARALLEL_BYTES`` 0): (exit code, stdout, stderr) of each."""
    from shrinkc.commands import vcs

    out = []
    for limit in (10**12, 0):
        monkeypatch.setattr(vcs, "PARALLEL_BYTES", limit)
        forks: list[str] = []
        read_here: list[str] = []  # _side in this process (the child counts in its own copy)
        monkeypatch.setattr(vcs, "_Forked", lambda spec, f=forks: f.append(spec) or _FORKED(spec))
        monkeypatch.setattr(vcs, "_side", lambda spec, report, r=read_here: r.append(spec)
                            or _SIDE(spec, report))
        rc = main(["diff", *argv])
        o, e = capsys.readouterr()
        out.append((rc, o, e))
        both = all(os.path.exists(f) for f in argv[-2:])  # else the reading says what is wrong
        forked = both and not limit and hasattr(os, "fork")
        assert forks == ([argv[-1]] if forked else [])
        if forked:  # the child's answer is used: this process read the first spec only
            assert read_here == [argv[-2]]
    return out[0], out[1]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_diff_in_two_processes_says_what_one_process_says(tmp_path, monkeypatch, capsys,
                                                          chdir_root):
    """A spec of at least PARALLEL_BYTES is read in a forked child while this process reads
    the other: the same output, warnings (in order), errors and exit codes."""
    monkeypatch.setattr("shrinkc.commands.vcs._cores", lambda: 2)
    dead = tmp_path / "dead.shrink"
    dead.write_text(_DEAD)
    dead2 = tmp_path / "dead2.shrink"
    dead2.write_text(_DEAD.replace("dead", "unused").replace("relu", "swish"))
    bad = tmp_path / "bad.shrink"
    bad.write_text("shrink 1\ncell C {\n    input x\n    a = sepcnv(4) <- x\n    output a\n}\n")
    cases = [(A, B), (A, A), (dead, dead2), (dead, bad), (bad, dead), (bad, bad),
             (A, tmp_path / "missing.shrink"), ("specs/mobilenetv2.shrink", A), ("--json", A, B)]
    for case in cases:
        one, two = _diff_both_ways(monkeypatch, capsys, *map(str, case))
        assert one == two, case
    assert _diff_both_ways(monkeypatch, capsys, str(dead), str(dead2))[1][0] == 1
    rc, _, err = _diff_both_ways(monkeypatch, capsys, str(dead), str(dead2))[1]
    assert err.index("'dead' does not reach") < err.index("'unused' does not reach")
    rc, _, err = _diff_both_ways(monkeypatch, capsys, str(dead), str(bad))[1]
    assert rc == 2 and "'dead' does not reach" in err and "unknown op 'sepcnv'" in err


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_diff_reads_the_spec_itself_when_the_child_fails(tmp_path, monkeypatch, capsys,
                                                         chdir_root):
    """A child that dies (a bug, a signal) is not an answer: this process reads the spec."""
    from shrinkc.commands import vcs

    monkeypatch.setattr(vcs, "_cores", lambda: 2)
    monkeypatch.setattr(vcs, "PARALLEL_BYTES", 0)
    parent, real = os.getpid(), vcs._side

    def crashing(spec, report):
        if os.getpid() != parent:
            raise RuntimeError("a bug in the child")
        return real(spec, report)

    monkeypatch.setattr(vcs, "_side", crashing)
    assert main(["diff", A, B]) == 1
    assert "relu -> swish" in capsys.readouterr().out


def test_diff_of_large_specs_uses_a_second_process_only_with_two_cores(tmp_path, monkeypatch):
    from shrinkc.commands import vcs

    small, big = tmp_path / "small.shrink", tmp_path / "big.shrink"
    small.write_text(_DEAD)
    big.write_text(_DEAD + "#" * vcs.PARALLEL_BYTES)
    monkeypatch.setattr(vcs, "_cores", lambda: 2)
    assert vcs._worth_a_process(str(big), str(big)) == hasattr(os, "fork")
    assert not vcs._worth_a_process(str(small), str(big))
    assert not vcs._worth_a_process(str(big), str(tmp_path / "missing.shrink"))
    monkeypatch.setattr(vcs, "_cores", lambda: 1)
    assert not vcs._worth_a_process(str(big), str(big))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_diff_without_a_process_to_be_had_reads_both_specs_itself(monkeypatch, capsys,
                                                                   chdir_root):
    from shrinkc.commands import vcs

    monkeypatch.setattr(vcs, "_cores", lambda: 2)
    monkeypatch.setattr(vcs, "PARALLEL_BYTES", 0)

    def no_fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(vcs.os, "fork", no_fork)
    assert main(["diff", A, B]) == 1
    out, err = capsys.readouterr()
    assert "relu -> swish" in out and not err
