"""The pure door presence detector."""

from __future__ import annotations

import dataclasses
from datetime import timedelta, timezone

import pytest

from bzlogger.core.door import DoorDetector
from bzlogger.model import Protocol, Sighting

PHONE_A = bytes(range(12))
PHONE_B = bytes(range(1, 13))
RPI = bytes(range(16))
T0 = 1_796_601_600.0  # 2026-12-07T00:00:00Z


def walk(detector: DoorDetector, ident: bytes, rssi: int, start: float, end: float,
         every: float = 0.25, protocol: Protocol = Protocol.BLUEZONE) -> None:
    t = start
    while t <= end + 1e-9:
        detector.observe(Sighting(protocol, ident, rssi, t))
        t += every


def test_present_only_after_hold_then_clears_after_release() -> None:
    d = DoorDetector(rssi_threshold=-60, hold_s=2.0, release_s=1.5)
    walk(d, PHONE_A, -50, T0, T0 + 1.75)
    assert not d.state(T0 + 1.8).present
    walk(d, PHONE_A, -50, T0 + 2.0, T0 + 5.0)
    state = d.state(T0 + 5.0)
    assert state.present and state.phones == 1 and state.protocols == ("bluezone",)
    assert d.state(T0 + 6.4).present  # within release_s of the last strong sighting
    assert not d.state(T0 + 6.6).present


def test_weak_signal_never_counts_and_calibration_applies() -> None:
    d = DoorDetector(rssi_threshold=-60, hold_s=1.0)
    walk(d, PHONE_A, -70, T0, T0 + 5)
    assert not d.state(T0 + 5).present
    calibrated = DoorDetector(rssi_threshold=-60, hold_s=1.0, rssi_offset=12)
    walk(calibrated, PHONE_A, -70, T0, T0 + 5)
    assert calibrated.state(T0 + 5).present


def test_one_weak_packet_does_not_break_a_run() -> None:
    d = DoorDetector(rssi_threshold=-60, hold_s=2.0, release_s=1.5)
    walk(d, PHONE_A, -55, T0, T0 + 1.0)
    d.observe(Sighting(Protocol.BLUEZONE, PHONE_A, -75, T0 + 1.25))
    walk(d, PHONE_A, -55, T0 + 1.5, T0 + 2.5)
    assert d.state(T0 + 2.5).present


def test_a_long_silence_restarts_the_hold() -> None:
    d = DoorDetector(rssi_threshold=-60, hold_s=2.0, release_s=1.0)
    walk(d, PHONE_A, -55, T0, T0 + 1.5)
    walk(d, PHONE_A, -55, T0 + 4.0, T0 + 5.0)
    assert not d.state(T0 + 5.0).present


def test_count_today_counts_distinct_phones_and_resets_at_local_midnight() -> None:
    vietnam = timezone(timedelta(hours=7))
    d = DoorDetector(rssi_threshold=-60, hold_s=1.0, tz=vietnam)
    walk(d, PHONE_A, -50, T0, T0 + 2)
    walk(d, PHONE_A, -50, T0 + 60, T0 + 62)  # the same phone again: counted once
    walk(d, RPI, -50, T0 + 100, T0 + 102, protocol=Protocol.GAEN)
    walk(d, PHONE_B, -80, T0 + 200, T0 + 210)  # passed by, never close
    state = d.state(T0 + 300)
    assert state.count_today == 2 and state.day == "2026-12-07"
    # 17:00 UTC is midnight in Vietnam.
    next_day = T0 + 17 * 3600 + 10
    state = d.state(next_day)
    assert state.count_today == 0 and state.day == "2026-12-08"
    walk(d, PHONE_B, -50, next_day, next_day + 2)
    assert d.state(next_day + 2).count_today == 1


def test_two_phones_and_protocols() -> None:
    d = DoorDetector(rssi_threshold=-60, hold_s=0.0)
    assert d.observe(Sighting(Protocol.GAEN, RPI, -40, T0))
    assert d.observe(Sighting(Protocol.BLUEZONE, PHONE_A, -40, T0))
    assert not d.observe(Sighting(Protocol.BLUEZONE, PHONE_A, -40, T0 + 0.1))
    state = d.state(T0 + 0.1)
    assert state.phones == 2 and state.protocols == ("bluezone", "gaen")


def test_state_carries_no_identifier() -> None:
    d = DoorDetector(hold_s=0.0)
    d.observe(Sighting(Protocol.BLUEZONE, PHONE_A, -40, T0))
    state = d.state(T0)
    text = repr(dataclasses.asdict(state))
    assert PHONE_A.hex() not in text and "identifier" not in text


def test_rejects_impossible_parameters() -> None:
    with pytest.raises(ValueError, match="hold_s"):
        DoorDetector(hold_s=-1)
