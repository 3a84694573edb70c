"""``bzlogger run`` (the daemon in the foreground) and ``bzlogger status``.

``status`` only reads the daemon's runtime state file (``[daemon] state_file``): it needs
no store key and no bus access, so any local user may run it.
"""

from __future__ import annotations

import json
import sys

import click

from bzlogger.cli.context import CliContext, pass_context
from bzlogger.daemon import status_view
from bzlogger.daemon.state import read_state


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
@pass_context
def status(ctx: CliContext, as_json: bool) -> None:
    """Health of the running daemon and of its store, at a glance.

    Exit status 0 when the daemon runs and is healthy, 1 otherwise (not running, not
    responding, waiting for a plausible clock, or a part failing), with the reason on
    stderr.
    """
    settings = ctx.settings()
    reading = read_state(settings.daemon.state_file)
    found = status_view.problems(reading)
    if as_json:
        document = {**reading.data, "running": reading.live, "state_age_s": reading.age_s,
                    "problems": found}
        click.echo(json.dumps(document, indent=2, sort_keys=True))
    else:
        click.echo("\n".join(status_view.render(reading)))
    if found:
        click.echo(f"bzlogger: error: {found[0]}", err=True)
        sys.exit(1)


@click.command("run")
@pass_context
def run(ctx: CliContext) -> None:
    """Run the daemon in the foreground until SIGTERM or SIGINT.

    It scans and advertises through BlueZ on the D-Bus system bus
    ($DBUS_SYSTEM_BUS_ADDRESS is honoured), logs encounters into the store, and writes
    its state for 'bzlogger status'. Under systemd (Type=notify) it reports readiness,
    status lines and watchdog pings. SIGHUP reloads the config where safe. On SIGTERM it
    withdraws its advertisements, stores everything it has seen and exits 0 within 5 s.
    """
    import asyncio

    from bzlogger.daemon.app import run_daemon

    settings = ctx.settings()
    clock = ctx.clock()
    sys.exit(asyncio.run(run_daemon(settings, clock)))
