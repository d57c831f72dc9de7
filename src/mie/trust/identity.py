"""Who a CPx certificate belongs to: :class:`Identity` from the subject and NOS extensions.

Sources: ``../shared/reference/ans-pki.md`` §3 (subject layout: the person is the multi-valued
RDN {GN, CN=idNat, SN}), §4.1 (NOS private extensions) and §5 (idNat prefixes, check digits).
Inferred, not public: a PSI card's CN is a bare UUID (how mie's emulator encodes it) and its NOS
product type is 4; FINESS is Luhn-checked when it is all digits. SIRETs of La Poste (SIREN
356000000) have a digit sum that is a multiple of 5 instead of a Luhn digit (ans-pki.md §5.2),
except the head office's, 35600000000048, which follows Luhn (the INSEE rule; not in the
reference).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from asn1crypto import core as acore  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from mie.core.errors import BadResponseError
from mie.core.luhn import luhn_valid
from mie.trust.errors import describe, malformed
from mie.trust.parse import force_lazy_parts, guarded

OID_NOS_PRODUCT_CATEGORY = x509.ObjectIdentifier("1.2.250.1.71.1.2.5")
OID_NOS_PRODUCT_TYPE = x509.ObjectIdentifier("1.2.250.1.71.1.2.2")
OID_NOS_CARD_SERIAL = x509.ObjectIdentifier("1.2.250.1.71.1.2.3")
OID_NOS_PROFESSION = x509.ObjectIdentifier("1.2.250.1.71.1.2.7")
NOS_OIDS = frozenset(
    {OID_NOS_PRODUCT_CATEGORY, OID_NOS_PRODUCT_TYPE, OID_NOS_CARD_SERIAL, OID_NOS_PROFESSION}
)
# TRE-G01 CategorieProduit: 80, 82, 83 are TEST products.
TEST_CATEGORIES = frozenset({0x80, 0x82, 0x83})
# TRE-G02 TypeProduit; 4 (PSI) is inferred, see mie.emulation.testpki.PRODUCT_TYPES.
CARD_TYPES = {0: "CPS", 1: "CPF", 2: "CPE", 3: "CPA", 4: "PSI"}
LA_POSTE_SIREN = "356000000"
# La Poste establishments (SIREN 356000000) have SIRETs whose digit sum is a multiple of 5, not a
# Luhn check digit; the head office's SIRET is the exception to the exception and follows Luhn.
LA_POSTE_HEAD_OFFICE = "35600000000048"

#: What cryptography raises for certificate parts it parses lazily (names, extensions, keys).
LAZY_PARSE_ERRORS = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)
# X.520 DirectoryString: the only types a CN, GN or SN may have.
_DIRECTORY_STRING = frozenset(
    {
        _ASN1Type.PrintableString,
        _ASN1Type.UTF8String,
        _ASN1Type.BMPString,
        _ASN1Type.UniversalString,
        _ASN1Type.T61String,
    }
)
# NOS codes are small tables (TRE-G01, G02, G15); anything larger is a broken certificate.
_NOS_MAX = 999
_SHOWN = 40

_ADELI = re.compile(r"[0-9A-Z]{9}")
_DIGITS = re.compile(r"[0-9]+")
_INTERNAL = re.compile(r"[0-9A-Za-z.\-_]{1,32}")


@dataclass(frozen=True)
class Identity:
    """A professional's identity as the contract defines it.

    :param id_nat: the national identifier as written in the certificate (prefix included).
    :param id_type: ``RPPS``, ``ADELI``, ``FINESS``, ``SIRET``, ``SIREN``, ``PSI`` or ``LOCAL``.
    :param id: the identifier without its idNat prefix (structure ids keep ``/internal``).
    :param card_type: ``CPS``, ``CPF``, ``CPE``, ``CPA``, ``PSI`` or ``None``.
    :param test_card: the card or its CA belongs to a TEST hierarchy.
    """

    id_nat: str
    id_type: str
    id: str
    given_name: str | None
    family_name: str | None
    profession_code: str | None
    card_type: str | None
    test_card: bool
    card_serial: str | None = None

    def to_json(self) -> dict[str, Any]:
        """:return: the contract JSON object (``card_serial`` is not part of it)."""
        data = asdict(self)
        del data["card_serial"]
        return data


def identity_from_certificate(cert: x509.Certificate) -> Identity:
    """Read the holder's identity from a CPx (or PSI) card certificate.

    :param cert: the leaf certificate.
    :return: the identity.
    :raises VerificationError: ``malformed`` when the subject has no single CN or the identifier
        breaks its own format (bad prefix, RPPS/SIREN/SIRET failing Luhn), a name attribute is
        not a DirectoryString, or the subject, issuer or extensions do not parse.
    """
    subject, issuer = subject_of(cert), issuer_of(cert)
    person = _person_attributes(subject)
    cn = person.get(NameOID.COMMON_NAME)
    if cn is None:
        raise malformed("The certificate subject has no single commonName (idNat)")
    id_type, ident = parse_id_nat(cn)
    nos = _nos_values(cert)
    category = nos.get(OID_NOS_PRODUCT_CATEGORY)
    product = nos.get(OID_NOS_PRODUCT_TYPE)
    profession = nos.get(OID_NOS_PROFESSION)
    return Identity(
        id_nat=cn,
        id_type=id_type,
        id=ident,
        given_name=person.get(NameOID.GIVEN_NAME),
        family_name=person.get(NameOID.SURNAME),
        profession_code=str(profession) if isinstance(profession, int) else None,
        card_type=CARD_TYPES.get(product) if isinstance(product, int) else None,
        test_card=(isinstance(category, int) and category in TEST_CATEGORIES)
        or is_test_name(issuer),
        card_serial=serial if isinstance(serial := nos.get(OID_NOS_CARD_SERIAL), str) else None,
    )


def is_test_name(name: x509.Name) -> bool:
    """:return: whether a CA name is in an IGC-Santé TEST hierarchy (``OU=IGC-SANTE TEST``)."""
    units = name.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return any(a.value == "IGC-SANTE TEST" for a in units) or any(
        str(a.value).startswith("TEST ") for a in cns
    )


def _person_attributes(subject: x509.Name) -> dict[x509.ObjectIdentifier, str]:
    # The person is the RDN holding the CN; GN and SN are read from it (CPS) or from the
    # whole name (CPE writes them in the same multi-valued RDN too, but be tolerant of order).
    wanted = (NameOID.COMMON_NAME, NameOID.GIVEN_NAME, NameOID.SURNAME)
    found: dict[x509.ObjectIdentifier, str] = {}
    for oid in wanted:
        values = subject.get_attributes_for_oid(oid)
        if len(values) > 1:
            raise malformed(f"The certificate subject has {len(values)} {oid._name} attributes")
        if values:
            found[oid] = _directory_string(values[0])
    return found


def _directory_string(attribute: x509.NameAttribute) -> str:
    kind = getattr(attribute, "_type", None)
    if kind not in _DIRECTORY_STRING or not isinstance(attribute.value, str):
        encoding = kind.name if isinstance(kind, _ASN1Type) else type(attribute.value).__name__
        raise malformed(
            f"The certificate subject {attribute.oid._name} is encoded as {encoding}, "
            "not a DirectoryString"
        )
    return attribute.value


def shown(value: str) -> str:
    """:return: ``value`` quoted for a one-line message, cut when long."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def subject_of(cert: x509.Certificate, what: str = "certificate") -> x509.Name:
    """:return: the subject of ``cert``.

    :raises VerificationError: ``malformed`` when cryptography cannot parse it.
    """
    try:
        return cert.subject
    except LAZY_PARSE_ERRORS as e:
        raise malformed(f"{what}: subject does not parse ({describe(e)})") from e


