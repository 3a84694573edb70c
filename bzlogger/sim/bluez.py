"""A fake ``org.bluez`` (bluetoothd) on a D-Bus connection of its own.

It serves raw D-Bus messages from an object tree rather than dbus-fast
``ServiceInterface`` exports, so that it can do what bluetoothd does and exported
interfaces cannot: omit absent optional properties, emit ``InterfacesAdded`` from ``/``
with all interfaces of an object, signal only the properties that changed, and reply to
a method after calling back the caller (``RegisterAdvertisement`` reads the caller's
object before replying). Behaviour follows ``shared/reference/bluez.md``; deviations
are listed in ``docs/simulator.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import BusType, Message, MessageFlag, MessageType, Variant
from dbus_fast.aio import MessageBus

from bzlogger.clock import Clock
from bzlogger.sim.adverts import AdContent, AdvertError, RegisteredAdvert, parse_registration

log = logging.getLogger(__name__)

BLUEZ = "org.bluez"
ADAPTER = "org.bluez.Adapter1"
DEVICE = "org.bluez.Device1"
ADV_MANAGER = "org.bluez.LEAdvertisingManager1"
ADVERTISEMENT = "org.bluez.LEAdvertisement1"
GATT_SERVICE = "org.bluez.GattService1"
GATT_CHARACTERISTIC = "org.bluez.GattCharacteristic1"
PROPERTIES = "org.freedesktop.DBus.Properties"
OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"
INTROSPECTABLE = "org.freedesktop.DBus.Introspectable"
DBUS = "org.freedesktop.DBus"

ERR = "org.bluez.Error."
UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"
UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
UNKNOWN_PROPERTY = "org.freedesktop.DBus.Error.UnknownProperty"
INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"

#: bluetoothd removes a device this many (clock) seconds after it was last seen.
DEVICE_TIMEOUT_S = 30.0
#: Without an RSSI/Pathloss filter, RSSI changes smaller than this are not signalled.
RSSI_THRESHOLD_DB = 8
#: An LE connection that does not complete fails after this many clock seconds.
CONNECT_TIMEOUT_S = 20.0
#: The radio does not report advertisements weaker than this.
DEFAULT_SENSITIVITY_DBM = -100


class BluezError(Exception):
    """A D-Bus error reply: ``name`` such as ``org.bluez.Error.InProgress``."""

    def __init__(self, name: str, message: str = "") -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


# --------------------------------------------------------------------------------------
# What the world hands to the radio


@dataclass(frozen=True, slots=True)
class GattCharacteristicSpec:
    """A characteristic a remote device serves; ``read`` gives its value at read time."""

    uuid: str
    flags: tuple[str, ...]
    read: Callable[[], bytes]


@dataclass(frozen=True, slots=True)
class GattServiceSpec:
    """A primary service of a remote device."""

    uuid: str
    characteristics: tuple[GattCharacteristicSpec, ...]


@dataclass(frozen=True, slots=True)
class Report:
    """One advertisement received by the adapter.

    ``owner`` names the simulated device (a visitor id) for statistics and faults;
    ``gatt`` is its GATT database when it accepts connections.
    """

    address: str
    rssi: int
    content: AdContent
    owner: str = ""
    address_type: str = "random"
    gatt: tuple[GattServiceSpec, ...] | None = None


@dataclass(slots=True)
class DiscoveryFilter:
    """One client's ``SetDiscoveryFilter`` settings."""

    uuids: frozenset[str] = frozenset()
    rssi: int | None = None
    pathloss: int | None = None
    duplicate_data: bool = False


@dataclass(slots=True)
class AdvertRecord:
    """One advertisement registration as bluetoothd saw it (for tests and ground truth).

    ``history`` holds ``(time, content)`` for the registration and each accepted update.
    """

    adapter: str
    client: str
    path: str
    address: str
    type: str
    registered_at: float
    history: list[tuple[float, AdContent]]
    ended_at: float | None = None
    end_reason: str = ""
    rejected_updates: int = 0

    @property
    def content(self) -> AdContent:
        """The content on the air now."""
        return self.history[-1][1]


@dataclass(slots=True)
class BluezStats:
    """Counters of what the fake bluetoothd did."""

    reports: int = 0
    device_signals: int = 0
    devices_added: int = 0
    devices_removed: int = 0
    connect_attempts: Counter[str] = field(default_factory=Counter)
    connections: Counter[str] = field(default_factory=Counter)
    reads: Counter[str] = field(default_factory=Counter)
    restarts: int = 0


@dataclass(slots=True)
class _Device:
    path: str
    address: str
    owner: str
    last_seen: float
    rssi: int
    gatt: tuple[GattServiceSpec, ...] | None
    connected: bool = False
    connecting: asyncio.Future[None] | None = None
    gatt_paths: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Adapter:
    name: str
    address: str
    supported_instances: int
    powered: bool = True
    filters: dict[str, DiscoveryFilter] = field(default_factory=dict)
    sessions: set[str] = field(default_factory=set)
    devices: dict[str, _Device] = field(default_factory=dict)
    adverts: dict[tuple[str, str], AdvertRecord] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return f"/org/bluez/{self.name}"

    @property
    def discovering(self) -> bool:
        return self.powered and bool(self.sessions)


@dataclass(frozen=True, slots=True)
class AdapterConfig:
    """An adapter to simulate."""

    name: str = "hci0"
    address: str = "B8:27:EB:12:34:56"
    supported_instances: int = 5


# Fault hooks: GATT behaviours that real hardware shows. See bzlogger.sim.faults.
GATT_FAULTS = ("connect_timeout", "abort_by_local", "in_progress", "walk_away")


