"""The store's figures for ``bzlogger status`` and metrics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from bzlogger.store.crypto import DAY_SECONDS, day_number
from bzlogger.store.sql import scalar


@dataclass(frozen=True, slots=True)
class StoreStats:
    """A summary of the store for ``bzlogger status`` and metrics."""

    path: Path
    size_bytes: int
    wal_bytes: int
    schema_version: int
    encounters: int
    encounters_today: int
    exposures: int
    own_key_days: int
    key_days: int
    oldest_day: float | None
    newest_day: float | None
    retention_days: int


async def collect_stats(conn: aiosqlite.Connection, path: Path, keyring_file: Path, *,
                        key_days: int, retention_days: int, now: float) -> StoreStats:
    """Sizes of the store's files and counts read through ``conn``."""
    today = day_number(now)
    wal = _size(path.with_name(path.name + "-wal"))
    size = _size(path) + wal + _size(keyring_file)
    bounds = await conn.execute_fetchall(
        "SELECT min(lo), max(hi) FROM (SELECT min(day) AS lo, max(day) AS hi FROM encounters "
        "UNION ALL SELECT min(day), max(day) FROM segments)")
    oldest, newest = next(iter(bounds))
    count = ("SELECT (SELECT count(*) FROM encounters {where}) + "
             "(SELECT coalesce(sum(count), 0) FROM segments {where})")
    return StoreStats(
        path=path, size_bytes=size, wal_bytes=wal,
        schema_version=await scalar(conn, "PRAGMA user_version"),
        encounters=await scalar(conn, count.format(where="")),
        encounters_today=await scalar(conn, count.format(where="WHERE day = ?"),
                                      (today, today)),
        exposures=await scalar(conn, "SELECT count(*) FROM exposures"),
        own_key_days=await scalar(conn, "SELECT count(*) FROM own_keys"),
        key_days=key_days,
        oldest_day=None if oldest is None else float(oldest * DAY_SECONDS),
        newest_day=None if newest is None else float(newest * DAY_SECONDS),
        retention_days=retention_days,
    )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
