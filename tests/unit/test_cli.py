from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import io
import json
import logging
import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from mie._cli.__main__ import run
from mie._cli.app import cli
from mie._cli.state import CliState
from mie._cli.vectors import REPLAYABLE
from mie.auth import CpxAuthenticator
from mie.core.connection import SmartCardConnection, Transport
from mie.core.errors import (
    BadResponseError,
    CardRemovedError,
    CardResetError,
    NoCardError,
    ReaderBusyError,
    TransportError,
    TransportTimeoutError,
)
from mie.emulation.base import EmulatedCard, EmulatedConnection
from mie.emulation.cpx import CPS3, build_ias_ecc_card
from mie.emulation.iso7816 import demo_card
from mie.emulation.testpki import TestPki, parse_identity
from mie.transport.replay import RecordingConnection, Vector, load_vector
from mie.trust import CrlCache
from mie.trust.cache import atomic_write
from mie.trust.store import OperatorStore


@pytest.fixture(autouse=True)
def isolated_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI configures the 'mie' logger; give it back as it was after each test."""
    monkeypatch.setenv("MIE_TEST_PKI", str(tmp_path / "testpki"))
    logger = logging.getLogger("mie")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if line.strip()]


def test_demo_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["demo"]) == 0
    out = capsys.readouterr().out
    assert "MIE0000001" in out
    assert "Dr Demo" in out


def test_demo_json_exits_0_with_parseable_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["demo", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert results[0] == {
        "card": "iso7816",
        "serial": "MIE0000001",
        "public_file_bytes": 700,
        "pin_tries_before_verify": 3,
        "holder_after_verify": "Dr Demo",
        "auth": None,
    }
    assert results[1]["card"] == "cps3"
    assert results[1]["auth"]["valid"] is True


def test_unknown_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["no-such-command"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "No such command" in captured.err
    assert "Traceback" not in captured.err


def test_replay_of_a_missing_file_exits_2_with_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["replay", str(tmp_path / "absent.json")]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert lines[0].startswith("mie: error:")
    assert "absent.json" in lines[0]


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"description": "d", "source": "s", "kind": "k", "exchanges": [], "extra": 1}',
        '{"description": "d", "source": "s", "kind": "k", "exchanges": [{"c": "00", "r": "9000"}]}',
    ],
)
def test_replay_of_a_malformed_file_exits_2_with_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    assert run(["replay", str(path)]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert lines[0].startswith("mie: error:")
    assert "bad.json" in lines[0]


def test_record_then_replay_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vector_file = tmp_path / "demo.json"
    assert run(["record", "--out", str(vector_file), "--", "demo", "--only", "iso7816"]) == 0
    recorded = capsys.readouterr()
    vector = load_vector(vector_file)
    assert vector.command == ["demo", "--only", "iso7816"]
    assert vector.source == "emulator"
    assert "31323334" not in vector_file.read_text(encoding="utf-8")

    assert run(["replay", str(vector_file)]) == 0
    replayed = capsys.readouterr()
    assert replayed.out == recorded.out
    assert f"Replayed {len(vector.exchanges)} exchanges" in replayed.err


def test_replay_of_a_changed_command_exits_1_naming_the_exchange(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vector_file = tmp_path / "demo.json"
    assert run(["record", "--out", str(vector_file), "--", "demo", "--only", "iso7816"]) == 0
    capsys.readouterr()
    obj = json.loads(vector_file.read_text(encoding="utf-8"))
    index = next(i for i, e in enumerate(obj["exchanges"]) if e["c"].startswith("00b0"))
    original = obj["exchanges"][index]["c"]
    changed = original[:-2] + f"{int(original[-2:], 16) ^ 0x01:02x}"
    obj["exchanges"][index]["c"] = changed
    vector_file.write_text(json.dumps(obj), encoding="utf-8")

    assert run(["replay", str(vector_file)]) == 1
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert lines[0] == (f"mie: error: Exchange {index}: expected command {changed}, got {original}")


# --- The command-line contract: usage errors, interrupts, missing extras -------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["no-such-command"], "mie: error: No such command 'no-such-command'."),
        ([], "mie: error: missing command (see 'mie --help')"),
        (["trust"], "mie: error: trust: missing command (see 'mie trust --help')"),
        (["replay"], "mie: error: replay: Missing argument 'VECTOR_FILE'."),
        (["info", "--no-such-option"], "mie: error: info: No such option '--no-such-option'"),
        (
            ["auth", "--revocation", "x"],
            "mie: error: auth: Invalid value for '--revocation': 'x' is not one of 'hard', 'soft'.",
        ),
        (["--log-level", "loud", "demo"], "mie: error: Invalid value for '--log-level': "),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert run(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = error_lines(captured.err)
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(message)


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["replay", "--help"], ["trust", "-h"]])
def test_help_still_prints_and_exits_0(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert run(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("Usage: mie")
    assert captured.err == ""


@pytest.mark.parametrize("argv", [["readers"], ["info"], ["auth", "--pin-stdin"]])
def test_missing_pyscard_is_a_one_line_install_hint(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    # As on a machine without the pcsc extra: `import smartcard` fails.
    monkeypatch.setitem(sys.modules, "smartcard", None)
    monkeypatch.delitem(sys.modules, "mie.transport.pcsc", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO("1234\n"))
    assert run(argv) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert lines[0].startswith("mie: error: PC/SC needs pyscard: pip install 'mie[pcsc]'")
    assert "internal error" not in lines[0]


# Delays the first import of `cryptography` (the first heavy import of the CLI) and says so on
# stderr: the test interrupts the process right there, in the middle of the imports.
_STALL_IMPORTS = """
import sys, time
class _Stall:
    def find_spec(self, name, path=None, target=None):
        if name == "cryptography":
            sys.meta_path.remove(self)
            sys.stderr.write("IMPORTING\\n")
            sys.stderr.flush()
            time.sleep(60)
        return None
