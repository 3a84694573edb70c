"""A writer cancelled mid-transaction, or a COMMIT that fails, must not wedge the store."""

from __future__ import annotations

import asyncio
import random
import sqlite3

import pytest

from bzlogger.config import StoreSettings
from bzlogger.errors import StoreError
from bzlogger.store import Store

from .conftest import DAY0, make_encounter


async def test_transaction_left_open_by_a_cancelled_writer_is_healed(
    store_settings: StoreSettings,
) -> None:
    rng = random.Random(1)
    async with await Store.open(store_settings, create=True) as store:
        # What a writer cancelled while aiosqlite's thread ran its BEGIN leaves behind.
        await store._conn.execute("BEGIN IMMEDIATE")
        await store.add_encounters([make_encounter(rng, DAY0 + 10)])
        assert len(await store.encounters()) == 1


async def test_cancelling_writers_at_random_points_never_wedges(
    store_settings: StoreSettings,
) -> None:
    rng = random.Random(2)
    async with await Store.open(store_settings, create=True) as store:
        writers: list[asyncio.Task[None]] = []
        for i in range(30):
            writers.append(asyncio.create_task(
                store.add_encounters([make_encounter(rng, DAY0 + i) for _ in range(50)])))
            await asyncio.sleep(rng.random() * 0.01)
            writers[-1].cancel()
            await asyncio.gather(writers[-1], return_exceptions=True)
        await store.add_encounters([make_encounter(rng, DAY0 + 999)])
        assert any(e.first_seen == DAY0 + 999 for e in await store.encounters())


async def test_failed_commit_is_rolled_back_and_reported(
    store_settings: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(3)
    async with await Store.open(store_settings, create=True) as store:
        real_execute = store._conn.execute
        failures = {"left": 1}

        async def failing_commit(sql: str, *args: object) -> object:
            if sql == "COMMIT" and failures["left"]:
                failures["left"] -= 1
                raise sqlite3.OperationalError("database or disk is full")
            return await real_execute(sql, *args)

        monkeypatch.setattr(store._conn, "execute", failing_commit)
        with pytest.raises(StoreError, match="write failed"):
            await store.add_encounters([make_encounter(rng, DAY0 + 1)])
        await store.add_encounters([make_encounter(rng, DAY0 + 2)])
        assert [e.first_seen for e in await store.encounters()] == [DAY0 + 2]
