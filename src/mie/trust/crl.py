"""CRLs and delta CRLs behind an O(1) serial index.

A :class:`CrlIndex` parses a CRL once (cryptography's Rust parser), keeps a ``serial → entry
position`` dict, and caches its signature check per issuer key, so a lookup costs one dict probe
whatever the CRL size. :func:`crl_status` applies one certificate's CRLs the way RFC 5280 §6.3
does for the IGC-Santé profile: a complete CRL from the certificate's issuer, signed with the
issuer's key (which must allow cRLSign), current at the check time, whose scope covers the
certificate, optionally updated by a delta CRL. Anything outside that profile (indirect CRLs,
cRLIssuer or reason-partitioned distribution points, a CRL signed with another key) raises
:class:`UnsupportedRevocation`, which the verifier hands to the RFC 5280 engine when enabled and
otherwise treats as ``revocation_unknown``.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum, unique

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID

from mie.trust.errors import describe
from mie.trust.parse import force_crl, guarded, load_crl
from mie.trust.store import dn

_KNOWN_CRL_EXTENSIONS = frozenset(
    {
        ExtensionOID.CRL_NUMBER,
        ExtensionOID.DELTA_CRL_INDICATOR,
        ExtensionOID.ISSUING_DISTRIBUTION_POINT,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.ISSUER_ALTERNATIVE_NAME,
        ExtensionOID.FRESHEST_CRL,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
    }
)
_KNOWN_ENTRY_EXTENSIONS = frozenset(
    {CRLEntryExtensionOID.CRL_REASON, CRLEntryExtensionOID.INVALIDITY_DATE}
)


@unique
class RevocationStatus(Enum):
    """What revocation data says about a certificate."""

    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


class UnsupportedRevocation(Exception):  # noqa: N818 (internal signal, never escapes mie.trust)
    """The CRLs use RFC 5280 features outside the fast index's profile."""


@dataclass(frozen=True)
class Status:
    """A revocation answer for one certificate.

    :param status: good, revoked or unknown.
    :param detail: why (CRL used, reason, or what was missing).
    """

    status: RevocationStatus
    detail: str


class CrlIndex:
    """One parsed CRL with an O(1) serial lookup.

    :param crl: the CRL (its signature is checked against an issuer by :meth:`signed_by`).
    :param source: where it came from, for messages.
    :raises VerificationError: ``malformed`` when a part of ``crl`` does not decode.
    """

    def __init__(self, crl: x509.CertificateRevocationList, source: str) -> None:
        self.crl = crl
        self.source = source
        self.number: int | None = None
        self.delta_base: int | None = None
        self.idp: x509.IssuingDistributionPoint | None = None
        self.aki: bytes | None = None
        self.unusable: str | None = None
        guarded(source, "CRL", self._read)
        self._signature_checked: dict[x509.Certificate, bool] = {}

    def _read(self) -> None:
        crl = force_crl(self.crl)
        self.issuer = crl.issuer
        self.issuer_der = crl.issuer.public_bytes()
        self.this_update = crl.last_update_utc
        self.next_update = crl.next_update_utc
        for extension in crl.extensions:
            self._note_extension(extension)
        # A set of serials (no entry positions): cryptography materialises every entry on the
        # first indexed access, which would double the memory of a large CRL.
        self._serials = frozenset(entry.serial_number for entry in crl)

    def _note_extension(self, extension: x509.Extension[x509.ExtensionType]) -> None:
        value = extension.value
        if isinstance(value, x509.CRLNumber):
            self.number = value.crl_number
        elif isinstance(value, x509.DeltaCRLIndicator):
            self.delta_base = value.crl_number
        elif isinstance(value, x509.IssuingDistributionPoint):
            self.idp = value
        elif isinstance(value, x509.AuthorityKeyIdentifier):
            self.aki = value.key_identifier
        elif extension.critical and extension.oid not in _KNOWN_CRL_EXTENSIONS:
            self.unusable = f"unknown critical CRL extension {extension.oid.dotted_string}"

    @classmethod
    def from_bytes(cls, data: bytes, source: str, *, max_bytes: int | None = None) -> CrlIndex:
        """Parse a PEM or DER CRL strictly and index it.

        :param max_bytes: size limit (default :func:`mie.trust.parse.max_crl_bytes`).
        :raises VerificationError: ``malformed`` (and nothing else, whatever the bytes).
        """
        return cls(load_crl(data, source, max_bytes=max_bytes), source)

    def __len__(self) -> int:
        return len(self._serials)

    @property
    def is_delta(self) -> bool:
        """:return: whether this is a delta CRL (DeltaCRLIndicator present)."""
        return self.delta_base is not None

    def lookup(self, serial: int) -> x509.RevokedCertificate | None:
        """The entry for ``serial``: one set probe, and a scan of the CRL only when listed.

        :return: the entry, or ``None``.
        :raises VerificationError: ``malformed`` if the entry cannot be read.
        """
        if serial not in self._serials:
            return None
        find = self.crl.get_revoked_certificate_by_serial_number
        return guarded(self.source, "CRL entry", lambda: find(serial))

    def signed_by(self, issuer: x509.Certificate) -> bool:
        """:return: whether ``issuer``'s key verifies the CRL signature (cached per key); an
        algorithm or key that cannot be used counts as not verifying."""
        known = self._signature_checked.get(issuer)
        if known is None:
            try:
                known = self.crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
            except Exception:  # UnsupportedAlgorithm, a key type for which this makes no sense...
                known = False
            self._signature_checked[issuer] = known
        return known

    def der(self) -> bytes:
        """:return: the CRL in DER."""
        return self.crl.public_bytes(serialization.Encoding.DER)


