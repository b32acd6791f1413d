"""Hostile and broken input around the specs: planted parser caches, specs that are links to
secrets or special files, outputs that are links or devices, a full disk, numbers a float
cannot hold, and what fmt must keep. Each case fails instead of hanging or exhausting memory
(subprocesses run with a time limit and an address-space limit)."""

from __future__ import annotations

import os
import pickle
import resource
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from shrinkc.cli import main

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "shrinkcnn_a.shrink"
SECRET = "SHRINKC_TEST_SECRET=hunter2"


def _limited():  # for subprocesses: 2 GiB of address space, so a runaway read fails fast
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def shrinkc(*args: str, env: dict | None = None, cwd: Path | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shrinkc", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})},
                          cwd=cwd or ROOT, preexec_fn=_limited, stdin=subprocess.DEVNULL)


# --------------------------------------------------------------------------- the parser cache


class _Plant:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _evil_cache(marker: Path) -> bytes:
    # lark reads a line, then unpickles: whatever the line says, the pickle runs
    return b"x\n" + pickle.dumps(_Plant(marker))


def _cache_file(home: Path) -> Path:
    files = list((home / "shrinkc").glob("lalr-*.pickle"))
    assert len(files) == 1, files
    return files[0]


def test_parser_tables_live_in_a_private_folder(tmp_path):
    shared, cache = tmp_path / "tmp", tmp_path / "cache"
    shared.mkdir()
    env = {"TMPDIR": str(shared), "XDG_CACHE_HOME": str(cache)}
    for _ in range(2):  # the second run reads the cache
        r = shrinkc("check", str(SPEC), env=env)
        assert r.returncode == 0, r.stderr
    assert list(shared.iterdir()) == []  # nothing in the shared temp folder
    folder = cache / "shrinkc"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert _cache_file(cache).stat().st_mode & 0o022 == 0


@pytest.mark.parametrize("how", ["folder others can write", "file others can write",
                                 "file of another user"])
def test_a_planted_parser_cache_is_never_loaded(tmp_path, how):
    cache = tmp_path / "cache"
    env = {"XDG_CACHE_HOME": str(cache)}
    assert shrinkc("check", str(SPEC), env=env).returncode == 0
    target = _cache_file(cache)
    marker = tmp_path / "pwned"
    # control: the planted file does run code when lark trusts it (this test can fail)
    target.write_bytes(_evil_cache(marker))
    shrinkc("check", str(SPEC), env=env)
    assert marker.exists(), "the planted cache should have run in a trusted place"
    marker.unlink()

    target.write_bytes(_evil_cache(marker))
    if how == "folder others can write":
        target.parent.chmod(0o777)
    elif how == "file others can write":
        target.chmod(0o666)
    else:
        if os.getuid() != 0:
            pytest.skip("chown needs root")
        os.chown(target, 65534, 65534)
    r = shrinkc("check", str(SPEC), env=env)
    assert r.returncode == 0, r.stderr
    assert not marker.exists()


# --------------------------------------------------------------------------- what is read


@pytest.mark.parametrize("content", [
    "root:x:0:0:root:/root:/bin/bash\n" + SECRET + "\n",
    SECRET + "\0PATH=/usr/bin\0",
    "# looks like a comment\n" + SECRET + "\n",
])
def test_a_link_to_a_secret_is_refused_without_quoting_it(tmp_path, capsys, content):
    secret = tmp_path / "environ"
    secret.write_text(content)
    (tmp_path / "common.shrink").symlink_to(secret)
    spec = tmp_path / "net.shrink"
    spec.write_text('shrink 1\ninclude "common.shrink"\n')
    for target in (spec, tmp_path / "common.shrink"):
        assert main(["check", str(target)]) == 1
        out, err = capsys.readouterr()
        assert "hunter2" not in out + err and "root:x" not in out + err
        assert "common.shrink" in err and "error:" in err


def test_latin1_is_refused_without_quoting(tmp_path, capsys):
    spec = tmp_path / "bad.shrink"
    spec.write_bytes(b"shrink 1\n# caf\xe9 " + SECRET.encode() + b"\n")
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "invalid UTF-8" in err and "hunter2" not in err


