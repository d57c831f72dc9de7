"""Exceptions specific to MIFARE DESFire badges.

A response MAC that does not verify, or a cryptogram that does not decode, raises
:class:`mie.errors.SecureMessagingError`, shared with every secure channel of :mod:`mie`.
No message here ever contains key material: only lengths and names.
"""

from __future__ import annotations

from mie.core.errors import ErrorCode, MieError, SignatureInvalidError


class DesfireError(MieError):
    """Base class of the errors only a DESFire badge or its cryptography raises."""

    code = ErrorCode.CARD_ERROR


class DesfireInputError(DesfireError):
    """Bytes given to a DESFire function have the wrong length or range (a key that is not
    16 bytes, a diversification input outside 1..31 bytes, a UID that is not 7 bytes).

    The message names the field and its length, never its value.
    """

    code = ErrorCode.MALFORMED


class OriginalitySignatureError(SignatureInvalidError):
    """The originality signature of a badge has the wrong length or verifies with none of the
    trusted NXP (or injected) public keys: the chip is not shown to be a genuine NXP chip."""
