"""``bzlogger report daily`` (app adoption at the door, per hour) and ``bzlogger door serve``
(the door-check display service)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import textwrap
from collections.abc import Coroutine
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from bzlogger.cli.context import CliContext, pass_context
from bzlogger.cli.output import emit, format_option, to_csv
from bzlogger.core.adoption import AdoptionParams, DailyAdoption, daily_adoption, day_bounds
from bzlogger.errors import ConfigError, OperationalError
from bzlogger.timefmt import iso


@click.group()
def report() -> None:
    """Reports for the office manager (aggregates only: no one is identified)."""


@report.command()
@click.option("--day", "day_text", metavar="YYYY-MM-DD",
              help="The local day to report [default: today].")
@click.option("--tz", "tz_text", metavar="ZONE",
              help="Time zone of the hours: an IANA name (Asia/Ho_Chi_Minh), UTC or +07:00 "
                   "[default: the kiosk's local time zone].")
@click.option("--min-rssi", type=click.IntRange(-127, 0), default=None,
              help="Calibrated dBm an encounter must reach to count as passing the door "
                   "[default: [encounters] min_rssi].")
@click.option("--chart", "chart_path", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE.png|FILE.svg", help="Also draw the chart for the report.")
@format_option(csv_allowed=True)
@pass_context
def daily(ctx: CliContext, day_text: str | None, tz_text: str | None, min_rssi: int | None,
          chart_path: Path | None, fmt: str) -> None:
    """People with a contact-tracing app who passed the door, per hour.

    Estimated from the encounters in the store, corrected for rotating identifiers (the
    method is printed with the figures). Paste the chart into the report to the
    Department of Information and Communications.

    \b
    bzlogger report daily --day 2020-08-17 --chart adoption.png
    bzlogger report daily --json
    """
    if chart_path is not None and chart_path.suffix.lower() not in (".png", ".svg"):
        raise click.BadParameter("must end in .png or .svg", param_hint="--chart")
    tz = _timezone(tz_text)
    day = _day(day_text, tz, ctx)
    settings = ctx.settings()
    params = AdoptionParams(bluezone_slot_s=86400 / settings.ble.bluezone_max,
                            min_rssi=settings.encounters.min_rssi if min_rssi is None
                            else min_rssi)
    start, end = day_bounds(day, tz)

    async def load() -> list[Any]:
        from bzlogger.store import Store

        async with await Store.open(settings.store) as store:
            # An hour before the day: a phone there at midnight is not a new arrival at
            # its first rotation after it.
            return await store.encounters(start - 3600, end)

    result = daily_adoption(asyncio.run(load()), day, tz, params)
    if chart_path is not None:
        _write_chart(result, chart_path)
    if fmt == "json":
        click.echo(json.dumps(report_json(result), indent=2))
    elif fmt == "csv":
        click.echo(to_csv(report_rows(result, every_hour=True)), nl=False)
    else:
        rows = report_rows(result, every_hour=False)
        emit(rows, "table", empty=f"no app users seen on {day.isoformat()}")
        click.echo(f"\nTotal: {result.people} people ({result.identifiers} identifiers) on "
                   f"{day.isoformat()}, hours in UTC{result.utc_offset}.")
        click.echo(textwrap.fill(f"Method: {result.method}", width=96))
    if chart_path is not None:
        click.echo(f"chart written to {chart_path}", err=True)


def report_json(result: DailyAdoption) -> dict[str, Any]:
    """The JSON document of ``report daily --json``."""
    return {
        "day": result.day.isoformat(),
        "utc_offset": result.utc_offset,
        "people": result.people,
        "identifiers": result.identifiers,
        "excluded_weak": result.excluded_weak,
        "method": result.method,
        "hours": [
            {"hour": h.label, "start": iso(h.start), "end": iso(h.end), "people": h.people,
             "identifiers": h.identifiers,
             "by": [{"protocol": g.protocol, "platform": g.platform, "people": g.people,
                     "identifiers": g.identifiers} for g in h.groups]}
            for h in result.hours
        ],
    }


def report_rows(result: DailyAdoption, *, every_hour: bool) -> list[dict[str, Any]]:
    """One row per hour (only hours with someone unless ``every_hour``), a column of
    people per protocol and platform."""
    rows = []
    for hour in result.hours:
        if not every_hour and not hour.identifiers:
            continue
        row: dict[str, Any] = {"hour": hour.label, "start": iso(hour.start),
                               "people": hour.people, "identifiers": hour.identifiers}
        for g in hour.groups:
            row[f"{g.protocol}_{g.platform}"] = g.people
        rows.append(row)
    return rows


def _write_chart(result: DailyAdoption, path: Path) -> None:
    from bzlogger import adoption_chart

    shapes = adoption_chart.layout(result)
    if path.suffix.lower() == ".svg":
        data = adoption_chart.to_svg(shapes).encode("utf-8")
    else:
        try:
            data = adoption_chart.to_png(shapes)
        except ImportError:
            raise OperationalError("a PNG chart needs Pillow (pip install Pillow, or Debian's "
                                   "python3-pil); or ask for FILE.svg") from None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OperationalError(f"cannot write the chart to {path}: {error.strerror}") from None


_OFFSET = re.compile(r"^(?:UTC)?([+-])(\d{1,2})(?::?(\d{2}))?$")


def _timezone(text: str | None) -> tzinfo:
    """``--tz``: an IANA name, ``UTC``, ``+07:00``; None is the system's local zone."""
    if text is None:
        local = datetime.now().astimezone().tzinfo
        return local if local is not None else UTC
    if text.upper() in ("UTC", "Z"):
        return UTC
    match = _OFFSET.match(text.strip())
    if match:
        sign, hours, minutes = match.groups()
        offset = timedelta(hours=int(hours), minutes=int(minutes or 0))
        if offset > timedelta(hours=14):
            raise click.BadParameter("offsets go up to 14 hours", param_hint="--tz")
        return timezone(-offset if sign == "-" else offset)
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(f"{text!r} is not a time zone (try Asia/Ho_Chi_Minh or "
                                 "+07:00)", param_hint="--tz") from None


def _day(text: str | None, tz: tzinfo, ctx: CliContext) -> date:
    if text is None:
        return datetime.fromtimestamp(ctx.clock().now(), tz).date()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date like 2020-08-17",
                                 param_hint="--day") from None


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
