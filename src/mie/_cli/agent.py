"""``mie agent``: the workstation side of a badge session driven by the IAM (issue 9, item 6).

The IAM gives the workstation a session URL (``wss://iam.example/relay/<session>``);
``mie agent --connect URL`` opens it, refuses a hello that is not for that session or not from
``--origin``, checks the card in the reader is a DESFire badge, and forwards the IAM's commands
to it, refusing any outside the allow-list (:mod:`mie.relay.policy`). It holds no key: the IAM
authenticates the badge with the keys in its HSM. When the IAM asks for the second-factor PIN,
the agent prompts for it on the terminal (or reads the first line of stdin with
``--pin-stdin``).

Exit 0 when the IAM says the authentication is valid; 1 when it says it failed, or the relay
failed or refused (the one line on stderr names why); 2 on bad usage.

``mie agent`` loads no key provider, no DESFire crypto and no authenticator: the ``mie`` entry
point runs it through :func:`main`, without the rest of the command group.
"""

from __future__ import annotations

import logging
import sys
from typing import Any
from urllib.parse import urlsplit

import click

from mie._cli.output import emit_json, json_option
from mie._cli.state import CliState, UsageError
from mie.core.errors import (
    ErrorCode,
    MieError,
    NoReaderError,
    PcscUnavailableError,
    PinFormatError,
)
from mie.request import UserVerification, check_origin
from mie.result import AuthResult, ErrorInfo

INTERRUPTED = 130
CONNECT_TIMEOUT = 10.0
MAX_STDIN_PIN = 66
"""The most of stdin read for a PIN: the relay's 64 characters, CR LF (more is refused)."""

# What the command line named cannot be used: exit 2 (as for every mie command).
_UNUSABLE = (UsageError, NoReaderError, PcscUnavailableError, PinFormatError)

logger = logging.getLogger("mie")


class AgentPin(UserVerification):
    """Asks the user for the second-factor PIN the IAM requests: the first line of stdin with
    ``--pin-stdin``, else a prompt on the terminal naming the IAM.

    :param from_stdin: read the PIN from standard input.
    :param origin: the IAM asking, shown in the prompt.
    :param host: the host the PIN is sent to (the relay URL's), shown when it is not the
        origin's: ``--origin`` is only what the IAM's hello must say, not where the PIN goes.
    """

    def __init__(self, from_stdin: bool, origin: str, host: str | None = None) -> None:
        self.from_stdin = from_stdin
        self.origin = origin
        self.host = host

    def request_pin(self, tries_left: int | None) -> str:
        """:return: the PIN typed or piped.

        :raises UsageError: no ``--pin-stdin`` and standard input is not a terminal.
        """
        if self.from_stdin:
            # Bounded: a longer line is refused by the agent, never read whole into memory.
            return sys.stdin.readline(MAX_STDIN_PIN).rstrip("\r\n")
        if not sys.stdin.isatty():
            raise UsageError("No PIN: pass --pin-stdin and write the PIN on standard input")
        tries = "" if tries_left is None else f" ({tries_left} tries left)"
        host = self.host
        sent = "" if host is None or urlsplit(self.origin).hostname == host else f", sent to {host}"
        prompt = f"PIN for {self.origin}{sent}{tries}"
        pin: str = click.prompt(prompt, hide_input=True, err=True)
        return pin


def require_relay() -> None:
    """Import the relay's WebSocket library before the command uses it.

    :raises UsageError: ``websockets`` is not installed (the message says how to install it).
    """
    try:
        import websockets.sync.client  # noqa: F401
    except ImportError as e:
        raise UsageError(f"The relay needs websockets: pip install 'mie[relay]' ({e})") from e


def expected_origin(url: str, origin: str | None) -> str:
    """:return: the origin the IAM's hello must carry: ``--origin``, else the ``wss://`` URL's.

    :raises UsageError: a malformed origin, or none with a ``ws://`` URL.
    """
    from mie.relay.agent import origin_of, session_of

    if origin is not None:
        try:
            return check_origin(origin)
        except ValueError as e:
            raise UsageError(f"--origin: {e}") from e
    if url.startswith("ws://"):
        raise UsageError("--origin is required with a ws:// URL")
    try:
        session_of(url)  # the URL's own fault first (scheme, port, path)
        return origin_of(url)
    except ValueError as e:
        raise UsageError(f"--connect: {e}") from e


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--connect",
    "url",
    required=True,
    metavar="URL",
    help="The session URL the IAM gave: wss://HOST[:PORT]/…/relay/SESSION.",
)
@click.option(
    "--origin",
    metavar="URI",
    help="The IAM's origin, https://host[:port]; a session for another is refused "
    "(default: the wss:// URL's; required with ws://).",
)
@click.option("--reader", "-r", help="Reader name or a unique part of it.")
@click.option(
    "--timeout",
    type=click.FloatRange(0, 600, min_open=True),
    default=CONNECT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for the IAM to take the connection and open the session.",
)
@click.option("--pin-stdin", is_flag=True, help="Read the PIN from the first line of stdin.")
@json_option("Print the IAM's AuthResult (without evidence) as JSON.")
@click.pass_obj
def agent(
    state: CliState,
    url: str,
    origin: str | None,
    reader: str | None,
    timeout: float,
    pin_stdin: bool,
    as_json: bool,
) -> int:
    """Relay a badge session the IAM drives: forward its DESFire reads and authentications to
    the badge in the reader, nothing else; the keys stay at the IAM."""
    require_relay()
    from mie.relay.agent import Agent, AgentTimeouts

    expected = expected_origin(url, origin)
    try:
        relay = Agent(
            url,
            origin=expected,
            reader=reader,
            open_connection=state.open_reader,
            pin_prompt=AgentPin(pin_stdin, expected, _host(url)),
            timeouts=AgentTimeouts(connect=timeout),
        )
    except ValueError as e:
        raise UsageError(f"--connect: {e}") from e
    try:
        result = relay.run()
    except _UNUSABLE:
        raise
    except MieError as e:
        info = ErrorInfo(e.code, str(e)) if e.code else ErrorInfo(ErrorCode.READER_ERROR, str(e))
        return _failed(AuthResult(False, info), as_json)
    if not result.valid:
        return _failed(result, as_json)
    _print_valid(result, expected, as_json)
    return 0