def test_quoted_lines_are_cut_and_escaped(tmp_path, capsys):
    spec = tmp_path / "bad.shrink"
    spec.write_text("shrink 1\ncell A(w: int) {\n    input x\n    a = conv(w) <- y"
                    + " " * 5000 + "# \x1b]0;owned\x07\x1b[31m red\n    output a\n}\n")
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err
    assert max(len(line) for line in err.splitlines()) < 200
    line, caret = err.splitlines()[1:3]
    assert line[caret.index("^")] == "y"  # the caret still points at the unknown name


def test_escapes_in_a_quoted_line_keep_the_caret(tmp_path, capsys):
    spec = tmp_path / "bad.shrink"
    spec.write_text("shrink 1\ncell A(w: int) {\n    input x  # \x1b[2J\n"
                    "    a = conv(w) <- x  # \x1b[31m\x1b[31m\n    b = cnv(w) <- a\n    output b\n}\n")
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err
    line, caret = err.splitlines()[1:3]
    assert line[caret.index("^"):].startswith("cnv")


def _refused_directly_and_as_include(tmp_path: Path, special: Path, what: str) -> None:
    """``special`` is refused both as the spec and as an include, in a subprocess with a time
    and memory limit (so a regression fails instead of hanging CI)."""
    spec = tmp_path / "net.shrink"
    spec.write_text(f'shrink 1\ninclude "{special.name}"\n')
    for target in (special, spec):
        r = shrinkc("check", str(target), timeout=30)
        assert r.returncode == 1, r.stderr
        assert f"{what}, not a regular file" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_is_refused_not_read(tmp_path, device):
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    link = tmp_path / "dev.shrink"
    link.symlink_to(device)
    _refused_directly_and_as_include(tmp_path, link, "a character device")


def test_a_fifo_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "pipe.shrink"
    os.mkfifo(fifo)
    _refused_directly_and_as_include(tmp_path, fifo, "a FIFO")
    r = shrinkc("fmt", str(fifo), timeout=30)
    assert r.returncode == 1 and "FIFO" in r.stderr
    r = shrinkc("fmt", str(tmp_path), timeout=30)  # a folder holding one: passed over
    assert r.returncode == 0 and stat.S_ISFIFO(fifo.lstat().st_mode), r.stderr


def test_a_huge_file_is_refused_with_a_short_message(tmp_path):
    spec = tmp_path / "huge.shrink"
    with spec.open("w") as f:
        f.write("shrink 1\n# " + "x" * (8 << 20) + "\n")
    r = shrinkc("check", str(spec), timeout=30)
    assert r.returncode == 1 and "larger than 4 MiB" in r.stderr
    assert len(r.stderr) < 1000


# --------------------------------------------------------------------------- what is written