def issuer_of(cert: x509.Certificate, what: str = "certificate") -> x509.Name:
    """:return: the issuer name of ``cert``.

    :raises VerificationError: ``malformed`` when cryptography cannot parse it.
    """
    try:
        return cert.issuer
    except LAZY_PARSE_ERRORS as e:
        raise malformed(f"{what}: issuer name does not parse ({describe(e)})") from e


def extensions_of(cert: x509.Certificate, what: str = "certificate") -> x509.Extensions:
    """:return: the extensions of ``cert``.

    :raises VerificationError: ``malformed`` for a duplicate, unparsable or unsupported
        extension.
    """
    try:
        return cert.extensions
    except LAZY_PARSE_ERRORS as e:
        raise malformed(f"{what}: extensions do not parse ({describe(e)})") from e


def check_readable(cert: x509.Certificate, what: str = "certificate") -> None:
    """Parse every lazily parsed part of ``cert`` once (names, extensions, public key, validity),
    so later accessors cannot raise: the same forcing as :func:`mie.trust.parse.load_certificates`
    applies to what it parses, for certificate objects that come from elsewhere.

    :raises VerificationError: ``malformed`` naming ``what``.
    """
    guarded(what, "certificate", lambda: force_lazy_parts(cert))


def parse_id_nat(id_nat: str) -> tuple[str, str]:
    """Split an idNat into its type and identifier, checking the format (ans-pki.md §5).

    :param id_nat: the CN of a card certificate.
    :return: ``(id_type, id)``.
    :raises VerificationError: ``malformed``.
    """
    if _is_uuid(id_nat):
        return "PSI", id_nat.lower()
    prefix, rest = id_nat[:1], id_nat[1:]
    if prefix == "8":
        return "RPPS", _checked(rest, 11, "RPPS")
    if prefix == "0":
        if not _ADELI.fullmatch(rest):
            raise malformed(f"ADELI identifier {shown(rest)} is not 9 characters")
        return "ADELI", rest
    number, sep, internal = rest.partition("/")
    if not sep or not _INTERNAL.fullmatch(internal):
        raise malformed(f"idNat {shown(id_nat)} has an unknown prefix or no /internal id")
    kinds = {"1": ("ADELI", 9), "3": ("FINESS", 9), "4": ("SIREN", 9), "5": ("SIRET", 14)}
    kinds["6"] = ("RPPS", 14)
    if prefix not in kinds:
        raise malformed(f"idNat {shown(id_nat)} has an unknown prefix {shown(prefix)}")
    id_type, length = kinds[prefix]
    if prefix == "1":
        if not _ADELI.fullmatch(number):
            raise malformed(f"ADELI cabinet identifier {shown(number)} is not 9 characters")
    elif prefix == "3" and not _DIGITS.fullmatch(number):
        # Corsican FINESS numbers carry letters; their check rule is not public.
        if not _ADELI.fullmatch(number):
            raise malformed(f"FINESS {shown(number)} is not 9 characters")
    else:
        _checked(number, length, id_type)
    return id_type, f"{number}/{internal}"


