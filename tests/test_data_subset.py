"""``--subset`` (``data/images.py``): a stratified, deterministic pick of the data, recorded
with its hash; a subset larger than the data or not N/M is an error; --resume with another
subset (or none) is refused; a run config's ``subset:`` is checked."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shrinkc.compiler.errors import ShrinkError
from shrinkc.data import images

from conftest import run_shrink
from data_helpers import TINY, _cached, _cifar10, _error, _tree

pytestmark = pytest.mark.usefixtures("cache_dir")  # each test's own decoded-data cache


# ----------------------------------------------------------------------------- subset


def test_subset_is_stratified_deterministic_and_recorded(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    x, y = _cifar10(root, per_batch=40)  # 200 images: 180 training, 20 validation
    p = images.prepare(str(root), (3, 32, 32), "50/10")
    arrays = _cached(p)
    assert p.record["subset"] == "50/10" and len(p.record["subset_sha256"]) == 64
    assert np.bincount(arrays["y_train"]).tolist() == [5] * 10
    assert np.bincount(arrays["y_val"]).tolist() == [1] * 10
    again = images.prepare(str(root), (3, 32, 32), "50/10")
    assert again.record == p.record and again.source == p.source
    np.testing.assert_array_equal(_cached(again)["x_train"], arrays["x_train"])
    full = _cached(images.prepare(str(root), (3, 32, 32)))
    kept = {bytes(r) for r in arrays["x_train"].reshape(50, -1)}
    assert kept <= {bytes(r) for r in full["x_train"].reshape(180, -1)}
    assert images.prepare(str(root), (3, 32, 32), "51/10").record["subset_sha256"] \
        != p.record["subset_sha256"]


def test_stratified_pick_shares_and_at_least_one_a_class():
    y = np.array([0] * 70 + [1] * 20 + [2] * 9 + [3] * 1)
    for n in (4, 10, 33, 99, 100):
        idx = images.stratified_pick(y, n)
        counts = np.bincount(y[idx], minlength=4)
        assert counts.sum() == n and len(set(idx.tolist())) == n and (counts >= 1).all()
        assert (np.abs(counts - n * np.bincount(y) / len(y)) <= 1.0 + (counts == 1)).all()
        np.testing.assert_array_equal(idx, images.stratified_pick(y, n))


def test_subset_errors(tmp_path):
    root = tmp_path / "imgs"
    _tree(root, split_layout=True, per_class=3)
    e = _error(root, subset="10/3")
    assert "--subset asks for 10 training images but the data has 9" in str(e)
    assert root.as_posix() in str(e) and "at most 9/9" in e.diagnostic.hint
    assert "10 validation images but the data has 9" in str(_error(root, subset="9/10"))
    assert "3 classes" in str(_error(root, subset="2/3"))
    assert "--subset takes part of an image folder" in str(_error("digits", subset="5/5"))
    for bad in ("5", "5/x", "0/3", "1/2/3", "-1/2"):
        with pytest.raises(ValueError):
            images.parse_subset(bad)


def test_subset_resumes_only_with_the_same_subset(tmp_path):
    root = tmp_path / "imgs"
    _tree(root, split_layout=True, per_class=5)
    out = tmp_path / "run"
    run_shrink(TINY, out, "--data", str(root), "--subset", "9/6", "--max-steps", "0")
    meta = json.loads((out / "run.json").read_text())
    assert meta["subset"] == "9/6" and len(meta["subset_sha256"]) == 64
    for extra, message in (
            (("--subset", "12/6"), "cannot resume: the run began with --subset 9/6, not 12/6"),
            ((), "cannot resume: the run began with --subset 9/6; give it again")):
        r = run_shrink(TINY, out, "--data", str(root), *extra, "--max-steps", "0", "--resume",
                       check_rc=False)
        assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr
    run_shrink(TINY, out, "--data", str(root), "--subset", "9/6", "--max-steps", "0",
               "--resume")
    other = tmp_path / "run2"
    run_shrink(TINY, other, "--data", str(root), "--max-steps", "0")
    r = run_shrink(TINY, other, "--data", str(root), "--subset", "9/6", "--max-steps", "0",
                   "--resume", check_rc=False)
    assert r.returncode == 1 and "the run began without --subset (not --subset 9/6)" in r.stderr
    # more than the data: an error before anything is written
    r = run_shrink(TINY, tmp_path / "big", "--data", str(root), "--subset", "100/5",
                   check_rc=False)
    assert r.returncode == 1 and "--subset asks for 100 training images but the data has 15" \
        in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "big" / "run.json").exists()
    r = run_shrink(TINY, tmp_path / "bad", "--data", str(root), "--subset", "x/5",
                   check_rc=False)
    assert r.returncode == 2 and "--subset is N/M" in r.stderr


def test_run_config_takes_subset(tmp_path):
    from shrinkc.search import config

    good = tmp_path / "run.yaml"
    good.write_text("subset: 5000/1000\ndata: imgs\n")
    assert config.load(good)["subset"] == "5000/1000"
    bad = tmp_path / "bad.yaml"
    bad.write_text("subset: 5000-1000\n")
    with pytest.raises(ShrinkError, match="subset is N/M") as e:
        config.load(bad)
    assert e.value.diagnostic.loc.line == 1
