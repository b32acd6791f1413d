"""How a search runs: --device, and --config run.yaml (values, flags over it, located errors,
hostile files). The CUDA paths run only where a GPU is visible."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, TEST_SPECS

TINY = TEST_SPECS / "tiny_space.shrink"


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _shrink(out: Path, *extra: str):
    return subprocess.run([sys.executable, "-m", "shrinkc", "shrink", str(TINY), "-o", str(out),
                           "--quiet", "--max-steps", "1", *extra], capture_output=True,
                          text=True, cwd=ROOT)


def _meta(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


@pytest.mark.skipif(_cuda(), reason="a GPU is visible: auto means CUDA here")
def test_device_auto_without_a_gpu_trains_on_the_cpu(tiny_one_step_run):
    # conftest's tiny_one_step_run: --max-steps 1 --device auto, which finished (exit code 0)
    assert _meta(tiny_one_step_run)["device"] == "cpu"
    assert _meta(tiny_one_step_run)["precision"] in ("fp32", "bf16")


@pytest.mark.skipif(_cuda(), reason="a GPU is visible")
def test_device_cuda_without_a_gpu_is_an_error(tmp_path):
    r = _shrink(tmp_path / "run", "--device", "cuda")
    assert r.returncode == 1 and "no CUDA GPU is visible" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "run.json").exists()


def test_unknown_device_flag_is_a_usage_error(tmp_path):
    r = _shrink(tmp_path / "run", "--device", "tpu")
    assert r.returncode == 2 and "invalid choice: 'tpu'" in r.stderr


def test_a_run_recorded_before_devices_resumes_as_cpu(tmp_path):
    """A run.json without "device" (written before devices existed) was a CPU run: resuming
    it on the CPU is not refused as a change, keeps its log (nothing is trained again) and
    records the device from then on."""
    out = tmp_path / "run"
    assert _shrink(out, "--device", "cpu").returncode == 0
    meta = _meta(out)
    log = (out / "log.jsonl").read_text()
    assert meta["device"] == "cpu" and log
    del meta["device"]  # as a run.json written by the previous version
    (out / "run.json").write_text(json.dumps(meta))
    r = _shrink(out, "--device", "cpu", "--resume")
    assert r.returncode == 0, r.stderr
    assert "cannot resume" not in r.stderr
    assert _meta(out) == {**meta, "device": "cpu"}
    assert (out / "log.jsonl").read_text() == log  # resumed: the candidates were not retrained


def _digits_npz(path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((40, 1, 8, 8), dtype=np.float32)
    y = np.arange(40) % 10
    np.savez(path, x_train=x[:30], y_train=y[:30], x_val=x[30:], y_val=y[30:])


def test_config_sets_how_the_search_runs_and_flags_override_it(tmp_path):
    conf = tmp_path / "setup"
    conf.mkdir()
    _digits_npz(conf / "proxy.npz")
    (conf / "run.yaml").write_text("# how this search runs\ndevice: cpu\nprecision: bf16\n"
                                   "workers: 2\nthreads: 1\nexecutor: local\n"
                                   "data: proxy.npz  # relative to this file\n")
    out = tmp_path / "run"
    r = _shrink(out, "--config", str(conf / "run.yaml"))
    assert r.returncode == 0, r.stderr
    meta = _meta(out)
    assert meta["device"] == "cpu" and meta["precision"] == "bf16"
    assert Path(meta["data"]) == conf / "proxy.npz"
    r = _shrink(tmp_path / "run2", "--config", str(conf / "run.yaml"), "--precision", "fp32")
    assert r.returncode == 0, r.stderr
    assert _meta(tmp_path / "run2")["precision"] == "fp32"


@pytest.mark.parametrize("text, where, message", [
    ("device: gpu\n", "1:9", "unknown device 'gpu'"),
    ("devise: cpu\n", "1:1", "unknown run setting 'devise'"),
    ("workers: 2\nworkers: 3\n", "2:1", "'workers' is set twice"),
    ("workers: two\n", "1:10", "workers (local worker processes, or Ray CPUs) must be a whole number"),
    ("workers: 1.5\n", "1:10", "must be a whole number"),
    ("workers: true\n", "1:10", "must be a whole number"),
    ("workers: 0\n", "1:10", "workers must be at least 1 and at most 256, got 0"),
    ("workers: [1, 2]\n", "1:10", "is a single value, not a list or mapping"),
    ("threads: 100000\n", "1:10", "threads must be at least 1 and at most 256"),
    ("gpus_per_candidate: -1\n", "1:21", "gpus_per_candidate must be above 0"),
    ("gpus_per_candidate: 0\n", "1:21", "gpus_per_candidate must be above 0"),
    ("executor: slurm\n", "1:11", "unknown executor 'slurm'"),
    ("precision: fp16\n", "1:12", "unknown precision 'fp16'"),
    ("data: \n", "1:6", "data (the proxy data, relative to this file) has no value"),
    ("data: 12\n", "1:7", "data (the proxy data, relative to this file) must be a name"),
    ("- device: cpu\n", "1:1", "a run configuration is a mapping of settings"),
    ("workers: 2\n  bad: : x\n", "2:6", "not valid YAML: mapping values are not allowed here"),
    ("a: &x [1]\nb: *y\n", "2:4", "not valid YAML: found undefined alias 'y'"),
    ("[" * 5000 + "\n", "1:", "not valid YAML"),
])
def test_bad_config_is_a_located_error(tmp_path, text, where, message):
    conf = tmp_path / "run.yaml"
    conf.write_text(text)
    r = _shrink(tmp_path / "run", "--config", str(conf))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"{conf.as_posix()}:{where}") and message in r.stderr, r.stderr
    assert not (tmp_path / "run" / "run.json").exists()


def test_an_empty_config_changes_nothing(tmp_path):
    """Every run setting keeps its default under an empty --config: the settings the command
    line makes are the defaults' (workers, threads, executor and the rest, which run.json does
    not record), and run.json is the one a run without --config writes."""
    from shrinkc.cli import make_parser
    from shrinkc.commands.shrink import _run_settings
    from shrinkc.search.table import RunSettings

    conf = tmp_path / "run.yaml"
    conf.write_text("# nothing set yet\n")
    parser = make_parser()
    with_config = _run_settings(parser.parse_args(["shrink", str(TINY), "-o", "x",
                                                   "--config", str(conf)]))
    assert with_config == _run_settings(parser.parse_args(["shrink", str(TINY), "-o", "x"]))
    assert with_config == RunSettings()
    # --max-steps 0: everything is checked and run.json written, nothing trained
    r = _shrink(tmp_path / "run", "--config", str(conf), "--max-steps", "0")
    assert r.returncode == 0, r.stderr
    r = _shrink(tmp_path / "plain", "--max-steps", "0")
    assert r.returncode == 0, r.stderr
    assert _meta(tmp_path / "run") == _meta(tmp_path / "plain")


@pytest.mark.parametrize("kind", ["missing", "directory", "fifo", "binary", "huge"])
def test_hostile_config_files_are_refused(tmp_path, kind):
    conf = tmp_path / "run.yaml"
    expect = {"missing": "no such file", "directory": "is a directory, not a YAML run configuration",
              "fifo": "is a FIFO, not a regular file: refused",
              "binary": "not a YAML run configuration: a NUL byte",
              "huge": "is larger than 4 MiB: refused"}[kind]
    if kind == "directory":
        conf.mkdir()
    elif kind == "fifo":
        os.mkfifo(conf)
    elif kind == "binary":
        conf.write_bytes(b"device: cpu\n\x00\x01")
    elif kind == "huge":
        conf.write_text("# " + "x" * (5 << 20) + "\n")
    r = _shrink(tmp_path / "run", "--config", str(conf))
    assert r.returncode == 1 and expect in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr) < 2000


@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")
def test_cuda_search_is_the_same_with_one_and_two_workers(tmp_path):
    logs = []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        r = _shrink(out, "--device", "cuda", "--workers", workers)
        assert r.returncode == 0, r.stderr
        assert _meta(out)["device"] == "cuda"
        entries = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
        logs.append([{k: v for k, v in e.items() if k not in ("seconds", "cpu_seconds")}
                     for e in entries])
    assert logs[0] == logs[1]
