"""The encrypted encounter store (SQLite through aiosqlite).

Files, all in the directory of ``[store] path``:

- ``bzlogger.db`` (+ ``-wal``, ``-shm``): WAL mode, ``synchronous=FULL`` (every commit
  is on disk, so a power cut loses at most the batch not yet committed),
  ``secure_delete`` on (deleted rows are overwritten with zeros);
- ``bzlogger.db.keyring``: the per-day secrets, wrapped by the master key. A purge
  rewrites it without the expired days: that is what makes old data unreadable even
  from an earlier copy of the database.

Writers serialise on SQLite's write lock (``BEGIN IMMEDIATE``), which also guards the
creation of day keys; readers in other processes read concurrently (WAL).
"""

from __future__ import annotations

import asyncio
import operator
import os
import sqlite3
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiosqlite

from bzlogger.config import StoreSettings
from bzlogger.errors import StoreError
from bzlogger.ids.schedule import DayKeys
from bzlogger.logsetup import get_logger
from bzlogger.model import Encounter, Exposure, Protocol
from bzlogger.store import crypto, schema
from bzlogger.store.crypto import (
    DAY_SECONDS,
    PROTOCOL_CODE,
    DayKey,
    Keyring,
    MasterKeys,
    day_number,
    hour_number,
)
from bzlogger.store.keys import load_master_key

log = get_logger("store")

SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 10_000
READ_CHUNK = 4096
BULK_CHUNK = 50_000
FETCH_ROWS = 256  # rows per fetch from SQLite: small encounter rows or whole segments
#: Encounters last seen this many whole hours ago are final (gap_s is at most an hour).
COMPACT_AFTER_HOURS = 2
#: Encounters per segment at most.
SEGMENT_MAX = 2_000
_IN_CHUNK = 500  # bound parameters per IN (...) query
_FIRST_SEEN = operator.attrgetter("first_seen")


