"""How many people with a contact-tracing app passed the door, per hour (pure).

Counting identifiers over-counts people: a phone changes its identifier every 15 minutes
(Bluezone: at every UTC-aligned slot boundary, 86400/max seconds) or every 10-20 minutes
(GAEN: at random times, with its MAC address), so someone waiting 40 minutes by the door
shows up as three or four identifiers. The estimate corrects for that by *chaining*:

1. Encounters whose strongest signal stays below ``min_rssi`` are left out: those
   phones never came near the door (people in the street, behind a wall; the daemon's
   own ``[encounters] min_rssi`` already drops most of them).
2. Encounters of the same identifier are merged (a phone that went quiet for longer
   than the encounter gap is still one phone).
3. An identifier B *continues* an identifier A (same phone, new identifier) when they
   have the same protocol and compatible platform, their median RSSI are similar, B is
   first seen shortly after A was last seen (or up to ``overlap_s`` /
   ``gaen_overlap_s`` before: the scanner may still report the old one) and the switch
   is where the protocol allows one:

   - Bluezone: a slot boundary lies between A's last and B's first sighting (within
     ``clock_skew_s``) and B appears within ``link_gap_s`` of A (an iPhone's new ID
     needs a GATT read). All phones rotate at the same instant, so links are chosen by
     a maximum matching.
   - GAEN: B appears within ``gaen_link_gap_s`` of A (rotations are at random times, so
     the window must be tight not to join strangers), at least ``gaen_min_rotation_s``
     after the phone's previous rotation when its chain already has one; linked in time
     order.

   "Similar" RSSI means medians within ``rssi_tolerance_db``: wide, since a queue moves
   people towards the kiosk between two identifiers.
4. Each chain is one person, counted in the hour where the chain starts (arrival).

Left as limits of the method (stated in the report): a person who leaves and comes back
later is counted again; two people whose identifiers happen to meet the rules at the
same rotation are counted once (rare: it needs one to leave within seconds of a
rotation boundary while the other arrives with a similar signal).
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

from bzlogger.model import Encounter, Platform, Protocol

METHOD = (
    "People are estimated from the app identifiers the kiosk logged at the door (encounters "
    "whose strongest signal reached {min_rssi} dBm; weaker ones are people outside). "
    "Phones change identifier every {slot_min:g} minutes (Bluezone, at fixed times) or every "
    "10-20 minutes (Exposure Notification), so counting identifiers over-counts everyone "
    "who stays. A new identifier that appears at a Bluezone rotation time within "
    "{link_gap:g} s of an old one disappearing (Exposure Notification: within "
    "{gaen_gap:g} s, at least 9 minutes after that phone's previous change), with the same "
    "platform and a similar signal, is taken as the same phone. Each chain of identifiers "
    "is one person, counted in the hour they arrived. Someone who leaves and comes back is "
    "counted again."
)


@dataclass(frozen=True, slots=True)
class AdoptionParams:
    """Tuning of the estimate; the defaults suit a kiosk at an office entrance."""

    #: Seconds per Bluezone identifier: 86400 / ``[ble] bluezone_max``.
    bluezone_slot_s: float = 900.0
    #: Weaker encounters (strongest calibrated RSSI, dBm) never came near the door. The
    #: daemon already drops sightings below ``[encounters] min_rssi`` (people in the
    #: street), which is the default here too: an encounter of a phone walking past with
    #: few samples has a low smoothed maximum, and a higher floor would lose it.
    min_rssi: int = -90
    #: How long after a phone's old identifier is last seen its new one may first appear:
    #: Bluezone rotates at known times (and an iPhone's new ID needs a GATT read), GAEN at
    #: random times, where a wide window would join strangers.
    link_gap_s: float = 20.0
    gaen_link_gap_s: float = 3.0
    #: How long the old identifier may still be reported after the new one appeared.
    overlap_s: float = 3.0
    gaen_overlap_s: float = 1.0
    #: Allowed difference of median RSSI between two identifiers of one phone (dB); wide,
    #: because a queue moves people towards the kiosk between two identifiers.
    rssi_tolerance_db: float = 20.0
    #: Difference allowed between the kiosk's and a phone's clock (Bluezone slots).
    clock_skew_s: float = 10.0
    #: Shortest GAEN rotation interval, less a margin for the first/last sighting.
    gaen_min_rotation_s: float = 600.0 - 60.0


@dataclass(slots=True)
class _Piece:
    """All encounters of one identifier, merged."""

    protocol: Protocol
    platform: Platform
    first_seen: float
    last_seen: float
    rssi_median: float
    encounters: int
    successor: _Piece | None = None
    predecessor: _Piece | None = None
    #: When the chain this piece ends last rotated (None: this piece is its head).
    rotated_at: float | None = None


@dataclass(frozen=True, slots=True)
class Chain:
    """One phone as estimated: its identifiers chained across rotations."""

    protocol: Protocol
    platform: Platform
    first_seen: float
    last_seen: float
    identifiers: int
    encounters: int


def chain_encounters(encounters: Iterable[Encounter], params: AdoptionParams = AdoptionParams()
                     ) -> list[Chain]:
    """Group encounters into estimated phones (steps 1-3 of the module's method), in order
    of arrival."""
    pieces = _merge_identifiers(e for e in encounters if e.rssi_max >= params.min_rssi)
    by_protocol: dict[Protocol, list[_Piece]] = defaultdict(list)
    for piece in pieces:
        by_protocol[piece.protocol].append(piece)
    for group in by_protocol.values():
        _link(group, params)
    chains = []
    for piece in pieces:
        if piece.predecessor is not None:
            continue
        members = [piece]
        while members[-1].successor is not None:
            members.append(members[-1].successor)
        platform = next((m.platform for m in members if m.platform is not Platform.UNKNOWN),
                        Platform.UNKNOWN)
        chains.append(Chain(piece.protocol, platform, piece.first_seen,
                            max(m.last_seen for m in members), len(members),
                            sum(m.encounters for m in members)))
    chains.sort(key=lambda c: (c.first_seen, c.protocol, c.platform))
    return chains


def _merge_identifiers(encounters: Iterable[Encounter]) -> list[_Piece]:
    grouped: dict[tuple[Protocol, bytes], list[Encounter]] = defaultdict(list)
    for encounter in encounters:
        grouped[(encounter.protocol, encounter.identifier)].append(encounter)
    pieces = []
    for (protocol, _), group in grouped.items():
        platform = next((e.platform for e in group if e.platform is not Platform.UNKNOWN),
                        Platform.UNKNOWN)
        weights = [max(1, e.samples) for e in group]
        median = sum(e.rssi_median * w for e, w in zip(group, weights, strict=True)) / sum(
            weights)
        pieces.append(_Piece(protocol, platform, min(e.first_seen for e in group),
                             max(e.last_seen for e in group), median, len(group)))
    pieces.sort(key=lambda p: p.first_seen)
    return pieces


def _link(pieces: Sequence[_Piece], params: AdoptionParams) -> None:
    """Attach pieces that continue an earlier piece (step 3).

    Bluezone phones all rotate at the same slot boundary, so a queue at the door gives
    many candidates at once: a maximum matching links as many as the rules allow (a
    greedy choice would let the first new ID take another phone's old one and strand
    the rest). GAEN phones rotate at their own random times and the rules depend on the
    phone's previous rotation, so pieces are linked one by one in time order.
    """
    bluezone = bool(pieces) and pieces[0].protocol is Protocol.BLUEZONE
    gap = params.link_gap_s if bluezone else params.gaen_link_gap_s
    overlap = params.overlap_s if bluezone else params.gaen_overlap_s
    ended = sorted(pieces, key=lambda p: p.last_seen)
    ends = [p.last_seen for p in ended]

    def candidates(piece: _Piece) -> list[_Piece]:
        low = bisect.bisect_left(ends, piece.first_seen - gap)
        high = bisect.bisect_right(ends, piece.first_seen + overlap)
        found = [c for c in ended[low:high]
                 if c is not piece and c.successor is None and _can_continue(c, piece, params)]
        return sorted(found, key=lambda c: (
            abs(piece.first_seen - c.last_seen) / gap
            + abs(piece.rssi_median - c.rssi_median) / params.rssi_tolerance_db))

    if bluezone:
        options = [candidates(piece) for piece in pieces]
        for new, old in _max_matching(options).items():
            _join(old, pieces[new])
        return
    for piece in pieces:
        found = candidates(piece)
        if found:
            _join(found[0], piece)


def _join(old: _Piece, new: _Piece) -> None:
    old.successor, new.predecessor = new, old
    new.rotated_at = (old.last_seen + new.first_seen) / 2


def _max_matching(options: Sequence[Sequence[_Piece]]) -> dict[int, _Piece]:
    """A maximum bipartite matching (Kuhn's augmenting paths, iterative): ``options[i]``
    lists the old pieces new piece ``i`` may continue, best first. Returns new -> old."""
    owner: dict[int, int] = {}  # id(old piece) -> index of the new piece it is matched to
    matched: dict[int, _Piece] = {}
    for root, choices in enumerate(options):
        if not choices:
            continue
        visited: set[int] = set()
        came_from: dict[int, int] = {}  # id(old) -> new index that reached it
        stack = [(root, iter(choices))]
        free: _Piece | None = None
        by_id: dict[int, _Piece] = {}
        while stack and free is None:
            new, pending = stack[-1]
            for old in pending:
                if id(old) in visited:
                    continue
                visited.add(id(old))
                came_from[id(old)] = new
                by_id[id(old)] = old
                if id(old) not in owner:
                    free = old
                else:
                    rival = owner[id(old)]
                    stack.append((rival, iter(options[rival])))
                break
            else:
                stack.pop()
        # Flip the augmenting path: each new piece on it takes the old piece it reached.
        old_piece = free
        while old_piece is not None:
            new = came_from[id(old_piece)]
            previous = matched.get(new)
            owner[id(old_piece)] = new
            matched[new] = old_piece
            old_piece = previous
    return matched


def _can_continue(old: _Piece, new: _Piece, params: AdoptionParams) -> bool:
    if new.first_seen <= old.first_seen or new.last_seen <= old.last_seen:
        return False
    if Platform.UNKNOWN not in (old.platform, new.platform) and old.platform != new.platform:
        return False
    if abs(old.rssi_median - new.rssi_median) > params.rssi_tolerance_db:
        return False
    if old.protocol is Protocol.BLUEZONE:
        slot = params.bluezone_slot_s
        boundary = round(new.first_seen / slot) * slot
        skew = params.clock_skew_s
        return (old.last_seen <= boundary + skew and new.first_seen >= boundary - skew
                and old.first_seen < boundary + skew)
    if old.rotated_at is not None:
        switch = (old.last_seen + new.first_seen) / 2
        return switch - old.rotated_at >= params.gaen_min_rotation_s
    return True


@dataclass(frozen=True, slots=True)
class GroupCount:
    """People and identifiers of one protocol and platform in one hour."""

    protocol: str
    platform: str
    people: int
    identifiers: int


@dataclass(frozen=True, slots=True)
class HourCount:
    """One hour of the day (local time)."""

    start: float
    end: float
    label: str
    people: int
    identifiers: int
    groups: tuple[GroupCount, ...]


@dataclass(frozen=True, slots=True)
class DailyAdoption:
    """The daily adoption report: per hour, estimated people with the app at the door."""

    day: date
    utc_offset: str
    hours: tuple[HourCount, ...]
    people: int
    identifiers: int
    #: Protocol/platform groups present in the day, in display order.
    groups: tuple[tuple[str, str], ...]
    method: str
    excluded_weak: int = field(default=0)


def day_bounds(day: date, tz: tzinfo) -> tuple[float, float]:
    """Unix start and end of the local ``day`` in ``tz``."""
    start = datetime.combine(day, time(0), tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tz)
    return start.timestamp(), end.timestamp()


def daily_adoption(encounters: Iterable[Encounter], day: date, tz: tzinfo,
                   params: AdoptionParams = AdoptionParams()) -> DailyAdoption:
    """Per-hour estimate for the local ``day``.

    ``encounters`` should cover the day plus the hour before it (so that a phone that
    arrived before midnight is not counted again at its first rotation of the day).
    """
    start, end = day_bounds(day, tz)
    encounters = list(encounters)
    chains = chain_encounters(encounters, params)
    ids_by_hour: Counter[tuple[int, str, str]] = Counter()
    seen: set[tuple[Protocol, bytes]] = set()
    for e in sorted(encounters, key=lambda e: e.first_seen):
        if e.rssi_max < params.min_rssi or not start <= e.first_seen < end:
            continue
        if (e.protocol, e.identifier) in seen:
            continue
        seen.add((e.protocol, e.identifier))
        ids_by_hour[(int((e.first_seen - start) // 3600), e.protocol.value, e.platform.value)] += 1
    people_by_hour: Counter[tuple[int, str, str]] = Counter(
        (int((c.first_seen - start) // 3600), c.protocol.value, c.platform.value)
        for c in chains if start <= c.first_seen < end)
    groups = tuple(sorted({(p, f) for _, p, f in (*people_by_hour, *ids_by_hour)},
                          key=_group_order))
    hours = []
    for index in range(round((end - start) / 3600)):
        hour_start = start + 3600 * index
        counts = tuple(GroupCount(p, f, people_by_hour[(index, p, f)],
                                  ids_by_hour[(index, p, f)]) for p, f in groups)
        hours.append(HourCount(
            start=hour_start, end=min(end, hour_start + 3600),
            label=datetime.fromtimestamp(hour_start, tz).strftime("%H:00"),
            people=sum(c.people for c in counts), identifiers=sum(c.identifiers for c in counts),
            groups=counts))
    weak = sum(1 for e in encounters if e.rssi_max < params.min_rssi
               and start <= e.first_seen < end)
    offset = datetime.combine(day, time(12), tz).strftime("%z")
    return DailyAdoption(
        day=day, utc_offset=f"{offset[:3]}:{offset[3:]}", hours=tuple(hours),
        people=sum(h.people for h in hours), identifiers=sum(h.identifiers for h in hours),
        groups=groups, method=describe_method(params), excluded_weak=weak)


def describe_method(params: AdoptionParams) -> str:
    """The method in one paragraph, with the parameters used (shown in every report)."""
    return METHOD.format(min_rssi=params.min_rssi, slot_min=params.bluezone_slot_s / 60,
                         link_gap=params.link_gap_s, gaen_gap=params.gaen_link_gap_s)


def _group_order(group: tuple[str, str]) -> tuple[int, int]:
    protocols = [p.value for p in Protocol]
    platforms = [p.value for p in (Platform.ANDROID, Platform.IOS, Platform.UNKNOWN)]
    return (protocols.index(group[0]) if group[0] in protocols else 99,
            platforms.index(group[1]) if group[1] in platforms else 99)

