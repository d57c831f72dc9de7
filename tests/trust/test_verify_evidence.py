"""verify_evidence: what an IAM checks, and every way evidence can be refused (issue 8, "Bad input
and faults")."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from mie.core.errors import (
    ErrorCode,
    EvidenceFormatError,
    MieError,
    NonceMismatchError,
    OriginMismatchError,
    SignatureInvalidError,
)
from mie.emulation.testpki import CardCredentials, CardIdentity, Gamme, default_rpps
from mie.emulation.testpki import TestPki as Pki
from mie.evidence import Evidence, X509SignatureEvidence
from mie.policy import AssuranceLevel
from mie.request import AuthRequest, bound_challenge
from mie.result import AuthenticatorInfo, AuthResult
from mie.trust import (
    Anchor,
    RevocationMode,
    RevocationStatus,
    TrustStore,
    VerificationError,
    VerifierBuilder,
    identity_from_certificate,
)
from mie.trust.login import login_verifier
from mie.trust.verify import Usage
from mie.verification import UNCHECKED_REASONS, Expected, login, verify_evidence
from tests.cards.pki import pki_verifier
from tests.trust.evidence_kit import NONCE, ORIGIN, der, signed_evidence

EXPECTED = Expected(NONCE, ORIGIN)


@pytest.fixture(scope="module")
def other_card(pki: Pki) -> CardCredentials:
    return pki.issue_card(CardIdentity("RPPS", default_rpps(), "CPS"), "2800000002")


def test_evidence_verifies_like_an_iam(pki: Pki, cps: CardCredentials) -> None:
    evidence = signed_evidence(cps.authentication)
    info = AuthenticatorInfo("cps3", "2800000001", None)
    result = verify_evidence(evidence, EXPECTED, verifier=pki_verifier(pki), authenticator=info)
    assert result.valid and result.error is None and result.authenticator is info
    assert result.level is AssuranceLevel.SUBSTANTIAL
    assert result.revocation is RevocationStatus.GOOD
    assert result.identity is not None and result.identity.test_card is True
    assert result.identity == identity_from_certificate(cps.authentication.certificate)
    assert result.reasons[0] == "signature verified" and result.reasons[-1] == "revocation good"
    # The result carries the verified path, leaf first, and still the signed bytes.
    assert isinstance(result.evidence, X509SignatureEvidence)
    path = [c.public_bytes(serialization.Encoding.DER) for c in cps.chain]
    assert result.evidence.chain == (der(cps.authentication), *path)
    data = result.to_json()["evidence"]
    challenge = bytes.fromhex(data["challenge"])
    assert challenge == hashlib.sha256(ORIGIN.encode()).digest() + hashlib.sha256(NONCE).digest()
    key = cps.authentication.certificate.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(bytes.fromhex(data["signature"]), challenge, padding.PKCS1v15(), hashes.SHA256())
    assert data["revocation"] == "good"


@pytest.mark.parametrize("verified", [True, False])
def test_the_reported_serial_is_the_one_the_certificate_binds(
    pki: Pki, cps: CardCredentials, verified: bool
) -> None:
    evidence = signed_evidence(cps.authentication)
    verifier = pki_verifier(pki) if verified else None
    # A saved result or a workstation may claim any serial: the certificate decides.
    claimed = AuthenticatorInfo("cps3", "2800000001", None)
    result = verify_evidence(evidence, EXPECTED, verifier=verifier, authenticator=claimed)
    assert result.authenticator == claimed
    unclaimed = AuthenticatorInfo("cps3", None, None)
    result = verify_evidence(evidence, EXPECTED, verifier=verifier, authenticator=unclaimed)
    assert result.authenticator == unclaimed
    forged = AuthenticatorInfo("cps3", "2800000002", None)
    with pytest.raises(EvidenceFormatError, match="certificate that signed names card 2800000001"):
        verify_evidence(evidence, EXPECTED, verifier=verifier, authenticator=forged)


def test_an_auth_request_is_an_expectation(pki: Pki, cps: CardCredentials) -> None:
    request = AuthRequest(NONCE, ORIGIN)
    result = verify_evidence(
        signed_evidence(cps.authentication), request, verifier=pki_verifier(pki)
    )
    assert result.level is AssuranceLevel.SUBSTANTIAL


def test_without_a_verifier_the_chain_is_not_checked(cps: CardCredentials) -> None:
    result = verify_evidence(signed_evidence(cps.authentication), EXPECTED, verifier=None)
    assert result.valid and result.level is None
    assert result.reasons == UNCHECKED_REASONS
    assert result.revocation is RevocationStatus.UNKNOWN
    assert result.to_json()["evidence"]["revocation"] == "unknown"
    assert result.identity is not None


def _json_case(change: Callable[[dict[str, Any]], None]) -> Callable[..., Evidence]:
    def make(cps: CardCredentials, other: CardCredentials) -> Evidence:
        data = signed_evidence(cps.authentication).to_json()
        change(data)
        return Evidence.from_json(json.loads(json.dumps(data)))

    return make


def _unknown_type(d: dict[str, Any]) -> None:
    d["type"] = "u2f-signature"  # webauthn-assertion is a kind since issue 10


def _missing_key(d: dict[str, Any]) -> None:
    del d["signature"]


def _extra_key(d: dict[str, Any]) -> None:
    d["level"] = "high"


def _evidence_null(d: dict[str, Any]) -> None:
    d.clear()


CASES: dict[str, tuple[Callable[..., Evidence], type[MieError], ErrorCode]] = {
    "unknown type": (_json_case(_unknown_type), EvidenceFormatError, ErrorCode.MALFORMED),
    "missing key": (_json_case(_missing_key), EvidenceFormatError, ErrorCode.MALFORMED),
    "extra key": (_json_case(_extra_key), EvidenceFormatError, ErrorCode.MALFORMED),
    "empty object": (_json_case(_evidence_null), EvidenceFormatError, ErrorCode.MALFORMED),
    "other nonce": (
        lambda cps, other: signed_evidence(cps.authentication, nonce=b"\x01" * 32),
        NonceMismatchError,
        ErrorCode.NONCE_MISMATCH,
    ),
    "other origin": (
        lambda cps, other: signed_evidence(cps.authentication, origin="https://rogue.example"),
        OriginMismatchError,
        ErrorCode.ORIGIN_MISMATCH,
    ),
    "another card's leaf": (
        lambda cps, other: signed_evidence(cps.authentication, leaf=other.authentication),
        SignatureInvalidError,
        ErrorCode.SIGNATURE_INVALID,
    ),
    # A card that signed whatever it was handed: the relying party's nonce, not bound to it.
    "challenge not bound": (
        lambda cps, other: signed_evidence(
            cps.authentication, challenge=hashlib.sha512(NONCE).digest()
        ),
        SignatureInvalidError,
        ErrorCode.SIGNATURE_INVALID,
    ),
    "challenge bound to another origin": (
        lambda cps, other: signed_evidence(
            cps.authentication, challenge=bound_challenge("https://rogue.example", NONCE)
        ),
        SignatureInvalidError,
        ErrorCode.SIGNATURE_INVALID,
    ),
    "signature of other bytes": (
        lambda cps, other: dataclasses.replace(
            signed_evidence(cps.authentication),
            signature=signed_evidence(cps.authentication, nonce=b"\x02" * 32).signature,
        ),
        SignatureInvalidError,
        ErrorCode.SIGNATURE_INVALID,
    ),
    "truncated signature": (
        lambda cps, other: dataclasses.replace(
            signed_evidence(cps.authentication),
            signature=signed_evidence(cps.authentication).signature[:-1],
        ),
        SignatureInvalidError,
        ErrorCode.SIGNATURE_INVALID,
    ),
    "leaf that does not parse": (
        lambda cps, other: dataclasses.replace(
            signed_evidence(cps.authentication), chain=(der(cps.authentication)[:-1],)
        ),
        VerificationError,
        ErrorCode.MALFORMED,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_evidence(
    pki: Pki, cps: CardCredentials, other_card: CardCredentials, case: str
) -> None:
    make, error, code = CASES[case]
    with pytest.raises(error) as caught:
        evidence = make(cps, other_card)
        verify_evidence(evidence, EXPECTED, verifier=pki_verifier(pki))
    assert caught.value.code is code
    assert "\n" not in str(caught.value)


def test_origin_is_checked_before_the_nonce(pki: Pki, cps: CardCredentials) -> None:
    evidence = signed_evidence(cps.authentication, nonce=b"\x01" * 32, origin="https://a.example")
    with pytest.raises(OriginMismatchError):
        verify_evidence(evidence, EXPECTED, verifier=pki_verifier(pki))


def test_verifier_without_the_test_anchors_is_untrusted(
    pki: Pki, cps: CardCredentials, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIE_TRUST_DIR", str(tmp_path / "trust"))
    monkeypatch.setenv("MIE_CRL_DIR", str(tmp_path / "crl"))
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki.intermediates[Gamme.FORT].certificate_pem())
    verifier = login_verifier(intermediates=[ca], download=False)
    with pytest.raises(VerificationError) as caught:
        verify_evidence(signed_evidence(cps.authentication), EXPECTED, verifier=verifier)
    assert caught.value.code is ErrorCode.UNTRUSTED


def test_a_revoked_card_is_refused(pki: Pki, cps: CardCredentials) -> None:
    verifier = pki_verifier(pki, revoked=[cps.authentication.certificate.serial_number])
    with pytest.raises(VerificationError) as caught:
        verify_evidence(signed_evidence(cps.authentication), EXPECTED, verifier=verifier)
    assert caught.value.code is ErrorCode.REVOKED


def test_evidence_read_back_from_a_result_verifies_again(pki: Pki, cps: CardCredentials) -> None:
    first = verify_evidence(
        signed_evidence(cps.authentication), EXPECTED, verifier=pki_verifier(pki)
    )
    saved = AuthResult.from_json(json.loads(json.dumps(first.to_json())))
    assert saved.evidence is not None
    again = verify_evidence(saved.evidence, EXPECTED, verifier=pki_verifier(pki))
    assert (again.identity, again.level, again.reasons) == (
        first.identity,
        first.level,
        first.reasons,
    )
    assert again.to_json()["evidence"] == first.to_json()["evidence"]


def test_evidence_of_a_kind_without_a_verifier(cps: CardCredentials) -> None:
    @dataclasses.dataclass(frozen=True)
    class Future(Evidence):
        type = "future-kind"
        nonce: bytes = NONCE
        origin: str = ORIGIN

        def to_json(self) -> dict[str, Any]:
            return {"type": self.type}

        @classmethod
        def _parse(cls, obj: Any) -> Future:
            return cls()

    with pytest.raises(EvidenceFormatError, match="future-kind"):
        verify_evidence(Future(), EXPECTED, verifier=None)


class _Signer:
    """The device side reduced to its contract: signs the bound challenge with a TEST card key
    and records what the verifier told it."""

    def __init__(self, card: CardCredentials, *, origin: str | None = None) -> None:
        self.card = card
        self.origin = origin
        self.heard: list[tuple[str, object]] = []

    @property
    def info(self) -> AuthenticatorInfo:
        return AuthenticatorInfo("cps3", "2800000001", None)

    def authenticate(self, request: AuthRequest, *, user: object = None) -> Evidence:
        origin = self.origin or request.origin
        return signed_evidence(self.card.authentication, nonce=request.nonce, origin=origin)

    def accepted(self, evidence: Evidence, *, chain_verified: bool) -> None:
        self.heard.append(("accepted", chain_verified))

    def rejected(self, evidence: Evidence) -> None:
        self.heard.append(("rejected", evidence))


@pytest.mark.parametrize("checked", [True, False])
def test_login_tells_the_authenticator_it_was_accepted(
    pki: Pki, cps: CardCredentials, checked: bool
) -> None:
    signer = _Signer(cps)
    request = AuthRequest.new(ORIGIN)
    result = login(signer, request, user=None, verifier=pki_verifier(pki) if checked else None)
    assert result.authenticator == signer.info
    assert result.evidence is not None and result.evidence.nonce == request.nonce
    assert signer.heard == [("accepted", checked)]


def test_login_tells_the_authenticator_it_was_rejected(pki: Pki, cps: CardCredentials) -> None:
    signer = _Signer(cps, origin="https://rogue.example")
    with pytest.raises(OriginMismatchError):
        login(signer, AuthRequest.new(ORIGIN), user=None, verifier=pki_verifier(pki))
    assert [what for what, _ in signer.heard] == ["rejected"]


def test_a_verifier_that_checks_no_key_usage_grants_low(pki: Pki, cps: CardCredentials) -> None:
    verifier = dataclasses.replace(pki_verifier(pki), usage=Usage.ANY)
    result = verify_evidence(signed_evidence(cps.authentication), EXPECTED, verifier=verifier)
    assert result.level is AssuranceLevel.LOW
    assert "not verified as an authentication certificate" in result.reasons


def _deep_chain(intermediates: int) -> tuple[Any, Any, list[Any]]:
    """A root, ``intermediates`` CAs below it in a line, and a leaf under the last."""
    from mie.emulation.testpki import Issued
    from tests.trust.conftest import make_cert, person

    def fresh() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    key = fresh()
    unsigned = Issued(None, key)  # type: ignore[arg-type]
    root = make_cert(unsigned, name("Deep root"), ca=True, issuer_name=name("Deep root"), key=key)
    issuer, cas = root, []
    for depth in range(intermediates):
        issuer = make_cert(issuer, name(f"Deep CA {depth}"), ca=True, key=fresh())
        cas.append(issuer)
    return root, make_cert(issuer, person(), key=fresh()), cas


@pytest.mark.parametrize(
    ("intermediates", "depth", "code"),
    [(8, 8, None), (8, 7, ErrorCode.UNTRUSTED), (9, 9, ErrorCode.PATH_LENGTH)],
)
def test_a_long_verified_path_is_a_result_or_a_typed_error(
    intermediates: int, depth: int, code: ErrorCode | None
) -> None:
    # The verified path (leaf, intermediates, anchor) is longer than the chain the evidence
    # carried: the result holds it and reads back, or verify_evidence raises a mie error (here
    # the depth limit, or a path no result could carry), never the evidence constructor's
    # ValueError (it did for 8 intermediates, the default depth).
    root, leaf, cas = _deep_chain(intermediates)
    evidence = signed_evidence(leaf)
    evidence = dataclasses.replace(evidence, chain=(der(leaf), *map(der, cas[1:])))
    anchor = Anchor.from_certificate(root.certificate, "explicit", True)
    store = TrustStore([anchor], [cas[0].certificate])
    verifier = (
        VerifierBuilder()
        .store(store)
        .usage(Usage.AUTH)
        .revocation(RevocationMode.SOFT)
        .max_depth(depth)
        .build()
    )
    if code is not None:
        with pytest.raises(VerificationError) as raised:
            verify_evidence(evidence, EXPECTED, verifier=verifier)
        assert raised.value.code is code
        return
    result = verify_evidence(evidence, EXPECTED, verifier=verifier)
    assert isinstance(result.evidence, X509SignatureEvidence)
    assert len(result.evidence.chain) == intermediates + 2
    back = Evidence.from_json(json.loads(json.dumps(result.evidence.to_json())))
    assert back == result.evidence


def test_a_verifier_that_checks_another_leaf_is_refused(
    pki: Pki, cps: CardCredentials, other_card: CardCredentials
) -> None:
    # The signature is checked with the evidence's leaf: a path that starts elsewhere (a
    # verifier subclass or wrapper that swaps it) gives no identity of that other certificate.
    base = pki_verifier(pki)

    class Swapping(type(base)):  # type: ignore[misc]
        def verify(self, leaf: Any, intermediates: Any = ()) -> Any:
            return super().verify(other_card.authentication.certificate, intermediates)

    verifier = Swapping(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)})
    with pytest.raises(VerificationError) as raised:
        verify_evidence(signed_evidence(cps.authentication), EXPECTED, verifier=verifier)
    assert raised.value.code is ErrorCode.UNTRUSTED
