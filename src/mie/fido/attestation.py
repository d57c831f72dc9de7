"""WebAuthn attestation statements, verified against a relying party's :class:`FidoPolicy`.

Formats (plan D5): ``packed`` with an ``x5c`` chain (full, "basic" attestation) or without
(self attestation), and ``none``. Every other format (``fido-u2f``, ``tpm``, ``apple``,
``android-key``, ``android-safetynet``) and ECDAA are refused (``attestation_refused``); so are
self and none under an attested-only policy.

A packed full statement is checked in this order, each step raising:

1. the statement: exactly ``alg`` (a known COSE algorithm fitting the leaf key), ``sig`` and
   ``x5c`` (1 to :data:`MAX_CHAIN` DER certificates of at most 64 KiB, each parsed strictly by
   :mod:`mie.trust.parse`) → ``attestation_invalid`` / ``attestation_refused`` / ``malformed``;
2. the leaf profile (WebAuthn §8.2.1, ``../shared/reference/fido2.md`` §5): X.509 v3,
   basicConstraints present with CA false, subject C, O, OU = ``Authenticator Attestation``
   and CN, the ``id-fido-gen-ce-aaguid`` extension present (mie always requires it), not
   critical, a DER OCTET STRING equal to the authenticator data's AAGUID →
   ``attestation_invalid``;
3. the signature of ``authData ‖ clientDataHash`` with the leaf key → ``signature_invalid``;
4. the model (AAGUID): listed in the allowlist when one is set → ``aaguid_unknown``; the FIDO
   metadata when configured (:meth:`mie.fido.mds.MetadataIndex.check`: status, certification,
   staleness) → ``aaguid_unknown`` / ``metadata_status`` / ``metadata_stale``; the allowlist
   entry's own minimum certification → ``metadata_status``;
5. the path (plan D6) from the leaf to a root listed **for that AAGUID**: the allowlist entry's
   roots and the metadata entry's roots, else (an allowlisted model naming none) the policy's
   ``attestation_roots``; a vendor root never vouches for another vendor's model. The path is
   checked by :mod:`mie.trust` (dates, CA constraints, pathLen, signatures; CRLs when given,
   soft revocation: attestation CAs rarely publish CRLs, the metadata's compromise statuses are
   the revocation channel) and a failure keeps its code (``expired``, ``not_ca``,
   ``untrusted``...), the message prefixed ``attestation chain:``; the metadata's compromise
   reports are checked again on the verified path (one naming its root refuses it).

Self and none attestation prove nothing of the model: the AAGUID is what the key claims. They
are accepted only under ``attestation: "optional"``, and the AAGUID rules of step 4 still
apply (a claimed model not on the allowlist, or refused by the metadata, is refused; so is one
with a refused status naming one batch's certificate: such a key shows no chain to tell its
batch).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from mie.core.errors import ErrorCode, SignatureInvalidError, VerificationError
from mie.fido.allowlist import AllowedKey, aaguid_text, certification_rank, is_test_root
from mie.fido.authdata import AuthenticatorData
from mie.fido.cose import ALGORITHM_NAMES, EDDSA, ES256
from mie.fido.errors import (
    AttestationInvalidError,
    AttestationRefusedError,
    FidoPolicyError,
    MetadataStatusError,
    UnknownAaguidError,
)
from mie.fido.policy import FidoPolicy, MetadataPolicy
from mie.trust import (
    Anchor,
    RevocationMode,
    RevocationStatus,
    TrustStore,
    Usage,
    VerificationResult,
    VerifierBuilder,
)

MAX_CHAIN = 5
"""Most certificates in a packed ``x5c``."""
MAX_SIGNATURE = 1024
"""Longest attestation signature read (RSA-4096 is 512 bytes)."""
OID_FIDO_GEN_CE_AAGUID = x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")
ATTESTATION_OU = "Authenticator Attestation"
SUPPORTED_FORMATS = ("packed", "none")
KNOWN_FORMATS = ("packed", "none", "fido-u2f", "tpm", "apple", "android-key", "android-safetynet")
CHAIN_PREFIX = "attestation chain: "

AttestationType = Literal["basic", "attca", "self", "none"]

# Soft revocation makes mie.trust warn when no CRL covers a chain. Attestation CAs rarely
# publish CRLs (plan D6), so that is the normal case here and the report carries it as a reason;
# the warning, on every registration, would only be noise on the CLI's stderr.
_CHECKING = contextvars.ContextVar("mie_fido_attestation_chain", default=False)


class _QuietUnknownRevocation(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (_CHECKING.get() and str(record.msg).startswith("Revocation status unknown"))


logging.getLogger("mie.trust.verify").addFilter(_QuietUnknownRevocation())
_PACKED_MEMBERS = frozenset({"alg", "sig", "x5c"})


class MetadataSource(Protocol):
    """What :func:`verify_attestation` needs of the FIDO metadata (:class:`mie.fido.mds.
    MetadataIndex` is one)."""

    def check(
        self,
        aaguid: bytes,
        *,
        chain: Sequence[bytes] = (),
        policy: MetadataPolicy,
        at: dt.datetime,
    ) -> MetadataEntry | None:
        """:return: the model's entry, or ``None`` when not listed and not required."""


