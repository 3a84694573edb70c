"""End to end in a real headless browser: Debian's Chromium driven by Playwright.

The door service runs as ``bzlogger door serve`` in its own process, exactly as on the
kiosk. The first tests play the daemon by writing the live state file; the last one runs
the real daemon against the simulated BlueZ with a simulated phone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from bzlogger import config
from bzlogger.core.door import DoorState
from bzlogger.daemon.app import Daemon
from bzlogger.door.consumer import DoorDisplay
from bzlogger.door.live import read_door_state, write_door_state
from bzlogger.sim.scenario import parse_scenario
from bzlogger.store import Store
from bzlogger.store.keys import create_key_file
from bzlogger.timefmt import iso
from tests.conftest import SimFactory

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def door_state(present: bool, count: int) -> DoorState:
    return DoorState(present, int(present), ("bluezone",) if present else (), count,
                     "2026-12-07", time.time())


@contextlib.asynccontextmanager
async def door_service(state_file: Path, tmp_path: Path) -> AsyncIterator[str]:
    """``bzlogger door serve`` in its own process on a free loopback port; its URL."""
    env = dict(os.environ, BZLOGGER_CONFIG=str(tmp_path / "none.toml"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bzlogger", "door", "serve", "--listen", "127.0.0.1:0",
        "--state-file", str(state_file), env=env, stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    try:
        url = ""
        while not url:
            line = await asyncio.wait_for(process.stderr.readline(), timeout=20)
            assert line, "the door service exited before listening"
            if line.startswith(b"door display on "):
                url = line.decode().split()[-1]
        yield url
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0


@pytest.fixture
async def door_url(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    state_file = tmp_path / "door.json"
    async with door_service(state_file, tmp_path) as url:
        yield url, state_file


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run tools/bootstrap.sh (apt-get install chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                    args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def shows(page: Page, status: str, timeout_ms: float) -> float:
    """Wait until the page shows ``status``; the seconds it took."""
    start = time.monotonic()
    await page.wait_for_selector(f'main[data-status="{status}"]', timeout=timeout_ms)
    return time.monotonic() - start


async def test_page_follows_the_door_within_a_second(
        door_url: tuple[str, Path], browser: Browser) -> None:
    url, state_file = door_url
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await page.goto(url)
    await shows(page, "waiting", 5000)  # the daemon has not written anything yet
    write_door_state(state_file, door_state(False, 7))
    await shows(page, "absent", 5000)
    assert "No app detected" in await page.inner_text("main")
    assert await page.inner_text("#today") == "7"

    write_door_state(state_file, door_state(True, 8))
    took = await shows(page, "present", 1000)
    text = await page.inner_text("main")
    assert "Đã phát hiện ứng dụng" in text and "App detected" in text and "Bluezone" in text
    assert await page.inner_text("#today") == "8"
    # The phone leaves: back to "no app".
    write_door_state(state_file, door_state(False, 8))
    took = max(took, await shows(page, "absent", 1000))
    assert "Không thấy ứng dụng" in await page.inner_text("main")
    assert took < 1.0


async def test_page_says_when_the_scanner_stops(
        door_url: tuple[str, Path], browser: Browser) -> None:
    url, state_file = door_url
    write_door_state(state_file, door_state(True, 1))
    os.utime(state_file, (time.time() - 60, time.time() - 60))  # the daemon went quiet
    page = await browser.new_page()
    await page.goto(url)
    await shows(page, "stale", 5000)
    assert "Scanner not running" in await page.inner_text("main")


async def test_a_simulated_phone_through_the_whole_path(
        sim_factory: SimFactory, browser: Browser, tmp_path: Path) -> None:
    """Simulated BlueZ -> bleak scanner -> daemon pipeline -> DoorDisplay -> state file ->
    door service -> Chromium: a phone stepping into the door zone, then leaving."""
    sim = await sim_factory({"scenario": {"start": iso(time.time()), "duration": "1h"}})
    settings = config.parse({
        "store": {"path": "store.db", "key_file": "store.key"},
        "ble": {"advertise": []},
        "daemon": {"state_file": "run/state.json"},
        "door": {"state_file": "run/door.json", "hold_s": 1.0, "release_s": 1.5,
                 "rssi_threshold": -60},
    }, base=tmp_path)
    create_key_file(settings.store.key_file)
    await (await Store.open(settings.store, create=True)).close()
    daemon = Daemon(settings, sim.clock,
                    consumers=[DoorDisplay.from_settings(settings, tz=UTC)])
    running = asyncio.create_task(daemon.run())
    state_file = settings.door.state_file
    try:
        async with door_service(state_file, tmp_path) as url:
            page = await browser.new_page()
            await page.goto(url)
            await shows(page, "absent", 15_000)  # the daemon is up and scanning
            # A Bluezone Android phone stands 0.5 m from the kiosk for 6 s.
            phone = parse_scenario({
                "scenario": {"start": iso(sim.clock.now()), "seed": 11},
                "visitors": [{"name": "at-door", "kind": "bluezone-android",
                              "profile": "stationary", "distance": 0.5, "stay": "6s"}],
            }).visitors[0]
            arrived = time.monotonic()
            sim.add_visitor(phone)

            def file_present() -> bool:
                live = read_door_state(state_file, time.time())
                return live is not None and live.state.present

            while not file_present():
                assert time.monotonic() - arrived < 5, "the daemon never saw the phone"
                await asyncio.sleep(0.02)
            detected = time.monotonic()
            await shows(page, "present", 1000)  # the page follows within a second
            assert time.monotonic() - detected < 1.0
            assert detected - arrived < 1.0 + 2.0  # hold_s plus scanning latency
            assert await page.inner_text("#today") == "1"
            await shows(page, "absent", 6000 + 4000)  # gone after its 6 s stay
            assert await page.inner_text("#today") == "1"
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(running, timeout=10) == 0
