"""Fault injection, from tests (:class:`Faults` methods) and from scenario files
(``[[faults]]`` entries, applied by :meth:`Faults.apply`). Durations are clock
(scenario) seconds, so they scale with the simulation speed.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

from bzlogger.sim import world
from bzlogger.sim.bluez import FakeBluez
from bzlogger.sim.gatt import GATT_FAULTS
from bzlogger.sim.scenario import FaultSpec, ScenarioError, parse_duration
from bzlogger.sim.world import KIND_DEFAULTS, Kind, Visitor


class Faults:
    """Everything that can go wrong with bluetoothd, the adapter and the phones."""

    def __init__(self, bluez: FakeBluez, add_visitor: Callable[[Visitor], None],
                 log: list[dict[str, Any]]) -> None:
        self._bluez = bluez
        self._add_visitor = add_visitor
        self._log = log
        self._tasks: set[asyncio.Task[None]] = set()
        self._malformed_count = 0

    def _note(self, action: str, **details: Any) -> None:
        self._log.append({"time": self._bluez.clock.now(), "action": action, **details})

    async def restart_bluetoothd(self, downtime: float = 1.0) -> None:
        """bluetoothd dies and comes back after ``downtime``: name dropped and
        re-acquired, every object gone, sessions and advertisements lost. Returns when
        the new bluetoothd owns the name."""
        self._note("restart_bluetoothd", downtime=downtime)
        await self._bluez.restart(downtime)

    async def power_off(self, adapter: str = "hci0") -> None:
        """``Powered`` goes false: adverts are released (``Release()`` is called),
        discovery ends, devices are dropped."""
        self._note("power_off", adapter=adapter)
        await self._bluez.set_powered(False, adapter)

    async def power_on(self, adapter: str = "hci0") -> None:
        """``Powered`` goes true again (clients must restart discovery and advertising)."""
        self._note("power_on", adapter=adapter)
        await self._bluez.set_powered(True, adapter)

    async def power_cycle(self, off_for: float = 1.0, adapter: str = "hci0") -> None:
        """Power off, wait ``off_for`` clock seconds, power on."""
        await self.power_off(adapter)
        await self._bluez.clock.sleep(off_for)
        await self.power_on(adapter)

    def inject_error(self, method: str, error: str, times: int = 1, message: str = "") -> None:
        """The next ``times`` calls of ``method`` (e.g. ``StartDiscovery``) get the D-Bus
        error ``error`` (``InProgress`` is short for ``org.bluez.Error.InProgress``)."""
        self._note("inject_error", method=method, error=error, times=times)
        self._bluez.inject_error(method, error, times, message)

    def silence_scanner(self, seconds: float) -> None:
        """The adapter keeps ``Discovering`` true but reports nothing for ``seconds``."""
        self._note("silence_scanner", seconds=seconds)
        self._bluez.silence(seconds)

    def gatt_fault(self, kind: str, times: int = 1, visitor: str | None = None) -> None:
        """The next ``times`` connections (to ``visitor`` or any device) fail like real
        phones do: ``connect_timeout`` (no answer until the caller gives up or 20 clock seconds),
        ``abort_by_local`` (``org.bluez.Error.Failed: le-connection-abort-by-local`` after
        a brief connection), ``in_progress`` (``InProgress``), ``walk_away`` (connected,
        then the phone leaves during the read: ``Failed``, disconnect, gone)."""
        self._note("gatt_fault", kind=kind, times=times, visitor=visitor)
        self._bluez.inject_gatt_fault(kind, times, visitor)

    def malformed(self, payload: str, distance: float = 1.5, duration: float = 120.0) -> str:
        """Put a device advertising a malformed beacon (one of
        :data:`bzlogger.sim.world.MALFORMED_PAYLOADS`) ``distance`` m from the kiosk for
        ``duration`` clock seconds from now; returns its visitor id."""
        if payload not in world.MALFORMED_PAYLOADS:
            raise ValueError(f"unknown malformed payload {payload!r}")
        self._malformed_count += 1
        vid = f"malformed-{payload}-{self._malformed_count}"
        tx, interval = KIND_DEFAULTS[Kind.MALFORMED]
        visitor = Visitor(
            id=vid, kind=Kind.MALFORMED, arrival=self._bluez.clock.now(),
            path=world.stationary(distance, duration),
            seed=hashlib.sha256(vid.encode()).digest(), tx_power_1m=tx,
            adv_interval_s=interval, malformed=payload)
        self._note("malformed", payload=payload, visitor=vid)
        self._add_visitor(visitor)
        return vid

    async def apply(self, spec: FaultSpec) -> None:
        """Run one ``[[faults]]`` entry of a scenario."""
        o = spec.options
        where = f"fault {spec.action} at {spec.at:.0f}s"
        try:
            if spec.action == "restart_bluetoothd":
                await self.restart_bluetoothd(parse_duration(o.get("downtime", 2), where))
            elif spec.action == "power_cycle":
                await self.power_cycle(parse_duration(o.get("off_for", 5), where),
                                       str(o.get("adapter", "hci0")))
            elif spec.action == "inject_error":
                self.inject_error(str(o["method"]), str(o["error"]), int(o.get("times", 1)),
                                  str(o.get("message", "")))
            elif spec.action == "silence_scanner":
                self.silence_scanner(parse_duration(o.get("duration", "2m"), where))
            elif spec.action == "gatt_fault":
                kind = str(o.get("kind", ""))
                if kind not in GATT_FAULTS:
                    raise ScenarioError(f"{where}: kind must be one of {', '.join(GATT_FAULTS)}")
                self.gatt_fault(kind, int(o.get("times", 1)), o.get("visitor"))
            elif spec.action == "malformed":
                self.malformed(str(o["payload"]), float(o.get("distance", 1.5)),
                               parse_duration(o.get("duration", "2m"), where))
        except KeyError as missing:
            raise ScenarioError(f"{where}: missing option {missing}") from None