def test_writing_through_a_symlink_keeps_the_link(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (real / "shrinkcnn_a.py").write_text("old\n")
    (out / "shrinkcnn_a.py").symlink_to(real / "shrinkcnn_a.py")
    assert main(["compile", str(SPEC), "-o", str(out)]) == 0
    assert (out / "shrinkcnn_a.py").is_symlink()
    assert (real / "shrinkcnn_a.py").read_text().startswith("# ShrinkCNN_A: generated by shrinkc")

    spec = tmp_path / "spec.shrink"
    spec.symlink_to(tmp_path / "real" / "kept.shrink")
    (tmp_path / "real" / "kept.shrink").write_text(SPEC.read_text().replace("\n\n", "\n\n\n", 1))
    assert main(["fmt", str(spec)]) == 0
    assert spec.is_symlink() and spec.read_text() == SPEC.read_text()


def test_a_device_at_the_output_path_is_never_replaced(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "shrinkcnn_a.py").symlink_to("/dev/null")
    assert main(["compile", str(SPEC), "-o", str(out)]) == 1
    assert "not a regular file" in capsys.readouterr().err
    assert os.path.exists("/dev/null") and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert main(["schema", "-o", str(out / "shrinkcnn_a.py")]) == 1
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_an_output_named_like_torch_is_refused(tmp_path, capsys):
    spec = tmp_path / "torch.shrink"
    spec.write_text(SPEC.read_text())
    assert main(["compile", str(spec), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "shadows the 'torch' package" in err
    assert not (tmp_path / "out" / "torch.py").exists()
    assert main(["compile", str(spec), "--target", "ir", "-o", str(tmp_path / "out")]) == 0


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("args, code", [
    (["stats", "specs/shrinkcnn_a.shrink"], 1),
    (["schema"], 1),
    (["compile", "specs/shrinkcnn_a.shrink", "-o", "{tmp}"], 1),
    (["diff", "specs/shrinkcnn_a.shrink", "specs/shrinkcnn_b.shrink"], 2),  # not "different"
])
def test_a_full_disk_on_stdout_is_an_error_not_a_traceback(tmp_path, args, code):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "shrinkc", *args], stdout=full,
                           stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr
    assert "cannot write the output" in r.stderr


# --------------------------------------------------------------------------- fmt keeps it all


def test_fmt_keeps_the_comment_on_the_version_line(tmp_path):
    spec = tmp_path / "a.shrink"
    text = SPEC.read_text().replace("shrink 1\n", "shrink 1  # the language version\n", 1)
    spec.write_text(text)
    assert main(["fmt", "--check", str(spec)]) == 0
    assert main(["fmt", str(spec)]) == 0
    assert spec.read_text() == text


@pytest.mark.parametrize("literal", ["1e309", "-1e400", "1e-400", "2.5e-999"])
def test_numbers_a_float_cannot_hold_are_errors_that_fmt_never_rewrites(tmp_path, capsys,
                                                                       literal):
    spec = tmp_path / "a.shrink"
    text = ("shrink 1\ncell A(w: int, p: float = 0.5) {\n    input x\n"
            f"    a = conv(w) <- x\n    b = dropout(p={literal}) <- a\n    output b\n}}\n")
    spec.write_text(text)
    assert main(["check", str(spec)]) == 1
    assert main(["fmt", str(spec)]) == 1
    err = capsys.readouterr().err
    assert f"number {literal.lstrip('-')} is out of range" in err
    assert spec.read_text() == text


# --------------------------------------------------------------------------- no blow-ups


def test_deep_includes_are_a_located_error(tmp_path, capsys):
    for i in range(1500):
        nxt = f'include "f{i + 1}.shrink"\n' if i < 1499 else ""
        (tmp_path / f"f{i}.shrink").write_text(f"shrink 1\n{nxt}")
    assert main(["check", str(tmp_path / "f0.shrink")]) == 1
    err = capsys.readouterr().err
    assert "f63.shrink:2:9: error: includes are nested more than 64 deep" in err


def test_deep_brackets_and_long_chains_are_located_errors(tmp_path, capsys):
    deep = tmp_path / "deep.shrink"
    deep.write_text("shrink 1\ncell A(w: int = " + "(" * 5000 + "1" + ")" * 5000
                    + ") {\n    input x\n    a = conv(w) <- x\n    output a\n}\n")
    assert main(["check", str(deep)]) == 1
    assert "deep.shrink:2:116: error: brackets are nested more than 100 deep" in \
        capsys.readouterr().err
    long = tmp_path / "long.shrink"
    long.write_text("shrink 1\ncell A(w: int = " + "+".join(["1"] * 20000)
                    + ") {\n    input x\n    a = conv(w) <- x\n    output a\n}\n")
    assert main(["check", str(long)]) == 1
    err = capsys.readouterr().err
    assert "long.shrink:2:1: error: a statement is nested too deeply" in err
    assert len(err) < 1000


@pytest.mark.parametrize("terms, ok", [(101, True), (102, False), (400, False)])
def test_operator_chains_check_as_deep_as_every_target_compiles(tmp_path, capsys, terms, ok):
    """An expression nests at most 100 operators (``1 + 1 + ...`` is a chain as deep as it is
    long): deeper is a check error at the expression, so that what check accepts compiles to
    every target (a 400-term sum once passed check and failed compile --target ir with a
    serializer traceback)."""
    spec = tmp_path / "chain.shrink"
    spec.write_text("shrink 1\nnetwork N(w = " + " + ".join(["1"] * terms) + ") {\n"
                    "    input image[3, 8, 8]\n    stem conv(w, k=3) relu\n"
                    "    head global_avgpool -> linear(10)\n}\n")
    if ok:
        assert main(["compile", str(spec), "--target", "ir", "-o", str(tmp_path / "out")]) == 0
        assert (tmp_path / "out" / "chain.ir.json").stat().st_size > 0
    else:
        assert main(["check", str(spec)]) == 1
        err = capsys.readouterr().err
        assert "chain.shrink:2:15: error: the expression nests operators more than 100 deep" \
            in err and "Traceback" not in err


def test_cell_hash_of_a_wide_cell_is_fast():
    """A cell of 10,000 nodes side by side, each from the input to the output, hashes in
    seconds; a relabelling of it (every index moved, the input and output included, with the
    labels and edges carried along) hashes the same."""
    import random
    import time

    from shrinkc.compiler.analysis.cellhash import dag_hash

    n = 10_000
    # three ops, so that a relabelling that lost the labels' places would show
    labels = ["input", *(("conv", "sepconv", "maxpool")[i % 3] for i in range(1, n)), "output"]
    edges = {(0, i) for i in range(1, n)} | {(i, n) for i in range(1, n)}
    start = time.perf_counter()
    h = dag_hash(labels, edges)
    assert time.perf_counter() - start < 10  # 0.5 s here; it took minutes before
    perm = list(range(n + 1))  # node i becomes node perm[i]
    random.Random(0).shuffle(perm)
    moved_labels = [""] * (n + 1)
    for old, new in enumerate(perm):
        moved_labels[new] = labels[old]
    moved_edges = {(perm[s], perm[d]) for s, d in edges}
    # a real relabelling: other places for the labels, another edge set, the same graph
    assert moved_labels != labels and moved_edges != edges
    assert perm[0] != 0 and perm[n] != n
    assert sorted(moved_labels) == sorted(labels) and len(moved_edges) == len(edges)
    assert dag_hash(moved_labels, moved_edges) == h


NET = """shrink 1
cell A(w: int) {{
    input x
    a = conv(w) <- x
    output a
}}
network N {{
    input image[{c}, {h}, 32]
    stage A({w}) x 1
    head global_avgpool -> linear(10)
}}
"""


@pytest.mark.parametrize("c, h, w, message", [
    (3, 32, "1000000000", "4:9: error: 1,000,000,000 channels is too many: at most 1,048,576"),
    (3, 32, "*".join(["100000000000"] * 50), "4:9: error: 1.000E+550 channels is too many"),
    # 99 operators: an expression nests at most 100 (a longer product is refused as such)
    (3, 32, "*".join(["1" + "0" * 46] * 100), "4:9: error: 1.000E+4600 channels is too many"),
    (3, 10**9, "16", "8:11: error: a height or width of 1,000,000,000 is too large"),
    (10**7, 32, "16", "8:11: error: 10,000,000 channels is too many"),
])
def test_sizes_beyond_any_network_are_located_errors_before_allocating(tmp_path, c, h, w,
                                                                        message):
    spec = tmp_path / "big.shrink"
    spec.write_text(NET.format(c=c, h=h, w=w))
    for cmd in (["stats"], ["compile", "--target", "onnx,pytorch,ir", "-o", str(tmp_path)]):
        r = shrinkc(*cmd, str(spec), timeout=60)
        assert r.returncode == 1, r.stderr
        assert f"big.shrink:{message}" in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr) < 1000


def test_an_onnx_file_too_big_to_write_is_refused_before_drawing_weights(tmp_path):
    spec = tmp_path / "wide.shrink"
    spec.write_text(NET.format(c=3, h=32, w="1000000").replace(
        "a = conv(w) <- x", "a = conv(w) <- x\n    b = conv(w) <- a").replace("output a", "output b"))
    r = shrinkc("compile", str(spec), "--target", "onnx", "-o", str(tmp_path), timeout=60)
    assert r.returncode == 1, r.stderr
    assert "parameters: more than an ONNX file holds" in r.stderr
    assert "wide.shrink:8:9: error: N has 1,000,017,000,010 parameters" in r.stderr


def test_diff_of_wide_cells_is_fast_and_names_the_changed_node(tmp_path):
    n = 3000
    lines = ["shrink 1", "cell Big(w: int) {", "    input x",
             *(f"    n{i} = conv(w) <- x" for i in range(n)),
             "    output concat(leaves)", "}", "network N {", "    input image[3, 8, 8]",
             "    stage Big(1) x 1", "    head global_avgpool -> linear(10)", "}"]
    a, b = tmp_path / "a.shrink", tmp_path / "b.shrink"
    a.write_text("\n".join(lines) + "\n")
    lines[5] = "    n2 = conv(w, k=3) <- x"
    b.write_text("\n".join(lines) + "\n")
    r = shrinkc("diff", str(a), str(b), timeout=120)  # minutes per thousand nodes before
    assert r.returncode == 1, r.stderr
    assert "~ n2: conv(w) -> conv(w, k=3)" in r.stdout
