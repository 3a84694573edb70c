"""structlog, configured once per process.

On a terminal: coloured, human-readable lines. Otherwise (systemd, pipes): one JSON
object per line, which journald stores as is. Timestamps are ISO 8601 UTC.
Identifiers of people (contact IDs, RPIs, MAC addresses) are never logged at info level
or above; :func:`redact` shortens them for debug lines.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_configured = False


class _StderrLogger:
    """Writes each rendered line to whatever ``sys.stderr`` is *now*.

    structlog's PrintLogger keeps the stream it was created with; a stream swapped out
    later (pytest's or click's capture, a daemonising parent) would then be written to
    after it was closed.
    """

    def msg(self, message: str) -> None:
        """Print one rendered log line."""
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def _stderr_logger(*_args: Any) -> _StderrLogger:
    return _StderrLogger()


def configure(verbosity: int = 0, *, json_lines: bool | None = None) -> None:
    """Set up structlog and the stdlib root logger (idempotent).

    ``verbosity`` 0 logs info and above, 1 or more logs debug. ``json_lines`` None
    chooses JSON unless stderr is a terminal.
    """
    global _configured
    level = logging.DEBUG if verbosity > 0 else logging.INFO
    as_json = not sys.stderr.isatty() if json_lines is None else json_lines
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    # Libraries (bleak, dbus-fast, aiosqlite) log through the stdlib: keep them quiet
    # unless asked, so that their debug lines (which name MAC addresses) stay out.
    logging.basicConfig(level=logging.WARNING if verbosity < 2 else logging.DEBUG,
                        stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    _configured = True


def get_logger(name: str) -> Any:
    """A structlog logger bound to ``component=name``."""
    # Initial values, not bind(): bind() would build the logger now, with the configuration
    # of import time (structlog's default prints to stdout), not the one set up later.
    return structlog.get_logger(component=name)


def redact(identifier: bytes | str) -> str:
    """A short, non-identifying form of an identifier for debug logs (first 2 bytes)."""
    text = identifier.hex() if isinstance(identifier, bytes) else identifier.replace(":", "")
    return f"{text[:4].lower()}…"
