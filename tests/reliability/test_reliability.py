"""Reliability and hostile input: short versions of the campaigns of
``tools/reliability.py`` run on every change; the full loops are marked slow
(``pytest -m slow tests/reliability`` or ``make reliability`` for the summary table)."""

from __future__ import annotations

import random
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bzlogger.clock import ManualClock
from bzlogger.config import StoreSettings
from bzlogger.daemon.app import Daemon
from bzlogger.daemon.store_writer import PENDING_LIMIT
from bzlogger.errors import OperationalError
from bzlogger.model import Protocol
from bzlogger.store import Store
from bzlogger.store.keys import create_key_file
from tests.reliability import hostile, resources, soak, stack
from tests.reliability.common import CampaignResult, make_kiosk
from tests.store.conftest import DAY0, make_encounter

needs_dbus = pytest.mark.skipif(shutil.which("dbus-daemon") is None,
                                reason="dbus-daemon is not installed")


def assert_ok(*results: CampaignResult) -> None:
    for result in results:
        assert result.ok, f"{result.name}: {result.failures} ({result.notes})"
        assert result.injected or result.inputs, f"{result.name}: nothing was tried"


# -- crash consistency and stack faults (the daemon as a process) -----------------------


@needs_dbus
async def test_kill_9_keeps_the_store_sound_and_loses_at_most_the_flush_window(
        tmp_path: Path) -> None:
    result = await stack.crash_campaign(tmp_path, kills=2, phones=20, log=lambda _: None)
    assert_ok(result)
    assert result.survived == 2


@needs_dbus
async def test_scanning_and_advertising_return_after_bluetoothd_and_dbus_restarts(
        tmp_path: Path) -> None:
    results = await stack.stack_campaign(
        tmp_path, repeats=1, kinds=["bluetoothd restart", "dbus-daemon restart"],
        log=lambda _: None)
    assert [r.name for r in results] == ["stack: bluetoothd restart",
                                         "stack: dbus-daemon restart"]
    assert_ok(*results)


@needs_dbus
@pytest.mark.parametrize("damage", ["corrupt store (random bytes)", "store with another key"])
async def test_a_damaged_store_is_refused_and_left_as_it_was(tmp_path: Path,
                                                              damage: str) -> None:
    result = await resources.refused_store(tmp_path, damage, resources.REFUSALS[damage])
    assert_ok(result)


async def test_store_writes_again_after_a_commit_failed_on_a_full_disk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    settings = StoreSettings(path=tmp_path / "data" / "bz.db", key_file=tmp_path / "key")
    create_key_file(settings.key_file)
    rng = random.Random(4)
    first = [make_encounter(rng, DAY0 + 3600 + i, Protocol.GAEN) for i in range(5)]
    second = [make_encounter(rng, DAY0 + 7200 + i, Protocol.GAEN) for i in range(5)]
    async with await Store.open(settings, create=True) as store:
        conn = store._conn
        execute = conn.execute
        full = {"left": 1}

        # SQLite answers SQLITE_FULL to a COMMIT that cannot write the WAL and may keep
        # the transaction open (the application is to ROLLBACK): what the disk-full
        # campaign hit before the store rolled back failed writes.
        def failing_execute(sql: str, *args: Any) -> Any:
            if sql == "COMMIT" and full["left"]:
                full["left"] -= 1
                raise sqlite3.OperationalError("database or disk is full")
            return execute(sql, *args)

        monkeypatch.setattr(conn, "execute", failing_execute)
        with pytest.raises((OperationalError, sqlite3.Error)):
            await store.add_encounters(first)
        await store.add_encounters(second)  # the space is back
        stored = {e.identifier for e in await store.encounters()}
    assert {e.identifier for e in second} <= stored


async def test_unwritten_encounters_stay_bounded_keeping_the_newest(tmp_path: Path) -> None:
    # A flood of identifiers while the store cannot be written: the daemon keeps at most
    # PENDING_LIMIT encounters in memory, the newest ones, and counts what it dropped.
    kiosk = await make_kiosk(tmp_path)
    daemon = Daemon(kiosk.settings, ManualClock(DAY0))
    rng = random.Random(8)
    batches = [[make_encounter(rng, DAY0 + 60 * minute + i, Protocol.BLUEZONE)
                for i in range(10_000)] for minute in range(PENDING_LIMIT // 10_000 + 3)]
    for batch in batches:
        daemon.writer.take(batch)
    counts = daemon.snapshot()["encounters"]
    assert counts["pending"] == PENDING_LIMIT
    assert counts["dropped_unwritten"] == 30_000
    kept = {e.identifier for e in daemon.writer.pending.values()}
    assert {e.identifier for e in batches[-1]} <= kept
    assert not {e.identifier for e in batches[0]} & kept


# -- hostile input (in process) ------------------------------------------------------


def test_mutated_and_random_advertisements_never_crash_the_scan_path() -> None:
    assert_ok(hostile.run_in_loop(lambda: hostile.advert_fuzz(5000)))


def test_hypothesis_advertisements_never_crash_the_scan_path() -> None:
    assert_ok(hostile.run_in_loop(lambda: hostile.hypothesis_fuzz(150)))


def test_hostile_lists_fail_fast_with_a_list_error() -> None:
    result = hostile.list_fuzz(400)
    assert_ok(result)
    assert "crafted cases all refused: True" in result.notes[0]


async def test_match_refuses_hostile_lists_and_leaves_the_store_unchanged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    result = await hostile.match_refuses(tmp_path)
    assert_ok(result)
    assert result.inputs >= 20


def test_an_address_flood_keeps_the_aggregation_at_its_bound() -> None:
    assert_ok(hostile.run_in_loop(lambda: hostile.address_flood(2)))


# -- the long loops ------------------------------------------------------------------


@pytest.mark.slow
@needs_dbus
async def test_kill_9_one_hundred_times(tmp_path: Path) -> None:
    assert_ok(await stack.crash_campaign(tmp_path, kills=100))


@pytest.mark.slow
@needs_dbus
async def test_every_stack_fault_twenty_times(tmp_path: Path) -> None:
    assert_ok(*await stack.stack_campaign(tmp_path, repeats=20))


@pytest.mark.slow
@needs_dbus
async def test_resource_faults(tmp_path: Path) -> None:
    assert_ok(*await resources.resource_campaign(tmp_path))


@pytest.mark.slow
def test_long_fuzz_and_flood() -> None:
    assert_ok(hostile.run_in_loop(lambda: hostile.advert_fuzz(200_000)),
              hostile.run_in_loop(lambda: hostile.hypothesis_fuzz(3000)),
              hostile.list_fuzz(20_000),
              hostile.run_in_loop(lambda: hostile.address_flood(20)))


@pytest.mark.slow
@needs_dbus
async def test_accelerated_week(tmp_path: Path) -> None:
    assert_ok(await soak.soak_campaign(tmp_path, days=7, speed=1000.0))