sys.meta_path.insert(0, _Stall())
"""
_ENTRY_POINTS = {
    "python -m mie": "import runpy; runpy.run_module('mie', run_name='__main__', alter_sys=True)",
    "console script": "from mie._cli.__main__ import main; main()",
}


@pytest.mark.parametrize("entry", list(_ENTRY_POINTS))
def test_ctrl_c_during_the_imports_exits_130_without_a_traceback(entry: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", _STALL_IMPORTS + _ENTRY_POINTS[entry], "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        assert process.stderr.readline() == "IMPORTING\n"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert out == ""


def test_ctrl_c_at_the_pin_prompt_exits_130_without_a_traceback(tmp_path: Path) -> None:
    # `mie auth` on a terminal prompts for the PIN (after all imports and the trust setup).
    controller, terminal = pty.openpty()
    env = {**os.environ, "MIE_TRUST_DIR": str(tmp_path / "trust")}
    process = subprocess.Popen(
        [sys.executable, "-m", "mie", "auth"],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,  # no controlling terminal: getpass reads the pty on stdin
    )
    os.close(terminal)
    try:
        assert process.stderr is not None
        seen = b""
        deadline = time.monotonic() + 30
        while b"PIN" not in seen and time.monotonic() < deadline:
            streams = [process.stderr.fileno(), controller]
            ready, _, _ = select.select(streams, [], [], 0.5)
            for fd in ready:
                seen += os.read(fd, 1024)
        assert b"PIN" in seen
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
        os.close(controller)
    text = (seen + err).decode()
    assert process.returncode == 130, text
    assert "Traceback" not in text and "aborted" not in text
    assert out == b""


# --- mie replay runs card sessions only, and changes nothing on the machine ----------------------


class _CrlServer:
    """A distribution point on 127.0.0.1 that counts what it is asked (and serves nothing)."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        paths = self.paths

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                paths.append(self.path)
                self.send_error(404)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/crl/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture(scope="module")
