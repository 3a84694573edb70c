"""Plain bleak (a subprocess importing no bzlogger code) sees a scenario's devices
through the simulator with the right data."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from bzlogger.ids import bluezone, gaen
from bzlogger.sim.world import APPLE_COMPANY_ID, IOS_OVERFLOW_BITMASK
from tests.conftest import SimFactory

SCRIPT = Path(__file__).with_name("bleak_scan.py")

NEARBY = """
[scenario]
name = "nearby"
seed = 3
start = "2020-08-17T08:00:00Z"
duration = "2h"

[[visitors]]
name = "android"
kind = "bluezone-android"
profile = "stationary"
distance = 1.0
stay = "2h"

[[visitors]]
name = "gaen"
kind = "gaen"
profile = "stationary"
distance = 1.5
stay = "2h"

[[visitors]]
name = "ios-fg"
kind = "bluezone-ios"
background = false
profile = "stationary"
distance = 2.0
stay = "2h"

[[visitors]]
name = "ios-bg"
kind = "bluezone-ios"
background = true
profile = "stationary"
distance = 2.0
stay = "2h"

[[visitors]]
name = "street"
kind = "gaen"
profile = "street"
arrive = "0s"
"""


async def _scan(env: dict[str, str], seconds: float,
                filters: dict[str, Any]) -> list[dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), str(seconds), json.dumps(filters), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), seconds + 30)
    assert process.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


async def test_plain_bleak_sees_scenario_devices_with_right_data(sim_factory: SimFactory) -> None:
    sim = await sim_factory(NEARBY, speed=1.0)
    rows = await _scan(sim.child_env(), 2.0, {"Transport": "le", "DuplicateData": False})
    truth = sim.truth()
    by_address: dict[str, dict[str, Any]] = {}
    for row in rows:
        by_address.setdefault(row["address"], row)

    android = truth.visitor("android").ids[0]
    row = by_address[android.address]
    assert row["uuids"] == [bluezone.SERVICE_UUID]
    assert row["manufacturer_data"] == {str(bluezone.COMPANY_ID): android.identifier}

    g = truth.visitor("gaen").ids[0]
    row = by_address[g.address]
    assert row["uuids"] == [gaen.SERVICE_UUID]
    assert row["service_data"] == {gaen.SERVICE_UUID: g.identifier + (g.aem or "")}
    assert -75 < row["rssi"] < -40

    fg = by_address[truth.visitor("ios-fg").ids[0].address]
    assert fg["name"] == "Bluezone"
    assert fg["uuids"] == [bluezone.IOS_SERVICE_UUID]
    bg = by_address[truth.visitor("ios-bg").ids[0].address]
    assert bg["uuids"] == []
    assert bg["manufacturer_data"] == {
        str(APPLE_COMPANY_ID): ("01" + IOS_OVERFLOW_BITMASK.hex())}

    street = [r["rssi"] for r in rows if r["address"] == truth.visitor("street").ids[0].address]
    assert all(rssi < -90 for rssi in street)


async def test_plain_bleak_change_semantics(sim_factory: SimFactory) -> None:
    sim = await sim_factory(NEARBY, speed=1.0)
    # One after the other: bluetoothd merges the filters of concurrent clients, and its
    # signals reach every listener.
    quiet = await _scan(sim.child_env(), 1.5, {"DuplicateData": False})
    chatty = await _scan(sim.child_env(), 1.5, {"RSSI": -127, "DuplicateData": True})
    address = sim.truth().visitor("android").ids[0].address
    quiet_rssi = [r["rssi"] for r in quiet if r["address"] == address]
    chatty_rssi = [r["rssi"] for r in chatty if r["address"] == address]
    # Android advertises every 100 ms: with DuplicateData every report is a signal;
    # without it only the first sighting and RSSI jumps of 8 dB or more are.
    assert len(chatty_rssi) > 8
    assert len(quiet_rssi) < len(chatty_rssi) / 2
    for before, after in itertools.pairwise(quiet_rssi):
        assert abs(after - before) >= 8


async def test_sim_run_command_end_to_end(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(NEARBY.replace('duration = "2h"', 'duration = "40s"'))
    truth_file = tmp_path / "truth.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bzlogger", "sim", "run", "--scenario", str(scenario),
        "--speed", "10", "--truth", str(truth_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    env = dict(os.environ)
    for _ in range(2):
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        name, _, value = line.removeprefix("export ").strip().partition("=")
        env[name] = shlex.split(value)[0]
    assert set(env) >= {"DBUS_SYSTEM_BUS_ADDRESS", "BZLOGGER_CLOCK"}
    rows = await _scan(env, 1.0, {})
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    truth = json.loads(truth_file.read_text())
    addresses = {span["address"] for v in truth["visitors"] for span in v["ids"]}
    assert {row["address"] for row in rows} & addresses
    assert "done at" in err.decode()