@dataclass
class CrlSet:
    """The CRLs a verifier may use, grouped by issuer name."""

    _by_issuer: dict[bytes, list[CrlIndex]] = field(default_factory=dict)

    def add(self, index: CrlIndex) -> None:
        """Add one CRL."""
        self._by_issuer.setdefault(index.issuer_der, []).append(index)

    def issued_by(self, name: x509.Name) -> list[CrlIndex]:
        """:return: the CRLs whose issuer is ``name``."""
        return self._by_issuer.get(name.public_bytes(), [])

    def for_certificate(self, cert: x509.Certificate) -> list[CrlIndex]:
        """:return: the CRLs whose issuer is ``cert``'s issuer."""
        return self._by_issuer.get(_issuer_der(cert), [])

    def __iter__(self) -> Iterator[CrlIndex]:
        for group in self._by_issuer.values():
            yield from group

    def __len__(self) -> int:
        return sum(len(g) for g in self._by_issuer.values())

    @classmethod
    def of(cls, indexes: Iterable[CrlIndex]) -> CrlSet:
        """:return: a set holding ``indexes``."""
        result = cls()
        for index in indexes:
            result.add(index)
        return result


class _Unusable(Exception):  # noqa: N818 (internal)
    pass


def crl_status(
    cert: x509.Certificate, issuer: x509.Certificate, at: dt.datetime, crls: CrlSet
) -> Status:
    """Revocation status of ``cert`` from the CRLs of its issuer.

    :param cert: the certificate to check.
    :param issuer: the certificate that issued it (already verified as its issuer).
    :param at: the check time (aware).
    :param crls: available CRLs.
    :return: good, revoked or unknown (with the reason).
    :raises UnsupportedRevocation: the CRLs need RFC 5280 features the index does not handle.
    """
    try:
        return _crl_status(cert, issuer, at, crls)
    except UnsupportedRevocation:
        raise
    # A CRL that cannot be read says nothing: unknown for this certificate, never an exception
    # out of the verifier (nor "good").
    except Exception as e:
        return Status(RevocationStatus.UNKNOWN, f"revocation data unreadable ({describe(e)})")


def _crl_status(
    cert: x509.Certificate, issuer: x509.Certificate, at: dt.datetime, crls: CrlSet
) -> Status:
    if not _plain_distribution_points(cert):
        raise UnsupportedRevocation("distribution point with cRLIssuer, reasons or RDN")
    candidates = crls.for_certificate(cert)
    problems: list[str] = []
    bases: list[CrlIndex] = []
    deltas: list[CrlIndex] = []
    for index in candidates:
        try:
            _check_usable(index, cert, issuer, at)
        except _Unusable as e:
            problems.append(f"{index.source}: {e}")
            continue
        (deltas if index.is_delta else bases).append(index)
    if not bases:
        reason = "; ".join(problems) or f"no CRL from {dn(cert.issuer)}"
        return Status(RevocationStatus.UNKNOWN, reason)
    base = max(bases, key=lambda b: (b.number or 0, b.this_update))
    delta, delta_problem = _pick_delta(base, deltas, candidates, problems)
    if delta_problem:
        return Status(RevocationStatus.UNKNOWN, delta_problem)
    if delta is not None:
        entry = delta.lookup(cert.serial_number)
        if entry is not None:
            return _entry_status(entry, delta)
    entry = base.lookup(cert.serial_number)
    if entry is None:
        return Status(RevocationStatus.GOOD, f"not listed in {base.source}")
    return _entry_status(entry, base)


def _pick_delta(
    base: CrlIndex, deltas: list[CrlIndex], candidates: list[CrlIndex], problems: list[str]
) -> tuple[CrlIndex | None, str | None]:
    applicable = [
        d
        for d in deltas
        if base.number is not None
        and d.delta_base is not None
        and d.delta_base <= base.number
        and (d.number or 0) > base.number
        and d.idp == base.idp
    ]
    if applicable:
        return max(applicable, key=lambda d: d.number or 0), None
    unusable_deltas = [c for c in candidates if c.is_delta and c not in deltas]
    if unusable_deltas:
        # A delta CRL exists for this scope but cannot be used: the base alone may be out of
        # date, so fail closed.
        return None, "delta CRL unusable: " + "; ".join(
            p for p in problems if any(p.startswith(d.source) for d in unusable_deltas)
        )
    return None, None


