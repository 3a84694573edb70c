"""The scanner: one bleak discovery session on the configured adapter, recognised
advertisements turned into :class:`~bzlogger.model.Sighting` objects on a bounded queue,
and a supervisor loop that keeps discovery alive (see :mod:`bzlogger.ble.watchdog`).

The discovery filter asks BlueZ for every report (``RSSI`` set: no 8 dB hysteresis;
``DuplicateData``: payloads signalled even when unchanged) so each advertisement gives
one RSSI sample. Sightings go to the queue with ``put_nowait``: when the consumer falls
behind, samples are dropped and counted, memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bleak import BleakScanner
from bleak.args.bluez import BlueZDiscoveryFilters
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakBluetoothNotAvailableError, BleakDBusError, BleakError
from dbus_fast.aio import MessageBus

from bzlogger.ble.ad import AdFields
from bzlogger.ble.bluez_watch import BluezWatch, disconnect_event
from bzlogger.ble.parser import Kind, classify
from bzlogger.ble.stats import Counters
from bzlogger.ble.watchdog import Action, Fault, Phase, ScanPolicy, Step
from bzlogger.clock import Clock
from bzlogger.config import BleSettings
from bzlogger.logsetup import get_logger
from bzlogger.model import Platform, Protocol, Sighting

log = get_logger("ble.scanner")

#: Discovery filter: every report (RSSI floor at the minimum) and every payload.
DISCOVERY_FILTERS: BlueZDiscoveryFilters = {"RSSI": -127, "DuplicateData": True}
#: Real seconds allowed for a D-Bus discovery call before it counts as failed.
CALL_LIMIT_S = 10.0
#: Devices whose connection state is remembered to tell adverts from GATT activity.
_DEVICE_MEMORY = 4096


@dataclass(frozen=True, slots=True)
class IosAdvert:
    """An advertisement of a Bluezone iOS phone: its ID needs a GATT read. ``device`` is
    bleak's handle for connecting (None when replayed without BlueZ)."""

    address: str
    path: str
    rssi: int
    time: float
    tx_power: int | None
    device: BLEDevice | None = None


@dataclass(frozen=True, slots=True)
class ScannerHealth:
    """For the systemd watchdog and ``bzlogger status``: ``ok`` when advertisements
    arrive, or the scanner is knowingly idle (adapter off, bluetoothd away) or
    recovering within its policy."""

    ok: bool
    phase: str
    reason: str
    last_advert_age_s: float | None


IosSink = Callable[[IosAdvert], None]


