"""Bluezone iOS phones: read their ID over GATT, politely.

iOS cannot put the Bluezone ID into its advertisement, so the scanner hands every
Bluezone iOS advertisement (:class:`~bzlogger.ble.scanner.IosAdvert`) to this reader. It
connects (bleak ``BleakClient``, 10 s timeout), reads the 12-byte characteristic
``00004e56-...-a689``, disconnects, and from then on turns that address's advertisements
into sightings under the ID, with their RSSI, until the slot changes or the phone's
address rotates. Samples seen before the read finished are kept (bounded) and released
under the ID once it is known.

Being a good neighbour (a phone must not be drained by reconnections): at most
``gatt_connections`` connections at a time, the closest phone first, a backoff after a
failure, at most ``max_attempts`` connections per phone per slot, and a phone that does
not have the Bluezone service is left alone for the rest of the slot. Connections run
beside the scan: discovery is never paused for them.

:class:`ReadPlanner` holds those rules as pure code (time passed in);
:class:`GattReader` runs the connections.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bleak import BleakClient
from bleak.backends.device import BLEDevice
from bleak.exc import BleakCharacteristicNotFoundError, BleakDBusError, BleakError

from bzlogger.ble.scanner import IosAdvert
from bzlogger.ble.stats import Counters
from bzlogger.clock import Clock
from bzlogger.config import BleSettings
from bzlogger.ids import bluezone
from bzlogger.logsetup import get_logger, redact
from bzlogger.model import Platform, Protocol, Sighting

log = get_logger("ble.gatt")

#: bleak's connection timeout (seconds), as the Bluezone apps use.
CONNECT_TIMEOUT_S = 10.0
#: A phone not heard for this long (clock seconds) is not worth connecting to.
STALE_S = 10.0


class ReadError(Exception):
    """A GATT read that did not give an ID; ``kind`` names the failure for counters."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


#: Failures after which a phone is left alone for the rest of the slot.
FINAL_FAILURES = frozenset({"no_service", "bad_length"})


@dataclass(slots=True)
class _Phone:
    address: str
    slot: tuple[int, int]
    last_rssi: int
    last_seen: float
    device: BLEDevice | None = None
    identifier: bytes | None = None
    attempts: int = 0
    failures: int = 0
    next_try: float = 0.0
    in_flight: bool = False
    gave_up: bool = False
    buffer: deque[tuple[float, int, int | None]] = field(default_factory=deque)


@dataclass(frozen=True, slots=True)
class ReadJob:
    """One connection to make: to ``address`` (``device`` is bleak's handle)."""

    address: str
    device: BLEDevice | None
    attempt: int


