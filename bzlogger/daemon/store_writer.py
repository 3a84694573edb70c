"""The encounters waiting to be written to the store, and whether the store takes them.

Encounters are kept by (protocol, identifier, first_seen), so a newer snapshot of an
open encounter replaces the older one and memory holds one entry per encounter. While
the store cannot be written (disk full, a read-only filesystem) they stay here and are
retried at every flush, up to :data:`PENDING_LIMIT`.
"""

from __future__ import annotations

import itertools
import time

from bzlogger.daemon.supervisor import describe
from bzlogger.errors import OperationalError
from bzlogger.logsetup import get_logger
from bzlogger.model import Encounter
from bzlogger.model import Protocol as IdProtocol
from bzlogger.store import Store

log = get_logger("daemon")

#: Unwritten encounters kept in memory while the store cannot be written (disk full, a
#: read-only filesystem): some 25 MB. Beyond it the oldest are dropped and counted, so
#: that a long outage under a flood of identifiers keeps the newest data without
#: exhausting memory.
PENDING_LIMIT = 50_000


class StoreWriter:
    """Unwritten encounters (``pending``, newest last), those dropped over the limit
    (``dropped``), and when the store last took a write (``ok_real``) or began failing
    (``failing_since``), in real monotonic seconds."""

    def __init__(self) -> None:
        self.pending: dict[tuple[IdProtocol, bytes, float], Encounter] = {}
        self.dropped = 0
        self.ok_real = time.monotonic()
        self.failing_since: float | None = None

    def take(self, encounters: list[Encounter]) -> None:
        """Queue ``encounters`` for the next write, dropping the oldest over the limit."""
        for encounter in encounters:
            key = (encounter.protocol, encounter.identifier, encounter.first_seen)
            # A newer snapshot replaces an older one and becomes the newest entry.
            self.pending.pop(key, None)
            self.pending[key] = encounter
        excess = len(self.pending) - PENDING_LIMIT
        if excess > 0:
            for key in list(itertools.islice(self.pending, excess)):
                del self.pending[key]
            if not self.dropped:
                log.error("store not writable and too many encounters waiting: dropping "
                          "the oldest", limit=PENDING_LIMIT)
            self.dropped += excess

    async def write(self, store: Store | None) -> None:
        """Write every pending encounter in one batch; raises OperationalError or OSError
        (and keeps them) when the store refuses it."""
        if not self.pending:
            self._written()
            return
        assert store is not None
        batch = list(self.pending.values())
        try:
            await store.add_encounters(batch)
        except Exception as error:
            if isinstance(error, OperationalError | OSError):
                raise
            raise OperationalError(describe(error)) from error
        for encounter in batch:
            key = (encounter.protocol, encounter.identifier, encounter.first_seen)
            if self.pending.get(key) is encounter:
                del self.pending[key]
        self._written()

    def failed(self, error: BaseException) -> bool:
        """Note a failed write; True when it begins a failure (the first since a success)."""
        if self.failing_since is not None:
            return False
        self.failing_since = time.monotonic()
        log.error("store write failed; keeping encounters in memory and retrying",
                  error=describe(error), pending=len(self.pending))
        return True

    def _written(self) -> None:
        self.ok_real = time.monotonic()
        if self.failing_since is not None:
            log.info("store writable again")
        self.failing_since = None