class BleScanner:
    """Scan ``settings.scan`` protocols on ``settings.adapter`` into ``queue`` until
    cancelled, recovering by itself. ``ios_sink`` receives Bluezone iOS adverts (the GATT
    reader); without one they are only counted."""

    def __init__(self, settings: BleSettings, clock: Clock, queue: asyncio.Queue[Sighting],
                 *, ios_sink: IosSink | None = None, backoff_base_s: float = 0.5) -> None:
        self.settings = settings
        self.clock = clock
        self.queue = queue
        self.ios_sink = ios_sink
        self.protocols = frozenset(Protocol(p) for p in settings.scan)
        self.counters = Counters()
        self.policy = ScanPolicy(settings.watchdog_s, backoff_base=backoff_base_s)
        self.watch = BluezWatch(settings.adapter, self._wake)
        self._scanner: BleakScanner | None = None
        self._event = asyncio.Event()
        self._generation = 0
        self._powered: bool | None = None
        self._links: OrderedDict[str, tuple[bool, bool]] = OrderedDict()
        self._tick = clock.monotonic()
        self._running = False

    # -- public API -----------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters: adverts, noise, malformed.*, seen.*, sightings.*, dropped, restarts..."""
        return self.counters.snapshot()

    @property
    def scanning(self) -> bool:
        """True while a discovery session is believed to be running."""
        return self._scanner is not None and self.policy.phase is Phase.SCANNING

    def health(self) -> ScannerHealth:
        """Whether the scanner is doing its job (see :class:`ScannerHealth`)."""
        now = self.clock.monotonic()
        last = self.policy.last_advert
        age = None if last is None else now - last
        phase = self.policy.phase
        if not self._running:
            return ScannerHealth(False, phase.value, "scanner is not running", age)
        if now - self._tick > max(60.0, 2 * self.settings.watchdog_s):
            return ScannerHealth(False, phase.value, "supervisor loop is stuck", age)
        if phase is Phase.WAITING_ADAPTER:
            return ScannerHealth(True, phase.value, "adapter powered off: waiting", age)
        if phase is Phase.WAITING_BLUEZ:
            return ScannerHealth(True, phase.value, "bluetoothd not running: waiting", age)
        if phase is Phase.STOPPED:
            ok = self.policy.failures < 20
            return ScannerHealth(ok, phase.value, self.policy.last_error or "starting", age)
        quiet = age is not None and age <= self.policy.silence_limit()
        return ScannerHealth(True, phase.value,
                             "advertisements arriving" if quiet else "quiet: watchdog armed",
                             age)

    async def run(self) -> None:
        """Scan until cancelled; never returns otherwise."""
        self._running = True
        try:
            while True:
                await self._supervise_once()
        except Exception:
            log.exception("scanner supervisor failed")
            raise
        finally:
            self._running = False
            await asyncio.shield(self._stop_scanner())
            self.watch.close()

    # -- supervision --------------------------------------------------------------

    async def _supervise_once(self) -> None:
        self._event.clear()
        self._tick = self.clock.monotonic()
        await self._sync_watch()
        now = self.clock.monotonic()
        step = self.policy.next_step(now)
        if step.action is Action.WAIT:
            await self._wait(step.at)
            return
        self._log_step(step)
        self.policy.begin(step)
        self.counters.add(f"recovery.{step.action.value}")
        if step.action is Action.POWER_CYCLE:
            await self._power_cycle(step)
            return
        if step.action is Action.RESTART and self.policy.last_fault is Fault.IN_PROGRESS:
            # bluetoothd answers InProgress when it still holds a discovery session for
            # our connection; closing bleak's connection ends that session for sure.
            await self._drop_scanner(reset_bleak=True)
        else:
            await self._stop_scanner()
        try:
            await self._start_scanner()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            fault = fault_of(error)
            self.counters.add(f"start_failed.{fault.value}")
            log.warning("discovery did not start", fault=fault.value, error=str(error))
            self.policy.failed(self.clock.monotonic(), fault, describe(error))
            if fault in (Fault.BLUEZ_GONE, Fault.BUS_LOST):
                self.watch.close()
            return
        self.policy.started(self.clock.monotonic())
        log.info("scanning", adapter=self.settings.adapter,
                 protocols=sorted(p.value for p in self.protocols))

    async def _sync_watch(self) -> None:
        """Connect the BlueZ watch if needed and feed its news to the policy."""
        now = self.clock.monotonic()
        if not self.watch.connected:
            if self._scanner is not None:
                log.warning("lost the D-Bus connection; rebuilding the scanner")
                await self._drop_scanner(reset_bleak=True)
                self.policy.failed(now, Fault.BUS_LOST, "D-Bus connection lost")
            try:
                await self.watch.connect()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.policy.failed(now, Fault.BUS_LOST, f"cannot connect to D-Bus: {error}")
                return
            self._generation = -1  # forces a bluez resync below
            self._powered = None
        if self._scanner is not None and not _bleak_bus_connected():
            log.warning("bleak lost its D-Bus connection; rebuilding the scanner")
            await self._drop_scanner(reset_bleak=False)
            self.policy.failed(now, Fault.BUS_LOST, "bleak's D-Bus connection lost")
        if self.watch.generation != self._generation:
            if self._generation > 0:
                log.warning("bluetoothd restarted; rebuilding the scanner")
                self.counters.add("bluez_restarts")
            self._generation = self.watch.generation
            await self._drop_scanner(reset_bleak=self._scanner is not None)
            self.policy.bluez_changed(now, self.watch.owner is not None)
        if self.watch.owner is None and self.policy.bluez_present:
            log.warning("bluetoothd left the bus; waiting for it")
            await self._drop_scanner(reset_bleak=False)
            self.policy.bluez_changed(now, False)
        if self.watch.powered is not None and self.watch.powered != self._powered:
            if self.watch.powered is False:
                log.warning("adapter powered off; waiting for it", adapter=self.settings.adapter)
                await self._drop_scanner(reset_bleak=False)
            elif self._powered is False:
                log.info("adapter powered on again", adapter=self.settings.adapter)
            self.policy.powered_changed(now, self.watch.powered)
        self._powered = self.watch.powered

    def _log_step(self, step: Step) -> None:
        if step.level == 0:
            log.info("starting discovery", reason=step.reason)
        else:
            log.warning("scanner recovery", action=step.action.value, level=step.level,
                        reason=step.reason)

    async def _power_cycle(self, step: Step) -> None:
        await self._drop_scanner(reset_bleak=False)
        try:
            await self.watch.set_powered(False)
            await self.clock.sleep(1.0)
            await self.watch.set_powered(True)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("adapter power cycle failed", error=str(error))
            self.policy.failed(self.clock.monotonic(), fault_of(error), describe(error))
            return
        self._powered = True
        self.policy.power_cycled(self.clock.monotonic())

    async def _start_scanner(self) -> None:
        scanner = BleakScanner(detection_callback=self._on_advertisement,
                               bluez={"adapter": self.settings.adapter,
                                      "filters": DISCOVERY_FILTERS})
        async with asyncio.timeout(CALL_LIMIT_S):
            await scanner.start()
        self._scanner = scanner

    async def _stop_scanner(self) -> None:
        scanner, self._scanner = self._scanner, None
        if scanner is None:
            return
        try:
            async with asyncio.timeout(CALL_LIMIT_S):
                await scanner.stop()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            # The session is usually already gone (bluetoothd restarted, adapter off).
            log.debug("stopping discovery failed", error=str(error))

    async def _drop_scanner(self, *, reset_bleak: bool) -> None:
        """Forget the discovery session; with ``reset_bleak`` also make bleak re-read
        BlueZ's objects (its cache does not notice a bluetoothd restart)."""
        await self._stop_scanner()
        self._links.clear()
        if reset_bleak:
            await reset_bleak_manager()

    def _wake(self) -> None:
        self._event.set()

    async def _wait(self, until_mono: float) -> None:
        bleak_bus = _bleak_bus()
        also = ([disconnect_event(bleak_bus)]
                if self._scanner is not None and bleak_bus is not None else [])
        await self.watch.sleep_until(self.clock, until_mono, self._event, *also)

    # -- advertisements -------------------------------------------------------

    def _on_advertisement(self, device: BLEDevice, data: AdvertisementData) -> None:
        props = _device_props(data)
        if props is not None:
            path = str(data.platform_data[0])
            link = (bool(props.get("Connected", False)), bool(props.get("ServicesResolved", False)))
            previous = self._links.get(path)
            self._links[path] = link
            self._links.move_to_end(path)
            if len(self._links) > _DEVICE_MEMORY:
                self._links.popitem(last=False)
            if previous is not None and previous != link:
                # A connection state change (our GATT reads), not an advertisement.
                self.counters.add("skipped.link_change")
                return
            if "RSSI" not in props:
                self.counters.add("skipped.no_rssi")
                return
        else:
            path = device.address
        self.handle(AdFields(service_uuids=list(data.service_uuids),
                             manufacturer_data=dict(data.manufacturer_data),
                             service_data=dict(data.service_data),
                             local_name=data.local_name, tx_power=data.tx_power),
                    rssi=data.rssi, address=device.address, path=path, device=device)

    def handle(self, fields: AdFields, *, rssi: int, address: str, path: str,
               device: BLEDevice | None = None) -> None:
        """Classify one advertisement and queue what it carries (also the entry point
        for tests and replays)."""
        now = self.clock.now()
        self.policy.advert(self.clock.monotonic())
        self.counters.add("adverts")
        result = classify(fields)
        for reason in result.malformed:
            self.counters.add(f"malformed.{reason}")
        if result.is_noise:
            self.counters.add("noise")
            return
        for found in result.found:
            self.counters.add(f"seen.{found.kind.value}")
            if found.protocol not in self.protocols:
                self.counters.add(f"ignored.{found.protocol.value}")
                continue
            if found.kind is Kind.BLUEZONE_IOS:
                if self.ios_sink is not None:
                    self.ios_sink(IosAdvert(address, path, rssi, now, fields.tx_power, device))
                continue
            assert found.identifier is not None
            self.offer(Sighting(found.protocol, found.identifier, rssi, now,
                                tx_power=fields.tx_power, aem=found.aem,
                                platform=found.platform))

    def offer(self, sighting: Sighting) -> None:
        """Queue ``sighting``; drop and count it when the queue is full."""
        try:
            self.queue.put_nowait(sighting)
        except asyncio.QueueFull:
            self.counters.add("dropped")
            return
        self.counters.add(f"sightings.{sighting.protocol.value}")
        if sighting.platform is Platform.IOS:
            self.counters.add("sightings.bluezone_ios")


