"""An IGC-Santé-like TEST PKI for emulated cards, demos and tests.

It mirrors the real hierarchy (``../shared/reference/ans-pki.md`` §1, §3, §4): roots
``TEST AC RACINE IGC-SANTE FORT|STANDARD``, intermediates ``TEST AC IGC-SANTE FORT|STANDARD
PERSONNES``, all ``C=FR, O=ASIP-SANTE, OU=0002 187512751, OU=IGC-SANTE TEST``; card certificates
with the real subject layout (multi-valued RDN {GN, CN=idNat, SN} for persons) and the NOS private
extensions (product category ``80`` = TEST card, product type, card serial, profession).

What is not public is marked *inferred* and kept in module constants so it can be changed in one
place: the authentication certificate's keyUsage/EKU and policy OID, and how a PSI card encodes
its identity. Nothing here is ever in the default trust store.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum, unique
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mie.core.files import atomic_write
from mie.core.luhn import luhn_check_digit

OID_NOS_PRODUCT_CATEGORY = x509.ObjectIdentifier("1.2.250.1.71.1.2.5")
OID_NOS_PRODUCT_TYPE = x509.ObjectIdentifier("1.2.250.1.71.1.2.2")
OID_NOS_CARD_SERIAL = x509.ObjectIdentifier("1.2.250.1.71.1.2.3")
OID_NOS_PROFESSION = x509.ObjectIdentifier("1.2.250.1.71.1.2.7")
# Card signature policy of the TEST FORT PERSONNES CA, as in the real TEST CPS3 certificate.
POLICY_TEST_FO_PP_SIGN = "1.2.250.1.213.1.7.2.1.1.1.1"
# Inferred: the authentication policy OIDs are not public; this value is mie's own guess.
POLICY_TEST_FO_PP_AUTH = "1.2.250.1.213.1.7.2.1.1.2.1"
POLICY_TEST_ST_PP_AUTH = "1.2.250.1.213.1.7.3.1.1.2.1"
POLICY_TEST_ST_PP_SIGN = "1.2.250.1.213.1.7.3.1.1.1.1"
CATEGORY_TEST_CPX = 0x80
# Bumped whenever saved CA certificates change shape, so old directories are regenerated.
PKI_LAYOUT = "3"
LOCK_FILE = ".lock"
"""Held while the directory is read or created, so that one process creates it."""
# All TEST CA certificates in one PEM file, for `mie trust import FILE --test`.
CHAIN_FILE = "test-chain.pem"
CARD_ISSUER = "8025000001"
# Inferred: NOS TRE-G02 has no public PSI code; mie uses 04 for its emulated PSI card.
PRODUCT_TYPES = {"CPS": 0, "CPF": 1, "CPE": 2, "CPA": 3, "PSI": 4}
PROFESSIONS = {
    10: "Médecin",
    21: "Pharmacien",
    40: "Chirurgien-dentiste",
    60: "Infirmier",
    70: "Masseur-kinésithérapeute",
    80: "Pédicure-podologue",
}
CPE_TITLE = "Carte de service santé ou social"

_ASIP = [
    x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ASIP-SANTE"),
    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "0002 187512751"),
    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "IGC-SANTE TEST"),
]


@unique
class Gamme(Enum):
    """IGC-Santé ranges: FORT (CPS), STANDARD (CPE/CPA), ELEMENTAIRE (software)."""

    FORT = "FORT"
    STANDARD = "STANDARD"
    ELEMENTAIRE = "ELEMENTAIRE"


def _ca_name(cn: str) -> x509.Name:
    return x509.Name([*_ASIP, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _new_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey

    def certificate_pem(self) -> bytes:
        """:return: the certificate in PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class CardIdentity:
    """Who an emulated card belongs to.

    :param id_type: ``RPPS``, ``ADELI``, ``FINESS``, ``SIRET`` or ``PSI``.
    :param id: the identifier without idNat prefix (FINESS/SIRET: ``<number>/<internal id>``).
    :param card_type: ``CPS``, ``CPF``, ``CPE``, ``CPA`` or ``PSI``.
    """

    id_type: str
    id: str
    card_type: str
    given_name: str | None = "JEAN"
    family_name: str | None = "DUPONT"
    profession_code: int | None = 10
    structure: str | None = None

    @property
    def id_nat(self) -> str:
        """:return: the national identifier as ANS writes it in the certificate CN."""
        prefixes = {"RPPS": "8", "ADELI": "0", "FINESS": "3", "SIRET": "5", "PSI": ""}
        return prefixes[self.id_type] + self.id


