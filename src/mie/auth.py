"""Authenticators: prove a professional holds their card and say who they are.

An :class:`Authenticator` wraps one connection. :meth:`~Authenticator.identify` reads who the card
belongs to without a PIN; :meth:`~Authenticator.authenticate` verifies the PIN once, has the card
sign the caller's challenge, checks the signature against the certificate on the host, and
returns an :class:`AuthResult`. Every failure raises (see :mod:`mie.errors`); the CLI turns the
exception into the ``error`` object of the JSON contract.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum, unique
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from mie.cards.cps4 import Cps4Session
from mie.cards.cpx import (
    Cps3ContactlessSession,
    CpxFamily,
    CpxSession,
    detect_family,
    parse_nos_card_serial,
)
from mie.certcache import CertificateCache as CertificateCache
from mie.core.connection import SmartCardConnection, Transport
from mie.core.errors import (
    ApduError,
    BadResponseError,
    SignatureInvalidError,
    UnsupportedCardError,
)
from mie.core.pin import check_pin
from mie.policy import LevelPolicy, decide_level
from mie.trust.errors import VerificationError, describe
from mie.trust.identity import LAZY_PARSE_ERRORS, Identity, identity_from_certificate
from mie.trust.parse import parse_certificate_der
from mie.trust.verify import Usage, Verifier

logger = logging.getLogger(__name__)

MIN_CHALLENGE = 16


@dataclass(frozen=True)
class CardInfo:
    """What was presented: kind, serial and ATR."""

    kind: str
    serial: str | None
    atr: bytes | None

    def to_json(self) -> dict[str, Any]:
        """:return: the ``authenticator`` object of the JSON contract."""
        return {
            "kind": self.kind,
            "serial": self.serial,
            "atr": self.atr.hex() if self.atr else None,
        }


@dataclass(frozen=True)
class Evidence:
    """What a verifier needs to check an authentication again on its own.

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
    """The outcome of the chain, revocation and policy checks of a certificate.

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
    """Build the chain check of an authenticator from a :class:`~mie.trust.Verifier`.

    The verifier must be built for authentication usage; the level comes from
    :func:`mie.policy.decide_level`.

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
    """A successful authentication (failures raise)."""

    authenticator: CardInfo
    identity: Identity | None
    level: str | None
    reasons: list[str]
    evidence: Evidence

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


@dataclass(frozen=True)
class Identification:
    """Who the card belongs to, read without PIN (the certificate is not verified here)."""

    card: CardInfo
    certificate: x509.Certificate
    identity: Identity

    def to_json(self) -> dict[str, Any]:
        """:return: ``{"authenticator": …, "identity": …}`` as in the JSON contract."""
        return {"authenticator": self.card.to_json(), "identity": self.identity.to_json()}


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

    connection: SmartCardConnection

    def close(self) -> None:
        """Release the connection (a PC/SC card is reset, so no verified PIN state remains)."""
        self.connection.close()

    def __enter__(self) -> Authenticator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def identify(self) -> Identification:
        """Read who the authenticator belongs to, without PIN."""

    @abc.abstractmethod
    def authenticate(
        self, challenge: bytes, pin: str | bytes | bytearray, allow_last_try: bool = False
    ) -> AuthResult:
        """Verify the PIN once, sign ``challenge``, check everything; raise on any failure.

        A ``bytearray`` PIN is zeroed in place before this returns or raises; a ``str`` or
        ``bytes`` PIN is immutable and cannot be wiped (pass a ``bytearray`` to control it).
        """


@dataclass(frozen=True)
class _Signed:
    """What the card session produced: the certificate that verified the signature, and how."""

    der: bytes
    certificate: x509.Certificate
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
    return _Signed(der, certificate, signature, ef_sn, from_cache)


def open_authenticator(
    reader: str | None = None,
    *,
    check_chain: ChainChecker | None,
    cache: CertificateCache | None = None,
    serial_binding: SerialBinding = SerialBinding.CERTIFICATE,
) -> Authenticator:
    """Connect to the card in a PC/SC reader and return the authenticator for it.

    :param reader: reader name or a unique part of it; ``None`` takes the first reader with a card.
    :param check_chain: chain, revocation and level checks (``None``: explicitly unchecked).
    :param cache: certificate cache shared across logins.
    :param serial_binding: where the reported card serial comes from (see :class:`SerialBinding`).
    :raises UnsupportedCardError: the card is not a supported authenticator (connection closed).
    """
    from mie.transport.pcsc import PcscConnection

    connection = PcscConnection(reader)
    try:
        return CpxAuthenticator(
            connection, check_chain=check_chain, cache=cache, serial_binding=serial_binding
        )
    except BaseException:
        connection.close()
        raise


