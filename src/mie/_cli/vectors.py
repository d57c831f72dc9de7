"""``mie record`` / ``mie replay``: run a ``mie`` command, its card session recorded or replayed.

Vectors are made to be shared, so the command a vector names is data, not an order: a replay
runs only the card-session commands (``info``, ``auth``, ``demo``) with options that change
nothing on the machine, and its CRL cache only reads (:meth:`CliState.crl_cache`). Options
naming local files (``--trust``...) are taken only from the replaying user's own command line.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from mie._cli.output import warn
from mie._cli.state import CliState, UsageError
from mie.core.errors import MieError
from mie.transport.replay import ReplayConnection, load_vector

# Every option of the card-session commands, as typed. None of them writes a file, the trust
# store or the CRL cache; a new option is replayable only once it is added here
# (tests/unit/test_cli.py checks that every option is in this table or refused on purpose).
REPLAYABLE: dict[str, frozenset[str]] = {
    "info": frozenset({"--reader", "-r", "--json"}),
    "auth": frozenset(
        {
            "--reader",
            "-r",
            "--pin-stdin",
            "--allow-last-try",
            "--nonce",
            "--challenge",
            "--origin",
            "--trust",
            "--intermediate",
            "--crl",
            "--revocation",
            "--at",
            "--timeout",
            "--badge-config",
            "--fido-policy",
            "--store",
            "--json",
        }
    ),
    "demo": frozenset({"--json", "--only"}),
}
# Options that read files of the machine running the replay: a vector may not name them.
# A FIDO2 policy and credential store too (and mie auth refuses them in a replay: the store
# would be written).
LOCAL_FILE_OPTIONS = frozenset(
    {"--trust", "--intermediate", "--crl", "--badge-config", "--fido-policy", "--store"}
)


def check_replayable(command: list[str], origin: str | None) -> None:
    """Refuse a command that a replay must not run.

    :param command: the ``mie`` arguments to run against the recording.
    :param origin: the vector file the command comes from, or ``None`` when the user typed it.
    :raises UsageError: not a card-session command, or an option outside :data:`REPLAYABLE`
        (or naming local files, when the command comes from the vector).
    """
    where = f"{origin}: its recorded command" if origin else "the command"
    allowed = REPLAYABLE.get(command[0]) if command else None
    if allowed is None:
        shown = shlex.join(command)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise UsageError(
            f"{where} {shown!r} is not a card session: mie replay runs only {', '.join(REPLAYABLE)}"
        )
    for arg in command[1:]:
        if not arg.startswith("-"):
            continue
        option = arg.split("=", 1)[0] if arg.startswith("--") else arg
        if option not in allowed:
            shown = option if len(option) <= 40 else option[:37] + "..."
            raise UsageError(f"{where} has option {shown!r}, which mie replay does not run")
        if origin and option in LOCAL_FILE_OPTIONS:
            raise UsageError(
                f"{where} names local files ({option}); type the command yourself: "
                f"mie replay {shlex.quote(origin)} -- {command[0]} {option} FILE ..."
            )


def _run(args: list[str], state: CliState) -> int:
    from mie._cli.app import cli

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
@click.pass_obj
def record(outer: CliState, out: str, description: str | None, args: tuple[str, ...]) -> int:
    """Run `mie ARGS...` and record its card session to a vector file (PINs masked).

    Example: mie record --out v.json -- info --reader "Virtual PCD 00 00"
    """
    if args[0] not in REPLAYABLE:
        raise UsageError(
            f"mie record records card sessions: {', '.join(REPLAYABLE)}, not {args[0]!r}"
        )
    if not Path(out).resolve().parent.is_dir():
        raise UsageError(f"Cannot write {out!r}: its directory does not exist")
    state = CliState(record=True, output=outer.output)
    description = description or f"mie {' '.join(args)}"
    try:
        code = _run(list(args), state)
    except MieError:
        # The session failed (a wrong PIN, a card refusing): what it sent is still worth keeping.
        _save(state, out, description, list(args))
        raise
    _save(state, out, description, list(args))
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
    vector.save(out)
    warn(f"Recorded {len(vector.exchanges)} exchanges to {out}")


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("vector_file", type=click.Path(dir_okay=False))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def replay(outer: CliState, vector_file: str, args: tuple[str, ...]) -> int:
    """Replay VECTOR_FILE: run its recorded command (or `mie ARGS...`) against the recording.

    Only info, auth and demo run; nothing is downloaded or written (CRLs come from the cache).
    The first command that differs from the recording fails (exit 1), as does a recording left
    unfinished.
    """
    vector = load_vector(vector_file)
    command = list(args) or vector.command
    if not command:
        raise UsageError(f"{vector_file}: no recorded command; give one after --")
    check_replayable(command, None if args else vector_file)
    connection = ReplayConnection(vector)
    code = _run(command, CliState(replay=connection, output=outer.output))
    connection.assert_complete()
    warn(f"Replayed {connection.position} exchanges from {vector_file}: all matched")
    return code
