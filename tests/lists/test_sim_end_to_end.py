"""End to end: simulated phones at the door -> the real daemon logs them -> the health
authority publishes the keys of those who test positive -> ``bzlogger match`` finds
exactly them, at the right times and with the right closeness.

The published lists are built from the simulation's ground truth (the visitors' own key
material), the GAEN export signed by a test authority the kiosk is configured to trust.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from bzlogger import config
from bzlogger.daemon.app import Daemon
from bzlogger.daemon.sdnotify import Notifier
from bzlogger.lists.gaen_export import ExportKey
from bzlogger.model import Protocol
from bzlogger.store import Store
from bzlogger.store.keys import create_key_file
from bzlogger.timefmt import iso, parse_iso
from tests.conftest import SimFactory
from tests.lists.conftest import Authority

START = "2026-12-07T08:00:00Z"
MINUTES = 16
SPEED = 60.0


def scenario() -> dict[str, Any]:
    """Who tests positive is fixed (no chance), so the answer is known."""
    phones: list[dict[str, Any]] = []
    for positive in (True, False):
        tag = "pos" if positive else "neg"
        phones += [
            {"name": f"{tag}-android", "kind": "bluezone-android", "count": 2,
             "arrive": ["0m", "8m"], "profile": "queue", "wait": ["2m", "4m"],
             "positive": positive},
            {"name": f"{tag}-ios", "kind": "bluezone-ios", "arrive": ["1m", "6m"],
             "profile": "desk", "stay": "5m", "background": False, "positive": positive},
            {"name": f"{tag}-gaen", "kind": "gaen", "count": 2, "arrive": ["0m", "8m"],
             "profile": "queue", "wait": ["2m", "4m"], "positive": positive},
        ]
    return {"scenario": {"name": "lists-e2e", "seed": 20, "start": START,
                         "duration": f"{MINUTES}m"},
            "visitors": phones}


async def make_kiosk(tmp_path: Path, authority: Authority) -> config.Settings:
    path = tmp_path / "bzlogger.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "store" / "bz.db"}"\n'
        f'key_file = "{tmp_path / "store.key"}"\nflush_interval_s = 1.0\n'
        '[ble]\nadvertise = ["bluezone"]\n'
        f'[daemon]\nstate_file = "{tmp_path / "run" / "state.json"}"\n'
        f'[gaen]\nverification_keys = [{{ key_id = "310", key_version = "v1", '
        f'pem = "{authority.pem}" }}]\n')
    settings = config.load(path)
    create_key_file(settings.store.key_file)
    await (await Store.open(settings.store, create=True)).close()
    (tmp_path / "run").mkdir()
    return settings


async def bzlogger(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bzlogger", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_positive_visitors_found_with_times_and_closeness(
        tmp_path: Path, sim_factory: SimFactory, authority: Authority) -> None:
    settings = await make_kiosk(tmp_path, authority)
    sim = await sim_factory(scenario(), speed=SPEED)
    daemon = Daemon(settings, sim.clock, notifier=Notifier(None))
    task = asyncio.create_task(daemon.run())
    await sim.run_until_end()
    daemon.request_stop()
    assert await asyncio.wait_for(task, 15) == 0
    truth = sim.truth()

    async with await Store.open(settings.store) as store:
        logged = await store.encounters()
    owner = {bytes.fromhex(span.identifier): v for v in truth.visitors for span in v.ids}
    assert all(e.identifier in owner for e in logged)
    positive_logged = [e for e in logged if owner[e.identifier].positive]
    # The scenario must exercise every kind of phone, positive and not.
    kinds = {(owner[e.identifier].kind, owner[e.identifier].positive) for e in logged}
    assert kinds >= {(k, p) for k in ("bluezone-android", "bluezone-ios", "gaen")
                     for p in (True, False)}

    f0 = tmp_path / "f0.json"
    f0.write_text(json.dumps(truth.bluezone_infected_list()))
    end = int(parse_iso(START)) + 86400
    keys = [ExportKey(bytes.fromhex(k["tek"]), k["rolling_start_interval"],
                      k["rolling_period"], 6, 1) for k in truth.gaen_positive_keys()]
    export = tmp_path / "export.zip"
    export.write_bytes(authority.export(keys, start=end - 2 * 86400, end=end))

    status, out, err = await bzlogger("--config", str(settings.source), "match", str(f0),
                                      str(export), "--json")
    assert status == 0, err
    report = json.loads(out)
    assert [(x["protocol"], x["verified"]) for x in report["lists"]] == [
        ("bluezone", False), ("gaen", True)]
    found = {(x["protocol"], x["id"], x["first_seen"]): x for x in report["exposures"]}
    expected = {(str(e.protocol), e.identifier.hex(), iso(e.first_seen)): e
                for e in positive_logged}
    # Every logged sighting of a positive visitor, and nobody else.
    assert set(found) == set(expected)
    for key, row in found.items():
        encounter = expected[key]
        visitor = owner[encounter.identifier]
        assert parse_iso(row["last_seen"]) == int(encounter.last_seen)
        assert visitor.arrival - 1 <= encounter.first_seen <= visitor.departure + 1
        if encounter.protocol is Protocol.GAEN:
            tek_hex = {k["tek"] for k in visitor.keys["gaen"]}
            assert row["list_key"] in tek_hex
            # Closeness: the TX power decrypted from the AEM is the phone's own.
            tx_power = visitor.keys["gaen"][0]["tx_power"]
            assert row["attenuation_db"] == round(tx_power - encounter.rssi_median, 1)
        else:
            daily = {d["daily_key"] for d in visitor.keys["bluezone"]["daily_keys"]}
            assert row["list_key"] in daily and row["attenuation_db"] is None
        assert row["rssi_median"] == encounter.rssi_median

