"""Advertising data as BlueZ sees it: UUID forms, the AD structures a payload becomes,
the legacy 31-byte limit, validation of a registered ``LEAdvertisement1``, and what a
phone understands of a beacon. Pure: no D-Bus, no time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dbus_fast import Variant

from bzlogger.ids import bluezone, gaen
from bzlogger.model import Protocol

#: Legacy advertising PDU payload limit (bytes of AD structures).
LEGACY_MAX_LENGTH = 31
BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"

ERROR_INVALID_ARGUMENTS = "org.bluez.Error.InvalidArguments"
ERROR_INVALID_LENGTH = "org.bluez.Error.InvalidLength"

#: Signatures BlueZ accepts for each LEAdvertisement1 property (advertising.c parsers).
PROPERTY_SIGNATURES: dict[str, str] = {
    "Type": "s",
    "ServiceUUIDs": "as",
    "SolicitUUIDs": "as",
    "ManufacturerData": "a{qv}",
    "ServiceData": "a{sv}",
    "Data": "a{yv}",
    "Includes": "as",
    "LocalName": "s",
    "Appearance": "q",
    "Duration": "q",
    "Timeout": "q",
    "Discoverable": "b",
    "DiscoverableTimeout": "q",
    "MinInterval": "u",
    "MaxInterval": "u",
    "TxPower": "n",
    "SecondaryChannel": "s",
}
ADVERTISEMENT_TYPES = ("broadcast", "peripheral")


class AdvertError(Exception):
    """A registration BlueZ would refuse: ``name`` is the D-Bus error name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


def full_uuid(uuid: str) -> str:
    """The lower-case 128-bit form of a 16-, 32- or 128-bit UUID string (``"4E56"``,
    ``"0x4e56"``, ``"00004e56-0000-1000-8000-00805f9b34fb"``)."""
    text = uuid.strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    if len(text) in (4, 8):
        int(text, 16)
        return text.rjust(8, "0") + BASE_UUID_SUFFIX
    if len(text) == 36 and text.count("-") == 4:
        int(text.replace("-", ""), 16)
        return text
    raise ValueError(f"not a UUID: {uuid!r}")


def uuid_size(uuid: str) -> int:
    """Bytes the UUID takes on the air: 2, 4 or 16 (shortest form BlueZ would use)."""
    full = full_uuid(uuid)
    if full.endswith(BASE_UUID_SUFFIX):
        return 2 if full.startswith("0000") else 4
    return 16


def uuid16(value: int) -> str:
    """The 128-bit string of a 16-bit SIG UUID."""
    return f"{value:08x}{BASE_UUID_SUFFIX}"


@dataclass(frozen=True, slots=True)
class AdContent:
    """The fields of one advertisement, in the form ``Device1`` reports them."""

    service_uuids: tuple[str, ...] = ()
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)
    service_data: dict[str, bytes] = field(default_factory=dict)
    local_name: str | None = None
    tx_power: int | None = None
    discoverable: bool = True
    connectable: bool = True

    def ad_length(self, *, include_tx_power: bool = False, appearance: bool = False) -> int:
        """Bytes of AD structures (flags included when discoverable), as bt_ad builds them."""
        length = 3 if self.discoverable else 0
        by_size: dict[int, int] = {}
        for uuid in self.service_uuids:
            size = uuid_size(uuid)
            by_size[size] = by_size.get(size, 0) + 1
        length += sum(2 + size * count for size, count in by_size.items())
        length += sum(4 + len(data) for data in self.manufacturer_data.values())
        length += sum(2 + uuid_size(uuid) + len(data) for uuid, data in self.service_data.items())
        if self.local_name is not None:
            length += 2 + len(self.local_name.encode())
        if include_tx_power or self.tx_power is not None:
            length += 3
        if appearance:
            length += 4
        return length


@dataclass(frozen=True, slots=True)
class RegisteredAdvert:
    """A validated ``LEAdvertisement1``: its type, content and timing options."""

    type: str
    content: AdContent
    includes: tuple[str, ...]
    min_interval_ms: int | None
    max_interval_ms: int | None


