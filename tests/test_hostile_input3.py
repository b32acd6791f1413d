"""Hostile input, round three (issue 24, items 8 to 13): no traceback, no echo of a file that
is not ours, no raw terminal control, and a message wherever the output stream fails. Each case
runs the command line in a subprocess with a time limit and an address-space limit, as
``tests/test_hostile.py`` does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hostile_helpers import _limited, _refused, _run, shrinkc

ROOT = Path(__file__).resolve().parent.parent
SPACE = ROOT / "specs" / "quickstart_space.shrink"
SECRET = "hunter2-SECRET"


# --------------------------------------------------------------------- 8: YAML the loader can't build


@pytest.mark.parametrize("value, expect", [
    ("!!int abc", "cannot read this value as int"),
    ("!!timestamp x", "tag 'tag:yaml.org,2002:timestamp' is not allowed"),
    ("!!python/name:os.system", "tag 'tag:yaml.org,2002:python/name:os.system' is not allowed"),
    ("!!binary AAAA", "is not allowed"),
    ("9" * 5000, "cannot read this value as int"),
    ("!!float abc", "cannot read this value as float"),
])
def test_yaml_values_the_safe_loader_cannot_build_are_located_errors(tmp_path, value, expect):
    conf = tmp_path / "run.yaml"
    conf.write_text(f"# how it runs\nworkers: {value}\n")
    r = shrinkc("shrink", str(SPACE), "--config", str(conf), "-o", str(tmp_path / "run"))
    _refused(r, expect)
    assert r.stderr.startswith(f"{conf.as_posix()}:2:10: error: workers")


@pytest.mark.parametrize("text", ["gpus_per_candidate: .nan\n", "gpus_per_candidate: .inf\n"])
def test_a_number_that_is_not_finite_is_refused(tmp_path, text):
    conf = tmp_path / "run.yaml"
    conf.write_text(text)
    r = shrinkc("shrink", str(SPACE), "--config", str(conf), "-o", str(tmp_path / "run"))
    _refused(r, "must be a finite number")


def test_config_without_pyyaml_says_which_extra_to_install(tmp_path):
    conf = tmp_path / "run.yaml"
    conf.write_text("workers: 1\n")
    code = ("import sys; sys.modules['yaml'] = None; from shrinkc.cli import main; "
            f"raise SystemExit(main(['shrink', {str(SPACE)!r}, '--config', {str(conf)!r}, "
            f"'-o', {str(tmp_path / 'run')!r}]))")
    r = _run([sys.executable, "-c", code])
    _refused(r, "needs pyyaml", "pip install 'shrinkc[search]'")


# --------------------------------------------------------------------- 9: no echo of a foreign file


@pytest.mark.parametrize("name, text", [
    (".env", f"AWS_SECRET_ACCESS_KEY={SECRET}\n"),
    ("credentials", f"[default]\naws_secret_access_key = {SECRET}\n"),
    ("passwd", f"root:{SECRET}:0:0:root:/root:/bin/bash\n"),
    ("secrets.yaml", f"# mine\npassword: {SECRET}\n"),
    ("netrc", f"machine example.com login me password {SECRET}\n"),
])
def test_config_that_is_not_a_run_configuration_is_not_echoed(tmp_path, name, text):
    secret = tmp_path / name
    secret.write_text(text)
    conf = tmp_path / "run.yaml"
    conf.symlink_to(secret)
    r = shrinkc("shrink", str(SPACE), "--config", str(conf), "-o", str(tmp_path / "run"))
    _refused(r, "not valid YAML" if name == "credentials" else
             "does not look like a run configuration")
    assert SECRET not in r.stderr + r.stdout


# --------------------------------------------------------------------- 10: no raw terminal control


@pytest.mark.parametrize("text", ['workers: 1\n"\\e]0;pwned\\a": 1\n', 'device: "\\e]0;pwned\\a"\n',
                                  'workers: "\\e[2J\\r"\n'])
def test_control_characters_from_yaml_escapes_are_escaped_in_messages(tmp_path, text):
    conf = tmp_path / "run.yaml"
    conf.write_text(text)
    r = shrinkc("shrink", str(SPACE), "--config", str(conf), "-o", str(tmp_path / "run"))
    _refused(r, "\\x1b")
    assert not any(c in r.stderr for c in "\x1b\x07\r"), repr(r.stderr)


def test_a_file_name_with_control_characters_is_escaped(tmp_path):
    r = shrinkc("check", str(tmp_path / "\x1b]0;pwned\x07.shrink"))
    _refused(r, "no such file", "\\x1b]0;pwned\\x07")
    assert "\x1b" not in r.stderr and "\x07" not in r.stderr


# --------------------------------------------------------------------- 12: a closed pipe is a message


def _to_closed_pipe(*args: str) -> subprocess.CompletedProcess:
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run([sys.executable, "-m", "shrinkc", *args], stdout=w,
                              stderr=subprocess.PIPE, text=True, timeout=120, cwd=ROOT,
                              preexec_fn=_limited, stdin=subprocess.DEVNULL)
    finally:
        os.close(w)


@pytest.mark.parametrize("json", [False, True])
def test_stats_and_bench_to_a_closed_pipe_say_so(tmp_path, json):
    flag = ("--json",) if json else ()
    r = _to_closed_pipe("stats", str(ROOT / "specs" / "shrinkcnn_a.shrink"), *flag)
    _refused(r, "cannot write the output")
    pytest.importorskip("onnxruntime")
    out = tmp_path / "m.onnx"
    assert shrinkc("compile", str(ROOT / "specs" / "shrinkcnn_a.shrink"), "--target", "onnx",
                   "-o", str(out)).returncode == 0
    model = next(out.glob("*.onnx")) if out.is_dir() else out
    r = _to_closed_pipe("bench", str(model), "--runs", "1", "--warmup", "0", *flag)
    _refused(r, "cannot write the output")


def test_latency_to_a_closed_pipe_says_so(tmp_path):
    """``shrinkc latency`` prints its table through the same console as stats and bench."""
    pytest.importorskip("onnxruntime")
    r = _to_closed_pipe("latency", str(ROOT / "tests" / "specs" / "tiny.shrink"),
                        "--max-runs", "3", "--warmup", "0", "--max-seconds", "0.2")
    _refused(r, "cannot write the output")


# --------------------------------------------------------------------- 11: sizes numpy refuses


def test_a_usage_error_escapes_what_it_quotes(tmp_path):
    """A flag's value with terminal control characters is quoted escaped (usage errors too)."""
    r = shrinkc("shrink", str(SPACE), "-o", str(tmp_path / "run"), "--workers", "\x1b]0;pwned\x07")
    assert r.returncode == 2, r.stderr
    assert "\x1b" not in r.stderr and "\x07" not in r.stderr
    assert "pwned" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("dim, expect", [
    (2**63 - 1, "the input 'x' has the shape 1x9223372036854775807"),
    (0, "the input 'x'"),  # a dimension below one
    (-1, "the input 'x'"),
])
def test_bench_on_an_input_numpy_cannot_make_is_a_message(tmp_path, dim, expect):
    """An input too large to hold, or with a dimension below one: a message, not a traceback."""
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    shape = [1, dim]
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    onnx.save(helper.make_model(graph), str(tmp_path / "odd.onnx"))
    r = shrinkc("bench", str(tmp_path / "odd.onnx"), "--runs", "1", "--warmup", "0")
    _refused(r, expect)


