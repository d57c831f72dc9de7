"""Exceptions specific to MIFARE DESFire badges.

A response MAC that does not verify raises :class:`ResponseIntegrityError` (``integrity_error``,
defined in :mod:`mie.core.errors` and shared with every secure channel), a badge that refuses the
reader's cryptogram :class:`DesfireAuthenticationError` (``key_mismatch``), a badge whose answer
does not carry RndA' :class:`CardCryptogramError` (``suspected_clone``). No message here ever
contains key material: only lengths and names.
"""

from __future__ import annotations

from mie.core.errors import (
    ApduError,
    ErrorCode,
    MieError,
    SecureMessagingError,
    SignatureInvalidError,
    UnsupportedCardError,
)
from mie.core.errors import ResponseIntegrityError as ResponseIntegrityError


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

    code = ErrorCode.NOT_GENUINE


# --- Identity record (issue 9, item 4, WP-A) ------------------------------------------------


class RecordFormatError(DesfireError, ValueError):
    """The bytes of a badge identity record (:mod:`mie.desfire.record`) do not follow its
    format: a wrong size, tag, length or order, a bad date or national identifier, or bytes
    other than zeros after the signature. Also raised for record fields given out of range."""

    code = ErrorCode.MALFORMED


class RecordUntrustedError(DesfireError):
    """A well-formed identity record that no trusted enrolment authority signed.

    :param reason: :attr:`UNKNOWN_AUTHORITY` (its authority key id names no trusted key) or
        :attr:`BAD_SIGNATURE` (the named key's signature does not verify: an edited record).
    :param message: one line.
    """

    code = ErrorCode.RECORD_UNTRUSTED
    UNKNOWN_AUTHORITY = "unknown_authority"
    BAD_SIGNATURE = "bad_signature"

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class RecordCopiedError(DesfireError):
    """A validly signed identity record read from a badge it was not issued for.

    :param reason: :attr:`UID` (the record's UID is not the badge's real UID) or :attr:`AID`
        (the record names another application than the one it was read from).
    :param message: one line.
    """

    code = ErrorCode.RECORD_COPIED
    UID = "uid"
    AID = "aid"

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class DesfireStatusError(ApduError, DesfireError):
    """The badge answered a native status other than success (``91xx``, ``xx`` not ``00``).

    :param data: the response data that came with the status.
    :param sw: the whole status word (``0x919D``).
    :param command: the native command code that was answered.
    """

    def __init__(self, data: bytes, sw: int, command: int, message: str | None = None) -> None:
        from mie.desfire.constants import Status

        self.status = Status(sw & 0xFF)
        self.command = command
        super().__init__(
            data,
            sw,
            message or f"DESFire command {command:02X} answered {self.status.name} (SW {sw:04X})",
        )


class DesfireAuthenticationError(DesfireStatusError):
    """The badge refused the reader's authentication cryptogram (``91AE``): another key (a badge
    enrolled under another master key, not enrolled, a wrong key number); the badge is
    untouched."""

    code = ErrorCode.KEY_MISMATCH


class CardCryptogramError(SecureMessagingError, DesfireError):
    """The badge's answer to an authentication does not prove it knows the key: RndA' is not
    RndA rotated (a reader impersonated, or a clone). A secure channel that failed to open, so
    a failed check (exit 1), as a MAC that does not verify."""

    code = ErrorCode.SUSPECTED_CLONE


class LegacyCryptoError(UnsupportedCardError, DesfireError):
    """The badge's application uses DES/3DES keys and the caller did not opt in to legacy
    crypto (``BadgeConfig.legacy``); nothing was authenticated."""

    code = ErrorCode.LEGACY_CRYPTO
