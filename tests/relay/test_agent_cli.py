"""``mie agent`` in process against a RelayServer in the test (the card an emulated badge behind
the CLI state), its exit codes and output, and what a ``mie agent`` process imports."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from mie._cli.__main__ import run
from mie._cli.agent import main
from mie._cli.state import CliState
from mie.core.channel import CommMode
from mie.core.connection import SmartCardConnection, Transport
from mie.core.errors import ErrorCode
from mie.desfire.session import DesfireSession
from mie.emulation.base import EmulatedCard, EmulatedConnection
from mie.emulation.desfire import ATR, EmulatedDesfire
from mie.emulation.iso7816 import demo_card
from mie.policy import AssuranceLevel
from mie.relay.iam import RelayConnection, RelayPin, RelayServer
from mie.relay.protocol import session_id
from mie.request import AuthRequest
from mie.result import AuthenticatorInfo, AuthResult, ErrorInfo
from mie.trust.identity import Identity
from tests.relay.peers import AID, APP_KEYS, ORIGIN, RECORD, UID, badge_state

FORBIDDEN = ("mie.keys", "mie.desfire.crypto", "mie.desfire.authenticator")

IDENTITY = Identity(
    id_nat="810001234565",
    id_type="RPPS",
    id="10001234565",
    given_name="Jeanne",
    family_name="Martin",
    profession_code=None,
    card_type=None,
    test_card=True,
)


class BadgeState(CliState):
    """The CLI state with an emulated card in the reader."""

    def __init__(self, card: EmulatedCard) -> None:
        super().__init__()
        self.card = card
        self.readers: list[str | None] = []

    def open_reader(self, reader: str | None) -> SmartCardConnection:
        self.readers.append(reader)
        return EmulatedConnection(self.card)


Iam = Callable[[RelayConnection], None]


@pytest.fixture
def server() -> Iterator[RelayServer]:
    with RelayServer(apdu_timeout=2.0, pin_timeout=2.0) as relay:
        yield relay


def serve(server: RelayServer, iam: Iam) -> tuple[str, threading.Thread, list[BaseException]]:
    """Expect a session and drive it with ``iam`` on a thread; :return: the URL."""
    pending = server.expect(AuthRequest.new(ORIGIN), timeout=20)
    errors: list[BaseException] = []

    def drive() -> None:
        try:
            iam(pending.connection(10))
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    return pending.url, thread, errors


def valid(connection: RelayConnection) -> None:
    session = DesfireSession(connection)
    session.select_application(AID)
    session.authenticate_ev2_first(1, APP_KEYS[1])
    uid = session.get_card_uid()
    session.authenticate_ev2_non_first(2, APP_KEYS[2])
    assert session.read_data(1, mode=CommMode.FULL) == RECORD
    card = AuthenticatorInfo("desfire", uid.hex().upper(), connection.atr, connection.transport)
    level = AssuranceLevel.LOW
    connection.finish(AuthResult(True, None, card, IDENTITY, level, ("badge alone",)))


def badge() -> BadgeState:
    return BadgeState(EmulatedDesfire(badge_state()))


def test_a_valid_session_exits_0_and_prints_who(
    server: RelayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url, thread, errors = serve(server, valid)
    state = badge()
    assert main(["--connect", url, "--origin", ORIGIN, "-r", "Virtual PCD 00 00"], state) == 0
    thread.join(5)
    assert errors == []
    out = capsys.readouterr()
    assert out.out.splitlines() == [
        f"Authenticated by {ORIGIN}: desfire {UID.hex().upper()}",
        "  Jeanne Martin (RPPS 10001234565)",
        "  level: low",
        "  - badge alone",
    ]
    assert out.err == ""
    assert state.readers == ["Virtual PCD 00 00"]


def test_json_prints_the_iams_result_without_evidence(
    server: RelayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url, thread, errors = serve(server, valid)
    assert main(["--connect", url, "--origin", ORIGIN, "--json"], badge()) == 0
    thread.join(5)
    assert errors == []
    result = json.loads(capsys.readouterr().out)
    assert result["valid"] is True and result["level"] == "low"
    assert result["authenticator"] == {
        "kind": "desfire",
        "serial": UID.hex().upper(),
        "atr": ATR.hex(),
        "transport": Transport.CONTACTLESS.value,
    }
    assert result["identity"]["id_nat"] == "810001234565"
    assert result["evidence"] is None


def test_the_pin_is_read_from_stdin_for_the_iam(
    server: RelayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    def with_pin(connection: RelayConnection) -> None:
        asked.append(RelayPin(connection).request_pin(4))
        valid(connection)

    url, thread, errors = serve(server, with_pin)
    monkeypatch.setattr(sys, "stdin", io.StringIO("2468\nrest\n"))
    assert main(["--connect", url, "--origin", ORIGIN, "--pin-stdin"], badge()) == 0
    thread.join(5)
    assert asked == ["2468"] and errors == []


def test_a_failed_authentication_exits_1_with_its_error(
    server: RelayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    def refused(connection: RelayConnection) -> None:
        DesfireSession(connection).select_application(AID)
        error = ErrorInfo(ErrorCode.KEY_MISMATCH, "The badge refused the reader's key")
        connection.finish(AuthResult(False, error))

    url, thread, _ = serve(server, refused)
    assert main(["--connect", url, "--origin", ORIGIN, "--json"], badge()) == 1
    thread.join(5)
    out = capsys.readouterr()
    assert json.loads(out.out)["error"]["code"] == "key_mismatch"
    assert out.err == "mie: error: key_mismatch: The badge refused the reader's key\n"


def test_a_refused_command_exits_1_naming_it(
    server: RelayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    def verify(connection: RelayConnection) -> None:
        connection.send_and_receive(bytes.fromhex("00200001083132333400000000"))

    url, thread, errors = serve(server, verify)
    assert main(["--connect", url, "--origin", ORIGIN], badge()) == 1
    thread.join(5)
    assert capsys.readouterr().err == (
        "mie: error: relay_refused: Relay refused: VERIFY (INS 20) is never relayed: "
        "it would spend a card's PIN tries\n"
    )
    assert [type(e).__name__ for e in errors] == ["RelayRefusedError"]


def test_a_card_that_is_no_badge_exits_1(
    server: RelayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    pending = server.expect(AuthRequest.new(ORIGIN), timeout=20)
    assert main(["--connect", pending.url, "--origin", ORIGIN], BadgeState(demo_card())) == 1
    assert "not a DESFire badge" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "agent: Missing option '--connect'."),
        (["--connect", "ws://127.0.0.1:9/relay/" + "0" * 32], "--origin is required with a ws://"),
        (["--connect", "http://iam.example/relay/" + "0" * 32], "--connect: The relay URL must be"),
        (
            ["--connect", "wss://iam.example/relay/" + "0" * 31],
            "--connect: The relay URL's session",
        ),
        (["--connect", "wss://iam.example/other", "--origin", ORIGIN], "must end with /relay/"),
        (
            ["--connect", "ws://iam.example/relay/" + "0" * 32, "--origin", ORIGIN],
            "--connect: A ws:// relay URL must name this machine (tests); use wss://",
        ),
        (["--connect", "wss://iam.example/relay/" + "0" * 32, "--origin", "iam"], "--origin:"),
        (["--connect", "wss://iam.example/relay/" + "0" * 32, "--timeout", "0"], "--timeout"),
    ],
)
def test_bad_usage_exits_2_on_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    state = badge()
    assert main(args, state) == 2
    err = capsys.readouterr().err
    assert err.startswith("mie: error: ") and message in err and err.count("\n") == 1
    assert state.readers == []


def test_usage_under_json_prints_the_error_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", "--connect", "ws://127.0.0.1:9/relay/" + "0" * 32], badge()) == 2
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "usage"


def test_the_origin_defaults_to_the_wss_urls(capsys: pytest.CaptureFixture[str]) -> None:
    # Nothing listens there: the relay fails (exit 1), after the origin was accepted.
    url = "wss://127.0.0.1:9/relay/" + session_id(bytes(32))
    assert main(["--connect", url, "--timeout", "2"], badge()) == 1
    assert "reader_error: Cannot open the relay" in capsys.readouterr().err


def test_mie_agent_runs_through_the_entry_point(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["agent", "--help"]) == 0
    assert "--connect URL" in capsys.readouterr().out


def imported(*argv: str) -> list[str]:
    """:return: the modules ``python -X importtime ARGV`` imports."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return [
        line.rsplit("|", 1)[1].strip()
        for line in out.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    ]


