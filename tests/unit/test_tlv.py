from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mie.core.errors import TlvError
from mie.core.tlv import Tlv, encode_length, encode_tlvs, parse_tlvs, tlv_dict
from tests.unit.fakes import h


@pytest.mark.parametrize(
    ("tag", "value", "encoded"),
    [
        (0x5A, h("01 02"), "5A 02 01 02"),
        (0x80, b"", "80 00"),
        (0x9F1F, h("AA"), "9F 1F 01 AA"),
        (0x5F20, b"DUPONT", "5F 20 06 44 55 50 4F 4E 54"),
        (0x7F49, b"", "7F 49 00"),
        (0x7F49, h("81 01 03"), "7F 49 03 81 01 03"),
        (0xBF8101, h("00"), "BF 81 01 01 00"),
        (0x62, h("80 02 00 0A"), "62 04 80 02 00 0A"),
    ],
)
def test_encode_and_parse_exact_bytes(tag: int, value: bytes, encoded: str) -> None:
    assert Tlv(tag, value).encode() == h(encoded)
    assert bytes(Tlv(tag, value)) == h(encoded)
    assert Tlv.parse(h(encoded)) == Tlv(tag, value)


@pytest.mark.parametrize(
    ("length", "encoded"),
    [
        (0, "00"),
        (0x7F, "7F"),
        (0x80, "81 80"),
        (0xFF, "81 FF"),
        (0x100, "82 01 00"),
        (0xFFFF, "82 FF FF"),
        (0x10000, "83 01 00 00"),
        (0xFFFFFFFF, "84 FF FF FF FF"),
    ],
)
def test_encode_length_uses_the_minimal_definite_form(length: int, encoded: str) -> None:
    assert encode_length(length) == h(encoded)


@pytest.mark.parametrize("length", [-1, 0x1_0000_0000])
def test_encode_length_out_of_range_raises(length: int) -> None:
    with pytest.raises(TlvError, match=r"[Ll]ength"):
        encode_length(length)


@pytest.mark.parametrize(
    ("length", "header"),
    [(0x7F, "5A 7F"), (0x80, "5A 81 80"), (0x100, "5A 82 01 00")],
)
def test_value_length_boundaries_round_trip(length: int, header: str) -> None:
    value = bytes(range(256)) * 2
    value = value[:length]
    encoded = Tlv(0x5A, value).encode()
    assert encoded == h(header) + value
    assert Tlv.parse(encoded).value == value


@pytest.mark.parametrize(
    ("encoded", "problem"),
    [
        ("5A", "Missing length"),
        ("5A 03 01 02", "value of 3 bytes but only 2 remain"),
        ("5A 81", "Truncated length"),
        ("5A 82 01", "Truncated length"),
        ("30 80 02 01 00 00 00", "Indefinite length"),
        ("5A 81 05 01 02 03 04 05", "Non-minimal length"),
        ("5A 82 00 80" + " 00" * 0x80, "Non-minimal length"),
        ("5A 83 00 01 00" + " 00" * 0x100, "Non-minimal length"),
        ("5A 85 00 00 00 00 01 00", "Length field of 5 bytes"),
        ("1F 1E 00", "one-byte form"),
        ("1F 80 01 00", "non-minimal tag number"),
        ("5F", "Truncated tag"),
        ("9F 81", "Truncated tag"),
        ("1F 81 81 81 01 00", "longer than 4 bytes"),
    ],
)
def test_parse_rejects_non_canonical_or_truncated_input(encoded: str, problem: str) -> None:
    with pytest.raises(TlvError, match=re.escape(problem)):
        Tlv.parse(h(encoded))
    with pytest.raises(TlvError, match=re.escape(problem)):
        parse_tlvs(h(encoded))


def test_parse_of_nothing_raises() -> None:
    with pytest.raises(TlvError, match="Missing tag"):
        Tlv.parse(b"")


def test_parse_rejects_trailing_bytes() -> None:
    with pytest.raises(TlvError, match="1 trailing bytes after tag 5A"):
        Tlv.parse(h("5A 01 01 00"))


def test_parse_from_leaves_trailing_bytes_to_the_caller() -> None:
    tlv, end = Tlv.parse_from(h("00 5A 01 01 9F"), offset=1)
    assert (tlv, end) == (Tlv(0x5A, h("01")), 4)


def test_parse_tlvs_reads_a_concatenation_in_order() -> None:
    data = h("5A 01 01 7F 49 02 86 00 80 00")
    assert parse_tlvs(data) == [Tlv(0x5A, h("01")), Tlv(0x7F49, h("86 00")), Tlv(0x80)]
    assert parse_tlvs(b"") == []


def test_tlv_dict_maps_tags_to_values() -> None:
    assert tlv_dict(h("80 02 00 0A 82 01 01")) == {0x80: h("00 0A"), 0x82: h("01")}


