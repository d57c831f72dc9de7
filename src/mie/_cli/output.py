"""Printing results: JSON on stdout for ``--json``, text otherwise; diagnostics on stderr."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click


def emit_json(obj: Any) -> None:
    """Print one JSON object on stdout."""
    click.echo(json.dumps(obj, indent=2, sort_keys=False))


def emit_table(rows: Sequence[tuple[str, ...]], header: tuple[str, ...]) -> None:
    """Print aligned columns on stdout."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def warn(message: str) -> None:
    """Print a diagnostic line on stderr."""
    click.echo(message, err=True)
