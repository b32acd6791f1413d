"""The run directory of a search: what was searched, the log, snapshots and the scores plot.

  run.json       what the run depends on (``runjson.py``: the spec and every file it includes,
                 by sha256; the data and its sha256; the settings; shrinkc's version):
                 ``--resume`` refuses a mismatch and names what changed
  log.jsonl      one line per evaluated candidate; ``chosen: true`` on each step's removed edge
  latency.json   with a latency score: the table of measured pieces the run scores with
  step-NN.shrink the spec after step NN, canonically formatted (compiles as it is)
  best.shrink    the best-scoring snapshot (ties: fewer edges)
  scores.png     best and mean candidate score against live edges (with matplotlib)
  parent-NN.pt   with ``--inherit``: the weights the candidates of step NN + 1 start from
  candidates/    with ``--inherit``: the trained weights of the current step's candidates
  lock           held (``flock``) by the process running the search, which writes its pid in
                 it: a second process on the same folder is refused; the kernel releases the
                 lock when its holder dies, even by kill -9

A run folder's files are ours only when the folder is ours: ``-o DIR`` must not exist, be
empty, hold our run.json (marked ``"format": "shrinkc run"``, or with the keys of every
run.json), or hold nothing but names a run writes (a run stopped before its run.json, or with
a damaged one, which ``start`` reports). Any other folder is refused before anything in it is
opened for writing. No link in a run folder is followed, and the lock file is truncated only
once held, and only if it holds a pid or nothing.

Every file is written atomically, so a run killed at any moment leaves whole files behind.
What is read back on ``--resume`` (run.json, log.jsonl, parent-NN.pt) is checked: a damaged
file is an error located in it (the line, for the log) that says how to recover, never a
traceback.

A run.json written before the sources, data hash and version were recorded lacks those keys;
a missing key counts as a mismatch: such a run is refused on ``--resume`` with a message
naming the key (start a new run).
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import zipfile
from pathlib import Path

from pydantic import ValidationError

from shrinkc.compiler.errors import ShrinkError
from shrinkc.compiler.fsutil import atomic_write, check_own, ensure_dir, read_own
from shrinkc.compiler.ir import Loc

from .logentry import Entry
from .rules import Edge
from .runjson import BEFORE, COMPARED, FORMAT, NEW_KEYS, Meta, what_changed

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: no lock
    fcntl = None  # type: ignore[assignment]


# the keys of every run.json, also those written before the mark
_EVERY_RUN = frozenset({"spec", "spec_sha256", "search", "settings"})
# the names a run writes in its folder (``.NAME.XXXX.tmp``: an atomic write cut short by a kill)
_FILES = re.compile(r"(run\.json|log\.jsonl|lock|best\.shrink|scores\.png|step-\d+\.shrink"
                    r"|parent-\d+\.pt|latency\.json)")
_TEMPORARY = re.compile(r"\.(run\.json|log\.jsonl|best\.shrink|scores\.png|step-\d+\.shrink"
                        r"|parent-\d+\.pt|latency\.json)\..+\.tmp")
_TEMPORARY_CANDIDATE = re.compile(r"\.step-\d+-.+\.tmp")
_PID = re.compile(rb"\d*\n?")  # what our lock file holds: a pid, or nothing yet
_NEW_FOLDER = "choose a new -o (a folder that does not exist or is empty)"
_REMOVE = f"remove it, or {_NEW_FOLDER}"


def _shown(name: str) -> str:
    """A file name inside a message: undecodable bytes and line breaks as escapes."""
    return ascii(name)[1:-1] if not name.isprintable() else name


def _is_ours(raw: bytes) -> bool:
    """Whether run.json's bytes are a run.json shrinkc wrote (marked, or of the keys every
    run.json has)."""
    if len(raw) > 1 << 24:
        return False
    try:
        old = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return False
    return isinstance(old, dict) and (old.get("format") == FORMAT or old.keys() >= _EVERY_RUN)


def _first_problem(e: ValidationError) -> str:
    """A validation error's first problem, as a sentence."""
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


def _line_col(raw: bytes, offset: int) -> tuple[int, int]:
    """The 1-based line and column of byte ``offset`` of ``raw``."""
    line = raw.count(b"\n", 0, offset) + 1
    return line, offset - (raw.rfind(b"\n", 0, offset) + 1) + 1


def _at(path: Path, line: int = 1, col: int = 1, quote: bool = True):
    """The location of a problem in a run file, and whether to quote its line."""
    return Loc(file=path.as_posix(), line=line, col=col, end_line=line, end_col=col + 1), quote


