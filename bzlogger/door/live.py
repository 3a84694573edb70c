"""The live door-state file: written by the daemon, read by the door display service.

The daemon (which keeps no network access) writes :class:`~bzlogger.core.door.DoorState`
every ~0.5 s with :func:`write_door_state`; the door service (which never sees the store
key, the bus or an identifier) polls it with :func:`read_door_state`. The file lives on
``/run`` (tmpfs), so frequent rewrites cost no flash wear and nothing reaches the disk.

Format: one JSON object, UTF-8, replaced atomically (temporary file + rename)::

    {"version": 1, "present": true, "phones": 1, "protocols": ["bluezone"],
     "count_today": 12, "day": "2026-12-07", "updated": 1796601600.5}

The file's modification time doubles as the daemon's heartbeat: a reader treats a file
older than a few seconds as "the kiosk is not scanning".
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bzlogger.core.door import DoorState

FORMAT_VERSION = 1


class DoorStateError(ValueError):
    """The door-state file exists but does not hold a valid state."""


def write_door_state(path: Path, state: DoorState) -> None:
    """Atomically replace ``path`` with ``state`` (readable by the door service: 0644)."""
    document = {
        "version": FORMAT_VERSION,
        "present": state.present,
        "phones": state.phones,
        "protocols": list(state.protocols),
        "count_today": state.count_today,
        "day": state.day,
        "updated": round(state.updated, 1),
    }
    data = json.dumps(document, separators=(",", ":")).encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@dataclass(frozen=True, slots=True)
class LiveDoorState:
    """A door state as read back, with the file's age (seconds, real time)."""

    state: DoorState
    age_s: float


def read_door_state(path: Path, now: float) -> LiveDoorState | None:
    """Read ``path``; None when it does not exist yet. ``now`` is :func:`time.time`,
    compared with the file's modification time to give its age.

    Raises :class:`DoorStateError` for a file that is not a valid state.
    """
    try:
        with path.open("rb") as handle:
            mtime = os.fstat(handle.fileno()).st_mtime
            raw = handle.read(64 * 1024)
    except FileNotFoundError:
        return None
    return LiveDoorState(parse_door_state(raw), max(0.0, now - mtime))


def parse_door_state(raw: bytes) -> DoorState:
    """Validate and decode the JSON document written by :func:`write_door_state`."""
    try:
        doc: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise DoorStateError(f"not JSON: {error}") from None
    if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
        raise DoorStateError(f"expected a JSON object with version {FORMAT_VERSION}")
    try:
        present, phones, count, day, updated = (
            doc["present"], doc["phones"], doc["count_today"], doc["day"], doc["updated"])
        protocols = doc["protocols"]
    except KeyError as error:
        raise DoorStateError(f"missing key {error}") from None
    if not (isinstance(present, bool) and _count(phones) and _count(count)
            and isinstance(day, str) and isinstance(updated, int | float)
            and not isinstance(updated, bool) and isinstance(protocols, list)
            and all(isinstance(p, str) for p in protocols)):
        raise DoorStateError("a key has the wrong type")
    return DoorState(present=present, phones=phones, protocols=tuple(protocols),
                     count_today=count, day=day, updated=float(updated))


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
