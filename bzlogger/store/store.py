"""The encrypted encounter store (SQLite through aiosqlite): the :class:`Store` façade.

Files, all in the directory of ``[store] path``:

- ``bzlogger.db`` (+ ``-wal``, ``-shm``): WAL mode, ``synchronous=FULL`` (every commit
  is on disk, so a power cut loses at most the batch not yet committed),
  ``secure_delete`` on (deleted rows are overwritten with zeros);
- ``bzlogger.db.keyring``: the per-day secrets, wrapped by the master key. A purge
  rewrites it without the expired days: that is what makes old data unreadable even
  from an earlier copy of the database.

Writers serialise on SQLite's write lock (``BEGIN IMMEDIATE``), which also guards the
creation of day keys; readers in other processes read concurrently (WAL).

The internals live beside it: ``opening.py`` (refusal checks, migrations),
``encounter_rows.py`` (encounter rows, segments, compaction, range queries),
``retention.py`` (purge and crypto-shredding), ``transactions.py`` (write
transactions), ``stats.py``, ``sql.py``.
"""

from __future__ import annotations

import asyncio
import operator
import sqlite3
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

import aiosqlite

from bzlogger.config import StoreSettings
from bzlogger.errors import StoreError
from bzlogger.ids.schedule import DayKeys
from bzlogger.logsetup import get_logger
from bzlogger.model import Encounter, Exposure, Protocol
from bzlogger.store import crypto, encounter_rows, opening, retention
from bzlogger.store.crypto import (
    PROTOCOL_CODE,
    DayKey,
    Keyring,
    MasterKeys,
    day_number,
    hour_number,
)
from bzlogger.store.keys import load_master_key
from bzlogger.store.opening import keyring_path
from bzlogger.store.sql import IN_CHUNK, meta_int, set_meta
from bzlogger.store.stats import StoreStats, collect_stats
from bzlogger.store.transactions import write_transaction

log = get_logger("store")

READ_CHUNK = 4096
BULK_CHUNK = 50_000
FETCH_ROWS = 256  # rows per fetch from SQLite: small encounter rows or whole segments
_FIRST_SEEN = operator.attrgetter("first_seen")


