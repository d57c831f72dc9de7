"""Strict decoders for the PKCS#15 (ISO/IEC 7816-15) files a CPx client reads: ODF and CDF."""

from __future__ import annotations

from dataclasses import dataclass

from mie.core.errors import BadResponseError, TlvError
from mie.core.tlv import Tlv, parse_tlvs

TAG_SEQUENCE = 0x30
TAG_OCTET_STRING = 0x04
TAG_UTF8 = 0x0C
ODF_CERTIFICATES = 0xA4
CDF_X509_ATTRIBUTES = 0xA1


def _children(tlv: Tlv, what: str) -> list[Tlv]:
    if tlv.tag != TAG_SEQUENCE:
        raise BadResponseError(f"{what}: expected a SEQUENCE, got tag {tlv.tag:X}")
    return tlv.children()


def _path(tlv: Tlv, what: str) -> bytes:
    items = _children(tlv, what)
    if not items or items[0].tag != TAG_OCTET_STRING or not items[0].value:
        raise BadResponseError(f"{what}: Path without efidOrPath")
    return items[0].value


def parse_odf(data: bytes) -> dict[int, bytes]:
    """Parse EF.ODF into ``{PKCS15Objects choice tag: path}``.

    :param data: the file content (trailing ``00``/``FF`` padding is tolerated, nothing else).
    :raises BadResponseError: malformed content.
    """
    try:
        entries = parse_tlvs(data.rstrip(b"\x00\xff") if data else data)
        result: dict[int, bytes] = {}
        for entry in entries:
            if entry.tag in result:
                raise BadResponseError(f"ODF lists tag {entry.tag:X} twice")
            result[entry.tag] = _path(Tlv.parse(entry.value), "ODF entry")
        return result
    except TlvError as e:
        raise BadResponseError(f"Malformed ODF: {e}") from e


@dataclass(frozen=True)
class CertificateEntry:
    """One X.509 certificate object of a CDF.

    :param label: the object label.
    :param id: the object identifier (pairs the certificate with its private key).
    :param path: where the certificate is stored.
    """

    label: str
    id: bytes
    path: bytes


def parse_cdf(data: bytes) -> list[CertificateEntry]:
    """Parse EF.CDF (X.509 certificate objects only).

    :raises BadResponseError: malformed content.
    """
    try:
        return [_certificate(entry) for entry in parse_tlvs(data.rstrip(b"\x00\xff"))]
    except TlvError as e:
        raise BadResponseError(f"Malformed CDF: {e}") from e


def _certificate(entry: Tlv) -> CertificateEntry:
    parts = _children(entry, "CDF entry")
    if len(parts) < 3:
        raise BadResponseError("CDF entry lacks common, certificate or type attributes")
    common, cert_common, attributes = parts[0], parts[1], parts[-1]
    labels = [t for t in _children(common, "CommonObjectAttributes") if t.tag == TAG_UTF8]
    label = labels[0].value.decode("utf-8", errors="replace") if labels else ""
    ids = _children(cert_common, "CommonCertificateAttributes")
    if not ids or ids[0].tag != TAG_OCTET_STRING:
        raise BadResponseError("CDF entry without iD")
    if attributes.tag != CDF_X509_ATTRIBUTES:
        raise BadResponseError(f"CDF entry type attributes have tag {attributes.tag:X}")
    x509_attributes = _children(Tlv.parse(attributes.value), "X509CertificateAttributes")
    if not x509_attributes:
        raise BadResponseError("X509CertificateAttributes without value")
    return CertificateEntry(label, ids[0].value, _path(x509_attributes[0], "certificate value"))