def _host(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _failed(result: AuthResult, as_json: bool) -> int:
    if as_json:
        emit_json(result.to_json())
    assert result.error is not None  # noqa: S101 - a failed result has its error
    click.echo(f"mie: error: {_one_line(f'{result.error.code}: {result.error.message}')}", err=True)
    return 1


def _print_valid(result: AuthResult, origin: str, as_json: bool) -> None:
    if as_json:
        emit_json(result.to_json())
        return
    card = result.authenticator
    shown = f"{card.kind} {card.serial or '(serial not read)'}" if card else "badge"
    click.echo(f"Authenticated by {origin}: {_one_line(shown)}")
    if result.identity is not None:
        identity = result.identity
        names = " ".join(n for n in (identity.given_name, identity.family_name) if n)
        who = f"{identity.id_type} {identity.id}"
        click.echo("  " + _one_line(f"{names} ({who})" if names else who))
    click.echo(f"  level: {result.level.value if result.level else 'not established'}")
    for reason in result.reasons:
        click.echo(f"  - {_one_line(reason)}")


def _one_line(message: str) -> str:
    return " ".join(_printable(message).split())


def _printable(text: str) -> str:
    """:return: ``text`` with each control character shown as U+FFFD: what the IAM sent is
    printed on the user's terminal, where an escape sequence would drive it."""
    return "".join(c if c.isprintable() or c in " \n" else "\ufffd" for c in text)


def main(args: list[str], state: CliState | None = None) -> int:
    """Run ``mie agent ARGS`` without the rest of the command group (the ``mie`` entry point
    calls it for ``mie agent``), with the exit-code contract of :func:`mie._cli.app.run`.

    :param args: the arguments after ``agent``.
    :param state: how the card connection is opened (default: a fresh :class:`CliState`).
    :return: the exit code.
    """
    state = state if state is not None else CliState()
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    terminal = _terminal_state()
    try:
        return _main(args, state)
    finally:
        # A PIN prompt that timed out or was interrupted is still blocked on its thread with
        # echo off: the shell gets its terminal back as it was.
        _restore_terminal(terminal)


def _terminal_state() -> Any:
    try:
        import termios

        return termios.tcgetattr(sys.stdin.fileno()) if sys.stdin.isatty() else None
    except (ImportError, OSError, ValueError, AttributeError):
        return None


def _restore_terminal(saved: Any) -> None:
    if saved is None:
        return
    try:
        import termios

        termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
    except (ImportError, OSError, ValueError, AttributeError):
        pass


def _main(args: list[str], state: CliState) -> int:
    try:
        result = agent.main(args=args, prog_name="mie agent", standalone_mode=False, obj=state)
    except KeyboardInterrupt:
        return INTERRUPTED
    except click.exceptions.Abort:
        return INTERRUPTED if _interrupted() else _usage(state, args, "aborted (end of input)")
    except click.UsageError as e:
        return _usage(state, args, f"agent: {e.format_message()}")
    except click.ClickException as e:
        return _usage(state, args, e.format_message())
    except (MieError, ImportError, ValueError, OSError) as e:
        code = e.code if isinstance(e, MieError) and e.code else ErrorCode.USAGE
        return _usage(state, args, str(e), code)
    return result if isinstance(result, int) else 0


def _interrupted() -> bool:
    error: BaseException | None = sys.exc_info()[1]
    while error is not None:
        if isinstance(error, KeyboardInterrupt):
            return True
        error = error.__cause__ or error.__context__
    return False


def _usage(state: CliState, args: list[str], message: str, code: Any = ErrorCode.USAGE) -> int:
    if (state.output.requested or "--json" in args) and not state.output.emitted:
        emit_json({"error": {"code": str(code), "message": _one_line(message)}})
    click.echo(f"mie: error: {_one_line(message)}", err=True)
    return 2
