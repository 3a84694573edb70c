"""The door service's systemd unit: loopback only, no access to the store, hardened."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "bzlogger-door.service"
MAX_EXPOSURE = 1.5


def settings() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_loopback_only_and_no_store() -> None:
    unit = settings()
    assert unit["IPAddressAllow"] == ["localhost"] and unit["IPAddressDeny"] == ["any"]
    assert unit["ExecStart"][0].endswith(" door serve")
    assert unit["DynamicUser"] == ["yes"] and unit["CapabilityBoundingSet"] == [""]
    assert "/var/lib/bzlogger" in unit["InaccessiblePaths"][0]
    assert "/etc/bzlogger/store.key" in unit["InaccessiblePaths"][0]
    assert "LoadCredential" not in unit and unit["ProtectSystem"] == ["strict"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (tools/bootstrap.sh installs it)")
def test_exposure_score() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True, text=True, timeout=60, check=False)
    match = re.search(r"Overall exposure level for bzlogger-door\.service:\s*([0-9.]+)",
                      result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
