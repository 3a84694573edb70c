"""The store's write transactions: one writer at a time, holding SQLite's write lock
from the start, all or nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from bzlogger.errors import StoreError
from bzlogger.logsetup import get_logger

log = get_logger("store")


@asynccontextmanager
async def write_transaction(conn: aiosqlite.Connection, lock: asyncio.Lock, path: Path
                            ) -> AsyncIterator[aiosqlite.Connection]:
    """One write transaction on ``conn`` (the store at ``path``), under ``lock``. A
    failure rolls it back and raises StoreError (nothing of the batch is kept); a writer
    cancelled mid-way leaves nothing behind that blocks the next one."""
    async with lock:
        # Statements of a cancelled writer may still be queued in aiosqlite's thread
        # (a cancelled await does not unqueue them): wait for them, then undo any
        # transaction they left open.
        await conn.execute("SELECT 1")
        if conn.in_transaction:
            await _rollback(conn)
        try:
            await conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise StoreError(f"store {path} is busy or read-only: {error}") from None
        try:
            yield conn
            await conn.execute("COMMIT")
        except sqlite3.Error as error:
            await _rollback(conn)
            raise StoreError(f"store {path}: write failed ({error}); "
                             "nothing of this batch was kept") from None
        except BaseException:
            await _rollback(conn)
            raise


async def _rollback(conn: aiosqlite.Connection) -> None:
    try:
        await conn.execute("ROLLBACK")
    except sqlite3.Error as error:  # no transaction left (SQLite may have ended it)
        log.debug("rollback", error=str(error))
