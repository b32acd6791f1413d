"""Nothing lost, nothing foreign overwritten (issue 24, items 3 and 4).

``fmt`` replaces a file only if it is still what it read: an edit saved while it works is
kept, and the command says so (the concurrent edit is made deterministically, from inside
the formatter). ``shrink -o DIR`` writes only into a run folder of its own: a non-empty
folder that is not one is refused before anything in it is opened for writing, a ``lock``
file it did not create is never truncated, and no symbolic link inside a run folder is
followed, to write or to read.

Every case runs the command line in a subprocess with a time limit and an address-space limit,
as ``tests/test_hostile.py`` does (``tests/hostile_helpers.py``). Where a case must reach
inside the command, the subprocess calls a hook of this module first, then runs the program
``python -m shrinkc`` runs: ``_stub_training`` (searches with training stubbed out) or
``_edit_while_formatting`` (the concurrent edit of the fmt cases).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, TEST_SPECS
from hostile_helpers import shrinkc, shrinkc_hooked

SPEC = ROOT / "specs" / "shrinkcnn_a.shrink"
TINY = TEST_SPECS / "tiny_space.shrink"
SECRET = "SHRINKC_TEST_SECRET=hunter2"
HOOKS = Path(__file__).stem  # this module, as the subprocesses import it (tests/ on their path)


# --------------------------------------------------------------------------- 3: fmt


def _unformatted(tmp_path: Path) -> Path:
    spec = tmp_path / "spec.shrink"
    spec.write_text(SPEC.read_text().replace("\n\n", "\n\n\n", 1))
    return spec


def _edit_while_formatting(spec: str, edit: str) -> None:
    """A hook, called in the command's subprocess before the command runs: make
    ``edit(spec)`` (``edit`` a function of this module, by name) happen after fmt read
    ``spec`` and before it writes: inside the printer (which fmt imports when it runs), the
    first time it runs."""
    from shrinkc.compiler.syntax import printer

    real, calls, edit_spec = printer.print_program, [], globals()[edit]

    def print_and_edit(*args, **kwargs):
        out = real(*args, **kwargs)
        if not calls:
            edit_spec(Path(spec))
        calls.append(1)
        return out

    printer.print_program = print_and_edit


def fmt_with_an_edit(spec: Path, edit, *args: str) -> subprocess.CompletedProcess:
    """``shrinkc fmt args``, with ``edit(spec)`` saved while fmt works."""
    return shrinkc_hooked(f"{HOOKS}:_edit_while_formatting", [str(spec), edit.__name__],
                          "fmt", *args)


def _append(spec: Path) -> None:
    with open(spec, "a") as f:
        f.write("# an edit saved while fmt worked\n")


def _same_size_and_time(spec: Path) -> None:
    """An edit that keeps size and modification time: only the hash tells."""
    st = spec.stat()
    text = spec.read_text()
    spec.write_text(text.replace("shrink", "SHRINK", 1))
    os.utime(spec, ns=(st.st_atime_ns, st.st_mtime_ns))


def _replaced_by_rename(spec: Path) -> None:
    """How many editors save: a new file renamed over the old one."""
    tmp = spec.with_suffix(".new")
    tmp.write_text(spec.read_text() + "# saved by an editor\n")
    os.replace(tmp, spec)


@pytest.mark.parametrize("edit", [_append, _same_size_and_time, _replaced_by_rename])
def test_fmt_never_loses_an_edit_saved_while_it_works(tmp_path, edit):
    spec = _unformatted(tmp_path)
    r = fmt_with_an_edit(spec, edit, str(spec))
    saved = spec.read_text()
    err = r.stderr
    assert r.returncode == 1, err
    assert "changed while shrinkc formatted it: nothing was written" in err
    assert "run the command again" in err and "Traceback" not in err
    assert saved != SPEC.read_text() and saved != _unformatted_text()  # the edit is there
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def _unformatted_text() -> str:
    return SPEC.read_text().replace("\n\n", "\n\n\n", 1)


def test_fmt_goes_on_with_the_other_files_and_formats_them(tmp_path):
    edited = tmp_path / "a.shrink"  # formatted first: the edit lands while fmt works on it
    edited.write_text(_unformatted_text())
    other = tmp_path / "b.shrink"
    other.write_text(_unformatted_text())
    r = fmt_with_an_edit(edited, _append, str(tmp_path))
    out, err = r.stdout, r.stderr
    assert r.returncode == 1, err
    assert other.read_text() == SPEC.read_text() and f"reformatted {other.as_posix()}" in out
    assert edited.read_text() == _unformatted_text() + "# an edit saved while fmt worked\n"
    assert f"{edited.as_posix()} changed while" in err


def test_fmt_without_an_edit_still_formats_through_a_link(tmp_path):
    real = _unformatted(tmp_path)
    link = tmp_path / "link.shrink"
    link.symlink_to(real)
    r = shrinkc("fmt", str(link))
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and real.read_text() == SPEC.read_text()


# --------------------------------------------------------------------------- 4: shrink -o


class FakeExecutor:
    """Stands in for training: fixed metrics, no torch."""

    def map(self, jobs):
        for job in jobs:
            yield {"acc": 0.5, "macs": 1000 * job.edges, "params": 10, "epochs": 1,
                   "seconds": 0.0}

    def close(self):
        pass


def _stub_training() -> None:
    """A hook, called in the command's subprocess before the command runs: training is
    ``FakeExecutor``."""
    from shrinkc.search import driver

    driver.make_executor = lambda *a, **k: FakeExecutor()


def shrink(out: Path, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``shrinkc shrink TINY -o out --quiet extra...``, training stubbed out."""
    r = shrinkc_hooked(f"{HOOKS}:_stub_training", [], "shrink", str(TINY), "-o", str(out),
                       "--quiet", *extra, timeout=timeout)
    assert "Traceback" not in r.stderr
    return r


