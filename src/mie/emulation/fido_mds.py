"""TEST FIDO metadata: MDS3 blobs signed by a TEST hierarchy, for tests, fuzzing and the demo.

**TEST only.** The EC keys come from public labels (:func:`~mie.emulation.fido_pki.fixed_test_key`)
and anyone can sign with them; the RSA signer's key is random per :class:`TestMds`. Nothing here
is trusted by default: :mod:`mie.fido.mds` trusts the bundled GlobalSign root unless a policy's
``metadata.root`` (or a caller's ``root=``) hands over :attr:`TestMds.root`.

Hierarchy (the live MDS has the same shape: root → CA → signer in ``x5c``)::

    C=FR, O=mie TEST, CN=mie TEST FIDO MDS Root          P-256, CA, pathLen 1, 20 years
    └ C=FR, O=mie TEST, CN=mie TEST FIDO MDS CA          P-256, CA, pathLen 0, 10 years
      ├ C=FR, O=mie TEST, CN=mie TEST FIDO MDS signer    P-256 (ES256), 1 year
      └ C=FR, O=mie TEST, CN=mie TEST FIDO MDS signer RSA  RSA-2048 (RS256), 1 year

:class:`SignerFault` builds the blobs the refusal tests need: a signer expired yesterday, a CA
issued by another root, a header naming a key URL (``x5u``) instead of a chain, a flipped
signature bit.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum, unique
from typing import TYPE_CHECKING, Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from mie.emulation.fido_pki import fixed_test_key

if TYPE_CHECKING:
    from mie.trust.crl import CrlSet

ROOT_NAME = "mie TEST FIDO MDS Root"
CA_NAME = "mie TEST FIDO MDS CA"
SIGNER_NAME = "mie TEST FIDO MDS signer"
LEGAL_HEADER = "mie TEST metadata: not the FIDO Alliance's, trusted by nobody."
X5U = "https://mds.example.invalid/signer.pem"

_DAY = dt.timedelta(days=1)
_YEAR = dt.timedelta(days=365)

Status = tuple[str, str | None] | tuple[str, str | None, bytes | None]
"""A status report: (status, effectiveDate or ``None``[, certificate DER or ``None``])."""


@unique
class SignerFault(Enum):
    """What is wrong with a blob's signature or header."""

    EXPIRED = "expired"
    OTHER_ROOT = "other-root"
    X5U_ONLY = "x5u-only"
    BAD_SIGNATURE = "bad-signature"


@dataclass(frozen=True)
class _Issued:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mie TEST"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _serial(label: str) -> int:
    digest = hashlib.sha256(f"mie TEST FIDO MDS serial: {label}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1 | 1


def _issue(
    label: str,
    common_name: str,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    issuer: _Issued | None,
    validity: tuple[dt.datetime, dt.datetime],
    path_length: int | Literal["leaf"] | None,
) -> _Issued:
    public = key.public_key()
    signer_key = key if issuer is None else issuer.key
    ca = path_length != "leaf"
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name) if issuer is None else issuer.certificate.subject)
        .public_key(public)
        .serial_number(_serial(label))
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.BasicConstraints(
                ca=ca, path_length=None if path_length == "leaf" else path_length
            ),
            critical=True,
        )
        .add_extension(
            x509.KeyUsage(not ca, False, False, False, False, ca, ca, False, False), critical=True
        )
    )
    deterministic = isinstance(signer_key, ec.EllipticCurvePrivateKey)
    certificate = builder.sign(signer_key, hashes.SHA256(), ecdsa_deterministic=deterministic)
    return _Issued(certificate, key)


def _chain(
    day: dt.datetime, label: str, root_name: str, root_key: str
) -> tuple[_Issued, _Issued, _Issued]:
    """:return: a root (``root_name``, the fixed key ``root_key``), its CA and the CA's signer,
    valid from the day before ``day``; serials from ``label`` + ``root``, ``ca``, ``signer``."""
    root = _issue(
        f"{label}root", root_name, fixed_test_key(root_key), None, (day - _DAY, day + 20 * _YEAR), 1
    )
    ca = _issue(
        f"{label}ca", CA_NAME, fixed_test_key("mds-ca"), root, (day - _DAY, day + 10 * _YEAR), 0
    )
    signer = _issue(
        f"{label}signer",
        SIGNER_NAME,
        fixed_test_key("mds-signer"),
        ca,
        (day - _DAY, day + _YEAR),
        "leaf",
    )
    return root, ca, signer


