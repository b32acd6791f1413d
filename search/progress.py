"""The search's progress, on stderr: candidates done out of the run's estimate, time elapsed and
time left; on a terminal a bar redrawn in place, otherwise one line per finished candidate;
nothing with ``--quiet``."""

from __future__ import annotations

import sys
import time


class Progress:
    """Counts candidates towards ``total`` (the run's estimate), ``done`` of them already in
    the log of a resumed run."""

    def __init__(self, quiet: bool, total: int, done: int = 0):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.total = total
        self.done = 0
        self.start = time.monotonic()
        self.where = ""

    def step(self, step: int, edges: int) -> None:
        """Show which step the search is at, and the live edges it starts from."""
        self.where = f"step {step} ({edges} edges)"

    def finished(self, step: int, edges: int, k: int, n: int) -> None:
        """Count candidate ``k`` of ``n`` of a step, trained (or taken from an isomorphic
        twin) in this session."""
        self.step(step, edges)
        self.done += 1
        if self.quiet:
            return
        elapsed = time.monotonic() - self.start
        left = ""
        if self.done and self.total > self.done:
            per = elapsed / max(1, self.done)
            left = f", ~{_hms(per * (self.total - self.done))} left"
        width = 24
        filled = int(width * min(1.0, self.done / max(1, self.total)))
        bar = "#" * filled + "." * (width - filled)
        line = f"[{bar}] {self.where}, candidate {k}/{n}, {_hms(elapsed)} elapsed{left}"
        if self.tty:
            print("\r" + line.ljust(100), end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        """End the bar's line."""
        if self.tty and not self.quiet:
            print(file=sys.stderr)


def _hms(s: float) -> str:
    s = int(s)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
