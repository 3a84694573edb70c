"""``bzlogger run`` with one extra live consumer that writes the process's own figures
(asyncio tasks, open file descriptors, resident memory) to a JSON file once a second, so
that the reliability campaigns can see leaks from outside.

Usage: python -m tests.reliability.probe_daemon CONFIG PROBE_FILE
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bzlogger import config
from bzlogger.cli.context import CLOCK_ENV
from bzlogger.clock import ScaledClock
from bzlogger.daemon.app import Daemon
from bzlogger.door.consumer import DoorDisplay
from bzlogger.model import Sighting


def process_figures(pid: int | str = "self") -> dict[str, int]:
    """Open file descriptors and resident memory (kB) of a process, from /proc."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss_kb = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    return {"fds": fds, "rss_kb": rss_kb}


class Probe:
    """A live consumer writing ``{"tasks", "fds", "rss_kb"}`` to ``path`` every tick."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def observe(self, sighting: Sighting) -> None:
        """Sightings are not the probe's business."""

    def tick(self, now: float, state: Mapping[str, Any]) -> None:
        """Write the figures (atomically: the campaign reads the file concurrently)."""
        figures: dict[str, Any] = {"tasks": len(asyncio.all_tasks()), **process_figures()}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(figures))
        tmp.replace(self.path)


async def main(config_path: Path, probe_path: Path) -> int:
    settings = config.load(config_path, required=True)
    spec = os.environ.get(CLOCK_ENV)
    clock = ScaledClock.parse(spec) if spec else ScaledClock.system()
    daemon = Daemon(settings, clock)
    daemon.consumers += [DoorDisplay.from_settings(settings), Probe(probe_path)]
    return await daemon.run()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]))))
