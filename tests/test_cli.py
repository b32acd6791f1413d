"""The command line as a user runs it: outputs, exit codes, files written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from shrinkc.cli import main

from conftest import ROOT


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "shrinkc", *args], capture_output=True, text=True,
                          cwd=cwd)


def test_compile_writes_only_the_stem_py(tmp_path, chdir_root):
    out = tmp_path / "build"
    assert main(["compile", "specs/shrinkcnn_a.shrink", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["shrinkcnn_a.py"]
    head = (out / "shrinkcnn_a.py").read_text().splitlines()[:3]
    assert "specs/shrinkcnn_a.shrink" in head[0]
    assert "sha256" in head[1] and "3,617,085" in head[2] and "383.7M" in head[2]


def test_stats_json(capsys, chdir_root):
    assert main(["stats", "specs/shrinkcnn_a.shrink", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["params"] == 3_617_085
    assert abs(d["macs"] - 383.7e6) / 383.7e6 < 0.005
    assert d["edges"] == 6
    assert [s["name"] for s in d["stages"]] == [f"stage{i}" for i in range(1, 6)]
    assert [s["depth"] for s in d["stages"]] == [1, 3, 4, 6, 4]
    assert d["stages"][-1]["output"] == [360, 7, 7]
    parts = d["stem"]["params"] + sum(s["params"] for s in d["stages"]) + d["head"]["params"]
    assert parts == d["params"]


def test_stats_json_b_and_mobilenet(capsys, chdir_root):
    main(["stats", "specs/shrinkcnn_b.shrink", "--json"])
    assert json.loads(capsys.readouterr().out)["params"] == 3_617_085
    main(["stats", "specs/mobilenetv2.shrink", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert (d["params"], round(d["macs"] / 1e6, 1), d["output"]) == (3_504_872, 300.8, [1000])


def test_stats_table(capsys, chdir_root):
    assert main(["stats", "specs/mobilenetv2.shrink"]) == 0
    out = capsys.readouterr().out
    assert "stage7" in out and "3,504,872" in out and "300.8M MACs" in out


def test_python_dash_m_is_the_entry_point():
    a, b = run("stats", "specs/shrinkcnn_a.shrink"), None
    exe = shutil.which("shrinkc", path=os.path.dirname(sys.executable))
    if exe:
        b = subprocess.run([exe, "stats", "specs/shrinkcnn_a.shrink"], capture_output=True,
                           text=True, cwd=ROOT)
        assert b.stdout == a.stdout
    assert a.returncode == 0 and "3,617,085" in a.stdout


def test_check_reports_ok_and_warnings(tmp_path, capsys):
    spec = tmp_path / "c.shrink"
    spec.write_text("shrink 1\ncell C {\n    input x\n    a = conv(4) <- x\n"
                    "    b = conv(4) <- x\n    output a\n}\n")
    assert main(["check", str(spec)]) == 0
    cap = capsys.readouterr()
    assert "ok" in cap.out
    assert f"{spec}:5:5: warning: node 'b' does not reach the output" in cap.err


def test_error_format_has_location_source_line_and_hint(tmp_path):
    spec = tmp_path / "bad.shrink"
    spec.write_text("shrink 1\ncell C {\n    input x\n    a = sepcnv(4) <- x\n    output a\n}\n")
    r = run("check", str(spec))
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert lines[0] == f"{spec}:4:9: error: unknown op 'sepcnv'"
    assert lines[1].strip() == "a = sepcnv(4) <- x"
    assert lines[2].strip().startswith("^")
    assert "did you mean 'sepconv'?" in lines[3]
    assert "Traceback" not in r.stderr


def test_fmt_rewrites_in_place_and_check_mode(tmp_path):
    d = tmp_path / "specs"
    d.mkdir()
    ugly = d / "u.shrink"
    ugly.write_text("shrink 1\nop  a=conv( 3 )\n")
    (d / "fine.shrink").write_text("shrink 1\n\nop a = conv(3)\n")
    assert main(["fmt", "--check", str(d)]) == 1
    assert ugly.read_text() == "shrink 1\nop  a=conv( 3 )\n"
    assert main(["fmt", str(d)]) == 0
    assert ugly.read_text() == "shrink 1\n\nop a = conv(3)\n"
    assert main(["fmt", "--check", str(d)]) == 0


def test_fmt_check_passes_on_shipped_specs(chdir_root):
    assert main(["fmt", "--check", "specs/"]) == 0


def test_unwritable_output_is_an_error_not_a_traceback(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run("compile", "specs/shrinkcnn_a.shrink", "-o", str(blocker / "sub"))
    assert r.returncode == 1
    assert "error: cannot create output directory" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_file_is_an_error(tmp_path):
    r = run("check", str(tmp_path / "nope.shrink"))
    assert r.returncode == 1 and "no such file" in r.stderr


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["compile"], ["compile", "x.shrink", "--target", "nope"]])
def test_usage_errors_exit_2(argv):
    assert run(*argv).returncode == 2


@pytest.mark.parametrize("preset", [None, "3"])
def test_short_commands_run_numpy_with_one_blas_thread_unless_told(tmp_path, preset):
    """A short-lived command sets OPENBLAS_NUM_THREADS=1 before numpy is imported (the pool's
    threads cost a cold ONNX compile a third of its CPU), and keeps what the user set."""
    code = ("import os, sys; from shrinkc.cli import main; "
            "rc = main(['compile', 'specs/shrinkcnn_a.shrink', '--target', 'onnx', '-o', "
            f"{str(tmp_path)!r}]); "
            "print(os.environ.get('OPENBLAS_NUM_THREADS'), 'numpy' in sys.modules, rc)")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if preset:
        env["OPENBLAS_NUM_THREADS"] = preset
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-3:] == [preset or "1", "True", "0"]


def test_the_program_ends_at_once_after_a_short_command_with_all_its_output(capsys):
    """``python -m shrinkc`` (and the ``shrinkc`` script: ``cli.run``) ends a short-lived
    command with ``os._exit`` once stdout is flushed (freeing a large IR object by object took
    0.1 s): atexit handlers do not run, the output is whole, the exit code is main()'s. A
    long-running command exits normally."""
    assert main(["schema"]) == 0
    schema = capsys.readouterr().out
    assert len(schema) > 10_000

    def program(*argv):
        code = ("import atexit, sys; atexit.register(lambda: print('atexit ran', file=sys.stderr)); "
                f"sys.argv = ['shrinkc', *{list(argv)!r}]; "
                "from shrinkc.cli import run; run()")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=ROOT, timeout=120)

    r = program("schema")
    assert (r.returncode, r.stdout, r.stderr) == (0, schema, "")
    a, b = "specs/shrinkcnn_a.shrink", "specs/mobilenetv2.shrink"
    assert (program("diff", a, a).returncode, program("diff", a, b).returncode) == (0, 1)
    r = program("check", "nope.shrink")
    assert r.returncode == 1 and "no such file" in r.stderr and "atexit ran" not in r.stderr
    r = program("bench", "nope.onnx")  # not short-lived: a normal exit
    assert r.returncode == 1 and "atexit ran" in r.stderr


def test_compile_to_stdout_with_dash(tmp_path, capsys, chdir_root, monkeypatch):
    """``-o -`` writes the one target to stdout, as the file it would write, and nothing else;
    never a folder named '-'. Two targets, or ONNX to a terminal, are usage errors."""
    spec = "specs/shrinkcnn_a.shrink"
    for target, name in (("pytorch", "shrinkcnn_a.py"), ("ir", "shrinkcnn_a.ir.json")):
        assert main(["compile", spec, "--target", target, "-o", str(tmp_path)]) == 0
        capsys.readouterr()
        assert main(["compile", spec, "--target", target, "-o", "-"]) == 0
        assert capsys.readouterr().out == (tmp_path / name).read_text()
    assert main(["compile", spec, "--target", "onnx", "-o", str(tmp_path)]) == 0
    r = subprocess.run([sys.executable, "-m", "shrinkc", "compile", spec, "--target", "onnx",
                        "-o", "-"], capture_output=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and r.stdout == (tmp_path / "shrinkcnn_a.onnx").read_bytes()
    assert not (ROOT / "-").exists()
    assert main(["compile", spec, "--target", "onnx,ir", "-o", "-"]) == 2
    assert "give one --target" in capsys.readouterr().err
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["compile", spec, "--target", "onnx", "-o", "-"]) == 2
    assert "ONNX model is binary" in capsys.readouterr().err