class Store:
    """The encrypted store. Open with ``await Store.open(settings)`` or
    ``async with await Store.open(settings) as store``."""

    def __init__(self, settings: StoreSettings, conn: aiosqlite.Connection, master: MasterKeys,
                 store_id: bytes, keyring: Keyring) -> None:
        self._settings = settings
        self._conn = conn
        self._master = master
        self._store_id = store_id
        self._keyring = keyring
        self._keyring_path = keyring_path(settings.path)
        self._write_lock = asyncio.Lock()
        self._max_span = 0
        # Reads go through a second connection: a long read (a chunked iterator) is one
        # statement, hence one consistent snapshot, whatever this store writes meanwhile.
        self._reader: aiosqlite.Connection | None = None

    # -- opening and closing -----------------------------------------------------------

    @classmethod
    async def open(cls, settings: StoreSettings, *, create: bool = False, check: bool = False,
                   environ: Mapping[str, str] | None = None) -> Store:
        """Open (or with ``create``, create) the store at ``settings.path``.

        Refuses, without changing anything: a missing key file, a key file readable by
        group or others, a wrong key, a store from a newer version, a file that is not a
        bzlogger store. ``check`` also runs SQLite's ``quick_check`` (slower).
        """
        master = MasterKeys(load_master_key(settings.key_file, environ))
        opened = await opening.open_database(settings, master, create=create, check=check)
        store = cls(settings, opened.conn, master, opened.store_id, opened.keyring)
        store._max_span = opened.max_span_hours
        return store

    async def close(self) -> None:
        """Checkpoint (when no one else reads) and close the connections."""
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        try:
            await self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as error:
            log.warning("checkpoint on close failed", error=str(error))
        await self._conn.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # -- encounters ---------------------------------------------------------------------

    async def add_encounters(self, encounters: Sequence[Encounter]) -> None:
        """Insert or update (by protocol, identifier and first_seen) in one transaction."""
        if not encounters:
            return
        async with self._write() as conn:
            keys = await self._day_keys_for_write({day_number(e.first_seen) for e in encounters})
            rows = []
            span = self._max_span
            for e in encounters:
                day = day_number(e.first_seen)
                key = keys[day]
                code = PROTOCOL_CODE[e.protocol]
                rk = key.row_key(e.protocol, e.identifier, e.first_seen)
                first_hour, last_hour = hour_number(e.first_seen), hour_number(e.last_seen)
                span = max(span, last_hour - first_hour)
                blob = key.seal(crypto.encode_encounter(e), crypto.encounter_aad(code, day, rk))
                rows.append((rk, day, first_hour, last_hour, code,
                             key.blind(e.protocol, e.identifier), blob))
            await encounter_rows.reopen_compacted(conn, self._keyring, self._keyring_path,
                                                  [row[0] for row in rows])
            await conn.executemany(encounter_rows.UPSERT_SQL, rows)
            if span > self._max_span:
                await set_meta(conn, "max_span_hours", span)
                self._max_span = span

    async def encounters(self, since: float | None = None, until: float | None = None,
                         protocol: Protocol | None = None) -> list[Encounter]:
        """Encounters overlapping ``[since, until]`` (either open-ended), oldest first."""
        found: list[Encounter] = []
        async for chunk in self.iter_encounters(since, until, protocol, chunk=BULK_CHUNK):
            found += chunk
        found.sort(key=_FIRST_SEEN)
        return found

    async def iter_encounters(self, since: float | None = None, until: float | None = None,
                              protocol: Protocol | None = None, *, chunk: int = READ_CHUNK
                              ) -> AsyncIterator[list[Encounter]]:
        """Like :meth:`encounters`, in chunks of about ``chunk`` (not sorted), for large
        reads: the event loop runs between chunks, and SQLite fetches the next rows (in
        aiosqlite's thread) while these are decrypted. One statement, one snapshot."""
        reader = await self._read_connection()
        self._max_span = max(self._max_span, await meta_int(reader, "max_span_hours"))
        sql, params = encounter_rows.range_query(since, until, protocol, self._max_span)
        bounded = since is not None or until is not None
        buffer: list[Encounter] = []
        async with reader.execute(sql, params) as cursor:
            pending = asyncio.ensure_future(cursor.fetchmany(FETCH_ROWS))
            try:
                while rows := await pending:
                    pending = asyncio.ensure_future(cursor.fetchmany(FETCH_ROWS))
                    found = await self._decode_rows(rows)
                    buffer += ([e for e in found if encounter_rows.overlaps(e, since, until)]
                               if bounded else found)
                    if len(buffer) >= chunk:
                        yield buffer
                        buffer = []
            finally:
                pending.cancel()
        if buffer:
            yield buffer

    async def find_encounters(self, protocol: Protocol, identifiers: Iterable[bytes],
                              since: float | None = None, until: float | None = None
                              ) -> list[Encounter]:
        """Encounters of any of ``identifiers`` that began on a UTC day from ``since`` to
        ``until`` (all days when None), looked up by blind index, oldest first."""
        wanted = list(set(identifiers))
        first = day_number(since) if since is not None else None
        last = day_number(until) if until is not None else None
        self._refresh_keyring()
        found: list[Encounter] = []
        for day in sorted(self._keyring.secrets):
            if (first is not None and day < first) or (last is not None and day > last):
                continue
            key = self._keyring.get(day)
            assert key is not None
            blinds = [key.blind(protocol, i) for i in wanted]
            for start in range(0, len(blinds), IN_CHUNK):
                # A segment may hold identifiers of several chunks: keep this chunk's only.
                chunk_ids = set(wanted[start:start + IN_CHUNK])
                sql, params = encounter_rows.blind_lookup_query(
                    day, protocol, blinds[start:start + IN_CHUNK])
                rows = await (await self._read_connection()).execute_fetchall(sql, params)
                found.extend(e for e in await self._decode_rows(rows)
                             if e.identifier in chunk_ids)
        found.sort(key=_FIRST_SEEN)
        return found

    async def newest_time(self) -> float | None:
        """The time of the newest sighting in the store, None when it is empty."""
        rows = await (await self._read_connection()).execute_fetchall(encounter_rows.NEWEST_SQL)
        encounters = await self._decode_rows(rows)
        return max((e.last_seen for e in encounters), default=None)

    # -- the kiosk's own keys -------------------------------------------------------------

    async def save_own_keys(self, keys: DayKeys) -> None:
        """Keep the kiosk's own keys of a day (sealed with that day's key). Saving the same
        keys again is a no-op; different keys for a day already saved are refused, since
        the first ones may already have been advertised."""
        day = day_number(keys.day_start)
        async with self._write() as conn:  # checked under the write lock: no race
            existing = await self.own_keys_for_day(keys.day_start)
            if existing is not None:
                if existing != keys:
                    raise StoreError(f"the kiosk already has different keys for day {day}; "
                                     "refusing to replace keys that may have been advertised")
                return
            key = (await self._day_keys_for_write({day}))[day]
            blob = key.seal(crypto.encode_own_keys(keys), crypto.own_keys_aad(day))
            await conn.execute("INSERT OR IGNORE INTO own_keys (day, blob) VALUES (?, ?)",
                               (day, blob))

    async def own_keys(self, since: float | None = None, until: float | None = None
                       ) -> list[DayKeys]:
        """The kiosk's own keys of the days overlapping ``[since, until]``, oldest first."""
        first = day_number(since) if since is not None else -(1 << 31)
        last = day_number(until) if until is not None else 1 << 31
        rows = await self._conn.execute_fetchall(
            "SELECT day, blob FROM own_keys WHERE day BETWEEN ? AND ? ORDER BY day",
            (first, last))
        out = []
        for day, blob in rows:
            key = self._day_key_for_read(day)
            if key is not None:
                out.append(crypto.decode_own_keys(key.open(blob, crypto.own_keys_aad(day))))
        return out

    async def own_keys_for_day(self, day_start: float) -> DayKeys | None:
        """The kiosk's own keys of the UTC day containing ``day_start``, if saved."""
        found = await self.own_keys(day_start, day_start)
        return found[0] if found else None

    # -- exposures and processed lists --------------------------------------------------------

    async def save_exposures(self, exposures: Sequence[Exposure]) -> list[Exposure]:
        """Keep exposures; returns those not already stored (same protocol, identifier
        and first_seen), so that each one is alerted once across runs."""
        if not exposures:
            return []
        new: list[Exposure] = []
        async with self._write() as conn:
            keys = await self._day_keys_for_write({day_number(x.first_seen) for x in exposures})
            for x in exposures:
                day = day_number(x.first_seen)
                key = keys[day]
                rk = key.row_key(x.protocol, x.identifier, x.first_seen)
                blob = key.seal(crypto.encode_exposure(x), crypto.exposure_aad(day, rk))
                cursor = await conn.execute(
                    "INSERT OR IGNORE INTO exposures (rk, day, blob) VALUES (?, ?, ?)",
                    (rk, day, blob))
                if cursor.rowcount:
                    new.append(x)
        return new

    async def exposures(self) -> list[Exposure]:
        """Every stored exposure, oldest first."""
        rows = await self._conn.execute_fetchall("SELECT rk, day, blob FROM exposures")
        out = []
        for rk, day, blob in rows:
            key = self._day_key_for_read(day)
            if key is not None:
                out.append(crypto.decode_exposure(key.open(blob, crypto.exposure_aad(day, rk))))
        out.sort(key=lambda x: x.first_seen)
        return out

    async def revoke_exposures(self, list_keys: Collection[bytes]) -> int:
        """Delete stored exposures produced by any of ``list_keys`` (keys an authority
        has since revoked); returns how many were deleted."""
        if not list_keys:
            return 0
        revoked = frozenset(list_keys)
        async with self._write() as conn:
            rows = await conn.execute_fetchall("SELECT rk, day, blob FROM exposures")
            doomed = []
            for rk, day, blob in rows:
                key = self._day_key_for_read(day)
                if key is None:
                    continue
                exposure = crypto.decode_exposure(key.open(blob, crypto.exposure_aad(day, rk)))
                if exposure.list_key in revoked:
                    doomed.append((rk,))
            await conn.executemany("DELETE FROM exposures WHERE rk = ?", doomed)
        return len(doomed)

    async def is_list_processed(self, digest: bytes) -> bool:
        """Whether a published list with this content hash was already matched."""
        rows = await self._conn.execute_fetchall(
            "SELECT 1 FROM processed_lists WHERE digest = ?", (self._master.list_digest(digest),))
        return bool(rows)

    async def mark_list_processed(self, digest: bytes, name: str) -> None:
        """Remember that the list with this content hash (named ``name``) was matched."""
        index = self._master.list_digest(digest)
        async with self._write() as conn:
            await conn.execute("INSERT OR IGNORE INTO processed_lists (digest, name) VALUES (?, ?)",
                               (index, self._master.seal_list_name(name, index)))

    # -- retention ----------------------------------------------------------------------

    async def purge(self, now: float) -> int:
        """Delete everything of the UTC days that ended more than ``retention_days`` ago
        and destroy those days' keys (crypto-shredding); returns the rows deleted.

        A day D is kept while ``day(now) - D <= retention_days``.
        """
        cutoff = day_number(now) - self._settings.retention_days
        async with self._write() as conn:
            deleted = await retention.delete_expired_rows(conn, cutoff)
            self._keyring, dropped = retention.destroy_expired_keys(
                self._keyring_path, self._master, self._store_id, cutoff)
        await self.compact(now)
        # Old page images of the deleted rows live in the WAL until a checkpoint.
        await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if deleted or dropped:
            log.info("retention purge", rows=deleted, days_destroyed=len(dropped))
        return deleted

    async def compact(self, now: float) -> int:
        """Seal finished encounters (last seen more than
        :data:`~bzlogger.store.encounter_rows.COMPACT_AFTER_HOURS` whole hours before
        ``now``) into segments, one per day and protocol, so that bulk reads decrypt a few
        large blobs instead of one per encounter. Returns the encounters moved.
        :meth:`purge` calls it; a late update of a compacted encounter still works (it is
        taken out of its segment again)."""
        async with self._write() as conn:
            return await encounter_rows.compact(conn, self._keyring, now)

    # -- status -------------------------------------------------------------------------

    async def stats(self, now: float) -> StoreStats:
        """Sizes and counts for status output."""
        conn = await self._read_connection()
        self._refresh_keyring()
        return await collect_stats(conn, self._settings.path, self._keyring_path,
                                   key_days=len(self._keyring.secrets),
                                   retention_days=self._settings.retention_days, now=now)

    # -- internals ----------------------------------------------------------------------

    def _write(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        """One write transaction: under SQLite's write lock, all or nothing."""
        return write_transaction(self._conn, self._write_lock, self._settings.path)

    async def _day_keys_for_write(self, days: set[int]) -> dict[int, DayKey]:
        """Keys of ``days``, creating missing ones. Call inside :meth:`_write`: the
        SQLite write lock keeps two processes from creating the same day's key."""
        missing = [d for d in days if self._keyring.get(d) is None]
        if missing:
            keyring = crypto.read_keyring(self._keyring_path, self._master, self._store_id)
            created = [d for d in missing if keyring.get(d) is None]
            for day in created:
                keyring.add(day)
            if created:
                crypto.write_keyring(self._keyring_path, keyring, self._master, self._store_id)
            self._keyring = keyring
        keys = {}
        for day in days:
            key = self._keyring.get(day)
            assert key is not None
            keys[day] = key
        return keys

    def _day_key_for_read(self, day: int) -> DayKey | None:
        """The key of ``day``; None for a day older than every key (purged, possibly by
        another process right now). A missing key among kept days is damage."""
        key = self._keyring.get(day)
        if key is None:
            self._refresh_keyring()
            key = self._keyring.get(day)
        if key is None and not (self._keyring.secrets and day < min(self._keyring.secrets)):
            raise StoreError(f"the keyring {self._keyring_path} has no key for day {day} that "
                             "still has data; restore the keyring from backup")
        return key

    def _refresh_keyring(self) -> None:
        self._keyring = crypto.read_keyring(self._keyring_path, self._master, self._store_id)

    async def _decode_rows(self, rows: Iterable[Any]) -> list[Encounter]:
        return await encounter_rows.decode_rows(rows, self._day_key_for_read)

    async def _read_connection(self) -> aiosqlite.Connection:
        if self._reader is None:
            self._reader = await opening.open_reader(self._settings.path)
        return self._reader
