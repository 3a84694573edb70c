"""The encrypted store: round trips, upserts, queries, keys, exposures, refusals, retention."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from bzlogger.config import StoreSettings
from bzlogger.errors import StoreError
from bzlogger.ids.schedule import DayKeys
from bzlogger.model import Exposure, Protocol
from bzlogger.store import Store, keyring_path
from bzlogger.store.keys import create_key_file
from bzlogger.store.schema import SCHEMA_VERSION
from tests.store.conftest import DAY0, make_encounter

DAY = 86_400.0


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_encounters_round_trip_and_upsert(store_settings: StoreSettings) -> None:
    rng = random.Random(1)
    encounters = [make_encounter(rng, DAY0 + i * 37.5) for i in range(300)]
    async with await Store.open(store_settings, create=True) as store:
        await store.add_encounters(encounters)
        assert await store.encounters() == encounters
        updated = dataclasses.replace(encounters[5], last_seen=encounters[5].last_seen + 7200,
                                      samples=999)
        await store.add_encounters([updated])
        got = await store.encounters()
        assert len(got) == 300 and got[5] == updated
        assert await store.newest_time() == max(e.last_seen for e in got)
        assert await store.newest_time() == encounters[-1].last_seen


async def test_range_and_protocol_queries(store_settings: StoreSettings) -> None:
    rng = random.Random(2)
    encounters = [make_encounter(rng, DAY0 + i * 600.0, duration=120) for i in range(500)]
    long_one = make_encounter(rng, DAY0 - 5 * 3600, Protocol.GAEN, duration=30 * 3600)
    async with await Store.open(store_settings, create=True) as store:
        await store.add_encounters([*encounters, long_one])
        since, until = DAY0 + DAY, DAY0 + 2 * DAY
        got = await store.encounters(since, until)
        expected = sorted([e for e in [*encounters, long_one]
                           if e.last_seen >= since and e.first_seen <= until],
                          key=lambda e: e.first_seen)
        assert got == expected and long_one in got
        gaen = await store.encounters(protocol=Protocol.GAEN)
        assert gaen and all(e.protocol is Protocol.GAEN for e in gaen)
        chunks = [c async for c in store.iter_encounters(since, until, chunk=10)]
        assert sorted((e for c in chunks for e in c), key=lambda e: e.first_seen) == expected
        wanted = [encounters[3].identifier, encounters[400].identifier, b"\x00" * 12]
        found = await store.find_encounters(encounters[3].protocol, wanted)
        assert encounters[3] in found
        assert all(e.identifier in wanted for e in found)


async def test_own_keys_are_kept_and_never_replaced(store_settings: StoreSettings) -> None:
    keys = [DayKeys.generate(int(DAY0 + d * DAY)) for d in range(3)]
    async with await Store.open(store_settings, create=True) as store:
        for k in keys:
            await store.save_own_keys(k)
        await store.save_own_keys(keys[0])  # same again: fine
        assert await store.own_keys() == keys
        assert await store.own_keys(DAY0 + DAY + 5, DAY0 + 2 * DAY) == keys[1:]
        assert await store.own_keys_for_day(DAY0 + DAY) == keys[1]
        assert await store.own_keys_for_day(DAY0 + 9 * DAY) is None
        with pytest.raises(StoreError, match="different keys"):
            await store.save_own_keys(DayKeys.generate(int(DAY0)))


async def test_exposures_are_deduplicated_across_runs(store_settings: StoreSettings) -> None:
    x = Exposure(Protocol.GAEN, b"\x01" * 16, b"\x02" * 16, DAY0 + 10, DAY0 + 900, 40, -50,
                 -60.5, 62.0, 0.7, close_s=300.0)
    y = dataclasses.replace(x, first_seen=DAY0 + 5000, attenuation_db=None)
    async with await Store.open(store_settings, create=True) as store:
        assert await store.save_exposures([x]) == [x]
    async with await Store.open(store_settings) as store:
        assert await store.save_exposures([x, y]) == [y]
        assert await store.exposures() == [x, y]
        digest = hashlib.sha256(b"list").digest()
        assert not await store.is_list_processed(digest)
        await store.mark_list_processed(digest, "list.json")
        assert await store.is_list_processed(digest)


async def test_missing_store_and_missing_key(store_settings: StoreSettings) -> None:
    with pytest.raises(StoreError, match="bzlogger init"):
        await Store.open(store_settings)
    store_settings.key_file.unlink()
    with pytest.raises(StoreError, match="bzlogger init"):
        await Store.open(store_settings, create=True)
    assert not store_settings.path.exists()


async def test_wrong_key_is_refused_and_store_untouched(store_settings: StoreSettings,
                                                        tmp_path: Path) -> None:
    rng = random.Random(3)
    async with await Store.open(store_settings, create=True) as store:
        await store.add_encounters([make_encounter(rng, DAY0)])
    before = _digest(store_settings.path)
    other = tmp_path / "other.key"
    create_key_file(other)
    wrong = dataclasses.replace(store_settings, key_file=other)
    for create in (False, True):
        with pytest.raises(StoreError, match="does not open"):
            await Store.open(wrong, create=create)
    assert _digest(store_settings.path) == before
    async with await Store.open(store_settings) as store:
        assert len(await store.encounters()) == 1


async def test_group_readable_key_is_refused(store_settings: StoreSettings) -> None:
    os.chmod(store_settings.key_file, 0o640)
    with pytest.raises(StoreError, match="chmod 600"):
        await Store.open(store_settings, create=True)
    assert not store_settings.path.exists()


async def test_newer_schema_is_refused(store_settings: StoreSettings) -> None:
    async with await Store.open(store_settings, create=True):
        pass
    with sqlite3.connect(store_settings.path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = _digest(store_settings.path)
    with pytest.raises(StoreError, match="newer bzlogger"):
        await Store.open(store_settings)
    assert _digest(store_settings.path) == before


async def test_migrations_set_the_version(store_settings: StoreSettings) -> None:
    async with await Store.open(store_settings, create=True):
        pass
    with sqlite3.connect(store_settings.path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"meta", "encounters", "own_keys", "exposures", "processed_lists"} <= tables
    async with await Store.open(store_settings):  # reopening migrates nothing
        pass


@pytest.mark.parametrize("content", [b"garbage" * 1000, b"SQLite format 3\x00" + b"\xff" * 5000])
async def test_corrupt_file_is_refused_and_not_overwritten(store_settings: StoreSettings,
                                                           content: bytes) -> None:
    store_settings.path.parent.mkdir(parents=True)
    store_settings.path.write_bytes(content)
    for create in (False, True):
        with pytest.raises(StoreError, match=r"left as it is|not a bzlogger store"):
            await Store.open(store_settings, create=create, check=True)
    assert store_settings.path.read_bytes() == content


async def test_damaged_pages_are_found_by_check(store_settings: StoreSettings) -> None:
    rng = random.Random(4)
    async with await Store.open(store_settings, create=True) as store:
        await store.add_encounters([make_encounter(rng, DAY0 + i) for i in range(3000)])
    data = bytearray(store_settings.path.read_bytes())
    page = 4096
    data[3 * page:3 * page + 200] = b"\xa5" * 200  # inside the B-trees, header intact
    store_settings.path.write_bytes(bytes(data))
    with pytest.raises(StoreError):
        await Store.open(store_settings, check=True)
    assert store_settings.path.read_bytes() == bytes(data)


async def test_foreign_sqlite_database_is_refused(store_settings: StoreSettings) -> None:
    store_settings.path.parent.mkdir(parents=True)
    with sqlite3.connect(store_settings.path) as db:
        db.execute("CREATE TABLE photos (x)")
    with pytest.raises(StoreError, match="not a bzlogger store"):
        await Store.open(store_settings, create=True)


async def test_missing_keyring_is_refused(store_settings: StoreSettings) -> None:
    async with await Store.open(store_settings, create=True) as store:
        await store.add_encounters([make_encounter(random.Random(5), DAY0)])
    keyring_path(store_settings.path).unlink()
    with pytest.raises(StoreError, match=r"keyring .* is missing"):
        await Store.open(store_settings)


async def test_purge_shreds_old_days_even_in_an_earlier_copy(store_settings: StoreSettings,
                                                             tmp_path: Path) -> None:
    rng = random.Random(6)
    old = [make_encounter(rng, DAY0 + i * 100.0) for i in range(50)]
    recent = [make_encounter(rng, DAY0 + 25 * DAY + i * 100.0) for i in range(50)]
    async with await Store.open(store_settings, create=True) as store:
        await store.add_encounters(old + recent)
        await store.save_own_keys(DayKeys.generate(int(DAY0)))
    # An attacker's copy of the database files (and of the keyring) before the purge.
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in store_settings.path.parent.iterdir():
        shutil.copy2(f, copy / f.name)
    async with await Store.open(store_settings) as store:
        deleted = await store.purge(DAY0 + 25 * DAY + 3600)
        assert deleted == 51
        assert await store.encounters() == recent
        assert await store.own_keys() == []
        stats = await store.stats(DAY0 + 25 * DAY)
        assert stats.oldest_day == DAY0 + 25 * DAY and stats.wal_bytes == 0
    # The earlier copy opens with the earlier keyring (so this test can fail) ...
    copied = dataclasses.replace(store_settings, path=copy / store_settings.path.name)
    async with await Store.open(copied) as store:
        assert len(await store.encounters()) == 100
    # ... but with the current key material, the old days are gone for good.
    shutil.copy2(keyring_path(store_settings.path), keyring_path(copied.path))
    async with await Store.open(copied) as store:
        assert await store.encounters() == recent
        assert await store.own_keys() == []


async def test_a_reader_reads_while_the_writer_writes(store_settings: StoreSettings) -> None:
    rng = random.Random(7)
    async with await Store.open(store_settings, create=True) as writer:
        await writer.add_encounters([make_encounter(rng, DAY0)])
        async with await Store.open(store_settings) as reader:
            for batch in range(20):
                await writer.add_encounters(
                    [make_encounter(rng, DAY0 + batch * 50 + i) for i in range(50)])
                got = await reader.encounters()
                assert len(got) == 1 + 50 * (batch + 1)
            # A new day's key created by the writer is found by the reader.
            await writer.add_encounters([make_encounter(rng, DAY0 + 3 * DAY)])
            assert len(await reader.encounters(since=DAY0 + 3 * DAY)) == 1


async def test_stats(store_settings: StoreSettings) -> None:
    rng = random.Random(8)
    async with await Store.open(store_settings, create=True) as store:
        assert await store.newest_time() is None
        await store.add_encounters([make_encounter(rng, DAY0 + i) for i in range(10)])
        stats = await store.stats(DAY0 + 100)
    assert stats.encounters == stats.encounters_today == 10
    assert stats.schema_version == SCHEMA_VERSION and stats.key_days == 1
    assert stats.size_bytes > 0 and stats.oldest_day == DAY0


async def test_compaction_keeps_every_encounter_readable(store_settings: StoreSettings) -> None:
    rng = random.Random(9)
    encounters = [make_encounter(rng, DAY0 + i * 97.0, duration=rng.uniform(1, 900))
                  for i in range(2000)]  # about 2.2 days
    now = DAY0 + 2 * DAY + 3 * 3600
    async with await Store.open(store_settings, create=True) as store:
        await store.add_encounters(encounters)
        before = await store.encounters()
        moved = await store.compact(now)
        assert 0 < moved < len(encounters)  # the last hours stay as rows
        assert await store.compact(now) == 0
        assert await store.encounters() == before
        since, until = DAY0 + DAY + 1234, DAY0 + DAY + 7 * 3600
        assert await store.encounters(since, until) == [
            e for e in before if e.last_seen >= since and e.first_seen <= until]
        assert await store.encounters(protocol=Protocol.GAEN) == [
            e for e in before if e.protocol is Protocol.GAEN]
        probe = [encounters[10], encounters[1500], encounters[-1]]
        for e in probe:
            assert await store.find_encounters(e.protocol, [e.identifier]) == [e]
        many = [e for e in encounters if e.protocol is Protocol.GAEN]  # > 1 query chunk
        assert await store.find_encounters(Protocol.GAEN, [e.identifier for e in many]) == many
        assert await store.newest_time() == max(e.last_seen for e in encounters)
        stats = await store.stats(DAY0)
        assert stats.encounters == 2000 and stats.encounters_today == sum(
            1 for e in encounters if e.first_seen < DAY0 + DAY)
        # A late update of a compacted encounter replaces it (no duplicate).
        late = dataclasses.replace(encounters[10], samples=12345, flags=frozenset({"replay"}))
        await store.add_encounters([late])
        after = await store.encounters()
        assert len(after) == 2000 and late in after and encounters[10] not in after
        assert await store.find_encounters(late.protocol, [late.identifier]) == [late]
        assert await store.find_encounters(encounters[11].protocol,
                                           [encounters[11].identifier]) == [encounters[11]]
    with sqlite3.connect(store_settings.path) as db:
        assert db.execute("SELECT count(*) FROM segments").fetchone()[0] > 0
        assert db.execute("SELECT count(*) FROM segment_rows").fetchone()[0] == moved - 1


async def test_purge_shreds_compacted_days(store_settings: StoreSettings, tmp_path: Path
                                           ) -> None:
    rng = random.Random(10)
    old = [make_encounter(rng, DAY0 + i * 100.0) for i in range(100)]
    recent = [make_encounter(rng, DAY0 + 25 * DAY + i * 100.0) for i in range(100)]
    async with await Store.open(store_settings, create=True) as store:
        await store.add_encounters(old + recent)
        await store.compact(DAY0 + 26 * DAY)
    copy = tmp_path / "copy"
    shutil.copytree(store_settings.path.parent, copy)
    async with await Store.open(store_settings) as store:
        assert await store.purge(DAY0 + 26 * DAY) == 100
        assert await store.encounters() == recent
    with sqlite3.connect(store_settings.path) as db:
        for table in ("segment_rows", "segment_index"):
            orphans = db.execute(f"SELECT count(*) FROM {table} WHERE segment NOT IN "
                                 "(SELECT id FROM segments)").fetchone()[0]
            assert orphans == 0
    shutil.copy2(keyring_path(store_settings.path), keyring_path(copy / store_settings.path.name))
    copied = dataclasses.replace(store_settings, path=copy / store_settings.path.name)
    async with await Store.open(copied) as store:
        assert await store.encounters() == recent


async def test_migration_from_version_1_keeps_data(store_settings: StoreSettings) -> None:
    rng = random.Random(12)
    encounters = [make_encounter(rng, DAY0 + i) for i in range(20)]
    async with await Store.open(store_settings, create=True) as store:
        await store.add_encounters(encounters)
    with sqlite3.connect(store_settings.path) as db:  # back to the version 1 schema
        for table in ("segments", "segment_rows", "segment_index"):
            db.execute(f"DROP TABLE {table}")
        db.execute("PRAGMA user_version = 1")
    async with await Store.open(store_settings) as store:
        assert await store.encounters() == encounters
        assert (await store.stats(DAY0)).schema_version == SCHEMA_VERSION == 2


async def test_a_blob_moved_to_another_row_does_not_open(store_settings: StoreSettings) -> None:
    rng = random.Random(13)
    encounters = [make_encounter(rng, DAY0 + i, Protocol.GAEN) for i in range(2)]
    async with await Store.open(store_settings, create=True) as store:
        await store.add_encounters(encounters)
    with sqlite3.connect(store_settings.path) as db:
        (a, blob_a), (b, blob_b) = db.execute("SELECT id, blob FROM encounters").fetchall()
        db.execute("UPDATE encounters SET blob = ? WHERE id = ?", (blob_b, a))
        db.execute("UPDATE encounters SET blob = ? WHERE id = ?", (blob_a, b))
    async with await Store.open(store_settings) as store:
        with pytest.raises(StoreError, match="does not verify"):
            await store.encounters()


async def test_unusable_directory_gives_a_clear_error(store_settings: StoreSettings,
                                                      tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings = dataclasses.replace(store_settings, path=blocker / "sub" / "bzlogger.db")
    with pytest.raises(StoreError, match=r"cannot (read|create) store .*not-a-directory"):
        await Store.open(settings, create=True)
    assert blocker.read_text() == ""
