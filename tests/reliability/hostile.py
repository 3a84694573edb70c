"""Hostile input, in process: advertisements (the AD parser and the whole scan path up
to the aggregation), an address flood, and published lists (Bluezone JSON, GAEN
export.zip). Each campaign counts the inputs tried and the crashes: any exception other
than the documented one (``MalformedAdError`` for raw AD bytes, ``ListError`` for a
list) is a crash, and so is a list that takes too long to be refused."""

from __future__ import annotations

import asyncio
import gc
import io
import itertools
import math
import random
import time
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bzlogger.ble import ad
from bzlogger.ble.ad import AdFields, MalformedAdError
from bzlogger.ble.parser import classify
from bzlogger.ble.scanner import BleScanner
from bzlogger.clock import ManualClock
from bzlogger.config import BleSettings, EncounterSettings
from bzlogger.core.aggregation import DEFAULT_MAX_OPEN, FIRST_SEEN_CAP, Aggregator
from bzlogger.errors import ListError
from bzlogger.ids import bluezone, gaen
from bzlogger.lists import bluezone_list, gaen_export
from bzlogger.lists.bluezone_list import BluezoneEntry
from bzlogger.lists.gaen_export import ExportKey, Signature
from bzlogger.lists.limits import Limits
from bzlogger.lists.pipeline import Trust, load_list
from bzlogger.lists.verify import TrustedKey
from bzlogger.model import Sighting
from tests.reliability.common import CampaignResult

APPLE = 0x004C
T0 = 1_796_630_400.0  # 2026-12-07T00:00:00Z


# -- advertisements ----------------------------------------------------------------------


def seed_adverts(rng: random.Random) -> list[AdFields]:
    """Valid beacons of every kind bzlogger knows, to mutate."""
    return [
        AdFields(service_uuids=[bluezone.SERVICE_UUID],
                 manufacturer_data={bluezone.COMPANY_ID: rng.randbytes(12)}, flags=0x06),
        AdFields(service_uuids=[bluezone.IOS_SERVICE_UUID], local_name="Bluezone"),
        AdFields(manufacturer_data={APPLE: bytes([1]) + rng.randbytes(16)}),
        AdFields(service_uuids=[gaen.SERVICE_UUID],
                 service_data={gaen.SERVICE_UUID: rng.randbytes(20)}, flags=0x1A),
        AdFields(manufacturer_data={0x0075: rng.randbytes(20)}, local_name="Galaxy Watch"),
    ]


