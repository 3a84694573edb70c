"""The simulated world: visitors with their own keys, where they are, what they
advertise, and how strong they sound at the kiosk. Pure: time and randomness are
parameters (a seeded :class:`random.Random`), nothing here touches D-Bus.

Radio model (log-distance path loss with log-normal shadowing)::

    rssi = tx_power_1m - 10 * n * log10(max(d, 0.1)) - extra_loss + N(0, sigma)

with ``n`` = 2.7 and ``sigma`` = 4 dB by default, ``tx_power_1m`` the phone's measured
power at 1 m, and ``extra_loss`` a wall or window between a street passer and the
kiosk (10 dB). Advertisements weaker than the sensitivity (-100 dBm) are not heard.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from bzlogger.ids import bluezone, gaen
from bzlogger.model import Platform, Protocol
from bzlogger.sim.adverts import AdContent, uuid16
from bzlogger.sim.radio import GattCharacteristicSpec, GattServiceSpec

APPLE_COMPANY_ID = 0x004C
#: iOS puts background service UUIDs into a 128-bit "overflow area" bitmask whose bit
#: positions come from an undocumented Apple hash. The simulator sets one bit derived
#: from the Bluezone iOS UUID (SHA-256 of its 16 bytes, mod 128, MSB first); scanners
#: should treat any Apple type-0x01 overflow payload as "maybe Bluezone, read over GATT".
IOS_OVERFLOW_BIT = hashlib.sha256(
    bytes.fromhex(bluezone.IOS_SERVICE_UUID.replace("-", ""))).digest()[0] % 128
IOS_OVERFLOW_BITMASK = (1 << (127 - IOS_OVERFLOW_BIT)).to_bytes(16, "big")
IOS_LOCAL_NAME = "Bluezone"

#: A street passer hears the kiosk (and is heard) through the shop window.
WALL_LOSS_DB = 10.0
#: "Close contact" distance recorded in the ground truth.
NEAR_DISTANCE_M = 2.0


class Kind(StrEnum):
    """What a visitor carries."""

    BLUEZONE_ANDROID = "bluezone-android"
    BLUEZONE_IOS = "bluezone-ios"
    GAEN = "gaen"
    TRACKER = "tracker"
    WATCH = "watch"
    HEADPHONES = "headphones"
    MALFORMED = "malformed"

    @property
    def is_phone(self) -> bool:
        """A contact-tracing phone (has keys, hears the kiosk)."""
        return self in (Kind.BLUEZONE_ANDROID, Kind.BLUEZONE_IOS, Kind.GAEN)

    @property
    def protocol(self) -> Protocol | None:
        """The contact-tracing protocol the visitor's app speaks."""
        if self in (Kind.BLUEZONE_ANDROID, Kind.BLUEZONE_IOS):
            return Protocol.BLUEZONE
        return Protocol.GAEN if self is Kind.GAEN else None

    @property
    def platform(self) -> Platform:
        """The phone platform (unknown for GAEN and noise)."""
        if self is Kind.BLUEZONE_ANDROID:
            return Platform.ANDROID
        return Platform.IOS if self is Kind.BLUEZONE_IOS else Platform.UNKNOWN


#: Measured power at 1 m (dBm) and advertising interval (s) per kind.
KIND_DEFAULTS: dict[Kind, tuple[int, float]] = {
    Kind.BLUEZONE_ANDROID: (-62, 0.1),   # LOW_LATENCY, TX power LOW
    Kind.BLUEZONE_IOS: (-58, 0.2),
    Kind.GAEN: (-60, 0.25),              # GAEN spec: 200-270 ms
    Kind.TRACKER: (-65, 2.0),
    Kind.WATCH: (-68, 1.0),
    Kind.HEADPHONES: (-64, 0.5),
    Kind.MALFORMED: (-60, 0.3),
}

MALFORMED_PAYLOADS = ("bluezone_short", "bluezone_long", "bluezone_unlisted", "gaen_short",
                      "gaen_long", "gaen_unlisted", "ios_overflow_short")


