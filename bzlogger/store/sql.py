"""Small SQLite helpers shared by the store's modules: one value, the ``meta`` table,
``WHERE`` clauses."""

from __future__ import annotations

from typing import Any

import aiosqlite

from bzlogger.errors import StoreError

#: Bound parameters per ``IN (...)`` query, well under SQLite's limit.
IN_CHUNK = 500


async def scalar(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()) -> Any:
    """The first column of the first row of ``sql``, None when it returns no row."""
    rows = list(await conn.execute_fetchall(sql, params))
    return rows[0][0] if rows else None


async def meta(conn: aiosqlite.Connection, name: str) -> bytes:
    """A value of the ``meta`` table that every store has; its absence is damage."""
    value = await scalar(conn, "SELECT value FROM meta WHERE name = ?", (name,))
    if not isinstance(value, bytes):
        raise StoreError(f"the store's metadata lacks {name!r}; the store is damaged")
    return value


async def meta_int(conn: aiosqlite.Connection, name: str) -> int:
    """An integer of the ``meta`` table, 0 when absent."""
    value = await scalar(conn, "SELECT value FROM meta WHERE name = ?", (name,))
    return int(value or 0)


async def set_meta(conn: aiosqlite.Connection, name: str, value: bytes | int) -> None:
    """Insert or replace a value of the ``meta`` table."""
    await conn.execute("INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) "
                       "DO UPDATE SET value = excluded.value", (name, value))


def where(conditions: list[str]) -> str:
    """``WHERE a AND b`` for ``conditions``, nothing when there are none."""
    return f"WHERE {' AND '.join(conditions)}" if conditions else ""
