"""Helpers shared by the BLE tests that run against the simulated BlueZ."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from bzlogger.model import Sighting
from bzlogger.sim.adverts import decode_beacon
from bzlogger.sim.radio import Report
from bzlogger.sim.runner import SimulatedBluez

#: Everything near the kiosk for a while: two of each phone kind and three kinds of noise.
NEARBY = {
    "scenario": {"name": "ble-nearby", "seed": 7, "start": "2020-08-17T08:00:00Z",
                 "duration": "2h"},
    "visitors": [
        {"name": "android", "kind": "bluezone-android", "count": 2, "profile": "stationary",
         "distance": [1.0, 3.0], "stay": "2h"},
        {"name": "gaen", "kind": "gaen", "count": 2, "profile": "stationary",
         "distance": [1.0, 3.0], "stay": "2h"},
        {"name": "tracker", "kind": "tracker", "profile": "stationary", "distance": 2.0,
         "stay": "2h", "interval": 0.3},
        {"name": "watch", "kind": "watch", "profile": "stationary", "distance": 2.0,
         "stay": "2h", "interval": 0.3},
        {"name": "buds", "kind": "headphones", "profile": "stationary", "distance": 2.0,
         "stay": "2h"},
    ],
}


class ReportLog:
    """Records, per identifier, the RSSI of every report the simulated adapter delivered
    to a discovery session (the ground truth of an RSSI series)."""

    def __init__(self, sim: SimulatedBluez) -> None:
        self.series: dict[bytes, list[int]] = defaultdict(list)
        self.noise = 0
        bluez = sim.bluez
        original: Callable[..., None] = bluez.report

        def report(rep: Report, adapter_name: str = "hci0") -> None:
            before = bluez.stats.reports
            original(rep, adapter_name)
            if bluez.stats.reports == before:
                return  # not delivered (no discovery, silenced, below sensitivity)
            beacon = decode_beacon(rep.content)
            if beacon is None:
                self.noise += 1
            else:
                self.series[beacon.identifier].append(rep.rssi)

        bluez.report = report  # type: ignore[method-assign]


def sighting_series(sightings: list[Sighting]) -> dict[bytes, list[int]]:
    """RSSI series per identifier, in arrival order."""
    out: dict[bytes, list[int]] = defaultdict(list)
    for sighting in sightings:
        out[sighting.identifier].append(sighting.rssi)
    return out


def drain(queue: asyncio.Queue[Sighting]) -> list[Sighting]:
    """Everything queued so far."""
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


async def wait_for(predicate: Callable[[], Any], limit_s: float, step: float = 0.05) -> float:
    """Poll ``predicate`` until true; return the real seconds it took (AssertionError if
    not within ``limit_s``)."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > limit_s:
            raise AssertionError(f"condition not met within {limit_s} s")
        await asyncio.sleep(step)
    return time.monotonic() - start


@contextlib.asynccontextmanager
async def background(job: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``job`` (a scanner's or advertiser's ``run()``) as a task for the block, then
    cancel it and wait for it to end."""
    task = asyncio.create_task(job)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