def _checked(number: str, length: int, kind: str) -> str:
    if len(number) != length or not _DIGITS.fullmatch(number):
        raise malformed(f"{kind} {shown(number)} is not {length} digits")
    if kind == "SIRET" and number.startswith(LA_POSTE_SIREN) and number != LA_POSTE_HEAD_OFFICE:
        if sum(int(d) for d in number) % 5:
            raise malformed(f"SIRET {shown(number)} fails the La Poste check")
        return number
    if not luhn_valid(number):
        raise malformed(f"{kind} {shown(number)} fails its Luhn check digit")
    return number


def _is_uuid(value: str) -> bool:
    if len(value) != 36:
        return False
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def _nos_values(cert: x509.Certificate) -> dict[x509.ObjectIdentifier, int | str]:
    values: dict[x509.ObjectIdentifier, int | str] = {}
    for extension in extensions_of(cert):
        if extension.oid not in NOS_OIDS:
            continue
        raw = extension.value
        if not isinstance(raw, x509.UnrecognizedExtension):
            continue
        values[extension.oid] = _decode_nos(extension.oid, raw.value)
    return values


def _decode_nos(oid: x509.ObjectIdentifier, der: bytes) -> int | str:
    try:
        if oid == OID_NOS_PRODUCT_CATEGORY:
            octets = acore.OctetString.load(der, strict=True).native
            if len(octets) != 1:
                raise ValueError("The product category is not one byte")
            return int(octets[0])
        if oid == OID_NOS_CARD_SERIAL:
            return str(acore.PrintableString.load(der, strict=True).native)
        value = int(acore.Integer.load(der, strict=True).native)
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as e:
        raise malformed(f"NOS extension {oid.dotted_string} does not parse ({describe(e)})") from e
    if not 0 <= value <= _NOS_MAX:
        raise malformed(f"NOS extension {oid.dotted_string} holds an out-of-range value")
    return value


# The ANS issuer number that EF.SN and the NOS card serial start with.
CARD_ISSUER_NUMBER = "8025000001"
MAX_CARD_SERIAL_DIGITS = 20


def parse_nos_card_serial(value: str) -> str:
    """Parse the card serial a CPx certificate carries (NOS extension 1.2.250.1.71.1.2.3).

    The value is ``8025000001/<serial>``: the issuer number EF.SN starts with, then the serial
    digits (``ans-pki.md`` §4.1; that they are the EF.SN serial is inferred from real values).
    The device side checks EF.SN against it; the verifier side reports it as the card's serial.

    :param value: the extension's PrintableString.
    :return: the serial digits, comparable with :func:`mie.cards.cpx.parse_ef_sn`.
    :raises BadResponseError: another issuer, or a serial that is not 1 to 20 digits.
    """
    issuer, sep, digits = value.partition("/")
    if not sep or issuer != CARD_ISSUER_NUMBER:
        raise BadResponseError("The certificate's card serial does not carry the issuer 8025000001")
    if not (1 <= len(digits) <= MAX_CARD_SERIAL_DIGITS and digits.isascii() and digits.isdigit()):
        raise BadResponseError("The certificate's card serial is not 1 to 20 digits")
    return digits
