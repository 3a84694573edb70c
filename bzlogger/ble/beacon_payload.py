"""What the kiosk's beacons look like on the air and on the bus (pure).

- Bluezone, Android format: ``03 03 56 4E 0F FF B5 22 <12-byte ID>`` (16-bit UUID 0x4E56
  listed, manufacturer data of company 0x22B5);
- GAEN: ``03 03 6F FD 17 16 6F FD <16-byte RPI><4-byte AEM>``.
"""

from __future__ import annotations

from dbus_fast import Variant

from bzlogger.ble import ad
from bzlogger.ids import bluezone, gaen
from bzlogger.ids.schedule import Beacon
from bzlogger.model import Protocol

#: Advertising intervals in ms: Android's LOW_LATENCY mode for Bluezone, the GAEN
#: specification's 200-270 ms for GAEN.
INTERVALS_MS: dict[Protocol, tuple[int, int]] = {
    Protocol.BLUEZONE: (100, 150),
    Protocol.GAEN: (200, 270),
}


def fields_for(beacon: Beacon) -> ad.AdFields:
    """The advertising fields a beacon goes on the air with."""
    if beacon.protocol is Protocol.BLUEZONE:
        return ad.AdFields(service_uuids=[bluezone.SERVICE_UUID],
                           manufacturer_data={bluezone.COMPANY_ID: beacon.identifier})
    if beacon.aem is None:
        raise ValueError("a GAEN beacon needs its AEM")
    return ad.AdFields(service_uuids=[gaen.SERVICE_UUID],
                       service_data={gaen.SERVICE_UUID: beacon.identifier + beacon.aem})


def expected_bytes(beacon: Beacon) -> bytes:
    """The AD bytes BlueZ puts on the air for ``beacon`` (no Flags: non-discoverable)."""
    return ad.encode(fields_for(beacon))


def advertisement_properties(beacon: Beacon, *, intervals: bool = True) -> dict[str, Variant]:
    """The ``org.bluez.LEAdvertisement1`` properties for ``beacon``."""
    fields = fields_for(beacon)
    props: dict[str, Variant] = {
        "Type": Variant("s", "broadcast"),
        "ServiceUUIDs": Variant("as", fields.service_uuids),
    }
    if fields.manufacturer_data:
        props["ManufacturerData"] = Variant(
            "a{qv}", {k: Variant("ay", v) for k, v in fields.manufacturer_data.items()})
    if fields.service_data:
        props["ServiceData"] = Variant(
            "a{sv}", {k: Variant("ay", v) for k, v in fields.service_data.items()})
    if intervals:
        low, high = INTERVALS_MS[beacon.protocol]
        props["MinInterval"] = Variant("u", low)
        props["MaxInterval"] = Variant("u", high)
    return props
