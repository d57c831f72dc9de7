"""Strict unpadded base64url (RFC 4648 §5), the encoding of WebAuthn's JSON members.

One encoding per value: the URL-safe alphabet only, no padding, no length of 4n+1, and the unused
low bits of the last character zero (what re-encoding the decoded bytes would check, without the
second pass: the verifier reads four such members per assertion).
"""

from __future__ import annotations

import binascii
import re

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_URLSAFE = re.compile(r"[A-Za-z0-9_-]*")
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_PADDING = (b"", b"", b"==", b"=")
# By len(text) % 4: the last characters whose unused bits (4 after 2 characters, 2 after 3) are 0.
_CANONICAL_LAST = {
    2: frozenset(_ALPHABET[0::16]),
    3: frozenset(_ALPHABET[0::4]),
}

NOT_UNPADDED = "not unpadded base64url"
NOT_BASE64URL = "not base64url"
NOT_CANONICAL = "not canonical base64url"


class Base64UrlError(ValueError):
    """Text that is not strict unpadded base64url; the message is one of :data:`NOT_UNPADDED`,
    :data:`NOT_BASE64URL`, :data:`NOT_CANONICAL` (the caller names the field)."""


def decode(text: str) -> bytes:
    """:return: the bytes of strict unpadded base64url ``text`` (the caller bounds its length).

    :raises Base64UrlError: another alphabet, padding, a length of 4n+1, unused bits set.
    """
    rest = len(text) % 4
    if rest == 1 or _URLSAFE.fullmatch(text) is None:
        raise Base64UrlError(NOT_UNPADDED)
    if rest and text[-1] not in _CANONICAL_LAST[rest]:
        raise Base64UrlError(NOT_CANONICAL)
    try:
        return binascii.a2b_base64(
            text.encode("ascii").translate(_TO_STANDARD) + _PADDING[rest], strict_mode=True
        )
    except (binascii.Error, ValueError) as e:
        raise Base64UrlError(NOT_BASE64URL) from e
