"""``org.bluez.Device1`` objects: the properties an advertisement sets and BlueZ's rules
for what a later report signals."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from dbus_fast import Variant

from bzlogger.sim.adverts import AdContent
from bzlogger.sim.dbus_server import PROPERTIES, Interfaces
from bzlogger.sim.radio import GattServiceSpec, Report

DEVICE = "org.bluez.Device1"

#: bluetoothd removes a device this many (clock) seconds after it was last seen.
DEVICE_TIMEOUT_S = 30.0
#: Without an RSSI/Pathloss filter, RSSI changes smaller than this are not signalled.
RSSI_THRESHOLD_DB = 8

#: Device1 properties a client may set.
DEVICE_WRITABLE: dict[str, tuple[str, ...]] = {DEVICE: ("Trusted", "Blocked", "Alias")}


@dataclass(slots=True)
class Device:
    """bluetoothd's state of one remote device (one address)."""

    path: str
    address: str
    owner: str
    last_seen: float
    rssi: int
    gatt: tuple[GattServiceSpec, ...] | None
    connected: bool = False
    connecting: asyncio.Future[None] | None = None
    gatt_paths: list[str] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        """Connected or connecting: exempt from the last-seen timeout."""
        return self.connected or self.connecting is not None


def new_device(adapter_path: str, report: Report, now: float) -> tuple[Device, Interfaces]:
    """The device a first report creates, and its object's interfaces."""
    path = f"{adapter_path}/dev_{report.address.replace(':', '_')}"
    device = Device(path, report.address, report.owner, now, report.rssi, report.gatt)
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
        "Adapter": Variant("o", adapter_path),
        "RSSI": Variant("n", report.rssi),
    }
    props.update(content_properties(report.content))
    return device, {DEVICE: props, PROPERTIES: {}}


def report_changes(device: Device, props: dict[str, Variant], report: Report, now: float, *,
                   every_rssi: bool, duplicate_data: bool) -> dict[str, Variant]:
    """Apply a later report to ``device``: the Device1 properties to signal.

    ``every_rssi``: the merged filter sets RSSI or Pathloss (every RSSI change is
    signalled); ``duplicate_data``: manufacturer and service data are signalled on every
    report, not only on change. Advertised UUIDs accumulate.
    """
    device.last_seen = now
    device.owner = report.owner or device.owner
    device.gatt = report.gatt
    changed: dict[str, Variant] = {}
    if every_rssi or abs(report.rssi - device.rssi) >= RSSI_THRESHOLD_DB:
        device.rssi = report.rssi
        changed["RSSI"] = Variant("n", report.rssi)
    for name, variant in content_properties(report.content).items():
        old = props.get(name)
        if name == "UUIDs" and old is not None:
            union = list(dict.fromkeys([*old.value, *variant.value]))
            variant = Variant("as", union)
        duplicate = duplicate_data and name in ("ManufacturerData", "ServiceData")
        if duplicate or old is None or old.value != variant.value:
            changed[name] = variant
    if "Name" in changed:
        changed["Alias"] = Variant("s", changed["Name"].value)
    return changed


def content_properties(content: AdContent) -> dict[str, Variant]:
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
