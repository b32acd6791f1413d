"""Shared fixtures: paths, and compiling a spec to a generated PyTorch module."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
ALL_SHIPPED = sorted(SPECS.glob("*.shrink"))
# the image networks (the language models have tests of their own)
CNN_SPECS = [p for p in ALL_SHIPPED if "recurrent cell" not in p.read_text()]
ZOO_SPECS = sorted((SPECS / "zoo").glob("*.shrink"))  # torchvision's networks: tests/test_zoo_torchvision.py
TEST_SPECS = Path(__file__).resolve().parent / "specs"


def generate_module(spec: Path, out_dir: Path, name: str | None = None):
    """Compile ``spec`` with the PyTorch backend and import the generated file."""
    from shrinkc.backends.pytorch import generate
    from shrinkc.compiler import compile_file

    graph = compile_file(spec)
    path = out_dir / f"{name or spec.stem}.py"
    path.write_text(generate(graph))
    mod_name = f"_shrinkc_generated_{path.stem}_{abs(hash(str(path)))}"
    loader = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(loader)
    sys.modules[mod_name] = module
    loader.loader.exec_module(module)
    return graph, module, path


def run_shrink(spec: Path, out: Path, *extra: str, check_rc: bool = True):
    """``shrinkc shrink spec -o out --quiet extra...`` in a fresh process."""
    import subprocess

    r = subprocess.run([sys.executable, "-m", "shrinkc", "shrink", str(spec), "-o", str(out),
                        "--quiet", *extra], capture_output=True, text=True, cwd=ROOT)
    if check_rc:
        assert r.returncode == 0, r.stderr
    return r


def kill_mid_run(spec: Path, out: Path, *extra: str, lines: int) -> int:
    """Start ``shrinkc shrink spec -o out --quiet extra...``, kill -9 it once its log has
    ``lines`` lines (or after two minutes), and return how many lines it had then: the
    caller asserts that the kill landed mid-run."""
    import os
    import signal
    import subprocess
    import time

    proc = subprocess.Popen([sys.executable, "-m", "shrinkc", "shrink", str(spec), "-o", str(out),
                             "--quiet", *extra], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    log = out / "log.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if log.exists() and len(log.read_text().splitlines()) >= lines:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return len(log.read_text().splitlines()) if log.exists() else 0


def read_log(out: Path) -> list[dict]:
    """A run's log.jsonl entries without their (machine-dependent) seconds and CPU seconds."""
    import json

    entries = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    for e in entries:
        e.pop("seconds")
        e.pop("cpu_seconds", None)
    return entries


