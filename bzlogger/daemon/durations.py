"""Durations worded for people, shared by the clock guard's reasons and ``bzlogger
status``."""

from __future__ import annotations


def span_text(seconds: float, *, day_decimals: int = 0) -> str:
    """``seconds`` (not negative) as "45 s", "12 min", "3.5 h" or "400 days", the days
    with ``day_decimals`` decimals."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.{day_decimals}f} days"
