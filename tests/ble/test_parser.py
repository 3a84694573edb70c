"""Advertisement decoding and classification: every kind, Flags absent, malformed,
noise, and fuzzing that nothing crashes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bzlogger.ble import ad
from bzlogger.ble.parser import Kind, classify
from bzlogger.model import Platform, Protocol

BZ_ID = bytes(range(1, 13))
RPI = bytes(range(16))
AEM = b"\xa1\xa2\xa3\xa4"
ANDROID_BYTES = bytes.fromhex("0303564E0FFFB522") + BZ_ID
GAEN_BYTES = bytes.fromhex("03036FFD17166FFD") + RPI + AEM
FLAGS = bytes.fromhex("020106")
IOS_UUID_BYTES = bytes.fromhex("1107") + bytes.fromhex(
    "00004E5673F54BC4A12F17D1AD07A667")[::-1]


def kinds(raw: bytes) -> list[Kind]:
    return [f.kind for f in classify(ad.decode(raw)).found]


@pytest.mark.parametrize("prefix", [b"", FLAGS])
def test_bluezone_android_with_and_without_flags(prefix: bytes) -> None:
    result = classify(ad.decode(prefix + ANDROID_BYTES))
    (found,) = result.found
    assert found.kind is Kind.BLUEZONE_ANDROID
    assert found.protocol is Protocol.BLUEZONE
    assert found.platform is Platform.ANDROID
    assert found.identifier == BZ_ID


def test_structures_in_any_order() -> None:
    mfr = bytes.fromhex("0FFFB522") + BZ_ID
    uuids = bytes.fromhex("0303564E")
    assert kinds(mfr + FLAGS + uuids) == [Kind.BLUEZONE_ANDROID]


@pytest.mark.parametrize("prefix", [b"", FLAGS])
def test_gaen(prefix: bytes) -> None:
    (found,) = classify(ad.decode(prefix + GAEN_BYTES)).found
    assert found.kind is Kind.GAEN
    assert found.identifier == RPI
    assert found.aem == AEM


def test_bluezone_ios_by_uuid_and_by_overflow_area() -> None:
    assert kinds(FLAGS + IOS_UUID_BYTES + bytes.fromhex("0909426C75657A6F6E65")) == [
        Kind.BLUEZONE_IOS]
    overflow = bytes.fromhex("14FF4C0001") + bytes(15) + b"\x80"
    found = classify(ad.decode(overflow)).found
    assert [f.kind for f in found] == [Kind.BLUEZONE_IOS]
    assert found[0].identifier is None


@pytest.mark.parametrize(("raw", "reason"), [
    (bytes.fromhex("0303564E0EFFB522") + BZ_ID[:11], "bluezone_id_length"),
    (bytes.fromhex("0303564E10FFB522") + BZ_ID + b"\0", "bluezone_id_length"),
    (bytes.fromhex("0303564E"), "bluezone_no_id"),
    (bytes.fromhex("03036FFD16166FFD") + RPI + AEM[:3], "gaen_length"),
    (bytes.fromhex("03036FFD18166FFD") + RPI + AEM + b"\0", "gaen_length"),
    (bytes.fromhex("08FF4C0001") + bytes(4), "apple_overflow_length"),
    (bytes.fromhex("0FFFB522") + BZ_ID, "bluezone_unlisted"),
    (bytes.fromhex("17166FFD") + RPI + AEM, "gaen_unlisted"),
])
def test_wrong_lengths_are_malformed(raw: bytes, reason: str) -> None:
    result = classify(ad.decode(raw))
    assert result.found == ()
    assert result.malformed == (reason,)
    assert not result.is_noise


@pytest.mark.parametrize("raw", [
    b"",
    FLAGS,
    bytes.fromhex("0AFF4C001005031C0F2F5D"),           # Apple nearby info
    bytes.fromhex("1AFF4C000215") + bytes(21),          # iBeacon
    bytes.fromhex("0303AAFE0916AAFE10000167676C"),     # Eddystone URL
    bytes.fromhex("0A094D7920486561647365"),            # name only
])
def test_noise(raw: bytes) -> None:
    result = classify(ad.decode(raw))
    assert result.is_noise


@pytest.mark.parametrize("raw", [
    bytes.fromhex("0303564E0FFFB522") + BZ_ID[:5],     # truncated structure
    bytes.fromhex("02FF4C"),                              # company id cut
    bytes.fromhex("0316"),                                # service data without UUID
    bytes.fromhex("040356"),                              # truncated
    bytes.fromhex("0403564E00"),                          # odd-length 16-bit list
])
def test_truncated_raw_data_raises_malformed_ad(raw: bytes) -> None:
    with pytest.raises(ad.MalformedAdError):
        ad.decode(raw)


def test_zero_length_ends_data() -> None:
    assert kinds(ANDROID_BYTES + b"\x00" + b"\xff" * 5) == [Kind.BLUEZONE_ANDROID]


def test_encode_round_trip_gives_exact_bluezone_and_gaen_bytes() -> None:
    bz = ad.AdFields(service_uuids=[ad.uuid16_to_str(0x4E56)],
                     manufacturer_data={0x22B5: BZ_ID})
    assert ad.encode(bz) == ANDROID_BYTES
    ga = ad.AdFields(service_uuids=[ad.uuid16_to_str(0xFD6F)],
                     service_data={ad.uuid16_to_str(0xFD6F): RPI + AEM})
    assert ad.encode(ga) == GAEN_BYTES
    assert ad.decode(ad.encode(bz)) == bz


def test_uuid_byte_order() -> None:
    ios = "00004e56-73f5-4bc4-a12f-17d1ad07a667"
    assert ad.uuid_from_le(ad.uuid_to_le(ios)) == ios
    assert ad.uuid_to_le(ad.uuid16_to_str(0x4E56)) == b"\x56\x4e"


@given(st.binary(max_size=62))
def test_fuzz_decode_never_crashes_otherwise(raw: bytes) -> None:
    try:
        fields = ad.decode(raw)
    except ad.MalformedAdError:
        return
    classification = classify(fields)
    for found in classification.found:
        if found.identifier is not None:
            assert len(found.identifier) in (12, 16)


structures = st.lists(st.tuples(st.sampled_from([0x01, 0x03, 0x07, 0x09, 0x0A, 0x16, 0x21,
                                                 0xFF, 0x42]),
                                st.binary(max_size=24)), max_size=5)


@given(structures, st.sampled_from([b"", ANDROID_BYTES, GAEN_BYTES]))
def test_fuzz_well_framed_noise_around_payloads(parts: list[tuple[int, bytes]],
                                               payload: bytes) -> None:
    raw = b"".join(ad.structure(t, d) for t, d in parts)
    try:
        fields = ad.decode(payload + raw)
    except ad.MalformedAdError:
        return
    result = classify(fields)
    assert all(len(f.identifier or b"0" * 12) in (12, 16) for f in result.found)


@given(st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=30), max_size=4),
       st.dictionaries(st.sampled_from([ad.uuid16_to_str(0xFD6F), ad.uuid16_to_str(0xFEAA)]),
                       st.binary(max_size=30), max_size=2),
       st.lists(st.sampled_from([ad.uuid16_to_str(0x4E56), ad.uuid16_to_str(0xFD6F),
                                 "00004e56-73f5-4bc4-a12f-17d1ad07a667"]), max_size=3))
def test_fuzz_bleak_shaped_fields(mfr: dict[int, bytes], svc: dict[str, bytes],
                                  uuids: list[str]) -> None:
    result = classify(ad.AdFields(service_uuids=uuids, manufacturer_data=mfr,
                                  service_data=svc))
    for found in result.found:
        if found.kind is Kind.BLUEZONE_ANDROID:
            assert found.identifier == mfr[0x22B5] and len(found.identifier) == 12
        if found.kind is Kind.GAEN:
            assert found.identifier is not None and found.aem is not None
            assert found.identifier + found.aem == svc[ad.uuid16_to_str(0xFD6F)]
            assert ad.uuid16_to_str(0xFD6F) in uuids
