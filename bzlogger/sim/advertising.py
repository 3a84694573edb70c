"""``org.bluez.LEAdvertisingManager1``: registering the kiosk's advertisements (read and
validated from the caller's object before the reply), updates, release and the record
of what went on the air."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dbus_fast import Message, MessageFlag, MessageType, Variant

from bzlogger.clock import Clock
from bzlogger.sim.adverts import AdContent, AdvertError, RegisteredAdvert, parse_registration
from bzlogger.sim.dbus_server import ERR, PROPERTIES, BluezError, MethodTable, ObjectServer

if TYPE_CHECKING:
    from bzlogger.sim.adapter import Adapter

ADV_MANAGER = "org.bluez.LEAdvertisingManager1"
ADVERTISEMENT = "org.bluez.LEAdvertisement1"

#: Methods served: member -> (in signature, out signature).
ADV_MANAGER_METHODS: MethodTable = {
    ADV_MANAGER: {
        "RegisterAdvertisement": ("oa{sv}", ""),
        "UnregisterAdvertisement": ("o", ""),
    },
}


@dataclass(slots=True)
class AdvertRecord:
    """One advertisement registration as bluetoothd saw it (for tests and ground truth).

    ``history`` holds ``(time, content)`` for the registration and each accepted update.
    """

    adapter: str
    client: str
    path: str
    address: str
    type: str
    registered_at: float
    history: list[tuple[float, AdContent]]
    ended_at: float | None = None
    end_reason: str = ""
    rejected_updates: int = 0

    @property
    def content(self) -> AdContent:
        """The content on the air now."""
        return self.history[-1][1]


def manager_properties(adapter: Adapter) -> dict[str, Variant]:
    """LEAdvertisingManager1's properties: instances follow the registrations."""
    active = len(adapter.adverts) if adapter.powered else 0
    return {
        "ActiveInstances": Variant("y", active),
        "SupportedInstances": Variant("y", adapter.supported_instances - active),
        "SupportedIncludes": Variant("as", ["tx-power", "appearance", "local-name"]),
        "SupportedSecondaryChannels": Variant("as", []),
    }


class AdvertisingManager:
    """The advertisement registrations of every adapter, and their log."""

    def __init__(self, server: ObjectServer, clock: Clock, seed: int) -> None:
        self.server = server
        self.clock = clock
        #: Every advertisement registration ever made (also ended ones), oldest first.
        self.log: list[AdvertRecord] = []
        self._address_rng = hashlib.sha256(f"sim-adverts-{seed}".encode()).digest()
        self._address_counter = itertools.count()

    def _new_address(self, connectable: bool) -> str:
        counter = next(self._address_counter)
        raw = bytearray(hashlib.sha256(self._address_rng + counter.to_bytes(8, "big")).digest()[:6])
        # Static random for connectable adverts, non-resolvable private otherwise.
        raw[0] = (raw[0] | 0xC0) if connectable else (raw[0] & 0x3F)
        return ":".join(f"{b:02X}" for b in raw)

    def publish_instances(self, adapter: Adapter) -> None:
        """Signal the adapter's current ``ActiveInstances``/``SupportedInstances``."""
        self.server.set_properties(adapter.path, ADV_MANAGER, manager_properties(adapter))

    async def register(self, adapter: Adapter, sender: str, path: str) -> None:
        """``RegisterAdvertisement``: read the caller's object, validate, go on the air."""
        if not adapter.powered:
            raise BluezError(ERR + "NotReady", "Resource Not Ready")
        _check_can_register(adapter, sender, path)
        try:
            reply = await asyncio.wait_for(self.server.get_all(sender, path, ADVERTISEMENT),
                                           10.0)
        except TimeoutError:
            raise BluezError(ERR + "Failed", "Failed to parse advertisement.") from None
        if reply.message_type == MessageType.ERROR:
            raise BluezError(ERR + "Failed", "Failed to parse advertisement.")
        try:
            parsed = parse_registration(reply.body[0])
        except AdvertError as error:
            raise BluezError(error.name, error.message) from None
        if not adapter.powered:
            raise BluezError(ERR + "NotReady", "Resource Not Ready")
        _check_can_register(adapter, sender, path)
        now = self.clock.now()
        record = AdvertRecord(adapter.name, sender, path,
                              self._new_address(parsed.content.connectable),
                              parsed.type, now, [(now, parsed.content)])
        adapter.adverts[(sender, path)] = record
        self.log.append(record)
        await self.server.add_match(f"type='signal',sender='{sender}',path='{path}',"
                                    f"interface='{PROPERTIES}',member='PropertiesChanged'")
        self.publish_instances(adapter)

    def unregister(self, adapter: Adapter, sender: str, path: str) -> None:
        """``UnregisterAdvertisement`` (``Release`` is not called, as in bluetoothd)."""
        record = adapter.adverts.pop((sender, path), None)
        if record is None:
            raise BluezError(ERR + "DoesNotExist", "Does Not Exist")
        self.end(record, "unregistered")
        self.publish_instances(adapter)

    def end(self, record: AdvertRecord, reason: str) -> None:
        """Mark a registration as off the air (once)."""
        if record.ended_at is None:
            record.ended_at = self.clock.now()
            record.end_reason = reason

    def release(self, adapter: Adapter, record: AdvertRecord, reason: str) -> None:
        """bluetoothd drops a registration and calls ``Release()`` on the object."""
        adapter.adverts.pop((record.client, record.path), None)
        self.end(record, reason)
        self.server.send(Message(destination=record.client, path=record.path,
                                 interface=ADVERTISEMENT, member="Release",
                                 flags=MessageFlag.NO_REPLY_EXPECTED))

    def client_left(self, adapter: Adapter, name: str) -> None:
        """The client ``name`` left the bus: its registrations end."""
        left = [record for key, record in adapter.adverts.items() if key[0] == name]
        for record in left:
            del adapter.adverts[(record.client, record.path)]
            self.end(record, "client left the bus")
        if left:
            self.publish_instances(adapter)

    def properties_changed(self, adapter: Adapter, sender: str, path: str) -> None:
        """A registered object signalled ``PropertiesChanged``: re-read it."""
        record = adapter.adverts.get((sender, path))
        if record is not None:
            self.server.spawn(self._refresh(record))

    async def _refresh(self, record: AdvertRecord) -> None:
        reply = await self.server.get_all(record.client, record.path, ADVERTISEMENT)
        if record.ended_at is not None:
            return
        parsed: RegisteredAdvert | None = None
        if reply.message_type != MessageType.ERROR:
            with contextlib.suppress(AdvertError):
                parsed = parse_registration(reply.body[0])
        if parsed is None:
            # bluetoothd logs the failure and keeps the previous data on the air.
            record.rejected_updates += 1
            return
        record.history.append((self.clock.now(), parsed.content))


def _check_can_register(adapter: Adapter, sender: str, path: str) -> None:
    if (sender, path) in adapter.adverts:
        raise BluezError(ERR + "AlreadyExists", "Already Exists")
    if len(adapter.adverts) >= adapter.supported_instances:
        raise BluezError(ERR + "NotPermitted", "Maximum advertisements reached")
