"""``bzlogger run``: the pieces wired together in asyncio.

Supervised parts (each restarted with backoff when it fails, shown in the status):

- ``scanner``: bleak discovery feeding sightings into a bounded queue (recovers by itself);
- ``gatt``: ID reads of Bluezone iOS phones (only when Bluezone is scanned);
- ``advertiser``: the kiosk's own beacons, rotating on their schedule; the day's keys are
  saved in the store *before* they are first advertised;
- ``pipeline``: sightings -> clock check -> aggregation (and the live consumers);
- ``flusher``: clock guard, aggregation flush, store writes (retried until they succeed);
- ``housekeeping``: retention purge and the store figures for the status;
- ``reporter``: runtime state file, systemd ``STATUS=`` and the live consumers' ticks;
- ``watchdog``: ``WATCHDOG=1`` only while the pipeline is healthy.

Timing: what the data means (encounter gaps, rotations, retention) runs on the daemon's
clock, which a simulation accelerates; what protects real resources (backoff, the
watchdog, how often files are written) runs in real seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from bzlogger import RELEASE_EPOCH, __version__, config
from bzlogger.ble.advertiser import Advertiser, AdvertisingStatus
from bzlogger.ble.gatt_reader import GattReader
from bzlogger.ble.scanner import BleScanner
from bzlogger.ble.watchdog import Phase
from bzlogger.clock import Clock
from bzlogger.core.aggregation import Aggregator
from bzlogger.daemon.clock_guard import ClockGuard
from bzlogger.daemon.sdnotify import Notifier
from bzlogger.daemon.state import remove_state, write_state
from bzlogger.daemon.supervisor import Supervisor, describe, scrub
from bzlogger.errors import ConfigError, OperationalError
from bzlogger.ids import bluezone
from bzlogger.ids.schedule import (
    Beacon,
    DayKeys,
    bluezone_beacon,
    gaen_beacon,
    random_rotation_fraction,
)
from bzlogger.logsetup import get_logger
from bzlogger.model import Encounter, Sighting
from bzlogger.model import Protocol as IdProtocol
from bzlogger.store import Store, StoreStats
from bzlogger.timefmt import iso

log = get_logger("daemon")

#: Sightings waiting for the pipeline; beyond this the scanner drops (and counts) them.
QUEUE_SIZE = 20_000
#: Everything must be stopped, flushed and closed within this many real seconds of
#: SIGTERM (the contract says 5; the rest is left for the interpreter's exit).
STOP_BUDGET_S = 4.0
#: Unwritten encounters kept in memory while the store cannot be written (disk full, a
#: read-only filesystem): some 25 MB. Beyond it the oldest are dropped and counted, so
#: that a long outage under a flood of identifiers keeps the newest data without
#: exhausting memory.
PENDING_LIMIT = 50_000
#: Real seconds between two state-file writes.
REPORT_EVERY_S = 1.0
#: If the daemon is not fully up after this many real seconds it still tells systemd it
#: is ready (with a status saying what is missing), so that a powered-off adapter or a
#: clock waiting for NTP does not turn into a restart loop.
READY_GRACE_S = 30.0
#: Store writes failing for this many real seconds make the daemon unhealthy.
STORE_FAILING_S = 30.0
#: The flusher not ticking for this many real seconds makes the daemon unhealthy.
STALL_S = 15.0
#: Where systemd-timesyncd says the clock is synchronised (systemd >= 250).
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")


class LiveConsumer(Protocol):
    """A per-sighting / per-second hook (the door display, metrics): ``observe`` gets
    every sighting that passed the clock check, ``tick`` the daemon's state once a
    second. Both must be quick and must not block; an exception is recorded in the
    status and the daemon carries on."""

    def observe(self, sighting: Sighting) -> None:
        """One sighting (it carries an identifier: never write it anywhere)."""
        ...

    def tick(self, now: float, state: Mapping[str, Any]) -> None:
        """The daemon's state as written to the state file, once a second."""
        ...


