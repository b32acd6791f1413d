"""The mobile zoo's generated code (``specs/zoo/``) is stable: the PyTorch source and the
ONNX graph of every spec match the golden files (SHRINKC_UPDATE_GOLDEN=1 rewrites them), so
an unintended change shows up as a diff; and the generated sources pass ruff."""

from __future__ import annotations

import pytest

from shrinkc.backends import onnx as onnx_backend
from shrinkc.backends.pytorch import generate
from shrinkc.compiler import compile_file

from conftest import ROOT, check_golden, onnx_summary
from zoo_references import NAMES

GOLDEN = ROOT / "tests" / "golden"


def test_generated_sources_pass_ruff():
    import subprocess
    import sys

    paths = [str(GOLDEN / "pytorch" / "zoo" / f"{n}.py") for n in NAMES]
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--isolated", "--no-cache", *paths],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


@pytest.mark.parametrize("name", NAMES)
def test_golden(name, monkeypatch):
    """Generated PyTorch and the ONNX graph are stable (SHRINKC_UPDATE_GOLDEN=1 rewrites)."""
    monkeypatch.chdir(ROOT)
    graph = compile_file(f"specs/zoo/{name}.shrink")
    check_golden(GOLDEN / "pytorch" / "zoo" / f"{name}.py", generate(graph))
    check_golden(GOLDEN / "onnx" / "zoo" / f"{name}.txt", onnx_summary(onnx_backend.generate(graph)))
