"""Bluezone v3 identifiers (app 3.0.x), exactly as ``shared/reference/bluezone.md`` states.

- daily key ``D_{n+1} = SHA256(D_n)``;
- sub-keys ``S_0 = SHA256(D || b"bluzonesubkey")``, ``S_{i+1} = SHA256(S_i)``;
- ID of slot ``i``: bytes ``[0,4,8,12,16,18,20,22,24,26,28,30]`` of ``S_i``;
- slot of a time: ``floor((t - UTC midnight) / (86400 / max))``.

``max`` (IDs per day) is a parameter everywhere: 96 in app 3.0, 144 in version 2.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

DAY_SECONDS = 86_400
DEFAULT_MAX = 96
KEY_LENGTH = 32
ID_LENGTH = 12
#: Spelled exactly so in the app ("bluzone", not "bluezone").
SUBKEY_SALT = b"bluzonesubkey"
#: Byte positions of the sub-key that form the 12-byte ID.
ID_BYTE_POSITIONS = (0, 4, 8, 12, 16, 18, 20, 22, 24, 26, 28, 30)
#: Company identifier the Android app uses for its manufacturer data.
COMPANY_ID = 0x22B5
#: 16-bit service UUID listed by Android Bluezone.
SERVICE_UUID16 = 0x4E56
SERVICE_UUID = "00004e56-0000-1000-8000-00805f9b34fb"
#: 128-bit service UUID advertised by Bluezone on iOS, and its ID characteristic.
IOS_SERVICE_UUID = "00004e56-73f5-4bc4-a12f-17d1ad07a667"
IOS_CHARACTERISTIC_UUID = "00004e56-73f5-4bc4-a12f-17d1ad07a689"


def validate_max(max_ids: int) -> int:
    """Check that ``max_ids`` divides a day into whole-second slots; return it."""
    if not isinstance(max_ids, int) or isinstance(max_ids, bool):
        raise ValueError(f"max must be an integer, got {max_ids!r}")
    if max_ids < 1 or DAY_SECONDS % max_ids != 0:
        raise ValueError(f"max must be a positive divisor of 86400, got {max_ids}")
    return max_ids


def slot_seconds(max_ids: int = DEFAULT_MAX) -> int:
    """Length of one slot in seconds (900 for 96 IDs a day)."""
    return DAY_SECONDS // validate_max(max_ids)


def utc_midnight(unix_s: float) -> int:
    """The UTC midnight at or before ``unix_s``."""
    return int(unix_s // DAY_SECONDS) * DAY_SECONDS


def slot_of(unix_s: float, max_ids: int = DEFAULT_MAX) -> int:
    """Index of the slot containing ``unix_s`` (aligned to UTC, not local time)."""
    return int((unix_s - utc_midnight(unix_s)) // slot_seconds(max_ids))


def slot_start(unix_s: float, max_ids: int = DEFAULT_MAX) -> int:
    """Start time of the slot containing ``unix_s``."""
    length = slot_seconds(max_ids)
    return int(unix_s // length) * length


def next_daily_key(daily_key: bytes) -> bytes:
    """``D_{n+1} = SHA256(D_n)``."""
    return hashlib.sha256(daily_key).digest()


def daily_key(base_key: bytes, days: int) -> bytes:
    """``D_n = SHA256^n(K0)``."""
    _check_key(base_key)
    if days < 0:
        raise ValueError("days must not be negative")
    key = base_key
    for _ in range(days):
        key = hashlib.sha256(key).digest()
    return key


def first_subkey(daily_key: bytes) -> bytes:
    """``S_0 = SHA256(D || b"bluzonesubkey")``."""
    _check_key(daily_key)
    return hashlib.sha256(daily_key + SUBKEY_SALT).digest()


def id_from_subkey(subkey: bytes) -> bytes:
    """The 12-byte Bluezone ID carried by a sub-key."""
    return bytes(subkey[i] for i in ID_BYTE_POSITIONS)


def iter_ids(daily_key: bytes, count: int) -> Iterator[bytes]:
    """IDs of consecutive slots starting at slot 0 of ``daily_key``'s day, without
    crossing into the next day (see :func:`iter_slots` for that)."""
    subkey = first_subkey(daily_key)
    for _ in range(count):
        yield id_from_subkey(subkey)
        subkey = hashlib.sha256(subkey).digest()


def day_ids(daily_key: bytes, max_ids: int = DEFAULT_MAX) -> list[bytes]:
    """All ``max_ids`` IDs of one day."""
    return list(iter_ids(daily_key, validate_max(max_ids)))


def id_at_slot(daily_key: bytes, slot: int, max_ids: int = DEFAULT_MAX) -> bytes:
    """The ID of slot ``slot`` of the day, ``0 <= slot < max_ids``."""
    if not 0 <= slot < validate_max(max_ids):
        raise ValueError(f"slot {slot} outside 0..{max_ids - 1}")
    subkey = first_subkey(daily_key)
    for _ in range(slot):
        subkey = hashlib.sha256(subkey).digest()
    return id_from_subkey(subkey)


@dataclass(frozen=True, slots=True)
class BluezoneSlot:
    """One slot's identifier: ``index`` counts from the first slot asked for."""

    index: int
    start: int
    end: int
    daily_key: bytes
    identifier: bytes


def iter_slots(
    daily_key: bytes, day_start: int, max_ids: int = DEFAULT_MAX, count: int | None = None
) -> Iterator[BluezoneSlot]:
    """Consecutive slots from ``day_start`` (a UTC midnight); past ``max_ids`` the chain
    continues with the next day's key ``SHA256(D)``, as the published-list matcher does.
    ``count`` None means one day."""
    validate_max(max_ids)
    if day_start % DAY_SECONDS:
        raise ValueError(f"start {day_start} is not a UTC midnight")
    length = DAY_SECONDS // max_ids
    total = max_ids if count is None else count
    key = daily_key
    subkey = first_subkey(key)
    for index in range(total):
        if index and index % max_ids == 0:
            key = next_daily_key(key)
            subkey = first_subkey(key)
        start = day_start + index * length
        yield BluezoneSlot(index, start, start + length, key, id_from_subkey(subkey))
        subkey = hashlib.sha256(subkey).digest()


def _check_key(key: bytes) -> None:
    if len(key) != KEY_LENGTH:
        raise ValueError(f"a Bluezone daily key is {KEY_LENGTH} bytes, got {len(key)}")
