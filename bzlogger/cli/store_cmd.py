"""``bzlogger init`` (key file and store) and ``bzlogger encounters`` (what the store holds)."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from bzlogger.cli.context import CliContext, pass_context
from bzlogger.cli.output import emit, format_option
from bzlogger.model import Encounter, Protocol
from bzlogger.store import Store, keyring_path
from bzlogger.store.crypto import DAY_SECONDS
from bzlogger.store.keys import create_key_file, key_path
from bzlogger.timefmt import iso, parse_iso

ENCOUNTER_COLUMNS = ("protocol", "id", "first_seen", "last_seen", "duration_s", "samples",
                     "rssi_max", "rssi_median", "rssi_mean", "close_s", "platform", "flags")


@click.command()
@pass_context
def init(ctx: CliContext) -> None:
    """Create the store's key file (mode 0600) and the encrypted store, if absent.

    Idempotent: an existing key is never overwritten, and an existing store is only
    checked (it must open with the key and pass SQLite's quick check). Back up the key
    file: without it the store cannot be read.
    """
    settings = ctx.settings().store
    source = key_path(settings.key_file)
    if source != settings.key_file:
        click.echo(f"key: using the systemd credential {source}")
    elif create_key_file(settings.key_file):
        click.echo(f"key: created {settings.key_file} (mode 0600); back it up somewhere safe")
    else:
        click.echo(f"key: {settings.key_file} exists, kept")
    existed = settings.path.exists()

    async def open_store() -> None:
        async with await Store.open(settings, create=True, check=True):
            pass

    asyncio.run(open_store())
    state = "exists, opens with the key and passed the check" if existed else "created"
    click.echo(f"store: {settings.path} {state} (keyring {keyring_path(settings.path)})")


@click.command()
@click.option("--since", metavar="ISO", help="Only encounters still going on at or after this "
              "time (e.g. 2026-12-06, 2026-12-06T08:00:00Z, today or yesterday).")
@click.option("--until", metavar="ISO", help="Only encounters that began at or before this time.")
@click.option("--protocol", type=click.Choice([p.value for p in Protocol]),
              help="Only this protocol.")
@format_option(csv_allowed=True)
@pass_context
def encounters(ctx: CliContext, since: str | None, until: str | None, protocol: str | None,
               fmt: str) -> None:
    """List the encounters in the store (decrypted), oldest first.

    RSSI figures are calibrated and smoothed (see [encounters]); close_s is the time
    spent at or above close_rssi; flags name replay/plausibility warnings.
    """
    settings = ctx.settings().store
    now = ctx.clock().now()
    start = parse_time(since, now) if since else None
    end = parse_time(until, now) if until else None
    if start is not None and end is not None and end < start:
        raise click.BadParameter("must not be before --since", param_hint="--until")

    async def read() -> list[Encounter]:
        async with await Store.open(settings) as store:
            return await store.encounters(start, end, Protocol(protocol) if protocol else None)

    rows = [encounter_row(e, fmt) for e in asyncio.run(read())]
    emit(rows, fmt, ENCOUNTER_COLUMNS, empty="no encounters")


def parse_time(text: str, now: float) -> float:
    """An ISO 8601 time, or ``now``, ``today`` / ``yesterday`` (their UTC midnight)."""
    word = text.strip().lower()
    if word == "now":
        return now
    if word in ("today", "yesterday"):
        midnight = now - now % DAY_SECONDS
        return midnight - (DAY_SECONDS if word == "yesterday" else 0)
    return parse_iso(text)


def encounter_row(e: Encounter, fmt: str = "json") -> dict[str, Any]:
    """One encounter as the operator contract shows it (``flags`` a list in JSON, joined
    with ``;`` in tables and CSV)."""
    ident = e.identifier.hex()
    flags = sorted(e.flags)
    return {
        "protocol": e.protocol.value,
        "id": ident.upper() if e.protocol is Protocol.BLUEZONE else ident,
        "first_seen": iso(e.first_seen),
        "last_seen": iso(e.last_seen),
        "duration_s": round(e.duration_s, 3),
        "samples": e.samples,
        "rssi_max": e.rssi_max,
        "rssi_median": e.rssi_median,
        "rssi_mean": round(e.rssi_mean, 2),
        "close_s": round(e.close_s, 3),
        "platform": e.platform.value,
        "flags": flags if fmt == "json" else ";".join(flags),
    }