class MetadataEntry(Protocol):
    """What is read of a model's metadata (:class:`mie.fido.mds.MetadataView` is one)."""

    @property
    def description(self) -> str:
        """The model's description."""

    @property
    def roots(self) -> tuple[x509.Certificate, ...]:
        """The attestation roots listed for the model."""

    @property
    def certification(self) -> str | None:
        """The certification level in force (``L1`` ... ``L3plus``), or ``None``."""


@dataclass(frozen=True)
class AttestationReport:
    """A verified attestation.

    :param format: ``packed`` or ``none``.
    :param type: ``basic`` (a packed chain), ``self`` or ``none``.
    :param aaguid: the key model (16 bytes; only proven for ``basic``).
    :param chain: the verified path in DER, leaf first, anchor last (empty for self and none).
    :param anchor: the subject DN of the root the path ends at, or ``None``.
    :param entry: the metadata entry of the model, if any.
    :param allowed: the allowlist entry of the model, if any.
    :param test: a TEST key (TEST root or allowlist entry marked TEST).
    :param revocation: what the CRLs said of the chain (``unknown`` without CRLs), or ``None``.
    :param reasons: reservations (revocation not checked, metadata past its update...).
    """

    format: str
    type: AttestationType
    aaguid: bytes
    chain: tuple[bytes, ...]
    anchor: str | None
    entry: MetadataEntry | None
    allowed: AllowedKey | None
    test: bool
    revocation: RevocationStatus | None
    reasons: tuple[str, ...] = ()

    @property
    def attested(self) -> bool:
        """:return: whether the model is proven (packed full attestation to a listed root)."""
        return self.type in ("basic", "attca")

    @property
    def summary(self) -> str:
        """:return: the short form a credential record keeps (``packed/basic``, ``packed/self``,
        ``none``)."""
        return "none" if self.format == "none" else f"{self.format}/{self.type}"

    @property
    def certification(self) -> str | None:
        """:return: the model's certification level from the metadata, if known."""
        return None if self.entry is None else self.entry.certification


