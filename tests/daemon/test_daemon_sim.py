"""The daemon against the simulated BlueZ: as a real process (notify messages, SIGTERM
within 5 s with nothing lost), a wedged scanner stopping the watchdog, and the clock
cases (boot before NTP, the clock jumping forward and back while it runs)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bzlogger import RELEASE_EPOCH, config
from bzlogger.clock import Clock, ScaledClock
from bzlogger.daemon.app import Daemon
from bzlogger.daemon.sdnotify import Notifier
from bzlogger.daemon.state import read_state
from bzlogger.ids import bluezone
from bzlogger.store import Store
from bzlogger.store.keys import create_key_file
from bzlogger.timefmt import parse_iso
from tests.conftest import SimFactory

START = "2026-12-07T08:00:00Z"


def scenario(duration: str = "3h") -> dict[str, Any]:
    """Phones sitting at the desk next to the kiosk for the whole run, plus passers-by."""
    return {
        "scenario": {"name": "daemon-test", "seed": 7, "start": START, "duration": duration},
        "visitors": [
            {"name": "desk-bz", "kind": "bluezone-android", "count": 2, "profile": "stationary",
             "distance": 1.5, "stay": "3h"},
            {"name": "desk-gaen", "kind": "gaen", "count": 1, "profile": "stationary",
             "distance": 1.5, "stay": "3h"},
            {"name": "walkers", "kind": "bluezone-android", "count": 6, "arrive": ["0m", "2h"],
             "profile": "walk_past"},
        ],
    }


async def make_kiosk(tmp_path: Path) -> config.Settings:
    """A config file, a key and an empty store in ``tmp_path``."""
    path = tmp_path / "bzlogger.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "store" / "bz.db"}"\n'
        f'key_file = "{tmp_path / "store.key"}"\nflush_interval_s = 1.0\n'
        '[ble]\nadvertise = ["bluezone", "gaen"]\n'
        f'[daemon]\nstate_file = "{tmp_path / "run" / "state.json"}"\n'
        f'metrics_textfile = "{tmp_path / "metrics" / "bzlogger.prom"}"\n'
        f'[door]\nstate_file = "{tmp_path / "run" / "door.json"}"\n')
    settings = config.load(path)
    create_key_file(settings.store.key_file)
    await (await Store.open(settings.store, create=True)).close()
    (tmp_path / "run").mkdir()
    return settings


@dataclass
class NotifyListener:
    """A datagram socket standing in for systemd's notify socket."""

    path: str
    sock: socket.socket
    messages: list[tuple[float, dict[str, str]]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 4096)
            fields = dict(line.split("=", 1) for line in data.decode().split("\n"))
            self.messages.append((time.monotonic(), fields))

    def start(self) -> None:
        self._task = asyncio.create_task(self._read())

    def with_key(self, key: str) -> list[tuple[float, dict[str, str]]]:
        return [(t, m) for t, m in self.messages if key in m]

    async def wait_for(self, key: str, limit_s: float, after: float = 0.0) -> dict[str, str]:
        for _ in range(int(limit_s / 0.05)):
            for t, message in self.with_key(key):
                if t >= after:
                    return message
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {key} within {limit_s} s; got {self.messages[-5:]}")


async def until(condition: Callable[[], bool], limit_s: float) -> None:
    """Poll ``condition`` every 0.2 s for up to ``limit_s`` real seconds."""
    for _ in range(int(limit_s / 0.2)):
        if condition():
            return
        await asyncio.sleep(0.2)


@pytest.fixture
async def notify(tmp_path: Path) -> AsyncIterator[NotifyListener]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    listener = NotifyListener(path, sock)
    listener.start()
    yield listener
    if listener._task is not None:
        listener._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener._task
    sock.close()


async def stored(settings: config.Settings) -> list[Any]:
    store = await Store.open(settings.store)
    try:
        return await store.encounters()
    finally:
        await store.close()


# -- the real process -------------------------------------------------------------------


def without_network() -> list[str]:
    """``unshare --net`` when this machine allows it: the daemon then runs, as under the
    unit's PrivateNetwork=yes, in a network namespace of its own, reaching the bus only
    through the socket's path."""
    if shutil.which("unshare") is None:
        return []
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, check=False)
    return ["unshare", "--net"] if probe.returncode == 0 else []



