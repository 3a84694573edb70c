"""The advertiser against the simulated BlueZ: exact bytes, rotation with a new
registration (and address) per ID, heard by simulated phones, refusals reported."""

from __future__ import annotations

import itertools
from collections import defaultdict

from bzlogger.ble import ad
from bzlogger.ble.advertiser import (
    Advertiser,
    AdvertisingStatus,
    BeaconProvider,
    schedule_provider,
)
from bzlogger.ble.beacon_payload import expected_bytes
from bzlogger.clock import Clock
from bzlogger.ids import bluezone
from bzlogger.ids.schedule import DayKeys, bluezone_beacon, gaen_beacon
from bzlogger.sim.adverts import AdContent
from bzlogger.sim.runner import SimulatedBluez
from tests.ble.simhelp import background, wait_for
from tests.conftest import SimFactory

HEARERS = {
    "scenario": {"name": "ble-hearers", "seed": 11, "start": "2020-08-17T08:00:00Z",
                 "duration": "2h"},
    "visitors": [
        {"name": "android", "kind": "bluezone-android", "profile": "stationary",
         "distance": 1.5, "stay": "2h"},
        {"name": "gaen", "kind": "gaen", "profile": "stationary", "distance": 1.5,
         "stay": "2h"},
    ],
}


def on_air(content: AdContent) -> bytes:
    """The AD bytes of what the simulated bluetoothd put on the air."""
    flags = 0x06 if content.discoverable else None
    return ad.encode(ad.AdFields(service_uuids=list(content.service_uuids),
                                 manufacturer_data=dict(content.manufacturer_data),
                                 service_data=dict(content.service_data), flags=flags))


def provider(clock: Clock, protocols: list[str], max_ids: int = 96) -> BeaconProvider:
    keys: dict[int, DayKeys] = {}

    async def keys_for_day(day: int) -> DayKeys:
        return keys.setdefault(day, DayKeys.generate(day))

    return schedule_provider(protocols, keys_for_day, bluezone_max=max_ids)


def live(sim: SimulatedBluez) -> list[str]:
    return sorted(str(r.content.service_uuids) for r in sim.bluez.active_adverts())


async def test_exact_bytes_for_bluezone_and_gaen(simulated_bluez: SimulatedBluez) -> None:
    sim = simulated_bluez
    now = sim.clock.now()
    keys = DayKeys.generate(bluezone.utc_midnight(now))
    bz = bluezone_beacon(keys, now)
    ga = gaen_beacon(keys, now, -8, 0.5)
    advertiser = Advertiser("hci0", sim.clock)
    await advertiser.connect()
    state = await advertiser.set_beacons([bz, ga])
    assert state.status is AdvertisingStatus.ACTIVE
    assert state.active == ("bluezone", "gaen")
    records = {r.content.service_uuids[0]: r for r in sim.bluez.active_adverts()}
    bz_record = records[bluezone.SERVICE_UUID]
    assert bz_record.type == "broadcast"
    assert on_air(bz_record.content) == bytes.fromhex("0303564E0FFFB522") + bz.identifier
    assert on_air(bz_record.content) == expected_bytes(bz)
    ga_record = records["0000fd6f-0000-1000-8000-00805f9b34fb"]
    assert not ga_record.content.connectable
    assert ga.aem is not None
    assert on_air(ga_record.content) == (bytes.fromhex("03036FFD17166FFD")
                                         + ga.identifier + ga.aem)
    assert bz_record.address != ga_record.address
    await advertiser.close()
    assert sim.bluez.active_adverts() == []


async def test_rotation_registers_anew_with_a_new_address(sim_factory: SimFactory) -> None:
    # 1440 IDs a day: a Bluezone slot is 60 s; at speed 60 that is one real second.
    sim = await sim_factory(None, speed=60.0)
    advertiser = Advertiser("hci0", sim.clock)
    async with background(advertiser.run(provider(sim.clock, ["bluezone", "gaen"], 1440))):
        await wait_for(lambda: advertiser.state().registrations >= 8, 30)
        state = advertiser.state()
        assert state.status is AdvertisingStatus.ACTIVE
        assert state.next_rotation is not None and state.next_rotation > sim.clock.now() - 1
    ids_by_address: dict[str, set[bytes]] = defaultdict(set)
    addresses_by_id: dict[bytes, set[str]] = defaultdict(set)
    by_protocol: dict[str, list[tuple[float, float | None, bytes]]] = defaultdict(list)
    for record in sim.advertisements():
        assert len(record.history) == 1          # never changed in place
        content = record.content
        key = content.service_uuids[0]
        ident = (content.manufacturer_data.get(bluezone.COMPANY_ID)
                 or next(iter(content.service_data.values()))[:16])
        ids_by_address[record.address].add(ident)
        addresses_by_id[ident].add(record.address)
        by_protocol[key].append((record.registered_at, record.ended_at, ident))
    assert all(len(v) == 1 for v in ids_by_address.values())
    assert all(len(v) == 1 for v in addresses_by_id.values())
    bz = by_protocol[bluezone.SERVICE_UUID]
    assert len(bz) >= 5
    for (_, end, _), (next_start, _, _) in itertools.pairwise(bz):
        assert end is not None and end <= next_start        # old one gone first
    for start, _, _ in bz[1:]:
        # changes happen at slot boundaries (60 s), within a little scheduling slack
        offset = start % 60
        assert min(offset, 60 - offset) < 3.0, offset


async def test_kiosk_beacons_are_heard_by_simulated_phones(sim_factory: SimFactory) -> None:
    sim = await sim_factory(HEARERS, speed=1.0)
    advertiser = Advertiser("hci0", sim.clock)
    async with background(advertiser.run(provider(sim.clock, ["bluezone", "gaen"]))):
        await wait_for(lambda: advertiser.state().status is AdvertisingStatus.ACTIVE, 5)
        await wait_for(lambda: len(sim.truth().kiosk_heard) >= 2, 5)
    heard = {(h.visitor, h.protocol) for h in sim.truth().kiosk_heard.values()}
    assert heard == {("android", "bluezone"), ("gaen", "gaen")}


async def test_refusal_is_reported_then_retried(simulated_bluez: SimulatedBluez) -> None:
    sim = simulated_bluez
    sim.faults.inject_error("RegisterAdvertisement", "Failed", times=2,
                            message="Failed to register advertisement")
    advertiser = Advertiser("hci0", sim.clock)
    async with background(advertiser.run(provider(sim.clock, ["bluezone"]))):
        await wait_for(lambda: advertiser.state().status is AdvertisingStatus.FAILED, 5)
        state = advertiser.state()
        assert state.error is not None and "org.bluez.Error.Failed" in state.error
        await wait_for(lambda: advertiser.state().status is AdvertisingStatus.ACTIVE, 10)
    assert advertiser.state().failures >= 1


async def test_release_and_power_cycle_re_register(simulated_bluez: SimulatedBluez) -> None:
    sim = simulated_bluez
    advertiser = Advertiser("hci0", sim.clock)
    async with background(advertiser.run(provider(sim.clock, ["bluezone", "gaen"]))):
        await wait_for(lambda: len(sim.bluez.active_adverts()) == 2, 5)
        await sim.faults.power_off()
        await wait_for(lambda: advertiser.state().status is AdvertisingStatus.PENDING, 5)
        assert advertiser.state().releases == 2
        await sim.faults.power_on()
        await wait_for(lambda: len(sim.bluez.active_adverts()) == 2, 10)
        assert advertiser.state().status is AdvertisingStatus.ACTIVE
