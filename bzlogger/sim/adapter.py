"""``org.bluez.Adapter1``: the adapter's state and properties, and discovery: per-client
sessions and filters, merged as bluetoothd merges them."""

from __future__ import annotations

from dataclasses import dataclass, field

from dbus_fast import Message, Variant

from bzlogger.sim.advertising import ADV_MANAGER, AdvertRecord, manager_properties
from bzlogger.sim.adverts import full_uuid
from bzlogger.sim.dbus_server import (
    ERR,
    UNKNOWN_METHOD,
    BluezError,
    Interfaces,
    MethodTable,
    ObjectServer,
)
from bzlogger.sim.devices import Device
from bzlogger.sim.radio import Report

ADAPTER = "org.bluez.Adapter1"

#: Methods served: member -> (in signature, out signature).
ADAPTER_METHODS: MethodTable = {
    ADAPTER: {
        "StartDiscovery": ("", ""),
        "StopDiscovery": ("", ""),
        "SetDiscoveryFilter": ("a{sv}", ""),
        "RemoveDevice": ("o", ""),
        "GetDiscoveryFilters": ("", "as"),
    },
}
#: Adapter1 properties a client may set.
ADAPTER_WRITABLE: dict[str, tuple[str, ...]] = {
    ADAPTER: ("Powered", "Discoverable", "Pairable", "Alias"),
}

_FILTER_SIGNATURES = {"UUIDs": "as", "RSSI": "n", "Pathloss": "q", "Transport": "s",
                      "DuplicateData": "b", "Discoverable": "b", "Pattern": "s"}


@dataclass(frozen=True, slots=True)
class AdapterConfig:
    """An adapter to simulate."""

    name: str = "hci0"
    address: str = "B8:27:EB:12:34:56"
    supported_instances: int = 5


@dataclass(slots=True)
class DiscoveryFilter:
    """One client's ``SetDiscoveryFilter`` settings."""

    uuids: frozenset[str] = frozenset()
    rssi: int | None = None
    pathloss: int | None = None
    duplicate_data: bool = False


@dataclass(slots=True)
class Adapter:
    """bluetoothd's state of one adapter: discovery clients, devices, registrations."""

    name: str
    address: str
    supported_instances: int
    powered: bool = True
    filters: dict[str, DiscoveryFilter] = field(default_factory=dict)
    sessions: set[str] = field(default_factory=set)
    devices: dict[str, Device] = field(default_factory=dict)
    adverts: dict[tuple[str, str], AdvertRecord] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: AdapterConfig) -> Adapter:
        """A powered adapter with nothing going on."""
        return cls(config.name, config.address, config.supported_instances)

    @property
    def path(self) -> str:
        """The object path, ``/org/bluez/<name>``."""
        return f"/org/bluez/{self.name}"

    @property
    def discovering(self) -> bool:
        """Powered with at least one discovery session."""
        return self.powered and bool(self.sessions)


def adapter_interfaces(adapter: Adapter) -> Interfaces:
    """The adapter object's interfaces and properties."""
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
        ADV_MANAGER: manager_properties(adapter),
        "org.bluez.GattManager1": {},
    }


def discovery_call(server: ObjectServer, adapter: Adapter, msg: Message, member: str,
                   sender: str) -> Message | None:
    """Serve ``SetDiscoveryFilter``, ``StartDiscovery``, ``StopDiscovery`` and
    ``GetDiscoveryFilters`` for ``sender``."""
    if member == "SetDiscoveryFilter":
        adapter.filters[sender] = parse_filter(msg.body[0])
        return None
    if member == "StartDiscovery":
        if not adapter.powered:
            raise BluezError(ERR + "NotReady", "Resource Not Ready")
        if sender in adapter.sessions:
            raise BluezError(ERR + "InProgress", "In Progress")
        adapter.sessions.add(sender)
        update_discovering(server, adapter)
        return None
    if member == "StopDiscovery":
        if not adapter.powered:
            raise BluezError(ERR + "NotReady", "Resource Not Ready")
        if sender not in adapter.sessions:
            raise BluezError(ERR + "Failed", "No discovery started")
        end_session(server, adapter, sender)
        return None
    if member == "GetDiscoveryFilters":
        return Message.new_method_return(msg, "as", [list(_FILTER_SIGNATURES)])
    raise BluezError(UNKNOWN_METHOD, f"{ADAPTER}.{member}")


def end_session(server: ObjectServer, adapter: Adapter, client: str) -> None:
    """The client's discovery session ends (if it has one)."""
    if client in adapter.sessions:
        adapter.sessions.discard(client)
        update_discovering(server, adapter)


def update_discovering(server: ObjectServer, adapter: Adapter) -> None:
    """Signal ``Discovering`` if it changed."""
    props = server.objects.get(adapter.path, {}).get(ADAPTER)
    if props is not None and props["Discovering"].value != adapter.discovering:
        server.set_properties(adapter.path, ADAPTER,
                              {"Discovering": Variant("b", adapter.discovering)})
    # When discovery stops, devices stay until their temporary-device timeout (30 s
    # after last seen) removes them, as in bluetoothd; BleakClient relies on finding
    # the device object after its scan has stopped.


def parse_filter(options: dict[str, Variant]) -> DiscoveryFilter:
    """``SetDiscoveryFilter`` arguments, validated as bluetoothd does."""
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


def merged_filter(adapter: Adapter) -> DiscoveryFilter:
    """The filters of the discovering clients merged as bluetoothd does (RSSI: the
    lowest; UUIDs: the union unless one client has none; DuplicateData: any)."""
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


def passes(merged: DiscoveryFilter, report: Report) -> bool:
    """Whether a report gets through the merged filter."""
    if merged.uuids and not merged.uuids & set(report.content.service_uuids):
        return False
    if merged.rssi is not None and report.rssi < merged.rssi:
        return False
    if merged.pathloss is not None:
        tx = report.content.tx_power
        if tx is None or tx - report.rssi > merged.pathloss:
            return False
    return True
