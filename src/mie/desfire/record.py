"""The identity record of a MIE badge: who the badge belongs to, signed by the enrolment authority.

The record is standard data file ``01`` of the badge application, 176 bytes, read in FULL mode
(plan D6). It binds the badge's real UID and the application it lives in to the professional's
national identifier, so a record copied to another badge (:class:`RecordCopiedError`) or edited
(:class:`RecordUntrustedError`) is refused by anyone holding the authority's public key::

    70 L                  record template (strict BER-TLV)
       80 01 01           format version 1
       81 07 UID          the badge's real UID
       82 03 AID          the application, wire order (LSB first)
       83 n  idNat        ASCII: RPPS "8" + 11 digits, or a PSI UUID in lower case
       84 n  issuer       UTF-8, 1 to 30 bytes, no control character
       85 08 YYYYMMDD     issue date, ASCII digits
       86 08 key id       SHA-256(SubjectPublicKeyInfo DER of the authority key)[:8]
    5F37 40 r ‖ s         ECDSA P-256 / SHA-256 over SIGNATURE_CONTEXT ‖ (the 70 TLV)
    00 ...                zeros up to 176 bytes

The longest record (a PSI UUID and a 30-byte issuer) fills the 176 bytes exactly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mie.core.errors import MieError, TlvError
from mie.core.tlv import Tlv, parse_tlvs
from mie.desfire.errors import RecordCopiedError, RecordFormatError, RecordUntrustedError

if TYPE_CHECKING:
    from mie.keys.base import KeyProvider
    from mie.trust.identity import Identity

RECORD_FILE_SIZE = 176
"""Bytes of the record file on the badge (file ``01``)."""
RECORD_FORMAT_VERSION = 1
SIGNATURE_CONTEXT = b"mie desfire record v1\x00"
"""Prefix of the signed message: a signature over a record is never one over anything else."""
UID_SIZE = 7
AID_SIZE = 3
KEY_ID_SIZE = 8
MAX_ISSUER_BYTES = 30
SIGNATURE_SIZE = 64
_COORDINATE = 32
BADGE_NAME_PREFIX = "desfire:"
DIV_FILE_SIZE = 16
"""Bytes of the diversification file ``02`` (``uid_source`` ``div-file``): the real UID, then
zeros."""

TAG_TEMPLATE = 0x70
TAG_VERSION = 0x80
TAG_UID = 0x81
TAG_AID = 0x82
TAG_ID_NAT = 0x83
TAG_ISSUER = 0x84
TAG_DATE = 0x85
TAG_KEY_ID = 0x86
TAG_SIGNATURE = 0x5F37
_FIELD_TAGS = (TAG_VERSION, TAG_UID, TAG_AID, TAG_ID_NAT, TAG_ISSUER, TAG_DATE, TAG_KEY_ID)
_FIELD_NAMES = {
    TAG_VERSION: "version",
    TAG_UID: "uid",
    TAG_AID: "aid",
    TAG_ID_NAT: "id_nat",
    TAG_ISSUER: "issuer",
    TAG_DATE: "date",
    TAG_KEY_ID: "authority key id",
}
_DATE = re.compile(rb"[0-9]{8}")
_MAX_ID_NAT = 36


@dataclass(frozen=True)
class AuthorityKey:
    """A trusted enrolment authority: the public key that signs identity records.

    :param key_id: :func:`authority_key_id` of ``public_key`` (what records name).
    :param public_key: the P-256 public key.
    :param name: what messages call it.
    :param test: a TEST authority: the identities it vouches for are test identities.
    :raises RecordFormatError: not P-256, or a key id that is not the key's.
    """

    key_id: bytes
    public_key: ec.EllipticCurvePublicKey
    name: str
    test: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.public_key, ec.EllipticCurvePublicKey) or not isinstance(
            self.public_key.curve, ec.SECP256R1
        ):
            raise RecordFormatError(f"The authority key {self.name!r} is not a P-256 key")
        if self.key_id != authority_key_id(self.public_key):
            raise RecordFormatError(f"The key id of authority {self.name!r} is not its key's")

    @classmethod
    def of(cls, public_key: ec.EllipticCurvePublicKey, name: str, *, test: bool = False) -> Self:
        """:return: the authority with ``public_key``, its key id computed.

        :raises RecordFormatError: not a P-256 key.
        """
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise RecordFormatError(f"The authority key {name!r} is not an EC public key")
        return cls(authority_key_id(public_key), public_key, name, test)

    def __repr__(self) -> str:
        return f"AuthorityKey({self.name!r}, key_id={self.key_id.hex()}, test={self.test})"


def authority_key_id(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """:return: the 8-byte key id of an authority key: the first bytes of the SHA-256 of its
    SubjectPublicKeyInfo DER."""
    spki = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()[:KEY_ID_SIZE]


@dataclass(frozen=True)
class IdentityRecord:
    """The fields of an identity record (see the module docstring).

    :param uid: the badge's real UID (7 bytes).
    :param aid: the application (3 bytes, wire order).
    :param id_nat: the national identifier: RPPS ``8`` + 11 digits (Luhn-checked) or a PSI UUID
        in lower case.
    :param issuer: the establishment's enrolment authority name (UTF-8, 1 to 30 bytes).
    :param issued: the issue date.
    :param authority_key_id: :func:`authority_key_id` of the key that signs it.
    :raises RecordFormatError: a field of the wrong type, size or format.
    """

    uid: bytes
    aid: bytes
    id_nat: str
    issuer: str
    issued: dt.date
    authority_key_id: bytes

    def __post_init__(self) -> None:
        for name, size in (("uid", UID_SIZE), ("aid", AID_SIZE), ("authority_key_id", KEY_ID_SIZE)):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != size:
                raise RecordFormatError(f"The record {name} is not {size} bytes")
        _check_id_nat(self.id_nat)
        _check_issuer(self.issuer)
        if not isinstance(self.issued, dt.date) or isinstance(self.issued, dt.datetime):
            raise RecordFormatError("The record issue date is not a date")

    def encode_body(self) -> bytes:
        """:return: the encoded ``70`` template, the bytes the authority signs."""
        fields = (
            Tlv(TAG_VERSION, bytes([RECORD_FORMAT_VERSION])),
            Tlv(TAG_UID, self.uid),
            Tlv(TAG_AID, self.aid),
            Tlv(TAG_ID_NAT, self.id_nat.encode("ascii")),
            Tlv(TAG_ISSUER, self.issuer.encode("utf-8")),
            Tlv(TAG_DATE, _date_text(self.issued)),
            Tlv(TAG_KEY_ID, self.authority_key_id),
        )
        return Tlv(TAG_TEMPLATE, b"".join(f.encode() for f in fields)).encode()

    def sign(self, provider: KeyProvider, label: str) -> bytes:
        """Sign the record with the authority key ``label`` of ``provider``.

        :return: the 176-byte record file.
        :raises RecordFormatError: the key's id is not :attr:`authority_key_id`, or the provider
            gave a signature that is not a P-256 one.
        :raises KeyProviderError: the provider failed (no such key...).
        """
        key_id = authority_key_id(provider.public_key(label))
        if not hmac.compare_digest(key_id, self.authority_key_id):
            raise RecordFormatError(
                f"The record names authority key id {self.authority_key_id.hex()}, the key "
                f"labelled {label!r} has {key_id.hex()}"
            )
        body = self.encode_body()
        try:
            r, s = decode_dss_signature(provider.sign(label, SIGNATURE_CONTEXT + body))
            raw = r.to_bytes(_COORDINATE, "big") + s.to_bytes(_COORDINATE, "big")
        except (ValueError, OverflowError) as e:
            raise RecordFormatError(f"The key labelled {label!r} gave no P-256 signature") from e
        signed = body + Tlv(TAG_SIGNATURE, raw).encode()
        return signed + bytes(RECORD_FILE_SIZE - len(signed))

    def to_identity(self, *, test_card: bool) -> Identity:
        """:return: the :class:`~mie.trust.identity.Identity` the record names (no names,
        profession or card type: a badge record carries none).

        :param test_card: the record was signed by a TEST authority.
        """
        from mie.trust.identity import Identity, parse_id_nat

        id_type, ident = parse_id_nat(self.id_nat)
        return Identity(self.id_nat, id_type, ident, None, None, None, None, test_card)

    @staticmethod
    def parse(file: bytes | bytearray) -> SignedRecord:
        """Parse the record file strictly (nothing is verified yet: see :func:`verify`).

        :param file: the 176 bytes read from the badge.
        :return: the record, the signed body and the raw signature.
        :raises RecordFormatError: any departure from the format (size, tags, their order,
            lengths, version, date, national identifier, issuer, non-zero padding).
        """
        if not isinstance(file, bytes | bytearray):
            raise RecordFormatError("The identity record is not bytes")
        data = bytes(file)
        if len(data) != RECORD_FILE_SIZE:
            raise RecordFormatError(
                f"The identity record has {len(data)} bytes, not {RECORD_FILE_SIZE}"
            )
        template, end = _tlv_at(data, 0)
        if template.tag != TAG_TEMPLATE:
            raise RecordFormatError(f"The identity record starts with tag {template.tag:X}, not 70")
        signature, end = _tlv_at(data, end)
        if signature.tag != TAG_SIGNATURE:
            raise RecordFormatError(
                f"The identity record template is followed by tag {signature.tag:X}, not 5F37"
            )
        if len(signature.value) != SIGNATURE_SIZE:
            raise RecordFormatError(
                f"The record signature has {len(signature.value)} bytes, not {SIGNATURE_SIZE}"
            )
        if any(data[end:]):
            raise RecordFormatError("The identity record has non-zero bytes after its signature")
        record = _record_of(_fields(template.value))
        return SignedRecord(record, template.encode(), signature.value, data)


@dataclass(frozen=True)
class SignedRecord:
    """A parsed record file.

    :param record: its fields.
    :param body: the encoded ``70`` template, as read (what the signature covers).
    :param signature: the raw ``r ‖ s`` signature (64 bytes).
    :param file: the whole 176-byte file, as read.
    """

    record: IdentityRecord
    body: bytes
    signature: bytes
    file: bytes

    @property
    def badge_name(self) -> str:
        """:return: the name of the badge's state in :mod:`mie.store`:
        ``desfire:`` + SHA-256 of the record file, in hex."""
        return BADGE_NAME_PREFIX + hashlib.sha256(self.file).hexdigest()


def verify(signed: SignedRecord, authorities: Iterable[AuthorityKey]) -> AuthorityKey:
    """Check that a trusted authority signed the record.

    :param signed: the parsed record.
    :param authorities: the trusted enrolment authorities.
    :return: the authority that signed it.
    :raises RecordUntrustedError: ``unknown_authority`` (its key id names none of
        ``authorities``) or ``bad_signature`` (the signature does not verify: an edited record,
        or another key with the same id).
    """
    key_id = signed.record.authority_key_id
    authority = next((a for a in authorities if a.key_id == key_id), None)
    if authority is None:
        raise RecordUntrustedError(
            RecordUntrustedError.UNKNOWN_AUTHORITY,
            f"The identity record is signed by an unknown authority (key id {key_id.hex()})",
        )
    r = int.from_bytes(signed.signature[:_COORDINATE], "big")
    s = int.from_bytes(signed.signature[_COORDINATE:], "big")
    try:
        authority.public_key.verify(
            encode_dss_signature(r, s), SIGNATURE_CONTEXT + signed.body, ec.ECDSA(hashes.SHA256())
        )
    except InvalidSignature as e:
        raise RecordUntrustedError(
            RecordUntrustedError.BAD_SIGNATURE,
            f"The identity record signature of authority {authority.name!r} does not verify",
        ) from e
    return authority


def check_binding(record: IdentityRecord, *, uid: bytes, aid: bytes) -> None:
    """Check the record was issued for this badge and application.

    :param record: the record read (its signature verified).
    :param uid: the badge's real UID, as the session established it.
    :param aid: the application the record was read from.
    :raises RecordCopiedError: ``uid`` or ``aid``, naming both values.
    """
    if not hmac.compare_digest(record.uid, uid):
        raise RecordCopiedError(
            RecordCopiedError.UID,
            f"The record was issued for badge {record.uid.hex()}, this badge is {uid.hex()}",
        )
    if not hmac.compare_digest(record.aid, aid):
        raise RecordCopiedError(
            RecordCopiedError.AID,
            f"The record was issued for application {record.aid.hex()}, it was read from "
            f"{aid.hex()}",
        )


def div_file(uid: bytes) -> bytes:
    """:return: the content of the diversification file ``02`` for a badge: its real UID (7
    bytes), then 9 zero bytes. The file is read in plain by anyone (``div-file`` badges are
    trackable).

    :raises RecordFormatError: ``uid`` is not 7 bytes.
    """
    if not isinstance(uid, bytes) or len(uid) != UID_SIZE:
        raise RecordFormatError(f"A badge UID is {UID_SIZE} bytes")
    return uid + bytes(DIV_FILE_SIZE - UID_SIZE)


def uid_from_div_file(data: bytes) -> bytes:
    """:return: the UID the diversification file ``02`` holds (see :func:`div_file`).

    :raises RecordFormatError: not 16 bytes, or a non-zero byte after the UID.
    """
    if len(data) != DIV_FILE_SIZE or any(data[UID_SIZE:]):
        raise RecordFormatError(
            f"The diversification file is not a {UID_SIZE}-byte UID and zeros ({len(data)} bytes)"
        )
    return bytes(data[:UID_SIZE])


def _tlv_at(data: bytes, offset: int) -> tuple[Tlv, int]:
    try:
        return Tlv.parse_from(data, offset)
    except TlvError as e:
        raise RecordFormatError(f"The identity record does not parse ({e})") from e


def _fields(value: bytes) -> dict[int, bytes]:
    try:
        children = parse_tlvs(value)
    except TlvError as e:
        raise RecordFormatError(f"The identity record template does not parse ({e})") from e
    tags = [c.tag for c in children]
    for position, tag in enumerate(_FIELD_TAGS):
        if position >= len(tags):
            raise RecordFormatError(f"The identity record has no {_FIELD_NAMES[tag]} field")
        if tags[position] != tag:
            raise RecordFormatError(
                f"The identity record has tag {tags[position]:X} where {tag:X} "
                f"({_FIELD_NAMES[tag]}) belongs"
            )
    if len(tags) > len(_FIELD_TAGS):
        raise RecordFormatError(f"The identity record has an extra tag {tags[len(_FIELD_TAGS)]:X}")
    return {c.tag: c.value for c in children}


def _record_of(fields: dict[int, bytes]) -> IdentityRecord:
    if fields[TAG_VERSION] != bytes([RECORD_FORMAT_VERSION]):
        raise RecordFormatError(
            f"The identity record has version {fields[TAG_VERSION].hex()}, not 01"
        )
    raw_id = fields[TAG_ID_NAT]
    if len(raw_id) > _MAX_ID_NAT or not raw_id.isascii():
        raise RecordFormatError("The record id_nat is not 1 to 36 ASCII characters")
    try:
        issuer = fields[TAG_ISSUER].decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecordFormatError("The record issuer is not UTF-8") from e
    return IdentityRecord(
        uid=fields[TAG_UID],
        aid=fields[TAG_AID],
        id_nat=raw_id.decode("ascii"),
        issuer=issuer,
        issued=_date(fields[TAG_DATE]),
        authority_key_id=fields[TAG_KEY_ID],
    )


def _date_text(date: dt.date) -> bytes:
    # Not strftime: its %Y does not pad years below 1000 to four digits on every libc.
    return f"{date.year:04d}{date.month:02d}{date.day:02d}".encode("ascii")


def _date(raw: bytes) -> dt.date:
    if not _DATE.fullmatch(raw):
        raise RecordFormatError("The record issue date is not 8 ASCII digits (YYYYMMDD)")
    try:
        return dt.date(int(raw[:4]), int(raw[4:6]), int(raw[6:]))
    except ValueError as e:
        raise RecordFormatError(f"The record issue date {raw.decode()} is not a date") from e


def _check_id_nat(id_nat: object) -> None:
    if not isinstance(id_nat, str) or not id_nat.isascii() or not 0 < len(id_nat) <= _MAX_ID_NAT:
        raise RecordFormatError("The record id_nat is not 1 to 36 ASCII characters")
    # Loaded here: the trust package is heavy, and only this check needs it.
    from mie.trust.identity import parse_id_nat

    try:
        id_type, _ = parse_id_nat(id_nat)
    except MieError as e:
        raise RecordFormatError(f"The record id_nat does not parse ({e})") from e
    if id_type == "PSI" and id_nat == id_nat.lower():
        return
    if id_type == "RPPS" and id_nat.startswith("8"):
        return
    raise RecordFormatError(
        f"The record id_nat is a {id_type} identifier, not an RPPS number or a lower-case PSI UUID"
    )


def _check_issuer(issuer: object) -> None:
    if not isinstance(issuer, str):
        raise RecordFormatError("The record issuer is not a string")
    size = len(issuer.encode("utf-8", errors="replace"))
    if not 0 < size <= MAX_ISSUER_BYTES:
        raise RecordFormatError(
            f"The record issuer has {size} bytes of UTF-8, not 1 to {MAX_ISSUER_BYTES}"
        )
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in issuer):
        raise RecordFormatError("The record issuer has a control character")


__all__ = [
    "DIV_FILE_SIZE",
    "RECORD_FILE_SIZE",
    "SIGNATURE_CONTEXT",
    "AuthorityKey",
    "IdentityRecord",
    "SignedRecord",
    "authority_key_id",
    "check_binding",
    "div_file",
    "uid_from_div_file",
    "verify",
]