def verify_attestation(
    fmt: str,
    att_stmt: Mapping[Any, Any],
    auth_data: AuthenticatorData,
    client_data_hash: bytes,
    *,
    policy: FidoPolicy,
    metadata: MetadataSource | None = None,
    at: dt.datetime | None = None,
) -> AttestationReport:
    """Verify an attestation statement (order in the module docstring).

    :param fmt: the attestation object's ``fmt``.
    :param att_stmt: its ``attStmt`` (a decoded CBOR map).
    :param auth_data: the parsed authenticator data, with its attested credential.
    :param client_data_hash: SHA-256 of the client data JSON.
    :param policy: the relying party's policy.
    :param metadata: the verified FIDO metadata; required when ``policy.metadata`` is set.
    :param at: an aware time to verify at (default: now).
    :return: the report.
    :raises AttestationRefusedError: a format, type or algorithm the policy does not take.
    :raises AttestationInvalidError: a statement or leaf that breaks the profile.
    :raises SignatureInvalidError: the statement's signature does not verify.
    :raises UnknownAaguidError: the model is not allowlisted, or not in required metadata.
    :raises MetadataStatusError: the metadata refuses the model, or its certification is low.
    :raises MetadataStaleError: the metadata is past its update (under ``stale: "refuse"``).
    :raises VerificationError: the chain fails (its code; ``attestation chain:`` message).
    :raises FidoPolicyError: the policy names metadata and none was given.
    """
    when = _aware(at)
    credential = auth_data.credential
    if credential is None:
        raise AttestationInvalidError("Authenticator data holds no attested credential")
    if not isinstance(fmt, str) or fmt not in SUPPORTED_FORMATS:
        shown = repr(fmt)[:40] if isinstance(fmt, str) else "not a string"
        known = "" if fmt in KNOWN_FORMATS else " (not a WebAuthn format)"
        raise AttestationRefusedError(f"Attestation format {shown}{known} is not supported")
    if not isinstance(att_stmt, Mapping):
        raise AttestationInvalidError("The attestation statement is not a map")
    signed = auth_data.raw + client_data_hash
    if fmt == "none":
        if att_stmt:
            raise AttestationInvalidError("A none attestation statement is not empty")
        _refuse_unattested(policy, "none")
        return _unattested("none", "none", auth_data, policy, metadata, when)
    _check_members(att_stmt)
    alg = att_stmt.get("alg")
    if type(alg) is not int:
        raise AttestationInvalidError("The packed statement's alg is not an integer")
    signature = att_stmt.get("sig")
    if not isinstance(signature, bytes) or not 0 < len(signature) <= MAX_SIGNATURE:
        raise AttestationInvalidError(
            f"The packed statement's sig is not a byte string of 1 to {MAX_SIGNATURE} bytes"
        )
    if "x5c" not in att_stmt:
        _refuse_unattested(policy, "self")
        if alg != credential.public_key.alg:
            raise AttestationInvalidError(
                f"Self attestation alg {alg} is not the credential key's "
                f"{credential.public_key.alg}"
            )
        credential.public_key.verify(signature, signed)
        return _unattested("packed", "self", auth_data, policy, metadata, when)
    ders = _x5c(att_stmt["x5c"])
    certificates = [_parse(der, position) for position, der in enumerate(ders)]
    leaf = certificates[0]
    _check_leaf(leaf, credential.aaguid)
    _verify_signature(leaf, alg, signature, signed)
    allowed, entry, reasons = _model(credential.aaguid, ders, policy, metadata, when)
    anchors = _anchors(credential.aaguid, allowed, entry, policy)
    result = _path(leaf, certificates[1:], anchors, policy, when)
    if entry is not None and metadata is not None and policy.metadata is not None:
        # Again on the verified path: a compromise report may name the root it ends at, which
        # the key's x5c does not carry.
        metadata.check(credential.aaguid, chain=result.chain, policy=policy.metadata, at=when)
    if result.revocation is RevocationStatus.UNKNOWN:
        reasons.append("attestation chain revocation not checked (no CRL of its CAs)")
    test = (allowed is not None and allowed.test) or result.anchor.test
    return AttestationReport(
        "packed",
        "basic",
        credential.aaguid,
        result.chain,
        result.anchor.name,
        entry,
        allowed,
        test,
        result.revocation,
        tuple(reasons),
    )


def _aware(at: dt.datetime | None) -> dt.datetime:
    if at is None:
        return dt.datetime.now(dt.UTC)
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("The verification time must be timezone-aware")
    return at.astimezone(dt.UTC)


def _refuse_unattested(policy: FidoPolicy, kind: str) -> None:
    if policy.attested_only:
        raise AttestationRefusedError(
            f"{kind.capitalize()} attestation refused: the policy takes attested keys only "
            "(packed attestation to a root listed for the model)"
        )


