"""Shared pytest fixtures.

Simulator fixtures (see docs/simulator.md): ``sim_factory`` starts simulated BlueZ
instances on private dbus-daemons and points this process's system bus
(``DBUS_SYSTEM_BUS_ADDRESS``) and clock (``BZLOGGER_CLOCK``) at the last one started;
``simulated_bluez`` is one with an empty world at real-time speed.
"""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from bzlogger.sim.runner import SimulatedBluez
from bzlogger.sim.scenario import Scenario, parse_scenario

SimFactory = Callable[..., Awaitable[SimulatedBluez]]


@pytest.fixture
async def sim_factory(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SimFactory]:
    """``await sim_factory(scenario=None, speed=1.0, **options)``: a running
    :class:`SimulatedBluez`; ``scenario`` may be a Scenario, TOML text or a dict.
    Everything started is stopped (and its dbus-daemon killed) after the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(scenario: Scenario | str | dict[str, Any] | None = None,
                        **options: Any) -> SimulatedBluez:
            if isinstance(scenario, str):
                scenario = parse_scenario(tomllib.loads(scenario))
            elif isinstance(scenario, dict):
                scenario = parse_scenario(scenario)
            sim = await stack.enter_async_context(SimulatedBluez.start(scenario, **options))
            for name, value in sim.environment().items():
                monkeypatch.setenv(name, value)
            return sim

        yield start


@pytest.fixture
async def simulated_bluez(sim_factory: SimFactory) -> SimulatedBluez:
    """A running simulated BlueZ with no visitors (add some with ``add_visitor``)."""
    return await sim_factory()
