"""GAEN key export files: ``export.zip`` holding ``export.bin`` and ``export.sig``.

:func:`read_export` opens a zip with hard limits (see :mod:`bzlogger.lists.limits`),
parses both members with protobuf and validates every key, naming the entry and the field
of the first problem. It does not check the signature: :mod:`bzlogger.lists.verify` does,
on the same :class:`GaenExport`, before anything is matched. :func:`write_export` builds
an export of the kiosk's own keys (unsigned), or a signed one as a key server writes it.
"""

from __future__ import annotations

import io
import lzma
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.message import DecodeError

from bzlogger.errors import ListError
from bzlogger.ids import gaen
from bzlogger.lists import gaen_proto as pb
from bzlogger.lists.limits import DEFAULT_LIMITS, Limits, read_stream

HEADER = b"EK Export v1    "
BIN_NAME = "export.bin"
SIG_NAME = "export.sig"
#: ECDSA P-256 with SHA-256, the only algorithm of the GAEN export format.
ECDSA_P256_SHA256 = "1.2.840.10045.4.3.2"
REVOKED = pb.REPORT_TYPES["REVOKED"]
#: Exposure Notification did not exist before 2020: an older key start is impossible.
_EARLIEST_INTERVAL = gaen.interval_number(1_577_836_800)  # 2020-01-01T00:00:00Z
#: Keys may end a day after the export's end (a same-day key released early).
_END_SLACK_INTERVALS = 144
_REPORTS = frozenset(pb.REPORT_TYPES.values())


class ExportKey(NamedTuple):
    """One Temporary Exposure Key of an export (a tuple: exports hold up to millions)."""

    key_data: bytes
    rolling_start: int
    rolling_period: int
    transmission_risk_level: int = 0
    report_type: int = 0
    days_since_onset: int | None = None

    @property
    def revoked(self) -> bool:
        """True when the authority withdrew this key (report type REVOKED)."""
        return self.report_type == REVOKED


@dataclass(frozen=True, slots=True)
class Signature:
    """One entry of ``export.sig``."""

    key_id: str
    key_version: str
    algorithm: str
    signature: bytes


@dataclass(frozen=True, slots=True)
class GaenExport:
    """A parsed, validated export; ``signed_data`` is ``export.bin`` as signed."""

    signed_data: bytes
    region: str
    start_timestamp: int
    end_timestamp: int
    batch_num: int
    batch_size: int
    keys: tuple[ExportKey, ...]
    revised_keys: tuple[ExportKey, ...]
    signatures: tuple[Signature, ...]


def is_export_zip(head: bytes) -> bool:
    """Whether the first bytes of a file look like a zip archive."""
    return head.startswith(b"PK\x03\x04")


def read_export(data: bytes, limits: Limits = DEFAULT_LIMITS, name: str = "export.zip"
                ) -> GaenExport:
    """Parse and validate an ``export.zip`` held in ``data``; :class:`ListError` on any
    problem, with ``name`` and the entry/field at fault."""
    if len(data) > limits.max_file_bytes:
        raise ListError(f"{name}: {len(data)} bytes, more than the limit of "
                        f"{limits.max_file_bytes} bytes ([lists] max_file_bytes)")
    members = _unzip(data, limits, name)
    if BIN_NAME not in members:
        raise ListError(f"{name}: no {BIN_NAME} in the zip; this is not a GAEN key export")
    signed = members[BIN_NAME]
    if not signed.startswith(HEADER):
        raise ListError(f"{name}: {BIN_NAME} does not start with the header {HEADER!r}")
    try:
        message = pb.TemporaryExposureKeyExport.FromString(signed[len(HEADER):])
    except DecodeError as error:
        raise ListError(f"{name}: {BIN_NAME} is not a valid key export protobuf: {error}"
                        ) from None
    count = len(message.keys) + len(message.revised_keys)
    if count > limits.max_entries:
        raise ListError(f"{name}: {count} keys, more than the limit of {limits.max_entries}")
    start, end = int(message.start_timestamp), int(message.end_timestamp)
    if start and end and end < start:
        raise ListError(f"{name}: end_timestamp {end} is before start_timestamp {start}")
    keys = _keys(message.keys, "keys", end, name)
    revised = _keys(message.revised_keys, "revised_keys", end, name)
    signatures = _signatures(members.get(SIG_NAME), name)
    return GaenExport(signed, str(message.region), start, end, int(message.batch_num),
                      int(message.batch_size), keys, revised, signatures)