def _unattested(
    fmt: str,
    kind: AttestationType,
    auth_data: AuthenticatorData,
    policy: FidoPolicy,
    metadata: MetadataSource | None,
    at: dt.datetime,
) -> AttestationReport:
    credential = auth_data.credential
    assert credential is not None  # noqa: S101 (checked by the caller)
    allowed, entry, reasons = _model(credential.aaguid, (), policy, metadata, at)
    if entry is not None and policy.metadata is not None:
        _refuse_batch_reports(entry, policy.metadata, credential.aaguid)
    reasons.insert(0, f"{kind} attestation: the key model (AAGUID) is claimed, not proven")
    test = allowed is not None and allowed.test
    return AttestationReport(
        fmt, kind, credential.aaguid, (), None, entry, allowed, test, None, tuple(reasons)
    )


def _refuse_batch_reports(entry: MetadataEntry, rules: MetadataPolicy, aaguid: bytes) -> None:
    """A refused status naming one batch's certificate: :meth:`MetadataSource.check` refuses it
    only for chains holding the certificate, and a self or none attested key shows no chain, so
    nothing tells it is not of that batch (fail closed, as its assertions are)."""
    for report in getattr(entry, "statuses", ()):
        if report.status in rules.refuse and report.certificate is not None:
            since = report.date.isoformat() if report.date else "an unknown date"
            raise MetadataStatusError(
                f"FIDO metadata of AAGUID {aaguid_text(aaguid)}: status {report.status} since "
                f"{since} for one attestation certificate, and this key shows no chain"
            )


def _check_members(att_stmt: Mapping[Any, Any]) -> None:
    for key in att_stmt:
        if key == "ecdaaKeyId":
            raise AttestationRefusedError("ECDAA attestation is not supported")
        if key not in _PACKED_MEMBERS:
            shown = repr(key)[:40]
            raise AttestationInvalidError(f"The packed statement has unknown member {shown}")


def _x5c(value: object) -> list[bytes]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_CHAIN:
        raise AttestationInvalidError(
            f"The packed statement's x5c is not an array of 1 to {MAX_CHAIN} certificates"
        )
    if not all(isinstance(der, bytes) for der in value):
        raise AttestationInvalidError("The packed statement's x5c holds a non-byte string")
    return value


def _parse(der: bytes, position: int) -> x509.Certificate:
    from mie.trust.parse import load_certificate_der

    try:
        return load_certificate_der(der, f"x5c[{position}]")
    except VerificationError as e:
        raise VerificationError(e.code, CHAIN_PREFIX + e.message) from e


def _check_leaf(leaf: x509.Certificate, aaguid: bytes) -> None:
    what = "The attestation certificate"
    if leaf.version is not x509.Version.v3:
        raise AttestationInvalidError(f"{what} is not X.509 version 3")
    try:
        constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise AttestationInvalidError(f"{what} has no basicConstraints") from None
    if constraints.ca:
        raise AttestationInvalidError(f"{what} is a CA (basicConstraints CA true)")
    subject = leaf.subject
    for oid, name in (
        (NameOID.COUNTRY_NAME, "C"),
        (NameOID.ORGANIZATION_NAME, "O"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "OU"),
        (NameOID.COMMON_NAME, "CN"),
    ):
        values = subject.get_attributes_for_oid(oid)
        if len(values) != 1 or not values[0].value:
            raise AttestationInvalidError(f"{what}'s subject has no single {name}")
    unit = subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value
    if unit != ATTESTATION_OU:
        raise AttestationInvalidError(f"{what}'s subject OU is not {ATTESTATION_OU!r}")
    try:
        extension = leaf.extensions.get_extension_for_oid(OID_FIDO_GEN_CE_AAGUID)
    except x509.ExtensionNotFound:
        raise AttestationInvalidError(
            f"{what} has no AAGUID extension (1.3.6.1.4.1.45724.1.1.4)"
        ) from None
    if extension.critical:
        raise AttestationInvalidError(f"{what}'s AAGUID extension is critical")
    value = extension.value
    raw = value.value if isinstance(value, x509.UnrecognizedExtension) else b""
    if len(raw) != 18 or raw[:2] != b"\x04\x10":
        raise AttestationInvalidError(
            f"{what}'s AAGUID extension is not a DER OCTET STRING of 16 bytes"
        )
    if raw[2:] != aaguid:
        raise AttestationInvalidError(
            f"{what} is for AAGUID {aaguid_text(raw[2:])}, the key says {aaguid_text(aaguid)}"
        )


