"""BlueZ's Device1 change semantics as seen by plain bleak (in process, no bzlogger
code on the scanning side): RSSI hysteresis, DuplicateData, 30 s removal, sessions."""

from __future__ import annotations

import asyncio
from typing import Any

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from dbus_fast import Message
from dbus_fast.aio import MessageBus

from bzlogger.ids import bluezone
from bzlogger.sim.adverts import AdContent
from bzlogger.sim.radio import Report
from bzlogger.sim.runner import SimulatedBluez
from tests.conftest import SimFactory

ADDRESS = "5A:11:22:33:44:55"
ID_A = bytes(range(12))
ID_B = bytes(range(1, 13))


def _content(identifier: bytes) -> AdContent:
    return AdContent(service_uuids=(bluezone.SERVICE_UUID,),
                     manufacturer_data={bluezone.COMPANY_ID: identifier})


async def _feed(sim: SimulatedBluez, rssis: list[int], identifiers: list[bytes]) -> None:
    for rssi, identifier in zip(rssis, identifiers, strict=True):
        sim.bluez.report(Report(ADDRESS, rssi, _content(identifier), "v1"))
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)


async def _scan(sim: SimulatedBluez, filters: dict[str, Any], rssis: list[int],
                identifiers: list[bytes]) -> list[tuple[int, bytes]]:
    seen: list[tuple[int, bytes]] = []

    def detected(device: BLEDevice, adv: AdvertisementData) -> None:
        seen.append((adv.rssi, adv.manufacturer_data[bluezone.COMPANY_ID]))

    async with BleakScanner(detected, bluez={"filters": filters}):  # type: ignore[typeddict-item]
        await asyncio.sleep(0.1)
        await _feed(sim, rssis, identifiers)
    return seen


async def test_rssi_changes_under_8_db_are_not_signalled(simulated_bluez: SimulatedBluez) -> None:
    seen = await _scan(simulated_bluez, {"Transport": "le", "DuplicateData": False},
                       [-60, -63, -67, -68, -59], [ID_A] * 5)
    # -63 and -67 are within 8 dB of -60; -68 is 8 away; -59 is 9 away from -68.
    assert [rssi for rssi, _ in seen] == [-60, -68, -59]


async def test_rssi_filter_signals_every_rssi(simulated_bluez: SimulatedBluez) -> None:
    seen = await _scan(simulated_bluez, {"Transport": "le", "RSSI": -127},
                       [-60, -63, -67, -68], [ID_A] * 4)
    assert [rssi for rssi, _ in seen] == [-60, -63, -67, -68]


async def test_data_signalled_on_change_only_without_duplicate_data(
        simulated_bluez: SimulatedBluez) -> None:
    seen = await _scan(simulated_bluez, {"DuplicateData": False},
                       [-60, -60, -60, -60], [ID_A, ID_A, ID_B, ID_B])
    assert [data for _, data in seen] == [ID_A, ID_B]


async def test_duplicate_data_signals_every_report(simulated_bluez: SimulatedBluez) -> None:
    seen = await _scan(simulated_bluez, {"DuplicateData": True},
                       [-60, -60, -60, -60], [ID_A, ID_A, ID_B, ID_B])
    assert [data for _, data in seen] == [ID_A, ID_A, ID_B, ID_B]


async def test_device_removed_30_s_after_last_seen(sim_factory: SimFactory) -> None:
    sim = await sim_factory(speed=20.0)
    removed: list[str] = []
    async with BleakScanner(lambda d, a: None) as scanner:
        seen_at = sim.clock.now()
        sim.bluez.report(Report(ADDRESS, -60, _content(ID_A), "v1"))
        await asyncio.sleep(0.2)
        assert ADDRESS in {d.address for d in scanner.discovered_devices}
        path = sim.bluez.device_paths()[ADDRESS]
        bus = await MessageBus(bus_address=sim.bus_address).connect()

        def on_message(msg: Message) -> None:
            if msg.member == "InterfacesRemoved" and msg.body[0] == path:
                removed.append(f"{sim.clock.now() - seen_at:.1f}")

        bus.add_message_handler(on_message)
        await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                               interface="org.freedesktop.DBus", member="AddMatch",
                               signature="s", body=["type='signal',member='InterfacesRemoved'"]))
        await sim.clock.sleep(seen_at + 27 - sim.clock.now())
        assert removed == []  # still there 27 s after it was seen
        await sim.clock.sleep(seen_at + 36 - sim.clock.now())
        assert len(removed) == 1
        assert 30.0 <= float(removed[0]) <= 34.0
        assert ADDRESS not in {d.address for d in scanner.discovered_devices}
        bus.disconnect()


