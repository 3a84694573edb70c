"""Named event counters for the BLE layer, shown in ``bzlogger status`` and metrics."""

from __future__ import annotations

from collections import Counter


class Counters:
    """Monotonic counters by name (e.g. ``"adverts"``, ``"noise"``,
    ``"malformed.gaen_length"``, ``"dropped"``)."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def add(self, name: str, amount: int = 1) -> None:
        """Increase ``name`` by ``amount``."""
        self._counts[name] += amount

    def get(self, name: str) -> int:
        """The current value of ``name`` (0 if never counted)."""
        return self._counts[name]

    def total(self, prefix: str) -> int:
        """Sum of every counter named ``prefix`` or starting with ``prefix.``."""
        return sum(v for k, v in self._counts.items()
                   if k == prefix or k.startswith(prefix + "."))

    def snapshot(self) -> dict[str, int]:
        """A copy of all counters, sorted by name."""
        return dict(sorted(self._counts.items()))
