"""Bluezone published lists: the reference example, strict validation, limits, detached
signatures."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from bzlogger.errors import ListError
from bzlogger.lists import bluezone_list, verify
from bzlogger.lists.bluezone_list import BluezoneEntry
from bzlogger.lists.limits import Limits, read_bounded

DAY = 1_763_769_600
KEY = "4E373A1292F27D6DFC3795AF8CC478FC48635E1D36DE7E15F6A4484D46C362C1"
EXAMPLE = {"data": [{"daily_key": KEY, "time_start": 1763769600, "time_end": 1763942399,
                     "max": 96}]}


def entry(**fields: Any) -> dict[str, Any]:
    value = {"daily_key": os.urandom(32).hex(), "time_start": DAY, "time_end": DAY + 86399,
             "max": 96}
    value.update(fields)
    return value


def dump(*entries: Any) -> bytes:
    return json.dumps({"data": list(entries)}).encode()


def test_reference_example() -> None:
    (parsed,) = bluezone_list.read_list(json.dumps(EXAMPLE).encode())
    assert parsed.daily_key.hex().upper() == EXAMPLE["data"][0]["daily_key"]
    assert (parsed.time_start, parsed.time_end, parsed.max_ids, parsed.days) == (
        1763769600, 1763942399, 96, 2)


def test_round_trip_and_other_top_level_keys_ignored() -> None:
    entries = [BluezoneEntry(os.urandom(32), DAY + 86400 * i, DAY + 86400 * (i + 1) - 1, 144)
               for i in range(3)]
    text = bluezone_list.write_list(entries)
    assert bluezone_list.read_list(text.encode()) == entries
    extra = json.loads(text) | {"version": 3}
    assert bluezone_list.read_list(json.dumps(extra).encode()) == entries


@pytest.mark.parametrize(("bad", "error"), [
    (entry(daily_key="zz" * 32), "entry 2: daily_key is not hexadecimal"),
    (entry(daily_key="ab" * 31), "entry 2: daily_key must be 64 hex digits"),
    (entry(daily_key="ab" * 31 + "  "), "entry 2: daily_key is not hexadecimal"),
    (entry(daily_key=123), "entry 2: daily_key must be 64 hex digits"),
    (entry(time_start=DAY + 1), "entry 2: time_start .* is not a UTC midnight"),
    (entry(time_start=86400, time_end=86400 * 2), "entry 2: time_start 86400 is before 2020"),
    (entry(time_end=DAY - 1), "entry 2: time_end .* is before time_start"),
    (entry(time_end=DAY + 40 * 86400), "entry 2: time_end is more than 31 days"),
    (entry(max=0), "entry 2: max: max must be a positive divisor"),
    (entry(max=7), "entry 2: max: max must be a positive divisor"),
    (entry(max=True), "entry 2: max must be a whole number"),
    (entry(time_start=1.5e9), "entry 2: time_start must be a whole number"),
    ({"daily_key": "00" * 32}, "entry 2: missing field time_start"),
    (entry(extra=1), "entry 2: unknown field extra"),
    ([1, 2], "entry 2: expected an object"),
])
def test_bad_entries_name_entry_and_field(bad: Any, error: str) -> None:
    with pytest.raises(ListError, match=error):
        bluezone_list.read_list(dump(entry(), bad), name="f0.json")


def test_duplicate_daily_key_is_refused() -> None:
    first = entry()
    with pytest.raises(ListError, match="entry 3: daily_key duplicates entry 1"):
        bluezone_list.read_list(dump(first, entry(), dict(first)))


@pytest.mark.parametrize(("text", "error"), [
    (b"[]", "expected a JSON object"),
    (b'{"items": []}', 'no "data" array'),
    (b'{"data": [], "data": []}', '"data" appears twice'),
    (b'{"data": [{"daily_key": }]}', "invalid JSON at line 1"),
    (b'{"data": []} trailing', "extra data"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply|expected an"),
])
def test_malformed_json_is_refused(text: bytes, error: str) -> None:
    with pytest.raises(ListError, match=error):
        bluezone_list.read_list(text)


def test_entry_and_size_limits() -> None:
    with pytest.raises(ListError, match="more than 3 entries"):
        bluezone_list.read_list(dump(*(entry() for _ in range(4))), Limits(max_entries=3))
    with pytest.raises(ListError, match="more than the limit of 1024 bytes"):
        bluezone_list.read_list(dump(*(entry() for _ in range(20))),
                                Limits(max_file_bytes=1024))


def test_a_1_gb_file_fails_fast_without_being_read(tmp_path: Path) -> None:
    huge = tmp_path / "huge.json"
    with huge.open("wb") as handle:  # sparse: no disk space used
        handle.write(b'{"data": [')
        handle.truncate(1 << 30)
    began = time.monotonic()
    with pytest.raises(ListError, match="1073741824 bytes, more than the limit"):
        read_bounded(huge, 64 << 20)
    assert time.monotonic() - began < 0.5


def test_detached_ecdsa_signature_raw_and_base64() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    data = dump(entry())
    signature = private.sign(data, ec.ECDSA(hashes.SHA256()))
    verify.verify_detached(data, signature, private.public_key(), "f0.json")
    verify.verify_detached(data, base64.b64encode(signature) + b"\n", private.public_key(),
                           "f0.json")
    with pytest.raises(ListError, match="detached signature does not verify"):
        verify.verify_detached(data + b" ", signature, private.public_key(), "f0.json")


def test_detached_ed25519_signature(tmp_path: Path) -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    pem = tmp_path / "bz.pem"
    pem.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    data = dump(entry())
    key = verify.load_public_key(pem)
    verify.verify_detached(data, private.sign(data), key, "f0.json")
    with pytest.raises(ListError, match="does not verify"):
        verify.verify_detached(data, private.sign(data + b"x"), key, "f0.json")


def test_unusable_verification_keys(tmp_path: Path) -> None:
    not_pem = tmp_path / "x.pem"
    not_pem.write_text("hello")
    with pytest.raises(ListError, match="is not a PEM public key"):
        verify.load_public_key(not_pem)
    with pytest.raises(ListError, match="cannot read verification key"):
        verify.load_public_key(tmp_path / "missing.pem")
    p384 = tmp_path / "p384.pem"
    p384.write_bytes(ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(ListError, match="must be on P-256"):
        verify.load_public_key(p384)
