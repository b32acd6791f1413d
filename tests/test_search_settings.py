"""The search block's train settings: one set of defaults per kind of proxy network, applied
wherever a search trains (run.json, the jobs workers get), and no defaults in the trainer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
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
        train = settings(search, {"epochs": None}, lm=lm).train.as_dict()
        assert train == {**defaults, "momentum": 0.0, "weight_decay": 0.0, "finetune_lr": 0.0,
                         "schedule": "constant"}


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
        assert job.train.as_dict() == {**LM_DEFAULTS, "momentum": 0.0, "weight_decay": 0.0,
                             "finetune_lr": 0.0, "schedule": "constant"}


def test_the_trainer_has_no_defaults_of_its_own(tmp_path):
    pytest.importorskip("torch")
    from shrinkc.compiler import check
    from shrinkc.search import rules
    from shrinkc.search.job import make_job
    from shrinkc.search.settings import default_train
    from shrinkc.search.table import TrainSettings, replace
    from shrinkc.search.tasks import LANGUAGE
    from shrinkc.search.train import evaluate

    spec = TEST_SPECS / "tiny_rnn_space.shrink"
    checked = check(spec)
    space = next(i for i in checked.sources.main.items if i.kind == "space")
    # train settings have no defaults of their own: every one must be given
    with pytest.raises(TypeError, match="clip"):
        TrainSettings(**{k: v for k, v in default_train(LANGUAGE).as_dict().items()
                         if k != "clip"})
    train = replace(default_train(LANGUAGE), clip=None)  # what the image task leaves unset
    job = make_job(path=str(spec), program=checked.sources.main, space=space.name,
                   edges=rules.live_edges(space), network="TinyLM", overrides={"vocab": 50},
                   train=train, data=None, seed=0)
    with pytest.raises(KeyError, match="clip"):
        evaluate(job)


def test_auto_precision_follows_the_cpu():
    from shrinkc.search.settings import resolve_precision
    from shrinkc.search.tasks import LANGUAGE

    assert resolve_precision("auto", "flags\t: fpu sse avx2 fma\n") == "fp32"
    assert resolve_precision("auto", "flags\t: fpu avx512f avx512_bf16\n") == "bf16"
    assert resolve_precision("auto", "flags\t: fpu amx_bf16 amx_tile\n") == "bf16"
    assert resolve_precision("fp32", "flags\t: avx512_bf16\n") == "fp32"
    assert resolve_precision("bf16", "flags\t: avx2\n") == "bf16"
    # language models stay in fp32 on CPUs, whatever they have; an explicit bf16 is kept
    assert resolve_precision("auto", "flags\t: fpu amx_bf16 amx_tile\n", task=LANGUAGE) == "fp32"
    assert resolve_precision("bf16", "flags\t: fpu amx_bf16 amx_tile\n", task=LANGUAGE) == "bf16"


def test_precision_is_recorded_and_a_resume_must_keep_it(tmp_path):
    spec, out = TEST_SPECS / "tiny_space.shrink", tmp_path / "run"

    def shrink(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "shrinkc", "shrink", str(spec), "-o",
                               str(out), "--quiet", "--max-steps", "0", *extra],
                              capture_output=True, text=True, cwd=ROOT)

    assert shrink("--precision", "bf16").returncode == 0
    assert json.loads((out / "run.json").read_text())["precision"] == "bf16"
    r = shrink("--precision", "fp32", "--resume")
    assert r.returncode == 1 and "precision" in r.stderr, r.stderr
    assert shrink("--precision", "bf16", "--resume").returncode == 0


def test_a_bf16_candidate_trains(tmp_path):
    """bf16 autocast runs end to end on the CPU and gives a sane accuracy."""
    from shrinkc.compiler import ir
    from shrinkc.compiler.pipeline import check
    from shrinkc.search import rules
    from shrinkc.search.job import make_job
    from shrinkc.search.settings import settings as read_settings
    from shrinkc.search.train import evaluate

    checked = check(TEST_SPECS / "tiny_space.shrink")
    parsed = checked.sources.main
    space = next(i for i in parsed.items if isinstance(i, ir.SpaceDef))
    search = next(i for i in checked.program.items if isinstance(i, ir.SearchDef))
    settings = read_settings(search, {"epochs": 1})
    results = {}
    for precision in ("fp32", "bf16"):
        job = make_job(path=str(TEST_SPECS / "tiny_space.shrink"), program=parsed,
                       space=space.name, edges=rules.live_edges(space), network=search.network,
                       overrides={}, train=settings.train, data=None, seed=0, threads=1,
                       precision=precision)
        results[precision] = evaluate(job)["acc"]
    assert 0.1 < results["bf16"] <= 1 and 0.1 < results["fp32"] <= 1
    assert results["bf16"] != results["fp32"]  # it did run in another precision


def test_recalibrated_bn_statistics_are_the_average_of_the_calibration_batches():
    """recalibrate_bn sets each batch norm's running statistics to the mean, over the first
    512 training images in batches, of the batch statistics (written out here in plain
    torch), and changes no weight."""
    torch = pytest.importorskip("torch")
    from shrinkc.search.train import CALIBRATION_IMAGES, recalibrate_bn

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    model[1].running_mean.fill_(7.0)  # stale statistics
    x = torch.randn(600, 3, 8, 8) * 3 + 1
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k
               and "num_batches" not in k}
    recalibrate_bn(model, x, 128)
    assert CALIBRATION_IMAGES == 512
    with torch.no_grad():
        feats = [model[0](x[i:i + 128]) for i in range(0, 512, 128)]
    means = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    variances = torch.stack([f.transpose(0, 1).reshape(4, -1).var(dim=1, unbiased=True)
                             for f in feats]).mean(0)
    torch.testing.assert_close(model[1].running_mean, means, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model[1].running_var, variances, rtol=1e-4, atol=1e-5)
    assert model[1].momentum == 0.1
    for k, v in weights.items():
        assert torch.equal(model.state_dict()[k], v)


def test_cluttered_digits_is_a_seeded_harder_copy_of_digits():
    from shrinkc.data import images

    plain, a = images.load(None, (3, 32, 32)), images.load("cluttered-digits", (3, 32, 32))
    b = images.cluttered_digits((3, 32, 32))
    assert a.x_train.shape == plain.x_train.shape and a.x_val.shape == plain.x_val.shape
    assert (a.y_train == plain.y_train).all() and (a.y_val == plain.y_val).all()
    assert np.array_equal(a.x_train, b.x_train)  # seeded: the same every time
    assert abs(float(a.x_train.mean())) < 1e-3 and abs(float(a.x_train.std()) - 1) < 1e-2
    assert (a.x_train[:, 0] == a.x_train[:, 2]).all()  # channels repeated
    assert not np.allclose(a.x_train, plain.x_train, atol=0.5)
    assert images.fingerprint("cluttered-digits") == "cluttered-digits"


def test_bundled_digits_are_scikit_learns():
    """The digits are scikit-learn's, read through ``load_digits`` (issue 23: the library,
    not its file path), as float images and int64 labels."""
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits

    from shrinkc.data import images

    x, y = images._bundled_digits()
    d = load_digits()
    assert x.dtype == d.images.dtype and np.array_equal(x, d.images)
    assert y.dtype == np.int64 and np.array_equal(y, d.target)
