"""Run a scenario: a private bus (or a given one), the fake bluetoothd, the world
driving it on a shared clock, scheduled faults, and the ground truth.

::

    async with SimulatedBluez.start(load_scenario("tools/scenarios/queue.toml"),
                                    speed=60) as sim:
        env = sim.environment()      # DBUS_SYSTEM_BUS_ADDRESS + BZLOGGER_CLOCK
        ...
        await sim.run_until_end()
        truth = sim.truth()

Rate cap: the world delivers at most one advertisement report per device per tick
(``report_tick``, 0.05 s of real time by default: at most 20 reports per device per
real second, whatever the speed), so D-Bus traffic depends on how many devices are in range,
not on the speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from bzlogger.clock import ScaledClock
from bzlogger.sim.adapter import AdapterConfig
from bzlogger.sim.advertising import AdvertRecord
from bzlogger.sim.adverts import HeardBeacon, decode_beacon
from bzlogger.sim.bluez import FakeBluez
from bzlogger.sim.bus import SYSTEM_BUS_ENV, PrivateBus
from bzlogger.sim.faults import Faults
from bzlogger.sim.radio import GattServiceSpec, Report
from bzlogger.sim.scenario import Scenario, parse_scenario
from bzlogger.sim.truth import GroundTruth
from bzlogger.sim.world import Visitor

#: The variable the daemon reads the shared clock from (bzlogger.cli.context.CLOCK_ENV;
#: not imported from there, which would load the whole CLI).
CLOCK_ENV = "BZLOGGER_CLOCK"
#: Real seconds between two world ticks (the per-device report cap is one per tick).
DEFAULT_REPORT_TICK_S = 0.05


class SimulatedBluez:
    """A running simulation. Create it with :meth:`start` (an async context manager)."""

    def __init__(self, scenario: Scenario, *, speed: float = 1.0,
                 bus_address: str | None = None, report_tick: float = DEFAULT_REPORT_TICK_S,
                 adapters: Sequence[AdapterConfig] = (AdapterConfig(),)) -> None:
        self.scenario = scenario
        self.clock = ScaledClock(time.time(), scenario.start, speed)
        self.bluez = FakeBluez(self.clock, adapters, seed=scenario.seed,
                               sensitivity_dbm=scenario.radio.sensitivity_dbm)
        self.bluez.gatt.on_walk_away = self._walk_away
        self.bluez.gatt.reachable = self._reachable
        self.visitors: list[Visitor] = list(scenario.visitors)
        self._truth = GroundTruth(scenario.name, scenario.seed, scenario.start, scenario.end)
        self.faults = Faults(self.bluez, self.add_visitor, self._truth.faults)
        self.report_tick = report_tick
        # Every adapter hears every device (they sit side by side in the kiosk).
        self._adapter_names = [config.name for config in adapters]
        self._given_bus = bus_address
        self._private: PrivateBus | None = None
        self.bus_address = bus_address or ""
        self._rng = random.Random(scenario.seed ^ 0x5EED)  # noqa: S311 (simulated noise)
        self._tasks: list[asyncio.Task[None]] = []
        self._next = 0
        self._active: list[Visitor] = []
        self._beacons: dict[int, tuple[int, HeardBeacon | None]] = {}
        self._gatt: dict[str, tuple[GattServiceSpec, ...] | None] = {}
        self.ticks = 0
        self.max_tick_lag_s = 0.0

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, scenario: Scenario | None = None, *, speed: float = 1.0,
                    bus_address: str | None = None,
                    report_tick: float = DEFAULT_REPORT_TICK_S,
                    adapters: Sequence[AdapterConfig] = (AdapterConfig(),),
                    ) -> AsyncIterator[SimulatedBluez]:
        """Start a simulation (an empty world when ``scenario`` is None) and stop it on
        exit. ``bus_address`` joins an existing bus instead of starting a private one."""
        sim = cls(scenario or parse_scenario({}), speed=speed, bus_address=bus_address,
                  report_tick=report_tick, adapters=adapters)
        await sim._start()
        try:
            yield sim
        finally:
            await sim._stop()

    async def _start(self) -> None:
        if self._given_bus is None:
            self._private = PrivateBus()
            self.bus_address = await self._private.start()
        try:
            await self.bluez.start(self.bus_address)
        except BaseException:
            if self._private is not None:
                await self._private.stop()
            raise
        self._tasks.append(asyncio.create_task(self._world_loop()))
        for spec in self.scenario.faults:
            self._tasks.append(asyncio.create_task(self._fault_at(spec.at, spec)))

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.bluez.stop()
        if self._private is not None:
            await self._private.stop()
            self._private = None

    # ---------------------------------------------------------------- public API

    def environment(self) -> dict[str, str]:
        """Variables a child process (the daemon, a bleak script) needs: the bus address
        and the shared clock spec."""
        return {SYSTEM_BUS_ENV: self.bus_address, CLOCK_ENV: self.clock.spec()}

    def child_env(self) -> dict[str, str]:
        """``os.environ`` plus :meth:`environment`."""
        return {**os.environ, **self.environment()}

    def advertisements(self) -> list[AdvertRecord]:
        """Every advertisement registration (also ended ones) with addresses and times."""
        return list(self.bluez.advert_log)

    def add_visitor(self, visitor: Visitor) -> None:
        """Put another visitor into the running world."""
        self.visitors.append(visitor)
        self._active.append(visitor)

    def visitor(self, visitor_id: str) -> Visitor:
        """A visitor by id (KeyError when unknown)."""
        for visitor in self.visitors:
            if visitor.id == visitor_id:
                return visitor
        raise KeyError(visitor_id)

    @property
    def finished(self) -> bool:
        """The scenario's duration has passed on the clock."""
        return self.clock.now() >= self.scenario.end

    async def run_until_end(self) -> None:
        """Wait until the scenario's end time on the clock."""
        await self.clock.sleep(self.scenario.end - self.clock.now())

    async def wait_until(self, offset_s: float) -> None:
        """Wait until ``offset_s`` clock seconds after the scenario start."""
        await self.clock.sleep(self.scenario.start + offset_s - self.clock.now())

    def truth(self) -> GroundTruth:
        """The ground truth as of now (visitors so far, kiosk beacons heard, faults)."""
        stats = self.bluez.stats
        until = min(self.clock.now(), self.scenario.end)
        self._truth.snapshot(self.visitors, until, stats.connect_attempts, stats.connections,
                             stats.reads)
        self._truth.adverts = [{
            "adapter": r.adapter, "address": r.address, "type": r.type,
            "registered_at": r.registered_at, "ended_at": r.ended_at,
            "end_reason": r.end_reason,
            "beacons": [_beacon_json(t, decode_beacon(c)) for t, c in r.history],
        } for r in self.bluez.advert_log]
        return self._truth

    # ---------------------------------------------------------------- the world

    def _walk_away(self, visitor_id: str) -> None:
        with contextlib.suppress(KeyError):
            self.visitor(visitor_id).left_at = self.clock.now()

    def _reachable(self, visitor_id: str, address: str) -> bool:
        try:
            visitor = self.visitor(visitor_id)
        except KeyError:
            return False
        now = self.clock.now()
        if not visitor.present(now) or visitor.emission(now).address != address:
            return False
        radio = self.scenario.radio
        return radio.mean_rssi(visitor.tx_power_1m, visitor.distance(now),
                               visitor.path.extra_loss_db) >= radio.sensitivity_dbm

    async def _fault_at(self, at: float, spec: Any) -> None:
        await self.wait_until(at)
        await self.faults.apply(spec)

    async def _world_loop(self) -> None:
        last = self.clock.now()
        while True:
            await asyncio.sleep(self.report_tick)
            now = self.clock.now()
            lag = (now - last) / self.clock.speed - self.report_tick
            self.max_tick_lag_s = max(self.max_tick_lag_s, lag)
            self.ticks += 1
            self._tick(last, now)
            last = now

    def _tick(self, last: float, now: float) -> None:
        visitors = self.scenario.visitors
        while self._next < len(visitors) and visitors[self._next].arrival <= now:
            self._active.append(visitors[self._next])
            self._next += 1
        adverts = self.bluez.active_adverts() if self.bluez.running else []
        still: list[Visitor] = []
        radio = self.scenario.radio
        for visitor in self._active:
            if now >= visitor.departure:
                self.bluez.device_gone(visitor.id)
                continue
            still.append(visitor)
            if not visitor.present(now) or not self.bluez.running:
                continue
            distance = visitor.distance(now)
            extra = visitor.path.extra_loss_db
            if visitor.advertised_between(last, now):
                emission = visitor.emission(now)
                rssi = radio.rssi(visitor.tx_power_1m, distance, extra, self._rng)
                gatt = self._gatt_of(visitor) if emission.content.connectable else None
                report = Report(emission.address, rssi, emission.content, visitor.id, gatt=gatt)
                for adapter in self._adapter_names:
                    self.bluez.report(report, adapter)
            protocol = visitor.kind.protocol
            if protocol is not None:
                for record in adverts:
                    beacon = self._beacon(record)
                    if beacon is None or beacon.protocol is not protocol:
                        continue
                    rssi = radio.rssi(self.scenario.kiosk_tx_power_1m, distance, extra,
                                      self._rng)
                    if rssi >= radio.sensitivity_dbm:
                        self._truth.record_hearing(visitor.id, protocol, beacon.identifier,
                                                   record.address, now, rssi)
        self._active = still

    def _gatt_of(self, visitor: Visitor) -> tuple[GattServiceSpec, ...] | None:
        if visitor.id not in self._gatt:
            self._gatt[visitor.id] = visitor.gatt(self.clock.now)
        return self._gatt[visitor.id]

    def _beacon(self, record: AdvertRecord) -> HeardBeacon | None:
        key = id(record)
        cached = self._beacons.get(key)
        if cached is None or cached[0] != len(record.history):
            cached = (len(record.history), decode_beacon(record.content))
            self._beacons[key] = cached
        return cached[1]


def _beacon_json(time_s: float, beacon: HeardBeacon | None) -> dict[str, Any]:
    if beacon is None:
        return {"time": time_s, "protocol": None}
    return {"time": time_s, "protocol": beacon.protocol.value,
            "identifier": beacon.identifier.hex(),
            "aem": beacon.aem.hex() if beacon.aem else None}