def test_a_mie_agent_process_imports_no_key_provider_crypto_or_authenticator() -> None:
    url = "ws://127.0.0.1:9/relay/" + session_id(bytes(32))
    modules = imported("-m", "mie", "agent", "--connect", url, "--origin", ORIGIN, "--timeout", "1")
    # It ran the relay (the agent and its policy loaded) and nothing that holds keys.
    assert {"mie.relay.agent", "mie.relay.policy", "websockets.sync.client"} <= set(modules)
    assert [m for m in modules if m.startswith(FORBIDDEN)] == []
    # The check sees such an import when there is one.
    assert "mie.desfire.crypto" in imported("-c", "import mie.emulation.desfire")


def test_a_bad_port_in_a_wss_url_is_named_as_such(capsys: pytest.CaptureFixture[str]) -> None:
    # Not "--origin is required with a ws:// URL": the URL is wss://, its port is wrong.
    assert main(["--connect", "wss://iam.example:99999/relay/" + "0" * 32], badge()) == 2
    err = capsys.readouterr().err
    assert err == "mie: error: --connect: Port out of range 0-65535\n"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_pin_prompt_names_the_host_the_pin_goes_to(
    server: RelayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --origin is what the hello must say; the PIN goes to the URL's host. A prompt naming only
    # the origin would let a link to another IAM collect the PIN typed "for" this one.
    prompts: list[str] = []

    def prompt(text: str, **kwargs: object) -> str:
        prompts.append(text)
        return "2468"

    def with_pin(connection: RelayConnection) -> None:
        RelayPin(connection).request_pin(3)
        valid(connection)

    monkeypatch.setattr("mie._cli.agent.click.prompt", prompt)
    monkeypatch.setattr(sys, "stdin", _Tty())
    url, thread, errors = serve(server, with_pin)
    assert main(["--connect", url, "--origin", ORIGIN], badge()) == 0
    thread.join(5)
    assert errors == []
    assert prompts == [f"PIN for {ORIGIN}, sent to 127.0.0.1 (3 tries left)"]


def test_a_pin_line_on_stdin_is_read_no_further_than_a_pin(
    server: RelayServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def with_pin(connection: RelayConnection) -> None:
        RelayPin(connection).request_pin(3)

    stdin = io.StringIO("9" * 1_000_000 + "\n")
    monkeypatch.setattr(sys, "stdin", stdin)
    url, thread, _ = serve(server, with_pin)
    assert main(["--connect", url, "--origin", ORIGIN, "--pin-stdin"], badge()) == 1
    thread.join(5)
    assert stdin.tell() <= 66
    assert "the PIN is not 64 printable characters or fewer" in capsys.readouterr().err


_PROMPT_TIMES_OUT = """
import threading
from mie._cli.agent import main
from mie.relay.iam import RelayPin, RelayServer
from mie.request import AuthRequest
from tests.relay.peers import ORIGIN
from tests.relay.test_agent_cli import badge

with RelayServer(pin_timeout=5) as server:
    pending = server.expect(AuthRequest.new(ORIGIN), timeout=2)

    def drive() -> None:
        try:
            RelayPin(pending.connection(5)).request_pin(3)
        except Exception:
            pass

    threading.Thread(target=drive, daemon=True).start()
    print("rc", main(["--connect", pending.url, "--origin", ORIGIN], badge()), flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal is a POSIX thing")
def test_a_pin_prompt_that_times_out_gives_the_terminal_back_with_echo_on() -> None:
    # The prompt runs on a thread (its wait has a deadline) and turns echo off; when the wait
    # runs out the thread is still in it, and the process exits leaving the shell's terminal
    # silent unless the agent restores it.
    import os
    import pty
    import termios
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.chdir(root)
        os.execv(sys.executable, [sys.executable, "-c", _PROMPT_TIMES_OUT])  # noqa: S606
    try:
        assert termios.tcgetattr(fd)[3] & termios.ECHO
        out = b""
        while True:
            try:
                chunk = os.read(fd, 1024)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        os.waitpid(pid, 0)
        text = out.decode(errors="replace")
        assert "PIN for https://iam.example" in text and "No PIN was typed within" in text
        assert "rc 1" in text
        assert termios.tcgetattr(fd)[3] & termios.ECHO, "echo left off"
    finally:
        os.close(fd)


def test_what_the_iam_says_reaches_the_terminal_without_control_characters(
    server: RelayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # The outcome is the IAM's text: an escape sequence in it would drive the user's terminal
    # (clear it, fake a prompt, set the title or the clipboard).
    escape = "\x1b[2J\x1b]52;c;ZXZpbA==\x07"

    def failed(connection: RelayConnection) -> None:
        connection.finish(AuthResult(False, ErrorInfo(ErrorCode.CARD_ERROR, f"no{escape}")))

    def passed(connection: RelayConnection) -> None:
        card = AuthenticatorInfo(f"desfire{escape}", f"04{escape}", None, Transport.CONTACTLESS)
        named = IDENTITY.__class__(**{**IDENTITY.__dict__, "given_name": f"J{escape}"})
        level = AssuranceLevel.LOW
        connection.finish(AuthResult(True, None, card, named, level, (f"badge{escape}",)))

    for iam, code in ((failed, 1), (passed, 0)):
        url, thread, errors = serve(server, iam)
        assert main(["--connect", url, "--origin", ORIGIN], badge()) == code
        thread.join(5)
        assert errors == []
        out, err = capsys.readouterr()
        assert "\x1b" not in out + err and "\x07" not in out + err
        assert ("mie: error: card_error: no" in err) if code else ("badge" in out)
