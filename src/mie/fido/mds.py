"""FIDO metadata (MDS3): the signed blob of key models, read strictly, and the policy checks on it.

The FIDO Alliance publishes one JWS (compact serialisation) at :data:`MDS_URL`: a header naming
the signing algorithm and the signer's certificate chain (``x5c``), and a payload listing every
certified model by AAGUID with its status history and attestation roots.
:meth:`MetadataIndex.load` accepts a blob only after, in this order (plan §5.2):

1. at most :data:`MAX_BLOB_BYTES`, three unpadded base64url parts (strict alphabet, canonical);
2. a strict JSON header ``{"alg": "RS256" | "ES256", "typ": "JWT", "x5c": [1..5 DER]}``; a
   header with ``x5u`` (a key URL) or without ``x5c`` is refused: mie fetches no key;
3. the ``x5c`` chain verified to the MDS root by :mod:`mie.trust` (dates, CA constraints,
   signatures; revocation when CRLs are given); under the bundled root (a public CA's) the
   signer must be the FIDO Alliance's (:data:`MDS_SIGNER_NAMES`);
4. the JWS signature over ``header.payload`` with the signer's key (RS256: PKCS#1 v1.5;
   ES256: the raw 64-byte ``r || s`` of RFC 7518 §3.4);
5. a strict JSON payload (duplicate keys refused) with ``legalHeader``, ``no``, ``nextUpdate``
   and ``entries``; a blob past its ``nextUpdate`` is stale (refused, or a reason under
   ``stale="warn"``), and a ``no`` not above the last accepted one is always refused (a
   replayed older blob could hide a revocation);
6. python-fido2's MDS3 dataclasses (:class:`fido2.mds3.MetadataBlobPayload`) read it, any
   exception they raise on hostile input becoming :class:`MetadataFormatError`; entries are
   indexed by AAGUID (a duplicate AAGUID is malformed).

python-fido2 is imported only inside :meth:`MetadataIndex.load` (its ``parse_blob`` is not used:
it checks chain signatures only, no dates, and reads JSON leniently). The view of one model
(:class:`MetadataView`) is read from the raw entry, not from python-fido2's objects: those map a
status they do not know to ``None``, and mie keeps it (an unknown status refuses nothing).
What python-fido2 cannot read (a date, base64 it cannot decode, a missing required member) in
any entry refuses the whole blob; what only mie's stricter reading refuses in one model's entry
(a root that is not a DER certificate, non-canonical base64, a bad status name) raises
:class:`MetadataFormatError` when that model is looked up, the other models staying usable.

The bundled MDS root, "GlobalSign Root CA - R3" (``mie/fido/anchors/mds-root.pem``, valid to
2029-03-18), is checked against :data:`MDS_ROOT_SHA256` each time it is read.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import datetime as dt
import hashlib
import logging
import os
import re
import stat
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from mie.core import strictjson
from mie.core.errors import ErrorCode, JsonFormatError, VerificationError, one_line
from mie.fido.allowlist import CERTIFICATION_LEVELS
from mie.fido.errors import (
    FidoPolicyError,
    MetadataFormatError,
    MetadataStaleError,
    MetadataStatusError,
    MetadataUntrustedError,
    UnknownAaguidError,
)

if TYPE_CHECKING:
    from pathlib import Path

    from fido2.mds3 import MetadataBlobPayload

    from mie.fido.policy import MetadataPolicy
    from mie.trust.cache import CrlCache
    from mie.trust.crl import CrlSet, RevocationStatus
    from mie.trust.verify import RevocationMode

MDS_URL = "https://mds3.fidoalliance.org/"
"""Where the FIDO Alliance publishes the MDS3 blob."""
MDS_ROOT_FILE = "mds-root.pem"
MDS_ROOT_SHA256 = "cbb522d7b7f127ad6a0113865bdf1cd4102e7d0759af635a7cf4720dc963c53b"
"""SHA-256 of the DER of "GlobalSign Root CA - R3", the MDS3 blob's root (pinned)."""
MDS_SIGNER_NAMES = frozenset({"mds.fidoalliance.org", "mds3.fidoalliance.org"})
"""Under the bundled root, the names (subject CN or DNS subjectAltName) the blob's signer must
carry: GlobalSign Root CA - R3 issues certificates to anyone, and only the FIDO Alliance's may
sign the metadata."""
MAX_BLOB_BYTES = 64 * 1024 * 1024
"""Largest blob read (the live one is a few MB)."""
MAX_HEADER_BYTES = 64 * 1024
MAX_X5C = 5
MAX_STATUS_REPORTS = 256
MAX_ROOTS = 64
MAX_DEPTH = 32
"""Deepest nesting of the payload's JSON accepted (MDS3 nests about 8 levels)."""
FETCH_DEADLINE_S = 60.0