def crl_server() -> Iterator[_CrlServer]:
    server = _CrlServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def local_pki(crl_server: _CrlServer) -> TestPki:
    """A TEST PKI whose certificates name the counting server as CRL distribution point."""
    return TestPki(crl_base_url=crl_server.url)


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_pki: TestPki) -> Path:
    """An operator trust store that trusts `local_pki`, and an empty CRL cache, of this test."""
    trust, crls = tmp_path / "trust", tmp_path / "crl"
    store = OperatorStore(trust)
    for issued in [*local_pki.roots.values(), *local_pki.intermediates.values()]:
        store.add(issued.certificate, allow_test=True)
    monkeypatch.setenv("MIE_TRUST_DIR", str(trust))
    monkeypatch.setenv("MIE_CRL_DIR", str(crls))
    return tmp_path


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``directory`` with its content and modification time."""
    if not directory.exists():
        return {}
    return {
        str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def write_vector(path: Path, command: list[str], vector: Vector | None = None) -> Path:
    vector = vector or Vector("made up", "emulator", "iso7816", atr=bytes.fromhex("3b00"))
    vector.command = command
    vector.save(path)
    return path


AUTH = ["auth", "--pin-stdin", "--json"]


def record_cps3(
    path: Path, pki: TestPki, what: str, command: list[str], spec: str | None = None
) -> Path:
    """Record, in process, the card session `mie info` or `mie auth` has with an emulated CPS3."""
    card = build_ias_ecc_card(CPS3, parse_identity(spec, "CPS"), pki, pin="1234")
    recorder = RecordingConnection(EmulatedConnection(card))
    challenge = bytes(range(32))
    with contextlib.suppress(BadResponseError):
        authenticator = CpxAuthenticator(recorder, check_chain=None)
        if what == "info":
            authenticator.identify()
        else:
            authenticator.authenticate(challenge, "1234")
    vector = recorder.vector(f"{what} on an emulated CPS3", "emulator", "cps3")
    vector.random = {"challenge": challenge.hex()} if what == "auth" else {}
    return write_vector(path, command, vector)


def evil_ca(path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Evil CA")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(certificate.public_bytes(Encoding.PEM))
    return path


def test_replay_refuses_a_vector_that_imports_a_trust_anchor(
    machine: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trust = machine / "trust"
    before = snapshot(trust)
    pem = evil_ca(machine / "evil-ca.pem")
    vector = write_vector(machine / "evil.json", ["trust", "import", str(pem)])
    assert run(["replay", str(vector)]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert "is not a card session: mie replay runs only info, auth, demo" in lines[0]
    assert "evil.json" in lines[0]
    assert snapshot(trust) == before


@pytest.mark.parametrize(
    "command",
    [
        ["crl", "fetch", "{url}ACI-FO-PP-TEST.crl"],
        ["emulate", "cps3"],
        ["verify-cert", "leaf.pem"],
        ["readers"],
        ["trust", "remove", "00"],
        ["replay", "other.json"],
        ["record", "--out", "x.json", "--", "info"],
        ["--log-level", "debug", "trust", "list"],
        [],
    ],
)
def test_replay_runs_no_other_command_than_a_card_session(
    machine: Path,
    crl_server: _CrlServer,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    command = [arg.format(url=crl_server.url) for arg in command]
    vector = write_vector(machine / "v.json", command)
    fetched, before = len(crl_server.paths), snapshot(machine)
    assert run(["replay", str(vector)]) == 2
    # The command typed after -- is held to the same rule.
    if command:
        assert run(["replay", str(vector), "--", *command]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert all(line.startswith("mie: error:") for line in lines)
    assert len(crl_server.paths) == fetched
    assert snapshot(machine) == before


@pytest.mark.parametrize(
    ("command", "named"),
    [
        (["info", "--help"], "'--help'"),
        (["info", "-h"], "'-h'"),
        (["auth", "--out=x"], "'--out'"),
        (["demo", "-o", "x"], "'-o'"),
        (["info", "-rVirtual"], "'-rVirtual'"),
        (["auth", "--trust", "ca.pem"], "names local files (--trust)"),
        (["auth", "--crl=crl.der"], "names local files (--crl)"),
        (["auth", "--intermediate", "ca.pem"], "names local files (--intermediate)"),
    ],
)
def test_replay_refuses_options_outside_the_replayable_ones(
    machine: Path, capsys: pytest.CaptureFixture[str], command: list[str], named: str
) -> None:
    vector = write_vector(machine / "v.json", command)
    assert run(["replay", str(vector)]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert named in lines[0]


def test_every_option_of_the_card_session_commands_is_classified_for_replay() -> None:
    # A new option of info/auth/demo must be judged (does it write?) before a vector may use it.
    for name, allowed in REPLAYABLE.items():
        command = cli.commands[name]
        typed = {o for p in command.params for o in [*p.opts, *p.secondary_opts]}
        assert typed <= allowed | {"--help"}, f"{name}: classify {sorted(typed - allowed)}"


def test_replay_of_auth_uses_the_crl_cache_read_only_and_never_downloads(
    machine: Path,
    crl_server: _CrlServer,
    local_pki: TestPki,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    vector = record_cps3(
        machine / "auth.json", local_pki, "auth", ["auth", "--pin-stdin", "--json"]
    )
    fetched, before = len(crl_server.paths), snapshot(machine)
    monkeypatch.setattr(sys, "stdin", io.StringIO("1234\n"))
    assert run(["replay", str(vector)]) == 1
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["error"]["code"] == "revocation_unknown"
    assert len(crl_server.paths) == fetched
    assert snapshot(machine) == before


def test_replay_of_auth_checks_revocation_with_the_cached_crls(
    machine: Path,
    crl_server: _CrlServer,
    local_pki: TestPki,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    vector = record_cps3(
        machine / "auth.json", local_pki, "auth", ["auth", "--pin-stdin", "--json"]
    )
    cache = CrlCache(machine / "crl")
    for gamme in local_pki.intermediates:
        for authority, url in ((False, local_pki.crl_url(gamme)), (True, local_pki.arl_url(gamme))):
            crl = local_pki.crl(gamme, authority=authority)
            atomic_write(cache.path_for(url), crl.public_bytes(Encoding.DER))
    fetched, before = len(crl_server.paths), snapshot(machine)
    monkeypatch.setattr(sys, "stdin", io.StringIO("1234\n"))
    assert run(["replay", str(vector)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["valid"] is True
    assert result["evidence"]["revocation"] == "good"
    assert len(crl_server.paths) == fetched
    assert snapshot(machine) == before


def test_replay_leaves_a_damaged_cached_crl_where_it_is(
    machine: Path,
    local_pki: TestPki,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    vector = record_cps3(
        machine / "auth.json", local_pki, "auth", ["auth", "--pin-stdin", "--json"]
    )
    cache = CrlCache(machine / "crl")
    for gamme in local_pki.intermediates:
        atomic_write(cache.path_for(local_pki.crl_url(gamme)), b"not a CRL")
    before = snapshot(machine)
    monkeypatch.setattr(sys, "stdin", io.StringIO("1234\n"))
    assert run(["replay", str(vector)]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "revocation_unknown"
    assert snapshot(machine) == before


def test_replay_takes_file_options_from_the_users_own_command_line(
    machine: Path,
    local_pki: TestPki,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    vector = record_cps3(
        machine / "auth.json", local_pki, "auth", ["auth", "--pin-stdin", "--json"]
    )
    crl_files = []
    for gamme in local_pki.intermediates:
        for authority in (False, True):
            crl_file = machine / f"{gamme.value}-{authority}.crl"
            crl_file.write_bytes(
                local_pki.crl(gamme, authority=authority).public_bytes(Encoding.DER)
            )
            crl_files += ["--crl", str(crl_file)]
    monkeypatch.setattr(sys, "stdin", io.StringIO("1234\n"))
    assert run(["replay", str(vector), "--", "auth", "--pin-stdin", "--json", *crl_files]) == 0
    assert json.loads(capsys.readouterr().out)["evidence"]["revocation"] == "good"


def test_a_malformed_card_identity_fails_info_and_auth_alike(
    machine: Path,
    local_pki: TestPki,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `mie emulate cps3 --identity rpps=12345` issued such a card: RPPS numbers have 11 digits.
    info_vector = record_cps3(
        machine / "i.json", local_pki, "info", ["info", "--json"], "rpps=12345"
    )
    auth_vector = record_cps3(machine / "a.json", local_pki, "auth", AUTH, "rpps=12345")
    assert run(["replay", str(info_vector)]) == 1
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "RPPS" in lines[0] and "internal error" not in lines[0]
    monkeypatch.setattr(sys, "stdin", io.StringIO("1234\n"))
    assert run(["replay", str(auth_vector)]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["error"]["code"] == "malformed"
    assert "internal error" not in captured.err


def test_record_refuses_a_command_that_is_not_a_card_session(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "v.json"
    assert run(["record", "--out", str(out), "--", "trust", "list"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert lines == ["mie: error: mie record records card sessions: info, auth, demo, not 'trust'"]
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("[" * 2000, "is nested too deeply"),
        ('{"description": ' + "9" * 5000 + "}", "'description' must be a non-empty string"),
        ('{"random": {"challenge": 1e400}}', "'description' must be a non-empty string"),
    ],
)
def test_replay_of_hostile_json_names_the_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, named: str
) -> None:
    path = tmp_path / "hostile.json"
    path.write_text(content, encoding="utf-8")
    assert run(["replay", str(path)]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert "hostile.json" in lines[0] and named in lines[0]
    assert "internal error" not in lines[0] and "set_int_max_str_digits" not in lines[0]


# --- mie auth --json: the contract's error object for every card and reader failure -------------


class _FailingCard(SmartCardConnection):
    """An emulated CPS3 whose link fails with ``error`` at command ``at`` (the transport edge)."""

    def __init__(self, card: EmulatedCard, error: Exception, at: int) -> None:
        self.inner = EmulatedConnection(card)
        self.error, self.at, self.sent = error, at, 0

    @property
    def transport(self) -> Transport:
        return self.inner.transport

    @property
    def atr(self) -> bytes | None:
        return self.inner.atr

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent += 1
        if self.sent > self.at:
            raise self.error
        return self.inner.send_and_receive(apdu)

    def close(self) -> None:
        pass


class _State(CliState):
    def __init__(self, connection: SmartCardConnection) -> None:
        super().__init__()
        self.connection = connection

    def open_reader(self, reader: str | None) -> SmartCardConnection:
        return self.connection


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (TransportTimeoutError("The card did not answer within 5 s"), "reader_error"),
        (CardResetError("The card was reset during the transaction"), "reader_error"),
        (ReaderBusyError("Another process holds the reader"), "reader_error"),
        (TransportError("Card protocol mismatch"), "reader_error"),
        (CardRemovedError("The card was removed"), "card_removed"),
    ],
)
@pytest.mark.parametrize("at", [0, 3])
def test_auth_json_reports_a_failing_card_or_reader_and_exits_1(
    machine: Path,
    local_pki: TestPki,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: Exception,
    code: str,
    at: int,
) -> None:
    card = build_ias_ecc_card(CPS3, parse_identity(None, "CPS"), local_pki, pin="1234")
    monkeypatch.setattr(sys, "stdin", io.StringIO("1234\n"))
    assert run(["auth", "--pin-stdin", "--json"], _State(_FailingCard(card, error, at))) == 1
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["valid"] is False
    assert result["error"] == {"code": code, "message": str(error)}
    assert result["authenticator"]["kind"] == "cps3"
    lines = error_lines(captured.err)
    assert len(lines) == 1 and lines[0].startswith("mie: error: ") and str(error) in lines[0]


@pytest.mark.parametrize("url", ["notaurl", "ftp://host/x.crl", "http://[::1", "http:///x.crl"])
def test_crl_fetch_of_something_that_is_not_an_http_url_is_bad_usage(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    url: str,
) -> None:
    monkeypatch.setenv("MIE_CRL_DIR", str(tmp_path / "crl"))
    assert run(["crl", "fetch", url]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert lines == [f"mie: error: {url!r} is not an http:// or https:// URL"]
    assert not (tmp_path / "crl").exists()


def test_record_of_a_mistyped_command_is_one_usage_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "v.json"
    assert run(["record", "--out", str(out), "--", "demo", "--only", "nope"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("mie: error: demo: Invalid value for '--only'")
    assert not out.exists()


def test_emulate_waiting_notice_names_a_port_taken_by_another_emulator(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Issue 7 item 22 (new-user trial): a second `mie emulate` on a port another emulator holds
    # is accepted by the kernel but never served; the notice blamed pcscd only.
    from mie._cli import emulate

    class _Host:
        connected = threading.Event()

    emulate._notice_if_waiting(_Host(), 35963)  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "another emulator" in err or "other emulator" in err
    assert "35963" in err


# --- One JSON shape per object, and the contract's error object for every --json failure ---------

INFO_KEYS = {
    "kind",
    "serial",
    "atr",
    "transport",
    "protocols",
    "authenticator",
    "identity",
    "error",
}


@pytest.mark.parametrize("kind", ["iso7816", "cps3"])
def test_info_json_has_every_key_whatever_the_card(
    local_pki: TestPki, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    if kind == "iso7816":
        card: EmulatedCard = demo_card()
    else:
        card = build_ias_ecc_card(CPS3, parse_identity(None, "CPS"), local_pki, pin="1234")
    assert run(["info", "--json"], _State(EmulatedConnection(card))) == 0
    described = json.loads(capsys.readouterr().out)
    assert set(described) == INFO_KEYS
    assert described["error"] is None
    # The authenticator object is the one `mie auth` nests; its fields repeat the flat ones.
    authenticator = described["authenticator"]
    assert {"kind", "serial", "atr"} <= set(authenticator)
    assert all(authenticator[key] == described[key] for key in authenticator)
    if kind == "iso7816":
        assert described["identity"] is None
        assert described["serial"] == "MIE0000001"
    else:
        assert described["identity"]["id_type"] == "RPPS"
        assert described["serial"] == "2800000001"


def test_demo_json_entries_share_one_key_set(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["demo", "--json"]) == 0
    generic, cps3 = json.loads(capsys.readouterr().out)["results"]
    assert list(generic) == list(cps3)
    assert generic["auth"] is None
    assert cps3["public_file_bytes"] is None and cps3["holder_after_verify"] is None
    assert cps3["serial"] == cps3["auth"]["authenticator"]["serial"] is not None


def test_trust_remove_json_names_the_directory_and_the_removed_fingerprints(
    machine: Path, local_pki: TestPki, capsys: pytest.CaptureFixture[str]
) -> None:
    root = next(iter(local_pki.roots.values())).certificate
    wanted = root.fingerprint(hashes.SHA256()).hex(":")
    assert run(["trust", "remove", "--json", wanted[:23].upper()]) == 0
    removed = json.loads(capsys.readouterr().out)
    assert removed == {"directory": str(machine / "trust"), "removed": [wanted]}
    assert run(["trust", "remove", "--json", wanted]) == 2


def _no_card(self: CliState, reader: str | None) -> SmartCardConnection:
    raise NoCardError("No card in Virtual PCD 00 00")


@pytest.mark.parametrize(
    ("argv", "code", "exit_code"),
    [
        (["info", "--json"], "no_card", 1),
        (["info", "--json", "--no-such-option"], "usage", 2),
        (["auth", "--json", "--revocation", "x"], "usage", 2),
        (["auth", "--revocation", "x", "--json"], "usage", 2),
        (["demo", "--json", "--only", "nope"], "usage", 2),
        (["verify-cert", "--json", "--at", "yesterday", "leaf.pem"], "usage", 2),
        (["trust", "remove", "--json", "00"], "usage", 2),
        (["crl", "show", "--json", "{tmp}/absent.crl"], "malformed", 2),
        (["record", "--out", "{tmp}/v.json", "--", "info", "--json"], "no_card", 1),
    ],
)
def test_every_json_failure_prints_the_contract_error_object(
    machine: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: str,
    exit_code: int,
) -> None:
    monkeypatch.setattr(CliState, "open_reader", _no_card)
    assert run([arg.format(tmp=machine) for arg in argv]) == exit_code
    captured = capsys.readouterr()
    # mie record first says it recorded nothing; the error is the last line.
    lines = error_lines(captured.err)
    assert len(lines) == (2 if argv[0] == "record" else 1)
    assert lines[-1].startswith("mie: error: ")
    assert json.loads(captured.out) == {"error": {"code": code, "message": lines[-1][12:]}}


def test_a_replayed_json_command_prints_the_error_object_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The vector's own command asks for JSON; the card it recorded is no CPx card.
    vector = write_vector(tmp_path / "v.json", ["info", "--json"])
    assert run(["replay", str(vector)]) == 1
    captured = capsys.readouterr()
    error = json.loads(captured.out)["error"]
    assert error["code"] == "unsupported_card"
    assert error_lines(captured.err) == [f"mie: error: {error['message']}"]


@pytest.mark.parametrize("failure", ["revoked", "untrusted"])
def test_auth_json_of_a_card_whose_chain_fails_still_names_the_card(
    machine: Path,
    local_pki: TestPki,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    failure: str,
) -> None:
    card = build_ias_ecc_card(CPS3, parse_identity(None, "CPS"), local_pki, pin="1234")
    assert card.credentials is not None
    leaf = card.credentials.authentication.certificate
    crl_files = []
    for gamme in local_pki.intermediates:
        for authority in (False, True):
            revoked = [leaf.serial_number] if failure == "revoked" and not authority else []
            crl = local_pki.crl(gamme, revoked, authority=authority)
            crl_file = machine / f"{gamme.value}-{authority}.crl"
            crl_file.write_bytes(crl.public_bytes(Encoding.DER))
            crl_files += ["--crl", str(crl_file)]
    if failure == "untrusted":
        monkeypatch.setenv("MIE_TRUST_DIR", str(machine / "empty-trust"))
    monkeypatch.setattr(sys, "stdin", io.StringIO("1234\n"))
    argv = ["auth", "--pin-stdin", "--json", *crl_files]
    assert run(argv, _State(EmulatedConnection(card))) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["error"]["code"] == failure
    assert result["authenticator"]["kind"] == "cps3"
    assert result["authenticator"]["serial"] == "2800000001"
