"""``bzlogger match``, ``bzlogger keys export`` and ``bzlogger lists fetch``.

Every list is read, validated and verified before the store is opened, so a refused
file leaves the store untouched. Matching runs with the store closed (its worker
processes are forked from a process without threads).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from bzlogger.cli.context import CliContext, pass_context
from bzlogger.cli.output import emit, format_option, table, to_csv
from bzlogger.config import Settings
from bzlogger.errors import ListError, OperationalError
from bzlogger.ids import bluezone, gaen
from bzlogger.ids.schedule import DayKeys
from bzlogger.lists import bluezone_list, fetch, gaen_export, pipeline
from bzlogger.lists.limits import Limits, read_bounded
from bzlogger.lists.pipeline import LoadedList
from bzlogger.logsetup import get_logger
from bzlogger.model import Encounter, Exposure
from bzlogger.store import Store
from bzlogger.timefmt import iso, parse_iso

log = get_logger("lists")

#: Lists smaller than this match too fast for a progress bar to help.
_PROGRESS_MIN_KEYS = 20_000
_TABLE_COLUMNS = ("protocol", "first_seen", "last_seen", "duration_s", "samples",
                  "rssi_median", "attenuation_db", "risk")
#: Defaults written into a venue export (the authority may change them when it signs and
#: republishes): a confirmed case with the highest transmission risk, so that phones
#: with legacy (v1) scoring compute a non-zero risk for a visit.
_VENUE_REPORT_TYPE = 1  # CONFIRMED_TEST
_VENUE_TRANSMISSION_RISK = 8


# -- shared steps ------------------------------------------------------------------------


def _limits(settings: Settings) -> Limits:
    return Limits.from_max_file_bytes(settings.lists.max_file_bytes)


@contextmanager
def _progress(total: int) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on a terminal for large lists; nothing otherwise."""
    if total < _PROGRESS_MIN_KEYS or not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=total, label="matching", file=sys.stderr) as bar:
        yield bar.update


def _load_encounters(settings: Settings, lists: Sequence[LoadedList]) -> list[Encounter]:
    span = pipeline.encounter_span(lists)
    if span is None:
        return []
    protocols = {x.protocol for x in lists if x.keys}
    protocol = protocols.pop() if len(protocols) == 1 else None

    async def read() -> list[Encounter]:
        async with await Store.open(settings.store) as store:
            return await store.encounters(span[0], span[1], protocol)

    return asyncio.run(read())


def _match_and_record(settings: Settings, lists: Sequence[LoadedList]
                      ) -> tuple[list[Exposure], list[Exposure]]:
    """All exposures of ``lists`` and those new to the store (alerted once)."""
    encounters = _load_encounters(settings, lists)
    total = sum(len(x.keys) for x in lists)
    with _progress(total) as progress:
        found = pipeline.match_lists(lists, encounters, progress=progress)
    found = pipeline.without_revoked(found, lists)

    async def save() -> list[Exposure]:
        async with await Store.open(settings.store) as store:
            return await pipeline.record(store, lists, found)

    new = asyncio.run(save())
    pipeline.alert(new, settings.lists)
    return found, new


def _warn_unverified() -> None:
    click.secho("WARNING: --no-verify: GAEN exports are NOT checked against the health "
                "authority's signature; anyone could have written these keys.",
                err=True, fg="red", bold=True)


# -- bzlogger match ----------------------------------------------------------------------


@click.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...",
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--verify-key", type=click.Path(dir_okay=False, path_type=Path), metavar="PEM",
              help="Check signatures with this public key instead of the configured ones.")
@click.option("--no-verify", is_flag=True,
              help="Accept GAEN exports without a valid signature (warns loudly).")
