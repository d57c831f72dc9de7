"""All exceptions raised by :mod:`mie`, in one place for callers."""

from __future__ import annotations

from mie.core.errors import (
    ApduError,
    ApduFormatError,
    ApplicationNotAvailableError,
    BadResponseError,
    CardRemovedError,
    CardResetError,
    InvalidPinError,
    LastTryRefusedError,
    MieError,
    NoCardError,
    NoReaderError,
    PcscUnavailableError,
    PinBlockedError,
    ReaderBusyError,
    ReplayMismatchError,
    SecurityStatusError,
    SignatureInvalidError,
    TlvError,
    TransportError,
    TransportTimeoutError,
    UnsupportedCardError,
    VectorFormatError,
)

__all__ = [
    "ApduError",
    "ApduFormatError",
    "ApplicationNotAvailableError",
    "BadResponseError",
    "CardRemovedError",
    "CardResetError",
    "InvalidPinError",
    "LastTryRefusedError",
    "MieError",
    "NoCardError",
    "NoReaderError",
    "PcscUnavailableError",
    "PinBlockedError",
    "ReaderBusyError",
    "ReplayMismatchError",
    "SecurityStatusError",
    "SignatureInvalidError",
    "TlvError",
    "TransportError",
    "TransportTimeoutError",
    "UnsupportedCardError",
    "VectorFormatError",
]

# Certificate-chain checks (mie.trust): one type, the contract code in ``code``.
from mie.trust.errors import VerificationError

__all__ += ["VerificationError"]
