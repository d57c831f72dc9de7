"""The TEST FIDO attestation PKI of the emulated security key: root, CA, batch attestation leaf.

**TEST only.** Every private key here is derived from a public label (:func:`fixed_test_key`):
anyone can sign with them. Nothing in this module is ever trusted by default: the TEST root is
not under ``mie/trust/anchors``, mie never adds it to a :class:`~mie.trust.TrustStore` on its
own, and a verifier trusts it only when a test, the demo or an operator's policy file hands it
over.

Hierarchy (all P-256, ECDSA with SHA-256, positive serials)::

    C=FR, O=mie TEST, CN=mie TEST FIDO Attestation Root      CA, pathLen 1, 20 years
    └ C=FR, O=mie TEST, CN=mie TEST FIDO Attestation CA 1    CA, pathLen 0, 10 years
      └ C=FR, O=mie TEST, OU=Authenticator Attestation,
        CN=mie TEST emulated authenticator                   the batch attestation key, 5 years

The leaf follows WebAuthn Level 3 §8.2.1 "Certificate Requirements for Packed Attestation
Statements", the checks ``../shared/reference/fido2.md`` §5 lists (python-fido2's ``packed``
verifier): X.509 version 3; subject C, O, OU = ``Authenticator Attestation`` (UTF8String) and CN;
basicConstraints with CA false; extension ``id-fido-gen-ce-aaguid`` (1.3.6.1.4.1.45724.1.1.4)
holding the AAGUID as a DER OCTET STRING, not critical. §8.2.1 requires that extension only when
a root serves several models; mie's verifier always requires it (issue 10, "Bad input"), so the
emulator's leaf always carries it. The CA certificates meet what cryptography's web PKI CA policy
(the path check of :mod:`mie.trust`) asks: basicConstraints and keyUsage (keyCertSign, cRLSign)
critical, subject and authority key identifiers.

Reproducible: keys come from fixed labels, certificate signatures are deterministic ECDSA
(RFC 6979), serials come from labels and the dates from the UTC day of ``now``. Two processes
that build the PKI on the same UTC day get the same bytes, so TEST metadata signed over it, and
tests comparing certificates, do not depend on who built it first.

:class:`Fault` builds the one faulty certificate each refusal test needs; every other
certificate of a faulty PKI is byte-identical to the good one's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum, unique
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mie.core.files import atomic_write

EMULATOR_AAGUID = b"mie-TEST-FIDO2\x00\x01"
"""The emulator's AAGUID, 6d69652d-5445-5354-2d46-49444f320001: ASCII ``mie-TEST-FIDO2`` then 0001,
so no vendor's (pinned by a test)."""
OTHER_AAGUID = b"mie-TEST-OTHER\x00\x02"
"""The AAGUID of :attr:`Fault.LEAF_OTHER_AAGUID`, another (TEST) model."""
OID_FIDO_GEN_CE_AAGUID = x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")
ATTESTATION_OU = "Authenticator Attestation"
ROOT_NAME = "mie TEST FIDO Attestation Root"
INTERMEDIATE_NAME = "mie TEST FIDO Attestation CA 1"
LEAF_NAME = "mie TEST emulated authenticator"
ROOT_FILE = "fido-attestation-root.pem"
INTERMEDIATE_FILE = "fido-attestation-intermediate.pem"
LEAF_FILE = "fido-attestation-leaf.pem"
LAYOUT_FILE = "fido-attestation.version"
LOCK_FILE = "fido-attestation.lock"
PKI_LAYOUT = "1"
"""Bumped whenever the certificates change shape, so saved directories are rebuilt."""

_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_DAY = dt.timedelta(days=1)
_YEAR = dt.timedelta(days=365)


