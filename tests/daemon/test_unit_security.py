"""The daemon's unit and install files (its exposure score: tests/test_systemd_exposure.py)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.systemd_units import unit_settings

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "bzlogger.service"


def test_the_unit_keeps_the_contract() -> None:
    """What the score does not weigh: notify + watchdog, ordering, the credential."""
    unit = unit_settings(UNIT)
    assert unit["Type"] == ["notify"]
    assert unit["WatchdogSec"] and unit["Restart"] == ["on-failure"]
    assert "bluetooth.service" in unit["After"][0] and "time-sync.target" in unit["After"][0]
    assert unit["CapabilityBoundingSet"] == [""]
    assert unit["PrivateNetwork"] == ["yes"]
    assert unit["RestrictAddressFamilies"] == ["AF_UNIX"]
    assert unit["LoadCredential"] == ["store.key:/etc/bzlogger/store.key"]
    assert unit["ProtectSystem"] == ["strict"]


def test_dbus_policy_is_well_formed_xml() -> None:
    root = ET.parse(ROOT / "systemd" / "dbus-1" / "bzlogger.conf").getroot()
    assert root.tag == "busconfig"
    allow = root.find("./policy[@user='bzlogger']/allow")
    assert allow is not None and allow.get("send_destination") == "org.bluez"


def test_example_config_is_valid_and_matches_the_unit() -> None:
    from bzlogger import config

    settings = config.load(ROOT / "systemd" / "bzlogger.toml.example", required=True)
    assert settings.store.path == Path("/var/lib/bzlogger/bzlogger.db")
    assert settings.daemon.state_file.parent == Path("/run/bzlogger")  # RuntimeDirectory
    assert str(settings.store.key_file) in unit_settings(UNIT)["LoadCredential"][0]


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None
                    or shutil.which("systemd-tmpfiles") is None or os.geteuid() != 0,
                    reason="needs systemd-sysusers, systemd-tmpfiles and root")
def test_sysusers_and_tmpfiles_apply_to_a_fresh_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "var" / "lib").mkdir(parents=True)
    for name in ("passwd", "group"):
        entry = "root:x:0:" if name == "group" else "root:x:0:0:root:/root:/bin/sh"
        (tmp_path / "etc" / name).write_text(entry + "\n")
    subprocess.run(["systemd-sysusers", f"--root={tmp_path}",
                    str(ROOT / "systemd" / "sysusers.d" / "bzlogger.conf")],
                   check=True, capture_output=True, timeout=60)
    passwd = (tmp_path / "etc" / "passwd").read_text()
    assert "bzlogger:x:" in passwd and "/usr/sbin/nologin" in passwd
    subprocess.run(["systemd-tmpfiles", f"--root={tmp_path}", "--create",
                    str(ROOT / "systemd" / "tmpfiles.d" / "bzlogger.conf")],
                   check=True, capture_output=True, timeout=60)
    state = (tmp_path / "var" / "lib" / "bzlogger").stat()
    assert stat.S_IMODE(state.st_mode) == 0o700 and state.st_uid != 0
    assert stat.S_IMODE((tmp_path / "etc" / "bzlogger").stat().st_mode) == 0o755
