"""``mie demo``: every supported authenticator end to end on emulators, in process."""

from __future__ import annotations

import click

from mie._cli.output import emit_json
from mie._cli.state import CliState
from mie.cards.demo import DemoSession
from mie.emulation.iso7816 import DEMO_PIN, demo_card


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def demo(state: CliState, as_json: bool) -> int:
    """Run the emulated cards end to end, in process: no hardware, no daemon."""
    state.kind = "iso7816"
    with state.open_emulated(demo_card()) as connection:
        report = DemoSession(connection).run(DEMO_PIN)
    result = {
        "card": "iso7816",
        "serial": report.serial,
        "public_file_bytes": report.public_size,
        "pin_tries_before_verify": report.pin_status.tries_left,
        "holder_after_verify": report.holder,
    }
    if as_json:
        emit_json({"results": [result]})
    else:
        click.echo("Generic ISO 7816 card (emulated, in process):")
        click.echo(f"  serial {report.serial}, public file {report.public_size} bytes read")
        click.echo(f"  PIN status: {report.pin_status.tries_left} tries left; PIN verified")
        click.echo(f"  holder (readable after PIN): {report.holder}")
    return 0