def test_tlv_dict_rejects_a_repeated_tag() -> None:
    with pytest.raises(TlvError, match="Tag 80 repeated"):
        tlv_dict(h("80 01 01 82 01 01 80 01 02"))


def test_children_parse_a_constructed_value() -> None:
    fcp = Tlv.parse(h("62 07 80 02 00 0A 82 01 01"))
    assert fcp.constructed
    assert fcp.children() == [Tlv(0x80, h("00 0A")), Tlv(0x82, h("01"))]


@pytest.mark.parametrize(
    ("tag", "constructed"),
    [(0x5A, False), (0x62, True), (0x9F1F, False), (0x7F49, True), (0xBF8101, True)],
)
def test_constructed_reads_bit_6_of_the_first_tag_byte(tag: int, constructed: bool) -> None:
    assert Tlv(tag).constructed is constructed


@pytest.mark.parametrize(
    ("tag", "problem"),
    [
        (-1, "Negative tag"),
        (0x1F, "needs more bytes"),
        (0x1F1E, "one-byte form"),
        (0x1F8001, "non-minimal tag number"),
        (0x5A01, "low-tag-number form must be one byte"),
        (0x1F8101 << 8, "continuation bits"),
        (0x1F81, "continuation bits"),
        (0x1F81818101, "longer than 4 bytes"),
    ],
)
def test_constructor_rejects_tags_that_have_no_canonical_encoding(tag: int, problem: str) -> None:
    with pytest.raises(TlvError, match=re.escape(problem)):
        Tlv(tag)


def test_encode_tlvs_concatenates() -> None:
    assert encode_tlvs([Tlv(0x80, h("00 0A")), Tlv(0x82, h("01"))]) == h("80 02 00 0A 82 01 01")


@st.composite
def tags(draw: st.DrawFn) -> int:
    """Canonical tags of one to four bytes."""
    first = draw(st.integers(0, 0xFF))
    if first & 0x1F != 0x1F:
        return first
    size = draw(st.integers(1, 3))
    if size == 1:
        rest = [draw(st.integers(0x1F, 0x7F))]
    else:
        middle = [draw(st.integers(0x80, 0xFF)) for _ in range(size - 2)]
        rest = [draw(st.integers(0x81, 0xFF)), *middle, draw(st.integers(0, 0x7F))]
    return int.from_bytes(bytes([first, *rest]), "big")


values = st.one_of(st.binary(max_size=40), st.binary(min_size=120, max_size=300))


@given(tag=tags(), value=values)
def test_parse_inverts_encode(tag: int, value: bytes) -> None:
    tlv = Tlv(tag, value)
    assert Tlv.parse(tlv.encode()) == tlv


@given(items=st.lists(st.tuples(tags(), values), max_size=6))
def test_parse_tlvs_inverts_encode_tlvs(items: list[tuple[int, bytes]]) -> None:
    tlvs = [Tlv(tag, value) for tag, value in items]
    assert parse_tlvs(encode_tlvs(tlvs)) == tlvs


@given(
    tag_bytes=st.lists(st.integers(0, 0xFF), min_size=1, max_size=6).map(bytes),
)
@example(tag_bytes=h("1F 81 81 81 01"))
@example(tag_bytes=h("BF 81 81 81 81 01"))
def test_constructor_accepts_exactly_the_tags_parse_accepts(tag_bytes: bytes) -> None:
    tag = int.from_bytes(tag_bytes, "big")
    try:
        tlv = Tlv(tag, b"")
    except TlvError:
        constructed = False
    else:
        constructed = True
        assert Tlv.parse(tlv.encode()) == tlv
    try:
        parsed = Tlv.parse(tag_bytes + b"\x00")
    except TlvError:
        parsed_as_tag = False
    else:
        parsed_as_tag = parsed.tag == tag and parsed.value == b""
    if tag_bytes[0] != 0:
        assert constructed == parsed_as_tag


@st.composite
def damaged_encodings(draw: st.DrawFn) -> bytes:
    """Valid TLV sequences with one byte overwritten and the tail cut at a random point."""
    items = draw(st.lists(st.tuples(tags(), values), max_size=3))
    data = bytearray(encode_tlvs(Tlv(tag, value) for tag, value in items))
    if data:
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 0xFF))
    return bytes(data[: draw(st.integers(0, len(data)))])


fuzz_input = st.one_of(st.binary(max_size=64), damaged_encodings())


@given(data=fuzz_input)
@example(data=h("1F 81 81 81 81 81 01"))
@example(data=h("5A 84 FF FF FF FF"))
def test_arbitrary_bytes_parse_canonically_or_raise_tlv_error(data: bytes) -> None:
    try:
        tlv = Tlv.parse(data)
    except TlvError:
        pass
    else:
        assert tlv.encode() == data
    try:
        tlvs = parse_tlvs(data)
    except TlvError:
        pass
    else:
        assert encode_tlvs(tlvs) == data
    try:
        tlv_dict(data)
    except TlvError:
        pass
