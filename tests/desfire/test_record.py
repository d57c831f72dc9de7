"""mie.desfire.record: the 176-byte identity record (plan D6, §2.3).

Expected bytes are written out here from the format, never produced by the code under test;
signatures are checked with :mod:`cryptography` directly. The TLV builder below writes one-byte
lengths by hand so it shares nothing with :mod:`mie.core.tlv`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mie.core.errors import ErrorCode
from mie.desfire.errors import RecordCopiedError, RecordFormatError, RecordUntrustedError
from mie.desfire.record import (
    RECORD_FILE_SIZE,
    SIGNATURE_CONTEXT,
    AuthorityKey,
    IdentityRecord,
    SignedRecord,
    authority_key_id,
    check_binding,
    verify,
)
from mie.keys import KeyProvider, SoftwareKeyProvider

h = bytes.fromhex
UID = h("04a1b2c3d4e5f6")
AID = h("494df0")
RPPS = "810001234565"  # "8" + 11 digits, Luhn-valid
PSI = "0f8fad5b-d9cb-469f-a165-70867728950e"
ISSUER = "CH Exemple"
ISSUED = dt.date(2026, 12, 1)
# Fixed P-256 scalars: the authority and an outsider.
AUTHORITY = ec.derive_private_key(0x1D5A_7E57_0001, ec.SECP256R1())
OUTSIDER = ec.derive_private_key(0x0BAD_0002, ec.SECP256R1())


def tlv(tag: bytes, value: bytes) -> bytes:
    assert len(value) < 0x80
    return tag + bytes([len(value)]) + value


def key_id(key: ec.EllipticCurvePrivateKey) -> bytes:
    spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()[:8]


def fields(**change: bytes | None) -> list[tuple[bytes, bytes]]:
    """The seven fields of a valid RPPS record, any replaced (or dropped with None)."""
    base = {
        "version": (b"\x80", b"\x01"),
        "uid": (b"\x81", UID),
        "aid": (b"\x82", AID),
        "id_nat": (b"\x83", RPPS.encode()),
        "issuer": (b"\x84", ISSUER.encode()),
        "date": (b"\x85", b"20261201"),
        "key_id": (b"\x86", key_id(AUTHORITY)),
    }
    out = []
    for name, (tag, value) in base.items():
        if name in change:
            replaced = change[name]
            if replaced is None:
                continue
            value = replaced
        out.append((tag, value))
    return out


def assemble(
    items: list[tuple[bytes, bytes]],
    *,
    signer: ec.EllipticCurvePrivateKey | None = AUTHORITY,
    template: bytes = b"\x70",
    signature_tag: bytes = b"\x5f\x37",
    size: int = RECORD_FILE_SIZE,
) -> bytes:
    body = tlv(template, b"".join(tlv(t, v) for t, v in items))
    raw = bytes(64)
    if signer is not None:
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        r, s = decode_dss_signature(
            signer.sign(SIGNATURE_CONTEXT + body, ec.ECDSA(hashes.SHA256()))
        )
        raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    data = body + tlv(signature_tag, raw)
    return (data + bytes(size))[:size] if size >= len(data) else data[:size]


@pytest.fixture
def provider() -> SoftwareKeyProvider:
    return SoftwareKeyProvider(signing_keys={"mie-authority": AUTHORITY, "other": OUTSIDER})


@pytest.fixture
def authority() -> AuthorityKey:
    return AuthorityKey.of(AUTHORITY.public_key(), "CH Exemple")


def record(**change: object) -> IdentityRecord:
    values: dict[str, object] = {
        "uid": UID,
        "aid": AID,
        "id_nat": RPPS,
        "issuer": ISSUER,
        "issued": ISSUED,
        "authority_key_id": key_id(AUTHORITY),
    }
    values.update(change)
    return IdentityRecord(**values)  # type: ignore[arg-type]


# --- encoding and round trips ----------------------------------------------------------------


def test_the_body_is_the_template_of_the_plan() -> None:
    expected = (
        "70 3f"
        " 80 01 01"
        " 81 07 04a1b2c3d4e5f6"
        " 82 03 494df0"
        " 83 0c 383130303031323334353635"  # "810001234565"
        " 84 0a 4348204578656d706c65"  # "CH Exemple"
        " 85 08 3230323631323031"  # "20261201"
        f" 86 08 {key_id(AUTHORITY).hex()}"
    )
    assert record().encode_body() == h(expected.replace(" ", ""))


def test_authority_key_id_is_the_spki_digest_prefix() -> None:
    assert authority_key_id(AUTHORITY.public_key()) == key_id(AUTHORITY)
    assert AuthorityKey.of(AUTHORITY.public_key(), "x").key_id == key_id(AUTHORITY)


def test_sign_gives_176_bytes_whose_raw_signature_verifies(provider: SoftwareKeyProvider) -> None:
    file = record().sign(provider, "mie-authority")
    body = record().encode_body()
    assert len(file) == RECORD_FILE_SIZE
    assert file[: len(body)] == body
    assert file[len(body) : len(body) + 3] == h("5f3740")
    raw = file[len(body) + 3 : len(body) + 67]
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    AUTHORITY.public_key().verify(
        encode_dss_signature(r, s), SIGNATURE_CONTEXT + body, ec.ECDSA(hashes.SHA256())
    )
    assert file[len(body) + 67 :] == bytes(RECORD_FILE_SIZE - len(body) - 67)


@pytest.mark.parametrize("id_nat", [RPPS, PSI])
def test_round_trip(id_nat: str, provider: SoftwareKeyProvider, authority: AuthorityKey) -> None:
    original = record(id_nat=id_nat, issuer="Hôpital Saint-Éloi")
    file = original.sign(provider, "mie-authority")
    signed = IdentityRecord.parse(file)
    assert signed.record == original
    assert signed.body == original.encode_body()
    assert signed.file == file
    assert verify(signed, [authority]) is authority


def test_the_longest_record_fills_the_file_exactly(
    provider: SoftwareKeyProvider, authority: AuthorityKey
) -> None:
    longest = record(id_nat=PSI, issuer="é" * 15)  # 30 bytes of UTF-8
    file = longest.sign(provider, "mie-authority")
    assert len(longest.encode_body()) == 109
    assert file[109:112] == h("5f3740")  # the signature ends at byte 176, no padding
    assert IdentityRecord.parse(file).record == longest
    verify(IdentityRecord.parse(file), [authority])


@pytest.mark.parametrize(
    ("issued", "text"),
    [
        (dt.date(26, 12, 1), b"00261201"),
        (dt.date(1, 1, 1), b"00010101"),
        (dt.date(9999, 12, 31), b"99991231"),
    ],
)
def test_the_date_has_four_year_digits(
    issued: dt.date, text: bytes, provider: SoftwareKeyProvider
) -> None:
    # Found by the desfire-record fuzz target: strftime wrote year 26 as "26", so a parsed
    # record encoded back to other bytes than it was read from.
    assert tlv(b"\x85", text) in record(issued=issued).encode_body()
    file = assemble(fields(date=text))
    signed = IdentityRecord.parse(file)
    assert signed.record.issued == issued
    assert signed.record.encode_body() == signed.body


def test_parse_accepts_a_bytearray(provider: SoftwareKeyProvider) -> None:
    file = record().sign(provider, "mie-authority")
    assert IdentityRecord.parse(bytearray(file)).file == file


def test_badge_name_is_the_sha256_of_the_file(provider: SoftwareKeyProvider) -> None:
    file = record().sign(provider, "mie-authority")
    name = IdentityRecord.parse(file).badge_name
    assert name == "desfire:" + hashlib.sha256(file).hexdigest()


def test_to_identity() -> None:
    rpps = record().to_identity(test_card=False)
    assert (rpps.id_nat, rpps.id_type, rpps.id, rpps.test_card) == (
        RPPS,
        "RPPS",
        RPPS[1:],
        False,
    )
    psi = record(id_nat=PSI).to_identity(test_card=True)
    assert (psi.id_type, psi.id, psi.test_card, psi.card_type) == ("PSI", PSI, True, None)


# --- strict parsing: every malformed field ---------------------------------------------------

MALFORMED: dict[str, Callable[[], object]] = {
    "empty": lambda: b"",
    "one byte short": lambda: assemble(fields(), size=175),
    "one byte long": lambda: assemble(fields()) + b"\x00",
    "not bytes": lambda: "70" * 88,
    "first tag not 70": lambda: assemble(fields(), template=b"\x71"),
    "template not constructed tag 30": lambda: assemble(fields(), template=b"\x30"),
    "zeros only": lambda: bytes(176),
    "no signature": lambda: (tlv(b"\x70", b"".join(tlv(t, v) for t, v in fields())) + bytes(176))[
        :176
    ],
    "signature tag 5F38": lambda: assemble(fields(), signature_tag=b"\x5f\x38"),
    # One byte more than the longest record: the signature runs past byte 176.
    "signature past the file": lambda: assemble(
        fields(id_nat=PSI.encode(), issuer=b"x" * 30, key_id=bytes(9)), size=176
    ),
    "non-zero padding": lambda: assemble(fields())[:-1] + b"\x01",
    "version 02": lambda: assemble(fields(version=b"\x02")),
    "version two bytes": lambda: assemble(fields(version=b"\x00\x01")),
    "version missing": lambda: assemble(fields(version=None)),
    "uid 6 bytes": lambda: assemble(fields(uid=UID[:6])),
    "uid 8 bytes": lambda: assemble(fields(uid=UID + b"\x00")),
    "uid missing": lambda: assemble(fields(uid=None)),
    "aid 2 bytes": lambda: assemble(fields(aid=AID[:2])),
    "aid 4 bytes": lambda: assemble(fields(aid=AID + b"\x00")),
    "id_nat empty": lambda: assemble(fields(id_nat=b"")),
    "id_nat Luhn": lambda: assemble(fields(id_nat=b"810001234566")),
    "id_nat RPPS short": lambda: assemble(fields(id_nat=b"81000123456")),
    "id_nat ADELI": lambda: assemble(fields(id_nat=b"0123456789")),
    "id_nat structure RPPS": lambda: assemble(fields(id_nat=b"610001234565/x")),
    "id_nat FINESS": lambda: assemble(fields(id_nat=b"3123456782/x")),
    "id_nat PSI upper case": lambda: assemble(fields(id_nat=PSI.upper().encode())),
    "id_nat PSI without dashes": lambda: assemble(fields(id_nat=PSI.replace("-", "").encode())),
    "id_nat not ASCII": lambda: assemble(fields(id_nat="81000123456é".encode())),
    "id_nat 37 chars": lambda: assemble(fields(id_nat=PSI.encode() + b"0")),
    "id_nat missing": lambda: assemble(fields(id_nat=None)),
    "issuer empty": lambda: assemble(fields(issuer=b"")),
    "issuer 31 bytes": lambda: assemble(fields(issuer=b"x" * 31)),
    "issuer not UTF-8": lambda: assemble(fields(issuer=b"CH \xff")),
    "issuer control character": lambda: assemble(fields(issuer=b"CH\nExemple")),
    "issuer missing": lambda: assemble(fields(issuer=None)),
    "date not digits": lambda: assemble(fields(date=b"2026-12-")),
    "date month 13": lambda: assemble(fields(date=b"20261301")),
    "date day 00": lambda: assemble(fields(date=b"20261200")),
    "date year 0000": lambda: assemble(fields(date=b"00001201")),
    "date 7 bytes": lambda: assemble(fields(date=b"2026121")),
    "date missing": lambda: assemble(fields(date=None)),
    "key id 7 bytes": lambda: assemble(fields(key_id=bytes(7))),
    "key id missing": lambda: assemble(fields(key_id=None)),
    "uid and aid swapped": lambda: assemble([fields()[0], fields()[2], fields()[1], *fields()[3:]]),
    "tag repeated": lambda: assemble([*fields()[:2], fields()[1], *fields()[2:]]),
    "extra tag 87": lambda: assemble([*fields(), (b"\x87", b"\x00")]),
    "extra tag before version": lambda: assemble([(b"\x87", b"\x00"), *fields()]),
    "non-minimal length": lambda: (
        h("70813a") + b"".join(tlv(t, v) for t, v in fields()) + bytes(176)
    )[:176],
    "template length past the end": lambda: h("707f") + bytes(174),
    "signature 63 bytes": lambda: (
        tlv(b"\x70", b"".join(tlv(t, v) for t, v in fields())) + h("5f373f") + bytes(176)
    )[:176],
    "signature 65 bytes": lambda: (
        tlv(b"\x70", b"".join(tlv(t, v) for t, v in fields())) + h("5f3741") + bytes(176)
    )[:176],
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_record_is_refused(case: str) -> None:
    data = MALFORMED[case]()
    with pytest.raises(RecordFormatError) as caught:
        IdentityRecord.parse(data)  # type: ignore[arg-type]
    assert caught.value.code is ErrorCode.MALFORMED
    assert "\n" not in str(caught.value)


def test_the_builder_makes_a_valid_record_when_nothing_is_changed(authority: AuthorityKey) -> None:
    # The malformed cases are one change away from this record, which parses and verifies.
    signed = IdentityRecord.parse(assemble(fields()))
    assert signed.record == record()
    assert verify(signed, [authority]) is authority


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"uid": UID[:6]}, "uid"),
        ({"aid": b"\x49\x4d"}, "aid"),
        ({"authority_key_id": bytes(9)}, "authority_key_id"),
        ({"uid": UID.hex()}, "uid"),
        ({"id_nat": "810001234566"}, "id_nat"),
        ({"id_nat": 810001234565}, "id_nat"),
        ({"issuer": "x" * 31}, "issuer"),
        ({"issuer": "é" * 16}, "issuer"),
        ({"issuer": "CH\x00"}, "issuer"),
        ({"issuer": "\ud800"}, "issuer"),
        ({"issued": dt.datetime(2026, 12, 1)}, "date"),
        ({"issued": "20261201"}, "date"),
    ],
)
def test_the_constructor_refuses_a_bad_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(RecordFormatError, match=field.split("_")[0]):
        record(**change)


# --- signatures: another authority, an edited record -----------------------------------------


def test_a_record_signed_by_another_authority_is_unknown(
    provider: SoftwareKeyProvider, authority: AuthorityKey
) -> None:
    theirs = record(authority_key_id=key_id(OUTSIDER)).sign(provider, "other")
    with pytest.raises(RecordUntrustedError) as caught:
        verify(IdentityRecord.parse(theirs), [authority])
    assert caught.value.reason == RecordUntrustedError.UNKNOWN_AUTHORITY
    assert key_id(OUTSIDER).hex() in str(caught.value)
    assert caught.value.code is ErrorCode.RECORD_UNTRUSTED
    # The outsider's own verifier accepts it: the refusal is about trust, not format.
    outsider = AuthorityKey.of(OUTSIDER.public_key(), "outsider")
    assert verify(IdentityRecord.parse(theirs), [authority, outsider]) is outsider


def test_no_authority_trusts_nothing(provider: SoftwareKeyProvider) -> None:
    with pytest.raises(RecordUntrustedError) as caught:
        verify(IdentityRecord.parse(record().sign(provider, "mie-authority")), [])
    assert caught.value.reason == RecordUntrustedError.UNKNOWN_AUTHORITY


def test_a_record_naming_our_key_but_signed_by_another_is_a_bad_signature(
    authority: AuthorityKey,
) -> None:
    forged = assemble(fields(), signer=OUTSIDER)  # key id of AUTHORITY, signature of OUTSIDER
    with pytest.raises(RecordUntrustedError) as caught:
        verify(IdentityRecord.parse(forged), [authority])
    assert caught.value.reason == RecordUntrustedError.BAD_SIGNATURE


def test_sign_refuses_a_key_the_record_does_not_name(provider: SoftwareKeyProvider) -> None:
    with pytest.raises(RecordFormatError, match="authority key id"):
        record().sign(provider, "other")


@pytest.mark.parametrize(
    "edit",
    [
        {"id_nat": b"810001234573"},  # another valid RPPS number
        {"uid": h("04a1b2c3d4e5f7")},
        {"aid": h("494df1")},
        {"issuer": b"CH Exemplf"},
        {"date": b"20261202"},
    ],
)
def test_an_edited_record_is_a_bad_signature(
    edit: dict[str, bytes], provider: SoftwareKeyProvider, authority: AuthorityKey
) -> None:
    good = record().sign(provider, "mie-authority")
    body_length = len(record().encode_body())
    ((name, value),) = edit.items()
    edited_body = tlv(b"\x70", b"".join(tlv(t, v) for t, v in fields(**{name: value})))
    assert len(edited_body) == body_length
    edited = edited_body + good[body_length:]
    signed = IdentityRecord.parse(edited)
    with pytest.raises(RecordUntrustedError) as caught:
        verify(signed, [authority])
    assert caught.value.reason == RecordUntrustedError.BAD_SIGNATURE
    assert caught.value.code is ErrorCode.RECORD_UNTRUSTED


@pytest.mark.parametrize("position", [0, 31, 32, 63])
def test_a_flipped_signature_bit_is_a_bad_signature(
    position: int, provider: SoftwareKeyProvider, authority: AuthorityKey
) -> None:
    file = bytearray(record().sign(provider, "mie-authority"))
    file[len(record().encode_body()) + 3 + position] ^= 0x01
    with pytest.raises(RecordUntrustedError) as caught:
        verify(IdentityRecord.parse(bytes(file)), [authority])
    assert caught.value.reason == RecordUntrustedError.BAD_SIGNATURE


@pytest.mark.parametrize("raw", [bytes(64), b"\xff" * 64, bytes(32) + b"\x01" * 32])
def test_an_out_of_range_signature_is_a_bad_signature(raw: bytes, authority: AuthorityKey) -> None:
    body = tlv(b"\x70", b"".join(tlv(t, v) for t, v in fields()))
    file = (body + h("5f3740") + raw + bytes(176))[:176]
    with pytest.raises(RecordUntrustedError) as caught:
        verify(IdentityRecord.parse(file), [authority])
    assert caught.value.reason == RecordUntrustedError.BAD_SIGNATURE


class _BrokenSigner(KeyProvider):
    """A provider whose signature is not DER (a faulty token), at the key-provider edge."""

    def diversify(self, master: str, diversification_input: bytes) -> bytes:
        raise NotImplementedError

    def sign(self, key: str, data: bytes) -> bytes:
        return b"\x30\x03\x02\x01"

    def public_key(self, key: str) -> ec.EllipticCurvePublicKey:
        return AUTHORITY.public_key()

    def close(self) -> None:
        pass


def test_sign_refuses_a_signature_that_is_not_der() -> None:
    with pytest.raises(RecordFormatError, match="no P-256 signature"):
        record().sign(_BrokenSigner(), "mie-authority")


def test_an_authority_key_must_be_p256() -> None:
    p384 = ec.derive_private_key(7, ec.SECP384R1()).public_key()
    with pytest.raises(RecordFormatError, match="P-256"):
        AuthorityKey.of(p384, "p384")
    with pytest.raises(RecordFormatError, match="key id"):
        AuthorityKey(key_id(OUTSIDER), AUTHORITY.public_key(), "mixed")


def test_the_authority_repr_has_its_name_and_id() -> None:
    text = repr(AuthorityKey.of(AUTHORITY.public_key(), "CH Exemple", test=True))
    assert "CH Exemple" in text and key_id(AUTHORITY).hex() in text and "test=True" in text


# --- a record copied to another badge or application -----------------------------------------


def _signed(provider: SoftwareKeyProvider) -> SignedRecord:
    return IdentityRecord.parse(record().sign(provider, "mie-authority"))


def test_the_binding_holds_for_its_own_badge(provider: SoftwareKeyProvider) -> None:
    check_binding(_signed(provider).record, uid=UID, aid=AID)


def test_a_record_copied_to_another_uid(provider: SoftwareKeyProvider) -> None:
    other = h("04a1b2c3d4e5f7")
    with pytest.raises(RecordCopiedError) as caught:
        check_binding(_signed(provider).record, uid=other, aid=AID)
    assert caught.value.reason == RecordCopiedError.UID
    assert caught.value.code is ErrorCode.RECORD_COPIED
    assert str(caught.value) == (
        "The record was issued for badge 04a1b2c3d4e5f6, this badge is 04a1b2c3d4e5f7"
    )


def test_a_record_copied_to_another_application(provider: SoftwareKeyProvider) -> None:
    with pytest.raises(RecordCopiedError) as caught:
        check_binding(_signed(provider).record, uid=UID, aid=h("010203"))
    assert caught.value.reason == RecordCopiedError.AID
    assert "494df0" in str(caught.value) and "010203" in str(caught.value)


def test_a_uid_of_another_length_is_a_copy_not_a_crash(provider: SoftwareKeyProvider) -> None:
    with pytest.raises(RecordCopiedError):
        check_binding(_signed(provider).record, uid=UID[:4], aid=AID)