_ALGORITHMS = frozenset({"RS256", "ES256"})
_HEADER_MEMBERS = frozenset({"alg", "typ", "x5c", "x5u"})
_B64URL = re.compile(rb"[A-Za-z0-9_-]+")
_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_AAGUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_KEY_ID = re.compile(r"[0-9a-fA-F]{40}")
_INTEGER = re.compile(r"-?(0|[1-9][0-9]{0,17})")
_FLOAT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_MAX_FLOAT_TEXT = 40
# Statuses that concern one batch when their report names a certificate (MDS3 §3.1.4).
_COMPROMISE = frozenset(
    {"ATTESTATION_KEY_COMPROMISE", "USER_KEY_REMOTE_COMPROMISE", "USER_KEY_PHYSICAL_COMPROMISE"}
)
_CERTIFIED_PREFIX = "FIDO_CERTIFIED_"
_AMBIGUOUS = object()
# Soft revocation makes mie.trust warn when no CRL covers a chain. A blob read from its file
# (checked under hard revocation when ``mie fido mds fetch`` wrote it) has none: the normal case
# at every load, kept as :attr:`MetadataIndex.signer_revocation` rather than warned about.
_LOADING = contextvars.ContextVar("mie_fido_mds_signer_chain", default=False)


class _QuietUnknownRevocation(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (_LOADING.get() and str(record.msg).startswith("Revocation status unknown"))


logging.getLogger("mie.trust.verify").addFilter(_QuietUnknownRevocation())


class StatusReport(NamedTuple):
    """One status report of a model, as the metadata states it.

    :param status: the status string, kept even when mie does not know it.
    :param date: ``effectiveDate``, or ``None``.
    :param certificate: the DER certificate the report concerns (a batch), or ``None``.
    """

    status: str
    date: dt.date | None
    certificate: bytes | None


@dataclass(frozen=True)
class MetadataView:
    """What the metadata says of one key model.

    :param description: the metadata statement's description (``""`` without a statement).
    :param statuses: every status report, in the blob's order.
    :param roots: the attestation roots listed for the model.
    :param certification: the FIDO certification level in force (``L1`` ... ``L3plus``), or
        ``None``: the latest certification report effective at the time looked at, a
        ``NOT_FIDO_CERTIFIED``, ``REVOKED`` or ``RETIRED`` report after it clearing it.
    """

    description: str
    statuses: tuple[StatusReport, ...]
    roots: tuple[x509.Certificate, ...]
    certification: str | None


@dataclass(frozen=True)
class MetadataIndex:
    """A verified MDS3 blob, indexed by AAGUID; build it with :meth:`load`.

    :param no: the blob's serial number (``no``).
    :param next_update: the blob's ``nextUpdate``.
    :param legal_header: the blob's ``legalHeader``.
    :param signer: the certificate that signed the blob.
    :param reasons: why the blob was accepted with a reservation (past ``nextUpdate`` under
        ``stale="warn"``).
    :param payload: python-fido2's reading of the payload.
    :param signer_revocation: what the CRLs said of the signer's chain (``unknown`` under soft
        revocation without CRLs: not warned about at each load).
    """

    no: int
    next_update: dt.date
    legal_header: str
    signer: x509.Certificate
    reasons: tuple[str, ...]
    payload: MetadataBlobPayload
    _entries: Mapping[bytes, Mapping[str, Any]]
    _key_ids: Mapping[bytes, object]
    _at: dt.datetime
    signer_revocation: RevocationStatus | None = None
    # Views built on first use (a model's roots are parsed once, not at every assertion).
    _views: dict[bytes, MetadataView] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def load(
        cls,
        blob: bytes,
        *,
        root: x509.Certificate | None = None,
        at: dt.datetime,
        crls: CrlSet | None = None,
        revocation: RevocationMode | None = None,
        crl_cache: CrlCache | None = None,
        min_no: int | None = None,
        stale: Literal["refuse", "warn"] = "refuse",
    ) -> MetadataIndex:
        """Verify and read an MDS3 blob (the steps are in the module docstring).

        :param blob: the blob as published (a JWS, compact serialisation).
        :param root: the root the signer must chain to; ``None``: the bundled MDS root.
        :param at: an aware time to check the chain and ``nextUpdate`` at.
        :param crls: CRLs of the signer's chain.
        :param revocation: :class:`~mie.trust.RevocationMode` of the chain check (default soft:
            the MDS signer's CRLs are checked only when given).
        :param crl_cache: download the chain's CRLs through this cache (``mie fido mds fetch``
            uses it with :attr:`~mie.trust.RevocationMode.HARD`).
        :param min_no: the ``no`` of the blob accepted before: this one must be above it.
        :param stale: ``refuse`` a blob past ``nextUpdate``, or ``warn`` (a reason).
        :return: the index.
        :raises MetadataFormatError: the blob is not a JWS, or its JSON or MDS3 shape is bad.
        :raises MetadataUntrustedError: ``x5u``/no ``x5c``, an algorithm other than RS256 and
            ES256, a chain that does not verify (the chain code in the message), or a bad
            signature.
        :raises MetadataStaleError: past ``nextUpdate`` (under ``refuse``), or ``no`` not above
            ``min_no``.
        :raises ValueError: ``at`` is naive, or ``stale`` is not a choice.
        """
        when = _aware(at)
        if stale not in ("refuse", "warn"):
            raise ValueError(f"The stale choice is 'refuse' or 'warn', not {stale!r}")
        if not isinstance(blob, bytes):
            raise TypeError("The MDS blob is bytes")
        if len(blob) > MAX_BLOB_BYTES:
            raise MetadataFormatError(f"The MDS blob is larger than {MAX_BLOB_BYTES} bytes")
        parts = blob.split(b".")
        if len(parts) != 3:
            raise MetadataFormatError(
                f"The MDS blob is not a compact JWS: {len(parts)} parts instead of 3"
            )
        header_b64, payload_b64, signature_b64 = parts
        header = _header(_b64url(header_b64, "header"))
        payload_bytes = _b64url(payload_b64, "payload")
        signature = _b64url(signature_b64, "signature")
        signer, signer_revocation = _verify_chain(
            header.x5c, root, when, crls, revocation, crl_cache
        )
        _verify_signature(signer, header.alg, header_b64 + b"." + payload_b64, signature)
        payload = _payload(payload_bytes)
        no, next_update, legal_header = _payload_fields(payload)
        reasons: list[str] = []
        if when.date() > next_update:
            message = f"MDS blob {no} is past its nextUpdate {next_update.isoformat()}"
            if stale == "refuse":
                raise MetadataStaleError(message)
            reasons.append(message)
        if min_no is not None and no <= min_no:
            raise MetadataStaleError(f"MDS blob {no} is not newer than {min_no}")
        entries, key_ids = _index(payload["entries"])
        parsed = _fido2_payload(payload)
        return cls(
            no,
            next_update,
            legal_header,
            signer,
            tuple(reasons),
            parsed,
            entries,
            key_ids,
            when,
            signer_revocation,
        )

    @classmethod
    def from_policy(
        cls,
        policy: MetadataPolicy,
        *,
        at: dt.datetime,
        crls: CrlSet | None = None,
        min_no: int | None = None,
    ) -> MetadataIndex:
        """Read ``policy.blob`` (and ``policy.root``, else the bundled root) and :meth:`load`.

        :raises MetadataFormatError: a file cannot be read, or is too large.
        :raises FidoPolicyError: the root file holds no single certificate.
        """
        root = None if policy.root is None else load_root(policy.root)
        blob = _read_file(policy.blob, MAX_BLOB_BYTES, "MDS blob")
        return cls.load(blob, root=root, at=at, crls=crls, min_no=min_no, stale=policy.stale)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def aaguids(self) -> tuple[bytes, ...]:
        """:return: the AAGUIDs of the models listed, in the blob's order."""
        return tuple(self._entries)

    def entry(self, aaguid: bytes) -> MetadataView | None:
        """:param aaguid: the 16-byte AAGUID of a key model.
        :return: what the metadata says of the model, or ``None`` when it is not listed.
        :raises MetadataFormatError: the model's entry is broken.
        :raises ValueError: ``aaguid`` is not 16 bytes.
        """
        if not isinstance(aaguid, bytes) or len(aaguid) != 16:
            raise ValueError("An AAGUID is 16 bytes")
        cached = self._views.get(aaguid)
        if cached is not None:
            return cached
        raw = self._entries.get(aaguid)
        if raw is None:
            return None
        view = _view(raw, _aaguid_text(aaguid), self._at.date())
        self._views[aaguid] = view
        return view

    def entry_by_key_identifier(self, key_id: bytes) -> MetadataView | None:
        """:param key_id: an ``attestationCertificateKeyIdentifiers`` value (SHA-1 of a key).
        :return: the model listing it, or ``None`` (also when several models list it).
        :raises MetadataFormatError: the model's entry is broken.
        """
        raw = self._key_ids.get(key_id)
        if raw is None or raw is _AMBIGUOUS:
            return None
        assert isinstance(raw, Mapping)  # noqa: S101 (the index holds entries or _AMBIGUOUS)
        return _view(raw, f"key identifier {key_id.hex()}", self._at.date())

    def check(
        self,
        aaguid: bytes,
        *,
        chain: Sequence[bytes] = (),
        policy: MetadataPolicy,
        at: dt.datetime,
    ) -> MetadataView | None:
        """Apply ``policy`` to the model ``aaguid``.

        A refused status refuses the model whatever came after it (fail closed); a compromise
        status whose report names a certificate refuses only chains holding that certificate
        (another batch of the model is not concerned). A status mie does not know refuses
        nothing.

        :param aaguid: the key model (16 bytes).
        :param chain: the attestation chain (DER, leaf first), for compromise reports.
        :param policy: the metadata policy.
        :param at: an aware time: certifications effective after it do not count, and the
            blob must not be past ``nextUpdate`` (under ``stale="refuse"``).
        :return: the model's view (certification at ``at``), or ``None`` when the model is not
            listed and the policy does not require it.
        :raises UnknownAaguidError: the model is not listed and the policy requires it.
        :raises MetadataStatusError: a refused status, or a certification below the minimum.
        :raises MetadataStaleError: the blob is past ``nextUpdate`` and ``stale="refuse"``.
        :raises MetadataFormatError: the model's entry is broken.
        """
        day = _aware(at).date()
        if day > self.next_update and policy.stale == "refuse":
            raise MetadataStaleError(
                f"MDS blob {self.no} is past its nextUpdate {self.next_update.isoformat()}"
            )
        view = self.entry(aaguid)
        name = _aaguid_text(aaguid)
        if view is None:
            if policy.required:
                raise UnknownAaguidError(f"AAGUID {name} is not in the FIDO metadata")
            return None
        view = replace(view, certification=_certification(view.statuses, day))
        model = f"{one_line(view.description)[:80] or 'model'} ({name})"
        held = set(chain)
        for report in view.statuses:
            if report.status not in policy.refuse:
                continue
            if report.status in _COMPROMISE and report.certificate is not None:
                if report.certificate not in held:
                    continue
            since = report.date.isoformat() if report.date else "an unknown date"
            raise MetadataStatusError(
                f"FIDO metadata of {model}: status {report.status} since {since}"
            )
        if policy.min_certification is not None:
            _check_certification(model, view, policy.min_certification)
        return view


def bundled_root() -> x509.Certificate:
    """The MDS root shipped with mie, checked against :data:`MDS_ROOT_SHA256`.

    :raises MetadataUntrustedError: the bundled file does not match its pin.
    """
    from mie.trust.parse import load_certificates

    pem = (resources.files("mie.fido") / "anchors" / MDS_ROOT_FILE).read_bytes()
    (cert,) = load_certificates(pem, MDS_ROOT_FILE)
    der = cert.public_bytes(serialization.Encoding.DER)
    if hashlib.sha256(der).hexdigest() != MDS_ROOT_SHA256:
        raise MetadataUntrustedError(f"The bundled MDS root {MDS_ROOT_FILE} does not match its pin")
    return cert


def load_root(path: str | Path) -> x509.Certificate:
    """Read one root certificate (PEM or DER) from ``path``.

    :raises MetadataFormatError: the file cannot be read.
    :raises FidoPolicyError: it holds no certificate, or several.
    """
    from mie.trust.parse import load_certificates

    data = _read_file(path, 1024 * 1024, "MDS root")
    try:
        certificates = load_certificates(data, str(path))
    except VerificationError as e:
        raise FidoPolicyError(f"MDS root {path}: {e.message}") from e
    if len(certificates) != 1:
        raise FidoPolicyError(f"MDS root {path}: {len(certificates)} certificates instead of 1")
    return certificates[0]


def fetch_blob(
    url: str = MDS_URL, *, deadline: float = FETCH_DEADLINE_S, max_bytes: int = MAX_BLOB_BYTES
) -> bytes:
    """Download an MDS3 blob over HTTPS (unverified: hand it to :meth:`MetadataIndex.load`).

    :param url: an ``https://`` URL.
    :param deadline: seconds the whole download (body included) may take.
    :param max_bytes: the largest blob accepted.
    :return: the blob's bytes.
    :raises ValueError: the URL is not ``https``.
    :raises MetadataStaleError: the download failed, timed out or was too large (the metadata
        cannot be refreshed).
    """
    from mie.trust.cache import fetch_url

    if urllib.parse.urlsplit(url).scheme.lower() != "https":
        raise ValueError(f"The MDS blob is fetched over https only, not {url}")
    try:
        return fetch_url(url, limit=max_bytes, deadline=time.monotonic() + deadline)
    except VerificationError as e:
        raise MetadataStaleError(f"Cannot refresh the FIDO metadata: {e.message}") from e


# --- the JWS ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Header:
    alg: str
    x5c: tuple[bytes, ...]


def _aware(at: dt.datetime) -> dt.datetime:
    if not isinstance(at, dt.datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("The metadata time must be a timezone-aware datetime")
    return at.astimezone(dt.UTC)


def _b64url(part: bytes, what: str) -> bytes:
    if not _B64URL.fullmatch(part) or len(part) % 4 == 1:
        raise MetadataFormatError(f"The MDS blob {what} is not unpadded base64url")
    decoded = base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))
    # Unused trailing bits must be zero: one encoding per value.
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != part:
        raise MetadataFormatError(f"The MDS blob {what} is not canonical base64url")
    return decoded


