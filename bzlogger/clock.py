"""Time as a dependency.

Every component that needs the time takes a :class:`Clock`. Production runs on a
:class:`ScaledClock` with speed 1 and no offset, which is the system clock; a
simulation shares the same three numbers (real anchor, virtual anchor, speed) with the
simulated BlueZ so both read one accelerated clock. There is no test-only branch: the
scaled clock *is* the production clock.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    """A source of wall-clock time (Unix seconds) and of sleeps measured in that time."""

    def now(self) -> float:
        """The current time in Unix seconds."""
        ...

    def monotonic(self) -> float:
        """A monotonic reading in the same (possibly accelerated) seconds as :meth:`now`."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` of this clock's time."""
        ...

    @property
    def speed(self) -> float:
        """How many clock seconds pass per real second (1.0 in production)."""
        ...


@dataclass(frozen=True, slots=True)
class ScaledClock:
    """``now = virtual_anchor + (real_now - real_anchor) * speed``.

    With the defaults it is the system clock. ``real_anchor`` is a reading of
    :func:`time.time` so that two processes given the same parameters agree.
    """

    real_anchor: float = 0.0
    virtual_anchor: float = 0.0
    clock_speed: float = 1.0

    def __post_init__(self) -> None:
        if not self.clock_speed > 0:
            raise ValueError("clock speed must be positive")

    @classmethod
    def system(cls) -> ScaledClock:
        """The real wall clock."""
        return cls()

    @classmethod
    def parse(cls, spec: str) -> ScaledClock:
        """Parse ``"REAL_ANCHOR:VIRTUAL_ANCHOR:SPEED"`` (as printed by :meth:`spec`)."""
        try:
            real, virtual, speed = (float(part) for part in spec.split(":"))
        except ValueError:
            raise ValueError(
                f"clock spec {spec!r} must be REAL_ANCHOR:VIRTUAL_ANCHOR:SPEED"
            ) from None
        return cls(real, virtual, speed)

    def spec(self) -> str:
        """The string form that :meth:`parse` reads, to hand the clock to another process."""
        return f"{self.real_anchor!r}:{self.virtual_anchor!r}:{self.clock_speed!r}"

    @property
    def speed(self) -> float:
        return self.clock_speed

    def now(self) -> float:
        if self.clock_speed == 1.0 and self.real_anchor == self.virtual_anchor:
            return time.time()
        return self.virtual_anchor + (time.time() - self.real_anchor) * self.clock_speed

    def monotonic(self) -> float:
        return time.monotonic() * self.clock_speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.clock_speed)


@dataclass(slots=True)
class ManualClock:
    """A clock that only moves when told to; for deterministic tests of pure code paths
    and of components driven step by step. ``sleep`` advances it instead of waiting."""

    current: float = 0.0
    mono: float = 0.0

    @property
    def speed(self) -> float:
        return 1.0

    def now(self) -> float:
        return self.current

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        """Move both readings forward by ``seconds``."""
        self.current += seconds
        self.mono += seconds

    async def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)
