"""``bzlogger status`` reads only the state file and says what is wrong."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from bzlogger.cli import cli
from bzlogger.daemon.state import write_state


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "bzlogger.toml"
    path.write_text(f'[daemon]\nstate_file = "{tmp_path / "state.json"}"\n'
                    f'[store]\npath = "{tmp_path / "nope.db"}"\n'
                    f'key_file = "{tmp_path / "no.key"}"\n')
    return path


def _state(**overrides: Any) -> dict[str, Any]:
    state: dict[str, Any] = {
        "phase": "running", "healthy": True, "unhealthy": [],
        "started_at": "2026-12-06T08:00:00Z", "uptime_s": 3600,
        "adapter": {"name": "hci0", "state": "powered"},
        "clock": {"state": "ok", "reason": "ok", "speed": 1.0, "ntp_synchronized": True},
        "scanning": {"protocols": ["bluezone", "gaen"], "active": True, "per_minute": 14.0,
                     "last_seen_age_s": 3},
        "advertising": {"protocols": ["bluezone"], "active": True,
                        "next_rotation": "2026-12-06T09:15:00Z"},
        "encounters": {"today": 37, "open": 4, "pending": 0},
        "store": {"path": "/var/lib/bzlogger/bzlogger.db", "size_bytes": 1_200_000,
                  "oldest_day": "2026-11-16", "writable": True},
        "parts": [{"name": "scanner", "state": "running", "restarts": 0}],
        "errors": [],
    }
    state.update(overrides)
    return state


def test_status_of_a_healthy_daemon(tmp_path: Path) -> None:
    config = _config(tmp_path)
    write_state(tmp_path / "state.json", _state())
    result = CliRunner().invoke(cli, ["--config", str(config), "status"])
    assert result.exit_code == 0, result.output
    assert "running, healthy" in result.output
    assert "14.0 adv/min, last 3 s ago" in result.output
    assert "37 today" in result.output
    assert "1.2 MB, oldest day 2026-11-16" in result.output
    assert "next rotation 2026-12-06T09:15:00Z" in result.output
    result = CliRunner().invoke(cli, ["--config", str(config), "status", "--json"])
    document = json.loads(result.output)
    assert document["running"] is True and document["problems"] == []
    assert document["encounters"]["today"] == 37
    assert document["pid"] == os.getpid()


def test_status_says_what_the_daemon_waits_for(tmp_path: Path) -> None:
    config = _config(tmp_path)
    reason = "waiting for NTP: the clock reads 1970-01-01T00:00:05Z"
    write_state(tmp_path / "state.json", _state(
        phase="waiting-for-clock", clock={"state": "waiting", "reason": reason}))
    result = CliRunner().invoke(cli, ["--config", str(config), "status"])
    assert result.exit_code == 1
    assert f"not logging: {reason}" in result.output


def test_status_of_an_unhealthy_daemon_lists_errors(tmp_path: Path) -> None:
    config = _config(tmp_path)
    write_state(tmp_path / "state.json", _state(
        healthy=False, unhealthy=["scanner: no advertisement for 300 s"],
        parts=[{"name": "scanner", "state": "backoff", "restarts": 4}],
        errors=[{"at": "2026-12-06T08:59:00Z", "part": "scanner", "message": "BleakError"}]))
    result = CliRunner().invoke(cli, ["--config", str(config), "status"])
    assert result.exit_code == 1
    assert "UNHEALTHY" in result.output
    assert "scanner backoff (4 restarts)" in result.output
    assert "scanner: BleakError" in result.output


def test_status_without_a_daemon(tmp_path: Path) -> None:
    config = _config(tmp_path)
    result = CliRunner().invoke(cli, ["--config", str(config), "status"])
    assert result.exit_code == 1
    assert "not running" in result.output
    (tmp_path / "state.json").write_text(json.dumps(
        {"schema": 1, "pid": 999999999, "written_at": 0, **_state()}))
    result = CliRunner().invoke(cli, ["--config", str(config), "status"])
    assert result.exit_code == 1
    assert "NOT RUNNING" in result.output
