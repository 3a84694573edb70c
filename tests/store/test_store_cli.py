"""``bzlogger init`` and ``bzlogger encounters`` as operators use them."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from bzlogger.cli import cli
from bzlogger.cli.store_cmd import parse_time
from bzlogger.config import StoreSettings
from bzlogger.model import Protocol
from bzlogger.store import Store
from tests.store.conftest import DAY0, make_encounter


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    path = tmp_path / "bzlogger.toml"
    path.write_text(f'[store]\npath = "{tmp_path}/data/bzlogger.db"\n'
                    f'key_file = "{tmp_path}/etc/store.key"\n')
    return path


def _run(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--config", str(config), *args])
    return result.exit_code, result.stdout, result.stderr


def test_init_creates_then_keeps(config: Path, tmp_path: Path) -> None:
    code, out, _ = _run(config, "init")
    assert code == 0 and "created" in out
    key = tmp_path / "etc" / "store.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = key.read_bytes()
    code, out, _ = _run(config, "init")
    assert code == 0 and "kept" in out and key.read_bytes() == before


def test_init_refuses_a_wrong_key_without_touching_the_store(config: Path, tmp_path: Path
                                                             ) -> None:
    assert _run(config, "init")[0] == 0
    db = tmp_path / "data" / "bzlogger.db"
    before = db.read_bytes()
    (tmp_path / "etc" / "store.key").unlink()
    code, _, err = _run(config, "init")  # makes a new key, which does not open the store
    assert code == 1 and "does not open" in err and "Traceback" not in err
    assert db.read_bytes() == before


def test_encounters_without_a_key_tells_to_run_init(config: Path) -> None:
    code, _, err = _run(config, "encounters", "--json")
    assert code == 1 and "bzlogger init" in err


def test_encounters_json_csv_and_table(config: Path, tmp_path: Path) -> None:
    assert _run(config, "init")[0] == 0
    settings = StoreSettings(path=tmp_path / "data" / "bzlogger.db",
                             key_file=tmp_path / "etc" / "store.key")
    rng = random.Random(1)
    encounters = [make_encounter(rng, DAY0 + i * 3600.0, Protocol.BLUEZONE if i % 2
                                 else Protocol.GAEN) for i in range(30)]

    async def fill() -> None:
        async with await Store.open(settings) as store:
            await store.add_encounters(encounters)

    asyncio.run(fill())
    code, out, _ = _run(config, "encounters", "--json", "--since", "2026-12-01T05:30:00Z",
                        "--until", "2026-12-01T10:00:00Z")
    assert code == 0
    rows = json.loads(out)
    assert [r["first_seen"] for r in rows] == [f"2026-12-01T{h:02d}:00:00Z" for h in range(6, 11)]
    first = rows[0]
    e = encounters[6]
    assert first["protocol"] == e.protocol.value and first["id"].lower() == e.identifier.hex()
    assert first["last_seen"] == "2026-12-01T06:01:00Z" and first["duration_s"] == 60.0
    assert (first["samples"], first["rssi_max"], first["rssi_median"]) == (
        e.samples, e.rssi_max, e.rssi_median)
    assert {"rssi_mean", "close_s", "platform", "flags"} <= first.keys()
    assert isinstance(first["flags"], list)
    code, out, _ = _run(config, "encounters", "--csv", "--protocol", "gaen")
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(parsed) == 15 and {r["protocol"] for r in parsed} == {"gaen"}
    code, out, _ = _run(config, "encounters")
    assert code == 0 and out.splitlines()[0].startswith("PROTOCOL") and len(out.splitlines()) == 31
    code, _, err = _run(config, "encounters", "--since", "last week")
    assert code == 1 and "ISO 8601" in err


def test_relative_day_words() -> None:
    now = DAY0 + 5 * 86_400 + 3_723.5
    assert parse_time("today", now) == DAY0 + 5 * 86_400
    assert parse_time("Yesterday", now) == DAY0 + 4 * 86_400
    assert parse_time("now", now) == now
    assert parse_time("2026-12-01", now) == DAY0
