"""The per-hour adoption estimate: rules on hand-made encounters, then accuracy against
the simulator's ground truth."""

from __future__ import annotations

from datetime import UTC, date, timedelta, timezone
from pathlib import Path

import pytest

from bzlogger.core.adoption import AdoptionParams, chain_encounters, daily_adoption
from bzlogger.model import Encounter, Platform, Protocol
from bzlogger.sim.scenario import load_scenario, parse_scenario
from tests.door import simfeed

DAY = date(2020, 8, 17)
T0 = 1_597_622_400.0  # 2020-08-17T00:00:00Z
SCENARIOS = Path(__file__).resolve().parents[2] / "tools" / "scenarios"
_serial = iter(range(1, 1 << 30))


def enc(first: float, last: float, rssi: float = -65, protocol: Protocol = Protocol.BLUEZONE,
        platform: Platform = Platform.ANDROID, ident: bytes | None = None) -> Encounter:
    length = 12 if protocol is Protocol.BLUEZONE else 16
    identifier = ident or next(_serial).to_bytes(length, "big")
    return Encounter(protocol, identifier, first, last, samples=max(1, int(last - first)),
                     rssi_max=int(rssi) + 3, rssi_median=rssi, rssi_mean=rssi,
                     platform=platform)


def at(hour: float) -> float:
    return T0 + hour * 3600


def test_a_bluezone_phone_staying_across_rotations_is_one_person() -> None:
    # 08:05 to 08:50: slot boundaries at 08:15, 08:30, 08:45.
    stay = [enc(at(8) + 300, at(8.25) - 0.4), enc(at(8.25) + 0.6, at(8.5) - 0.3),
            enc(at(8.5) + 0.8, at(8.75) - 0.2), enc(at(8.75) + 0.5, at(8) + 3000)]
    chains = chain_encounters(stay)
    assert len(chains) == 1 and chains[0].identifiers == 4
    report = daily_adoption(stay, DAY, UTC)
    hour = report.hours[8]
    assert (hour.label, hour.people, hour.identifiers) == ("08:00", 1, 4)
    assert report.people == 1 and report.identifiers == 4


def test_no_link_without_a_slot_boundary_or_across_platforms() -> None:
    mid_slot = [enc(at(8) + 100, at(8) + 200), enc(at(8) + 201, at(8) + 400)]
    assert len(chain_encounters(mid_slot)) == 2
    platforms = [enc(at(8.25) - 60, at(8.25) - 1, platform=Platform.ANDROID),
                 enc(at(8.25) + 1, at(8.25) + 60, platform=Platform.IOS)]
    assert len(chain_encounters(platforms)) == 2
    too_late = [enc(at(8.25) - 60, at(8.25) - 1), enc(at(8.25) + 40, at(8.25) + 90)]
    assert len(chain_encounters(too_late)) == 2


def test_an_ios_new_id_read_over_gatt_a_few_seconds_late_still_links() -> None:
    ios = [enc(at(9.5) - 300, at(9.5) - 0.5, platform=Platform.IOS),
           enc(at(9.5) + 12, at(9.5) + 300, platform=Platform.IOS)]
    assert len(chain_encounters(ios)) == 1


def test_a_queue_rotating_together_is_matched_one_to_one() -> None:
    # Five phones in a queue rotate at 08:30; medians change as the queue moves on.
    boundary = at(8.5)
    old = [enc(boundary - 200, boundary - 0.2 * i, rssi=-80 + 2 * i) for i in range(5)]
    new = [enc(boundary + 0.3 * i, boundary + 150, rssi=-66 + 2 * i) for i in range(5)]
    assert len(chain_encounters(old + new)) == 5


def test_gaen_rotation_rules() -> None:
    g = Protocol.GAEN
    unknown = Platform.UNKNOWN
    rotations = [at(10), at(10) + 700, at(10) + 1500]
    stay = [enc(start - 100 if i == 0 else start, end - 0.3, protocol=g, platform=unknown)
            for i, (start, end) in enumerate(zip(rotations, [*rotations[1:], at(10) + 2000],
                                                 strict=True))]
    assert len(chain_encounters(stay)) == 1
    # A new RPI 10 s after another disappeared is a different phone (random rotations).
    strangers = [enc(at(11), at(11) + 30, protocol=g, platform=unknown),
                 enc(at(11) + 40, at(11) + 70, protocol=g, platform=unknown)]
    assert len(chain_encounters(strangers)) == 2
    # A phone cannot rotate twice within 10 minutes.
    quick = [enc(at(12) - 100, at(12) - 0.5, protocol=g, platform=unknown),
             enc(at(12) + 0.5, at(12) + 200, protocol=g, platform=unknown),
             enc(at(12) + 201, at(12) + 300, protocol=g, platform=unknown)]
    assert len(chain_encounters(quick)) == 2


