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

This module wires the parts and runs their loops; beside it: ``identity.py`` (own keys
and beacons), ``store_writer.py`` (unwritten encounters), ``health.py`` (watchdog and
status verdicts), ``snapshot.py`` (the state file and systemd status line),
``consumers.py`` (live consumers), ``supervisor.py``, ``clock_guard.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import Sequence
from typing import Any

from bzlogger import RELEASE_EPOCH, __version__, config
from bzlogger.ble.advertiser import Advertiser
from bzlogger.ble.gatt_reader import GattReader
from bzlogger.ble.scanner import BleScanner
from bzlogger.clock import Clock
from bzlogger.core.aggregation import Aggregator
from bzlogger.daemon import health
from bzlogger.daemon.clock_guard import ClockGuard
from bzlogger.daemon.consumers import LiveConsumer, MetricsFile
from bzlogger.daemon.health import all_up, unhealthy_reasons
from bzlogger.daemon.identity import OwnKeys, own_beacons
from bzlogger.daemon.sdnotify import Notifier
from bzlogger.daemon.snapshot import StateBuilder, status_line
from bzlogger.daemon.state import remove_state, write_state
from bzlogger.daemon.store_writer import StoreWriter
from bzlogger.daemon.supervisor import Supervisor, describe
from bzlogger.errors import ConfigError, OperationalError
from bzlogger.ids.schedule import Beacon
from bzlogger.logsetup import get_logger
from bzlogger.model import Protocol as IdProtocol
from bzlogger.model import Sighting
from bzlogger.store import Store, StoreStats
from bzlogger.timefmt import iso

log = get_logger("daemon")

#: Sightings waiting for the pipeline; beyond this the scanner drops (and counts) them.
QUEUE_SIZE = 20_000
#: Everything must be stopped, flushed and closed within this many real seconds of
#: SIGTERM (the contract says 5; the rest is left for the interpreter's exit).
STOP_BUDGET_S = 4.0
#: Real seconds between two state-file writes.
REPORT_EVERY_S = 1.0
#: If the daemon is not fully up after this many real seconds it still tells systemd it
#: is ready (with a status saying what is missing), so that a powered-off adapter or a
#: clock waiting for NTP does not turn into a restart loop.
READY_GRACE_S = 30.0


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
        self.writer = StoreWriter()
        self.own_keys = OwnKeys()
        # What the state file shows (see snapshot.py).
        self.store_stats: StoreStats | None = None
        self.started_at = clock.now()
        self.phase = "starting"
        self.dropped_clock = 0
        self.last_reload: dict[str, Any] | None = None
        self._stop = asyncio.Event()
        self._state = StateBuilder()
        self._last_flush_real = time.monotonic()
        self._started_real = time.monotonic()
        self._ready = False
        self._last_status = ""
        self._consumer_errors = 0

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

        self.phase = "stopping"
        self.notifier.stopping("stopping: withdrawing advertisements, flushing encounters")
        log.info("stopping")
        self.supervisor.cancel()
        producers = [s.name for s in self.supervisor.statuses() if s.name != "advertiser"]
        for name in await self.supervisor.wait(1.5, producers):
            log.warning("part_did_not_stop", part=name)
        self._drain_queue()
        if self.guard.verdict.usable:
            self.writer.take(self.aggregator.flush(self.clock.now(), close_all=True))
        else:
            # No plausible "now": close everything at its own last sighting.
            self.writer.take(self.aggregator.flush(float("inf"), close_all=True))
        status = 0
        try:
            await asyncio.wait_for(self.writer.write(self.store), remaining(reserve=0.5))
        except (TimeoutError, OperationalError, OSError) as error:
            log.error("final flush failed: encounters lost", count=len(self.writer.pending),
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
            self.last_reload = {"at": iso(self.clock.now()), "result": f"refused: {error}"}
            return
        applied, restart = reload_plan(self.settings, new)
        if "encounters" in applied:
            # Open encounters are closed with the old rules and stored; new ones follow
            # the new rules.
            if self.guard.verdict.usable:
                self.writer.take(self.aggregator.flush(self.clock.now(), close_all=True))
            else:
                self.writer.take(self.aggregator.flush(float("inf"), close_all=True))
            self.aggregator = Aggregator(new.encounters)
        kept = {name: getattr(self.settings, name) for name in restart}
        self.settings = dataclasses.replace(new, **kept)
        if "store" in restart:
            store_now = dataclasses.replace(self.settings.store,
                                            flush_interval_s=new.store.flush_interval_s)
            self.settings = dataclasses.replace(self.settings, store=store_now)
        log.info("config reloaded", applied=applied, needs_restart=restart)
        self.last_reload = {"at": iso(self.clock.now()), "applied": applied,
                        "needs_restart": restart}

    # -- the kiosk's own beacons ---------------------------------------------------------

    async def beacons(self, now: float) -> list[Beacon]:
        """What to advertise at ``now`` (nothing while the clock is implausible). The day's
        keys are in the store before this returns a beacon made from them."""
        if not self.guard.plausible(now) or now < self.guard.floor - self.guard.jump_tolerance_s:
            return []
        keys = await self.own_keys.for_day(self.store, now)
        return own_beacons(keys, now, self.advertise_protocols, self.settings.ble)

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
            self.dropped_clock += 1
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
            self.phase = "running" if verdict.usable else "waiting-for-clock"
            if verdict.usable:
                self.writer.take(self.aggregator.flush(self.clock.now()))
            try:
                await self.writer.write(self.store)
            except (OperationalError, OSError) as error:
                if self.writer.failed(error):
                    self.supervisor.record_error("store", describe(error))
            await self._pace(self.settings.store.flush_interval_s, min_real=0.2)

    async def _housekeeping(self) -> None:
        assert self.store is not None
        last_purge: float | None = None
        while True:
            now = self.clock.now()
            if self.guard.verdict.usable and (last_purge is None or now - last_purge >= 3600):
                await self.store.purge(now)
                last_purge = now
            self.store_stats = await self.store.stats(now)
            await self._pace(60.0, min_real=5.0)

    async def _reporter(self) -> None:
        while True:
            state = self.snapshot()
            write_state(self.settings.daemon.state_file, state)
            line = status_line(state)
            if not self._ready and (all_up(self.scanner, self.advertiser, self.guard) or
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

    def unhealthy(self) -> list[str]:
        """Why the watchdog must not be pinged (empty when healthy)."""
        return unhealthy_reasons(self.supervisor, self.scanner, self.clock, self.writer,
                                 self._last_flush_real)

    def warnings(self) -> list[str]:
        """Problems a restart would not fix, shown in the status."""
        return health.warnings(self.advertiser, self.guard)

    def snapshot(self) -> dict[str, Any]:
        """The state file's content (no identifiers, no time of any encounter)."""
        return self._state.build(self)


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
