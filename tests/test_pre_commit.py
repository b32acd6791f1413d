"""The pre-commit hooks (``.pre-commit-hooks.yaml``): the manifest, and ``shrinkc fmt`` and
``shrinkc check`` as pre-commit runs them in a scratch repository, from a snapshot of this
working tree."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

# --------------------------------------------------------------------------- pre-commit


def _git(*args: str, cwd: Path) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def _snapshot(dest: Path) -> str:
    """A git repository holding this working tree as it is (uncommitted files too)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    _git("init", "-q", ".", cwd=dest)
    _git("add", "-A", cwd=dest)
    _git("commit", "-qm", "snapshot", cwd=dest)
    return _git("rev-parse", "HEAD", cwd=dest)


def test_pre_commit_hooks_manifest():
    yaml = pytest.importorskip("yaml")
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert hooks["shrinkc-fmt"]["entry"] == "shrinkc fmt"
    assert hooks["shrinkc-check"]["entry"] == "shrinkc check"
    for h in hooks.values():
        assert h["language"] == "python" and h["files"] == r"\.shrink$"


@pytest.mark.skipif(importlib.util.find_spec("pre_commit") is None,
                    reason="pre-commit is not installed")
@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                    reason="needs git and this repository's checkout")
def test_pre_commit_hooks_run(tmp_path):
    hook_repo = tmp_path / "hooks"
    hook_repo.mkdir()
    rev = _snapshot(hook_repo)
    work = tmp_path / "work"
    work.mkdir()
    _git("init", "-q", ".", cwd=work)
    (work / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {hook_repo.as_posix()}\n    rev: {rev}\n    hooks:\n"
        "      - id: shrinkc-fmt\n      - id: shrinkc-check\n")
    ugly = work / "cell.shrink"
    ugly.write_text("shrink 1\ncell C(w: int) {\n  input x\n  a = conv(w,k=3) relu <- x\n"
                    "  output a + x\n}\n")
    (work / "notes.txt").write_text("not a spec\n")
    _git("add", "-A", cwd=work)
    env = dict(os.environ, PRE_COMMIT_HOME=str(tmp_path / "cache"), PRE_COMMIT_COLOR="never")
    env.pop("VIRTUAL_ENV", None)

    def pre_commit(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pre_commit", *args], cwd=work, env=env,
                              capture_output=True, text=True, timeout=900, check=False)

    r = pre_commit("run", "--all-files")
    if "An unexpected error has occurred" in r.stdout + r.stderr:
        pytest.skip("pre-commit could not install the hook's environment (is PyPI reachable?): "
                    + (r.stdout + r.stderr).strip().splitlines()[-1])
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"shrinkc fmt\.+Failed", r.stdout)
    assert "files were modified by this hook" in r.stdout
    assert re.search(r"shrinkc check\.+Passed", r.stdout)
    assert "    a = conv(w, k=3) relu <- x" in ugly.read_text()
    r = pre_commit("run", "--all-files")
    assert r.returncode == 0, r.stdout + r.stderr
    ugly.write_text("shrink 1\n\ncell C(w: int) {\n    input x\n    a = sepcnv(w) <- x\n"
                    "    output a\n}\n")
    r = pre_commit("run", "--all-files")
    assert r.returncode == 1
    assert re.search(r"shrinkc check\.+Failed", r.stdout)
    assert "cell.shrink:5:9: error: unknown op 'sepcnv'" in r.stdout