def _device_props(data: AdvertisementData) -> dict[str, Any] | None:
    platform = data.platform_data
    if len(platform) == 2 and isinstance(platform[1], dict):
        return platform[1]
    return None


def _bleak_bus() -> MessageBus | None:
    """bleak's shared BlueZ manager connection for this event loop, if it has one.

    bleak offers no public accessor; ``_global_instances`` and ``_bus`` are its names
    from 0.22 to 3.x. Used only to notice a lost connection and to force a resync."""
    from bleak.backends.bluezdbus import manager as bluez_manager

    instance = bluez_manager._global_instances.get(asyncio.get_running_loop())
    bus = getattr(instance, "_bus", None) if instance is not None else None
    return bus if isinstance(bus, MessageBus) else None


def _bleak_bus_connected() -> bool:
    bus = _bleak_bus()
    return bus is not None and bus.connected


async def reset_bleak_manager() -> None:
    """Make bleak's shared BlueZ manager reconnect and re-read every object.

    bleak caches BlueZ's object tree and does not watch ``NameOwnerChanged``, so after a
    bluetoothd restart its cache holds objects that no longer exist. Dropping its bus
    connection runs bleak's own reset path; its next use reconnects.
    """
    bus = _bleak_bus()
    if bus is not None and bus.connected:
        bus.disconnect()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CALL_LIMIT_S):
                await disconnect_event(bus).wait()


