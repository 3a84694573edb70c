"""The door service's systemd unit: loopback only, no access to the store, hardened."""

from __future__ import annotations

from pathlib import Path

from tests.systemd_units import unit_settings

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "bzlogger-door.service"


def test_loopback_only_and_no_store() -> None:
    unit = unit_settings(UNIT)
    assert unit["IPAddressAllow"] == ["localhost"] and unit["IPAddressDeny"] == ["any"]
    assert unit["ExecStart"][0].endswith(" door serve")
    assert unit["DynamicUser"] == ["yes"] and unit["CapabilityBoundingSet"] == [""]
    assert "/var/lib/bzlogger" in unit["InaccessiblePaths"][0]
    assert "/etc/bzlogger/store.key" in unit["InaccessiblePaths"][0]
    assert "LoadCredential" not in unit and unit["ProtectSystem"] == ["strict"]