async def test_devices_cleared_after_discovery_stops(sim_factory: SimFactory) -> None:
    sim = await sim_factory(speed=20.0)
    async with BleakScanner(lambda d, a: None):
        sim.bluez.report(Report(ADDRESS, -60, _content(ID_A), "v1"))
        seen_at = sim.clock.now()
        await asyncio.sleep(0.1)
    # Kept for the temporary-device timeout (a BleakClient can still connect), then gone.
    assert ADDRESS in sim.bluez.device_paths()
    await sim.clock.sleep(seen_at + 34 - sim.clock.now())
    assert sim.bluez.device_paths() == {}


async def test_reports_ignored_when_nobody_discovers(simulated_bluez: SimulatedBluez) -> None:
    simulated_bluez.bluez.report(Report(ADDRESS, -60, _content(ID_A), "v1"))
    assert simulated_bluez.bluez.device_paths() == {}


async def test_discovery_session_ends_when_client_leaves(simulated_bluez: SimulatedBluez) -> None:
    bus = await MessageBus(bus_address=simulated_bluez.bus_address).connect()
    reply = await bus.call(Message(destination="org.bluez", path="/org/bluez/hci0",
                                   interface="org.bluez.Adapter1", member="StartDiscovery"))
    assert reply.error_name is None
    again = await bus.call(Message(destination="org.bluez", path="/org/bluez/hci0",
                                   interface="org.bluez.Adapter1", member="StartDiscovery"))
    assert again.error_name == "org.bluez.Error.InProgress"
    assert simulated_bluez.bluez.discovery_sessions() == {bus.unique_name}
    bus.disconnect()
    for _ in range(50):
        await asyncio.sleep(0.02)
        if not simulated_bluez.bluez.discovery_sessions():
            break
    assert simulated_bluez.bluez.discovery_sessions() == set()


def test_clock_variable_matches_the_cli() -> None:
    from bzlogger.cli.context import CLOCK_ENV as CLI_CLOCK_ENV
    from bzlogger.sim.runner import CLOCK_ENV

    assert CLOCK_ENV == CLI_CLOCK_ENV


async def test_second_adapter(sim_factory: SimFactory) -> None:
    from bzlogger.sim.adapter import AdapterConfig

    await sim_factory("""
[scenario]
seed = 4
start = "2020-08-17T08:00:00Z"
[[visitors]]
name = "a"
kind = "bluezone-android"
profile = "stationary"
distance = 1.0
""", adapters=(AdapterConfig(), AdapterConfig("hci1", "00:1A:7D:DA:71:13", 4)))
    found: dict[str, set[str]] = {}
    for adapter in ("hci0", "hci1"):
        async with BleakScanner(lambda d, a: None, bluez={"adapter": adapter}) as scanner:
            await asyncio.sleep(0.4)
            found[adapter] = {d.details["path"] for d in scanner.discovered_devices}
    assert len(found["hci0"]) == 1 and len(found["hci1"]) == 1
    assert next(iter(found["hci1"])).startswith("/org/bluez/hci1/dev_")


async def test_report_listeners_see_delivered_reports(simulated_bluez: SimulatedBluez) -> None:
    delivered: list[tuple[int, str]] = []
    simulated_bluez.bluez.report_listeners.append(lambda r, a: delivered.append((r.rssi, a)))
    simulated_bluez.bluez.report(Report(ADDRESS, -60, _content(ID_A), "v1"))  # nobody scans
    async with BleakScanner(lambda d, a: None, bluez={"filters": {"RSSI": -80}}):
        await asyncio.sleep(0.1)
        for rssi in (-61, -62, -90):  # -90 is below the RSSI filter
            simulated_bluez.bluez.report(Report(ADDRESS, rssi, _content(ID_A), "v1"))
    assert delivered == [(-61, "hci0"), (-62, "hci0")]
