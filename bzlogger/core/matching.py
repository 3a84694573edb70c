"""Matching published keys against stored encounters (pure: no I/O, no clock).

Both matchers index the stored identifiers once, then take published keys in chunks:

- **GAEN**: per TEK one HKDF (two HMAC-SHA256 calls, the first with its zero-key pads
  precomputed) and one AES-ECB call over a prepared buffer of the key's
  ``rolling_period`` intervals. The RPIs of a whole chunk of keys are then looked up at
  once: the first 8 bytes of each RPI select a bit in a 2**24-entry table of the stored
  RPIs (numpy, so no Python work per RPI); only the rare hits are confirmed against the
  exact 16-byte identifier and the sighting time: an encounter counts when it overlaps
  the RPI's interval widened by :data:`GAEN_TOLERANCE_S` (2 hours of clock drift, as in
  the reference). Keys whose validity (+- tolerance) touches no day with a stored
  sighting are skipped without any crypto.
- **Bluezone**: per daily key the sub-key chain ``S_0 = SHA256(D || "bluzonesubkey")``,
  ``S_{i+1} = SHA256(S_i)`` over the slots from ``time_start`` to ``time_end``, the chain
  continuing with ``D = SHA256(D)`` every ``max`` slots, exactly as the phone does. A
  day without stored sightings only advances ``D``. The ID of slot ``i`` is
  ``S_i[0:13:4] + S_i[16::2]``; the chunk's sub-keys are looked up like RPIs (bytes
  16, 18, 20 and 22 of each sub-key select the bit), and hits are confirmed against the
  exact 12-byte ID and the slot's time widened by :data:`BLUEZONE_TOLERANCE_S`.

The matchers return :class:`Hit` records; :func:`gaen_exposure` and
:func:`bluezone_exposure` turn them into :class:`~bzlogger.model.Exposure` (decrypting
the GAEN metadata for the sender's TX power, hence the attenuation, and scoring the
risk with :mod:`bzlogger.core.risk`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol as TypingProtocol

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from bzlogger.core import risk
from bzlogger.ids import bluezone, gaen
from bzlogger.model import IDENTIFIER_LENGTH, Encounter, Exposure, Protocol

#: A sighting may be this far outside its RPI's interval (phone clock drift, GAEN spec).
GAEN_TOLERANCE_S = 2 * 3600
#: A Bluezone sighting may be this far outside its slot (phone clock skew, and iOS IDs
#: read over GATT that a scanner cached until the slot changed).
BLUEZONE_TOLERANCE_S = 10 * 60
#: log2 of the lookup table's size in bits (2**24 bits = 2 MiB, shared by the worker
#: processes copy-on-write). With 100,000 stored identifiers about 0.6 % of the probes
#: are false candidates, each costing one dict lookup.
_TABLE_BITS = 24
_MIX = np.uint64(0x9E3779B97F4A7C15)
_DAY = bluezone.DAY_SECONDS
_INTERVALS_PER_DAY = gaen.DEFAULT_ROLLING_PERIOD
_ECB = modes.ECB()  # noqa: S305 - the GAEN spec's RPI construction
_RPIK_INFO = b"EN-RPIK\x01"  # HKDF-Expand of one block: HMAC(PRK, info || 0x01)
# HKDF-Extract with salt None is HMAC(32 zero bytes, TEK): hash the fixed key pads once.
_EXTRACT_INNER = hashlib.sha256(bytes([0x36] * 64))
_EXTRACT_OUTER = hashlib.sha256(bytes([0x5C] * 64))
# HMAC pads for a 32-byte key: XOR tables for the key bytes, and the padding's rest.
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))
_IPAD_TAIL = bytes([0x36] * 32)
_OPAD_TAIL = bytes([0x5C] * 32)
_BLUEZONE_ID_MASK = np.uint64(0x00FF00FF00FF00FF)
#: Keys looked up together: the chunk's RPIs or sub-keys (~1.5 MB) stay in the CPU caches.
_BATCH = 512
_UNKNOWN = b"?"  # a cache miss (None is a cached "cannot match")


def _public_encryptor(algorithm: algorithms.AES, mode: modes.ECB) -> CipherContext:
    return Cipher(algorithm, mode).encryptor()


def _fast_encryptor() -> Callable[[algorithms.AES, modes.ECB], CipherContext]:
    """``Cipher(algorithm, mode).encryptor()`` without the wrapper's per-call type checks
    (a third of the AES cost per TEK), when this cryptography version has the same
    internal entry point; the public API otherwise."""
    try:
        from cryptography.hazmat.bindings._rust import openssl as rust_openssl

        create: Callable[[algorithms.AES, modes.ECB], CipherContext] = (
            rust_openssl.ciphers.create_encryption_ctx)
        probe = create(algorithms.AES(bytes(16)), _ECB).update(bytes(16))
        if probe == _public_encryptor(algorithms.AES(bytes(16)), _ECB).update(bytes(16)):
            return create
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - other versions
        pass
    return _public_encryptor  # pragma: no cover - other versions


_encryptor = _fast_encryptor()


class TekLike(TypingProtocol):
    """A published Temporary Exposure Key (e.g. ``lists.gaen_export.ExportKey``)."""

    @property
    def key_data(self) -> bytes: ...
    @property
    def rolling_start(self) -> int: ...
    @property
    def rolling_period(self) -> int: ...


class DailyKeyLike(TypingProtocol):
    """A published Bluezone daily key (e.g. ``lists.bluezone_list.BluezoneEntry``)."""

    @property
    def daily_key(self) -> bytes: ...
    @property
    def time_start(self) -> int: ...
    @property
    def time_end(self) -> int: ...
    @property
    def max_ids(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Hit:
    """Key number ``key_index`` (in the sequence given to the matcher) produced the
    identifier of stored encounter ``encounter_index`` in the slot ``[start, end)``."""

    key_index: int
    encounter_index: int
    start: int
    end: int


def rpi_key(tek: bytes) -> bytes:
    """``HKDF(TEK, None, "EN-RPIK", 16)`` with plain SHA-256 calls (same value as
    :func:`bzlogger.ids.gaen.rpik`, a few times faster): Extract is HMAC(32 zero bytes,
    TEK) from the precomputed pads; Expand of one block is HMAC(PRK, info || 0x01), with
    the 32-byte PRK XORed into its pads by ``bytes.translate``."""
    inner = _EXTRACT_INNER.copy()
    inner.update(tek)
    outer = _EXTRACT_OUTER.copy()
    outer.update(inner.digest())
    prk = outer.digest()
    digest = hashlib.sha256
    expand_inner = digest(prk.translate(_IPAD) + _IPAD_TAIL + _RPIK_INFO).digest()
    return digest(prk.translate(_OPAD) + _OPAD_TAIL + expand_inner).digest()[:16]


def _padded_buffer(first_interval: int, count: int) -> bytes:
    return b"".join(gaen.padded_data(first_interval + j) for j in range(count))


def _days_touched(first: float, last: float, tolerance: float) -> range:
    return range(int((first - tolerance) // _DAY), int((last + tolerance) // _DAY) + 1)


class _Index:
    """Stored identifiers of one protocol: exact map plus the bit table of their hashes."""

    def __init__(self, encounters: Sequence[Encounter], protocol: Protocol,
                 tolerance: float) -> None:
        length = IDENTIFIER_LENGTH[protocol]
        self.encounters = [e for e in encounters
                           if e.protocol is protocol and len(e.identifier) == length]
        self.by_id: dict[bytes, list[int]] = {}
        # UTC day number -> the latest time (tolerance included) a sighting of that day
        # can match: a day missing here needs no identifiers, a day's later slots neither.
        self.active_days: dict[int, float] = {}
        for number, encounter in enumerate(self.encounters):
            self.by_id.setdefault(encounter.identifier, []).append(number)
            latest = encounter.last_seen + tolerance
            for day in _days_touched(encounter.first_seen, encounter.last_seen, tolerance):
                if self.active_days.get(day, -1.0) < latest:
                    self.active_days[day] = latest
        # One bit per hash value: 2 MiB, small enough to stay in the CPU caches.
        self.table = np.zeros(1 << (_TABLE_BITS - 3), dtype=np.uint8)
        self.tolerance = tolerance

    def mark(self, hashes: npt.NDArray[np.uint64]) -> None:
        """Set the bits of ``hashes`` (values below 2**_TABLE_BITS)."""
        values = hashes.astype(np.intp)
        np.bitwise_or.at(self.table, values >> 3, np.left_shift(1, values & 7).astype(np.uint8))

    def candidates(self, hashes: npt.NDArray[np.uint64]) -> npt.NDArray[np.intp]:
        """Positions whose hash is in the table (a superset of the true hits)."""
        if not hashes.size:
            return np.empty(0, dtype=np.intp)
        values = hashes.astype(np.uint32)
        bits = (self.table[values >> 3] >> (values & 7).astype(np.uint8)) & 1
        return np.flatnonzero(bits)

    def confirm(self, identifier: bytes, start: int, end: int) -> list[int]:
        """Encounters of ``identifier`` overlapping ``[start, end)`` +- tolerance."""
        numbers = self.by_id.get(identifier)
        if not numbers:
            return []
        low, high = start - self.tolerance, end + self.tolerance
        return [n for n in numbers
                if self.encounters[n].last_seen >= low and self.encounters[n].first_seen <= high]


def _hash_words(words: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Spread 64-bit words over the table (the multiplication wraps, as intended)."""
    with np.errstate(over="ignore"):
        return (words * _MIX) >> np.uint64(64 - _TABLE_BITS)


