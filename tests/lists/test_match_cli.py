"""``bzlogger match``, ``keys export`` and ``lists fetch`` end to end, against a store
filled with sightings built with bzlogger.ids (the phones' own algorithms).

The scenario: visitors A (Bluezone) and B (GAEN) later test positive and stayed near the
kiosk; C (Bluezone) and D (GAEN) were there but stay healthy; E tests positive but the
only sighting of one of its RPIs is 3 hours away from that RPI's interval (a replay);
plus 300 random identifiers of passers-by.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from bzlogger.ids import bluezone, gaen
from bzlogger.ids.schedule import DayKeys
from bzlogger.lists import bluezone_list, gaen_export
from bzlogger.lists.gaen_export import ExportKey
from bzlogger.model import Encounter, Protocol
from bzlogger.timefmt import iso
from tests.lists.conftest import Authority, Kiosk, fill_store, rezip, stored_exposures

DAY = 1_796_083_200  # 2026-12-01T00:00:00Z
INTERVAL = DAY // 600
TX_POWER = -20


@dataclass
class World:
    """The store's content and the answer sheet."""

    encounters: list[Encounter] = field(default_factory=list)
    expected: list[Encounter] = field(default_factory=list)
    bluezone_positive: list[bytes] = field(default_factory=list)
    gaen_positive: list[bytes] = field(default_factory=list)


def bluezone_visit(key: bytes, first: float, last: float, rssi: int) -> list[Encounter]:
    """One encounter per Bluezone slot the visit spans (the ID changes every 15 minutes)."""
    out = []
    t = first
    while t < last:
        slot_end = bluezone.slot_start(t) + 900
        end = min(last, slot_end - 1)
        identifier = bluezone.id_at_slot(key, bluezone.slot_of(t))
        out.append(Encounter(Protocol.BLUEZONE, identifier, t, end, samples=int(end - t) // 5,
                             rssi_max=rssi + 4, rssi_median=rssi, rssi_mean=rssi,
                             close_s=(end - t) if rssi >= -65 else 0.0))
        t = slot_end
    return out


def gaen_visit(tek: bytes, first: float, last: float, rssi: int, shift: float = 0.0
               ) -> list[Encounter]:
    """One encounter per 10-minute interval of the visit; ``shift`` moves the sighting
    times away from the intervals (a replay or a wrong clock)."""
    rpi_key, aem_key = gaen.rpik(tek), gaen.aemk(tek)
    metadata = gaen.Metadata(tx_power=TX_POWER).encode()
    out = []
    t = first
    while t < last:
        interval = gaen.interval_number(t)
        end = min(last, gaen.interval_start(interval + 1) - 1)
        rpi = gaen.rpi(rpi_key, interval)
        out.append(Encounter(Protocol.GAEN, rpi, t + shift, end + shift,
                             samples=int(end - t) // 5, rssi_max=rssi + 3, rssi_median=rssi,
                             rssi_mean=rssi, aem=gaen.aem_crypt(aem_key, rpi, metadata)))
        t = gaen.interval_start(interval + 1)
    return out


def build_world() -> World:
    rng = random.Random(42)
    world = World()
    a, c = rng.randbytes(32), rng.randbytes(32)
    b, d, e = rng.randbytes(16), rng.randbytes(16), rng.randbytes(16)
    visit_a = bluezone_visit(a, DAY + 9 * 3600 + 300, DAY + 9 * 3600 + 1500, -55)
    visit_b = gaen_visit(b, DAY + 86400 + 10 * 3600 + 120, DAY + 86400 + 10 * 3600 + 1500, -70)
    world.expected = visit_a + visit_b
    world.encounters = [
        *visit_a, *visit_b,
        *bluezone_visit(c, DAY + 9 * 3600 + 600, DAY + 9 * 3600 + 900, -60),
        *gaen_visit(d, DAY + 3600 * 11, DAY + 3600 * 11 + 400, -60),
        *gaen_visit(e, DAY + 3600 * 12, DAY + 3600 * 12 + 100, -60, shift=3 * 3600),
    ]
    for _ in range(300):
        protocol = rng.choice([Protocol.BLUEZONE, Protocol.GAEN])
        first = DAY + rng.uniform(0, 2 * 86400)
        world.encounters.append(Encounter(
            protocol, rng.randbytes(12 if protocol is Protocol.BLUEZONE else 16), first,
            first + 60, 12, -70, -75.0, -75.0))
    world.bluezone_positive = [a]
    world.gaen_positive = [b, e]
    return world


def published(kiosk: Kiosk, authority: Authority, world: World) -> tuple[Path, Path]:
    rng = random.Random(5)
    entries = [bluezone_list.BluezoneEntry(k, DAY, DAY + 2 * 86400 - 1)
               for k in [*world.bluezone_positive, rng.randbytes(32)]]
    f0 = kiosk.tmp / "f0.json"
    f0.write_text(bluezone_list.write_list(entries))
    b, e = world.gaen_positive  # B visited on the second day, E on the first
    keys = [ExportKey(b, INTERVAL + 144, 144, 6, 1), ExportKey(e, INTERVAL, 144, 6, 1)]
    keys += [ExportKey(rng.randbytes(16), INTERVAL, 144) for _ in range(20)]
    export = kiosk.tmp / "export.zip"
    export.write_bytes(authority.export(keys, start=DAY, end=DAY + 2 * 86400))
    return f0, export


