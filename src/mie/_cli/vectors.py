"""``mie record`` / ``mie replay``: run a ``mie`` command, its card session recorded or replayed."""

from __future__ import annotations

from pathlib import Path

import click

from mie._cli.output import warn
from mie._cli.state import CliState, UsageError
from mie.transport.replay import ReplayConnection, load_vector


def _run(args: list[str], state: CliState) -> int:
    from mie._cli.__main__ import cli

    if args and args[0] in ("record", "replay"):
        raise UsageError(f"'mie {args[0]}' cannot run inside record or replay")
    result = cli.main(args=args, prog_name="mie", standalone_mode=False, obj=state)
    return result if isinstance(result, int) else 0


@click.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, writable=True),
    help="Vector file to write.",
)
@click.option("--description", "-d", help="What the session does (default: the command).")
@click.argument("args", nargs=-1, required=True, type=click.UNPROCESSED)
def record(out: str, description: str | None, args: tuple[str, ...]) -> int:
    """Run `mie ARGS...` and record its card session to a vector file (PINs masked).

    Example: mie record --out v.json -- info --reader "Virtual PCD 00 00"
    """
    if not Path(out).resolve().parent.is_dir():
        raise UsageError(f"Cannot write {out!r}: its directory does not exist")
    state = CliState(record=True)
    try:
        code = _run(list(args), state)
    finally:
        _save(state, out, description or f"mie {' '.join(args)}", list(args))
    return code


def _save(state: CliState, out: str, description: str, args: list[str]) -> None:
    if not state.recorders:
        warn("Nothing recorded: the command opened no card connection.")
        return
    if len(state.recorders) > 1:
        raise UsageError(
            f"The command opened {len(state.recorders)} card sessions; a vector holds one "
            "(for mie demo, pick one card with --only)"
        )
    vector = state.recorders[0].vector(description, state.source, state.kind)
    vector.command = args
    vector.random = dict(state.random)
    vector.save(out)
    warn(f"Recorded {len(vector.exchanges)} exchanges to {out}")


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("vector_file", type=click.Path(dir_okay=False))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def replay(vector_file: str, args: tuple[str, ...]) -> int:
    """Replay VECTOR_FILE: run its recorded command (or `mie ARGS...`) against the recording.

    The first command that differs from the recording fails (exit 1), as does a recording left
    unfinished.
    """
    vector = load_vector(vector_file)
    command = list(args) or vector.command
    if not command:
        raise UsageError(f"{vector_file}: no recorded command; give one after --")
    connection = ReplayConnection(vector)
    code = _run(command, CliState(replay=connection))
    connection.assert_complete()
    warn(f"Replayed {connection.position} exchanges from {vector_file}: all matched")
    return code
