"""The PIN of a FIDO2 security key: :data:`FIDO_PIN` and :func:`check_fido_pin` (plan D13).

CTAP 2.1 (§6.5.1, read from the plan, **[I]**) takes a PIN of at least 4 Unicode code points and
at most 63 bytes once encoded in UTF-8, the key padding it to 64 bytes with zeros. The PIN is
checked as typed: **no NFC normalisation** is applied **[I]** (a PIN typed in another
normalisation form is another PIN to the key, as it is to python-fido2, which encodes the
``str`` it is given). Nothing here sends anything to a key, and no message, ``repr`` or
exception context ever contains the PIN or any of its characters or bytes.
"""

from __future__ import annotations

from mie.core.errors import PinFormatError
from mie.core.pin import PinRule

__all__ = ["FIDO_PIN", "FIDO_PIN_MAX_BYTES", "check_fido_pin"]

# 4 to 63 characters (code points), any characters: the byte bound is checked apart.
FIDO_PIN = PinRule(4, 63, False)

# The PIN's UTF-8 encoding fits in CTAP's 64-byte padded PIN block with one zero left.
FIDO_PIN_MAX_BYTES = 63


def check_fido_pin(pin: str | bytearray) -> str:
    """Check a FIDO2 PIN and return it as the ``str`` python-fido2 takes.

    :param pin: the PIN as typed: a ``str``, or a ``bytearray`` of UTF-8 that the caller owns and
        wipes: it is decoded in place and left as it is, and no copy of it is made but the
        returned ``str`` (no ``bytes`` nobody could wipe).
    :return: the PIN, unchanged (not normalised).
    :raises PinFormatError: ``malformed``: not UTF-8 text (a ``bytearray`` that does not decode,
        a ``str`` with a lone surrogate), a NUL character (the key would drop it with the
        padding), fewer than 4 or more than 63 characters, or more than 63 bytes in UTF-8.
    """
    if isinstance(pin, bytearray):
        text = _decode(pin)
    elif isinstance(pin, str):
        text = pin
    else:
        # The type is named, never the value.
        raise PinFormatError(f"PIN must be a str or a bytearray, not {type(pin).__name__}")
    if "\x00" in text:
        raise PinFormatError("PIN must not contain a NUL character")
    FIDO_PIN.check(text)
    if _utf8_length(text) > FIDO_PIN_MAX_BYTES:
        raise PinFormatError(f"PIN must have at most {FIDO_PIN_MAX_BYTES} bytes in UTF-8")
    return text


def _decode(pin: bytearray) -> str:
    """Decode ``pin`` as strict UTF-8 without keeping the decoder's error.

    A :class:`UnicodeDecodeError` holds the bytes (``.object``) and names one in its message, so
    it is not chained to the :class:`PinFormatError`, not even as ``__context__``.
    """
    try:
        return pin.decode("utf-8")
    except UnicodeDecodeError:
        pass
    raise PinFormatError("PIN is not UTF-8 text")


def _utf8_length(text: str) -> int:
    """:return: the length of ``text`` in UTF-8, counted without encoding it (an encoded copy
    would be a ``bytes`` nobody can wipe).

    :raises PinFormatError: a lone surrogate, which has no UTF-8 encoding.
    """
    length = 0
    for char in text:
        point = ord(char)
        if 0xD800 <= point <= 0xDFFF:
            raise PinFormatError("PIN is not UTF-8 text")
        length += 1 if point < 0x80 else 2 if point < 0x800 else 3 if point < 0x10000 else 4
    return length