def _unzip(data: bytes, limits: Limits, name: str) -> dict[str, bytes]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, NotImplementedError) as error:
        raise ListError(f"{name}: not a readable zip file ({error})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_zip_members:
            raise ListError(f"{name}: {len(infos)} zip members, more than the limit of "
                            f"{limits.max_zip_members}")
        members: dict[str, bytes] = {}
        for info in infos:
            if info.filename not in (BIN_NAME, SIG_NAME):
                raise ListError(f"{name}: unexpected zip member {info.filename!r} (a key "
                                f"export holds only {BIN_NAME} and {SIG_NAME})")
            if info.filename in members:
                raise ListError(f"{name}: zip member {info.filename} appears twice")
            # Declared sizes first (cheap), then the real size while inflating: a zip
            # bomb that lies in its header is still stopped after the limit.
            if info.file_size > limits.max_member_bytes:
                raise ListError(f"{name}: {info.filename} would inflate to {info.file_size} "
                                f"bytes, more than the limit of {limits.max_member_bytes}")
            if info.file_size > max(info.compress_size, 1) * limits.max_compression_ratio:
                raise ListError(f"{name}: {info.filename} has a compression ratio above "
                                f"{limits.max_compression_ratio}:1 (a zip bomb?)")
            try:
                with archive.open(info) as stream:
                    members[info.filename] = read_stream(
                        stream, limits.max_member_bytes, f"{name}: {info.filename}")
            except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, OSError, EOFError,
                    ValueError, NotImplementedError,  # an unsupported compression method
                    RuntimeError) as error:  # a member flagged as encrypted
                raise ListError(f"{name}: cannot inflate {info.filename}: {error}") from None
    return members


def _keys(messages: Sequence[Any], field: str, end: int, name: str
          ) -> tuple[ExportKey, ...]:
    """Validated keys. The loop checks everything in one expression and builds the
    detailed message only for a key that fails (this runs a million times per file)."""
    keys: list[ExportKey] = []
    seen: set[bytes] = set()
    latest = (gaen.interval_number(end) + _END_SLACK_INTERVALS) if end else 1 << 31
    earliest, longest, report_types = _EARLIEST_INTERVAL, gaen.DEFAULT_ROLLING_PERIOD, _REPORTS
    for m in messages:
        data = m.key_data
        start = m.rolling_start_interval_number
        period = m.rolling_period
        risk = m.transmission_risk_level
        report = m.report_type
        onset = (m.days_since_onset_of_symptoms if m.HasField("days_since_onset_of_symptoms")
                 else None)
        if (len(data) != gaen.KEY_LENGTH or not 1 <= period <= longest
                or not earliest <= start <= latest or not 0 <= risk <= 8
                or report not in report_types or (onset is not None and not -14 <= onset <= 14)
                or data in seen):
            number = len(keys) + 1
            _explain(m, f"{name}: {field} entry {number}", latest, keys)
        seen.add(data)
        keys.append(ExportKey(data, start, period, risk, report, onset))
    return tuple(keys)