class RateMeter:
    """Events per minute over the last minute of the daemon's clock, from counters."""

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self._points: deque[tuple[float, int]] = deque()

    def update(self, mono: float, total: int) -> float:
        """Record the counter's ``total`` at ``mono``; returns the rate per minute."""
        self._points.append((mono, total))
        while len(self._points) > 2 and mono - self._points[1][0] >= self.window_s:
            self._points.popleft()
        first_mono, first_total = self._points[0]
        span = mono - first_mono
        return 0.0 if span <= 0 else (total - first_total) * 60.0 / span


class Daemon:
    """One running daemon. ``await Daemon(...).run()`` returns the exit status."""

    def __init__(self, settings: config.Settings, clock: Clock, *,
                 notifier: Notifier | None = None,
                 consumers: Sequence[LiveConsumer] = ()) -> None:
        self.settings = settings
        self.clock = clock
        self.notifier = notifier or Notifier.from_env()
        self.consumers = list(consumers)
        self.supervisor = Supervisor(wall=clock.now)
        self.queue: asyncio.Queue[Sighting] = asyncio.Queue(QUEUE_SIZE)
        self.aggregator = Aggregator(settings.encounters)
        self.scan_protocols = [IdProtocol(p) for p in settings.ble.scan]
        self.advertise_protocols = [IdProtocol(p) for p in settings.ble.advertise]
        self.scanner = BleScanner(settings.ble, clock, self.queue)
        self.gatt: GattReader | None = None
        if IdProtocol.BLUEZONE in self.scan_protocols:
            self.gatt = GattReader(settings.ble, clock, self.scanner.offer)
            self.scanner.ios_sink = self.gatt.sink
        self.advertiser = (Advertiser(settings.ble.adapter, clock)
                           if self.advertise_protocols else None)
        self.store: Store | None = None
        self.guard = ClockGuard(RELEASE_EPOCH)
        self._stop = asyncio.Event()
        self._pending: dict[tuple[IdProtocol, bytes, float], Encounter] = {}
        self._dropped_pending = 0
        self._keys: DayKeys | None = None
        self._keys_lock = asyncio.Lock()
        self._store_stats: StoreStats | None = None
        self._store_ok_real = time.monotonic()
        self._store_failing_since: float | None = None
        self._last_flush_real = time.monotonic()
        self._started_at = clock.now()
        self._started_real = time.monotonic()
        self._phase = "starting"
        self._ready = False
        self._last_status = ""
        self._dropped_clock = 0
        self._adverts_rate = RateMeter()
        self._sightings_rate = RateMeter()
        self._consumer_errors = 0
        self._reload: dict[str, Any] | None = None

    # -- lifecycle ------------------------------------------------------------------

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (or :meth:`request_stop`); flush and return 0."""
        self._check_state_dir()
        self.store = await Store.open(self.settings.store)
        try:
            newest = await self.store.newest_time()
            self.guard = ClockGuard(RELEASE_EPOCH, newest)
            self.guard.observe(self.clock.now(), self.clock.monotonic())
            self._install_signals()
            self._add_parts()
            self.supervisor.start()
            log.info("daemon started", version=__version__, adapter=self.settings.ble.adapter,
                     scan=self.settings.ble.scan, advertise=self.settings.ble.advertise,
                     clock=self.guard.verdict.reason, clock_speed=self.clock.speed)
            await self._stop.wait()
            return await self._shutdown()
        finally:
            self._remove_signals()
            if self.store is not None:
                with contextlib.suppress(Exception):
                    await self.store.close()
            self.notifier.close()

    def request_stop(self) -> None:
        """Begin a clean shutdown (what SIGTERM does)."""
        self._stop.set()

    def _check_state_dir(self) -> None:
        path = self.settings.daemon.state_file
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OperationalError(
                f"cannot create {path.parent} for the state file: {error.strerror}; set "
                "[daemon] state_file to a writable place (the systemd unit provides "
                "/run/bzlogger)") from None
        if not os.access(path.parent, os.W_OK):
            raise OperationalError(
                f"cannot write the state file in {path.parent}; set [daemon] state_file to "
                "a writable place (the systemd unit provides /run/bzlogger)")

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)

    def _remove_signals(self) -> None:
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    def _add_parts(self) -> None:
        sup = self.supervisor
        sup.add("scanner", self.scanner.run)
        if self.gatt is not None:
            sup.add("gatt", self.gatt.run)
        if self.advertiser is not None:
            advertiser = self.advertiser
            sup.add("advertiser", lambda: advertiser.run(self.beacons))
        sup.add("pipeline", self._pipeline)
        sup.add("flusher", self._flusher)
        sup.add("housekeeping", self._housekeeping)
        sup.add("reporter", self._reporter)
        if self.notifier.watchdog_interval_s is not None:
            sup.add("watchdog", self._watchdog)

    async def _shutdown(self) -> int:
        """Stop scanning and advertising, flush everything, within the stop budget.

        The advertiser withdraws its advertisements in parallel with the final flush; if
        BlueZ is too slow to answer, the daemon exits anyway: bluetoothd drops a client's
        advertisements when its bus connection closes.
        """
        started = time.monotonic()

        def remaining(reserve: float = 0.0) -> float:
            return max(0.1, STOP_BUDGET_S - reserve - (time.monotonic() - started))

        self._phase = "stopping"
        self.notifier.stopping("stopping: withdrawing advertisements, flushing encounters")
        log.info("stopping")
        self.supervisor.cancel()
        producers = [s.name for s in self.supervisor.statuses() if s.name != "advertiser"]
        for name in await self.supervisor.wait(1.5, producers):
            log.warning("part_did_not_stop", part=name)
        self._drain_queue()
        if self.guard.verdict.usable:
            self._take(self.aggregator.flush(self.clock.now(), close_all=True))
        else:
            # No plausible "now": close everything at its own last sighting.
            self._take(self.aggregator.flush(float("inf"), close_all=True))
        status = 0
        try:
            await asyncio.wait_for(self._write_pending(), remaining(reserve=0.5))
        except (TimeoutError, OperationalError, OSError) as error:
            log.error("final flush failed: encounters lost", count=len(self._pending),
                      error=describe(error))
            status = 1
        store, self.store = self.store, None
        if store is not None:
            try:
                await asyncio.wait_for(store.close(), remaining(reserve=0.3))
            except (TimeoutError, OperationalError, OSError) as error:
                # Every write is committed already; only the WAL checkpoint is skipped.
                log.warning("store close incomplete", error=describe(error))
        for name in await self.supervisor.wait(remaining(reserve=0.2)):  # the advertiser
            log.warning("part_did_not_stop", part=name,
                        note="exiting anyway; bluetoothd drops our advertisements with the "
                             "bus connection")
        remove_state(self.settings.daemon.state_file)
        log.info("stopped", seconds=round(time.monotonic() - started, 2),
                 encounters_closed=self.aggregator.counters.encounters_closed)
        return status

    # -- configuration reload (SIGHUP) ------------------------------------------------

    def reload(self) -> None:
        """Re-read the config: apply what is safe at run time, log what needs a restart.
        A config with an error is refused and the running one kept."""
        path = self.settings.source or config.config_path(None)
        try:
            new = config.load(path, required=True)
        except ConfigError as error:
            log.error("config reload refused; keeping the running config", error=str(error))
            self.supervisor.record_error("reload", f"refused: {error}")
            self._reload = {"at": iso(self.clock.now()), "result": f"refused: {error}"}
            return
        applied, restart = reload_plan(self.settings, new)
        if "encounters" in applied:
            # Open encounters are closed with the old rules and stored; new ones follow
            # the new rules.
            if self.guard.verdict.usable:
                self._take(self.aggregator.flush(self.clock.now(), close_all=True))
            else:
                self._take(self.aggregator.flush(float("inf"), close_all=True))
            self.aggregator = Aggregator(new.encounters)
        kept = {name: getattr(self.settings, name) for name in restart}
        self.settings = dataclasses.replace(new, **kept)
        if "store" in restart:
            store_now = dataclasses.replace(self.settings.store,
                                            flush_interval_s=new.store.flush_interval_s)
            self.settings = dataclasses.replace(self.settings, store=store_now)
        log.info("config reloaded", applied=applied, needs_restart=restart)
        self._reload = {"at": iso(self.clock.now()), "applied": applied,
                        "needs_restart": restart}

    # -- the kiosk's own beacons ---------------------------------------------------------

    async def beacons(self, now: float) -> list[Beacon]:
        """What to advertise at ``now`` (nothing while the clock is implausible). The day's
        keys are in the store before this returns a beacon made from them."""
        if not self.guard.plausible(now) or now < self.guard.floor - self.guard.jump_tolerance_s:
            return []
        keys = await self._day_keys(now)
        ble = self.settings.ble
        out = []
        if IdProtocol.BLUEZONE in self.advertise_protocols:
            out.append(bluezone_beacon(keys, now, ble.bluezone_max))
        if IdProtocol.GAEN in self.advertise_protocols:
            out.append(gaen_beacon(keys, now, ble.tx_power, random_rotation_fraction()))
        return out

    async def _day_keys(self, now: float) -> DayKeys:
        day = bluezone.utc_midnight(now)
        async with self._keys_lock:
            if self._keys is not None and self._keys.day_start == day:
                return self._keys
            assert self.store is not None
            keys = await self.store.own_keys_for_day(day)
            if keys is None:
                keys = DayKeys.generate(day)
                await self.store.save_own_keys(keys)
                log.info("new own keys saved", day=iso(day)[:10])
            self._keys = keys
            return keys

    # -- parts ------------------------------------------------------------------------

    async def _pipeline(self) -> None:
        while True:
            self._ingest(await self.queue.get())
            self._drain_queue()

    def _drain_queue(self) -> None:
        while True:
            try:
                sighting = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            self._ingest(sighting)

    def _ingest(self, sighting: Sighting) -> None:
        if not self.guard.plausible(sighting.time):
            self._dropped_clock += 1
            return
        self.aggregator.add(sighting)
        for consumer in self.consumers:
            try:
                consumer.observe(sighting)
            except Exception as error:  # a display must not stop the logging
                self._consumer_error(consumer, error)

    async def _flusher(self) -> None:
        while True:
            self._last_flush_real = time.monotonic()
            verdict = self.guard.observe(self.clock.now(), self.clock.monotonic())
            if verdict.jump_s:
                log.warning("clock jumped", seconds=round(verdict.jump_s, 1),
                            state=verdict.state.value, reason=verdict.reason)
                self.supervisor.record_error("clock", verdict.reason)
            self._phase = "running" if verdict.usable else "waiting-for-clock"
            if verdict.usable:
                self._take(self.aggregator.flush(self.clock.now()))
            try:
                await self._write_pending()
            except (OperationalError, OSError) as error:
                self._store_failed(error)
            await self._pace(self.settings.store.flush_interval_s, min_real=0.2)

    def _take(self, encounters: list[Encounter]) -> None:
        for encounter in encounters:
            key = (encounter.protocol, encounter.identifier, encounter.first_seen)
            # A newer snapshot replaces an older one and becomes the newest entry.
            self._pending.pop(key, None)
            self._pending[key] = encounter
        excess = len(self._pending) - PENDING_LIMIT
        if excess > 0:
            for key in list(itertools.islice(self._pending, excess)):
                del self._pending[key]
            if not self._dropped_pending:
                log.error("store not writable and too many encounters waiting: dropping "
                          "the oldest", limit=PENDING_LIMIT)
            self._dropped_pending += excess

    async def _write_pending(self) -> None:
        if not self._pending:
            self._store_written()
            return
        assert self.store is not None
        batch = list(self._pending.values())
        try:
            await self.store.add_encounters(batch)
        except Exception as error:
            if isinstance(error, OperationalError | OSError):
                raise
            raise OperationalError(describe(error)) from error
        for encounter in batch:
            key = (encounter.protocol, encounter.identifier, encounter.first_seen)
            if self._pending.get(key) is encounter:
                del self._pending[key]
        self._store_written()

    def _store_written(self) -> None:
        self._store_ok_real = time.monotonic()
        if self._store_failing_since is not None:
            log.info("store writable again")
        self._store_failing_since = None

    def _store_failed(self, error: BaseException) -> None:
        if self._store_failing_since is None:
            self._store_failing_since = time.monotonic()
            self.supervisor.record_error("store", describe(error))
            log.error("store write failed; keeping encounters in memory and retrying",
                      error=describe(error), pending=len(self._pending))

    async def _housekeeping(self) -> None:
        assert self.store is not None
        last_purge: float | None = None
        while True:
            now = self.clock.now()
            if self.guard.verdict.usable and (last_purge is None or now - last_purge >= 3600):
                await self.store.purge(now)
                last_purge = now
            self._store_stats = await self.store.stats(now)
            await self._pace(60.0, min_real=5.0)

    async def _reporter(self) -> None:
        while True:
            state = self.snapshot()
            write_state(self.settings.daemon.state_file, state)
            line = status_line(state)
            if not self._ready and (self._all_up() or
                                    time.monotonic() - self._started_real >= READY_GRACE_S):
                self._ready = True
                self.notifier.ready(line)
                log.info("ready", status=line)
            elif line != self._last_status:
                self.notifier.status(line)
            self._last_status = line
            for consumer in self.consumers:
                try:
                    consumer.tick(self.clock.now(), state)
                except Exception as error:  # a display must not stop the logging
                    self._consumer_error(consumer, error)
            await asyncio.sleep(REPORT_EVERY_S)

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval_s
        assert interval is not None
        while True:
            reasons = self.unhealthy()
            if not reasons:
                self.notifier.watchdog()
            else:
                log.error("unhealthy: withholding the watchdog ping", reasons=reasons)
            await asyncio.sleep(interval)

    async def _pace(self, clock_seconds: float, *, min_real: float) -> None:
        """Sleep ``clock_seconds`` of the daemon's clock, but at least ``min_real`` real
        seconds (an accelerated clock must not turn housekeeping into a busy loop)."""
        await self.clock.sleep(max(clock_seconds, min_real * self.clock.speed))

    def _consumer_error(self, consumer: LiveConsumer, error: Exception) -> None:
        self._consumer_errors += 1
        if self._consumer_errors <= 3 or self._consumer_errors % 1000 == 0:
            self.supervisor.record_error(type(consumer).__name__, describe(error))

    # -- health and state ------------------------------------------------------------------

    def _all_up(self) -> bool:
        if not self.scanner.scanning:
            return False
        if self.advertiser is None or not self.guard.verdict.usable:
            return True
        return self.advertiser.state().status is AdvertisingStatus.ACTIVE

    def unhealthy(self) -> list[str]:
        """Why the watchdog must not be pinged (empty when healthy)."""
        reasons = [f"{name}: failing repeatedly" for name in self.supervisor.unhealthy_parts()]
        problem = self._scanner_problem()
        if problem:
            reasons.append(f"scanner: {problem}")
        now = time.monotonic()
        if (self._store_failing_since is not None
                and now - self._store_failing_since >= STORE_FAILING_S):
            reasons.append(f"store: not writable for {now - self._store_failing_since:.0f} s")
        if now - self._last_flush_real >= STALL_S:
            reasons.append(f"pipeline: no flush for {now - self._last_flush_real:.0f} s")
        return reasons

    def _scanner_problem(self) -> str | None:
        """The scanner's own verdict, except that its "loop is stuck" check fires while
        the loop is legitimately asleep until its silence deadline (which grows up to
        16x the watchdog time on a quiet night): that is not wedged."""
        health = self.scanner.health()
        if health.ok:
            return None
        policy = self.scanner.policy
        if (health.reason == "supervisor loop is stuck"
                and policy.phase is Phase.SCANNING
                and policy.silence_deadline() + STALL_S * self.clock.speed
                > self.clock.monotonic()):
            return None
        return health.reason

    def warnings(self) -> list[str]:
        """Problems a restart would not fix, shown in the status."""
        found = []
        if self.advertiser is not None and self.guard.verdict.usable:
            state = self.advertiser.state()
            if state.status is AdvertisingStatus.FAILED:
                found.append(f"advertising failed: {state.error}")
        return found

    def snapshot(self) -> dict[str, Any]:
        """The state file's content (no identifiers, no time of any encounter)."""
        now = self.clock.now()
        mono = self.clock.monotonic()
        health = self.scanner.health()
        stats = self.scanner.stats()
        reasons = self.unhealthy()
        verdict = self.guard.verdict
        scanning = {
            "protocols": [p.value for p in self.scan_protocols],
            "active": self.scanner.scanning,
            "phase": health.phase,
            "detail": scrub(health.reason),
            "per_minute": round(self._adverts_rate.update(mono, stats.get("adverts", 0)), 1),
            "sightings_per_minute": round(self._sightings_rate.update(
                mono, self.aggregator.counters.sightings), 1),
            "last_seen_age_s": (None if health.last_advert_age_s is None
                                else round(health.last_advert_age_s)),
            "adverts": stats.get("adverts", 0),
            "dropped_queue": stats.get("dropped", 0),
            "dropped_clock": self._dropped_clock,
            "dropped_weak": self.aggregator.counters.dropped_weak,
        }
        if self.gatt is not None:
            gatt = self.gatt.stats()
            scanning["gatt_reads_ok"] = gatt.get("reads_ok", 0)
        advertising: dict[str, Any] = {"protocols": [p.value for p in self.advertise_protocols],
                                       "active": False}
        if self.advertiser is not None:
            adv = self.advertiser.state()
            advertising.update(
                active=adv.status is AdvertisingStatus.ACTIVE, status=adv.status.value,
                detail=(scrub(adv.error or "") or None) if verdict.usable
                else "withheld: clock not plausible",
                next_rotation=None if adv.next_rotation is None else iso(adv.next_rotation),
                registrations=adv.registrations, failures=adv.failures)
        store = self._store_stats
        return {
            "version": __version__,
            "phase": self._phase,
            "healthy": not reasons,
            "unhealthy": [scrub(r) for r in reasons],
            "warnings": [scrub(w) for w in self.warnings()],
            "now": iso(now),
            "started_at": iso(self._started_at),
            "uptime_s": round(now - self._started_at),
            "adapter": {"name": self.settings.ble.adapter, "state": self._adapter_state()},
            "clock": {"state": verdict.state.value, "reason": verdict.reason,
                      "jumps": self.guard.jumps, "speed": self.clock.speed,
                      "ntp_synchronized": (TIMESYNC_FLAG.exists()
                                           if self.clock.speed == 1.0 else None)},
            "scanning": scanning,
            "advertising": advertising,
            "encounters": {"today": None if store is None else store.encounters_today,
                           "open": self.aggregator.open_count,
                           "pending": len(self._pending),
                           "dropped_unwritten": self._dropped_pending,
                           "closed_since_start": self.aggregator.counters.encounters_closed},
            "store": {"path": str(self.settings.store.path),
                      "size_bytes": None if store is None else store.size_bytes,
                      "oldest_day": (None if store is None or store.oldest_day is None
                                     else iso(store.oldest_day)[:10]),
                      "encounters": None if store is None else store.encounters,
                      "retention_days": self.settings.store.retention_days,
                      "writable": self._store_failing_since is None,
                      "last_write_age_s": round(time.monotonic() - self._store_ok_real, 1)},
            "parts": [{"name": s.name, "state": s.state.value, "restarts": s.restarts,
                       "last_error": s.last_error} for s in self.supervisor.statuses()],
            "errors": [{"at": iso(e.at), "part": e.task, "message": e.message}
                       for e in self.supervisor.errors()],
            "reload": self._reload,
        }

    def _adapter_state(self) -> str:
        watch = self.scanner.watch
        if not watch.connected:
            return "no D-Bus connection"
        if watch.owner is None:
            return "bluetoothd not running"
        if not watch.adapter_present:
            return "not found"
        if watch.powered is None:
            return "unknown"
        return "powered" if watch.powered else "powered off"