def _b64(text: object, what: str) -> bytes:
    if not isinstance(text, str) or not _B64.fullmatch(text) or len(text) % 4:
        raise MetadataFormatError(f"{what} is not base64")
    try:
        decoded = base64.b64decode(text, validate=True)
    except binascii.Error as e:
        raise MetadataFormatError(f"{what} is not base64") from e
    if base64.b64encode(decoded).decode() != text:
        raise MetadataFormatError(f"{what} is not canonical base64")
    return decoded


def _json(data: bytes, name: str, max_bytes: int) -> Any:
    try:
        return strictjson.loads(data, name, max_bytes=max_bytes)
    except JsonFormatError as e:
        raise MetadataFormatError(str(e)) from e


def _header(data: bytes) -> _Header:
    header = _json(data, "MDS blob header", MAX_HEADER_BYTES)
    if not isinstance(header, dict):
        raise MetadataFormatError("The MDS blob header is not a JSON object")
    unknown = sorted(set(header) - _HEADER_MEMBERS)
    if unknown:
        raise MetadataFormatError(
            f"The MDS blob header has unknown member {strictjson.shown(unknown[0])}"
        )
    if "x5u" in header:
        raise MetadataUntrustedError("The MDS blob header names a key URL (x5u): mie fetches none")
    if "x5c" not in header:
        raise MetadataUntrustedError("The MDS blob header has no certificate chain (x5c)")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in _ALGORITHMS:
        shown = strictjson.shown(alg) if isinstance(alg, str) else "missing"
        raise MetadataUntrustedError(f"The MDS blob algorithm is {shown}, not RS256 or ES256")
    if "typ" in header and header["typ"] != "JWT":
        raise MetadataFormatError("The MDS blob header typ is not JWT")
    x5c = header["x5c"]
    if not isinstance(x5c, list) or not 1 <= len(x5c) <= MAX_X5C:
        raise MetadataFormatError(f"The MDS blob x5c is not a list of 1 to {MAX_X5C} certificates")
    return _Header(alg, tuple(_b64(c, f"MDS blob x5c[{i}]") for i, c in enumerate(x5c)))


