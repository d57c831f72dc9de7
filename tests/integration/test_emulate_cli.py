"""`mie emulate` options checked at start, and the README walk-through pasted as one script."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mie.transport.pcsc import wait_for_removal
from tests.harness import READER0, Pcscd, emulator_process, mie_command

ROOT = Path(__file__).resolve().parents[2]


def _emulate(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        mie_command("emulate", *args, "--crl-port", "0"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("cps3", "--serial", "abc"), "--serial 'abc'"),
        (("iso7816", "--serial", "two words"), "--serial"),
        (("psi", "--identity", "psi=not-a-uuid"), "--identity 'psi=not-a-uuid'"),
        (("cps3", "--identity", "rpps=12345"), "--identity 'rpps=12345'"),
        (("cps3", "--identity", "rpps=10100099878"), "Luhn"),
        (("cpe", "--identity", "finess=12/x"), "--identity"),
        (("cps3", "--identity", "finess=760021832/000000018"), "--identity"),
        (("cps3", "--pin", "12"), "--pin"),
        (("iso7816", "--trace", "/dev/null/t.json"), "--trace /dev/null/t.json"),  # never a dir
    ],
)
def test_bad_emulator_options_are_refused_at_start_naming_the_option(
    args: tuple[str, ...], named: str
) -> None:
    """Issue 7 item 22: each used to fail late, with a foreign message, or not at all."""
    out = _emulate(*args, timeout=30)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("mie: error: ") and out.stderr.count("\n") == 1, out.stderr
    assert named in out.stderr
    assert "fromhex" not in out.stderr and "Traceback" not in out.stderr


@pytest.mark.pcsc
def test_trace_file_is_written_at_start(pcscd: Pcscd, tmp_path: Path) -> None:
    trace = tmp_path / "t.json"
    with emulator_process("iso7816", "--trace", str(trace)):
        assert json.loads(trace.read_text())["exchanges"] == []


@pytest.mark.pcsc
def test_a_second_emulator_on_a_port_in_use_says_so_and_exits(pcscd: Pcscd) -> None:
    with emulator_process("iso7816"):
        second = _emulate("iso7816", timeout=60)
    assert second.returncode == 2, second.stderr
    last = second.stderr.splitlines()[-1]
    assert last.startswith("mie: error: --port 35963: ") and "another card" in last


@pytest.mark.pcsc
def test_emulate_desfire_fail_after_then_a_restart_resumes(pcscd: Pcscd, tmp_path: Path) -> None:
    # The hidden --fail-after N: the badge answers N APDUs, then leaves vpcd and the emulator
    # exits 1; its state file has what those commands wrote, and a restart carries on from it.
    from mie.core.errors import TransportError
    from mie.desfire.session import DesfireSession
    from mie.emulation.desfire_state import KeyType, load_state
    from mie.hazmat.desfire_legacy import (
        LEGACY_OPT_IN,
        authenticate_iso,
        change_key_from_legacy,
    )
    from mie.transport.pcsc import PcscConnection

    state, key = tmp_path / "badge.json", bytes(range(16))
    args = ("desfire", "--state", str(state), "--uid", "04958caa5c5e80")
    with emulator_process(*args, "--fail-after", "3") as process:
        with PcscConnection(READER0) as connection:
            session = DesfireSession(connection)
            authenticate_iso(session, 0, bytes(16), opt_in=LEGACY_OPT_IN)  # 2 APDUs
            change_key_from_legacy(session, 0, key, version=1, opt_in=LEGACY_OPT_IN)
            # As a reader notices a pulled badge. A command sent before pcscd has seen the
            # card go reaches vpcd's closed socket; after that (pcscd 2.x + vpcd 0.8), the
            # slot took no new card within 15 s for this still-running client, now and then.
            wait_for_removal(READER0, timeout=10)
            with pytest.raises(TransportError):
                session.get_version()
        assert process.wait(15) == 1
        assert process.stderr is not None
        assert b"--fail-after: the badge answered 3 APDUs" in process.stderr.read()
    picc_key = load_state(state).picc_key
    assert (picc_key.key, picc_key.version, picc_key.key_type) == (key, 1, KeyType.AES)
    with emulator_process("desfire", "--state", str(state)):
        with PcscConnection(READER0) as connection:
            session = DesfireSession(connection)
            session.authenticate_ev2_first(0, key)
            assert session.get_key_version(0) == 1


def _walkthrough() -> str:
    readme = (ROOT / "README.md").read_text()
    # The block may carry a doc-test marker line (tests/unit/test_docs.py) above its fence.
    found = re.search(
        r"A walk-through[^\n]*\n(?:[^\n]+\n)*?\n(?:<!--[^\n]*-->\n)?```sh\n(.*?)```", readme, re.S
    )
    assert found, "README.md has no walk-through block"
    return found.group(1)


@pytest.mark.pcsc
def test_readme_walkthrough_pasted_as_one_script_works(pcscd: Pcscd, tmp_path: Path) -> None:
    """Issue 7 item 20: pasted as-is, `trust import` found no file yet and `auth` no card."""
    script = tmp_path / "walkthrough.sh"
    script.write_text("set -e\n" + _walkthrough())
    home = tmp_path / "home"
    home.mkdir()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MIE_", "XDG_")) and k != "HOME"
    }
    # A first run: no TEST PKI, trust store or CRL cache yet, as for a new user.
    env.update(HOME=str(home), PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
    process = subprocess.Popen(
        ["bash", str(script)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=180)
    finally:
        # Whatever the script did, nothing it started outlives the test.
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        with contextlib.suppress(Exception):
            wait_for_removal(READER0, timeout=10)
    assert process.returncode == 0, err
    # The auth JSON is the last thing printed: the readers table and the import come first.
    result = json.loads(out[out.index("\n{") :])
    assert result["valid"] is True, result
    assert result["identity"]["id_type"] == "RPPS"
    assert result["level"] == "substantial"
    assert (home / ".cache" / "mie" / "testpki" / "test-chain.pem").exists()
    assert READER0 in out