@unique
class Fault(Enum):
    """One faulty certificate, for the refusal tests.

    Path faults (what :mod:`mie.trust` reports): ``EXPIRED_INTERMEDIATE`` (``expired``),
    ``INTERMEDIATE_NOT_CA`` (``not_ca``), ``PATH_LENGTH`` (a CA under the pathLen-0 CA: three
    certificates in the chain, ``path_length``), ``UNKNOWN_ROOT`` (the CA is issued by another
    root, not the PKI's :attr:`~TestAttestationPki.root`: ``untrusted``), ``EXPIRED_LEAF``
    (``expired``), ``LEAF_NOT_YET_VALID`` (``not_yet_valid``), ``LEAF_BAD_SIGNATURE`` (the leaf
    names the CA but another key signed it: ``bad_signature``), ``LEAF_AAGUID_CRITICAL`` (also
    ``unknown_critical_extension``). Leaf profile faults (WebAuthn §8.2.1; the path itself
    verifies): the rest.
    """

    EXPIRED_INTERMEDIATE = "expired-intermediate"
    INTERMEDIATE_NOT_CA = "intermediate-not-ca"
    PATH_LENGTH = "path-length"
    UNKNOWN_ROOT = "unknown-root"
    EXPIRED_LEAF = "expired-leaf"
    LEAF_NOT_YET_VALID = "leaf-not-yet-valid"
    LEAF_BAD_SIGNATURE = "leaf-bad-signature"
    LEAF_IS_CA = "leaf-is-ca"
    LEAF_WITHOUT_BASIC_CONSTRAINTS = "leaf-without-basic-constraints"
    LEAF_WRONG_OU = "leaf-wrong-ou"
    LEAF_WITHOUT_CN = "leaf-without-cn"
    LEAF_WITHOUT_AAGUID = "leaf-without-aaguid"
    LEAF_OTHER_AAGUID = "leaf-other-aaguid"
    LEAF_AAGUID_CRITICAL = "leaf-aaguid-critical"
    LEAF_AAGUID_NOT_OCTET_STRING = "leaf-aaguid-not-octet-string"


_CA_FAULTS = frozenset(
    {Fault.EXPIRED_INTERMEDIATE, Fault.INTERMEDIATE_NOT_CA, Fault.PATH_LENGTH, Fault.UNKNOWN_ROOT}
)
"""Faults of a CA certificate: the leaf under them is the good one, byte for byte."""


