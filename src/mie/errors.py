"""All exceptions raised by :mod:`mie`, in one place for callers."""

from __future__ import annotations

from mie.core.errors import (
    ApduError,
    ApduFormatError,
    ApplicationNotAvailableError,
    BadResponseError,
    CardRemovedError,
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
    TlvError,
    TransportError,
    TransportTimeoutError,
    VectorFormatError,
)

__all__ = [
    "ApduError",
    "ApduFormatError",
    "ApplicationNotAvailableError",
    "BadResponseError",
    "CardRemovedError",
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
    "TlvError",
    "TransportError",
    "TransportTimeoutError",
    "VectorFormatError",
]
