"""Bluetooth LE advertising-data (AD) structures: decode raw bytes into fields, encode
fields into the bytes a controller sends. Pure.

The scanner normally receives fields already split by BlueZ (bleak's
``AdvertisementData``); raw decoding exists for captured payloads, fuzzing and for
checking what the advertiser puts on the air. Structures are read by type, never at
fixed offsets: Android omits the Flags structure, iOS reorders them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: AD types used here (Bluetooth Core Supplement, part A).
AD_FLAGS = 0x01
AD_UUID16_INCOMPLETE = 0x02
AD_UUID16_COMPLETE = 0x03
AD_UUID32_INCOMPLETE = 0x04
AD_UUID32_COMPLETE = 0x05
AD_UUID128_INCOMPLETE = 0x06
AD_UUID128_COMPLETE = 0x07
AD_NAME_SHORT = 0x08
AD_NAME_COMPLETE = 0x09
AD_TX_POWER = 0x0A
AD_SERVICE_DATA16 = 0x16
AD_SERVICE_DATA32 = 0x20
AD_SERVICE_DATA128 = 0x21
AD_MANUFACTURER = 0xFF

#: Legacy advertising PDUs carry at most 31 bytes of AD.
LEGACY_AD_MAX = 31

_BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"


class MalformedAdError(ValueError):
    """Raw advertising data that cannot be split into valid AD structures."""


@dataclass(slots=True)
class AdFields:
    """The parts of an advertisement bzlogger cares about, in bleak's shapes:
    UUIDs as lowercase 128-bit strings, manufacturer data by company id."""

    service_uuids: list[str] = field(default_factory=list)
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)
    service_data: dict[str, bytes] = field(default_factory=dict)
    local_name: str | None = None
    tx_power: int | None = None
    flags: int | None = None


def uuid16_to_str(value: int) -> str:
    """The 128-bit string form of a 16-bit SIG UUID (``0x4E56`` -> ``00004e56-...``)."""
    return f"{value:08x}{_BASE_UUID_SUFFIX}"


def uuid_from_le(raw: bytes) -> str:
    """A UUID string from its little-endian over-the-air bytes (2, 4 or 16 bytes)."""
    if len(raw) in (2, 4):
        return f"{int.from_bytes(raw, 'little'):08x}{_BASE_UUID_SUFFIX}"
    if len(raw) == 16:
        h = raw[::-1].hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    raise MalformedAdError(f"a UUID is 2, 4 or 16 bytes, not {len(raw)}")


def uuid_to_le(uuid: str) -> bytes:
    """Over-the-air bytes of a UUID string: 2 bytes when it is a 16-bit SIG UUID."""
    text = uuid.lower()
    value = int(text.replace("-", ""), 16)
    if text.endswith(_BASE_UUID_SUFFIX) and value >> 96 <= 0xFFFF:
        return (value >> 96).to_bytes(2, "little")
    return value.to_bytes(16, "little")


def split_structures(raw: bytes) -> list[tuple[int, bytes]]:
    """Split AD bytes into ``(type, data)`` pairs. A zero length byte ends the data
    (the rest is padding); a structure running past the end raises :class:`MalformedAdError`."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(raw):
        length = raw[pos]
        if length == 0:
            break
        end = pos + 1 + length
        if end > len(raw):
            raise MalformedAdError(f"AD structure at offset {pos} is truncated")
        out.append((raw[pos + 1], bytes(raw[pos + 2 : end])))
        pos = end
    return out


def decode(raw: bytes) -> AdFields:
    """Decode raw advertising data (AD structures) into :class:`AdFields`."""
    fields = AdFields()
    for ad_type, data in split_structures(raw):
        if ad_type == AD_FLAGS:
            if len(data) < 1:
                raise MalformedAdError("empty Flags structure")
            fields.flags = data[0]
        elif ad_type in (AD_UUID16_INCOMPLETE, AD_UUID16_COMPLETE):
            fields.service_uuids.extend(_uuid_list(data, 2))
        elif ad_type in (AD_UUID32_INCOMPLETE, AD_UUID32_COMPLETE):
            fields.service_uuids.extend(_uuid_list(data, 4))
        elif ad_type in (AD_UUID128_INCOMPLETE, AD_UUID128_COMPLETE):
            fields.service_uuids.extend(_uuid_list(data, 16))
        elif ad_type in (AD_NAME_SHORT, AD_NAME_COMPLETE):
            fields.local_name = data.decode("utf-8", errors="replace")
        elif ad_type == AD_TX_POWER:
            if len(data) != 1:
                raise MalformedAdError("TX Power Level structure must hold 1 byte")
            fields.tx_power = int.from_bytes(data, "little", signed=True)
        elif ad_type in (AD_SERVICE_DATA16, AD_SERVICE_DATA32, AD_SERVICE_DATA128):
            width = {AD_SERVICE_DATA16: 2, AD_SERVICE_DATA32: 4, AD_SERVICE_DATA128: 16}[ad_type]
            if len(data) < width:
                raise MalformedAdError("service data shorter than its UUID")
            fields.service_data[uuid_from_le(data[:width])] = data[width:]
        elif ad_type == AD_MANUFACTURER:
            if len(data) < 2:
                raise MalformedAdError("manufacturer data shorter than its company id")
            fields.manufacturer_data[int.from_bytes(data[:2], "little")] = data[2:]
    return fields


def _uuid_list(data: bytes, width: int) -> list[str]:
    if len(data) % width:
        raise MalformedAdError(f"UUID list length {len(data)} is not a multiple of {width}")
    return [uuid_from_le(data[i : i + width]) for i in range(0, len(data), width)]


def structure(ad_type: int, data: bytes) -> bytes:
    """One AD structure: length, type, data."""
    if len(data) + 1 > 0xFF:
        raise ValueError("AD structure too long")
    return bytes((len(data) + 1, ad_type)) + data


def encode(fields: AdFields) -> bytes:
    """The AD bytes for ``fields``, in the order BlueZ emits them: flags, service UUIDs,
    manufacturer data, service data, TX power, name."""
    out = bytearray()
    if fields.flags is not None:
        out += structure(AD_FLAGS, bytes((fields.flags,)))
    short = [uuid_to_le(u) for u in fields.service_uuids if len(uuid_to_le(u)) == 2]
    long = [uuid_to_le(u) for u in fields.service_uuids if len(uuid_to_le(u)) == 16]
    if short:
        out += structure(AD_UUID16_COMPLETE, b"".join(short))
    if long:
        out += structure(AD_UUID128_COMPLETE, b"".join(long))
    for company, data in fields.manufacturer_data.items():
        out += structure(AD_MANUFACTURER, company.to_bytes(2, "little") + data)
    for uuid, data in fields.service_data.items():
        key = uuid_to_le(uuid)
        kind = AD_SERVICE_DATA16 if len(key) == 2 else AD_SERVICE_DATA128
        out += structure(kind, key + data)
    if fields.tx_power is not None:
        out += structure(AD_TX_POWER, fields.tx_power.to_bytes(1, "little", signed=True))
    if fields.local_name is not None:
        out += structure(AD_NAME_COMPLETE, fields.local_name.encode())
    return bytes(out)