def _verify_signature(leaf: x509.Certificate, alg: int, signature: bytes, signed: bytes) -> None:
    if alg not in ALGORITHM_NAMES:
        raise AttestationRefusedError(f"Attestation algorithm {alg} is not supported")
    key = leaf.public_key()
    name = ALGORITHM_NAMES[alg]
    if alg == ES256:
        fits = isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    elif alg == EDDSA:
        fits = isinstance(key, ed25519.Ed25519PublicKey)
    else:
        fits = isinstance(key, rsa.RSAPublicKey) and 2048 <= key.key_size <= 4096
    if not fits:
        raise AttestationInvalidError(f"The attestation certificate's key is not an {name} key")
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, signed)
    except (InvalidSignature, ValueError) as e:
        raise SignatureInvalidError(f"The {name} attestation signature does not verify") from e


def _model(
    aaguid: bytes,
    chain: Sequence[bytes],
    policy: FidoPolicy,
    metadata: MetadataSource | None,
    at: dt.datetime,
) -> tuple[AllowedKey | None, MetadataEntry | None, list[str]]:
    name = aaguid_text(aaguid)
    allowed = None
    if policy.allowlist is not None:
        allowed = policy.allowlist.entry(aaguid)
        if allowed is None:
            raise UnknownAaguidError(f"AAGUID {name} is not in the allowlist")
    entry = None
    reasons: list[str] = []
    if policy.metadata is not None:
        if metadata is None:
            raise FidoPolicyError("The FIDO policy names metadata, and none was loaded")
        entry = metadata.check(aaguid, chain=chain, policy=policy.metadata, at=at)
        reasons += list(getattr(metadata, "reasons", ()))
    if allowed is not None and allowed.min_certification is not None:
        level = None if entry is None else entry.certification
        if level is None or certification_rank(level) < certification_rank(
            allowed.min_certification
        ):
            held = "no known certification" if level is None else f"certification {level}"
            raise MetadataStatusError(
                f"{allowed.name} ({name}): {held}, the allowlist asks "
                f"{allowed.min_certification} at least"
            )
    return allowed, entry, reasons


def _anchors(
    aaguid: bytes,
    allowed: AllowedKey | None,
    entry: MetadataEntry | None,
    policy: FidoPolicy,
) -> list[x509.Certificate]:
    roots = list(allowed.roots) if allowed is not None else []
    if entry is not None:
        roots += [root for root in entry.roots if root not in roots]
    if not roots and allowed is not None:
        roots = list(policy.attestation_roots)
    if not roots:
        raise VerificationError(
            ErrorCode.UNTRUSTED,
            f"{CHAIN_PREFIX}no attestation root is listed for AAGUID {aaguid_text(aaguid)}",
        )
    return roots


def _path(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    roots: list[x509.Certificate],
    policy: FidoPolicy,
    at: dt.datetime,
) -> VerificationResult:
    try:
        anchors = [Anchor.from_certificate(r, "explicit", test=is_test_root(r)) for r in roots]
        verifier = (
            VerifierBuilder()
            .store(TrustStore(anchors, []))
            .usage(Usage.ANY)
            .time(at)
            .revocation(RevocationMode.SOFT)
            .crls(policy.crl_set())
            .build()
        )
        token = _CHECKING.set(True)
        try:
            return verifier.verify(leaf, intermediates)
        finally:
            _CHECKING.reset(token)
    except VerificationError as e:
        raise VerificationError(e.code, CHAIN_PREFIX + e.message) from e


__all__ = [
    "CHAIN_PREFIX",
    "MAX_CHAIN",
    "SUPPORTED_FORMATS",
    "AttestationReport",
    "MetadataEntry",
    "MetadataSource",
    "verify_attestation",
]