def mutate(data: bytes, rng: random.Random, donors: list[bytes]) -> bytes:
    """One to four random edits: flip, set, insert, delete, truncate, duplicate, splice."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        pos = rng.randrange(len(out) + 1)
        if op == 0 and out:
            out[pos % len(out)] ^= 1 << rng.randrange(8)
        elif op == 1 and out:
            out[pos % len(out)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2:
            out[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op == 3 and out:
            del out[pos:pos + rng.randint(1, 8)]
        elif op == 4:
            del out[pos:]
        elif op == 5 and out:
            out[pos:pos] = out[pos:pos + rng.randint(1, 16)]
        elif donors:
            donor = rng.choice(donors)
            cut = rng.randrange(len(donor) + 1)
            out[pos:] = donor[cut:]
    return bytes(out)


class ScanPath:
    """The scan path without the radio: ``BleScanner.handle`` (classification, counters,
    the bounded queue) and the aggregation, fed from raw AD bytes."""

    def __init__(self) -> None:
        self.clock = ManualClock(T0)
        self.queue: asyncio.Queue[Sighting] = asyncio.Queue(maxsize=20_000)
        self.scanner = BleScanner(BleSettings(), self.clock, self.queue)
        self.aggregator = Aggregator(EncounterSettings(min_rssi=-127))

    def feed(self, fields: AdFields, rssi: int, address: str) -> None:
        """One advertisement through the whole path; sightings must be well formed."""
        self.scanner.handle(fields, rssi=rssi, address=address, path=address)
        while not self.queue.empty():
            sighting = self.queue.get_nowait()
            expected = 12 if sighting.protocol.value == "bluezone" else 16
            if len(sighting.identifier) != expected:
                raise AssertionError(f"identifier of {len(sighting.identifier)} bytes")
            self.aggregator.add(sighting)

    def raw(self, data: bytes, rssi: int, address: str) -> bool:
        """Raw AD bytes: decoded (a malformed one is refused), then fed; whether fed."""
        try:
            fields = ad.decode(data)
        except MalformedAdError:
            return False
        classify(fields)
        self.feed(fields, rssi, address)
        return True


def random_address(rng: random.Random) -> str:
    return ":".join(f"{b:02X}" for b in rng.randbytes(6))


def advert_fuzz(inputs: int, seed: int = 3) -> CampaignResult:
    """Mutated and random AD payloads through decode -> classify -> scanner -> aggregator."""
    result = CampaignResult("fuzz: advertisements (mutation)")
    rng = random.Random(seed)
    path = ScanPath()
    seeds = [ad.encode(f) for f in seed_adverts(rng)]
    refused = 0
    for n in range(inputs):
        if n % 10 == 0:
            data = rng.randbytes(rng.randint(0, 40))
        else:
            data = mutate(rng.choice(seeds), rng, seeds)
        result.inputs += 1
        try:
            if not path.raw(data, rng.randint(-127, 20), random_address(rng)):
                refused += 1
        except Exception as error:  # anything but MalformedAdError is a crash
            result.crashes += 1
            result.fail(f"{type(error).__name__}: {error} on {data.hex()}")
        if n % 997 == 0:
            path.aggregator.flush(path.clock.now())
            path.clock.advance(1.0)
    stats = path.scanner.stats()
    result.notes.append(f"{refused} refused as malformed AD, {stats.get('noise', 0)} noise, "
                        f"{sum(v for k, v in stats.items() if k.startswith('sightings.'))} "
                        "sightings")
    return result


def hypothesis_fuzz(examples: int) -> CampaignResult:
    """Hypothesis-generated AD bytes and field sets through the same path."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    result = CampaignResult("fuzz: advertisements (hypothesis)")
    path = ScanPath()
    uuids = st.sampled_from([bluezone.SERVICE_UUID, bluezone.IOS_SERVICE_UUID,
                             gaen.SERVICE_UUID, "0000feed-0000-1000-8000-00805f9b34fb"])
    fields = st.builds(
        AdFields,
        service_uuids=st.lists(st.one_of(uuids, st.uuids().map(str)), max_size=4),
        manufacturer_data=st.dictionaries(
            st.one_of(st.sampled_from([bluezone.COMPANY_ID, APPLE]),
                      st.integers(0, 0xFFFF)), st.binary(max_size=30), max_size=3),
        service_data=st.dictionaries(st.one_of(uuids, st.uuids().map(str)),
                                     st.binary(max_size=30), max_size=3),
        local_name=st.one_of(st.none(), st.text(max_size=30)),
        tx_power=st.one_of(st.none(), st.integers(-128, 127)))
    inputs = st.one_of(fields, st.binary(max_size=62))

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(item=inputs, rssi=st.integers(-127, 20))
    def check(item: AdFields | bytes, rssi: int) -> None:
        result.inputs += 1
        if isinstance(item, bytes):
            path.raw(item, rssi, "00:11:22:33:44:55")
        else:
            path.feed(item, rssi, "00:11:22:33:44:55")

    try:
        check()
    except Exception as error:  # hypothesis re-raises the shrunk failing example
        result.crashes += 1
        result.fail(f"{type(error).__name__}: {error}")
    return result


