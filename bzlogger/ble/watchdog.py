"""The scanner's recovery policy: a small pure state machine, time passed in.

The scanner reports what happened (discovery started, an advertisement arrived, a start
failed with some BlueZ error, bluetoothd came or went, the adapter was powered on or
off) and asks :meth:`ScanPolicy.next_step` what to do and when. Escalation, each step
logged with its reason by the caller:

1. no advertisement for ``silence_s`` while scanning -> stop and start discovery again;
   the limit doubles after each restart that brought nothing (up to 16x), so a quiet
   night does not churn the adapter;
2. ``power_cycle_after`` silent restarts in a row, or as many failed starts in a row
   (bluetoothd's stuck "discovering" state), -> power-cycle the adapter, once per
   streak;
3. ``InProgress``/``NotReady``/a lost bus -> stop then start again after a backoff
   (``backoff_base`` doubling up to ``backoff_max``);
4. adapter powered off, or bluetoothd gone -> wait for it (the event wakes the caller;
   ``recheck_s`` is a fallback poll) and start again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Fault(StrEnum):
    """Why a scanner operation failed, as far as recovery is concerned."""

    IN_PROGRESS = "in_progress"
    NOT_READY = "not_ready"
    POWERED_OFF = "powered_off"
    NO_ADAPTER = "no_adapter"
    BLUEZ_GONE = "bluez_gone"
    BUS_LOST = "bus_lost"
    OTHER = "other"


class Action(StrEnum):
    """What the scanner should do next."""

    WAIT = "wait"
    START = "start"
    RESTART = "restart"
    POWER_CYCLE = "power_cycle"


class Phase(StrEnum):
    """Where the scanner stands."""

    STOPPED = "stopped"
    SCANNING = "scanning"
    WAITING_ADAPTER = "waiting_adapter"
    WAITING_BLUEZ = "waiting_bluez"


@dataclass(frozen=True, slots=True)
class Step:
    """``action`` to take at (monotonic) time ``at``, with a reason for the log;
    ``level`` grows as recovery escalates (0 = routine); ``silence`` marks steps taken
    because the scanner went quiet."""

    action: Action
    at: float
    reason: str
    level: int = 0
    silence: bool = False


class ScanPolicy:
    """Decides when to (re)start discovery; see the module docstring."""

    def __init__(self, silence_s: float, *, backoff_base: float = 0.5,
                 backoff_max: float = 30.0, power_cycle_after: int = 3,
                 silence_growth_max: int = 16, recheck_s: float = 2.0) -> None:
        if silence_s <= 0 or backoff_base <= 0 or backoff_max < backoff_base:
            raise ValueError("silence and backoff times must be positive")
        self.silence_s = silence_s
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.power_cycle_after = power_cycle_after
        self.silence_growth_max = silence_growth_max
        self.recheck_s = recheck_s
        self.phase = Phase.STOPPED
        self.bluez_present = True
        self.powered: bool | None = None
        self.failures = 0
        self.last_fault: Fault | None = None
        self.last_error = ""
        self.silent_restarts = 0
        self.cycled_this_streak = False
        self.retry_at = 0.0
        self.started_at = 0.0
        self.last_advert: float | None = None
        self.restarts = 0

    # -- events -------------------------------------------------------------

    def started(self, now: float) -> None:
        """Discovery is running."""
        self.phase = Phase.SCANNING
        self.started_at = now
        self.failures = 0
        self.last_fault = None
        self.last_error = ""

    def advert(self, now: float) -> None:
        """An advertisement (of any kind) arrived."""
        self.last_advert = now
        self.silent_restarts = 0
        self.cycled_this_streak = False

    def failed(self, now: float, fault: Fault, error: str = "") -> None:
        """Starting or keeping discovery failed with ``fault``."""
        self.last_fault = fault
        self.last_error = error or fault.value
        if fault is Fault.POWERED_OFF:
            self.powered = False
            self.phase = Phase.WAITING_ADAPTER
            return
        if fault is Fault.BLUEZ_GONE:
            self.bluez_present = False
            self.phase = Phase.WAITING_BLUEZ
            return
        self.phase = Phase.STOPPED
        self.failures += 1
        self.retry_at = now + self.backoff(self.failures)

    def bluez_changed(self, now: float, present: bool) -> None:
        """bluetoothd left the bus, or (re)appeared: either way discovery is gone."""
        self.bluez_present = present
        self.powered = None
        self.phase = Phase.STOPPED if present else Phase.WAITING_BLUEZ
        self.failures = 0
        self.retry_at = now

    def powered_changed(self, now: float, powered: bool) -> None:
        """The adapter's ``Powered`` property changed (or was first read)."""
        was = self.powered
        self.powered = powered
        if not powered:
            if self.phase is not Phase.WAITING_BLUEZ:
                self.phase = Phase.WAITING_ADAPTER
        elif was is False or self.phase is Phase.WAITING_ADAPTER:
            # Powering off ends every discovery session: start afresh.
            self.phase = Phase.STOPPED
            self.failures = 0
            self.retry_at = now

    def power_cycled(self, now: float) -> None:
        """The adapter was power-cycled on our request."""
        self.cycled_this_streak = True
        self.phase = Phase.STOPPED
        self.retry_at = now

    # -- decisions ----------------------------------------------------------

    def backoff(self, failures: int) -> float:
        """Delay before retry number ``failures`` (1-based)."""
        return float(min(self.backoff_max, self.backoff_base * 2 ** max(0, failures - 1)))

    def silence_limit(self) -> float:
        """Seconds without an advertisement before a restart, given the streak so far."""
        return self.silence_s * float(min(self.silence_growth_max, 2 ** self.silent_restarts))

    def silence_deadline(self) -> float:
        """When the scanner counts as silent, if it is scanning."""
        last = max(self.started_at, self.last_advert if self.last_advert is not None else 0.0)
        return last + self.silence_limit()

    def next_step(self, now: float) -> Step:
        """What to do now or next; WAIT steps say until when (events may come sooner)."""
        if not self.bluez_present or self.phase is Phase.WAITING_BLUEZ:
            return Step(Action.WAIT, now + self.recheck_s, "bluetoothd is not on the bus", 1)
        if self.powered is False or self.phase is Phase.WAITING_ADAPTER:
            return Step(Action.WAIT, now + self.recheck_s, "adapter is powered off", 1)
        if self.phase is Phase.STOPPED:
            if now < self.retry_at:
                return Step(Action.WAIT, self.retry_at,
                            f"backing off after {self.failures} failure(s): {self.last_error}",
                            min(2, self.failures))
            if self.failures >= self.power_cycle_after and not self.cycled_this_streak:
                return Step(Action.POWER_CYCLE, now,
                            f"{self.failures} failed starts in a row ({self.last_error})", 3)
            if self.last_fault in (Fault.IN_PROGRESS, Fault.NOT_READY, Fault.BUS_LOST,
                                   Fault.OTHER):
                return Step(Action.RESTART, now,
                            f"retry after {self.last_error} (attempt {self.failures + 1})", 2)
            return Step(Action.START, now, "discovery is not running")
        deadline = self.silence_deadline()
        if now < deadline:
            return Step(Action.WAIT, deadline, "scanning")
        quiet = now - max(self.started_at, self.last_advert or 0.0)
        if self.silent_restarts + 1 >= self.power_cycle_after and not self.cycled_this_streak:
            return Step(Action.POWER_CYCLE, now,
                        f"no advertisement for {quiet:.0f} s after "
                        f"{self.silent_restarts} restart(s)", 3, silence=True)
        return Step(Action.RESTART, now, f"no advertisement for {quiet:.0f} s", 1, silence=True)

    def begin(self, step: Step) -> None:
        """The caller is about to carry out ``step`` (a START, RESTART or POWER_CYCLE)."""
        if step.action is not Action.WAIT:
            self.restarts += 1
        if step.silence:
            self.silent_restarts += 1
