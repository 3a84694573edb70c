"""The runtime state file: atomic, world-readable, stale detection, clear errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bzlogger.daemon.state import read_state, remove_state, write_state
from bzlogger.errors import OperationalError


def test_round_trip_mode_and_liveness(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    old = os.umask(0o077)
    try:
        write_state(path, {"phase": "running"}, now_real=1000.0)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    reading = read_state(path, now_real=1003.0)
    assert reading.data["phase"] == "running"
    assert reading.data["pid"] == os.getpid()
    assert reading.age_s == 3.0
    assert reading.live
    assert not read_state(path, now_real=2000.0).live
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_dead_process_is_not_live(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"schema": 1, "pid": 999999999, "written_at": 5}')
    reading = read_state(path, now_real=6.0)
    assert not reading.process_alive and not reading.live


def test_missing_and_corrupt_files_are_operational_errors(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with pytest.raises(OperationalError, match="not running"):
        read_state(path)
    path.write_text("{trunc")
    with pytest.raises(OperationalError, match="not valid JSON"):
        read_state(path)
    path.write_text('{"schema": 99}')
    with pytest.raises(OperationalError, match="unknown format"):
        read_state(path)
    remove_state(path)
    remove_state(path)
    assert not path.exists()
