"""Strict loading of certificates, PKCS#7 bundles and CRLs (PEM or DER).

Two parsers read every input: cryptography's Rust DER parser (canonical DER) and asn1crypto
with ``strict=True`` (no trailing bytes, every time and field decoded). Anything either rejects
is ``malformed``, and the message names the source.

Hostile bytes are expected, so each kind of input has a size limit checked before any parsing,
PEM is scanned in linear time, cryptography parses first (it validates the whole structure
without building Python objects, so asn1crypto only ever sees well-formed structures of the
expected shape) and certificates nested deeper than :data:`MAX_DER_DEPTH` are refused before
either parser recurses. Every lazily parsed part a later check reads (extensions, public key,
names, CRL entries) is forced here, so nothing raises a foreign exception afterwards.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import warnings
from collections.abc import Callable, Iterator
from typing import TypeVar

from asn1crypto import algos  # type: ignore[import-untyped]
from asn1crypto import cms as acms
from asn1crypto import crl as acrl
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from mie.trust.errors import VerificationError, describe, malformed

MAX_CERTIFICATE_BYTES = 64 * 1024
"""Largest DER certificate accepted (real IGC-Santé certificates are 1.5-2.5 KB)."""
MAX_CERTIFICATE_FILE_BYTES = 4 * 1024 * 1024
"""Largest certificate file (PEM, DER or PKCS#7 bundle) accepted."""
DEFAULT_MAX_CRL_BYTES = 64 * 1024 * 1024
"""Default largest CRL (a 1M-entry CRL of 16-byte serials is 35 MB); see :func:`max_crl_bytes`."""
MAX_CRL_ENV = "MIE_CRL_MAX_BYTES"
MAX_DER_DEPTH = 24
"""Deepest nesting of constructed DER values in a certificate (real ones reach 7)."""
MAX_DER_CHILDREN = 10_000
"""Most values in one DER container of a certificate or PKCS#7 bundle."""

_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_CERT_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"}
_PKCS7_LABELS = {b"PKCS7", b"CMS"}
_CRL_LABELS = {b"X509 CRL"}
_BASE64_SPACE = b" \t\r\n"
OID_SIGNED_DATA = "1.2.840.113549.1.7.2"

T = TypeVar("T")


def max_crl_bytes() -> int:
    """:return: the CRL size limit: ``$MIE_CRL_MAX_BYTES`` when set, else 64 MiB.

    :raises ValueError: the variable is not a positive integer.
    """
    value = os.environ.get(MAX_CRL_ENV)
    if value is None:
        return DEFAULT_MAX_CRL_BYTES
    if not value.strip().isdigit() or int(value) <= 0:
        raise ValueError(f"{MAX_CRL_ENV} must be a positive number of bytes, not {value!r}")
    return int(value)


def is_pem(data: bytes) -> bool:
    """:return: whether ``data`` looks like PEM text (possibly after explanatory text, as
    ``openssl x509 -text`` writes it) rather than DER (which starts with a SEQUENCE)."""
    return data[:1] != b"\x30" and b"-----BEGIN " in data


def check_size(data: bytes, limit: int, source: str, what: str) -> None:
    """:raises VerificationError: ``malformed`` naming the limit when ``data`` exceeds it."""
    if len(data) > limit:
        raise malformed(f"{source}: {what} is larger than the {limit}-byte limit ({len(data)})")


def guarded(source: str, what: str, parse: Callable[[], T]) -> T:
    """Run ``parse``; any exception a parser raises on hostile bytes becomes ``malformed``.

    :param source: what to name in the message.
    :param what: the kind of input (``certificate``, ``CRL``...).
    :param parse: the parsing step.
    :return: what ``parse`` returns.
    :raises VerificationError: ``malformed``, with a one-line message.
    """
    try:
        with warnings.catch_warnings():
            # cryptography warns about some bad encodings (a country name that is not two
            # letters) and parses them anyway: strict parsing refuses them. Its deprecation
            # warnings (non-positive serials, which the caller judges) are not refusals.
            warnings.simplefilter("error", UserWarning)
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            return parse()
    except VerificationError:
        raise
    except RecursionError as e:
        raise malformed(f"{source}: {what} is nested too deeply") from e
    # Parsers of outside bytes raise many foreign types (ValueError, TypeError, IndexError,
    # AttributeError, InvalidVersion, DuplicateExtension, UnsupportedGeneralNameType,
    # UnsupportedAlgorithm...): each of them means the input does not parse.
    except Exception as e:
        raise malformed(f"{source}: {what} does not parse ({describe(e)})") from e


def _pem_blocks(data: bytes, source: str) -> Iterator[tuple[bytes, bytes]]:
    """The (label, DER) of each PEM block, in one forward pass (text around blocks is skipped).

    Each search starts where the previous one stopped, so the scan is linear in the input
    whatever it holds (a regular expression over a whole file backtracks on many BEGIN lines).
    """
    position, found = 0, False
    while (begin := data.find(b"-----BEGIN ", position)) >= 0:
        line_end = _line_end(data, begin)
        header = _PEM_BEGIN.fullmatch(data, begin, _strip_cr(data, begin, line_end))
        if header is None:
            raise malformed(f"{source}: bad PEM BEGIN line")
        label = header.group(1)
        end = data.find(b"-----END ", line_end)
        if end < 0:
            raise malformed(f"{source}: PEM block {label.decode()!r} has no END line")
        if data.find(b"-----BEGIN ", line_end, end) >= 0:
            raise malformed(f"{source}: PEM block {label.decode()!r} has no END line")
        after = _line_end(data, end)
        if data[end : _strip_cr(data, end, after)] != b"-----END " + label + b"-----":
            raise malformed(f"{source}: PEM block {label.decode()!r} ends with another label")
        body = data[line_end:end].translate(None, _BASE64_SPACE)
        try:
            der = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as e:
            raise malformed(f"{source}: bad base64 in PEM block ({describe(e)})") from e
        found = True
        yield label, der
        position = after
    if not found:
        raise malformed(f"{source}: no complete PEM block")


def _line_end(data: bytes, start: int) -> int:
    end = data.find(b"\n", start)
    return len(data) if end < 0 else end + 1


def _strip_cr(data: bytes, start: int, end: int) -> int:
    while end > start and data[end - 1] in b"\r\n":
        end -= 1
    return end


def check_der_shape(
    der: bytes,
    source: str,
    *,
    max_depth: int = MAX_DER_DEPTH,
    max_children: int = MAX_DER_CHILDREN,
) -> None:
    """Walk the DER tag-length-value structure once, without recursion or Python objects.

    Checks definite lengths that fit their container, no trailing bytes, nesting no deeper
    than ``max_depth`` (asn1crypto decodes recursively: a subject nested 1,000 deep would
    exhaust the Python stack) and at most ``max_children`` values in one container (asn1crypto
    builds an object for each child it reaches: a file of two-byte values would cost a hundred
    times its size).

    :raises VerificationError: ``malformed``.
    """
    # One [end, children] pair per open container; the first stands for the whole input.
    open_values = [[len(der), 0]]
    position = 0
    while position < len(der):
        if position and len(open_values) == 1:
            raise malformed(f"{source}: trailing bytes after the DER value")
        container = open_values[-1]
        container[1] += 1
        if container[1] > max_children:
            raise malformed(f"{source}: more than {max_children} DER values in one container")
        constructed, contents, end = _tlv_header(der, position, source)
        if end > container[0]:
            raise malformed(f"{source}: DER length runs past its container")
        if constructed:
            open_values.append([end, 0])
            if len(open_values) > max_depth + 1:
                raise malformed(f"{source}: DER nested deeper than {max_depth} levels")
            position = contents
        else:
            position = end
        while len(open_values) > 1 and position == open_values[-1][0]:
            open_values.pop()
    if len(open_values) != 1 or not der:
        raise malformed(f"{source}: truncated DER")


def _tlv_header(der: bytes, position: int, source: str) -> tuple[bool, int, int]:
    """:return: (constructed, start of contents, end of value) of the TLV at ``position``."""
    try:
        first = der[position]
        position += 1
        if first & 0x1F == 0x1F:  # high tag number: base-128 digits, last one < 0x80
            while der[position] & 0x80:
                position += 1
            position += 1
        length = der[position]
        position += 1
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 4:
                raise malformed(f"{source}: indefinite or oversized DER length")
            length = int.from_bytes(der[position : position + count], "big")
            if len(der) < position + count:
                raise IndexError
            position += count
    except IndexError as e:
        raise malformed(f"{source}: truncated DER") from e
    return bool(first & 0x20), position, position + length


def load_certificate_der(
    der: bytes, source: str, *, allow_nonpositive_serial: bool = False
) -> x509.Certificate:
    """Parse one DER certificate strictly, forcing every part later checks read.

    :param der: the certificate bytes (at most :data:`MAX_CERTIFICATE_BYTES`).
    :param source: what to name in error messages (usually the file name).
    :param allow_nonpositive_serial: accept a negative or zero serial (RFC 5280 forbids them to
        CAs but asks relying parties to cope; PKITS has such certificates). IGC-Santé never
        issues them, so the default rejects them.
    :return: the certificate; its extensions, names and public key are already decoded.
    :raises VerificationError: ``malformed`` (and nothing else, whatever the bytes).
    """
    strict = check_certificate_der(der, source)
    serial = strict["tbs_certificate"]["serial_number"].native
    if serial <= 0 and not allow_nonpositive_serial:
        raise malformed(f"{source}: certificate serial number is not positive ({serial})")
    load = x509.load_der_x509_certificate
    return guarded(source, "certificate", lambda: force_lazy_parts(load(der)))


parse_certificate_der = load_certificate_der
"""The former name of :func:`load_certificate_der`."""


def try_load_certificate_der(der: bytes) -> x509.Certificate | None:
    """Load a DER certificate with cryptography alone, for display or lookup, never for a check.

    Meant for certificates something else has already judged (a path the RFC 5280 engine
    validated): they may hold what cryptography cannot read, which gives ``None``.

    :return: the certificate with its lazily parsed parts forced, or ``None``.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            cert = x509.load_der_x509_certificate(der)
        guarded("certificate", "certificate", lambda: force_lazy_parts(cert))
    except (ValueError, x509.InvalidVersion, VerificationError):
        return None
    return cert


def der_to_pem(der: bytes) -> str:
    """:return: ``der`` as one PEM ``CERTIFICATE`` block (64-character lines, final newline),
    as ``openssl x509`` and cryptography write it. The bytes are not parsed."""
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join(["-----BEGIN CERTIFICATE-----", *lines, "-----END CERTIFICATE-----", ""])


def pem_to_der(text: str, source: str) -> bytes:
    """The DER inside exactly one PEM ``CERTIFICATE`` block, with nothing but white space around.

    The DER is not parsed (:func:`load_certificate_der` does that).

    :param text: the PEM text (at most twice :data:`MAX_CERTIFICATE_BYTES` characters).
    :param source: what to name in error messages.
    :raises VerificationError: ``malformed``.
    """
    if len(text) > 2 * MAX_CERTIFICATE_BYTES:
        raise malformed(f"{source}: PEM text is larger than {2 * MAX_CERTIFICATE_BYTES} characters")
    if not text.isascii():
        raise malformed(f"{source}: PEM text is not ASCII")
    data = text.strip().encode("ascii")
    if not data.startswith(b"-----BEGIN ") or not data.endswith(b"-----"):
        raise malformed(f"{source}: not one PEM block")
    blocks = list(_pem_blocks(data, source))
    if len(blocks) != 1 or blocks[0][0] != b"CERTIFICATE":
        raise malformed(f"{source}: not one PEM CERTIFICATE block")
    return blocks[0][1]


def force_lazy_parts(cert: x509.Certificate) -> x509.Certificate:
    """Decode what cryptography decodes on first access (extensions, names, public key, validity),
    so that a bad encoding raises here, under :func:`guarded`, instead of a foreign exception during
    a later check.

    :return: ``cert``.
    """
    for extension in cert.extensions:
        extension.value  # noqa: B018
    for name in (cert.subject, cert.issuer):
        for attribute in name:
            attribute.value  # noqa: B018
        name.rfc4514_string()
    cert.public_key()
    cert.not_valid_before_utc  # noqa: B018
    cert.not_valid_after_utc  # noqa: B018
    return cert


def check_certificate_der(der: bytes, source: str) -> ax509.Certificate:
    """Parse a DER certificate with asn1crypto in strict mode, decoding every field.

    The size limit and the DER shape are checked first, so asn1crypto (which builds a Python
    object per value, and recurses) only sees bounded input. cryptography's parser is not run
    here: the RFC 5280 engine reads certificates it refuses (DSA keys inheriting parameters).

    :return: the asn1crypto certificate (used by the RFC 5280 fallback engine).
    :raises VerificationError: ``malformed``.
    """
    check_size(der, MAX_CERTIFICATE_BYTES, source, "certificate")
    check_der_shape(der, source)
    return guarded(source, "certificate", lambda: _asn1crypto_certificate(der))


def _asn1crypto_certificate(der: bytes) -> ax509.Certificate:
    strict = ax509.Certificate.load(der, strict=True)
    # Decoding the TBS part checks every field, times included (asn1crypto is lazy).
    strict["tbs_certificate"].native  # noqa: B018
    strict["signature_value"].native  # noqa: B018
    return strict


def load_certificates(
    data: bytes, source: str, *, allow_nonpositive_serial: bool = False
) -> list[x509.Certificate]:
    """Load every certificate of a PEM file, a DER certificate or a PKCS#7 bundle (PEM/DER).

    :param data: the file content (at most :data:`MAX_CERTIFICATE_FILE_BYTES`).
    :param source: the file name, for messages.
    :param allow_nonpositive_serial: see :func:`load_certificate_der`.
    :return: the certificates, in file order (at least one).
    :raises VerificationError: ``malformed`` (unreadable, too large, or no certificate at all).
    """
    check_size(data, MAX_CERTIFICATE_FILE_BYTES, source, "certificate file")
    ders = list(certificate_ders(data, source))
    if not ders:
        raise malformed(f"{source}: contains no certificate")
    return [
        load_certificate_der(d, source, allow_nonpositive_serial=allow_nonpositive_serial)
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
    # Two header peeks (a SEQUENCE whose first element is an OBJECT IDENTIFIER): parsing the
    # outer SEQUENCE's children would build an object per child of a hostile file.
    try:
        constructed, contents, _ = _tlv_header(der, 0, "")
    except VerificationError:
        return False
    return der[0] == 0x30 and constructed and contents < len(der) and der[contents] == 0x06


def _pkcs7_certificates(der: bytes, source: str) -> list[bytes]:
    check_der_shape(der, source)
    info = guarded(source, "PKCS#7 bundle", lambda: acms.ContentInfo.load(der, strict=True))
    if guarded(source, "PKCS#7 bundle", lambda: info["content_type"].dotted) != OID_SIGNED_DATA:
        raise malformed(f"{source}: PKCS#7 content is not SignedData")
    result = guarded(source, "PKCS#7 bundle", lambda: _bundle_certificates(info))
    if not result:
        raise malformed(f"{source}: PKCS#7 bundle contains no certificate")
    return result


def _bundle_certificates(info: acms.ContentInfo) -> list[bytes]:
    certificates = info["content"]["certificates"]
    return [] if not certificates else [c.chosen.dump() for c in certificates]


def load_crl(
    data: bytes, source: str, *, max_bytes: int | None = None
) -> x509.CertificateRevocationList:
    """Load one CRL (PEM or DER) strictly.

    :param data: the file content.
    :param source: the file name, for messages.
    :param max_bytes: size limit (default :func:`max_crl_bytes`).
    :return: the CRL (signature not yet checked; extensions and names already decoded).
    :raises VerificationError: ``malformed`` (and nothing else, whatever the bytes).
    """
    limit = max_crl_bytes() if max_bytes is None else max_bytes
    check_size(data, limit, source, "CRL")
    if is_pem(data):
        blocks = [body for label, body in _pem_blocks(data, source) if label in _CRL_LABELS]
        if len(blocks) != 1:
            raise malformed(f"{source}: expected one X509 CRL PEM block, found {len(blocks)}")
        data = blocks[0]
    # cryptography first: it rejects any malformed structure without building objects, so
    # asn1crypto below only decodes the few fields of a well-formed TBSCertList.
    crl = guarded(source, "CRL", lambda: x509.load_der_x509_crl(data))
    guarded(source, "CRL", lambda: _asn1crypto_crl_fields(data))
    return guarded(source, "CRL", lambda: force_crl(crl))


def _asn1crypto_crl_fields(der: bytes) -> None:
    # asn1crypto copies the contents of every value it parses: the revoked-certificates list
    # (cryptography has checked it) is left out, the other fields are decoded strictly.
    _, tbs_start, _ = _tlv_header(der, 0, "CRL")
    _, position, tbs_end = _tlv_header(der, tbs_start, "CRL")
    kept, after_time = [], False
    while position < tbs_end:
        _, _, end = _tlv_header(der, position, "CRL")
        tag = der[position]
        if not (tag == 0x30 and after_time):
            kept.append(der[position:end])
        after_time = after_time or tag in (0x17, 0x18)
        position = end
    body = b"".join(kept)
    acrl.TbsCertList.load(_der_header(0x30, len(body)) + body, strict=True).native  # noqa: B018
    _, _, algorithm_end = _tlv_header(der, tbs_end, "CRL")
    algos.SignedDigestAlgorithm.load(der[tbs_end:algorithm_end], strict=True).native  # noqa: B018


def _der_header(tag: int, length: int) -> bytes:
    if length < 0x80:
        return bytes([tag, length])
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size


def force_crl(crl: x509.CertificateRevocationList) -> x509.CertificateRevocationList:
    """Decode the parts of ``crl`` that cryptography parses lazily, so a bad one raises here.

    The entries are not decoded (a million of them take a second): their structure was checked
    by the parser, and the extensions of the entry a lookup finds are decoded under a guard
    (:func:`mie.trust.crl.crl_status` makes an unreadable entry ``unknown``).

    :return: ``crl``.
    :raises Exception: whatever cryptography raises on a bad encoding (callers guard it).
    """
    crl.issuer.rfc4514_string()
    crl.last_update_utc  # noqa: B018
    crl.next_update_utc  # noqa: B018
    crl.signature_algorithm_oid  # noqa: B018
    for extension in crl.extensions:
        extension.value  # noqa: B018
    return crl
