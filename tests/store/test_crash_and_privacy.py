"""The two promises that matter most on a lost SD card or a power cut: nothing identifying
in the files, and a crash never corrupts the store nor loses more than about a second."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

from bzlogger.config import EncounterSettings, StoreSettings
from bzlogger.core.aggregation import Aggregator
from bzlogger.ids.schedule import DayKeys
from bzlogger.model import Encounter, Exposure, Platform, Protocol, Sighting
from bzlogger.store import Store
from tests.store.conftest import DAY0

WRITER = Path(__file__).with_name("crash_writer.py")


def _files(settings: StoreSettings) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in settings.path.parent.iterdir() if p.is_file()}


async def test_no_identifier_or_exact_time_in_any_file(store_settings: StoreSettings) -> None:
    rng = random.Random(11)
    ids = [(Protocol.BLUEZONE, rng.randbytes(12)) for _ in range(120)]
    ids += [(Protocol.GAEN, rng.randbytes(16)) for _ in range(120)]
    own = [DayKeys.generate(int(DAY0 + d * 86_400)) for d in range(2)]
    aggregator = Aggregator(EncounterSettings(gap_s=30.0, min_rssi=-127))
    times: set[float] = set()
    async with await Store.open(store_settings, create=True) as store:
        for keys in own:
            await store.save_own_keys(keys)
        t = DAY0 + 9 * 3600
        for second in range(300):  # a realistic run, flushed every second
            for protocol, ident in rng.sample(ids, 40):
                aem = rng.randbytes(4) if protocol is Protocol.GAEN else None
                aggregator.add(Sighting(protocol, ident, rng.randint(-95, -40),
                                        t + second + rng.random(), tx_power=-8, aem=aem,
                                        platform=Platform.ANDROID))
            batch = aggregator.flush(t + second + 1)
            times.update(e.first_seen for e in batch)
            await store.add_encounters(batch)
        await store.add_encounters(aggregator.flush(t + 1000, close_all=True))
        stored = await store.encounters()
        await store.save_exposures([Exposure(p, i, own[0].gaen_tek, t, t + 60, 5, -50, -55.0,
                                             60.0, 0.5) for p, i in ids[:20]])
        assert {(e.protocol, e.identifier) for e in stored} == set(ids)
        assert await store.compact(t + 5 * 3600) == len(stored)  # into sealed segments
        assert await store.encounters() == stored
        while_open = _files(store_settings)
    after_close = _files(store_settings)
    assert any(name.endswith("-wal") and data for name, data in while_open.items())
    secrets = [i for _, i in ids] + [k.bluezone_key for k in own] + [k.gaen_tek for k in own]
    for snapshot in (while_open, after_close):
        for name, data in snapshot.items():
            lowered = data.lower()  # hex in any case
            for secret in secrets:
                assert secret not in data, f"identifier bytes in {name}"
                assert secret.hex().encode() not in lowered, f"identifier hex in {name}"
            for first_seen in random.Random(12).sample(sorted(times), 100):
                assert struct.pack("<d", first_seen) not in data, f"exact time in {name}"
                assert struct.pack(">d", first_seen) not in data, f"exact time in {name}"
                assert str(int(first_seen)).encode() not in data, f"exact time in {name}"


async def _read_all(settings: StoreSettings) -> list[Encounter]:
    async with await Store.open(settings) as store:
        return await store.encounters()


def test_kill_9_during_heavy_ingest(store_settings: StoreSettings) -> None:
    async def create() -> None:
        async with await Store.open(store_settings, create=True):
            pass

    asyncio.run(create())
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    writer = subprocess.Popen([sys.executable, str(WRITER), str(store_settings.path),
                               str(store_settings.key_file)], stdout=subprocess.PIPE, text=True,
                              env=env)
    assert writer.stdout is not None
    try:
        assert writer.stdout.readline().strip() == "ready"
        committed: list[float] = []
        seen: list[int] = []
        while len(committed) < 4:  # let it write for a few seconds, reading meanwhile
            line = writer.stdout.readline().split()
            committed.append(float(line[1]))
            seen.append(len(asyncio.run(_read_all(store_settings))))
        assert seen == sorted(seen) and seen[-1] > 0  # another process reads while it writes
        time.sleep(random.Random().uniform(0.1, 0.9))  # somewhere inside a flush interval
        killed_at = time.time()
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(10)
        committed += [float(line.split()[1]) for line in writer.stdout if line.strip()]
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        writer.stdout.close()
    with sqlite3.connect(store_settings.path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    async def newest() -> float | None:
        async with await Store.open(store_settings) as store:
            return await store.newest_time()

    newest_time = asyncio.run(newest())
    assert newest_time is not None
    assert newest_time >= committed[-1]  # nothing the writer saw committed is lost
    assert killed_at - newest_time <= 2.5, f"lost {killed_at - newest_time:.2f} s"