# --------------------------------------------------------------------- 13: messages


def test_the_hint_for_a_fifo_says_it_once(tmp_path):
    fifo = tmp_path / "spec.shrink"
    os.mkfifo(fifo)
    r = shrinkc("check", str(fifo))
    _refused(r, "is a FIFO, not a regular file", "reads a .shrink file from a regular file only")
    assert "a a " not in r.stderr


@pytest.mark.parametrize("case", ["npy", "npy to calibrate", "text as npz", "text as corpus",
                                  "text as weights"])
def test_data_and_weights_of_the_wrong_kind_say_what_we_accept(tmp_path, case):
    text = tmp_path / "hostname"
    text.write_text("myhost\n")
    if case == "npy":
        np = pytest.importorskip("numpy")
        np.save(tmp_path / "x.npy", np.zeros((2, 3, 8, 8), np.float32))
        args = ["shrink", str(SPACE), "--data", str(tmp_path / "x.npy")]
        expect = "a single array (.npy), not an archive of named arrays"
    elif case == "npy to calibrate":  # the same reader as --data (data/npz.py)
        np = pytest.importorskip("numpy")
        pytest.importorskip("onnx")
        from safetensors.numpy import save_file

        from shrinkc.backends.onnx.checkpoint import random_weights
        from shrinkc.compiler import compile_file

        tiny = ROOT / "tests" / "specs" / "tiny.shrink"
        graph = compile_file(tiny)
        save_file(random_weights(graph), str(tmp_path / "w.safetensors"))
        np.save(tmp_path / "x.npy", np.zeros((2, *graph.input_shape.as_list()), np.float32))
        args = ["compile", str(tiny), "--target", "onnx", "--precision", "int8",
                "--weights", str(tmp_path / "w.safetensors"), "--calibrate",
                str(tmp_path / "x.npy")]
        expect = "a single array (.npy)"
    elif case == "text as npz":
        args, expect = ["shrink", str(SPACE), "--data", str(text)], "not a numpy .npz archive"
    elif case == "text as corpus":
        args = ["shrink", str(ROOT / "specs" / "shrinkrnn_space.shrink"), "--data", str(text)]
        expect = "is not a directory"
    else:
        args = ["compile", str(ROOT / "specs" / "shrinkcnn_a.shrink"), "--target", "onnx",
                "--weights", str(text)]
        expect = "not a file torch.save wrote"
    r = shrinkc(*args, "-o", str(tmp_path / "out"))
    _refused(r, expect)
    assert "pickl" not in r.stderr and "weights_only" not in r.stderr
    assert "no such" not in r.stderr
