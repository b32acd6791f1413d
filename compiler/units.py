"""Counts for people: ``383.7M``, ``1.25G``. The one formatter every part of shrinkc uses."""

from __future__ import annotations


def human(n: int | float, *, kilo: bool = False) -> str:
    """``n`` with a G or M suffix from 10^5 up; below that exact with thousands separators,
    or in thousands (``12.3K``) with ``kilo`` (as the generated PyTorch's docstrings have it)."""
    if abs(n) >= 1e9:
        return f"{n / 1e9:.2f}G"
    if abs(n) >= 1e5:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e3:.1f}K" if kilo else f"{n:,}"
