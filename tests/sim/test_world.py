"""The world and the scenario format, without D-Bus: keys, rotation, radio model,
profiles, determinism, ground truth."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from pathlib import Path

import pytest

from bzlogger.ids import bluezone, gaen
from bzlogger.model import Protocol
from bzlogger.sim.scenario import ScenarioError, load_scenario, parse_duration, parse_scenario
from bzlogger.sim.truth import GroundTruth
from bzlogger.sim.world import Kind, RadioModel, street

SCENARIOS = sorted((Path(__file__).parents[2] / "tools" / "scenarios").glob("*.toml"))
START = "2020-08-17T08:00:00Z"
T0 = 1597651200.0


def _one(kind: str, **extra: object) -> dict[str, object]:
    return {"scenario": {"seed": 1, "start": START, "duration": "2h"},
            "visitors": [{"name": "v", "kind": kind, "profile": "stationary", "distance": 1.0,
                          "stay": "2h", **extra}]}


def test_library_scenarios_parse() -> None:
    names = {p.stem for p in SCENARIOS}
    assert {"busy_morning", "queue", "street", "faults"} <= names
    for path in SCENARIOS:
        scenario = load_scenario(path)
        assert scenario.visitors
    morning = load_scenario(Path(SCENARIOS[0]).with_name("busy_morning.toml"))
    assert len(morning.visitors) >= 300
    bz = [v for v in morning.visitors if v.kind in (Kind.BLUEZONE_ANDROID, Kind.BLUEZONE_IOS)]
    ios = [v for v in bz if v.kind is Kind.BLUEZONE_IOS]
    assert 0.25 < len(ios) / len(bz) < 0.4
    assert any(v.kind is Kind.GAEN for v in morning.visitors)
    assert any(not v.kind.is_phone for v in morning.visitors)


def test_scenarios_are_deterministic() -> None:
    path = Path(SCENARIOS[0]).with_name("queue.toml")
    a, b = load_scenario(path), load_scenario(path)
    assert [(v.id, v.arrival, v.bluezone_base_key, v.positive, v.path) for v in a.visitors] == \
        [(v.id, v.arrival, v.bluezone_base_key, v.positive, v.path) for v in b.visitors]
    assert [v.emission(T0 + 600).address for v in a.visitors] == \
        [v.emission(T0 + 600).address for v in b.visitors]


def test_bluezone_ids_follow_the_key_schedule_and_rotate_addresses() -> None:
    key = bytes(range(32))
    [phone] = parse_scenario(_one("bluezone-android", base_key=key.hex(),
                                  base_days_ago=2)).visitors
    daily = bluezone.daily_key(key, 2)
    first, second = phone.emission(T0 + 10), phone.emission(T0 + 900 + 10)
    assert first.identifier == bluezone.id_at_slot(daily, bluezone.slot_of(T0 + 10))
    assert second.identifier == bluezone.id_at_slot(daily, bluezone.slot_of(T0 + 910))
    assert first.address != second.address
    assert phone.emission(T0 + 899).address == first.address
    assert first.content.manufacturer_data == {bluezone.COMPANY_ID: first.identifier}
    assert int(first.address[:2], 16) >> 6 == 0b01  # resolvable private address


def test_gaen_rpi_rotates_with_address_every_10_to_20_minutes() -> None:
    [phone] = parse_scenario(_one("gaen", gaen_tx_power=-12)).visitors
    tek = phone.gaen_tek(int(T0 // 86400 * 86400))
    emissions = list(phone.emissions_during(T0, T0 + 7200))
    assert len(emissions) >= 6
    for before, after in itertools.pairwise(emissions[1:]):
        assert 600 <= after.valid_from - before.valid_from <= 1200
        assert before.address != after.address and before.identifier != after.identifier
    for emission in emissions:
        assert emission.identifier == gaen.rpi(gaen.rpik(tek),
                                               gaen.interval_number(emission.valid_from))
        assert emission.aem is not None and emission.identifier is not None
        metadata = gaen.aem_crypt(gaen.aemk(tek), emission.identifier, emission.aem)
        assert gaen.Metadata.decode(metadata).tx_power == -12
        assert not emission.content.connectable


def test_ios_foreground_and_background() -> None:
    [fg] = parse_scenario(_one("bluezone-ios", background=False)).visitors
    [bg] = parse_scenario(_one("bluezone-ios", background=True)).visitors
    assert fg.emission(T0).content.local_name == "Bluezone"
    assert fg.emission(T0).content.service_uuids == (bluezone.IOS_SERVICE_UUID,)
    data = bg.emission(T0).content.manufacturer_data[0x004C]
    assert data[0] == 1 and len(data) == 17 and bin(int.from_bytes(data[1:], "big")).count("1") == 1
    assert bg.emission(T0).content.service_uuids == ()
    [service] = bg.gatt(lambda: T0 + 5) or ()
    assert service.characteristics[0].read() == bg.emission(T0 + 5).identifier


def test_path_loss_model() -> None:
    radio = RadioModel()
    assert radio.mean_rssi(-62, 1.0) == -62
    assert math.isclose(radio.mean_rssi(-62, 10.0), -89.0)
    rng = random.Random(1)
    samples = [radio.rssi(-62, 2.0, 0.0, rng) for _ in range(2000)]
    mean = sum(samples) / len(samples)
    assert abs(mean - radio.mean_rssi(-62, 2.0)) < 0.5
    assert 3.5 < math.sqrt(sum((s - mean) ** 2 for s in samples) / len(samples)) < 4.5


def test_street_passers_stay_below_minus_90() -> None:
    radio = RadioModel()
    rng = random.Random(7)
    for _ in range(200):
        path = street(rng)
        closest = min(path.distance(t) for t in range(int(path.duration) + 1))
        assert closest >= 8.0
        assert radio.mean_rssi(-58, closest, path.extra_loss_db) < -90


def test_ground_truth_spans_keys_and_infected_list() -> None:
    scenario = parse_scenario(_one("bluezone-android", positive=True))
    [phone] = scenario.visitors
    truth = GroundTruth(scenario.name, scenario.seed, scenario.start, scenario.end)
    truth.snapshot(list(scenario.visitors), scenario.end, Counter(), Counter(), Counter())
    record = truth.visitor("v")
    assert len(record.ids) == 8  # 2 h of 15-minute slots
    assert record.near_spans == [(phone.arrival, phone.departure)]
    listed = truth.bluezone_infected_list()["data"]
    assert listed[0]["time_start"] == int(T0 // 86400 * 86400)
    daily = bytes.fromhex(listed[0]["daily_key"])
    ids = {s.identifier for s in record.ids}
    assert ids <= {i.hex() for i in bluezone.day_ids(daily)}
    truth.record_hearing("v", Protocol.BLUEZONE, bytes(12), "AA:BB", T0, -60)
    truth.record_hearing("v", Protocol.BLUEZONE, bytes(12), "AA:BB", T0 + 5, -55)
    [hearing] = truth.kiosk_heard.values()
    assert (hearing.count, hearing.best_rssi, hearing.last) == (2, -55, T0 + 5)
    assert truth.to_json()["visitors"][0]["keys"]["bluezone"]["max"] == 96


@pytest.mark.parametrize(("text", "seconds"), [
    (90, 90.0), ("90s", 90.0), ("15m", 900.0), ("1h30m", 5400.0), ("100ms", 0.1)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("data", [
    {"visitors": [{"kind": "pager"}]},
    {"visitors": [{"kind": "gaen", "profile": "teleport"}]},
    {"visitors": [{"kind": "gaen", "colour": "red"}]},
    {"visitors": [{"kind": "gaen", "arrive": "soon"}]},
    {"visitors": [{"kind": "malformed", "payload": "nice"}]},
    {"visitors": [{"kind": "gaen", "count": 2, "tek": "00" * 16}]},
    {"visitors": [{"kind": "bluezone-android", "base_key": "abc"}]},
    {"faults": [{"action": "explode"}]},
    {"scenario": {"start": "yesterday"}},
    {"extra": {}},
])
def test_bad_scenarios_are_refused_clearly(data: dict[str, object]) -> None:
    with pytest.raises(ScenarioError):
        parse_scenario(data)
