"""Live consumers: hooks that see every sighting and the daemon's state once a second
(the door display, the metrics textfile)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from bzlogger.model import Sighting


class LiveConsumer(Protocol):
    """A per-sighting / per-second hook (the door display, metrics): ``observe`` gets
    every sighting that passed the clock check, ``tick`` the daemon's state once a
    second. Both must be quick and must not block; an exception is recorded in the
    status and the daemon carries on."""

    def observe(self, sighting: Sighting) -> None:
        """One sighting (it carries an identifier: never write it anywhere)."""
        ...

    def tick(self, now: float, state: Mapping[str, Any]) -> None:
        """The daemon's state as written to the state file, once a second."""
        ...


class MetricsFile:
    """A live consumer that rewrites the node-exporter textfile every ``every_s`` real
    seconds from the daemon's state and the scanner's counters."""

    def __init__(self, path: Path, scanner_counters: Callable[[], Mapping[str, int]],
                 every_s: float = 5.0) -> None:
        self.path = path
        self.scanner_counters = scanner_counters
        self.every_s = every_s
        self._next = 0.0

    def observe(self, sighting: Sighting) -> None:
        """Sightings are not needed: the counters cover them."""

    def tick(self, now: float, state: Mapping[str, Any]) -> None:
        """Rewrite the textfile when it is due."""
        from bzlogger.metrics import snapshot_from_daemon, write_metrics

        real = time.monotonic()
        if real < self._next:
            return
        self._next = real + self.every_s
        write_metrics(self.path, snapshot_from_daemon(state, self.scanner_counters()))