def _tree(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder``: what it is, and its content (a link: its target)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            out[p.relative_to(folder).as_posix()] = ("link", os.readlink(p))
        elif p.is_file():
            st = p.stat()
            out[p.relative_to(folder).as_posix()] = ("file", p.read_bytes(), st.st_ino)
        else:
            out[p.relative_to(folder).as_posix()] = ("other",)
    return out


FOREIGN = {
    "a lock of someone else's": {"lock": b"precious: not a pid\n"},
    "a lock and notes": {"lock": b"1234\n", "notes.txt": b"mine\n"},
    "notes only": {"notes.txt": b"mine\n"},
    "snapshots without run.json": {"best.shrink": b"mine\n", "step-01.shrink": b"mine too\n"},
    "another tool's run.json": {"run.json": b'{"model": "resnet"}\n', "log.jsonl": b"{}\n",
                                "results.csv": b"1,2\n"},
}


@pytest.mark.parametrize("files", FOREIGN.values(), ids=FOREIGN.keys())
@pytest.mark.parametrize("resume", [False, True])
def test_a_folder_that_is_not_a_run_folder_is_left_as_it_is(tmp_path, files, resume):
    out = tmp_path / "foreign"
    out.mkdir()
    for name, data in files.items():
        (out / name).write_bytes(data)
    before = _tree(out)
    r = shrink(out, "--max-steps", "1", *(["--resume"] if resume else []))
    assert r.returncode == 1, r.stderr
    assert _tree(out) == before  # not one byte written, not one file added or replaced
    assert out.as_posix() in r.stderr and "choose a new -o" in r.stderr
    assert "not a run folder" in r.stderr or "not a run folder's lock" in r.stderr, r.stderr


def test_a_lock_file_we_did_not_create_is_never_truncated(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "lock").write_text("my notes, in a file named lock\n")
    r = shrink(out, "--max-steps", "0")
    assert r.returncode == 1 and "lock is not a run folder's lock" in r.stderr, r.stderr
    assert (out / "lock").read_text() == "my notes, in a file named lock\n"
    assert sorted(p.name for p in out.iterdir()) == ["lock"]


@pytest.fixture
def finished(tmp_path) -> Path:
    """A finished one-step run of the tiny search, training stubbed."""
    out = tmp_path / "run"
    r = shrink(out, "--max-steps", "1")
    assert r.returncode == 0, r.stderr
    return out


def test_run_json_marks_its_folder_as_a_run_folder(finished):
    assert json.loads((finished / "run.json").read_text())["format"] == "shrinkc run"


def test_a_run_folder_still_resumes(finished):
    (finished / "notes.txt").write_text("a note of the user's, left alone\n")
    r = shrink(finished, "--max-steps", "2", "--resume")
    assert r.returncode == 0, r.stderr
    assert (finished / "step-02.shrink").exists()
    assert (finished / "lock").read_text() == f"{r.pid}\n"  # the resuming process's
    assert (finished / "notes.txt").read_text() == "a note of the user's, left alone\n"


def test_a_run_json_written_before_the_mark_is_a_run_folder(finished):
    meta = json.loads((finished / "run.json").read_text())
    meta.pop("format", None)
    (finished / "run.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    (finished / "README").write_text("kept beside a run committed before the mark\n")
    r = shrink(finished, "--max-steps", "2", "--resume")
    assert r.returncode == 0, r.stderr


def test_a_run_stopped_before_its_run_json_starts_again(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "lock").write_text("4242\n")  # killed between taking the lock and writing run.json
    (out / ".run.json.abc123.tmp").write_text("{")  # and mid-write
    r = shrink(out, "--max-steps", "1")
    assert r.returncode == 0, r.stderr
    assert (out / "best.shrink").exists()


OUTSIDE = ["run.json", "log.jsonl", "best.shrink", "step-01.shrink", "scores.png", "lock"]


@pytest.mark.parametrize("name", OUTSIDE)
def test_a_link_in_a_run_folder_is_never_followed(finished, tmp_path, name):
    outside = tmp_path / "outside.txt"
    outside.write_text(SECRET + "\n")
    (finished / name).unlink()
    (finished / name).symlink_to(outside)
    before = outside.stat()
    r = shrink(finished, "--max-steps", "2", "--resume")
    assert r.returncode == 1, r.stderr
    assert f"{(finished / name).as_posix()} is a symbolic link" in r.stderr
    assert SECRET not in r.stderr and "hunter2" not in r.stderr  # nothing read through the link
    assert outside.read_text() == SECRET + "\n" and outside.stat().st_ino == before.st_ino
    assert (finished / name).is_symlink()


def test_a_candidates_link_is_never_followed(finished, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "step-02-0-1.pt").write_text("someone's file, named like ours\n")
    (finished / "candidates").symlink_to(elsewhere, target_is_directory=True)
    r = shrink(finished, "--max-steps", "2", "--resume")
    assert r.returncode == 1 and "candidates is a symbolic link" in r.stderr, r.stderr
    assert [p.name for p in elsewhere.iterdir()] == ["step-02-0-1.pt"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_fifo_under_one_of_our_names_is_refused_not_waited_on(finished):
    (finished / "log.jsonl").unlink()
    os.mkfifo(finished / "log.jsonl")
    try:
        r = shrink(finished, "--max-steps", "2", "--resume", timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("--resume waited on the FIFO")
    assert r.returncode == 1 and re.search(r"log\.jsonl is not a regular file", r.stderr), r.stderr


def test_a_hard_linked_lock_is_left_as_it_is(finished, tmp_path):
    other = tmp_path / "other"
    (finished / "lock").write_text("17\n")
    os.link(finished / "lock", other)
    r = shrink(finished, "--max-steps", "2", "--resume")
    assert r.returncode == 1 and "not a run folder's lock" in r.stderr, r.stderr
    assert other.read_text() == "17\n"


def test_a_name_with_control_characters_is_escaped(tmp_path):
    out = tmp_path / "foreign"
    out.mkdir()
    (out / "\x1b]0;pwned\x07").write_text("x")
    r = shrink(out, "--max-steps", "1")
    assert r.returncode == 1 and "\x1b" not in r.stderr and "\x07" not in r.stderr
    assert "not a run folder" in r.stderr, r.stderr
    shutil.rmtree(out)
