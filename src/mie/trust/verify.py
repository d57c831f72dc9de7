"""Certificate verification: path, profile, revocation.

The path is built and checked by ``cryptography.x509.verification`` (Rust; names, signatures,
validity, basicConstraints, pathLen, CA keyUsage, critical extensions). mie adds the end-entity
profile (keyUsage for the intended use, unknown critical extensions), revocation (OCSP when
enabled, CRLs and delta CRLs through :class:`~mie.trust.crl.CrlIndex`, fail closed) and, when
enabled, the RFC 5280 engine of :mod:`mie.trust.fallback` for inputs cryptography's strict
profile refuses. See ``docs/architecture.md`` ("Trust and policy") for why.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum, unique
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder
from cryptography.x509.verification import VerificationError as CryptographyVerificationError

from mie.trust import fallback
from mie.trust.cache import CrlCache
from mie.trust.crl import CrlSet, RevocationStatus, Status, UnsupportedRevocation, crl_status
from mie.trust.errors import ErrorCode, VerificationError, describe, malformed
from mie.trust.identity import extensions_of
from mie.trust.ocsp import ocsp_status, ocsp_urls
from mie.trust.parse import check_certificate_der, load_certificate_der, try_load_certificate_der
from mie.trust.store import Anchor, TrustStore, dn, fingerprint

logger = logging.getLogger(__name__)

DEFAULT_MAX_DEPTH = 8
# Extensions an end-entity certificate may mark critical: what RFC 5280 defines and mie reads.
_KNOWN_EE_CRITICAL = frozenset(
    {
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.CERTIFICATE_POLICIES,
        ExtensionOID.POLICY_CONSTRAINTS,
        ExtensionOID.NAME_CONSTRAINTS,
        ExtensionOID.INHIBIT_ANY_POLICY,
        ExtensionOID.POLICY_MAPPINGS,
        x509.ObjectIdentifier("2.5.29.16"),  # privateKeyUsagePeriod, on real CPS certificates
    }
)


@unique
class Usage(Enum):
    """What the end-entity key is about to be used for."""

    AUTH = "auth"
    SIGN = "sign"
    ANY = "any"


@unique
class RevocationMode(Enum):
    """``hard``: unknown status fails (default); ``soft``: accepted and reported."""

    HARD = "hard"
    SOFT = "soft"


@unique
class Profile(Enum):
    """``igc-sante``: mie's default profile; ``rfc5280``: plain RFC 5280 (PKITS).

    The IGC-Santé profile rejects non-positive serial numbers as malformed and is meant to run
    without the RFC 5280 engine; the RFC 5280 profile accepts them and legacy algorithms.
    """

    IGC_SANTE = "igc-sante"
    RFC5280 = "rfc5280"


@dataclass(frozen=True)
class VerificationResult:
    """A verified path.

    :param path: the certificates, leaf first, anchor last (DER where only the RFC 5280
        engine could read one).
    :param anchor: the trust anchor that ends the path.
    :param revocation: ``GOOD``, or ``UNKNOWN`` under soft revocation.
    :param revocation_details: one line per certificate checked.
    :param engine: ``cryptography`` or ``rfc5280`` (the fallback engine decided).
    """

    path: tuple[x509.Certificate | bytes, ...]
    anchor: Anchor
    revocation: RevocationStatus
    revocation_details: tuple[str, ...]
    engine: str

    @property
    def chain(self) -> tuple[bytes, ...]:
        """:return: the path in DER, leaf first."""
        return tuple(c if isinstance(c, bytes) else _der(c) for c in self.path)

    @property
    def subjects(self) -> tuple[str, ...]:
        """:return: subject DNs of the path, leaf first (``?`` where unreadable)."""
        return tuple(
            dn(c.subject) if c else "?" for c in map(self.certificate, range(len(self.path)))
        )

    @property
    def leaf(self) -> x509.Certificate:
        """:return: the end-entity certificate."""
        leaf = self.certificate(0)
        if leaf is None:
            raise malformed("The end-entity certificate is not readable by cryptography")
        return leaf

    def certificate(self, position: int) -> x509.Certificate | None:
        """:return: the certificate at ``position`` (0 = leaf), or ``None`` if unreadable."""
        item = self.path[position]
        return item if isinstance(item, x509.Certificate) else try_load_certificate_der(item)


T = TypeVar("T")


def _set_once(current: T | None, value: T, what: str) -> T:
    if current is not None:
        raise ValueError(f"{what} is already set")
    return value


@dataclass(frozen=True)
class VerifierBuilder:
    """Immutable builder of a :class:`Verifier`; each option may be set once.

    Example::

        verifier = VerifierBuilder().store(TrustStore.default()).usage(Usage.AUTH).build()
        result = verifier.verify(leaf, intermediates)
    """

    _store: TrustStore | None = None
    _time: dt.datetime | None = None
    _usage: Usage | None = None
    _revocation: RevocationMode | None = None
    _crls: CrlSet | None = None
    _crl_cache: CrlCache | None = None
    _ocsp: bool | None = None
    _fallback: bool | None = None
    _profile: Profile | None = None
    _max_depth: int | None = None

    def store(self, store: TrustStore) -> VerifierBuilder:
        """Trust these anchors."""
        return replace(self, _store=_set_once(self._store, store, "store"))

    def time(self, at: dt.datetime) -> VerifierBuilder:
        """Verify at ``at`` (aware) instead of now."""
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("The verification time must be timezone-aware")
        return replace(self, _time=_set_once(self._time, at.astimezone(dt.UTC), "time"))

    def usage(self, usage: Usage) -> VerifierBuilder:
        """Require the end-entity keyUsage for ``usage``."""
        return replace(self, _usage=_set_once(self._usage, usage, "usage"))

    def revocation(self, mode: RevocationMode) -> VerifierBuilder:
        """Hard (default) or soft revocation."""
        return replace(self, _revocation=_set_once(self._revocation, mode, "revocation"))

    def crls(self, crls: CrlSet) -> VerifierBuilder:
        """Use these CRLs (and delta CRLs)."""
        return replace(self, _crls=_set_once(self._crls, crls, "crls"))

    def crl_cache(self, cache: CrlCache) -> VerifierBuilder:
        """Fetch missing or stale CRLs from HTTP(S) distribution points through ``cache``."""
        return replace(self, _crl_cache=_set_once(self._crl_cache, cache, "crl_cache"))

    def ocsp(self, enabled: bool = True) -> VerifierBuilder:
        """Ask OCSP responders (AIA) before CRLs."""
        return replace(self, _ocsp=_set_once(self._ocsp, enabled, "ocsp"))

    def rfc5280_fallback(self, enabled: bool = True) -> VerifierBuilder:
        """Let the RFC 5280 engine decide what cryptography's strict verifier refuses."""
        if enabled and not fallback.available():
            raise ValueError("The RFC 5280 engine needs pyhanko-certvalidator (mie[rfc5280])")
        return replace(self, _fallback=_set_once(self._fallback, enabled, "rfc5280_fallback"))

    def profile(self, profile: Profile) -> VerifierBuilder:
        """Profile of checks (default IGC-Santé)."""
        return replace(self, _profile=_set_once(self._profile, profile, "profile"))

    def max_depth(self, depth: int) -> VerifierBuilder:
        """Longest path accepted (intermediates + anchor)."""
        return replace(self, _max_depth=_set_once(self._max_depth, depth, "max_depth"))

    def build(self) -> Verifier:
        """:return: the verifier."""
        if self._store is None:
            raise ValueError("A trust store is required")
        return Verifier(
            store=self._store,
            at=self._time,
            usage=self._usage or Usage.ANY,
            hard=(self._revocation or RevocationMode.HARD) is RevocationMode.HARD,
            crls=self._crls or CrlSet(),
            crl_cache=self._crl_cache,
            ocsp=bool(self._ocsp),
            fallback=bool(self._fallback),
            profile=self._profile or Profile.IGC_SANTE,
            max_depth=self._max_depth or DEFAULT_MAX_DEPTH,
        )


