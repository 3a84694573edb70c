"""Property tests: slot arithmetic around UTC midnight and slot boundaries, AEM round
trips, and the kiosk's own key schedule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bzlogger.ids import bluezone, gaen, schedule
from bzlogger.model import Protocol

DIVISORS = [m for m in range(1, 1441) if 86400 % m == 0]
times = st.integers(min_value=0, max_value=4_102_444_800)  # up to 2100
maxes = st.sampled_from(DIVISORS)


@given(times, maxes)
def test_slot_contains_time(t: int, max_ids: int) -> None:
    length = bluezone.slot_seconds(max_ids)
    start = bluezone.slot_start(t, max_ids)
    slot = bluezone.slot_of(t, max_ids)
    assert start <= t < start + length
    assert 0 <= slot < max_ids
    assert start == bluezone.utc_midnight(t) + slot * length


@given(st.integers(min_value=0, max_value=47_000), maxes)
def test_midnight_is_slot_zero_and_last_second_is_last_slot(day: int, max_ids: int) -> None:
    midnight = day * 86400
    assert bluezone.slot_of(midnight, max_ids) == 0
    assert bluezone.slot_of(midnight - 1, max_ids) == max_ids - 1 if day else True
    assert bluezone.slot_of(midnight + 86399.999, max_ids) == max_ids - 1


@given(times, maxes)
def test_boundary_starts_a_new_slot(t: int, max_ids: int) -> None:
    start = bluezone.slot_start(t, max_ids)
    nxt = start + bluezone.slot_seconds(max_ids)
    assert bluezone.slot_start(nxt, max_ids) == nxt
    assert bluezone.slot_start(nxt - 0.001, max_ids) == start


@pytest.mark.parametrize("bad", [0, -1, 7, 86401, 1000])
def test_max_must_divide_the_day(bad: int) -> None:
    with pytest.raises(ValueError, match="divisor"):
        bluezone.slot_seconds(bad)


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16),
       st.integers(-128, 127), st.integers(0, 3), st.integers(0, 3), st.integers(0, 3))
def test_aem_round_trip(tek: bytes, rpi: bytes, tx: int, major: int, minor: int,
                        conf: int) -> None:
    meta = gaen.Metadata(tx_power=tx, major=major, minor=minor, calibration_confidence=conf)
    key = gaen.aemk(tek)
    aem = gaen.aem_crypt(key, rpi, meta.encode())
    assert len(aem) == 4
    assert gaen.Metadata.decode(gaen.aem_crypt(key, rpi, aem)) == meta


@given(st.integers(min_value=0, max_value=4_102_444_800))
def test_interval_number_and_rolling_start(t: int) -> None:
    n = gaen.interval_number(t)
    assert gaen.interval_start(n) <= t < gaen.interval_start(n + 1)
    assert gaen.rolling_start(t) % 144 == 0
    assert gaen.rolling_start(t) * 600 == bluezone.utc_midnight(t)


@given(st.integers(min_value=0, max_value=1_000_000), st.integers(1, 200))
def test_batched_rpis_equal_single_rpis(first: int, count: int) -> None:
    key = gaen.rpik(bytes(range(16)))
    batch = gaen.rpis_for(key, first, count)
    assert batch[0] == gaen.rpi(key, first)
    assert batch[-1] == gaen.rpi(key, first + count - 1)


DAY = 1_796_083_200  # a UTC midnight


@given(st.floats(min_value=0, max_value=86399.999), st.sampled_from([96, 144]))
def test_bluezone_beacon_changes_on_slot_boundaries(offset: float, max_ids: int) -> None:
    keys = schedule.DayKeys(DAY, bytes(32), bytes(16))
    beacon = schedule.bluezone_beacon(keys, DAY + offset, max_ids)
    assert beacon.protocol is Protocol.BLUEZONE
    assert beacon.valid_from <= DAY + offset < beacon.valid_until
    assert beacon.valid_until - beacon.valid_from == 86400 // max_ids
    slot = bluezone.slot_of(DAY + offset, max_ids)
    assert beacon.identifier == bluezone.day_ids(bytes(32), max_ids)[slot]


@given(st.floats(min_value=0, max_value=86399.0), st.floats(min_value=0, max_value=0.999999))
def test_gaen_beacon_rotates_every_10_to_20_minutes_within_the_day(
    offset: float, fraction: float
) -> None:
    keys = schedule.DayKeys(DAY, bytes(32), bytes(range(16)))
    now = DAY + offset
    beacon = schedule.gaen_beacon(keys, now, tx_power=-8, rotation_fraction=fraction)
    span = beacon.valid_until - beacon.valid_from
    assert beacon.valid_until <= DAY + 86400
    assert span <= 1200
    assert span >= 600 or beacon.valid_until == DAY + 86400
    rpik = gaen.rpik(keys.gaen_tek)
    assert beacon.identifier == gaen.rpi(rpik, gaen.interval_number(now))
    assert beacon.aem is not None
    plain = gaen.aem_crypt(gaen.aemk(keys.gaen_tek), beacon.identifier, beacon.aem)
    assert gaen.Metadata.decode(plain).tx_power == -8


def test_schedule_refuses_keys_of_another_day() -> None:
    keys = schedule.DayKeys(DAY, bytes(32), bytes(16))
    with pytest.raises(ValueError, match="not for the day"):
        schedule.bluezone_beacon(keys, DAY + 86400)
    with pytest.raises(ValueError, match="UTC midnight"):
        schedule.DayKeys(DAY + 1, bytes(32), bytes(16))


def test_generated_day_keys_are_fresh_and_random() -> None:
    a, b = schedule.DayKeys.generate(DAY), schedule.DayKeys.generate(DAY)
    assert a.bluezone_key != b.bluezone_key and a.gaen_tek != b.gaen_tek
    assert len(a.bluezone_key) == 32 and len(a.gaen_tek) == 16
    fractions = {schedule.random_rotation_fraction() for _ in range(50)}
    assert len(fractions) > 40 and all(0 <= f < 1 for f in fractions)


def test_beacons_at_follows_the_protocol_list() -> None:
    keys = schedule.DayKeys(DAY, bytes(32), bytes(range(16)))
    now = DAY + 3600
    both = schedule.beacons_at(keys, now, [Protocol.GAEN, Protocol.BLUEZONE],
                               rotation_fraction=lambda: 0.5)
    assert [b.protocol for b in both] == [Protocol.GAEN, Protocol.BLUEZONE]
    assert both[0].valid_until == now + 900
    assert both[1] == schedule.bluezone_beacon(keys, now)
    assert schedule.beacons_at(keys, now, []) == []
