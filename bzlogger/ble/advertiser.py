"""The kiosk's own beacons on the air, through BlueZ ``LEAdvertisingManager1``.

Each beacon (a :class:`~bzlogger.ids.schedule.Beacon`) becomes one non-connectable
(``broadcast``) advertisement:

- Bluezone, Android format: ``03 03 56 4E 0F FF B5 22 <12-byte ID>`` (16-bit UUID 0x4E56
  listed, manufacturer data of company 0x22B5);
- GAEN: ``03 03 6F FD 17 16 6F FD <16-byte RPI><4-byte AEM>``.

Non-connectable adverts get a fresh non-resolvable random address each time BlueZ sets
up an instance, so every ID change is an unregister of the old object and a register of
a new one: an address is never seen with two IDs, and (outside faults) an ID is never
seen under two addresses. Registration is checked (BlueZ's reply, then
``ActiveInstances``), ``Release()`` and bluetoothd restarts trigger a new registration,
and refusals (for example the broken extended advertising of some Raspberry Pi kernels)
are reported in :meth:`Advertiser.state` with BlueZ's error.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from bzlogger.ble.beacon_payload import advertisement_properties
from bzlogger.ble.bluez_watch import BLUEZ, PROPERTIES_IFACE, BluezWatch, DBusCallError, call
from bzlogger.clock import Clock
from bzlogger.ids import bluezone
from bzlogger.ids.schedule import Beacon, DayKeys, beacons_at
from bzlogger.logsetup import get_logger, redact
from bzlogger.model import Protocol

ADVERTISEMENT_IFACE = "org.bluez.LEAdvertisement1"
MANAGER_IFACE = "org.bluez.LEAdvertisingManager1"
INTROSPECTABLE_IFACE = "org.freedesktop.DBus.Introspectable"
OBJECT_ROOT = "/org/bzlogger/advertisement"

log = get_logger("ble.advertiser")

BeaconProvider = Callable[[float], Awaitable[Sequence[Beacon]]]
KeysForDay = Callable[[int], Awaitable[DayKeys]]


def schedule_provider(protocols: Sequence[str], keys_for_day: KeysForDay, *,
                      bluezone_max: int = bluezone.DEFAULT_MAX,
                      tx_power: int = -8) -> BeaconProvider:
    """A :data:`BeaconProvider` over the kiosk's key schedule: ``keys_for_day(day_start)``
    returns that UTC day's :class:`DayKeys` (the daemon persists them before returning);
    ``protocols`` are the ``[ble] advertise`` entries."""
    wanted = [Protocol(p) for p in protocols]

    async def provide(now: float) -> list[Beacon]:
        keys = await keys_for_day(bluezone.utc_midnight(now))
        return beacons_at(keys, now, wanted, bluezone_max=bluezone_max, tx_power=tx_power)

    return provide


class AdvertisingStatus(StrEnum):
    """Overall advertising health, for ``bzlogger status``."""

    OFF = "off"            # nothing to advertise
    PENDING = "pending"    # registering, or waiting for bluetoothd / the adapter
    ACTIVE = "active"      # every beacon registered and counted by BlueZ
    FAILED = "failed"      # BlueZ refused (``error`` says why); retried with backoff


@dataclass(frozen=True, slots=True)
class AdvertisingState:
    """A snapshot of the advertiser for status output (no identifiers)."""

    status: AdvertisingStatus
    error: str | None = None
    active: tuple[str, ...] = ()
    next_rotation: float | None = None
    registrations: int = 0
    failures: int = 0
    releases: int = 0
    since: float = 0.0


_INTROSPECTION = """<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node>
 <interface name="org.bluez.LEAdvertisement1"><method name="Release"/></interface>
 <interface name="org.freedesktop.DBus.Properties">
  <method name="Get"><arg direction="in" type="s"/><arg direction="in" type="s"/>
   <arg direction="out" type="v"/></method>
  <method name="GetAll"><arg direction="in" type="s"/><arg direction="out" type="a{sv}"/>
  </method>
 </interface>
 <interface name="org.freedesktop.DBus.Introspectable">
  <method name="Introspect"><arg direction="out" type="s"/></method></interface>
