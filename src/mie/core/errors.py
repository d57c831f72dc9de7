"""Exceptions raised by :mod:`mie`, and the error codes of the CLI/JSON contract.

Every security-relevant check raises one of these; nothing returns ``False``. Errors that come
from a card keep the raw status word, and the layer that understands a status word translates
it into a semantic subclass while keeping the original as ``__cause__``.

Each class names its contract code in :attr:`MieError.code`, so the library, not the CLI,
decides what ``error.code`` a failure carries.
"""

from __future__ import annotations

import re
from enum import StrEnum, unique

from mie.core.sw import describe_sw


@unique
class ErrorCode(StrEnum):
    """The error codes of the CLI/JSON contract (``error.code``); a value is the contract string."""

    # Certificate, chain and revocation checks.
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    REVOKED = "revoked"
    UNTRUSTED = "untrusted"
    BAD_SIGNATURE = "bad_signature"
    NAME_CHAINING = "name_chaining"
    NOT_CA = "not_ca"
    PATH_LENGTH = "path_length"
    KEY_USAGE = "key_usage"
    POLICY = "policy"
    UNKNOWN_CRITICAL_EXTENSION = "unknown_critical_extension"
    REVOCATION_UNKNOWN = "revocation_unknown"
    MALFORMED = "malformed"
    # Authentication.
    INVALID_PIN = "invalid_pin"
    LAST_TRY_REFUSED = "last_try_refused"
    PIN_BLOCKED = "pin_blocked"
    NO_CARD = "no_card"
    CARD_REMOVED = "card_removed"
    UNSUPPORTED_CARD = "unsupported_card"
    SIGNATURE_INVALID = "signature_invalid"
    CARD_ERROR = "card_error"
    READER_ERROR = "reader_error"
    NONCE_MISMATCH = "nonce_mismatch"
    ORIGIN_MISMATCH = "origin_mismatch"
    # DESFire badges and their relay (issue 9).
    KEY_MISMATCH = "key_mismatch"
    SUSPECTED_CLONE = "suspected_clone"
    INTEGRITY_ERROR = "integrity_error"
    RECORD_UNTRUSTED = "record_untrusted"
    RECORD_COPIED = "record_copied"
    NOT_GENUINE = "not_genuine"
    LEGACY_CRYPTO = "legacy_crypto"
    RELAY_REFUSED = "relay_refused"
    # FIDO2 security keys (issue 10, plan D7).
    RP_ID_MISMATCH = "rp_id_mismatch"
    USER_NOT_PRESENT = "user_not_present"
    USER_NOT_VERIFIED = "user_not_verified"
    CREDENTIAL_UNKNOWN = "credential_unknown"
    ALREADY_REGISTERED = "already_registered"
    COUNTER_UNSUPPORTED = "counter_unsupported"
    ATTESTATION_REFUSED = "attestation_refused"
    ATTESTATION_INVALID = "attestation_invalid"
    AAGUID_UNKNOWN = "aaguid_unknown"
    METADATA_STATUS = "metadata_status"
    METADATA_UNTRUSTED = "metadata_untrusted"
    METADATA_STALE = "metadata_stale"
    PIN_AUTH_BLOCKED = "pin_auth_blocked"
    PIN_NOT_SET = "pin_not_set"
    # The verification service and its shared state (issue 11, plan D4).
    NONCE_UNKNOWN = "nonce_unknown"
    STORE_UNAVAILABLE = "store_unavailable"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    TOO_LARGE = "too_large"
    INTERNAL_ERROR = "internal_error"
    # The command line could not be carried out as given.
    USAGE = "usage"


class MieError(Exception):
    """Base class of every error raised by :mod:`mie`.

    ``code`` is the contract code of the failure. Every subclass has one (most fix it,
    :class:`VerificationError` sets it per instance); this base class has ``None`` and is never
    raised itself, so :meth:`mie.result.ErrorInfo.from_exception` maps every mie error.
    """

    code: ErrorCode | None = None


class TlvError(MieError):
    """BER-TLV bytes that break the encoding rules (bad length, trailing bytes, non-minimal)."""

    code = ErrorCode.MALFORMED


class ApduFormatError(MieError):
    """Command or response APDU bytes that cannot be decoded, or fields that cannot be encoded."""

    code = ErrorCode.MALFORMED


class BadResponseError(MieError):
    """A card answered with bytes that do not match what the command defines."""

    code = ErrorCode.MALFORMED


class ApduError(MieError):
    """A command completed with a status word other than ``9000``.

    :param data: the response data that came with the status word.
    :param sw: the status word, as one int (``0x6A82``).
    """

    code = ErrorCode.CARD_ERROR

    def __init__(self, data: bytes, sw: int, message: str | None = None) -> None:
        self.data = data
        self.sw = sw
        super().__init__(message or f"APDU error, SW={sw:04X} ({describe_sw(sw)})")


class ApplicationNotAvailableError(ApduError):
    """The application or file addressed by a SELECT is not on the card."""


class SecurityStatusError(ApduError):
    """The card refused the command because a security condition is not met (``6982``)."""


class SecureMessagingError(MieError):
    """A secure channel failed: a response MAC that does not verify, or a cryptogram that does
    not decode. The channel is dropped."""

    code = ErrorCode.CARD_ERROR


class ResponseIntegrityError(SecureMessagingError):
    """A protected response does not verify: its MAC, CRC or padding is wrong, it is too short
    for its MAC, it was replayed, or the command counter would overflow. No data is returned and
    the channel is dropped."""

    code = ErrorCode.INTEGRITY_ERROR


class PinFormatError(MieError, ValueError):
    """A PIN that the authenticator's format rule refuses; nothing was sent.

    The message never contains the PIN. Also a :class:`ValueError`, which is what PIN format
    checks raised before this class existed.
    """

    code = ErrorCode.MALFORMED


