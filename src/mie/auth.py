"""Authenticators: the device side of an authentication.

An :class:`Authenticator` wraps one connection. :meth:`~Authenticator.identify` reads who the
authenticator belongs to without a PIN; :meth:`~Authenticator.authenticate` answers an
:class:`~mie.request.AuthRequest`: it asks the :class:`~mie.request.UserVerification` for the PIN
when one is needed (at most once), has the card sign the request's bound challenge
``SHA-256(origin) ‖ SHA-256(nonce)``, checks the signature against the certificate on the host
and returns the :class:`~mie.evidence.Evidence`. The verifier side
(:func:`mie.verification.verify_evidence`, or :func:`mie.verification.login` for both) checks
the evidence, the chain and the level, then calls :meth:`~Authenticator.accepted` or
:meth:`~Authenticator.rejected`. Every failure raises (see :mod:`mie.errors`).
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum, unique
from typing import Any, overload

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from mie.cards.cps4 import Cps4Session
from mie.cards.cpx import (
    CPX_PIN,
    Cps3ContactlessSession,
    CpxFamily,
    CpxSession,
    detect_family,
    parse_nos_card_serial,
)
from mie.certcache import CertificateCache as CertificateCache
from mie.core.connection import Connection, SmartCardConnection, Transport
from mie.core.errors import (
    ApduError,
    BadResponseError,
    SignatureInvalidError,
    UnsupportedCardError,
)
from mie.evidence import Evidence as Evidence
from mie.evidence import X509SignatureEvidence
from mie.policy import LevelPolicy, decide_level
from mie.request import AuthRequest, StaticPin, UserVerification
from mie.result import AuthenticatorInfo
from mie.result import CardInfo as CardInfo
from mie.result import Identification as Identification
from mie.trust.errors import VerificationError, describe
from mie.trust.identity import LAZY_PARSE_ERRORS, Identity, identity_from_certificate
from mie.trust.parse import parse_certificate_der
from mie.trust.verify import Usage, Verifier

logger = logging.getLogger(__name__)

MIN_CHALLENGE = 16
# Evidence handed out and not yet accepted or rejected; a caller that never calls either
# leaves at most this many behind.
MAX_PENDING = 16


# --- Deprecated: the result types of authenticate(challenge, pin), removed in commit F. ---


@dataclass(frozen=True)
class LegacyEvidence:
    """Deprecated (use :class:`mie.evidence.X509SignatureEvidence`): what the deprecated
    ``authenticate(challenge, pin)`` signed.

    :param challenge: the challenge the card signed (as SHA-256 DigestInfo, PKCS#1 v1.5).
    :param signature: the card's signature.
    :param chain: the certificates, leaf first, DER.
    :param revocation: ``good``, ``revoked`` or ``unknown``.
    """

    challenge: bytes
    signature: bytes
    chain: list[bytes]
    revocation: str = "unknown"

    def to_json(self) -> dict[str, Any]:
        """:return: the ``evidence`` object of the JSON contract (chain as PEM)."""
        pems = [
            x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode()
            for der in self.chain
        ]
        return {
            "challenge": self.challenge.hex(),
            "signature": self.signature.hex(),
            "chain": pems,
            "revocation": self.revocation,
        }


@dataclass(frozen=True)
class ChainReport:
    """Deprecated: the outcome of the chain, revocation and policy checks of a certificate.

    :param identity: the holder's identity, if checked.
    :param level: the eIDAS level the RIE grants (``low``, ``substantial``, ``high``) or ``None``.
    :param revocation: ``good``, ``revoked`` or ``unknown``.
    :param reasons: why the level is what it is.
    :param chain: the validated chain, leaf first.
    """

    identity: Identity | None
    level: str | None
    revocation: str
    reasons: list[str] = field(default_factory=list)
    chain: list[x509.Certificate] = field(default_factory=list)


ChainChecker = Callable[[x509.Certificate, Sequence[x509.Certificate]], ChainReport]


def chain_checker(verifier: Verifier, policy: LevelPolicy | None = None) -> ChainChecker:
    """Deprecated (use :func:`mie.verification.login`): the chain check of the deprecated
    ``authenticate(challenge, pin)``, from a :class:`~mie.trust.Verifier`.

    :raises VerificationError: (from the returned checker) with the contract code.
    """

    def check(leaf: x509.Certificate, intermediates: Sequence[x509.Certificate]) -> ChainReport:
        result = verifier.verify(leaf, intermediates)
        identity = identity_from_certificate(result.leaf)
        if result.anchor.test and not identity.test_card:
            identity = dataclasses.replace(identity, test_card=True)
        decision = decide_level(result, Usage.AUTH, policy)
        chain = [x509.load_der_x509_certificate(der) for der in result.chain]
        level = decision.level.value if decision.level is not None else None
        reasons = [*decision.reasons, f"revocation {result.revocation.value}"]
        return ChainReport(identity, level, result.revocation.value, reasons, chain)

    return check


@dataclass(frozen=True)
class AuthResult:
    """Deprecated (use :class:`mie.result.AuthResult`): what ``authenticate(challenge, pin)``
    returns."""

    authenticator: AuthenticatorInfo
    identity: Identity | None
    level: str | None
    reasons: list[str]
    evidence: LegacyEvidence

    def to_json(self) -> dict[str, Any]:
        """:return: the ``AuthResult`` object of the JSON contract, ``valid`` true."""
        return {
            "valid": True,
            "error": None,
            "authenticator": self.authenticator.to_json(),
            "identity": self.identity.to_json() if self.identity is not None else None,
            "level": self.level,
            "reasons": list(self.reasons),
            "evidence": self.evidence.to_json(),
        }


# --- The device side. ---


@unique
class SerialBinding(Enum):
    """Which card serial an authenticator reports, and what EF.SN is checked against.

    The authentication certificate of a CPx card carries the NOS extension 1.2.250.1.71.1.2.3,
    ``8025000001/<serial>``; that it is the serial EF.SN holds is inferred from its value
    (``ans-pki.md`` §4.1), hence the choice.
    """

    #: The serial is the certificate's (the extension); EF.SN must hold the same one, or the card
    #: answer is refused (:class:`~mie.errors.BadResponseError`). A certificate without the
    #: extension gives no serial to an authentication.
    CERTIFICATE = "certificate"
    #: The extension is not read as a card serial: nothing binds EF.SN to the certificate, so an
    #: authentication reports no serial (identification still shows EF.SN, unverified).
    NONE = "none"


def load_certificate(der: bytes) -> x509.Certificate:
    """Parse a certificate read from a card, strictly, and check its public key loads.

    :raises BadResponseError: it does not parse (in either parser) or its key cannot be loaded.
    """
    try:
        certificate = parse_certificate_der(der, "the card's authentication certificate")
    except VerificationError as e:
        raise BadResponseError(e.message) from e
    _public_key(certificate)
    return certificate


def _public_key(certificate: x509.Certificate) -> CertificatePublicKeyTypes:
    try:
        return certificate.public_key()
    except LAZY_PARSE_ERRORS as e:
        raise BadResponseError(
            f"The card's certificate holds a key that cannot be loaded: {describe(e)}"
        ) from e


def card_identity(certificate: x509.Certificate) -> Identity:
    """Read the holder's identity from a card certificate.

    :raises BadResponseError: the certificate holds no well-formed identity (a bad card answer).
    """
    try:
        return identity_from_certificate(certificate)
    except (VerificationError, *LAZY_PARSE_ERRORS) as e:
        message = e.message if isinstance(e, VerificationError) else describe(e)
        raise BadResponseError(f"The card's certificate holds no valid identity: {message}") from e


def verify_signature(certificate: x509.Certificate, challenge: bytes, signature: bytes) -> None:
    """Check a PKCS#1 v1.5 SHA-256 signature of ``challenge`` with the certificate's RSA key.

    :raises SignatureInvalidError: wrong length, wrong key or wrong signature.
    :raises BadResponseError: the certificate's key cannot be loaded.
    """
    key = _public_key(certificate)
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureInvalidError("The authentication certificate does not hold an RSA key")
    expected = (key.key_size + 7) // 8
    if len(signature) != expected:
        raise SignatureInvalidError(
            f"Signature of {len(signature)} bytes, the {key.key_size}-bit key makes {expected}"
        )
    try:
        key.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as e:
        raise SignatureInvalidError("The signature does not verify with the certificate") from e


class Authenticator(abc.ABC):
    """One presented authenticator (card, badge or key); closing it closes its connection."""

    connection: Connection

    def close(self) -> None:
        """Release the connection (a PC/SC card is reset, so no verified PIN state remains)."""
        self.connection.close()

    def __enter__(self) -> Authenticator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    @abc.abstractmethod
    def info(self) -> AuthenticatorInfo:
        """What was presented; the serial is filled once it was read (and bound, for a CPx card)."""

    @abc.abstractmethod
    def identify(self) -> Identification:
        """Read who the authenticator belongs to, without PIN."""

    @abc.abstractmethod
    def authenticate(
        self, request: AuthRequest, *, user: UserVerification | None = None
    ) -> Evidence:
        """Prove possession (and the PIN, when the request asks for user verification) for
        ``request``; raise on any failure.

        :param request: the relying party's nonce, origin and requirements.
        :param user: asked for the PIN only when one is needed, at most once; when it raises,
            nothing more is sent and the exception propagates.
        :return: the evidence, for :func:`mie.verification.verify_evidence`.
        """

    def accepted(self, evidence: Evidence, *, chain_verified: bool) -> None:  # noqa: B027
        """The verifier accepted ``evidence`` (``chain_verified``: its chain was checked)."""

    def rejected(self, evidence: Evidence) -> None:  # noqa: B027
        """The verifier refused ``evidence``."""


@dataclass(frozen=True)
class _Signed:
    """What the card session produced: the certificate that verified the signature, and how."""

    der: bytes
    certificate: x509.Certificate
    challenge: bytes
    signature: bytes
    # EF.SN as read in this session; None on the warm path, which reads no EF.SN.
    ef_sn: str | None
    from_cache: bool


def _cps4_signature(session: Cps4Session, certificate: x509.Certificate, challenge: bytes) -> bytes:
    key = _public_key(certificate)
    if not isinstance(key, rsa.RSAPublicKey):
        raise UnsupportedCardError("The CPS4 authentication key is not RSA")
    session.key_bytes = (key.key_size + 7) // 8
    return session.sign_challenge(challenge)


def _cps4_signed(
    session: Cps4Session,
    der: bytes,
    certificate: x509.Certificate,
    challenge: bytes,
    ef_sn: str,
    *,
    from_cache: bool,
) -> _Signed:
    signature = _cps4_signature(session, certificate, challenge)
    verify_signature(certificate, challenge, signature)
    return _Signed(der, certificate, challenge, signature, ef_sn, from_cache)


def open_authenticator(
    reader: str | None = None,
    *,
    check_chain: ChainChecker | None,
    cache: CertificateCache | None = None,
    serial_binding: SerialBinding = SerialBinding.CERTIFICATE,
) -> Authenticator:
    """Deprecated: use :func:`mie.registry.open_authenticator` and :func:`mie.verification.login`.

    :raises UnsupportedCardError: the card is not a supported authenticator (connection closed).
    """
    from mie.registry import AuthenticatorOptions
    from mie.registry import open_authenticator as open_registered

    options = AuthenticatorOptions(cache, serial_binding, check_chain is not None)
    return open_registered(reader, options=options, check_chain=check_chain)


_UNSET: Any = object()


class CpxAuthenticator(Authenticator):
    """Authenticates with an ANS CPx card (CPS3, CPE/CPA; CPS4 and PSI through their session).

    :param connection: the card connection.
    :param cache: certificates already read (share one cache across logins).
    :param serial_binding: where the reported card serial comes from (see :class:`SerialBinding`).
    :param chain_checked: whether this authenticator's evidence is chain-checked by the verifier
        (:func:`mie.verification.login` with a verifier); only then are certificates taken from
        the cache limited to those whose chain verified. ``False`` pairs with ``verifier=None``.
    :param check_chain: deprecated, for the deprecated ``authenticate(challenge, pin)``.
    :raises UnsupportedCardError: the ATR is not a CPx card's.
    """

    connection: SmartCardConnection

    def __init__(
        self,
        connection: SmartCardConnection,
        *,
        cache: CertificateCache | None = None,
        serial_binding: SerialBinding = SerialBinding.CERTIFICATE,
        chain_checked: bool = True,
        check_chain: ChainChecker | None = _UNSET,
    ) -> None:
        self.connection = connection
        self.family = detect_family(connection.atr)
        self.cache = cache if cache is not None else CertificateCache()
        self.serial_binding = serial_binding
        self.chain_checked = chain_checked
        self.check_chain: ChainChecker | None = None
        if check_chain is not _UNSET:
            warnings.warn(
                "CpxAuthenticator(check_chain=...) is deprecated: use mie.verification.login",
                DeprecationWarning,
                stacklevel=2,
            )
            self.check_chain = check_chain
            self.chain_checked = check_chain is not None
        self._info = AuthenticatorInfo(
            self.family.value, None, connection.atr, connection.transport
        )
        self._pending: OrderedDict[bytes, _Signed] = OrderedDict()

    @property
    def info(self) -> AuthenticatorInfo:
        """What was presented: the family (or ``cpe``/``cpa``/``psi`` once the certificate was
        read), the serial the certificate binds once read, the ATR and the transport."""
        return self._info

    def _session(self) -> CpxSession:
        if self.family is CpxFamily.CPS3_CL:
            return Cps3ContactlessSession(self.connection)
        if self.family is CpxFamily.CPS4:
            return Cps4Session(self.connection)
        return CpxSession(self.connection)

    def identify(self) -> Identification:
        """Read EF.SN and the authentication certificate, without PIN; nothing is verified and
        nothing is cached.

        :return: the card and the identity its certificate states.
        :raises BadResponseError: an answer breaks its format, the certificate holds no valid
            identity, or EF.SN is not the serial the certificate names.
        """
        with self.connection.transaction():
            session = self._session()
            ef_sn = session.serial()
            der = session.authentication_certificate()
        certificate = load_certificate(der)
        identity = card_identity(certificate)
        serial = self._serial(identity, ef_sn)
        self._info = self._card(serial or ef_sn, identity)
        return Identification(self._info, identity, certificate)

    def _serial(self, identity: Identity, ef_sn: str | None) -> str | None:
        """The serial bound to the certificate, checked against EF.SN when it was read."""
        if self.serial_binding is SerialBinding.NONE or identity.card_serial is None:
            return None
        bound = parse_nos_card_serial(identity.card_serial)
        if ef_sn is not None and ef_sn != bound:
            raise BadResponseError(
                f"EF.SN names card {ef_sn}, its authentication certificate names card {bound}"
            )
        return bound

    def _card(self, serial: str | None, identity: Identity) -> AuthenticatorInfo:
        # CPE, CPA and PSI cards share the CPS3/CPS4 hardware; the certificate tells them apart.
        kind = self.family.value
        if identity.card_type in ("CPE", "CPA", "PSI"):
            kind = identity.card_type.lower()
        return AuthenticatorInfo(kind, serial, self.connection.atr, self.connection.transport)

    @overload
    def authenticate(
        self, request: AuthRequest, *, user: UserVerification | None = None
    ) -> X509SignatureEvidence: ...

    @overload
    def authenticate(
        self, request: bytes, pin: str | bytes | bytearray, allow_last_try: bool = False
    ) -> AuthResult: ...

    def authenticate(
        self,
        request: AuthRequest | bytes,
        pin: str | bytes | bytearray | None = None,
        allow_last_try: bool = False,
        *,
        user: UserVerification | None = None,
    ) -> X509SignatureEvidence | AuthResult:
        """Verify the PIN once, have the card sign the request's bound challenge, and check the
        signature on the host against the certificate (cached, or read from the card).

        The card is reset when the authentication ends, so the PIN verified here does not stay
        verified for other users of a shared reader. A ``bytearray`` PIN from ``user`` is zeroed
        in place on every path; a ``str`` or ``bytes`` cannot be wiped by anyone. The VERIFY
        command sent to the card is an immutable ``bytes`` copy (the connection and PC/SC take
        nothing else): it is only dropped when the call returns.

        The deprecated form ``authenticate(challenge: bytes, pin, allow_last_try=False)`` signs
        the raw challenge and returns a deprecated :class:`AuthResult`; it is removed soon.

        :param request: the relying party's nonce, origin and requirements.
        :param user: asked for the PIN once, after the card said how many tries remain.
        :return: the evidence; the serial is in :attr:`info` once read.
        :raises UnsupportedCardError: a contactless card (it does not sign); nothing was sent.
        :raises ValueError: the request does not ask for user verification (a CPx card signs
            only after its PIN), or no ``user`` was given; nothing was sent.
        :raises PinFormatError: the PIN is not 4 to 8 digits; only the PIN status was read.
        :raises LastTryRefusedError: one try left and the request does not allow spending it.
        :raises PinBlockedError: no try left.
        :raises InvalidPinError: the card refused the PIN.
        :raises BadResponseError: a card answer breaks its format, or EF.SN is not the serial
            the certificate names.
        :raises SignatureInvalidError: the signature does not verify with the certificate.
        """
        if isinstance(request, AuthRequest):
            if pin is not None or allow_last_try:
                raise TypeError("authenticate(request) takes the PIN from user=, not pin=")
            return self._answer(request, user)
        warnings.warn(
            "authenticate(challenge, pin) signs a raw challenge and is deprecated: "
            "use authenticate(AuthRequest, user=...) and mie.verification.login",
            DeprecationWarning,
            stacklevel=2,
        )
        if pin is None:
            raise TypeError("authenticate(challenge, pin): the PIN is missing")
        try:
            return self._legacy(request, pin, allow_last_try)
        finally:
            if isinstance(pin, bytearray):
                pin[:] = bytes(len(pin))

    def _answer(self, request: AuthRequest, user: UserVerification | None) -> X509SignatureEvidence:
        self._refuse_contactless()
        if not request.user_verification:
            raise ValueError("A CPx card signs only after its PIN: user verification is required")
        if user is None:
            raise ValueError("A CPx card needs the PIN: pass user=")
        signed = self._prove(request.challenge, user, request.allow_last_try)
        identity = card_identity(signed.certificate)
        self._info = self._card(self._serial(identity, signed.ef_sn), identity)
        leaf = signed.certificate.public_bytes(serialization.Encoding.DER)
        evidence = X509SignatureEvidence(
            nonce=request.nonce,
            origin=request.origin,
            challenge=signed.challenge,
            signature=signed.signature,
            chain=(leaf,),
        )
        self._pending[signed.signature] = signed
        while len(self._pending) > MAX_PENDING:
            self._pending.popitem(last=False)
        return evidence

    def accepted(self, evidence: Evidence, *, chain_verified: bool) -> None:
        """Cache the certificate that verified ``evidence`` (marked chain-verified or not), so
        the next login of the card needs no certificate read."""
        signed = self._take(evidence)
        if signed is not None:
            self.cache.add(
                signed.der, signed.certificate, serial=signed.ef_sn, chain_verified=chain_verified
            )

    def rejected(self, evidence: Evidence) -> None:
        """Forget the cached certificate that served ``evidence``: it failed a check."""
        signed = self._take(evidence)
        if signed is not None and signed.from_cache:
            self.cache.discard(signed.der)

    def _take(self, evidence: Evidence) -> _Signed | None:
        if not isinstance(evidence, X509SignatureEvidence):
            return None
        signed = self._pending.get(evidence.signature)
        if signed is None or signed.challenge != evidence.challenge:
            return None
        del self._pending[evidence.signature]
        return signed

    def _refuse_contactless(self) -> None:
        if self.connection.transport is Transport.CONTACTLESS:
            raise UnsupportedCardError(
                "A contactless CPx card identifies but does not authenticate", self.connection.atr
            )

    def _prove(self, challenge: bytes, user: UserVerification, allow_last_try: bool) -> _Signed:
        # The card is reset when the transaction ends: the PIN verified here must not stay
        # verified for other users of a shared reader.
        with self.connection.transaction(reset=True):
            session = self._session()
            if isinstance(session, Cps4Session):
                return self._sign_cps4(session, challenge, user, allow_last_try)
            session.verify_cardholder(user, allow_last_try)
            signature = session.sign_challenge(challenge)
            return self._signer(session, challenge, signature)

    def _signer(self, session: CpxSession, challenge: bytes, signature: bytes) -> _Signed:
        """Find the certificate that verifies ``signature``: cached first, then from the card."""
        found = self.cache.match(challenge, signature, chain_verified=self.chain_checked)
        if found is not None:
            return _Signed(found[0], found[1], challenge, signature, None, True)
        ef_sn = session.serial()
        der = session.authentication_certificate()
        certificate = load_certificate(der)
        verify_signature(certificate, challenge, signature)
        return _Signed(der, certificate, challenge, signature, ef_sn, False)

    def _sign_cps4(
        self,
        session: Cps4Session,
        challenge: bytes,
        user: UserVerification,
        allow_last_try: bool,
    ) -> _Signed:
        """CPS4 needs the key size before signing: the certificate comes first (cached for the
        card's EF.SN, or read), and is read again, with a new signature, if the cached one
        turns out not to match the card."""
        ef_sn = session.serial()
        cached = self.cache.by_serial(ef_sn, chain_verified=self.chain_checked)
        if cached is None:
            # Read (and parse) before the PIN is presented: a bad answer costs no PIN try.
            der = session.authentication_certificate()
            certificate = load_certificate(der)
            session.verify_cardholder(user, allow_last_try)
            return _cps4_signed(session, der, certificate, challenge, ef_sn, from_cache=False)
        session.verify_cardholder(user, allow_last_try)
        try:
            return _cps4_signed(session, *cached, challenge, ef_sn, from_cache=True)
        # EF.SN is only a hint: the entry may be another card's, with a key of another size (the
        # card then refuses the block) or another key. This card's own certificate decides; a
        # transport failure is no mismatch and propagates.
        except (SignatureInvalidError, ApduError, UnsupportedCardError):
            logger.info("Cached certificate does not match the card; reading it again")
        der = session.authentication_certificate()
        return _cps4_signed(session, der, load_certificate(der), challenge, ef_sn, from_cache=False)

    # --- Deprecated: authenticate(challenge, pin), removed in commit F. ---

    def _legacy(
        self, challenge: bytes, pin: str | bytes | bytearray, allow_last_try: bool
    ) -> AuthResult:
        if len(challenge) < MIN_CHALLENGE:
            raise ValueError(f"Challenge must have at least {MIN_CHALLENGE} bytes")
        CPX_PIN.check(pin)
        self._refuse_contactless()
        signed = self._prove(challenge, StaticPin(pin), allow_last_try)
        identity = card_identity(signed.certificate)
        self._info = self._card(self._serial(identity, signed.ef_sn), identity)
        card = self._info
        leaf = signed.certificate.public_bytes(serialization.Encoding.DER)
        if self.check_chain is None:
            self._remember(signed, chain_verified=False)
            evidence = LegacyEvidence(challenge, signed.signature, [leaf], "unknown")
            reasons = ["signature verified", "certificate chain and revocation not checked"]
            return AuthResult(card, identity, None, reasons, evidence)
        try:
            report = self.check_chain(signed.certificate, [])
        except BaseException:
            if signed.from_cache:
                self.cache.discard(signed.der)
            raise
        self._remember(signed, chain_verified=True)
        chain = [c.public_bytes(serialization.Encoding.DER) for c in report.chain] or [leaf]
        evidence = LegacyEvidence(challenge, signed.signature, chain, report.revocation)
        reasons = ["signature verified", *report.reasons]
        return AuthResult(card, report.identity, report.level, reasons, evidence)

    def _remember(self, signed: _Signed, *, chain_verified: bool) -> None:
        self.cache.add(
            signed.der, signed.certificate, serial=signed.ef_sn, chain_verified=chain_verified
        )
