"""`mie fido register` then `mie fido auth`, each its own `mie` process (HOME and every MIE_*
variable scrubbed), on a key that outlives them: the emulated key of ``--key emulator:STATE``
(its state file keeps the PIN, the credentials and the counters between processes), and
``mie emulate fido2 --hid-socket PATH`` in a third process (``--key socket:PATH``, python-fido2's
CTAPHID code over the socket). The credential store is a SQLite file. No pcscd."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from mie.emulation.ctap2 import EmulatedAuthenticator
from mie.emulation.fido_pki import TestAttestationPki
from tests.harness import mie_command
from tests.integration.test_fido_socket import hid_socket_key, scrubbed_environment, socket_path
from tests.unit.test_cli_fido import RPPS, Desk

__all__ = ["socket_path"]

PIN = "482916"
ORIGIN = "https://iam.example"
TIMEOUT = 120


def mie(home: Path, *args: str, stdin: str = PIN + "\n") -> tuple[int, dict[str, Any], str]:
    """Run ``mie ARGS --json``; :return: the exit code, the JSON printed, stderr."""
    out = subprocess.run(
        mie_command(*args, "--json"),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env=scrubbed_environment(home),
    )
    assert "Traceback" not in out.stderr, out.stderr
    return out.returncode, json.loads(out.stdout), out.stderr


def register(desk: Desk, key: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    return mie(
        desk.directory,
        "fido",
        "register",
        "--key",
        key,
        "--identity",
        f"rpps={RPPS}",
        "--policy",
        desk.policy,
        "--store",
        desk.store,
        "--origin",
        ORIGIN,
        "--pin-stdin",
        *extra,
    )


def authenticate(
    desk: Desk, key: str, *extra: str, stdin: str = PIN + "\n"
) -> tuple[int, dict[str, Any], str]:
    return mie(
        desk.directory,
        "fido",
        "auth",
        "--key",
        key,
        "--identity",
        f"rpps={RPPS}",
        "--policy",
        desk.policy,
        "--store",
        desk.store,
        "--origin",
        ORIGIN,
        "--pin-stdin",
        *extra,
        stdin=stdin,
    )


def test_register_then_authenticate_on_an_emulated_key_with_a_state_file(tmp_path: Path) -> None:
    state = tmp_path / "key.json"
    EmulatedAuthenticator(PIN, state=state)  # the key is made: its PIN is in the state file
    # The emulator of `--key emulator:STATE` attests with the TEST PKI of the day.
    desk = Desk(tmp_path, TestAttestationPki.generate())
    desk.write()
    key = f"emulator:{state}"
    code, outcome, err = register(desk, key)
    assert code == 0, err
    assert outcome["credential"]["level_cap"] == "substantial"
    assert len(desk.credentials()) == 1
    code, result, err = authenticate(desk, key)
    assert code == 0, err
    assert result["level"] == "substantial"
    assert result["identity"]["id_nat"] == "8" + RPPS
    first = desk.credentials()[0].sign_count
    code, result, err = authenticate(desk, key)
    assert code == 0, err
    assert desk.credentials()[0].sign_count > first
    # A wrong PIN: the key counts it, in its state file, across processes.
    code, result, _ = authenticate(desk, key, stdin="000000\n")
    assert code == 1
    assert result["error"]["code"] == "invalid_pin" and result["error"]["tries_left"] == 7


def test_register_then_authenticate_over_the_hid_socket(tmp_path: Path, socket_path: Path) -> None:
    with hid_socket_key(tmp_path, socket_path, "--pin", PIN) as emulator:
        desk = Desk(tmp_path, TestAttestationPki.load(emulator.pki))
        desk.write()
        key = f"socket:{socket_path}"
        code, outcome, err = register(desk, key, "--resident-key")
        assert code == 0, err
        assert outcome["credential"]["discoverable"] is True
        code, result, err = authenticate(desk, key)
        assert code == 0, err
        assert result["level"] == "substantial"
    # The key is gone: nothing at the socket.
    code, result, err = authenticate(desk, key)
    assert code == 1
    assert result["error"]["code"] in ("no_card", "card_removed")


def test_a_key_pulled_mid_registration_leaves_no_credential(
    tmp_path: Path, socket_path: Path
) -> None:
    with hid_socket_key(tmp_path, socket_path, "--pin", PIN, "--fail-after", "12") as emulator:
        desk = Desk(tmp_path, TestAttestationPki.load(emulator.pki))
        desk.write()
        code, outcome, _ = register(desk, f"socket:{socket_path}")
    assert code == 1
    assert outcome["error"]["code"] == "card_removed"
    assert outcome["credential"] is None
    assert desk.credentials() == ()