@dataclass(frozen=True, slots=True)
class RadioModel:
    """Log-distance path loss with shadowing; see the module docstring."""

    path_loss_exponent: float = 2.7
    shadowing_sigma_db: float = 4.0
    sensitivity_dbm: int = -100

    def mean_rssi(self, tx_power_1m: float, distance_m: float, extra_loss_db: float = 0.0) -> float:
        """Expected RSSI without shadowing."""
        return (tx_power_1m - 10.0 * self.path_loss_exponent * math.log10(max(distance_m, 0.1))
                - extra_loss_db)

    def rssi(self, tx_power_1m: float, distance_m: float, extra_loss_db: float,
             rng: random.Random) -> int:
        """One RSSI sample (dBm, clamped to [-127, 20])."""
        value = self.mean_rssi(tx_power_1m, distance_m, extra_loss_db)
        value += rng.gauss(0.0, self.shadowing_sigma_db)
        return max(-127, min(20, round(value)))


@dataclass(frozen=True, slots=True)
class Path:
    """Distance to the kiosk over time: ``(seconds after arrival, metres)`` waypoints,
    linear in between; the visitor is present from the first to the last waypoint."""

    waypoints: tuple[tuple[float, float], ...]
    extra_loss_db: float = 0.0

    def __post_init__(self) -> None:
        times = [t for t, _ in self.waypoints]
        if len(times) < 2 or times != sorted(times) or times[0] != 0.0:
            raise ValueError("a path needs >= 2 waypoints in time order starting at 0")
        if any(d < 0 for _, d in self.waypoints):
            raise ValueError("distances must be >= 0")

    @property
    def duration(self) -> float:
        """Seconds from arrival to departure."""
        return self.waypoints[-1][0]

    def distance(self, offset: float) -> float:
        """Metres from the kiosk ``offset`` seconds after arrival (clamped to the path)."""
        points = self.waypoints
        if offset <= 0:
            return points[0][1]
        if offset >= points[-1][0]:
            return points[-1][1]
        index = bisect.bisect_right([t for t, _ in points], offset)
        (t0, d0), (t1, d1) = points[index - 1], points[index]
        return d0 + (d1 - d0) * (offset - t0) / (t1 - t0) if t1 > t0 else d1


def walk_past(rng: random.Random) -> Path:
    """Walks in through the door past the kiosk (closest 0.8-1.5 m) into the office."""
    closest = rng.uniform(0.8, 1.5)
    speed = rng.uniform(1.0, 1.5)
    return Path(((0.0, 12.0), (11.0 / speed, closest), (22.0 / speed, 12.0)))


