"""The GATT client side of the fake bluetoothd: Device1 ``Connect``/``Disconnect``,
``Connected`` and ``ServicesResolved``, the remote GATT objects and ``ReadValue``, and
the GATT faults real phones show."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from dbus_fast import Variant

from bzlogger.clock import Clock
from bzlogger.sim.dbus_server import ERR, PROPERTIES, BluezError, MethodTable, ObjectServer
from bzlogger.sim.devices import DEVICE, Device

if TYPE_CHECKING:
    from bzlogger.sim.adapter import Adapter
    from bzlogger.sim.bluez import BluezStats

GATT_SERVICE = "org.bluez.GattService1"
GATT_CHARACTERISTIC = "org.bluez.GattCharacteristic1"

#: An LE connection that does not complete fails after this many clock seconds.
CONNECT_TIMEOUT_S = 20.0

# Fault hooks: GATT behaviours that real hardware shows. See bzlogger.sim.faults.
GATT_FAULTS = ("connect_timeout", "abort_by_local", "in_progress", "walk_away")

#: Methods served: member -> (in signature, out signature).
GATT_METHODS: MethodTable = {
    DEVICE: {"Connect": ("", ""), "Disconnect": ("", "")},
    GATT_CHARACTERISTIC: {"ReadValue": ("a{sv}", "ay")},
}


class GattClient:
    """Connections to remote devices and reads of their characteristics."""

    def __init__(self, server: ObjectServer, clock: Clock, stats: BluezStats,
                 connect_delay_s: float) -> None:
        self.server = server
        self.clock = clock
        self.stats = stats
        self.connect_delay_s = connect_delay_s
        #: Called with (owner) when a device's GATT fault says the phone walks away.
        self.on_walk_away: Callable[[str], None] | None = None
        #: Whether the device ``owner`` still answers at ``address`` (in range, not rotated
        #: away); None means always. A connection to an unreachable device times out.
        self.reachable: Callable[[str, str], bool] | None = None
        self._faults: list[tuple[str, str | None]] = []
        self._pending_walk_away: set[str] = set()

    def inject_fault(self, kind: str, times: int = 1, owner: str | None = None) -> None:
        """Make the next ``times`` connections (to ``owner``, or to any device) fail the
        way real phones do; ``kind`` is one of :data:`GATT_FAULTS`."""
        if kind not in GATT_FAULTS:
            raise ValueError(f"unknown GATT fault {kind!r}; choose from {', '.join(GATT_FAULTS)}")
        self._faults.extend([(kind, owner)] * times)

    def _next_fault(self, owner: str) -> str | None:
        for index, (kind, target) in enumerate(self._faults):
            if target is None or target == owner:
                del self._faults[index]
                return kind
        return None

    async def connect(self, adapter: Adapter, device: Device) -> None:
        """``Device1.Connect``: replies once connected; services resolve just after."""
        if not adapter.powered:
            raise BluezError(ERR + "NotReady", "Resource Not Ready")
        if device.connected:
            raise BluezError(ERR + "AlreadyConnected", "Already Connected")
        if device.connecting is not None:
            raise BluezError(ERR + "InProgress", "In Progress")
        self.stats.connect_attempts[device.owner] += 1
        fault = self._next_fault(device.owner)
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
        if device.path not in self.server.objects:
            raise BluezError(ERR + "Failed", "Device removed")
        device.connected = True
        self.server.set_properties(device.path, DEVICE, {"Connected": Variant("b", True)})
        if fault == "abort_by_local":
            # bluetoothd connected, then the controller dropped it: the caller sees
            # Connected go true and false, then the error (bleak retries on it).
            self.drop_connection(device)
            raise BluezError(ERR + "Failed", "le-connection-abort-by-local")
        self.stats.connections[device.owner] += 1
        if fault == "walk_away":
            self._pending_walk_away.add(device.path)
        self.server.spawn(self._resolve_services(device))

    def disconnect(self, device: Device) -> None:
        """``Device1.Disconnect``: ends a connection or cancels a pending Connect."""
        if not device.busy:
            raise BluezError(ERR + "NotConnected", "Not Connected")
        self.drop_connection(device)

    def drop_connection(self, device: Device) -> None:
        """End any connection to ``device``: a pending Connect fails with "Operation
        canceled", the GATT objects vanish, ``ServicesResolved`` and ``Connected`` go
        false."""
        if device.connecting is not None and not device.connecting.done():
            device.connecting.set_exception(BluezError(ERR + "Failed", "Operation canceled"))
        device.connecting = None
        if not device.connected:
            return
        for path in reversed(device.gatt_paths):
            self.server.remove_object(path)
        device.gatt_paths.clear()
        device.connected = False
        if device.path in self.server.objects:
            self.server.set_properties(device.path, DEVICE,
                                       {"ServicesResolved": Variant("b", False)})
            self.server.set_properties(device.path, DEVICE, {"Connected": Variant("b", False)})

    async def _resolve_services(self, device: Device) -> None:
        await asyncio.sleep(0)
        if not device.connected or device.gatt is None:
            return
        handle = 0x000A
        for service in device.gatt:
            service_path = f"{device.path}/service{handle:04x}"
            self.server.add_object(service_path, {GATT_SERVICE: {
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
                self.server.add_object(char_path, {GATT_CHARACTERISTIC: {
                    "UUID": Variant("s", characteristic.uuid),
                    "Service": Variant("o", service_path),
                    "Value": Variant("ay", b""),
                    "Flags": Variant("as", list(characteristic.flags)),
                    "Handle": Variant("q", handle + 1),
                    "MTU": Variant("q", 23),
                }, PROPERTIES: {}})
                device.gatt_paths.append(char_path)
                handle += 2
        self.server.set_properties(device.path, DEVICE, {"ServicesResolved": Variant("b", True)})

    def read_value(self, path: str, device: Device | None) -> bytes:
        """``GattCharacteristic1.ReadValue`` of the characteristic at ``path`` on
        ``device`` (None: bluetoothd no longer knows the device)."""
        if device is None or not device.connected:
            raise BluezError(ERR + "Failed", "Not connected")
        if device.path in self._pending_walk_away:
            self._pending_walk_away.discard(device.path)
            self.drop_connection(device)
            if self.on_walk_away is not None:
                self.on_walk_away(device.owner)
            raise BluezError(ERR + "Failed", "Not connected")
        assert device.gatt is not None
        uuid = self.server.objects[path][GATT_CHARACTERISTIC]["UUID"].value
        for service in device.gatt:
            for characteristic in service.characteristics:
                if characteristic.uuid == uuid:
                    if "read" not in characteristic.flags:
                        raise BluezError(ERR + "NotPermitted", "Read not permitted")
                    value = characteristic.read()
                    self.stats.reads[device.owner] += 1
                    self.server.set_properties(path, GATT_CHARACTERISTIC,
                                               {"Value": Variant("ay", value)})
                    return value
        raise BluezError(ERR + "Failed", "Characteristic not found")
