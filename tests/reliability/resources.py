"""Resource faults against the daemon as a process: the store's filesystem full or
turned read-only while it runs (it must keep running, keep what it sees in memory, say
so in its state, and catch up when the space comes back, with a sound store), and a
missing, corrupt, truncated or foreign store at start (refused, never overwritten)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from bzlogger.sim.runner import SimulatedBluez
from bzlogger.sim.scenario import parse_scenario
from bzlogger.store.keys import create_key_file
from tests.reliability.common import (
    ROOT,
    CampaignResult,
    Kiosk,
    child_env,
    digest_dir,
    integrity,
    make_kiosk,
    read_encounters,
    scanning_and_advertising,
    spawn_daemon,
    stop_daemon,
    until,
)
from tests.reliability.probe_daemon import process_figures
from tests.reliability.stack import desk_scenario

#: The daemon must show the store as not writable within this many seconds.
REPORT_LIMIT_S = 5.0
#: How long the store stays unwritable in each fault.
OUTAGE_S = 10.0


def can_mount(directory: Path) -> bool:
    """Whether this process may mount a tmpfs (root in a permissive sandbox)."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(directory)],
                       check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return False
    subprocess.run(["umount", str(directory)], check=False, capture_output=True)
    return True


@contextlib.asynccontextmanager
async def small_filesystem(directory: Path, size: str) -> AsyncIterator[Path]:
    """A tmpfs of ``size`` mounted on ``directory`` for the duration."""
    _mount(directory, size)
    try:
        yield directory
    finally:
        _unmount(directory)


def _mount(directory: Path, size: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                   check=True, capture_output=True)


def _unmount(directory: Path) -> None:
    subprocess.run(["umount", "-l", str(directory)], check=False, capture_output=True)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full (ENOSPC); returns it."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


def _remount(directory: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(directory)], check=True,
                   capture_output=True)


async def _outage(name: str, workdir: Path, start_outage: Callable[[Path], object],
                  end_outage: Callable[[Path, object], None]) -> CampaignResult:
    """Run the daemon on a small filesystem, make it unwritable for OUTAGE_S, give it
    back, and check the promises."""
    result = CampaignResult(f"resource: {name}", injected=1)
    async with small_filesystem(workdir / f"{name.replace(' ', '-')}-fs", "4m") as fs:
        kiosk = await make_kiosk(workdir / name.replace(" ", "-"), store_dir=fs / "store")
        async with SimulatedBluez.start(parse_scenario(desk_scenario(10, walkers=600)),
                                        speed=1.0) as sim:
            proc = await spawn_daemon(kiosk, child_env(sim.environment()),
                                      log=workdir / f"{name.replace(' ', '-')}.log")
            try:
                problems = await _through_outage(kiosk, sim, proc, fs, start_outage,
                                                 end_outage, result)
            finally:
                code = await stop_daemon(proc)
            if code != 0:
                problems.append(f"exit status {code} on SIGTERM after the outage")
            problems += await _store_sound(kiosk, sim, result)
    for problem in problems:
        result.fail(problem)
    if not problems:
        result.survived = 1
    return result


