"""Sightings become encounters: one per identifier seen without a long silence.

Pure and deterministic: the time of each sighting is its own ``time``, and
:meth:`Aggregator.flush` is given ``now``. Memory stays bounded whatever the traffic:
at most ``max_open`` encounters are open (the least recently seen is closed early when
a flood of distinct identifiers arrives), and the memory of first sightings used by the
replay guards is bounded in time and size.

RSSI handling, in order, for every sighting:

1. calibration: ``rssi + rssi_offset`` (the kiosk's own radio);
2. the weak-signal filter: a calibrated value below ``min_rssi`` is dropped (people in
   the street) and counted in ``dropped_weak``;
3. smoothing: the value used for the statistics is the (lower) median of the last
   ``smoothing`` calibrated values of this encounter, so one noisy spike neither raises
   ``rssi_max`` nor counts as close;
4. statistics over the smoothed values: max, median, mean (an exact histogram, so the
   median costs no memory per sample);
5. ``close_s``: the time between consecutive samples when both are at or above
   ``close_rssi``.

A silence longer than ``gap_s`` ends an encounter; the next sighting starts a new one.

Replay and plausibility guards (the encounter carries the flag, the counter counts the
sightings):

- GAEN: an RPI changes every 10-20 minutes, so a sighting more than
  :data:`GAEN_REPLAY_S` after the RPI's first sighting is a possible replay: it does not
  extend the encounter, is counted in ``replays`` and flags the encounter ``"replay"``.
- Bluezone: an ID is valid for one slot (at most 15 minutes); a sighting more than
  :data:`BLUEZONE_SLOT_S` + :data:`SLOT_TOLERANCE_S` after the ID's first sighting is
  outside any plausible slot: it is counted in ``out_of_window`` and flags the encounter
  ``"outside-slot"`` (the encounter is still extended: the phone may just have a
  stale ID).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from bzlogger.config import EncounterSettings
from bzlogger.model import Encounter, Platform, Protocol, Sighting

#: GAEN replay guard (spec): sightings this long after an RPI's first one are not trusted.
GAEN_REPLAY_S = 20 * 60
#: The longest Bluezone slot in use (96 IDs a day); 144 IDs a day gives 10 minutes.
BLUEZONE_SLOT_S = 15 * 60
#: Scan timing and phone clock slack allowed on top of a Bluezone slot.
SLOT_TOLERANCE_S = 60
#: How long the first sighting of an identifier is remembered for the guards; a replay
#: later than this starts a fresh encounter (matching still checks the RPI's interval).
FIRST_SEEN_MEMORY_S = 3 * 3600
#: At most this many first sightings are remembered (oldest forgotten first).
FIRST_SEEN_CAP = 100_000

#: How long the start of a force-closed encounter is remembered (to keep keys unique).
EVICTED_MEMORY_S = 60.0
#: Open encounters kept at most (a busy entrance has a few hundred phones in range).
DEFAULT_MAX_OPEN = 10_000

FLAG_REPLAY = "replay"
FLAG_OUTSIDE_SLOT = "outside-slot"

_Key = tuple[Protocol, bytes]


@dataclass(slots=True)
class _Open:
    """The running state of one open encounter."""

    first_seen: float
    last_seen: float
    last_close: bool
    samples: int = 0
    rssi_sum: int = 0
    rssi_max: int = -1000
    close_s: float = 0.0
    histogram: dict[int, int] = field(default_factory=dict)
    window: deque[int] = field(default_factory=deque)
    tx_power: int | None = None
    aem: bytes | None = None
    platform: Platform = Platform.UNKNOWN
    flags: frozenset[str] = frozenset()


@dataclass(slots=True)
class AggregatorCounters:
    """What the aggregator has seen since it was created (for status and metrics)."""

    sightings: int = 0
    dropped_weak: int = 0
    replays: int = 0
    out_of_window: int = 0
    late: int = 0
    forced_closes: int = 0
    encounters_closed: int = 0


class Aggregator:
    """Turns a stream of :class:`Sighting` into :class:`Encounter` records.

    Call :meth:`add` for every sighting and :meth:`flush` regularly (every second);
    ``flush`` returns the encounters that changed since the previous call, closed ones
    included, each identified by ``(protocol, identifier, first_seen)`` so that the
    store can upsert them.
    """

    def __init__(self, settings: EncounterSettings, *, max_open: int = DEFAULT_MAX_OPEN) -> None:
        self._settings = settings
        self._max_open = max_open
        if self._max_open < 1:
            raise ValueError("max_open must be at least 1")
        # Insertion order is "least recently seen first": updated entries move to the end.
        self._open: dict[_Key, _Open] = {}
        self._dirty: set[_Key] = set()
        self._closed: list[Encounter] = []
        # First sighting of every recent identifier, in order of first sighting.
        self._first_seen: dict[_Key, float] = {}
        # Start of recently force-closed encounters: a new encounter of the same identifier
        # must not start at the same instant, or both would share one store key.
        self._evicted_starts: dict[_Key, float] = {}
        self.counters = AggregatorCounters()

    @property
    def open_count(self) -> int:
        """Encounters currently open."""
        return len(self._open)

    @property
    def pending_count(self) -> int:
        """Closed encounters waiting for the next :meth:`flush`."""
        return len(self._closed)

    def add(self, sighting: Sighting) -> None:
        """Account for one sighting (its own ``time`` is used)."""
        settings = self._settings
        self.counters.sightings += 1
        rssi = sighting.rssi + settings.rssi_offset
        if rssi < settings.min_rssi:
            self.counters.dropped_weak += 1
            return
        key = (sighting.protocol, sighting.identifier)
        now = sighting.time
        first = self._remember_first(key, now)
        state = self._open.get(key)
        if state is not None and now - state.last_seen > settings.gap_s:
            self._close(key, state)
            state = None
        age = now - first
        if sighting.protocol is Protocol.GAEN and age > GAEN_REPLAY_S:
            self.counters.replays += 1
            if state is not None:
                state.flags = state.flags | {FLAG_REPLAY}
                self._dirty.add(key)
            return
        if state is None:
            start = now
            previous = self._evicted_starts.pop(key, None)
            if previous is not None and previous >= now:
                start = math.nextafter(previous, math.inf)
            state = _Open(first_seen=start, last_seen=start, last_close=False)
            if len(self._open) >= self._max_open:
                self._evict_oldest()
        else:
            del self._open[key]  # re-inserted below: most recently seen last
        self._open[key] = state
        self._dirty.add(key)
        if sighting.protocol is Protocol.BLUEZONE and age > BLUEZONE_SLOT_S + SLOT_TOLERANCE_S:
            self.counters.out_of_window += 1
            state.flags = state.flags | {FLAG_OUTSIDE_SLOT}
        self._sample(state, sighting, rssi)

    def flush(self, now: float, *, close_all: bool = False) -> list[Encounter]:
        """Encounters changed since the last flush: those closed (silent for more than
        ``gap_s`` at ``now``, forced out by the cap, or all when ``close_all``) and
        snapshots of open ones that received sightings."""
        for key, state in list(self._open.items()):
            if close_all or now - state.last_seen > self._settings.gap_s:
                self._close(key, state)
            else:
                break  # least recently seen first: the rest are younger
        out = self._closed
        self._closed = []
        out.extend(_snapshot(key, self._open[key]) for key in self._dirty if key in self._open)
        self._dirty.clear()
        self._forget_first_seen(now)
        self._evicted_starts = {k: t for k, t in self._evicted_starts.items()
                                if t >= now - EVICTED_MEMORY_S}
        return out

    def _sample(self, state: _Open, sighting: Sighting, rssi: int) -> None:
        window = state.window
        window.append(rssi)
        if len(window) > self._settings.smoothing:
            window.popleft()
        smoothed = sorted(window)[(len(window) - 1) // 2] if len(window) > 1 else rssi
        time = sighting.time
        close = smoothed >= self._settings.close_rssi
        if time > state.last_seen:
            if close and state.last_close:
                state.close_s += time - state.last_seen
            state.last_seen = time
        elif time < state.last_seen:
            self.counters.late += 1  # counted, but the time bounds never move backwards
        state.last_close = close
        state.samples += 1
        state.rssi_sum += smoothed
        state.rssi_max = max(state.rssi_max, smoothed)
        state.histogram[smoothed] = state.histogram.get(smoothed, 0) + 1
        if sighting.tx_power is not None:
            state.tx_power = sighting.tx_power
        if sighting.aem is not None:
            state.aem = sighting.aem
        if sighting.platform is not Platform.UNKNOWN:
            state.platform = sighting.platform

    def _close(self, key: _Key, state: _Open) -> None:
        del self._open[key]
        self._dirty.discard(key)
        self._closed.append(_snapshot(key, state))
        self.counters.encounters_closed += 1

    def _evict_oldest(self) -> None:
        key, state = next(iter(self._open.items()))
        self._close(key, state)
        self.counters.forced_closes += 1
        if len(self._evicted_starts) >= self._max_open:
            del self._evicted_starts[next(iter(self._evicted_starts))]
        self._evicted_starts[key] = state.first_seen

    def _remember_first(self, key: _Key, now: float) -> float:
        first = self._first_seen.get(key)
        if first is not None:
            return first
        if len(self._first_seen) >= FIRST_SEEN_CAP:
            del self._first_seen[next(iter(self._first_seen))]
        self._first_seen[key] = now
        return now

    def _forget_first_seen(self, now: float) -> None:
        horizon = now - FIRST_SEEN_MEMORY_S
        memory = self._first_seen
        for _ in range(len(memory)):
            key, first = next(iter(memory.items()))
            if first >= horizon:
                break
            del memory[key]
            if key in self._open:
                memory[key] = first  # still needed by the guards: keep it, at the end


def _snapshot(key: _Key, state: _Open) -> Encounter:
    protocol, identifier = key
    return Encounter(
        protocol=protocol,
        identifier=identifier,
        first_seen=state.first_seen,
        last_seen=state.last_seen,
        samples=state.samples,
        rssi_max=state.rssi_max,
        rssi_median=histogram_median(state.histogram, state.samples),
        rssi_mean=state.rssi_sum / state.samples,
        close_s=state.close_s,
        tx_power=state.tx_power,
        aem=state.aem,
        platform=state.platform,
        flags=state.flags,
    )


def histogram_median(histogram: dict[int, int], count: int) -> float:
    """The median of ``count`` values given as value -> occurrences."""
    lower_rank = (count - 1) // 2
    upper_rank = count // 2
    lower: int | None = None
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if lower is None and seen > lower_rank:
            lower = value
        if seen > upper_rank:
            assert lower is not None
            return (lower + value) / 2
    raise ValueError("count exceeds the histogram's total")
