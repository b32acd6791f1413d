"""The search block's train settings: one set of defaults per kind of proxy network, applied
wherever a search trains (run.json, the jobs workers get), and no defaults in the trainer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, TEST_SPECS

LM_DEFAULTS = {"optimizer": "sgd", "lr": 20.0, "batch": 128, "epochs": 10, "patience": 2,
               "bptt": 35, "clip": 0.25, "finetune": 2}
CNN_DEFAULTS = {"optimizer": "adam", "lr": 0.004, "batch": 128, "epochs": 20, "patience": 3,
                "finetune": 2}


def _without_train_line(spec: Path, tmp_path: Path) -> Path:
    """A copy of a test search spec with its ``train(...)`` line taken out."""
    lines = spec.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.lstrip().startswith("train(")]
    assert len(kept) == len(lines) - 1
    out = tmp_path / spec.name
    out.write_text("".join(kept))
    return out


def _recorded_train(spec: Path, out: Path) -> dict:
    """The train settings run.json records for a search of ``spec`` (no step is trained)."""
    r = subprocess.run([sys.executable, "-m", "shrinkc", "shrink", str(spec), "-o", str(out),
                        "--quiet", "--max-steps", "0"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return json.loads((out / "run.json").read_text())["settings"]["train"]


@pytest.mark.parametrize("spec, defaults", [
    ("tiny_rnn_space.shrink", LM_DEFAULTS),
    ("tiny_space.shrink", CNN_DEFAULTS),
])
def test_a_search_without_a_train_line_gets_its_kinds_defaults(tmp_path, spec, defaults):
    spec_path = _without_train_line(TEST_SPECS / spec, tmp_path)
    assert _recorded_train(spec_path, tmp_path / "run") == defaults


def test_settings_defaults_per_kind():
    from shrinkc.compiler import check
    from shrinkc.search.settings import settings

    for spec, lm, defaults in (("tiny_rnn_space.shrink", True, LM_DEFAULTS),
                               ("tiny_space.shrink", False, CNN_DEFAULTS)):
        text = "".join(line for line in (TEST_SPECS / spec).read_text().splitlines(True)
                       if not line.lstrip().startswith("train("))
        search = next(i for i in check(TEST_SPECS / spec, text).program.items
                      if i.kind == "search")
        train = settings(search, {"epochs": None}, lm=lm).train
        assert train == {**defaults, "momentum": 0.0, "weight_decay": 0.0}


def test_workers_get_the_language_model_defaults(tmp_path, monkeypatch):
    """What a worker trains a recurrent candidate with, when the spec sets nothing."""
    from shrinkc.search import driver, train

    jobs = []

    def fake_evaluate(job):
        jobs.append(job)
        return {"ppl": 100.0, "flops": 1000, "params": 10, "epochs": 1, "seconds": 0.0}

    monkeypatch.setattr(train, "evaluate", fake_evaluate)
    spec = _without_train_line(TEST_SPECS / "tiny_rnn_space.shrink", tmp_path)
    driver.run(driver.Options(spec=str(spec), out=str(tmp_path / "run"), quiet=True,
                              max_steps=1, overrides={"candidates": 2}))
    assert len(jobs) == 2
    for job in jobs:
        assert job.train == {**LM_DEFAULTS, "momentum": 0.0, "weight_decay": 0.0}


def test_the_trainer_has_no_defaults_of_its_own(tmp_path):
    pytest.importorskip("torch")
    from shrinkc.compiler import check
    from shrinkc.search import rules
    from shrinkc.search.job import make_job
    from shrinkc.search.settings import default_train
    from shrinkc.search.train import evaluate

    spec = TEST_SPECS / "tiny_rnn_space.shrink"
    checked = check(spec)
    space = next(i for i in checked.sources.main.items if i.kind == "space")
    train = {k: v for k, v in default_train(lm=True).items() if k != "clip"}
    job = make_job(path=str(spec), program=checked.sources.main, space=space.name,
                   edges=rules.live_edges(space), network="TinyLM", overrides={"vocab": 50},
                   train=train, data=None, seed=0)
    with pytest.raises(KeyError, match="clip"):
        evaluate(job)
