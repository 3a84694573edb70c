"""Advertiser pieces that need no bus: properties, bytes, keeping beacons until due."""

from __future__ import annotations

import pytest

from bzlogger.ble.advertiser import Advertiser, AdvertisingStatus, schedule_provider
from bzlogger.ble.beacon_payload import advertisement_properties, expected_bytes
from bzlogger.clock import ManualClock
from bzlogger.ids.schedule import Beacon, DayKeys
from bzlogger.model import Protocol

DAY = 1_597_622_400  # 2020-08-17T00:00:00Z
ID = bytes(range(12))
RPI = bytes(range(16))
AEM = b"\x01\x02\x03\x04"


def test_properties_and_bytes() -> None:
    bz = Beacon(Protocol.BLUEZONE, ID, DAY, DAY + 900)
    props = advertisement_properties(bz)
    assert props["Type"].value == "broadcast"
    assert props["ServiceUUIDs"].value == ["00004e56-0000-1000-8000-00805f9b34fb"]
    assert props["ManufacturerData"].value[0x22B5].value == ID
    assert (props["MinInterval"].value, props["MaxInterval"].value) == (100, 150)
    assert "MinInterval" not in advertisement_properties(bz, intervals=False)
    assert expected_bytes(bz) == bytes.fromhex("0303564E0FFFB522") + ID
    ga = Beacon(Protocol.GAEN, RPI, DAY, DAY + 700, AEM)
    assert expected_bytes(ga) == bytes.fromhex("03036FFD17166FFD") + RPI + AEM
    with pytest.raises(ValueError, match="AEM"):
        expected_bytes(Beacon(Protocol.GAEN, RPI, DAY, DAY + 700))


async def test_beacons_are_kept_until_due_and_gaen_rotation_is_not_redrawn() -> None:
    keys = DayKeys.generate(DAY)

    async def keys_for_day(day: int) -> DayKeys:
        assert day == DAY
        return keys

    provide = schedule_provider(["bluezone", "gaen"], keys_for_day)
    advertiser = Advertiser("hci0", ManualClock(DAY + 10))
    first = {b.protocol: b for b in await advertiser._due_beacons(provide, DAY + 10)}
    advertiser._wanted = first
    again = {b.protocol: b for b in await advertiser._due_beacons(provide, DAY + 500)}
    assert again == first                      # nothing due yet: same beacons
    later = {b.protocol: b for b in await advertiser._due_beacons(provide, DAY + 900)}
    assert later[Protocol.BLUEZONE].identifier != first[Protocol.BLUEZONE].identifier
    assert later[Protocol.BLUEZONE].valid_from == DAY + 900
    gaen_until = first[Protocol.GAEN].valid_until
    assert 600 <= gaen_until - (DAY + 10) <= 1200
    assert later[Protocol.GAEN] == first[Protocol.GAEN] or gaen_until <= DAY + 900


def test_initial_state() -> None:
    state = Advertiser("hci0", ManualClock(DAY)).state()
    assert state.status is AdvertisingStatus.OFF
    assert state.next_rotation is None and state.active == ()
