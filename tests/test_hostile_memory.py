"""Hostile input, round three (issue 24, items 1 and 2, and their siblings): what a small file
declares must not decide what is allocated. No input file under 1 MB brings a command over
1.5 GB resident; each case below ends in a message with exit 1. The command line runs in a
subprocess with an address-space limit and a time limit, as ``tests/test_hostile.py`` does,
and reports its own peak resident memory. Then a property-based fuzz of the ``.npz`` reader:
random archives never give a traceback, never take long, and never allocate more than the
limit the reader sets itself."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import resource
import struct
import subprocess
import sys
import time
import tracemalloc
import warnings
import zipfile
import zlib
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shrinkc.compiler.errors import ShrinkError
from shrinkc.data import cache, images, npz

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "specs" / "tiny.shrink"  # input 3x32x32, 225 KB of parameters
SPACE = ROOT / "specs" / "quickstart_space.shrink"  # proxy network input 3x16x16
RESIDENT = 1.5e9  # bytes: what no input file under 1 MB may bring a command to
MIB = 1 << 20

# runs the command line in the subprocess and reports its peak resident memory, even when
# the command ends in a traceback
_MAIN = ("import resource, sys\n"
         "from shrinkc.cli import main\n"
         "try:\n"
         "    rc = main(sys.argv[1:])\n"
         "finally:\n"
         "    print(f'peak-rss-kib {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}',\n"
         "          file=sys.stderr)\n"
         "sys.exit(rc)\n")


def _limited():  # 4 GiB of address space (torch maps a lot), so a runaway allocation fails
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def shrinkc(tmp_path: Path, *args: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess, int]:
    """The command's result and its peak resident memory in bytes."""
    env = {**os.environ, "SHRINKC_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-c", _MAIN, *args], capture_output=True, text=True,
                       timeout=timeout, env=env, cwd=ROOT, preexec_fn=_limited,
                       stdin=subprocess.DEVNULL)
    found = re.findall(r"peak-rss-kib (\d+)", r.stderr)
    assert found, (r.returncode, r.stderr[-2000:])
    return r, int(found[-1]) * 1024


def _refused(r: subprocess.CompletedProcess, peak: int, *expect: str) -> None:
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.returncode == 1, (r.returncode, r.stderr[-3000:])
    for e in expect:
        assert e in r.stderr, r.stderr
    assert peak < RESIDENT, f"{peak / 1e9:.2f} GB resident"


def _small(path: Path) -> Path:
    assert path.stat().st_size < MIB, path.stat().st_size
    return path


# --------------------------------------------------------------------- 1: --weights w.pt