def fixed_test_key(label: str) -> ec.EllipticCurvePrivateKey:
    """The TEST P-256 key of ``label``: its scalar is SHA-256 of a public string, so it is known
    to everyone and never protects anything.

    :param label: ``root``, ``intermediate``, ``leaf``, ``unknown-root``, ``sub-ca`` or
        ``wrong-signer``.
    :return: the private key.
    """
    digest = hashlib.sha256(f"mie TEST FIDO attestation key: {label}".encode()).digest()
    scalar = int.from_bytes(digest, "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


@dataclass(frozen=True)
class Issued:
    """A TEST certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def der(self) -> bytes:
        """:return: the certificate in DER."""
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        """:return: the certificate in PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class TestAttestationPki:
    """The TEST attestation PKI; build it with :meth:`generate` or :meth:`load`.

    :param root: the root a verifier is given as the trust anchor.
    :param chain: the packed statement's ``x5c`` certificates, leaf first, root excluded.
    :param issuing_root: the root that issued ``chain[-1]``: ``root`` except under
        :attr:`Fault.UNKNOWN_ROOT`.
    :param aaguid: the AAGUID the leaf is meant for (the authData AAGUID of the emulator).
    :param fault: the fault built in, if any.
    """

    __test__ = False  # not a pytest test class, whatever its name

    root: Issued
    chain: tuple[Issued, ...]
    issuing_root: Issued
    aaguid: bytes
    fault: Fault | None = None

    @classmethod
    def generate(
        cls,
        *,
        now: dt.datetime | None = None,
        fault: Fault | None = None,
        aaguid: bytes = EMULATOR_AAGUID,
    ) -> TestAttestationPki:
        """Build the PKI valid on the UTC day of ``now`` (the same bytes for the same day).

        :param now: an aware time (default: now).
        :param fault: the faulty certificate to build instead of the good one.
        :param aaguid: the leaf's AAGUID (16 bytes).
        :raises ValueError: ``now`` is naive, or ``aaguid`` is not 16 bytes.
        """
        if len(aaguid) != 16:
            raise ValueError(f"An AAGUID is 16 bytes, got {len(aaguid)}")
        day = _day(now)
        root = _root(day, "root", ROOT_NAME)
        issuing_root = root
        if fault is Fault.UNKNOWN_ROOT:
            issuing_root = _root(day, "unknown-root", "mie TEST FIDO Unknown Root")
        intermediate = _intermediate(day, issuing_root, fault)
        cas = [intermediate]
        if fault is Fault.PATH_LENGTH:
            cas.insert(0, _sub_ca(day, intermediate))
        leaf = _leaf(day, cas[0], aaguid, None if fault in _CA_FAULTS else fault)
        return cls(root, (leaf, *cas), issuing_root, aaguid, fault)

    @classmethod
    def load(
        cls, directory: str | os.PathLike[str], *, now: dt.datetime | None = None
    ) -> TestAttestationPki:
        """The good PKI saved in ``directory``, built and saved first when absent, of another
        layout, or no longer valid at ``now``; one process builds it (an ``flock``), so an
        emulator and its test share one root.

        :param directory: e.g. the emulators' TEST PKI directory (``$MIE_TEST_PKI``).
        :param now: an aware time (default: now).
        """
        at = _utc(now)
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        with _locked(path / LOCK_FILE):
            saved = _read_saved(path, at)
            if saved is not None:
                return saved
            pki = cls.generate(now=at)
            pki.save(path)
            return pki

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write the three certificates (PEM, mode 0644) and the layout file; no key is written:
        the keys are :func:`fixed_test_key`'s constants.

        :raises ValueError: the PKI has a fault (only the good one is saved).
        """
        if self.fault is not None:
            raise ValueError(f"A faulty PKI ({self.fault.value}) is not saved")
        path = Path(directory)
        files = (
            (ROOT_FILE, self.root),
            (INTERMEDIATE_FILE, self.intermediate),
            (LEAF_FILE, self.leaf),
        )
        for name, issued in files:
            atomic_write(path / name, issued.pem, mode=0o644)
        atomic_write(path / LAYOUT_FILE, (PKI_LAYOUT + "\n").encode(), mode=0o644)

    @property
    def leaf(self) -> Issued:
        """:return: the attestation certificate and the batch attestation key."""
        return self.chain[0]

    @property
    def intermediate(self) -> Issued:
        """:return: the CA nearest the root (under :attr:`Fault.PATH_LENGTH` a sub-CA sits
        between it and the leaf)."""
        return self.chain[-1]

    @property
    def leaf_key(self) -> ec.EllipticCurvePrivateKey:
        """:return: the batch attestation private key (TEST: a public constant)."""
        return self.leaf.key

    @property
    def x5c(self) -> list[bytes]:
        """:return: the packed statement's ``x5c``: DER certificates, leaf first, no root."""
        return [issued.der for issued in self.chain]

    @property
    def root_pem(self) -> bytes:
        """:return: the TEST root in PEM, for a test's trust anchors."""
        return self.root.pem

    def sign(self, data: bytes) -> bytes:
        """Sign as the batch attestation key does in a packed statement.

        :param data: ``authData ‖ clientDataHash``.
        :return: the DER ECDSA signature (SHA-256).
        """
        return self.leaf.key.sign(data, ec.ECDSA(hashes.SHA256()))


def _utc(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("The PKI's time must be timezone-aware")
    return now.astimezone(dt.UTC)


def _day(now: dt.datetime | None) -> dt.datetime:
    utc = _utc(now)
    return dt.datetime(utc.year, utc.month, utc.day, tzinfo=dt.UTC)


def _name(common_name: str | None, unit: str | None = None) -> x509.Name:
    attributes = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mie TEST"),
    ]
    if unit is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    if common_name is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _serial(label: str) -> int:
    # 63 bits, never 0: positive in DER whatever the label.
    digest = hashlib.sha256(f"mie TEST FIDO serial: {label}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1 | 1


@dataclass(frozen=True)
class _Spec:
    """What one certificate is made of, before signing."""

    subject: x509.Name
    key: ec.EllipticCurvePrivateKey
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    extensions: tuple[tuple[x509.ExtensionType, bool], ...]


def _sign(
    spec: _Spec, issuer: Issued | None, signer: ec.EllipticCurvePrivateKey | None = None
) -> Issued:
    """Sign ``spec`` as ``issuer`` (``None``: self-signed), with ``signer`` if given (a forged
    signature: the names and key identifiers still point at ``issuer``)."""
    public = spec.key.public_key()
    issuer_name = spec.subject if issuer is None else issuer.certificate.subject
    issuer_key = spec.key if issuer is None else issuer.key
    builder = (
        x509.CertificateBuilder()
        .subject_name(spec.subject)
        .issuer_name(issuer_name)
        .public_key(public)
        .serial_number(_serial(spec.serial))
        .not_valid_before(spec.not_before)
        .not_valid_after(spec.not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    for extension, critical in spec.extensions:
        builder = builder.add_extension(extension, critical=critical)
    certificate = builder.sign(signer or issuer_key, hashes.SHA256(), ecdsa_deterministic=True)
    return Issued(certificate, spec.key)


def _key_usage(*, signature: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(signature, False, False, False, False, ca, ca, False, False)


def _ca_extensions(path_length: int | None) -> tuple[tuple[x509.ExtensionType, bool], ...]:
    return (
        (x509.BasicConstraints(ca=True, path_length=path_length), True),
        (_key_usage(signature=False, ca=True), True),
    )


def _root(day: dt.datetime, label: str, common_name: str) -> Issued:
    key = fixed_test_key(label)
    spec = _Spec(_name(common_name), key, label, day - _DAY, day + 20 * _YEAR, _ca_extensions(1))
    return _sign(spec, None)


def _intermediate(day: dt.datetime, issuer: Issued, fault: Fault | None) -> Issued:
    not_before, not_after = day - _DAY, day + 10 * _YEAR
    extensions = _ca_extensions(0)
    serial = "intermediate"
    if fault is Fault.EXPIRED_INTERMEDIATE:
        not_before, not_after, serial = day - 3 * _YEAR, day - _DAY, "intermediate-expired"
    elif fault is Fault.INTERMEDIATE_NOT_CA:
        extensions = (
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (_key_usage(signature=True, ca=False), True),
        )
        serial = "intermediate-not-ca"
    elif fault is Fault.UNKNOWN_ROOT:
        serial = "intermediate-unknown-root"
    spec = _Spec(
        _name(INTERMEDIATE_NAME),
        fixed_test_key("intermediate"),
        serial,
        not_before,
        not_after,
        extensions,
    )
    return _sign(spec, issuer)


def _sub_ca(day: dt.datetime, issuer: Issued) -> Issued:
    spec = _Spec(
        _name("mie TEST FIDO Attestation Sub-CA"),
        fixed_test_key("sub-ca"),
        "sub-ca",
        day - _DAY,
        day + 10 * _YEAR,
        _ca_extensions(None),
    )
    return _sign(spec, issuer)


def _aaguid_value(aaguid: bytes, fault: Fault | None) -> bytes:
    if fault is Fault.LEAF_OTHER_AAGUID:
        aaguid = OTHER_AAGUID
    if fault is Fault.LEAF_AAGUID_NOT_OCTET_STRING:
        return aaguid
    return bytes([0x04, len(aaguid)]) + aaguid  # DER OCTET STRING (16 bytes: short length)


def _leaf_extensions(
    aaguid: bytes, fault: Fault | None
) -> tuple[tuple[x509.ExtensionType, bool], ...]:
    ca = fault is Fault.LEAF_IS_CA
    extensions: list[tuple[x509.ExtensionType, bool]] = [(_key_usage(signature=True, ca=ca), True)]
    if fault is not Fault.LEAF_WITHOUT_BASIC_CONSTRAINTS:
        extensions.insert(0, (x509.BasicConstraints(ca=ca, path_length=None), True))
    if fault is not Fault.LEAF_WITHOUT_AAGUID:
        value = x509.UnrecognizedExtension(OID_FIDO_GEN_CE_AAGUID, _aaguid_value(aaguid, fault))
        extensions.append((value, fault is Fault.LEAF_AAGUID_CRITICAL))
    return tuple(extensions)


def _leaf(day: dt.datetime, issuer: Issued, aaguid: bytes, fault: Fault | None) -> Issued:
    not_before, not_after = day - _DAY, day + 5 * _YEAR
    if fault is Fault.EXPIRED_LEAF:
        not_before, not_after = day - 2 * _YEAR, day - _DAY
    elif fault is Fault.LEAF_NOT_YET_VALID:
        not_before = day + 2 * _DAY
    unit = "mie TEST" if fault is Fault.LEAF_WRONG_OU else ATTESTATION_OU
    common_name = None if fault is Fault.LEAF_WITHOUT_CN else LEAF_NAME
    serial = f"leaf-{aaguid.hex()}-{fault.value if fault else 'good'}"
    spec = _Spec(
        _name(common_name, unit),
        fixed_test_key("leaf"),
        serial,
        not_before,
        not_after,
        _leaf_extensions(aaguid, fault),
    )
    signer = fixed_test_key("wrong-signer") if fault is Fault.LEAF_BAD_SIGNATURE else None
    return _sign(spec, issuer, signer)


def _read_saved(path: Path, at: dt.datetime) -> TestAttestationPki | None:
    """:return: the saved PKI, or ``None`` when it must be rebuilt."""
    try:
        if (path / LAYOUT_FILE).read_text().strip() != PKI_LAYOUT:
            return None
        certificates = [
            x509.load_pem_x509_certificate((path / name).read_bytes())
            for name in (ROOT_FILE, INTERMEDIATE_FILE, LEAF_FILE)
        ]
    except (OSError, ValueError):
        return None
    labels = ("root", "intermediate", "leaf")
    issued = [
        Issued(c, fixed_test_key(label)) for c, label in zip(certificates, labels, strict=True)
    ]
    for item in issued:
        if item.certificate.public_key() != item.key.public_key():
            return None
        if not item.certificate.not_valid_before_utc <= at <= item.certificate.not_valid_after_utc:
            return None
    root, intermediate, leaf = issued
    return TestAttestationPki(root, (leaf, intermediate), root, EMULATOR_AAGUID)


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_file`` (created when missing) for the block."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
