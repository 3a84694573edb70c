"""The ``bzlogger`` command line (click). The contract is ``shared/reference/interface.md``.

Exit status: 0 success, 1 operational error (one line on stderr saying what is wrong and
what to do), 2 usage error. Each command group lives in its own module here and is
registered below.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from bzlogger import __version__
from bzlogger.cli.context import CliContext
from bzlogger.errors import OperationalError


class _Group(click.Group):
    """Turns an :class:`OperationalError` anywhere below into exit 1 with one line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OperationalError as error:
            click.echo(f"bzlogger: error: {error}", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"],
                                           "max_content_width": 100})
@click.option("--config", "config_file", metavar="PATH", type=click.Path(dir_okay=False),
              help="Config file (default: $BZLOGGER_CONFIG, then /etc/bzlogger/bzlogger.toml).")
@click.option("-v", "--verbose", count=True, help="More log output (-v debug, -vv libraries too).")
@click.version_option(__version__, prog_name="bzlogger")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None, verbose: int) -> None:
    """bzlogger: a Bluezone / Exposure Notification contact-logging kiosk on BlueZ.

    It advertises the kiosk's own rotating identifiers, logs nearby phones' identifiers
    into an encrypted store, and matches them against published infected lists.

    \b
    First steps on a new kiosk:
      bzlogger init                    create the store key and the store
      systemctl enable --now bzlogger  run the daemon (or: bzlogger run)
      bzlogger status                  check that it scans and advertises
      bzlogger match list.json         look for exposures in a published list
    """
    ctx.obj = CliContext(config_file=config_file, verbosity=verbose)


def _register() -> None:
    from bzlogger.cli import config_cmd, ids_cmd, report_cmd

    cli.add_command(ids_cmd.ids)
    cli.add_command(config_cmd.config_group)
    cli.add_command(report_cmd.report)
    cli.add_command(report_cmd.door)
    from bzlogger.cli import daemon_cmd

    cli.add_command(daemon_cmd.run)
    cli.add_command(daemon_cmd.status)
    from bzlogger.cli import sim_cmd

    cli.add_command(sim_cmd.sim)
    from bzlogger.cli import match_cmd

    cli.add_command(match_cmd.match)
    cli.add_command(match_cmd.keys)
    cli.add_command(match_cmd.lists_group)
    from bzlogger.cli import store_cmd

    cli.add_command(store_cmd.init)
    cli.add_command(store_cmd.encounters)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="bzlogger")