def queue(rng: random.Random, wait_s: float) -> Path:
    """Queues at the door: approaches, shuffles forward from ~6 m to the kiosk (0.6-1 m)
    during ``wait_s``, then walks away."""
    points = [(0.0, 12.0), (6.0, 6.0)]
    steps = max(2, int(wait_s // 45))
    for step in range(1, steps + 1):
        t = 6.0 + wait_s * step / steps
        points.append((t, max(0.6, 6.0 - 5.2 * step / steps) + rng.uniform(-0.2, 0.2)))
    end = points[-1][0]
    points += [(end + 20.0, rng.uniform(0.6, 1.0)), (end + 30.0, 12.0)]
    return Path(tuple((t, max(0.3, d)) for t, d in points))


def desk(rng: random.Random, stay_s: float) -> Path:
    """Sits at the desk beside the door (1.2-2.5 m) for ``stay_s``."""
    seat = rng.uniform(1.2, 2.5)
    points = [(0.0, 12.0), (10.0, seat)]
    t = 10.0
    while t < 10.0 + stay_s:
        t = min(10.0 + stay_s, t + rng.uniform(60.0, 240.0))
        points.append((t, max(0.8, seat + rng.uniform(-0.3, 0.3))))
    points.append((t + 10.0, 12.0))
    return Path(tuple(points))


def street(rng: random.Random) -> Path:
    """Passes on the street outside the window: closest 9-20 m, through a wall."""
    closest = rng.uniform(9.0, 20.0)
    speed = rng.uniform(1.0, 1.6)
    half = 30.0 / speed
    return Path(((0.0, closest + 25.0), (half, closest), (2 * half, closest + 25.0)),
                extra_loss_db=WALL_LOSS_DB)


def stationary(distance_m: float, stay_s: float) -> Path:
    """Stays at ``distance_m`` for ``stay_s`` (noise devices on a nearby desk)."""
    return Path(((0.0, distance_m), (stay_s, distance_m)))


@dataclass(frozen=True, slots=True)
class Emission:
    """What a visitor puts on the air during one rotation epoch."""

    address: str
    content: AdContent
    valid_from: float
    valid_until: float
    protocol: Protocol | None = None
    identifier: bytes | None = None
    aem: bytes | None = None


@dataclass(slots=True)
class Visitor:
    """One person (or device) in the scenario, with the key material of its app."""

    id: str
    kind: Kind
    arrival: float
    path: Path
    seed: bytes
    tx_power_1m: int
    adv_interval_s: float
    positive: bool = False
    ios_background: bool = False
    malformed: str | None = None
    max_ids: int = bluezone.DEFAULT_MAX
    bluezone_base_key: bytes | None = None
    bluezone_base_day: int = 0
    gaen_teks: dict[int, bytes] = field(default_factory=dict)
    gaen_tx_power: int = -8
    left_at: float | None = None
    _cache: dict[float, Emission] = field(default_factory=dict)
    _rotations: list[float] = field(default_factory=list)

    @property
    def departure(self) -> float:
        """Unix time the visitor leaves (early if it walked away)."""
        planned = self.arrival + self.path.duration
        return planned if self.left_at is None else min(planned, self.left_at)

    def present(self, now: float) -> bool:
        """In radio range of the scenario at ``now``."""
        return self.arrival <= now < self.departure

    def distance(self, now: float) -> float:
        """Metres from the kiosk at ``now``."""
        return self.path.distance(now - self.arrival)

    @property
    def phase(self) -> float:
        """Offset of this visitor's advertising events within its interval."""
        return int.from_bytes(self.seed[:4], "big") / 2**32 * self.adv_interval_s

    def advertised_between(self, start: float, end: float) -> bool:
        """Whether at least one advertising event falls in ``(start, end]``."""
        first = math.floor((start - self.arrival - self.phase) / self.adv_interval_s)
        last = math.floor((end - self.arrival - self.phase) / self.adv_interval_s)
        return last > first

    def bluezone_daily_key(self, day_start: int) -> bytes:
        """The Bluezone daily key ``D_n`` of the UTC day starting at ``day_start``."""
        assert self.bluezone_base_key is not None
        days = (day_start - self.bluezone_base_day) // bluezone.DAY_SECONDS
        return bluezone.daily_key(self.bluezone_base_key, days)

    def gaen_tek(self, day_start: int) -> bytes:
        """The GAEN TEK of the UTC day starting at ``day_start`` (derived from the seed
        when the scenario did not give one)."""
        tek = self.gaen_teks.get(day_start)
        if tek is None:
            tek = hashlib.sha256(self.seed + b"tek" + day_start.to_bytes(8, "big")).digest()[:16]
            self.gaen_teks[day_start] = tek
        return tek

    def epoch_start(self, now: float) -> float:
        """Start of the rotation epoch (address + identifier) containing ``now``."""
        if self.kind in (Kind.BLUEZONE_ANDROID, Kind.BLUEZONE_IOS):
            return float(bluezone.slot_start(now, self.max_ids))
        if self.kind is Kind.GAEN:
            return self._gaen_epoch(now)
        if self.kind in (Kind.TRACKER, Kind.MALFORMED):
            return float(now // 900 * 900)
        return 0.0  # watches and headphones keep one address

    def _gaen_epoch(self, now: float) -> float:
        # Rotation every 10-20 minutes (random per step), restarted at each UTC midnight
        # because the TEK changes there.
        day = bluezone.utc_midnight(now)
        if not self._rotations or self._rotations[0] > now or bluezone.utc_midnight(
                self._rotations[0]) != day:
            self._rotations = [float(day)]
        while self._rotations[-1] <= now:
            step = rng_step(self.seed, len(self._rotations), self._rotations[0])
            nxt = min(self._rotations[-1] + step, float(day + bluezone.DAY_SECONDS))
            self._rotations.append(nxt)
        index = bisect.bisect_right(self._rotations, now) - 1
        return self._rotations[index]

    def emission(self, now: float) -> Emission:
        """What the visitor advertises at ``now`` (cached per rotation epoch)."""
        epoch = self.epoch_start(now)
        cached = self._cache.get(epoch)
        if cached is None:
            cached = self._build_emission(epoch, now)
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[epoch] = cached
        return cached

    def _address(self, epoch: float, resolvable: bool) -> str:
        raw = bytearray(hashlib.sha256(self.seed + b"addr" + repr(epoch).encode()).digest()[:6])
        # Top bits: 01 resolvable private (phones), 11 static random (accessories).
        raw[0] = (raw[0] & 0x3F) | (0x40 if resolvable else 0xC0)
        return ":".join(f"{b:02X}" for b in raw)

    def _build_emission(self, epoch: float, now: float) -> Emission:
        kind = self.kind
        if kind in (Kind.BLUEZONE_ANDROID, Kind.BLUEZONE_IOS):
            day = bluezone.utc_midnight(now)
            slot = bluezone.slot_of(now, self.max_ids)
            identifier = bluezone.id_at_slot(self.bluezone_daily_key(day), slot, self.max_ids)
            until = epoch + bluezone.slot_seconds(self.max_ids)
            if kind is Kind.BLUEZONE_ANDROID:
                content = AdContent(service_uuids=(bluezone.SERVICE_UUID,),
                                    manufacturer_data={bluezone.COMPANY_ID: identifier})
            elif self.ios_background:
                content = AdContent(manufacturer_data={
                    APPLE_COMPANY_ID: b"\x01" + IOS_OVERFLOW_BITMASK})
            else:
                content = AdContent(service_uuids=(bluezone.IOS_SERVICE_UUID,),
                                    local_name=IOS_LOCAL_NAME)
            return Emission(self._address(epoch, True), content, epoch, until,
                            Protocol.BLUEZONE, identifier)
        if kind is Kind.GAEN:
            day = bluezone.utc_midnight(now)
            tek = self.gaen_tek(day)
            rpi = gaen.rpi(gaen.rpik(tek), gaen.interval_number(epoch))
            metadata = gaen.Metadata(tx_power=self.gaen_tx_power).encode()
            aem = gaen.aem_crypt(gaen.aemk(tek), rpi, metadata)
            content = AdContent(service_uuids=(gaen.SERVICE_UUID,),
                                service_data={gaen.SERVICE_UUID: rpi + aem}, connectable=False)
            index = bisect.bisect_right(self._rotations, now)
            until = self._rotations[index] if index < len(self._rotations) else now
            return Emission(self._address(epoch, False), content, epoch, until,
                            Protocol.GAEN, rpi, aem)
        filler = hashlib.sha256(self.seed + b"payload" + repr(epoch).encode()).digest()
        if kind is Kind.TRACKER:
            content = AdContent(service_uuids=(uuid16(0xFEED),),
                                service_data={uuid16(0xFEED): filler[:10]}, connectable=False)
        elif kind is Kind.WATCH:
            content = AdContent(manufacturer_data={0x0075: b"\x42\x04" + filler[:10]},
                                local_name=f"Galaxy Watch4 ({filler[10:12].hex().upper()})")
        elif kind is Kind.HEADPHONES:
            content = AdContent(manufacturer_data={APPLE_COMPANY_ID: b"\x07\x19" + filler[:25]})
        else:
            content = malformed_content(self.malformed or "bluezone_short", filler)
        return Emission(self._address(epoch, kind in (Kind.TRACKER, Kind.MALFORMED)), content,
                        epoch, epoch + 900 if epoch else math.inf)

    def gatt(self, now_fn: Callable[[], float]) -> tuple[GattServiceSpec, ...] | None:
        """The GATT database the visitor's phone serves (None: not connectable)."""
        if self.kind in (Kind.BLUEZONE_ANDROID, Kind.BLUEZONE_IOS):
            def read_id() -> bytes:
                emission = self.emission(now_fn())
                assert emission.identifier is not None
                return emission.identifier

            return (GattServiceSpec(bluezone.IOS_SERVICE_UUID, (
                GattCharacteristicSpec(bluezone.IOS_CHARACTERISTIC_UUID, ("read",), read_id),)),)
        if self.kind in (Kind.WATCH, Kind.HEADPHONES):
            level = bytes([40 + self.seed[5] % 60])
            return (GattServiceSpec(uuid16(0x180F), (
                GattCharacteristicSpec(uuid16(0x2A19), ("read", "notify"), lambda: level),)),)
        return None

    def emissions_during(self, start: float, end: float) -> Iterator[Emission]:
        """Each distinct emission between ``start`` and ``end`` (for the ground truth)."""
        t = start
        while t < end:
            emission = self.emission(t)
            yield emission
            t = max(emission.valid_until, t + 1.0) if emission.valid_until > t else t + 60.0

    def near_spans(self, distance_m: float = NEAR_DISTANCE_M) -> list[tuple[float, float]]:
        """Time spans (Unix s) the visitor spent within ``distance_m`` of the kiosk."""
        spans: list[tuple[float, float]] = []
        start: float | None = None
        t = self.arrival
        while t <= self.departure:
            near = self.distance(t) <= distance_m
            if near and start is None:
                start = t
            elif not near and start is not None:
                spans.append((start, t))
                start = None
            t += 1.0
        if start is not None:
            spans.append((start, min(t, self.departure)))
        return spans


def rng_step(seed: bytes, index: int, day: float) -> float:
    """The ``index``-th GAEN rotation step (600-1200 s) of a phone, deterministic."""
    digest = hashlib.sha256(seed + b"rot" + repr(day).encode() + index.to_bytes(4, "big")).digest()
    return 600.0 + int.from_bytes(digest[:4], "big") / 2**32 * 600.0


def malformed_content(payload: str, filler: bytes) -> AdContent:
    """An advertisement that looks like a beacon but must be rejected by a scanner."""
    ident = filler[:21]
    if payload == "bluezone_short":
        return AdContent(service_uuids=(bluezone.SERVICE_UUID,),
                         manufacturer_data={bluezone.COMPANY_ID: ident[:11]})
    if payload == "bluezone_long":
        return AdContent(service_uuids=(bluezone.SERVICE_UUID,),
                         manufacturer_data={bluezone.COMPANY_ID: ident[:13]})
    if payload == "bluezone_unlisted":
        return AdContent(manufacturer_data={bluezone.COMPANY_ID: ident[:12]})
    if payload == "gaen_short":
        return AdContent(service_uuids=(gaen.SERVICE_UUID,),
                         service_data={gaen.SERVICE_UUID: ident[:19]}, connectable=False)
    if payload == "gaen_long":
        return AdContent(service_uuids=(gaen.SERVICE_UUID,),
                         service_data={gaen.SERVICE_UUID: ident[:21]}, connectable=False)
    if payload == "gaen_unlisted":
        return AdContent(service_data={gaen.SERVICE_UUID: ident[:20]}, connectable=False)
    if payload == "ios_overflow_short":
        return AdContent(manufacturer_data={APPLE_COMPANY_ID: b"\x01" + ident[:7]})
    choices = ", ".join(MALFORMED_PAYLOADS)
    raise ValueError(f"unknown malformed payload {payload!r}; one of {choices}")