@dataclass(frozen=True)
class Verifier:
    """Verifies end-entity certificates; build it with :class:`VerifierBuilder`."""

    store: TrustStore
    at: dt.datetime | None
    usage: Usage
    hard: bool
    crls: CrlSet
    crl_cache: CrlCache | None
    ocsp: bool
    fallback: bool
    profile: Profile
    max_depth: int
    _ee_policy: ExtensionPolicy = field(default_factory=ExtensionPolicy.permit_all)
    _ca_policy: ExtensionPolicy = field(default_factory=ExtensionPolicy.webpki_defaults_ca)

    def verify(
        self,
        leaf: x509.Certificate | bytes,
        intermediates: Sequence[x509.Certificate | bytes] = (),
    ) -> VerificationResult:
        """Verify ``leaf`` up to a trust anchor, with revocation.

        :param leaf: the end-entity certificate (object or DER).
        :param intermediates: untrusted certificates that may complete the path.
        :return: the verified path.
        :raises VerificationError: with the contract code of the first failed check.
        """
        at = self.at or dt.datetime.now(dt.UTC)
        leaf_cert = self._certificate(leaf, "leaf certificate")
        pool = [self._certificate(c, "intermediate certificate") for c in intermediates]
        pool += self.store.intermediates

        def everything() -> tuple[bytes, list[bytes]]:
            return _as_der(leaf_cert), [_as_der(c) for c in pool]

        if isinstance(leaf_cert, bytes):
            return self._rfc5280(*everything(), at, "not parsed by cryptography")
        # Certificates only the RFC 5280 engine can read cannot be on a cryptography path.
        parsed = [c for c in pool if isinstance(c, x509.Certificate)]
        try:
            chain = self._build_path(leaf_cert, parsed, at)
        except (UnsupportedAlgorithm, ValueError, TypeError) as e:
            raise malformed(f"A certificate of the path cannot be used ({describe(e)})") from e
        except CryptographyVerificationError as e:
            if self.fallback:
                return self._rfc5280(*everything(), at, str(e))
            raise diagnose(leaf_cert, parsed, self.store, at, str(e)) from e
        self._check_leaf(leaf_cert)
        try:
            status, details = self._revocation(chain, at)
        except UnsupportedRevocation as e:
            if self.fallback:
                return self._rfc5280(*everything(), at, str(e))
            status, details = RevocationStatus.UNKNOWN, (f"unsupported CRL form: {e}",)
            self._unknown(details)
        return VerificationResult(
            tuple(chain), self.store.anchor_for(chain[-1]), status, details, "cryptography"
        )

    def _certificate(self, cert: x509.Certificate | bytes, what: str) -> x509.Certificate | bytes:
        # Objects get the strict parse of their DER too: a certificate read from a card, or
        # loaded by a caller with cryptography alone, has had no asn1crypto pass.
        der = cert if isinstance(cert, bytes) else _der(cert)
        try:
            parsed = _parse_der(der, what)
        except VerificationError:
            if self.profile is Profile.IGC_SANTE or not self.fallback:
                raise
            check_certificate_der(der, what)
            return der
        if self.profile is Profile.IGC_SANTE and _serial(parsed) <= 0:
            raise malformed(f"{what}: serial number is not positive")
        return parsed

    def _build_path(
        self, leaf: x509.Certificate, pool: list[x509.Certificate], at: dt.datetime
    ) -> list[x509.Certificate]:
        verifier = (
            PolicyBuilder()
            .store(self.store.store)
            .time(at)
            .max_chain_depth(self.max_depth)
            .extension_policies(ca_policy=self._ca_policy, ee_policy=self._ee_policy)
            .build_client_verifier()
        )
        return list(verifier.verify(leaf, pool).chain)

    def _check_leaf(self, leaf: x509.Certificate) -> None:
        for extension in extensions_of(leaf, "leaf certificate"):
            if extension.critical and extension.oid not in _KNOWN_EE_CRITICAL:
                raise VerificationError(
                    ErrorCode.UNKNOWN_CRITICAL_EXTENSION,
                    f"The end-entity certificate has unknown critical extension "
                    f"{extension.oid.dotted_string}",
                )
        check_usage(leaf, self.usage)

    def _revocation(
        self, chain: list[x509.Certificate], at: dt.datetime
    ) -> tuple[RevocationStatus, tuple[str, ...]]:
        details = []
        unknown = False
        # One deadline for all the downloads of this check (CrlCache.budget).
        cache = self.crl_cache.for_one_check() if self.crl_cache is not None else None
        for position, (cert, issuer) in enumerate(itertools.pairwise(chain)):
            status = self._status(cert, issuer, at, cache)
            details.append(f"chain[{position}]: {status.detail}")
            if status.status is RevocationStatus.REVOKED:
                raise VerificationError(ErrorCode.REVOKED, f"{dn(cert.subject)}: {status.detail}")
            unknown = unknown or status.status is RevocationStatus.UNKNOWN
        if unknown:
            self._unknown(tuple(details))
            return RevocationStatus.UNKNOWN, tuple(details)
        return RevocationStatus.GOOD, tuple(details)

    def _unknown(self, details: tuple[str, ...]) -> None:
        if self.hard:
            problems = [d for d in details if "not listed" not in d and "good" not in d]
            raise VerificationError(
                ErrorCode.REVOCATION_UNKNOWN, "; ".join(problems or list(details))
            )
        logger.warning("Revocation status unknown (soft mode): %s", "; ".join(details))

    def _status(
        self,
        cert: x509.Certificate,
        issuer: x509.Certificate,
        at: dt.datetime,
        cache: CrlCache | None,
    ) -> Status:
        if self.ocsp and ocsp_urls(cert):
            answer = ocsp_status(cert, issuer, at, deadline=cache.deadline if cache else None)
            if answer.status is not RevocationStatus.UNKNOWN:
                return answer
            logger.info("OCSP gave no answer (%s); trying CRLs", answer.detail)
        if cache is None:
            return crl_status(cert, issuer, at, self.crls)
        # The CRL files the caller gave answer first, as a cached copy that is not stale would:
        # a current CRL of the issuer that revokes the certificate, or covers it without listing
        # it, needs no download (and no warning when its distribution point is unreachable).
        # A "good" from them is still merged with what the cache already holds (a newer CRL
        # there may list the card: revoked by any CRL is revoked). Only what they leave unknown
        # is fetched.
        given = crl_status(cert, issuer, at, self.crls)
        if given.status is RevocationStatus.REVOKED:
            return given
        if given.status is RevocationStatus.GOOD:
            return crl_status(cert, issuer, at, self._with_cached(cert, cache))
        return crl_status(cert, issuer, at, self._with_fetched(cert, at, cache))

    def _with_cached(self, cert: x509.Certificate, cache: CrlCache) -> CrlSet:
        merged = CrlSet.of(self.crls)
        for url in crl_urls(cert):
            try:
                cached = cache.load(url)
            except VerificationError as e:
                logger.warning("Cached CRL of %s not used: %s", url, e.message)
                continue
            if cached is not None:
                merged.add(cached)
        return merged

    def _with_fetched(self, cert: x509.Certificate, at: dt.datetime, cache: CrlCache) -> CrlSet:
        merged = CrlSet.of(self.crls)
        for url in crl_urls(cert):
            try:
                merged.add(cache.get(url, at))
            except VerificationError as e:
                logger.warning("No CRL from %s: %s", url, e.message)
        return merged

    def _rfc5280(
        self, leaf: bytes, pool: list[bytes], at: dt.datetime, why: str
    ) -> VerificationResult:
        logger.info("RFC 5280 engine takes over: %s", why)
        anchors = [_der(a.certificate) for a in self.store]
        crls = [index.der() for index in self.crls]
        path = fallback.validate(
            leaf,
            pool,
            anchors,
            crls,
            at,
            hard=self.hard,
            legacy_algorithms=self.profile is Profile.RFC5280,
        )
        parsed = [try_load_certificate_der(d) for d in path]
        anchor_cert = parsed[-1]
        if anchor_cert is None:
            raise malformed("The RFC 5280 engine ended the path at an unreadable anchor")
        if parsed[0] is not None:
            self._check_leaf(parsed[0])
        elif self.profile is not Profile.RFC5280:
            # The IGC-Santé profile never accepts a leaf whose usage mie could not check.
            raise VerificationError(
                ErrorCode.MALFORMED, "The leaf certificate cannot be parsed for its usage checks"
            )
        return VerificationResult(
            tuple(c if c is not None else d for c, d in zip(parsed, path, strict=True)),
            self.store.anchor_for(anchor_cert),
            RevocationStatus.GOOD if self.hard else RevocationStatus.UNKNOWN,
            ("checked by the RFC 5280 engine",),
            "rfc5280",
        )


