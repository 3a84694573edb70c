"""Reading the project's systemd unit files in tests."""

from __future__ import annotations

from pathlib import Path

SYSTEMD = Path(__file__).resolve().parents[1] / "systemd"


def unit_settings(unit: Path) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit file, values in order of appearance per key."""
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found
