"""``bzlogger sim``: run a simulated BlueZ with a scenario (developer tool)."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import signal
import sys
from collections import Counter

import click

from bzlogger.cli.output import emit, format_option
from bzlogger.errors import OperationalError
from bzlogger.sim.scenario import Scenario, load_scenario
from bzlogger.timefmt import iso


@click.group()
def sim() -> None:
    """A simulated BlueZ on a private D-Bus, with a scenario of visitors (for tests and
    demos on machines without Bluetooth)."""


@sim.command()
@click.option("--scenario", "scenario_file", required=True, type=click.Path(dir_okay=False),
              help="Scenario file (TOML), e.g. tools/scenarios/queue.toml.")
@click.option("--speed", type=click.FloatRange(min=0.01, max=10_000), default=1.0,
              show_default=True, help="Scenario seconds per real second.")
@click.option("--truth", "truth_file", type=click.Path(dir_okay=False),
              help="Write the ground truth (JSON, with plaintext IDs and keys) here at the end.")
@click.option("--bus", "bus_address", metavar="ADDRESS",
              help="Join this D-Bus instead of starting a private dbus-daemon.")
@click.option("--stay", is_flag=True, help="Keep running after the scenario ends (until Ctrl-C).")
def run(scenario_file: str, speed: float, truth_file: str | None, bus_address: str | None,
        stay: bool) -> None:
    """Run a scenario and print the environment a daemon or bleak script needs.

    The first lines on stdout are shell exports, so that another shell can do
    ``eval "$(head -2 sim.out)"``:

    \b
      export DBUS_SYSTEM_BUS_ADDRESS='unix:path=/tmp/bzlogger-sim-.../system_bus_socket'
      export BZLOGGER_CLOCK='1765000000.0:1597647600.0:60.0'

    It runs until the scenario's end (or Ctrl-C), then prints a summary.
    """
    scenario = load_scenario(scenario_file)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(scenario, speed, truth_file, bus_address, stay))


async def _run(scenario: Scenario, speed: float, truth_file: str | None,
               bus_address: str | None, stay: bool) -> None:
    from bzlogger.sim.runner import SimulatedBluez  # loads dbus-fast only when needed

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with SimulatedBluez.start(scenario, speed=speed, bus_address=bus_address) as sim:
        for name, value in sim.environment().items():
            click.echo(f"export {name}={shlex.quote(value)}")
        sys.stdout.flush()
        click.echo(f"scenario {scenario.name!r}: {len(scenario.visitors)} visitors, "
                   f"{iso(scenario.start)} .. {iso(scenario.end)} at {speed:g}x "
                   f"({scenario.duration / speed:.0f} s real)", err=True)
        waiter = asyncio.create_task(stop.wait())
        if not stay:
            ender = asyncio.create_task(sim.run_until_end())
            await asyncio.wait({waiter, ender}, return_when=asyncio.FIRST_COMPLETED)
            ender.cancel()
        else:
            await waiter
        waiter.cancel()
        truth = sim.truth()
        stats = sim.bluez.stats
        click.echo(f"done at {iso(sim.clock.now())}: {stats.reports} reports, "
                   f"{stats.devices_added} devices added, {stats.device_signals} device "
                   f"signals, {sum(stats.connections.values())} GATT connections, "
                   f"{len(sim.advertisements())} kiosk advertisements, "
                   f"{len(truth.kiosk_heard)} beacon hearings, "
                   f"max tick lag {sim.max_tick_lag_s * 1000:.0f} ms", err=True)
        if truth_file:
            try:
                truth.write(truth_file)
            except OSError as error:
                raise OperationalError(f"cannot write ground truth to {truth_file}: "
                                       f"{error.strerror}") from None


@sim.command()
@click.option("--scenario", "scenario_file", required=True, type=click.Path(dir_okay=False),
              help="Scenario file (TOML).")
@format_option(csv_allowed=True)
def describe(scenario_file: str, fmt: str) -> None:
    """Check a scenario file and list its visitors per kind."""
    scenario = load_scenario(scenario_file)
    kinds = Counter(v.kind.value for v in scenario.visitors)
    positives = Counter(v.kind.value for v in scenario.visitors if v.positive)
    with contextlib.suppress(BrokenPipeError):
        emit([{"kind": kind, "visitors": count, "positive": positives[kind]}
              for kind, count in sorted(kinds.items())], fmt)
