"""Issue 9's Done-when through nfcpy's udp driver, no daemon: `mie emulate desfire --nfc` hosts
the badge, and `mie desfire enroll|info` and `mie auth` reach it as `--reader
nfc:udp:127.0.0.1:PORT`, each in its own process with HOME and every MIE_* variable scrubbed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.harness import require_module
from tests.unit.test_cli_desfire import write_badge_setup

require_module("nfc", "nfcpy (mie[nfc]) drives the udp reader")

UID = bytes.fromhex("04a1b2c3d4e5f6")
COMMAND_TIMEOUT = 60


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def scrubbed_env(home: Path) -> dict[str, str]:
    """The environment of a new user: no MIE_* or XDG_* variable, HOME a fresh directory."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MIE_", "XDG_")) and k != "HOME"
    }
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)
    return env


@dataclass
class Mie:
    """Runs ``mie`` commands as a new user would, in ``home``."""

    home: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    def __call__(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mie", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            env={**scrubbed_env(self.home), **self.extra_env},
            check=False,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        """Start a ``mie`` command (stdin closed, output piped); the caller waits for it."""
        return subprocess.Popen(
            [sys.executable, "-m", "mie", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**scrubbed_env(self.home), **self.extra_env},
        )


@pytest.fixture
def mie(tmp_path: Path) -> Mie:
    return Mie(tmp_path / "home")


@contextlib.contextmanager
def nfc_badge(state: Path, home: Path, *, uid: bytes | None = None) -> Iterator[str]:
    """Host the badge kept in ``state`` for nfcpy's udp reader until the block ends.

    :return: the ``--reader`` value that reaches it.
    """
    port = free_udp_port()
    command = [sys.executable, "-m", "mie", "emulate", "desfire", "--nfc", f"127.0.0.1:{port}"]
    command += ["--state", str(state)]
    if uid is not None:
        command += ["--uid", uid.hex()]
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, env=scrubbed_env(home), start_new_session=True
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert "Emulating desfire" in line, line + process.stderr.read()
        yield f"nfc:udp:127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process.stderr is not None:
            process.stderr.close()


def test_info_of_a_blank_badge_over_nfc(tmp_path: Path, mie: Mie) -> None:
    with nfc_badge(tmp_path / "badge.json", mie.home, uid=UID) as reader:
        out = mie("desfire", "info", "--reader", reader, "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert (info["uid"], info["product"], info["random_uid"]) == (UID.hex(), "EV3", False)
    assert info["anticollision_uid"] == UID.hex()
    assert info["applications"] == [] and info["mie_application"] is False


def test_info_with_the_configuration_checks_the_test_originality_key(
    tmp_path: Path, mie: Mie
) -> None:
    setup = write_badge_setup(tmp_path / "config")
    with nfc_badge(tmp_path / "badge.json", mie.home, uid=UID) as reader:
        out = mie("desfire", "info", "--reader", reader, "--badge-config", str(setup.config))
    assert out.returncode == 0, out.stderr
    assert "originality: verified (mie test badge)" in out.stdout


# --- the Done-when flows: enrol, authenticate, refuse another master key and a copied record ---

RPPS = "810100099877"
OTHER_UID = bytes.fromhex("04112233445566")
AID = bytes.fromhex("494df0")
RECORD_FILE = 1


def enrol(mie: Mie, reader: str, config: Path, journal: Path, *args: str, stdin: str = "") -> None:
    """``mie desfire enroll`` one badge for :data:`RPPS`; it must succeed."""
    argv = ["desfire", "enroll", "--reader", reader, "--badge-config", str(config)]
    argv += ["--identity", f"rpps={RPPS[1:]}", "--journal", str(journal), "--json", *args]
    out = mie(*argv, stdin=stdin)
    assert out.returncode == 0, out.stderr
    [badge] = json.loads(out.stdout)["enrolled"]
    assert badge["row"] == RPPS


def auth(
    mie: Mie, reader: str, config: Path, *args: str, stdin: str = ""
) -> tuple[int, dict[str, Any]]:
    """``mie auth --json`` on the badge: the exit code and the AuthResult printed."""
    out = mie(
        "auth", "--reader", reader, "--badge-config", str(config), "--json", *args, stdin=stdin
    )
    assert "Traceback" not in out.stderr
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout)


def copy_record(source: Path, target: Path) -> None:
    """Write the record file of the badge kept in ``source`` into the one kept in ``target``
    (whose keys stay its own), as a cloner copying the bytes would."""
    from mie.emulation.desfire_state import load_state, save_state

    original = load_state(source)
    copy = load_state(target)
    copy.applications[AID].files[RECORD_FILE].data[:] = (
        original.applications[AID].files[RECORD_FILE].data
    )
    save_state(target, copy)


def test_enrol_then_auth_prints_the_bound_identity_over_nfc(tmp_path: Path, mie: Mie) -> None:
    setup = write_badge_setup(tmp_path / "config")
    with nfc_badge(tmp_path / "badge.json", mie.home, uid=UID) as reader:
        enrol(mie, reader, setup.config, tmp_path / "journal.csv")
        code, result = auth(mie, reader, setup.config)
        text = mie("auth", "--reader", reader, "--badge-config", str(setup.config))
    assert code == 0, result
    assert result["valid"] is True and result["level"] == "low"
    assert result["identity"]["id_nat"] == RPPS
    assert result["authenticator"]["kind"] == "desfire-ev3"
    assert result["authenticator"]["serial"] == UID.hex()
    assert result["authenticator"]["transport"] == "contactless"
    assert text.returncode == 0, text.stderr
    assert f"  RPPS {RPPS[1:]}" in text.stdout.splitlines()


def test_a_badge_enrolled_under_another_master_key_is_refused_over_nfc(
    tmp_path: Path, mie: Mie
) -> None:
    ours = write_badge_setup(tmp_path / "ours", seed=1)
    theirs = write_badge_setup(tmp_path / "theirs", seed=2)
    with nfc_badge(tmp_path / "badge.json", mie.home, uid=UID) as reader:
        enrol(mie, reader, theirs.config, tmp_path / "journal.csv")
        code, result = auth(mie, reader, ours.config)
    assert code == 1
    assert result["valid"] is False and result["error"]["code"] == "key_mismatch"
    assert result["identity"] is None


def test_a_record_copied_from_another_badge_is_refused_over_nfc(tmp_path: Path, mie: Mie) -> None:
    setup = write_badge_setup(tmp_path / "config")
    original, copy = tmp_path / "original.json", tmp_path / "copy.json"
    for state, uid in ((original, UID), (copy, OTHER_UID)):
        with nfc_badge(state, mie.home, uid=uid) as reader:
            enrol(mie, reader, setup.config, tmp_path / "journal.csv")
    copy_record(original, copy)
    with nfc_badge(copy, mie.home) as reader:
        code, result = auth(mie, reader, setup.config)
    assert code == 1
    assert result["valid"] is False and result["error"]["code"] == "record_copied"
    assert result["identity"] is None


def test_no_badge_in_the_nfc_field_is_no_card_and_bad_input_is_one_line(mie: Mie) -> None:
    out = mie("auth", "--reader", f"nfc:udp:127.0.0.1:{free_udp_port()}", "--json")
    assert out.returncode == 1, out.stderr
    assert json.loads(out.stdout)["error"]["code"] == "no_card"
    assert out.stderr.startswith("mie: error: ") and out.stderr.count("\n") == 1
    for argv in (
        ("desfire", "diversify", "--master-key", "00", "--uid", "00", "--aid", "00"),
        ("desfire", "enroll", "--identity", "rpps=1"),
        ("desfire", "info", "--reader", "nfc:"),
    ):
        out = mie(*argv)
        assert out.returncode == 2, out.stderr
        assert out.stderr.startswith("mie: error: ") and out.stderr.count("\n") == 1, argv
        assert "Traceback" not in out.stderr