class ReadPlanner:
    """Who to read next, what to cache, when to give up. Pure: times are arguments."""

    def __init__(self, max_ids: int = bluezone.DEFAULT_MAX, *, max_attempts: int = 3,
                 backoff_s: float = 5.0, backoff_max_s: float = 120.0, buffer: int = 64,
                 max_phones: int = 2048) -> None:
        self.max_ids = max_ids
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.buffer = buffer
        self.max_phones = max_phones
        self.counters = Counters()
        self._phones: OrderedDict[str, _Phone] = OrderedDict()

    def slot_of(self, now: float) -> tuple[int, int]:
        """(UTC day start, slot index) of ``now``: the ID's lifetime."""
        return bluezone.utc_midnight(now), bluezone.slot_of(now, self.max_ids)

    def advert(self, adv: IosAdvert) -> list[Sighting]:
        """Note one advertisement; return the sightings it yields now (its own when the
        ID is known, none while a read is pending)."""
        slot = self.slot_of(adv.time)
        phone = self._phones.get(adv.address)
        if phone is None or phone.slot != slot:
            if phone is not None:
                self._drop_buffer(phone)
            phone = _Phone(adv.address, slot, adv.rssi, adv.time, adv.device)
            self._phones[adv.address] = phone
            if len(self._phones) > self.max_phones:
                _, evicted = self._phones.popitem(last=False)
                self._drop_buffer(evicted)
        self._phones.move_to_end(adv.address)
        phone.last_rssi = adv.rssi
        phone.last_seen = adv.time
        if adv.device is not None:
            phone.device = adv.device
        if phone.identifier is not None:
            return [self._sighting(phone.identifier, adv.time, adv.rssi, adv.tx_power)]
        if phone.gave_up:
            self.counters.add("samples_unread")
            return []
        if len(phone.buffer) >= self.buffer:
            phone.buffer.popleft()
            self.counters.add("samples_unread")
        phone.buffer.append((adv.time, adv.rssi, adv.tx_power))
        return []

    def next_read(self, now: float) -> ReadJob | None:
        """The closest phone due for a read (marked in flight), or None."""
        best: _Phone | None = None
        for phone in self._phones.values():
            if (phone.identifier is None and not phone.in_flight and not phone.gave_up
                    and phone.next_try <= now and now - phone.last_seen <= STALE_S
                    and phone.slot == self.slot_of(now)
                    and (best is None or phone.last_rssi > best.last_rssi)):
                best = phone
        if best is None:
            return None
        best.in_flight = True
        best.attempts += 1
        self.counters.add("attempts")
        return ReadJob(best.address, best.device, best.attempts)

    def next_due(self, now: float) -> float | None:
        """When a waiting phone's backoff ends (None if nobody waits for one)."""
        times = [p.next_try for p in self._phones.values()
                 if p.identifier is None and not p.in_flight and not p.gave_up
                 and p.next_try > now and now - p.last_seen <= STALE_S]
        return min(times) if times else None

    def read_ok(self, address: str, identifier: bytes, now: float) -> list[Sighting]:
        """A read succeeded: cache the ID and release the samples kept meanwhile."""
        self.counters.add("reads_ok")
        phone = self._phones.get(address)
        if phone is None:
            return []
        phone.in_flight = False
        if phone.slot != self.slot_of(now):
            # The slot ended during the read: the ID may already be the next one.
            self.counters.add("reads_late")
            self._drop_buffer(phone)
            return []
        phone.identifier = identifier
        out = [self._sighting(identifier, t, rssi, tx) for t, rssi, tx in phone.buffer]
        phone.buffer.clear()
        return out

    def read_failed(self, address: str, kind: str, now: float) -> None:
        """A read failed with ``kind``: back off, or give up for this slot."""
        self.counters.add(f"read_failed.{kind}")
        phone = self._phones.get(address)
        if phone is None:
            return
        phone.in_flight = False
        phone.failures += 1
        phone.next_try = now + min(self.backoff_max_s,
                                   self.backoff_s * 2 ** (phone.failures - 1))
        if kind in FINAL_FAILURES or phone.attempts >= self.max_attempts:
            phone.gave_up = True
            self.counters.add("gave_up")
            self._drop_buffer(phone)

    def attempts_of(self, address: str) -> int:
        """Connections made to ``address`` in its current slot."""
        phone = self._phones.get(address)
        return 0 if phone is None else phone.attempts

    def pending(self) -> int:
        """Phones still waiting for an ID."""
        return sum(1 for p in self._phones.values() if p.identifier is None and not p.gave_up)

    def _drop_buffer(self, phone: _Phone) -> None:
        if phone.buffer:
            self.counters.add("samples_unread", len(phone.buffer))
            phone.buffer.clear()

    @staticmethod
    def _sighting(identifier: bytes, time: float, rssi: int, tx: int | None) -> Sighting:
        return Sighting(Protocol.BLUEZONE, identifier, rssi, time, tx_power=tx,
                        platform=Platform.IOS)


Reader = Callable[[BLEDevice], Awaitable[bytes]]


