"""Sealing, blind indexes and per-day data keys.

Key hierarchy:

- the **master key** (32 bytes, key file or systemd credential) never seals data; HKDF
  derives from it the key-encryption key of the keyring, a check value that tells a
  wrong key from a damaged store, and the key of the published-list digests;
- one random **day secret** per UTC day, kept in the keyring file wrapped (AES-GCM) by
  the master key; HKDF derives from it the day's AES-256-GCM data key and its HMAC key
  for blind indexes. Everything about a day is sealed with that day's key, so
  destroying the day secret (dropping it from the keyring) makes every copy of that
  day's rows unreadable, including copies of the database taken earlier
  (crypto-shredding).

Every sealed blob is ``nonce (12) || AES-GCM ciphertext``; the associated data names
the blob's table, day and row key, so a blob copied to another row does not open.
"""

from __future__ import annotations

import hmac
import os
import secrets
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bzlogger.errors import StoreError
from bzlogger.ids.schedule import DayKeys
from bzlogger.model import IDENTIFIER_LENGTH, Encounter, Exposure, Platform, Protocol

DAY_SECONDS = 86_400
HOUR_SECONDS = 3_600
NONCE_LENGTH = 12
INDEX_LENGTH = 16
KEYRING_MAGIC = b"BZLOGGER-KEYRING-1\n"

PROTOCOL_CODE: dict[Protocol, int] = {Protocol.BLUEZONE: 1, Protocol.GAEN: 2}
CODE_PROTOCOL: dict[int, Protocol] = {code: p for p, code in PROTOCOL_CODE.items()}
_PLATFORMS = list(Platform)


def _hkdf(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)


def _seal(aead: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_LENGTH)
    return nonce + aead.encrypt(nonce, plaintext, aad)