def default_rpps() -> str:
    """:return: a well-formed (Luhn-valid) RPPS number reserved for emulated cards."""
    return "1010009987" + luhn_check_digit("1010009987")


def parse_identity(spec: str | None, card_type: str) -> CardIdentity:
    """Parse ``rpps=…``, ``adeli=…``, ``finess=NUMBER/INTERNAL``, ``siret=…/…`` or ``psi=UUID``.

    :param spec: the ``--identity`` value, or ``None`` for the card type's default.
    :param card_type: the card type the identity goes on.
    :return: the identity.
    :raises ValueError: the spec is not one of the forms above.
    """
    if spec is None:
        return _default_identity(card_type)
    key, sep, value = spec.partition("=")
    key = key.strip().lower()
    if not sep or not value:
        raise ValueError(f"Identity {spec!r} must be KIND=VALUE (rpps, adeli, finess, siret, psi)")
    if key == "psi":
        return CardIdentity("PSI", str(uuid.UUID(value)), card_type)
    if key in ("finess", "siret"):
        if "/" not in value:
            raise ValueError(f"{key} identity must be NUMBER/INTERNAL-ID, got {value!r}")
        return CardIdentity(key.upper(), value, card_type, None, None, None, "CH DE DEMONSTRATION")
    if key in ("rpps", "adeli"):
        return CardIdentity(key.upper(), value, card_type)
    raise ValueError(f"Unknown identity kind {key!r} (rpps, adeli, finess, siret, psi)")


def _default_identity(card_type: str) -> CardIdentity:
    if card_type in ("CPE", "CPA"):
        return CardIdentity(
            "FINESS",
            "760021832/000000018",
            card_type,
            "MARIE",
            "MARTIN",
            None,
            "CH DE DEMONSTRATION",
        )
    if card_type == "PSI":
        return CardIdentity(
            "PSI", "4f0b7c1e-5d2a-4c8e-9a3b-6e1f2d7c8b90", card_type, "LUCIE", "BERNARD"
        )
    return CardIdentity("RPPS", default_rpps(), card_type)


def card_subject(identity: CardIdentity) -> x509.Name:
    """The subject DN of a card certificate, in the real IGC-Santé layout.

    :param identity: the holder.
    :return: the name.
    """
    if identity.card_type in ("CPE", "CPA"):
        structure_nat = ("1" if identity.id_type == "FINESS" else "3") + identity.id.split("/")[0]
        rdns = [
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "FR")]),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.ORGANIZATION_NAME, identity.structure or "STRUCTURE")]
            ),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, structure_nat)]
            ),
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.TITLE, CPE_TITLE)]),
            _person_rdn(identity),
        ]
        return x509.Name(rdns)
    title = PROFESSIONS.get(identity.profession_code or 0, "Professionnel de santé")
    return x509.Name(
        [
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "FR")]),
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.TITLE, title)]),
            _person_rdn(identity),
        ]
    )


def _person_rdn(identity: CardIdentity) -> x509.RelativeDistinguishedName:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, identity.id_nat)]
    if identity.given_name:
        attributes.append(x509.NameAttribute(NameOID.GIVEN_NAME, identity.given_name))
    if identity.family_name:
        attributes.append(x509.NameAttribute(NameOID.SURNAME, identity.family_name))
    return x509.RelativeDistinguishedName(attributes)


