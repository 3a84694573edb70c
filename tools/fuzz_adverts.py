"""Coverage-guided fuzzing (atheris / libFuzzer) of raw advertising data through the AD
parser, the classifier, the scanner's ``handle`` and the aggregation.

Usage: python tools/fuzz_adverts.py [-max_total_time=600] [-artifact_prefix=DIR/]
(needs ``pip install atheris``). Any exception other than ``MalformedAdError`` is a
crash: libFuzzer stops and writes the input to a ``crash-*`` file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports():
    from bzlogger.ble import ad, parser  # noqa: F401 (instrumented for coverage)
    from tests.reliability.hostile import ScanPath

PATH = ScanPath()


def one_input(data: bytes) -> None:
    """Bytes 0-1 pick the RSSI; the rest is the advertising data."""
    if len(data) < 1:
        return
    PATH.raw(data[1:], data[0] - 128, "00:11:22:33:44:55")
    PATH.aggregator.flush(PATH.clock.now())


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