def day_number(unix_s: float) -> int:
    """Whole UTC days since the epoch."""
    return int(unix_s // DAY_SECONDS)


def hour_number(unix_s: float) -> int:
    """Whole hours since the epoch."""
    return int(unix_s // HOUR_SECONDS)


class MasterKeys:
    """Keys derived from the master key."""

    def __init__(self, master: bytes) -> None:
        if len(master) != 32:
            raise ValueError("the master key must be 32 bytes")
        self._kek = AESGCM(_hkdf(master, b"bzlogger keyring v1"))
        self._check = AESGCM(_hkdf(master, b"bzlogger key check v1"))
        self._lists = _hkdf(master, b"bzlogger list digests v1")
        self._lists_aead = AESGCM(_hkdf(master, b"bzlogger list names v1"))

    def check_value(self, store_id: bytes) -> bytes:
        """A sealed constant stored in the database: it opens only with this key."""
        return _seal(self._check, b"bzlogger", b"check" + store_id)

    def verify(self, check_value: bytes, store_id: bytes) -> bool:
        """Whether ``check_value`` was made with this master key for this store."""
        try:
            self._check.decrypt(check_value[:NONCE_LENGTH], check_value[NONCE_LENGTH:],
                                b"check" + store_id)
        except InvalidTag:
            return False
        return True

    def list_digest(self, digest: bytes) -> bytes:
        """A keyed digest of a published list's hash (the hash itself is not stored)."""
        return hmac.digest(self._lists, b"list" + digest, "sha256")[:INDEX_LENGTH]

    def seal_list_name(self, name: str, index: bytes) -> bytes:
        """Seal a processed list's name."""
        return _seal(self._lists_aead, name.encode(), b"list" + index)

    def open_list_name(self, blob: bytes, index: bytes) -> str:
        """Open what :meth:`seal_list_name` sealed."""
        return self._lists_aead.decrypt(blob[:NONCE_LENGTH], blob[NONCE_LENGTH:],
                                        b"list" + index).decode()

    def wrap_keyring(self, payload: bytes, store_id: bytes) -> bytes:
        """The keyring file's content for ``payload``."""
        return KEYRING_MAGIC + _seal(self._kek, payload, KEYRING_MAGIC + store_id)

    def unwrap_keyring(self, data: bytes, store_id: bytes, path: Path) -> bytes:
        """The payload of a keyring file; refuses a damaged or foreign one."""
        if not data.startswith(KEYRING_MAGIC):
            raise StoreError(f"keyring {path} is not a bzlogger keyring; restore it from backup")
        blob = data[len(KEYRING_MAGIC):]
        try:
            return self._kek.decrypt(blob[:NONCE_LENGTH], blob[NONCE_LENGTH:],
                                     KEYRING_MAGIC + store_id)
        except InvalidTag:
            raise StoreError(
                f"keyring {path} does not open with this key or belongs to another store; "
                "restore it from backup (nothing was changed)"
            ) from None


class DayKey:
    """The data key and blind-index key of one UTC day."""

    __slots__ = ("_index", "aead", "day")

    def __init__(self, day: int, secret: bytes) -> None:
        self.day = day
        self.aead = AESGCM(_hkdf(secret, b"bzlogger day data v1"))
        self._index = _hkdf(secret, b"bzlogger day index v1")

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """``nonce || ciphertext`` bound to ``aad``."""
        return _seal(self.aead, plaintext, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        """Open what :meth:`seal` sealed; raises StoreError when it does not verify."""
        try:
            return self.aead.decrypt(blob[:NONCE_LENGTH], blob[NONCE_LENGTH:], aad)
        except InvalidTag:
            raise StoreError(
                f"a sealed record of day {self.day} does not verify: the store was "
                "tampered with or damaged"
            ) from None

    def blind(self, protocol: Protocol, identifier: bytes) -> bytes:
        """The blind index of an identifier on this day (HMAC, truncated)."""
        message = b"b" + bytes((PROTOCOL_CODE[protocol],)) + identifier
        return hmac.digest(self._index, message, "sha256")[:INDEX_LENGTH]

    def row_key(self, protocol: Protocol, identifier: bytes, first_seen: float) -> bytes:
        """The stable, opaque key of an encounter (or exposure) row."""
        message = (b"r" + bytes((PROTOCOL_CODE[protocol],)) + identifier
                   + struct.pack("<d", first_seen))
        return hmac.digest(self._index, message, "sha256")[:INDEX_LENGTH]


@dataclass(slots=True)
class Keyring:
    """The day secrets of a store, as kept in its keyring file."""

    secrets: dict[int, bytes] = field(default_factory=dict)
    _cache: dict[int, DayKey] = field(default_factory=dict)

    def get(self, day: int) -> DayKey | None:
        """The key of ``day``, None when it has none (never created, or destroyed)."""
        key = self._cache.get(day)
        if key is None:
            secret = self.secrets.get(day)
            if secret is None:
                return None
            key = self._cache[day] = DayKey(day, secret)
        return key

    def add(self, day: int) -> None:
        """Create a fresh secret for ``day``."""
        self.secrets[day] = secrets.token_bytes(32)

    def drop_before(self, day: int) -> list[int]:
        """Forget the secrets of days before ``day``; returns the days dropped."""
        gone = sorted(d for d in self.secrets if d < day)
        for d in gone:
            del self.secrets[d]
            self._cache.pop(d, None)
        return gone

    def encode(self) -> bytes:
        """The plaintext payload (day, secret) pairs."""
        return b"".join(struct.pack("<i", d) + s for d, s in sorted(self.secrets.items()))

    @classmethod
    def decode(cls, payload: bytes) -> Keyring:
        """Parse :meth:`encode`'s output."""
        if len(payload) % 36:
            raise StoreError("the keyring's content is malformed")
        found = {}
        for offset in range(0, len(payload), 36):
            (day,) = struct.unpack_from("<i", payload, offset)
            found[day] = payload[offset + 4:offset + 36]
        return cls(found)


def read_keyring(path: Path, master: MasterKeys, store_id: bytes) -> Keyring:
    """Load and open the keyring file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StoreError(
            f"the store's keyring {path} is missing, so its data cannot be read; restore "
            "it from backup (nothing was changed)"
        ) from None
    except OSError as error:
        raise StoreError(f"cannot read keyring {path}: {error.strerror}") from None
    return Keyring.decode(master.unwrap_keyring(data, store_id, path))


def write_keyring(path: Path, keyring: Keyring, master: MasterKeys, store_id: bytes) -> None:
    """Replace the keyring file atomically and durably (temp file, fsync, rename)."""
    data = master.wrap_keyring(keyring.encode(), store_id)
    temp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as error:
        raise StoreError(f"cannot write keyring {path}: {error.strerror}; check that this "
                         "user may write the store's directory") from None


# Encounter record: version, identifier (12 or 16 bytes, per protocol), first, last,
# samples, rssi_max, median, mean, close_s, tx_power, has_tx_power, platform, aem,
# has_aem; then the flags as comma-separated UTF-8 (usually none).
_ENCOUNTER_VERSION = 1
_RECORDS: dict[int, struct.Struct] = {
    code: struct.Struct(f"<B{IDENTIFIER_LENGTH[protocol]}sddIhdddh?B4s?")
    for protocol, code in PROTOCOL_CODE.items()
}
_NO_FLAGS: frozenset[str] = frozenset()
_flag_sets: dict[bytes, frozenset[str]] = {b"": _NO_FLAGS}


def encounter_aad(protocol_code: int, day: int, row_key: bytes) -> bytes:
    """Associated data of an encounter blob: its table, protocol, day and row."""
    return _encounter_aad_prefix(protocol_code, day) + row_key


def _encounter_aad_prefix(protocol_code: int, day: int) -> bytes:
    return b"enc" + struct.pack("<Bi", protocol_code, day)


def encode_encounter(e: Encounter) -> bytes:
    """The plaintext record of an encounter."""
    return _RECORDS[PROTOCOL_CODE[e.protocol]].pack(
        _ENCOUNTER_VERSION, e.identifier, e.first_seen, e.last_seen, e.samples, e.rssi_max,
        e.rssi_median, e.rssi_mean, e.close_s, e.tx_power or 0, e.tx_power is not None,
        _PLATFORMS.index(e.platform), e.aem or bytes(4), e.aem is not None,
    ) + ",".join(sorted(e.flags)).encode()


def _flags(raw: bytes) -> frozenset[str]:
    flags = _flag_sets.get(raw)
    if flags is None:
        flags = _flag_sets[raw] = frozenset(raw.decode().split(","))
    return flags


def open_encounters(key: DayKey, protocol_code: int,
                    rows: Iterable[tuple[bytes, int, int, bytes]]) -> list[Encounter]:
    """Open and decode ``(row key, protocol code, day, blob)`` rows, all of
    ``protocol_code`` and of the key's day.

    This is the hot path of bulk reads (matching decrypts the whole store), hence the
    local names and the single try around the loop.
    """
    protocol = CODE_PROTOCOL[protocol_code]
    record = _RECORDS[protocol_code]
    unpack, size = record.unpack_from, record.size
    decrypt = key.aead.decrypt
    prefix = _encounter_aad_prefix(protocol_code, key.day)
    platforms = _PLATFORMS
    out: list[Encounter] = []
    append = out.append
    try:
        for rk, _code, _day, blob in rows:
            plain = decrypt(blob[:NONCE_LENGTH], blob[NONCE_LENGTH:], prefix + rk)
            (version, ident, first, last, samples, rssi_max, median, mean, close, tx, has_tx,
             platform, aem, has_aem) = unpack(plain)
            if version != _ENCOUNTER_VERSION:
                raise StoreError(f"unknown encounter record version {version}")
            append(Encounter(
                protocol, ident, first, last, samples, rssi_max, median, mean, close,
                tx if has_tx else None, aem if has_aem else None, platforms[platform],
                _NO_FLAGS if len(plain) == size else _flags(plain[size:]),
            ))
    except InvalidTag:
        raise StoreError(f"a sealed encounter of day {key.day} does not verify: the store "
                         "was tampered with or damaged") from None
    return out


def segment_aad(protocol_code: int, day: int, segment_key: bytes) -> bytes:
    """Associated data of a segment blob: its table, protocol, day and segment key."""
    return b"seg" + struct.pack("<Bi", protocol_code, day) + segment_key


_SEGMENT_ENTRY = struct.Struct("<16sH")  # row key, record length


def pack_segment(entries: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The plaintext of a segment: ``(row key, encounter record)`` entries."""
    return b"".join(_SEGMENT_ENTRY.pack(rk, len(record)) + record for rk, record in entries)


def segment_entries(plaintext: bytes) -> list[tuple[bytes, bytes]]:
    """The ``(row key, encounter record)`` entries of a segment's plaintext."""
    out = []
    offset, end = 0, len(plaintext)
    while offset < end:
        rk, length = _SEGMENT_ENTRY.unpack_from(plaintext, offset)
        start = offset + _SEGMENT_ENTRY.size
        out.append((rk, plaintext[start:start + length]))
        offset = start + length
    return out


def open_segment(key: DayKey, protocol_code: int, segment_key: bytes, blob: bytes
                 ) -> list[Encounter]:
    """Open a segment (many finished encounters of one day and protocol, sealed together)
    and decode its encounters. The bulk-read hot path, like :func:`open_encounters`."""
    plain = key.open(blob, segment_aad(protocol_code, key.day, segment_key))
    protocol = CODE_PROTOCOL[protocol_code]
    record = _RECORDS[protocol_code]
    unpack, size = record.unpack_from, record.size
    entry = _SEGMENT_ENTRY.size
    platforms = _PLATFORMS
    out: list[Encounter] = []
    append = out.append
    offset, end = 0, len(plain)
    while offset < end:
        length = plain[offset + 16] | plain[offset + 17] << 8
        start = offset + entry
        (version, ident, first, last, samples, rssi_max, median, mean, close, tx, has_tx,
         platform, aem, has_aem) = unpack(plain, start)
        if version != _ENCOUNTER_VERSION:
            raise StoreError(f"unknown encounter record version {version}")
        append(Encounter(
            protocol, ident, first, last, samples, rssi_max, median, mean, close,
            tx if has_tx else None, aem if has_aem else None, platforms[platform],
            _NO_FLAGS if length == size else _flags(plain[start + size:start + length]),
        ))
        offset = start + length
    return out


def decode_encounter(protocol: Protocol, record: bytes) -> Encounter:
    """Rebuild an encounter from :func:`encode_encounter`'s output."""
    code = PROTOCOL_CODE[protocol]
    layout = _RECORDS[code]
    (version, ident, first, last, samples, rssi_max, median, mean, close, tx, has_tx, platform,
     aem, has_aem) = layout.unpack_from(record)
    if version != _ENCOUNTER_VERSION:
        raise StoreError(f"unknown encounter record version {version}")
    return Encounter(protocol, ident, first, last, samples, rssi_max, median, mean, close,
                     tx if has_tx else None, aem if has_aem else None, _PLATFORMS[platform],
                     _flags(record[layout.size:]))


def own_keys_aad(day: int) -> bytes:
    """Associated data of the kiosk's own keys of ``day``."""
    return b"own" + struct.pack("<i", day)


def encode_own_keys(keys: DayKeys) -> bytes:
    """The plaintext record of the kiosk's own keys of a day."""
    return struct.pack("<q", keys.day_start) + keys.bluezone_key + keys.gaen_tek


def decode_own_keys(record: bytes) -> DayKeys:
    """Rebuild :class:`DayKeys` from :func:`encode_own_keys`'s output."""
    (day_start,) = struct.unpack_from("<q", record)
    return DayKeys(day_start, record[8:40], record[40:56])


_EXPOSURE = struct.Struct("<BB16sddIhddd?dB")


def exposure_aad(day: int, row_key: bytes) -> bytes:
    """Associated data of an exposure blob."""
    return b"exp" + struct.pack("<i", day) + row_key


def encode_exposure(x: Exposure) -> bytes:
    """The plaintext record of an exposure; the list key follows the fixed part."""
    return _EXPOSURE.pack(
        1, PROTOCOL_CODE[x.protocol], x.identifier, x.first_seen, x.last_seen, x.samples,
        x.rssi_max, x.rssi_median, x.risk, x.close_s, x.attenuation_db is not None,
        x.attenuation_db or 0.0, len(x.list_key),
    ) + x.list_key


def decode_exposure(record: bytes) -> Exposure:
    """Rebuild an exposure from :func:`encode_exposure`'s output."""
    (_version, code, ident, first, last, samples, rssi_max, median, risk, close, has_att, att,
     key_len) = _EXPOSURE.unpack_from(record)
    protocol = CODE_PROTOCOL[code]
    list_key = record[_EXPOSURE.size:_EXPOSURE.size + key_len]
    return Exposure(protocol, ident[:IDENTIFIER_LENGTH[protocol]], list_key, first, last,
                    samples, rssi_max, median, att if has_att else None, risk, close)
