"""Nothing lost, nothing foreign overwritten (issue 24, items 3 and 4).

``fmt`` replaces a file only if it is still what it read: an edit saved while it works is
kept, and the command says so (the concurrent edit is made deterministically, from inside
the formatter). ``shrink -o DIR`` writes only into a run folder of its own: a non-empty
folder that is not one is refused before anything in it is opened for writing, a ``lock``
file it did not create is never truncated, and no symbolic link inside a run folder is
followed, to write or to read. Searches run in this process with training stubbed out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from pathlib import Path

import pytest

from shrinkc.cli import main

from conftest import ROOT, TEST_SPECS

SPEC = ROOT / "specs" / "shrinkcnn_a.shrink"
TINY = TEST_SPECS / "tiny_space.shrink"
SECRET = "SHRINKC_TEST_SECRET=hunter2"


# --------------------------------------------------------------------------- 3: fmt


def _unformatted(tmp_path: Path) -> Path:
    spec = tmp_path / "spec.shrink"
    spec.write_text(SPEC.read_text().replace("\n\n", "\n\n\n", 1))
    return spec


def _edit_while_formatting(monkeypatch, spec: Path, edit) -> None:
    """Make ``edit(spec)`` happen after fmt read ``spec`` and before it writes: inside the
    printer (which fmt imports when it runs), the first time it runs."""
    from shrinkc.compiler.syntax import printer

    real, calls = printer.print_program, []

    def print_and_edit(*args, **kwargs):
        out = real(*args, **kwargs)
        if not calls:
            edit(spec)
        calls.append(1)
        return out

    monkeypatch.setattr(printer, "print_program", print_and_edit)


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
def test_fmt_never_loses_an_edit_saved_while_it_works(tmp_path, capsys, monkeypatch, edit):
    spec = _unformatted(tmp_path)
    _edit_while_formatting(monkeypatch, spec, edit)
    capsys.readouterr()
    rc = main(["fmt", str(spec)])
    saved = spec.read_text()
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "changed while shrinkc formatted it: nothing was written" in err
    assert "run the command again" in err and "Traceback" not in err
    assert saved != SPEC.read_text() and saved != _unformatted_text()  # the edit is there
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def _unformatted_text() -> str:
    return SPEC.read_text().replace("\n\n", "\n\n\n", 1)


def test_fmt_goes_on_with_the_other_files_and_formats_them(tmp_path, capsys, monkeypatch):
    edited = tmp_path / "a.shrink"  # formatted first: the edit lands while fmt works on it
    edited.write_text(_unformatted_text())
    other = tmp_path / "b.shrink"
    other.write_text(_unformatted_text())
    _edit_while_formatting(monkeypatch, edited, _append)
    capsys.readouterr()
    assert main(["fmt", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert other.read_text() == SPEC.read_text() and f"reformatted {other.as_posix()}" in out
    assert edited.read_text() == _unformatted_text() + "# an edit saved while fmt worked\n"
    assert f"{edited.as_posix()} changed while" in err


def test_fmt_without_an_edit_still_formats_through_a_link(tmp_path, capsys):
    real = _unformatted(tmp_path)
    link = tmp_path / "link.shrink"
    link.symlink_to(real)
    assert main(["fmt", str(link)]) == 0
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


@pytest.fixture
def no_training(monkeypatch):
    monkeypatch.setattr("shrinkc.search.driver.make_executor", lambda *a, **k: FakeExecutor())


def shrink(capsys, out: Path, *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["shrink", str(TINY), "-o", str(out), "--quiet", *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


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
def test_a_folder_that_is_not_a_run_folder_is_left_as_it_is(tmp_path, capsys, no_training,
                                                             files, resume):
    out = tmp_path / "foreign"
    out.mkdir()
    for name, data in files.items():
        (out / name).write_bytes(data)
    before = _tree(out)
    rc, err = shrink(capsys, out, "--max-steps", "1", *(["--resume"] if resume else []))
    assert rc == 1, err
    assert _tree(out) == before  # not one byte written, not one file added or replaced
    assert out.as_posix() in err and "choose a new -o" in err
    assert "not a run folder" in err or "not a run folder's lock" in err, err


def test_a_lock_file_we_did_not_create_is_never_truncated(tmp_path, capsys, no_training):
    out = tmp_path / "run"
    out.mkdir()
    (out / "lock").write_text("my notes, in a file named lock\n")
    rc, err = shrink(capsys, out, "--max-steps", "0")
    assert rc == 1 and "lock is not a run folder's lock" in err, err
    assert (out / "lock").read_text() == "my notes, in a file named lock\n"
    assert sorted(p.name for p in out.iterdir()) == ["lock"]


@pytest.fixture
def finished(tmp_path, capsys, no_training) -> Path:
    """A finished one-step run of the tiny search, training stubbed."""
    out = tmp_path / "run"
    rc, err = shrink(capsys, out, "--max-steps", "1")
    assert rc == 0, err
    return out


def test_run_json_marks_its_folder_as_a_run_folder(finished):
    assert json.loads((finished / "run.json").read_text())["format"] == "shrinkc run"


def test_a_run_folder_still_resumes(finished, capsys, no_training):
    (finished / "notes.txt").write_text("a note of the user's, left alone\n")
    rc, err = shrink(capsys, finished, "--max-steps", "2", "--resume")
    assert rc == 0, err
    assert (finished / "step-02.shrink").exists()
    assert (finished / "lock").read_text() == f"{os.getpid()}\n"
    assert (finished / "notes.txt").read_text() == "a note of the user's, left alone\n"


def test_a_run_json_written_before_the_mark_is_a_run_folder(finished, capsys, no_training):
    meta = json.loads((finished / "run.json").read_text())
    meta.pop("format", None)
    (finished / "run.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    (finished / "README").write_text("kept beside a run committed before the mark\n")
    rc, err = shrink(capsys, finished, "--max-steps", "2", "--resume")
    assert rc == 0, err


def test_a_run_stopped_before_its_run_json_starts_again(tmp_path, capsys, no_training):
    out = tmp_path / "run"
    out.mkdir()
    (out / "lock").write_text("4242\n")  # killed between taking the lock and writing run.json
    (out / ".run.json.abc123.tmp").write_text("{")  # and mid-write
    rc, err = shrink(capsys, out, "--max-steps", "1")
    assert rc == 0, err
    assert (out / "best.shrink").exists()


OUTSIDE = ["run.json", "log.jsonl", "best.shrink", "step-01.shrink", "scores.png", "lock"]


@pytest.mark.parametrize("name", OUTSIDE)
def test_a_link_in_a_run_folder_is_never_followed(finished, tmp_path, capsys, no_training, name):
    outside = tmp_path / "outside.txt"
    outside.write_text(SECRET + "\n")
    (finished / name).unlink()
    (finished / name).symlink_to(outside)
    before = outside.stat()
    rc, err = shrink(capsys, finished, "--max-steps", "2", "--resume")
    assert rc == 1, err
    assert f"{(finished / name).as_posix()} is a symbolic link" in err
    assert SECRET not in err and "hunter2" not in err  # nothing read through the link
    assert outside.read_text() == SECRET + "\n" and outside.stat().st_ino == before.st_ino
    assert (finished / name).is_symlink()


def test_a_candidates_link_is_never_followed(finished, tmp_path, capsys, no_training):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "step-02-0-1.pt").write_text("someone's file, named like ours\n")
    (finished / "candidates").symlink_to(elsewhere, target_is_directory=True)
    rc, err = shrink(capsys, finished, "--max-steps", "2", "--resume")
    assert rc == 1 and "candidates is a symbolic link" in err, err
    assert [p.name for p in elsewhere.iterdir()] == ["step-02-0-1.pt"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_fifo_under_one_of_our_names_is_refused_not_waited_on(finished, capsys, no_training):
    (finished / "log.jsonl").unlink()
    os.mkfifo(finished / "log.jsonl")

    def hung(*_):
        raise TimeoutError("--resume waited on the FIFO")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        rc, err = shrink(capsys, finished, "--max-steps", "2", "--resume")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert rc == 1 and re.search(r"log\.jsonl is not a regular file", err), err


def test_a_hard_linked_lock_is_left_as_it_is(finished, tmp_path, capsys, no_training):
    other = tmp_path / "other"
    (finished / "lock").write_text("17\n")
    os.link(finished / "lock", other)
    rc, err = shrink(capsys, finished, "--max-steps", "2", "--resume")
    assert rc == 1 and "not a run folder's lock" in err, err
    assert other.read_text() == "17\n"


def test_a_name_with_control_characters_is_escaped(tmp_path, capsys, no_training):
    out = tmp_path / "foreign"
    out.mkdir()
    (out / "\x1b]0;pwned\x07").write_text("x")
    rc, err = shrink(capsys, out, "--max-steps", "1")
    assert rc == 1 and "\x1b" not in err and "\x07" not in err and "not a run folder" in err
    shutil.rmtree(out)
