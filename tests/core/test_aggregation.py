"""Sightings to encounters: statistics, gaps, calibration, replay guards, bounded memory."""

from __future__ import annotations

import statistics

from hypothesis import given, settings
from hypothesis import strategies as st

from bzlogger.config import EncounterSettings
from bzlogger.core.aggregation import (
    BLUEZONE_SLOT_S,
    FLAG_OUTSIDE_SLOT,
    FLAG_REPLAY,
    GAEN_REPLAY_S,
    SLOT_TOLERANCE_S,
    Aggregator,
    histogram_median,
)
from bzlogger.model import Encounter, Platform, Protocol, Sighting

BZ = Protocol.BLUEZONE
EN = Protocol.GAEN


def _bz(n: int) -> bytes:
    return n.to_bytes(12, "big")


def _en(n: int) -> bytes:
    return n.to_bytes(16, "big")


def _settings(**kw: object) -> EncounterSettings:
    base: dict[str, object] = {"min_rssi": -90, "rssi_offset": 0, "close_rssi": -65,
                               "smoothing": 1, "gap_s": 60.0}
    base.update(kw)
    return EncounterSettings(**base)  # type: ignore[arg-type]


def _final(agg: Aggregator, now: float) -> list[Encounter]:
    return agg.flush(now, close_all=True)


def test_statistics_of_one_encounter() -> None:
    agg = Aggregator(_settings())
    for t, rssi in [(0, -70), (1, -60), (2, -50), (3, -62), (10, -80)]:
        agg.add(Sighting(BZ, _bz(1), rssi, 1000.0 + t, tx_power=-8, platform=Platform.IOS))
    (enc,) = _final(agg, 2000.0)
    assert (enc.first_seen, enc.last_seen, enc.samples) == (1000.0, 1010.0, 5)
    assert enc.rssi_max == -50
    assert enc.rssi_median == -62
    assert enc.rssi_mean == statistics.mean([-70, -60, -50, -62, -80])
    # close (>= -65) at t=1,2,3: intervals 1-2 and 2-3 have both ends close
    assert enc.close_s == 2.0
    assert enc.tx_power == -8 and enc.platform is Platform.IOS
    assert enc.duration_s == 10.0 and enc.flags == frozenset()


def test_offset_applies_before_the_weak_filter() -> None:
    agg = Aggregator(_settings(min_rssi=-80, rssi_offset=-5))
    agg.add(Sighting(BZ, _bz(1), -76, 0.0))  # -81 calibrated: dropped
    agg.add(Sighting(BZ, _bz(1), -70, 1.0))
    (enc,) = _final(agg, 10.0)
    assert agg.counters.dropped_weak == 1
    assert enc.samples == 1 and enc.rssi_max == -75 and enc.first_seen == 1.0


def test_smoothing_suppresses_a_single_spike() -> None:
    agg = Aggregator(_settings(smoothing=3))
    for t, rssi in enumerate([-80, -80, -40, -80, -80]):
        agg.add(Sighting(BZ, _bz(1), rssi, float(t)))
    (enc,) = _final(agg, 100.0)
    assert enc.rssi_max == -80 and enc.close_s == 0.0


def test_gap_starts_a_new_encounter() -> None:
    agg = Aggregator(_settings(gap_s=30.0))
    for t in (0.0, 10.0, 20.0, 100.0, 110.0):
        agg.add(Sighting(BZ, _bz(7), -60, t))
    encs = sorted(_final(agg, 200.0), key=lambda e: e.first_seen)
    assert [(e.first_seen, e.last_seen, e.samples) for e in encs] == [(0, 20, 3), (100, 110, 2)]


def test_flush_returns_updates_and_closes_idle_encounters() -> None:
    agg = Aggregator(_settings(gap_s=30.0))
    agg.add(Sighting(BZ, _bz(1), -60, 0.0))
    (first,) = agg.flush(1.0)
    assert first.samples == 1 and agg.open_count == 1
    assert agg.flush(2.0) == []  # nothing changed
    agg.add(Sighting(BZ, _bz(1), -60, 5.0))
    (update,) = agg.flush(6.0)
    assert (update.first_seen, update.samples) == (0.0, 2)  # same key, upsert
    (closed,) = agg.flush(40.0)
    assert closed.last_seen == 5.0 and agg.open_count == 0


def test_gaen_replay_is_not_extended_and_is_flagged() -> None:
    agg = Aggregator(_settings(gap_s=600.0))
    for t in range(0, GAEN_REPLAY_S + 1, 300):
        agg.add(Sighting(EN, _en(3), -60, float(t), aem=b"\x01\x02\x03\x04"))
    agg.add(Sighting(EN, _en(3), -60, GAEN_REPLAY_S + 60.0))
    (enc,) = _final(agg, 5000.0)
    assert enc.last_seen == GAEN_REPLAY_S
    assert FLAG_REPLAY in enc.flags and agg.counters.replays == 1
    assert enc.aem == b"\x01\x02\x03\x04"


