"""The MobileNetV3 search space (``specs/mobilenetv3_space.shrink``, bneck pieces of the
mobile zoo): the shrinker takes it, and a one-step search trains candidates and removes an
edge."""

from __future__ import annotations

import pytest

from conftest import ROOT

pytest.importorskip("torch")


# --------------------------------------------------------------------------- the search space


def test_mobilenetv3_space_searches(tmp_path):
    """The shrinker takes the bneck-piece space: it checks, and a one-step search with two
    candidates trains them and removes one edge (of 15)."""
    from conftest import read_log, run_shrink

    spec = ROOT / "specs" / "mobilenetv3_space.shrink"
    out = tmp_path / "run"
    run_shrink(spec, out, "--max-steps", "0")
    assert (out / "run.json").exists() and not (out / "log.jsonl").exists()
    out = tmp_path / "one"
    run_shrink(spec, out, "--max-steps", "1", "--candidates", "2", "--epochs", "1",
               "--halving", "0")
    log = read_log(out)
    assert len(log) == 2 and sum(e["chosen"] for e in log) == 1
    assert all(0.0 <= e["acc"] <= 1.0 for e in log)
    text = (out / "step-01.shrink").read_text()
    (edges,) = [line for line in text.splitlines() if line.strip().startswith("edges ")]
    # the chosen edge is gone (and, were it node 1's only input, node 1's 4 edges out)
    assert edges.count("->") in (14, 10)
