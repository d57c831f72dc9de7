from __future__ import annotations

import re

import pytest

from mie.core.pin import check_pin, format_pin


@pytest.mark.parametrize("pin", ["4826", "48261", "482619", "4826193", "48261937"])
def test_check_pin_accepts_4_to_8_digits(pin: str) -> None:
    check_pin(pin)
    check_pin(pin.encode())
    check_pin(bytearray(pin.encode()))


@pytest.mark.parametrize(
    ("pin", "problem"),
    [
        ("", "4 to 8 digits, got 0"),
        ("482", "4 to 8 digits, got 3"),
        ("482619375", "4 to 8 digits, got 9"),
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
    for function in (check_pin, format_pin):
        with pytest.raises(ValueError, match=re.escape(problem)) as raised:
            function(pin)
        message = str(raised.value)
        shown = pin if isinstance(pin, str) else pin.decode("latin-1")
        if shown.strip():
            assert shown.strip() not in message
        assert "48" not in message


def test_format_pin_pads_ascii_digits_to_8_bytes_with_ff() -> None:
    block = format_pin("4826")
    assert block == bytearray(b"4826\xff\xff\xff\xff")
    assert isinstance(block, bytearray)


def test_format_pin_with_another_length_and_padding() -> None:
    assert format_pin(b"482619", length=12, pad=0x00) == bytearray(b"482619" + bytes(6))
    assert format_pin("48261937") == bytearray(b"48261937")


def test_format_pin_returns_a_copy_the_caller_can_wipe() -> None:
    source = bytearray(b"4826")
    block = format_pin(source)
    block[:] = bytes(len(block))
    assert source == bytearray(b"4826")
