"""A daemon-like writer for the kill -9 test: heavy ingest through the Aggregator into the
Store, committing every ``flush_interval_s``; prints ``committed <newest time>`` after each
commit. Usage: python crash_writer.py DB_PATH KEY_FILE"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from pathlib import Path

from bzlogger.config import EncounterSettings, StoreSettings
from bzlogger.core.aggregation import Aggregator
from bzlogger.model import Protocol, Sighting
from bzlogger.store import Store


async def main(db: Path, key: Path) -> None:
    settings = StoreSettings(path=db, key_file=key, flush_interval_s=1.0)
    rng = random.Random()
    ids = [rng.randbytes(16) for _ in range(3000)]
    aggregator = Aggregator(EncounterSettings(gap_s=5.0))
    async with await Store.open(settings) as store:
        print("ready", flush=True)
        next_flush = time.time() + settings.flush_interval_s
        while True:
            now = time.time()
            for _ in range(2000):
                aggregator.add(Sighting(Protocol.GAEN, rng.choice(ids), rng.randint(-90, -40),
                                        now))
            if now >= next_flush:
                batch = aggregator.flush(now)
                await store.add_encounters(batch)
                newest = max((e.last_seen for e in batch), default=0.0)
                print(f"committed {newest!r} {len(batch)}", flush=True)
                next_flush = now + settings.flush_interval_s
            await asyncio.sleep(0)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
