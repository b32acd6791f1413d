"""Running the command line as the hostile-input tests do (issue 24): in a subprocess, with an
address-space limit and a time limit, its exit status and its stdout and stderr captured.

``shrinkc(*args)`` runs ``python -m shrinkc args``. ``shrinkc_hooked(hook, hook_args, *args)``
runs the same program, under the same limits, after calling ``hook(*hook_args)`` in that
subprocess: for a case that must reach inside the command (training stubbed out, a file edited
while the command works). ``hook`` is ``"module:function"``, a module importable from tests/.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


def _limited():  # 4 GiB of address space (torch maps a lot), so a runaway read fails fast
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def _run(argv: list[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """``argv`` run to its end or for ``timeout`` seconds at most (then killed, and
    ``subprocess.TimeoutExpired`` raised), as ``subprocess.run`` does; the result also has
    the process id it ran under, ``pid``."""
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          cwd=kw.pop("cwd", ROOT), preexec_fn=_limited,
                          stdin=subprocess.DEVNULL, **kw) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    r = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    r.pid = proc.pid
    return r


def shrinkc(*args: str, **kw) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "shrinkc", *args], **kw)


# The program ``python -m shrinkc`` runs (shrinkc/__main__.py), after the hook.
_HOOKED = """\
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
module, _, name = sys.argv[2].partition(":")
getattr(importlib.import_module(module), name)(*json.loads(sys.argv[3]))
sys.argv = ["shrinkc", *sys.argv[4:]]
from shrinkc.cli import run
run()
"""


def shrinkc_hooked(hook: str, hook_args: Sequence, *args: str,
                   **kw) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-c", _HOOKED, str(TESTS), hook, json.dumps(list(hook_args)),
                 *args], **kw)


def _refused(r: subprocess.CompletedProcess, *expect: str) -> None:
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    for e in expect:
        assert e in r.stderr, r.stderr