def _verify_chain(
    x5c: tuple[bytes, ...],
    root: x509.Certificate | None,
    at: dt.datetime,
    crls: CrlSet | None,
    revocation: RevocationMode | None,
    crl_cache: CrlCache | None,
) -> tuple[x509.Certificate, RevocationStatus]:
    from mie.trust.store import TrustStore
    from mie.trust.verify import RevocationMode, Usage, VerifierBuilder

    anchor = bundled_root() if root is None else root
    try:
        builder = (
            VerifierBuilder()
            .store(TrustStore.from_certificates([anchor]))
            .usage(Usage.ANY)
            .time(at)
            .revocation(revocation or RevocationMode.SOFT)
        )
        if crls is not None:
            builder = builder.crls(crls)
        if crl_cache is not None:
            builder = builder.crl_cache(crl_cache)
        token = _LOADING.set(True)
        try:
            result = builder.build().verify(x5c[0], x5c[1:])
        finally:
            _LOADING.reset(token)
    except VerificationError as e:
        if e.code is ErrorCode.MALFORMED:
            raise MetadataFormatError(f"MDS blob signer chain: {e.message}") from e
        raise MetadataUntrustedError(f"MDS blob signer chain: {e.code.value}: {e.message}") from e
    if root is None:
        _check_signer_name(result.leaf)
    return result.leaf, result.revocation


