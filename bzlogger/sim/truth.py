"""Ground truth of a scenario run: who was there, when, with which identifiers and
keys, who was close to the kiosk, who later tests positive, how often each phone was
connected to, and which of the kiosk's beacons the phones heard.

It holds plaintext identifiers and keys by design (it is the answer sheet of a
simulation, written only when asked: ``bzlogger sim run --truth FILE``).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bzlogger.ids import bluezone, gaen
from bzlogger.model import Protocol
from bzlogger.sim.world import Visitor
from bzlogger.timefmt import iso


@dataclass(frozen=True, slots=True)
class IdSpan:
    """One identifier a visitor advertised, with the address it went with."""

    protocol: str
    identifier: str
    address: str
    start: float
    end: float
    aem: str | None = None


@dataclass(slots=True)
class Hearing:
    """A phone heard one of the kiosk's beacons (aggregated per identifier)."""

    visitor: str
    protocol: str
    identifier: str
    address: str
    first: float
    last: float
    count: int = 1
    best_rssi: int = -127


@dataclass(slots=True)
class VisitorTruth:
    """Everything known about one visitor."""

    id: str
    kind: str
    platform: str
    arrival: float
    departure: float
    positive: bool
    ios_background: bool
    ids: list[IdSpan]
    near_spans: list[tuple[float, float]]
    keys: dict[str, Any]
    track: list[tuple[float, float]] = field(default_factory=list)
    extra_loss_db: float = 0.0
    connect_attempts: int = 0
    connections: int = 0
    reads: int = 0


@dataclass(slots=True)
class GroundTruth:
    """The answer sheet of a run; ``visitors`` is filled by :meth:`snapshot`."""

    scenario: str
    seed: int
    start: float
    end: float
    visitors: list[VisitorTruth] = field(default_factory=list)
    kiosk_heard: dict[tuple[str, str], Hearing] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    adverts: list[dict[str, Any]] = field(default_factory=list)

    def record_hearing(self, visitor: str, protocol: Protocol, identifier: bytes, address: str,
                       now: float, rssi: int) -> None:
        """A phone heard the kiosk's beacon ``identifier`` at ``now``."""
        key = (visitor, identifier.hex())
        hearing = self.kiosk_heard.get(key)
        if hearing is None:
            self.kiosk_heard[key] = Hearing(visitor, protocol.value, identifier.hex(), address,
                                            now, now, 1, rssi)
        else:
            hearing.last = now
            hearing.count += 1
            hearing.best_rssi = max(hearing.best_rssi, rssi)

    def snapshot(self, visitors: list[Visitor], until: float,
                 connect_attempts: Counter[str], connections: Counter[str],
                 reads: Counter[str]) -> None:
        """Fill :attr:`visitors` from the world as of ``until``."""
        self.visitors = [
            _visitor_truth(v, until, connect_attempts[v.id], connections[v.id], reads[v.id])
            for v in visitors if v.arrival < until
        ]

    def visitor(self, visitor_id: str) -> VisitorTruth:
        """The truth about one visitor (KeyError when unknown)."""
        for truth in self.visitors:
            if truth.id == visitor_id:
                return truth
        raise KeyError(visitor_id)

    def bluezone_infected_list(self) -> dict[str, Any]:
        """The published Bluezone list (F0 JSON shape) of the visitors who test positive."""
        data = []
        for truth in self.visitors:
            if truth.positive and "bluezone" in truth.keys:
                for day in truth.keys["bluezone"]["daily_keys"]:
                    data.append({"daily_key": day["daily_key"], "time_start": day["day_start"],
                                 "time_end": day["day_start"] + bluezone.DAY_SECONDS - 1,
                                 "max": truth.keys["bluezone"]["max"]})
        return {"data": data}

    def gaen_positive_keys(self) -> list[dict[str, Any]]:
        """TEKs (hex, rolling start interval, rolling period) of GAEN visitors who test
        positive, to build a test export."""
        return [dict(key) for truth in self.visitors if truth.positive and "gaen" in truth.keys
                for key in truth.keys["gaen"]]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times as Unix seconds and ISO 8601)."""
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "start": self.start,
            "start_iso": iso(self.start),
            "end": self.end,
            "visitors": [asdict(v) for v in self.visitors],
            "kiosk_heard": [asdict(h) for h in self.kiosk_heard.values()],
            "kiosk_adverts": self.adverts,
            "faults": self.faults,
        }

    def write(self, path: str | Path) -> None:
        """Write :meth:`to_json` to ``path``."""
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n")


def _visitor_truth(visitor: Visitor, until: float, attempts: int, connections: int,
                   reads: int) -> VisitorTruth:
    end = min(visitor.departure, until)
    ids = [IdSpan(e.protocol.value, e.identifier.hex(), e.address, max(e.valid_from,
                  visitor.arrival), min(e.valid_until, end), e.aem.hex() if e.aem else None)
           for e in visitor.emissions_during(visitor.arrival, end)
           if e.protocol is not None and e.identifier is not None]
    keys: dict[str, Any] = {}
    days = sorted({bluezone.utc_midnight(visitor.arrival), bluezone.utc_midnight(end)})
    if visitor.bluezone_base_key is not None:
        keys["bluezone"] = {
            "base_key": visitor.bluezone_base_key.hex(),
            "base_day": visitor.bluezone_base_day,
            "max": visitor.max_ids,
            "daily_keys": [{"day_start": day, "daily_key": visitor.bluezone_daily_key(day).hex()}
                           for day in days],
        }
    if visitor.kind.protocol is Protocol.GAEN:
        keys["gaen"] = [{"tek": visitor.gaen_tek(day).hex(),
                         "rolling_start_interval": gaen.interval_number(day),
                         "rolling_period": gaen.DEFAULT_ROLLING_PERIOD,
                         "tx_power": visitor.gaen_tx_power} for day in days]
    return VisitorTruth(
        id=visitor.id, kind=visitor.kind.value, platform=visitor.kind.platform.value,
        arrival=visitor.arrival, departure=end, positive=visitor.positive,
        ios_background=visitor.ios_background, ids=ids, near_spans=visitor.near_spans(),
        keys=keys, connect_attempts=attempts, connections=connections, reads=reads,
        track=[(visitor.arrival + offset, distance)
               for offset, distance in visitor.path.waypoints
               if visitor.arrival + offset <= end],
        extra_loss_db=visitor.path.extra_loss_db)
