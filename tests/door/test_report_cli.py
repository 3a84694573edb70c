"""``bzlogger report daily`` on a real encrypted store filled with the busy morning."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bzlogger import config
from bzlogger.cli import cli
from bzlogger.model import Encounter
from bzlogger.sim.scenario import load_scenario
from bzlogger.store import Store
from bzlogger.store.keys import create_key_file
from tests.door import simfeed

SCENARIOS = Path(__file__).resolve().parents[2] / "tools" / "scenarios"
T0 = 1_597_622_400.0  # 2020-08-17T00:00:00Z


@pytest.fixture(scope="module")
def busy() -> tuple[list[Encounter], simfeed.Truth]:
    scenario = load_scenario(SCENARIOS / "busy_morning.toml")
    return simfeed.encounters(scenario), simfeed.ground_truth(scenario, T0)


@pytest.fixture
def kiosk(tmp_path: Path, busy: tuple[list[Encounter], simfeed.Truth],
          monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    conf = tmp_path / "bzlogger.toml"
    conf.write_text(f'[store]\npath = "{tmp_path / "store.db"}"\n'
                    f'key_file = "{tmp_path / "store.key"}"\n')
    settings = config.load(conf)
    create_key_file(settings.store.key_file)

    async def fill() -> None:
        async with await Store.open(settings.store, create=True) as store:
            await store.add_encounters(busy[0])

    asyncio.run(fill())
    return conf


def run(conf: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--config", str(conf), "report", "daily", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_json_report_matches_the_ground_truth(
        kiosk: Path, busy: tuple[list[Encounter], simfeed.Truth], tmp_path: Path) -> None:
    truth = busy[1]
    chart = tmp_path / "adoption.svg"
    doc = json.loads(run(kiosk, "--day", "2020-08-17", "--tz", "UTC", "--json",
                         "--chart", str(chart)).split("\nchart written")[0])
    assert abs(doc["people"] - truth.total) <= 0.10 * truth.total
    assert doc["identifiers"] > doc["people"]
    assert len(doc["hours"]) == 24 and doc["utc_offset"] == "+00:00"
    eight = doc["hours"][8]
    assert eight["hour"] == "08:00" and eight["start"] == "2020-08-17T08:00:00Z"
    assert sum(g["people"] for g in eight["by"]) == eight["people"]
    assert {(g["protocol"], g["platform"]) for g in eight["by"]} == {
        ("bluezone", "android"), ("bluezone", "ios"), ("gaen", "unknown")}
    assert "identifier" in doc["method"] and "-90 dBm" in doc["method"]
    svg = chart.read_text()
    assert svg.startswith("<svg") and "App users at the door" in svg
    text = json.dumps(doc)
    assert all(e.identifier.hex() not in text for e in busy[0][:50])


def test_local_hours_table_and_csv(kiosk: Path) -> None:
    table = run(kiosk, "--day", "2020-08-17", "--tz", "Asia/Ho_Chi_Minh")
    assert "HOUR" in table and "14:00" in table and "UTC+07:00" in table
    assert "Method:" in table
    rows = list(csv.DictReader(io.StringIO(run(kiosk, "--day", "2020-08-17", "--tz",
                                               "+07:00", "--csv"))))
    assert len(rows) == 24 and rows[14]["hour"] == "14:00"
    assert int(rows[14]["people"]) == int(rows[14]["bluezone_android"]) + int(
        rows[14]["bluezone_ios"]) + int(rows[14]["gaen_unknown"])


def test_png_chart(kiosk: Path, tmp_path: Path) -> None:
    chart = tmp_path / "adoption.png"
    run(kiosk, "--day", "2020-08-17", "--tz", "UTC", "--chart", str(chart))
    data = chart.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == 1200  # IHDR width


def test_an_empty_day(kiosk: Path) -> None:
    assert "no app users seen on 2020-08-18" in run(kiosk, "--day", "2020-08-18", "--tz", "UTC")


@pytest.mark.parametrize(("args", "message"), [
    (["--day", "17/08/2020"], "not a date"),
    (["--tz", "Mars/Olympus"], "not a time zone"),
    (["--chart", "x.pdf"], ".png or .svg"),
])
def test_usage_errors(kiosk: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["--config", str(kiosk), "report", "daily", *args])
    assert result.exit_code == 2 and message in result.output


def test_missing_store_key_is_an_operational_error(tmp_path: Path) -> None:
    conf = tmp_path / "bzlogger.toml"
    conf.write_text(f'[store]\npath = "{tmp_path / "s.db"}"\nkey_file = "{tmp_path / "k"}"\n')
    result = CliRunner().invoke(cli, ["--config", str(conf), "report", "daily"])
    assert result.exit_code == 1 and "error" in result.output
