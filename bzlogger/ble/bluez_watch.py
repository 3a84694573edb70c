"""Watch bluetoothd and one adapter on the system bus: who owns ``org.bluez``
(``NameOwnerChanged``, so a bluetoothd restart is seen), whether the adapter exists and
is ``Powered``, and whether our own bus connection is still alive.

bleak does not notice a bluetoothd restart (see ``shared/reference/bluez.md``), and a
registered advertisement silently vanishes with the old bluetoothd, so both the scanner
and the advertiser rebuild their state when :attr:`BluezWatch.generation` changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from bzlogger.clock import Clock
from bzlogger.logsetup import get_logger

BLUEZ = "org.bluez"
ADAPTER_IFACE = "org.bluez.Adapter1"
PROPERTIES_IFACE = "org.freedesktop.DBus.Properties"
OBJECT_MANAGER_IFACE = "org.freedesktop.DBus.ObjectManager"
DBUS = "org.freedesktop.DBus"

log = get_logger("ble.watch")


class DBusCallError(Exception):
    """A D-Bus method call answered with an error; ``name`` is the D-Bus error name."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(f"{name}: {text}" if text else name)
        self.name = name
        self.text = text


def adapter_path(adapter: str) -> str:
    """The BlueZ object path of adapter ``hciN``."""
    return f"/org/bluez/{adapter}"


async def call(bus: MessageBus, message: Message, limit_s: float = 10.0) -> Message:
    """Send ``message`` and return the reply; a D-Bus error raises :class:`DBusCallError`,
    no reply within ``limit_s`` real seconds raises :class:`TimeoutError`."""
    # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
    # that races with the reply, leaving the caller's task running after cancel().
    async with asyncio.timeout(limit_s):
        reply = await bus.call(message)
    if reply is None:
        raise DBusCallError("org.freedesktop.DBus.Error.NoReply", "no reply")
    if reply.message_type == MessageType.ERROR:
        text = str(reply.body[0]) if reply.body else ""
        raise DBusCallError(reply.error_name or "unknown", text)
    return reply


_disconnect_events: dict[int, tuple[MessageBus, asyncio.Event]] = {}
_disconnect_tasks: set[asyncio.Task[None]] = set()


def disconnect_event(bus: MessageBus) -> asyncio.Event:
    """An event set once ``bus`` has disconnected (one watcher per bus, shared).

    Wait on this, never on ``bus.wait_for_disconnect()`` from a task that may be
    cancelled: that coroutine awaits dbus-fast's own future, and cancelling the waiting
    task cancels the future itself, so every other waiter (bleak's bus monitor among
    them) would see a cancellation instead of the disconnect."""
    entry = _disconnect_events.get(id(bus))
    if entry is not None and entry[0] is bus:
        return entry[1]
    event = asyncio.Event()
    if not bus.connected:
        event.set()
        return event
    _disconnect_events[id(bus)] = (bus, event)

    async def watch() -> None:
        try:
            await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
        except Exception:  # a broken connection is a disconnect too
            log.debug("bus connection ended with an error")
        finally:
            event.set()
            if _disconnect_events.get(id(bus), (None,))[0] is bus:
                del _disconnect_events[id(bus)]

    task = asyncio.get_running_loop().create_task(watch())
    _disconnect_tasks.add(task)
    task.add_done_callback(_disconnect_tasks.discard)
    return event


