"""Google/Apple Exposure Notification crypto, spec v1.2 (``shared/reference/gaen.md``).

Everything here is deterministic; fresh keys come from :func:`new_tek`, the only call
that draws randomness (``os.urandom`` through ``secrets``).
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

INTERVAL_SECONDS = 600
DEFAULT_ROLLING_PERIOD = 144
KEY_LENGTH = 16
RPI_LENGTH = 16
AEM_LENGTH = 4
SERVICE_UUID16 = 0xFD6F
SERVICE_UUID = "0000fd6f-0000-1000-8000-00805f9b34fb"
_RPI_PREFIX = b"EN-RPI" + bytes(6)
#: Metadata byte 0 for version 1.0 (major 01, minor 00).
METADATA_VERSION_1_0 = 0b0100_0000


def interval_number(unix_s: float) -> int:
    """``ENIntervalNumber(t) = floor(t / 600)``."""
    return int(unix_s // INTERVAL_SECONDS)


def interval_start(interval: int) -> int:
    """Unix time at which ``interval`` begins."""
    return interval * INTERVAL_SECONDS


def rolling_start(unix_s: float) -> int:
    """First interval of the UTC day containing ``unix_s`` (a multiple of 144)."""
    return interval_number(unix_s) // DEFAULT_ROLLING_PERIOD * DEFAULT_ROLLING_PERIOD


def new_tek() -> bytes:
    """A fresh random Temporary Exposure Key."""
    return secrets.token_bytes(KEY_LENGTH)


def _hkdf(tek: bytes, info: bytes) -> bytes:
    _check_key(tek)
    return HKDF(algorithm=hashes.SHA256(), length=16, salt=None, info=info).derive(tek)


def rpik(tek: bytes) -> bytes:
    """Rolling Proximity Identifier Key: ``HKDF(TEK, None, "EN-RPIK", 16)``."""
    return _hkdf(tek, b"EN-RPIK")


def aemk(tek: bytes) -> bytes:
    """Associated Encrypted Metadata Key: ``HKDF(TEK, None, "EN-AEMK", 16)``."""
    return _hkdf(tek, b"EN-AEMK")


def padded_data(interval: int) -> bytes:
    """``"EN-RPI" || 6 zero bytes || uint32_le(interval)``."""
    return _RPI_PREFIX + struct.pack("<I", interval & 0xFFFFFFFF)


def rpis_for(rpi_key: bytes, first_interval: int, count: int) -> list[bytes]:
    """RPIs of ``count`` consecutive intervals with one AES-ECB call over a prepared buffer."""
    if count <= 0:
        return []
    buffer = b"".join(padded_data(first_interval + j) for j in range(count))
    encryptor = Cipher(algorithms.AES(rpi_key), modes.ECB()).encryptor()  # noqa: S305 - spec
    out = encryptor.update(buffer) + encryptor.finalize()
    return [out[i : i + RPI_LENGTH] for i in range(0, len(out), RPI_LENGTH)]


def rpi(rpi_key: bytes, interval: int) -> bytes:
    """The RPI of one interval."""
    return rpis_for(rpi_key, interval, 1)[0]


def aem_crypt(aem_key: bytes, rpi_value: bytes, data: bytes) -> bytes:
    """AES-128-CTR with the RPI as IV: encrypts metadata, and decrypts an AEM."""
    if len(rpi_value) != RPI_LENGTH:
        raise ValueError(f"an RPI is {RPI_LENGTH} bytes, got {len(rpi_value)}")
    encryptor = Cipher(algorithms.AES(aem_key), modes.CTR(rpi_value)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


@dataclass(frozen=True, slots=True)
class Metadata:
    """The 4 bytes of BLE metadata: version, TX power (int8 dBm), calibration confidence."""

    tx_power: int
    major: int = 1
    minor: int = 0
    calibration_confidence: int = 0

    def __post_init__(self) -> None:
        if not -128 <= self.tx_power <= 127:
            raise ValueError(f"TX power {self.tx_power} dBm does not fit an int8")
        if not (0 <= self.major <= 3 and 0 <= self.minor <= 3):
            raise ValueError("version major and minor are two bits each")
        if not 0 <= self.calibration_confidence <= 3:
            raise ValueError("calibration confidence is two bits")

    def encode(self) -> bytes:
        """The 4-byte plaintext metadata."""
        version = (self.major << 6) | (self.minor << 4) | (self.calibration_confidence << 2)
        return struct.pack("<Bbxx", version, self.tx_power)

    @classmethod
    def decode(cls, data: bytes) -> Metadata:
        """Parse 4 plaintext bytes (reserved bytes ignored)."""
        if len(data) != AEM_LENGTH:
            raise ValueError(f"metadata is {AEM_LENGTH} bytes, got {len(data)}")
        version, tx_power = struct.unpack("<Bbxx", data)
        return cls(
            tx_power=tx_power,
            major=version >> 6,
            minor=(version >> 4) & 0b11,
            calibration_confidence=(version >> 2) & 0b11,
        )


@dataclass(frozen=True, slots=True)
class GaenSlot:
    """One interval's RPI (and AEM when metadata was given)."""

    index: int
    interval: int
    rpi: bytes
    aem: bytes | None

    @property
    def start(self) -> int:
        return interval_start(self.interval)

    @property
    def end(self) -> int:
        return interval_start(self.interval + 1)


def iter_slots(
    tek: bytes,
    first_interval: int,
    count: int = DEFAULT_ROLLING_PERIOD,
    metadata: bytes | None = None,
) -> Iterator[GaenSlot]:
    """RPIs (and AEMs) of ``count`` intervals from ``first_interval``."""
    rpi_key = rpik(tek)
    aem_key = aemk(tek) if metadata is not None else None
    for index, value in enumerate(rpis_for(rpi_key, first_interval, count)):
        aem = aem_crypt(aem_key, value, metadata) if aem_key is not None and metadata else None
        yield GaenSlot(index, first_interval + index, value, aem)


def _check_key(tek: bytes) -> None:
    if len(tek) != KEY_LENGTH:
        raise ValueError(f"a TEK is {KEY_LENGTH} bytes, got {len(tek)}")