def check_usage(leaf: x509.Certificate, usage: Usage) -> None:
    """Check the end-entity keyUsage for ``usage``.

    Authentication needs digitalSignature; signature needs nonRepudiation (contentCommitment),
    as on the real CPS signature certificate.

    :raises VerificationError: ``key_usage``.
    """
    if usage is Usage.ANY:
        return
    try:
        key_usage = extensions_of(leaf).get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound as e:
        raise VerificationError(ErrorCode.KEY_USAGE, "The certificate has no keyUsage") from e
    if usage is Usage.AUTH and not key_usage.digital_signature:
        raise VerificationError(
            ErrorCode.KEY_USAGE,
            "The certificate keyUsage lacks digitalSignature: not an authentication certificate",
        )
    if usage is Usage.SIGN and not key_usage.content_commitment:
        raise VerificationError(
            ErrorCode.KEY_USAGE, "The certificate keyUsage lacks nonRepudiation: not for signature"
        )


def crl_urls(cert: x509.Certificate) -> list[str]:
    """:return: the HTTP(S) CRL distribution point URLs of ``cert`` (LDAP ones are skipped)."""
    try:
        points = extensions_of(cert).get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    urls = []
    for point in points:
        for name in point.full_name or []:
            if isinstance(name, x509.UniformResourceIdentifier) and str(
                name.value
            ).lower().startswith(("http://", "https://")):
                urls.append(str(name.value))
    return urls


