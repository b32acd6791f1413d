"""Hostile input, round three (issue 24, items 8 to 13): no traceback, no echo of a file that
is not ours, no raw terminal control, and a message wherever the output stream fails. Each case
runs the command line in a subprocess with a time limit and an address-space limit, as
``tests/test_hostile.py`` does."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPACE = ROOT / "specs" / "quickstart_space.shrink"
SECRET = "hunter2-SECRET"


def _limited():  # 4 GiB of address space (torch maps a lot), so a runaway read fails fast
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def _run(argv: list[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          cwd=kw.pop("cwd", ROOT), preexec_fn=_limited,
                          stdin=subprocess.DEVNULL, **kw)


def shrinkc(*args: str, **kw) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "shrinkc", *args], **kw)


def _refused(r: subprocess.CompletedProcess, *expect: str) -> None:
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    for e in expect:
        assert e in r.stderr, r.stderr


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
