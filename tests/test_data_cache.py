"""The decoded-data cache (``data/cache.py``): a second load reads it instead of decoding; a
tampered cache file is refused when loaded and decoded again with a warning when prepared;
the content is hashed, not names, sizes and times; a cache that cannot be written is an
error; --resume, and the candidate training it runs, read the cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from shrinkc.compiler.errors import ShrinkError
from shrinkc.data import cache, cifar, folders, images

from conftest import run_shrink
from data_helpers import TINY, _cifar10, _error, _save, _tree

pytestmark = pytest.mark.usefixtures("cache_dir")  # each test's own decoded-data cache


# ----------------------------------------------------------------------------- the cache


def test_the_cache_is_used_and_a_tampered_one_is_decoded_again(tmp_path, monkeypatch,
                                                               cache_dir):
    root = tmp_path / "imgs"
    _tree(root, split_layout=True, per_class=2)
    first = images.prepare(str(root), (3, 8, 8))
    assert Path(first.source).parent == cache_dir and cache.is_cache_file(first.source)

    real = folders.decode
    monkeypatch.setattr(folders, "decode", lambda *a: pytest.fail("decoded again"))
    second = images.prepare(str(root), (3, 8, 8))
    assert second.source == first.source
    np.testing.assert_array_equal(second.data.x_val, first.data.x_val)
    # a worker reads the cache file it is given, checked
    np.testing.assert_array_equal(images.load(first.source, (3, 8, 8)).x_train,
                                  first.data.x_train)

    # tampered: the check fails, a warning says so, and the data is decoded again
    raw = bytearray(Path(first.source).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    Path(first.source).write_bytes(bytes(raw))
    with pytest.raises(ShrinkError, match="was changed after it was written"):
        images.load(first.source, (3, 8, 8))
    monkeypatch.setattr(folders, "decode", real)
    warnings = []
    third = images.prepare(str(root), (3, 8, 8), report=warnings.append)
    assert len(warnings) == 1 and "was changed after it was written" in warnings[0].message
    assert third.source == first.source and cache.verify(Path(third.source))
    np.testing.assert_array_equal(third.data.x_train, first.data.x_train)
    # the content is hashed, not the names, sizes and times: a changed image is new data
    ppm = root / "val" / "ant" / "same.ppm"
    _save(ppm, "RGB", (12, 10), 1)
    before = images.prepare(str(root), (3, 8, 8)).record["data_sha256"]
    st = ppm.stat()
    _save(ppm, "RGB", (12, 10), 2)  # a PPM of the same dimensions: the same size
    os.utime(ppm, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert ppm.stat().st_size == st.st_size
    assert images.prepare(str(root), (3, 8, 8)).record["data_sha256"] != before


def test_cache_write_failure_is_an_error(tmp_path, monkeypatch):
    root = tmp_path / "imgs"
    _tree(root, split_layout=True, per_class=1)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv(cache.ENV, str(blocker / "cache"))
    e = _error(root)
    assert "cannot write the decoded-data cache" in str(e) and cache.ENV in e.diagnostic.hint


def test_resume_and_its_workers_read_the_cache(tmp_path, monkeypatch, capsys):
    """The first run decodes; --resume (in this process, with decoding made to fail) reads
    the decoded-data cache, and so does the candidate training it runs."""
    pytest.importorskip("torch")
    from shrinkc.cli import main

    root = tmp_path / "cifar-10-batches-py"
    _cifar10(root, per_batch=40)  # 180 training images, 20 validation images
    out = tmp_path / "run"
    run_shrink(TINY, out, "--data", str(root), "--subset", "30/10", "--max-steps", "1")
    monkeypatch.setattr(folders, "decode", lambda *a: pytest.fail("decoded again"))
    monkeypatch.setattr(folders, "convert", lambda *a: pytest.fail("converted again"))
    monkeypatch.setattr(cifar, "read", lambda *a: pytest.fail("read the batches again"))
    argv = ["shrink", str(TINY), "-o", str(out), "--quiet", "--data", str(root), "--subset",
            "30/10", "--resume", "--max-steps", "2"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "2 step(s)" in capsys.readouterr().out