async def test_process_notifies_and_stops_cleanly_on_sigterm(
        tmp_path: Path, sim_factory: SimFactory, notify: NotifyListener) -> None:
    settings = await make_kiosk(tmp_path)
    (tmp_path / "metrics").mkdir()  # node-exporter's textfile directory
    sim = await sim_factory(scenario(), speed=60)
    env = {**sim.child_env(), "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"}
    env.pop("WATCHDOG_PID", None)
    log_path = tmp_path / "daemon.log"
    log_file = log_path.open("wb")  # a file, not a pipe nobody drains during the run
    proc = await asyncio.create_subprocess_exec(
        *without_network(), sys.executable, "-m", "bzlogger", "--config", str(settings.source),
        "run",
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=log_file)
    try:
        try:
            ready = await notify.wait_for("READY", limit_s=30)
        except AssertionError:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 10)
            err = log_path.read_text()
            raise AssertionError(f"not ready; exit {proc.returncode}:\n{err[-3000:]}") from None
        assert "scanning" in ready["STATUS"] and "advertising bluezone+gaen" in ready["STATUS"]
        ready_at = time.monotonic()
        await notify.wait_for("WATCHDOG", limit_s=5, after=ready_at)
        await asyncio.sleep(6)  # six minutes of scenario time
        assert len(notify.with_key("WATCHDOG")) >= 4
        reading = read_state(settings.daemon.state_file)
        assert reading.live and reading.data["phase"] == "running"
        assert reading.data["scanning"]["per_minute"] > 0
        assert reading.data["advertising"]["active"]
        assert (tmp_path / "run" / "door.json").exists()
        # The node-exporter textfile, scraped as Prometheus would.
        metrics = {(m.name, tuple(sorted(m.labels.items()))): m.value
                   for f in text_string_to_metric_families(
                       (tmp_path / "metrics" / "bzlogger.prom").read_text())
                   for m in f.samples}
        assert metrics[("bzlogger_advertisements_total", (("protocol", "bluezone"),))] > 0
        assert metrics[("bzlogger_advertising", (("protocol", "gaen"),))] == 1
        assert metrics[("bzlogger_seconds_since_last_advertisement", ())] < 60

        # SIGHUP: a bad config is refused, a good one applied where safe.
        assert settings.source is not None
        text = settings.source.read_text()
        settings.source.write_text(text + "[encounters]\ngap_s = 1\n")
        proc.send_signal(signal.SIGHUP)
        await asyncio.sleep(1.5)
        reload = read_state(settings.daemon.state_file).data["reload"]
        assert reload["result"].startswith("refused: config key encounters.gap_s")
        settings.source.write_text(text.replace('advertise = ["bluezone", "gaen"]',
                                                'advertise = ["bluezone"]')
                                   + "[encounters]\ngap_s = 60.0\n")
        proc.send_signal(signal.SIGHUP)
        await asyncio.sleep(1.5)
        reload = read_state(settings.daemon.state_file).data["reload"]
        assert reload["applied"] == ["encounters"] and reload["needs_restart"] == ["ble"]
        assert read_state(settings.daemon.state_file).data["advertising"]["protocols"] == [
            "bluezone", "gaen"]  # unchanged until a restart

        stop_clock = sim.clock.now()
        stop_real = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)
        elapsed = time.monotonic() - stop_real
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log_file.close()
    assert proc.returncode == 0, log_path.read_text()[-2000:]
    assert elapsed < 5.0
    assert notify.with_key("STOPPING")
    assert not settings.daemon.state_file.exists()

    # Nothing lost: the desk phones' encounters were open at SIGTERM and are stored up
    # to (nearly) the moment of the signal.
    encounters = await stored(settings)
    truth = sim.truth()
    desk_ids = {bytes.fromhex(span.identifier) for v in truth.visitors
                if v.id.startswith("desk-") for span in v.ids
                if span.start <= stop_clock - 60}
    logged = {e.identifier for e in encounters}
    assert desk_ids and desk_ids <= logged
    latest = max(e.last_seen for e in encounters)
    assert latest >= stop_clock - 45  # within a few report ticks of the signal

    # Own keys were stored, and the Bluezone IDs on the air derive from them.
    store = await Store.open(settings.store)
    try:
        keys = await store.own_keys()
    finally:
        await store.close()
    assert len(keys) == 1
    heard = [b for advert in truth.adverts for b in advert["beacons"]
             if b["protocol"] == "bluezone"]
    assert heard
    for beacon in heard:
        slot = bluezone.slot_of(beacon["time"], bluezone.DEFAULT_MAX)
        expected = bluezone.id_at_slot(keys[0].bluezone_key, slot, bluezone.DEFAULT_MAX)
        assert bytes.fromhex(beacon["identifier"]) == expected


# -- in-process: watchdog and clock ------------------------------------------------------


class ShiftedClock:
    """The simulation's clock plus an offset a test can change: a wall clock that jumps
    (NTP stepping it) while the monotonic reading runs on."""

    def __init__(self, base: ScaledClock, offset: float = 0.0) -> None:
        self.base = base
        self.offset = offset

    @property
    def speed(self) -> float:
        return self.base.speed

    def now(self) -> float:
        return self.base.now() + self.offset

    def monotonic(self) -> float:
        return self.base.monotonic()

    async def sleep(self, seconds: float) -> None:
        await self.base.sleep(seconds)


