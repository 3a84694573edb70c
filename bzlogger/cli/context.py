"""State shared by all commands: where the config is, and the settings read lazily."""

from __future__ import annotations

from dataclasses import dataclass, field

import click

from bzlogger import config, logsetup


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


pass_context = click.make_pass_decorator(CliContext)
