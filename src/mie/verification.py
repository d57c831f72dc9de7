"""The verifier side: check evidence against what the relying party expects, on any machine.

:func:`verify_evidence` turns :class:`~mie.evidence.Evidence` into an
:class:`~mie.result.AuthResult`, raising on every failure, in this order: the origin and the
nonce the evidence was made for (constant-time compares), the signed challenge bound to both,
the strict parse of the leaf, the signature, then the certificate chain with revocation and the
level. A ``desfire-session`` evidence goes to :func:`mie.desfire.verify.verify_badge_evidence`
and a ``webauthn-assertion`` to :meth:`mie.fido.assertion.FidoVerifier.verify` (each imported
only when one arrives: a verifier of CPx evidence loads no DESFire or FIDO2 code).
:func:`login` is the device side and the verifier side in one process: what ``mie auth`` does.
"""

from __future__ import annotations

import dataclasses
import functools
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mie.core.errors import (
    BadResponseError,
    ErrorCode,
    EvidenceFormatError,
    NonceMismatchError,
    OriginMismatchError,
    SignatureInvalidError,
    VerificationError,
)
from mie.evidence import MAX_CHAIN, Evidence, X509SignatureEvidence
from mie.policy import Factor, LevelPolicy, MieKind, Proof
from mie.request import (
    MAX_NONCE_BYTES,
    MIN_NONCE_BYTES,
    AuthRequest,
    UserVerification,
    bound_challenge,
    check_origin,
)
from mie.result import AuthenticatorInfo, AuthResult
from mie.trust.crl import RevocationStatus
from mie.trust.identity import Identity, identity_from_certificate, parse_nos_card_serial
from mie.trust.login import certificate_report
from mie.trust.parse import load_certificate_der
from mie.trust.verify import Verifier

if TYPE_CHECKING:
    from mie.desfire.verify import BadgeVerifier
    from mie.fido.assertion import FidoVerifier

BADGE_EVIDENCE = "desfire-session"
FIDO_EVIDENCE = "webauthn-assertion"
CARD_AND_PIN = frozenset({Factor.POSSESSION, Factor.KNOWLEDGE})
"""What an ``x509-signature`` of a CPx card proves: the card and, since it signs only after its
PIN was verified, the PIN."""
UNCHECKED_REASONS = ("signature verified", "certificate chain and revocation not checked")


@dataclass(frozen=True)
class Expected:
    """What the relying party expects the evidence to be bound to.

    :param nonce: the nonce it issued (16 to 1024 bytes).
    :param origin: its own origin (see :func:`mie.request.check_origin`).
    :raises ValueError: a nonce of the wrong size or a malformed origin.
    """

    nonce: bytes
    origin: str

    def __post_init__(self) -> None:
        if not isinstance(self.nonce, bytes):
            raise TypeError(f"The nonce must be bytes, not {type(self.nonce).__name__}")
        if not MIN_NONCE_BYTES <= len(self.nonce) <= MAX_NONCE_BYTES:
            raise ValueError(
                f"Nonce of {len(self.nonce)} bytes, not {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES}"
            )
        check_origin(self.origin)