async def start_daemon(settings: config.Settings, clock: Clock, notifier: Notifier
                       ) -> tuple[Daemon, asyncio.Task[int]]:
    daemon = Daemon(settings, clock, notifier=notifier)
    task = asyncio.create_task(daemon.run())
    return daemon, task


async def stop_daemon(daemon: Daemon, task: asyncio.Task[int]) -> int:
    daemon.request_stop()
    return await asyncio.wait_for(task, 10)


async def test_wedged_scanner_stops_the_watchdog(
        tmp_path: Path, sim_factory: SimFactory, notify: NotifyListener) -> None:
    settings = await make_kiosk(tmp_path)
    sim = await sim_factory(scenario(), speed=120)
    clock = ScaledClock.parse(sim.environment()["BZLOGGER_CLOCK"])
    daemon, task = await start_daemon(settings, clock, Notifier(notify.path, 400_000))
    try:
        await notify.wait_for("READY", limit_s=30)
        first = await notify.wait_for("WATCHDOG", limit_s=5)
        assert first == {"WATCHDOG": "1"}
        # bluetoothd restarts and from then on refuses every StartDiscovery: the scanner
        # cannot scan again whatever it tries.
        sim.bluez.inject_error("StartDiscovery", "Failed", times=100_000)
        await sim.faults.restart_bluetoothd(1.0)
        await until(lambda: not daemon.scanner.health().ok, 40)
        assert not daemon.scanner.health().ok, "the scanner never gave up"
        wedged_at = time.monotonic()
        await asyncio.sleep(2.0)
        pings_after = [t for t, _ in notify.with_key("WATCHDOG") if t > wedged_at + 0.5]
        assert pings_after == []
        status = [m["STATUS"] for t, m in notify.with_key("STATUS") if t > wedged_at]
        assert any("UNHEALTHY" in s for s in status), status
        state = read_state(settings.daemon.state_file).data
        assert not state["healthy"] and state["unhealthy"]
    finally:
        assert await stop_daemon(daemon, task) == 0


async def test_clock_before_ntp_then_jumps(
        tmp_path: Path, sim_factory: SimFactory, notify: NotifyListener) -> None:
    settings = await make_kiosk(tmp_path)
    sim = await sim_factory(scenario(), speed=60)
    base = ScaledClock.parse(sim.environment()["BZLOGGER_CLOCK"])
    # The Pi booted with fake-hwclock's idea of the time: years before the release.
    clock = ShiftedClock(base, offset=(RELEASE_EPOCH - 400 * 86400) - base.now())
    daemon, task = await start_daemon(settings, clock, Notifier(notify.path))
    try:
        # Ready after the grace period would be too slow for a test; the reporter says
        # what it waits for from the first second.
        await asyncio.sleep(3)
        state = read_state(settings.daemon.state_file).data
        assert state["phase"] == "waiting-for-clock"
        assert "waiting for NTP" in state["clock"]["reason"]
        assert state["healthy"]  # waiting is not a reason for systemd to restart us
        assert not sim.bluez.active_adverts()
        assert daemon.aggregator.counters.sightings == 0
        assert state["scanning"]["dropped_clock"] > 0
        statuses = [m["STATUS"] for _, m in notify.with_key("STATUS")]
        assert any(s.startswith("not logging: waiting for NTP") for s in statuses)

        # NTP syncs: the clock jumps forward by years; logging and advertising start.
        clock.offset = 0.0
        await until(lambda: bool(sim.bluez.active_adverts()), 20)
        assert sim.bluez.active_adverts()
        await asyncio.sleep(3)
        state = read_state(settings.daemon.state_file).data
        assert state["phase"] == "running" and state["clock"]["jumps"] >= 1
        assert daemon.aggregator.counters.sightings > 0

        # The clock is stepped back ten minutes: nothing is recorded until it passes
        # the newest time already used.
        clock.offset = -600.0
        await asyncio.sleep(1.5)
        state = read_state(settings.daemon.state_file).data
        assert state["phase"] == "waiting-for-clock"
        assert "went back" in state["clock"]["reason"]
        assert await daemon.beacons(clock.now()) == []
        accepted = daemon.aggregator.counters.sightings
        dropped = state["scanning"]["dropped_clock"]
        await asyncio.sleep(2.5)
        assert daemon.aggregator.counters.sightings == accepted
        assert read_state(settings.daemon.state_file).data["scanning"]["dropped_clock"] > dropped
        await asyncio.sleep(10)  # ten minutes of scenario time: the clock catches up
        state = read_state(settings.daemon.state_file).data
        assert state["phase"] == "running"
        assert daemon.aggregator.counters.sightings > accepted
    finally:
        assert await stop_daemon(daemon, task) == 0
    encounters = await stored(settings)
    assert encounters
    assert min(e.first_seen for e in encounters) >= parse_iso(START)