def address_flood(minutes: int, per_minute: int = 10_000, seed: int = 5) -> CampaignResult:
    """``per_minute`` distinct random addresses (each with a fresh Bluezone ID, as a
    spoofer would send) per minute of clock time through the scan path with the
    daemon's flush cadence; traced Python memory must stop growing once the aggregation
    reaches its bound."""
    result = CampaignResult(f"flood: {per_minute} addresses/min")
    rng = random.Random(seed)
    path = ScanPath()
    per_second = per_minute // 60
    samples: list[int] = []
    tracemalloc.start()
    try:
        for _ in range(minutes):
            for _ in range(60):
                for _ in range(per_second):
                    fields = AdFields(service_uuids=[bluezone.SERVICE_UUID],
                                      manufacturer_data={bluezone.COMPANY_ID: rng.randbytes(12)})
                    path.feed(fields, rng.randint(-80, -40), random_address(rng))
                    result.inputs += 1
                path.clock.advance(1.0)
                path.aggregator.flush(path.clock.now())  # the store takes them
            gc.collect()
            samples.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    # The replay guards remember up to FIRST_SEEN_CAP first sightings: memory may grow
    # until the flood has filled that memory (and the dicts' tables have grown once under
    # the churn); it must then stay flat: the second half of the rest of the run may not
    # exceed the first.
    warm = min(len(samples) - 1, math.ceil(FIRST_SEEN_CAP / per_minute) + 1)
    rest = samples[warm:]
    first_half, second_half = rest[: max(1, len(rest) // 2)], rest[len(rest) // 2:]
    result.notes.append(f"traced memory after minute 1: {samples[0] / 1e6:.1f} MB, after "
                        f"minute {warm + 1}: {samples[warm] / 1e6:.1f} MB, at the end "
                        f"{samples[-1] / 1e6:.1f} MB (max {max(samples) / 1e6:.1f}); open "
                        f"encounters {path.aggregator.open_count} (cap {DEFAULT_MAX_OPEN})")
    if path.aggregator.open_count > DEFAULT_MAX_OPEN:
        result.fail(f"{path.aggregator.open_count} open encounters, over the cap")
    if max(second_half) > max(first_half) * 1.05 + 500_000:
        result.fail(f"memory kept growing after minute {warm + 1}: {max(first_half)} -> "
                    f"{max(second_half)} bytes")
    return result


# -- published lists ---------------------------------------------------------------------


class Authority:
    """A health authority's P-256 key: signs GAEN exports."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())

    def trusted(self, key_id: str = "310", version: str = "v1") -> TrustedKey:
        return TrustedKey(self.private.public_key(), key_id, version, "reliability")

    def pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def export(self, keys: list[ExportKey], *, key_id: str = "310", version: str = "v1",
               signer: ec.EllipticCurvePrivateKey | None = None) -> bytes:
        unsigned = gaen_export.write_export(keys, start_timestamp=int(T0),
                                            end_timestamp=int(T0) + 86_400)
        signed = zipfile.ZipFile(io.BytesIO(unsigned)).read(gaen_export.BIN_NAME)
        signature = (signer or self.private).sign(signed, ec.ECDSA(hashes.SHA256()))
        return rezip({gaen_export.BIN_NAME: signed, gaen_export.SIG_NAME:
                      gaen_export.signature_list([Signature(
                          key_id, version, gaen_export.ECDSA_P256_SHA256, signature)])})


def rezip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def patch_central(data: bytes, offset: int, value: int) -> bytes:
    """Set a 16-bit field of every central directory header of a zip."""
    return _patch(data, b"PK\x01\x02", offset, value)


def patch_local(data: bytes, offset: int, value: int) -> bytes:
    """Set a 16-bit field of every local file header of a zip."""
    return _patch(data, b"PK\x03\x04", offset, value)


def _patch(data: bytes, magic: bytes, offset: int, value: int) -> bytes:
    out = bytearray(data)
    at = out.find(magic)
    while at >= 0:
        out[at + offset: at + offset + 2] = value.to_bytes(2, "little")
        at = out.find(magic, at + 4)
    return bytes(out)


def export_keys(rng: random.Random, count: int) -> list[ExportKey]:
    start = gaen.interval_number(T0)
    return [ExportKey(rng.randbytes(16), start, 144, 1) for _ in range(count)]


def hostile_lists(rng: random.Random, authority: Authority) -> Iterator[tuple[str, bytes]]:
    """Named hostile files: the crafted cases once, then endless mutations."""
    good_json = bluezone_list.write_list([
        BluezoneEntry(rng.randbytes(32), int(T0) - d * 86_400,
                      int(T0) - d * 86_400 + 86_399, 96) for d in range(20)]).encode()
    good_zip = authority.export(export_keys(rng, 50))
    other = ec.generate_private_key(ec.SECP256R1())
    signed = zipfile.ZipFile(io.BytesIO(good_zip)).read(gaen_export.BIN_NAME)
    sig = zipfile.ZipFile(io.BytesIO(good_zip)).read(gaen_export.SIG_NAME)
    crafted = {
        "empty": b"",
        "json truncated": good_json[: len(good_json) // 2],
        "json deeply nested": b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "json nested objects": b'{"data": [' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000
                               + b"]}",
        "json huge number": b'{"data": [{"daily_key": "' + b"0" * 64 + b'", "time_start": 1'
                            + b"0" * 5000 + b', "time_end": 2, "max": 96}]}',
        "json not utf-8": b'{"data": ["\xff\xfe"]}',
        "json oversized": b'{"data": [' + b" " * (2 << 20) + b"]}",
        "zip truncated": good_zip[: len(good_zip) // 2],
        "zip bomb (ratio)": rezip({gaen_export.BIN_NAME: gaen_export.HEADER +
                                   b"\0" * (8 << 20)}),
        "zip bomb (size)": rezip({gaen_export.BIN_NAME: b"\0" * (3 << 20)}),
        "zip many members": rezip({f"export{i}.bin": b"x" for i in range(50)}),
        "zip stored oversized": rezip({gaen_export.BIN_NAME: gaen_export.HEADER +
                                       rng.randbytes(3 << 20)}, zipfile.ZIP_STORED),
        "zip without signature": rezip({gaen_export.BIN_NAME: signed}),
        "zip needing version 23.5": patch_central(good_zip, 6, 235),
        "zip with compression method 99": patch_central(patch_local(good_zip, 8, 99), 10, 99),
        "zip member flagged encrypted": patch_central(patch_local(good_zip, 6, 1), 8, 1),
        "zip deflate data labelled LZMA": patch_central(patch_local(good_zip, 8, 14), 10, 14),
        "zip deflate data labelled bzip2": patch_central(patch_local(good_zip, 8, 12), 10, 12),
        "signature flipped": rezip({gaen_export.BIN_NAME: signed,
                                    gaen_export.SIG_NAME: sig[:-5] + bytes([sig[-5] ^ 1])
                                    + sig[-4:]}),
        "signed by another key": authority.export(export_keys(rng, 5), signer=other),
        "signature metadata: unknown key id": authority.export(export_keys(rng, 5),
                                                               key_id="999"),
        "signature metadata: wrong version": authority.export(export_keys(rng, 5),
                                                              version="v9"),
        "export.bin altered after signing": rezip({
            gaen_export.BIN_NAME: signed[:-1] + bytes([signed[-1] ^ 0x55]),
            gaen_export.SIG_NAME: sig}),
    }
    yield from crafted.items()
    seeds = [good_json, good_zip, signed, sig]
    n = 0
    while True:
        n += 1
        base = rng.choice([good_json, good_zip])
        data = mutate(base, rng, seeds)
        if base is good_zip and rng.random() < 0.5:
            # Mutate inside the zip too, so that the parser behind it is reached.
            inner = mutate(signed, rng, seeds)
            data = rezip({gaen_export.BIN_NAME: inner, gaen_export.SIG_NAME: sig})
        yield f"mutation {n}", data


#: A list must be refused within this many seconds (fail fast).
REFUSE_LIMIT_S = 5.0


def list_fuzz(inputs: int, seed: int = 7) -> CampaignResult:
    """Hostile Bluezone lists and GAEN exports through ``load_list`` with verification
    on (small limits: 1 MB, so that the oversized cases are cheap). Every file must be
    either accepted as valid (a mutation may keep a list valid, but a GAEN export is
    then accepted only with a good signature) or refused with a ListError, quickly."""
    result = CampaignResult("fuzz: published lists")
    rng = random.Random(seed)
    authority = Authority()
    trust = Trust(verify=True, gaen_keys=[authority.trusted()], bluezone_key=None)
    limits = Limits(max_file_bytes=1 << 20, max_member_bytes=1 << 20)
    accepted = refused = 0
    slowest = 0.0
    crafted_refused = True
    for name, data in _take(hostile_lists(rng, authority), inputs):
        result.inputs += 1
        began = time.monotonic()
        try:
            loaded = load_list(data, name, limits, trust)
        except ListError:
            refused += 1
        except Exception as error:  # anything but ListError is a crash
            result.crashes += 1
            result.fail(f"{name}: {type(error).__name__}: {str(error)[:120]}")
        else:
            accepted += 1
            if not name.startswith("mutation"):
                crafted_refused = False
                result.fail(f"{name}: accepted")
            elif loaded.protocol.value == "gaen" and not loaded.verified:
                result.fail(f"{name}: GAEN export accepted unverified")
        took = time.monotonic() - began
        slowest = max(slowest, took)
        if took > REFUSE_LIMIT_S:
            result.fail(f"{name}: took {took:.1f} s")
    result.notes.append(f"{refused} refused (ListError), {accepted} mutations still valid, "
                        f"slowest {slowest * 1000:.0f} ms; crafted cases all refused: "
                        f"{crafted_refused}")
    return result


async def match_refuses(workdir: Path) -> CampaignResult:
    """``bzlogger match`` on every crafted hostile file (and a good export as the
    control) against a kiosk's store: each refused with exit 1 and one line, the store's
    files byte-identical afterwards."""
    from click.testing import CliRunner

    from bzlogger.cli import cli
    from tests.reliability.common import digest_dir, make_kiosk

    result = CampaignResult("lists: bzlogger match on hostile files")
    authority = Authority()
    pem = pem_file(workdir, authority)
    kiosk = await make_kiosk(workdir / "match", extra=(
        f'[gaen]\nverification_keys = [{{ key_id = "310", key_version = "v1", '
        f'pem = "{pem}" }}]\n[lists]\nmax_file_bytes = {1 << 20}\n'))
    files = workdir / "lists"
    files.mkdir(exist_ok=True)
    before = digest_dir(kiosk.store_dir)
    crafted = list(itertools.takewhile(lambda item: not item[0].startswith("mutation"),
                                       hostile_lists(random.Random(9), authority)))
    for number, (name, data) in enumerate(crafted):
        suffix = ".zip" if data[:2] == b"PK" or "zip" in name or "sig" in name else ".json"
        path = files / f"hostile-{number}{suffix}"
        path.write_bytes(data)
        result.inputs += 1
        outcome = await asyncio.to_thread(
            CliRunner().invoke, cli, ["--config", str(kiosk.settings.source), "match",
                                      str(path)])
        lines = outcome.stderr.strip().splitlines()
        if outcome.exit_code != 1 or len(lines) != 1:
            result.fail(f"{name}: exit {outcome.exit_code}, stderr {lines[-2:]}")
        if outcome.exception is not None and not isinstance(outcome.exception, SystemExit):
            result.crashes += 1
    if digest_dir(kiosk.store_dir) != before:
        result.fail("the store changed")
    good = files / "good.zip"
    good.write_bytes(authority.export(export_keys(random.Random(10), 3)))
    control = await asyncio.to_thread(
        CliRunner().invoke, cli, ["--config", str(kiosk.settings.source), "match",
                                  str(good)])
    if control.exit_code != 0:
        result.fail(f"control: a good signed export was refused: {control.stderr.strip()}")
    result.notes.append(f"{result.inputs} crafted files refused by the CLI, store unchanged; "
                        "a good export accepted")
    return result


def _take(items: Iterator[tuple[str, bytes]], count: int) -> Iterator[tuple[str, bytes]]:
    for _, item in zip(range(count), items, strict=False):
        yield item


def run_in_loop(func: Callable[[], CampaignResult]) -> CampaignResult:
    """Run a campaign that builds asyncio objects inside a fresh event loop."""

    async def inner() -> CampaignResult:
        return func()

    return asyncio.run(inner())


def pem_file(directory: Path, authority: Authority) -> Path:
    """The authority's public key as a PEM file."""
    path = directory / "authority.pem"
    path.write_bytes(authority.pem())
    return path