async def _through_outage(kiosk: Kiosk, sim: SimulatedBluez, proc: asyncio.subprocess.Process,
                          fs: Path, start_outage: Callable[[Path], object],
                          end_outage: Callable[[Path, object], None],
                          result: CampaignResult) -> list[str]:
    problems: list[str] = []
    if not await until(lambda: scanning_and_advertising(kiosk.state()), 30):
        return ["the daemon did not come up within 30 s"]
    await asyncio.sleep(3.0)
    rss_before = process_figures(proc.pid)["rss_kb"]
    token = start_outage(fs)
    began = time.monotonic()
    reported = await until(lambda: kiosk.state().get("store", {}).get("writable") is False,
                           REPORT_LIMIT_S + 2.0)
    if not reported or time.monotonic() - began > REPORT_LIMIT_S + 1.0:
        problems.append("the state did not report the store as unwritable within 5 s")
    pending_max = 0
    while time.monotonic() - began < OUTAGE_S:
        if proc.returncode is not None:
            result.crashes += 1
            return [*problems, f"the daemon exited ({proc.returncode}) during the outage"]
        pending_max = max(pending_max,
                          kiosk.state().get("encounters", {}).get("pending") or 0)
        await asyncio.sleep(0.5)
    rss_during = process_figures(proc.pid)["rss_kb"]
    end_outage(fs, token)
    back = time.monotonic()
    if not await until(lambda: kiosk.state().get("store", {}).get("writable") is True, 15):
        problems.append("the store was not written again within 15 s of the space returning")
    result.notes.append(
        f"pending encounters up to {pending_max}, RSS {rss_before // 1024}->"
        f"{rss_during // 1024} MB during {OUTAGE_S:.0f} s; writing again after "
        f"{time.monotonic() - back:.1f} s")
    await asyncio.sleep(2.0)
    return problems


async def _store_sound(kiosk: Kiosk, sim: SimulatedBluez, result: CampaignResult, *,
                       desk_only_after: bool = False) -> list[str]:
    problems = []
    check = integrity(kiosk.settings.store.path)
    if check != "ok":
        problems.append(f"integrity_check: {check}")
    try:
        encounters = await read_encounters(kiosk.settings)
    except Exception as error:  # the store must open with its key
        return [*problems, f"store does not open: {error}"]
    stored = {(e.protocol.value, e.identifier) for e in encounters}
    truth = sim.truth()
    # The desk phones were on the air through the whole outage: every identifier they
    # used (and the walkers close enough to count) must have reached the store.
    desk = {(s.protocol, bytes.fromhex(s.identifier)) for v in truth.visitors
            if v.id.startswith("desk") for s in v.ids}
    if desk_only_after:  # the phones' first identifiers may predate the daemon's start
        desk = {(s.protocol, bytes.fromhex(s.identifier)) for v in truth.visitors
                if v.id.startswith("desk") for s in v.ids if s.end > truth.start + 20}
    missing = desk - stored
    if missing:
        problems.append(f"{len(missing)} desk-phone identifiers never stored")
    result.data_lost = f"{len(missing)} of {len(desk)} desk-phone ids"
    return problems


def _fill_up(fs: Path) -> object:
    return fill(fs)


def _free_up(fs: Path, token: object) -> None:
    assert isinstance(token, Path)
    token.unlink()


async def read_only_at_start(workdir: Path) -> CampaignResult:
    """The store's filesystem read-only when the daemon starts (an SD card the kernel
    turned read-only; a filesystem with files open for writing cannot be remounted
    read-only here, so the fault is applied between runs). The daemon must either refuse
    with one line, or run and say the store is not writable; once the filesystem is
    writable again it must catch up and stop cleanly, with a sound store."""
    result = CampaignResult("resource: read-only filesystem", injected=1)
    async with small_filesystem(workdir / "ro-fs", "4m") as fs:
        kiosk = await make_kiosk(workdir / "read-only", store_dir=fs / "store")
        before = digest_dir(kiosk.store_dir)
        _remount(fs, "ro")
        async with SimulatedBluez.start(parse_scenario(desk_scenario(10)), speed=1.0) as sim:
            proc = await spawn_daemon(kiosk, child_env(sim.environment()),
                                      log=workdir / "read-only.log")
            await until(lambda: proc.returncode is not None or
                        kiosk.state().get("store", {}).get("writable") is False, 20)
            if proc.returncode is not None:
                if proc.returncode != 1:
                    result.fail(f"exit status {proc.returncode} on a read-only store, not 1")
                result.notes.append("refused at start (exit 1)")
                _remount(fs, "rw")
            else:
                result.notes.append("ran, reporting the store as not writable")
                await asyncio.sleep(3.0)
                _remount(fs, "rw")
                if not await until(
                        lambda: kiosk.state().get("store", {}).get("writable") is True, 15):
                    result.fail("the store was not written within 15 s of becoming writable")
                code = await stop_daemon(proc)
                if code != 0:
                    result.fail(f"exit status {code} on SIGTERM")
                for problem in await _store_sound(kiosk, sim, result, desk_only_after=True):
                    result.fail(problem)
        if proc.returncode == 1 and digest_dir(kiosk.store_dir) != before:
            result.fail("the store changed although the daemon refused it")
    if not result.failures:
        result.survived = 1
    return result


