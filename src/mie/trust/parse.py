"""Strict loading of certificates, PKCS#7 bundles and CRLs (PEM or DER).

Two parsers read every input: asn1crypto with ``strict=True`` (no trailing bytes, every time and
field decoded) and cryptography's Rust DER parser (canonical DER). Anything either rejects is
``malformed``, and the message names the source.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator

from asn1crypto import cms as acms  # type: ignore[import-untyped]
from asn1crypto import core as acore
from asn1crypto import crl as acrl
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from mie.trust.errors import malformed

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)\r?\n-----END \1-----", re.DOTALL)
_CERT_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"}
_PKCS7_LABELS = {b"PKCS7", b"CMS"}
_CRL_LABELS = {b"X509 CRL"}
OID_SIGNED_DATA = "1.2.840.113549.1.7.2"


def is_pem(data: bytes) -> bool:
    """:return: whether ``data`` looks like PEM text rather than DER."""
    return data.lstrip()[:11] == b"-----BEGIN "


def _pem_blocks(data: bytes, source: str) -> Iterator[tuple[bytes, bytes]]:
    import base64
    import binascii

    found = False
    for match in _PEM_BLOCK.finditer(data):
        found = True
        try:
            body = base64.b64decode(b"".join(match.group(2).split()), validate=True)
        except (binascii.Error, ValueError) as e:
            raise malformed(f"{source}: bad base64 in PEM block ({e})") from e
        yield match.group(1), body
    if not found:
        raise malformed(f"{source}: no complete PEM block")


def parse_certificate_der(
    der: bytes, source: str, *, allow_nonpositive_serial: bool = False
) -> x509.Certificate:
    """Parse one DER certificate strictly.

    :param der: the certificate bytes.
    :param source: what to name in error messages (usually the file name).
    :param allow_nonpositive_serial: accept a negative or zero serial (RFC 5280 forbids them to
        CAs but asks relying parties to cope; PKITS has such certificates). IGC-Santé never
        issues them, so the default rejects them.
    :return: the certificate.
    :raises VerificationError: ``malformed``.
    """
    strict = check_certificate_der(der, source)
    serial = strict["tbs_certificate"]["serial_number"].native
    if serial <= 0 and not allow_nonpositive_serial:
        raise malformed(f"{source}: certificate serial number is not positive ({serial})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            return x509.load_der_x509_certificate(der)
    except ValueError as e:
        raise malformed(f"{source}: certificate does not parse ({e})") from e


def check_certificate_der(der: bytes, source: str) -> ax509.Certificate:
    """Parse a DER certificate with asn1crypto in strict mode, decoding every field.

    :return: the asn1crypto certificate (used by the RFC 5280 fallback engine).
    :raises VerificationError: ``malformed``.
    """
    try:
        strict = ax509.Certificate.load(der, strict=True)
        # Decoding the TBS part checks every field, times included (asn1crypto is lazy).
        strict["tbs_certificate"].native  # noqa: B018
        strict["signature_value"].native  # noqa: B018
    except (ValueError, TypeError, KeyError, OverflowError) as e:
        raise malformed(f"{source}: certificate does not parse ({e})") from e
    return strict


def load_certificates(
    data: bytes, source: str, *, allow_nonpositive_serial: bool = False
) -> list[x509.Certificate]:
    """Load every certificate of a PEM file, a DER certificate or a PKCS#7 bundle (PEM/DER).

    :param data: the file content.
    :param source: the file name, for messages.
    :param allow_nonpositive_serial: see :func:`parse_certificate_der`.
    :return: the certificates, in file order (at least one).
    :raises VerificationError: ``malformed`` (unreadable, or no certificate at all).
    """
    ders = list(certificate_ders(data, source))
    if not ders:
        raise malformed(f"{source}: contains no certificate")
    return [
        parse_certificate_der(d, source, allow_nonpositive_serial=allow_nonpositive_serial)
        for d in ders
    ]


def certificate_ders(data: bytes, source: str) -> Iterator[bytes]:
    """The DER certificates inside PEM, DER or PKCS#7 input (not yet checked)."""
    if is_pem(data):
        for label, body in _pem_blocks(data, source):
            if label in _CERT_LABELS:
                yield body
            elif label in _PKCS7_LABELS:
                yield from _pkcs7_certificates(body, source)
            else:
                raise malformed(f"{source}: unexpected PEM block {label.decode()!r}")
    elif _looks_like_pkcs7(data):
        yield from _pkcs7_certificates(data, source)
    else:
        yield data


def _looks_like_pkcs7(der: bytes) -> bool:
    try:
        outer = acore.Sequence.load(der, strict=True)
        first = outer[0]
    except (ValueError, TypeError, KeyError, IndexError):
        return False
    return isinstance(first, acore.Asn1Value) and first.tag == 6  # OBJECT IDENTIFIER


def _pkcs7_certificates(der: bytes, source: str) -> list[bytes]:
    try:
        info = acms.ContentInfo.load(der, strict=True)
        if info["content_type"].dotted != OID_SIGNED_DATA:
            raise malformed(f"{source}: PKCS#7 content is not SignedData")
        certificates = info["content"]["certificates"]
        result = [] if not certificates else [c.chosen.dump() for c in certificates]
    except (ValueError, TypeError, KeyError) as e:
        raise malformed(f"{source}: PKCS#7 bundle does not parse ({e})") from e
    if not result:
        raise malformed(f"{source}: PKCS#7 bundle contains no certificate")
    return result


def load_crl(data: bytes, source: str) -> x509.CertificateRevocationList:
    """Load one CRL (PEM or DER) strictly.

    :param data: the file content.
    :param source: the file name, for messages.
    :return: the CRL (signature not yet checked).
    :raises VerificationError: ``malformed``.
    """
    if is_pem(data):
        blocks = [body for label, body in _pem_blocks(data, source) if label in _CRL_LABELS]
        if len(blocks) != 1:
            raise malformed(f"{source}: expected one X509 CRL PEM block, found {len(blocks)}")
        data = blocks[0]
    try:
        strict = acrl.CertificateList.load(data, strict=True)
        tbs = strict["tbs_cert_list"]
        tbs["this_update"].native  # noqa: B018
        tbs["next_update"].native  # noqa: B018
        crl = x509.load_der_x509_crl(data)
        # Touch the parsed times so a bad encoding fails here, not during a check.
        crl.last_update_utc  # noqa: B018
        crl.next_update_utc  # noqa: B018
    except (ValueError, TypeError, KeyError, OverflowError) as e:
        raise malformed(f"{source}: CRL does not parse ({e})") from e
    return crl