def parse_registration(props: dict[str, Any]) -> RegisteredAdvert:
    """Validate the ``GetAll`` result of a caller's advertisement object the way
    bluetoothd does and return what would go on the air.

    Raises :class:`AdvertError` with ``InvalidArguments`` (type, signatures, values) or
    ``InvalidLength`` (the AD structures exceed the legacy 31 bytes).
    """
    for name, value in props.items():
        expected = PROPERTY_SIGNATURES.get(name)
        if expected is None:
            continue
        if not isinstance(value, Variant) or value.signature != expected:
            got = value.signature if isinstance(value, Variant) else type(value).__name__
            raise AdvertError(ERROR_INVALID_ARGUMENTS,
                              f"property {name} must have signature {expected}, got {got}")
    if "Type" not in props:
        raise AdvertError(ERROR_INVALID_ARGUMENTS, 'Failed to read "Type" property')
    adv_type = props["Type"].value
    if adv_type not in ADVERTISEMENT_TYPES:
        raise AdvertError(ERROR_INVALID_ARGUMENTS, f"unknown advertisement type {adv_type!r}")
    try:
        uuids = tuple(full_uuid(u) for u in _value(props, "ServiceUUIDs", []))
        manufacturer = {
            int(company): _bytes_variant(data, "ManufacturerData")
            for company, data in _value(props, "ManufacturerData", {}).items()
        }
        service_data = {
            full_uuid(uuid): _bytes_variant(data, "ServiceData")
            for uuid, data in _value(props, "ServiceData", {}).items()
        }
    except ValueError as error:
        raise AdvertError(ERROR_INVALID_ARGUMENTS, str(error)) from None
    includes = tuple(_value(props, "Includes", []))
    name = _value(props, "LocalName", None)
    if name is None and "local-name" in includes:
        name = "bzlogger"
    tx_power = _value(props, "TxPower", None)
    discoverable = adv_type == "peripheral" or bool(_value(props, "Discoverable", False))
    content = AdContent(
        service_uuids=uuids,
        manufacturer_data=manufacturer,
        service_data=service_data,
        local_name=name,
        tx_power=tx_power if "tx-power" in includes else None,
        discoverable=discoverable,
        connectable=adv_type == "peripheral",
    )
    length = content.ad_length(appearance="appearance" in includes or "Appearance" in props)
    if length > LEGACY_MAX_LENGTH:
        raise AdvertError(ERROR_INVALID_LENGTH,
                          f"advertising data too long: {length} > {LEGACY_MAX_LENGTH} bytes")
    min_interval = _value(props, "MinInterval", None)
    max_interval = _value(props, "MaxInterval", None)
    if min_interval is not None and max_interval is not None and min_interval > max_interval:
        raise AdvertError(ERROR_INVALID_ARGUMENTS, "MinInterval is greater than MaxInterval")
    return RegisteredAdvert(adv_type, content, includes, min_interval, max_interval)


def _value(props: dict[str, Any], name: str, default: Any) -> Any:
    variant = props.get(name)
    return default if variant is None else variant.value


def _bytes_variant(data: Any, what: str) -> bytes:
    if not isinstance(data, Variant) or data.signature != "ay":
        raise ValueError(f"{what} values must be variants of signature ay")
    return bytes(data.value)


@dataclass(frozen=True, slots=True)
class HeardBeacon:
    """A contact-tracing identifier a phone's app would take from an advertisement."""

    protocol: Protocol
    identifier: bytes
    aem: bytes | None = None


def decode_beacon(content: AdContent) -> HeardBeacon | None:
    """What a Bluezone or GAEN app on a phone would record from ``content`` (None when the
    advertisement carries no well-formed identifier of either protocol)."""
    listed = set(content.service_uuids)
    bluezone_data = content.manufacturer_data.get(bluezone.COMPANY_ID)
    if (bluezone.SERVICE_UUID in listed and bluezone_data is not None
            and len(bluezone_data) == bluezone.ID_LENGTH):
        return HeardBeacon(Protocol.BLUEZONE, bluezone_data)
    gaen_data = content.service_data.get(gaen.SERVICE_UUID)
    if gaen.SERVICE_UUID in listed and gaen_data is not None and len(gaen_data) == 20:
        return HeardBeacon(Protocol.GAEN, gaen_data[:16], gaen_data[16:])
    return None
