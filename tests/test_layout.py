"""The house rules, checked by import-linter (contracts in pyproject.toml): dependencies run
one way (command line -> search -> backends -> data -> compiler -> grammar), only the trainer
imports torch, and no package has an import cycle.

The repository keeps each layer in a folder at its root (``compiler/`` installs as
``shrinkc.compiler``, by pyproject.toml's ``package-dir``); ``shrinkc/`` links to them
(``shrinkc/compiler -> ../compiler``), so that ``lint-imports`` run in the repository, as a
developer runs it, sees the package as it is installed.
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


def _package_dirs() -> dict[str, str]:
    return tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-dir"]


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` as a developer runs it: in ``cwd``, where ``shrinkc/`` is found."""
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe), "--no-cache", str(PYPROJECT)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_the_layer_links_follow_the_package_map():
    for package, folder in _package_dirs().items():
        if package == "shrinkc":
            continue
        link = ROOT.joinpath(*package.split("."))
        assert link.is_symlink() and link.resolve() == (ROOT / folder).resolve(), package


def test_import_contracts_hold():
    run = _lint_imports(ROOT)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    contracts = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
    assert f"Contracts: {len(contracts)} kept, 0 broken." in out, out
    analysed = int(re.search(r"Analyzed (\d+) files", out).group(1))
    ours = sum(name.endswith(".py") for _, _, files in os.walk(ROOT / "shrinkc", followlinks=True)
               for name in files)  # through the layer links
    assert ours > 40 and analysed >= ours, out  # every module of the package was read


@pytest.mark.parametrize("module, line, broken", [
    ("compiler/ir.py", "from shrinkc.search import rules", "Dependencies run one way"),
    ("backends/viz.py", "import shrinkc.commands.build", "Dependencies run one way"),
    ("compiler/passes/cost.py", "import torch", "never import torch"),
    ("search/driver.py", "import torch", "only the trainer imports torch"),
    ("data/npz.py", "import torch", "only the trainer imports torch"),
    ("data/images.py", "from shrinkc.search import rules", "Dependencies run one way"),
    ("compiler/ops.py", "from shrinkc.data import npz", "Dependencies run one way"),
    ("compiler/verify.py", "from shrinkc.compiler import pipeline", "No import cycles"),
])
def test_a_broken_rule_fails(tmp_path, module, line, broken):
    """The contracts are not vacuous: one planted import breaks each of them."""
    shutil.copytree(ROOT / "shrinkc", tmp_path / "shrinkc",  # links followed: a real copy
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    path = tmp_path / "shrinkc" / module
    path.write_text(path.read_text() + f"\n{line}  # planted by the test\n")
    run = _lint_imports(tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert re.search(re.escape(broken) + r"[^\n]*\n?[^\n]*BROKEN", out), out
