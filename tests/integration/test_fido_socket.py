"""`mie emulate fido2 --hid-socket P` in its own process (HOME and every MIE_* variable scrubbed),
driven from this one through mie.transport.ctap's SocketHidConnection by python-fido2's own
CTAPHID code, Fido2Client and Fido2Server: registration and authentication, the state file kept
across emulator runs, and a key pulled (--fail-after, SIGKILL) raising card_removed with no
credential left half made. No pcscd: the socket is this test's own."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.ctap2.base import Ctap2
from fido2.server import Fido2Server
from fido2.webauthn import (
    AttestationConveyancePreference,
    AttestedCredentialData,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    UserVerificationRequirement,
)

from mie.errors import CardRemovedError
from mie.transport.ctap import open_ctap_device
from tests.harness import mie_command

PIN = "482916"
ORIGIN = "https://iam.example.fr"
RP_ID = "iam.example.fr"
START_TIMEOUT = 20.0


class Pin(UserInteraction):
    """Gives the PIN when python-fido2 asks (once per operation)."""

    def __init__(self, pin: str = PIN) -> None:
        self.pin = pin
        self.asked = 0

    def request_pin(self, permissions: Any, rp_id: str | None) -> str:
        self.asked += 1
        return self.pin


def scrubbed_environment(home: Path) -> dict[str, str]:
    """The environment of a child `mie`: HOME in the test's directory, no MIE_* variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIE_")}
    env["HOME"] = str(home)
    env.pop("XDG_CACHE_HOME", None)
    env.pop("XDG_CONFIG_HOME", None)
    env.pop("XDG_DATA_HOME", None)
    return env