class InvalidPinError(MieError):
    """The authenticator rejected the PIN; the status word (or CTAP error) is the ``__cause__``.

    :param tries_left: PIN tries the authenticator says remain.
    """

    code = ErrorCode.INVALID_PIN

    def __init__(self, tries_left: int) -> None:
        self.tries_left = tries_left
        tries = "try" if tries_left == 1 else "tries"
        super().__init__(f"Invalid PIN, {tries_left} {tries} left")


class PinBlockedError(MieError):
    """The PIN is blocked: no try remains; the status word (``6983``) is the ``__cause__``."""

    code = ErrorCode.PIN_BLOCKED

    def __init__(self, message: str = "PIN blocked") -> None:
        super().__init__(message)


class PinAuthBlockedError(PinBlockedError):
    """Too many wrong PINs in a row (three on a FIDO2 key, CTAP ``PIN_AUTH_BLOCKED``): the key
    refuses any PIN until it is power-cycled (unplugged and plugged again). The tries left are
    not all spent, so this is not ``pin_blocked``."""

    code = ErrorCode.PIN_AUTH_BLOCKED

    def __init__(
        self, message: str = "PIN blocked until the key is unplugged and plugged in again"
    ) -> None:
        super().__init__(message)


class LastTryRefusedError(MieError):
    """One PIN try is left and the caller did not allow spending it; nothing was sent."""

    code = ErrorCode.LAST_TRY_REFUSED

    def __init__(
        self,
        message: str = "One PIN try left: not presenting the PIN unless the last try is allowed",
    ) -> None:
        super().__init__(message)


class UnsupportedCardError(MieError):
    """The card is not one :mod:`mie` knows, or cannot do what was asked (e.g. sign contactless).

    :param atr: the card's ATR, when known.
    """

    code = ErrorCode.UNSUPPORTED_CARD

    def __init__(self, message: str, atr: bytes | None = None) -> None:
        self.atr = atr
        super().__init__(message)


class SignatureInvalidError(MieError):
    """A signature does not verify with the certificate's public key, or has the wrong length."""

    code = ErrorCode.SIGNATURE_INVALID


class NonceMismatchError(MieError):
    """Evidence was made for another nonce than the one the verifier expects."""

    code = ErrorCode.NONCE_MISMATCH


class OriginMismatchError(MieError):
    """Evidence was made for another origin (relying party) than the verifier's."""

    code = ErrorCode.ORIGIN_MISMATCH


class EvidenceFormatError(MieError):
    """Evidence that is valid JSON but not of the evidence format (unknown ``type``, a missing or
    extra field, bad hex)."""

    code = ErrorCode.MALFORMED


class CborFormatError(MieError):
    """Bytes that are not the strict CBOR :mod:`mie.core.cbor` reads (a truncated item, an
    indefinite length, a tag or float, a duplicate map key, trailing bytes, nesting too deep,
    or, in canonical mode, a non-minimal encoding or map keys out of order).

    :param problem: what is wrong, in a few words.
    :param offset: where in the input, in bytes from its start.
    """

    code = ErrorCode.MALFORMED

    def __init__(self, problem: str, offset: int) -> None:
        self.problem = problem
        self.offset = offset
        super().__init__(f"CBOR at offset {offset}: {problem}")


class JsonFormatError(MieError):
    """Bytes that are not the strict JSON :mod:`mie` reads (not UTF-8, too large, duplicate keys,
    too deeply nested)."""

    code = ErrorCode.MALFORMED


class TransportError(MieError):
    """The link to the card failed (reader, daemon or card state)."""

    code = ErrorCode.READER_ERROR


class PcscUnavailableError(TransportError):
    """The PC/SC service (pcscd) is not running or cannot be reached."""


class NoReaderError(TransportError):
    """No reader, or not the named one, is connected."""


class NoCardError(TransportError):
    """The reader holds no card."""

    code = ErrorCode.NO_CARD


class CardRemovedError(TransportError):
    """The card left the reader, or its emulator stopped, during use."""

    code = ErrorCode.CARD_REMOVED


class CardResetError(TransportError):
    """The card was reset while a transaction held it: the state of the session is lost.

    A card left in the reader, not a removal; a reset by another process before a transaction
    begins is recovered by the PC/SC backend and never raised.
    """


class ReaderBusyError(TransportError):
    """Another process holds the reader exclusively."""


class TransportTimeoutError(TransportError):
    """A wait on the reader or card did not finish in the time allowed."""


class VectorFormatError(MieError):
    """A recorded vector file does not follow the vector format."""

    code = ErrorCode.MALFORMED


class ReplayMismatchError(MieError):
    """A replayed session sent a command the recording does not have at that point."""

    code = ErrorCode.READER_ERROR


class VerificationError(MieError):
    """A certificate, chain, CRL or OCSP answer failed a check.

    ``code`` is one of the contract codes; ``malformed`` means the input itself could not be
    read (exit 2 from the CLI), every other code is a failed check on well-formed input (exit 1).

    :param code: the reason.
    :param message: one line naming the problem (and the file, for unreadable input); line
        breaks are folded into spaces, since the CLI contract is one line on stderr.
    """

    code: ErrorCode

    def __init__(self, code: ErrorCode, message: str) -> None:
        self.code = code
        self.message = one_line(message)
        super().__init__(self.message)

    @property
    def is_malformed(self) -> bool:
        """:return: whether the input could not be read at all."""
        return self.code is ErrorCode.MALFORMED


_SPACES = re.compile(r"\s+")


def one_line(text: str) -> str:
    """:return: ``text`` with every run of white space (line breaks included) made one space."""
    return _SPACES.sub(" ", text).strip()
