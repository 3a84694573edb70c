"""Limits that keep a hostile published list from exhausting memory or time.

Every reader checks sizes *before* it allocates: the file size first, then each zip
member's declared and actual uncompressed size (read in bounded chunks, so a zip bomb is
stopped after ``max_member_bytes`` + one chunk), then the number of entries.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bzlogger.errors import ListError

_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class Limits:
    """Upper bounds for one published list file."""

    #: Size of the file as downloaded (JSON or zip).
    max_file_bytes: int = 64 << 20
    #: Uncompressed size of one zip member.
    max_member_bytes: int = 64 << 20
    #: Members in a GAEN export zip (export.bin and export.sig, plus a little slack).
    max_zip_members: int = 4
    #: Keys (GAEN) or entries (Bluezone) in one file.
    max_entries: int = 2_000_000
    #: Largest uncompressed/compressed ratio accepted for a zip member.
    max_compression_ratio: int = 200

    @classmethod
    def from_max_file_bytes(cls, max_file_bytes: int) -> Limits:
        """Limits scaled to the configured ``[lists] max_file_bytes``."""
        return cls(max_file_bytes=max_file_bytes, max_member_bytes=max_file_bytes)


DEFAULT_LIMITS = Limits()


def read_bounded(path: Path, limit: int, what: str = "list") -> bytes:
    """The content of ``path``, refusing (without reading it all) a file over ``limit``."""
    try:
        size = os.stat(path).st_size
        if size > limit:
            raise ListError(f"{path}: {what} is {size} bytes, more than the limit of {limit} "
                            "bytes ([lists] max_file_bytes)")
        with open(path, "rb") as handle:
            return read_stream(handle, limit, f"{path}: {what}")
    except OSError as error:
        raise ListError(f"cannot read {path}: {error.strerror}") from None


def read_stream(stream: IO[bytes], limit: int, what: str) -> bytes:
    """Read ``stream`` to its end in chunks, failing as soon as more than ``limit`` bytes
    arrived (so memory stays bounded whatever the stream claims)."""
    parts: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(min(_CHUNK, limit + 1 - total))
        if not chunk:
            return b"".join(parts)
        total += len(chunk)
        if total > limit:
            raise ListError(f"{what} is larger than the limit of {limit} bytes")
        parts.append(chunk)
