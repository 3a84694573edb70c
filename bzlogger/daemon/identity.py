"""The kiosk's own identity on the air: the day's keys, saved in the store before the
first beacon made from them, and the beacons to advertise."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bzlogger.config import BleSettings
from bzlogger.ids import bluezone
from bzlogger.ids.schedule import Beacon, DayKeys, beacons_at
from bzlogger.logsetup import get_logger
from bzlogger.model import Protocol as IdProtocol
from bzlogger.store import Store
from bzlogger.timefmt import iso

log = get_logger("daemon")


class OwnKeys:
    """The kiosk's own keys of the current UTC day, loaded from the store or generated
    and saved there first, so that ``bzlogger keys export`` can reveal everything the
    kiosk advertised."""

    def __init__(self) -> None:
        self._keys: DayKeys | None = None
        self._lock = asyncio.Lock()

    async def for_day(self, store: Store | None, now: float) -> DayKeys:
        """The keys of the UTC day containing ``now``; they are in the store on return."""
        day = bluezone.utc_midnight(now)
        async with self._lock:
            if self._keys is not None and self._keys.day_start == day:
                return self._keys
            assert store is not None
            keys = await store.own_keys_for_day(day)
            if keys is None:
                keys = DayKeys.generate(day)
                await store.save_own_keys(keys)
                log.info("new own keys saved", day=iso(day)[:10])
            self._keys = keys
            return keys


def own_beacons(keys: DayKeys, now: float, protocols: Sequence[IdProtocol],
                ble: BleSettings) -> list[Beacon]:
    """The beacons of ``protocols`` to advertise at ``now`` from the day's ``keys``."""
    return beacons_at(keys, now, protocols, bluezone_max=ble.bluezone_max,
                      tx_power=ble.tx_power)
