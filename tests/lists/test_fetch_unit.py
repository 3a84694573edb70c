"""The list-fetching systemd units: a oneshot service with network, run by a timer."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
SERVICE = SYSTEMD / "bzlogger-fetch.service"
TIMER = SYSTEMD / "bzlogger-fetch.timer"
MAX_EXPOSURE = 1.5


def settings(unit: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_service_fetches_as_the_store_owner_with_network() -> None:
    unit = settings(SERVICE)
    assert unit["Type"] == ["oneshot"]
    assert unit["ExecStart"][0].endswith(" lists fetch")
    assert unit["User"] == ["bzlogger"] and unit["StateDirectory"] == ["bzlogger"]
    assert unit["LoadCredential"] == ["store.key:/etc/bzlogger/store.key"]
    assert "AF_INET" in unit["RestrictAddressFamilies"][0]
    assert "PrivateNetwork" not in unit and "IPAddressDeny" not in unit


def test_timer_runs_it_hourly_and_catches_up() -> None:
    unit = settings(TIMER)
    assert unit["OnCalendar"] == ["hourly"] and unit["Persistent"] == ["true"]
    assert unit["WantedBy"] == ["timers.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (tools/bootstrap.sh installs it)")
def test_exposure_score() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(SERVICE)],
        capture_output=True, text=True, timeout=60, check=False)
    match = re.search(r"Overall exposure level for bzlogger-fetch\.service:\s*([0-9.]+)",
                      result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
