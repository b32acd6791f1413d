"""Hostile and broken input to ``shrinkc shrink`` (issue 11): what a resumed run depends on,
two processes on one run folder, a damaged run folder, bad data, out-of-range options, and
fuzzed run folders. Every failure is a located error (or a usage error), never a traceback.

Runs that are cheap go through ``main()`` in this process; what could hang or take memory
(a label of 10^9, a real second process) runs as a subprocess with a timeout (and an address
space limit where memory is the risk).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shrinkc.cli import main

from conftest import ROOT, TEST_SPECS

TINY = TEST_SPECS / "tiny_space.shrink"
TINY_RNN = TEST_SPECS / "tiny_rnn_space.shrink"
LOCATED = re.compile(r"^\S+:\d+:\d+: error: ", re.MULTILINE)


def shrink(capsys, spec: Path, out: Path, *extra: str) -> tuple[int, str]:
    """``shrinkc shrink`` in this process; returns (exit code, stderr)."""
    capsys.readouterr()
    rc = main(["shrink", str(spec), "-o", str(out), "--quiet", *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def subprocess_shrink(spec: Path, out: Path, *extra: str, timeout: float = 300,
                      memory: int | None = None) -> subprocess.CompletedProcess:
    """``shrinkc shrink`` in a subprocess, with a time limit (and an address-space limit)."""
    def limit():  # pragma: no cover - runs in the child
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run([sys.executable, "-m", "shrinkc", "shrink", str(spec), "-o", str(out),
                           "--quiet", *extra], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, preexec_fn=limit)


class FakeExecutor:
    """Stands in for training in tests of reading a run folder: fixed metrics, no torch."""

    def map(self, jobs):
        for job in jobs:
            yield {"acc": 0.5, "macs": 1000 * job.edges, "params": 10, "epochs": 1,
                   "seconds": 0.0}

    def close(self):
        pass


@pytest.fixture
def no_training(monkeypatch):
    monkeypatch.setattr("shrinkc.search.driver.make_executor", lambda *a, **k: FakeExecutor())


# ------------------------------------------------------------------ 5: what a run depends on


def _with_include(tmp_path: Path) -> Path:
    """The tiny search with a cell of its own in an included file (common.shrink)."""
    (tmp_path / "common.shrink").write_text(
        "shrink 1\n\ncell Extra(w: int) {\n    input x\n    a = conv(w, k=1) relu <- x\n"
        "    output a\n}\n")
    spec = tmp_path / "search.shrink"
    spec.write_text(TINY.read_text().replace("shrink 1\n", 'shrink 1\ninclude "common.shrink"\n', 1))
    return spec


def test_resume_refuses_a_changed_included_file(tmp_path, capsys):
    spec = _with_include(tmp_path)
    out = tmp_path / "run"
    assert shrink(capsys, spec, out, "--max-steps", "0")[0] == 0
    meta = json.loads((out / "run.json").read_text())
    assert set(meta["sources"]) == {"common.shrink", "search.shrink"}
    assert meta["data_sha256"] == "digits" and meta["shrinkc_version"]
    assert shrink(capsys, spec, out, "--max-steps", "0", "--resume")[0] == 0  # unchanged: fine
    (tmp_path / "common.shrink").write_text((tmp_path / "common.shrink").read_text() + "# edit\n")
    rc, err = shrink(capsys, spec, out, "--resume")
    assert rc == 1 and "cannot resume: included file common.shrink changed since the run began" in err
    assert LOCATED.search(err) and "run.json" in err


def _npz(path: Path, seed: int, **changes) -> Path:
    rng = np.random.default_rng(seed)
    arrays = {"x_train": rng.random((40, 1, 8, 8), dtype=np.float32),
              "y_train": rng.integers(0, 3, 40), "x_val": rng.random((20, 1, 8, 8), dtype=np.float32),
              "y_val": rng.integers(0, 3, 20)}
    arrays.update(changes)
    np.savez(path, **arrays)
    return path


def test_resume_refuses_changed_data(tmp_path, capsys):
    data = _npz(tmp_path / "d.npz", 0)
    out = tmp_path / "run"
    assert shrink(capsys, TINY, out, "--data", str(data), "--max-steps", "0")[0] == 0
    _npz(data, 1)  # same file name, other contents
    rc, err = shrink(capsys, TINY, out, "--data", str(data), "--resume")
    assert rc == 1 and "cannot resume: the data file changed since the run began" in err


def test_resume_refuses_a_changed_corpus_file(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split in ("train", "valid", "test"):
        (corpus / f"{split}.txt").write_text("the cat sat on the mat\na dog ran\n" * 20)
    out = tmp_path / "run"
    assert shrink(capsys, TINY_RNN, out, "--data", str(corpus), "--max-steps", "0")[0] == 0
    assert set(json.loads((out / "run.json").read_text())["data_sha256"]) == {
        "train.txt", "valid.txt", "test.txt"}
    (corpus / "valid.txt").write_text("the dog sat on the cat\n" * 20)
    rc, err = shrink(capsys, TINY_RNN, out, "--data", str(corpus), "--resume")
    assert rc == 1 and "corpus file valid.txt changed since the run began" in err


def test_resume_names_the_changed_setting_and_version(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert shrink(capsys, TINY, out, "--max-steps", "0")[0] == 0
    rc, err = shrink(capsys, TINY, out, "--resume", "--epochs", "2")
    assert rc == 1 and "setting epochs changed since the run began (1, now 2)" in err
    monkeypatch.setattr("shrinkc.compiler.version.__version__", "99.0")
    rc, err = shrink(capsys, TINY, out, "--resume")
    assert rc == 1 and "this is shrinkc 99.0" in err


@pytest.mark.parametrize("key", ["sources", "data_sha256", "shrinkc_version"])
def test_an_old_run_json_is_refused(tmp_path, capsys, key):
    out = tmp_path / "run"
    assert shrink(capsys, TINY, out, "--max-steps", "0")[0] == 0
    meta = json.loads((out / "run.json").read_text())
    del meta[key]  # as a run.json written before these were recorded
    (out / "run.json").write_text(json.dumps(meta, indent=2))
    rc, err = shrink(capsys, TINY, out, "--resume")
    assert rc == 1 and f"does not record '{key}'" in err and LOCATED.search(err)


def test_a_log_without_run_json_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert shrink(capsys, TINY, out, "--max-steps", "0")[0] == 0
    (out / "run.json").unlink()
    (out / "log.jsonl").write_text("")
    rc, err = shrink(capsys, TINY, out, "--resume")
    assert rc == 1 and "run.json is missing" in err


# ------------------------------------------------------------------ 6: one process per folder


def test_a_second_process_is_refused_and_a_killed_holder_does_not_block(tmp_path):
    out = tmp_path / "run"
    args = ["--max-steps", "1"]
    first = subprocess.Popen([sys.executable, "-m", "shrinkc", "shrink", str(TINY), "-o", str(out),
                              "--quiet", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        lock = out / "lock"
        while time.monotonic() < deadline:
            if lock.exists() and lock.read_text().strip() == str(first.pid):
                break
            time.sleep(0.05)
        assert lock.read_text().strip() == str(first.pid)
        os.kill(first.pid, signal.SIGSTOP)  # stopped, it still holds the lock
        second = subprocess_shrink(TINY, out, *args, "--resume", timeout=120)
        assert second.returncode == 1, second.stderr
        assert f"process {first.pid}" in second.stderr and "in use" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    # the kernel dropped the dead process's lock: --resume goes on (its pid is in the file)
    third = subprocess_shrink(TINY, out, *args, "--resume", timeout=300)
    assert third.returncode == 0, third.stderr
    assert (out / "step-01.shrink").exists()


# ------------------------------------------------------------------ 7: a damaged run folder


@pytest.fixture(scope="module")
def finished_run(tiny_one_step_run):
    """A finished one-step run of the tiny search (conftest's, made once a session; the tests
    damage copies of it)."""
    return tiny_one_step_run


@pytest.fixture(scope="module")
def inherit_run(tmp_path_factory):
    """A finished one-step --inherit run of the tiny search (made once)."""
    out = tmp_path_factory.mktemp("hostile") / "inherit"
    r = subprocess_shrink(TINY, out, "--max-steps", "1", "--inherit")
    assert r.returncode == 0, r.stderr
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def _entry_without(key):
    def edit(e):
        e.pop(key)
        return json.dumps(e)
    return edit


LOG_DAMAGE = {
    "empty object": (lambda e: "{}", "step: Field required"),
    "a list": (lambda e: "[1,2]", "Input should be a valid dictionary"),
    "null": (lambda e: "null", "Input should be a valid dictionary"),
    "no score": (_entry_without("score"), "score: Field required"),
    "no edge": (_entry_without("edge"), "edge: Field required"),
    "step a string": (lambda e: json.dumps({**e, "step": "1"}), "step: Input should be a valid integer"),
    "edge a string": (lambda e: json.dumps({**e, "edge": "1-2"}), "edge: Input should be a valid list"),
    "edge of three": (lambda e: json.dumps({**e, "edge": [1, 2, 3]}), "edge: List should have at most 2"),
    "chosen a number": (lambda e: json.dumps({**e, "chosen": 1}), "chosen: Input should be a valid boolean"),
    "score a string": (lambda e: json.dumps({**e, "score": "high"}), "score: Input should be a valid number"),
    "no accuracy": (_entry_without("acc"), "metric 'acc' is missing"),
    "cut short": (lambda e: json.dumps(e)[:40], "damaged log line"),
}


@pytest.mark.parametrize("case", sorted(LOG_DAMAGE))
def test_a_damaged_log_line_is_located(finished_run, tmp_path, capsys, no_training, case):
    out = _copy(finished_run, tmp_path)
    lines = (out / "log.jsonl").read_text().splitlines()
    edit, message = LOG_DAMAGE[case]
    lines[1] = edit(json.loads(lines[1]))
    (out / "log.jsonl").write_text("\n".join(lines) + "\n")
    rc, err = shrink(capsys, TINY, out, "--resume", "--max-steps", "1")
    assert rc == 1, err
    where = re.escape((out / "log.jsonl").as_posix())
    assert re.search(where + r":2:\d+: error: damaged log line", err) and message in err, err
    assert "delete the line" in err


def test_a_non_utf8_log_and_a_duplicated_line(finished_run, tmp_path, capsys, no_training):
    out = _copy(finished_run, tmp_path)
    raw = (out / "log.jsonl").read_bytes().split(b"\n")
    (out / "log.jsonl").write_bytes(b"\n".join([raw[0], raw[1][:10] + b"\xff\xfe" + raw[1][10:],
                                                *raw[2:]]))
    rc, err = shrink(capsys, TINY, out, "--resume", "--max-steps", "1")
    assert rc == 1 and f"{(out / 'log.jsonl').as_posix()}:2:11: error: damaged log line: not UTF-8" in err
    (out / "log.jsonl").write_bytes(b"\n".join([raw[0], raw[1], raw[0], *raw[2:]]))
    rc, err = shrink(capsys, TINY, out, "--resume", "--max-steps", "1")
    assert rc == 1 and "log.jsonl:3:1: error:" in err and "also on line 1" in err


@pytest.mark.parametrize("content, message", [
    (b"{not json", "run.json:1:2: error:"),
    (b"[1, 2]", "Input should be a valid dictionary"),
    (b"\xff\xfe garbage", "not UTF-8"),
    (b"", "run.json:1:1: error:"),
    (b"[" * 100_000, "run.json"),
])
def test_garbage_in_run_json_is_located(finished_run, tmp_path, capsys, content, message):
    out = _copy(finished_run, tmp_path)
    (out / "run.json").write_bytes(content)
    rc, err = shrink(capsys, TINY, out, "--resume", "--max-steps", "1")
    assert rc == 1 and message in err and LOCATED.search(err), err
    assert "start a new run" in err


def test_wrong_types_in_run_json_are_located(finished_run, tmp_path, capsys):
    out = _copy(finished_run, tmp_path)
    meta = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**meta, "settings": "fast"}, indent=2, sort_keys=True))
    rc, err = shrink(capsys, TINY, out, "--resume", "--max-steps", "1")
    line = next(n for n, x in enumerate((out / "run.json").read_text().splitlines(), 1)
                if '"settings"' in x)
    assert rc == 1 and f"run.json:{line}:3: error: " in err and "settings" in err, err


@pytest.mark.parametrize("name, damage, message", [
    ("parent-00.pt", b"garbage", "parent-00.pt is damaged"),
    ("parent-00.pt", b"PK\x03\x04" + b"\x00" * 64, "parent-00.pt is damaged"),
    ("parent-01.pt", b"garbage", "parent-01.pt is damaged"),
    ("parent-01.pt", None, "parent-01.pt is missing"),
])
def test_damaged_parent_weights_are_located(inherit_run, tmp_path, capsys, no_training, name,
                                            damage, message):
    out = _copy(inherit_run, tmp_path)
    if damage is None:
        (out / name).unlink()
    else:
        (out / name).write_bytes(damage)
    rc, err = shrink(capsys, TINY, out, "--resume", "--inherit", "--max-steps", "2")
    assert rc == 1 and f"{(out / name).as_posix()}:1:1: error: " in err and message in err, err
    assert "start a new run" in err
    assert len((out / "log.jsonl").read_text().splitlines()) == 4  # nothing trained


# ------------------------------------------------------------------ 8: bad data, before training

GiB = 1 << 30


@pytest.mark.parametrize("case, message", [
    ("huge label", "has the label 1000000000"),
    ("uint64 label", "has the label 18446744073709551615"),
    ("negative label", "has a negative label"),
    ("nan", "contains NaN or infinite values"),
    ("inf", "contains NaN or infinite values"),
    ("too large to standardise", "too large to standardise"),
    ("bad zip", "cannot read"),
])
def test_bad_data_is_an_error_before_training(tmp_path, case, message):
    data = tmp_path / "bad.npz"
    y = np.zeros(40, np.int64)
    x = np.random.default_rng(0).random((40, 1, 8, 8), dtype=np.float32)
    if case == "huge label":
        _npz(data, 0, y_train=np.where(np.arange(40) == 7, 10**9, y))
    elif case == "uint64 label":
        _npz(data, 0, y_train=np.where(np.arange(40) == 7, np.uint64(2**64 - 1), y.astype(np.uint64)))
    elif case == "negative label":
        _npz(data, 0, y_val=np.full(20, -3))
    elif case in ("nan", "inf"):
        x[3, 0, 2, 2] = np.nan if case == "nan" else np.inf
        _npz(data, 0, x_train=x)
    elif case == "too large to standardise":
        _npz(data, 0, x_train=(x * 3e38).astype(np.float32))
    else:
        good = _npz(tmp_path / "good.npz", 0).read_bytes()
        data.write_bytes(good[:200] + b"\x00garbage" * 50)
    r = subprocess_shrink(TINY, tmp_path / "run", "--data", str(data), "--max-steps", "1",
                          timeout=300, memory=6 * GiB)
    assert r.returncode == 1, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "log.jsonl").exists()  # nothing trained


def test_a_data_fifo_is_an_error_not_a_hang(tmp_path):
    fifo = tmp_path / "d.npz"
    os.mkfifo(fifo)
    r = subprocess_shrink(TINY, tmp_path / "run", "--data", str(fifo), timeout=120)
    assert r.returncode == 1 and "not a regular file" in r.stderr


def test_a_corpus_with_a_huge_vocabulary_is_an_error(tmp_path, monkeypatch):
    from shrinkc.compiler import ShrinkError
    from shrinkc.data import corpus

    monkeypatch.setattr(corpus, "MAX_VOCAB", 50)
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.txt").write_text(" ".join(f"w{i}" for i in range(100)) + "\n")
    with pytest.raises(ShrinkError, match="101 distinct tokens"):
        corpus.load_dir(tmp_path)


# ------------------------------------------------------------------ 15: options in range


@pytest.mark.parametrize("flag, value", [
    ("--threads", "100000"), ("--threads", "0"), ("--workers", "0"), ("--workers", "1000"),
    ("--max-steps", "-1"), ("--candidates", "0"), ("--epochs", "0"), ("--epochs", "-5"),
])
def test_out_of_range_options_are_usage_errors(tmp_path, flag, value):
    # a subprocess: without the check, 100000 torch threads crash the interpreter
    r = subprocess_shrink(TINY, tmp_path / "run", flag, value, timeout=120, memory=6 * GiB)
    assert r.returncode == 2 and f"{flag} must be" in r.stderr and value in r.stderr, r.stderr
    assert not (tmp_path / "run").exists()


def test_max_steps_zero_says_so(tmp_path, capsys):
    rc, err = shrink(capsys, TINY, tmp_path / "run", "--max-steps", "0")
    assert rc == 0 and "--max-steps 0" in err and "keep fraction" not in err


# ------------------------------------------------------------------ fuzz: a mutated run folder

JUNK = ["{", "}", "[", "]", '"', ",", ":", "0", "-1", "1e999", "null", "true", "\x00", "\xff",
        '"x"', "[]", "{}", "NaN", "\n"]
WRONG = ["null", '"x"', "[]", "{}", "true", "1.5", "-1", "1e999", "[1, 2, 3]", '{"a": 1}']
EDITS = st.tuples(
    st.sampled_from(["del_line", "dup_line", "swap_lines", "del_bytes", "ins_junk", "flip_byte",
                     "wrong_type"]),
    st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 10_000))
VALUE = re.compile(rb'(?<=": )(-?[0-9][^,}\n]*|"[^"]*"|true|false|null|\[[^\]\n]*\])')


def _mutate(raw: bytes, edit) -> bytes:
    kind, a, b, c = edit
    lines = raw.split(b"\n")
    if kind == "del_line":
        del lines[a % len(lines)]
    elif kind == "dup_line":
        lines.insert(b % (len(lines) + 1), lines[a % len(lines)])
    elif kind == "swap_lines":
        i, j = a % len(lines), b % len(lines)
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == "del_bytes" and raw:
        i = a % len(raw)
        return raw[:i] + raw[i + 1 + c % 8:]
    elif kind == "ins_junk":
        i = a % (len(raw) + 1)
        return raw[:i] + JUNK[b % len(JUNK)].encode("latin-1") + raw[i:]
    elif kind == "flip_byte" and raw:
        i = a % len(raw)
        return raw[:i] + bytes([raw[i] ^ (1 << (b % 8))]) + raw[i + 1:]
    elif kind == "wrong_type":
        values = list(VALUE.finditer(raw))
        if values:
            m = values[a % len(values)]
            return raw[:m.start()] + WRONG[b % len(WRONG)].encode() + raw[m.end():]
    return b"\n".join(lines)


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=st.sampled_from(["log.jsonl", "run.json"]), edits=st.lists(EDITS, min_size=1, max_size=3))
def test_a_mutated_run_folder_never_crashes(finished_run, capsys, no_training, name, edits):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        shutil.copytree(finished_run, out)
        raw = (out / name).read_bytes()
        for edit in edits:
            raw = _mutate(raw, edit)
        (out / name).write_bytes(raw)
        capsys.readouterr()
        rc = main(["shrink", str(TINY), "-o", str(out), "--quiet", "--resume", "--max-steps", "1"])
        err = capsys.readouterr().err
    assert rc in (0, 1), err
    assert "Traceback" not in err
    if rc == 1:
        assert LOCATED.search(err), err
