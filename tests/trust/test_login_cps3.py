"""login() on an emulated CPS3: the device side and the verifier side in one process, and the
same evidence verified again elsewhere, as an IAM would."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mie.auth import CpxAuthenticator
from mie.certcache import CertificateCache
from mie.core.errors import ErrorCode, NonceMismatchError, OriginMismatchError
from mie.emulation.base import EmulatedCard, EmulatedConnection
from mie.emulation.registry import CardOptions, build_card
from mie.emulation.testpki import TestPki
from mie.evidence import load_evidence_file
from mie.policy import AssuranceLevel
from mie.request import AuthRequest, StaticPin
from mie.result import AuthResult
from mie.trust import RevocationStatus, VerificationError
from mie.trust.parse import load_certificate_der
from mie.trust.verify import Verifier
from mie.verification import Expected, login, verify_evidence
from tests.cards.pki import pki_verifier

ORIGIN = "https://iam.example"
PIN = "4826"


@pytest.fixture
def options(test_pki_dir: Path) -> CardOptions:
    return CardOptions(pin=PIN, pki_dir=test_pki_dir)


def _authenticator(
    options: CardOptions, cache: CertificateCache | None = None, card: EmulatedCard | None = None
) -> CpxAuthenticator:
    card = card or build_card("cps3", options)
    return CpxAuthenticator(EmulatedConnection(card), cache=cache)


def _login(authenticator: CpxAuthenticator, verifier: Verifier | None) -> AuthResult:
    return login(authenticator, AuthRequest.new(ORIGIN), user=StaticPin(PIN), verifier=verifier)


def test_login_then_an_iam_verifies_the_saved_result(
    options: CardOptions, test_pki_dir: Path, tmp_path: Path
) -> None:
    pki = TestPki.load(test_pki_dir)
    request = AuthRequest.new(ORIGIN)
    authenticator = _authenticator(options)
    result = login(authenticator, request, user=StaticPin(PIN), verifier=pki_verifier(pki))
    assert result.valid and result.level is AssuranceLevel.SUBSTANTIAL
    assert result.revocation is RevocationStatus.GOOD
    assert result.authenticator == authenticator.info
    assert result.authenticator is not None and result.authenticator.serial == "2800000001"
    data = result.to_json()
    evidence = data["evidence"]
    challenge = bytes.fromhex(evidence["challenge"])
    nonce = hashlib.sha256(request.nonce).digest()
    assert challenge == hashlib.sha256(ORIGIN.encode()).digest() + nonce
    assert evidence["nonce"] == request.nonce.hex() and evidence["origin"] == ORIGIN
    leaf = load_certificate_der(result.evidence.chain[0], "leaf")  # type: ignore[union-attr]
    key = leaf.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(bytes.fromhex(evidence["signature"]), challenge, padding.PKCS1v15(), hashes.SHA256())

    saved = tmp_path / "auth.json"
    saved.write_text(json.dumps(data))
    again, info = load_evidence_file(saved)
    assert info == result.authenticator
    verified = verify_evidence(again, Expected(request.nonce, ORIGIN), verifier=pki_verifier(pki))
    assert (verified.identity, verified.level) == (result.identity, result.level)
    with pytest.raises(NonceMismatchError):
        verify_evidence(again, Expected(bytes(32), ORIGIN), verifier=pki_verifier(pki))
    with pytest.raises(OriginMismatchError):
        verify_evidence(
            again, Expected(request.nonce, "https://rogue.example"), verifier=pki_verifier(pki)
        )


def test_a_rejected_login_leaves_nothing_in_the_cache(
    options: CardOptions, test_pki_dir: Path
) -> None:
    pki = TestPki.load(test_pki_dir)
    card = build_card("cps3", options)
    certificate = _authenticator(options, card=card).identify().certificate
    assert certificate is not None
    cache = CertificateCache()
    revoked = pki_verifier(pki, revoked=[certificate.serial_number])
    with pytest.raises(VerificationError) as caught:
        _login(_authenticator(options, cache, card), revoked)
    assert caught.value.code is ErrorCode.REVOKED
    assert len(cache) == 0
    _login(_authenticator(options, cache, card), pki_verifier(pki))
    assert len(cache) == 1


def test_unchecked_login(options: CardOptions) -> None:
    result = _login(_authenticator(options), None)
    assert result.valid and result.level is None
    assert result.reasons == ("signature verified", "certificate chain and revocation not checked")
