"""Where encounters live in SQLite, and the SQL that reads and reshapes them.

An encounter is stored in one of two forms:

- a row of ``encounters``: one sealed record, upserted by its row key while the
  encounter may still change;
- an entry of a sealed *segment* (``segments``), once it is final: compaction packs the
  finished encounters of a day and protocol into blobs of up to :data:`SEGMENT_MAX`, so
  that bulk reads decrypt a few large blobs. ``segment_rows`` maps each row key to its
  segment (a late update takes the encounter out again) and ``segment_index`` holds the
  segments' blind indexes.

Reads select both forms in one statement as ``(kind, key, protocol, day, blob)`` rows
(kind 0: an encounter row, kind 1: a segment), decoded by :func:`decode_rows`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aiosqlite

from bzlogger.errors import StoreError
from bzlogger.model import Encounter, Protocol
from bzlogger.store import crypto
from bzlogger.store.crypto import PROTOCOL_CODE, DayKey, Keyring, hour_number
from bzlogger.store.sql import IN_CHUNK, where

#: Encounters last seen this many whole hours ago are final (gap_s is at most an hour).
COMPACT_AFTER_HOURS = 2
#: Encounters per segment at most.
SEGMENT_MAX = 2_000

UPSERT_SQL = ("INSERT INTO encounters (rk, day, first_hour, last_hour, protocol, blind, blob) "
              "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (rk) DO UPDATE SET "
              "last_hour = excluded.last_hour, blob = excluded.blob")

#: The rows holding the encounters seen last (in the newest hour).
NEWEST_SQL = ("WITH top (hour) AS (SELECT max(h) FROM (SELECT max(last_hour) AS h FROM encounters "
              "UNION ALL SELECT max(last_hour) FROM segments)) "
              "SELECT 0, rk, protocol, day, blob FROM encounters "
              "WHERE last_hour = (SELECT hour FROM top) UNION ALL "
              "SELECT 1, sk, protocol, day, blob FROM segments "
              "WHERE last_hour = (SELECT hour FROM top)")


def range_query(since: float | None, until: float | None, protocol: Protocol | None,
                max_span_hours: int) -> tuple[str, tuple[int, ...]]:
    """One SQL statement selecting the encounter rows and segments that may overlap
    ``[since, until]``, by coarse hour numbers; ``max_span_hours`` is the longest
    encounter stored."""
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
        row_params += [hour_number(since) - max_span_hours, hour_number(since)]
        segments.append("last_hour >= ?")
        segment_params.append(hour_number(since))
    if protocol is not None:
        for conditions, params in ((rows, row_params), (segments, segment_params)):
            conditions.append("protocol = ?")
            params.append(PROTOCOL_CODE[protocol])
    sql = (f"SELECT 0, rk, protocol, day, blob FROM encounters {where(rows)} "  # noqa: S608
           f"UNION ALL SELECT 1, sk, protocol, day, blob FROM segments {where(segments)}")
    return sql, (*row_params, *segment_params)


def blind_lookup_query(day: int, protocol: Protocol, blinds: list[bytes]
                       ) -> tuple[str, tuple[Any, ...]]:
    """One SQL statement selecting the encounter rows and segments of ``day`` that hold
    any of the blind indexes ``blinds`` (at most :data:`IN_CHUNK` of them)."""
    marks = ",".join("?" * len(blinds))
    sql = ("SELECT 0, rk, protocol, day, blob FROM encounters "  # noqa: S608
           f"WHERE day = ? AND protocol = ? AND blind IN ({marks}) UNION ALL "
           "SELECT 1, sk, protocol, day, blob FROM segments WHERE day = ? AND "
           "protocol = ? AND id IN (SELECT segment FROM segment_index "
           f"WHERE blind IN ({marks}))")
    code = PROTOCOL_CODE[protocol]
    return sql, (day, code, *blinds, day, code, *blinds)


def overlaps(e: Encounter, since: float | None, until: float | None) -> bool:
    """Whether ``e`` overlaps ``[since, until]`` (either open-ended)."""
    return (since is None or e.last_seen >= since) and (until is None or e.first_seen <= until)


async def decode_rows(rows: Iterable[Any], key_for: Callable[[int], DayKey | None]
                      ) -> list[Encounter]:
    """Open and decode ``(kind, key, protocol, day, blob)`` rows: kind 0 is one
    encounter (grouped by day and protocol, to be decrypted in one tight loop), kind 1
    a segment of many. ``key_for(day)`` is None for a destroyed day, whose rows are
    skipped."""
    groups: dict[int, list[Any]] = {}
    out: list[Encounter] = []
    for row in rows:
        if row[0]:
            key = key_for(row[3])
            if key is not None:
                out += crypto.open_segment(key, row[2], row[1], row[4])
            continue
        group = groups.get(row[3] * 4 + row[2])
        if group is None:
            group = groups[row[3] * 4 + row[2]] = []
        group.append(row[1:])
    for group in groups.values():
        _, code, day, _ = group[0]
        key = key_for(day)
        if key is not None:
            out += crypto.open_encounters(key, code, group)
    await asyncio.sleep(0)  # let the daemon's other tasks run between chunks
    return out


async def compact(conn: aiosqlite.Connection, keyring: Keyring, now: float) -> int:
    """Seal the encounter rows last seen more than :data:`COMPACT_AFTER_HOURS` whole
    hours before ``now`` into segments, one per day and protocol (and
    :data:`SEGMENT_MAX` encounters); returns the encounters moved. Call inside a write
    transaction."""
    bound = hour_number(now) - COMPACT_AFTER_HOURS
    moved = 0
    rows = await conn.execute_fetchall(
        "SELECT rk, protocol, day, first_hour, last_hour, blind, blob FROM encounters "
        "WHERE last_hour < ?", (bound,))
    groups: dict[tuple[int, int], list[Any]] = {}
    for row in rows:
        groups.setdefault((row[2], row[1]), []).append(row)
    for (day, code), group in groups.items():
        key = keyring.get(day)
        if key is None:
            continue  # a destroyed day: the next purge deletes these rows
        for start in range(0, len(group), SEGMENT_MAX):
            await _seal_segment(conn, key, code, group[start:start + SEGMENT_MAX])
            moved += len(group[start:start + SEGMENT_MAX])
    return moved


async def _seal_segment(conn: aiosqlite.Connection, key: DayKey, code: int,
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


async def reopen_compacted(conn: aiosqlite.Connection, keyring: Keyring, keyring_file: Path,
                           row_keys: list[bytes]) -> None:
    """Take the encounters ``row_keys`` out of their segments, if compacted, so that
    an update replaces them instead of duplicating them. Call inside a write
    transaction."""
    hits: dict[int, set[bytes]] = {}
    for start in range(0, len(row_keys), IN_CHUNK):
        part = row_keys[start:start + IN_CHUNK]
        marks = ",".join("?" * len(part))
        found = await conn.execute_fetchall(
            f"SELECT rk, segment FROM segment_rows WHERE rk IN ({marks})", part)  # noqa: S608
        for rk, segment in found:
            hits.setdefault(segment, set()).add(rk)
    for segment, gone in hits.items():
        ((sk, day, code, blob),) = await conn.execute_fetchall(
            "SELECT sk, day, protocol, blob FROM segments WHERE id = ?", (segment,))
        key = keyring.get(day)
        if key is None:
            raise StoreError(f"no key for day {day} of a stored segment; the keyring "
                             f"{keyring_file} is damaged")
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
