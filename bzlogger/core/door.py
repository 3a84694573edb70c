"""Is a phone running a contact-tracing app standing in the door zone right now?

A pure presence detector for the door-check display. The daemon feeds it every sighting
(protocol, identifier, raw RSSI, time); it calibrates the RSSI with the kiosk's offset and
keeps, per identifier and in memory only, the current run of *strong* sightings (calibrated
RSSI at or above ``rssi_threshold``). A phone is *in the zone* once its strong run has
lasted ``hold_s`` and until no strong sighting of it has arrived for ``release_s``. Weak
sightings neither extend nor break a run: RSSI at a door jumps by 10 dB between packets, so
one weak packet must not clear the display.

Its output, :class:`DoorState`, never carries an identifier: whether someone is in the zone,
how many phones and which protocols, and how many distinct phones have been in the zone
today (local day of ``tz``). Identifiers only live in this object's memory, to tell phones
apart, and are forgotten at the end of the day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo

from bzlogger.model import Protocol, Sighting


@dataclass(frozen=True, slots=True)
class DoorState:
    """What the door display shows; contains no identifier."""

    present: bool
    #: Phones in the zone now.
    phones: int
    #: Protocols of the phones in the zone now, sorted.
    protocols: tuple[str, ...]
    #: Distinct phones that were in the zone today (local day).
    count_today: int
    #: The local day ``count_today`` refers to, ``YYYY-MM-DD``.
    day: str
    #: When this state was computed (Unix seconds, the daemon's clock).
    updated: float


@dataclass(slots=True)
class _Run:
    """One identifier's current run of strong sightings."""

    protocol: Protocol
    started: float
    last_strong: float


@dataclass(slots=True)
class DoorDetector:
    """Turns a stream of sightings into :class:`DoorState` snapshots.

    ``rssi_offset`` is the kiosk's calibration (``[encounters] rssi_offset``), added to
    each raw RSSI before comparing with ``rssi_threshold``. ``release_s`` must cover the
    gap between two received advertisements of a phone standing still (a few hundred ms
    for Android, up to a second or two for an iPhone in the background).
    """

    rssi_threshold: int = -60
    hold_s: float = 2.0
    release_s: float = 1.5
    rssi_offset: int = 0
    tz: tzinfo = UTC
    _runs: dict[tuple[Protocol, bytes], _Run] = field(default_factory=dict, init=False)
    _counted: set[tuple[Protocol, bytes]] = field(default_factory=set, init=False)
    _day: date | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.hold_s < 0 or self.release_s <= 0:
            raise ValueError("hold_s must be >= 0 and release_s > 0")

    def observe(self, sighting: Sighting) -> bool:
        """Account for one received advertisement; True when it puts a phone in the zone
        (the moment to update the display without waiting for the next tick)."""
        self._roll_day(sighting.time)
        if sighting.rssi + self.rssi_offset < self.rssi_threshold:
            return False
        key = (sighting.protocol, sighting.identifier)
        run = self._runs.get(key)
        was_in = False
        if run is None or sighting.time - run.last_strong > self.release_s:
            run = _Run(sighting.protocol, sighting.time, sighting.time)
            self._runs[key] = run
        else:
            was_in = run.last_strong - run.started >= self.hold_s
            run.last_strong = max(run.last_strong, sighting.time)
        now_in = run.last_strong - run.started >= self.hold_s
        if now_in:
            self._counted.add(key)
        return now_in and not was_in

    def state(self, now: float) -> DoorState:
        """The display state at ``now``; also forgets runs that have ended."""
        self._roll_day(now)
        ended = [k for k, r in self._runs.items() if now - r.last_strong > self.release_s]
        for key in ended:
            del self._runs[key]
        in_zone = [r for r in self._runs.values() if r.last_strong - r.started >= self.hold_s]
        day = self._day if self._day is not None else self._local_day(now)
        return DoorState(
            present=bool(in_zone),
            phones=len(in_zone),
            protocols=tuple(sorted({str(r.protocol) for r in in_zone})),
            count_today=len(self._counted),
            day=day.isoformat(),
            updated=now,
        )

    def _local_day(self, when: float) -> date:
        return datetime.fromtimestamp(when, self.tz).date()

    def _roll_day(self, when: float) -> None:
        day = self._local_day(when)
        if self._day is None or day > self._day:
            # A new local day: today's count starts again from the phones in the zone now.
            self._day = day
            self._counted = {k for k in self._counted if k in self._runs}
