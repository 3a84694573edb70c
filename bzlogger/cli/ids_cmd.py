"""``bzlogger ids derive``: identifiers of consecutive slots from a key."""

from __future__ import annotations

import click

from bzlogger.cli.output import emit, format_option
from bzlogger.ids import bluezone, gaen
from bzlogger.timefmt import iso


@click.group()
def ids() -> None:
    """Identifier schemes: derive the IDs a key produces."""


@ids.command()
@click.option("--protocol", type=click.Choice(["bluezone", "gaen"]), required=True)
@click.option("--key", "key_hex", required=True, metavar="HEX",
              help="Bluezone daily key (64 hex digits) or GAEN TEK (32 hex digits).")
@click.option("--start", required=True, type=int, metavar="N",
              help="Bluezone: the key's day as a Unix UTC midnight. GAEN: an interval number.")
@click.option("--max", "max_ids", type=int, default=bluezone.DEFAULT_MAX, show_default=True,
              help="Bluezone IDs per day.")
@click.option("--count", type=click.IntRange(min=1, max=100_000), default=None,
              help="Slots to derive [default: max for Bluezone, 144 for GAEN].")
@click.option("--metadata", "metadata_hex", metavar="HEX",
              help="GAEN: 4 bytes of BLE metadata; adds the AEM of each slot.")
@format_option(csv_allowed=True)
def derive(protocol: str, key_hex: str, start: int, max_ids: int, count: int | None,
           metadata_hex: str | None, fmt: str) -> None:
    """Print the identifiers of consecutive slots.

    \b
    bzlogger ids derive --protocol bluezone --key 4E37...62C1 --start 1763769600 --json
    bzlogger ids derive --protocol gaen --key 75c7...3125 --start 2642976 --metadata 40080000
    """
    key = _hex(key_hex, "--key", bluezone.KEY_LENGTH if protocol == "bluezone"
               else gaen.KEY_LENGTH)
    rows: list[dict[str, object]]
    if protocol == "bluezone":
        if metadata_hex is not None:
            raise click.UsageError("--metadata applies to --protocol gaen only")
        try:
            bluezone.validate_max(max_ids)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--max") from None
        if start % bluezone.DAY_SECONDS:
            raise click.BadParameter("must be a Unix time at UTC midnight (a multiple of 86400)",
                                     param_hint="--start")
        rows = [
            {"index": s.index, "start": iso(s.start), "end": iso(s.end),
             "id": s.identifier.hex().upper()}
            for s in bluezone.iter_slots(key, start, max_ids, count or max_ids)
        ]
    else:
        if start < 0:
            raise click.BadParameter("must be a non-negative interval number",
                                     param_hint="--start")
        metadata = _hex(metadata_hex, "--metadata", gaen.AEM_LENGTH) if metadata_hex else None
        rows = []
        for slot in gaen.iter_slots(key, start, count or gaen.DEFAULT_ROLLING_PERIOD, metadata):
            row: dict[str, object] = {"index": slot.index, "start": iso(slot.start),
                                      "end": iso(slot.end), "id": slot.rpi.hex()}
            if slot.aem is not None:
                row["aem"] = slot.aem.hex()
            rows.append(row)
    emit(rows, fmt)


def _hex(text: str, option: str, length: int) -> bytes:
    try:
        value = bytes.fromhex(text.strip())
    except ValueError:
        raise click.BadParameter("is not hexadecimal", param_hint=option) from None
    if len(value) != length:
        raise click.BadParameter(f"must be {length} bytes ({2 * length} hex digits), "
                                 f"got {len(value)}", param_hint=option)
    return value