class BluezWatch:
    """A system-bus connection that tracks bluetoothd and adapter ``adapter``.

    ``on_change`` is called (synchronously, from the bus reader) whenever the owner of
    ``org.bluez``, the adapter's presence or its ``Powered`` property changes, or when the
    connection is lost.
    """

    def __init__(self, adapter: str, on_change: Callable[[], None] | None = None) -> None:
        self.adapter = adapter
        self.path = adapter_path(adapter)
        self._on_change = on_change
        self.bus: MessageBus | None = None
        #: Unique name of the bluetoothd currently owning ``org.bluez``, None when absent.
        self.owner: str | None = None
        #: Increments each time a (new) bluetoothd appears on the bus.
        self.generation = 0
        self.adapter_present = False
        self.powered: bool | None = None
        self._refresh_task: asyncio.Task[None] | None = None
        #: Counts signals; a refresh whose calls overlapped a signal keeps the signal's
        #: (newer) news instead of its own answers.
        self._signals = 0

    @property
    def connected(self) -> bool:
        """True while our bus connection is up."""
        return self.bus is not None and self.bus.connected

    async def connect(self) -> MessageBus:
        """(Re)connect to the system bus, subscribe and read the current state."""
        self.close()
        bus = MessageBus(bus_type=BusType.SYSTEM)
        await bus.connect()
        try:
            bus.add_message_handler(self._on_message)
            for rule in (
                f"type='signal',sender='{DBUS}',member='NameOwnerChanged',arg0='{BLUEZ}'",
                f"type='signal',interface='{PROPERTIES_IFACE}',member='PropertiesChanged',"
                f"path='{self.path}'",
                f"type='signal',interface='{OBJECT_MANAGER_IFACE}',arg0path='{self.path}/'",
            ):
                await call(bus, Message(destination=DBUS, path="/org/freedesktop/DBus",
                                        interface=DBUS, member="AddMatch", signature="s",
                                        body=[rule]))
        except BaseException:
            bus.disconnect()
            raise
        self.bus = bus
        await self.refresh()
        return bus

    def close(self) -> None:
        """Drop the connection (if any)."""
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            self._refresh_task = None
        bus, self.bus = self.bus, None
        if bus is not None:
            bus.disconnect()

    async def wait_disconnected(self) -> None:
        """Return when the connection is lost (immediately if there is none)."""
        bus = self.bus
        if bus is None:
            return
        await disconnect_event(bus).wait()

    async def sleep_until(self, clock: Clock, until_mono: float, wake: asyncio.Event,
                          *also: asyncio.Event) -> None:
        """Sleep until clock-monotonic ``until_mono``, or less: until ``wake`` or one of
        ``also`` is set, or the bus connection is lost."""
        delay = until_mono - clock.monotonic()
        if delay <= 0 or wake.is_set():
            return
        waiters = [asyncio.ensure_future(clock.sleep(delay)),
                   asyncio.ensure_future(wake.wait())]
        if self.connected:
            waiters.append(asyncio.ensure_future(self.wait_disconnected()))
        waiters += [asyncio.ensure_future(event.wait()) for event in also]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    async def refresh(self) -> None:
        """Read the owner of ``org.bluez`` and the adapter's ``Powered`` property."""
        bus = self.bus
        if bus is None:
            return
        seen = self._signals
        try:
            reply = await call(bus, Message(destination=DBUS, path="/org/freedesktop/DBus",
                                            interface=DBUS, member="GetNameOwner",
                                            signature="s", body=[BLUEZ]))
            owner: str | None = reply.body[0]
        except DBusCallError:
            owner = None
        if seen != self._signals:
            return  # a signal overtook this answer; it already told us what changed
        self._set_owner(owner)
        if owner is None:
            self._set_adapter(False, None)
            return
        try:
            reply = await call(bus, Message(destination=owner, path=self.path,
                                            interface=PROPERTIES_IFACE, member="Get",
                                            signature="ss", body=[ADAPTER_IFACE, "Powered"]))
            present, powered = True, bool(reply.body[0].value)
        except DBusCallError:
            present, powered = False, None
        if seen == self._signals:
            self._set_adapter(present, powered)

    async def set_powered(self, powered: bool) -> None:
        """Switch the adapter on or off (``org.bluez.Adapter1.Powered``)."""
        if self.bus is None:
            raise DBusCallError("org.bluez.Error.NotReady", "no bus connection")
        await call(self.bus, Message(destination=BLUEZ, path=self.path,
                                     interface=PROPERTIES_IFACE, member="Set",
                                     signature="ssv",
                                     body=[ADAPTER_IFACE, "Powered", Variant("b", powered)]))

    # -- signal handling ------------------------------------------------------

    def _on_message(self, message: Message) -> None:
        if message.message_type != MessageType.SIGNAL:
            return
        member = message.member
        if member == "NameOwnerChanged" and message.body and message.body[0] == BLUEZ:
            self._signals += 1
            new = message.body[2] or None
            self._set_owner(new)
            if new is None:
                self._set_adapter(False, None)
            else:
                # A new bluetoothd publishes its adapters; read them once it is up.
                self._schedule_refresh()
        elif member == "PropertiesChanged" and message.path == self.path:
            interface, changed, _invalidated = message.body
            if interface == ADAPTER_IFACE and "Powered" in changed:
                self._signals += 1
                self._set_adapter(True, bool(changed["Powered"].value))
        elif member == "InterfacesAdded" and message.body and message.body[0] == self.path:
            interfaces: dict[str, Any] = message.body[1]
            props = interfaces.get(ADAPTER_IFACE)
            if props is not None:
                self._signals += 1
                powered = props.get("Powered")
                self._set_adapter(True, bool(powered.value) if powered is not None else None)
        elif (member == "InterfacesRemoved" and message.body
              and message.body[0] == self.path and ADAPTER_IFACE in message.body[1]):
            self._signals += 1
            self._set_adapter(False, None)

    def _schedule_refresh(self) -> None:
        if self._refresh_task is None or self._refresh_task.done():
            self._refresh_task = asyncio.get_running_loop().create_task(self._refresh_soon())

    async def _refresh_soon(self) -> None:
        try:
            await self.refresh()
        except Exception as error:  # the next connect() or event refreshes again
            log.warning("could not read the adapter state", error=str(error))

    def _set_owner(self, owner: str | None) -> None:
        if owner == self.owner:
            return
        self.owner = owner
        if owner is not None:
            self.generation += 1
        log.info("bluetoothd " + ("appeared on the bus" if owner else "left the bus"),
                 generation=self.generation)
        self._changed()

    def _set_adapter(self, present: bool, powered: bool | None) -> None:
        if present == self.adapter_present and powered == self.powered:
            return
        self.adapter_present = present
        self.powered = powered
        log.info("adapter state", adapter=self.adapter, present=present, powered=powered)
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()