</node>"""


@dataclass(slots=True)
class _Registration:
    beacon: Beacon
    path: str
    generation: int
    props: dict[str, Variant]
    registered_at: float
    released: bool = False


@dataclass(slots=True)
class _Counts:
    registrations: int = 0
    failures: int = 0
    releases: int = 0
    unregistrations: int = 0


class Advertiser:
    """Keeps the configured beacons registered with BlueZ.

    Use :meth:`run` with a beacon provider (the daemon's key schedule); it rotates at
    each beacon's ``valid_until`` and recovers from bluetoothd restarts, adapter power
    cycles, ``Release()`` and a lost bus by itself. :meth:`set_beacons` is the one-shot
    form for callers that drive rotation themselves (call :meth:`connect` first).
    """

    def __init__(self, adapter: str, clock: Clock, *, verify_s: float = 30.0,
                 backoff_max_s: float = 60.0) -> None:
        self.clock = clock
        self.watch = BluezWatch(adapter, self._wake)
        self.verify_s = verify_s
        self.backoff_max_s = backoff_max_s
        self._registrations: dict[Protocol, _Registration] = {}
        self._objects: dict[str, _Registration] = {}
        self._wanted: dict[Protocol, Beacon] = {}
        self._paths = itertools.count(1)
        self._counts = _Counts()
        self._status = AdvertisingStatus.OFF
        self._error: str | None = None
        self._since = clock.now()
        self._intervals = True
        self._event = asyncio.Event()
        self._handler_bus: MessageBus | None = None

    # -- public API -----------------------------------------------------------

    def state(self) -> AdvertisingState:
        """The current advertising state (safe to call at any time)."""
        live = tuple(sorted(p.value for p, r in self._registrations.items() if not r.released))
        until = [b.valid_until for b in self._wanted.values()]
        return AdvertisingState(self._status, self._error, live,
                                min(until) if until else None, self._counts.registrations,
                                self._counts.failures, self._counts.releases, self._since)

    async def connect(self) -> None:
        """Connect to the system bus (again) and read bluetoothd's state."""
        self._forget_registrations()
        bus = await self.watch.connect()
        bus.add_message_handler(self._on_message)
        self._handler_bus = bus

    async def close(self) -> None:
        """Unregister every advertisement and drop the bus connection."""
        for protocol in list(self._registrations):
            await self._unregister(protocol)
        self.watch.close()
        self._set_status(AdvertisingStatus.OFF, None)

    async def set_beacons(self, beacons: Sequence[Beacon]) -> AdvertisingState:
        """Advertise exactly ``beacons`` (one per protocol) now: new identifiers get a new
        registration, unchanged live ones are kept, protocols left out are withdrawn.
        Raises :class:`DBusCallError` when BlueZ refuses (also recorded in the state)."""
        wanted = {b.protocol: b for b in beacons}
        if len(wanted) != len(beacons):
            raise ValueError("at most one beacon per protocol")
        self._wanted = wanted
        for protocol in [p for p in self._registrations if p not in wanted]:
            await self._unregister(protocol)
        if not wanted:
            self._set_status(AdvertisingStatus.OFF, None)
            return self.state()
        try:
            for protocol, beacon in wanted.items():
                current = self._registrations.get(protocol)
                if (current is not None and not current.released
                        and current.generation == self.watch.generation
                        and current.beacon.identifier == beacon.identifier):
                    continue
                if current is not None:
                    await self._unregister(protocol)
                await self._register(beacon)
            await self._verify()
        except (DBusCallError, TimeoutError, OSError) as error:
            self._counts.failures += 1
            self._set_status(AdvertisingStatus.FAILED, _describe(error))
            raise
        self._set_status(AdvertisingStatus.ACTIVE, None)
        return self.state()

    async def run(self, provider: BeaconProvider) -> None:
        """Advertise what ``provider(now)`` returns, rotating at each beacon's
        ``valid_until`` and recovering from faults, until cancelled."""
        failures = 0
        retry_at = 0.0
        try:
            while True:
                self._event.clear()
                if not self.watch.connected:
                    try:
                        await self.connect()
                        failures = 0
                    except Exception as error:  # any connect failure: retry with backoff
                        failures += 1
                        self._set_status(AdvertisingStatus.PENDING,
                                         f"no D-Bus connection: {_describe(error)}")
                        await self._sleep(self._backoff(failures))
                        continue
                if self.watch.owner is None or not self.watch.powered:
                    self._forget_registrations()
                    reason = ("bluetoothd is not running" if self.watch.owner is None
                              else f"adapter {self.watch.adapter} is not powered")
                    self._set_status(AdvertisingStatus.PENDING, reason)
                    await self._wait(self.clock.monotonic() + 2.0)
                    if self.watch.connected:
                        with contextlib.suppress(Exception):
                            await self.watch.refresh()
                    continue
                now = self.clock.now()
                mono = self.clock.monotonic()
                if mono >= retry_at:
                    try:
                        beacons = await self._due_beacons(provider, now)
                        await self.set_beacons(beacons)
                        failures = 0
                    except (DBusCallError, TimeoutError, OSError) as error:
                        failures += 1
                        retry_at = mono + self._backoff(failures)
                        log.warning("advertising failed", error=_describe(error),
                                    retry_in_s=round(retry_at - mono, 1))
                        if self._intervals and _maybe_interval_problem(error):
                            # Some kernels refuse custom intervals (extended advertising
                            # paths); fall back to BlueZ's defaults.
                            self._intervals = False
                            retry_at = mono
                            log.warning("retrying without custom advertising intervals")
                wake = mono + self.verify_s
                if retry_at > mono:
                    wake = min(wake, retry_at)
                if self._wanted:
                    wake = min(wake, mono + max(0.0, min(
                        b.valid_until for b in self._wanted.values()) - now))
                await self._wait(wake)
                if self._status is AdvertisingStatus.ACTIVE:
                    with contextlib.suppress(DBusCallError, TimeoutError, OSError):
                        await self._verify()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.close())

    # -- internals --------------------------------------------------------------

    async def _due_beacons(self, provider: BeaconProvider, now: float) -> list[Beacon]:
        """Keep every beacon until its ``valid_until``; ask the provider for the rest."""
        keep = {p: b for p, b in self._wanted.items() if now < b.valid_until}
        fresh = await provider(now)
        out = dict(keep)
        for beacon in fresh:
            if beacon.protocol not in keep:
                out[beacon.protocol] = beacon
        # a protocol no longer configured is dropped even if still valid
        configured = {b.protocol for b in fresh}
        return [b for p, b in out.items() if p in configured]

    async def _register(self, beacon: Beacon) -> None:
        bus = self._bus()
        path = f"{OBJECT_ROOT}/{beacon.protocol.value}{next(self._paths)}"
        registration = _Registration(beacon, path, self.watch.generation,
                                     advertisement_properties(beacon, intervals=self._intervals),
                                     self.clock.now())
        # bluetoothd reads the object during RegisterAdvertisement: export it first.
        self._objects[path] = registration
        try:
            await call(bus, Message(destination=BLUEZ, path=self.watch.path,
                                    interface=MANAGER_IFACE, member="RegisterAdvertisement",
                                    signature="oa{sv}", body=[path, {}]), limit_s=15.0)
        except BaseException:
            self._objects.pop(path, None)
            raise
        self._registrations[beacon.protocol] = registration
        self._counts.registrations += 1
        log.info("advertising", protocol=beacon.protocol.value,
                 valid_until=round(beacon.valid_until))
        log.debug("advertising id", protocol=beacon.protocol.value,
                  id=redact(beacon.identifier), path=path)

    async def _unregister(self, protocol: Protocol) -> None:
        registration = self._registrations.pop(protocol, None)
        if registration is None:
            return
        try:
            if (not registration.released and self.watch.connected
                    and registration.generation == self.watch.generation):
                await call(self._bus(), Message(
                    destination=BLUEZ, path=self.watch.path, interface=MANAGER_IFACE,
                    member="UnregisterAdvertisement", signature="o", body=[registration.path]))
                self._counts.unregistrations += 1
        except DBusCallError as error:
            # DoesNotExist: bluetoothd already dropped it; nothing left to withdraw.
            log.debug("unregister refused", error=str(error))
        finally:
            self._objects.pop(registration.path, None)

    async def _verify(self) -> None:
        """Check that BlueZ counts at least our live registrations as active."""
        mine = sum(1 for r in self._registrations.values() if not r.released)
        if not mine:
            return
        reply = await call(self._bus(), Message(
            destination=BLUEZ, path=self.watch.path, interface=PROPERTIES_IFACE, member="Get",
            signature="ss", body=[MANAGER_IFACE, "ActiveInstances"]))
        active = int(reply.body[0].value)
        if active < mine:
            # BlueZ lost some of ours without telling: register them again.
            for registration in self._registrations.values():
                registration.released = True
            self._wake()
            raise DBusCallError("bzlogger.AdvertisingInactive",
                                f"BlueZ reports {active} active advertisement(s), "
                                f"expected {mine}")

    def _forget_registrations(self) -> None:
        """bluetoothd, the adapter or the bus went away: our registrations are gone."""
        if self._registrations:
            log.info("advertisements lost", protocols=sorted(p.value for p in self._registrations))
        self._registrations.clear()
        self._objects.clear()

    def _bus(self) -> MessageBus:
        bus = self.watch.bus
        if bus is None or not bus.connected:
            raise DBusCallError("org.freedesktop.DBus.Error.Disconnected", "no bus connection")
        return bus

    def _on_message(self, message: Message) -> Message | bool | None:
        if message.message_type != MessageType.METHOD_CALL:
            return None
        registration = self._objects.get(message.path or "")
        if registration is None:
            return None
        member, interface = message.member, message.interface
        if interface == ADVERTISEMENT_IFACE and member == "Release":
            registration.released = True
            self._counts.releases += 1
            log.warning("bluetoothd released an advertisement",
                        protocol=registration.beacon.protocol.value)
            self._wake()
            return Message.new_method_return(message)
        if interface == PROPERTIES_IFACE and member == "GetAll":
            if message.body[0] != ADVERTISEMENT_IFACE:
                return Message.new_method_return(message, "a{sv}", [{}])
            return Message.new_method_return(message, "a{sv}", [registration.props])
        if interface == PROPERTIES_IFACE and member == "Get":
            value = registration.props.get(message.body[1])
            if message.body[0] != ADVERTISEMENT_IFACE or value is None:
                return Message.new_error(message, "org.freedesktop.DBus.Error.UnknownProperty",
                                         f"no property {message.body[1]}")
            return Message.new_method_return(message, "v", [value])
        if interface == INTROSPECTABLE_IFACE and member == "Introspect":
            return Message.new_method_return(message, "s", [_INTROSPECTION])
        return Message.new_error(message, "org.freedesktop.DBus.Error.UnknownMethod",
                                 f"{interface}.{member} is not supported")

    def _set_status(self, status: AdvertisingStatus, error: str | None) -> None:
        if status != self._status or error != self._error:
            self._since = self.clock.now()
            if status is AdvertisingStatus.FAILED:
                log.error("advertising failed", error=error)
            elif status is not AdvertisingStatus.ACTIVE or self._status is not status:
                log.info("advertising status", status=status.value, reason=error)
        self._status = status
        self._error = error

    def _wake(self) -> None:
        self._event.set()

    def _backoff(self, failures: int) -> float:
        return float(min(self.backoff_max_s, 0.5 * 2 ** max(0, failures - 1)))

    async def _sleep(self, seconds: float) -> None:
        await self._wait(self.clock.monotonic() + seconds)

    async def _wait(self, until_mono: float) -> None:
        """Wait until clock-monotonic ``until_mono``, an event, or a lost bus."""
        if until_mono <= self.clock.monotonic() or self._event.is_set():
            return
        await self.watch.sleep_until(self.clock, until_mono, self._event)
        if not self.watch.connected:
            self._forget_registrations()
        # a released registration is no longer on the air: drop it so set_beacons
        # registers the beacon again
        for protocol, registration in list(self._registrations.items()):
            if registration.released or registration.generation != self.watch.generation:
                self._registrations.pop(protocol)
                self._objects.pop(registration.path, None)


def _describe(error: BaseException) -> str:
    if isinstance(error, DBusCallError):
        return str(error)
    if isinstance(error, TimeoutError):
        return "BlueZ did not answer in time"
    return f"{type(error).__name__}: {error}"


def _maybe_interval_problem(error: BaseException) -> bool:
    return isinstance(error, DBusCallError) and error.name in (
        "org.bluez.Error.Failed", "org.bluez.Error.InvalidArguments")

