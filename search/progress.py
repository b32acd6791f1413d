"""The search's progress, on stderr: candidates done out of the run's estimate, time elapsed and
time left.

On a terminal it is a ``rich.progress`` bar; otherwise (a log file, a pipe) one plain line per
finished candidate, with no control codes; nothing with ``--quiet``. rich is imported here
only, when a search starts, never when ``shrinkc`` starts.
"""

from __future__ import annotations

import sys
from datetime import timedelta

# the time left is estimated from every candidate finished in this session, not the last 30 s
# (rich's default), since one candidate can take minutes
_ESTIMATE_PERIOD = 7 * 24 * 3600.0


class Progress:
    """Counts candidates towards ``total`` (the run's estimate), ``done`` of them already in
    the log of a resumed run."""

    def __init__(self, quiet: bool, total: int, done: int = 0):
        self.quiet = quiet
        if quiet:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar

        self.tty = sys.stderr.isatty()
        console = Console(stderr=True, force_terminal=None if self.tty else False)
        self.bar = Bar(TextColumn("{task.description}"), BarColumn(bar_width=10),
                       MofNCompleteColumn(), TextColumn("candidates,"), TimeElapsedColumn(),
                       TextColumn("elapsed,"), TimeRemainingColumn(), TextColumn("left"),
                       console=console, speed_estimate_period=_ESTIMATE_PERIOD,
                       disable=not self.tty)
        self.task = self.bar.add_task("starting", total=total, completed=done)
        self.bar.start()

    def step(self, step: int, edges: int) -> None:
        """Show which step the search is at, and the live edges it starts from."""
        if not self.quiet:
            self.bar.update(self.task, description=f"step {step} ({edges} edges)")

    def finished(self, step: int, edges: int, k: int, n: int) -> None:
        """Count candidate ``k`` of ``n`` of a step, trained (or taken from an isomorphic
        twin) in this session."""
        if self.quiet:
            return
        self.step(step, edges)
        self.bar.advance(self.task)
        if not self.tty:
            task = self.bar.tasks[0]
            line = (f"step {step} ({edges} edges), candidate {k}/{n}: "
                    f"{task.completed:g}/{task.total:g} candidates, "
                    f"{_clock(task.elapsed)} elapsed")
            if task.time_remaining is not None:
                line += f", ~{_clock(task.time_remaining)} left"
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        """Stop the bar (leaving its last state on the terminal)."""
        if not self.quiet:
            self.bar.stop()


def _clock(seconds: float | None) -> str:
    """Seconds as h:mm:ss, as rich's columns show times."""
    return str(timedelta(seconds=int(max(0.0, seconds or 0.0))))
