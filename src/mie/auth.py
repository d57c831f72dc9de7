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
import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mie.cards.cps4 import Cps4Session
from mie.cards.cpx import (
    Cps3ContactlessSession,
    CpxFamily,
    CpxSession,
    detect_family,
)
from mie.core.connection import SmartCardConnection, Transport
from mie.core.errors import BadResponseError, SignatureInvalidError, UnsupportedCardError
from mie.core.pin import check_pin
from mie.policy import LevelPolicy, decide_level
from mie.trust.identity import Identity, identity_from_certificate
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

    :param identity: the holder's identity (a JSON-able object with ``to_json``), if checked.
    :param level: the eIDAS level the RIE grants (``low``, ``substantial``, ``high``) or ``None``.
    :param revocation: ``good``, ``revoked`` or ``unknown``.
    :param reasons: why the level is what it is.
    :param chain: the validated chain, leaf first.
    """

    identity: Any
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
    identity: Any
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


class CertificateCache:
    """Authentication certificates already read, keyed by card serial and certificate hash.

    An entry is used only when the card's fresh signature verifies with its public key, so a
    cache entry is never trusted for another card.
    """

    def __init__(self, max_entries: int = 64) -> None:
        # Certificates are kept parsed: match() runs on every warm login.
        self._entries: dict[tuple[str, str], tuple[bytes, x509.Certificate]] = {}
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def add(self, serial: str, der: bytes) -> None:
        """Remember the certificate ``der`` of card ``serial`` (least recently added go first)."""
        with self._lock:
            key = (serial, hashlib.sha256(der).hexdigest())
            self._entries.pop(key, None)
            self._entries[key] = (der, x509.load_der_x509_certificate(der))
            while len(self._entries) > self.max_entries:
                del self._entries[next(iter(self._entries))]

    def match(self, challenge: bytes, signature: bytes) -> tuple[str, x509.Certificate] | None:
        """Find the cached certificate whose key made ``signature`` over ``challenge``.

        :return: ``(serial, certificate)`` or ``None``.
        """
        with self._lock:
            entries = list(self._entries.items())
        for (serial, _), (_, certificate) in entries:
            try:
                verify_signature(certificate, challenge, signature)
            except SignatureInvalidError:
                continue
            return serial, certificate
        return None

    def by_serial(self, serial: str) -> bytes | None:
        """:return: the certificate last cached for card ``serial``, if any."""
        with self._lock:
            found = [der for (s, _), (der, _) in self._entries.items() if s == serial]
        return found[-1] if found else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def load_certificate(der: bytes) -> x509.Certificate:
    """Parse a certificate read from a card.

    :raises BadResponseError: it does not parse.
    """
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as e:
        raise BadResponseError(f"The card's certificate does not parse: {e}") from e


def verify_signature(certificate: x509.Certificate, challenge: bytes, signature: bytes) -> None:
    """Check a PKCS#1 v1.5 SHA-256 signature of ``challenge`` with the certificate's RSA key.

    :raises SignatureInvalidError: wrong length, wrong key or wrong signature.
    """
    key = certificate.public_key()
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
        """Verify the PIN once, sign ``challenge``, check everything; raise on any failure."""


def _cps4_signature(
    session: Cps4Session, der: bytes, challenge: bytes
) -> tuple[x509.Certificate, bytes]:
    certificate = load_certificate(der)
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise UnsupportedCardError("The CPS4 authentication key is not RSA")
    session.key_bytes = (key.key_size + 7) // 8
    return certificate, session.sign_challenge(challenge)


def open_authenticator(
    reader: str | None = None,
    *,
    check_chain: ChainChecker | None,
    cache: CertificateCache | None = None,
) -> Authenticator:
    """Connect to the card in a PC/SC reader and return the authenticator for it.

    :param reader: reader name or a unique part of it; ``None`` takes the first reader with a card.
    :param check_chain: chain, revocation and level checks (``None``: explicitly unchecked).
    :param cache: certificate cache shared across logins.
    :raises UnsupportedCardError: the card is not a supported authenticator (connection closed).
    """
    from mie.transport.pcsc import PcscConnection

    connection = PcscConnection(reader)
    try:
        return CpxAuthenticator(connection, check_chain=check_chain, cache=cache)
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
    """

    def __init__(
        self,
        connection: SmartCardConnection,
        *,
        check_chain: ChainChecker | None,
        cache: CertificateCache | None = None,
    ) -> None:
        self.connection = connection
        self.family = detect_family(connection.atr)
        self.check_chain = check_chain
        self.cache = cache if cache is not None else CertificateCache()

    def _session(self) -> CpxSession:
        if self.family is CpxFamily.CPS3_CL:
            return Cps3ContactlessSession(self.connection)
        if self.family is CpxFamily.CPS4:
            return Cps4Session(self.connection)
        return CpxSession(self.connection)

    def identify(self) -> Identification:
        with self.connection.transaction():
            session = self._session()
            serial = session.serial()
            der = session.authentication_certificate()
        certificate = load_certificate(der)
        identity = identity_from_certificate(certificate)
        self.cache.add(serial, der)
        return Identification(self._card(serial, identity), certificate, identity)

    def _card(self, serial: str, identity: Identity) -> CardInfo:
        # CPE, CPA and PSI cards share the CPS3/CPS4 hardware; the certificate tells them apart.
        kind = self.family.value
        if identity.card_type in ("CPE", "CPA", "PSI"):
            kind = identity.card_type.lower()
        return CardInfo(kind, serial, self.connection.atr)

    def authenticate(
        self, challenge: bytes, pin: str | bytes | bytearray, allow_last_try: bool = False
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
                serial, certificate, signature = self._sign_cps4(
                    session, challenge, pin, allow_last_try
                )
            else:
                session.verify_cardholder_pin(pin, allow_last_try)
                signature = session.sign_challenge(challenge)
                serial, certificate = self._signer(session, challenge, signature)
        return self._result(serial, certificate, challenge, signature)

    def _signer(
        self, session: CpxSession, challenge: bytes, signature: bytes
    ) -> tuple[str, x509.Certificate]:
        """Find the certificate that verifies ``signature``: cached first, then from the card."""
        found = self.cache.match(challenge, signature)
        if found is not None:
            return found
        serial = session.serial()
        der = session.authentication_certificate()
        certificate = load_certificate(der)
        verify_signature(certificate, challenge, signature)
        self.cache.add(serial, der)
        return serial, certificate

    def _sign_cps4(
        self,
        session: Cps4Session,
        challenge: bytes,
        pin: str | bytes | bytearray,
        allow_last_try: bool,
    ) -> tuple[str, x509.Certificate, bytes]:
        """CPS4 needs the key size before signing: the certificate comes first (cached by the
        card's serial, or read), and is read again, with a new signature, if the cached one
        turns out not to match the card."""
        serial = session.serial()
        cached = self.cache.by_serial(serial)
        der = cached or session.authentication_certificate()
        session.verify_cardholder_pin(pin, allow_last_try)
        certificate, signature = _cps4_signature(session, der, challenge)
        try:
            verify_signature(certificate, challenge, signature)
        except SignatureInvalidError:
            if cached is None:
                raise
            logger.info("Cached certificate does not match the card; reading it again")
            der = session.authentication_certificate()
            certificate, signature = _cps4_signature(session, der, challenge)
            verify_signature(certificate, challenge, signature)
        self.cache.add(serial, der)
        return serial, certificate, signature

    def _result(
        self, serial: str, certificate: x509.Certificate, challenge: bytes, signature: bytes
    ) -> AuthResult:
        identity = identity_from_certificate(certificate)
        card = self._card(serial, identity)
        leaf = certificate.public_bytes(serialization.Encoding.DER)
        if self.check_chain is None:
            evidence = Evidence(challenge, signature, [leaf], "unknown")
            reasons = ["signature verified", "certificate chain and revocation not checked"]
            return AuthResult(card, identity, None, reasons, evidence)
        report = self.check_chain(certificate, [])
        chain = [c.public_bytes(serialization.Encoding.DER) for c in report.chain] or [leaf]
        evidence = Evidence(challenge, signature, chain, report.revocation)
        reasons = ["signature verified", *report.reasons]
        return AuthResult(card, report.identity, report.level, reasons, evidence)
