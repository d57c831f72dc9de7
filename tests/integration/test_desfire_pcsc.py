"""Issue 9's Done-when through pcscd + vpcd: `mie emulate desfire --state S` hosts the badge on
vpcd as a contactless card, and `mie desfire enroll|info` and `mie auth` reach it through pcscd,
each in its own process with HOME and every MIE_* variable scrubbed. Run under
`flock -o /tmp/mie-pcsc.lock` (the vpcd ports are shared machine-wide)."""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.harness import READER0, Pcscd, emulator_process
from tests.integration.test_desfire_nfc import OTHER_UID, RPPS, Mie, auth, copy_record, enrol
from tests.keys.conftest import SoftHsm, softhsm  # noqa: F401 (the session's SoftHSM2 token)
from tests.unit.test_cli_desfire import write_badge_setup

pytestmark = pytest.mark.pcsc

UID = bytes.fromhex("04a1b2c3d4e5f6")
RPPS2 = "810100099802"  # another RPPS number that passes the Luhn check


@pytest.fixture
def mie(tmp_path: Path) -> Mie:
    return Mie(tmp_path / "home")


def test_info_of_a_blank_badge_through_pcscd(pcscd: Pcscd, tmp_path: Path, mie: Mie) -> None:
    setup = write_badge_setup(tmp_path / "config")
    with emulator_process("desfire", "--state", str(tmp_path / "badge.json"), "--uid", UID.hex()):
        out = mie(
            "desfire", "info", "--reader", READER0, "--badge-config", str(setup.config), "--json"
        )
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert (info["uid"], info["product"], info["random_uid"]) == (UID.hex(), "EV3", False)
    assert info["originality"] == {"key": "mie test badge", "verified": True}
    assert info["applications"] == [] and info["mie_application"] is False


def badge(
    state: Path, uid: bytes | None = None, *options: str
) -> contextlib.AbstractContextManager[object]:
    """Host the badge kept in ``state`` on vpcd (``Virtual PCD 00 00``) until the block ends."""
    given = ("--uid", uid.hex()) if uid else ()
    return emulator_process("desfire", "--state", str(state), *given, *options)


PIN = "482916"


def test_enrol_then_auth_prints_the_identity_and_the_pin_makes_it_substantial(
    pcscd: Pcscd, tmp_path: Path, mie: Mie
) -> None:
    setup = write_badge_setup(tmp_path / "config", second_factor=True)
    with badge(tmp_path / "badge.json", UID):
        enrol(mie, READER0, setup.config, tmp_path / "journal.csv", "--pin-stdin", stdin=PIN + "\n")
        code, result = auth(mie, READER0, setup.config, "--pin-stdin", stdin=PIN + "\n")
        wrong, refused = auth(mie, READER0, setup.config, "--pin-stdin", stdin="000000\n")
    assert code == 0, result
    assert result["valid"] is True and result["level"] == "substantial"
    assert result["identity"]["id_nat"] == RPPS and result["identity"]["id_type"] == "RPPS"
    assert result["authenticator"]["kind"] == "desfire-ev3"
    assert result["authenticator"]["serial"] == UID.hex()
    assert "second-factor PIN verified" in result["reasons"]
    assert wrong == 1 and refused["error"]["code"] == "invalid_pin"
    assert refused["error"]["tries_left"] == 2 and refused["identity"] is None


def test_a_badge_enrolled_under_another_master_key_is_refused_through_pcscd(
    pcscd: Pcscd, tmp_path: Path, mie: Mie
) -> None:
    ours = write_badge_setup(tmp_path / "ours", seed=1)
    theirs = write_badge_setup(tmp_path / "theirs", seed=2)
    with badge(tmp_path / "badge.json", UID):
        enrol(mie, READER0, theirs.config, tmp_path / "journal.csv")
        code, result = auth(mie, READER0, ours.config)
        own_code, own = auth(mie, READER0, theirs.config)
    assert code == 1 and result["error"]["code"] == "key_mismatch"
    assert result["valid"] is False and result["identity"] is None
    assert own_code == 0 and own["identity"]["id_nat"] == RPPS


def test_a_record_copied_from_another_badge_is_refused_through_pcscd(
    pcscd: Pcscd, tmp_path: Path, mie: Mie
) -> None:
    setup = write_badge_setup(tmp_path / "config")
    original, copy = tmp_path / "original.json", tmp_path / "copy.json"
    for state, uid in ((original, UID), (copy, OTHER_UID)):
        with badge(state, uid):
            enrol(mie, READER0, setup.config, tmp_path / "journal.csv")
    copy_record(original, copy)
    with badge(copy):
        code, result = auth(mie, READER0, setup.config)
    assert code == 1 and result["error"]["code"] == "record_copied"
    assert result["valid"] is False and result["identity"] is None


