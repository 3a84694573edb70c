"""Fixtures for store tests: settings in a temporary directory with a fresh key file."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bzlogger.config import StoreSettings
from bzlogger.model import Encounter, Platform, Protocol
from bzlogger.store.keys import create_key_file

#: 2026-12-01T00:00:00Z
DAY0 = 1_796_083_200.0


@pytest.fixture
def store_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StoreSettings:
    """Settings for a store in ``tmp_path/data`` with a key file in ``tmp_path/etc``."""
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    key_file = tmp_path / "etc" / "store.key"
    create_key_file(key_file)
    return StoreSettings(path=tmp_path / "data" / "bzlogger.db", key_file=key_file,
                         retention_days=21)


def make_encounter(rng: random.Random, first_seen: float, protocol: Protocol | None = None,
                   duration: float = 60.0) -> Encounter:
    """A plausible encounter with a random identifier."""
    protocol = protocol or rng.choice([Protocol.BLUEZONE, Protocol.GAEN])
    size = 12 if protocol is Protocol.BLUEZONE else 16
    return Encounter(
        protocol=protocol, identifier=rng.randbytes(size), first_seen=first_seen,
        last_seen=first_seen + duration, samples=rng.randint(1, 500),
        rssi_max=rng.randint(-70, -40), rssi_median=-71.5, rssi_mean=-72.25,
        close_s=duration / 2, tx_power=rng.choice([None, -8]),
        aem=rng.randbytes(4) if protocol is Protocol.GAEN else None,
        platform=rng.choice(list(Platform)),
        flags=rng.choice([frozenset(), frozenset({"replay"})]),
    )
