"""CPx cards end to end: `mie emulate` in one process, `mie auth` / OpenSC in another, via pcscd."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mie.cards.cpx import PKCS15_AID
from mie.core.connection import SmartCardConnection
from mie.emulation.base import EmulatedCard
from mie.emulation.registry import CardOptions, build_card
from mie.errors import CardRemovedError
from mie.registry import AuthenticatorOptions, authenticator_for
from mie.request import AuthRequest, StaticPin
from mie.transport.pcsc import PcscConnection
from mie.transport.replay import RecordingConnection
from mie.verification import login
from tests.harness import (
    READER0,
    Pcscd,
    attached,
    emulator_process,
    mie_command,
    missing,
    opensc_pkcs11_module,
    settle_after_failure,
)

pytestmark = [pytest.mark.pcsc, pytest.mark.usefixtures("operator_trust")]
AUT_ID = "e828bd080f8025000001ff001002"


def _auth(pin: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        mie_command("auth", "--reader", READER0, "--pin-stdin", "--json", *extra),
        input=pin + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )


def _login(connection: SmartCardConnection) -> None:
    """A login with the PIN 1234, evidence checked without a chain (``verifier=None``)."""
    authenticator = authenticator_for(connection, AuthenticatorOptions(chain_checked=False))
    login(authenticator, AuthRequest.new(), user=StaticPin("1234"), verifier=None)


def _verify_evidence(path: Path, nonce: bytes, origin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        mie_command("verify-evidence", str(path), "--nonce", nonce.hex(), "--origin", origin),
        capture_output=True,
        text=True,
        timeout=60,
    )


IDENTITIES = {
    "cps3": ("RPPS", "CPS", re.compile(r"[0-9]{11}")),
    "cps4": ("RPPS", "CPS", re.compile(r"[0-9]{11}")),
    "cpe": ("FINESS", "CPE", re.compile(r"[0-9]{9}/[0-9A-Za-z]+")),
    "psi": (
        "PSI",
        "PSI",
        re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
    ),
}


@pytest.mark.parametrize("kind", ["cps3", "cps4", "cpe", "psi"])
def test_mie_auth_against_emulator_process(pcscd: Pcscd, kind: str) -> None:
    with emulator_process(kind, "--pin", "1234", "--serial", "2812345670"):
        out = _auth("1234")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["valid"] is True and result["error"] is None
    assert result["authenticator"]["serial"] == "2812345670"
    assert result["authenticator"]["kind"] == kind
    id_type, card_type, pattern = IDENTITIES[kind]
    identity = result["identity"]
    assert (identity["id_type"], identity["card_type"]) == (id_type, card_type)
    assert pattern.fullmatch(identity["id"]), identity["id"]
    assert identity["test_card"] is True
    assert result["level"] == ("low" if kind == "cpe" else "substantial")
    assert result["evidence"]["revocation"] == "good"
    assert len(result["evidence"]["chain"]) == 3
    evidence = result["evidence"]
    leaf = x509.load_pem_x509_certificate(evidence["chain"][0].encode())
    key = leaf.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(
        bytes.fromhex(evidence["signature"]),
        bytes.fromhex(evidence["challenge"]),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )


def test_contactless_cps3_identifies_without_signing(pcscd: Pcscd) -> None:
    with emulator_process("cps3-cl"):
        info = subprocess.run(
            mie_command("info", "--reader", READER0, "--json"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        auth = _auth("1234")
    assert info.returncode == 0, info.stderr
    described = json.loads(info.stdout)
    assert described["kind"] == "cps3-cl"
    # A PC/SC part 3 contactless pseudo-ATR: pcscd reports the card as contactless.
    assert described["transport"] == "contactless"
    assert described["authenticator"]["transport"] == "contactless"
    assert described["identity"]["id_type"] == "RPPS"
    assert auth.returncode == 1
    assert json.loads(auth.stdout)["error"]["code"] == "unsupported_card"


def test_wrong_pins_are_refused_before_the_last_try(pcscd: Pcscd, tmp_path: Path) -> None:
    trace = tmp_path / "trace.json"
    with emulator_process("cps3", "--pin", "7391", "--trace", str(trace)):
        codes = []
        for _ in range(3):
            out = _auth("0000")
            assert out.returncode == 1
            codes.append(json.loads(out.stdout)["error"])
        forced = _auth("7391", "--allow-last-try")
    assert codes[0] == {"code": "invalid_pin", "message": codes[0]["message"], "tries_left": 2}
    assert codes[1]["tries_left"] == 1
    assert codes[2]["code"] == "last_try_refused"
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["valid"] is True


def test_pin_never_appears_in_logs_traces_or_vectors(pcscd: Pcscd, tmp_path: Path) -> None:
    pin = "7391"
    trace, vector = tmp_path / "trace.json", tmp_path / "vector.json"
    with emulator_process("cps3", "--pin", pin, "--trace", str(trace)):
        logged = subprocess.run(
            mie_command("--log-level", "traffic", "auth", "-r", READER0, "--pin-stdin"),
            input=pin + "\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
        recorded = subprocess.run(
            mie_command("record", "--out", str(vector), "--", "auth", "-r", READER0, "--pin-stdin"),
            input=pin + "\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert logged.returncode == 0 and recorded.returncode == 0, logged.stderr + recorded.stderr
    assert "SEND: 0020000108****************" in logged.stderr
    # Signatures and certificates are random hex that may hold the digits by chance: the PIN
    # block must be absent everywhere, the PIN itself from every command and every non-hex line.
    block = (pin.encode() + b"\xff" * 4).hex()
    for text in (logged.stderr, logged.stdout, trace.read_text(), vector.read_text()):
        assert block not in text.lower()
    for path in (trace, vector):
        commands = [e["c"] for e in json.loads(path.read_text())["exchanges"]]
        assert all(pin.encode().hex() not in c for c in commands)
    prose = [
        line for line in logged.stderr.splitlines() if "SEND:" not in line and "RECV:" not in line
    ]
    assert all(pin not in line for line in prose)


def test_opensc_lists_and_signs_with_the_emulated_cps3(pcscd: Pcscd, tmp_path: Path) -> None:
    module = opensc_pkcs11_module()
    if shutil.which("pkcs15-tool") is None or module is None:
        missing("OpenSC (pkcs15-tool, opensc-pkcs11.so) is not installed (Debian package opensc)")
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420")
    message = b"challenge from the IAM"
    (tmp_path / "in").write_bytes(digest_info + hashlib.sha256(message).digest())
    with emulator_process("cps3", "--pin", "1234"):
        listed = subprocess.run(
            ["pkcs15-tool", "--reader", "0", "--list-certificates"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        signed = subprocess.run(
            [
                "pkcs11-tool",
                "--module",
                str(module),
                "--slot-index",
                "0",
                "--login",
                "--pin",
                "1234",
                "--sign",
                "-m",
                "RSA-PKCS",
                "--id",
                AUT_ID,
                "-i",
                str(tmp_path / "in"),
                "-o",
                str(tmp_path / "sig"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        certificate = subprocess.run(
            ["pkcs15-tool", "--reader", "0", "--read-certificate", AUT_ID],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("X.509 Certificate") == 2
    assert AUT_ID in listed.stdout
    assert signed.returncode == 0, signed.stderr
    key = x509.load_pem_x509_certificate(certificate.stdout.encode()).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify((tmp_path / "sig").read_bytes(), message, padding.PKCS1v15(), hashes.SHA256())


class _PullAfterMse(EmulatedCard):
    """Wraps a card; once MSE SET has been answered, the card is pulled from the reader."""

    def __init__(self, card: EmulatedCard) -> None:
        self.card = card
        self.on_mse = threading.Event()

    @property
    def atr(self) -> bytes:
        return self.card.atr

    def process(self, apdu: bytes) -> bytes:
        if apdu[1] == 0x22:
            self.on_mse.set()
        return self.card.process(apdu)

    def power_on(self) -> None:
        self.card.power_on()

    def power_off(self) -> None:
        self.card.power_off()


def test_card_pulled_between_verify_and_signature_then_next_session_starts_clean(
    pcscd: Pcscd, test_pki_dir: Path
) -> None:
    card = _PullAfterMse(build_card("cps3", CardOptions(pin="1234", pki_dir=test_pki_dir)))
    with attached(card) as host, PcscConnection(READER0) as connection:

        def pull() -> None:
            if card.on_mse.wait(10):
                host.stop()

        threading.Thread(target=pull).start()
        with pytest.raises(CardRemovedError):
            _login(connection)
    settle_after_failure()
    card.on_mse = threading.Event()
    card.on_mse.set()
    with attached(card.card), PcscConnection(READER0) as connection:
        recorder = RecordingConnection(connection)
        _login(recorder)
    status = next(e for e in recorder.exchanges if e.command == "00200001")
    assert status.response[:1] == b"\x63", "the PIN was still verified from the pulled session"


def test_auth_binds_the_nonce_to_the_origin_and_verify_evidence_checks_it(
    pcscd: Pcscd, tmp_path: Path
) -> None:
    nonce, origin = bytes(range(7, 39)), "https://iam.example"
    with emulator_process("cps3", "--pin", "1234"):
        out = _auth("1234", "--nonce", nonce.hex(), "--origin", origin)
        assert out.returncode == 0, out.stderr
        saved = tmp_path / "auth.json"
        saved.write_text(out.stdout)
        # The IAM's side: the CRLs the login downloaded are in the cache (MIE_CRL_DIR).
        verified = _verify_evidence(saved, nonce, origin)
        other_nonce = _verify_evidence(saved, bytes(32), origin)
        other_origin = _verify_evidence(saved, nonce, "https://rogue.example")
    result = json.loads(out.stdout)
    evidence = result["evidence"]
    challenge = bytes.fromhex(evidence["challenge"])
    assert challenge == hashlib.sha256(origin.encode()).digest() + hashlib.sha256(nonce).digest()
    assert (evidence["nonce"], evidence["origin"]) == (nonce.hex(), origin)
    key = x509.load_pem_x509_certificate(evidence["chain"][0].encode()).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(bytes.fromhex(evidence["signature"]), challenge, padding.PKCS1v15(), hashes.SHA256())
    assert verified.returncode == 0, verified.stderr
    assert "level: substantial" in verified.stdout
    identity = result["identity"]
    assert f"({identity['id_type']} {identity['id']})" in verified.stdout
    for refused, code in ((other_nonce, "nonce_mismatch"), (other_origin, "origin_mismatch")):
        assert refused.returncode == 1, refused.stderr
        assert refused.stderr.startswith(f"mie: error: {code}: ")


def test_a_login_through_a_recorder_leaves_no_pin_verified(pcscd: Pcscd) -> None:
    # A login agent keeps its connection open; the recording wrapper passes the login's
    # transaction(reset=True) on, so the card is reset when the login ends.
    with emulator_process("cps3", "--pin", "1234"), PcscConnection(READER0) as connection:
        recorder = RecordingConnection(connection)
        _login(recorder)
        assert any(e.command.startswith("0020000108") for e in recorder.exchanges)
        select = bytes.fromhex("00a4040c") + bytes([len(PKCS15_AID)]) + PKCS15_AID
        _, sw = recorder.send_and_receive(select)
        assert sw == 0x9000
        _, sw = recorder.send_and_receive(bytes.fromhex("00200001"))
    assert sw >> 4 == 0x63C, f"{sw:04X}: the PIN is still verified after the login"
