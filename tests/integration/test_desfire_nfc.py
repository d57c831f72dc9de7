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
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.test_cli_desfire import write_badge_setup

pytest.importorskip("nfc")

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

    def __call__(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mie", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            env=scrubbed_env(self.home),
            check=False,
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
