"""The daemon-side door display consumer: detector + live state file."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

from bzlogger import config
from bzlogger.door.consumer import DoorDisplay
from bzlogger.door.live import read_door_state
from bzlogger.model import Protocol, Sighting

PHONE = bytes(range(12))
T0 = 1_796_601_600.0


def sighting(t: float, rssi: int = -50) -> Sighting:
    return Sighting(Protocol.BLUEZONE, PHONE, rssi, t)


def test_entering_the_zone_is_written_at_once_leaving_at_the_tick(tmp_path: Path) -> None:
    settings = config.parse({"door": {"state_file": "door.json", "hold_s": 1.0,
                                      "release_s": 1.5, "rssi_threshold": -60},
                             "encounters": {"rssi_offset": -5}}, base=tmp_path)
    display = DoorDisplay.from_settings(settings, tz=UTC)
    path = settings.door.state_file
    display.tick(T0, {})
    live = read_door_state(path, 0)
    assert live is not None and not live.state.present and live.state.day == "2026-12-07"
    display.observe(sighting(T0 + 0.5))
    display.observe(sighting(T0 + 1.0, rssi=-58))  # -63 after calibration: too weak
    display.observe(sighting(T0 + 1.6))
    live = read_door_state(path, 0)
    assert live is not None and live.state.present and live.state.count_today == 1
    assert live.state.updated == T0 + 1.6
    display.tick(T0 + 3.2, {})
    live = read_door_state(path, 0)
    assert live is not None and not live.state.present and live.state.count_today == 1
    assert PHONE.hex() not in path.read_text()


def test_writes_only_on_entry_between_ticks(tmp_path: Path) -> None:
    writes: list[bool] = []
    display = DoorDisplay.from_settings(config.Settings(), tz=UTC)
    display = DoorDisplay(display.detector, tmp_path / "door.json",
                          write=lambda _path, state: writes.append(state.present))
    for i in range(20):
        display.observe(sighting(T0 + 0.25 * i))
    assert writes == [True]  # hold_s = 2 s reached once
