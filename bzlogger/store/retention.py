"""Retention: deleting the rows of expired UTC days and destroying those days' keys
(crypto-shredding), so that even an earlier copy of the database cannot be read for
them once the keyring is rewritten.

A day D is kept while ``day(now) - D <= retention_days``: everything of days before
``cutoff = day(now) - retention_days`` goes.
"""

from __future__ import annotations

from pathlib import Path

import aiosqlite

from bzlogger.store import crypto
from bzlogger.store.crypto import Keyring, MasterKeys
from bzlogger.store.sql import scalar


async def delete_expired_rows(conn: aiosqlite.Connection, cutoff: int) -> int:
    """Delete the rows of every table whose UTC day is before ``cutoff``; returns the
    encounters, own keys and exposures deleted. Call inside a write transaction."""
    deleted = 0
    # first_hour is indexed and falls on the same UTC day as the day column.
    await conn.execute("DELETE FROM segment_rows WHERE segment IN "
                       "(SELECT id FROM segments WHERE first_hour < ?)", (cutoff * 24,))
    await conn.execute("DELETE FROM segment_index WHERE segment IN "
                       "(SELECT id FROM segments WHERE first_hour < ?)", (cutoff * 24,))
    deleted += int(await scalar(conn, "SELECT coalesce(sum(count), 0) FROM segments "
                                "WHERE first_hour < ?", (cutoff * 24,)))
    for table, column, bound in (("encounters", "first_hour", cutoff * 24),
                                 ("segments", "first_hour", cutoff * 24),
                                 ("own_keys", "day", cutoff),
                                 ("exposures", "day", cutoff)):
        cursor = await conn.execute(  # table and column names are constants
            f"DELETE FROM {table} WHERE {column} < ?", (bound,))  # noqa: S608
        if table != "segments":
            deleted += max(cursor.rowcount, 0)
    return deleted


def destroy_expired_keys(path: Path, master: MasterKeys, store_id: bytes, cutoff: int
                         ) -> tuple[Keyring, list[int]]:
    """Rewrite the keyring at ``path`` without the days before ``cutoff``; returns the
    current keyring and the days destroyed. Call inside a write transaction (its lock
    keeps another process from adding a day meanwhile)."""
    keyring = crypto.read_keyring(path, master, store_id)
    dropped = keyring.drop_before(cutoff)
    if dropped:
        crypto.write_keyring(path, keyring, master, store_id)
    return keyring, dropped