def _rezipped(src: Path, dst: Path, replace: dict[str, bytes] | None = None,
              compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """A torch.save archive written again, its records compressed, some replaced."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression) as zout:
        for info in zin.infolist():
            tail = info.filename.split("/", 1)[1]
            zout.writestr(info.filename, (replace or {}).get(tail, zin.read(info.filename)),
                          compress_type=compression, compresslevel=9)
    return dst


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def test_a_small_pt_whose_one_storage_many_keys_share_is_refused_before_copying(torch,
                                                                                 tmp_path):
    """Issue 24, item 1: 64 keys share one 64 MiB storage, deflated to 66 KB; every tensor was
    copied out of it (4.3 GB) before any name was checked."""
    big = torch.zeros(16 * MIB)
    torch.save({f"t{i}": big for i in range(64)}, tmp_path / "raw.pt")
    weights = _small(_rezipped(tmp_path / "raw.pt", tmp_path / "w.pt"))
    r, peak = shrinkc(tmp_path, "compile", str(TINY), "--target", "onnx", "--weights",
                      str(weights), "-o", str(tmp_path / "out"))
    _refused(r, peak, "its records unpack to 64.0 MiB", "torch.save")
    assert not (tmp_path / "out").exists()


def test_a_pt_whose_pickle_encodes_one_string_again_and_again_is_refused(torch, tmp_path):
    """A sibling: torch's unpickler builds what the pickle says, and a pickle refers to a
    string it holds once in two bytes: 10,000 encodings of one 500 KB string are 5 GB."""
    s = "a" * 500_000
    pkl = (b"\x80\x02}X\x05\x00\x00\x00junks](c_codecs\nencode\nq\x00"
           + b"X" + struct.pack("<I", len(s)) + s.encode() + b"X\x06\x00\x00\x00latin1\x86q\x01R"
           + b"h\x00h\x01R" * 10_000 + b"es.")
    torch.save({"a": torch.zeros(1)}, tmp_path / "small.pt")
    weights = _small(_rezipped(tmp_path / "small.pt", tmp_path / "w.pt", {"data.pkl": pkl},
                               zipfile.ZIP_STORED))
    r, peak = shrinkc(tmp_path, "compile", str(TINY), "--target", "onnx", "--weights",
                      str(weights), "-o", str(tmp_path / "out"))
    _refused(r, peak, "builds far more than it holds")


def test_a_pt_whose_pickle_asks_for_a_huge_bytearray_is_refused(torch, tmp_path):
    """A sibling: bytearray(n), which torch's unpickler allows, is 2 GB from 20 bytes."""
    n = 2_000_000_000
    pkl = b"\x80\x02cbuiltins\nbytearray\n\x8a\x04" + n.to_bytes(4, "little") + b"\x85R."
    torch.save({"a": torch.zeros(1)}, tmp_path / "small.pt")
    weights = _rezipped(tmp_path / "small.pt", tmp_path / "w.pt", {"data.pkl": pkl},
                        zipfile.ZIP_STORED)
    r, peak = shrinkc(tmp_path, "compile", str(TINY), "--target", "onnx", "--weights",
                      str(weights), "-o", str(tmp_path / "out"))
    _refused(r, peak, "names builtins.bytearray, which a state_dict of tensors does not")


def _tiny_expected():
    from shrinkc.backends.layout import expected_tensors
    from shrinkc.compiler import compile_file

    return compile_file(TINY), expected_tensors(compile_file(TINY))


def test_tensors_that_share_one_storage_are_each_copied_once_with_their_own_shape(torch,
                                                                                 tmp_path):
    """The network's own names, every tensor a view of one storage at its own offset: the
    checked weights are the views' values, each array its own copy of its own shape."""
    from shrinkc.backends.onnx.checkpoint import load_weights

    graph, expected = _tiny_expected()
    sizes = {k: int(np.prod(s.shape)) for k, s in expected.items()}
    flat = torch.arange(sum(sizes.values()) + 1000, dtype=torch.float32)
    sd, at = {}, 7
    for name, spec in expected.items():
        view = flat[at:at + sizes[name]].view(spec.shape)
        sd[name] = view.long() if spec.dtype == "int64" else view
        at += sizes[name]
    torch.save(sd, tmp_path / "w.pt")
    got = load_weights(tmp_path / "w.pt", graph)
    for name, arr in got.items():  # an array of its own, not a view of the storage
        assert arr.shape == expected[name].shape and arr.flags.owndata, name
        np.testing.assert_array_equal(arr, sd[name].numpy())
    _rezipped(tmp_path / "w.pt", tmp_path / "z.pt")  # deflated, as a zip tool may leave it
    again = load_weights(tmp_path / "z.pt", graph)
    assert all(np.array_equal(again[k], got[k]) for k in got)


def test_names_shapes_and_dtypes_are_checked_before_any_tensor_is_read(tmp_path):
    """A .safetensors file's header says every name, shape and dtype: a checkpoint that does
    not fit is refused without reading a tensor, and one that fits reads each once."""
    stn = pytest.importorskip("safetensors.numpy")
    from shrinkc.backends.onnx import checkpoint

    graph, expected = _tiny_expected()
    weights = checkpoint.random_weights(graph)
    wrong = dict(weights)
    wrong["stem.0.conv.weight"] = np.zeros((1, 2, 3), np.float32)
    for name, arrays in (("w.safetensors", weights), ("wrong.safetensors", wrong)):
        stn.save_file(arrays, str(tmp_path / name))
    reads: list[str] = []
    real = checkpoint.Found.array

    def counted(self):
        reads.append(self.shape)
        return real.func(self)

    with mock.patch.object(checkpoint.Found, "array", property(counted)):
        with pytest.raises(ShrinkError, match=r"has shape \[1, 2, 3\]"):
            checkpoint.load_weights(tmp_path / "wrong.safetensors", graph)
        assert reads == []
        got = checkpoint.load_weights(tmp_path / "w.safetensors", graph)
    assert len(reads) == len(got) and all(np.array_equal(got[k], weights[k]) for k in got)


# --------------------------------------------------------------------- 2: --data x.npz


def _zeros_npz(path: Path, n: int, header: bytes | None = None) -> Path:
    """An .npz whose x_train is ``n`` uint8 images of 16x16x3, all zeros, deflated, written
    a megabyte at a time (or whose x_train is ``header`` followed by zeros)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("x_train.npy", "w", force_zip64=True) as f:
            if header is None:
                buf = io.BytesIO()
                np.lib.format.write_array_header_1_0(
                    buf, {"descr": "|u1", "fortran_order": False, "shape": (n, 16, 16, 3)})
                f.write(buf.getvalue())
                left = n * 768
            else:
                f.write(header)
                left = n
            while left:
                f.write(bytes(min(left, MIB)))
                left -= min(left, MIB)
        for name, arr in (("y_train", np.zeros(n if header is None else 10, np.uint8)),
                          ("x_val", np.zeros((10, 16, 16, 3), np.uint8)),
                          ("y_val", np.zeros(10, np.uint8))):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr)
            z.writestr(f"{name}.npy", buf.getvalue())
    return path


def test_a_small_npz_of_uint8_images_is_bounded_as_float32(tmp_path):
    """Issue 24, item 2: 256 MiB of zeros deflated to 264 KB; as float32, standardised, about
    13 times more (3.5 GB resident)."""
    data = _small(_zeros_npz(tmp_path / "x.npz", (256 * MIB) // 768))
    r, peak = shrinkc(tmp_path, "shrink", str(SPACE), "--data", str(data), "-o",
                      str(tmp_path / "run"))
    _refused(r, peak, "loading it would take 2.0 GiB of memory", "349,525 + 10 images",
             "more than the 512.0 MiB allowed for a file of", "save fewer images", "--subset")
    assert not (tmp_path / "run" / "log.jsonl").exists()


def test_an_npz_array_header_of_hundreds_of_megabytes_is_refused_unread(tmp_path):
    """A sibling: numpy reads a .npy header (its length is 4 bytes) before it checks the
    length; 768 MiB of spaces deflate to 760 KB."""
    length = 768 * MIB
    data = _small(_zeros_npz(tmp_path / "x.npz", length,
                             b"\x93NUMPY\x02\x00" + struct.pack("<I", length)))
    r, peak = shrinkc(tmp_path, "shrink", str(SPACE), "--data", str(data), "-o",
                      str(tmp_path / "run"))
    _refused(r, peak, "'x_train' has a header of 805,306,368 bytes")


def _png16(path: Path, w: int, h: int) -> Path:
    """A 16-bit grey PNG of w x h zeros, compressed a row at a time."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    comp = zlib.compressobj(9)
    row = bytes(1 + 2 * w)
    idat = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 0,
                                                                         0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_an_image_whose_header_declares_huge_dimensions_is_refused_before_decoding(tmp_path):
    """A sibling in image folders: a 328 KB PNG of 13,000 x 13,000 16-bit pixels took 4.2 GB
    (and minutes) to decode and scale to 8 bits."""
    root = tmp_path / "imgs"
    big = _small(_png16(root / "cat" / "big.png", 13_000, 13_000))
    _png16(root / "dog" / "small.png", 16, 16)
    r, peak = shrinkc(tmp_path, "shrink", str(SPACE), "--data", str(root), "-o",
                      str(tmp_path / "run"))
    _refused(r, peak, f"{big.as_posix()}: an image of 13,000x13,000 pixels",
             "more than the 512.0 MiB allowed for one image")


def test_a_cifar_batch_that_encodes_one_string_again_and_again_is_refused(tmp_path):
    """A sibling in CIFAR folders: the batches are pickles, and a 1 MB one could build 50 GB
    by encoding one string it holds once."""
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a", b"b"]}, 2))
    s = "a" * 500_000
    bomb = (b"\x80\x02}C\x05junks](c_codecs\nencode\nq\x00X" + struct.pack("<I", len(s))
            + s.encode() + b"X\x06\x00\x00\x00latin1\x86q\x01R" + b"h\x00h\x01R" * 100_000
            + b"es.")
    for i in range(1, 6):
        (root / f"data_batch_{i}").write_bytes(bomb)
    _small(root / "data_batch_1")
    r, peak = shrinkc(tmp_path, "shrink", str(SPACE), "--data", str(root), "-o",
                      str(tmp_path / "run"))
    _refused(r, peak, "refused to load this pickle: it builds more data than the file holds")


def test_a_cache_file_declaring_more_than_it_holds_is_refused_unread(tmp_path):
    """A sibling in the decoded-data cache: an array header declaring 1 GiB over a few
    bytes of data was allocated whole before numpy found the data short."""
    path = tmp_path / "c.npz"
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False,
                                               "shape": (1 << 30,)})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x_train.npy", buf.getvalue() + bytes(100))
    tracemalloc.start()
    try:
        with pytest.raises(ShrinkError, match="is cut short"):
            cache.read(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * MIB


# --------------------------------------------------------------------- what loading keeps


def test_npz_images_are_converted_and_standardised_as_before(tmp_path):
    """In place, and with the values (and memory layout) of the copying conversion:
    uint8 N x H x W x C to float32 / 255, floats to float32, then standardised with the
    training images' per-channel mean and deviation (``images._standardise``)."""
    rng = np.random.default_rng(3)
    cases = {"uint8": (rng.integers(0, 256, (40, 5, 6, 3), dtype=np.uint8),
                       rng.integers(0, 256, (9, 5, 6, 3), dtype=np.uint8)),
             "float64, Fortran order": (np.asfortranarray(rng.random((40, 3, 5, 6)) * 50),
                                        rng.random((9, 3, 5, 6))),
             "big-endian float32": (rng.random((40, 3, 5, 6)).astype(">f4"),
                                    rng.random((9, 3, 5, 6)).astype(np.float16))}
    for name, (x_train, x_val) in cases.items():
        np.savez(tmp_path / "d.npz", x_train=x_train, y_train=rng.integers(0, 4, 40),
                 x_val=x_val, y_val=rng.integers(0, 4, 9).astype(np.uint16))
        got = images.load_npz(tmp_path / "d.npz", (3, 5, 6))

        def copied(x):
            return (x.transpose(0, 3, 1, 2).astype(np.float32) / 255.0 if x.dtype == np.uint8
                    else x.astype(np.float32))

        want = images._standardise(copied(x_train), copied(x_val))
        for a, b in zip((got.x_train, got.x_val), want):
            assert a.dtype == np.float32 and a.strides == b.strides, name
            np.testing.assert_array_equal(a, b, err_msg=name)
        assert got.y_val.dtype == np.int64 and got.classes == 4


def test_the_estimate_bounds_what_loading_allocates(tmp_path):
    """``npz.peak_bytes`` is an upper bound of what loading allocates (numpy's arrays are
    traced), for each kind of image array."""
    rng = np.random.default_rng(0)
    for dtype in (np.uint8, np.float16, np.float32, np.float64):
        shape = (3000, 6, 7, 3) if dtype == np.uint8 else (3000, 3, 6, 7)
        x = (rng.random(shape) * 200).astype(dtype)
        np.savez(tmp_path / "d.npz", x_train=x, y_train=np.zeros(3000, np.int16),
                 x_val=x[:700], y_val=np.zeros(700, np.int16))
        need = npz.peak_bytes([(3000, 126, 0 if dtype == np.float32 else x.itemsize),
                               (700, 126, 0 if dtype == np.float32 else x.itemsize)], 2)
        tracemalloc.start()
        try:
            images.load_npz(tmp_path / "d.npz", (3, 6, 7))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak <= need + MIB, (dtype, peak, need)


DIGITS_SHA256 = "f6d9e39f37dc45d327f6db33428ee58970ccceabb2535a5c179de35886b70443"


def test_the_digits_are_scikit_learns_as_before():
    """Issue 23: the digits come from ``sklearn.datasets.load_digits()``, the same arrays
    as read from the file scikit-learn ships before (their sha256 here)."""
    pytest.importorskip("sklearn")
    x, y = images._bundled_digits()
    assert x.shape == (1797, 8, 8) and x.dtype == np.float64 and y.dtype == np.int64
    h = hashlib.sha256(np.ascontiguousarray(x).tobytes() + np.ascontiguousarray(y).tobytes())
    assert h.hexdigest() == DIGITS_SHA256


# --------------------------------------------------------------------- the .npz reader, fuzzed

NET = (3, 4, 4)
NAMES = st.one_of(st.sampled_from(["x_train", "y_train", "x_val", "y_val", "x_train.npy",
                                   "y_train.npy", "x_val.npy", "y_val.npy", "classes"]),
                  st.text(max_size=40))
DTYPES = ["|u1", "<f4", "<f8", "<f2", ">f4", "<i8", ">i2", "<u8", "|b1", "<c8", "<U3", "|V4",
          "|O", "<M8[s]"]
DIMS = st.lists(st.integers(0, 6), max_size=5).map(tuple)
HUGE = st.integers(-5, 2**64)


@st.composite
def _member(draw) -> bytes:
    """One member's bytes: an array numpy writes, a header written by hand (any version,
    length, dtype, shape), zeros under a valid header (a small bomb), or noise."""
    kind = draw(st.sampled_from(["array", "image", "header", "bomb", "noise"]))
    buf = io.BytesIO()
    if kind in ("array", "image"):
        if kind == "image":
            n = draw(st.integers(0, 5))
            dtype = draw(st.sampled_from(["|u1", "<f4", "<f8"]))
            shape = (n, 4, 4, 3) if dtype == "|u1" else (n, *NET)
        else:
            dtype, shape = draw(st.sampled_from(DTYPES)), draw(DIMS)
        arr = np.zeros(shape, dtype)
        if arr.dtype.kind in "uif" and arr.size:
            rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
            arr[...] = rng.integers(0, 256, arr.shape).astype(arr.dtype)
        np.lib.format.write_array(buf, arr, allow_pickle=True)
        return buf.getvalue()
    if kind == "bomb":
        n = draw(st.integers(1, 1 << 16))
        np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False,
                                                   "shape": (n, 4, 4, 3)})
        return buf.getvalue() + bytes(n * 48)
    if kind == "noise":
        return draw(st.binary(max_size=200))
    version = draw(st.sampled_from([(1, 0), (2, 0), (3, 0), (0, 0), (255, 1)]))
    descr = draw(st.sampled_from([*map(repr, DTYPES), "'<U1000000000000'", "[('a', '<f4')]",
                                  "('<f4', (1000000000,))", "'garbage'", "12"]))
    dims = draw(st.lists(HUGE, max_size=4))
    text = draw(st.sampled_from([
        "{{'descr': {d}, 'fortran_order': {f}, 'shape': ({s}), }}",
        "{{'descr': {d}, 'shape': ({s}), }}", "(((((((((({s}))))))))))", "{d}"]))
    header = text.format(d=descr, f=draw(st.booleans()), s="".join(f"{v}, " for v in dims))
    header = header.encode("utf-8") + b" \n"
    width = 2 if version == (1, 0) else 4
    length = draw(st.one_of(st.just(len(header)), st.integers(0, 2**(8 * width) - 1)))
    return (b"\x93NUMPY" + bytes(version) + length.to_bytes(width, "little") + header
            + draw(st.binary(max_size=64)))


