"""Bluezone published infected lists (``shared/reference/bluezone.md``, "F0"):
``{"data":[{"daily_key":"<64 hex>","time_start":<unix s>,"time_end":<unix s>,"max":96}]}``.

The reader is strict: every entry must have exactly these four fields with sane values;
the first problem is reported with its entry number and field, and nothing is returned.
Entries are decoded one at a time from the text (``json.JSONDecoder.raw_decode``), so
memory stays proportional to the file, which :mod:`limits` bounds before reading.
:func:`write_list` produces the same format for the kiosk's own keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from bzlogger.errors import ListError
from bzlogger.ids import bluezone
from bzlogger.lists.limits import DEFAULT_LIMITS, Limits

#: Bluezone went live in 2020: an older daily key is an impossible time.
_EARLIEST = 1_577_836_800  # 2020-01-01T00:00:00Z
#: One entry may continue its chain over several days, but not without end.
MAX_ENTRY_DAYS = 31
_FIELDS = ("daily_key", "time_start", "time_end", "max")
_VALID_MAX = frozenset(n for n in range(1, bluezone.DAY_SECONDS + 1)
                       if bluezone.DAY_SECONDS % n == 0)
_decoder = json.JSONDecoder()
_whitespace = re.compile(r"[ \t\n\r]*").match


class BluezoneEntry(NamedTuple):
    """One published daily key and the time it covers (``time_end`` inclusive); a tuple,
    as lists hold hundreds of thousands."""

    daily_key: bytes
    time_start: int
    time_end: int
    max_ids: int = bluezone.DEFAULT_MAX

    @property
    def days(self) -> int:
        """Number of days the chain covers from ``time_start``."""
        return (self.time_end - self.time_start) // bluezone.DAY_SECONDS + 1


def looks_like_json(head: bytes) -> bool:
    """Whether the first bytes of a file look like a JSON object."""
    return head.lstrip(b" \t\r\n\xef\xbb\xbf").startswith(b"{")


def read_list(data: bytes, limits: Limits = DEFAULT_LIMITS, name: str = "list.json"
              ) -> list[BluezoneEntry]:
    """Parse and validate a published list; :class:`ListError` naming the entry and field
    of the first problem."""
    if len(data) > limits.max_file_bytes:
        raise ListError(f"{name}: {len(data)} bytes, more than the limit of "
                        f"{limits.max_file_bytes} bytes ([lists] max_file_bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ListError(f"{name}: not UTF-8 text (byte {error.start})") from None
    entries: list[BluezoneEntry] = []
    seen: set[bytes] = set()
    day, earliest, longest = bluezone.DAY_SECONDS, _EARLIEST, MAX_ENTRY_DAYS * bluezone.DAY_SECONDS
    for number, raw in enumerate(_raw_entries(text, name), 1):
        if number > limits.max_entries:
            raise ListError(f"{name}: more than {limits.max_entries} entries (the limit)")
        # Fast path: one expression checks a well-formed entry; anything else goes to
        # _entry, which says exactly what is wrong.
        try:
            key_hex, start, end = raw["daily_key"], raw["time_start"], raw["time_end"]
            max_ids = raw["max"]
            valid = (len(raw) == 4 and type(key_hex) is str and len(key_hex) == 64
                     and type(start) is int and type(end) is int and type(max_ids) is int
                     and start % day == 0 and start >= earliest and start <= end < start + longest
                     and max_ids in _VALID_MAX)
            key = bytes.fromhex(key_hex) if valid else b""
        except (TypeError, KeyError, ValueError):
            key = b""
        if len(key) != bluezone.KEY_LENGTH:  # the slow path: raises for a bad entry
            key, start, end, max_ids = _entry(raw, f"{name}: entry {number}")
        if key in seen:
            first = next(n for n, e in enumerate(entries, 1) if e.daily_key == key)
            raise ListError(f"{name}: entry {number}: daily_key duplicates entry {first}")
        seen.add(key)
        entries.append(BluezoneEntry(key, start, end, max_ids))
    return entries


def _raw_entries(text: str, name: str) -> Iterator[Any]:
    """The items of the top-level ``data`` array, decoded one by one."""
    pos = _skip(text, 0)
    if not text.startswith("{", pos):
        raise ListError(f'{name}: not a Bluezone list: expected a JSON object {{"data": [...]}}')
    pos = _skip(text, pos + 1)
    found = False
    while not text.startswith("}", pos):
        key, pos = _decode(text, pos, name)
        if not isinstance(key, str):
            raise ListError(f"{name}: invalid JSON at character {pos}: expected a key")
        pos = _expect(text, pos, ":", name)
        if key == "data":
            if found:
                raise ListError(f'{name}: "data" appears twice')
            found = True
            pos = _expect(text, pos, "[", name)
            while not text.startswith("]", pos):
                item, pos = _decode(text, pos, name)
                yield item
                if not text.startswith("]", pos):
                    pos = _expect(text, pos, ",", name)
            pos = _skip(text, pos + 1)
        else:
            _, pos = _decode(text, pos, name)  # other top-level keys are ignored
        if not text.startswith("}", pos):
            pos = _expect(text, pos, ",", name)
    if _skip(text, pos + 1) != len(text):
        raise ListError(f"{name}: invalid JSON: extra data after the object")
    if not found:
        raise ListError(f'{name}: not a Bluezone list: no "data" array')


def _skip(text: str, pos: int) -> int:
    found = _whitespace(text, pos)
    return found.end() if found else pos  # the pattern matches the empty string too


def _expect(text: str, pos: int, char: str, name: str) -> int:
    if not text.startswith(char, pos):
        raise ListError(f"{name}: invalid JSON at character {pos}: expected {char!r}")
    return _skip(text, pos + 1)


def _decode(text: str, pos: int, name: str) -> tuple[Any, int]:
    try:
        value, end = _decoder.raw_decode(text, pos)
    except json.JSONDecodeError as error:
        raise ListError(f"{name}: invalid JSON at line {error.lineno} column {error.colno}: "
                        f"{error.msg}") from None
    except RecursionError:
        raise ListError(f"{name}: invalid JSON: nested too deeply") from None
    except ValueError as error:  # e.g. an integer longer than Python converts (4300 digits)
        raise ListError(f"{name}: invalid JSON at character {pos}: {error}") from None
    return value, _skip(text, end)


def _entry(raw: Any, where: str) -> BluezoneEntry:
    if not isinstance(raw, dict):
        raise ListError(f"{where}: expected an object with {', '.join(_FIELDS)}")
    missing = [f for f in _FIELDS if f not in raw]
    if missing:
        raise ListError(f"{where}: missing field {missing[0]}")
    extra = sorted(set(raw) - set(_FIELDS))
    if extra:
        raise ListError(f"{where}: unknown field {extra[0]}")
    key_hex = raw["daily_key"]
    if not isinstance(key_hex, str) or len(key_hex) != 2 * bluezone.KEY_LENGTH:
        raise ListError(f"{where}: daily_key must be {2 * bluezone.KEY_LENGTH} hex digits")
    try:
        key = bytes.fromhex(key_hex)
    except ValueError:
        key = b""
    if len(key) != bluezone.KEY_LENGTH:  # fromhex also skips spaces
        raise ListError(f"{where}: daily_key is not hexadecimal")
    start, end, max_ids = (_integer(raw, f, where) for f in ("time_start", "time_end", "max"))
    try:
        bluezone.validate_max(max_ids)
    except ValueError as error:
        raise ListError(f"{where}: max: {error}") from None
    if start % bluezone.DAY_SECONDS:
        raise ListError(f"{where}: time_start {start} is not a UTC midnight")
    if start < _EARLIEST:
        raise ListError(f"{where}: time_start {start} is before 2020, an impossible time")
    if end < start:
        raise ListError(f"{where}: time_end {end} is before time_start {start}")
    if end - start >= MAX_ENTRY_DAYS * bluezone.DAY_SECONDS:
        raise ListError(f"{where}: time_end is more than {MAX_ENTRY_DAYS} days after "
                        "time_start")
    return BluezoneEntry(key, start, end, max_ids)


def _integer(raw: dict[str, Any], field: str, where: str) -> int:
    value = raw[field]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ListError(f"{where}: {field} must be a whole number, got {value!r}")
    return value


def write_list(entries: Sequence[BluezoneEntry]) -> str:
    """The published-list JSON for ``entries`` (hex in lower case)."""
    data = [{"daily_key": e.daily_key.hex(), "time_start": e.time_start,
             "time_end": e.time_end, "max": e.max_ids} for e in entries]
    return json.dumps({"data": data}, indent=1) + "\n"
