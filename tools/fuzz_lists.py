"""Coverage-guided fuzzing (atheris / libFuzzer) of published lists: Bluezone JSON and
GAEN export.zip through ``load_list`` with signature verification on.

Usage: python tools/fuzz_lists.py [-max_total_time=600] [-artifact_prefix=DIR/]
(needs ``pip install atheris``). Anything but a clean load or a ``ListError`` is a crash.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports():
    from bzlogger.errors import ListError
    from bzlogger.lists import bluezone_list, gaen_export  # noqa: F401 (instrumented)
    from bzlogger.lists.limits import Limits
    from bzlogger.lists.pipeline import Trust, load_list
    from tests.reliability.hostile import Authority

AUTHORITY = Authority()
TRUST = Trust(verify=True, gaen_keys=[AUTHORITY.trusted()], bluezone_key=None)
LIMITS = Limits(max_file_bytes=1 << 20, max_member_bytes=1 << 20)


def one_input(data: bytes) -> None:
    with contextlib.suppress(ListError):
        load_list(data, "fuzz", LIMITS, TRUST)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
