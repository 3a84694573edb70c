"""Shared pieces of the reliability campaigns: the result row of the summary table, a
kiosk's files (config, key, store), the daemon as a child process, and store checks."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from bzlogger import config
from bzlogger.daemon.state import read_state
from bzlogger.errors import OperationalError
from bzlogger.model import Encounter
from bzlogger.store import Store
from bzlogger.store.keys import create_key_file

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class CampaignResult:
    """One row of the summary table."""

    name: str
    injected: int = 0      # faults injected (0 for fuzz campaigns)
    survived: int = 0      # faults the daemon came through as promised
    inputs: int = 0        # hostile inputs tried (fuzz campaigns)
    crashes: int = 0       # unexpected exceptions or process deaths on hostile input
    data_lost: str = "0"   # what was lost, in words and figures
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every fault survived, no crash, nothing failed."""
        return self.survived == self.injected and self.crashes == 0 and not self.failures

    def fail(self, message: str) -> None:
        """Record a broken promise (kept short: the first ten are kept)."""
        if len(self.failures) < 10:
            self.failures.append(message)


@dataclass
class Kiosk:
    """A kiosk's files in one directory: config, key file, store, runtime state."""

    root: Path
    store_dir: Path
    settings: config.Settings

    @property
    def state_file(self) -> Path:
        return self.settings.daemon.state_file

    def state(self) -> dict[str, Any]:
        """The daemon's runtime state (empty when not written yet)."""
        try:
            reading = read_state(self.state_file)
        except OperationalError:
            return {}
        return dict(reading.data) if reading.live else {}


async def make_kiosk(root: Path, *, store_dir: Path | None = None, retention_days: int = 21,
                     watchdog_s: float = 10.0, flush_interval_s: float = 1.0,
                     create_store: bool = True, extra: str = "") -> Kiosk:
    """Config (plus the TOML text ``extra``), key and (with ``create_store``) an empty
    store; the store may live in its own directory (a small filesystem for the disk-full
    campaign)."""
    kiosk = _kiosk_files(root, store_dir or root / "store", retention_days, watchdog_s,
                         flush_interval_s, extra)
    if create_store:
        await (await Store.open(kiosk.settings.store, create=True)).close()
    return kiosk


def _kiosk_files(root: Path, store_dir: Path, retention_days: int, watchdog_s: float,
                 flush_interval_s: float, extra: str) -> Kiosk:
    (root / "run").mkdir(parents=True, exist_ok=True)
    path = root / "bzlogger.toml"
    path.write_text(
        f'[store]\npath = "{store_dir / "bz.db"}"\nkey_file = "{root / "store.key"}"\n'
        f"flush_interval_s = {flush_interval_s}\nretention_days = {retention_days}\n"
        f'[ble]\nadvertise = ["bluezone", "gaen"]\nwatchdog_s = {watchdog_s}\n'
        f'[daemon]\nstate_file = "{root / "run" / "state.json"}"\n'
        f'[door]\nstate_file = "{root / "run" / "door.json"}"\n' + extra)
    settings = config.load(path)
    if not settings.store.key_file.exists():
        create_key_file(settings.store.key_file)
    return Kiosk(root, store_dir, settings)


def child_env(sim_env: dict[str, str]) -> dict[str, str]:
    """The environment of a daemon child: the simulation's bus and clock, this checkout
    first on the import path, no systemd variables."""
    # Unbuffered, so that a killed daemon's log is complete; the fault handler dumps every
    # thread's stack on SIGABRT (sent to a daemon that does not stop).
    env = {**os.environ, **sim_env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
           "PYTHONFAULTHANDLER": "1"}
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "CREDENTIALS_DIRECTORY"):
        env.pop(name, None)
    return env


async def spawn_daemon(kiosk: Kiosk, env: dict[str, str], *, probe: Path | None = None,
                       log: Path | None = None) -> asyncio.subprocess.Process:
    """``bzlogger run`` (or the probe daemon when ``probe`` is given) as a child, its
    output appended to ``log``."""
    if probe is None:
        args = ["-m", "bzlogger", "--config", str(kiosk.settings.source), "run"]
    else:
        args = ["-m", "tests.reliability.probe_daemon", str(kiosk.settings.source), str(probe)]
    out = _append(log) if log is not None else None
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, *args, env=env, cwd=ROOT, stdin=asyncio.subprocess.DEVNULL,
            stdout=out if out is not None else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.STDOUT if out is not None else asyncio.subprocess.DEVNULL)
    finally:
        if out is not None:
            out.close()


def _append(path: Path) -> BinaryIO:
    return open(path, "ab")  # handed to the child, closed by the caller


async def stop_daemon(proc: asyncio.subprocess.Process, *, kill: bool = False,
                      timeout_s: float = 10.0) -> int:
    """SIGTERM (or SIGKILL) the child and wait for it; its exit status."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGABRT)  # stacks into its log, then it dies
            try:
                await asyncio.wait_for(proc.wait(), 3.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()
            return -signal.SIGKILL
    assert proc.returncode is not None
    return proc.returncode


async def until(condition: Callable[[], bool], limit_s: float, step_s: float = 0.1) -> bool:
    """Poll ``condition`` for up to ``limit_s`` real seconds; whether it came true."""
    deadline = time.monotonic() + limit_s
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(step_s)


def scanning_and_advertising(state: dict[str, Any]) -> bool:
    """The daemon's own view: discovery running and every beacon on the air."""
    return bool(state.get("scanning", {}).get("active")
                and state.get("advertising", {}).get("active"))


def integrity(path: Path) -> str:
    """SQLite's ``PRAGMA integrity_check`` of a store file (``"ok"`` when sound)."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    return "; ".join(str(r[0]) for r in rows)


async def read_encounters(settings: config.Settings) -> list[Encounter]:
    """Open the store with its key (with SQLite's quick check) and read everything."""
    store = await Store.open(settings.store, check=True)
    try:
        return await store.encounters()
    finally:
        await store.close()


def digest_dir(path: Path) -> dict[str, str]:
    """SHA-256 of every file in a directory (to prove nothing was changed)."""
    if not path.is_dir():
        return {}
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.iterdir()) if p.is_file()}


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file written atomically by the probe ({} when absent)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