def reload_plan(old: config.Settings, new: config.Settings) -> tuple[list[str], list[str]]:
    """Which changed sections a reload applies at run time and which need a restart."""
    live = {"encounters", "lists", "gaen", "door"}
    applied: list[str] = []
    restart: list[str] = []
    for field in dataclasses.fields(config.Settings):
        name = field.name
        if name == "source" or getattr(old, name) == getattr(new, name):
            continue
        if name == "store" and dataclasses.replace(
                old.store, flush_interval_s=new.store.flush_interval_s) == new.store:
            applied.append(name)  # only the flush interval changed
        elif name in live:
            applied.append(name)
        else:
            restart.append(name)
    return applied, restart


def status_line(state: Mapping[str, Any]) -> str:
    """The one line systemd shows as ``Status:``."""
    if state["phase"] == "waiting-for-clock":
        return f"not logging: {state['clock']['reason']}"
    parts = []
    if state["unhealthy"]:
        parts.append("UNHEALTHY: " + "; ".join(state["unhealthy"]))
    scanning = state["scanning"]
    parts.append(f"scanning {scanning['per_minute']:.0f} adv/min" if scanning["active"]
                 else f"scanner {scanning['phase']}: {scanning['detail']}")
    advertising = state["advertising"]
    if advertising["protocols"]:
        what = "+".join(advertising["protocols"])
        parts.append(f"advertising {what}" if advertising["active"]
                     else f"NOT advertising {what}")
    today = state["encounters"]["today"]
    if today is not None:
        parts.append(f"{today} encounters today")
    return "; ".join(parts)