@functools.lru_cache(maxsize=2048)
def _parse_der(der: bytes, what: str) -> x509.Certificate:
    # Parsed certificates are immutable; CA certificates offered on every call are parsed once.
    # The serial number is judged by the caller's profile.
    return load_certificate_der(der, what, allow_nonpositive_serial=True)


def _as_der(cert: x509.Certificate | bytes) -> bytes:
    return cert if isinstance(cert, bytes) else _der(cert)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _serial(cert: x509.Certificate) -> int:
    # cryptography warns about non-positive serials when parsing, not on this access.
    return cert.serial_number


def diagnose(
    leaf: x509.Certificate,
    pool: list[x509.Certificate],
    store: TrustStore,
    at: dt.datetime,
    engine_message: str,
) -> VerificationError:
    """Name the reason cryptography's verifier rejected a path (it only gives a message).

    Walks the path the names suggest and reports the first certificate-level problem found;
    the verdict itself was already given by cryptography.

    :return: the error to raise.
    """
    anchors = [a.certificate for a in store]
    path = [leaf]
    while True:
        current = path[-1]
        problem = _own_problem(current, at)
        if problem:
            return problem
        if current in store:
            break
        issuer = _issuer_of(current, pool + anchors)
        if isinstance(issuer, VerificationError):
            return issuer
        if issuer in path or len(path) > DEFAULT_MAX_DEPTH:
            return _untrusted(engine_message)
        path.append(issuer)
    for k in range(1, len(path)):
        below = sum(1 for c in path[1:k] if c.subject != c.issuer)
        problem = _issuer_problem(path[k], below)
        if problem:
            return problem
    return _untrusted(engine_message)


