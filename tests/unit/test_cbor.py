"""mie.core.cbor: RFC 8949 examples, every refusal of plan D3 on bytes, canonical form, and
encode byte for byte as python-fido2's encoder (the independent oracle)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mie.core import cbor
from mie.core.errors import CborFormatError, ErrorCode
from tests.harness import require_module

fido2_cbor = require_module("fido2.cbor", "python-fido2 (mie[fido]) is the oracle")

# RFC 8949 Appendix A, the items of the CTAP2 data model (no floats, tags, null, undefined).
RFC_8949 = [
    (0, "00"),
    (1, "01"),
    (10, "0a"),
    (23, "17"),
    (24, "1818"),
    (25, "1819"),
    (100, "1864"),
    (1000, "1903e8"),
    (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"),
    (-18446744073709551616, "3bffffffffffffffff"),
    (-1, "20"),
    (-10, "29"),
    (-100, "3863"),
    (-1000, "3903e7"),
    (False, "f4"),
    (True, "f5"),
    (b"", "40"),
    (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"),
    ("a", "6161"),
    ("IETF", "6449455446"),
    ('"\\', "62225c"),
    ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"),
    ("\U00010151", "64f0908591"),
    ([], "80"),
    ([1, 2, 3], "83010203"),
    ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"),
    ({1: 2, 3: 4}, "a201020304"),
    ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
    (
        {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"},
        "a56161614161626142616361436164614461656145",
    ),
]


@pytest.mark.parametrize(("value", "encoded"), RFC_8949, ids=[e for _, e in RFC_8949])
def test_rfc_8949_examples_round_trip(value: Any, encoded: str) -> None:
    data = bytes.fromhex(encoded)
    assert cbor.encode(value) == data
    for canonical in (True, False):
        decoded = cbor.decode(data, canonical=canonical)
        assert decoded == value and type(decoded) is type(value)


# Refused in both modes: (bytes, offset named, words of the message).
REFUSED = [
    ("5f42010243030405ff", 0, "indefinite length"),
    ("9f01ff", 0, "indefinite length"),
    ("bf6161 01ff", 0, "indefinite length"),
    ("7f6161ff", 0, "indefinite length"),
    ("1c", 0, "reserved additional info 28"),
    ("1e", 0, "reserved additional info 30"),
    ("fc", 0, "reserved additional info 28"),
    ("0000", 1, "1 trailing bytes"),
    ("a1010203", 3, "1 trailing bytes"),
    ("a201020103", 3, "duplicate map key"),
    ("a2616101616102", 4, "duplicate map key"),
    ("4501", 0, "string of 5 bytes runs past the end"),
    ("6261", 0, "string of 2 bytes runs past the end"),
    ("5bffffffffffffffff00", 0, "runs past the end"),
    ("8301", 0, "container of 3 items runs past the end"),
    ("820118", 2, "unexpected end of data in an item head"),
    ("a10161", 2, "string of 1 bytes runs past the end"),
    ("", 0, "unexpected end of data"),
    ("18", 0, "unexpected end of data in an item head"),
    ("1901", 0, "unexpected end of data in an item head"),
    ("81" * 17 + "00", 16, "nested deeper than 16"),
    ("a1" + "01a1" * 16 + "0101", 32, "nested deeper than 16"),
    ("991001" + "00" * 4097, 0, "container of 4097 items, more than 4096"),
    ("9b0000000100000000", 0, "more than 4096"),
    ("8a0000", 0, "container of 10 items runs past the end"),
    ("a3010203", 0, "container of 3 items runs past the end"),
    ("c11a514b67b0", 0, "tag 1 is not accepted"),
    ("d8184100", 0, "tag 24 is not accepted"),
    ("f93c00", 0, "floating-point"),
    ("fa47c35000", 0, "floating-point"),
    ("fb3ff199999999999a", 0, "floating-point"),
    ("f6", 0, "null is not accepted"),
    ("f7", 0, "undefined is not accepted"),
    ("f0", 0, "simple value 16 is not accepted"),
    ("f818", 0, "a simple value is not accepted"),
    ("ff", 0, "a break is not accepted"),
    ("8201f6", 2, "null"),
    ("a1f401", 1, "map key of type bool"),
    ("a1800102", 1, "map key of type list"),
    ("a1a00102", 1, "map key of type dict"),
    ("61ff", 0, "text string is not UTF-8"),
    ("63eda080", 0, "text string is not UTF-8"),
]


@pytest.mark.parametrize("canonical", [True, False], ids=["canonical", "lenient"])
@pytest.mark.parametrize(("encoded", "offset", "words"), REFUSED, ids=[r[0][:24] for r in REFUSED])
def test_each_refusal_names_the_problem_and_its_offset(
    encoded: str, offset: int, words: str, canonical: bool
) -> None:
    with pytest.raises(CborFormatError) as raised:
        cbor.decode(bytes.fromhex(encoded.replace(" ", "")), canonical=canonical)
    error = raised.value
    assert words in error.problem
    assert error.offset == offset
    assert str(error) == f"CBOR at offset {offset}: {error.problem}"
    assert error.code is ErrorCode.MALFORMED


# Accepted when lenient (a browser's re-encoding), refused in canonical form.
NOT_CANONICAL = [
    ("1817", 23, "non-minimal encoding of 23"),
    ("190001", 1, "non-minimal encoding of 1"),
    ("1a0000ffff", 0xFFFF, "non-minimal encoding of 65535"),
    ("1b00000000ffffffff", 0xFFFFFFFF, "non-minimal encoding of 4294967295"),
    ("3817", -24, "non-minimal encoding of 23"),
    ("580100", b"\x00", "non-minimal encoding of 1"),
    ("980101", [1], "non-minimal encoding of 1"),
    ("a203040102", {3: 4, 1: 2}, "map keys are not in canonical order"),
    ("a2616101 0102", {"a": 1, 1: 2}, "map keys are not in canonical order"),
    ("a2626161 01 6162 02", {"aa": 1, "b": 2}, "map keys are not in canonical order"),
    ("a2200100 02", {-1: 1, 0: 2}, "map keys are not in canonical order"),
    ("a2 4162 01 6161 02", {b"b": 1, "a": 2}, None),
]


@pytest.mark.parametrize(("encoded", "value", "words"), NOT_CANONICAL)
def test_canonical_mode_adds_minimal_encodings_and_key_order(
    encoded: str, value: Any, words: str | None
) -> None:
    data = bytes.fromhex(encoded.replace(" ", ""))
    assert cbor.decode(data, canonical=False) == value
    if words is None:
        # Byte strings (major type 2) sort before text (3): this one is canonical.
        assert cbor.decode(data, canonical=True) == value
        return
    with pytest.raises(CborFormatError, match=words):
        cbor.decode(data, canonical=True)


def test_sixteen_levels_and_4096_items_are_accepted() -> None:
    assert cbor.decode(bytes.fromhex("81" * 16 + "00"), canonical=True) == _nested(16)
    items = cbor.decode(bytes.fromhex("991000" + "00" * 4096), canonical=True)
    assert items == [0] * 4096
    shallow = bytes.fromhex("81" * 3 + "00")
    with pytest.raises(CborFormatError, match="nested deeper than 2"):
        cbor.decode(shallow, canonical=True, max_depth=2)


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def test_deep_nesting_is_refused_without_recursion_error() -> None:
    for prefix in ("81", "a101", "9f"):
        with pytest.raises(CborFormatError):
            cbor.decode(bytes.fromhex(prefix * 10000 + "00"), canonical=False)


def test_decode_prefix_returns_what_follows() -> None:
    value, rest = cbor.decode_prefix(bytes.fromhex("a10102ffee"), canonical=True)
    assert value == {1: 2} and rest == b"\xff\xee"
    assert cbor.decode_at(bytes.fromhex("00a10102ff"), 1, canonical=True) == ({1: 2}, 4)
    with pytest.raises(CborFormatError) as raised:
        cbor.decode_at(bytes.fromhex("0000a10161"), 2, canonical=False)
    assert raised.value.offset == 4
    with pytest.raises(ValueError, match="outside"):
        cbor.decode_at(b"\x00", 2, canonical=True)


def test_bad_arguments_are_plain_python_errors() -> None:
    with pytest.raises(TypeError):
        cbor.decode("00", canonical=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_depth"):
        cbor.decode(b"\x00", canonical=True, max_depth=0)
    assert cbor.decode(bytearray(b"\x01"), canonical=True) == 1
    for value in (None, 1.5, object(), {1.0: 2}, {True: 1}, {(1,): 2}):
        with pytest.raises(TypeError):
            cbor.encode(value)
    for number in (1 << 64, -(1 << 64) - 1):
        with pytest.raises(ValueError, match="64 bits"):
            cbor.encode(number)


def test_bytes_like_values_encode_as_byte_strings() -> None:
    assert cbor.encode(bytearray(b"ab")) == cbor.encode(memoryview(b"ab")) == b"\x42ab"
    assert cbor.encode((1, 2)) == cbor.encode([1, 2])


# --- encode against python-fido2 -----------------------------------------------------------------

_KEYS = st.one_of(
    st.integers(min_value=-(1 << 64), max_value=(1 << 64) - 1),
    st.text(max_size=30),
    st.binary(max_size=20),
)
_SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(1 << 64), max_value=(1 << 64) - 1),
    st.integers(min_value=-300, max_value=300),
    st.text(max_size=40),
    st.binary(max_size=300),
)
CTAP_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=8),
        st.dictionaries(_KEYS, inner, max_size=8),
    ),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(CTAP_VALUES)
def test_encode_is_byte_identical_to_python_fido2(value: Any) -> None:
    encoded = cbor.encode(value)
    assert encoded == fido2_cbor.encode(value)
    # And the strict canonical decoder reads it back to the same encoding (types kept).
    assert cbor.encode(cbor.decode(encoded, canonical=True)) == encoded
    assert cbor.encode(fido2_cbor.decode(encoded)) == encoded


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_what_decodes_canonically_encodes_back_to_the_same_bytes(data: bytes) -> None:
    try:
        value = cbor.decode(data, canonical=True)
    except CborFormatError:
        return
    assert cbor.encode(value) == data
