"""Printing results: JSON on stdout for ``--json``, text otherwise; diagnostics on stderr.

A command given ``--json`` (:func:`json_option`) notes it in the invocation's
:class:`JsonOutput`, and :func:`emit_json` notes that something was printed: when the command
then fails with nothing printed yet, :func:`mie._cli.app.run` prints the contract's error
object, ``{"error": {"code": …, "message": …}}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import click

_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass
class JsonOutput:
    """What one invocation did with JSON (shared by a recorded or replayed inner command).

    :param requested: a command was given ``--json``.
    :param emitted: a JSON object was printed on stdout.
    """

    requested: bool = False
    emitted: bool = False


def _current() -> JsonOutput | None:
    ctx = click.get_current_context(silent=True)
    output = getattr(ctx.obj, "output", None) if ctx is not None else None
    return output if isinstance(output, JsonOutput) else None


def _requested(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    output = _current()
    if value and output is not None:
        output.requested = True
    return value


def json_option(help_text: str = "Print JSON.") -> Callable[[_F], _F]:
    """The ``--json`` flag (parameter ``as_json``); eager, so that it is noted even when another
    option of the command is then refused."""
    return click.option(
        "--json", "as_json", is_flag=True, is_eager=True, callback=_requested, help=help_text
    )


def emit_json(obj: Any) -> None:
    """Print one JSON object on stdout."""
    click.echo(json.dumps(obj, indent=2, sort_keys=False))
    output = _current()
    if output is not None:
        output.emitted = True


def emit_table(rows: Sequence[tuple[str, ...]], header: tuple[str, ...]) -> None:
    """Print aligned columns on stdout."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def warn(message: str) -> None:
    """Print a diagnostic line on stderr."""
    click.echo(message, err=True)
