"""All exceptions raised by :mod:`mie`, in one place for callers, and the contract's
:class:`ErrorCode` (each exception's ``code``).

Importing this module loads neither :mod:`mie.trust` nor asn1crypto. The exceptions of the
DESFire badges (:mod:`mie.desfire.errors`, the record and configuration), the key providers
(:mod:`mie.keys`), the verifier's store (:mod:`mie.store`) and the relay (:mod:`mie.relay`)
load on first use, from their modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mie.core.errors import (
    ApduError,
    ApduFormatError,
    ApplicationNotAvailableError,
    BadResponseError,
    CardRemovedError,
    CardResetError,
    ErrorCode,
    EvidenceFormatError,
    InvalidPinError,
    JsonFormatError,
    LastTryRefusedError,
    MieError,
    NoCardError,
    NonceMismatchError,
    NoReaderError,
    OriginMismatchError,
    PcscUnavailableError,
    PinBlockedError,
    PinFormatError,
    ReaderBusyError,
    ReplayMismatchError,
    SecureMessagingError,
    SecurityStatusError,
    SignatureInvalidError,
    TlvError,
    TransportError,
    TransportTimeoutError,
    UnsupportedCardError,
    VectorFormatError,
    VerificationError,
)

if TYPE_CHECKING:
    from mie.desfire.config import BadgeConfigError
    from mie.desfire.errors import (
        CardCryptogramError,
        DesfireAuthenticationError,
        DesfireError,
        DesfireInputError,
        DesfireStatusError,
        LegacyCryptoError,
        OriginalitySignatureError,
        RecordCopiedError,
        RecordFormatError,
        RecordUntrustedError,
        ResponseIntegrityError,
    )
    from mie.keys.base import (
        DiversificationInputError,
        KeyFileError,
        KeyNotFoundError,
        KeyPolicyError,
        KeyProviderError,
        ProviderClosedError,
        TokenLoginError,
    )
    from mie.relay.errors import (
        RelayClosedError,
        RelayProtocolError,
        RelayRefusedError,
        RelayTimeoutError,
    )
    from mie.store.errors import (
        AlreadyEnrolledError,
        NonceUnknownError,
        NotEnrolledError,
        SecondFactorChangedError,
        SecondFactorLockedError,
        StoreCorruptError,
        StoreError,
        StoreInputError,
        StoreTimeoutError,
        WrongSecondFactorError,
    )

# Name -> the module that defines it, imported on first use (the TYPE_CHECKING block above
# lists the same names).
_LAZY = {
    "BadgeConfigError": "mie.desfire.config",
    **dict.fromkeys(
        (
            "CardCryptogramError",
            "DesfireAuthenticationError",
            "DesfireError",
            "DesfireInputError",
            "DesfireStatusError",
            "LegacyCryptoError",
            "OriginalitySignatureError",
            "RecordCopiedError",
            "RecordFormatError",
            "RecordUntrustedError",
            "ResponseIntegrityError",
        ),
        "mie.desfire.errors",
    ),
    **dict.fromkeys(
        (
            "DiversificationInputError",
            "KeyFileError",
            "KeyNotFoundError",
            "KeyPolicyError",
            "KeyProviderError",
            "ProviderClosedError",
            "TokenLoginError",
        ),
        "mie.keys.base",
    ),
    **dict.fromkeys(
        (
            "AlreadyEnrolledError",
            "NonceUnknownError",
            "NotEnrolledError",
            "SecondFactorChangedError",
            "SecondFactorLockedError",
            "StoreCorruptError",
            "StoreError",
            "StoreInputError",
            "StoreTimeoutError",
            "WrongSecondFactorError",
        ),
        "mie.store.errors",
    ),
    **dict.fromkeys(
        ("RelayClosedError", "RelayProtocolError", "RelayRefusedError", "RelayTimeoutError"),
        "mie.relay.errors",
    ),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mie.errors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "AlreadyEnrolledError",
    "ApduError",
    "ApduFormatError",
    "ApplicationNotAvailableError",
    "BadResponseError",
    "BadgeConfigError",
    "CardCryptogramError",
    "CardRemovedError",
    "CardResetError",
    "DesfireAuthenticationError",
    "DesfireError",
    "DesfireInputError",
    "DesfireStatusError",
    "DiversificationInputError",
    "ErrorCode",
    "EvidenceFormatError",
    "InvalidPinError",
    "JsonFormatError",
    "KeyFileError",
    "KeyNotFoundError",
    "KeyPolicyError",
    "KeyProviderError",
    "LastTryRefusedError",
    "LegacyCryptoError",
    "MieError",
    "NoCardError",
    "NoReaderError",
    "NonceMismatchError",
    "NonceUnknownError",
    "NotEnrolledError",
    "OriginMismatchError",
    "OriginalitySignatureError",
    "PcscUnavailableError",
    "PinBlockedError",
    "PinFormatError",
    "ProviderClosedError",
    "ReaderBusyError",
    "RecordCopiedError",
    "RecordFormatError",
    "RecordUntrustedError",
    "RelayClosedError",
    "RelayProtocolError",
    "RelayRefusedError",
    "RelayTimeoutError",
    "ReplayMismatchError",
    "ResponseIntegrityError",
    "SecondFactorChangedError",
    "SecondFactorLockedError",
    "SecureMessagingError",
    "SecurityStatusError",
    "SignatureInvalidError",
    "StoreCorruptError",
    "StoreError",
    "StoreInputError",
    "StoreTimeoutError",
    "TlvError",
    "TokenLoginError",
    "TransportError",
    "TransportTimeoutError",
    "UnsupportedCardError",
    "VectorFormatError",
    "VerificationError",
    "WrongSecondFactorError",
]
