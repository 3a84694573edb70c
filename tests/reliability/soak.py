"""An accelerated week of a busy entrance: the daemon as a process against the simulated
BlueZ on a fast clock, retention at one day. Memory and file descriptors must stay flat
and the store's size must stop growing once retention starts deleting."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bzlogger.sim.runner import SimulatedBluez
from bzlogger.sim.scenario import parse_scenario
from tests.reliability.common import (
    CampaignResult,
    child_env,
    integrity,
    make_kiosk,
    read_encounters,
    spawn_daemon,
    stop_daemon,
    until,
)
from tests.reliability.probe_daemon import process_figures
from tests.reliability.stack import START

DAY = 86_400.0
#: Growth over the soak that counts as a leak (after the first simulated day).
RSS_SLACK_KB = 12 * 1024
FD_SLACK = 2
#: The store may grow this much past its size at the end of the second day (one day
#: kept, plus the day being written, plus SQLite's free pages).
SIZE_FACTOR = 1.6


def entrance_scenario(days: int, per_day: int) -> dict[str, Any]:
    """``per_day`` visitors a day queueing at the entrance (Bluezone Android and iOS,
    GAEN, noise) and a few staff at desks all day."""
    total = days * per_day
    span = f"{days * 24}h"
    return {
        "scenario": {"name": "busy-week", "seed": 21, "start": START, "duration": span},
        "visitors": [
            {"name": "bz", "kind": "bluezone-android", "count": total * 45 // 100,
             "arrive": ["0m", span], "profile": "queue", "wait": ["1m", "6m"]},
            {"name": "ios", "kind": "bluezone-ios", "count": total * 15 // 100,
             "arrive": ["0m", span], "profile": "queue", "wait": ["1m", "6m"],
             "background": 0.5},
            {"name": "gaen", "kind": "gaen", "count": total * 30 // 100,
             "arrive": ["0m", span], "profile": "queue", "wait": ["1m", "6m"]},
            {"name": "noise", "kind": "watch", "count": total * 10 // 100,
             "arrive": ["0m", span], "profile": "queue", "wait": ["1m", "6m"]},
            {"name": "staff", "kind": "bluezone-android", "count": 4 * days,
             "arrive": ["0m", span], "profile": "desk", "stay": "8h"},
        ],
    }


@dataclass
class Sample:
    day: float
    rss_kb: int
    fds: int
    store_bytes: int
    encounters: int | None


async def soak_campaign(workdir: Path, *, days: int = 7, speed: float = 1000.0,
                        per_day: int = 300, log: Callable[[str], None] = print
                        ) -> CampaignResult:
    """Run ``days`` of clock time at ``speed`` and sample the daemon every 5 s."""
    result = CampaignResult(f"soak: {days} days x {per_day} visitors, retention 1 day",
                            injected=1)
    kiosk = await make_kiosk(workdir / "soak", retention_days=1, watchdog_s=3600)
    samples: list[Sample] = []
    scenario = parse_scenario(entrance_scenario(days, per_day))
    async with SimulatedBluez.start(scenario, speed=speed) as sim:
        proc = await spawn_daemon(kiosk, child_env(sim.environment()),
                                  log=workdir / "soak-daemon.log")
        try:
            if not await until(lambda: bool(kiosk.state()), 30):
                raise AssertionError("the daemon did not start within 30 s")
            next_log = 0.0
            while not sim.finished:
                if proc.returncode is not None:
                    result.crashes += 1
                    result.fail(f"the daemon exited with {proc.returncode}")
                    break
                figures = process_figures(proc.pid)
                day = (sim.clock.now() - scenario.start) / DAY
                samples.append(Sample(day, figures["rss_kb"], figures["fds"],
                                      _store_bytes(kiosk.store_dir),
                                      kiosk.state().get("store", {}).get("encounters")))
                if day >= next_log:
                    log(f"  soak: day {day:.1f}, RSS {figures['rss_kb'] // 1024} MB, fds "
                        f"{figures['fds']}, store {samples[-1].store_bytes // 1024} kB")
                    next_log += 1.0
                await asyncio.sleep(5.0)
        finally:
            code = await stop_daemon(proc)
        if code != 0:
            result.fail(f"exit status {code} on SIGTERM")
    check = integrity(kiosk.settings.store.path)
    if check != "ok":
        result.fail(f"integrity_check: {check}")
    encounters = await read_encounters(kiosk.settings)
    oldest = min((e.first_seen for e in encounters), default=None)
    end = scenario.start + days * DAY
    if oldest is not None and oldest < end - 3 * DAY:
        result.fail(f"encounters older than retention kept ({(end - oldest) / DAY:.1f} days)")
    _judge(samples, result)
    result.notes.append(f"{len(encounters)} encounters kept at the end; real time "
                        f"{samples[-1].day * DAY / speed if samples else 0:.0f} s")
    if not result.failures:
        result.survived = 1
    return result


def _store_bytes(directory: Path) -> int:
    """The database file itself (the WAL is bounded by SQLite's checkpoints)."""
    return sum(p.stat().st_size for p in directory.iterdir() if p.suffix == ".db")


def _judge(samples: list[Sample], result: CampaignResult) -> None:
    after_day1 = [s for s in samples if s.day >= 1.0]
    if len(after_day1) < 4:
        result.fail("too short to judge (run at least two simulated days)")
        return
    first, last = after_day1[0], after_day1[-1]
    rss_max = max(s.rss_kb for s in after_day1)
    fds_max = max(s.fds for s in after_day1)
    if rss_max > first.rss_kb + RSS_SLACK_KB:
        result.fail(f"memory grew {first.rss_kb} -> {rss_max} kB")
    if fds_max > first.fds + FD_SLACK:
        result.fail(f"file descriptors grew {first.fds} -> {fds_max}")
    # Retention keeps whole days: from the third day on the store holds two days at
    # most, as it did at the end of the second.
    settled = [s for s in samples if s.day >= 3.0]
    size_day2 = max((s.store_bytes for s in samples if 1.0 <= s.day < 3.0), default=0)
    size_max = max((s.store_bytes for s in settled), default=0)
    if settled and size_day2 and size_max > size_day2 * SIZE_FACTOR:
        result.fail(f"store kept growing: {size_day2} bytes by day 3, {size_max} later")
    result.data_lost = "n/a"
    result.notes.append(
        f"RSS {first.rss_kb // 1024}->{last.rss_kb // 1024} MB (max {rss_max // 1024}), fds "
        f"{first.fds}->{last.fds}, database {size_day2 // 1024} kB by day 3, max "
        f"{size_max // 1024} kB after (encounters {last.encounters})")