def losses_on_one_batch(model, loss_of, *, steps: int, lr: float) -> list[float]:
    """Train ``model`` with Adam for ``steps`` steps on one fixed batch (``loss_of(model)``
    gives its loss as a tensor) and return the loss before each step and after the last.

    Deterministic and cheap: one torch thread (on a busy machine more threads mostly wait
    for each other), and the same seed before every forward pass, so that dropout and
    stochastic depth draw the same masks at every step and the loss is a function of the
    weights alone (with fresh masks, a few steps of a network with heavy dropout are mostly
    noise)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        losses = []
        for step in range(steps + 1):
            torch.manual_seed(0)
            loss = loss_of(model)
            losses.append(loss.item())
            if step < steps:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return losses
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def chdir_root(monkeypatch):
    monkeypatch.chdir(ROOT)
    return ROOT


def check_golden(path: Path, text: str) -> None:
    """Generated output is stable: compare with the stored file (SHRINKC_UPDATE_GOLDEN=1
    rewrites it), so an unintended change to generated code shows up as a diff."""
    import os

    if os.environ.get("SHRINKC_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), "run with SHRINKC_UPDATE_GOLDEN=1 to create"
    assert text == path.read_text()


def compile_fails(spec: Path, tmp_path: Path, capsys, weights: Path, *needles: str,
                  targets: str = "onnx") -> str:
    """``shrinkc compile --weights`` fails with exit 1, a message holding ``needles``, no
    traceback, and nothing written."""
    from shrinkc.cli import main

    out = tmp_path / "out"
    rc = main(["compile", str(spec), "--target", targets, "-o", str(out), "--weights", str(weights)])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "error:" in err and "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    assert not out.exists() or not list(out.iterdir())  # nothing written
    return err


def onnx_summary(model) -> str:
    """A compact, stable text form of a model: everything but the weight values (the ONNX
    golden files)."""
    import onnx

    def shape(vi) -> str:
        dims = vi.type.tensor_type.shape.dim
        return "[" + ", ".join(d.dim_param or str(d.dim_value) for d in dims) + "]"

    def attr(a) -> str:
        if a.ref_attr_name:
            return f"{a.name}=@{a.ref_attr_name}"
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, onnx.TensorProto):
            v = onnx.numpy_helper.to_array(v).tolist()
        if isinstance(v, float):
            v = f"{v:.7g}"
        if isinstance(v, list):
            v = ",".join(map(str, v))
        return f"{a.name}={v}"

    def node(n) -> str:
        attrs = " ".join(attr(a) for a in sorted(n.attribute, key=lambda a: a.name))
        op = f"{n.domain}.{n.op_type}" if n.domain else n.op_type
        return f"  {op} {n.name}: {', '.join(n.input)} -> {', '.join(n.output)}" + (
            f"  [{attrs}]" if attrs else "")

    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    lines = [f"# {model.graph.name}: ir_version {model.ir_version}, opsets {opsets}"]
    lines += [f"input {i.name} {shape(i)}" for i in model.graph.input]
    lines += [f"output {o.name} {shape(o)}" for o in model.graph.output]
    for f in model.functions:
        lines.append(f"function {f.domain}.{f.name}({', '.join(f.input)}) -> "
                     f"{', '.join(f.output)}  attributes {', '.join(f.attribute) or '-'}")
        lines += [node(n) for n in f.node]
    lines.append(f"graph ({len(model.graph.node)} nodes)")
    lines += [node(n) for n in model.graph.node]
    lines.append(f"initializers ({len(model.graph.initializer)})")
    lines += [f"  {t.name} [{', '.join(map(str, t.dims))}]" for t in model.graph.initializer]
    return "\n".join(lines) + "\n"


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """Each test's own decoded-data cache (also for the shrinkc processes it starts): the
    data-source tests (test_data_*.py) use it on every test."""
    from shrinkc.data import cache

    where = tmp_path / "cache"
    monkeypatch.setenv(cache.ENV, str(where))
    return where


# ------------------------------------------------------------------ shared end-to-end searches
# A real search of the tiny spec takes from seconds to minutes on a busy machine, so the tests
# that only compare results (uninterrupted against killed and resumed, one worker against two)
# share these runs, made once a session, instead of each starting its own. A test must not
# change a shared run folder: copy it first.

TINY = TEST_SPECS / "tiny_space.shrink"


class KilledRun:
    """A search killed with kill -9 mid-run, then resumed to its end.

    ``out``: its run folder; ``lines``: the log lines it had when killed; ``refused``: the
    same command started again without --resume on the killed folder, if asked for (a run is
    never silently overwritten), else None; ``log`` (as ``read_log``) and ``best``
    (best.shrink): the result right after the resume, taken before any test starts another
    process on the folder."""

    def __init__(self, out: Path, lines: int, refused, log: list[dict], best: str):
        self.out, self.lines, self.refused, self.log, self.best = out, lines, refused, log, best


def kill_and_resume(spec: Path, out: Path, *flags: str, lines: int,
                    refuse: bool = False) -> KilledRun:
    """``shrinkc shrink spec -o out flags`` on one worker (training in the search's own
    process), killed once its log has ``lines`` lines, with ``refuse`` started again without
    --resume, then resumed with ``flags --workers 2`` to its end: every candidate after the
    kill is trained on one of two worker processes. Compared with the uninterrupted one-worker
    run, one such run shows both that a resume and that the number of workers leave the
    result as it is (the number of workers is not a setting a resume compares)."""
    n = kill_mid_run(spec, out, *flags, lines=lines)
    refused = run_shrink(spec, out, *flags, check_rc=False) if refuse else None
    run_shrink(spec, out, *flags, "--workers", "2", "--resume")
    best = out / "best.shrink"
    return KilledRun(out, n, refused, read_log(out), best.read_text() if best.exists() else "")


@pytest.fixture(scope="session")
def tiny_reference_run(tmp_path_factory) -> Path:
    """The tiny search to its end, uninterrupted, one worker: the result the others equal."""
    out = tmp_path_factory.mktemp("tiny_reference") / "run"
    run_shrink(TINY, out)
    return out


@pytest.fixture(scope="session")
def tiny_resumed_run(tmp_path_factory) -> KilledRun:
    """The tiny search on one worker, killed after 5 log lines, started again without
    --resume (refused), then resumed on two workers."""
    return kill_and_resume(TINY, tmp_path_factory.mktemp("tiny_killed") / "run", lines=5,
                           refuse=True)


@pytest.fixture(scope="session")
def tiny_two_epoch_step(tmp_path_factory) -> Path:
    """One step of the tiny search, 3 candidates of 2 epochs, no halving and no schedule: what
    halving's survivors continue to (test_halving) and what a schedule changes (test_schedule)."""
    out = tmp_path_factory.mktemp("tiny_two_epochs") / "run"
    run_shrink(TINY, out, "--candidates", "3", "--epochs", "2", "--max-steps", "1")
    return out


@pytest.fixture(scope="session")
def tiny_one_step_run(tmp_path_factory) -> Path:
    """One step of the tiny search with its spec's settings and --device auto (the default),
    finished: the run folder test_hostile_search damages (in copies) and the run whose
    run.json test_run_config reads for the device auto chose."""
    out = tmp_path_factory.mktemp("tiny_one_step") / "run"
    run_shrink(TINY, out, "--max-steps", "1", "--device", "auto")
    return out
