"""The scanner against the simulated BlueZ: identifiers, RSSI series, noise."""

from __future__ import annotations

import asyncio

import pytest

from bzlogger.ble.scanner import BleScanner
from bzlogger.config import BleSettings
from bzlogger.model import Platform, Protocol, Sighting
from bzlogger.sim.runner import SimulatedBluez
from tests.ble.simhelp import NEARBY, ReportLog, background, drain, sighting_series, wait_for
from tests.conftest import SimFactory


def expected_ids(sim: SimulatedBluez, kind: str, since: float) -> set[bytes]:
    out = set()
    for visitor in sim.truth().visitors:
        if visitor.kind == kind:
            out |= {bytes.fromhex(s.identifier) for s in visitor.ids if s.end > since}
    return out


async def test_scanner_logs_android_and_gaen_visitors_with_rssi_series(
        sim_factory: SimFactory) -> None:
    sim = await sim_factory(NEARBY, speed=1.0)
    reports = ReportLog(sim)
    queue: asyncio.Queue[Sighting] = asyncio.Queue(maxsize=10_000)
    scanner = BleScanner(BleSettings(), sim.clock, queue)
    async with background(scanner.run()):
        await wait_for(lambda: scanner.scanning, 5)
        started = sim.clock.now()
        await wait_for(lambda: queue.qsize() > 60, 10)
        await asyncio.sleep(2.0)
        assert scanner.health().ok
    assert not scanner.health().ok
    await asyncio.sleep(0.2)
    sightings = drain(queue)

    by_protocol = {p: {s.identifier for s in sightings if s.protocol is p} for p in Protocol}
    assert by_protocol[Protocol.BLUEZONE] == expected_ids(sim, "bluezone-android", started)
    assert by_protocol[Protocol.GAEN] == expected_ids(sim, "gaen", started)
    assert all(s.platform is Platform.ANDROID for s in sightings
               if s.protocol is Protocol.BLUEZONE)
    assert all(s.aem is not None and len(s.aem) == 4 for s in sightings
               if s.protocol is Protocol.GAEN)
    assert all(started - 1 <= s.time <= sim.clock.now() for s in sightings)

    # Every report BlueZ delivered while we scanned is one sample, in order.
    got = sighting_series(sightings)
    for identifier, series in got.items():
        truth = reports.series[identifier]
        assert len(series) >= 5
        n = len(series)
        assert any(truth[i:i + n] == series for i in range(len(truth) - n + 1)), identifier.hex()
        assert n >= len(truth) - 3   # at most a few reports before discovery started

    stats = scanner.stats()
    assert stats["noise"] > 0 and reports.noise > 0
    assert stats["sightings.bluezone"] + stats["sightings.gaen"] == len(sightings)
    assert not any(k.startswith("malformed") for k in stats)


@pytest.mark.parametrize("payload", ["bluezone_short", "bluezone_long", "bluezone_unlisted",
                                     "gaen_short", "gaen_long", "gaen_unlisted",
                                     "ios_overflow_short"])
async def test_malformed_adverts_are_counted_and_skipped(sim_factory: SimFactory,
                                                         payload: str) -> None:
    sim = await sim_factory(None, speed=1.0)
    queue: asyncio.Queue[Sighting] = asyncio.Queue(maxsize=100)
    scanner = BleScanner(BleSettings(), sim.clock, queue)
    async with background(scanner.run()):
        await wait_for(lambda: scanner.scanning, 5)
        sim.faults.malformed(payload, duration=60)
        await wait_for(lambda: scanner.counters.total("malformed") >= 3, 5)
    assert queue.empty()
    assert scanner.counters.get("seen.bluezone_ios") == 0


async def test_full_queue_drops_and_counts(sim_factory: SimFactory) -> None:
    sim = await sim_factory(NEARBY, speed=1.0)
    queue: asyncio.Queue[Sighting] = asyncio.Queue(maxsize=5)
    scanner = BleScanner(BleSettings(), sim.clock, queue)
    async with background(scanner.run()):
        await wait_for(lambda: scanner.counters.get("dropped") >= 10, 10)
    assert queue.qsize() == 5


async def test_protocols_not_scanned_are_ignored(sim_factory: SimFactory) -> None:
    sim = await sim_factory(NEARBY, speed=1.0)
    queue: asyncio.Queue[Sighting] = asyncio.Queue(maxsize=1000)
    scanner = BleScanner(BleSettings(scan=["gaen"]), sim.clock, queue)
    async with background(scanner.run()):
        await wait_for(lambda: scanner.counters.get("ignored.bluezone") >= 5, 10)
        await wait_for(lambda: queue.qsize() >= 5, 5)
    assert {s.protocol for s in drain(queue)} == {Protocol.GAEN}