def _der_integer(value: int) -> bytes:
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True)
    return b"\x02" + bytes([len(body)]) + body


def _der_octets(value: bytes) -> bytes:
    return b"\x04" + bytes([len(value)]) + value


def _der_printable(value: str) -> bytes:
    raw = value.encode("ascii")
    return b"\x13" + bytes([len(raw)]) + raw


def nos_extensions(identity: CardIdentity, card_serial: str) -> list[x509.UnrecognizedExtension]:
    """The NOS private extensions of a TEST card certificate (``ans-pki.md`` §4.1)."""
    extensions = [
        x509.UnrecognizedExtension(
            OID_NOS_PRODUCT_CATEGORY, _der_octets(bytes([CATEGORY_TEST_CPX]))
        ),
        x509.UnrecognizedExtension(
            OID_NOS_PRODUCT_TYPE, _der_integer(PRODUCT_TYPES[identity.card_type])
        ),
        x509.UnrecognizedExtension(
            OID_NOS_CARD_SERIAL, _der_printable(f"{CARD_ISSUER}/{card_serial}")
        ),
    ]
    if identity.profession_code is not None:
        extensions.append(
            x509.UnrecognizedExtension(OID_NOS_PROFESSION, _der_integer(identity.profession_code))
        )
    return extensions


@dataclass(frozen=True)
class CardCredentials:
    """The two key pairs and certificates of a CPx card."""

    authentication: Issued
    signature: Issued
    chain: list[x509.Certificate]