def as_rows(encounters: list[Encounter]) -> list[tuple[str, str, str, str]]:
    return sorted((str(e.protocol), e.identifier.hex(), iso(e.first_seen), iso(e.last_seen))
                  for e in encounters)


def test_match_finds_exactly_the_positive_visitors(kiosk: Kiosk, authority: Authority
                                                   ) -> None:
    world = build_world()
    asyncio.run(fill_store(kiosk.settings, world.encounters))
    f0, export = published(kiosk, authority, world)
    result = kiosk.run("match", str(export), str(f0), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["lists"] == [
        {"file": str(export), "protocol": "gaen", "keys": 22, "verified": True},
        {"file": str(f0), "protocol": "bluezone", "keys": 2, "verified": False}]
    got = [(x["protocol"], x["id"], x["first_seen"], x["last_seen"])
           for x in report["exposures"]]
    assert sorted(got) == as_rows(world.expected)
    for row in report["exposures"]:
        assert set(row) == {"protocol", "id", "list_key", "first_seen", "last_seen",
                            "duration_s", "samples", "rssi_max", "rssi_median",
                            "attenuation_db", "risk"}
        if row["protocol"] == "gaen":
            assert row["list_key"] == world.gaen_positive[0].hex()
            assert row["attenuation_db"] == TX_POWER - -70
        else:
            assert row["list_key"] == world.bluezone_positive[0].hex()
            assert row["attenuation_db"] is None
        assert 0 < row["risk"] < 1
    # Stored and alerted once, without identifiers in the alert.
    assert len(asyncio.run(stored_exposures(kiosk.settings))) == len(world.expected)
    alerts = [json.loads(line) for line in kiosk.alerts.read_text().splitlines()]
    assert [a["count"] for a in alerts] == [len(world.expected)]
    assert "id" not in alerts[0]["exposures"][0]
    # A second run finds the same, stores and alerts nothing new.
    again = kiosk.run("match", str(export), str(f0), "--json")
    assert again.exit_code == 0, again.output
    assert len(json.loads(again.stdout)["exposures"]) == len(world.expected)
    assert len(kiosk.alerts.read_text().splitlines()) == 1


def test_table_and_csv_output(kiosk: Kiosk, authority: Authority) -> None:
    world = build_world()
    asyncio.run(fill_store(kiosk.settings, world.encounters))
    f0, export = published(kiosk, authority, world)
    table = kiosk.run("match", str(export), str(f0))
    assert table.exit_code == 0, table.output
    assert "ATTENUATION_DB" in table.stdout and f"{len(world.expected)} exposure(s)" in \
        table.stdout
    csv = kiosk.run("match", str(f0), "--csv")
    lines = csv.stdout.splitlines()
    assert lines[0].startswith("protocol,id,list_key,first_seen")
    assert len(lines) == 1 + sum(e.protocol is Protocol.BLUEZONE for e in world.expected)


def test_altered_export_is_refused_and_the_store_untouched(kiosk: Kiosk,
                                                           authority: Authority) -> None:
    world = build_world()
    asyncio.run(fill_store(kiosk.settings, world.encounters))
    _, export = published(kiosk, authority, world)
    import zipfile

    archive = zipfile.ZipFile(export)
    signed = bytearray(archive.read("export.bin"))
    signed[-1] ^= 0x01  # the last key's report type: still a valid protobuf
    altered = kiosk.tmp / "altered.bin"  # the name does not decide the format
    altered.write_bytes(rezip(bytes(signed), archive.read("export.sig")))
    before = kiosk.settings.path.read_bytes()
    result = kiosk.run("match", str(altered))
    assert result.exit_code == 1
    assert "signature does not verify" in result.stderr and "Traceback" not in result.output
    assert kiosk.settings.path.read_bytes() == before
    assert asyncio.run(stored_exposures(kiosk.settings)) == []
    assert not kiosk.alerts.exists()


def test_hostile_files_fail_fast_and_change_nothing(kiosk: Kiosk) -> None:
    asyncio.run(fill_store(kiosk.settings, build_world().encounters))
    before = kiosk.settings.path.read_bytes()
    huge = kiosk.tmp / "huge.json"
    with huge.open("wb") as handle:
        handle.write(b'{"data": [')
        handle.truncate(1 << 30)
    bad = kiosk.tmp / "bad.json"
    bad.write_text(json.dumps({"data": [{"daily_key": "zz" * 32, "time_start": DAY,
                                         "time_end": DAY, "max": 96}]}))
    neither = kiosk.tmp / "neither.zip"
    neither.write_bytes(b"hello")
    for path, message in [(huge, "more than the limit"),
                          (bad, "entry 1: daily_key is not hexadecimal"),
                          (neither, "neither a GAEN export.zip nor a Bluezone JSON list")]:
        result = kiosk.run("match", str(path))
        assert result.exit_code == 1, result.output
        assert message in result.stderr
    assert kiosk.settings.path.read_bytes() == before


def test_no_verify_warns_and_matches_unsigned_export(kiosk: Kiosk) -> None:
    world = build_world()
    asyncio.run(fill_store(kiosk.settings, world.encounters))
    unsigned = kiosk.tmp / "unsigned.zip"
    unsigned.write_bytes(gaen_export.write_export(
        [ExportKey(world.gaen_positive[0], INTERVAL + 144, 144)],
        start_timestamp=DAY, end_timestamp=DAY + 2 * 86400))
    refused = kiosk.run("match", str(unsigned))
    assert refused.exit_code == 1 and "no export.sig" in refused.stderr
    result = kiosk.run("match", "--no-verify", str(unsigned), "--json")
    assert result.exit_code == 0, result.output
    assert "WARNING" in result.stderr and "NOT checked" in result.stderr
    report = json.loads(result.stdout)
    assert report["lists"][0]["verified"] is False
    assert len(report["exposures"]) == sum(e.protocol is Protocol.GAEN
                                           for e in world.expected)


def test_revoked_key_removes_its_matches(kiosk: Kiosk, authority: Authority) -> None:
    world = build_world()
    asyncio.run(fill_store(kiosk.settings, world.encounters))
    tek = world.gaen_positive[0]
    revoked = ExportKey(tek, INTERVAL + 144, 144, 0, gaen_export.REVOKED)
    export = kiosk.tmp / "revoking.zip"
    export.write_bytes(authority.export([ExportKey(tek, INTERVAL + 144, 144)],
                                        revised=[revoked], start=DAY, end=DAY + 2 * 86400))
    result = kiosk.run("match", str(export), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["exposures"] == []


def test_verify_key_option_replaces_configured_keys(kiosk: Kiosk, authority: Authority,
                                                    tmp_path: Path) -> None:
    world = build_world()
    asyncio.run(fill_store(kiosk.settings, world.encounters))
    _, export = published(kiosk, authority, world)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = tmp_path / "other.pem"
    other.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    result = kiosk.run("match", "--verify-key", str(other), str(export))
    assert result.exit_code == 1 and "does not verify" in result.stderr
    ok = kiosk.run("match", "--verify-key", str(authority.pem), str(export), "--json")
    assert ok.exit_code == 0, ok.output


def test_keys_export_round_trip(kiosk: Kiosk) -> None:
    """The kiosk's own keys, exported and matched by a store that saw its beacons."""
    own = [DayKeys.generate(DAY), DayKeys.generate(DAY + 86400)]
    heard = [*bluezone_visit(own[1].bluezone_key, DAY + 86400 + 3600, DAY + 86400 + 4000, -50),
             *gaen_visit(own[0].gaen_tek, DAY + 7200, DAY + 7500, -50)]
    asyncio.run(fill_store(kiosk.settings, heard, own))
    out_json, out_zip = kiosk.tmp / "kiosk.json", kiosk.tmp / "kiosk.zip"
    result = kiosk.run("keys", "export", "--format", "bluezone", "--since", iso(DAY),
                       "-o", str(out_json))
    assert result.exit_code == 0, result.output
    entries = bluezone_list.read_list(out_json.read_bytes())
    assert [(e.daily_key, e.time_start, e.time_end, e.max_ids) for e in entries] == [
        (k.bluezone_key, k.day_start, k.day_start + 86399, 96) for k in own]
    result = kiosk.run("keys", "export", "--format", "gaen", "-o", str(out_zip))
    assert result.exit_code == 0, result.output
    assert "does not advertise gaen" in result.stderr  # the default is Bluezone only
    export = gaen_export.read_export(out_zip.read_bytes())
    assert export.signatures == ()
    assert [(k.key_data, k.rolling_start, k.rolling_period) for k in export.keys] == [
        (k.gaen_tek, k.day_start // 600, 144) for k in own]
    stdout = kiosk.run("keys", "export", "--format", "bluezone", "--until", iso(DAY))
    assert len(json.loads(stdout.stdout)["data"]) == 1
    matched = kiosk.run("match", "--no-verify", str(out_zip), str(out_json), "--json")
    assert matched.exit_code == 0, matched.output
    got = sorted((x["protocol"], x["id"]) for x in json.loads(matched.stdout)["exposures"])
    assert got == sorted((str(e.protocol), e.identifier.hex()) for e in heard)


def test_keys_export_without_keys_is_an_error(kiosk: Kiosk) -> None:
    asyncio.run(fill_store(kiosk.settings, []))
    result = kiosk.run("keys", "export", "--format", "bluezone")
    assert result.exit_code == 1 and "no keys of the kiosk" in result.stderr

