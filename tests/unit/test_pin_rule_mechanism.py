"""The PIN format mechanism of mie.core (the values are each authenticator's)."""

from __future__ import annotations

import pytest

from mie.core import pin as core_pin
from mie.core.errors import PinFormatError
from mie.core.pin import PinRule

DIGITS = PinRule(4, 8, digits_only=True)
TEXT = PinRule(4, 63, digits_only=False)


def test_a_digit_rule_refuses_letters_and_lengths_without_echoing() -> None:
    DIGITS.check("4826")
    DIGITS.check(bytearray(b"48261937"))
    for pin, problem in [("482", "4 to 8 digits"), ("48a6", "decimal digits only")]:
        with pytest.raises(PinFormatError, match=problem) as raised:
            DIGITS.check(pin)
        assert pin not in str(raised.value)


def test_a_text_rule_takes_any_characters_in_its_range() -> None:
    TEXT.check("correct horse")
    TEXT.check("é" * 4)
    with pytest.raises(PinFormatError, match=r"4 to 63 characters$") as raised:
        TEXT.check("x" * 64)
    # The length typed narrows the PIN: it is not in the message.
    assert "64" not in str(raised.value)
    assert TEXT.pad("abcd", length=6, pad=0x00) == bytearray(b"abcd\x00\x00")


def test_pad_refuses_a_pin_longer_than_the_block() -> None:
    with pytest.raises(PinFormatError, match="6-byte PIN block"):
        DIGITS.pad("4826193", length=6)


def test_a_rule_must_be_a_range() -> None:
    with pytest.raises(ValueError, match="not a range"):
        PinRule(8, 4, digits_only=True)
    with pytest.raises(ValueError, match="not a range"):
        PinRule(0, 4, digits_only=True)


def test_the_deprecated_helpers_are_gone_and_core_holds_no_pin_values() -> None:
    # Commit F: check_pin/format_pin (the CPx values in mie.core) are removed; the CPx rule is
    # mie.cards.cpx.CPX_PIN (tests/cards/test_pin_rule.py).
    for name in ("check_pin", "format_pin", "MIN_PIN_LENGTH", "MAX_PIN_LENGTH"):
        assert not hasattr(core_pin, name), name
