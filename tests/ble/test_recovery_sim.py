"""Recovery: after each simulator fault, scanning and advertising are back within 10 s.

The default run repeats each fault twice; ``-m slow`` runs the twenty-in-a-row loops.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from bzlogger.ble.advertiser import Advertiser, AdvertisingStatus
from bzlogger.ble.scanner import BleScanner, _bleak_bus
from bzlogger.config import BleSettings
from bzlogger.model import Sighting
from bzlogger.sim.runner import SimulatedBluez
from tests.ble.simhelp import NEARBY, drain, wait_for
from tests.ble.test_advertiser_sim import provider
from tests.conftest import SimFactory

RECOVERY_LIMIT_S = 10.0


@dataclass
class Kiosk:
    sim: SimulatedBluez
    scanner: BleScanner
    advertiser: Advertiser
    queue: asyncio.Queue[Sighting]

    def advertising(self) -> bool:
        mine = [r for r in self.sim.bluez.active_adverts()
                if r.path.startswith("/org/bzlogger/")]
        return (len(mine) == 2
                and self.advertiser.state().status is AdvertisingStatus.ACTIVE)

    async def back(self) -> float:
        """Real seconds until fresh sightings arrive and both beacons are registered."""
        drain(self.queue)
        return await wait_for(lambda: self.queue.qsize() >= 3 and self.advertising(),
                              RECOVERY_LIMIT_S)


@contextlib.asynccontextmanager
async def kiosk(sim: SimulatedBluez, watchdog_s: float = 10.0) -> AsyncIterator[Kiosk]:
    settings = BleSettings(advertise=["bluezone", "gaen"], watchdog_s=watchdog_s)
    queue: asyncio.Queue[Sighting] = asyncio.Queue(maxsize=10_000)
    scanner = BleScanner(settings, sim.clock, queue)
    advertiser = Advertiser(settings.adapter, sim.clock)
    tasks = [asyncio.create_task(scanner.run()),
             asyncio.create_task(advertiser.run(provider(sim.clock, settings.advertise)))]
    try:
        k = Kiosk(sim, scanner, advertiser, queue)
        await k.back()
        yield k
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def restart_bluetoothd(k: Kiosk) -> None:
    await k.sim.faults.restart_bluetoothd(1.0)


async def power_cycle(k: Kiosk) -> None:
    await k.sim.faults.power_cycle(1.0)


async def in_progress(k: Kiosk) -> None:
    # bluetoothd answers the next starts with InProgress, and has lost our session.
    k.sim.faults.inject_error("StartDiscovery", "InProgress", times=3)
    await k.sim.faults.restart_bluetoothd(0.2)


async def not_ready(k: Kiosk) -> None:
    k.sim.faults.inject_error("StartDiscovery", "NotReady", times=2)
    k.sim.faults.inject_error("RegisterAdvertisement", "NotReady", times=1)
    await k.sim.faults.restart_bluetoothd(0.2)


async def silent_scanner(k: Kiosk) -> None:
    restarts = k.scanner.counters.get("recovery.restart")
    # 20 s of silence against a 10 s watchdog: discovery is restarted during it
    k.sim.faults.silence_scanner(20.0)
    await asyncio.sleep(20.0 / k.sim.clock.speed)
    assert k.scanner.counters.get("recovery.restart") > restarts


async def lost_bus(k: Kiosk) -> None:
    # Every connection of ours drops (as when the socket breaks): bleak's, the
    # scanner's watch and the advertiser's (whose exported objects vanish with it).
    for bus in (_bleak_bus(), k.scanner.watch.bus, k.advertiser.watch.bus):
        if bus is not None:
            bus.disconnect()


FAULTS: dict[str, Callable[[Kiosk], Awaitable[None]]] = {
    "restart_bluetoothd": restart_bluetoothd,
    "power_cycle": power_cycle,
    "in_progress": in_progress,
    "not_ready": not_ready,
    "silent_scanner": silent_scanner,
    "lost_bus": lost_bus,
}


async def run_faults(sim_factory: SimFactory, name: str, times: int) -> list[float]:
    # Silence is measured in clock time: speed it up so the watchdog (10 s) acts fast.
    speed = 4.0 if name == "silent_scanner" else 1.0
    sim = await sim_factory(NEARBY, speed=speed)
    durations = []
    async with kiosk(sim) as k:
        for _ in range(times):
            await FAULTS[name](k)
            durations.append(await k.back())
    return durations


@pytest.mark.parametrize("name", list(FAULTS))
async def test_recovers_from_each_fault(sim_factory: SimFactory, name: str) -> None:
    durations = await run_faults(sim_factory, name, 2)
    assert max(durations) < RECOVERY_LIMIT_S


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAULTS))
async def test_recovers_twenty_times_in_a_row(sim_factory: SimFactory, name: str) -> None:
    durations = await run_faults(sim_factory, name, 20)
    print(f"{name}: max {max(durations):.2f} s, mean {sum(durations) / 20:.2f} s")
    assert max(durations) < RECOVERY_LIMIT_S
