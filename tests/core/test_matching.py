"""The matching core against identifiers built with bzlogger.ids (the phone's algorithms)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import pytest

from bzlogger.core import matching, risk
from bzlogger.ids import bluezone, gaen
from bzlogger.model import Encounter, Protocol

DAY0 = 1_764_892_800  # 2025-12-05T00:00:00Z
INTERVAL0 = DAY0 // 600


@dataclass(frozen=True)
class Tek:
    key_data: bytes
    rolling_start: int
    rolling_period: int = 144


@dataclass(frozen=True)
class Daily:
    daily_key: bytes
    time_start: int
    time_end: int
    max_ids: int = 96


def encounter(protocol: Protocol, identifier: bytes, first: float, duration: float = 300,
              rssi: int = -60, aem: bytes | None = None, close_s: float = 0.0) -> Encounter:
    return Encounter(protocol, identifier, first, first + duration, samples=10,
                     rssi_max=rssi + 3, rssi_median=rssi, rssi_mean=rssi, close_s=close_s,
                     aem=aem)


def noise(protocol: Protocol, count: int, seed: int = 1) -> list[Encounter]:
    rng = random.Random(seed)
    length = 16 if protocol is Protocol.GAEN else 12
    return [encounter(protocol, rng.randbytes(length), DAY0 + rng.uniform(0, 3 * 86400))
            for _ in range(count)]


def test_rpi_key_equals_reference_hkdf() -> None:
    for _ in range(20):
        tek = os.urandom(16)
        assert matching.rpi_key(tek) == gaen.rpik(tek)


def test_gaen_match_finds_rpi_with_time_and_attenuation() -> None:
    tek = os.urandom(16)
    metadata = gaen.Metadata(tx_power=-20).encode()
    slots = list(gaen.iter_slots(tek, INTERVAL0, 144, metadata))
    seen = slots[50]
    hit = encounter(Protocol.GAEN, seen.rpi, seen.start + 60, rssi=-70, aem=seen.aem)
    stored = [*noise(Protocol.GAEN, 500), hit]
    matcher = matching.GaenMatcher(stored)
    other = Tek(os.urandom(16), INTERVAL0)
    hits = matcher.match([other, Tek(tek, INTERVAL0)])
    assert [(h.key_index, h.start) for h in hits] == [(1, seen.start)]
    (exposure,) = matching.exposures(hits, matcher.encounters, [other.key_data, tek])
    assert exposure.identifier == seen.rpi and exposure.list_key == tek
    assert exposure.first_seen == hit.first_seen
    assert exposure.attenuation_db == pytest.approx(-20 - -70)
    assert 0 < exposure.risk < 1


@pytest.mark.parametrize(("shift", "found"), [(-7200 - 100, True), (-7200 - 101, False),
                                             (7200 + 600, True), (7200 + 601, False)])
def test_gaen_clock_tolerance_is_two_hours(shift: float, found: bool) -> None:
    tek = os.urandom(16)
    seen = list(gaen.iter_slots(tek, INTERVAL0 + 30, 10))[3]
    stored = [encounter(Protocol.GAEN, seen.rpi, seen.start + shift, duration=100)]
    hits = matching.GaenMatcher(stored).match([Tek(tek, INTERVAL0 + 30, 10)])
    assert bool(hits) is found


def test_gaen_only_intervals_of_the_keys_validity() -> None:
    tek = os.urandom(16)
    outside = gaen.rpi(gaen.rpik(tek), INTERVAL0 + 144)  # the next day's interval
    stored = [encounter(Protocol.GAEN, outside, (INTERVAL0 + 144) * 600)]
    assert matching.GaenMatcher(stored).match([Tek(tek, INTERVAL0)]) == []


def test_gaen_unknown_metadata_version_gives_unknown_attenuation() -> None:
    tek = os.urandom(16)
    metadata = gaen.Metadata(tx_power=-20, major=2).encode()
    seen = next(gaen.iter_slots(tek, INTERVAL0, 1, metadata))
    exposure = matching.gaen_exposure(
        encounter(Protocol.GAEN, seen.rpi, seen.start, aem=seen.aem), tek)
    assert exposure.attenuation_db is None


def test_many_keys_one_chunk_with_mixed_periods() -> None:
    rng = random.Random(7)
    keys = [Tek(rng.randbytes(16), INTERVAL0 + 144 * rng.randrange(3), rng.randrange(1, 145))
            for _ in range(300)]
    chosen = {5: 0, 77: None, 299: None}
    stored = noise(Protocol.GAEN, 2000)
    expected = set()
    for number in chosen:
        key = keys[number]
        interval = key.rolling_start + key.rolling_period - 1
        stored.append(encounter(Protocol.GAEN, gaen.rpi(gaen.rpik(key.key_data), interval),
                                interval * 600 + 10))
        expected.add((number, interval * 600))
    hits = matching.GaenMatcher(stored).match(keys)
    assert {(h.key_index, h.start) for h in hits} == expected


def test_bluezone_match_over_a_multi_day_entry() -> None:
    key = os.urandom(32)
    slots = list(bluezone.iter_slots(key, DAY0, 96, count=3 * 96))
    day2 = slots[96 + 40]  # second day: the chain continued with SHA256(D)
    stored = [*noise(Protocol.BLUEZONE, 500),
              encounter(Protocol.BLUEZONE, day2.identifier, day2.start + 100, rssi=-60)]
    matcher = matching.BluezoneMatcher(stored)
    hits = matcher.match([Daily(os.urandom(32), DAY0, DAY0 + 86399),
                          Daily(key, DAY0, DAY0 + 3 * 86400 - 1)])
    assert [(h.key_index, h.start, h.end) for h in hits] == [(1, day2.start, day2.end)]
    (exposure,) = matching.exposures(hits, matcher.encounters, [b"", key])
    assert exposure.attenuation_db is None and exposure.list_key == key


@pytest.mark.parametrize(("offset", "found"), [(-600, True), (-601, False),
                                              (900 + 600, True), (900 + 601, False)])
def test_bluezone_slot_tolerance(offset: float, found: bool) -> None:
    key = os.urandom(32)
    slot = list(bluezone.iter_slots(key, DAY0, 96))[10]
    stored = [encounter(Protocol.BLUEZONE, slot.identifier, slot.start + offset, duration=0)]
    hits = matching.BluezoneMatcher(stored).match([Daily(key, DAY0, DAY0 + 86399)])
    assert bool(hits) is found


def test_bluezone_entry_ends_at_time_end() -> None:
    key = os.urandom(32)
    slots = list(bluezone.iter_slots(key, DAY0, 144, count=144))
    late = slots[100]
    stored = [encounter(Protocol.BLUEZONE, late.identifier, late.start)]
    entry = Daily(key, DAY0, late.start - 1, 144)  # the list stops before that slot
    assert matching.BluezoneMatcher(stored).match([entry]) == []
    assert matching.BluezoneMatcher(stored).match([Daily(key, DAY0, late.start, 144)])


def test_nothing_stored_nothing_found() -> None:
    assert matching.GaenMatcher([]).match([Tek(os.urandom(16), INTERVAL0)]) == []
    assert matching.BluezoneMatcher([]).match([Daily(os.urandom(32), DAY0, DAY0)]) == []


def test_risk_grows_with_closeness_and_time() -> None:
    assert risk.risk_score(15 * 60, 15 * 60, None, -80) == pytest.approx(0.5)
    assert risk.risk_score(15 * 60, 0, 45.0, -90) == pytest.approx(0.5)
    assert risk.risk_score(15 * 60, 0, 60.0, -90) < 0.5
    assert risk.risk_score(15 * 60, 0, 80.0, -40) == 0.0
    assert risk.risk_score(60 * 60, 0, None, -60) > risk.risk_score(10 * 60, 0, None, -60)
    assert risk.risk_score(0, 0, None, -40) == 0.0
