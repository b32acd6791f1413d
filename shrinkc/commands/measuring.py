"""The measuring protocol's flags, declared once for ``shrinkc bench`` and ``shrinkc latency``.

Each flag sets one field of the measuring routine's ``Protocol`` (``backends/latency/
measure.py``): its spelling, how its value is read and checked (a usage error, exit 2, for
anything else) and its help. A command picks the flags it has, their defaults where it has
its own (the help shows them), and a spelling where it keeps an older one (``bench --runs``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

CLOCKS = ("wall", "cpu")


def count(flag: str, least: int, most: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``least`` to ``most``."""
    def parse(text: str) -> int:
        t = text.strip()
        if not (t.isascii() and t.isdigit() and len(t) <= 9) or not least <= int(t) <= most:
            shown = text if len(text) <= 20 else text[:17] + "..."
            raise argparse.ArgumentTypeError(
                f"must be a whole number from {least} to {most:,}, got '{shown}'")
        return int(t)
    return parse


def fraction(text: str) -> float:
    """An argparse type: a fraction from 0 to below 1."""
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction from 0 to below 1 (0.01 is 1%), "
                                         f"got '{text[:20]}'")
    return v


def seconds(text: str) -> float:
    """An argparse type: seconds above 0, at most a day."""
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0 < v <= 86400:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got '{text[:20]}'")
    return v


@dataclass(frozen=True)
class Flag:
    """One protocol flag: the ``Protocol`` field it sets, its spelling, type and help."""

    field: str
    flag: str
    type: Callable[[str], object] | None
    help: str
    choices: tuple[str, ...] | None = None
    metavar: str | None = None


FLAGS = {f.field: f for f in (
    Flag("threads", "--threads", count("--threads", 1, 1024), "onnxruntime intra-op threads", metavar="N"),
    Flag("batch", "--batch", count("--batch", 1, 65536), "the batch size", metavar="N"),
    Flag("warmup", "--warmup", count("--warmup", 0, 1_000_000), "untimed runs first", metavar="N"),
    Flag("max_runs", "--max-runs", count("--runs", 1, 1_000_000), "timed runs at most", metavar="N"),
    Flag("tolerance", "--tolerance", fraction,
         "stop when the median's 95%% interval is within this fraction of it (0.01 is 1%%)",
         metavar="T"),
    Flag("max_seconds", "--max-seconds", seconds,
         "stop after this many seconds of timed runs", metavar="S"),
    Flag("clock", "--clock", None, "wall: the latency; cpu: this process's CPU time, for one "
         "thread on a machine busy with something else", choices=CLOCKS),
)}
SPIN = ("--spin", "--no-spin")  # the spinning field: intra-op threads spin while waiting, or not


def add_flags(parser, names: tuple[str, ...], defaults: dict[str, str], *,
              spellings: dict[str, str] | None = None, helps: dict[str, str] | None = None,
              spin: bool = True) -> None:
    """Add the flags of ``names`` (``Protocol`` fields) to ``parser``, each defaulting to None
    (not given: the command decides), its help ending with ``defaults[name]``; ``spellings``
    and ``helps`` replace a flag's spelling or help for this command; ``spin`` adds
    ``--spin`` and ``--no-spin`` (the ``spin`` destination, None when neither is given)."""
    for name in names:
        f = FLAGS[name]
        text = (helps or {}).get(name, f.help)
        if name in defaults:
            text += f" (default: {defaults[name]})"
        kw: dict = {"dest": name, "help": text, "default": None}
        if f.choices:
            kw["choices"] = f.choices
        if f.type is not None:
            kw["type"] = f.type
        if f.metavar:
            kw["metavar"] = f.metavar
        parser.add_argument((spellings or {}).get(name, f.flag), **kw)
    if spin:
        parser.add_argument(SPIN[0], dest="spin", action="store_true", default=None,
                            help="intra-op threads spin while waiting (onnxruntime's default)")
        parser.add_argument(SPIN[1], dest="spin", action="store_false",
                            help="intra-op threads do not spin while waiting")


def given(args, names: tuple[str, ...] = tuple(FLAGS)) -> dict:
    """The ``Protocol`` fields the command line gave (``spinning`` from ``--spin``)."""
    out = {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}
    if getattr(args, "spin", None) is not None:
        out["spinning"] = args.spin
    return out


__all__ = ["CLOCKS", "FLAGS", "Flag", "add_flags", "count", "fraction", "given", "seconds"]