class FakeBluez:
    """bluetoothd's D-Bus face: adapters, devices, advertising manager, GATT client."""

    def __init__(
        self,
        clock: Clock,
        adapters: Sequence[AdapterConfig] = (AdapterConfig(),),
        *,
        sensitivity_dbm: int = DEFAULT_SENSITIVITY_DBM,
        seed: int = 0,
        connect_delay_s: float = 0.3,
    ) -> None:
        self.clock = clock
        self.adapter_configs = tuple(adapters)
        self.sensitivity_dbm = sensitivity_dbm
        self.connect_delay_s = connect_delay_s
        self.stats = BluezStats()
        #: Every advertisement registration ever made (also ended ones), oldest first.
        self.advert_log: list[AdvertRecord] = []
        #: Called with (owner) when a device's GATT fault says the phone walks away.
        self.on_walk_away: Callable[[str], None] | None = None
        #: Observers of every report delivered to a discovery session (after the
        #: sensitivity, silence and filter checks), with the adapter name: the ground truth
        #: of an RSSI series, whether or not bluetoothd signalled it.
        self.report_listeners: list[Callable[[Report, str], None]] = []
        #: Whether the device ``owner`` still answers at ``address`` (in range, not rotated
        #: away); None means always. A connection to an unreachable device times out.
        self.reachable: Callable[[str, str], bool] | None = None
        self._address_rng = hashlib.sha256(f"sim-adverts-{seed}".encode()).digest()
        self._address_counter = itertools.count()
        self._bus: MessageBus | None = None
        self._bus_address = ""
        self._objects: dict[str, dict[str, dict[str, Variant]]] = {}
        self._adapters: dict[str, _Adapter] = {}
        self._injected: dict[str, list[tuple[str, str]]] = {}
        self._gatt_faults: list[tuple[str, str | None]] = []
        self._silent_until = 0.0
        self._pending_walk_away: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- lifecycle

    async def start(self, bus_address: str | None = None) -> None:
        """Connect to the bus (``None``: the system bus of the environment), own
        ``org.bluez`` and publish the adapters."""
        if bus_address is not None:
            self._bus_address = bus_address
        if self._bus_address:
            bus = MessageBus(bus_address=self._bus_address)
        else:
            bus = MessageBus(bus_type=BusType.SYSTEM)
        await bus.connect()
        self._bus = bus
        bus.add_message_handler(self._on_message)
        await self._add_match(f"type='signal',sender='{DBUS}',member='NameOwnerChanged'")
        self._objects.clear()
        self._adapters.clear()
        # Like bluetoothd: own the name first, then the adapters appear (InterfacesAdded
        # from org.bluez, so clients matching on sender='org.bluez' see them).
        await bus.request_name(BLUEZ)
        self._add_object("/org/bluez", {"org.bluez.AgentManager1": {},
                                        "org.bluez.ProfileManager1": {}})
        for config in self.adapter_configs:
            adapter = _Adapter(config.name, config.address, config.supported_instances)
            self._adapters[adapter.path] = adapter
            self._add_object(adapter.path, self._adapter_interfaces(adapter))
        self._sweeper = asyncio.create_task(self._sweep_loop())

    async def stop(self) -> None:
        """Drop off the bus like a killed bluetoothd: no signals, objects simply vanish."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for adapter in self._adapters.values():
            for record in adapter.adverts.values():
                self._end_advert(record, "bluetoothd stopped")
            for device in adapter.devices.values():
                if device.connecting is not None and not device.connecting.done():
                    device.connecting.cancel()
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.disconnect()
            with contextlib.suppress(Exception):
                await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]

    async def restart(self, downtime_s: float = 1.0) -> None:
        """A ``bluetoothd`` restart: the name is dropped, every object vanishes without
        ``InterfacesRemoved``, and after ``downtime_s`` (clock seconds) a fresh
        bluetoothd owns the name with powered adapters and no sessions or adverts."""
        await self.stop()
        self.stats.restarts += 1
        await self.clock.sleep(downtime_s)
        await self.start()

    @property
    def running(self) -> bool:
        """True while connected to the bus and owning the name."""
        return self._bus is not None and self._bus.connected

    # ---------------------------------------------------------------- radio input

    def report(self, report: Report, adapter_name: str = "hci0") -> None:
        """The adapter received one advertisement: apply BlueZ's device rules."""
        adapter = self._adapters.get(f"/org/bluez/{adapter_name}")
        if adapter is None or not adapter.discovering or self._bus is None:
            return
        now = self.clock.now()
        if now < self._silent_until or report.rssi < self.sensitivity_dbm:
            return
        self.stats.reports += 1
        merged = self._merged_filter(adapter)
        if not self._passes(merged, report):
            return
        for listener in self.report_listeners:
            listener(report, adapter_name)
        every_rssi = merged.rssi is not None or merged.pathloss is not None
        device = adapter.devices.get(report.address)
        if device is None:
            self._add_device(adapter, report, now)
            return
        device.last_seen = now
        device.owner = report.owner or device.owner
        device.gatt = report.gatt
        props = self._objects[device.path][DEVICE]
        changed: dict[str, Variant] = {}
        if every_rssi or abs(report.rssi - device.rssi) >= RSSI_THRESHOLD_DB:
            device.rssi = report.rssi
            changed["RSSI"] = Variant("n", report.rssi)
        for name, variant in _content_properties(report.content).items():
            old = props.get(name)
            if name == "UUIDs" and old is not None:
                union = list(dict.fromkeys([*old.value, *variant.value]))
                variant = Variant("as", union)
            duplicate = merged.duplicate_data and name in ("ManufacturerData", "ServiceData")
            if duplicate or old is None or old.value != variant.value:
                changed[name] = variant
        if "Name" in changed:
            changed["Alias"] = Variant("s", changed["Name"].value)
        if changed:
            self._set_properties(device.path, DEVICE, changed)
            self.stats.device_signals += 1

    def silence(self, seconds: float) -> None:
        """The scanner stays 'Discovering' but hears nothing for ``seconds`` (clock)."""
        self._silent_until = self.clock.now() + seconds

    def expire_devices(self) -> None:
        """Remove devices not seen for :data:`DEVICE_TIMEOUT_S` (clock seconds)."""
        now = self.clock.now()
        for adapter in self._adapters.values():
            for device in list(adapter.devices.values()):
                busy = device.connected or device.connecting is not None
                if not busy and now - device.last_seen >= DEVICE_TIMEOUT_S:
                    self._remove_device(adapter, device)

    def device_gone(self, owner: str) -> None:
        """The device ``owner`` left radio range: drop any connection to it."""
        for adapter in self._adapters.values():
            for device in adapter.devices.values():
                if device.owner == owner and (device.connected or device.connecting):
                    self._drop_connection(device)

    # ---------------------------------------------------------------- faults

    def inject_error(self, method: str, error: str, times: int = 1, message: str = "") -> None:
        """Answer the next ``times`` calls of ``method`` (member name, e.g.
        ``StartDiscovery``) with the D-Bus error ``error``."""
        name = error if "." in error else ERR + error
        self._injected.setdefault(method, []).extend([(name, message or "injected")] * times)

    def inject_gatt_fault(self, kind: str, times: int = 1, owner: str | None = None) -> None:
        """Make the next ``times`` connections (to ``owner``, or to any device) fail the
        way real phones do; ``kind`` is one of :data:`GATT_FAULTS`."""
        if kind not in GATT_FAULTS:
            raise ValueError(f"unknown GATT fault {kind!r}; choose from {', '.join(GATT_FAULTS)}")
        self._gatt_faults.extend([(kind, owner)] * times)

    async def set_powered(self, powered: bool, adapter_name: str = "hci0") -> None:
        """Switch an adapter on or off as ``Powered`` = ``powered`` would."""
        adapter = self._adapters[f"/org/bluez/{adapter_name}"]
        await self._apply_powered(adapter, powered)

    # ---------------------------------------------------------------- queries

    def active_adverts(self) -> list[AdvertRecord]:
        """Registrations currently on the air (powered adapters only)."""
        return [record for adapter in self._adapters.values() if adapter.powered
                for record in adapter.adverts.values()]

    def device_paths(self, adapter_name: str = "hci0") -> dict[str, str]:
        """Address -> object path of the devices bluetoothd currently knows."""
        adapter = self._adapters.get(f"/org/bluez/{adapter_name}")
        return {} if adapter is None else {a: d.path for a, d in adapter.devices.items()}

    def discovery_sessions(self, adapter_name: str = "hci0") -> set[str]:
        """Unique bus names of the clients currently discovering on the adapter."""
        adapter = self._adapters.get(f"/org/bluez/{adapter_name}")
        return set() if adapter is None else set(adapter.sessions)

    # ---------------------------------------------------------------- object tree

    def _add_object(self, path: str, interfaces: dict[str, dict[str, Variant]]) -> None:
        self._objects[path] = interfaces
        self._signal("/", OBJECT_MANAGER, "InterfacesAdded", "oa{sa{sv}}", [path, interfaces])

    def _remove_object(self, path: str) -> None:
        interfaces = self._objects.pop(path, None)
        if interfaces is not None:
            self._signal("/", OBJECT_MANAGER, "InterfacesRemoved", "oas",
                         [path, list(interfaces)])

    def _set_properties(self, path: str, interface: str, changed: dict[str, Variant]) -> None:
        self._objects[path][interface].update(changed)
        self._signal(path, PROPERTIES, "PropertiesChanged", "sa{sv}as", [interface, changed, []])

    def _signal(self, path: str, interface: str, member: str, signature: str,
                body: list[Any]) -> None:
        if self._bus is None or not self._bus.connected:
            return
        self._bus.send(Message.new_signal(path, interface, member, signature, body))

    async def _add_match(self, rule: str) -> None:
        assert self._bus is not None
        await self._bus.call(Message(destination=DBUS, path="/org/freedesktop/DBus",
                                     interface=DBUS, member="AddMatch", signature="s",
                                     body=[rule]))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # e.g. a client that vanished while we called it back; bluetoothd logs and
            # carries on.
            log.debug("simulated bluetoothd task failed: %r", task.exception())

    async def _sweep_loop(self) -> None:
        # Check removal often enough in clock time (2 s) without busy-looping at high speed.
        while True:
            await asyncio.sleep(max(0.02, min(1.0, 2.0 / self.clock.speed)))
            self.expire_devices()

    # ---------------------------------------------------------------- adapters

    def _adapter_interfaces(self, adapter: _Adapter) -> dict[str, dict[str, Variant]]:
        return {
            ADAPTER: {
                "Address": Variant("s", adapter.address),
                "AddressType": Variant("s", "public"),
                "Name": Variant("s", "bzlogger-sim"),
                "Alias": Variant("s", "bzlogger-sim"),
                "Class": Variant("u", 0),
                "Powered": Variant("b", adapter.powered),
                "Discoverable": Variant("b", False),
                "DiscoverableTimeout": Variant("u", 180),
                "Pairable": Variant("b", False),
                "PairableTimeout": Variant("u", 0),
                "Discovering": Variant("b", adapter.discovering),
                "UUIDs": Variant("as", []),
                "Modalias": Variant("s", "usb:v1D6Bp0246d0542"),
                "Roles": Variant("as", ["central", "peripheral"]),
                "ExperimentalFeatures": Variant("as", []),
            },
            ADV_MANAGER: self._adv_manager_properties(adapter),
            "org.bluez.GattManager1": {},
        }

    def _adv_manager_properties(self, adapter: _Adapter) -> dict[str, Variant]:
        active = len(adapter.adverts) if adapter.powered else 0
        return {
            "ActiveInstances": Variant("y", active),
            "SupportedInstances": Variant("y", adapter.supported_instances - active),
            "SupportedIncludes": Variant("as", ["tx-power", "appearance", "local-name"]),
            "SupportedSecondaryChannels": Variant("as", []),
        }

    def _update_discovering(self, adapter: _Adapter) -> None:
        props = self._objects.get(adapter.path, {}).get(ADAPTER)
        if props is not None and props["Discovering"].value != adapter.discovering:
            self._set_properties(adapter.path, ADAPTER,
                                 {"Discovering": Variant("b", adapter.discovering)})
        # When discovery stops, devices stay until their temporary-device timeout (30 s
        # after last seen) removes them, as in bluetoothd; BleakClient relies on finding
        # the device object after its scan has stopped.

    async def _apply_powered(self, adapter: _Adapter, powered: bool) -> None:
        if adapter.powered == powered:
            return
        if not powered:
            for record in list(adapter.adverts.values()):
                await self._release(adapter, record, "adapter powered off")
            for device in list(adapter.devices.values()):
                self._remove_device(adapter, device)
            adapter.sessions.clear()
        adapter.powered = powered
        self._set_properties(adapter.path, ADAPTER, {"Powered": Variant("b", powered)})
        self._update_discovering(adapter)
        self._set_properties(adapter.path, ADV_MANAGER, self._adv_manager_properties(adapter))

    def _merged_filter(self, adapter: _Adapter) -> DiscoveryFilter:
        filters = [adapter.filters.get(client, DiscoveryFilter()) for client in adapter.sessions]
        merged = DiscoveryFilter()
        if filters and all(f.uuids for f in filters):
            merged.uuids = frozenset().union(*(f.uuids for f in filters))
        rssis = [f.rssi for f in filters]
        if filters and all(r is not None for r in rssis):
            merged.rssi = min(r for r in rssis if r is not None)
        pathlosses = [f.pathloss for f in filters]
        if filters and all(p is not None for p in pathlosses):
            merged.pathloss = max(p for p in pathlosses if p is not None)
        merged.duplicate_data = any(f.duplicate_data for f in filters)
        return merged

    @staticmethod
    def _passes(merged: DiscoveryFilter, report: Report) -> bool:
        if merged.uuids and not merged.uuids & set(report.content.service_uuids):
            return False
        if merged.rssi is not None and report.rssi < merged.rssi:
            return False
        if merged.pathloss is not None:
            tx = report.content.tx_power
            if tx is None or tx - report.rssi > merged.pathloss:
                return False
        return True

    # ---------------------------------------------------------------- devices

    def _add_device(self, adapter: _Adapter, report: Report, now: float) -> None:
        path = f"{adapter.path}/dev_{report.address.replace(':', '_')}"
        device = _Device(path, report.address, report.owner, now, report.rssi, report.gatt)
        adapter.devices[report.address] = device
        props: dict[str, Variant] = {
            "Address": Variant("s", report.address),
            "AddressType": Variant("s", report.address_type),
            "Alias": Variant("s", report.content.local_name or report.address.replace(":", "-")),
            "Paired": Variant("b", False),
            "Bonded": Variant("b", False),
            "Trusted": Variant("b", False),
            "Blocked": Variant("b", False),
            "LegacyPairing": Variant("b", False),
            "Connected": Variant("b", False),
            "ServicesResolved": Variant("b", False),
            "Adapter": Variant("o", adapter.path),
            "RSSI": Variant("n", report.rssi),
        }
        props.update(_content_properties(report.content))
        self.stats.devices_added += 1
        self._add_object(path, {DEVICE: props, PROPERTIES: {}})

    def _remove_device(self, adapter: _Adapter, device: _Device) -> None:
        adapter.devices.pop(device.address, None)
        self._drop_connection(device)
        self.stats.devices_removed += 1
        self._remove_object(device.path)

    def _find_device(self, path: str) -> tuple[_Adapter, _Device] | None:
        for adapter in self._adapters.values():
            for device in adapter.devices.values():
                if device.path == path:
                    return adapter, device
        return None

    def _drop_connection(self, device: _Device) -> None:
        if device.connecting is not None and not device.connecting.done():
            device.connecting.set_exception(BluezError(ERR + "Failed", "Operation canceled"))
        device.connecting = None
        if not device.connected:
            return
        for path in reversed(device.gatt_paths):
            self._remove_object(path)
        device.gatt_paths.clear()
        device.connected = False
        if device.path in self._objects:
            self._set_properties(device.path, DEVICE, {"ServicesResolved": Variant("b", False)})
            self._set_properties(device.path, DEVICE, {"Connected": Variant("b", False)})

    def _next_gatt_fault(self, owner: str) -> str | None:
        for index, (kind, target) in enumerate(self._gatt_faults):
            if target is None or target == owner:
                del self._gatt_faults[index]
                return kind
        return None

    async def _connect(self, adapter: _Adapter, device: _Device) -> None:
        if not adapter.powered:
            raise BluezError(ERR + "NotReady", "Resource Not Ready")
        if device.connected:
            raise BluezError(ERR + "AlreadyConnected", "Already Connected")
        if device.connecting is not None:
            raise BluezError(ERR + "InProgress", "In Progress")
        self.stats.connect_attempts[device.owner] += 1
        fault = self._next_gatt_fault(device.owner)
        if fault == "in_progress":
            raise BluezError(ERR + "InProgress", "In Progress")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        device.connecting = future
        gone = self.reachable is not None and not self.reachable(device.owner, device.address)
        if device.gatt is None or fault == "connect_timeout" or gone:
            # A non-connectable advertiser, a phone that rotated its address or left, or
            # one that stopped answering never completes the LE connection; bluetoothd
            # gives up after its own timeout.
            try:
                await asyncio.wait_for(asyncio.shield(future),
                                       CONNECT_TIMEOUT_S / self.clock.speed)
            except TimeoutError:
                raise BluezError(ERR + "Failed", "Page Timeout") from None
            finally:
                device.connecting = None
            raise BluezError(ERR + "Failed", "Operation canceled")
        await self.clock.sleep(self.connect_delay_s)
        device.connecting = None
        if future.done():
            future.result()  # cancelled by Disconnect: raises its error
        if device.path not in self._objects:
            raise BluezError(ERR + "Failed", "Device removed")
        device.connected = True
        self._set_properties(device.path, DEVICE, {"Connected": Variant("b", True)})
        if fault == "abort_by_local":
            # bluetoothd connected, then the controller dropped it: the caller sees
            # Connected go true and false, then the error (bleak retries on it).
            self._drop_connection(device)
            raise BluezError(ERR + "Failed", "le-connection-abort-by-local")
        self.stats.connections[device.owner] += 1
        if fault == "walk_away":
            self._pending_walk_away.add(device.path)
        self._spawn(self._resolve_services(device))

    async def _resolve_services(self, device: _Device) -> None:
        await asyncio.sleep(0)
        if not device.connected or device.gatt is None:
            return
        handle = 0x000A
        for service in device.gatt:
            service_path = f"{device.path}/service{handle:04x}"
            self._add_object(service_path, {GATT_SERVICE: {
                "UUID": Variant("s", service.uuid),
                "Device": Variant("o", device.path),
                "Primary": Variant("b", True),
                "Includes": Variant("ao", []),
                "Handle": Variant("q", handle),
            }, PROPERTIES: {}})
            device.gatt_paths.append(service_path)
            handle += 1
            for characteristic in service.characteristics:
                char_path = f"{service_path}/char{handle:04x}"
                self._add_object(char_path, {GATT_CHARACTERISTIC: {
                    "UUID": Variant("s", characteristic.uuid),
                    "Service": Variant("o", service_path),
                    "Value": Variant("ay", b""),
                    "Flags": Variant("as", list(characteristic.flags)),
                    "Handle": Variant("q", handle + 1),
                    "MTU": Variant("q", 23),
                }, PROPERTIES: {}})
                device.gatt_paths.append(char_path)
                handle += 2
        self._set_properties(device.path, DEVICE, {"ServicesResolved": Variant("b", True)})

    def _read_value(self, path: str) -> bytes:
        device_path = path.rsplit("/", 2)[0]
        found = self._find_device(device_path)
        if found is None or not found[1].connected:
            raise BluezError(ERR + "Failed", "Not connected")
        _, device = found
        if device_path in self._pending_walk_away:
            self._pending_walk_away.discard(device_path)
            self._drop_connection(device)
            if self.on_walk_away is not None:
                self.on_walk_away(device.owner)
            raise BluezError(ERR + "Failed", "Not connected")
        assert device.gatt is not None
        uuid = self._objects[path][GATT_CHARACTERISTIC]["UUID"].value
        for service in device.gatt:
            for characteristic in service.characteristics:
                if characteristic.uuid == uuid:
                    if "read" not in characteristic.flags:
                        raise BluezError(ERR + "NotPermitted", "Read not permitted")
                    value = characteristic.read()
                    self.stats.reads[device.owner] += 1
                    self._set_properties(path, GATT_CHARACTERISTIC, {"Value": Variant("ay", value)})
                    return value
        raise BluezError(ERR + "Failed", "Characteristic not found")

    # ---------------------------------------------------------------- advertising

    def _new_advert_address(self, connectable: bool) -> str:
        counter = next(self._address_counter)
        raw = bytearray(hashlib.sha256(self._address_rng + counter.to_bytes(8, "big")).digest()[:6])
        # Static random for connectable adverts, non-resolvable private otherwise.
        raw[0] = (raw[0] | 0xC0) if connectable else (raw[0] & 0x3F)
        return ":".join(f"{b:02X}" for b in raw)

    async def _register_advertisement(self, adapter: _Adapter, sender: str, path: str) -> None:
        if not adapter.powered:
            raise BluezError(ERR + "NotReady", "Resource Not Ready")
        self._check_can_register(adapter, sender, path)
        assert self._bus is not None
        try:
            reply = await asyncio.wait_for(self._bus.call(Message(
                destination=sender, path=path, interface=PROPERTIES, member="GetAll",
                signature="s", body=[ADVERTISEMENT])), 10.0)
        except TimeoutError:
            raise BluezError(ERR + "Failed", "Failed to parse advertisement.") from None
        if reply.message_type == MessageType.ERROR:
            raise BluezError(ERR + "Failed", "Failed to parse advertisement.")
        try:
            parsed = parse_registration(reply.body[0])
        except AdvertError as error:
            raise BluezError(error.name, error.message) from None
        if not adapter.powered:
            raise BluezError(ERR + "NotReady", "Resource Not Ready")
        self._check_can_register(adapter, sender, path)
        now = self.clock.now()
        record = AdvertRecord(adapter.name, sender, path,
                              self._new_advert_address(parsed.content.connectable),
                              parsed.type, now, [(now, parsed.content)])
        adapter.adverts[(sender, path)] = record
        self.advert_log.append(record)
        await self._add_match(f"type='signal',sender='{sender}',path='{path}',"
                              f"interface='{PROPERTIES}',member='PropertiesChanged'")
        self._set_properties(adapter.path, ADV_MANAGER, self._adv_manager_properties(adapter))

    def _check_can_register(self, adapter: _Adapter, sender: str, path: str) -> None:
        if (sender, path) in adapter.adverts:
            raise BluezError(ERR + "AlreadyExists", "Already Exists")
        if len(adapter.adverts) >= adapter.supported_instances:
            raise BluezError(ERR + "NotPermitted", "Maximum advertisements reached")

    def _unregister_advertisement(self, adapter: _Adapter, sender: str, path: str) -> None:
        record = adapter.adverts.pop((sender, path), None)
        if record is None:
            raise BluezError(ERR + "DoesNotExist", "Does Not Exist")
        self._end_advert(record, "unregistered")
        self._set_properties(adapter.path, ADV_MANAGER, self._adv_manager_properties(adapter))

    def _end_advert(self, record: AdvertRecord, reason: str) -> None:
        if record.ended_at is None:
            record.ended_at = self.clock.now()
            record.end_reason = reason

    async def _release(self, adapter: _Adapter, record: AdvertRecord, reason: str) -> None:
        adapter.adverts.pop((record.client, record.path), None)
        self._end_advert(record, reason)
        if self._bus is not None:
            self._bus.send(Message(destination=record.client, path=record.path,
                                   interface=ADVERTISEMENT, member="Release",
                                   flags=MessageFlag.NO_REPLY_EXPECTED))

    async def _refresh_advert(self, record: AdvertRecord) -> None:
        assert self._bus is not None
        reply = await self._bus.call(Message(
            destination=record.client, path=record.path, interface=PROPERTIES, member="GetAll",
            signature="s", body=[ADVERTISEMENT]))
        if record.ended_at is not None:
            return
        parsed: RegisteredAdvert | None = None
        if reply.message_type != MessageType.ERROR:
            with contextlib.suppress(AdvertError):
                parsed = parse_registration(reply.body[0])
        if parsed is None:
            # bluetoothd logs the failure and keeps the previous data on the air.
            record.rejected_updates += 1
            return
        record.history.append((self.clock.now(), parsed.content))

    def _client_left(self, name: str) -> None:
        for adapter in self._adapters.values():
            adapter.filters.pop(name, None)
            if name in adapter.sessions:
                adapter.sessions.discard(name)
                self._update_discovering(adapter)
            left = [record for key, record in adapter.adverts.items() if key[0] == name]
            for record in left:
                del adapter.adverts[(record.client, record.path)]
                self._end_advert(record, "client left the bus")
            if left:
                self._set_properties(adapter.path, ADV_MANAGER,
                                     self._adv_manager_properties(adapter))

    # ---------------------------------------------------------------- dispatch

    def _on_message(self, msg: Message) -> Message | bool | None:
        if msg.message_type == MessageType.SIGNAL:
            self._on_signal(msg)
            return None
        if msg.message_type != MessageType.METHOD_CALL:
            return None
        if msg.destination not in (BLUEZ, self._bus.unique_name if self._bus else None):
            return None
        member = msg.member or ""
        if msg.interface == "org.freedesktop.DBus.Peer":
            return None  # dbus-fast answers Ping and GetMachineId itself
        queue = self._injected.get(member)
        if queue and msg.interface not in (PROPERTIES, OBJECT_MANAGER, INTROSPECTABLE):
            name, text = queue.pop(0)
            if member == "StopDiscovery" and name == ERR + "InProgress":
                # bluez issue 807: the kernel refuses the stop, but bluetoothd has already
                # dropped the client's session (bleak recovers with Start + Stop).
                adapter = self._adapters.get(msg.path or "")
                if adapter is not None and msg.sender in adapter.sessions:
                    adapter.sessions.discard(msg.sender)
                    self._update_discovering(adapter)
            return Message.new_error(msg, name, text)
        no_reply = bool(msg.flags & MessageFlag.NO_REPLY_EXPECTED)
        try:
            result = self._dispatch(msg)
        except BluezError as error:
            return True if no_reply else Message.new_error(msg, error.name, error.message)
        if asyncio.iscoroutine(result):
            self._spawn(self._reply_later(msg, result, no_reply))
            return True
        if no_reply:
            return True
        return result if isinstance(result, Message) else Message.new_method_return(msg)

    async def _reply_later(self, msg: Message, coroutine: Any, no_reply: bool) -> None:
        try:
            value = await coroutine
        except BluezError as error:
            reply = Message.new_error(msg, error.name, error.message)
        else:
            reply = value if isinstance(value, Message) else Message.new_method_return(msg)
        if not no_reply and self._bus is not None and self._bus.connected:
            self._bus.send(reply)

    def _on_signal(self, msg: Message) -> None:
        if msg.member == "NameOwnerChanged" and msg.sender == DBUS:
            name, _old, new = msg.body
            if not new and name.startswith(":"):
                self._client_left(name)
            return
        if msg.member == "PropertiesChanged" and msg.interface == PROPERTIES:
            if msg.body and msg.body[0] != ADVERTISEMENT:
                return
            for adapter in self._adapters.values():
                record = adapter.adverts.get((msg.sender or "", msg.path or ""))
                if record is not None:
                    self._spawn(self._refresh_advert(record))

    def _dispatch(self, msg: Message) -> Any:
        path = msg.path or "/"
        interface, member, sender = msg.interface, msg.member, msg.sender or ""
        if interface == INTROSPECTABLE and member == "Introspect":
            return Message.new_method_return(msg, "s", [self._introspect(path)])
        if interface == OBJECT_MANAGER and member == "GetManagedObjects":
            if path != "/":
                raise BluezError(UNKNOWN_METHOD, "GetManagedObjects is served at /")
            return Message.new_method_return(msg, "a{oa{sa{sv}}}", [self._objects])
        interfaces = self._objects.get(path)
        if interfaces is None:
            raise BluezError(UNKNOWN_OBJECT, f"no object at {path}")
        if interface == PROPERTIES:
            return self._properties_call(msg, path, interfaces)
        if interface is None:
            interface = next((name for name, members in _METHODS.items()
                              if member in members and name in interfaces), None)
        if interface not in interfaces or member not in _METHODS.get(interface, {}):
            raise BluezError(UNKNOWN_METHOD, f"{interface}.{member} is not implemented")
        expected = _METHODS[interface][member][0]
        if msg.signature != expected:
            raise BluezError(ERR + "InvalidArguments", "Invalid arguments in method call")
        return self._call(msg, path, interface, member or "", sender)

    def _call(self, msg: Message, path: str, interface: str, member: str, sender: str) -> Any:
        if interface == ADAPTER:
            adapter = self._adapters[path]
            if member == "SetDiscoveryFilter":
                adapter.filters[sender] = _parse_filter(msg.body[0])
                return None
            if member == "StartDiscovery":
                if not adapter.powered:
                    raise BluezError(ERR + "NotReady", "Resource Not Ready")
                if sender in adapter.sessions:
                    raise BluezError(ERR + "InProgress", "In Progress")
                adapter.sessions.add(sender)
                self._update_discovering(adapter)
                return None
            if member == "StopDiscovery":
                if not adapter.powered:
                    raise BluezError(ERR + "NotReady", "Resource Not Ready")
                if sender not in adapter.sessions:
                    raise BluezError(ERR + "Failed", "No discovery started")
                adapter.sessions.discard(sender)
                self._update_discovering(adapter)
                return None
            if member == "RemoveDevice":
                target = msg.body[0]
                device = next((d for d in adapter.devices.values() if d.path == target), None)
                if device is None:
                    raise BluezError(ERR + "DoesNotExist", "Does Not Exist")
                self._remove_device(adapter, device)
                return None
            if member == "GetDiscoveryFilters":
                return Message.new_method_return(
                    msg, "as", [["UUIDs", "RSSI", "Pathloss", "Transport", "DuplicateData",
                                 "Discoverable", "Pattern"]])
        if interface == ADV_MANAGER:
            adapter = self._adapters[path]
            if member == "RegisterAdvertisement":
                return self._register_advertisement(adapter, sender, msg.body[0])
            self._unregister_advertisement(adapter, sender, msg.body[0])
            return None
        if interface == DEVICE:
            found = self._find_device(path)
            assert found is not None
            adapter, device = found
            if member == "Connect":
                return self._connect(adapter, device)
            if not device.connected and device.connecting is None:
                raise BluezError(ERR + "NotConnected", "Not Connected")
            self._drop_connection(device)
            return None
        if interface == GATT_CHARACTERISTIC:
            value = self._read_value(path)
            return Message.new_method_return(msg, "ay", [value])
        raise BluezError(UNKNOWN_METHOD, f"{interface}.{member}")

    def _properties_call(self, msg: Message, path: str,
                         interfaces: dict[str, dict[str, Variant]]) -> Any:
        member, body = msg.member, msg.body
        if member == "GetAll" and msg.signature == "s":
            props = interfaces.get(body[0])
            if props is None:
                raise BluezError(INVALID_ARGS, f"no interface {body[0]}")
            return Message.new_method_return(msg, "a{sv}", [props])
        if member == "Get" and msg.signature == "ss":
            value = interfaces.get(body[0], {}).get(body[1])
            if value is None:
                raise BluezError(UNKNOWN_PROPERTY, f"no property {body[0]}.{body[1]}")
            return Message.new_method_return(msg, "v", [value])
        if member == "Set" and msg.signature == "ssv":
            return self._set_property(path, body[0], body[1], body[2])
        raise BluezError(UNKNOWN_METHOD, f"{PROPERTIES}.{member}")

    def _set_property(self, path: str, interface: str, name: str, value: Variant) -> Any:
        props = self._objects[path].get(interface)
        if props is None or name not in props:
            raise BluezError(UNKNOWN_PROPERTY, f"no property {interface}.{name}")
        if interface == ADAPTER and name in ("Powered", "Discoverable", "Pairable", "Alias"):
            if value.signature != props[name].signature:
                raise BluezError(ERR + "InvalidArguments", "Invalid arguments in method call")
            if name == "Powered":
                return self._apply_powered(self._adapters[path], bool(value.value))
            self._set_properties(path, interface, {name: value})
            return None
        if interface == DEVICE and name in ("Trusted", "Blocked", "Alias"):
            self._set_properties(path, interface, {name: value})
            return None
        raise BluezError("org.freedesktop.DBus.Error.PropertyReadOnly", f"{name} is read-only")

    def _introspect(self, path: str) -> str:
        interfaces = self._objects.get(path, {})
        prefix = path.rstrip("/") + "/"
        children = sorted({p[len(prefix):].split("/")[0] for p in self._objects
                           if p.startswith(prefix) and p != path})
        parts = ['<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"'
                 ' "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">', "<node>",
                 f'<interface name="{INTROSPECTABLE}"><method name="Introspect">'
                 '<arg name="xml" type="s" direction="out"/></method></interface>']
        if path == "/":
            parts.append(f'<interface name="{OBJECT_MANAGER}"><method name="GetManagedObjects">'
                         '<arg name="objects" type="a{oa{sa{sv}}}" direction="out"/></method>'
                         '<signal name="InterfacesAdded"><arg name="object" type="o"/>'
                         '<arg name="interfaces" type="a{sa{sv}}"/></signal>'
                         '<signal name="InterfacesRemoved"><arg name="object" type="o"/>'
                         '<arg name="interfaces" type="as"/></signal></interface>')
        for name, props in interfaces.items():
            if name == PROPERTIES:
                continue
            parts.append(f'<interface name="{name}">')
            for method, (in_sig, out_sig) in _METHODS.get(name, {}).items():
                parts.append(f'<method name="{method}">')
                parts.extend(f'<arg type="{t}" direction="in"/>' for t in _split_signature(in_sig))
                parts.extend(f'<arg type="{t}" direction="out"/>'
                             for t in _split_signature(out_sig))
                parts.append("</method>")
            writable = _WRITABLE.get(name, ())
            for prop, variant in props.items():
                access = "readwrite" if prop in writable else "read"
                parts.append(f'<property name="{prop}" type="{variant.signature}" '
                             f'access="{access}"/>')
            parts.append("</interface>")
        if interfaces:
            parts.append(f'<interface name="{PROPERTIES}">'
                         '<method name="Get"><arg type="s" direction="in"/>'
                         '<arg type="s" direction="in"/><arg type="v" direction="out"/></method>'
                         '<method name="GetAll"><arg type="s" direction="in"/>'
                         '<arg type="a{sv}" direction="out"/></method>'
                         '<method name="Set"><arg type="s" direction="in"/>'
                         '<arg type="s" direction="in"/><arg type="v" direction="in"/></method>'
                         '<signal name="PropertiesChanged"><arg type="s"/><arg type="a{sv}"/>'
                         '<arg type="as"/></signal></interface>')
        parts.extend(f'<node name="{child}"/>' for child in children)
        parts.append("</node>")
        return "".join(parts)


