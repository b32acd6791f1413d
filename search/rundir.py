"""The run directory of a search: what was searched, the log, snapshots and the scores plot.

  run.json       what was searched (spec hash, settings, data): ``--resume`` refuses a mismatch
  log.jsonl      one line per evaluated candidate; ``chosen: true`` on each step's removed edge
  step-NN.shrink the spec after step NN, canonically formatted (compiles as it is)
  best.shrink    the best-scoring snapshot (ties: fewer edges)
  scores.png     best and mean candidate score against live edges (with matplotlib)
  parent-NN.pt   with ``--inherit``: the weights the candidates of step NN + 1 start from
  candidates/    with ``--inherit``: the trained weights of the current step's candidates

Every file is written atomically, so a run killed at any moment leaves whole files behind.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from shrinkc.compiler.errors import ShrinkError
from shrinkc.compiler.fsutil import atomic_write, ensure_dir

from .rules import Edge
from .settings import Settings, recorded


def meta(spec: str, text: str, search: str, settings: Settings, data: str, max_steps: int | None,
         inherit: bool) -> dict:
    """run.json's contents: the spec (name and hash of its text), the search block, its
    settings, the proxy data, and the run's options. All but max_steps must match on resume."""
    return {
        "spec": spec,
        "spec_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "search": search,
        "settings": recorded(settings),
        "data": data,
        "max_steps": max_steps,
        "inherit": inherit,
    }


class RunDir:
    """The files of one run, under ``out`` (created if missing)."""

    def __init__(self, out: str):
        self.out = ensure_dir(Path(out))
        self.log_path, self.meta_path = self.out / "log.jsonl", self.out / "run.json"
        self.candidates = self.out / "candidates"

    def start(self, meta: dict, resume: bool) -> list[dict]:
        """Write run.json and return the log to continue from (empty unless ``resume``).

        A directory that already holds a run is an error without ``resume``, and with it when
        the run was of another spec, search, data or settings."""
        if self.meta_path.exists() or self.log_path.exists():
            where = self.out.as_posix()
            if not resume:
                raise ShrinkError(f"{where} already holds a run", None,
                                  "pass --resume to continue it, or choose another -o")
            old = json.loads(self.meta_path.read_text()) if self.meta_path.exists() else meta
            differs = [k for k in meta if k != "max_steps" and old.get(k) != meta[k]]
            if differs:
                raise ShrinkError(f"cannot resume: {differs[0]} differs from the run in {where}",
                                  None, "resume with the same spec, data and settings")
        atomic_write(self.meta_path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return self.read_log() if resume else []

    def read_log(self) -> list[dict]:
        """The log's entries; a damaged line is an error that says how to recover."""
        if not self.log_path.exists():
            return []
        out = []
        for n, line in enumerate(self.log_path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                raise ShrinkError(f"{self.log_path}:{n}: damaged log line", None,
                                  "delete the line (the candidate is re-run) and --resume"
                                  ) from None
        return out

    def write_log(self, log: list[dict]) -> None:
        """Rewrite the whole log, one JSON object (keys sorted) a line."""
        atomic_write(self.log_path, "".join(json.dumps(e, sort_keys=True) + "\n" for e in log))

    def snapshot(self, step: int, text: str) -> str:
        """Write the spec after ``step``; returns the snapshot's file name."""
        name = f"step-{step:02d}.shrink"
        atomic_write(self.out / name, text)
        return name

    def best(self, text: str) -> None:
        """Write the best snapshot so far as best.shrink."""
        atomic_write(self.out / "best.shrink", text)

    def parent_state(self, step: int) -> Path:
        """Where the parent weights that step ``step + 1``'s candidates start from live."""
        return self.out / f"parent-{step:02d}.pt"

    def candidate_state(self, step: int, edge: Edge | list[int]) -> Path:
        """Where a candidate's trained weights live until its step is chosen."""
        return self.candidates / f"step-{step:02d}-{edge[0]}-{edge[1]}.pt"

    def write_candidate_state(self, step: int, edge: Edge, state: bytes) -> None:
        """Keep a candidate's trained weights (it may become the next parent)."""
        ensure_dir(self.candidates)
        atomic_write(self.candidate_state(step, edge), state)

    def write_parent_state(self, step: int, state: bytes) -> None:
        """Keep the weights that step ``step + 1``'s candidates start from."""
        atomic_write(self.parent_state(step), state)

    def promote_candidate_state(self, step: int, edge: Edge | list[int]) -> None:
        """Make a chosen candidate's weights the next parent (unless already done before an
        interruption)."""
        kept = self.parent_state(step)
        if not kept.exists():
            atomic_write(kept, self.candidate_state(step, edge).read_bytes())

    def drop_candidate_states(self, step: int) -> None:
        """Remove the weights of ``step``'s candidates, once its winner is the parent."""
        for f in self.candidates.glob(f"step-{step:02d}-*.pt"):
            f.unlink()

    def plot(self, snapshots: list[dict], log: list[dict]) -> None:
        """Write scores.png: each step's best and mean score against live edges (nothing
        without matplotlib)."""
        png = scores_png(snapshots, log)
        if png is not None:
            atomic_write(self.out / "scores.png", png)


def scores_png(snapshots: list[dict], log: list[dict]) -> bytes | None:
    """The scores plot as PNG bytes, or None without matplotlib (imported here, lazily)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    xs, best, mean = [], [], []
    for s in snapshots:
        scores = [e["score"] for e in log if e["step"] == s["step"] and e["score"] > float("-inf")]
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
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