def verify_evidence(
    evidence: Evidence,
    expected: Expected | AuthRequest,
    *,
    verifier: Verifier | None,
    policy: LevelPolicy | None = None,
    authenticator: AuthenticatorInfo | None = None,
    badges: BadgeVerifier | None = None,
    user: UserVerification | None = None,
    fido: FidoVerifier | None = None,
) -> AuthResult:
    """Verify evidence the way an IAM does.

    :param evidence: what the authenticator produced.
    :param expected: the nonce and origin of the request (an :class:`~mie.request.AuthRequest`
        is one).
    :param verifier: checks the certificate chain and revocation (built for authentication
        usage, e.g. :func:`mie.trust.login.login_verifier`); ``None`` is an explicit opt-out: the
        result then carries no level and says the chain was not checked.
    :param policy: the level policy.
    :param authenticator: what was presented, to report in the result. Only its serial is
        checked: it is kept when the certificate that signed binds the same card serial (NOS
        extension), refused when it binds another, dropped when it binds none (a badge's must
        be its UID).
    :param badges: checks ``desfire-session`` evidence (:class:`mie.desfire.verify.BadgeVerifier`:
        the badge configuration, key provider and second-factor store); ``verifier`` is not
        used for it.
    :param user: asked for a badge's second-factor PIN (the verifier checks it); not used for
        ``x509-signature`` evidence, whose card checked its own PIN.
    :param fido: checks ``webauthn-assertion`` evidence (:class:`mie.fido.assertion.FidoVerifier`:
        the FIDO policy and the credential store); ``policy``, when given, is its level table.
    :return: the valid result.
    :raises OriginMismatchError: the evidence was made for another origin.
    :raises NonceMismatchError: the evidence was made for another nonce.
    :raises SignatureInvalidError: the signed challenge is not bound to that origin and nonce,
        or the signature does not verify with the leaf certificate.
    :raises VerificationError: the leaf does not parse (``malformed``), or the chain,
        revocation or level policy check fails (its contract code).
    :raises EvidenceFormatError: a kind of evidence this verifier cannot check (badge evidence
        without ``badges``, FIDO2 evidence without ``fido``), or a presented authenticator whose
        serial is not the one the certificate binds.
    :raises MieError: for badge evidence, what :func:`mie.desfire.verify.verify_badge_evidence`
        raises; for FIDO2 evidence, what :meth:`mie.fido.assertion.FidoVerifier.verify` raises.
    """
    if evidence.type == BADGE_EVIDENCE:
        return _verify_badge(evidence, expected, badges, user, policy, authenticator)
    if evidence.type == FIDO_EVIDENCE:
        if fido is None:
            raise EvidenceFormatError(
                "No FIDO2 verifier configured: webauthn-assertion evidence needs a FIDO policy "
                "and a credential store"
            )
        return fido.verify(evidence, expected, level_policy=policy, authenticator=authenticator)
    if not isinstance(evidence, X509SignatureEvidence):
        raise EvidenceFormatError(f"No verifier for evidence of type {evidence.type!r}")
    _check_binding(evidence, expected)
    leaf = _strict_leaf(evidence.chain[0])
    verify_signature(leaf, evidence.challenge, evidence.signature)
    if verifier is None:
        identity = identity_from_certificate(leaf)
        return AuthResult(
            valid=True,
            authenticator=_bound_serial(authenticator, identity),
            identity=identity,
            reasons=UNCHECKED_REASONS,
            evidence=evidence,
            revocation=RevocationStatus.UNKNOWN,
        )
    result = verifier.verify(evidence.chain[0], evidence.chain[1:])
    if result.chain[0] != evidence.chain[0]:
        # The signature was checked with evidence.chain[0]: the path must start there.
        raise VerificationError(
            ErrorCode.UNTRUSTED, "The verified path does not start at the certificate that signed"
        )
    if len(result.chain) > MAX_CHAIN:
        raise VerificationError(
            ErrorCode.PATH_LENGTH,
            f"The verified path has {len(result.chain)} certificates, evidence holds {MAX_CHAIN}",
        )
    # The level follows what the verifier checked: a key usage it did not check grants low.
    proof = Proof(MieKind.CPX_CARD, CARD_AND_PIN, result, verifier.usage)
    report = certificate_report(result, proof, policy)
    return AuthResult(
        valid=True,
        authenticator=_bound_serial(authenticator, report.identity),
        identity=report.identity,
        level=report.level,
        reasons=("signature verified", *report.reasons, f"revocation {report.revocation.value}"),
        evidence=dataclasses.replace(evidence, chain=report.chain_der),
        revocation=report.revocation,
    )


def _verify_badge(
    evidence: Evidence,
    expected: Expected | AuthRequest,
    badges: BadgeVerifier | None,
    user: UserVerification | None,
    policy: LevelPolicy | None,
    authenticator: AuthenticatorInfo | None,
) -> AuthResult:
    if badges is None:
        raise EvidenceFormatError(
            "No badge verifier configured: desfire-session evidence needs a badge configuration"
        )
    # Loaded only now: the DESFire session code is the badge verifier's alone.
    from mie.desfire.evidence import DesfireSessionEvidence
    from mie.desfire.verify import verify_badge_evidence

    if not isinstance(evidence, DesfireSessionEvidence):
        raise EvidenceFormatError(f"No verifier for evidence of type {evidence.type!r}")
    return verify_badge_evidence(
        evidence, expected, badges, user=user, policy=policy, authenticator=authenticator
    )


@functools.lru_cache(maxsize=64)
def _strict_leaf(der: bytes) -> x509.Certificate:
    # The strict parse costs about 1 ms and depends on the bytes only: a card logging in 50
    # times a shift pays it once per process (a parse error is raised again, never cached).
    return load_certificate_der(der, "evidence leaf certificate")


def _bound_serial(
    authenticator: AuthenticatorInfo | None, identity: Identity | None
) -> AuthenticatorInfo | None:
    """The presented authenticator, with its serial only if the verified certificate binds it.

    A saved result or a workstation's claim is not evidence: a serial the certificate that
    signed does not bind is dropped, one it contradicts is refused. None is invented: a
    device configured not to trust the certificate's serial (``SerialBinding.NONE``) reports
    none, and so does the result.
    """
    if authenticator is None or authenticator.serial is None:
        return authenticator
    bound = None
    if identity is not None and identity.card_serial is not None:
        try:
            bound = parse_nos_card_serial(identity.card_serial)
        except BadResponseError:
            bound = None
    if bound is None:
        return dataclasses.replace(authenticator, serial=None)
    if authenticator.serial != bound:
        raise EvidenceFormatError(
            f"The authenticator names card {authenticator.serial!r:.40}, "
            f"the certificate that signed names card {bound}"
        )
    return authenticator


