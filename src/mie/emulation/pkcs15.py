"""DER encoders for the PKCS#15 (ISO/IEC 7816-15) files an emulated card carries.

Only what CPx emulators need, built from :class:`~mie.core.tlv.Tlv`: ODF, TokenInfo, and one
entry each for the AODF (PIN), PrKDF (RSA key) and CDF (X.509 certificate). The ASN.1 type of
each element is named in a comment next to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mie.core.tlv import Tlv, encode_tlvs

# PKCS15Objects choice tags used in the ODF.
ODF_PRIVATE_KEYS = 0xA0
ODF_CERTIFICATES = 0xA4
ODF_AUTH_OBJECTS = 0xA8

CKM_RSA_PKCS = 0x0001
CKM_SHA256_RSA_PKCS = 0x0040
CKM_SHA256 = 0x0250

OP_COMPUTE_SIGNATURE = 1
OP_DECIPHER = 5
OP_HASH = 6


def bit_string(bits: set[int]) -> Tlv:
    """DER BIT STRING with the named bits set (bit 0 = most significant), minimal length."""
    if not bits:
        return Tlv(0x03, b"\x00")
    size = max(bits) // 8 + 1
    value = bytearray(size)
    for bit in bits:
        value[bit // 8] |= 0x80 >> (bit % 8)
    unused = 7 - max(bits) % 8
    return Tlv(0x03, bytes([unused]) + bytes(value))


def integer(value: int) -> Tlv:
    """DER INTEGER."""
    return Tlv(0x02, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True))


def utf8(text: str) -> Tlv:
    """DER UTF8String."""
    return Tlv(0x0C, text.encode("utf-8"))


def octets(value: bytes) -> Tlv:
    """DER OCTET STRING."""
    return Tlv(0x04, value)


def seq(*items: Tlv) -> Tlv:
    """DER SEQUENCE of the given items."""
    return Tlv(0x30, encode_tlvs(items))


def path(value: bytes) -> Tlv:
    """Path ::= SEQUENCE { efidOrPath OCTET STRING }."""
    return seq(octets(value))


def odf(entries: list[tuple[int, bytes]]) -> bytes:
    """EF.ODF: one ``[n] Path`` per directory file.

    :param entries: ``(choice tag, path)`` pairs.
    """
    return encode_tlvs(Tlv(tag, path(p).encode()) for tag, p in entries)


@dataclass(frozen=True)
class Algorithm:
    """AlgorithmInfo: reference, algorithm, parameters, supportedOperations, algRef."""

    reference: int
    mechanism: int
    operation: int
    alg_ref: int

    def encode(self) -> Tlv:
        return seq(
            integer(self.reference),
            integer(self.mechanism),
            Tlv(0x05, b""),
            bit_string({self.operation}),
            integer(self.alg_ref),
        )


def token_info(serial: bytes, manufacturer: str, label: str, algorithms: list[Algorithm]) -> bytes:
    """EF.TokenInfo: version, serial, manufacturer, [0] label, flags (readonly, loginRequired),
    [2] supportedAlgorithms."""
    return seq(
        integer(0),
        octets(serial),
        utf8(manufacturer),
        Tlv(0x80, label.encode("utf-8")),
        bit_string({0, 1}),
        Tlv(0xA2, encode_tlvs(a.encode() for a in algorithms)),
    ).encode()


def _common_object(label: str, auth_id: bytes | None, private: bool) -> Tlv:
    items = [utf8(label)]
    if private:
        items.append(bit_string({0}))
    if auth_id is not None:
        items.append(octets(auth_id))
    return seq(*items)


def pin_object(
    label: str, auth_id: bytes, reference: int, min_len: int, stored_len: int, pad: int
) -> bytes:
    """AODF entry: PIN object, ASCII-numeric, padded (flags initialized + needs-padding)."""
    attributes = seq(
        bit_string({4, 5}),  # PinFlags: initialized, needs-padding
        Tlv(0x0A, b"\x01"),  # PinType ENUMERATED ascii-numeric
        integer(min_len),
        integer(stored_len),
        integer(stored_len),  # maxLength
        Tlv(0x80, bytes([reference])),  # [0] pinReference
        octets(bytes([pad])),  # padChar
    )
    return seq(
        _common_object(label, None, False),
        seq(octets(auth_id)),  # CommonAuthenticationObjectAttributes: authId
        Tlv(0xA1, attributes.encode()),
    ).encode()


def rsa_private_key_object(
    label: str,
    key_id: bytes,
    auth_id: bytes,
    usage: set[int],
    key_reference: int,
    key_path: bytes,
    modulus_bits: int,
) -> bytes:
    """PrKDF entry: private RSA key on the card (usage: 1 decrypt, 2 sign, 9 nonRepudiation)."""
    common_key = seq(
        octets(key_id),
        bit_string(usage),
        bit_string(
            {0, 2, 3, 4}
        ),  # accessFlags: sensitive, alwaysSensitive, neverExtractable, local
        integer(key_reference),
    )
    rsa_attributes = seq(path(key_path), integer(modulus_bits))
    return seq(
        _common_object(label, auth_id, True),
        common_key,
        Tlv(0xA1, rsa_attributes.encode()),
    ).encode()


def certificate_object(label: str, cert_id: bytes, cert_path: bytes) -> bytes:
    """CDF entry: X.509 certificate stored in a transparent EF."""
    return seq(
        _common_object(label, None, False),
        seq(octets(cert_id)),  # CommonCertificateAttributes: iD
        Tlv(0xA1, seq(path(cert_path)).encode()),
    ).encode()
