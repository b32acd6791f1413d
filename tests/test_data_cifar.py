"""CIFAR-10/100's python batches (``data/cifar.py``, prepared by ``data/images.py``): read
as the real files are written (numpy.core pickles too), split 90/10 stratified, the test
batch never read, converted and resized as Pillow does it; a malicious pickle is refused and
nothing of it runs; damaged batches and the folder above the batches are located errors."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from shrinkc.compiler.errors import ShrinkError
from shrinkc.data import folders, images

from data_helpers import _cached, _cifar10, _error, _tree

Image = pytest.importorskip("PIL.Image")

pytestmark = pytest.mark.usefixtures("cache_dir")  # each test's own decoded-data cache


# ----------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("numpy_core", [False, True])
def test_cifar10_batches_are_read(tmp_path, numpy_core):
    root = tmp_path / "cifar-10-batches-py"
    x, y = _cifar10(root, numpy_core=numpy_core)
    p = images.prepare(str(root), (3, 32, 32))
    arrays = _cached(p)
    assert [str(c) for c in arrays["classes"]][:3] == ["airplane", "automobile", "bird"]
    tr, va = images._stratified_split(y, 0.1, seed=0)
    np.testing.assert_array_equal(arrays["x_train"], x[tr])
    np.testing.assert_array_equal(arrays["x_val"], x[va])
    np.testing.assert_array_equal(arrays["y_val"], y[va])
    assert np.bincount(arrays["y_val"]).tolist() == [1] * 10  # 10% of each class
    assert p.data.classes == 10 and "test batch is not read" in p.record["data_split"]
    # the test batch is never read: damaging it changes nothing
    (root / "test_batch").write_bytes(b"garbage")
    assert images.prepare(str(root), (3, 32, 32)).source == p.source
    # converted and resized as Pillow does it
    grey = _cached(images.prepare(str(root), (1, 16, 12)))
    want = folders.convert(Image.fromarray(x[tr[5]], "RGB"), 1, (16, 12))
    ref = np.asarray(Image.fromarray(x[tr[5]], "RGB").convert("L").resize(
        (12, 16), Image.Resampling.BILINEAR))[:, :, None]
    np.testing.assert_array_equal(want, ref)
    np.testing.assert_array_equal(grey["x_train"][5], ref)


def test_cifar100_batches_are_read(tmp_path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, (1000, 3072), dtype=np.uint8)
    fine = [i % 100 for i in range(1000)]
    meta = {b"fine_label_names": [f"c{i:03d}".encode() for i in range(100)],
            b"coarse_label_names": [f"s{i}".encode() for i in range(20)]}
    (root / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    (root / "train").write_bytes(pickle.dumps(
        {b"filenames": [b"x"] * 1000, b"batch_label": b"training batch 1 of 1",
         b"fine_labels": fine, b"coarse_labels": [f // 5 for f in fine], b"data": data},
        protocol=2))
    p = images.prepare(str(root), (3, 32, 32))
    arrays = _cached(p)
    assert p.data.classes == 100 and np.bincount(arrays["y_val"]).tolist() == [1] * 100
    assert str(arrays["classes"][42]) == "c042"
    both = np.concatenate([arrays["x_train"], arrays["x_val"]]).reshape(1000, -1)
    assert sorted(map(bytes, both)) == sorted(
        bytes(r) for r in data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).reshape(1000, -1))
    few = tmp_path / "few"
    _tree(few, split_layout=False, per_class=2)
    assert "too few images to split off validation images" in str(_error(few))


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalEvil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("where", ["data_batch_3", "batches.meta"])
@pytest.mark.parametrize("payload", ["system", "eval", "object array", "codec"])
def test_a_malicious_cifar_pickle_is_refused_and_nothing_runs(tmp_path, where, payload):
    root = tmp_path / "cifar-10-batches-py"
    _cifar10(root)
    marker = tmp_path / "PWNED"
    evil = {"system": _Evil(marker), "eval": _EvalEvil(marker),
            "object array": np.array([_Evil(marker)], dtype=object),
            "codec": None}[payload]
    raw = pickle.dumps({b"data": evil, b"labels": []}, protocol=2)
    if payload == "codec":  # _codecs.encode is allowed for latin-1 only
        raw = (b"\x80\x02}q\x00C\x04dataq\x01c_codecs\nencode\nq\x02X\x03\x00\x00\x00"
               b"abcX\x05\x00\x00\x00rot13\x86R\x00s.")
    (root / where).write_bytes(raw)
    with pytest.raises(ShrinkError) as e:
        images.prepare(str(root), (3, 32, 32))
    assert (root / where).as_posix() in str(e.value)
    assert "refused to load this pickle" in str(e.value) and e.value.diagnostic.hint
    assert not marker.exists()
    # the same file through the plain pickle module would have run the payload
    if payload in ("system", "eval"):
        pickle.loads(raw)
        assert marker.exists()


def test_cifar_damage_and_layout_errors(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    _cifar10(root)
    (root / "data_batch_2").write_bytes(b"\x80\x02}q\x00(")  # cut short
    e = _error(root, (3, 32, 32))
    assert "data_batch_2" in str(e) and "not a CIFAR batch" in str(e)
    (root / "data_batch_2").unlink()
    assert "data_batch_2: missing" in str(_error(root, (3, 32, 32)))
    (root / "data_batch_2").write_bytes(pickle.dumps({b"data": np.zeros((2, 5), np.uint8),
                                                      b"labels": [0, 1]}, protocol=2))
    assert "'data' is not N x 3072 uint8" in str(_error(root, (3, 32, 32)))
    e = _error(tmp_path, (3, 32, 32))  # the folder above it
    assert "holds cifar-10-batches-py/" in str(e) and root.as_posix() in e.diagnostic.hint
