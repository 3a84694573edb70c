"""Time formats of the operator contract: ISO 8601 UTC with a ``Z`` suffix."""

from __future__ import annotations

from datetime import UTC, datetime

from bzlogger.errors import OperationalError


def iso(unix_s: float, *, precision: str = "seconds") -> str:
    """``2026-12-06T10:15:00Z`` for a Unix time."""
    text = datetime.fromtimestamp(unix_s, UTC).isoformat(timespec=precision)
    return text.replace("+00:00", "Z")


def parse_iso(text: str) -> float:
    """Parse an ISO 8601 time (``Z`` or an offset; a bare date means its UTC midnight;
    a time without offset is taken as UTC) into Unix seconds."""
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise OperationalError(
            f"{text!r} is not an ISO 8601 time; use e.g. 2026-12-06 or 2026-12-06T08:30:00Z"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()