def _untrusted(message: str) -> VerificationError:
    return VerificationError(ErrorCode.UNTRUSTED, f"no valid path to a trust anchor ({message})")


def _own_problem(cert: x509.Certificate, at: dt.datetime) -> VerificationError | None:
    name = dn(cert.subject)
    if at > cert.not_valid_after_utc:
        return VerificationError(
            ErrorCode.EXPIRED, f"{name} expired {cert.not_valid_after_utc.isoformat()}"
        )
    if at < cert.not_valid_before_utc:
        return VerificationError(
            ErrorCode.NOT_YET_VALID,
            f"{name} is not valid before {cert.not_valid_before_utc.isoformat()}",
        )
    known = _KNOWN_EE_CRITICAL | {ExtensionOID.SUBJECT_KEY_IDENTIFIER}
    for extension in extensions_of(cert):
        if extension.critical and extension.oid not in known:
            return VerificationError(
                ErrorCode.UNKNOWN_CRITICAL_EXTENSION,
                f"{name} has unknown critical extension {extension.oid.dotted_string}",
            )
    return None


def _issuer_of(
    cert: x509.Certificate, candidates: list[x509.Certificate]
) -> x509.Certificate | VerificationError:
    # A CA of the right name whose key identifier differs is another CA that happens to share
    # the name (a test PKI mirroring the real names), not evidence of a forged signature.
    aki = _aki(cert)
    named = [c for c in candidates if c.subject == cert.issuer]
    keyed = [c for c in named if aki is None or _ski(c) in (None, aki)]
    for candidate in keyed:
        try:
            cert.verify_directly_issued_by(candidate)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue
        return candidate
    name = dn(cert.subject)
    if keyed:
        return VerificationError(
            ErrorCode.BAD_SIGNATURE, f"signature of {name} does not verify with its issuer's key"
        )
    if aki is not None and any(_ski(c) == aki for c in candidates):
        return VerificationError(
            ErrorCode.NAME_CHAINING,
            f"issuer name of {name} does not match the subject of the CA holding its key",
        )
    if named:
        return VerificationError(
            ErrorCode.UNTRUSTED,
            f"no issuer for {name} is known: {dn(cert.issuer)} is known only with another key "
            f"(key identifier {_key_id(aki)} wanted)",
        )
    return VerificationError(
        ErrorCode.UNTRUSTED, f"no issuer for {name} ({dn(cert.issuer)}) is known"
    )


