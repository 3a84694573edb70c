"""Plain data types that flow between the BLE edge, the pure core and the store.

They carry no behaviour beyond validation, so every layer can share them without
importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Protocol(StrEnum):
    """A contact-tracing protocol whose identifiers bzlogger logs."""

    BLUEZONE = "bluezone"
    GAEN = "gaen"


class Platform(StrEnum):
    """The kind of phone a sighting came from, as far as the advertisement tells."""

    ANDROID = "android"
    IOS = "ios"
    UNKNOWN = "unknown"


#: Length in bytes of an identifier on the air, per protocol.
IDENTIFIER_LENGTH: dict[Protocol, int] = {Protocol.BLUEZONE: 12, Protocol.GAEN: 16}


@dataclass(frozen=True, slots=True)
class Sighting:
    """One received advertisement carrying a contact identifier.

    ``time`` is Unix seconds (float) from the daemon's clock; ``rssi`` is as reported by
    the adapter, before calibration. ``aem`` is the 4-byte GAEN Associated Encrypted
    Metadata (opaque until the TEK is published); ``tx_power`` is an advertised TX
    power level in dBm when the advertisement carried one.
    """

    protocol: Protocol
    identifier: bytes
    rssi: int
    time: float
    tx_power: int | None = None
    aem: bytes | None = None
    platform: Platform = Platform.UNKNOWN

    def __post_init__(self) -> None:
        expected = IDENTIFIER_LENGTH[self.protocol]
        if len(self.identifier) != expected:
            raise ValueError(
                f"{self.protocol} identifier must be {expected} bytes, got {len(self.identifier)}"
            )
        if self.aem is not None and len(self.aem) != 4:
            raise ValueError(f"GAEN metadata must be 4 bytes, got {len(self.aem)}")


@dataclass(slots=True)
class Encounter:
    """Everything kept about one identifier seen continuously (gaps shorter than the
    configured encounter gap).

    RSSI figures are calibrated (the kiosk's radio offset applied). ``close_s`` is the
    time spent closer than the configured proximity threshold. ``flags`` holds
    replay/plausibility warnings such as ``"replay"`` or ``"outside-slot"``.
    """

    protocol: Protocol
    identifier: bytes
    first_seen: float
    last_seen: float
    samples: int
    rssi_max: int
    rssi_median: float
    rssi_mean: float
    close_s: float = 0.0
    tx_power: int | None = None
    aem: bytes | None = None
    platform: Platform = Platform.UNKNOWN
    flags: frozenset[str] = field(default_factory=frozenset)

    @property
    def duration_s(self) -> float:
        """Seconds between the first and the last sighting."""
        return self.last_seen - self.first_seen


@dataclass(frozen=True, slots=True)
class Exposure:
    """A stored encounter whose identifier a published list attributes to an infected key.

    ``list_key`` is the Bluezone daily key or GAEN TEK that produced the identifier.
    ``attenuation_db`` is TX power minus calibrated RSSI (GAEN, from the decrypted AEM),
    None when unknown. ``risk`` is a score in [0, 1] documented in the README.
    """

    protocol: Protocol
    identifier: bytes
    list_key: bytes
    first_seen: float
    last_seen: float
    samples: int
    rssi_max: int
    rssi_median: float
    attenuation_db: float | None
    risk: float
    close_s: float = 0.0

    @property
    def duration_s(self) -> float:
        """Seconds between the first and the last sighting."""
        return self.last_seen - self.first_seen
