"""Every published vector, bit for bit, through the library and through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bzlogger.cli import cli
from bzlogger.ids import bluezone, gaen

VECTORS = Path(__file__).resolve().parents[1] / "data" / "vectors"


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


BZ = load("bluezone_v3.json")
GA = load("gaen_v1.2.json")


def test_vector_copies_match_shared_reference() -> None:
    shared = Path(__file__).resolve().parents[3] / "shared" / "reference" / "vectors"
    if not shared.is_dir():
        pytest.skip("../shared is not beside this checkout")
    for name in ("bluezone_v3.json", "gaen_v1.2.json"):
        assert (shared / name).read_bytes() == (VECTORS / name).read_bytes()


@pytest.mark.parametrize("day", BZ["days"], ids=lambda d: f"day{d['day_index']}")
def test_bluezone_daily_key_chain_and_ids(day: dict[str, Any]) -> None:
    base = bytes.fromhex(BZ["base_key_K0"])
    key = bluezone.daily_key(base, day["day_index"])
    assert key.hex().upper() == day["daily_key"].upper()
    assert [i.hex().upper() for i in bluezone.day_ids(key, 96)] == day["ids_max96"]
    assert day["day_start_unix_s"] == BZ["K0_day_start_unix_s"] + 86400 * day["day_index"]


def test_bluezone_max144_uses_the_same_chain() -> None:
    key = bytes.fromhex(BZ["base_key_K0"])
    ids = [i.hex().upper() for i in bluezone.iter_ids(key, 4)]
    assert ids == BZ["max144_day0_first4"]
    assert len(bluezone.day_ids(key, 144)) == 144


def test_bluezone_id_at_slot_matches_chain() -> None:
    key = bytes.fromhex(BZ["days"][1]["daily_key"])
    for slot in (0, 1, 47, 95):
        assert bluezone.id_at_slot(key, slot).hex().upper() == BZ["days"][1]["ids_max96"][slot]


def test_bluezone_slots_continue_into_next_days_key() -> None:
    key = bytes.fromhex(BZ["days"][0]["daily_key"])
    start = BZ["days"][0]["day_start_unix_s"]
    slots = list(bluezone.iter_slots(key, start, 96, 96 * 3))
    expected = [i for d in BZ["days"] for i in d["ids_max96"]]
    assert [s.identifier.hex().upper() for s in slots] == expected
    assert slots[96].start == BZ["days"][1]["day_start_unix_s"]
    assert slots[96].daily_key.hex().upper() == BZ["days"][1]["daily_key"]


def test_gaen_keys_and_all_144_intervals() -> None:
    tek = bytes.fromhex(GA["tek"])
    assert gaen.rpik(tek).hex() == GA["rpik"]
    assert gaen.aemk(tek).hex() == GA["aemk"]
    first = GA["rolling_start_interval_number"]
    assert gaen.padded_data(first).hex() == GA["padded_data_interval_0"]
    assert first == gaen.interval_number(GA["key_generation_unix_s"])
    slots = list(gaen.iter_slots(tek, first, GA["rolling_period"],
                                 bytes.fromhex(GA["ble_metadata"])))
    assert len(slots) == len(GA["intervals"]) == 144
    for slot, vec in zip(slots, GA["intervals"], strict=True):
        assert slot.interval == vec["interval_number"]
        assert slot.rpi.hex() == vec["rpi"]
        assert slot.aem is not None and slot.aem.hex() == vec["aem"]


def test_gaen_aem_decrypts_to_metadata() -> None:
    tek = bytes.fromhex(GA["tek"])
    vec = GA["intervals"][17]
    plain = gaen.aem_crypt(gaen.aemk(tek), bytes.fromhex(vec["rpi"]), bytes.fromhex(vec["aem"]))
    assert plain.hex() == GA["ble_metadata"]
    meta = gaen.Metadata.decode(plain)
    assert (meta.major, meta.minor, meta.tx_power) == (1, 0, 8)


def _derive(*args: str) -> Any:
    result = CliRunner().invoke(cli, ["ids", "derive", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_cli_bluezone_three_days_bit_for_bit() -> None:
    day0 = BZ["days"][0]
    rows = _derive("--protocol", "bluezone", "--key", day0["daily_key"].lower(),
                   "--start", str(day0["day_start_unix_s"]), "--count", "288")
    assert [r["id"] for r in rows] == [i for d in BZ["days"] for i in d["ids_max96"]]
    assert rows[0] == {"index": 0, "start": "2025-11-22T00:00:00Z",
                       "end": "2025-11-22T00:15:00Z", "id": day0["ids_max96"][0]}
    assert rows[96]["start"] == "2025-11-23T00:00:00Z"


def test_cli_bluezone_max144_slot_times() -> None:
    day0 = BZ["days"][0]
    rows = _derive("--protocol", "bluezone", "--key", day0["daily_key"],
                   "--start", str(day0["day_start_unix_s"]), "--max", "144")
    assert len(rows) == 144
    assert [r["id"] for r in rows[:4]] == BZ["max144_day0_first4"]
    assert rows[1]["start"] == "2025-11-22T00:10:00Z"


def test_cli_gaen_all_144_with_aem() -> None:
    rows = _derive("--protocol", "gaen", "--key", GA["tek"].upper(),
                   "--start", str(GA["rolling_start_interval_number"]),
                   "--metadata", GA["ble_metadata"])
    assert [(r["id"], r["aem"]) for r in rows] == [(v["rpi"], v["aem"]) for v in GA["intervals"]]
    assert rows[0]["start"] == "2020-04-02T00:00:00Z"
    assert rows[0]["end"] == "2020-04-02T00:10:00Z"


def test_cli_gaen_without_metadata_has_no_aem() -> None:
    rows = _derive("--protocol", "gaen", "--key", GA["tek"],
                   "--start", str(GA["rolling_start_interval_number"]), "--count", "2")
    assert set(rows[0]) == {"index", "start", "end", "id"}


@pytest.mark.parametrize(("args", "hint"), [
    (["--protocol", "bluezone", "--key", "00" * 31, "--start", "0"], "--key"),
    (["--protocol", "bluezone", "--key", "zz" * 32, "--start", "0"], "--key"),
    (["--protocol", "bluezone", "--key", "00" * 32, "--start", "5"], "--start"),
    (["--protocol", "bluezone", "--key", "00" * 32, "--start", "0", "--max", "7"], "--max"),
    (["--protocol", "gaen", "--key", "00" * 16, "--start", "0", "--metadata", "00"],
     "--metadata"),
    (["--protocol", "bluezone", "--key", "00" * 32, "--start", "0", "--metadata", "40080000"],
     "--metadata"),
])
def test_cli_bad_arguments_are_usage_errors(args: list[str], hint: str) -> None:
    result = CliRunner().invoke(cli, ["ids", "derive", *args])
    assert result.exit_code == 2
    assert hint in result.output


def test_cli_default_output_is_a_table() -> None:
    result = CliRunner().invoke(cli, ["ids", "derive", "--protocol", "gaen", "--key", GA["tek"],
                                      "--start", str(GA["rolling_start_interval_number"]),
                                      "--count", "1"])
    assert result.exit_code == 0
    header, row = result.output.strip().splitlines()
    assert header.split() == ["INDEX", "START", "END", "ID"]
    assert GA["intervals"][0]["rpi"] in row
