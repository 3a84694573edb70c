"""An accelerated day against the simulator (``make reliability``): the daemon keeps
logging across UTC midnight with flat memory, then stops cleanly."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_an_accelerated_day_with_flat_memory() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "demo.py"), "--soak", "--duration", "24h",
         "--speed", "360"],
        capture_output=True, text=True, timeout=900, cwd=ROOT, check=False)
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-2000:]
    memory = re.search(r"RSS\): start (\d+) MiB, peak (\d+) MiB, end (\d+) MiB", out)
    assert memory, out[-2000:]
    start, peak, end = (int(g) for g in memory.groups())
    assert peak - start <= 8 and end - start <= 8, memory.group(0)
    # The day rolled over: yesterday's and today's keys both cover what went on the air.
    derived = re.search(r"derive from the exported daily keys: (\d+)/(\d+)", out)
    assert derived and derived.group(1) == derived.group(2) and int(derived.group(2)) >= 90
    assert "identifiers logged that no simulated phone sent: 0" in out