@format_option()
@pass_context
def match(ctx: CliContext, files: tuple[Path, ...], verify_key: Path | None, no_verify: bool,
          fmt: str) -> None:
    """Match published infected lists against the store.

    FILE is a Bluezone list (JSON) or a GAEN export.zip, told apart by content. A GAEN
    export must verify against [gaen] verification_keys (or --verify-key). A Bluezone
    list is verified when FILE.sig (a detached signature) exists. New exposures are
    saved and alerted once ([lists] alert_command). Risk is documented in docs/matching.md.

    \b
    bzlogger match published.json export.zip
    bzlogger match --verify-key authority.pem export.zip --json
    """
    settings = ctx.settings()
    if no_verify:
        _warn_unverified()
    trust = pipeline.trust_from(settings.gaen.verification_keys, settings.lists, verify_key,
                                no_verify)
    limits = _limits(settings)
    lists = []
    for path in files:
        data = read_bounded(path, limits.max_file_bytes)
        signature_path = path.with_name(path.name + ".sig")
        signature = (read_bounded(signature_path, 64 << 10, "signature")
                     if signature_path.is_file() else None)
        lists.append(pipeline.load_list(data, str(path), limits, trust, signature))
    found, new = _match_and_record(settings, lists)
    summary = [{"file": x.name, "protocol": str(x.protocol), "keys": x.key_count,
                "verified": x.verified} for x in lists]
    rows = [pipeline.exposure_row(x) for x in found]
    if fmt == "json":
        click.echo(json.dumps({"lists": summary, "exposures": rows}, indent=2))
    elif fmt == "csv":
        click.echo(to_csv(rows, list(rows[0]) if rows else list(_csv_columns())), nl=False)
    else:
        click.echo(table(summary))
        click.echo()
        if rows:
            click.echo(table([{**r, "risk": f"{r['risk']:.2f}"} for r in rows], _TABLE_COLUMNS))
            click.echo(f"\n{len(found)} exposure(s), {len(new)} new. Risk: 0..1, 0.5 = "
                       "15 minutes close (docs/matching.md).")
        else:
            click.echo("no exposures: none of these keys was seen at this kiosk")


def _csv_columns() -> Sequence[str]:
    return ("protocol", "id", "list_key", "first_seen", "last_seen", "duration_s", "samples",
            "rssi_max", "rssi_median", "attenuation_db", "risk")


# -- bzlogger keys export ----------------------------------------------------------------


@click.group()
def keys() -> None:
    """The kiosk's own keys."""


@keys.command("export")
@click.option("--format", "fmt", type=click.Choice(["bluezone", "gaen"]), required=True,
              help="bluezone: a published-list JSON; gaen: an unsigned export.zip.")
@click.option("--since", metavar="ISO", help="First day to export (default: all kept).")
@click.option("--until", metavar="ISO", help="Last day to export (default: today).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE", help="Write here instead of standard output.")
@pass_context
def export(ctx: CliContext, fmt: str, since: str | None, until: str | None,
           output: Path | None) -> None:
    """Export the kiosk's own keys so the health authority can warn its visitors.

    Give the file to the authority when the venue must be announced (e.g. a positive
    case visited it): once published, every phone that recorded the kiosk finds the
    match. Bluezone: one entry per day, each day its own random daily key. GAEN: an
    export.zip with export.bin only (no export.sig: the authority signs what it
    publishes).

    \b
    bzlogger keys export --format bluezone --since 2026-11-20 -o kiosk.json
    bzlogger keys export --format gaen --since 2026-11-20 -o kiosk-export.zip
    """
    settings = ctx.settings()
    first = parse_iso(since) if since else None
    last = parse_iso(until) if until else None
    if first is not None and last is not None and last < first:
        raise click.BadParameter("is before --since", param_hint="--until")

    async def read() -> list[DayKeys]:
        async with await Store.open(settings.store) as store:
            return await store.own_keys(first, last)

    if fmt not in settings.ble.advertise:
        click.secho(f"warning: the kiosk does not advertise {fmt} ([ble] advertise = "
                    f"{settings.ble.advertise}): no phone can have recorded these keys",
                    err=True, fg="yellow")
    days = asyncio.run(read())
    if not days:
        raise OperationalError("the store holds no keys of the kiosk for these days; is the "
                               "daemon advertising ([ble] advertise)?")
    if fmt == "bluezone":
        data = bluezone_list.write_list(bluezone_entries(days, settings.ble.bluezone_max)
                                        ).encode()
    else:
        data = gaen_export.write_export(
            gaen_keys(days), start_timestamp=days[0].day_start,
            end_timestamp=days[-1].day_start + bluezone.DAY_SECONDS)
    if output is None:
        if fmt == "gaen" and sys.stdout.isatty():
            raise click.UsageError("a GAEN export is binary: give -o FILE")
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        output.write_bytes(data)
        click.echo(f"wrote {len(days)} day(s) of {fmt} keys to {output}", err=True)
    log.info("own keys exported", format=fmt, days=len(days),
             first_day=iso(days[0].day_start), last_day=iso(days[-1].day_start))


