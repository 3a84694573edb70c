"""Campaigns that need the daemon as a process against the simulated BlueZ: kill -9 at
random moments of heavy ingest, and the Bluetooth stack faults."""

from __future__ import annotations

import asyncio
import functools
import random
import shutil
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bzlogger.sim.bus import bus_config
from bzlogger.sim.runner import SimulatedBluez
from bzlogger.sim.scenario import parse_scenario
from tests.reliability.common import (
    CampaignResult,
    Kiosk,
    child_env,
    integrity,
    make_kiosk,
    read_encounters,
    read_json,
    scanning_and_advertising,
    spawn_daemon,
    stop_daemon,
    until,
)

START = "2026-12-07T08:00:00Z"
#: Scanning and advertising must be back within this many seconds of a fault's end.
RECOVERY_LIMIT_S = 10.0
#: What kill -9 may lose beyond the flush interval: the latency of the last reports.
CRASH_SLACK_S = 0.5


def desk_scenario(phones: int, hours: int = 12, walkers: int = 0) -> dict[str, Any]:
    """Phones sitting next to the kiosk the whole time (half Bluezone Android, half
    GAEN), heard continuously: every lost second shows."""
    visitors: list[dict[str, Any]] = [
        {"name": "desk-bz", "kind": "bluezone-android", "count": max(1, phones // 2),
         "profile": "stationary", "distance": 1.5, "stay": f"{hours}h"},
        {"name": "desk-gaen", "kind": "gaen", "count": max(1, phones - phones // 2),
         "profile": "stationary", "distance": 1.5, "stay": f"{hours}h"},
    ]
    if walkers:
        visitors.append({"name": "walkers", "kind": "bluezone-android", "count": walkers,
                         "arrive": ["0m", f"{hours}h"], "profile": "walk_past"})
    return {"scenario": {"name": "reliability", "seed": 9, "start": START,
                         "duration": f"{hours}h"}, "visitors": visitors}


# -- kill -9 -------------------------------------------------------------------------


async def crash_campaign(workdir: Path, *, kills: int = 100, phones: int = 60,
                         seed: int = 1, log: Callable[[str], None] = print) -> CampaignResult:
    """Start ``bzlogger run``, kill -9 it at a random moment of heavy ingest, check the
    store (integrity, key, nothing older lost, the last seconds within the flush window,
    every identifier the ground truth says was on the air), ``kills`` times."""
    result = CampaignResult("kill -9 during heavy ingest")
    rng = random.Random(seed)
    kiosk = await make_kiosk(workdir / "crash")
    flush_s = kiosk.settings.store.flush_interval_s
    allowed_s = flush_s + CRASH_SLACK_S
    losses: list[float] = []
    missing_total = 0
    async with SimulatedBluez.start(parse_scenario(desk_scenario(phones)), speed=1.0) as sim:
        env = child_env(sim.environment())
        known: set[tuple[str, bytes, float]] = set()
        samples_before = 0
        for round_ in range(kills):
            result.injected += 1
            proc = await spawn_daemon(kiosk, env, log=workdir / "crash-daemon.log")
            up = await until(lambda: scanning_and_advertising(kiosk.state()), 30)
            if not up:
                await stop_daemon(proc, kill=True)
                result.fail(f"round {round_}: the daemon did not come up within 30 s")
                continue
            # Enough time for the first flush, then a random moment of ingest.
            up_clock = sim.clock.now()
            await asyncio.sleep(rng.uniform(0.2, 4.0))
            kill_clock = sim.clock.now()
            await stop_daemon(proc, kill=True)
            problems, samples_before, missing = await _after_crash(
                kiosk, sim, known, samples_before, up_clock, kill_clock, allowed_s, losses)
            missing_total += missing
            if problems:
                result.fail(f"round {round_}: {problems}")
            else:
                result.survived += 1
            if round_ % 10 == 9:
                log(f"  kill -9: {round_ + 1}/{kills}, worst loss {max(losses, default=0):.2f} s")
    result.data_lost = (f"max {max(losses, default=0):.2f} s, mean "
                        f"{statistics.fmean(losses) if losses else 0:.2f} s (flush {flush_s:g} s);"
                        f" ids missing {missing_total}")
    result.notes.append(f"{phones} phones in range, kill 0.2-4 s after scanning+advertising")
    return result


async def _after_crash(kiosk: Kiosk, sim: SimulatedBluez,
                       known: set[tuple[str, bytes, float]], samples_before: int,
                       up_clock: float, kill_clock: float, allowed_s: float,
                       losses: list[float]) -> tuple[dict[str, Any], int, int]:
    """Check the store after a kill: the problems found, the samples now stored and the
    number of identifiers on the air but missing."""
    found: dict[str, Any] = {}
    check = integrity(kiosk.settings.store.path)
    if check != "ok":
        found["integrity"] = check
    try:
        encounters = await read_encounters(kiosk.settings)
    except Exception as error:  # the store must always open with its key
        found["open"] = f"{type(error).__name__}: {error}"
        return found, samples_before, 0
    keys = {(e.protocol.value, e.identifier, e.first_seen) for e in encounters}
    if not known <= keys:
        found["older encounters lost"] = len(known - keys)
    known |= keys
    samples = sum(e.samples for e in encounters)
    if samples < samples_before:
        found["samples went down"] = (samples_before, samples)
    # Nothing could be seen before this run started scanning: the downtime between two
    # runs is not a loss of the run.
    newest = max((e.last_seen for e in encounters), default=0.0)
    lost = max(0.0, kill_clock - max(newest, up_clock)) / sim.clock.speed
    losses.append(lost)
    if lost > allowed_s:
        found["lost seconds"] = round(lost, 2)
    stored_ids = {(e.protocol.value, e.identifier) for e in encounters}
    truth = sim.truth()
    expected = {(span.protocol, bytes.fromhex(span.identifier))
                for visitor in truth.visitors for span in visitor.ids
                if span.start <= kill_clock - allowed_s and span.end >= up_clock + 1.0}
    missing = expected - stored_ids
    if missing:
        found["ids on the air but not stored"] = len(missing)
    return found, max(samples, samples_before), len(missing)


# -- stack faults --------------------------------------------------------------------


class RestartableBus:
    """A ``dbus-daemon`` of our own on a fixed socket path, so that it can be killed and
    started again at the same address (a ``dbus-daemon`` restart)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "system_bus_socket"
        self.address = f"unix:path={self.socket}"
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start the daemon and wait for its socket."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        conf = self.directory / "bus.conf"
        conf.write_text(bus_config(str(self.socket)))
        executable = shutil.which("dbus-daemon")
        assert executable is not None, "dbus-daemon is required"
        self._process = await asyncio.create_subprocess_exec(
            executable, f"--config-file={conf}", "--nofork", "--nopidfile",
            "--print-address=1", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
        assert self._process.stdout is not None
        await asyncio.wait_for(self._process.stdout.readline(), 10)

    async def stop(self) -> None:
        """Kill the daemon (as a crash or ``systemctl restart dbus`` would)."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()


async def _restart_dbus(sim: SimulatedBluez, bus: RestartableBus) -> None:
    await sim.bluez.stop()
    await bus.stop()
    await asyncio.sleep(0.5)
    await bus.start()
    await sim.bluez.start()


def _storm(sim: SimulatedBluez, error: str, seconds: float) -> Callable[[], Awaitable[None]]:
    """Every ``StartDiscovery`` and ``RegisterAdvertisement`` fails with ``error`` for
    ``seconds``, starting with an adapter power cycle that forces both to be called."""

    async def storm() -> None:
        methods = ("StartDiscovery", "RegisterAdvertisement")
        # The simulator's fault API queues a number of errors; a storm lasting a time is
        # kept topped up to one pending error per method and emptied at its end.
        pending = sim.bluez._injected  # read and emptied, nothing else
        end = time.monotonic() + seconds
        cycle = asyncio.create_task(sim.faults.power_cycle(off_for=0.5))
        while time.monotonic() < end:
            for method in methods:
                if not pending.get(method):
                    sim.faults.inject_error(method, error)
            await asyncio.sleep(0.02)
        for method in methods:
            pending.pop(method, None)
        await cycle

    return storm


def fault_kinds(sim: SimulatedBluez, bus: RestartableBus
                ) -> dict[str, Callable[[], Awaitable[None]]]:
    """Each stack fault as a coroutine function that returns when the fault is over."""

    async def silence() -> None:
        sim.faults.silence_scanner(12.0)
        await asyncio.sleep(12.0 / sim.clock.speed)

    return {
        "bluetoothd restart": lambda: sim.faults.restart_bluetoothd(downtime=1.0),
        "dbus-daemon restart": lambda: _restart_dbus(sim, bus),
        "adapter power cycle": lambda: sim.faults.power_cycle(off_for=1.0),
        "silent scanner (12 s)": silence,
        "InProgress storm (3 s)": _storm(sim, "InProgress", 3.0),
        "NotReady storm (3 s)": _storm(sim, "NotReady", 3.0),
    }


async def stack_campaign(workdir: Path, *, repeats: int = 20, kinds: list[str] | None = None,
                         log: Callable[[str], None] = print) -> list[CampaignResult]:
    """Each stack fault ``repeats`` times against one running daemon: scanning (new
    advertisements counted) and advertising (the simulator holds the kiosk's
    registrations again) must be back within 10 s of the fault's end every time, and the
    daemon's tasks, file descriptors and memory must not grow over the loop."""
    bus = RestartableBus(workdir / "bus")
    await bus.start()
    kiosk = await make_kiosk(workdir / "stack")
    probe = workdir / "stack" / "probe.json"
    results: list[CampaignResult] = []
    try:
        async with SimulatedBluez.start(parse_scenario(desk_scenario(6, walkers=200)),
                                        speed=1.0, bus_address=bus.address) as sim:
            proc = await spawn_daemon(kiosk, child_env(sim.environment()), probe=probe,
                                      log=workdir / "stack-daemon.log")
            try:
                if not await until(lambda: scanning_and_advertising(kiosk.state()), 30):
                    raise AssertionError("the daemon did not come up within 30 s")
                expected_adverts = len(_active_adverts(sim))
                faults = fault_kinds(sim, bus)
                for name in kinds or list(faults):
                    results.append(await _fault_loop(name, faults[name], repeats, sim, kiosk,
                                                     probe, expected_adverts, proc, log))
            finally:
                code = await stop_daemon(proc)
                if code != 0:
                    results.append(CampaignResult("stack: clean stop after the faults",
                                                  failures=[f"exit status {code} on SIGTERM"]))
    finally:
        await bus.stop()
    return results


def _active_adverts(sim: SimulatedBluez) -> list[Any]:
    return [a for a in sim.advertisements() if a.ended_at is None]


async def _fault_loop(name: str, fault: Callable[[], Awaitable[None]], repeats: int,
                      sim: SimulatedBluez, kiosk: Kiosk, probe: Path, expected_adverts: int,
                      proc: asyncio.subprocess.Process,
                      log: Callable[[str], None]) -> CampaignResult:
    result = CampaignResult(f"stack: {name}")
    times: list[float] = []
    baseline: dict[str, Any] = {}
    # One unrecorded fault first: lazily created objects are not leaks.
    for round_ in range(repeats + 1):
        if round_ == 1:
            await asyncio.sleep(2.0)
            baseline = read_json(probe)
        await fault()
        over = time.monotonic()
        over_wall = time.time()
        # The adverts counter from the first state written after the fault's end: new
        # advertisements counted after that show that scanning is back.
        await until(functools.partial(_written_after, kiosk, over_wall), 5.0, 0.05)
        before = kiosk.state().get("scanning", {}).get("adverts", 0)
        recovered = await until(
            functools.partial(_back, kiosk, sim, before, expected_adverts), 30.0)
        took = time.monotonic() - over
        if proc.returncode is not None:
            result.injected += 1
            result.crashes += 1
            result.fail(f"round {round_}: the daemon exited with {proc.returncode}")
            return result
        if round_ == 0:
            continue
        result.injected += 1
        times.append(took)
        if recovered and took <= RECOVERY_LIMIT_S:
            result.survived += 1
        else:
            result.fail(f"round {round_}: back after {took:.1f} s" if recovered
                        else f"round {round_}: not back within 30 s")
        await asyncio.sleep(0.5)
    await asyncio.sleep(2.0)
    after = read_json(probe)
    leaks = _leaks(baseline, after)
    for leak in leaks:
        result.fail(leak)
    result.notes.append(
        f"recovery max {max(times, default=0):.1f} s, median "
        f"{statistics.median(times) if times else 0:.1f} s; tasks {baseline.get('tasks')}->"
        f"{after.get('tasks')}, fds {baseline.get('fds')}->{after.get('fds')}, RSS "
        f"{baseline.get('rss_kb', 0) // 1024}->{after.get('rss_kb', 0) // 1024} MB")
    log(f"  {result.name}: {result.survived}/{result.injected}; {result.notes[-1]}")
    return result


def _written_after(kiosk: Kiosk, wall: float) -> bool:
    return bool(kiosk.state().get("written_at", 0) > wall)


def _back(kiosk: Kiosk, sim: SimulatedBluez, adverts_before: int, expected_adverts: int
          ) -> bool:
    """Scanning (new advertisements counted) and advertising (the simulator holds the
    kiosk's registrations) both back."""
    state = kiosk.state()
    return (scanning_and_advertising(state)
            and state.get("scanning", {}).get("adverts", 0) > adverts_before
            and len(_active_adverts(sim)) >= expected_adverts)


#: Growth over a fault loop that counts as a leak.
TASK_SLACK, FD_SLACK, RSS_SLACK_KB = 3, 3, 16 * 1024


def _leaks(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    if not before or not after:
        return ["no probe figures from the daemon"]
    found = []
    if after["tasks"] > before["tasks"] + TASK_SLACK:
        found.append(f"asyncio tasks grew {before['tasks']} -> {after['tasks']}")
    if after["fds"] > before["fds"] + FD_SLACK:
        found.append(f"file descriptors grew {before['fds']} -> {after['fds']}")
    if after["rss_kb"] > before["rss_kb"] + RSS_SLACK_KB:
        found.append(f"memory grew {before['rss_kb']} -> {after['rss_kb']} kB")
    return found