def _explain(m: Any, where: str, latest: int, earlier: Sequence[ExportKey]) -> None:
    """Raise :class:`ListError` saying what is wrong with one TemporaryExposureKey."""
    data = bytes(m.key_data)
    if len(data) != gaen.KEY_LENGTH:
        raise ListError(f"{where}: key_data is {len(data)} bytes, a TEK is {gaen.KEY_LENGTH}")
    start, period = int(m.rolling_start_interval_number), int(m.rolling_period)
    if not 1 <= period <= gaen.DEFAULT_ROLLING_PERIOD:
        raise ListError(f"{where}: rolling_period {period} is outside 1..144")
    if start < _EARLIEST_INTERVAL:
        raise ListError(f"{where}: rolling_start_interval_number {start} is before 2020, "
                        "an impossible time")
    if start > latest:
        raise ListError(f"{where}: rolling_start_interval_number {start} starts after the "
                        "export's end_timestamp")
    risk = int(m.transmission_risk_level)
    if not 0 <= risk <= 8:
        raise ListError(f"{where}: transmission_risk_level {risk} is outside 0..8")
    report = int(m.report_type)
    if report not in _REPORTS:
        raise ListError(f"{where}: report_type {report} is not a known ReportType")
    if m.HasField("days_since_onset_of_symptoms"):
        onset = int(m.days_since_onset_of_symptoms)
        if not -14 <= onset <= 14:
            raise ListError(f"{where}: days_since_onset_of_symptoms {onset} is outside "
                            "-14..14")
    first = next(n for n, k in enumerate(earlier, 1) if k.key_data == data)
    raise ListError(f"{where}: key_data duplicates entry {first}")


def _signatures(data: bytes | None, name: str) -> tuple[Signature, ...]:
    if not data:
        return ()
    try:
        message = pb.TEKSignatureList.FromString(data)
    except DecodeError as error:
        raise ListError(f"{name}: {SIG_NAME} is not a valid signature list: {error}") from None
    return tuple(
        Signature(str(s.signature_info.verification_key_id),
                  str(s.signature_info.verification_key_version),
                  str(s.signature_info.signature_algorithm), bytes(s.signature))
        for s in message.signatures)


@dataclass(frozen=True, slots=True)
class ExportSigner:
    """A key server's signing key (ECDSA P-256) and the names it is published under."""

    private_key: ec.EllipticCurvePrivateKey
    key_id: str
    key_version: str


def write_export(keys: Sequence[ExportKey], *, start_timestamp: int, end_timestamp: int,
                 region: str = "", signer: ExportSigner | None = None) -> bytes:
    """An ``export.zip`` holding ``keys``. Unsigned (no ``export.sig`` member) unless a
    ``signer`` is given; then ``export.bin`` names the signing key in its SignatureInfo, as
    a key server writes it, and ``export.sig`` holds the signature over all of it."""
    message = pb.TemporaryExposureKeyExport(
        start_timestamp=start_timestamp, end_timestamp=end_timestamp, region=region,
        batch_num=1, batch_size=1)
    for key in keys:
        entry = message.keys.add(
            key_data=key.key_data, transmission_risk_level=key.transmission_risk_level,
            rolling_start_interval_number=key.rolling_start, rolling_period=key.rolling_period,
            report_type=key.report_type)
        if key.days_since_onset is not None:
            entry.days_since_onset_of_symptoms = key.days_since_onset
    if signer is not None:
        message.signature_infos.add(
            verification_key_id=signer.key_id, verification_key_version=signer.key_version,
            signature_algorithm=ECDSA_P256_SHA256)
    signed = HEADER + message.SerializeToString()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(BIN_NAME, signed)
        if signer is not None:
            signature = signer.private_key.sign(signed, ec.ECDSA(hashes.SHA256()))
            archive.writestr(SIG_NAME, signature_list([Signature(
                signer.key_id, signer.key_version, ECDSA_P256_SHA256, signature)]))
    return buffer.getvalue()


def signature_list(signatures: Sequence[Signature]) -> bytes:
    """``export.sig`` bytes for ``signatures``."""
    message = pb.TEKSignatureList()
    for s in signatures:
        message.signatures.add(
            signature_info=pb.SignatureInfo(verification_key_id=s.key_id,
                                            verification_key_version=s.key_version,
                                            signature_algorithm=s.algorithm),
            batch_num=1, batch_size=1, signature=s.signature)
    return bytes(message.SerializeToString())