def test_weak_encounters_are_people_outside_and_ids_are_merged() -> None:
    street = enc(at(8), at(8) + 40, rssi=-96)
    ident = bytes(12)
    gone_quiet = [enc(at(9), at(9) + 60, ident=ident), enc(at(9) + 400, at(9) + 460,
                                                          ident=ident)]
    report = daily_adoption([street, *gone_quiet], DAY, UTC)
    assert report.people == 1 and report.identifiers == 1 and report.excluded_weak == 1
    assert report.hours[9].people == 1 and report.hours[8].people == 0


def test_local_hours_and_groups() -> None:
    vietnam = timezone(timedelta(hours=7))
    # 01:30 UTC is 08:30 in Vietnam.
    data = [enc(at(1.5), at(1.5) + 20, platform=Platform.IOS),
            enc(at(1.6), at(1.6) + 20, protocol=Protocol.GAEN, platform=Platform.UNKNOWN),
            enc(at(1.7), at(1.7) + 20)]
    report = daily_adoption(data, DAY, vietnam)
    assert report.utc_offset == "+07:00" and len(report.hours) == 24
    hour = report.hours[8]
    assert hour.label == "08:00" and hour.start == at(1)
    assert report.groups == (("bluezone", "android"), ("bluezone", "ios"), ("gaen", "unknown"))
    assert [(g.protocol, g.platform, g.people) for g in hour.groups] == [
        ("bluezone", "android", 1), ("bluezone", "ios", 1), ("gaen", "unknown", 1)]
    assert "identifier" in report.method


def test_encounters_outside_the_day_are_not_counted() -> None:
    report = daily_adoption([enc(at(-1), at(-1) + 30), enc(at(24), at(24) + 30)], DAY, UTC)
    assert report.people == 0 and report.identifiers == 0


def _check_against_truth(scenario_encounters: list[Encounter], truth: simfeed.Truth,
                         tolerance: float) -> tuple[int, int]:
    report = daily_adoption(scenario_encounters, DAY, UTC)
    assert abs(report.people - truth.total) <= tolerance * truth.total, (
        report.people, truth.total)
    for index, hour in enumerate(report.hours):
        expected = truth.hour_total(index)
        if expected >= 20:  # too few people for a percentage to mean anything
            assert abs(hour.people - expected) <= tolerance * expected, (
                hour.label, hour.people, expected)
    return report.people, report.identifiers


def test_busy_morning_estimate_is_within_10_percent_of_the_ground_truth() -> None:
    scenario = load_scenario(SCENARIOS / "busy_morning.toml")
    truth = simfeed.ground_truth(scenario, T0)
    assert truth.total > 250
    people, identifiers = _check_against_truth(simfeed.encounters(scenario), truth, 0.10)
    # The correction matters: raw identifiers over-count people who stay.
    assert identifiers - truth.total > abs(people - truth.total)


@pytest.mark.parametrize("seed", [1, 2])
def test_gaen_heavy_morning_with_queues_and_desks(seed: int) -> None:
    scenario = parse_scenario({
        "scenario": {"seed": seed, "start": "2020-08-17T06:30:00Z", "duration": "3h30m"},
        "visitors": [
            {"kind": "bluezone-android", "count": 120, "arrive": ["0s", "3h"]},
            {"kind": "bluezone-ios", "count": 50, "arrive": ["0s", "3h"], "background": 0.5},
            {"kind": "gaen", "count": 120, "arrive": ["0s", "3h"]},
            {"kind": "bluezone-android", "count": 25, "arrive": ["0s", "3h"], "profile": "queue"},
            {"kind": "gaen", "count": 30, "arrive": ["0s", "3h"], "profile": "queue"},
            {"kind": "bluezone-ios", "count": 8, "arrive": ["0s", "2h30m"], "profile": "desk"},
            {"kind": "gaen", "count": 15, "arrive": ["0s", "2h30m"], "profile": "desk"},
            {"kind": "gaen", "count": 40, "arrive": ["0s", "3h"], "profile": "street"},
        ]})
    truth = simfeed.ground_truth(scenario, T0)
    _check_against_truth(simfeed.encounters(scenario), truth, 0.10)


def test_parameters_are_stated_in_the_method() -> None:
    report = daily_adoption([], DAY, UTC, AdoptionParams(min_rssi=-75, link_gap_s=25))
    assert "-75 dBm" in report.method and "25 s" in report.method