def keyring_path(db_path: Path) -> Path:
    """The keyring file that belongs to the database at ``db_path``."""
    return db_path.with_name(db_path.name + ".keyring")


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
        path = settings.path
        master = MasterKeys(load_master_key(settings.key_file, environ))
        is_new = _check_file(path, create)
        try:
            if is_new:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            conn = await aiosqlite.connect(path, isolation_level=None)
        except OSError as error:
            raise StoreError(f"cannot create store {path}: {error.strerror}; check that this "
                             "user may write its directory") from None
        except sqlite3.Error as error:
            raise StoreError(f"cannot open store {path}: {error}") from None
        try:
            store = await cls._prepare(settings, conn, master, is_new, check)
        except BaseException:
            await conn.close()
            raise
        return store

    @classmethod
    async def _prepare(cls, settings: StoreSettings, conn: aiosqlite.Connection,
                       master: MasterKeys, is_new: bool, check: bool) -> Store:
        path = settings.path
        try:
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            version = await _scalar(conn, "PRAGMA user_version")
            if version > schema.SCHEMA_VERSION:
                raise StoreError(
                    f"store {path} was written by a newer bzlogger (schema version {version}; "
                    f"this one reads up to {schema.SCHEMA_VERSION}); upgrade bzlogger. "
                    "The store was not changed"
                )
            if version == 0 and await _scalar(conn, "SELECT count(*) FROM sqlite_master"):
                raise StoreError(f"{path} is an SQLite database but not a bzlogger store; "
                                 "refusing to touch it")
            if check:
                result = await _scalar(conn, "PRAGMA quick_check")
                if result != "ok":
                    raise StoreError(f"store {path} is damaged ({result}); it was left as it "
                                     "is: move it aside and restore a backup or run "
                                     "`bzlogger init` for a new store")
            if version:
                store_id = await _meta(conn, "store_id")
                if not master.verify(await _meta(conn, "key_check"), store_id):
                    raise StoreError(
                        f"the key in {settings.key_file} does not open store {path} (wrong "
                        "key file?); the store was not changed"
                    )
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = FULL")
            await conn.execute("PRAGMA secure_delete = ON")
            await conn.execute("PRAGMA temp_store = MEMORY")
            if version < schema.SCHEMA_VERSION:
                store_id = await _migrate(conn, master, version)
            if is_new:
                os.chmod(path, 0o600)
            keyring = await _load_keyring(conn, settings, master, store_id)
        except sqlite3.OperationalError as error:
            raise StoreError(f"cannot open store {path} ({error}); check that this user may "
                             "read and write its directory (run as the bzlogger user or root)"
                             ) from None
        except sqlite3.DatabaseError as error:
            raise StoreError(f"store {path} cannot be read ({error}); it was left as it is: "
                             "move it aside and restore a backup or run `bzlogger init` for "
                             "a new store") from None
        store = cls(settings, conn, master, store_id, keyring)
        store._max_span = int(await _meta_int(conn, "max_span_hours"))
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
            await self._reopen_compacted(conn, [row[0] for row in rows])
            await conn.executemany(
                "INSERT INTO encounters (rk, day, first_hour, last_hour, protocol, blind, blob) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (rk) DO UPDATE SET "
                "last_hour = excluded.last_hour, blob = excluded.blob", rows)
            if span > self._max_span:
                await _set_meta(conn, "max_span_hours", span)
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
        sql, params = await self._range_query(since, until, protocol)
        bounded = since is not None or until is not None
        reader = await self._read_connection()
        buffer: list[Encounter] = []
        async with reader.execute(sql, params) as cursor:
            pending = asyncio.ensure_future(cursor.fetchmany(FETCH_ROWS))
            try:
                while rows := await pending:
                    pending = asyncio.ensure_future(cursor.fetchmany(FETCH_ROWS))
                    found = await self._decode_rows(rows)
                    buffer += [e for e in found if _overlaps(e, since, until)] if bounded else found
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
            for start in range(0, len(blinds), _IN_CHUNK):
                part = blinds[start:start + _IN_CHUNK]
                # A segment may hold identifiers of several chunks: keep this chunk's only.
                chunk_ids = set(wanted[start:start + _IN_CHUNK])
                marks = ",".join("?" * len(part))
                sql = ("SELECT 0, rk, protocol, day, blob FROM encounters "  # noqa: S608
                       f"WHERE day = ? AND protocol = ? AND blind IN ({marks}) UNION ALL "
                       "SELECT 1, sk, protocol, day, blob FROM segments WHERE day = ? AND "
                       "protocol = ? AND id IN (SELECT segment FROM segment_index "
                       f"WHERE blind IN ({marks}))")
                code = PROTOCOL_CODE[protocol]
                rows = await (await self._read_connection()).execute_fetchall(
                    sql, (day, code, *part, day, code, *part))
                found.extend(e for e in await self._decode_rows(rows)
                             if e.identifier in chunk_ids)
        found.sort(key=_FIRST_SEEN)
        return found

    async def newest_time(self) -> float | None:
        """The time of the newest sighting in the store, None when it is empty."""
        rows = await (await self._read_connection()).execute_fetchall(
            "WITH top (hour) AS (SELECT max(h) FROM (SELECT max(last_hour) AS h FROM encounters "
            "UNION ALL SELECT max(last_hour) FROM segments)) "
            "SELECT 0, rk, protocol, day, blob FROM encounters "
            "WHERE last_hour = (SELECT hour FROM top) UNION ALL "
            "SELECT 1, sk, protocol, day, blob FROM segments "
            "WHERE last_hour = (SELECT hour FROM top)")
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
        deleted = 0
        async with self._write() as conn:
            # first_hour is indexed and falls on the same UTC day as the day column.
            await conn.execute("DELETE FROM segment_rows WHERE segment IN "
                               "(SELECT id FROM segments WHERE first_hour < ?)", (cutoff * 24,))
            await conn.execute("DELETE FROM segment_index WHERE segment IN "
                               "(SELECT id FROM segments WHERE first_hour < ?)", (cutoff * 24,))
            deleted += int(await _scalar(conn, "SELECT coalesce(sum(count), 0) FROM segments "
                                         "WHERE first_hour < ?", (cutoff * 24,)))
            for table, column, bound in (("encounters", "first_hour", cutoff * 24),
                                         ("segments", "first_hour", cutoff * 24),
                                         ("own_keys", "day", cutoff),
                                         ("exposures", "day", cutoff)):
                cursor = await conn.execute(  # table and column names are constants
                    f"DELETE FROM {table} WHERE {column} < ?", (bound,))  # noqa: S608
                if table != "segments":
                    deleted += max(cursor.rowcount, 0)
            keyring = crypto.read_keyring(self._keyring_path, self._master, self._store_id)
            dropped = keyring.drop_before(cutoff)
            if dropped:
                crypto.write_keyring(self._keyring_path, keyring, self._master, self._store_id)
            self._keyring = keyring
        await self.compact(now)
        # Old page images of the deleted rows live in the WAL until a checkpoint.
        await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if deleted or dropped:
            log.info("retention purge", rows=deleted, days_destroyed=len(dropped))
        return deleted

    async def compact(self, now: float) -> int:
        """Seal finished encounters (last seen more than :data:`COMPACT_AFTER_HOURS` whole
        hours before ``now``) into segments, one per day and protocol, so that bulk reads
        decrypt a few large blobs instead of one per encounter. Returns the encounters
        moved. :meth:`purge` calls it; a late update of a compacted encounter still works
        (it is taken out of its segment again)."""
        bound = hour_number(now) - COMPACT_AFTER_HOURS
        moved = 0
        async with self._write() as conn:
            rows = await conn.execute_fetchall(
                "SELECT rk, protocol, day, first_hour, last_hour, blind, blob FROM encounters "
                "WHERE last_hour < ?", (bound,))
            groups: dict[tuple[int, int], list[Any]] = {}
            for row in rows:
                groups.setdefault((row[2], row[1]), []).append(row)
            for (day, code), group in groups.items():
                key = self._keyring.get(day)
                if key is None:
                    continue  # a destroyed day: the next purge deletes these rows
                for start in range(0, len(group), SEGMENT_MAX):
                    await self._seal_segment(conn, key, code, group[start:start + SEGMENT_MAX])
                    moved += len(group[start:start + SEGMENT_MAX])
        return moved

    async def _seal_segment(self, conn: aiosqlite.Connection, key: DayKey, code: int,
                            group: list[Any]) -> None:
        day = key.day
        entries = [(rk, key.open(blob, crypto.encounter_aad(code, day, rk)))
                   for rk, _, _, _, _, _, blob in group]
        sk = os.urandom(crypto.INDEX_LENGTH)
        sealed = key.seal(crypto.pack_segment(entries), crypto.segment_aad(code, day, sk))
        cursor = await conn.execute(
            "INSERT INTO segments (sk, day, protocol, first_hour, last_hour, count, blob) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (sk, day, code, min(r[3] for r in group), max(r[4] for r in group), len(group),
             sealed))
        segment = cursor.lastrowid
        await conn.executemany("INSERT INTO segment_rows (rk, segment) VALUES (?, ?)",
                               [(r[0], segment) for r in group])
        await conn.executemany("INSERT INTO segment_index (blind, segment) VALUES (?, ?)",
                               [(blind, segment) for blind in {r[5] for r in group}])
        await conn.executemany("DELETE FROM encounters WHERE rk = ?", [(r[0],) for r in group])

    async def _reopen_compacted(self, conn: aiosqlite.Connection, row_keys: list[bytes]) -> None:
        """Take the encounters ``row_keys`` out of their segments, if compacted, so that
        an update replaces them instead of duplicating them."""
        hits: dict[int, set[bytes]] = {}
        for start in range(0, len(row_keys), _IN_CHUNK):
            part = row_keys[start:start + _IN_CHUNK]
            marks = ",".join("?" * len(part))
            found = await conn.execute_fetchall(
                f"SELECT rk, segment FROM segment_rows WHERE rk IN ({marks})", part)  # noqa: S608
            for rk, segment in found:
                hits.setdefault(segment, set()).add(rk)
        for segment, gone in hits.items():
            ((sk, day, code, blob),) = await conn.execute_fetchall(
                "SELECT sk, day, protocol, blob FROM segments WHERE id = ?", (segment,))
            key = self._keyring.get(day)
            if key is None:
                raise StoreError(f"no key for day {day} of a stored segment; the keyring "
                                 f"{self._keyring_path} is damaged")
            protocol = crypto.CODE_PROTOCOL[code]
            kept = [(rk, record) for rk, record in crypto.segment_entries(
                key.open(blob, crypto.segment_aad(code, day, sk))) if rk not in gone]
            await conn.executemany("DELETE FROM segment_rows WHERE rk = ?", [(rk,) for rk in gone])
            await conn.execute("DELETE FROM segment_index WHERE segment = ?", (segment,))
            if not kept:
                await conn.execute("DELETE FROM segments WHERE id = ?", (segment,))
                continue
            decoded = [crypto.decode_encounter(protocol, record) for _, record in kept]
            await conn.execute(
                "UPDATE segments SET blob = ?, count = ?, first_hour = ?, last_hour = ? "
                "WHERE id = ?",
                (key.seal(crypto.pack_segment(kept), crypto.segment_aad(code, day, sk)),
                 len(kept), min(hour_number(e.first_seen) for e in decoded),
                 max(hour_number(e.last_seen) for e in decoded), segment))
            await conn.executemany(
                "INSERT INTO segment_index (blind, segment) VALUES (?, ?)",
                [(b, segment) for b in {key.blind(protocol, e.identifier) for e in decoded}])

    # -- status -------------------------------------------------------------------------

    async def stats(self, now: float) -> StoreStats:
        """Sizes and counts for status output."""
        conn = await self._read_connection()
        today = day_number(now)
        path = self._settings.path
        wal = _size(path.with_name(path.name + "-wal"))
        size = _size(path) + wal + _size(self._keyring_path)
        bounds = await conn.execute_fetchall(
            "SELECT min(lo), max(hi) FROM (SELECT min(day) AS lo, max(day) AS hi FROM encounters "
            "UNION ALL SELECT min(day), max(day) FROM segments)")
        oldest, newest = next(iter(bounds))
        self._refresh_keyring()
        count = ("SELECT (SELECT count(*) FROM encounters {where}) + "
                 "(SELECT coalesce(sum(count), 0) FROM segments {where})")
        return StoreStats(
            path=path, size_bytes=size, wal_bytes=wal,
            schema_version=await _scalar(conn, "PRAGMA user_version"),
            encounters=await _scalar(conn, count.format(where="")),
            encounters_today=await _scalar(conn, count.format(where="WHERE day = ?"),
                                           (today, today)),
            exposures=await _scalar(conn, "SELECT count(*) FROM exposures"),
            own_key_days=await _scalar(conn, "SELECT count(*) FROM own_keys"),
            key_days=len(self._keyring.secrets),
            oldest_day=None if oldest is None else float(oldest * DAY_SECONDS),
            newest_day=None if newest is None else float(newest * DAY_SECONDS),
            retention_days=self._settings.retention_days,
        )

    # -- internals ----------------------------------------------------------------------

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction, holding SQLite's write lock from the start. A failure
        rolls it back and raises StoreError (nothing of the batch is kept); a writer
        cancelled mid-way leaves nothing behind that blocks the next one."""
        async with self._write_lock:
            conn = self._conn
            # Statements of a cancelled writer may still be queued in aiosqlite's thread
            # (a cancelled await does not unqueue them): wait for them, then undo any
            # transaction they left open.
            await conn.execute("SELECT 1")
            if conn.in_transaction:
                await self._rollback()
            try:
                await conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                raise StoreError(f"store {self._settings.path} is busy or read-only: {error}"
                                 ) from None
            try:
                yield conn
                await conn.execute("COMMIT")
            except sqlite3.Error as error:
                await self._rollback()
                raise StoreError(f"store {self._settings.path}: write failed ({error}); "
                                 "nothing of this batch was kept") from None
            except BaseException:
                await self._rollback()
                raise

    async def _rollback(self) -> None:
        try:
            await self._conn.execute("ROLLBACK")
        except sqlite3.Error as error:  # no transaction left (SQLite may have ended it)
            log.debug("rollback", error=str(error))

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
        """Open and decode ``(kind, key, protocol, day, blob)`` rows: kind 0 is one
        encounter (grouped by day and protocol, to be decrypted in one tight loop), kind 1
        a segment of many."""
        groups: dict[int, list[Any]] = {}
        out: list[Encounter] = []
        for row in rows:
            if row[0]:
                key = self._day_key_for_read(row[3])
                if key is not None:
                    out += crypto.open_segment(key, row[2], row[1], row[4])
                continue
            group = groups.get(row[3] * 4 + row[2])
            if group is None:
                group = groups[row[3] * 4 + row[2]] = []
            group.append(row[1:])
        for group in groups.values():
            _, code, day, _ = group[0]
            key = self._day_key_for_read(day)
            if key is not None:
                out += crypto.open_encounters(key, code, group)
        await asyncio.sleep(0)  # let the daemon's other tasks run between chunks
        return out

    async def _range_query(self, since: float | None, until: float | None,
                           protocol: Protocol | None) -> tuple[str, tuple[int, ...]]:
        """One SQL statement selecting the encounter rows and segments that may overlap
        the range, by coarse hour numbers."""
        reader = await self._read_connection()
        self._max_span = max(self._max_span, int(await _meta_int(reader, "max_span_hours")))
        rows: list[str] = []
        segments: list[str] = []
        row_params: list[int] = []
        segment_params: list[int] = []
        if until is not None:
            rows.append("first_hour <= ?")
            segments.append("first_hour <= ?")
            row_params.append(hour_number(until))
            segment_params.append(hour_number(until))
        if since is not None:
            # An encounter overlapping the range started at most max_span hours before it.
            rows.append("first_hour >= ? AND last_hour >= ?")
            row_params += [hour_number(since) - self._max_span, hour_number(since)]
            segments.append("last_hour >= ?")
            segment_params.append(hour_number(since))
        if protocol is not None:
            for where, params in ((rows, row_params), (segments, segment_params)):
                where.append("protocol = ?")
                params.append(PROTOCOL_CODE[protocol])
        sql = (f"SELECT 0, rk, protocol, day, blob FROM encounters {_where(rows)} "  # noqa: S608
               f"UNION ALL SELECT 1, sk, protocol, day, blob FROM segments {_where(segments)}")
        return sql, (*row_params, *segment_params)

    async def _read_connection(self) -> aiosqlite.Connection:
        if self._reader is None:
            try:
                reader = await aiosqlite.connect(self._settings.path, isolation_level=None)
                await reader.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            except sqlite3.Error as error:
                raise StoreError(f"cannot open store {self._settings.path}: {error}") from None
            self._reader = reader
        return self._reader


def _where(conditions: list[str]) -> str:
    return f"WHERE {' AND '.join(conditions)}" if conditions else ""


def _overlaps(e: Encounter, since: float | None, until: float | None) -> bool:
    return (since is None or e.last_seen >= since) and (until is None or e.first_seen <= until)


def _check_file(path: Path, create: bool) -> bool:
    """Whether the store must be created; refuses a missing store (unless ``create``) and
    a file that is not an SQLite database, without touching it."""
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        if not create:
            raise StoreError(f"store {path} does not exist; run `bzlogger init` to create it"
                             ) from None
        return True
    except OSError as error:
        raise StoreError(f"cannot read store {path}: {error.strerror}") from None
    if header != SQLITE_HEADER:
        if not header and create:
            return True
        raise StoreError(f"{path} is not a bzlogger store or is damaged; it was left as it is: "
                         "move it aside and restore a backup or run `bzlogger init`")
    return False


async def _migrate(conn: aiosqlite.Connection, master: MasterKeys, version: int) -> bytes:
    """Bring the schema to :data:`schema.SCHEMA_VERSION`; returns the store id."""
    await conn.execute("BEGIN IMMEDIATE")
    try:
        current = await _scalar(conn, "PRAGMA user_version")  # another process may have won
        for target, sql in schema.pending(current):
            for statement in filter(str.strip, sql.split(";")):
                await conn.execute(statement)
            if target == 1:
                store_id = os.urandom(16)
                await _set_meta(conn, "store_id", store_id)
                await _set_meta(conn, "key_check", master.check_value(store_id))
                await _set_meta(conn, "max_span_hours", 0)
            await conn.execute(f"PRAGMA user_version = {target}")
        store_id = await _meta(conn, "store_id")
    except BaseException:
        await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")
    if version:
        log.info("store schema migrated", from_version=version, to_version=schema.SCHEMA_VERSION)
    return store_id


async def _load_keyring(conn: aiosqlite.Connection, settings: StoreSettings,
                        master: MasterKeys, store_id: bytes) -> Keyring:
    """The keyring; a new store (or one that never sealed anything, e.g. after a crash
    right after creation) gets an empty one."""
    path = keyring_path(settings.path)
    if not path.exists():
        for table in schema.SEALED_TABLES:
            probe = f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 1)"  # noqa: S608
            if await _scalar(conn, probe):
                return crypto.read_keyring(path, master, store_id)  # raises: missing
        keyring = Keyring()
        crypto.write_keyring(path, keyring, master, store_id)
        return keyring
    return crypto.read_keyring(path, master, store_id)


async def _scalar(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()) -> Any:
    rows = list(await conn.execute_fetchall(sql, params))
    return rows[0][0] if rows else None


async def _meta(conn: aiosqlite.Connection, name: str) -> bytes:
    value = await _scalar(conn, "SELECT value FROM meta WHERE name = ?", (name,))
    if not isinstance(value, bytes):
        raise StoreError(f"the store's metadata lacks {name!r}; the store is damaged")
    return value


async def _meta_int(conn: aiosqlite.Connection, name: str) -> int:
    value = await _scalar(conn, "SELECT value FROM meta WHERE name = ?", (name,))
    return int(value or 0)


async def _set_meta(conn: aiosqlite.Connection, name: str, value: bytes | int) -> None:
    await conn.execute("INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) "
                       "DO UPDATE SET value = excluded.value", (name, value))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
