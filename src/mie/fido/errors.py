"""Exceptions of :mod:`mie.fido`: FIDO2 registration, assertion and attestation outcomes.

Each names its contract code (plan D7). The PIN outcomes are the cards' ones
(:class:`~mie.core.errors.InvalidPinError`, :class:`~mie.core.errors.PinBlockedError`,
:class:`~mie.core.errors.PinAuthBlockedError`); malformed bytes are ``malformed``
(:class:`~mie.core.errors.CborFormatError` and the format errors below). This module imports
no python-fido2: a CTAP status is kept as its integer.

The four outcomes of the credential store (:class:`CredentialUnknownError`,
:class:`AlreadyRegisteredError`, :class:`CloneSuspectedError`, :class:`CounterUnsupportedError`)
are defined in :mod:`mie.store.errors` and re-exported here, loaded on first use: importing this
module loads no :mod:`mie.store`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mie.core.errors import (
    CborFormatError,
    ErrorCode,
    MieError,
    PinAuthBlockedError,
    TransportTimeoutError,
)

if TYPE_CHECKING:
    from mie.store.errors import (
        AlreadyRegisteredError,
        CloneSuspectedError,
        CounterUnsupportedError,
        CredentialUnknownError,
    )

# The store's outcomes, imported from mie.store.errors on first use (the TYPE_CHECKING block
# above lists the same names).
_STORE_ERRORS = frozenset(
    {
        "AlreadyRegisteredError",
        "CloneSuspectedError",
        "CounterUnsupportedError",
        "CredentialUnknownError",
    }
)


def __getattr__(name: str) -> Any:
    if name not in _STORE_ERRORS:
        raise AttributeError(f"module 'mie.fido.errors' has no attribute {name!r}")
    value = getattr(importlib.import_module("mie.store.errors"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_STORE_ERRORS})


__all__ = [
    "AlreadyRegisteredError",
    "AttestationInvalidError",
    "AttestationRefusedError",
    "AuthDataFormatError",
    "CborFormatError",
    "ClientDataFormatError",
    "CloneSuspectedError",
    "CoseKeyFormatError",
    "CounterUnsupportedError",
    "CredentialUnknownError",
    "CtapStatusError",
    "FidoPolicyError",
    "MetadataFormatError",
    "MetadataStaleError",
    "MetadataStatusError",
    "MetadataUntrustedError",
    "PinAuthBlockedError",
    "PinNotSetError",
    "RpIdMismatchError",
    "TouchTimeoutError",
    "UnknownAaguidError",
    "UserNotPresentError",
    "UserNotVerifiedError",
]


class AuthDataFormatError(MieError):
    """Authenticator data that breaks its layout: too short or too long, flags with reserved
    bits or BS without BE, an AT flag without attested credential data, a credential id length
    out of range, extensions that are not one CBOR map, or trailing bytes."""

    code = ErrorCode.MALFORMED


class ClientDataFormatError(MieError):
    """Client data JSON that is not the strict WebAuthn dictionary :mod:`mie` reads: not one
    JSON object, a missing or ill-typed member, a challenge that is not unpadded base64url of
    16 to 1024 bytes, a bad origin, ``crossOrigin`` true, or a ``topOrigin``."""

    code = ErrorCode.MALFORMED


class CoseKeyFormatError(MieError):
    """A COSE public key with missing, extra or ill-typed parameters, or a point that is not on
    its curve."""

    code = ErrorCode.MALFORMED


class MetadataFormatError(MieError):
    """A FIDO metadata (MDS3) blob that cannot be read: not a JWS, bad base64url or JSON."""

    code = ErrorCode.MALFORMED


class FidoPolicyError(MieError, ValueError):
    """A FIDO policy or AAGUID allowlist file that cannot be read or breaks its format."""

    code = ErrorCode.MALFORMED


class RpIdMismatchError(MieError):
    """The authenticator data's rpIdHash is not SHA-256 of the configured relying party id, or
    the evidence names another relying party id than the policy's."""

    code = ErrorCode.RP_ID_MISMATCH


class UserNotPresentError(MieError):
    """The authenticator data's UP flag is clear: nobody touched the key."""

    code = ErrorCode.USER_NOT_PRESENT


class UserNotVerifiedError(MieError):
    """The UV flag is clear while the policy requires user verification (PIN or biometrics)."""

    code = ErrorCode.USER_NOT_VERIFIED


class AttestationRefusedError(MieError):
    """The policy does not take this attestation (self or none under an attested-only policy),
    attestation format or credential algorithm."""

    code = ErrorCode.ATTESTATION_REFUSED


class AttestationInvalidError(MieError):
    """A packed attestation statement whose certificate breaks the FIDO profile (version, CA
    flag, subject), whose AAGUID extension is missing, critical or another AAGUID, or whose
    ``alg`` or ``x5c`` is wrong."""

    code = ErrorCode.ATTESTATION_INVALID


class UnknownAaguidError(MieError):
    """The key's model (AAGUID) is not in the allowlist, or not in the FIDO metadata when the
    policy requires it."""

    code = ErrorCode.AAGUID_UNKNOWN


class MetadataStatusError(MieError):
    """The FIDO metadata of the key's model reports a status the policy refuses, or a
    certification level below its minimum."""

    code = ErrorCode.METADATA_STATUS


class MetadataUntrustedError(MieError):
    """The FIDO metadata blob's signature, algorithm or certificate chain does not verify."""

    code = ErrorCode.METADATA_UNTRUSTED


class MetadataStaleError(MieError):
    """The FIDO metadata blob is past its ``nextUpdate``, or not newer than the one accepted."""

    code = ErrorCode.METADATA_STALE


class PinNotSetError(MieError):
    """User verification is required and the key has neither a PIN nor built-in verification."""

    code = ErrorCode.PIN_NOT_SET


class TouchTimeoutError(TransportTimeoutError):
    """Nobody touched the key in time, or the wait for the touch was cancelled."""


class CtapStatusError(MieError):
    """The key answered with a CTAP status the caller has no meaning for.

    :param status: the CTAP status byte (python-fido2's ``CtapError.ERR`` value).
    """

    code = ErrorCode.CARD_ERROR

    def __init__(self, status: int, message: str | None = None) -> None:
        self.status = status
        super().__init__(message or f"CTAP error 0x{status:02X}")
