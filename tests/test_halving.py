"""Successive halving inside a shrinker step: the rounds' budgets and sizes, a tiny search end
to end (every round checked against the one before it), workers, kill -9 and bad settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shrinkc.search import rules
from shrinkc.search.logentry import Entry

from conftest import ROOT, TEST_SPECS, kill_and_resume, read_log, run_shrink

TINY = TEST_SPECS / "tiny_space.shrink"
HALVING = ("--candidates", "3", "--epochs", "2", "--halving", "2")


@pytest.mark.parametrize("epochs, eta, budgets", [
    (9, 3, [1, 3, 9]), (4, 2, [1, 2, 4]), (10, 3, [1, 3, 10]), (2, 3, [2]), (20, 0, [20]),
    (1, 2, [1]), (20, 4, [1, 5, 20]),
])
def test_rungs(epochs, eta, budgets):
    assert rules.rungs(epochs, eta) == budgets


@pytest.mark.parametrize("k, rounds, eta, drop, sizes", [
    (10, 3, 3, 1, [10, 4, 2]),  # 10 -> ceil(10/3) = 4 -> ceil(4/3) = 2 (-> 1: the winner)
    (10, 2, 3, 1, [10, 4]),
    (10, 3, 2, 1, [10, 5, 3]),
    (3, 2, 2, 1, [3, 2]),
    (2, 2, 2, 1, [2]),  # ceil(2/2) = 1 survivor is the winner: no second round
    (10, 3, 3, 3, [10, 4]),  # never fewer than drop: 4 -> max(3, 2) = 3 are the winners
    (10, 1, 3, 1, [10]),
])
def test_round_sizes(k, rounds, eta, drop, sizes):
    assert rules.round_sizes(k, rounds, eta, drop) == sizes


def test_survivors_are_the_best_by_score_then_fewer_edges():
    entries = [Entry(step=1, edge=list(edge), score=score, edges=edges, chosen=False, hash="h",
                     acc=score, macs=1) for edge, score, edges in
               [((0, 1), 0.5, 5), ((0, 2), 0.7, 5), ((1, 2), 0.7, 4), ((2, 3), 0.1, 5)]]
    assert rules.survivors(entries, 2, 1) == [(0, 2), (1, 2)]  # sorted by (dst, src)
    assert rules.survivors(entries, 4, 1) == [(1, 2)]
    assert rules.survivors(entries, 4, 3) == [(0, 1), (0, 2), (1, 2)]


def _run(out: Path, *extra: str, check_rc: bool = True):
    return run_shrink(TINY, out, *extra, check_rc=check_rc)


_log = read_log


@pytest.fixture(scope="module")
def halving_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("halving") / "run"
    _run(out, *HALVING)
    return out


@pytest.fixture(scope="module")
def halving_resumed(tmp_path_factory):
    """The halving search on one worker, killed into the second round of step 1 or later and
    resumed on two workers (conftest.kill_and_resume): checked by the workers and the resume
    tests against the uninterrupted one-worker ``halving_run``."""
    out = tmp_path_factory.mktemp("halving_killed") / "run"
    return kill_and_resume(TINY, out, *HALVING, lines=4)


def test_rounds_keep_the_better_half_and_winners_come_from_the_last(halving_run):
    log = _log(halving_run)
    steps = sorted({e["step"] for e in log})
    assert len(steps) >= 3
    assert json.loads((halving_run / "run.json").read_text())["settings"]["halving"] == 2
    two_rounds = 0
    for s in steps:
        first = [e for e in log if e["step"] == s and e["rung"] == 0]
        second = [e for e in log if e["step"] == s and e["rung"] == 1]
        assert all(e["epochs"] == 1 and len(e["curve"]) == 1 for e in first)
        (chosen,) = [e for e in log if e["step"] == s and e["chosen"]]
        if len(first) <= 2:  # ceil(2 / 2) = 1 survivor: the winner, no second round
            assert not second and chosen in first
            assert chosen["score"] == max(e["score"] for e in first)
            continue
        two_rounds += 1
        # the second round trains exactly the better ceil(3 / 2) = 2 of the first, written
        # out here: sort by score, ties to fewer edges
        best = sorted(first, key=lambda e: (-e["score"], e["edges"], e["edge"]))[:2]
        assert sorted(e["edge"] for e in second) == sorted(e["edge"] for e in best)
        assert all(e["epochs"] == 2 and len(e["curve"]) == 2 for e in second)
        assert chosen in second and chosen["score"] == max(e["score"] for e in second)
        for e in second:  # trained again from the same seed: its first epoch repeats round 0
            twin = next(f for f in first if f["edge"] == e["edge"])
            if "isomorphic_to" not in twin:
                assert e["curve"][0] == twin["curve"][0]
    assert two_rounds >= 2


def test_halving_with_two_workers_gives_the_same_result(halving_run, halving_resumed):
    assert halving_resumed.log == _log(halving_run)
    assert halving_resumed.best == (halving_run / "best.shrink").read_text()


def test_halving_resumes_identically_after_kill(halving_run, halving_resumed):
    out, total = halving_resumed.out, len(_log(halving_run))
    n = halving_resumed.lines  # into the second round of step 1 or later
    assert 4 <= n < total, "killed mid-run"
    assert halving_resumed.log == _log(halving_run)
    mismatch = _run(out, "--candidates", "3", "--epochs", "2", "--resume", check_rc=False)
    assert mismatch.returncode == 1 and "halving" in mismatch.stderr  # settings are recorded


@pytest.mark.parametrize("extra, message", [
    (("--halving", "1"), "halving must be 0 (off) or a factor of at least 2, got 1"),
    (("--halving", "-2"), "--halving must be at least 0, got -2"),
    (("--halving", "2", "--inherit"), "successive halving does not combine with --inherit"),
])
def test_bad_halving_is_an_error(tmp_path, extra, message):
    r = _run(tmp_path / "bad", *extra, check_rc=False)
    assert r.returncode in (1, 2) and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "bad" / "log.jsonl").exists()


def test_bad_halving_in_the_spec_is_located(tmp_path):
    spec = tmp_path / "s.shrink"
    text = TINY.read_text().replace("seed=0)", "seed=0, halving=1)")
    spec.write_text(text)
    r = subprocess.run([sys.executable, "-m", "shrinkc", "shrink", str(spec), "-o",
                        str(tmp_path / "o"), "--quiet"], capture_output=True, text=True, cwd=ROOT)
    line = text.splitlines().index(next(x for x in text.splitlines() if "halving=1" in x)) + 1
    assert r.returncode == 1 and f"s.shrink:{line}:" in r.stderr
    assert "halving must be 0 (off)" in r.stderr


def test_survivors_continue_exactly_as_one_longer_run(halving_run, tiny_two_epoch_step):
    """A second-round candidate continues from its first round's checkpoint and ends as a
    plain run of the full budget with the same seed does (conftest's tiny_two_epoch_step:
    --candidates 3 --epochs 2 --max-steps 1, no halving); the step's checkpoints are gone once
    it is decided."""
    plain = tiny_two_epoch_step
    by_edge = {tuple(e["edge"]): e for e in _log(plain)}
    continued = [e for e in _log(halving_run)
                 if e["step"] == 1 and e["rung"] == 1 and "isomorphic_to" not in e]
    assert continued
    for e in continued:
        p = by_edge[tuple(e["edge"])]
        assert e["curve"] == p["curve"] and e["acc"] == p["acc"] and e["epochs"] == 2
    assert not list((halving_run / "candidates").glob("*"))


def test_a_checkpoint_that_is_not_the_candidates_is_ignored():
    """A damaged or foreign checkpoint in the run folder is not loaded: the candidate is
    trained from scratch (to the same result)."""
    torch = pytest.importorskip("torch")
    from shrinkc.search.train import _checkpoint, _to_bytes

    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    opt = torch.optim.Adam(model.parameters())
    good = {"model": model.state_dict(), "optimizer": opt.state_dict(),
            "generator": torch.Generator().get_state(), "rng": torch.get_rng_state(),
            "epoch": 1, "curve": [0.5], "stopped": False, "best": 0.5, "since": 0}
    assert _checkpoint(_to_bytes(good), model) is not None
    other = torch.nn.Sequential(torch.nn.Linear(4, 2))
    assert _checkpoint(_to_bytes({**good, "model": other.state_dict()}), model) is None
    assert _checkpoint(b"PK\x03\x04 garbage", model) is None
    assert _checkpoint(_to_bytes({"model": {}}), model) is None
    assert _checkpoint(None, model) is None
