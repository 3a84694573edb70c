"""Plain bleak (a subprocess importing no bzlogger code) sees a scenario's devices
through the simulator with the right data."""

from __future__ import annotations

import asyncio
import json
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