def _key_id(value: bytes | None) -> str:
    return value.hex(":") if value else "none"


def _issuer_problem(issuer: x509.Certificate, below: int) -> VerificationError | None:
    name = dn(issuer.subject)
    try:
        constraints = extensions_of(issuer).get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        return VerificationError(ErrorCode.NOT_CA, f"{name} is not a CA but issued a certificate")
    if constraints.path_length is not None and below > constraints.path_length:
        return VerificationError(
            ErrorCode.PATH_LENGTH,
            f"{name} allows {constraints.path_length} intermediate(s) below it, found {below}",
        )
    try:
        usage = extensions_of(issuer).get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if not usage.key_cert_sign:
        return VerificationError(ErrorCode.KEY_USAGE, f"{name} keyUsage lacks keyCertSign")
    return None


def _aki(cert: x509.Certificate) -> bytes | None:
    try:
        ext = extensions_of(cert).get_extension_for_class(x509.AuthorityKeyIdentifier)
    except x509.ExtensionNotFound:
        return None
    return ext.value.key_identifier


def _ski(cert: x509.Certificate) -> bytes | None:
    try:
        return extensions_of(cert).get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


__all__ = [
    "Profile",
    "RevocationMode",
    "Usage",
    "VerificationResult",
    "Verifier",
    "VerifierBuilder",
    "check_usage",
    "crl_urls",
    "diagnose",
    "fingerprint",
]