async def refused_store(workdir: Path, name: str, damage: Callable[[Kiosk], None]
                        ) -> CampaignResult:
    """``bzlogger run`` on a damaged store must exit 1 with one line and leave every
    file of the store as it was (or absent)."""
    result = CampaignResult(f"resource: {name}", injected=1)
    kiosk = await make_kiosk(workdir / name.replace(" ", "-"))
    damage(kiosk)
    before = digest_dir(kiosk.store_dir)
    async with SimulatedBluez.start(None, speed=1.0) as sim:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bzlogger", "--config", str(kiosk.settings.source), "run",
            env=child_env(sim.environment()), cwd=ROOT, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        try:
            _, err = await asyncio.wait_for(proc.communicate(), 20)
        except TimeoutError:
            await stop_daemon(proc, kill=True)
            result.fail("the daemon ran on a damaged store instead of refusing it")
            return result
    lines = err.decode(errors="replace").strip().splitlines()
    if proc.returncode != 1:
        result.fail(f"exit status {proc.returncode}, expected 1")
    if len(lines) != 1 or not lines[0].startswith("bzlogger: error:"):
        result.fail(f"expected one error line, got {lines[-3:]}")
    if digest_dir(kiosk.store_dir) != before:
        result.fail("the store directory changed")
    if not result.failures:
        result.survived = 1
    result.notes.append(lines[0][:110] if lines else "")
    return result


def _missing(kiosk: Kiosk) -> None:
    for path in kiosk.store_dir.iterdir():
        path.unlink()


def _garbage(kiosk: Kiosk) -> None:
    kiosk.settings.store.path.write_bytes(os.urandom(64 * 1024))


def _truncated(kiosk: Kiosk) -> None:
    path = kiosk.settings.store.path
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 100])


def _foreign_key(kiosk: Kiosk) -> None:
    kiosk.settings.store.key_file.unlink()
    create_key_file(kiosk.settings.store.key_file)


def _header_only(kiosk: Kiosk) -> None:
    path = kiosk.settings.store.path
    path.write_bytes(path.read_bytes()[:100])


REFUSALS: dict[str, Callable[[Kiosk], None]] = {
    "missing store": _missing,
    "corrupt store (random bytes)": _garbage,
    "truncated store": _truncated,
    "store header only": _header_only,
    "store with another key": _foreign_key,
}


async def resource_campaign(workdir: Path, *, log: Callable[[str], None] = print
                            ) -> list[CampaignResult]:
    """Disk full and read-only filesystem while running (needs a tmpfs mount), then
    each damaged store at start."""
    results: list[CampaignResult] = []
    if can_mount(workdir / "probe-mount"):
        results.append(await _outage("disk full", workdir, _fill_up, _free_up))
        log(f"  {results[-1].name}: {'ok' if results[-1].ok else results[-1].failures}")
        results.append(await read_only_at_start(workdir))
        log(f"  {results[-1].name}: {'ok' if results[-1].ok else results[-1].failures}")
    else:
        results.append(CampaignResult("resource: disk full / read-only (no tmpfs mount)",
                                      failures=["cannot mount a tmpfs here (needs root)"]))
    for name, damage in REFUSALS.items():
        results.append(await refused_store(workdir, name, damage))
        log(f"  {results[-1].name}: {'ok' if results[-1].ok else results[-1].failures}")
    return results
