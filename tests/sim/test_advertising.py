"""LEAdvertisingManager1 through plain dbus-fast: the simulator reads the caller's object
before replying, validates it as BlueZ does, follows updates, releases adverts on
power-off, and the world's phones hear the kiosk's beacons."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import pytest
from dbus_fast import DBusError, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusSignature
from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_property, method

from bzlogger.ids import bluezone, gaen
from bzlogger.sim.adverts import AdContent, decode_beacon, parse_registration
from bzlogger.sim.runner import SimulatedBluez
from tests.conftest import SimFactory

ADAPTER = "/org/bluez/hci0"
ADV = "org.bluez.LEAdvertisement1"
BEACON_ID = bytes.fromhex("0102030405060708090a0b0c")

PHONES = """
[scenario]
name = "phones"
seed = 5
start = "2020-08-17T08:00:00Z"
duration = "1h"

[[visitors]]
name = "android"
kind = "bluezone-android"
profile = "stationary"
distance = 1.0
stay = "1h"

[[visitors]]
name = "gaen"
kind = "gaen"
profile = "stationary"
distance = 1.0
stay = "1h"

[[visitors]]
name = "far"
kind = "bluezone-android"
profile = "stationary"
distance = 400.0
stay = "1h"
"""


class BluezoneAdvert(ServiceInterface):
    """A kiosk-style Bluezone advertisement exported with dbus-fast."""

    def __init__(self, identifier: bytes) -> None:
        super().__init__(ADV)
        self.identifier = identifier
        self.released = asyncio.Event()

    @method()
    def Release(self):  # type: ignore[no-untyped-def]
        self.released.set()

    @dbus_property(access=PropertyAccess.READ)
    def Type(self) -> Annotated[str, DBusSignature("s")]:
        return "peripheral"

    @dbus_property(access=PropertyAccess.READ)
    def ServiceUUIDs(self) -> Annotated[list[str], DBusSignature("as")]:
        return ["4E56"]

    @dbus_property(access=PropertyAccess.READ)
    def ManufacturerData(
            self) -> Annotated[dict[int, Variant], DBusSignature("a{qv}")]:
        return {bluezone.COMPANY_ID: Variant("ay", self.identifier)}

    def change(self, identifier: bytes) -> None:
        self.identifier = identifier
        self.emit_properties_changed(
            {"ManufacturerData": {bluezone.COMPANY_ID: Variant("ay", identifier)}})


class RawAdvert:
    """An advertisement object answered by hand, so tests can send any property."""

    def __init__(self, bus: MessageBus, path: str, props: dict[str, Variant]) -> None:
        self.path = path
        self.props = props
        self.events: list[str] = []
        bus.add_message_handler(self._handle)

    def _handle(self, msg: Message) -> Message | None:
        if msg.message_type != MessageType.METHOD_CALL or msg.path != self.path:
            return None
        self.events.append(msg.member or "")
        if msg.member == "GetAll":
            return Message.new_method_return(msg, "a{sv}", [self.props])
        return Message.new_method_return(msg)


async def _register(bus: MessageBus, path: str) -> Message:
    return await bus.call(Message(destination="org.bluez", path=ADAPTER,
                                  interface="org.bluez.LEAdvertisingManager1",
                                  member="RegisterAdvertisement", signature="oa{sv}",
                                  body=[path, {}]))


def _bluezone_props(identifier_length: int = 12, **extra: Variant) -> dict[str, Variant]:
    return {
        "Type": Variant("s", "peripheral"),
        "ServiceUUIDs": Variant("as", ["4E56"]),
        "ManufacturerData": Variant("a{qv}", {
            bluezone.COMPANY_ID: Variant("ay", bytes(identifier_length))}),
        **extra,
    }


@pytest.fixture
async def client(simulated_bluez: SimulatedBluez) -> Any:
    bus = await MessageBus(bus_address=simulated_bluez.bus_address).connect()
    yield bus
    bus.disconnect()


async def test_registration_reads_the_object_before_replying(
        simulated_bluez: SimulatedBluez, client: MessageBus) -> None:
    advert = RawAdvert(client, "/kiosk/adv0", _bluezone_props())
    reply = await _register(client, advert.path)
    advert.events.append("reply")
    assert reply.message_type == MessageType.METHOD_RETURN, reply.body
    assert advert.events == ["GetAll", "reply"]
    [record] = simulated_bluez.advertisements()
    assert record.type == "peripheral"
    assert decode_beacon(record.content) is not None
    assert record.content.manufacturer_data == {bluezone.COMPANY_ID: bytes(12)}


@pytest.mark.parametrize(("props", "error"), [
    ({"Type": Variant("s", "beacon")}, "org.bluez.Error.InvalidArguments"),
    ({}, "org.bluez.Error.InvalidArguments"),
    ({"Type": Variant("s", "broadcast"),
      "ManufacturerData": Variant("a{qs}", {1: "x"})}, "org.bluez.Error.InvalidArguments"),
    ({"Type": Variant("s", "broadcast"), "ServiceUUIDs": Variant("s", "4E56")},
     "org.bluez.Error.InvalidArguments"),
    ({"Type": Variant("s", "broadcast"), "ServiceUUIDs": Variant("as", ["nope"])},
     "org.bluez.Error.InvalidArguments"),
    (_bluezone_props(21), "org.bluez.Error.InvalidLength"),
    (_bluezone_props(12, LocalName=Variant("s", "kiosk-at-the-door")),
     "org.bluez.Error.InvalidLength"),
])
async def test_invalid_advertisements_are_refused(
        simulated_bluez: SimulatedBluez, client: MessageBus, props: dict[str, Variant],
        error: str) -> None:
    advert = RawAdvert(client, "/kiosk/bad", props)
    reply = await _register(client, advert.path)
    assert reply.error_name == error
    assert simulated_bluez.advertisements() == []


async def test_legacy_limit_is_31_bytes_of_ad_structures(client: MessageBus) -> None:
    # flags 3 + UUID list 4 + manufacturer data 4 + 20 = 31: fits exactly.
    advert = RawAdvert(client, "/kiosk/full", _bluezone_props(20))
    assert (await _register(client, advert.path)).message_type == MessageType.METHOD_RETURN
    gaen_full = parse_registration({
        "Type": Variant("s", "broadcast"), "Discoverable": Variant("b", True),
        "ServiceUUIDs": Variant("as", ["FD6F"]),
        "ServiceData": Variant("a{sv}", {"FD6F": Variant("ay", bytes(20))})})
    assert gaen_full.content.ad_length() == 31


async def test_instance_limit_and_duplicates(simulated_bluez: SimulatedBluez,
                                             client: MessageBus) -> None:
    adverts = [RawAdvert(client, f"/kiosk/adv{i}", _bluezone_props()) for i in range(6)]
    for advert in adverts[:5]:
        assert (await _register(client, advert.path)).message_type == MessageType.METHOD_RETURN
    assert (await _register(client, adverts[5].path)).error_name == \
        "org.bluez.Error.NotPermitted"
    assert (await _register(client, adverts[0].path)).error_name == \
        "org.bluez.Error.AlreadyExists"
    manager = await _props(client, "org.bluez.LEAdvertisingManager1")
    assert manager["ActiveInstances"].value == 5
    assert manager["SupportedInstances"].value == 0
    unregister = await client.call(Message(
        destination="org.bluez", path=ADAPTER, interface="org.bluez.LEAdvertisingManager1",
        member="UnregisterAdvertisement", signature="o", body=[adverts[0].path]))
    assert unregister.message_type == MessageType.METHOD_RETURN
    assert (await _register(client, adverts[5].path)).message_type == MessageType.METHOD_RETURN
    assert "Release" not in adverts[0].events
    addresses = [r.address for r in simulated_bluez.advertisements()]
    assert len(set(addresses)) == 6  # a fresh random address per registration


async def _props(bus: MessageBus, interface: str) -> dict[str, Variant]:
    reply = await bus.call(Message(destination="org.bluez", path=ADAPTER,
                                   interface="org.freedesktop.DBus.Properties",
                                   member="GetAll", signature="s", body=[interface]))
    result: dict[str, Variant] = reply.body[0]
    return result


async def test_dbus_fast_advert_updates_release_and_hearing(sim_factory: SimFactory) -> None:
    sim = await sim_factory(PHONES, speed=10.0)
    bus = await MessageBus(bus_address=sim.bus_address).connect()
    advert = BluezoneAdvert(BEACON_ID)
    bus.export("/kiosk/bluezone", advert)
    introspection = await bus.introspect("org.bluez", ADAPTER)
    manager = bus.get_proxy_object("org.bluez", ADAPTER, introspection).get_interface(
        "org.bluez.LEAdvertisingManager1")
    await manager.call_register_advertisement("/kiosk/bluezone", {})  # type: ignore[attr-defined]
    await asyncio.sleep(0.6)
    new_id = bytes(range(20, 32))
    advert.change(new_id)
    await asyncio.sleep(0.6)
    [record] = sim.advertisements()
    assert [c.manufacturer_data[bluezone.COMPANY_ID] for _, c in record.history] == \
        [BEACON_ID, new_id]

    heard = sim.truth().kiosk_heard
    assert ("android", BEACON_ID.hex()) in heard
    assert ("android", new_id.hex()) in heard
    assert heard[("android", BEACON_ID.hex())].address == record.address
    assert not any(visitor in ("gaen", "far") for visitor, _ in heard)

    await sim.faults.power_off()
    await asyncio.wait_for(advert.released.wait(), 5)
    assert record.end_reason == "adapter powered off"
    assert sim.bluez.active_adverts() == []
    with pytest.raises(DBusError) as refused:
        await manager.call_register_advertisement("/kiosk/bluezone", {})  # type: ignore[attr-defined]
    assert refused.value.type == "org.bluez.Error.NotReady"
    await sim.faults.power_on()
    await manager.call_register_advertisement("/kiosk/bluezone", {})  # type: ignore[attr-defined]
    assert len(sim.advertisements()) == 2
    bus.disconnect()


async def test_gaen_phones_hear_a_gaen_broadcast(sim_factory: SimFactory) -> None:
    sim = await sim_factory(PHONES, speed=10.0)
    bus = await MessageBus(bus_address=sim.bus_address).connect()
    rpi_aem = bytes(range(20))
    RawAdvert(bus, "/kiosk/gaen", {
        "Type": Variant("s", "broadcast"),
        "ServiceUUIDs": Variant("as", [gaen.SERVICE_UUID]),
        "ServiceData": Variant("a{sv}", {"FD6F": Variant("ay", rpi_aem)}),
    })
    assert (await _register(bus, "/kiosk/gaen")).message_type == MessageType.METHOD_RETURN
    await asyncio.sleep(0.6)
    heard = sim.truth().kiosk_heard
    assert set(heard) == {("gaen", rpi_aem[:16].hex())}
    [record] = sim.advertisements()
    assert int(record.address[:2], 16) >> 6 == 0  # non-resolvable private address
    bus.disconnect()
    await asyncio.sleep(0.1)
    assert record.end_reason == "client left the bus"


def test_ad_length_counts_structures() -> None:
    content = AdContent(service_uuids=(bluezone.SERVICE_UUID,),
                        manufacturer_data={bluezone.COMPANY_ID: bytes(12)})
    assert content.ad_length() == 3 + 4 + 16
    ios = AdContent(service_uuids=(bluezone.IOS_SERVICE_UUID,), local_name="Bluezone",
                    discoverable=False)
    assert ios.ad_length() == 18 + 10
