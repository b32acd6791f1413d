"""The front end stays linear on large cells: ``check``, ``stats`` and ``diff`` of a chain cell
(``benchmarks/frontend_speed.py``'s spec) in a fresh process, at 2,500 and 10,000 nodes.

Measured in CPU seconds of the child processes (user + system), which a loaded machine
changes far less than wall time. The checks are growth ratios, which hold on a loaded or slow
machine: from 2,500 to 10,000 nodes linear work grows 4x (less, with the start-up included),
quadratic work 16x, so more than 6x fails. A ceiling of twice the 4 s target (issue 23: each
command on 10,000 nodes at most 4 s, cold) catches a slowdown that is linear but large;
``benchmarks/frontend_speed.py`` measures the target itself.

Issue 23, at a load of 5 on 2 cores (Intel Xeon), lark's public parser and pydantic's
validation: ``check`` 1.4 s, ``stats`` 1.7 s, ``diff`` 3.4 s (two processes) of CPU on
10,000 nodes.
"""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from frontend_speed import chain_spec  # noqa: E402

TARGET_S = 4.0
CEILING_S = 2 * TARGET_S
MAX_GROWTH = 6.0  # 4x the nodes: linear work grows 4x, quadratic 16x


def _cpu(*args: str, runs: int = 2, again_above: float = 0.0
         ) -> tuple[float, subprocess.CompletedProcess]:
    """The least CPU time of up to ``runs`` runs of ``shrinkc ARGS``; the next run only when
    the best so far took more than ``again_above`` seconds (a shared machine has slowed one
    run by 1.8x, while a real regression is slow every time)."""
    best, r = float("inf"), None
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = subprocess.run([sys.executable, "-m", "shrinkc", *args], capture_output=True,
                           text=True, cwd=ROOT, timeout=300)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        best = min(best, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
        if best <= again_above:
            break
    return best, r  # type: ignore[return-value]


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    d = tmp_path_factory.mktemp("big")
    out = {}
    for n in (2_500, 10_000):
        out[n] = d / f"chain{n}.shrink"
        out[n].write_text(chain_spec(n))
        out[n, "edit"] = d / f"chain{n}_edit.shrink"
        out[n, "edit"].write_text(chain_spec(n, edit=n // 2))
    return out


def _growth(small_args: list[str], big_args: list[str], code: int
            ) -> tuple[float, float, subprocess.CompletedProcess]:
    """CPU seconds of the small and the big command (the small one at its best of two, so
    that a fast first run does not make the ratio look worse than it is)."""
    small, r = _cpu(*small_args)
    assert r.returncode == code, r.stderr
    big, r = _cpu(*big_args, again_above=CEILING_S / 2)
    assert r.returncode == code, r.stderr
    if big > MAX_GROWTH * small:  # once more, both: a burst of load during one of them
        small = min(small, _cpu(*small_args)[0])
        big = min(big, _cpu(*big_args)[0])
    return small, big, r


@pytest.mark.parametrize("command", ["check", "stats"])
def test_check_and_stats_of_10000_nodes_grow_linearly(specs, command):
    small, big, r = _growth([command, str(specs[2_500])], [command, str(specs[10_000])], 0)
    if command == "stats":
        assert "cell Big: 10001 nodes, 13333 edges" in r.stdout
    assert big < MAX_GROWTH * small, f"{small:.2f} s at 2,500 nodes, {big:.2f} s at 10,000"
    assert big < CEILING_S, f"{command} of 10,000 nodes took {big:.2f} CPU seconds"


def test_diff_of_10000_nodes_grows_linearly(specs):
    small, big, r = _growth(["diff", str(specs[2_500]), str(specs[2_500, "edit"])],
                            ["diff", str(specs[10_000]), str(specs[10_000, "edit"])], 1)
    assert "~ n5000: conv(w) -> conv(w, k=3)" in r.stdout
    assert "edge" not in r.stdout  # one op changed, every edge kept
    assert big < MAX_GROWTH * small, f"{small:.2f} s at 2,500 nodes, {big:.2f} s at 10,000"
    # two processes (diff reads the second spec in a second one): twice the ceiling of one
    assert big < 2 * CEILING_S, f"diff of 10,000 nodes took {big:.2f} CPU seconds"
