"""State shared by all commands: where the config is, and the settings read lazily."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import click

from bzlogger import config, logsetup
from bzlogger.clock import ScaledClock
from bzlogger.errors import ConfigError

#: A shared accelerated clock, ``REAL_ANCHOR:VIRTUAL_ANCHOR:SPEED`` as printed by
#: ``bzlogger sim run``; unset means the system clock (see bzlogger.clock).
CLOCK_ENV = "BZLOGGER_CLOCK"


@dataclass(slots=True)
class CliContext:
    """Options of the top-level group; settings are read the first time a command asks."""

    config_file: str | None
    verbosity: int
    _settings: config.Settings | None = field(default=None, init=False)

    def settings(self, *, required: bool = False) -> config.Settings:
        """The validated settings (a missing file gives defaults unless ``required``)."""
        if self._settings is None:
            logsetup.configure(self.verbosity)
            path = config.config_path(self.config_file)
            explicit = bool(self.config_file)
            self._settings = config.load(path, required=required or explicit)
        return self._settings

    def clock(self) -> ScaledClock:
        """The clock every component uses: the system clock unless ``$BZLOGGER_CLOCK``
        names a shared accelerated one (a simulation)."""
        spec = os.environ.get(CLOCK_ENV)
        if not spec:
            return ScaledClock.system()
        try:
            return ScaledClock.parse(spec)
        except ValueError as error:
            raise ConfigError(f"${CLOCK_ENV}: {error}") from None


pass_context = click.make_pass_decorator(CliContext)
