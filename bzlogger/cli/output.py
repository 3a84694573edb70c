"""Rendering rows for operators: an aligned table by default, or JSON, or CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import click

F = TypeVar("F")


def emit(rows: Sequence[Mapping[str, Any]], fmt: str, columns: Sequence[str] | None = None,
         *, empty: str = "nothing to show") -> None:
    """Print ``rows`` as ``table``, ``json`` or ``csv``."""
    if fmt == "json":
        click.echo(json.dumps(list(rows), indent=2))
    elif fmt == "csv":
        click.echo(to_csv(rows, columns), nl=False)
    elif not rows:
        click.echo(empty)
    else:
        click.echo(table(rows, columns))


def to_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """CSV text with a header line."""
    rows = list(rows)
    names = list(columns or (rows[0].keys() if rows else []))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in names})
    return buffer.getvalue()


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A left-aligned text table with a header."""
    names = list(columns or rows[0].keys())
    cells = [[_cell(row.get(name)) for name in names] for row in rows]
    widths = [max(len(name), *(len(r[i]) for r in cells)) for i, name in enumerate(names)]
    lines = ["  ".join(n.upper().ljust(w) for n, w in zip(names, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def format_option(*, csv_allowed: bool = True) -> Callable[[F], F]:
    """``--json`` / ``--csv`` flags folded into one ``fmt`` parameter."""
    choices = [("--json", "json")] + ([("--csv", "csv")] if csv_allowed else [])

    def decorate(function: Any) -> Any:  # click's decorators are untyped
        for flag, value in reversed(choices):
            function = click.option(flag, "fmt", flag_value=value,
                                    help=f"Print {value.upper()} instead of a table.")(function)
        return click.option("--table", "fmt", flag_value="table", default=True, hidden=True)(
            function)

    return decorate
