"""The house rules, checked by import-linter (contracts in pyproject.toml): dependencies run
one way (command line -> search -> backends -> compiler -> grammar), only the trainer
imports torch, and no package has an import cycle among its modules.

The repository keeps each layer in a folder at its root (``compiler/`` installs as
``shrinkc.compiler``), which import-linter cannot follow in an editable install; so the test
lays the package out as it is installed, from pyproject.toml's own mapping, and runs
``lint-imports`` on that copy.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: import-linter brings tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"


def _installed_layout(dst: Path) -> Path:
    mapping = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(mapping.items()):
        shutil.copytree(ROOT / folder, dst.joinpath(*package.split(".")), dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dst


def _lint_imports(site: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([str(exe), "--no-cache", str(PYPROJECT)], cwd=site,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return _installed_layout(tmp_path_factory.mktemp("site"))


def test_import_contracts_hold(site):
    run = _lint_imports(site)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    contracts = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
    assert f"Contracts: {len(contracts)} kept, 0 broken." in out, out
    analysed = int(re.search(r"Analyzed (\d+) files", out).group(1))
    ours = sum(1 for _ in site.rglob("*.py"))
    assert ours > 40 and analysed >= ours, out  # every module of the package was read


@pytest.mark.parametrize("module, line, broken", [
    ("compiler/ir.py", "from shrinkc.search import rules", "Dependencies run one way"),
    ("backends/viz.py", "import shrinkc.commands.build", "Dependencies run one way"),
    ("compiler/passes/cost.py", "import torch", "never import torch"),
    ("search/driver.py", "import torch", "only the trainer imports torch"),
    ("compiler/verify.py", "from shrinkc.compiler import pipeline", "No import cycles"),
])
def test_a_broken_rule_fails(tmp_path, module, line, broken):
    """The contracts are not vacuous: one planted import breaks each of them."""
    site = _installed_layout(tmp_path)
    path = site / "shrinkc" / module
    path.write_text(path.read_text() + f"\n{line}  # planted by the test\n")
    run = _lint_imports(site)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert re.search(re.escape(broken) + r"[^\n]*\n?[^\n]*BROKEN", out), out
