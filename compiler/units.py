"""Counts for people: ``383.7M``, ``1.25G``. The one formatter every part of shrinkc uses."""

from __future__ import annotations


def human(n: int | float, *, kilo: bool = False) -> str:
    """``n`` with a G or M suffix from 10^5 up; below that exact with thousands separators,
    or in thousands (``12.3K``) with ``kilo`` (as the generated PyTorch's docstrings have it)."""
    if abs(n) >= 1e15:  # as far as a float holds (any int at all)
        from decimal import Decimal

        return f"{Decimal(n):.3E}"
    if abs(n) >= 1e9:
        return f"{n / 1e9:.2f}G"
    if abs(n) >= 1e5:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e3:.1f}K" if kilo else f"{n:,}"


def exact(n: int) -> str:
    """``n`` with thousands separators (``1,048,576``), or in E notation past 10^18 (a
    message never spells out hundreds of digits, nor fails on over 4,300 of them)."""
    if abs(n) < 10**18:
        return f"{n:,}"
    from decimal import Decimal

    return f"{Decimal(n):.3E}"
