"""Runs a matcher of :mod:`bzlogger.core.matching` over a large list on every core.

The matcher (with its index of stored identifiers) and the keys are handed to worker
processes by ``fork``, copy-on-write, so a task is only a ``(start, stop)`` range and a
result only the few hits: nothing large is pickled. At most two tasks per worker are in
flight, and every chunk's RPIs/sub-keys are dropped once looked up, so memory stays
bounded by the chunk size whatever the list's length. Small lists run in-process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import Any, Protocol

from bzlogger.core.matching import Hit
from bzlogger.errors import OperationalError

#: Keys per task: big enough to amortise the vectorised lookup, small for a smooth bar.
CHUNK_KEYS = 2048
#: Below this many keys, starting processes costs more than it saves.
PARALLEL_THRESHOLD = 4 * CHUNK_KEYS


class Matcher(Protocol):
    """What the engine needs from a matcher: hits of a slice of keys."""

    def match(self, keys: Sequence[Any]) -> list[Hit]: ...


# Set in the parent just before the pool forks; the workers read their copy.
_job: tuple[Matcher, Sequence[Any]] | None = None


def _run_range(start: int, stop: int) -> list[Hit]:
    assert _job is not None, "worker started without a job"
    matcher, keys = _job
    return [replace(hit, key_index=hit.key_index + start)
            for hit in matcher.match(keys[start:stop])]


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def run(matcher: Matcher, keys: Sequence[Any], *, workers: int | None = None,
        chunk: int = CHUNK_KEYS, progress: Callable[[int], None] | None = None) -> list[Hit]:
    """All hits of ``keys`` (numbered by position in ``keys``), in key order.

    ``progress`` is called with the number of keys finished since the last call.
    """
    global _job
    count = workers or default_workers()
    ranges = [(start, min(start + chunk, len(keys))) for start in range(0, len(keys), chunk)]
    hits: list[Hit] = []
    if count <= 1 or len(keys) < PARALLEL_THRESHOLD or not _can_fork():
        for start, stop in ranges:
            hits += [replace(h, key_index=h.key_index + start)
                     for h in matcher.match(keys[start:stop])]
            if progress:
                progress(stop - start)
        return hits
    _job = (matcher, keys)
    try:
        return _run_pool(ranges, count, progress)
    except BrokenProcessPool:
        raise OperationalError(
            "a matching worker process died (out of memory? see MemoryMax of the unit); "
            "nothing was recorded") from None
    finally:
        _job = None


def _run_pool(ranges: Sequence[tuple[int, int]], count: int,
              progress: Callable[[int], None] | None) -> list[Hit]:
    hits: list[Hit] = []
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=count, mp_context=context) as pool:
        pending: dict[Future[list[Hit]], int] = {}
        for start, stop in ranges:
            pending[pool.submit(_run_range, start, stop)] = stop - start
            if len(pending) >= 2 * count:
                hits += _collect(pending, progress)
        while pending:
            hits += _collect(pending, progress)
    return sorted(hits, key=lambda h: (h.key_index, h.start, h.encounter_index))


def _collect(pending: dict[Future[list[Hit]], int],
             progress: Callable[[int], None] | None) -> list[Hit]:
    done, _ = wait(pending, return_when=FIRST_COMPLETED)
    hits: list[Hit] = []
    for future in done:
        size = pending.pop(future)
        hits += future.result()
        if progress:
            progress(size)
    return hits


def _can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()
