"""The daemon's side of the door display: a live consumer
(``bzlogger.daemon.consumers.LiveConsumer``: ``observe`` every sighting, ``tick`` once a
second) that feeds the presence detector and keeps the live door-state file current.

The file is rewritten at every tick (its age is the heartbeat the door service checks)
and at once when a phone enters the zone, so "app detected" does not wait for the tick.
Leaving the zone is noticed at the next tick (the detector needs ``release_s`` of
silence anyway).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from bzlogger import config
from bzlogger.core.door import DoorDetector, DoorState
from bzlogger.door.live import write_door_state
from bzlogger.model import Sighting


class DoorDisplay:
    """Feeds :class:`DoorDetector` and writes ``[door] state_file``."""

    def __init__(self, detector: DoorDetector, state_file: Path,
                 write: Callable[[Path, DoorState], None] = write_door_state) -> None:
        self.detector = detector
        self.state_file = state_file
        self._write = write

    @classmethod
    def from_settings(cls, settings: config.Settings, tz: tzinfo | None = None) -> DoorDisplay:
        """The display for ``settings``; ``tz`` (the day of "today's count") defaults to
        the system's local time zone."""
        local = tz or datetime.now().astimezone().tzinfo or UTC
        door = settings.door
        detector = DoorDetector(rssi_threshold=door.rssi_threshold, hold_s=door.hold_s,
                                release_s=door.release_s,
                                rssi_offset=settings.encounters.rssi_offset, tz=local)
        return cls(detector, door.state_file)

    def observe(self, sighting: Sighting) -> None:
        """One sighting; the file is rewritten at once when a phone enters the zone."""
        if self.detector.observe(sighting):
            self._write(self.state_file, self.detector.state(sighting.time))

    def tick(self, now: float, state: Mapping[str, Any]) -> None:
        """Once a second: rewrite the file (heartbeat, and phones that left)."""
        self._write(self.state_file, self.detector.state(now))