#: Methods served per interface: member -> (in signature, out signature).
_METHODS: dict[str, dict[str, tuple[str, str]]] = {
    ADAPTER: {
        "StartDiscovery": ("", ""),
        "StopDiscovery": ("", ""),
        "SetDiscoveryFilter": ("a{sv}", ""),
        "RemoveDevice": ("o", ""),
        "GetDiscoveryFilters": ("", "as"),
    },
    ADV_MANAGER: {
        "RegisterAdvertisement": ("oa{sv}", ""),
        "UnregisterAdvertisement": ("o", ""),
    },
    DEVICE: {"Connect": ("", ""), "Disconnect": ("", "")},
    GATT_CHARACTERISTIC: {"ReadValue": ("a{sv}", "ay")},
}
_WRITABLE: dict[str, tuple[str, ...]] = {
    ADAPTER: ("Powered", "Discoverable", "Pairable", "Alias"),
    DEVICE: ("Trusted", "Blocked", "Alias"),
}


def _split_signature(signature: str) -> list[str]:
    from dbus_fast.signature import SignatureTree

    return [t.signature for t in SignatureTree(signature).types] if signature else []


def _content_properties(content: AdContent) -> dict[str, Variant]:
    """The Device1 properties an advertisement sets (absent fields are left out)."""
    props: dict[str, Variant] = {}
    if content.service_uuids:
        props["UUIDs"] = Variant("as", list(content.service_uuids))
    if content.manufacturer_data:
        props["ManufacturerData"] = Variant(
            "a{qv}", {k: Variant("ay", v) for k, v in content.manufacturer_data.items()})
    if content.service_data:
        props["ServiceData"] = Variant(
            "a{sv}", {k: Variant("ay", v) for k, v in content.service_data.items()})
    if content.local_name is not None:
        props["Name"] = Variant("s", content.local_name)
    if content.tx_power is not None:
        props["TxPower"] = Variant("n", content.tx_power)
    return props


