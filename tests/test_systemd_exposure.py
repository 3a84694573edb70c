"""CI check of every service's sandboxing: systemd's own exposure score must be <= 1.5
(Debian's bluetooth.service scores 6.2)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.systemd_units import SYSTEMD

MAX_EXPOSURE = 1.5


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (tools/bootstrap.sh installs it)")
@pytest.mark.parametrize("name", ["bzlogger.service", "bzlogger-fetch.service",
                                  "bzlogger-door.service"])
def test_exposure_score_is_at_most_1_5(name: str) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(SYSTEMD / name)],
        capture_output=True, text=True, timeout=60, check=False)
    match = re.search(rf"Overall exposure level for {re.escape(name)}:\s*([0-9.]+)",
                      result.stdout + result.stderr)
    assert match, f"no exposure level in systemd-analyze output:\n{result.stdout}{result.stderr}"
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
