"""``bzlogger config``: check a config file and show the effective settings."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click

from bzlogger import config
from bzlogger.cli.context import CliContext, pass_context


@click.group(name="config")
def config_group() -> None:
    """Check the configuration file and show the settings in effect."""


@config_group.command()
@pass_context
def check(ctx: CliContext) -> None:
    """Validate the config file; exit 1 naming the first bad key."""
    settings = ctx.settings(required=True)
    click.echo(f"ok: {settings.source}")


@config_group.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML.")
@pass_context
def show(ctx: CliContext, as_json: bool) -> None:
    """Print every setting in effect, defaults included."""
    settings = ctx.settings()
    data = {f.name: _plain(getattr(settings, f.name))
            for f in dataclasses.fields(settings) if f.name != "source"}
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"# settings in effect (file: {settings.source or 'none, defaults only'})")
    for section, values in data.items():
        click.echo(f"\n[{section}]")
        for key, value in values.items():
            click.echo(f"{key} = {json.dumps(value)}")


@config_group.command()
def reference() -> None:
    """Print every key with its default and what it accepts."""
    click.echo(config.reference(), nl=False)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