_FILTER_SIGNATURES = {"UUIDs": "as", "RSSI": "n", "Pathloss": "q", "Transport": "s",
                      "DuplicateData": "b", "Discoverable": "b", "Pattern": "s"}


def _parse_filter(options: dict[str, Variant]) -> DiscoveryFilter:
    """``SetDiscoveryFilter`` arguments, validated as bluetoothd does."""
    from bzlogger.sim.adverts import full_uuid

    result = DiscoveryFilter()
    for key, variant in options.items():
        expected = _FILTER_SIGNATURES.get(key)
        if expected is None or variant.signature != expected:
            raise BluezError(ERR + "InvalidArguments", f"invalid discovery filter key {key}")
        if key == "UUIDs":
            try:
                result.uuids = frozenset(full_uuid(u) for u in variant.value)
            except ValueError:
                raise BluezError(ERR + "InvalidArguments", "invalid UUID in filter") from None
        elif key == "RSSI":
            result.rssi = int(variant.value)
        elif key == "Pathloss":
            result.pathloss = int(variant.value)
        elif key == "Transport" and variant.value not in ("auto", "bredr", "le"):
            raise BluezError(ERR + "InvalidArguments", f"invalid transport {variant.value}")
        elif key == "DuplicateData":
            result.duplicate_data = bool(variant.value)
    if result.rssi is not None and result.pathloss is not None:
        raise BluezError(ERR + "InvalidArguments", "RSSI and Pathloss cannot both be set")
    return result
