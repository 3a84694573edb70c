"""How close is ``bzlogger report daily`` to the truth through the whole daemon?

Runs a scenario on the simulated BlueZ with the real daemon (bleak scanner, GATT reader
for iPhones, aggregation, encrypted store) on one accelerated clock, then estimates
people per hour from the store and prints them beside the ground truth (phones with an
app that came within 3 m of the kiosk, by hour of arrival) and the raw identifier count.

    .venv/bin/python tools/door_accuracy.py [--scenario tools/scenarios/busy_morning.toml]
        [--speed 60] [--report-tick 0.01] [--start 2026-12-07T07:00:00Z]

The simulated adapter reports each phone at most once per ``--report-tick`` real seconds,
that is every speed x tick seconds of scenario time: keep that product under a second
(real BlueZ reports every advertisement, 0.1-0.25 s apart), or a walk past the door
leaves only two or three samples.

The scenario is moved to ``--start`` (same seed, same visitors): the daemon refuses to
record with a clock earlier than bzlogger's release, and the scenarios are dated 2020.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import tomllib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from bzlogger import config, logsetup
from bzlogger.core.adoption import daily_adoption
from bzlogger.daemon.app import Daemon
from bzlogger.sim.runner import SimulatedBluez
from bzlogger.sim.scenario import Scenario, parse_scenario
from bzlogger.store import Store
from bzlogger.store.keys import create_key_file

DOOR_M = 3.0


def truth_by_hour(scenario: Scenario, day_start: float) -> Counter[int]:
    """Phones with an app that came within DOOR_M of the kiosk, by hour of arrival."""
    hours: Counter[int] = Counter()
    for v in scenario.visitors:
        if v.kind.protocol is not None and min(d for _, d in v.path.waypoints) <= DOOR_M:
            hours[int((v.arrival - day_start) // 3600)] += 1
    return hours


def moved_scenario(path: str, start: str) -> Scenario:
    """The scenario at ``path`` with its start moved to ``start``."""
    data = tomllib.loads(Path(path).read_text())
    data.setdefault("scenario", {})["start"] = start
    return parse_scenario(data)


async def main(args: argparse.Namespace) -> None:
    logsetup.configure(0)
    scenario = moved_scenario(args.scenario, args.start)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        settings = config.parse({"store": {"path": "store.db", "key_file": "store.key"},
                                 "ble": {"advertise": []},
                                 "daemon": {"state_file": "state.json"}}, base=base)
        create_key_file(settings.store.key_file)
        await (await Store.open(settings.store, create=True)).close()
        started = time.monotonic()
        cpu = os.times()
        async with SimulatedBluez.start(scenario, speed=args.speed,
                                        report_tick=args.report_tick) as sim:
            os.environ.update(sim.environment())
            daemon = Daemon(settings, sim.clock)
            running = asyncio.create_task(daemon.run())
            await sim.run_until_end()
            state = daemon.snapshot()
            daemon.request_stop()
            status = await running
        spent = time.monotonic() - started
        used = os.times()
        async with await Store.open(settings.store) as store:
            encounters = await store.encounters()
    day = datetime.fromtimestamp(scenario.start, UTC).date()
    day_start = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    report = daily_adoption(encounters, day, UTC)
    truth = truth_by_hour(scenario, day_start)
    print(f"scenario {scenario.name}: {len(scenario.visitors)} visitors, speed {args.speed}, "
          f"report tick {args.report_tick} s, "
          f"{spent:.0f} s real, CPU {used.user - cpu.user + used.system - cpu.system:.0f} s, "
          f"daemon exit {status}")
    scanning = state["scanning"]
    print(f"daemon: {scanning['adverts']} adverts, dropped queue {scanning['dropped_queue']}, "
          f"dropped weak {scanning['dropped_weak']}, GATT reads "
          f"{scanning.get('gatt_reads_ok', 0)}, encounters {len(encounters)}")
    print(f"{'hour':>5} {'truth':>6} {'estimate':>9} {'error':>7} {'identifiers':>12}")
    for index, hour in enumerate(report.hours):
        expected = truth[index]
        if expected or hour.identifiers:
            error = f"{(hour.people - expected) / expected:+.1%}" if expected else "-"
            print(f"{hour.label:>5} {expected:>6} {hour.people:>9} {error:>7} "
                  f"{hour.identifiers:>12}")
    total = sum(truth.values())
    print(f"{'all':>5} {total:>6} {report.people:>9} "
          f"{(report.people - total) / max(1, total):+7.1%} {report.identifiers:>12}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="tools/scenarios/busy_morning.toml")
    parser.add_argument("--speed", type=float, default=60.0)
    parser.add_argument("--report-tick", type=float, default=0.01)
    parser.add_argument("--start", default="2026-12-07T07:00:00Z")
    asyncio.run(main(parser.parse_args()))
