"""The runtime state file: how ``bzlogger status`` sees a running daemon.

The daemon rewrites one small JSON file (``[daemon] state_file``, by default
``/run/bzlogger/state.json``) every second, atomically (temporary file + rename), mode
0644. It holds only aggregates (counts, rates, sizes, states, error messages), never an
identifier, a MAC address or the time of one encounter, so reading it needs no store key
and no bus access: ``status`` gets exactly the power to read one file. The daemon puts
the store figures (size, oldest day, encounters today) into the file itself.

``written_at`` is real wall time (not a simulation's accelerated clock) so that a reader
can tell a live daemon from a stale file.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bzlogger.errors import OperationalError

SCHEMA = 1
#: A file older than this (real seconds) means the daemon is wedged or gone.
STALE_AFTER_S = 15.0


def write_state(path: Path, data: Mapping[str, Any], *, now_real: float | None = None) -> None:
    """Atomically replace ``path`` with ``data`` plus ``schema``, ``pid``, ``written_at``."""
    document = {"schema": SCHEMA, "pid": os.getpid(),
                "written_at": time.time() if now_real is None else now_real, **data}
    payload = json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.fchmod(fd, 0o644)  # whatever the umask: status must be able to read it
        os.write(fd, payload)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_state(path: Path) -> None:
    """Delete the state file (the daemon is gone); a missing file is fine."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


@dataclass(frozen=True, slots=True)
class StateReading:
    """A state file as read by ``status``: its data, age and whether the daemon lives."""

    data: dict[str, Any]
    age_s: float
    process_alive: bool

    @property
    def live(self) -> bool:
        """True when the daemon runs and wrote recently."""
        return self.process_alive and self.age_s <= STALE_AFTER_S


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it is just not ours
    return True


def read_state(path: Path, *, now_real: float | None = None) -> StateReading:
    """Read the state file; :class:`OperationalError` when there is none or it is bad."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise OperationalError(
            f"the daemon is not running (no state file {path}); start it with "
            "'systemctl start bzlogger' or 'bzlogger run'"
        ) from None
    except OSError as error:
        raise OperationalError(f"cannot read the daemon's state file {path}: "
                               f"{error.strerror}") from None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise OperationalError(f"the daemon's state file {path} is not valid JSON; "
                               "restart the daemon") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise OperationalError(f"the daemon's state file {path} has an unknown format "
                               "(a different bzlogger version?); restart the daemon")
    written = data.get("written_at")
    now = time.time() if now_real is None else now_real
    age = now - written if isinstance(written, int | float) else float("inf")
    return StateReading(data, max(0.0, age), _alive(data.get("pid")))
