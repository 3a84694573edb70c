"""Opening a store: the refusal checks (missing, foreign, damaged or newer files, a
wrong key), the connection settings, schema migrations and the keyring's first load.

Every refusal raises :class:`StoreError` before anything is changed.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from bzlogger.config import StoreSettings
from bzlogger.errors import StoreError
from bzlogger.logsetup import get_logger
from bzlogger.store import crypto, schema
from bzlogger.store.crypto import Keyring, MasterKeys
from bzlogger.store.sql import meta, meta_int, scalar, set_meta

log = get_logger("store")

SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 10_000


def keyring_path(db_path: Path) -> Path:
    """The keyring file that belongs to the database at ``db_path``."""
    return db_path.with_name(db_path.name + ".keyring")


@dataclass(frozen=True, slots=True)
class OpenedStore:
    """A checked, migrated store connection and what the store needs to use it."""

    conn: aiosqlite.Connection
    store_id: bytes
    keyring: Keyring
    max_span_hours: int


async def open_database(settings: StoreSettings, master: MasterKeys, *, create: bool,
                        check: bool) -> OpenedStore:
    """Open (or with ``create``, create) the database at ``settings.path`` for writing.

    Refuses, without changing anything: a missing store (unless ``create``), a file that
    is not a bzlogger store, a wrong key, a store from a newer version; ``check`` also
    runs SQLite's ``quick_check``. On any failure the connection is closed again.
    """
    path = settings.path
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
        return await _prepare(settings, conn, master, is_new, check)
    except BaseException:
        await conn.close()
        raise


async def open_reader(path: Path) -> aiosqlite.Connection:
    """A second connection to the store at ``path``, for reads."""
    try:
        reader = await aiosqlite.connect(path, isolation_level=None)
        await reader.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    except sqlite3.Error as error:
        raise StoreError(f"cannot open store {path}: {error}") from None
    return reader


async def _prepare(settings: StoreSettings, conn: aiosqlite.Connection, master: MasterKeys,
                   is_new: bool, check: bool) -> OpenedStore:
    path = settings.path
    try:
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        version = await scalar(conn, "PRAGMA user_version")
        if version > schema.SCHEMA_VERSION:
            raise StoreError(
                f"store {path} was written by a newer bzlogger (schema version {version}; "
                f"this one reads up to {schema.SCHEMA_VERSION}); upgrade bzlogger. "
                "The store was not changed"
            )
        if version == 0 and await scalar(conn, "SELECT count(*) FROM sqlite_master"):
            raise StoreError(f"{path} is an SQLite database but not a bzlogger store; "
                             "refusing to touch it")
        if check:
            result = await scalar(conn, "PRAGMA quick_check")
            if result != "ok":
                raise StoreError(f"store {path} is damaged ({result}); it was left as it "
                                 "is: move it aside and restore a backup or run "
                                 "`bzlogger init` for a new store")
        if version:
            store_id = await meta(conn, "store_id")
            if not master.verify(await meta(conn, "key_check"), store_id):
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
    return OpenedStore(conn, store_id, keyring, await meta_int(conn, "max_span_hours"))


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
        current = await scalar(conn, "PRAGMA user_version")  # another process may have won
        for target, sql in schema.pending(current):
            for statement in filter(str.strip, sql.split(";")):
                await conn.execute(statement)
            if target == 1:
                store_id = os.urandom(16)
                await set_meta(conn, "store_id", store_id)
                await set_meta(conn, "key_check", master.check_value(store_id))
                await set_meta(conn, "max_span_hours", 0)
            await conn.execute(f"PRAGMA user_version = {target}")
        store_id = await meta(conn, "store_id")
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
            if await scalar(conn, probe):
                return crypto.read_keyring(path, master, store_id)  # raises: missing
        keyring = Keyring()
        crypto.write_keyring(path, keyring, master, store_id)
        return keyring
    return crypto.read_keyring(path, master, store_id)
