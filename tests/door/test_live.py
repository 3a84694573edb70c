"""The live door-state file written by the daemon and read by the door service."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bzlogger.core.door import DoorState
from bzlogger.door.live import (
    DoorStateError,
    parse_door_state,
    read_door_state,
    write_door_state,
)

STATE = DoorState(present=True, phones=2, protocols=("bluezone", "gaen"), count_today=17,
                  day="2026-12-07", updated=1_796_630_400.25)


def test_round_trip_and_age(tmp_path: Path) -> None:
    path = tmp_path / "door.json"
    write_door_state(path, STATE)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    os.utime(path, (1000.0, 1000.0))
    live = read_door_state(path, now=1003.5)
    assert live is not None
    assert live.age_s == pytest.approx(3.5)
    assert live.state == DoorState(True, 2, ("bluezone", "gaen"), 17, "2026-12-07",
                                   1_796_630_400.2)


def test_replaces_atomically_leaving_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "door.json"
    for count in range(5):
        write_door_state(path, DoorState(False, 0, (), count, "2026-12-07", 1.0))
    assert [p.name for p in tmp_path.iterdir()] == ["door.json"]
    live = read_door_state(path, now=0)
    assert live is not None and live.state.count_today == 4


def test_missing_file_is_none(tmp_path: Path) -> None:
    assert read_door_state(tmp_path / "absent.json", now=0) is None


@pytest.mark.parametrize("raw", [
    b"", b"not json", b"[]", b'{"version": 2}',
    b'{"version": 1, "present": true}',
    b'{"version":1,"present":"yes","phones":0,"protocols":[],"count_today":0,'
    b'"day":"d","updated":1}',
    b'{"version":1,"present":true,"phones":-1,"protocols":[],"count_today":0,'
    b'"day":"d","updated":1}',
])
def test_invalid_documents_are_rejected(raw: bytes) -> None:
    with pytest.raises(DoorStateError):
        parse_door_state(raw)


def test_write_failure_leaves_the_old_file_and_no_temporary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "door.json"
    write_door_state(path, STATE)

    def broken_replace(src: str, dst: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        write_door_state(path, DoorState(False, 0, (), 0, "2026-12-07", 2.0))
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["door.json"]
    live = read_door_state(path, now=0)
    assert live is not None and live.state.count_today == 17