def _check_binding(evidence: X509SignatureEvidence, expected: Expected | AuthRequest) -> None:
    # Constant-time compares: the nonce is the relying party's secret for the session.
    if not hmac.compare_digest(evidence.origin.encode(), expected.origin.encode()):
        raise OriginMismatchError("The evidence was made for another origin")
    if not hmac.compare_digest(evidence.nonce, expected.nonce):
        raise NonceMismatchError("The evidence was made for another nonce")
    bound = bound_challenge(expected.origin, expected.nonce)
    if not hmac.compare_digest(evidence.challenge, bound):
        raise SignatureInvalidError(
            "The signed challenge is not SHA-256(origin) || SHA-256(nonce) of this request"
        )


def verify_signature(certificate: x509.Certificate, challenge: bytes, signature: bytes) -> None:
    """Check a PKCS#1 v1.5 SHA-256 signature of ``challenge`` with the certificate's RSA key.

    :param certificate: a strictly parsed certificate (its public key loads).
    :raises SignatureInvalidError: not an RSA key, a signature of the wrong length, or one that
        does not verify.
    """
    verify_rsa_signature(certificate.public_key(), challenge, signature)


def verify_rsa_signature(key: object, challenge: bytes, signature: bytes) -> None:
    """Check a PKCS#1 v1.5 SHA-256 signature of ``challenge`` with an authentication key.

    :param key: the public key of the certificate that signed.
    :raises SignatureInvalidError: not an RSA key, a signature of the wrong length, or one that
        does not verify.
    """
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureInvalidError("The authentication certificate does not hold an RSA key")
    size = (key.key_size + 7) // 8
    if len(signature) != size:
        raise SignatureInvalidError(
            f"Signature of {len(signature)} bytes, the {key.key_size}-bit key makes {size}"
        )
    try:
        key.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as e:
        raise SignatureInvalidError("The signature does not verify with the certificate") from e


class Proving(Protocol):
    """What :func:`login` needs of an authenticator (:class:`mie.auth.Authenticator` is one)."""

    @property
    def info(self) -> AuthenticatorInfo:
        """What was presented, as far as it was read."""
        ...

    def authenticate(
        self, request: AuthRequest, *, user: UserVerification | None = None
    ) -> Evidence:
        """Produce evidence for ``request``."""
        ...

    def accepted(self, evidence: Evidence, *, chain_verified: bool) -> None:
        """The evidence verified."""
        ...

    def rejected(self, evidence: Evidence) -> None:
        """The evidence was refused."""
        ...


def login(
    authenticator: Proving,
    request: AuthRequest,
    *,
    user: UserVerification | None,
    verifier: Verifier | None,
    policy: LevelPolicy | None = None,
    badges: BadgeVerifier | None = None,
    fido: FidoVerifier | None = None,
) -> AuthResult:
    """Authenticate on the device and verify the evidence in the same process.

    The authenticator hears the outcome: :meth:`~mie.auth.Authenticator.accepted` after a
    verification that passed (with whether the chain was checked), and
    :meth:`~mie.auth.Authenticator.rejected` when it raised (a certificate cache forgets the
    certificate).

    :param authenticator: the presented authenticator.
    :param request: the nonce and origin to bind the evidence to, and the requirements.
    :param user: asked for the PIN when one is needed: by a card during its authentication, by
        the badge verifier after the badge session (the second factor).
    :param verifier: see :func:`verify_evidence`.
    :param policy: the level policy.
    :param badges: see :func:`verify_evidence`.
    :param fido: see :func:`verify_evidence`.
    :return: the valid result.
    :raises MieError: whatever authentication or verification raised.
    """
    evidence = authenticator.authenticate(request, user=user)
    try:
        result = verify_evidence(
            evidence,
            request,
            verifier=verifier,
            policy=policy,
            authenticator=authenticator.info,
            badges=badges,
            user=user,
            fido=fido,
        )
    except BaseException:
        authenticator.rejected(evidence)
        raise
    authenticator.accepted(evidence, chain_verified=verifier is not None)
    return result


__all__ = [
    "CARD_AND_PIN",
    "UNCHECKED_REASONS",
    "Expected",
    "Proving",
    "login",
    "verify_evidence",
    "verify_signature",
]