@st.composite
def _archive(draw) -> bytes:
    """An .npz: the four arrays (valid ones, or any) or random members, any compression,
    perhaps damaged."""
    how = draw(st.sampled_from(["valid", "four", "any"]))
    if how == "valid":
        members = []
        for split in ("train", "val"):
            n = draw(st.integers(1, 6))
            rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
            x = (rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8) if draw(st.booleans())
                 else rng.normal(0, draw(st.sampled_from([1.0, 1e30, 1e300])), (n, *NET)))
            if split == "train" and draw(st.booleans()):  # zeros: a small bomb, or not
                n = draw(st.integers(1, 1 << 16))
                x = np.zeros((n, 4, 4, 3), np.uint8)
            y = rng.integers(0, draw(st.sampled_from([2, 10**6])), n)
            for name, arr in ((f"x_{split}.npy", x), (f"y_{split}.npy", y)):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, arr)
                members.append((name, buf.getvalue()))
    elif how == "four":
        members = [(k + ".npy", draw(_member())) for k in ("x_train", "y_train", "x_val", "y_val")]
    else:
        members = draw(st.lists(st.tuples(NAMES, _member()), max_size=5))
    methods = [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
    usual = draw(st.sampled_from(methods[:2]))  # most members as numpy writes them
    methods = [usual] * 8 + methods
    buf = io.BytesIO()
    with warnings.catch_warnings():  # a repeated name
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(buf, "w") as z:
            for name, data in members:
                method = draw(st.sampled_from(methods))
                try:
                    z.writestr(name, data, compress_type=method)
                except (IndexError, ValueError):  # a name zipfile cannot write ("", "/")
                    z.writestr("_", data, compress_type=method)
    data = buf.getvalue()
    damage = draw(st.sampled_from(["none", "none", "truncate", "flip"]))
    if damage == "truncate" and data:
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif damage == "flip" and data:
        data = bytearray(data)
        for at in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
            data[at] ^= draw(st.integers(1, 255))
        data = bytes(data)
    return data


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("npz_fuzz")


FUZZ_LIMIT = 4 * MIB  # what any small file may take, for the fuzz: a small bomb goes over it
SLACK = 4 * MIB  # zipfile's buffers, numpy's chunked reads and a check's temporary


@settings(max_examples=80, deadline=10_000, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=_archive())
def test_random_archives_are_messages_within_the_limit(fuzz_dir, data):
    path = fuzz_dir / "d.npz"
    path.write_bytes(data)
    with mock.patch.object(npz, "SMALL_FILE_BYTES", FUZZ_LIMIT):
        limit = npz.allowance(len(data), images.MAX_BYTES)
        for read in (lambda: images.load_npz(path, NET), lambda: cache.read(path),
                     lambda: npz.image_shapes(path)):
            start = time.monotonic()
            tracemalloc.start()
            try:
                read()
            except ShrinkError as e:
                assert e.diagnostic.message and "\x1b" not in e.diagnostic.render()
            finally:
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
            assert peak <= limit + SLACK, (peak, limit)
            assert time.monotonic() - start < 10