@dataclass
class TestPki:
    """The TEST hierarchy: one root and one PERSONNES intermediate per gamme.

    :param key_bits: RSA size of CA keys (the real ones are 4096; tests use 2048 for speed).
    :param crl_base_url: base of the CRL distribution points written into certificates.
    """

    __test__ = False  # not a pytest test class, whatever its name

    key_bits: int = 2048
    crl_base_url: str = "http://127.0.0.1:8088/crl/"
    roots: dict[Gamme, Issued] = field(default_factory=dict)
    intermediates: dict[Gamme, Issued] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for gamme in (Gamme.FORT, Gamme.STANDARD):
            if gamme not in self.roots:
                self.roots[gamme] = self._root(gamme)
            if gamme not in self.intermediates:
                self.intermediates[gamme] = self._intermediate(gamme)

    def _root(self, gamme: Gamme) -> Issued:
        key = _new_key(self.key_bits)
        name = _ca_name(f"TEST AC RACINE IGC-SANTE {gamme.value}")
        start = _now() - dt.timedelta(days=1)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=365 * 20))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.CertificatePolicies(
                    [x509.PolicyInformation(x509.ObjectIdentifier("2.5.29.32.0"), None)]
                ),
                critical=False,
            )
        )
        return Issued(builder.sign(key, hashes.SHA256()), key)

    def _intermediate(self, gamme: Gamme) -> Issued:
        root = self.roots[gamme]
        key = _new_key(self.key_bits)
        start = _now() - dt.timedelta(days=1)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_ca_name(f"TEST AC IGC-SANTE {gamme.value} PERSONNES"))
            .issuer_name(root.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=365 * 10))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(_aki(root), critical=False)
            .add_extension(_distribution_point(self.arl_url(gamme)), critical=False)
            .add_extension(
                x509.CertificatePolicies(
                    [x509.PolicyInformation(x509.ObjectIdentifier("2.5.29.32.0"), None)]
                ),
                critical=False,
            )
        )
        return Issued(builder.sign(root.key, hashes.SHA256()), key)

    def crl_url(self, gamme: Gamme) -> str:
        """:return: the CRL distribution point of the gamme's PERSONNES intermediate."""
        return f"{self.crl_base_url}ACI-{_SHORT[gamme]}-PP-TEST.crl"

    def arl_url(self, gamme: Gamme) -> str:
        """:return: the distribution point of the CRL the gamme's root issues (for its CAs)."""
        return f"{self.crl_base_url}ACR-{_SHORT[gamme]}-TEST.crl"

    def issue_card(
        self,
        identity: CardIdentity,
        card_serial: str,
        *,
        key_bits: int = 2048,
        validity_days: int = 3 * 365,
    ) -> CardCredentials:
        """Issue the authentication and signature certificates of one card.

        :param identity: the holder.
        :param card_serial: the card serial written in the NOS extension.
        :param key_bits: RSA size of the card keys.
        :param validity_days: certificate lifetime.
        :return: keys, certificates and the chain up to the root.
        """
        gamme = Gamme.STANDARD if identity.card_type in ("CPE", "CPA") else Gamme.FORT
        issuer = self.intermediates[gamme]
        auth = self._leaf(identity, card_serial, issuer, gamme, True, key_bits, validity_days)
        sign = self._leaf(identity, card_serial, issuer, gamme, False, key_bits, validity_days)
        return CardCredentials(auth, sign, [issuer.certificate, self.roots[gamme].certificate])

    def _leaf(
        self,
        identity: CardIdentity,
        card_serial: str,
        issuer: Issued,
        gamme: Gamme,
        authentication: bool,
        key_bits: int,
        validity_days: int,
    ) -> Issued:
        key = _new_key(key_bits)
        start = _now() - dt.timedelta(minutes=5)
        builder = (
            x509.CertificateBuilder()
            .subject_name(card_subject(identity))
            .issuer_name(issuer.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=validity_days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(_aki(issuer), critical=False)
            .add_extension(_leaf_key_usage(authentication), critical=True)
            .add_extension(_leaf_eku(authentication), critical=False)
            .add_extension(_leaf_policies(gamme, authentication), critical=False)
            .add_extension(_distribution_point(self.crl_url(gamme)), critical=False)
        )
        for extension in nos_extensions(identity, card_serial):
            builder = builder.add_extension(extension, critical=False)
        return Issued(builder.sign(issuer.key, hashes.SHA256()), key)

    def crl(
        self,
        gamme: Gamme,
        revoked: list[int] | None = None,
        *,
        this_update: dt.datetime | None = None,
        next_update: dt.timedelta = dt.timedelta(days=7),
        authority: bool = False,
    ) -> x509.CertificateRevocationList:
        """A CRL from the gamme's PERSONNES intermediate (``authority=True``: from its root).

        :param revoked: serial numbers to list as revoked.
        :param this_update: issue time (default now).
        :param next_update: how long until the next CRL is due.
        :return: the signed CRL.
        """
        issuer = (self.roots if authority else self.intermediates)[gamme]
        start = this_update or _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer.certificate.subject)
            .last_update(start)
            .next_update(start + next_update)
            .add_extension(_aki(issuer), critical=False)
            .add_extension(x509.CRLNumber(int(start.timestamp())), critical=False)
        )
        for serial in revoked or []:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(start)
                .build()
            )
        return builder.sign(issuer.key, hashes.SHA256())

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write the CA certificates and keys (keys ``0600``) so other processes reuse them."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        bundle = [i.certificate_pem() for i in [*self.roots.values(), *self.intermediates.values()]]
        # Atomic: a process loading the directory meanwhile reads whole files, never a part.
        atomic_write(path / CHAIN_FILE, b"".join(bundle), mode=0o644)
        for kind, issued_map in (("root", self.roots), ("ca", self.intermediates)):
            for gamme, issued in issued_map.items():
                stem = f"{kind}-{gamme.value.lower()}"
                atomic_write(path / f"{stem}.pem", issued.certificate_pem(), mode=0o644)
                key = issued.key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                atomic_write(path / f"{stem}.key", key, mode=0o600)

    def publish_crls(
        self, directory: str | os.PathLike[str], revoked: list[int] | None = None
    ) -> None:
        """Write fresh CRLs per gamme, atomically: ``crl-<gamme>.der`` from the PERSONNES CA and
        ``arl-<gamme>.der`` from the root.

        :param revoked: serial numbers to list as revoked in every CRL.
        """
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for gamme in self.intermediates:
            for prefix, authority in (("crl", False), ("arl", True)):
                crl = self.crl(gamme, revoked, authority=authority)
                target = path / f"{prefix}-{gamme.value.lower()}.der"
                atomic_write(target, crl.public_bytes(serialization.Encoding.DER), mode=0o644)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], **kwargs: object) -> TestPki:
        """Load CAs written by :meth:`save`; create and save them when absent or written by an
        older layout (``version`` file)."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        # One creator: two processes starting on a fresh directory (two emulators, an emulator
        # and `mie demo`) each made CAs of their own, and the last one's files won, leaving the
        # other's card with certificates no saved CA had signed.
        with _locked(path / LOCK_FILE):
            return cls._load_or_create(path, **kwargs)

    @classmethod
    def _load_or_create(cls, path: Path, **kwargs: object) -> TestPki:
        version = path / "version"
        if not version.is_file() or version.read_text().strip() != PKI_LAYOUT:
            pki = cls(**kwargs)  # type: ignore[arg-type]
            pki.save(path)
            atomic_write(version, (PKI_LAYOUT + "\n").encode(), mode=0o644)
            return pki
        try:
            roots = {g: _load_issued(path, "root", g) for g in (Gamme.FORT, Gamme.STANDARD)}
            cas = {g: _load_issued(path, "ca", g) for g in (Gamme.FORT, Gamme.STANDARD)}
        except FileNotFoundError:
            pki = cls(**kwargs)  # type: ignore[arg-type]
            pki.save(path)
            return pki
        return cls(roots=roots, intermediates=cas, **kwargs)  # type: ignore[arg-type]


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_file`` (created when missing) for the block."""
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:  # a read-only directory: nobody creates anything in it either
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _load_issued(path: Path, kind: str, gamme: Gamme) -> Issued:
    stem = f"{kind}-{gamme.value.lower()}"
    certificate = x509.load_pem_x509_certificate((path / f"{stem}.pem").read_bytes())
    key = serialization.load_pem_private_key((path / f"{stem}.key").read_bytes(), None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{stem}.key is not an RSA key")
    return Issued(certificate, key)


_SHORT = {Gamme.FORT: "FO", Gamme.STANDARD: "ST", Gamme.ELEMENTAIRE: "EL"}


def _distribution_point(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints(
        [x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)]
    )


def _aki(issuer: Issued) -> x509.AuthorityKeyIdentifier:
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(False, False, False, False, False, True, True, False, False)


def _leaf_key_usage(authentication: bool) -> x509.KeyUsage:
    # Inferred for authentication (digitalSignature + keyEncipherment); the signature certificate
    # is nonRepudiation only, as on the real TEST CPS3.
    if authentication:
        return x509.KeyUsage(True, False, True, False, False, False, False, False, False)
    return x509.KeyUsage(False, True, False, False, False, False, False, False, False)


def _leaf_eku(authentication: bool) -> x509.ExtendedKeyUsage:
    if authentication:
        return x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION]
        )
    return x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION])


def _leaf_policies(gamme: Gamme, authentication: bool) -> x509.CertificatePolicies:
    oids = {
        (Gamme.FORT, True): POLICY_TEST_FO_PP_AUTH,
        (Gamme.FORT, False): POLICY_TEST_FO_PP_SIGN,
        (Gamme.STANDARD, True): POLICY_TEST_ST_PP_AUTH,
        (Gamme.STANDARD, False): POLICY_TEST_ST_PP_SIGN,
    }
    return x509.CertificatePolicies(
        [x509.PolicyInformation(x509.ObjectIdentifier(oids[(gamme, authentication)]), None)]
    )
