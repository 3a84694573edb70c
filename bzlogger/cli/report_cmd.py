"""``bzlogger report daily`` (app adoption at the door, per hour) and ``bzlogger door serve``
(the door-check display service)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import click

from bzlogger.cli.context import CliContext, pass_context
from bzlogger.errors import ConfigError


@click.group()
def door() -> None:
    """The door-check display: is a phone with the app at the door right now?"""


@door.command()
@click.option("--listen", metavar="HOST:PORT",
              help="Loopback address to serve on [default: [door] listen].")
@click.option("--state-file", type=click.Path(dir_okay=False, path_type=Path),
              help="The live state file the daemon writes [default: [door] state_file].")
@click.option("--stale-after", "stale_s", type=click.FloatRange(min=1.0), default=5.0,
              show_default=True,
              help="Seconds without an update from the daemon before showing "
                   "'scanner not running'.")
@pass_context
def serve(ctx: CliContext, listen: str | None, state_file: Path | None, stale_s: float
          ) -> None:
    """Serve the full-screen door page on loopback until stopped.

    \b
    Open it on the kiosk's screen with Chromium in kiosk mode:
      chromium --kiosk --noerrdialogs --disable-infobars http://127.0.0.1:8088/
    """
    from bzlogger.door.server import DoorServer, parse_listen

    settings = ctx.settings()
    try:
        host, port = parse_listen(listen or settings.door.listen)
    except ValueError as error:
        raise ConfigError(f"door listen address: {error}") from None
    server = DoorServer(state_file or settings.door.state_file, stale_s=stale_s)

    def ready(url: str) -> None:
        click.echo(f"door display on {url}", err=True)

    try:
        asyncio.run(_until_signal(server.serve(host, port, ready)))
    except OSError as error:
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror}") from None


async def _until_signal(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` until it ends or SIGTERM/SIGINT arrives (then exit 0)."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
