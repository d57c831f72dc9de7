"""All exceptions raised by :mod:`mie`, in one place for callers, and the contract's
:class:`ErrorCode` (each exception's ``code``).

Importing this module loads neither :mod:`mie.trust` nor asn1crypto. The exceptions of the
DESFire badges (:mod:`mie.desfire.errors`, the record and configuration), the key providers
(:mod:`mie.keys`), the verifier's store (:mod:`mie.store`, the FIDO2 credentials' outcomes
included), the relay (:mod:`mie.relay`) and the FIDO2 security keys (:mod:`mie.fido.errors`)
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
    CborFormatError,
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
    PinAuthBlockedError,
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
    from mie.fido.errors import (
        AttestationInvalidError,
        AttestationRefusedError,
        AuthDataFormatError,
        ClientDataFormatError,
        CoseKeyFormatError,
        CtapStatusError,
        FidoPolicyError,
        MetadataFormatError,
        MetadataStaleError,
        MetadataStatusError,
        MetadataUntrustedError,
        PinNotSetError,
        RpIdMismatchError,
        TouchTimeoutError,
        UnknownAaguidError,
        UserNotPresentError,
        UserNotVerifiedError,
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
        AlreadyRegisteredError,
        AuditConflictError,
        CloneSuspectedError,
        CounterUnsupportedError,
        CredentialUnknownError,
        MieRevokedError,
        NonceUnknownError,
        NotEnrolledError,
        SecondFactorChangedError,
        SecondFactorLockedError,
        StoreCorruptError,
        StoreError,
        StoreInputError,
        StoreTimeoutError,
        TemporaryExpiredError,
        TemporaryIdentityError,
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
            "AttestationInvalidError",
            "AttestationRefusedError",
            "AuthDataFormatError",
            "ClientDataFormatError",
            "CoseKeyFormatError",
            "CtapStatusError",
            "FidoPolicyError",
            "MetadataFormatError",
            "MetadataStaleError",
            "MetadataStatusError",
            "MetadataUntrustedError",
            "PinNotSetError",
            "RpIdMismatchError",
            "TouchTimeoutError",
            "UnknownAaguidError",
            "UserNotPresentError",
            "UserNotVerifiedError",
        ),
        "mie.fido.errors",
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
            "AlreadyRegisteredError",
            "AuditConflictError",
            "CloneSuspectedError",
            "CounterUnsupportedError",
            "CredentialUnknownError",
            "MieRevokedError",
            "NonceUnknownError",
            "NotEnrolledError",
            "SecondFactorChangedError",
            "SecondFactorLockedError",
            "StoreCorruptError",
            "StoreError",
            "StoreInputError",
            "StoreTimeoutError",
            "TemporaryExpiredError",
            "TemporaryIdentityError",
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
    "AlreadyRegisteredError",
    "ApduError",
    "ApduFormatError",
    "ApplicationNotAvailableError",
    "AttestationInvalidError",
    "AttestationRefusedError",
    "AuditConflictError",
    "AuthDataFormatError",
    "BadResponseError",
    "BadgeConfigError",
    "CardCryptogramError",
    "CardRemovedError",
    "CardResetError",
    "CborFormatError",
    "ClientDataFormatError",
    "CloneSuspectedError",
    "CoseKeyFormatError",
    "CounterUnsupportedError",
    "CredentialUnknownError",
    "CtapStatusError",
    "DesfireAuthenticationError",
    "DesfireError",
    "DesfireInputError",
    "DesfireStatusError",
    "DiversificationInputError",
    "ErrorCode",
    "EvidenceFormatError",
    "FidoPolicyError",
    "InvalidPinError",
    "JsonFormatError",
    "KeyFileError",
    "KeyNotFoundError",
    "KeyPolicyError",
    "KeyProviderError",
    "LastTryRefusedError",
    "LegacyCryptoError",
    "MetadataFormatError",
    "MetadataStaleError",
    "MetadataStatusError",
    "MetadataUntrustedError",
    "MieError",
    "MieRevokedError",
    "NoCardError",
    "NoReaderError",
    "NonceMismatchError",
    "NonceUnknownError",
    "NotEnrolledError",
    "OriginMismatchError",
    "OriginalitySignatureError",
    "PcscUnavailableError",
    "PinAuthBlockedError",
    "PinBlockedError",
    "PinFormatError",
    "PinNotSetError",
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
    "RpIdMismatchError",
    "SecondFactorChangedError",
    "SecondFactorLockedError",
    "SecureMessagingError",
    "SecurityStatusError",
    "SignatureInvalidError",
    "StoreCorruptError",
    "StoreError",
    "StoreInputError",
    "StoreTimeoutError",
    "TemporaryExpiredError",
    "TemporaryIdentityError",
    "TlvError",
    "TokenLoginError",
    "TouchTimeoutError",
    "TransportError",
    "TransportTimeoutError",
    "UnknownAaguidError",
    "UnsupportedCardError",
    "UserNotPresentError",
    "UserNotVerifiedError",
    "VectorFormatError",
    "VerificationError",
    "WrongSecondFactorError",
]
