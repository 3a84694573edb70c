"""Supervised asyncio tasks: a part that fails is logged, restarted with exponential
backoff and shown in the status, so that one hiccup never kills the daemon.

A part that keeps failing makes :meth:`Supervisor.healthy` false; the daemon then stops
its systemd watchdog pings and systemd restarts the whole process, so it never keeps
running silently broken. Backoff is measured in real seconds (it protects real
resources such as BlueZ), not in a simulation's accelerated time.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from bzlogger.logsetup import get_logger

_log = get_logger("supervisor")

TaskFactory = Callable[[], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]


class TaskState(StrEnum):
    """Where a supervised part is in its life."""

    PENDING = "pending"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class TaskError:
    """One failure of a part, for the status's "last errors" (no identifiers in it)."""

    at: float
    task: str
    message: str


@dataclass(slots=True)
class TaskStatus:
    """What the status shows for one part."""

    name: str
    state: TaskState = TaskState.PENDING
    restarts: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    #: Real monotonic time of the next restart while in backoff.
    restart_at: float | None = None


@dataclass(slots=True)
class _Entry:
    status: TaskStatus
    factory: TaskFactory
    task: asyncio.Task[None] | None = None


@dataclass(slots=True)
class BackoffPolicy:
    """Delays between restarts: ``initial * 2**(n-1)`` capped at ``maximum``; a part that
    ran ``stable_after`` seconds without failing starts again from ``initial``; after
    ``unhealthy_after`` failures in a row the daemon is reported unhealthy."""

    initial: float = 1.0
    maximum: float = 60.0
    stable_after: float = 120.0
    unhealthy_after: int = 5

    def delay(self, consecutive_failures: int) -> float:
        """Seconds to wait before restart number ``consecutive_failures`` (from 1)."""
        exponent = max(0, min(consecutive_failures - 1, 30))
        return float(min(self.maximum, self.initial * 2**exponent))


#: A MAC address (also in BlueZ object paths: dev_AA_BB_CC_DD_EE_FF) or a long hex string
#: (a contact identifier or key): never copied into logs or the world-readable status.
_PRIVATE = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}[:_]){5}[0-9A-Fa-f]{2}(?![0-9A-Fa-f])"
                      r"|[0-9A-Fa-f]{16,}")


def scrub(text: str) -> str:
    """``text`` without MAC addresses or identifiers (replaced by ``<redacted>``)."""
    return _PRIVATE.sub("<redacted>", text)


def describe(error: BaseException) -> str:
    """A one-line description of an exception for logs and the status, scrubbed of MAC
    addresses and identifiers (library errors name device paths)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return scrub(f"{type(error).__name__}: {text}" if text else type(error).__name__)


@dataclass
class Supervisor:
    """Runs named parts, restarting each when it raises or returns."""

    policy: BackoffPolicy = field(default_factory=BackoffPolicy)
    #: Wall-clock time for error timestamps (the daemon's possibly accelerated clock).
    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Sleep = asyncio.sleep
    max_errors: int = 10
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _errors: deque[TaskError] = field(default_factory=deque)
    _stopping: bool = False

    def is_stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping

    def add(self, name: str, factory: TaskFactory) -> None:
        """Register a part; ``factory()`` is awaited again after every failure."""
        if name in self._entries:
            raise ValueError(f"a part named {name!r} is already supervised")
        self._entries[name] = _Entry(TaskStatus(name), factory)
        if any(e.task is not None for e in self._entries.values()):
            self._launch(self._entries[name])

    def start(self) -> None:
        """Start every registered part (call from inside the running event loop)."""
        self._stopping = False
        for entry in self._entries.values():
            if entry.task is None:
                self._launch(entry)

    def _launch(self, entry: _Entry) -> None:
        entry.task = asyncio.create_task(self._supervise(entry), name=entry.status.name)

    async def _supervise(self, entry: _Entry) -> None:
        status = entry.status
        while not self.is_stopping():
            status.state = TaskState.RUNNING
            status.restart_at = None
            started = self.monotonic()
            try:
                await entry.factory()
                message = "stopped unexpectedly"
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure of a part is restarted
                message = describe(error)
            if self.is_stopping():
                break
            if self.monotonic() - started >= self.policy.stable_after:
                status.consecutive_failures = 0
            status.consecutive_failures += 1
            status.restarts += 1
            self.record_error(status.name, message)
            delay = self.policy.delay(status.consecutive_failures)
            _log.error("part_failed", part=status.name, error=message, restart_in_s=delay,
                       failures_in_a_row=status.consecutive_failures)
            status.state = TaskState.BACKOFF
            status.restart_at = self.monotonic() + delay
            await self.sleep(delay)
        status.state = TaskState.STOPPED

    def record_error(self, task: str, message: str) -> None:
        """Remember an error for the status (also used by parts that recover by
        themselves and want their hiccups visible)."""
        status = self._entries[task].status if task in self._entries else None
        message = scrub(message)
        now = self.wall()
        if status is not None:
            status.last_error, status.last_error_at = message, now
        self._errors.append(TaskError(now, task, message))
        while len(self._errors) > self.max_errors:
            self._errors.popleft()

    def statuses(self) -> list[TaskStatus]:
        """The status of every part, in registration order."""
        return [e.status for e in self._entries.values()]

    def errors(self) -> list[TaskError]:
        """The most recent errors, oldest first."""
        return list(self._errors)

    def unhealthy_parts(self) -> list[str]:
        """Parts that failed ``unhealthy_after`` times in a row or are not running."""
        bad = []
        for entry in self._entries.values():
            status = entry.status
            if status.consecutive_failures >= self.policy.unhealthy_after or (
                entry.task is not None and entry.task.done() and not self._stopping
            ):
                bad.append(status.name)
        return bad

    def healthy(self) -> bool:
        """True while no part is failing persistently."""
        return not self.unhealthy_parts()

    def cancel(self) -> None:
        """Stop restarting parts and cancel every one of them (they run their cleanup)."""
        self._stopping = True
        for entry in self._entries.values():
            if entry.task is not None:
                entry.task.cancel()

    async def wait(self, grace_s: float, names: Sequence[str] | None = None) -> list[str]:
        """Wait up to ``grace_s`` real seconds for the parts ``names`` (all by default) to
        end after :meth:`cancel`; returns the names of those still running."""
        entries = [e for n, e in self._entries.items()
                   if (names is None or n in names) and e.task is not None]
        tasks = [e.task for e in entries if e.task is not None and not e.task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=grace_s)
        left = []
        for entry in entries:
            if entry.task is not None and entry.task.done():
                entry.status.state = TaskState.STOPPED
            else:
                left.append(entry.status.name)
        return left

    async def stop(self, grace_s: float = 2.0) -> None:
        """Cancel every part and wait up to ``grace_s`` real seconds for them to end."""
        self.cancel()
        for name in await self.wait(grace_s):
            _log.warning("part_did_not_stop", part=name)
