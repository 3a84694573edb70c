"""Library scenarios run accelerated: street passers come out below -90 dBm, the queue
gets close, the clock is shared, and the CLI describes scenarios."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path

from click.testing import CliRunner
from dbus_fast import Message, Variant
from dbus_fast.aio import MessageBus

from bzlogger.cli import cli
from bzlogger.clock import ScaledClock
from bzlogger.sim.radio import Report
from bzlogger.sim.runner import SimulatedBluez
from bzlogger.sim.scenario import load_scenario
from tests.conftest import SimFactory

SCENARIOS = Path(__file__).parents[2] / "tools" / "scenarios"


async def _discover(sim: SimulatedBluez) -> MessageBus:
    bus = await MessageBus(bus_address=sim.bus_address).connect()
    for member, signature, body in (
            ("SetDiscoveryFilter", "a{sv}", [{"RSSI": Variant("n", -127)}]),
            ("StartDiscovery", "", [])):
        reply = await bus.call(Message(destination="org.bluez", path="/org/bluez/hci0",
                                       interface="org.bluez.Adapter1", member=member,
                                       signature=signature, body=body))
        assert reply.error_name is None
    return bus


async def test_street_passers_are_below_minus_90(sim_factory: SimFactory) -> None:
    sim = await sim_factory(load_scenario(SCENARIOS / "street.toml"), speed=300.0)
    rssi: dict[str, list[int]] = defaultdict(list)

    def listen(report: Report, adapter: str) -> None:
        rssi[report.owner].append(report.rssi)

    sim.bluez.report_listeners.append(listen)
    bus = await _discover(sim)
    await sim.wait_until(12 * 60)
    street = [value for owner, values in rssi.items() if owner.startswith("street")
              for value in values]
    assert street, "some street passers should be heard at all"
    assert max(street) < -90
    assert rssi["customer"]  # the walk-in is heard (a few reports at this speed)
    assert sim.truth().visitor("customer").near_spans
    bus.disconnect()


async def test_queue_truth_and_shared_clock(sim_factory: SimFactory) -> None:
    sim = await sim_factory(load_scenario(SCENARIOS / "queue.toml"), speed=240.0)
    clock = ScaledClock.parse(sim.environment()["BZLOGGER_CLOCK"])
    assert abs(clock.now() - sim.clock.now()) < 1.0
    assert clock.now() - sim.scenario.start < 60
    bus = await _discover(sim)
    await asyncio.sleep(2.0)  # 8 scenario minutes
    truth = sim.truth()
    queued = [v for v in truth.visitors if v.id.startswith("queue-")]
    assert queued and all(v.near_spans for v in queued)
    assert all(not v.near_spans for v in truth.visitors if v.id.startswith("passer"))
    assert sim.bluez.stats.devices_added > 0
    bus.disconnect()


def test_describe_command() -> None:
    result = CliRunner().invoke(cli, ["sim", "describe", "--scenario",
                                      str(SCENARIOS / "busy_morning.toml"), "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["kind"]: row for row in json.loads(result.output)}
    assert rows["bluezone-ios"]["visitors"] > 50


def test_bad_scenario_is_exit_1() -> None:
    result = CliRunner().invoke(cli, ["sim", "describe", "--scenario", "/nonexistent.toml"])
    assert result.exit_code == 1
    assert "not found" in result.output


async def test_sim_run_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    import signal
    import sys

    truth_file = tmp_path / "truth.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bzlogger", "sim", "run", "--scenario",
        str(SCENARIOS / "queue.toml"), "--stay", "--truth", str(truth_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    first = await asyncio.wait_for(process.stdout.readline(), 20)
    assert first.startswith(b"export DBUS_SYSTEM_BUS_ADDRESS=")
    process.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0, err.decode()
    assert json.loads(truth_file.read_text())["scenario"] == "queue"
