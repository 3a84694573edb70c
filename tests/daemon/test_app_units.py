"""Pure pieces of the daemon's wiring: reload plan, status line, rate meter."""

from __future__ import annotations

import dataclasses
from typing import Any

from bzlogger import config
from bzlogger.clock import ManualClock
from bzlogger.daemon.app import Daemon, reload_plan
from bzlogger.daemon.health import scanner_problem
from bzlogger.daemon.sdnotify import Notifier
from bzlogger.daemon.snapshot import RateMeter, status_line


def test_reload_applies_encounter_rules_and_flush_interval_and_defers_the_rest() -> None:
    old = config.Settings()
    new = dataclasses.replace(
        old,
        encounters=dataclasses.replace(old.encounters, gap_s=60.0),
        store=dataclasses.replace(old.store, flush_interval_s=0.5),
        ble=dataclasses.replace(old.ble, advertise=["bluezone", "gaen"]),
    )
    applied, restart = reload_plan(old, new)
    assert sorted(applied) == ["encounters", "store"]
    assert restart == ["ble"]
    moved = dataclasses.replace(old, store=dataclasses.replace(old.store, retention_days=7))
    assert reload_plan(old, moved) == ([], ["store"])
    assert reload_plan(old, old) == ([], [])


def _state(**overrides: Any) -> dict[str, Any]:
    state: dict[str, Any] = {
        "phase": "running", "unhealthy": [],
        "clock": {"reason": "ok"},
        "scanning": {"active": True, "per_minute": 14.2, "phase": "scanning", "detail": ""},
        "advertising": {"protocols": ["bluezone"], "active": True},
        "encounters": {"today": 37},
    }
    state.update(overrides)
    return state


def test_status_line_for_systemctl() -> None:
    assert status_line(_state()) == "scanning 14 adv/min; advertising bluezone; 37 encounters today"
    line = status_line(_state(unhealthy=["scanner: supervisor loop is stuck"],
                              advertising={"protocols": ["bluezone", "gaen"], "active": False}))
    assert line.startswith("UNHEALTHY: scanner: supervisor loop is stuck; ")
    assert "NOT advertising bluezone+gaen" in line
    waiting = _state(phase="waiting-for-clock",
                     clock={"reason": "waiting for NTP: the clock reads 1970-01-01T00:00:09Z"})
    assert status_line(waiting) == ("not logging: waiting for NTP: the clock reads "
                                    "1970-01-01T00:00:09Z")


def test_rate_meter_counts_per_minute_over_the_last_minute() -> None:
    meter = RateMeter()
    assert meter.update(0.0, 0) == 0.0
    assert meter.update(30.0, 10) == 20.0
    assert meter.update(60.0, 20) == 20.0
    # An hour later with nothing new the old points are gone and the rate is zero.
    for t in range(61, 3600, 10):
        meter.update(float(t), 20)
    assert meter.update(3600.0, 20) == 0.0
    assert len(meter._points) <= 8


def test_a_scanner_asleep_until_its_silence_deadline_is_not_wedged() -> None:
    clock = ManualClock(current=1_800_000_000.0, mono=1000.0)
    daemon = Daemon(config.Settings(), clock, notifier=Notifier(None))
    scanner = daemon.scanner
    scanner._running = True  # as inside run(); the loop last ticked at mono 1000
    scanner.policy.started(1000.0)
    scanner.policy.silent_restarts = 3  # a quiet night: the limit grew to 8 x 90 s
    clock.advance(400.0)  # the scanner's own check says "stuck" after 180 s
    assert scanner.health().reason == "supervisor loop is stuck"
    assert scanner_problem(scanner, clock) is None
    clock.advance(400.0)  # past the deadline (720 s) and the grace: really stuck
    assert scanner_problem(scanner, clock) == "supervisor loop is stuck"