class MetricsFile:
    """A live consumer that rewrites the node-exporter textfile every ``every_s`` real
    seconds from the daemon's state and the scanner's counters."""

    def __init__(self, path: Path, scanner_counters: Callable[[], Mapping[str, int]],
                 every_s: float = 5.0) -> None:
        self.path = path
        self.scanner_counters = scanner_counters
        self.every_s = every_s
        self._next = 0.0

    def observe(self, sighting: Sighting) -> None:
        """Sightings are not needed: the counters cover them."""

    def tick(self, now: float, state: Mapping[str, Any]) -> None:
        """Rewrite the textfile when it is due."""
        from bzlogger.metrics import snapshot_from_daemon, write_metrics

        real = time.monotonic()
        if real < self._next:
            return
        self._next = real + self.every_s
        write_metrics(self.path, snapshot_from_daemon(state, self.scanner_counters()))


async def run_daemon(settings: config.Settings, clock: Clock) -> int:
    """Run the daemon with its standard live consumers (the door display's state file,
    the metrics textfile when configured) until SIGTERM/SIGINT; returns the exit
    status."""
    from bzlogger.door.consumer import DoorDisplay

    daemon = Daemon(settings, clock)
    daemon.consumers.append(DoorDisplay.from_settings(settings))
    if settings.daemon.metrics_textfile is not None:
        daemon.consumers.append(MetricsFile(settings.daemon.metrics_textfile,
                                            daemon.scanner.stats))
    return await daemon.run()
