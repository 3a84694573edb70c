"""The store's SQLite schema and its versioned migrations (``PRAGMA user_version``).

Only opaque or coarse values are in clear: row keys and blind indexes (HMAC), the
protocol, UTC day and hour numbers. Everything else is inside sealed blobs.

To change the schema, append a migration to :data:`MIGRATIONS`; version N is reached
by running migrations 1..N in order, each in the same transaction as the
``user_version`` update, so a crash leaves either the old or the new version.
"""

from __future__ import annotations

SCHEMA_V1 = """
CREATE TABLE meta (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
-- One row per encounter. rk = HMAC(day index key, protocol, identifier, first_seen)
CREATE TABLE encounters (
    id INTEGER PRIMARY KEY,
    rk BLOB NOT NULL UNIQUE,
    day INTEGER NOT NULL,
    first_hour INTEGER NOT NULL,
    last_hour INTEGER NOT NULL,
    protocol INTEGER NOT NULL,
    blind BLOB NOT NULL,
    blob BLOB NOT NULL
);
CREATE INDEX encounters_first_hour ON encounters (first_hour);
CREATE INDEX encounters_last_hour ON encounters (last_hour);
CREATE INDEX encounters_blind ON encounters (blind);
CREATE TABLE own_keys (
    day INTEGER PRIMARY KEY,
    blob BLOB NOT NULL
);
CREATE TABLE exposures (
    id INTEGER PRIMARY KEY,
    rk BLOB NOT NULL UNIQUE,
    day INTEGER NOT NULL,
    blob BLOB NOT NULL
);
CREATE INDEX exposures_day ON exposures (day);
CREATE TABLE processed_lists (
    digest BLOB PRIMARY KEY,
    name BLOB NOT NULL
);
"""

# Version 2: finished encounters are compacted into segments, one sealed blob holding
# many encounters of one day and protocol, so that bulk reads decrypt a few large blobs
# instead of one per row. sk is a random segment key bound into the blob's associated
# data. segment_rows maps row keys to their segment (for a late update of a compacted
# encounter); segment_index is the blind index of the identifiers in each segment.
SCHEMA_V2 = """
CREATE TABLE segments (
    id INTEGER PRIMARY KEY,
    sk BLOB NOT NULL UNIQUE,
    day INTEGER NOT NULL,
    protocol INTEGER NOT NULL,
    first_hour INTEGER NOT NULL,
    last_hour INTEGER NOT NULL,
    count INTEGER NOT NULL,
    blob BLOB NOT NULL
);
CREATE INDEX segments_first_hour ON segments (first_hour);
CREATE INDEX segments_last_hour ON segments (last_hour);
CREATE TABLE segment_rows (
    rk BLOB PRIMARY KEY,
    segment INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX segment_rows_segment ON segment_rows (segment);
CREATE TABLE segment_index (
    blind BLOB NOT NULL,
    segment INTEGER NOT NULL
);
CREATE INDEX segment_index_blind ON segment_index (blind);
CREATE INDEX segment_index_segment ON segment_index (segment);
"""

#: Migration N (index N-1) takes the schema from version N-1 to N.
MIGRATIONS: tuple[str, ...] = (SCHEMA_V1, SCHEMA_V2)

#: The schema version this code reads and writes.
SCHEMA_VERSION = len(MIGRATIONS)

#: Tables whose rows are sealed with day keys (a store without any has no data to lose).
SEALED_TABLES = ("encounters", "segments", "own_keys", "exposures")


def pending(current: int) -> list[tuple[int, str]]:
    """The migrations to run from version ``current``: (target version, SQL)."""
    return [(n + 1, sql) for n, sql in enumerate(MIGRATIONS) if n >= current]