def _entry_status(entry: x509.RevokedCertificate, index: CrlIndex) -> Status:
    try:
        extensions = list(entry.extensions)
        when = entry.revocation_date_utc.isoformat()
    except Exception as e:
        # A listed serial whose entry cannot be read: revoked or not, nobody can tell.
        return Status(
            RevocationStatus.UNKNOWN, f"{index.source}: CRL entry does not parse ({describe(e)})"
        )
    reason: x509.ReasonFlags | None = None
    for extension in extensions:
        if extension.oid == CRLEntryExtensionOID.CERTIFICATE_ISSUER:
            raise UnsupportedRevocation("CRL entry with certificateIssuer (indirect CRL)")
        if extension.critical and extension.oid not in _KNOWN_ENTRY_EXTENSIONS:
            return Status(
                RevocationStatus.UNKNOWN,
                f"{index.source}: unknown critical CRL entry extension "
                f"{extension.oid.dotted_string}",
            )
        if isinstance(extension.value, x509.CRLReason):
            reason = extension.value.reason
    if reason is x509.ReasonFlags.remove_from_crl:
        if index.is_delta:
            return Status(RevocationStatus.GOOD, f"removed from CRL by {index.source}")
        return Status(RevocationStatus.GOOD, f"not listed in {index.source}")
    why = reason.value if reason else "unspecified"
    return Status(RevocationStatus.REVOKED, f"revoked {when} ({why}) per {index.source}")


# Facts read from certificates are cached per certificate: CA certificates recur on every check.
@functools.lru_cache(maxsize=4096)
def _issuer_der(cert: x509.Certificate) -> bytes:
    return cert.issuer.public_bytes()


@functools.lru_cache(maxsize=4096)
def _plain_distribution_points(cert: x509.Certificate) -> bool:
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return True
    return not any(p.crl_issuer or p.reasons or p.relative_name for p in points)


@dataclass(frozen=True)
class _IssuerFacts:
    crl_sign: bool
    ski: bytes | None


@functools.lru_cache(maxsize=1024)
def _issuer_facts(issuer: x509.Certificate) -> _IssuerFacts:
    try:
        usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
        crl_sign = usage.crl_sign
    except x509.ExtensionNotFound:
        crl_sign = True
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        ski = None
    return _IssuerFacts(crl_sign, ski)


def _check_usable(
    index: CrlIndex, cert: x509.Certificate, issuer: x509.Certificate, at: dt.datetime
) -> None:
    if index.unusable:
        raise _Unusable(index.unusable)
    _check_issuer_key(index, issuer)
    if index.next_update is None:
        raise _Unusable("CRL has no nextUpdate")
    if at < index.this_update:
        raise _Unusable(f"CRL thisUpdate {index.this_update.isoformat()} is after the check time")
    if at > index.next_update:
        raise _Unusable(f"CRL is stale (nextUpdate {index.next_update.isoformat()})")
    _check_scope(index, cert)


def _check_issuer_key(index: CrlIndex, issuer: x509.Certificate) -> None:
    facts = _issuer_facts(issuer)
    if index.aki is not None and facts.ski is not None and index.aki != facts.ski:
        raise UnsupportedRevocation("CRL signed with a key other than the certificate issuer's")
    if not index.signed_by(issuer):
        if index.aki is None or facts.ski is None:
            raise UnsupportedRevocation("CRL signature does not verify with the issuer key")
        raise _Unusable("CRL signature does not verify")
    if not facts.crl_sign:
        raise _Unusable("issuer keyUsage does not allow cRLSign")


def _check_scope(index: CrlIndex, cert: x509.Certificate) -> None:
    idp = index.idp
    if idp is None:
        return
    if idp.indirect_crl or idp.only_some_reasons or idp.relative_name:
        raise UnsupportedRevocation("indirect, reason-partitioned or RDN-scoped CRL")
    if idp.only_contains_attribute_certs:
        raise _Unusable("CRL covers attribute certificates only")
    ca = _is_ca(cert)
    if idp.only_contains_user_certs and ca:
        raise _Unusable("CRL covers end-entity certificates only")
    if idp.only_contains_ca_certs and not ca:
        raise _Unusable("CRL covers CA certificates only")
    if idp.full_name and not _distribution_point_matches(idp.full_name, cert):
        raise _Unusable("CRL distribution point does not match the certificate's")


def _distribution_point_matches(names: list[x509.GeneralName], cert: x509.Certificate) -> bool:
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return False
    wanted = set(names)
    return any(p.full_name and wanted.intersection(p.full_name) for p in points)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False
