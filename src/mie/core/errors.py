"""Exceptions raised by :mod:`mie`.

Every security-relevant check raises one of these; nothing returns ``False``. Errors that come
from a card keep the raw status word, and the layer that understands a status word translates
it into a semantic subclass while keeping the original as ``__cause__``.
"""

from __future__ import annotations

from mie.core.sw import describe_sw


class MieError(Exception):
    """Base class of every error raised by :mod:`mie`."""


class TlvError(MieError):
    """BER-TLV bytes that break the encoding rules (bad length, trailing bytes, non-minimal)."""


class ApduFormatError(MieError):
    """Command or response APDU bytes that cannot be decoded, or fields that cannot be encoded."""


class BadResponseError(MieError):
    """A card answered with bytes that do not match what the command defines."""


class ApduError(MieError):
    """A command completed with a status word other than ``9000``.

    :param data: the response data that came with the status word.
    :param sw: the status word, as one int (``0x6A82``).
    """

    def __init__(self, data: bytes, sw: int, message: str | None = None) -> None:
        self.data = data
        self.sw = sw
        super().__init__(message or f"APDU error, SW={sw:04X} ({describe_sw(sw)})")


class ApplicationNotAvailableError(ApduError):
    """The application or file addressed by a SELECT is not on the card."""


class SecurityStatusError(ApduError):
    """The card refused the command because a security condition is not met (``6982``)."""


class InvalidPinError(ApduError):
    """The card rejected the PIN.

    :param tries_left: PIN tries the card says remain.
    """

    def __init__(self, data: bytes, sw: int, tries_left: int) -> None:
        self.tries_left = tries_left
        super().__init__(data, sw, f"Invalid PIN, {tries_left} tries left")


class PinBlockedError(ApduError):
    """The PIN is blocked: no try remains (``6983``)."""

    def __init__(self, data: bytes, sw: int) -> None:
        super().__init__(data, sw, "PIN blocked")


class LastTryRefusedError(MieError):
    """One PIN try is left and the caller did not allow spending it; nothing was sent."""


class UnsupportedCardError(MieError):
    """The card is not one :mod:`mie` knows, or cannot do what was asked (e.g. sign contactless).

    :param atr: the card's ATR, when known.
    """

    def __init__(self, message: str, atr: bytes | None = None) -> None:
        self.atr = atr
        super().__init__(message)


class SignatureInvalidError(MieError):
    """A signature does not verify with the certificate's public key, or has the wrong length."""


class TransportError(MieError):
    """The link to the card failed (reader, daemon or card state)."""


class PcscUnavailableError(TransportError):
    """The PC/SC service (pcscd) is not running or cannot be reached."""


class NoReaderError(TransportError):
    """No reader, or not the named one, is connected."""


class NoCardError(TransportError):
    """The reader holds no card."""


class CardRemovedError(TransportError):
    """The card left the reader, or its emulator stopped, during use."""


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


class ReplayMismatchError(MieError):
    """A replayed session sent a command the recording does not have at that point."""