def test_enrolment_with_the_master_keys_in_softhsm2_gives_the_software_provider_s_badge(
    pcscd: Pcscd,
    softhsm: SoftHsm,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    mie: Mie,
) -> None:
    """The keys of the token (non-extractable AES masters, the authority's P-256 key) enrol
    the badge; a verifier holding the same masters in software authenticates it: every
    diversified key of the badge is the software provider's."""
    from tests.keys.test_pkcs11 import create_aes, create_ec

    prefix = f"c3-{secrets.token_hex(4)}-"
    labels = {name: prefix + name for name in ("picc", "app", "uid_read", "read", "authority")}
    hsm = write_badge_setup(
        tmp_path / "hsm",
        labels=labels,
        keys={
            "provider": "pkcs11",
            "module": str(softhsm.module),
            "token": softhsm.token_label,
            "pin_env": "HSM_USER_PIN",
        },
    )
    for name in ("picc", "app", "uid_read", "read"):
        create_aes(softhsm, labels[name], hsm.masters[name])
    authority = create_ec(softhsm, labels["authority"])
    pem = serialization.load_der_public_key(authority).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "hsm" / "authority.pem").write_bytes(pem)
    software = write_badge_setup(tmp_path / "software", labels=labels)
    (tmp_path / "software" / "authority.pem").write_bytes(pem)
    assert software.masters == hsm.masters
    token = Mie(mie.home, {"HSM_USER_PIN": softhsm.pin})
    with badge(tmp_path / "badge.json", UID):
        enrol(token, READER0, hsm.config, tmp_path / "journal.csv")
        code, result = auth(mie, READER0, software.config)
        hsm_code, by_token = auth(token, READER0, hsm.config)
    assert code == 0, result
    assert result["valid"] is True and result["identity"]["id_nat"] == RPPS
    assert hsm_code == 0 and by_token["identity"]["id_nat"] == RPPS


def test_bulk_enrolment_waits_for_each_badge_then_its_removal(
    pcscd: Pcscd, tmp_path: Path, mie: Mie
) -> None:
    """`enroll --csv`: the badge of row a is presented, enrolled and removed, then row b's."""
    setup = write_badge_setup(tmp_path / "config")
    table = tmp_path / "badges.csv"
    table.write_text(f"row,id_nat\na,{RPPS}\nb,{RPPS2}\n", encoding="utf-8")
    journal = Path(str(table) + ".journal.csv")
    argv = ["desfire", "enroll", "--csv", str(table), "--reader", READER0]
    argv += ["--badge-config", str(setup.config), "--wait", "60", "--json"]
    process = mie.start(*argv)
    try:
        for row, state, uid in (("a", "a.json", UID), ("b", "b.json", OTHER_UID)):
            with badge(tmp_path / state, uid):
                wait_for_line(journal, f",{row},{uid.hex()},verified,done", process)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert json.loads(out) == {
        "enrolled": [
            {"row": "a", "uid": UID.hex(), "resumed_at": None},
            {"row": "b", "uid": OTHER_UID.hex(), "resumed_at": None},
        ],
        "incomplete": [],
        "failed": [],
        "error": None,
    }
    assert err.index("row a: present a blank badge") < err.index("row b: present a blank badge")


def wait_for_line(
    path: Path, text: str, process: subprocess.Popen[str], timeout: float = 60
) -> None:
    """Wait until ``path`` holds a line with ``text`` (the enrolment ran), or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in {path} within {timeout:g} s")


def test_a_badge_gone_mid_enrolment_is_finished_by_the_next_run(
    pcscd: Pcscd, tmp_path: Path, mie: Mie
) -> None:
    """The emulator leaves the field after 20 APDUs (``--fail-after``, its state file saved at
    every change); hosted again from that file, the next run reports the badge first and
    finishes it, and ``mie auth`` then authenticates it."""
    setup = write_badge_setup(tmp_path / "config")
    state, journal = tmp_path / "badge.json", tmp_path / "journal.csv"
    argv = ["desfire", "enroll", "--reader", READER0, "--badge-config", str(setup.config)]
    argv += ["--identity", f"rpps={RPPS[1:]}", "--journal", str(journal), "--json"]
    with badge(state, UID, "--fail-after", "20"):
        first = mie(*argv)
    assert first.returncode == 1, first.stderr
    [left] = json.loads(first.stdout)["incomplete"]
    assert (left["row"], left["uid"]) == (RPPS, UID.hex())
    assert f"incomplete at {left['step']}" in first.stderr.splitlines()[-1]
    with badge(state):
        second = mie(*argv)
        code, result = auth(mie, READER0, setup.config)
    assert second.returncode == 0, second.stderr
    assert f"row {RPPS} ({UID.hex()}) incomplete at {left['step']}" in second.stderr.splitlines()[0]
    [enrolled] = json.loads(second.stdout)["enrolled"]
    assert enrolled["resumed_at"] == left["step"]
    assert code == 0 and result["identity"]["id_nat"] == RPPS
