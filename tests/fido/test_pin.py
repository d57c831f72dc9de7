"""The FIDO2 PIN rule (plan D13): 4 to 63 characters, at most 63 bytes in UTF-8, not
normalised, and never echoed by an error."""

from __future__ import annotations

import unicodedata

import pytest

from mie.core.errors import ErrorCode, PinFormatError
from mie.fido.pin import FIDO_PIN, FIDO_PIN_MAX_BYTES, check_fido_pin


def refused(pin: object) -> PinFormatError:
    with pytest.raises(PinFormatError) as caught:
        check_fido_pin(pin)  # type: ignore[arg-type]
    error = caught.value
    assert error.code is ErrorCode.MALFORMED
    # Chained to nothing: a UnicodeDecodeError as context would carry the bytes.
    assert error.__cause__ is None and error.__context__ is None
    return error


def assert_not_echoed(error: PinFormatError, pin: str) -> None:
    for text in (str(error), repr(error), repr(error.args)):
        assert pin not in text
        # The messages are ASCII, so none of the PIN's other characters is in them either.
        assert text.isascii()
        assert not {c for c in pin if not c.isascii()} & set(text)


def test_the_rule_is_4_to_63_characters_of_any_kind() -> None:
    assert (FIDO_PIN.min_length, FIDO_PIN.max_length, FIDO_PIN.digits_only) == (4, 63, False)
    assert FIDO_PIN_MAX_BYTES == 63


@pytest.mark.parametrize(
    "pin",
    [
        "1234",
        "abcd",
        "pass word!",
        "x" * 63,
        "é" * 31 + "a",  # 63 bytes
        "€" * 21,  # 63 bytes
        "😀" * 15 + "abc",  # 63 bytes
        "ça va",
    ],
)
def test_a_good_pin_is_returned_unchanged(pin: str) -> None:
    assert check_fido_pin(pin) is pin
    assert check_fido_pin(bytearray(pin.encode("utf-8"))) == pin


@pytest.mark.parametrize(
    ("pin", "problem"),
    [
        ("", "4 to 63 characters"),
        ("123", "4 to 63 characters"),
        ("x" * 64, "4 to 63 characters"),
        ("é" * 32, "at most 63 bytes in UTF-8"),  # 32 characters, 64 bytes
        ("€" * 22, "at most 63 bytes in UTF-8"),  # 66 bytes
        ("😀" * 16, "at most 63 bytes in UTF-8"),  # 64 bytes
        ("😀😀😀", "4 to 63 characters"),  # 12 bytes but 3 characters
        ("12\x0034", "NUL character"),
        ("1234\x00", "NUL character"),
        ("12\ud83d34", "not UTF-8 text"),  # a lone surrogate
    ],
)
def test_a_bad_pin_names_the_problem_not_the_pin(pin: str, problem: str) -> None:
    error = refused(pin)
    assert problem in str(error)
    if len(pin) >= 4:
        assert_not_echoed(error, pin)
    # The same PIN as UTF-8 bytes gets the same answer (the surrogate has no UTF-8 form).
    if problem != "not UTF-8 text":
        assert problem in str(refused(bytearray(pin.encode("utf-8"))))


def test_a_bytearray_is_counted_in_characters_not_bytes() -> None:
    # 4 characters in 8 bytes: the cards' rule would count 8; a FIDO2 key counts 4.
    assert check_fido_pin(bytearray("éèàù".encode())) == "éèàù"
    assert "4 to 63 characters" in str(refused(bytearray("éèà".encode())))


@pytest.mark.parametrize(
    "data", [b"\xff\xfe12345", b"1234\xc3", b"12\xed\xa0\x8034", b"\xc0\xb01234"]
)
def test_a_bytearray_that_is_not_utf8_is_refused_without_its_bytes(data: bytes) -> None:
    pin = bytearray(data)
    error = refused(pin)
    assert str(error) == "PIN is not UTF-8 text"
    for text in (str(error), repr(error)):
        assert "\\x" not in text and "0x" not in text and "byte" not in text
    # The caller's buffer is left for the caller to wipe, unchanged.
    assert pin == data


def test_the_caller_bytearray_is_not_changed_and_can_be_wiped() -> None:
    pin = bytearray(b"s3cret-PIN")
    assert check_fido_pin(pin) == "s3cret-PIN"
    assert pin == b"s3cret-PIN"


def test_no_nfc_normalisation() -> None:
    # "é" typed decomposed is another PIN to the key: returned as typed, not composed.
    decomposed = unicodedata.normalize("NFD", "café1")
    assert decomposed != unicodedata.normalize("NFC", decomposed)
    assert check_fido_pin(decomposed) == decomposed
    assert check_fido_pin(bytearray(decomposed.encode())) == decomposed
    # And counted as typed: 31 "é" decomposed are 62 characters, 93 bytes.
    assert "at most 63 bytes" in str(refused(unicodedata.normalize("NFD", "é" * 31)))


@pytest.mark.parametrize("pin", [b"1234", 1234, None, memoryview(b"1234")])
def test_anything_but_str_or_bytearray_is_refused_by_type(pin: object) -> None:
    error = refused(pin)
    assert "must be a str or a bytearray" in str(error)
    assert "1234" not in str(error)
