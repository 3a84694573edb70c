"""Every fault can be triggered from a test (and from a scenario file)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDBusError
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from bzlogger.ids import bluezone, gaen
from bzlogger.sim.runner import SimulatedBluez
from tests.conftest import SimFactory

ONE_PHONE = """
[scenario]
name = "one"
seed = 2
start = "2020-08-17T08:00:00Z"
duration = "1h"

[[visitors]]
name = "android"
kind = "bluezone-android"
profile = "stationary"
distance = 1.0
stay = "1h"
"""
EVERY_REPORT = {"RSSI": -127, "DuplicateData": True}


async def _watch_bus(address: str) -> tuple[MessageBus, list[Message]]:
    bus = await MessageBus(bus_address=address).connect()
    seen: list[Message] = []
    bus.add_message_handler(lambda m: seen.append(m) if m.message_type == MessageType.SIGNAL
                            else None)
    for rule in ("type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',"
                 "arg0='org.bluez'", "type='signal',interface='org.freedesktop.DBus.Properties'"):
        await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                               interface="org.freedesktop.DBus", member="AddMatch",
                               signature="s", body=[rule]))
    return bus, seen


async def _managed_objects(bus: MessageBus) -> dict[str, Any]:
    reply = await bus.call(Message(destination="org.bluez", path="/",
                                   interface="org.freedesktop.DBus.ObjectManager",
                                   member="GetManagedObjects"))
    assert reply.message_type == MessageType.METHOD_RETURN, reply.body
    objects: dict[str, Any] = reply.body[0]
    return objects


async def test_restart_bluetoothd(sim_factory: SimFactory) -> None:
    sim = await sim_factory(ONE_PHONE)
    bus, seen = await _watch_bus(sim.bus_address)
    released: list[str] = []
    bus.add_message_handler(lambda m: released.append(m.member or "")
                            if m.member == "Release" else None)
    await bus.call(Message(destination="org.bluez", path="/org/bluez/hci0",
                           interface="org.bluez.Adapter1", member="StartDiscovery"))
    await asyncio.sleep(0.6)
    assert any("/dev_" in path for path in await _managed_objects(bus))

    restart = asyncio.create_task(sim.faults.restart_bluetoothd(downtime=0.5))
    await asyncio.sleep(0.2)
    gone = await bus.call(Message(destination="org.bluez", path="/",
                                  interface="org.freedesktop.DBus.ObjectManager",
                                  member="GetManagedObjects"))
    assert gone.error_name == "org.freedesktop.DBus.Error.ServiceUnknown"
    await restart
    owners = [m.body for m in seen if m.member == "NameOwnerChanged"]
    assert owners[0][2] == "" and owners[1][1] == "" and owners[1][2]  # dropped, re-acquired
    objects = await _managed_objects(bus)
    assert "/org/bluez/hci0" in objects
    assert not any("/dev_" in path for path in objects)  # the session died with it
    await asyncio.sleep(0.6)
    assert not any("/dev_" in path for path in await _managed_objects(bus))
    assert sim.bluez.discovery_sessions() == set()
    assert released == []
    assert sim.truth().faults[0]["action"] == "restart_bluetoothd"
    bus.disconnect()


async def test_power_cycle(sim_factory: SimFactory) -> None:
    sim = await sim_factory(ONE_PHONE)
    bus, seen = await _watch_bus(sim.bus_address)
    await bus.call(Message(destination="org.bluez", path="/org/bluez/hci0",
                           interface="org.bluez.Adapter1", member="StartDiscovery"))
    await sim.faults.power_cycle(off_for=0.2)
    await asyncio.sleep(0.1)
    changes = [m.body[1] for m in seen if m.member == "PropertiesChanged"
               and m.body[0] == "org.bluez.Adapter1"]
    assert {"Discovering": Variant("b", True)} in changes
    powered = [c["Powered"].value for c in changes if "Powered" in c]
    assert powered == [False, True]
    assert changes[-1] != {"Discovering": Variant("b", True)}
    assert sim.bluez.discovery_sessions() == set()
    bus.disconnect()


async def test_powered_can_be_set_by_clients(simulated_bluez: SimulatedBluez) -> None:
    bus = await MessageBus(bus_address=simulated_bluez.bus_address).connect()
    reply = await bus.call(Message(destination="org.bluez", path="/org/bluez/hci0",
                                   interface="org.freedesktop.DBus.Properties", member="Set",
                                   signature="ssv",
                                   body=["org.bluez.Adapter1", "Powered", Variant("b", False)]))
    assert reply.message_type == MessageType.METHOD_RETURN
    start = await bus.call(Message(destination="org.bluez", path="/org/bluez/hci0",
                                   interface="org.bluez.Adapter1", member="StartDiscovery"))
    assert start.error_name == "org.bluez.Error.NotReady"
    bus.disconnect()


@pytest.mark.parametrize("error", ["InProgress", "NotReady"])
async def test_injected_start_discovery_errors(simulated_bluez: SimulatedBluez,
                                               error: str) -> None:
    simulated_bluez.faults.inject_error("StartDiscovery", error, times=2)
    for _ in range(2):
        with pytest.raises(BleakDBusError) as raised:
            await BleakScanner(lambda d, a: None).start()
        assert raised.value.dbus_error == f"org.bluez.Error.{error}"
    scanner = BleakScanner(lambda d, a: None)
    await scanner.start()
    await scanner.stop()


async def test_silent_scanner(sim_factory: SimFactory) -> None:
    sim = await sim_factory(ONE_PHONE, speed=10.0)
    heard: list[float] = []

    def detected(device: BLEDevice, adv: AdvertisementData) -> None:
        heard.append(sim.clock.now())

    async with BleakScanner(detected, bluez={"filters": EVERY_REPORT}):  # type: ignore[typeddict-item]
        await asyncio.sleep(0.5)
        assert heard
        sim.faults.silence_scanner(10.0)  # 1 s real at 10x
        silent_from = sim.clock.now()
        await asyncio.sleep(0.8)
        assert not [t for t in heard if t > silent_from + 0.5]
        await asyncio.sleep(0.8)
        assert [t for t in heard if t > silent_from + 10.0]


@pytest.mark.parametrize(("payload", "check"), [
    ("bluezone_short", lambda a: len(a.manufacturer_data[bluezone.COMPANY_ID]) == 11
     and bluezone.SERVICE_UUID in a.service_uuids),
    ("bluezone_long", lambda a: len(a.manufacturer_data[bluezone.COMPANY_ID]) == 13),
    ("bluezone_unlisted", lambda a: len(a.manufacturer_data[bluezone.COMPANY_ID]) == 12
     and not a.service_uuids),
    ("gaen_short", lambda a: len(a.service_data[gaen.SERVICE_UUID]) == 19),
    ("gaen_long", lambda a: len(a.service_data[gaen.SERVICE_UUID]) == 21),
    ("gaen_unlisted", lambda a: len(a.service_data[gaen.SERVICE_UUID]) == 20
     and not a.service_uuids),
    ("ios_overflow_short", lambda a: a.manufacturer_data[0x004C][:1] == b"\x01"
     and len(a.manufacturer_data[0x004C]) == 8),
])
async def test_malformed_payloads(simulated_bluez: SimulatedBluez, payload: str,
                                  check: Any) -> None:
    adverts: list[AdvertisementData] = []
    async with BleakScanner(lambda d, a: adverts.append(a)):
        simulated_bluez.faults.malformed(payload, duration=30.0)
        await asyncio.sleep(0.6)
    assert adverts
    assert all(check(a) for a in adverts)


async def test_faults_from_a_scenario_file(sim_factory: SimFactory) -> None:
    sim = await sim_factory(ONE_PHONE + """
[[faults]]
at = "2s"
action = "restart_bluetoothd"
downtime = "1s"

[[faults]]
at = "4s"
action = "inject_error"
method = "StartDiscovery"
error = "InProgress"

[[faults]]
at = "5s"
action = "gatt_fault"
kind = "walk_away"
""", speed=10.0)
    await asyncio.sleep(0.9)
    actions = [f["action"] for f in sim.truth().faults]
    assert actions == ["restart_bluetoothd", "inject_error", "gatt_fault"]
    assert sim.bluez.stats.restarts == 1
    assert sim.bluez.running


async def test_stop_discovery_in_progress_drops_the_session(
        simulated_bluez: SimulatedBluez) -> None:
    scanner = BleakScanner(lambda d, a: None)
    await scanner.start()
    simulated_bluez.faults.inject_error("StopDiscovery", "InProgress")
    await scanner.stop()  # bleak recovers with StartDiscovery + StopDiscovery
    assert simulated_bluez.bluez.discovery_sessions() == set()
