"""Clock sanity, as a pure state machine (times are passed in).

A Raspberry Pi has no real-time clock: it boots at the time fake-hwclock saved (or in
1970) and jumps when NTP syncs. The daemon must neither advertise nor record with an
implausible clock, so the guard holds a *floor*: the release date, the newest time
already in the store, and every time the daemon has used since it started. While the
clock reads earlier than the floor the guard says "wait"; it also detects jumps (the
wall clock moving differently from the monotonic clock) so that the daemon can close
encounters and re-pick its advertised identifier at once.

Forward jumps are accepted (that is what an NTP sync after boot looks like); a backward
jump puts the guard back to waiting until the clock passes the newest time used, so
recorded times never go backwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bzlogger.daemon.durations import span_text
from bzlogger.timefmt import iso


class ClockState(StrEnum):
    """Whether the daemon may use the clock."""

    OK = "ok"
    WAITING = "waiting"


@dataclass(frozen=True, slots=True)
class ClockVerdict:
    """The outcome of one observation.

    ``jump_s`` is how far the wall clock jumped since the previous observation
    (positive forward, negative back, 0 when it ran normally). ``reason`` is the
    operator-readable explanation shown in the status.
    """

    state: ClockState
    reason: str
    jump_s: float = 0.0
    wait_until: float | None = None

    @property
    def usable(self) -> bool:
        """True when the daemon may advertise and record."""
        return self.state is ClockState.OK


class ClockGuard:
    """Tracks the plausibility of the wall clock from ``(now, monotonic)`` readings."""

    def __init__(self, release_floor: float, store_newest: float | None = None,
                 *, jump_tolerance_s: float = 2.0) -> None:
        self.release_floor = float(release_floor)
        self.store_newest = store_newest
        self.jump_tolerance_s = jump_tolerance_s
        #: Newest time the daemon has used (starts at the store's newest time).
        self.high_water = max(self.release_floor, store_newest or 0.0)
        self._last: tuple[float, float] | None = None
        #: Sightings stamped before this are refused (set when the guard turns ok).
        self._accept_from = self.high_water
        #: How far the clock went back, while waiting because of that (for the reason).
        self._went_back: float | None = None
        self.jumps = 0
        self.verdict = ClockVerdict(ClockState.WAITING, "no clock reading yet")

    @property
    def floor(self) -> float:
        """No time earlier than this may be advertised or recorded."""
        return self.high_water

    def observe(self, now: float, monotonic: float) -> ClockVerdict:
        """Take a reading; returns (and remembers) the verdict for it."""
        jump = 0.0
        if self._last is not None:
            last_now, last_mono = self._last
            expected = last_now + (monotonic - last_mono)
            drift = now - expected
            if abs(drift) > self.jump_tolerance_s:
                jump = drift
                self.jumps += 1
        self._last = (now, monotonic)
        if now < self.high_water:
            if jump < 0:
                self._went_back = -jump
            self.verdict = ClockVerdict(ClockState.WAITING, self._why_waiting(now, jump),
                                        jump, self.high_water)
        else:
            if not self.verdict.usable:
                self._accept_from = self.high_water
            self._went_back = None
            self.high_water = now
            reason = "ok" if jump == 0 else f"ok (jumped {_span(jump)} and accepted)"
            self.verdict = ClockVerdict(ClockState.OK, reason, jump)
        return self.verdict

    def plausible(self, t: float) -> bool:
        """True when a time stamped elsewhere (a sighting, slightly before the latest
        observation) may be recorded: the guard is ok and ``t`` is not older than the
        floor that held when it last turned ok."""
        return self.verdict.usable and t >= self._accept_from

    def _why_waiting(self, now: float, jump: float) -> str:
        behind = _span(self.high_water - now)
        if self._went_back is not None:
            return (f"clock went back {_span(self._went_back)}; waiting until it passes "
                    f"{iso(self.high_water)} (the newest time already used)")
        if self.store_newest is not None and self.high_water <= self.store_newest:
            what = f"the newest time in the store, {iso(self.store_newest)}"
        elif self.high_water == self.release_floor:
            what = f"the release date, {iso(self.release_floor)}"
        else:
            what = f"the newest time already used, {iso(self.high_water)}"
        return f"waiting for NTP: the clock reads {iso(now)}, {behind} earlier than {what}"


def _span(seconds: float) -> str:
    return span_text(abs(seconds))