def bluezone_entries(days: Sequence[DayKeys], max_ids: int) -> list[bluezone_list.BluezoneEntry]:
    """One published-list entry per day of the kiosk's own Bluezone keys."""
    return [bluezone_list.BluezoneEntry(d.bluezone_key, d.day_start,
                                        d.day_start + bluezone.DAY_SECONDS - 1, max_ids)
            for d in days]


def gaen_keys(days: Sequence[DayKeys]) -> list[gaen_export.ExportKey]:
    """One TEK per day of the kiosk's own GAEN keys, valid for the whole day."""
    return [gaen_export.ExportKey(d.gaen_tek, gaen.interval_number(d.day_start),
                                  gaen.DEFAULT_ROLLING_PERIOD, _VENUE_TRANSMISSION_RISK,
                                  _VENUE_REPORT_TYPE)
            for d in days]


# -- bzlogger lists fetch ----------------------------------------------------------------


@click.group("lists")
def lists_group() -> None:
    """Published infected lists: fetch and match the configured sources."""


@lists_group.command("fetch")
@format_option()
@pass_context
def fetch_cmd(ctx: CliContext, fmt: str) -> None:
    """Download what is new from [lists] sources, verify, match and record it.

    Run by bzlogger-fetch.timer. Files already processed are skipped (remembered in the
    store). A source that fails is reported and the others still run; the exit status is
    1 if any failed.
    """
    settings = ctx.settings()
    if not settings.lists.sources:
        raise OperationalError("no [lists] sources are configured; add one per published "
                               "list (url, protocol)")
    trust = pipeline.trust_from(settings.gaen.verification_keys, settings.lists)
    limits = _limits(settings)
    rows: list[dict[str, Any]] = []
    failures = 0
    for source in settings.lists.sources:
        try:
            found = fetch.items(source, limits.max_file_bytes)
        except ListError as error:
            failures += 1
            log.error("list source failed", source=source.url, error=str(error))
            rows.append(_row(source.url, source.protocol, status=f"failed: {error}"))
            continue
        for item in found:
            try:
                rows.append(_fetch_one(settings, item, limits, trust))
            except (ListError, OperationalError) as error:
                failures += 1
                log.error("list failed", file=item.url, error=str(error))
                rows.append(_row(item.url, item.protocol, status=f"failed: {error}"))
    emit(rows, fmt, ("file", "protocol", "keys", "verified", "exposures", "new", "status"))
    if failures:
        raise OperationalError(f"{failures} list(s) could not be processed (see above); "
                               "the others were recorded")


def _row(url: str, protocol: str, *, keys: int | None = None, verified: bool | None = None,
         exposures: int | None = None, new: int | None = None, status: str = "") -> dict[str, Any]:
    return {"file": url, "protocol": protocol, "keys": keys, "verified": verified,
            "exposures": exposures, "new": new, "status": status}


def _fetch_one(settings: Settings, item: fetch.Item, limits: Limits,
               trust: pipeline.Trust) -> dict[str, Any]:
    """Fetch, verify, match and record one list; a row for the summary."""

    async def seen(key: bytes) -> bool:
        async with await Store.open(settings.store) as store:
            return await store.is_list_processed(key)

    async def remember(key: bytes) -> None:
        async with await Store.open(settings.store) as store:
            await store.mark_list_processed(key, item.url)

    if item.from_index and asyncio.run(seen(item.memory_key)):
        return _row(item.url, item.protocol, status="already processed")
    # A list republished at the same URL: skip the download when its version (ETag,
    # Last-Modified, size) was processed before.
    version = None if item.from_index else fetch.version(item.url)
    if version is not None and asyncio.run(seen(item.version_key(version))):
        return _row(item.url, item.protocol, status="not modified")
    data = fetch.fetch(item.url, limits.max_file_bytes)
    signature = fetch.fetch(item.signature_url, 64 << 10) if item.signature_url else None
    loaded = pipeline.load_list(data, item.url, limits, trust, signature)
    if loaded.protocol.value != item.protocol:
        raise ListError(f"{item.url}: configured as {item.protocol} but it is a "
                        f"{loaded.protocol} list")
    if asyncio.run(seen(loaded.digest)):
        status, found, new = "already processed", None, None
    else:
        status, (found, new) = "processed", _match_and_record(settings, [loaded])
    if item.from_index:
        asyncio.run(remember(item.memory_key))
    elif version is not None:
        asyncio.run(remember(item.version_key(version)))
    return _row(item.url, item.protocol, keys=loaded.key_count, verified=loaded.verified,
                exposures=None if found is None else len(found),
                new=None if new is None else len(new), status=status)

