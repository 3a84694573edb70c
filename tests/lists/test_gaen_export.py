"""GAEN export.zip: the official sample, signatures, strict validation, hostile zips."""

from __future__ import annotations

import io
import os
import time
import zipfile

import pytest

from bzlogger.errors import ListError
from bzlogger.lists import gaen_export, gaen_proto, verify
from bzlogger.lists.gaen_export import ExportKey
from bzlogger.lists.limits import Limits, read_stream
from tests.lists.conftest import SAMPLE_PEM, SAMPLE_ZIP, Authority, rezip

START = 2_944_080  # 2025-12-22 in 10-minute intervals (a multiple of 144)


def sample_trust() -> list[verify.TrustedKey]:
    return [verify.TrustedKey(verify.load_public_key(SAMPLE_PEM), "some_id", "1")]


def test_official_sample_parses_and_verifies() -> None:
    export = gaen_export.read_export(SAMPLE_ZIP.read_bytes())
    assert export.region == "US" and (export.batch_num, export.batch_size) == (1, 1)
    assert [(k.key_data.hex(), k.rolling_start, k.rolling_period, k.transmission_risk_level)
            for k in export.keys] == [
        ("172fc480e598490c34177604339b1543", 2649980, 1, 8),
        ("2b63053ac483238de176169e861f3dcd", 2649866, 114, 1)]
    assert verify.verify_export(export, sample_trust(), "sample").key_id == "some_id"


def test_altered_sample_is_refused() -> None:
    archive = zipfile.ZipFile(SAMPLE_ZIP)
    signed = bytearray(archive.read("export.bin"))
    signed[-5] ^= 0x01  # one bit of the last key's data
    altered = rezip(bytes(signed), archive.read("export.sig"))
    export = gaen_export.read_export(altered)
    with pytest.raises(ListError, match="does not verify"):
        verify.verify_export(export, sample_trust(), "altered.zip")


def test_signature_by_an_unconfigured_key_is_refused(authority: Authority) -> None:
    export = gaen_export.read_export(SAMPLE_ZIP.read_bytes())
    other = [verify.TrustedKey(verify.load_public_key(authority.pem), "some_id", "1")]
    with pytest.raises(ListError, match="does not verify"):
        verify.verify_export(export, other, "sample")
    wrong_id = [verify.TrustedKey(verify.load_public_key(SAMPLE_PEM), "310", "v1")]
    with pytest.raises(ListError, match="not among the configured"):
        verify.verify_export(export, wrong_id, "sample")
    with pytest.raises(ListError, match="no verification key"):
        verify.verify_export(export, [], "sample")


def test_unsigned_export_is_refused() -> None:
    data = gaen_export.write_export([ExportKey(os.urandom(16), START, 144)],
                                    start_timestamp=0, end_timestamp=0)
    export = gaen_export.read_export(data)
    assert export.signatures == ()
    with pytest.raises(ListError, match=r"no export\.sig"):
        verify.verify_export(export, sample_trust(), "unsigned.zip")


def test_own_signature_round_trip(authority: Authority) -> None:
    keys = [ExportKey(os.urandom(16), START + 144 * i, 144, 6, 1) for i in range(3)]
    data = authority.export(keys, start=START * 600, end=(START + 432) * 600)
    export = gaen_export.read_export(data)
    assert export.keys == tuple(keys)
    trusted = [verify.TrustedKey(verify.load_public_key(authority.pem), "310", "v1")]
    assert verify.verify_export(export, trusted, "x").key_id == "310"


def _export_with(**fields: object) -> bytes:
    message = gaen_proto.TemporaryExposureKeyExport(start_timestamp=START * 600,
                                                    end_timestamp=(START + 144) * 600)
    key = {"key_data": os.urandom(16), "rolling_start_interval_number": START,
           "rolling_period": 144}
    key.update(fields)
    message.keys.add(**key)
    return rezip(gaen_export.HEADER + message.SerializeToString(), None)


@pytest.mark.parametrize(("fields", "error"), [
    ({"key_data": b"\x01" * 15}, "keys entry 1: key_data is 15 bytes"),
    ({"rolling_period": 0}, "rolling_period 0 is outside 1..144"),
    ({"rolling_period": 145}, "rolling_period 145"),
    ({"rolling_start_interval_number": 100}, "before 2020"),
    ({"rolling_start_interval_number": START + 3 * 144}, "after the export's end"),
    ({"transmission_risk_level": 9}, "transmission_risk_level 9"),
    ({"days_since_onset_of_symptoms": 30}, "days_since_onset_of_symptoms 30"),
])
def test_bad_keys_are_refused_with_entry_and_field(fields: dict[str, object],
                                                   error: str) -> None:
    with pytest.raises(ListError, match=error):
        gaen_export.read_export(_export_with(**fields), name="bad.zip")


def test_duplicate_keys_are_refused() -> None:
    key = ExportKey(os.urandom(16), START, 144)
    data = gaen_export.write_export([key, ExportKey(os.urandom(16), START, 144), key],
                                    start_timestamp=0, end_timestamp=0)
    with pytest.raises(ListError, match="keys entry 3: key_data duplicates entry 1"):
        gaen_export.read_export(data)


def test_revoked_keys_are_marked(authority: Authority) -> None:
    key = ExportKey(os.urandom(16), START, 144, 0, gaen_export.REVOKED)
    export = gaen_export.read_export(authority.export([], revised=[key]))
    assert export.revised_keys[0].revoked


@pytest.mark.parametrize(("data", "error"), [
    (b"PK\x03\x04 not really a zip", "not a readable zip"),
    (rezip(b"EK Export v2    " + b"\x00", None), "does not start with the header"),
    (rezip(gaen_export.HEADER + b"\xff\xff\xff", None), "not a valid key export protobuf"),
])
def test_malformed_files_are_refused(data: bytes, error: str) -> None:
    with pytest.raises(ListError, match=error):
        gaen_export.read_export(data)


def test_unexpected_and_too_many_members_are_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("export.bin", gaen_export.HEADER)
        archive.writestr("../evil", b"x")
    with pytest.raises(ListError, match="unexpected zip member"):
        gaen_export.read_export(buffer.getvalue())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(10):
            archive.writestr(f"m{i}", b"x")
    with pytest.raises(ListError, match="10 zip members"):
        gaen_export.read_export(buffer.getvalue())


def test_zip_bomb_fails_fast() -> None:
    buffer = io.BytesIO()
    with (zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
          archive.open("export.bin", "w", force_zip64=True) as member):
        block = bytes(1 << 20)
        for _ in range(256):  # 256 MiB of zeros, about 256 kB compressed
            member.write(block)
    data = buffer.getvalue()
    began = time.monotonic()
    with pytest.raises(ListError, match="would inflate to 268435456 bytes"):
        gaen_export.read_export(data)
    assert time.monotonic() - began < 1.0


def test_member_that_lies_about_its_size_is_stopped_at_the_limit() -> None:
    stream = io.BytesIO(bytes(10_000))
    with pytest.raises(ListError, match="larger than the limit of 4096"):
        read_stream(stream, 4096, "export.bin")
    assert stream.tell() <= 4096 + 1


def test_file_and_key_count_limits() -> None:
    data = gaen_export.write_export([ExportKey(os.urandom(16), START, 144) for _ in range(5)],
                                    start_timestamp=0, end_timestamp=0)
    with pytest.raises(ListError, match="5 keys, more than the limit of 4"):
        gaen_export.read_export(data, Limits(max_entries=4))
    with pytest.raises(ListError, match="more than the limit of 100 bytes"):
        gaen_export.read_export(data, Limits(max_file_bytes=100))
