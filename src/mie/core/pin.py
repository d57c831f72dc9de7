"""PIN formatting, checked before anything is sent to a card."""

from __future__ import annotations

MIN_PIN_LENGTH = 4
MAX_PIN_LENGTH = 8


def check_pin(pin: str | bytes | bytearray) -> None:
    """Check a PIN is 4 to 8 ASCII decimal digits, without echoing it in the error.

    :param pin: the PIN as typed (a ``bytearray`` is read in place, never copied).
    :raises ValueError: the PIN has the wrong length or a character that is not a digit.
    """
    if isinstance(pin, str):
        # Checked on the text first: encoding a non-ASCII PIN could name its characters.
        if not MIN_PIN_LENGTH <= len(pin) <= MAX_PIN_LENGTH:
            raise ValueError(f"PIN must have 4 to 8 digits, got {len(pin)} characters")
        if not (pin.isascii() and pin.isdigit()):
            raise ValueError("PIN must contain decimal digits only")
        return
    # Checked in place: a copy of a caller's bytearray would outlive the caller's wipe.
    if not MIN_PIN_LENGTH <= len(pin) <= MAX_PIN_LENGTH:
        raise ValueError(f"PIN must have 4 to 8 digits, got {len(pin)} characters")
    if not all(0x30 <= b <= 0x39 for b in pin):
        raise ValueError("PIN must contain decimal digits only")


def format_pin(pin: str | bytes | bytearray, length: int = 8, pad: int = 0xFF) -> bytearray:
    """Format a PIN as ASCII digits padded to ``length`` bytes.

    :param pin: 4 to 8 decimal digits.
    :param length: the PIN block length the card expects.
    :param pad: the padding byte.
    :return: a ``bytearray`` the caller can wipe after use.
    :raises ValueError: the PIN is not 4 to 8 decimal digits.
    """
    check_pin(pin)
    block = bytearray(pin.encode("ascii") if isinstance(pin, str) else pin)
    if len(block) > length:
        raise ValueError(f"PIN has more digits than the {length}-byte PIN block holds")
    block.extend([pad] * (length - len(block)))
    return block
