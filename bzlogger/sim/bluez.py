"""A fake ``org.bluez`` (bluetoothd) on a D-Bus connection of its own.

:class:`FakeBluez` composes the parts, one concern per module:

- :mod:`bzlogger.sim.dbus_server`: the raw-message object server (ObjectManager,
  Properties, Introspect, deferred replies);
- :mod:`bzlogger.sim.adapter`: Adapter1, discovery sessions and filters;
- :mod:`bzlogger.sim.devices`: Device1 objects and BlueZ's change rules;
- :mod:`bzlogger.sim.advertising`: LEAdvertisingManager1;
- :mod:`bzlogger.sim.gatt`: the GATT client side (Connect, ServicesResolved, ReadValue);
- :mod:`bzlogger.sim.radio`: what the world hands in (:class:`Report`, GATT databases).

This module keeps the bluetoothd lifecycle (start, stop, restart), the routing of
calls and signals to the parts, what crosses them (power, clients leaving the bus,
device removal) and the fault hooks. Behaviour follows ``shared/reference/bluez.md``;
deviations are listed in ``docs/simulator.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import Message, Variant

from bzlogger.clock import Clock
from bzlogger.sim.adapter import (
    ADAPTER,
    ADAPTER_METHODS,
    ADAPTER_WRITABLE,
    Adapter,
    AdapterConfig,
    adapter_interfaces,
    discovery_call,
    end_session,
    merged_filter,
    passes,
    update_discovering,
)
from bzlogger.sim.advertising import (
    ADV_MANAGER,
    ADV_MANAGER_METHODS,
    ADVERTISEMENT,
    AdvertisingManager,
    AdvertRecord,
)
from bzlogger.sim.dbus_server import (
    DBUS,
    ERR,
    PROPERTIES,
    UNKNOWN_METHOD,
    BluezError,
    ObjectServer,
)
from bzlogger.sim.devices import (
    DEVICE,
    DEVICE_TIMEOUT_S,
    DEVICE_WRITABLE,
    Device,
    new_device,
    report_changes,
)
from bzlogger.sim.gatt import GATT_CHARACTERISTIC, GATT_METHODS, GattClient
from bzlogger.sim.radio import DEFAULT_SENSITIVITY_DBM, Report

BLUEZ = "org.bluez"


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
        self.stats = BluezStats()
        self.server = ObjectServer(
            BLUEZ, {**ADAPTER_METHODS, **ADV_MANAGER_METHODS, **GATT_METHODS},
            {**ADAPTER_WRITABLE, **DEVICE_WRITABLE}, self)
        self.advertising = AdvertisingManager(self.server, clock, seed)
        self.gatt = GattClient(self.server, clock, self.stats, connect_delay_s)
        #: Observers of every report delivered to a discovery session (after the
        #: sensitivity, silence and filter checks), with the adapter name: the ground truth
        #: of an RSSI series, whether or not bluetoothd signalled it.
        self.report_listeners: list[Callable[[Report, str], None]] = []
        self._bus_address = ""
        self._adapters: dict[str, Adapter] = {}
        #: method member -> queued (error name, message) replies (fault injection).
        self._injected: dict[str, list[tuple[str, str]]] = {}
        self._silent_until = 0.0
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def advert_log(self) -> list[AdvertRecord]:
        """Every advertisement registration ever made (also ended ones), oldest first."""
        return self.advertising.log

    # ---------------------------------------------------------------- lifecycle

    async def start(self, bus_address: str | None = None) -> None:
        """Connect to the bus (``None``: the system bus of the environment), own
        ``org.bluez`` and publish the adapters."""
        if bus_address is not None:
            self._bus_address = bus_address
        await self.server.connect(self._bus_address)
        await self.server.add_match(f"type='signal',sender='{DBUS}',member='NameOwnerChanged'")
        # Objects and adapters are replaced together: the world may report (to the old
        # adapters) while AddMatch is awaited, and their device objects must still exist.
        self.server.objects.clear()
        self._adapters.clear()
        # Like bluetoothd: own the name first, then the adapters appear (InterfacesAdded
        # from org.bluez, so clients matching on sender='org.bluez' see them).
        await self.server.request_name()
        self.server.add_object("/org/bluez", {"org.bluez.AgentManager1": {},
                                              "org.bluez.ProfileManager1": {}})
        for config in self.adapter_configs:
            adapter = Adapter.from_config(config)
            self._adapters[adapter.path] = adapter
            self.server.add_object(adapter.path, adapter_interfaces(adapter))
        self._sweeper = asyncio.create_task(self._sweep_loop())

    async def stop(self) -> None:
        """Drop off the bus like a killed bluetoothd: no signals, objects simply vanish."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await self.server.cancel_tasks()
        for adapter in self._adapters.values():
            for record in adapter.adverts.values():
                self.advertising.end(record, "bluetoothd stopped")
            for device in adapter.devices.values():
                if device.connecting is not None and not device.connecting.done():
                    device.connecting.cancel()
        await self.server.disconnect()

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
        return self.server.running

    async def _sweep_loop(self) -> None:
        # Check removal often enough in clock time (2 s) without busy-looping at high speed.
        while True:
            await asyncio.sleep(max(0.02, min(1.0, 2.0 / self.clock.speed)))
            self.expire_devices()

    # ---------------------------------------------------------------- radio input

    def report(self, report: Report, adapter_name: str = "hci0") -> None:
        """The adapter received one advertisement: apply BlueZ's device rules."""
        adapter = self._adapters.get(f"/org/bluez/{adapter_name}")
        if adapter is None or not adapter.discovering or self.server.bus is None:
            return
        now = self.clock.now()
        if now < self._silent_until or report.rssi < self.sensitivity_dbm:
            return
        self.stats.reports += 1
        merged = merged_filter(adapter)
        if not passes(merged, report):
            return
        for listener in self.report_listeners:
            listener(report, adapter_name)
        device = adapter.devices.get(report.address)
        if device is None:
            device, interfaces = new_device(adapter.path, report, now)
            adapter.devices[report.address] = device
            self.stats.devices_added += 1
            self.server.add_object(device.path, interfaces)
            return
        changed = report_changes(
            device, self.server.objects[device.path][DEVICE], report, now,
            every_rssi=merged.rssi is not None or merged.pathloss is not None,
            duplicate_data=merged.duplicate_data)
        if changed:
            self.server.set_properties(device.path, DEVICE, changed)
            self.stats.device_signals += 1

    def silence(self, seconds: float) -> None:
        """The scanner stays 'Discovering' but hears nothing for ``seconds`` (clock)."""
        self._silent_until = self.clock.now() + seconds

    def expire_devices(self) -> None:
        """Remove devices not seen for :data:`DEVICE_TIMEOUT_S` (clock seconds)."""
        now = self.clock.now()
        for adapter in self._adapters.values():
            for device in list(adapter.devices.values()):
                if not device.busy and now - device.last_seen >= DEVICE_TIMEOUT_S:
                    self._remove_device(adapter, device)

    def device_gone(self, owner: str) -> None:
        """The device ``owner`` left radio range: drop any connection to it."""
        for adapter in self._adapters.values():
            for device in adapter.devices.values():
                if device.owner == owner and device.busy:
                    self.gatt.drop_connection(device)

    # ---------------------------------------------------------------- faults

    def inject_error(self, method: str, error: str, times: int = 1, message: str = "") -> None:
        """Answer the next ``times`` calls of ``method`` (member name, e.g.
        ``StartDiscovery``) with the D-Bus error ``error``."""
        name = error if "." in error else ERR + error
        self._injected.setdefault(method, []).extend([(name, message or "injected")] * times)

    def inject_gatt_fault(self, kind: str, times: int = 1, owner: str | None = None) -> None:
        """Make the next ``times`` connections (to ``owner``, or to any device) fail the
        way real phones do; ``kind`` is one of :data:`bzlogger.sim.gatt.GATT_FAULTS`."""
        self.gatt.inject_fault(kind, times, owner)

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

    # ---------------------------------------------------------------- across the parts

    async def _apply_powered(self, adapter: Adapter, powered: bool) -> None:
        if adapter.powered == powered:
            return
        if not powered:
            for record in list(adapter.adverts.values()):
                self.advertising.release(adapter, record, "adapter powered off")
            for device in list(adapter.devices.values()):
                self._remove_device(adapter, device)
            adapter.sessions.clear()
        adapter.powered = powered
        self.server.set_properties(adapter.path, ADAPTER, {"Powered": Variant("b", powered)})
        update_discovering(self.server, adapter)
        self.advertising.publish_instances(adapter)

    def _remove_device(self, adapter: Adapter, device: Device) -> None:
        adapter.devices.pop(device.address, None)
        self.gatt.drop_connection(device)
        self.stats.devices_removed += 1
        self.server.remove_object(device.path)

    def _find_device(self, path: str) -> tuple[Adapter, Device] | None:
        for adapter in self._adapters.values():
            for device in adapter.devices.values():
                if device.path == path:
                    return adapter, device
        return None

    def _client_left(self, name: str) -> None:
        for adapter in self._adapters.values():
            adapter.filters.pop(name, None)
            end_session(self.server, adapter, name)
            self.advertising.client_left(adapter, name)

    # ---------------------------------------------------------------- RequestHandler

    def intercept(self, msg: Message) -> Message | None:
        """An injected error for this call, if one is queued for its member."""
        queue = self._injected.get(msg.member or "")
        if not queue:
            return None
        name, text = queue.pop(0)
        if msg.member == "StopDiscovery" and name == ERR + "InProgress":
            # bluez issue 807: the kernel refuses the stop, but bluetoothd has already
            # dropped the client's session (bleak recovers with Start + Stop).
            adapter = self._adapters.get(msg.path or "")
            if adapter is not None and msg.sender:
                end_session(self.server, adapter, msg.sender)
        return Message.new_error(msg, name, text)

    def on_signal(self, msg: Message) -> None:
        """Clients leaving the bus; updates of registered advertisements."""
        if msg.member == "NameOwnerChanged" and msg.sender == DBUS:
            name, _old, new = msg.body
            if not new and name.startswith(":"):
                self._client_left(name)
            return
        if msg.member == "PropertiesChanged" and msg.interface == PROPERTIES:
            if msg.body and msg.body[0] != ADVERTISEMENT:
                return
            for adapter in self._adapters.values():
                self.advertising.properties_changed(adapter, msg.sender or "", msg.path or "")

    def call(self, msg: Message, path: str, interface: str, member: str, sender: str) -> Any:
        """Route a method call to the part serving ``interface``."""
        if interface == ADAPTER:
            adapter = self._adapters[path]
            if member == "RemoveDevice":
                target = msg.body[0]
                device = next((d for d in adapter.devices.values() if d.path == target), None)
                if device is None:
                    raise BluezError(ERR + "DoesNotExist", "Does Not Exist")
                self._remove_device(adapter, device)
                return None
            return discovery_call(self.server, adapter, msg, member, sender)
        if interface == ADV_MANAGER:
            adapter = self._adapters[path]
            if member == "RegisterAdvertisement":
                return self.advertising.register(adapter, sender, msg.body[0])
            self.advertising.unregister(adapter, sender, msg.body[0])
            return None
        if interface == DEVICE:
            found = self._find_device(path)
            assert found is not None
            adapter, device = found
            if member == "Connect":
                return self.gatt.connect(adapter, device)
            self.gatt.disconnect(device)
            return None
        if interface == GATT_CHARACTERISTIC:
            found = self._find_device(path.rsplit("/", 2)[0])
            value = self.gatt.read_value(path, None if found is None else found[1])
            return Message.new_method_return(msg, "ay", [value])
        raise BluezError(UNKNOWN_METHOD, f"{interface}.{member}")

    def set_property(self, path: str, interface: str, name: str, value: Variant) -> Any:
        """``Powered`` (switching off releases advertisements, ends discovery and removes
        devices) and the other writable properties."""
        if interface == ADAPTER:
            if value.signature != self.server.objects[path][interface][name].signature:
                raise BluezError(ERR + "InvalidArguments", "Invalid arguments in method call")
            if name == "Powered":
                return self._apply_powered(self._adapters[path], bool(value.value))
        self.server.set_properties(path, interface, {name: value})
        return None