@dataclass
class Emulator:
    """A running `mie emulate fido2` and the files it was given."""

    process: subprocess.Popen[bytes]
    pki: Path
    state: Path

    def stderr(self) -> str:
        """:return: what the emulator wrote on stderr (once it has exited)."""
        assert self.process.stderr is not None
        return self.process.stderr.read().decode(errors="replace")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it does not end in 10 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def spawn(base: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start `mie emulate fido2 ARGS` with the scrubbed environment."""
    base.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        mie_command("emulate", "fido2", *args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=scrubbed_environment(base / "home"),
    )


@pytest.fixture
def socket_path() -> Iterator[Path]:
    # AF_UNIX paths are limited to 107 bytes: pytest's tmp_path can be longer.
    directory = Path(tempfile.mkdtemp(prefix="mie-fido-"))
    path = directory / "key.sock"
    yield path
    path.unlink(missing_ok=True)
    directory.rmdir()


@contextlib.contextmanager
def hid_socket_key(tmp_path: Path, path: Path, *options: str) -> Iterator[Emulator]:
    """Run the emulator on ``path`` until the block ends; the socket is gone after."""
    pki, state = tmp_path / "pki", tmp_path / "key.json"
    process = spawn(
        tmp_path,
        "--hid-socket",
        str(path),
        "--pki",
        str(pki),
        "--state",
        str(state),
        *options,
    )
    emulator = Emulator(process, pki, state)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _listening(path):
            if process.poll() is not None:
                pytest.fail(f"mie emulate fido2 exited {process.returncode}: {emulator.stderr()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no socket at {path} within {START_TIMEOUT} s")
            time.sleep(0.05)
        yield emulator
    finally:
        stop(process)


def _listening(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _server() -> Fido2Server:
    return Fido2Server(
        PublicKeyCredentialRpEntity(id=RP_ID, name="IAM"),
        attestation=AttestationConveyancePreference.DIRECT,
    )


def register(client: Fido2Client, server: Fido2Server) -> AttestedCredentialData:
    """Register one credential with UV required; :return: what the server keeps."""
    options, state = server.register_begin(
        PublicKeyCredentialUserEntity(name="dr.martin", id=os.urandom(16), display_name="Martin"),
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    auth_data = server.register_complete(state, client.make_credential(options.public_key))
    assert auth_data.is_user_verified() and auth_data.credential_data is not None
    return auth_data.credential_data


def authenticate(
    client: Fido2Client, server: Fido2Server, credential: AttestedCredentialData
) -> int:
    """Authenticate with UV required; :return: the signature counter."""
    request, state = server.authenticate_begin(
        [credential], user_verification=UserVerificationRequirement.REQUIRED
    )
    response = client.get_assertion(request.public_key).get_response(0)
    server.authenticate_complete(state, [credential], response)
    return int(response.response.authenticator_data.counter)


def _client(spec: str, user: UserInteraction | None = None) -> Fido2Client:
    return Fido2Client(
        open_ctap_device(spec), DefaultClientDataCollector(ORIGIN), user_interaction=user or Pin()
    )


def _credentials(state: Path) -> list[dict[str, Any]]:
    return list(json.loads(state.read_text())["credentials"])


def test_register_then_authenticate_over_the_socket_and_again_after_a_restart(
    tmp_path: Path, socket_path: Path
) -> None:
    server = _server()
    with hid_socket_key(tmp_path, socket_path, "--pin", PIN) as key:
        user = Pin()
        client = _client(f"socket:{socket_path}", user)
        credential = register(client, server)
        assert authenticate(client, server, credential) == 1
        assert user.asked == 2
        # python-fido2 went through CTAP2 (no silent CTAP1 fallback): the key has no CTAP1.
        assert "FIDO_2_1" in client.info.versions
    assert key.process.returncode == 0
    assert not socket_path.exists()  # removed at exit
    assert len(_credentials(key.state)) == 1
    with hid_socket_key(tmp_path, socket_path, "--pin", PIN):
        client = _client(f"socket:{socket_path}")
        assert authenticate(client, server, credential) == 2


def test_fail_after_pulls_the_key_mid_registration_and_nothing_is_made(
    tmp_path: Path, socket_path: Path
) -> None:
    # INIT, then getInfo and the PIN exchanges take a dozen reports: the pull comes before the
    # makeCredential answer.
    with hid_socket_key(tmp_path, socket_path, "--pin", PIN, "--fail-after", "12") as key:
        client = _client(f"socket:{socket_path}")
        with pytest.raises(CardRemovedError, match="removed") as e:
            register(client, _server())
        assert e.value.code == "card_removed"
        key.process.wait(10)
    assert key.process.returncode == 1
    assert "--fail-after" in key.stderr()
    assert _credentials(key.state) == []
    assert not socket_path.exists()


def test_the_emulator_killed_while_waiting_for_the_touch_is_card_removed(
    tmp_path: Path, socket_path: Path
) -> None:
    with hid_socket_key(tmp_path, socket_path, "--touch", "never") as key:
        device = open_ctap_device(f"socket:{socket_path}")
        ctap = Ctap2(device)
        outcome: list[BaseException] = []

        def make() -> None:
            try:
                ctap.make_credential(
                    os.urandom(32),
                    {"id": RP_ID, "name": "IAM"},
                    {"id": b"user", "name": "u"},
                    [{"type": "public-key", "alg": -7}],
                )
            except BaseException as e:
                outcome.append(e)

        worker = threading.Thread(target=make)
        worker.start()
        time.sleep(0.5)
        key.process.kill()
        worker.join(10)
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], CardRemovedError), outcome
    # SIGKILL left the socket behind: the next emulator replaces the stale one.
    with hid_socket_key(tmp_path, socket_path):
        assert Ctap2(open_ctap_device(f"socket:{socket_path}")).get_info().aaguid


def test_options_refused_for_a_fido2_key_exit_2_with_one_line(tmp_path: Path) -> None:
    for args, message in (
        (["--serial", "2800000001"], "--serial: not for a FIDO2 key"),
        (["--hid-socket", "/tmp/x.sock", "--port", "35964"], "--port: with vpcd only"),
        (["--touch", "soon"], "--touch 'soon'"),
        (["--pin", "12"], "--pin:"),
    ):
        process = spawn(tmp_path, *args)
        _, err = process.communicate(timeout=30)
        lines = err.decode().splitlines()
        assert process.returncode == 2, lines
        assert len(lines) == 1 and lines[0].startswith("mie: error: ") and message in lines[0]