class RunDir:
    """The files of one run, under ``out`` (created if missing)."""

    def __init__(self, out: str):
        self.out = ensure_dir(Path(out))
        self.log_path, self.meta_path = self.out / "log.jsonl", self.out / "run.json"
        self.candidates = self.out / "candidates"

    def lock(self) -> None:
        """Take the run folder's lock for as long as this process runs the search (released
        by ``unlock``, or by the kernel when the process dies); a folder another process holds
        is an error naming that process. A folder that is not a run folder is refused first;
        a lock file is never truncated unless held, and ours (see the module's docstring)."""
        self._lock_fd = None
        self._claim()
        if fcntl is None:  # pragma: no cover - not on POSIX: no lock
            return
        path = self.out / "lock"
        where, flags = path.as_posix(), os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            try:
                fd, created = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644), True
            except FileExistsError:
                fd, created = os.open(path, flags), False
        except OSError as e:
            raise ShrinkError(f"cannot open the run folder's lock {where}: {e.strerror}", None,
                              _REMOVE) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                raise ShrinkError(f"{where} is not a run folder's lock (not a regular file of "
                                  "this folder alone): shrinkc leaves it as it is", None,
                                  _REMOVE)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
                who = f"process {holder}" if holder.isdigit() else "another process"
                raise ShrinkError(f"{self.out.as_posix()} is in use: {who} is running a search "
                                  "in it", None, "wait for it to finish (or stop it), then "
                                  "--resume; or choose another -o") from None
            if not created and not _PID.fullmatch(os.pread(fd, 64, 0)):
                raise ShrinkError(f"{where} is not a run folder's lock (it does not hold a "
                                  "process id): shrinkc leaves it as it is", None,
                                  _REMOVE)
            os.ftruncate(fd, 0)  # ours: held, and created by a search (or made by us now)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd

    def _claim(self) -> None:
        """Refuse ``out`` unless it is a run folder, and refuse a link, or a file that is not
        a regular one, under a name a run writes; nothing is written here."""
        where = self.out.as_posix()
        try:
            names = sorted(os.listdir(self.out))
        except OSError as e:
            raise ShrinkError(f"cannot read the run folder {where}: {e.strerror}") from None
        ours = {n for n in names if _FILES.fullmatch(n) or n == "candidates"}
        for name in sorted(ours):
            check_own(self.out / name, _REMOVE, directory=name == "candidates")
        if "candidates" in ours:
            for f in sorted(os.listdir(self.candidates)):
                if not _TEMPORARY_CANDIDATE.fullmatch(f):
                    check_own(self.candidates / f, _REMOVE)
        if not names or "run.json" in ours and _is_ours(self._read_bytes(self.meta_path, 1 << 24)):
            return
        foreign = [n for n in names if n not in ours and not _TEMPORARY.fullmatch(n)]
        if not foreign and (ours & {"run.json", "log.jsonl"} or ours <= {"lock"}):
            return  # stopped before its run.json was written, or damaged: start() says which
        if "run.json" in ours:
            why = "its run.json is not one a search wrote"
        else:
            example = foreign[0] if foreign else sorted(ours)[0]
            more = f" and {len(names) - 1} more" if len(names) > 1 else ""
            why = f"it holds '{_shown(example)}'{more} but no run.json"
        raise ShrinkError(f"{where} is not empty and is not a run folder ({why}): shrinkc "
                          "writes nothing into it", None,
                          f"{_NEW_FOLDER}; --resume continues a run in the folder it was "
                          "given first")

    def _write(self, path: Path, data: str | bytes) -> None:
        """Write one of the run's files, atomically; a symlink there is refused."""
        atomic_write(path, data, follow=False)

    def _candidates_dir(self) -> Path:
        """candidates/, created if missing; refused when it is a link."""
        check_own(self.candidates, _REMOVE, directory=True)
        return ensure_dir(self.candidates)

    def unlock(self) -> None:
        """Release the run folder's lock (the file stays: removing it would race)."""
        fd, self._lock_fd = getattr(self, "_lock_fd", None), None
        if fd is not None:
            os.close(fd)

    def start(self, meta: dict, resume: bool) -> list[Entry]:
        """Write run.json and return the log to continue from (empty unless ``resume``).

        A directory that already holds a run is an error without ``resume``; with it, so is a
        run whose run.json is damaged or missing, or records another spec, included file,
        search, data, settings or shrinkc version (the message names which), or a damaged
        log."""
        if self.meta_path.exists() or self.log_path.exists():
            where = self.out.as_posix()
            if not resume:
                raise ShrinkError(f"{where} already holds a run", None,
                                  "pass --resume to continue it, or choose another -o")
            self._check_meta(meta)
        log = self.read_log() if resume else []
        self._write(self.meta_path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return log

    def _check_meta(self, meta: dict) -> None:
        """Refuse to resume a run whose run.json is damaged or differs from ``meta``."""
        new_run = "start a new run (choose another -o)"
        if not self.meta_path.exists():
            raise ShrinkError(f"cannot resume: {self.meta_path.as_posix()} is missing, so what "
                              "the run searched is unknown", None, new_run)
        raw = self._read_bytes(self.meta_path)
        damaged = f"{self.meta_path.as_posix()} is damaged"
        hint = f"restore it, or {new_run}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            loc, _ = _at(self.meta_path, *_line_col(raw, e.start))
            raise ShrinkError(f"{damaged}: not UTF-8 text", loc, hint, quote=False) from None
        try:
            old = json.loads(text)
        except json.JSONDecodeError as e:
            loc, _ = _at(self.meta_path, e.lineno, e.colno)
            raise ShrinkError(f"{damaged}: {e.msg}", loc, hint) from None
        except RecursionError:
            raise ShrinkError(f"{damaged}: nested too deeply", _at(self.meta_path)[0], hint,
                              quote=False) from None
        try:
            Meta.model_validate(old)
        except ValidationError as e:
            err = e.errors()[0]
            key = str(err["loc"][0]) if err["loc"] else None
            raise ShrinkError(f"{damaged}: {_first_problem(e)}", self._key_loc(text, key),
                              hint) from None
        for key in COMPARED:
            if key in NEW_KEYS and old.get(key) is None:
                raise ShrinkError(f"cannot resume: {self.meta_path.as_posix()} does not record "
                                  f"'{key}' (it was written by an older shrinkc), so a change "
                                  "cannot be ruled out", self._key_loc(text, None), new_run)
            if old.get(key, BEFORE.get(key)) != meta[key]:
                was = old.get(key, BEFORE.get(key))
                raise ShrinkError(f"cannot resume: {what_changed(key, was, meta[key])}",
                                  self._key_loc(text, key),
                                  "resume with the same spec, included files, data, settings "
                                  f"and shrinkc, or {new_run}")

    def _key_loc(self, text: str, key: str | None) -> Loc:
        """Where ``key`` is in run.json's ``text`` (its first line without one)."""
        if key is not None:
            for n, line in enumerate(text.split("\n"), 1):
                col = line.find(f'"{key}":')
                if col >= 0:
                    return _at(self.meta_path, n, col + 1)[0]
        return _at(self.meta_path)[0]

    def _read_bytes(self, path: Path, limit: int | None = None) -> bytes:
        return read_own(path, "start a new run (choose another -o)", limit)

    def read_log(self) -> list[Entry]:
        """The log's entries, each checked (types, and no candidate twice); a damaged line is
        an error located in the log that says how to recover."""
        if not self.log_path.exists():
            return []
        raw = self._read_bytes(self.log_path)
        out: list[Entry] = []
        seen: dict[tuple, int] = {}
        for n, line in enumerate(raw.split(b"\n"), 1):
            if not line.strip():
                continue
            entry, problem, col, quote = None, None, 1, True
            try:
                entry = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as e:
                problem, col, quote = "not UTF-8 text", e.start + 1, False
            except json.JSONDecodeError as e:
                problem, col = e.msg, e.colno
            except RecursionError:
                problem = "nested too deeply"
            if problem is None:
                try:
                    entry = Entry.model_validate(entry)
                except ValidationError as e:
                    problem = _first_problem(e)
            if problem is None:
                key = (entry.step, entry.edge_key, entry.rung or 0)
                if key in seen:
                    problem = f"the candidate of step {key[0]} is also on line {seen[key]}"
                seen.setdefault(key, n)
            if problem is not None:
                loc, _ = _at(self.log_path, n, col)
                raise ShrinkError(f"damaged log line: {problem}", loc,
                                  "delete the line (its candidate is trained again) and "
                                  "--resume, or start a new run (choose another -o)",
                                  quote=quote)
            out.append(entry)
        return out

    def write_log(self, log: list[Entry]) -> None:
        """Rewrite the whole log, one JSON object (keys sorted) a line."""
        self._write(self.log_path, "".join(e.line() + "\n" for e in log))

    def write_latency_table(self, table) -> None:
        """Keep the latency table the run scores with (``latency.json``), as ``save`` writes it."""
        self._write(self.out / "latency.json",
                    json.dumps(table.to_dict(), indent=1, allow_nan=False) + "\n")

    def snapshot(self, step: int, text: str) -> str:
        """Write the spec after ``step``; returns the snapshot's file name."""
        name = f"step-{step:02d}.shrink"
        self._write(self.out / name, text)
        return name

    def best(self, text: str) -> None:
        """Write the best snapshot so far as best.shrink."""
        self._write(self.out / "best.shrink", text)

    def parent_state(self, step: int) -> Path:
        """Where the parent weights that step ``step + 1``'s candidates start from live."""
        return self.out / f"parent-{step:02d}.pt"

    def candidate_state(self, step: int, edge: Edge | list[int]) -> Path:
        """Where a candidate's trained weights live until its step is chosen."""
        return self.candidates / f"step-{step:02d}-{edge[0]}-{edge[1]}.pt"

    def write_candidate_state(self, step: int, edge: Edge, state: bytes) -> None:
        """Keep a candidate's trained weights (it may become the next parent)."""
        self._candidates_dir()
        self._write(self.candidate_state(step, edge), state)

    def write_parent_state(self, step: int, state: bytes) -> None:
        """Keep the weights that step ``step + 1``'s candidates start from."""
        self._write(self.parent_state(step), state)

    def promote_candidate_state(self, step: int, edge: Edge | list[int]) -> None:
        """Make a chosen candidate's weights the next parent (unless already done before an
        interruption); missing or damaged weights are an error."""
        kept, cand = self.parent_state(step), self.candidate_state(step, edge)
        if not kept.exists():
            self._write(kept, self.read_state(cand if cand.exists() else kept, step))

    def read_state(self, path: Path, step: int) -> bytes:
        """Weights kept in the run folder (``parent-NN.pt`` or a candidate's), checked to be a
        whole ``torch.save`` archive (torch is not imported here); missing or damaged weights
        are an error located at the file that says how to recover."""
        name = path.as_posix()
        hint = (f"start a new run (choose another -o); or delete parent-{step:02d}.pt and "
                f"later ones with the log lines of step {step} and later, and --resume")
        try:
            if path.is_symlink():
                raise ShrinkError(f"{name} is a symbolic link: shrinkc follows no link in a "
                                  "run folder", _at(path)[0], hint, quote=False)
            data = path.read_bytes()
        except FileNotFoundError:
            raise ShrinkError(f"{name} is missing: the weights step {step} left are gone",
                              _at(path)[0], hint, quote=False) from None
        except OSError as e:
            raise ShrinkError(f"cannot read {name}: {e.strerror}", _at(path)[0], hint,
                              quote=False) from None
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                whole = z.testzip() is None and any(n.endswith("/data.pkl") for n in z.namelist())
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError,
                NotImplementedError, KeyError):
            whole = False
        except Exception:  # noqa: BLE001 - zlib.error and whatever else a damaged zip raises
            whole = False
        if not whole:
            raise ShrinkError(f"{name} is damaged: not the weights torch.save writes",
                              _at(path)[0], hint, quote=False)
        return data

    def checkpoint(self, step: int, edge: Edge | list[int], rung: int) -> Path:
        """Where a candidate's training checkpoint after a halving round lives until its step
        is decided."""
        return self.candidates / f"step-{step:02d}-{edge[0]}-{edge[1]}-r{rung}.ckpt.pt"

    def write_checkpoint(self, step: int, edge: Edge, rung: int, data: bytes) -> None:
        self._candidates_dir()
        self._write(self.checkpoint(step, edge, rung), data)

    def read_checkpoint(self, step: int, edge: Edge, rung: int) -> bytes | None:
        """A candidate's checkpoint, or None when there is none (or it cannot be read): the
        candidate is then trained from scratch, which ends the same. Only regular files of
        the run folder are read."""
        path = self.checkpoint(step, edge, rung)
        try:
            if path.is_symlink() or not path.is_file() or path.stat().st_size > 1 << 30:
                return None
            return path.read_bytes()
        except OSError:
            return None

    def drop_candidate_states(self, step: int) -> None:
        """Remove the weights (and halving checkpoints) of ``step``'s candidates, once it is
        decided."""
        if self.candidates.is_symlink() or not self.candidates.is_dir():
            return  # a link is never followed (and nothing is there to drop)
        for f in self.candidates.glob(f"step-{step:02d}-*.pt"):
            f.unlink()

    def plot(self, snapshots: list[dict], log: list[Entry]) -> None:
        """Write scores.png: each step's best and mean score against live edges (nothing
        without matplotlib)."""
        png = scores_png(snapshots, log)
        if png is not None:
            self._write(self.out / "scores.png", png)


def scores_png(snapshots: list[dict], log: list[Entry]) -> bytes | None:
    """The scores plot as PNG bytes, or None without matplotlib (imported here, lazily)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    xs, best, mean = [], [], []
    for s in snapshots:
        scores = [e.score for e in log if e.step == s["step"] and e.score > float("-inf")]
        if not scores:
            continue
        xs.append(s["edges"])
        best.append(max(scores))
        mean.append(sum(scores) / len(scores))
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    ax.plot(xs, best, "o-", label="best candidate")
    ax.plot(xs, mean, "s--", label="mean candidate", alpha=0.7)
    ax.invert_xaxis()
    ax.set_xlabel("live edges after the step")
    ax.set_ylabel("score")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