_FAULTS_BY_DBUS_ERROR = {
    "org.bluez.Error.InProgress": Fault.IN_PROGRESS,
    "org.bluez.Error.NotReady": Fault.NOT_READY,
    "org.freedesktop.DBus.Error.ServiceUnknown": Fault.BLUEZ_GONE,
    "org.freedesktop.DBus.Error.NameHasNoOwner": Fault.BLUEZ_GONE,
    "org.freedesktop.DBus.Error.UnknownObject": Fault.NO_ADAPTER,
    "org.freedesktop.DBus.Error.Disconnected": Fault.BUS_LOST,
    "org.freedesktop.DBus.Error.NoReply": Fault.OTHER,
}


def fault_of(error: BaseException) -> Fault:
    """How recovery should treat ``error`` from bleak or dbus-fast."""
    if isinstance(error, BleakDBusError):
        return _FAULTS_BY_DBUS_ERROR.get(error.dbus_error, Fault.OTHER)
    name = getattr(error, "name", None)
    if isinstance(name, str) and name in _FAULTS_BY_DBUS_ERROR:
        return _FAULTS_BY_DBUS_ERROR[name]
    if isinstance(error, BleakBluetoothNotAvailableError):
        return Fault.POWERED_OFF if "powered" in str(error).lower() else Fault.NO_ADAPTER
    if isinstance(error, BleakError) and "not found" in str(error):
        return Fault.NO_ADAPTER
    if isinstance(error, EOFError | ConnectionError | BrokenPipeError):
        return Fault.BUS_LOST
    return Fault.OTHER


def describe(error: BaseException) -> str:
    """One line naming the error, for logs and status."""
    if isinstance(error, BleakDBusError):
        return f"{error.dbus_error}: {error.dbus_error_details or ''}".rstrip(": ")
    if isinstance(error, TimeoutError):
        return "BlueZ did not answer in time"
    return f"{type(error).__name__}: {error}"