def _bluezone_words(identifiers: bytes) -> npt.NDArray[np.uint64]:
    """For 12-byte IDs: bytes 4..7 spread into the positions they have in a sub-key's
    bytes 16..23 (see :func:`_subkey_words`)."""
    ids = np.frombuffer(identifiers, dtype=np.uint8).reshape(-1, bluezone.ID_LENGTH)
    spread = np.zeros((ids.shape[0], 8), dtype=np.uint8)
    spread[:, 0::2] = ids[:, 4:8]
    return spread.view("<u8").reshape(-1)


def _subkey_words(subkeys: bytes) -> npt.NDArray[np.uint64]:
    """Sub-key bytes 16, 18, 20, 22 (= ID bytes 4..7) as masked little-endian words."""
    words = np.frombuffer(subkeys, dtype="<u8").reshape(-1, 4)[:, 2]
    return words & _BLUEZONE_ID_MASK


class GaenMatcher:
    """Finds stored GAEN encounters whose RPI a published TEK generates."""

    def __init__(self, encounters: Sequence[Encounter],
                 tolerance_s: float = GAEN_TOLERANCE_S) -> None:
        self.index = _Index(encounters, Protocol.GAEN, tolerance_s)
        ids = b"".join(e.identifier for e in self.index.encounters)
        if ids:
            self.index.mark(_hash_words(np.frombuffer(ids, dtype="<u8")[::2]))
        # first interval * 256 + count -> see _buffer (an int key hashes fastest).
        self._buffers: dict[int, bytes | None] = {}

    @property
    def encounters(self) -> list[Encounter]:
        """The stored GAEN encounters, in the order :class:`Hit` numbers them."""
        return self.index.encounters

    def _buffer(self, first_interval: int, count: int) -> bytes | None:
        """The plaintext of ``count`` intervals from ``first_interval`` (cached under
        ``first_interval * 256 + count``), None when no stored sighting is near enough in
        time for any of them to match."""
        first = gaen.interval_start(first_interval)
        last = gaen.interval_start(first_interval + count)
        plausible = any(day in self.index.active_days
                        for day in _days_touched(first, last, self.index.tolerance))
        buffer = _padded_buffer(first_interval, count) if plausible else None
        self._buffers[first_interval * 256 + count] = buffer
        return buffer

    def match(self, keys: Sequence[TekLike]) -> list[Hit]:
        """Hits of ``keys`` (numbered by their position in ``keys``)."""
        if not self.index.by_id:
            return []
        hits: list[Hit] = []
        for first in range(0, len(keys), _BATCH):
            hits += self._match_batch(keys[first:first + _BATCH], first)
        return hits

    def _match_batch(self, keys: Sequence[TekLike], numbered_from: int) -> list[Hit]:
        # The per-key loop is the hot path: locals only, one append per array.
        aes, ecb, encryptor, derive = algorithms.AES, _ECB, _encryptor, rpi_key
        buffers = self._buffers
        parts: list[bytes] = []
        used: list[tuple[int, int, int]] = []  # (key number, first interval, intervals)
        for number, key in enumerate(keys, numbered_from):
            start, period = key.rolling_start, key.rolling_period
            buffer = buffers.get(start * 256 + period, _UNKNOWN)
            if buffer is _UNKNOWN:
                buffer = self._buffer(start, period)
            if buffer is None:
                continue
            parts.append(encryptor(aes(derive(key.key_data)), ecb).update(buffer))
            used.append((number, start, period))
        if not parts:
            return []
        rpis = b"".join(parts)
        found = self.index.candidates(_hash_words(np.frombuffer(rpis, dtype="<u8")[::2]))
        if not found.size:
            return []
        ends = np.cumsum([period for _, _, period in used])
        owners = np.searchsorted(ends, found, side="right")
        hits: list[Hit] = []
        for position, owner in zip(found.tolist(), owners.tolist(), strict=True):
            number, first, period = used[owner]
            interval = first + position - (int(ends[owner]) - period)
            identifier = rpis[position * gaen.RPI_LENGTH:(position + 1) * gaen.RPI_LENGTH]
            start = gaen.interval_start(interval)
            end = start + gaen.INTERVAL_SECONDS
            hits += [Hit(number, encounter, start, end)
                     for encounter in self.index.confirm(identifier, start, end)]
        return hits