@dataclass(frozen=True)
class TestMds:
    """A TEST MDS3 publisher; build it with :meth:`generate`.

    :param root: the root certificate a verifier is handed (``MetadataIndex.load(root=...)``).
    :param day: the UTC day the hierarchy was built for (valid from the day before).
    """

    __test__ = False  # not a pytest test class, whatever its name

    root: x509.Certificate
    day: dt.datetime
    _root: _Issued
    _ca: _Issued
    _signer: _Issued

    @classmethod
    def generate(cls, *, now: dt.datetime | None = None) -> TestMds:
        """Build the hierarchy valid on the UTC day of ``now`` (EC parts: the same bytes for
        the same day).

        :param now: an aware time (default: now).
        :raises ValueError: ``now`` is naive.
        """
        utc = dt.datetime.now(dt.UTC) if now is None else now
        if utc.tzinfo is None or utc.utcoffset() is None:
            raise ValueError("The TEST MDS time must be timezone-aware")
        utc = utc.astimezone(dt.UTC)
        day = dt.datetime(utc.year, utc.month, utc.day, tzinfo=dt.UTC)
        root, ca, signer = _chain(day, "", ROOT_NAME, "mds-root")
        return cls(root.certificate, day, root, ca, signer)

    @property
    def ca(self) -> x509.Certificate:
        """:return: the TEST CA, the only issuer of signers (pathLen 0)."""
        return self._ca.certificate

    @property
    def root_pem(self) -> bytes:
        """:return: the TEST root in PEM (a policy's ``metadata.root`` file)."""
        return self.root.public_bytes(serialization.Encoding.PEM)

    @functools.cached_property
    def _rsa_signer(self) -> _Issued:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        validity = (self.day - _DAY, self.day + _YEAR)
        return _issue("signer-rsa", SIGNER_NAME + " RSA", key, self._ca, validity, "leaf")

    @functools.cached_property
    def _expired_signer(self) -> _Issued:
        validity = (self.day - 2 * _YEAR, self.day - _DAY)
        return _issue(
            "signer-expired", SIGNER_NAME, fixed_test_key("mds-signer"), self._ca, validity, "leaf"
        )

    @functools.cached_property
    def _other_chain(self) -> tuple[_Issued, _Issued]:
        _, ca, signer = _chain(self.day, "other-", "mie TEST FIDO MDS Other Root", "mds-other-root")
        return signer, ca

    def crls(self, *, revoke_signer: bool = False) -> CrlSet:
        """Current CRLs (7 days) of the TEST root and CA, so a load checks revocation fully.

        :param revoke_signer: list the ES256 signer as revoked (key compromise).
        :return: the CRLs, for ``MetadataIndex.load(crls=...)``.
        """
        from mie.trust.crl import CrlIndex, CrlSet

        revoked = [self._signer.certificate.serial_number] if revoke_signer else []
        return CrlSet.of(
            [
                CrlIndex(_crl(self._root, [], self.day), "TEST MDS root CRL"),
                CrlIndex(_crl(self._ca, revoked, self.day), "TEST MDS CA CRL"),
            ]
        )

    def entry(
        self,
        aaguid: bytes,
        roots: Iterable[x509.Certificate],
        *,
        statuses: Sequence[Status] = (("FIDO_CERTIFIED_L1", "2026-01-01"),),
        description: str = "mie TEST emulated authenticator",
        key_identifiers: Sequence[bytes] = (),
    ) -> dict[str, Any]:
        """One MDS3 ``entries`` member for a FIDO2 model (every member python-fido2 requires).

        :param aaguid: the model's 16-byte AAGUID.
        :param roots: its attestation roots.
        :param statuses: its status reports, oldest first.
        :param description: the metadata statement's description.
        :param key_identifiers: ``attestationCertificateKeyIdentifiers`` (20 bytes each).
        :return: the entry, as JSON values.
        """
        reports = []
        for status in statuses:
            report: dict[str, Any] = {"status": status[0]}
            if status[1] is not None:
                report["effectiveDate"] = status[1]
            if len(status) == 3 and status[2] is not None:
                report["certificate"] = base64.b64encode(status[2]).decode()
            reports.append(report)
        text = aaguid.hex()
        uuid = f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
        last = max((s[1] for s in statuses if s[1] is not None), default="2026-01-01")
        der = [r.public_bytes(serialization.Encoding.DER) for r in roots]
        entry: dict[str, Any] = {
            "aaguid": uuid,
            "metadataStatement": {
                "legalHeader": LEGAL_HEADER,
                "aaguid": uuid,
                "description": description,
                "authenticatorVersion": 1,
                "protocolFamily": "fido2",
                "schema": 3,
                "upv": [{"major": 1, "minor": 1}],
                "authenticationAlgorithms": [
                    "secp256r1_ecdsa_sha256_raw",
                    "ed25519_eddsa_sha512_raw",
                ],
                "publicKeyAlgAndEncodings": ["cose"],
                "attestationTypes": ["basic_full"],
                "userVerificationDetails": [[{"userVerificationMethod": "passcode_external"}]],
                "keyProtection": ["hardware", "secure_element"],
                "matcherProtection": ["on_chip"],
                "attachmentHint": ["external", "wired"],
                "tcDisplay": [],
                "attestationRootCertificates": [base64.b64encode(d).decode() for d in der],
            },
            "statusReports": reports,
            "timeOfLastStatusChange": last,
        }
        if key_identifiers:
            entry["attestationCertificateKeyIdentifiers"] = [k.hex() for k in key_identifiers]
        return entry

    def payload(
        self,
        entries: Sequence[dict[str, Any]],
        *,
        no: int = 1,
        next_update: dt.date | str | None = None,
        legal_header: str = LEGAL_HEADER,
    ) -> bytes:
        """:return: the payload JSON (``nextUpdate`` default: 30 days after :attr:`day`)."""
        if next_update is None:
            next_update = (self.day + 30 * _DAY).date()
        update = next_update if isinstance(next_update, str) else next_update.isoformat()
        obj = {
            "legalHeader": legal_header,
            "no": no,
            "nextUpdate": update,
            "entries": list(entries),
        }
        return json.dumps(obj, separators=(",", ":")).encode()

    def blob(
        self,
        entries: Sequence[dict[str, Any]],
        *,
        no: int = 1,
        next_update: dt.date | str | None = None,
        alg: Literal["ES256", "RS256"] = "ES256",
        signer_fault: SignerFault | None = None,
    ) -> bytes:
        """A signed blob (JWS compact serialisation) listing ``entries``.

        :param entries: from :meth:`entry` (or hand-made).
        :param no: the blob's serial number.
        :param next_update: its ``nextUpdate`` (default: 30 days after :attr:`day`).
        :param alg: ``ES256`` (raw ``r || s``) or ``RS256``.
        :param signer_fault: what to break, if anything.
        :return: the blob's bytes.
        """
        payload = self.payload(entries, no=no, next_update=next_update)
        return self.sign(payload, alg=alg, signer_fault=signer_fault)

    def sign(
        self,
        payload: bytes,
        *,
        alg: Literal["ES256", "RS256"] = "ES256",
        signer_fault: SignerFault | None = None,
        header: bytes | None = None,
    ) -> bytes:
        """Sign any payload bytes (a test's duplicate key, the fuzzer's mutations).

        :param payload: the payload, as is.
        :param alg: the header's algorithm and the signer's key type.
        :param signer_fault: what to break, if anything.
        :param header: the header JSON as is, instead of the one built here.
        :return: ``b64url(header).b64url(payload).b64url(signature)``.
        """
        signer, ca = self._signer, self._ca
        if alg == "RS256":
            signer = self._rsa_signer
        if signer_fault is SignerFault.EXPIRED:
            signer = self._expired_signer
        elif signer_fault is SignerFault.OTHER_ROOT:
            signer, ca = self._other_chain
        if header is None:
            fields: dict[str, Any] = {"alg": alg, "typ": "JWT"}
            if signer_fault is SignerFault.X5U_ONLY:
                fields["x5u"] = X5U
            else:
                fields["x5c"] = [base64.b64encode(c.der).decode() for c in (signer, ca)]
            header = json.dumps(fields, separators=(",", ":")).encode()
        message = _b64url(header) + b"." + _b64url(payload)
        signature = _signature(signer.key, message)
        if signer_fault is SignerFault.BAD_SIGNATURE:
            signature = bytes([signature[0] ^ 0x01]) + signature[1:]
        return message + b"." + _b64url(signature)


def _crl(
    issuer: _Issued, serials: Sequence[int], day: dt.datetime
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(day - _DAY)
        .next_update(day + 7 * _DAY)
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    for serial in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(day - _DAY)
            .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
            .build()
        )
    return builder.sign(issuer.key, hashes.SHA256())


def _signature(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, message: bytes) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")  # RFC 7518 §3.4


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")