def test_gaen_replay_after_a_gap_does_not_start_an_encounter() -> None:
    agg = Aggregator(_settings(gap_s=60.0))
    agg.add(Sighting(EN, _en(3), -60, 0.0))
    agg.add(Sighting(EN, _en(3), -60, 3600.0))
    assert len(_final(agg, 9000.0)) == 1 and agg.counters.replays == 1


def test_bluezone_outside_its_slot_is_flagged() -> None:
    agg = Aggregator(_settings(gap_s=600.0))
    for t in range(0, BLUEZONE_SLOT_S + 400, 200):
        agg.add(Sighting(BZ, _bz(9), -60, float(t)))
    (enc,) = _final(agg, 9000.0)
    assert FLAG_OUTSIDE_SLOT in enc.flags and agg.counters.out_of_window >= 1
    assert enc.last_seen == 1200.0  # still extended


def test_memory_is_bounded_under_a_flood_of_distinct_ids() -> None:
    agg = Aggregator(_settings(), max_open=100)
    for n in range(5000):
        agg.add(Sighting(EN, _en(n), -60, n / 1000))
        assert agg.open_count <= 100
    out = agg.flush(5.0)
    assert len(out) == 5000 and agg.counters.forced_closes == 4900
    assert agg.pending_count == 0


def test_encounters_forced_out_at_the_same_instant_keep_distinct_keys() -> None:
    agg = Aggregator(_settings(), max_open=1)
    for ident in (1, 2, 1, 2, 1):  # each sighting evicts the other identifier's encounter
        agg.add(Sighting(BZ, _bz(ident), -60, 100.0))
    out = agg.flush(100.0, close_all=True)
    keys = {(e.identifier, e.first_seen) for e in out}
    assert len(keys) == len(out) == 5 and sum(e.samples for e in out) == 5
    assert all(100.0 <= e.first_seen < 100.001 for e in out)


def test_histogram_median() -> None:
    assert histogram_median({-60: 1}, 1) == -60
    assert histogram_median({-60: 1, -50: 1}, 2) == -55
    assert histogram_median({-70: 2, -60: 1, -50: 3}, 6) == -55


_bz_sighting = st.builds(
    Sighting,
    protocol=st.just(BZ),
    identifier=st.integers(0, 4).map(_bz),
    rssi=st.integers(-110, -20),
    time=st.floats(0, 3000, allow_nan=False).map(lambda t: round(t, 2)),
)
_en_sighting = st.builds(
    Sighting,
    protocol=st.just(EN),
    identifier=st.integers(0, 4).map(_en),
    rssi=st.integers(-110, -20),
    time=st.floats(0, 3000, allow_nan=False).map(lambda t: round(t, 2)),
)
_sighting = st.one_of(_bz_sighting, _en_sighting)


@settings(max_examples=150, deadline=None)
@given(st.lists(_sighting, max_size=80), st.integers(1, 7), st.integers(-10, 10))
def test_invariants_hold_for_any_stream(sightings: list[Sighting], smoothing: int,
                                        offset: int) -> None:
    cfg = _settings(smoothing=smoothing, rssi_offset=offset, gap_s=30.0)
    ordered = sorted(sightings, key=lambda s: s.time)
    agg = Aggregator(cfg, max_open=3)
    latest: dict[tuple[Protocol, bytes, float], Encounter] = {}
    for i, s in enumerate(ordered):
        agg.add(s)
        if i % 7 == 0:
            for e in agg.flush(s.time):
                latest[(e.protocol, e.identifier, e.first_seen)] = e
    for e in agg.flush(10_000.0, close_all=True):
        latest[(e.protocol, e.identifier, e.first_seen)] = e
    kept = [s for s in ordered if s.rssi + offset >= cfg.min_rssi]
    assert agg.counters.dropped_weak == len(ordered) - len(kept)
    assert sum(e.samples for e in latest.values()) == len(kept) - agg.counters.replays
    for e in latest.values():
        assert e.first_seen <= e.last_seen
        if e.protocol is EN:
            assert e.duration_s <= GAEN_REPLAY_S  # never extended past the replay guard
        elif e.duration_s > BLUEZONE_SLOT_S + SLOT_TOLERANCE_S:
            assert FLAG_OUTSIDE_SLOT in e.flags  # longer than any slot: flagged
        assert 0.0 <= e.close_s <= e.duration_s + 1e-9
        assert e.rssi_median <= e.rssi_max and e.rssi_mean <= e.rssi_max
        mine = [s.rssi + offset for s in kept if s.identifier == e.identifier
                and s.protocol is e.protocol and e.first_seen - 1e-3 <= s.time <= e.last_seen]
        assert min(mine) <= e.rssi_mean and e.rssi_max <= max(mine)
    # Same input, same output: the core is deterministic.
    again = Aggregator(cfg, max_open=3)
    replayed: dict[tuple[Protocol, bytes, float], Encounter] = {}
    for i, s in enumerate(ordered):
        again.add(s)
        if i % 7 == 0:
            replayed.update(((e.protocol, e.identifier, e.first_seen), e)
                            for e in again.flush(s.time))
    replayed.update(((e.protocol, e.identifier, e.first_seen), e)
                    for e in again.flush(10_000.0, close_all=True))
    assert replayed == latest
