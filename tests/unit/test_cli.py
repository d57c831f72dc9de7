from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import http.server
import io
import json
import logging
import os
import pty
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from mie._cli.__main__ import run
from mie._cli.app import cli
from mie._cli.state import CliState
from mie._cli.vectors import REPLAYABLE
from mie.core.connection import SmartCardConnection
from mie.core.errors import (
    BadResponseError,
    CardRemovedError,
    CardResetError,
    NoCardError,
    ReaderBusyError,
    TransportError,
    TransportTimeoutError,
)
from mie.core.random import RecordingRandom
from mie.emulation.base import EmulatedCard, EmulatedConnection
from mie.emulation.cpx import CPS3, build_ias_ecc_card
from mie.emulation.iso7816 import demo_card
from mie.emulation.testpki import TestPki, parse_identity
from mie.registry import AuthenticatorOptions, authenticator_for
from mie.request import AuthRequest, StaticPin
from mie.transport.replay import RecordingConnection, Vector, load_vector
from mie.trust import CrlCache
from mie.trust.cache import atomic_write
from mie.trust.store import OperatorStore
from tests.cards.faults import FailingConnection

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def isolated_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI configures the 'mie' logger; give it back as it was after each test."""
    monkeypatch.setenv("MIE_TEST_PKI", str(tmp_path / "testpki"))
    logger = logging.getLogger("mie")
    handlers, level = list(logger.handlers), logger.level
    # A handler left by a CLI run elsewhere writes to a capture stream that is closed by now.
    logger.handlers[:] = []
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


def test_ctrl_c_at_the_pin_prompt_exits_130_without_a_traceback(
    tmp_path: Path, local_pki: TestPki
) -> None:
    # `mie auth` on a terminal prompts for the PIN once the card said how many tries remain: a
    # replayed CPS3 session answers up to there, with no reader and no daemon.
    vector = record_cps3(tmp_path / "auth.json", local_pki, "auth", ["auth"])
    controller, terminal = pty.openpty()
    env = {
        **os.environ,
        "MIE_TRUST_DIR": str(tmp_path / "trust"),
        "MIE_CRL_DIR": str(tmp_path / "crl"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "mie", "replay", str(vector)],
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
        while b"tries left)" not in seen and time.monotonic() < deadline:
            streams = [process.stderr.fileno(), controller]
            ready, _, _ = select.select(streams, [], [], 0.5)
            for fd in ready:
                with contextlib.suppress(OSError):  # the pty's EIO once the process is gone
                    seen += os.read(fd, 1024)
            if process.poll() is not None:
                break
        assert b"PIN (3 tries left)" in seen, seen
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
    """Record, in process, the card session `mie info` or `mie auth` has with an emulated CPS3
    (the nonce drawn for `auth` goes to the vector's `random`, as `mie record` keeps it)."""
    card = build_ias_ecc_card(CPS3, parse_identity(spec, "CPS"), pki, pin="1234")
    rng = RecordingRandom()
    recorder = RecordingConnection(EmulatedConnection(card), rng=rng)
    with contextlib.suppress(BadResponseError):
        authenticator = authenticator_for(recorder, AuthenticatorOptions(chain_checked=False))
        if what == "info":
            authenticator.identify()
        else:
            authenticator.authenticate(AuthRequest.new(rng=rng), user=StaticPin("1234"))
    vector = recorder.vector(f"{what} on an emulated CPS3", "emulator", "cps3")
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
        ["verify-evidence", "auth.json", "--nonce", "00" * 16, "--origin", "https://iam.example"],
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
    failing = FailingConnection(EmulatedConnection(card), at=at, error=error)
    assert run(["auth", "--pin-stdin", "--json"], _State(failing)) == 1
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


@pytest.mark.parametrize("argv", [["emulate", "--help"], ["emulate", "desfire", "--help"]])
def test_emulate_help_says_which_options_are_for_which_kinds(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Rv-H: the help listed --pin (default 1234), --serial, --identity, --pki, --crl-port as if
    # they applied to every kind; a desfire badge refuses them.
    assert run(argv) == 0
    out = capsys.readouterr().out
    text = " ".join(out.split())
    assert "CPx: --pin, --serial, --identity, --pki, --crl-port" in text
    assert (
        "desfire: --state, --uid, --product, --nfc; it refuses --pin, --serial, --identity,"
        " --pki and --crl-port" in text
    )
    options = out.partition("Options:")[2]
    for option, prefix in (
        ("--pin", "Not desfire:"),
        ("--serial", "Not desfire:"),
        ("--identity", "CPx:"),
        ("--pki", "CPx:"),
        ("--crl-port", "CPx:"),
        ("--state", "desfire:"),
        ("--uid", "desfire:"),
        ("--product", "desfire:"),
        ("--nfc", "desfire:"),
    ):
        [line] = [line for line in options.splitlines() if line.strip().startswith(option + " ")]
        assert re.split(r"\s{2,}", line.strip(), maxsplit=1)[1].startswith(prefix), line


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--pki", "/tmp"], "--pki"),
        (["--crl-port", "0"], "--crl-port"),
        (["--pin", "1234"], "--pin"),
        (["--serial", "2812345670", "--crl-port", "8088"], "--serial, --crl-port"),
    ],
)
def test_emulate_desfire_refuses_the_cpx_options_even_at_their_default(
    args: list[str],
    named: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Rv-H: --pki and --crl-port were taken and ignored by a desfire badge (the help now says it
    # refuses every CPx option, as it refused --pin, --serial, --identity).
    from mie._cli import emulate

    # A badge that would be served is not: the test ends either way (exit 0, failed).
    monkeypatch.setattr(emulate, "_emulate_desfire", lambda *args: 0)
    assert run(["emulate", "desfire", *args]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert lines == [f"mie: error: {named}: not for a DESFire badge (mie desfire enroll)"]


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


def test_demo_runs_the_desfire_badge_enrolled_then_authenticated(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["demo", "--only", "desfire", "--json"]) == 0
    (badge,) = json.loads(capsys.readouterr().out)["results"]
    assert badge["card"] == "desfire" and badge["serial"] == "04958caa5c5e80"
    auth = badge["auth"]
    assert auth["valid"] is True and auth["level"] == "low"  # possession only, no PIN
    assert auth["identity"]["id_nat"] == "810100099877"
    assert auth["evidence"]["type"] == "desfire-session"
    assert auth["authenticator"]["kind"] == "desfire-ev3"


def test_demo_json_entries_share_one_key_set(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["demo", "--json"]) == 0
    generic, cps3, badge, key = json.loads(capsys.readouterr().out)["results"]
    assert list(generic) == list(cps3) == list(badge) == list(key)
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
    revoked = [leaf.serial_number] if failure == "revoked" else []
    crl_files = crl_options(local_pki, machine, revoked)
    if failure == "untrusted":
        monkeypatch.setenv("MIE_TRUST_DIR", str(machine / "empty-trust"))
    monkeypatch.setattr(sys, "stdin", io.StringIO("1234\n"))
    argv = ["auth", "--pin-stdin", "--json", *crl_files]
    assert run(argv, _State(EmulatedConnection(card))) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["error"]["code"] == failure
    assert result["authenticator"]["kind"] == "cps3"
    assert result["authenticator"]["serial"] == "2800000001"


def crl_options(pki: TestPki, directory: Path, revoked: list[int] | None = None) -> list[str]:
    """``--crl`` options for fresh CRLs of every CA of ``pki`` (``revoked`` listed by the
    intermediates), written in ``directory``."""
    options = []
    for gamme in pki.intermediates:
        for authority in (False, True):
            crl = pki.crl(gamme, None if authority else revoked, authority=authority)
            path = directory / f"{gamme.value}-{'arl' if authority else 'crl'}.der"
            path.write_bytes(crl.public_bytes(Encoding.DER))
            options += ["--crl", str(path)]
    return options


# --- Done when: auth binds the nonce to the origin; verify-evidence checks it as an IAM would ---

ORIGIN = "https://iam.example"
NONCE = bytes(range(100, 132))


def test_auth_signs_the_nonce_bound_to_the_origin_and_verify_evidence_agrees(
    machine: Path,
    local_pki: TestPki,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    card = build_ias_ecc_card(CPS3, parse_identity(None, "CPS"), local_pki, pin="1234")
    crls = crl_options(local_pki, machine)
    monkeypatch.setattr(sys, "stdin", io.StringIO("1234\n"))
    argv = ["auth", "--pin-stdin", "--json", "--nonce", NONCE.hex(), "--origin", ORIGIN, *crls]
    assert run(argv, _State(EmulatedConnection(card))) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["valid"] is True and result["level"] == "substantial"
    evidence = result["evidence"]
    assert evidence["type"] == "x509-signature"
    assert (evidence["nonce"], evidence["origin"]) == (NONCE.hex(), ORIGIN)
    challenge = bytes.fromhex(evidence["challenge"])
    assert challenge == hashlib.sha256(ORIGIN.encode()).digest() + hashlib.sha256(NONCE).digest()
    key = x509.load_pem_x509_certificate(evidence["chain"][0].encode()).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(bytes.fromhex(evidence["signature"]), challenge, PKCS1v15(), hashes.SHA256())

    saved = machine / "auth.json"
    saved.write_text(json.dumps(result), encoding="utf-8")
    verify = ["verify-evidence", str(saved), "--json", *crls]
    assert run([*verify, "--nonce", NONCE.hex(), "--origin", ORIGIN]) == 0
    verified = json.loads(capsys.readouterr().out)
    assert verified["valid"] is True
    assert verified["identity"] == result["identity"]
    assert verified["level"] == result["level"]
    assert verified["authenticator"] == result["authenticator"]
    for other, code in [
        (["--nonce", bytes(32).hex(), "--origin", ORIGIN], "nonce_mismatch"),
        (["--nonce", NONCE.hex(), "--origin", "https://evil.example"], "origin_mismatch"),
    ]:
        assert run([*verify, *other]) == 1
        captured = capsys.readouterr()
        refused = json.loads(captured.out)
        assert refused["valid"] is False and refused["error"]["code"] == code
        assert refused["identity"] is None and refused["level"] is None
        assert error_lines(captured.err)[-1].startswith(f"mie: error: {code}: ")


def test_challenge_is_another_name_for_nonce(
    machine: Path,
    local_pki: TestPki,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    card = build_ias_ecc_card(CPS3, parse_identity(None, "CPS"), local_pki, pin="1234")
    monkeypatch.setattr(sys, "stdin", io.StringIO("1234\n"))
    argv = ["auth", "--pin-stdin", "--json", f"--challenge={NONCE.hex()}"]
    assert run([*argv, *crl_options(local_pki, machine)], _State(EmulatedConnection(card))) == 0
    evidence = json.loads(capsys.readouterr().out)["evidence"]
    assert (evidence["nonce"], evidence["origin"]) == (NONCE.hex(), "https://localhost")


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--nonce", "zz"], "--nonce must be hex"),
        (["--nonce", "00" * 15], "--nonce must have 16 to 1024 bytes, not 15"),
        (["--origin", "https://iam.example/"], "--origin: "),
        (["--origin", "http://iam.example"], "--origin: "),
    ],
)
def test_auth_refuses_a_bad_nonce_or_origin_before_the_card_is_used(
    machine: Path, capsys: pytest.CaptureFixture[str], argv: list[str], named: str
) -> None:
    state = _NoReader()
    assert run(["auth", "--pin-stdin", "--json", *argv], state) == 2
    captured = capsys.readouterr()
    lines = error_lines(captured.err)
    assert len(lines) == 1 and named in lines[0]
    assert json.loads(captured.out)["error"]["code"] == "usage"
    assert state.opened == 0


_VERIFY_E_JSON = ["verify-evidence", "e.json", "--nonce", NONCE.hex(), "--origin", ORIGIN]


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "1e400", "ten"])
@pytest.mark.parametrize(
    "argv",
    [
        ["auth", "--pin-stdin", "--json", "--timeout"],
        [*_VERIFY_E_JSON, "--json", "--timeout"],
        ["crl", "fetch", "http://127.0.0.1:9/x.crl", "--json", "--timeout"],
        ["readers", "--json", "--wait"],
    ],
)
def test_every_wait_option_refuses_a_duration_without_a_deadline(
    machine: Path, capsys: pytest.CaptureFixture[str], argv: list[str], value: str
) -> None:
    # NaN passed click's FloatRange (every comparison with it is false) and inf is no
    # deadline; crl fetch took any float, a negative one failing later as a download error.
    if argv[0] == "readers" and value == "0":
        value = "601"  # --wait 0 is a valid "do not wait"; its bound is 600
    state = _NoReader()
    assert run([*argv, value], state) == 2
    captured = capsys.readouterr()
    lines = error_lines(captured.err)
    assert len(lines) == 1 and ("'--timeout'" in lines[0] or "'--wait'" in lines[0]), lines
    assert json.loads(captured.out)["error"]["code"] == "usage"
    assert state.opened == 0


class _NoReader(CliState):
    def __init__(self) -> None:
        super().__init__()
        self.opened = 0

    def open_reader(self, reader: str | None) -> SmartCardConnection:
        self.opened += 1
        raise NoCardError("No card")


@pytest.fixture(scope="module")
def saved_auth(local_pki: TestPki, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One `mie auth --json` output for NONCE and ORIGIN, with a trust store and CRL files that
    check it (the tests that mutate it share its RSA keys)."""
    directory = tmp_path_factory.mktemp("saved-auth")
    store = OperatorStore(directory / "trust")
    for issued in [*local_pki.roots.values(), *local_pki.intermediates.values()]:
        store.add(issued.certificate, allow_test=True)
    crls = crl_options(local_pki, directory)
    card = build_ias_ecc_card(CPS3, parse_identity(None, "CPS"), local_pki, pin="1234")
    argv = ["auth", "--pin-stdin", "--json", "--nonce", NONCE.hex(), "--origin", ORIGIN, *crls]
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setenv("MIE_TRUST_DIR", str(directory / "trust"))
        patch.setenv("MIE_CRL_DIR", str(directory / "crl"))
        patch.setattr(sys, "stdin", io.StringIO("1234\n"))
        assert run(argv, _State(EmulatedConnection(card))) == 0
    other = build_ias_ecc_card(CPS3, parse_identity(None, "CPS"), local_pki, serial="2800000002")
    assert other.credentials is not None
    return {
        "directory": directory,
        "crls": crls,
        "result": json.loads(out.getvalue()),
        "other_leaf": other.credentials.authentication.certificate.public_bytes(Encoding.PEM),
    }


def _bare(result: dict[str, Any]) -> dict[str, Any]:
    evidence: dict[str, Any] = result["evidence"]
    return evidence


def _retyped(result: dict[str, Any]) -> None:
    result["evidence"]["type"] = "x509-something"


def _unsigned(result: dict[str, Any]) -> None:
    del result["evidence"]["signature"]


def _extra(result: dict[str, Any]) -> None:
    result["evidence"]["extra"] = 1


def _bad_hex(result: dict[str, Any]) -> None:
    result["evidence"]["nonce"] = result["evidence"]["nonce"].upper()


def _failed(result: dict[str, Any]) -> None:
    result["evidence"] = None


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (_retyped, "malformed"),
        (_unsigned, "malformed"),
        (_extra, "malformed"),
        (_bad_hex, "malformed"),
        (_failed, "malformed"),
        ("other key", "signature_invalid"),
        ("untrusted", "untrusted"),
        ("revoked", "revoked"),
    ],
)
def test_verify_evidence_refuses_bad_evidence_with_the_code_and_exit_1(
    saved_auth: dict[str, Any],
    local_pki: TestPki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    mutate: Any,
    code: str,
) -> None:
    result = json.loads(json.dumps(saved_auth["result"]))
    crls = saved_auth["crls"]
    monkeypatch.setenv("MIE_TRUST_DIR", str(saved_auth["directory"] / "trust"))
    monkeypatch.setenv("MIE_CRL_DIR", str(tmp_path / "crl"))
    if mutate == "other key":
        result["evidence"]["chain"][0] = saved_auth["other_leaf"].decode()
    elif mutate == "untrusted":
        monkeypatch.setenv("MIE_TRUST_DIR", str(tmp_path / "empty-trust"))
    elif mutate == "revoked":
        leaf = x509.load_pem_x509_certificate(result["evidence"]["chain"][0].encode())
        crls = crl_options(local_pki, tmp_path, [leaf.serial_number])
    else:
        mutate(result)
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(result), encoding="utf-8")
    argv = ["verify-evidence", str(path), "--nonce", NONCE.hex(), "--origin", ORIGIN, *crls]
    assert run([*argv, "--json"]) == 1
    captured = capsys.readouterr()
    refused = json.loads(captured.out)
    assert refused["valid"] is False and refused["error"]["code"] == code
    # One error line (a warning about a CRL download may come first).
    errors = [line for line in error_lines(captured.err) if line.startswith("mie: error:")]
    assert len(errors) == 1
    assert run(argv) == 1
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"valid": true, "valid": true}',
        b"\xff\xfe",
        b"[" * 5000,
    ],
)
def test_verify_evidence_of_a_file_that_is_not_json_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    path = tmp_path / "evidence.json"
    path.write_bytes(content)
    argv = ["verify-evidence", str(path), "--nonce", NONCE.hex(), "--origin", ORIGIN, "--json"]
    assert run(argv) == 2
    captured = capsys.readouterr()
    lines = error_lines(captured.err)
    assert len(lines) == 1 and "evidence.json" in lines[0]
    assert json.loads(captured.out)["error"]["code"] == "malformed"


def test_verify_evidence_of_json_with_a_huge_number_is_malformed_evidence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "evidence.json"
    path.write_bytes(b'{"type": "x509-signature", "nonce": ' + b"9" * 5000 + b"}")
    argv = ["verify-evidence", str(path), "--nonce", NONCE.hex(), "--origin", ORIGIN, "--json"]
    assert run(argv) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["error"]["code"] == "malformed"
    lines = error_lines(captured.err)
    assert len(lines) == 1 and "internal error" not in lines[0]
    assert "set_int_max_str_digits" not in lines[0]


def test_verify_evidence_of_a_missing_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["verify-evidence", str(tmp_path / "absent.json"), "--nonce", NONCE.hex()]
    assert run([*argv, "--origin", ORIGIN]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "absent.json" in lines[0]


def test_verify_evidence_of_bare_evidence_verifies_it(
    saved_auth: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MIE_TRUST_DIR", str(saved_auth["directory"] / "trust"))
    monkeypatch.setenv("MIE_CRL_DIR", str(tmp_path / "crl"))
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(_bare(saved_auth["result"])), encoding="utf-8")
    argv = ["verify-evidence", str(path), "--nonce", NONCE.hex(), "--origin", ORIGIN]
    assert run([*argv, *saved_auth["crls"]]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Verified: card\n")
    assert "level: substantial" in out


def test_a_vector_recorded_before_the_nonce_existed_replays_with_exit_2(
    machine: Path, local_pki: TestPki, capsys: pytest.CaptureFixture[str]
) -> None:
    vector_file = record_cps3(machine / "auth.json", local_pki, "auth", AUTH)
    vector = load_vector(vector_file)
    vector.random = {"challenge": vector.random["nonce"]}
    vector.save(vector_file)
    assert run(["replay", str(vector_file)]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert lines == ["mie: error: The vector has no recorded random value 'nonce'"]


# --- The PIN is asked only when the card needs it ------------------------------------------------


def test_auth_reads_no_pin_when_the_last_try_is_refused(
    machine: Path,
    local_pki: TestPki,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    card = build_ias_ecc_card(CPS3, parse_identity(None, "CPS"), local_pki, pin="1234")
    for tries_left in (2, 1):
        monkeypatch.setattr(sys, "stdin", io.StringIO("0000\n"))
        assert run(AUTH, _State(EmulatedConnection(card))) == 1
        assert json.loads(capsys.readouterr().out)["error"]["tries_left"] == tries_left
    stdin = io.StringIO("1234\n")
    monkeypatch.setattr(sys, "stdin", stdin)
    assert run(AUTH, _State(EmulatedConnection(card))) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "last_try_refused"
    assert stdin.tell() == 0


def test_auth_without_a_pin_source_stops_after_the_status_query(
    machine: Path,
    local_pki: TestPki,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    card = build_ias_ecc_card(CPS3, parse_identity(None, "CPS"), local_pki, pin="1234")
    failing = FailingConnection(EmulatedConnection(card), at=1000, error=AssertionError())
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal
    assert run(["auth", "--json"], _State(failing)) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["error"]["code"] == "usage"
    assert error_lines(captured.err) == [
        "mie: error: No PIN: pass --pin-stdin and write the PIN on standard input"
    ]
    # SELECT and the status query only: no VERIFY with data, no signature.
    sent = [c[:4].hex() for c in failing.commands]
    assert sent == ["00a4040c", "00200001"]


def test_the_cli_dispatches_on_no_atr_itself() -> None:
    # The registry (mie.registry.authenticator_for) knows the cards; the CLI asks it.
    sources = sorted((ROOT / "src" / "mie" / "_cli").glob("*.py"))
    assert sources
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for name in ("DEMO_ATR", "detect_family", "CpxAuthenticator", "DemoSession("):
            if name == "DemoSession(" and path.name == "demo.py":
                continue  # mie demo runs the generic card's session itself
            assert name not in text, f"{path.name} uses {name}"


def test_auth_of_a_cps_card_with_a_badge_configuration_is_unchanged(
    machine: Path,
    local_pki: TestPki,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Rv-U (issue 9): a badge configuration named (or in $MIE_BADGE_CONFIG) changes nothing for
    # a CPS card: the same result, level and evidence type as without it.
    from tests.unit.test_cli_desfire import write_badge_setup

    setup = write_badge_setup(machine / "badge", second_factor=True)
    card = build_ias_ecc_card(CPS3, parse_identity(None, "CPS"), local_pki, pin="1234")
    crls = crl_options(local_pki, machine)
    argv = ["auth", "--pin-stdin", "--json", "--nonce", NONCE.hex(), "--origin", ORIGIN, *crls]
    results = []
    for extra, env in [([], None), (["--badge-config", str(setup.config)], None), ([], setup)]:
        if env is not None:
            monkeypatch.setenv("MIE_BADGE_CONFIG", str(env.config))
        monkeypatch.setattr(sys, "stdin", io.StringIO("1234\n"))
        assert run([*argv, *extra], _State(EmulatedConnection(card))) == 0
        results.append(json.loads(capsys.readouterr().out))
    for result in results:
        assert result["valid"] is True and result["level"] == "substantial"
        assert result["evidence"]["type"] == "x509-signature"
        assert result["identity"] == results[0]["identity"]
        assert result["authenticator"] == results[0]["authenticator"]
