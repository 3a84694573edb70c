"""The daemon's health verdicts: what withholds the systemd watchdog ping, what the
status warns about, and when the daemon counts as fully up."""

from __future__ import annotations

import time

from bzlogger.ble.advertiser import Advertiser, AdvertisingStatus
from bzlogger.ble.scanner import BleScanner
from bzlogger.ble.watchdog import Phase
from bzlogger.clock import Clock
from bzlogger.daemon.clock_guard import ClockGuard
from bzlogger.daemon.store_writer import StoreWriter
from bzlogger.daemon.supervisor import Supervisor

#: Store writes failing for this many real seconds make the daemon unhealthy.
STORE_FAILING_S = 30.0
#: The flusher not ticking for this many real seconds makes the daemon unhealthy.
STALL_S = 15.0


def unhealthy_reasons(supervisor: Supervisor, scanner: BleScanner, clock: Clock,
                      writer: StoreWriter, last_flush_real: float) -> list[str]:
    """Why the watchdog must not be pinged (empty when healthy)."""
    reasons = [f"{name}: failing repeatedly" for name in supervisor.unhealthy_parts()]
    problem = scanner_problem(scanner, clock)
    if problem:
        reasons.append(f"scanner: {problem}")
    now = time.monotonic()
    if writer.failing_since is not None and now - writer.failing_since >= STORE_FAILING_S:
        reasons.append(f"store: not writable for {now - writer.failing_since:.0f} s")
    if now - last_flush_real >= STALL_S:
        reasons.append(f"pipeline: no flush for {now - last_flush_real:.0f} s")
    return reasons


def scanner_problem(scanner: BleScanner, clock: Clock) -> str | None:
    """The scanner's own verdict, except that its "loop is stuck" check fires while
    the loop is legitimately asleep until its silence deadline (which grows up to
    16x the watchdog time on a quiet night): that is not wedged."""
    health = scanner.health()
    if health.ok:
        return None
    policy = scanner.policy
    if (health.reason == "supervisor loop is stuck"
            and policy.phase is Phase.SCANNING
            and policy.silence_deadline() + STALL_S * clock.speed > clock.monotonic()):
        return None
    return health.reason


def warnings(advertiser: Advertiser | None, guard: ClockGuard) -> list[str]:
    """Problems a restart would not fix, shown in the status."""
    found = []
    if advertiser is not None and guard.verdict.usable:
        state = advertiser.state()
        if state.status is AdvertisingStatus.FAILED:
            found.append(f"advertising failed: {state.error}")
    return found


def all_up(scanner: BleScanner, advertiser: Advertiser | None, guard: ClockGuard) -> bool:
    """Whether the daemon is fully up: scanning, and advertising unless there is nothing
    to advertise or the clock forbids it."""
    if not scanner.scanning:
        return False
    if advertiser is None or not guard.verdict.usable:
        return True
    return advertiser.state().status is AdvertisingStatus.ACTIVE
