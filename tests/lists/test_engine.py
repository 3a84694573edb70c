"""The multi-process engine gives the same hits as one process, numbered by key."""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from typing import Any

import pytest

from bzlogger.core import matching
from bzlogger.errors import OperationalError
from bzlogger.ids import bluezone, gaen
from bzlogger.lists import engine
from bzlogger.lists.bluezone_list import BluezoneEntry
from bzlogger.lists.gaen_export import ExportKey
from bzlogger.model import Encounter, Protocol

DAY = 1_796_083_200


def _encounter(protocol: Protocol, identifier: bytes, first: float) -> Encounter:
    return Encounter(protocol, identifier, first, first + 60, 3, -60, -62.0, -62.0)


def test_parallel_gaen_equals_sequential(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(3)
    keys = [ExportKey(rng.randbytes(16), DAY // 600, 144) for _ in range(3000)]
    planted = sorted(rng.sample(range(len(keys)), 12))
    stored = [_encounter(Protocol.GAEN, rng.randbytes(16), DAY + 100) for _ in range(500)]
    for number in planted:
        interval = DAY // 600 + number % 144
        stored.append(_encounter(Protocol.GAEN,
                                 gaen.rpi(gaen.rpik(keys[number].key_data), interval),
                                 interval * 600))
    matcher = matching.GaenMatcher(stored)
    monkeypatch.setattr(engine, "PARALLEL_THRESHOLD", 0)
    progress: list[int] = []
    parallel = engine.run(matcher, keys, workers=2, chunk=256, progress=progress.append)
    sequential = engine.run(matcher, keys, workers=1, chunk=256)
    assert parallel == sequential
    assert [h.key_index for h in parallel] == planted
    assert sum(progress) == len(keys)


def test_parallel_bluezone_equals_sequential(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(4)
    entries = [BluezoneEntry(rng.randbytes(32), DAY, DAY + 86399) for _ in range(600)]
    planted = sorted(rng.sample(range(len(entries)), 5))
    stored = [_encounter(Protocol.BLUEZONE, bluezone.id_at_slot(entries[n].daily_key, 7),
                         DAY + 7 * 900 + 10) for n in planted]
    matcher = matching.BluezoneMatcher(stored)
    monkeypatch.setattr(engine, "PARALLEL_THRESHOLD", 0)
    parallel = engine.run(matcher, entries, workers=2, chunk=100)
    assert [h.key_index for h in parallel] == planted
    assert parallel == engine.run(matcher, entries, workers=1)


class _Dying:
    """A matcher whose worker process dies (as when the kernel kills it for memory)."""

    def match(self, keys: Sequence[Any]) -> list[matching.Hit]:
        os._exit(9)


def test_a_dead_worker_is_an_operational_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "PARALLEL_THRESHOLD", 0)
    with pytest.raises(OperationalError, match="worker process died"):
        engine.run(_Dying(), list(range(10)), workers=2, chunk=5)
