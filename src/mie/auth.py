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
import logging
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum, unique

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from mie.cards.cps4 import Cps4Session
from mie.cards.cpx import (
    Cps3ContactlessSession,
    CpxFamily,
    CpxSession,
    detect_family,
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
from mie.request import AuthRequest, UserVerification
from mie.result import AuthenticatorInfo
from mie.result import AuthResult as AuthResult
from mie.result import Identification as Identification
from mie.trust.errors import VerificationError, describe
from mie.trust.identity import (
    LAZY_PARSE_ERRORS,
    Identity,
    identity_from_certificate,
    parse_nos_card_serial,
)
from mie.trust.parse import parse_certificate_der
from mie.verification import verify_rsa_signature

logger = logging.getLogger(__name__)

# Evidence handed out and not yet accepted or rejected; a caller that never calls either
# leaves at most this many behind.
MAX_PENDING = 16


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
    verify_rsa_signature(_public_key(certificate), challenge, signature)


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


class CpxAuthenticator(Authenticator):
    """Authenticates with an ANS CPx card (CPS3, CPE/CPA; CPS4 and PSI through their session).

    :param connection: the card connection.
    :param cache: certificates already read (share one cache across logins).
    :param serial_binding: where the reported card serial comes from (see :class:`SerialBinding`).
    :param chain_checked: whether this authenticator's evidence is chain-checked by the verifier
        (:func:`mie.verification.login` with a verifier); only then are certificates taken from
        the cache limited to those whose chain verified. ``False`` pairs with ``verifier=None``.
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
    ) -> None:
        self.connection = connection
        self.family = detect_family(connection.atr)
        self.cache = cache if cache is not None else CertificateCache()
        self.serial_binding = serial_binding
        self.chain_checked = chain_checked
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

    def authenticate(
        self, request: AuthRequest, *, user: UserVerification | None = None
    ) -> X509SignatureEvidence:
        """Verify the PIN once, have the card sign the request's bound challenge, and check the
        signature on the host against the certificate (cached, or read from the card).

        The card is reset when the authentication ends, so the PIN verified here does not stay
        verified for other users of a shared reader. A ``bytearray`` PIN from ``user`` is zeroed
        in place on every path; a ``str`` or ``bytes`` cannot be wiped by anyone. The VERIFY
        command sent to the card is an immutable ``bytes`` copy (the connection and PC/SC take
        nothing else): it is only dropped when the call returns.

        :param request: the relying party's nonce, origin and requirements.
        :param user: asked for the PIN once, after the card said how many tries remain.
        :return: the evidence; the serial is in :attr:`info` once read.
        :raises TypeError: ``request`` is not an :class:`~mie.request.AuthRequest` (a raw
            challenge is never signed: it could be a relayed one); nothing was sent.
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
        if not isinstance(request, AuthRequest):
            raise TypeError(
                "authenticate() takes an AuthRequest: a CPx card signs only SHA-256(origin) || "
                f"SHA-256(nonce), never a raw {type(request).__name__}"
            )
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
