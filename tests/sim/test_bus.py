"""The private bus behaves like a system bus: only org.bluez may be owned."""

from __future__ import annotations

import pytest
from dbus_fast import DBusError
from dbus_fast.aio import MessageBus

from bzlogger.sim.runner import SimulatedBluez


async def test_only_org_bluez_can_be_owned(simulated_bluez: SimulatedBluez) -> None:
    bus = await MessageBus(bus_address=simulated_bluez.bus_address).connect()
    with pytest.raises(DBusError) as denied:
        await bus.request_name("org.example.Kiosk")
    assert denied.value.type == "org.freedesktop.DBus.Error.AccessDenied"
    bus.disconnect()


async def test_environment_names_the_bus_and_clock(simulated_bluez: SimulatedBluez) -> None:
    env = simulated_bluez.environment()
    assert env["DBUS_SYSTEM_BUS_ADDRESS"].startswith("unix:path=")
    assert env["BZLOGGER_CLOCK"] == simulated_bluez.clock.spec()
