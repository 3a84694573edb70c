"""The raw-message D-Bus object server under the fake bluetoothd.

It serves an object tree from raw D-Bus messages rather than dbus-fast
``ServiceInterface`` exports, so that it can do what bluetoothd does and exported
interfaces cannot: omit absent optional properties, emit ``InterfacesAdded`` from ``/``
with all interfaces of an object, signal only the properties that changed, and reply to
a method after calling back the caller (a handler may return a coroutine; the reply is
sent when it finishes).

The server answers ``Introspect``, ``ObjectManager.GetManagedObjects`` and
``Properties`` itself; every other method call goes to a :class:`RequestHandler`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from dbus_fast import BusType, Message, MessageFlag, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.signature import SignatureTree

log = logging.getLogger(__name__)

PROPERTIES = "org.freedesktop.DBus.Properties"
OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"
INTROSPECTABLE = "org.freedesktop.DBus.Introspectable"
PEER = "org.freedesktop.DBus.Peer"
DBUS = "org.freedesktop.DBus"
#: The interfaces the server answers itself (never passed to the handler).
STANDARD_INTERFACES = (PROPERTIES, OBJECT_MANAGER, INTROSPECTABLE)

ERR = "org.bluez.Error."
UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"
UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
UNKNOWN_PROPERTY = "org.freedesktop.DBus.Error.UnknownProperty"
INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
PROPERTY_READ_ONLY = "org.freedesktop.DBus.Error.PropertyReadOnly"

#: interface -> interface properties (name -> value), as in ``GetManagedObjects``.
Interfaces = dict[str, dict[str, Variant]]
#: interface -> member -> (in signature, out signature).
MethodTable = dict[str, dict[str, tuple[str, str]]]


class BluezError(Exception):
    """A D-Bus error reply: ``name`` such as ``org.bluez.Error.InProgress``."""

    def __init__(self, name: str, message: str = "") -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


class RequestHandler(Protocol):
    """What the service behind the object tree does with calls and signals."""

    def intercept(self, msg: Message) -> Message | None:
        """An error reply that replaces dispatching ``msg`` (fault injection), or None."""

    def call(self, msg: Message, path: str, interface: str, member: str, sender: str) -> Any:
        """Serve a checked method call: None (empty reply), a reply Message or a
        coroutine giving either; raise :class:`BluezError` for an error reply."""

    def set_property(self, path: str, interface: str, name: str, value: Variant) -> Any:
        """``Properties.Set`` of a writable property; same results as :meth:`call`."""

    def on_signal(self, msg: Message) -> None:
        """A signal the service subscribed to with :meth:`ObjectServer.add_match`."""


class ObjectServer:
    """One bus connection serving an object tree with ObjectManager at ``/``."""

    def __init__(self, name: str, methods: MethodTable, writable: dict[str, tuple[str, ...]],
                 handler: RequestHandler) -> None:
        self.name = name
        self.methods = methods
        self.writable = writable
        self.handler = handler
        #: path -> interfaces; what ``GetManagedObjects`` returns.
        self.objects: dict[str, Interfaces] = {}
        self.bus: MessageBus | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def running(self) -> bool:
        """True while connected to the bus."""
        return self.bus is not None and self.bus.connected

    async def connect(self, bus_address: str) -> None:
        """Connect to ``bus_address`` (empty: the system bus of the environment) and
        start serving (the object tree is left as it is)."""
        if bus_address:
            bus = MessageBus(bus_address=bus_address)
        else:
            bus = MessageBus(bus_type=BusType.SYSTEM)
        await bus.connect()
        self.bus = bus
        bus.add_message_handler(self._on_message)

    async def request_name(self) -> None:
        """Own the well-known name."""
        assert self.bus is not None
        await self.bus.request_name(self.name)

    async def cancel_tasks(self) -> None:
        """Cancel the pending deferred replies and callbacks, and wait for them."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def disconnect(self) -> None:
        """Drop off the bus without a signal, as a killed process does."""
        bus, self.bus = self.bus, None
        if bus is not None:
            bus.disconnect()
            with contextlib.suppress(Exception):
                await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]

    # ---------------------------------------------------------------- object tree

    def add_object(self, path: str, interfaces: Interfaces) -> None:
        """Publish an object (``InterfacesAdded`` with all its interfaces)."""
        self.objects[path] = interfaces
        self.signal("/", OBJECT_MANAGER, "InterfacesAdded", "oa{sa{sv}}", [path, interfaces])

    def remove_object(self, path: str) -> None:
        """Withdraw an object (``InterfacesRemoved``), if it exists."""
        interfaces = self.objects.pop(path, None)
        if interfaces is not None:
            self.signal("/", OBJECT_MANAGER, "InterfacesRemoved", "oas",
                        [path, list(interfaces)])

    def set_properties(self, path: str, interface: str, changed: dict[str, Variant]) -> None:
        """Update properties and signal exactly ``changed``."""
        self.objects[path][interface].update(changed)
        self.signal(path, PROPERTIES, "PropertiesChanged", "sa{sv}as", [interface, changed, []])

    def signal(self, path: str, interface: str, member: str, signature: str,
               body: list[Any]) -> None:
        """Emit a signal (dropped while off the bus)."""
        if self.bus is None or not self.bus.connected:
            return
        self.bus.send(Message.new_signal(path, interface, member, signature, body))

    # ---------------------------------------------------------------- calls out

    async def add_match(self, rule: str) -> None:
        """Subscribe to signals matching ``rule`` (they go to ``handler.on_signal``)."""
        assert self.bus is not None
        await self.bus.call(Message(destination=DBUS, path="/org/freedesktop/DBus",
                                    interface=DBUS, member="AddMatch", signature="s",
                                    body=[rule]))

    async def get_all(self, destination: str, path: str, interface: str) -> Message:
        """``Properties.GetAll(interface)`` on a client's object: the reply (or error)."""
        assert self.bus is not None
        return await self.bus.call(Message(
            destination=destination, path=path, interface=PROPERTIES, member="GetAll",
            signature="s", body=[interface]))

    def send(self, msg: Message) -> None:
        """Send a message if on the bus."""
        if self.bus is not None:
            self.bus.send(msg)

    def spawn(self, coroutine: Any) -> None:
        """Run ``coroutine`` in the background; cancelled by :meth:`cancel_tasks`."""
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # e.g. a client that vanished while we called it back; bluetoothd logs and
            # carries on.
            log.debug("simulated bluetoothd task failed: %r", task.exception())

    # ---------------------------------------------------------------- dispatch

    def _on_message(self, msg: Message) -> Message | bool | None:
        if msg.message_type == MessageType.SIGNAL:
            self.handler.on_signal(msg)
            return None
        if msg.message_type != MessageType.METHOD_CALL:
            return None
        if msg.destination not in (self.name, self.bus.unique_name if self.bus else None):
            return None
        if msg.interface == PEER:
            return None  # dbus-fast answers Ping and GetMachineId itself
        if msg.interface not in STANDARD_INTERFACES:
            injected = self.handler.intercept(msg)
            if injected is not None:
                return injected
        no_reply = bool(msg.flags & MessageFlag.NO_REPLY_EXPECTED)
        try:
            result = self._dispatch(msg)
        except BluezError as error:
            return True if no_reply else Message.new_error(msg, error.name, error.message)
        if asyncio.iscoroutine(result):
            self.spawn(self._reply_later(msg, result, no_reply))
            return True
        if no_reply:
            return True
        return result if isinstance(result, Message) else Message.new_method_return(msg)

    async def _reply_later(self, msg: Message, coroutine: Any, no_reply: bool) -> None:
        try:
            value = await coroutine
        except BluezError as error:
            reply = Message.new_error(msg, error.name, error.message)
        else:
            reply = value if isinstance(value, Message) else Message.new_method_return(msg)
        if not no_reply and self.bus is not None and self.bus.connected:
            self.bus.send(reply)

    def _dispatch(self, msg: Message) -> Any:
        path = msg.path or "/"
        interface, member, sender = msg.interface, msg.member, msg.sender or ""
        if interface == INTROSPECTABLE and member == "Introspect":
            return Message.new_method_return(msg, "s", [self._introspect(path)])
        if interface == OBJECT_MANAGER and member == "GetManagedObjects":
            if path != "/":
                raise BluezError(UNKNOWN_METHOD, "GetManagedObjects is served at /")
            return Message.new_method_return(msg, "a{oa{sa{sv}}}", [self.objects])
        interfaces = self.objects.get(path)
        if interfaces is None:
            raise BluezError(UNKNOWN_OBJECT, f"no object at {path}")
        if interface == PROPERTIES:
            return self._properties_call(msg, path, interfaces)
        if interface is None:
            interface = next((name for name, members in self.methods.items()
                              if member in members and name in interfaces), None)
        if interface not in interfaces or member not in self.methods.get(interface, {}):
            raise BluezError(UNKNOWN_METHOD, f"{interface}.{member} is not implemented")
        expected = self.methods[interface][member][0]
        if msg.signature != expected:
            raise BluezError(ERR + "InvalidArguments", "Invalid arguments in method call")
        return self.handler.call(msg, path, interface, member or "", sender)

    def _properties_call(self, msg: Message, path: str, interfaces: Interfaces) -> Any:
        member, body = msg.member, msg.body
        if member == "GetAll" and msg.signature == "s":
            props = interfaces.get(body[0])
            if props is None:
                raise BluezError(INVALID_ARGS, f"no interface {body[0]}")
            return Message.new_method_return(msg, "a{sv}", [props])
        if member == "Get" and msg.signature == "ss":
            value = interfaces.get(body[0], {}).get(body[1])
            if value is None:
                raise BluezError(UNKNOWN_PROPERTY, f"no property {body[0]}.{body[1]}")
            return Message.new_method_return(msg, "v", [value])
        if member == "Set" and msg.signature == "ssv":
            interface, name, value = body
            props = interfaces.get(interface)
            if props is None or name not in props:
                raise BluezError(UNKNOWN_PROPERTY, f"no property {interface}.{name}")
            if name not in self.writable.get(interface, ()):
                raise BluezError(PROPERTY_READ_ONLY, f"{name} is read-only")
            return self.handler.set_property(path, interface, name, value)
        raise BluezError(UNKNOWN_METHOD, f"{PROPERTIES}.{member}")

    def _introspect(self, path: str) -> str:
        interfaces = self.objects.get(path, {})
        prefix = path.rstrip("/") + "/"
        children = sorted({p[len(prefix):].split("/")[0] for p in self.objects
                           if p.startswith(prefix) and p != path})
        parts = ['<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"'
                 ' "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">', "<node>",
                 f'<interface name="{INTROSPECTABLE}"><method name="Introspect">'
                 '<arg name="xml" type="s" direction="out"/></method></interface>']
        if path == "/":
            parts.append(f'<interface name="{OBJECT_MANAGER}"><method name="GetManagedObjects">'
                         '<arg name="objects" type="a{oa{sa{sv}}}" direction="out"/></method>'
                         '<signal name="InterfacesAdded"><arg name="object" type="o"/>'
                         '<arg name="interfaces" type="a{sa{sv}}"/></signal>'
                         '<signal name="InterfacesRemoved"><arg name="object" type="o"/>'
                         '<arg name="interfaces" type="as"/></signal></interface>')
        for name, props in interfaces.items():
            if name == PROPERTIES:
                continue
            parts.append(f'<interface name="{name}">')
            for method, (in_sig, out_sig) in self.methods.get(name, {}).items():
                parts.append(f'<method name="{method}">')
                parts.extend(f'<arg type="{t}" direction="in"/>' for t in _split_signature(in_sig))
                parts.extend(f'<arg type="{t}" direction="out"/>'
                             for t in _split_signature(out_sig))
                parts.append("</method>")
            writable = self.writable.get(name, ())
            for prop, variant in props.items():
                access = "readwrite" if prop in writable else "read"
                parts.append(f'<property name="{prop}" type="{variant.signature}" '
                             f'access="{access}"/>')
            parts.append("</interface>")
        if interfaces:
            parts.append(f'<interface name="{PROPERTIES}">'
                         '<method name="Get"><arg type="s" direction="in"/>'
                         '<arg type="s" direction="in"/><arg type="v" direction="out"/></method>'
                         '<method name="GetAll"><arg type="s" direction="in"/>'
                         '<arg type="a{sv}" direction="out"/></method>'
                         '<method name="Set"><arg type="s" direction="in"/>'
                         '<arg type="s" direction="in"/><arg type="v" direction="in"/></method>'
                         '<signal name="PropertiesChanged"><arg type="s"/><arg type="a{sv}"/>'
                         '<arg type="as"/></signal></interface>')
        parts.extend(f'<node name="{child}"/>' for child in children)
        parts.append("</node>")
        return "".join(parts)


def _split_signature(signature: str) -> list[str]:
    return [t.signature for t in SignatureTree(signature).types] if signature else []
