"""`mie auth` against a CRL server that hangs: one deadline (``--timeout``) for the revocation step.

Regression test for issue 7 item 23, end to end: `mie emulate` in one process, `mie auth` in
another, through pcscd; the emulated card's distribution points (127.0.0.1:8088) answer nothing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from mie.emulation.crlserver import CRL_PORT
from tests.harness import READER0, Pcscd, emulator_process, mie_command

pytestmark = [pytest.mark.pcsc, pytest.mark.usefixtures("operator_trust")]


def test_hanging_crl_server_ends_mie_auth_within_its_timeout(pcscd: Pcscd, tmp_path: Path) -> None:
    with socket.socket() as silent:
        silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            silent.bind(("127.0.0.1", CRL_PORT))
        except OSError as e:
            pytest.skip(f"port {CRL_PORT} of the TEST PKI's distribution points is busy ({e})")
        silent.listen(16)  # the kernel accepts; nobody ever answers
        with emulator_process("cps3", "--crl-port", "0"):
            started = time.monotonic()
            auth = subprocess.run(
                mie_command("auth", "--reader", READER0, "--pin-stdin", "--json", "--timeout", "2"),
                input="1234\n",
                capture_output=True,
                text=True,
                timeout=120,
                env={**os.environ, "MIE_CRL_DIR": str(tmp_path / "crl")},
            )
            took = time.monotonic() - started
    assert auth.returncode == 1, auth.stderr
    result = json.loads(auth.stdout)
    assert result["error"]["code"] == "revocation_unknown"
    # Before: two sequential 10 s timeouts (leaf CRL, then the CA's ARL), 20 s and more.
    assert took < 12, took