class BluezoneMatcher:
    """Finds stored Bluezone encounters whose ID a published daily key generates."""

    def __init__(self, encounters: Sequence[Encounter],
                 tolerance_s: float = BLUEZONE_TOLERANCE_S) -> None:
        self.index = _Index(encounters, Protocol.BLUEZONE, tolerance_s)
        ids = b"".join(e.identifier for e in self.index.encounters)
        if ids:
            self.index.mark(_hash_words(_bluezone_words(ids)))

    @property
    def encounters(self) -> list[Encounter]:
        """The stored Bluezone encounters, in the order :class:`Hit` numbers them."""
        return self.index.encounters

    def match(self, entries: Sequence[DailyKeyLike]) -> list[Hit]:
        """Hits of ``entries`` (numbered by their position in ``entries``)."""
        if not self.index.by_id:
            return []
        hits: list[Hit] = []
        for first in range(0, len(entries), _BATCH):
            hits += self._match_batch(entries[first:first + _BATCH], first)
        return hits

    def _match_batch(self, entries: Sequence[DailyKeyLike], numbered_from: int) -> list[Hit]:
        sha256 = hashlib.sha256
        salt = bluezone.SUBKEY_SALT
        active = self.index.active_days
        parts: list[bytes] = []
        append = parts.append
        # Per computed run of slots: (entry number, time of its first slot, slot length).
        segments: list[tuple[int, int, int]] = []
        lengths: list[int] = []
        for number, entry in enumerate(entries):
            slot = _DAY // entry.max_ids
            total = (entry.time_end - entry.time_start) // slot + 1
            daily = entry.daily_key
            day_start = entry.time_start
            done = 0
            while done < total:
                count = min(entry.max_ids, total - done)
                latest = active.get(day_start // _DAY)
                if latest is not None:
                    # Slots starting after the day's last plausible sighting cannot match.
                    needed = min(count, int((latest - day_start) // slot) + 1)
                    subkey = sha256(daily + salt).digest()
                    append(subkey)
                    for _ in range(needed - 1):
                        subkey = sha256(subkey).digest()
                        append(subkey)
                    segments.append((numbered_from + number, day_start, slot))
                    lengths.append(needed)
                done += count
                day_start += _DAY
                if done < total:
                    daily = sha256(daily).digest()
        if not parts:
            return []
        subkeys = b"".join(parts)
        found = self.index.candidates(_hash_words(_subkey_words(subkeys)))
        if not found.size:
            return []
        ends = np.cumsum(lengths)
        owners = np.searchsorted(ends, found, side="right")
        hits: list[Hit] = []
        for position, owner in zip(found.tolist(), owners.tolist(), strict=True):
            number, first_slot_start, slot = segments[owner]
            offset = position - (int(ends[owner]) - lengths[owner])
            start = first_slot_start + offset * slot
            subkey = subkeys[position * 32:(position + 1) * 32]
            identifier = subkey[0:13:4] + subkey[16::2]
            for encounter in self.index.confirm(identifier, start, start + slot):
                hits.append(Hit(number, encounter, start, start + slot))
        return hits


def gaen_exposure(encounter: Encounter, tek: bytes) -> Exposure:
    """The exposure of a matched GAEN encounter: the AEM decrypted with the TEK's AEMK
    gives the sender's TX power, hence the attenuation."""
    attenuation: float | None = None
    if encounter.aem is not None and len(encounter.aem) == gaen.AEM_LENGTH:
        plain = gaen.aem_crypt(gaen.aemk(tek), encounter.identifier, encounter.aem)
        metadata = gaen.Metadata.decode(plain)
        if metadata.major == 1:  # an unknown major version has an unknown layout
            attenuation = risk.attenuation(metadata.tx_power, encounter.rssi_median)
    return _exposure(encounter, tek, attenuation)


def bluezone_exposure(encounter: Encounter, daily_key: bytes) -> Exposure:
    """The exposure of a matched Bluezone encounter (no calibrated TX power on the air,
    so the attenuation is unknown and the risk uses the RSSI)."""
    return _exposure(encounter, daily_key, None)


def _exposure(encounter: Encounter, list_key: bytes, attenuation: float | None) -> Exposure:
    score = risk.risk_score(encounter.duration_s, encounter.close_s, attenuation,
                            encounter.rssi_median)
    return Exposure(protocol=encounter.protocol, identifier=encounter.identifier,
                    list_key=list_key, first_seen=encounter.first_seen,
                    last_seen=encounter.last_seen, samples=encounter.samples,
                    rssi_max=encounter.rssi_max, rssi_median=encounter.rssi_median,
                    attenuation_db=attenuation, risk=score, close_s=encounter.close_s)


def exposures(hits: Iterable[Hit], encounters: Sequence[Encounter],
              list_keys: Sequence[bytes]) -> list[Exposure]:
    """Exposures of ``hits``, one per matched encounter, in time order; ``list_keys[i]``
    is the key (TEK or daily key) of key number ``i``."""
    seen: dict[int, bytes] = {}
    for hit in hits:
        seen.setdefault(hit.encounter_index, list_keys[hit.key_index])
    result = []
    for number, key in seen.items():
        encounter = encounters[number]
        if encounter.protocol is Protocol.GAEN:
            result.append(gaen_exposure(encounter, key))
        else:
            result.append(bluezone_exposure(encounter, key))
    return sorted(result, key=lambda e: (e.first_seen, e.identifier))