def _check_signer_name(signer: x509.Certificate) -> None:
    names = [str(a.value) for a in signer.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    try:
        alt = signer.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names += alt.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        pass
    if not MDS_SIGNER_NAMES.intersection(name.lower() for name in names):
        raise MetadataUntrustedError(
            "The MDS blob signer is not the FIDO Alliance's (no CN or DNS name "
            f"{' or '.join(sorted(MDS_SIGNER_NAMES))}): "
            f"{one_line(signer.subject.rfc4514_string())[:120]}"
        )


def _verify_signature(signer: x509.Certificate, alg: str, message: bytes, signature: bytes) -> None:
    key = signer.public_key()
    try:
        if alg == "ES256":
            if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
                raise MetadataUntrustedError(
                    "The MDS blob is ES256 but its signer has no P-256 key"
                )
            if len(signature) != 64:
                raise MetadataUntrustedError("The MDS blob ES256 signature is not 64 bytes")
            r = int.from_bytes(signature[:32], "big")
            s = int.from_bytes(signature[32:], "big")
            key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
        else:
            if not isinstance(key, rsa.RSAPublicKey):
                raise MetadataUntrustedError("The MDS blob is RS256 but its signer has no RSA key")
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as e:
        raise MetadataUntrustedError(
            f"The MDS blob signature does not verify with its signer's key ({alg})"
        ) from e


# --- the payload --------------------------------------------------------------------------------


def _payload(data: bytes) -> dict[str, Any]:
    payload = _numbers(_json(data, "MDS blob payload", MAX_BLOB_BYTES), 0)
    if not isinstance(payload, dict):
        raise MetadataFormatError("The MDS blob payload is not a JSON object")
    return payload


def _numbers(value: Any, depth: int) -> Any:
    """``value`` with strictjson's numbers made ``int``/``float`` (python-fido2 reads those)."""
    if depth > MAX_DEPTH:
        raise MetadataFormatError(f"The MDS blob payload is nested deeper than {MAX_DEPTH}")
    if isinstance(value, strictjson.Number):
        if _INTEGER.fullmatch(value.text):
            return int(value.text)
        if len(value.text) <= _MAX_FLOAT_TEXT and _FLOAT.fullmatch(value.text):
            number = float(value.text)
            if number not in (float("inf"), float("-inf")):
                return number
        raise MetadataFormatError(f"The MDS blob payload has an unusable number {value.text[:20]}")
    if isinstance(value, dict):
        return {key: _numbers(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [_numbers(item, depth + 1) for item in value]
    return value


def _date(value: object, what: str) -> dt.date:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise MetadataFormatError(f"{what} is not a YYYY-MM-DD date")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as e:
        raise MetadataFormatError(f"{what} is not a date ({value})") from e


def _payload_fields(payload: dict[str, Any]) -> tuple[int, dt.date, str]:
    for name in ("legalHeader", "no", "nextUpdate", "entries"):
        if name not in payload:
            raise MetadataFormatError(f"The MDS blob payload has no {name}")
    no = payload["no"]
    if type(no) is not int or no < 0:
        raise MetadataFormatError("The MDS blob no is not a non-negative integer")
    legal_header = payload["legalHeader"]
    if not isinstance(legal_header, str):
        raise MetadataFormatError("The MDS blob legalHeader is not text")
    if not isinstance(payload["entries"], list):
        raise MetadataFormatError("The MDS blob entries are not a list")
    return no, _date(payload["nextUpdate"], "The MDS blob nextUpdate"), legal_header


def _fido2_payload(payload: dict[str, Any]) -> MetadataBlobPayload:
    from fido2.mds3 import MetadataBlobPayload

    try:
        return MetadataBlobPayload.from_dict(payload)
    except Exception as e:  # a third-party reader on hostile input: any failure
        from mie.trust.errors import describe

        raise MetadataFormatError(
            f"The MDS blob payload breaks the MDS3 format ({type(e).__name__}: {describe(e)})"
        ) from e


def _index(
    entries: list[Any],
) -> tuple[dict[bytes, Mapping[str, Any]], dict[bytes, object]]:
    by_aaguid: dict[bytes, Mapping[str, Any]] = {}
    by_key_id: dict[bytes, object] = {}
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise MetadataFormatError(f"MDS blob entry {position} is not a JSON object")
        if "aaguid" in entry:
            text = entry["aaguid"]
            if not isinstance(text, str) or not _AAGUID.fullmatch(text):
                raise MetadataFormatError(f"MDS blob entry {position}: aaguid is not a UUID")
            aaguid = bytes.fromhex(text.replace("-", ""))
            if aaguid in by_aaguid:
                raise MetadataFormatError(f"MDS blob: AAGUID {text.lower()} is listed twice")
            by_aaguid[aaguid] = entry
        key_ids = entry.get("attestationCertificateKeyIdentifiers", [])
        if not isinstance(key_ids, list):
            raise MetadataFormatError(f"MDS blob entry {position}: key identifiers not a list")
        for key_id in key_ids:
            if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
                raise MetadataFormatError(f"MDS blob entry {position}: bad key identifier")
            raw = bytes.fromhex(key_id)
            by_key_id[raw] = _AMBIGUOUS if raw in by_key_id else entry
    return by_aaguid, by_key_id


# --- one model ----------------------------------------------------------------------------------


def _aaguid_text(aaguid: bytes) -> str:
    h = aaguid.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _view(entry: Mapping[str, Any], name: str, day: dt.date) -> MetadataView:
    what = f"MDS entry {name}"
    reports = entry.get("statusReports")
    if not isinstance(reports, list) or not 1 <= len(reports) <= MAX_STATUS_REPORTS:
        raise MetadataFormatError(f"{what}: statusReports is not a list of 1 to 256 reports")
    statuses = tuple(_report(r, f"{what} statusReports[{i}]") for i, r in enumerate(reports))
    description, roots = "", cast("tuple[x509.Certificate, ...]", ())
    statement = entry.get("metadataStatement")
    if statement is not None:
        if not isinstance(statement, dict):
            raise MetadataFormatError(f"{what}: metadataStatement is not a JSON object")
        description = statement.get("description", "")
        if not isinstance(description, str):
            raise MetadataFormatError(f"{what}: description is not text")
        roots = _roots(statement.get("attestationRootCertificates", []), what)
    return MetadataView(description, statuses, roots, _certification(statuses, day))


def _report(report: object, what: str) -> StatusReport:
    if not isinstance(report, dict):
        raise MetadataFormatError(f"{what} is not a JSON object")
    status = report.get("status")
    if not isinstance(status, str) or not 1 <= len(status) <= 64:
        raise MetadataFormatError(f"{what}: status is not a status name")
    day = None if "effectiveDate" not in report else _date(report["effectiveDate"], what)
    certificate = None
    if "certificate" in report:
        certificate = _b64(report["certificate"], f"{what} certificate")
    return StatusReport(status, day, certificate)


def _roots(value: object, what: str) -> tuple[x509.Certificate, ...]:
    from mie.trust.parse import load_certificate_der

    if not isinstance(value, list) or len(value) > MAX_ROOTS:
        raise MetadataFormatError(f"{what}: attestationRootCertificates is not a list")
    roots = []
    for i, text in enumerate(value):
        der = _b64(text, f"{what} attestation root {i}")
        try:
            roots.append(load_certificate_der(der, f"{what} attestation root {i}"))
        except VerificationError as e:
            raise MetadataFormatError(e.message) from e
    return tuple(roots)


def _certification(statuses: Sequence[StatusReport], day: dt.date) -> str | None:
    """The level of the latest certification report effective on ``day``."""
    effective = [r for r in statuses if r.date is None or r.date <= day]
    level: str | None = None
    # Stable sort: reports without a date count first, same-day reports keep the blob's order.
    for report in sorted(effective, key=lambda r: r.date or dt.date.min):
        if report.status == "FIDO_CERTIFIED":  # MDS3: the deprecated name of L1
            level = "L1"
        elif report.status.startswith(_CERTIFIED_PREFIX):
            suffix = report.status.removeprefix(_CERTIFIED_PREFIX)
            if suffix in CERTIFICATION_LEVELS:
                level = suffix
        elif report.status in ("NOT_FIDO_CERTIFIED", "REVOKED", "RETIRED"):
            level = None
    return level


def _check_certification(model: str, view: MetadataView, minimum: str) -> None:
    if minimum not in CERTIFICATION_LEVELS:
        raise FidoPolicyError(f"min_certification {minimum!r} is not a FIDO certification level")
    level = view.certification
    if level is None or CERTIFICATION_LEVELS.index(level) < CERTIFICATION_LEVELS.index(minimum):
        dates = [r.date for r in view.statuses if r.status == _CERTIFIED_PREFIX + (level or "")]
        since = f" since {dates[-1].isoformat()}" if dates and dates[-1] else ""
        raise MetadataStatusError(
            f"FIDO metadata of {model}: certification {level or 'none'}{since} is below "
            f"the minimum {minimum}"
        )


def _read_file(path: str | Path, limit: int, what: str) -> bytes:
    """Read a local input file as :func:`mie.fido.allowlist.read_file` does: opened
    non-blocking (a FIFO with no writer never stalls the caller), a regular file only (not
    ``/dev/zero``, read to the bound), at most ``limit`` bytes (a larger one is refused by its
    size, before it is read).

    :raises MetadataFormatError: missing, unreadable, not a regular file, or too large.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise MetadataFormatError(f"Cannot read the {what} {path}: not a regular file")
            data = b"" if info.st_size > limit else handle.read(limit + 1)
            size = max(info.st_size, len(data))
    except OSError as e:
        raise MetadataFormatError(f"Cannot read the {what} {path}: {e.strerror or e}") from e
    if size > limit:
        raise MetadataFormatError(f"The {what} {path} is larger than {limit} bytes")
    return data


__all__ = [
    "CERTIFICATION_LEVELS",
    "MAX_BLOB_BYTES",
    "MDS_ROOT_SHA256",
    "MDS_SIGNER_NAMES",
    "MDS_URL",
    "MetadataIndex",
    "MetadataView",
    "StatusReport",
    "bundled_root",
    "fetch_blob",
    "load_root",
]