class GattReader:
    """Runs :class:`ReadPlanner`'s reads with bleak; give :meth:`sink` to the scanner
    (``BleScanner(..., ios_sink=reader.sink)``) and run :meth:`run` beside it."""

    def __init__(self, settings: BleSettings, clock: Clock, offer: Callable[[Sighting], None],
                 *, max_attempts: int = 3, backoff_s: float = 5.0,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 reader: Reader | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.offer = offer
        self.connect_timeout_s = connect_timeout_s
        self.planner = ReadPlanner(settings.bluezone_max, max_attempts=max_attempts,
                                   backoff_s=backoff_s)
        self._read = reader or self.read_id
        self._event = asyncio.Event()
        self.in_flight = 0

    def stats(self) -> dict[str, int]:
        """Counters: attempts, reads_ok, read_failed.*, gave_up, samples_unread..."""
        out = self.planner.counters.snapshot()
        out["pending"] = self.planner.pending()
        out["in_flight"] = self.in_flight
        return out

    def sink(self, adv: IosAdvert) -> None:
        """The scanner's callback for Bluezone iOS advertisements (never blocks)."""
        for sighting in self.planner.advert(adv):
            self.offer(sighting)
        self._event.set()

    async def run(self) -> None:
        """Read IDs with ``settings.gatt_connections`` parallel connections until
        cancelled."""
        workers = [asyncio.create_task(self._worker(n))
                   for n in range(self.settings.gatt_connections)]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _worker(self, number: int) -> None:
        while True:
            now = self.clock.now()
            job = self.planner.next_read(now)
            if job is None:
                self._event.clear()
                due = self.planner.next_due(now)
                delay = 5.0 if due is None else max(0.0, due - now)
                sleeper = asyncio.ensure_future(self.clock.sleep(delay))
                waker = asyncio.ensure_future(self._event.wait())
                try:
                    await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    sleeper.cancel()
                    waker.cancel()
                    await asyncio.gather(sleeper, waker, return_exceptions=True)
                continue
            await self._attempt(job, number)

    async def _attempt(self, job: ReadJob, worker: int) -> None:
        self.in_flight += 1
        try:
            if job.device is None:
                raise ReadError("no_device", "no BlueZ device to connect to")
            async with asyncio.timeout(self.connect_timeout_s * 2 + 5):
                identifier = await self._read(job.device)
        except asyncio.CancelledError:
            self.planner.read_failed(job.address, "cancelled", self.clock.now())
            raise
        except Exception as error:
            kind = failure_kind(error)
            log.debug("gatt read failed", worker=worker, address=redact(job.address),
                      attempt=job.attempt, kind=kind, error=str(error))
            self.planner.read_failed(job.address, kind, self.clock.now())
        else:
            log.debug("gatt read", worker=worker, address=redact(job.address),
                      id=redact(identifier))
            for sighting in self.planner.read_ok(job.address, identifier, self.clock.now()):
                self.offer(sighting)
        finally:
            self.in_flight -= 1

    async def read_id(self, device: BLEDevice) -> bytes:
        """Connect to ``device``, read the Bluezone ID characteristic, disconnect."""
        client = BleakClient(device, services=[bluezone.IOS_SERVICE_UUID],
                             timeout=self.connect_timeout_s,
                             bluez={"adapter": self.settings.adapter})
        await client.connect()
        try:
            value = bytes(await client.read_gatt_char(bluezone.IOS_CHARACTERISTIC_UUID))
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.connect_timeout_s):
                    await client.disconnect()
        if len(value) != bluezone.ID_LENGTH:
            raise ReadError("bad_length", f"{len(value)} bytes")
        return value


def failure_kind(error: BaseException) -> str:
    """A short counter name for a failed read."""
    if isinstance(error, ReadError):
        return error.kind
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, BleakCharacteristicNotFoundError):
        return "no_service"
    if isinstance(error, BleakDBusError):
        name = error.dbus_error.rsplit(".", 1)[-1]
        return {"InProgress": "in_progress", "Failed": "failed",
                "NotConnected": "disconnected", "DoesNotExist": "gone",
                "NoReply": "timeout"}.get(name, "dbus_error")
    if isinstance(error, BleakError):
        text = str(error).lower()
        if "not found" in text:
            return "gone"
        if "disconnect" in text:
            return "disconnected"
        return "bleak_error"
    return "error"
