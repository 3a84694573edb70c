"""Recognise contact-tracing advertisements among everything a scanner hears. Pure.

Input is :class:`~bzlogger.ble.ad.AdFields` (what bleak's ``AdvertisementData`` holds,
or :func:`bzlogger.ble.ad.decode` of raw bytes). Output says what the advertisement is:

- Bluezone Android: 16-bit service UUID 0x4E56 listed and manufacturer data for company
  0x22B5 holding exactly the 12-byte ID;
- Bluezone iOS: the 128-bit service UUID ``00004e56-...-a667`` listed, or Apple's
  manufacturer-data overflow area (iOS in the background): the ID needs a GATT read;
- GAEN: 16-bit service UUID 0xFD6F listed and its service data of exactly 20 bytes
  (16-byte RPI, 4-byte AEM);
- noise: anything else (never stored);
- malformed: one of the above with a wrong length or without its service UUID listed
  (counted by reason and skipped).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bzlogger.ble.ad import AdFields
from bzlogger.ids import bluezone, gaen
from bzlogger.model import Platform, Protocol

#: Apple's company identifier and the type byte of its "overflow area" payload, where
#: iOS puts the service UUIDs of a backgrounded app as a 128-bit hash bitmap.
APPLE_COMPANY_ID = 0x004C
APPLE_OVERFLOW_TYPE = 0x01
APPLE_OVERFLOW_LENGTH = 17

GAEN_SERVICE_DATA_LENGTH = gaen.RPI_LENGTH + gaen.AEM_LENGTH


class Kind(StrEnum):
    """What an advertisement turned out to be."""

    BLUEZONE_ANDROID = "bluezone_android"
    BLUEZONE_IOS = "bluezone_ios"
    GAEN = "gaen"
    NOISE = "noise"
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class Recognised:
    """One contact-tracing payload found in an advertisement.

    ``identifier`` is None for Bluezone iOS (the ID must be read over GATT).
    """

    kind: Kind
    protocol: Protocol
    platform: Platform
    identifier: bytes | None = None
    aem: bytes | None = None


@dataclass(frozen=True, slots=True)
class Classification:
    """Everything recognised in one advertisement and why parts were rejected.

    A phone may carry several payloads (rare); empty ``found`` and ``malformed`` means
    noise.
    """

    found: tuple[Recognised, ...] = ()
    malformed: tuple[str, ...] = ()

    @property
    def is_noise(self) -> bool:
        """True when nothing contact-tracing related was found, valid or not."""
        return not self.found and not self.malformed


def classify(ad: AdFields) -> Classification:
    """Classify one advertisement (never raises on odd content)."""
    found: list[Recognised] = []
    malformed: list[str] = []
    uuids = {u.lower() for u in ad.service_uuids}

    if bluezone.SERVICE_UUID in uuids:
        data = ad.manufacturer_data.get(bluezone.COMPANY_ID)
        if data is None:
            malformed.append("bluezone_no_id")
        elif len(data) != bluezone.ID_LENGTH:
            malformed.append("bluezone_id_length")
        else:
            found.append(Recognised(Kind.BLUEZONE_ANDROID, Protocol.BLUEZONE,
                                    Platform.ANDROID, bytes(data)))
    elif bluezone.IOS_SERVICE_UUID in uuids or _apple_overflow(ad):
        found.append(Recognised(Kind.BLUEZONE_IOS, Protocol.BLUEZONE, Platform.IOS))
    elif (apple := ad.manufacturer_data.get(APPLE_COMPANY_ID)) is not None and (
        apple[:1] == bytes((APPLE_OVERFLOW_TYPE,))
    ):
        malformed.append("apple_overflow_length")
    elif bluezone.COMPANY_ID in ad.manufacturer_data:
        # Bluezone's data without its service UUID: apps ignore it, so do we.
        malformed.append("bluezone_unlisted")

    service_data = {k.lower(): v for k, v in ad.service_data.items()}
    payload = service_data.get(gaen.SERVICE_UUID)
    if payload is not None:
        if gaen.SERVICE_UUID not in uuids:
            # The specification lists 0xFD6F as a complete UUID list; phones filter on it.
            malformed.append("gaen_unlisted")
        elif len(payload) != GAEN_SERVICE_DATA_LENGTH:
            malformed.append("gaen_length")
        else:
            found.append(Recognised(Kind.GAEN, Protocol.GAEN, Platform.UNKNOWN,
                                    bytes(payload[: gaen.RPI_LENGTH]),
                                    bytes(payload[gaen.RPI_LENGTH :])))
    return Classification(tuple(found), tuple(malformed))


def _apple_overflow(ad: AdFields) -> bool:
    data = ad.manufacturer_data.get(APPLE_COMPANY_ID)
    return (data is not None and len(data) == APPLE_OVERFLOW_LENGTH
            and data[0] == APPLE_OVERFLOW_TYPE)
