"""The list-fetching systemd units: a oneshot service with network, run by a timer."""

from __future__ import annotations

from pathlib import Path

from tests.systemd_units import unit_settings

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
SERVICE = SYSTEMD / "bzlogger-fetch.service"
TIMER = SYSTEMD / "bzlogger-fetch.timer"


def test_service_fetches_as_the_store_owner_with_network() -> None:
    unit = unit_settings(SERVICE)
    assert unit["Type"] == ["oneshot"]
    assert unit["ExecStart"][0].endswith(" lists fetch")
    assert unit["User"] == ["bzlogger"] and unit["StateDirectory"] == ["bzlogger"]
    assert unit["LoadCredential"] == ["store.key:/etc/bzlogger/store.key"]
    assert "AF_INET" in unit["RestrictAddressFamilies"][0]
    assert "PrivateNetwork" not in unit and "IPAddressDeny" not in unit


def test_timer_runs_it_hourly_and_catches_up() -> None:
    unit = unit_settings(TIMER)
    assert unit["OnCalendar"] == ["hourly"] and unit["Persistent"] == ["true"]
    assert unit["WantedBy"] == ["timers.target"]
