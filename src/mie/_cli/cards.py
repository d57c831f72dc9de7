"""``mie readers`` and ``mie info``."""

from __future__ import annotations

from typing import Any

import click

from mie._cli.options import Seconds
from mie._cli.output import emit_json, emit_table, json_option
from mie._cli.state import CliState, require_pcsc
from mie.core.atr import Atr
from mie.core.connection import SmartCardConnection
from mie.core.errors import ApduFormatError, NoCardError, TransportTimeoutError
from mie.registry import authenticator_for


@click.command()
@json_option()
@click.option(
    "--wait",
    "wait_seconds",
    type=Seconds(zero_ok=True, maximum=600),
    help="First wait up to SECONDS (at most 600) for a card in some reader (exit 1 if none comes).",
)
def readers(as_json: bool, wait_seconds: float | None) -> int:
    """List PC/SC readers, card presence and ATR."""
    require_pcsc()
    from mie.transport.pcsc import list_readers, wait_for_any_card

    if wait_seconds is not None:
        try:
            wait_for_any_card(wait_seconds)
        except TransportTimeoutError as e:
            raise NoCardError(str(e)) from e
    found = list_readers()
    if as_json:
        emit_json(
            {
                "readers": [
                    {
                        "name": r.name,
                        "card_present": r.card_present,
                        "atr": r.atr.hex() if r.atr else None,
                    }
                    for r in found
                ]
            }
        )
    elif not found:
        click.echo("No PC/SC reader.")
    else:
        rows = [
            (r.name, "yes" if r.card_present else "no", r.atr.hex() if r.atr else "-")
            for r in found
        ]
        emit_table(rows, ("READER", "CARD", "ATR"))
    return 0


def _protocols(atr: bytes) -> list[str]:
    try:
        return [f"T={p}" for p in Atr.parse(atr).protocols]
    except ApduFormatError:
        return []


def _describe(connection: SmartCardConnection, state: CliState) -> dict[str, Any]:
    """The flat fields of ``mie info`` (kind, serial, ATR, transport, protocols), then the
    ``authenticator`` and ``identity`` objects of the ``Identification`` that ``mie auth`` nests
    too (``null`` when absent), and ``error``."""
    authenticator = authenticator_for(connection)
    identification = authenticator.identify()
    card = identification.authenticator
    state.kind = card.kind
    atr = connection.atr or b""
    return {
        "kind": card.kind,
        "serial": card.serial,
        "atr": atr.hex(),
        "transport": connection.transport.value,
        "protocols": _protocols(atr),
        **identification.to_json(),
        "error": None,
    }


# The text shows the flat fields once; the nested authenticator object repeats them.
_NOT_IN_TEXT = frozenset({"authenticator", "error"})


def _print_text(described: dict[str, Any]) -> None:
    for key, value in described.items():
        if key in _NOT_IN_TEXT:
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items() if v is not None)
        shown = ", ".join(value) if isinstance(value, list) else value
        click.echo(f"{key}: {shown if shown is not None else '-'}")


@click.command()
@click.option(
    "--reader", "-r", help="Reader name or a unique part of it (default: first with a card)."
)
@json_option()
@click.pass_obj
def info(state: CliState, reader: str | None, as_json: bool) -> int:
    """Identify the card in a reader (kind, serial), without PIN."""
    with state.open_reader(reader) as connection:
        described = _describe(connection, state)
    if as_json:
        emit_json(described)
    else:
        _print_text(described)
    return 0