class CpxAuthenticator(Authenticator):
    """Authenticates with an ANS CPx card (CPS3, CPE/CPA; CPS4 and PSI through their session).

    :param connection: the card connection.
    :param check_chain: checks chain, revocation and level (see :func:`chain_checker`); passing
        ``None`` is an explicit opt-out: results then say the chain was not checked and carry
        no level.
    :param cache: certificates already read (share one cache across logins).
    :param serial_binding: where the reported card serial comes from (see :class:`SerialBinding`).
    """

    def __init__(
        self,
        connection: SmartCardConnection,
        *,
        check_chain: ChainChecker | None,
        cache: CertificateCache | None = None,
        serial_binding: SerialBinding = SerialBinding.CERTIFICATE,
    ) -> None:
        self.connection = connection
        self.family = detect_family(connection.atr)
        self.check_chain = check_chain
        self.cache = cache if cache is not None else CertificateCache()
        self.serial_binding = serial_binding

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
        return Identification(self._card(serial or ef_sn, identity), certificate, identity)

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

    def _card(self, serial: str | None, identity: Identity) -> CardInfo:
        # CPE, CPA and PSI cards share the CPS3/CPS4 hardware; the certificate tells them apart.
        kind = self.family.value
        if identity.card_type in ("CPE", "CPA", "PSI"):
            kind = identity.card_type.lower()
        return CardInfo(kind, serial, self.connection.atr)

    def authenticate(
        self, challenge: bytes, pin: str | bytes | bytearray, allow_last_try: bool = False
    ) -> AuthResult:
        """Verify the PIN once, have the card sign ``challenge``, check the signature, the
        certificate (unless ``check_chain`` is ``None``) and the card serial.

        :param challenge: the bytes to sign, 16 or more.
        :param pin: the cardholder PIN, 4 to 8 digits. A ``bytearray`` is zeroed in place on
            every path, success or failure; a ``str`` or ``bytes`` cannot be wiped by anyone,
            so callers that must control the PIN's lifetime pass a ``bytearray``. The VERIFY
            command sent to the card is an immutable ``bytes`` copy (the connection and PC/SC
            take nothing else): it is not wiped, only dropped when the call returns.
        :param allow_last_try: present the PIN even when one try is left.
        :return: the result; every failure raises.
        :raises ValueError: a short challenge or a malformed PIN; nothing was sent.
        :raises BadResponseError: a card answer breaks its format, or EF.SN is not the serial
            the certificate names.
        """
        try:
            return self._authenticate(challenge, pin, allow_last_try)
        finally:
            if isinstance(pin, bytearray):
                pin[:] = bytes(len(pin))

    def _authenticate(
        self, challenge: bytes, pin: str | bytes | bytearray, allow_last_try: bool
    ) -> AuthResult:
        if len(challenge) < MIN_CHALLENGE:
            raise ValueError(f"Challenge must have at least {MIN_CHALLENGE} bytes")
        check_pin(pin)
        if self.family is CpxFamily.CPS3_CL or self.connection.transport is Transport.CONTACTLESS:
            raise UnsupportedCardError(
                "A contactless CPx card identifies but does not authenticate"
            )
        # The card is reset when the transaction ends: the PIN verified here must not stay
        # verified for other users of a shared reader.
        with self.connection.transaction(reset=True):
            session = self._session()
            if isinstance(session, Cps4Session):
                signed = self._sign_cps4(session, challenge, pin, allow_last_try)
            else:
                session.verify_cardholder_pin(pin, allow_last_try)
                signature = session.sign_challenge(challenge)
                signed = self._signer(session, challenge, signature)
        return self._result(signed, challenge)

    @property
    def _chain_verified_only(self) -> bool:
        # Certificates cached by an unchecked authenticator never serve a checked one.
        return self.check_chain is not None

    def _signer(self, session: CpxSession, challenge: bytes, signature: bytes) -> _Signed:
        """Find the certificate that verifies ``signature``: cached first, then from the card."""
        found = self.cache.match(challenge, signature, chain_verified=self._chain_verified_only)
        if found is not None:
            return _Signed(found[0], found[1], signature, None, True)
        ef_sn = session.serial()
        der = session.authentication_certificate()
        certificate = load_certificate(der)
        verify_signature(certificate, challenge, signature)
        return _Signed(der, certificate, signature, ef_sn, False)

    def _sign_cps4(
        self,
        session: Cps4Session,
        challenge: bytes,
        pin: str | bytes | bytearray,
        allow_last_try: bool,
    ) -> _Signed:
        """CPS4 needs the key size before signing: the certificate comes first (cached for the
        card's EF.SN, or read), and is read again, with a new signature, if the cached one
        turns out not to match the card."""
        ef_sn = session.serial()
        cached = self.cache.by_serial(ef_sn, chain_verified=self._chain_verified_only)
        if cached is None:
            # Read (and parse) before the PIN is presented: a bad answer costs no PIN try.
            der = session.authentication_certificate()
            certificate = load_certificate(der)
            session.verify_cardholder_pin(pin, allow_last_try)
            return _cps4_signed(session, der, certificate, challenge, ef_sn, from_cache=False)
        session.verify_cardholder_pin(pin, allow_last_try)
        try:
            return _cps4_signed(session, *cached, challenge, ef_sn, from_cache=True)
        # EF.SN is only a hint: the entry may be another card's, with a key of another size (the
        # card then refuses the block) or another key. This card's own certificate decides; a
        # transport failure is no mismatch and propagates.
        except (SignatureInvalidError, ApduError, UnsupportedCardError):
            logger.info("Cached certificate does not match the card; reading it again")
        der = session.authentication_certificate()
        return _cps4_signed(session, der, load_certificate(der), challenge, ef_sn, from_cache=False)

    def _result(self, signed: _Signed, challenge: bytes) -> AuthResult:
        identity = card_identity(signed.certificate)
        card = self._card(self._serial(identity, signed.ef_sn), identity)
        leaf = signed.certificate.public_bytes(serialization.Encoding.DER)
        if self.check_chain is None:
            self._remember(signed, chain_verified=False)
            evidence = Evidence(challenge, signed.signature, [leaf], "unknown")
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
        evidence = Evidence(challenge, signed.signature, chain, report.revocation)
        reasons = ["signature verified", *report.reasons]
        return AuthResult(card, report.identity, report.level, reasons, evidence)

    def _remember(self, signed: _Signed, *, chain_verified: bool) -> None:
        self.cache.add(
            signed.der, signed.certificate, serial=signed.ef_sn, chain_verified=chain_verified
        )
