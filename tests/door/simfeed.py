"""Encounters from the simulator's world model without BlueZ or the daemon.

Each phone of a scenario is sampled once a second (what the daemon keeps of a phone's
advertisements) with the simulator's own radio model, and the sightings go through the
real :class:`~bzlogger.core.aggregation.Aggregator`. The ground truth is the scenario's
own visitors: who came near the door (closest approach within ``DOOR_M``), when, with
which app and platform.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from bzlogger.config import EncounterSettings
from bzlogger.core.aggregation import Aggregator
from bzlogger.model import Encounter, Sighting
from bzlogger.sim.scenario import Scenario
from bzlogger.sim.world import Visitor

#: A visitor counts as having passed the door when it came this close to the kiosk.
DOOR_M = 3.0
SAMPLE_S = 1.0


@dataclass(frozen=True, slots=True)
class Truth:
    """Who passed the door: (hour index from ``start``, protocol, platform) -> people."""

    start: float
    people: Counter[tuple[int, str, str]]

    def hour_total(self, hour: int) -> int:
        return sum(n for (h, _, _), n in self.people.items() if h == hour)

    @property
    def total(self) -> int:
        return sum(self.people.values())


def _closest(visitor: Visitor) -> float:
    return min(d for _, d in visitor.path.waypoints)


def ground_truth(scenario: Scenario, day_start: float) -> Truth:
    """People with the app who came within :data:`DOOR_M` of the kiosk, by arrival hour."""
    people: Counter[tuple[int, str, str]] = Counter()
    for v in scenario.visitors:
        protocol = v.kind.protocol
        if protocol is None or _closest(v) > DOOR_M:
            continue
        people[(int((v.arrival - day_start) // 3600), protocol.value,
                v.kind.platform.value)] += 1
    return Truth(day_start, people)


def encounters(scenario: Scenario, settings: EncounterSettings | None = None
               ) -> list[Encounter]:
    """Every encounter the kiosk would log for the scenario's phones (default settings
    unless given)."""
    rng = random.Random(scenario.seed)
    sightings: list[Sighting] = []
    radio = scenario.radio
    for v in scenario.visitors:
        if v.kind.protocol is None:
            continue
        t = v.arrival + rng.uniform(0, SAMPLE_S)
        while t < v.departure:
            rssi = radio.rssi(v.tx_power_1m, v.distance(t), v.path.extra_loss_db, rng)
            emission = v.emission(t)
            if rssi >= radio.sensitivity_dbm and emission.identifier is not None:
                assert emission.protocol is not None
                sightings.append(Sighting(emission.protocol, emission.identifier, rssi, t,
                                          platform=v.kind.platform))
            t += SAMPLE_S
    sightings.sort(key=lambda s: s.time)
    aggregator = Aggregator(settings or EncounterSettings())
    latest: dict[tuple[object, bytes, float], Encounter] = {}
    next_flush = sightings[0].time if sightings else 0.0
    for sighting in sightings:
        if sighting.time >= next_flush:
            for e in aggregator.flush(sighting.time):
                latest[(e.protocol, e.identifier, e.first_seen)] = e
            next_flush = sighting.time + 1.0
        aggregator.add(sighting)
    for e in aggregator.flush(scenario.end + 3600, close_all=True):
        latest[(e.protocol, e.identifier, e.first_seen)] = e
    return sorted(latest.values(), key=lambda e: e.first_seen)
