"""The kiosk's own identity: which identifier to advertise at a given time, and when
the next change is due. Pure: keys, time and the randomised rotation fraction are
parameters.

- Bluezone: a fresh random daily key per UTC day (the privacy note of bluezone.md: a
  published key then reveals one day, not every later one); the ID changes on UTC slot
  boundaries.
- GAEN: a fresh TEK per UTC day; the RPI and the BLE address change together every
  10-20 minutes (randomised), never across the day's TEK boundary.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bzlogger.ids import bluezone, gaen
from bzlogger.model import Protocol

#: GAEN rotation bounds in seconds (spec: "every 10-20 minutes, randomised").
GAEN_MIN_ROTATION_S = 600
GAEN_MAX_ROTATION_S = 1200


@dataclass(frozen=True, slots=True)
class DayKeys:
    """The kiosk's own key material for one UTC day."""

    day_start: int
    bluezone_key: bytes
    gaen_tek: bytes

    def __post_init__(self) -> None:
        if self.day_start % bluezone.DAY_SECONDS:
            raise ValueError("day_start must be a UTC midnight")
        if len(self.bluezone_key) != bluezone.KEY_LENGTH or len(self.gaen_tek) != gaen.KEY_LENGTH:
            raise ValueError("bad key length for Bluezone daily key or GAEN TEK")

    @classmethod
    def generate(cls, day_start: int) -> DayKeys:
        """Fresh random keys for the day starting at ``day_start``."""
        return cls(day_start, secrets.token_bytes(bluezone.KEY_LENGTH), gaen.new_tek())


@dataclass(frozen=True, slots=True)
class Beacon:
    """What to advertise from ``valid_from`` until ``valid_until`` (the next change)."""

    protocol: Protocol
    identifier: bytes
    valid_from: float
    valid_until: float
    aem: bytes | None = None


def bluezone_beacon(keys: DayKeys, now: float, max_ids: int = bluezone.DEFAULT_MAX) -> Beacon:
    """The Bluezone ID of the slot containing ``now``; it changes at the slot's end."""
    _check_day(keys, now)
    slot = bluezone.slot_of(now, max_ids)
    start = bluezone.slot_start(now, max_ids)
    identifier = bluezone.id_at_slot(keys.bluezone_key, slot, max_ids)
    return Beacon(Protocol.BLUEZONE, identifier, start, start + bluezone.slot_seconds(max_ids))


def gaen_beacon(
    keys: DayKeys, now: float, tx_power: int, rotation_fraction: float, calibration: int = 0
) -> Beacon:
    """The RPI and AEM for ``now``, valid for 10-20 minutes (``rotation_fraction`` in
    [0, 1) picks where), cut at the end of the TEK's day."""
    _check_day(keys, now)
    if not 0.0 <= rotation_fraction < 1.0:
        raise ValueError("rotation_fraction must be in [0, 1)")
    interval = gaen.interval_number(now)
    rpi = gaen.rpi(gaen.rpik(keys.gaen_tek), interval)
    metadata = gaen.Metadata(tx_power=tx_power, calibration_confidence=calibration).encode()
    aem = gaen.aem_crypt(gaen.aemk(keys.gaen_tek), rpi, metadata)
    span = GAEN_MIN_ROTATION_S + rotation_fraction * (GAEN_MAX_ROTATION_S - GAEN_MIN_ROTATION_S)
    day_end = keys.day_start + bluezone.DAY_SECONDS
    return Beacon(Protocol.GAEN, rpi, now, min(now + span, day_end), aem)


def beacons_at(keys: DayKeys, now: float, protocols: Iterable[Protocol], *,
               bluezone_max: int = bluezone.DEFAULT_MAX, tx_power: int = -8,
               rotation_fraction: Callable[[], float] | None = None) -> list[Beacon]:
    """The beacons of ``protocols`` to advertise at ``now`` from the day's ``keys``;
    ``rotation_fraction`` draws where in 10-20 minutes the GAEN RPI changes (the OS's
    CSPRNG unless given)."""
    draw = rotation_fraction or random_rotation_fraction
    out: list[Beacon] = []
    for protocol in protocols:
        if protocol is Protocol.BLUEZONE:
            out.append(bluezone_beacon(keys, now, bluezone_max))
        else:
            out.append(gaen_beacon(keys, now, tx_power, draw()))
    return out


def random_rotation_fraction() -> float:
    """A uniformly random fraction from the OS's CSPRNG, for :func:`gaen_beacon`."""
    return secrets.randbelow(1 << 30) / float(1 << 30)


def _check_day(keys: DayKeys, now: float) -> None:
    if bluezone.utc_midnight(now) != keys.day_start:
        raise ValueError("the keys given are not for the day containing now")
