"""The CPx PIN rule (mie.cards.cpx.CPX_PIN): 4 to 8 ASCII digits, ASCII block padded with FF.

The rule belongs to the authenticator, not to mie.core (moved from tests/unit/test_pin.py, which
tested core.pin's check_pin/format_pin, removed since).
"""

from __future__ import annotations

import re

import pytest

from mie.cards.cpx import CPX_PIN
from mie.errors import PinFormatError


@pytest.mark.parametrize("pin", ["4826", "48261", "482619", "4826193", "48261937"])
def test_check_pin_accepts_4_to_8_digits(pin: str) -> None:
    CPX_PIN.check(pin)
    CPX_PIN.check(pin.encode())
    CPX_PIN.check(bytearray(pin.encode()))


@pytest.mark.parametrize(
    ("pin", "problem"),
    [
        ("", "4 to 8 digits"),
        ("482", "4 to 8 digits"),
        ("482619375", "4 to 8 digits"),
        ("48a6", "decimal digits only"),
        (" 4826", "decimal digits only"),
        ("4826\n", "decimal digits only"),
        ("-482", "decimal digits only"),
        ("\uff14\uff18\uff12\uff16", "decimal digits only"),
        ("\u0664\u0668\u0662\u0666", "decimal digits only"),
        (b"48\xff6", "decimal digits only"),
    ],
)
def test_bad_pins_raise_value_error_without_echoing_the_pin(pin: str | bytes, problem: str) -> None:
    for function in (CPX_PIN.check, CPX_PIN.pad):
        with pytest.raises(PinFormatError, match=re.escape(problem)) as raised:
            function(pin)
        assert isinstance(raised.value, ValueError)
        message = str(raised.value)
        shown = pin if isinstance(pin, str) else pin.decode("latin-1")
        if shown.strip():
            assert shown.strip() not in message
        assert "48" not in message


def test_format_pin_pads_ascii_digits_to_8_bytes_with_ff() -> None:
    block = CPX_PIN.pad("4826")
    assert block == bytearray(b"4826\xff\xff\xff\xff")
    assert isinstance(block, bytearray)


def test_format_pin_with_another_length_and_padding() -> None:
    assert CPX_PIN.pad(b"482619", length=12, pad=0x00) == bytearray(b"482619" + bytes(6))
    assert CPX_PIN.pad("48261937") == bytearray(b"48261937")


def test_format_pin_returns_a_copy_the_caller_can_wipe() -> None:
    source = bytearray(b"4826")
    block = CPX_PIN.pad(source)
    block[:] = bytes(len(block))
    assert source == bytearray(b"4826")


def test_the_cpx_rule_is_4_to_8_digits() -> None:
    assert (CPX_PIN.min_length, CPX_PIN.max_length, CPX_PIN.digits_only) == (4, 8, True)
    with pytest.raises(PinFormatError):
        CPX_PIN.check("123")
