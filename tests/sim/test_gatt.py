"""bleak's BleakClient reads an iOS Bluezone phone's ID characteristic through the
simulator; GATT failures seen on real hardware can be injected; connections are counted
per phone."""

from __future__ import annotations

import asyncio

import pytest
from bleak import BleakClient
from bleak.exc import BleakDBusError, BleakError

from bzlogger.ids import bluezone
from bzlogger.sim.runner import SimulatedBluez
from tests.conftest import SimFactory

IOS = """
[scenario]
name = "ios"
seed = 9
start = "2020-08-17T08:00:00Z"
duration = "1h"

[[visitors]]
name = "ios"
kind = "bluezone-ios"
background = true
profile = "stationary"
distance = 1.0
stay = "1h"

[[visitors]]
name = "gaen"
kind = "gaen"
profile = "stationary"
distance = 1.0
stay = "1h"
"""


@pytest.fixture
async def sim(sim_factory: SimFactory) -> SimulatedBluez:
    return await sim_factory(IOS, speed=1.0)


def _address(sim: SimulatedBluez, visitor: str) -> str:
    return sim.visitor(visitor).emission(sim.clock.now()).address


async def test_bleak_client_reads_ios_id(sim: SimulatedBluez) -> None:
    phone = sim.visitor("ios")
    async with BleakClient(_address(sim, "ios"), timeout=10) as client:
        value = await client.read_gatt_char(bluezone.IOS_CHARACTERISTIC_UUID)
        service = client.services.get_service(bluezone.IOS_SERVICE_UUID)
        assert service is not None
    assert bytes(value) == phone.emission(sim.clock.now()).identifier
    stats = sim.bluez.stats
    assert (stats.connect_attempts["ios"], stats.connections["ios"], stats.reads["ios"]) == \
        (1, 1, 1)
    await asyncio.sleep(0.1)
    device = sim.bluez.device_paths()[_address(sim, "ios")]
    assert not any(p.startswith(device + "/") for p in sim.bluez.server.objects)  # GATT gone
    truth = sim.truth().visitor("ios")
    assert (truth.connect_attempts, truth.connections, truth.reads) == (1, 1, 1)


async def test_abort_by_local_is_retried_by_bleak(sim: SimulatedBluez) -> None:
    sim.faults.gatt_fault("abort_by_local", times=2)
    async with BleakClient(_address(sim, "ios"), timeout=10) as client:
        value = await client.read_gatt_char(bluezone.IOS_CHARACTERISTIC_UUID)
    assert len(value) == 12
    assert sim.bluez.stats.connect_attempts["ios"] == 3
    assert sim.bluez.stats.connections["ios"] == 1


async def test_in_progress_connect_fails(sim: SimulatedBluez) -> None:
    sim.faults.gatt_fault("in_progress")
    with pytest.raises(BleakDBusError) as error:
        async with BleakClient(_address(sim, "ios"), timeout=10):
            pass
    assert error.value.dbus_error == "org.bluez.Error.InProgress"
    async with BleakClient(_address(sim, "ios"), timeout=10) as client:  # next one works
        assert len(await client.read_gatt_char(bluezone.IOS_CHARACTERISTIC_UUID)) == 12


async def test_connect_timeout(sim: SimulatedBluez) -> None:
    sim.faults.gatt_fault("connect_timeout", visitor="ios")
    with pytest.raises(TimeoutError):
        async with BleakClient(_address(sim, "ios"), timeout=2):
            pass
    assert sim.bluez.stats.connect_attempts["ios"] == 1
    assert sim.bluez.stats.connections["ios"] == 0


async def test_gaen_phone_is_not_connectable(sim: SimulatedBluez) -> None:
    with pytest.raises(TimeoutError):
        async with BleakClient(_address(sim, "gaen"), timeout=2):
            pass


async def test_phone_walks_away_mid_read(sim: SimulatedBluez) -> None:
    sim.faults.gatt_fault("walk_away")
    disconnected = asyncio.Event()
    client = BleakClient(_address(sim, "ios"), timeout=10,
                         disconnected_callback=lambda c: disconnected.set())
    await client.connect()
    with pytest.raises(BleakError):
        await client.read_gatt_char(bluezone.IOS_CHARACTERISTIC_UUID)
    await asyncio.wait_for(disconnected.wait(), 5)
    assert not client.is_connected
    phone = sim.visitor("ios")
    assert phone.left_at is not None
    assert not phone.present(sim.clock.now())
    await client.disconnect()


async def test_injected_read_error(sim: SimulatedBluez) -> None:
    sim.faults.inject_error("ReadValue", "org.bluez.Error.Failed", message="Not connected")
    async with BleakClient(_address(sim, "ios"), timeout=10) as client:
        with pytest.raises(BleakDBusError):
            await client.read_gatt_char(bluezone.IOS_CHARACTERISTIC_UUID)
        assert len(await client.read_gatt_char(bluezone.IOS_CHARACTERISTIC_UUID)) == 12


async def test_old_address_does_not_answer_after_rotation(sim_factory: SimFactory) -> None:
    # Start 2 s before a slot boundary at 2x: the phone rotates its address while the
    # old device object is still known to bluetoothd.
    sim = await sim_factory(IOS.replace('start = "2020-08-17T08:00:00Z"',
                                        'start = "2020-08-17T08:14:58Z"'), speed=2.0)
    from bleak import BleakScanner

    old = _address(sim, "ios")
    device = await BleakScanner.find_device_by_address(old, timeout=5)
    assert device is not None
    await sim.clock.sleep(sim.scenario.start + 3 - sim.clock.now())
    assert _address(sim, "ios") != old
    with pytest.raises((TimeoutError, BleakDBusError)):
        async with BleakClient(device, timeout=2):
            pass
    assert sim.bluez.stats.connections["ios"] == 0
