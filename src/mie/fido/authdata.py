"""WebAuthn authenticator data (W3C WebAuthn §6.1), read strictly.

Layout: rpIdHash (32) ‖ flags (1) ‖ signCount (4, big-endian) ‖ [attested credential data:
AAGUID (16) ‖ credential id length (2) ‖ credential id ‖ COSE public key] ‖ [extensions: one
CBOR map]. The AT flag says the credential data is there, ED the extensions, and nothing else may
follow: with neither, the data is exactly 37 bytes. Reserved flag bits, BS without BE, a
credential id of 0 or more than 1023 bytes, and data beyond ``max_bytes`` are refused.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from mie.core import cbor
from mie.core.errors import CborFormatError
from mie.fido.cose import DEFAULT_ALGORITHMS, CoseKey
from mie.fido.errors import AuthDataFormatError

MIN_LENGTH = 37
MAX_LENGTH = 4096
"""The longest authenticator data read by default (a 1023-byte id and an RSA-4096 key fit)."""
MAX_CREDENTIAL_ID = 1023

UP, _RFU1, UV, BE, BS, _RFU2, AT, ED = (1 << bit for bit in range(8))
_RESERVED = _RFU1 | _RFU2
_CREDENTIAL_HEADER = 18


@dataclass(frozen=True)
class AuthFlags:
    """The flags byte.

    :param up: user present (the key was touched).
    :param uv: user verified (PIN or biometrics).
    :param be: backup eligible (the credential may be synced off the device).
    :param bs: backed up.
    :param at: attested credential data follows.
    :param ed: extensions follow.
    """

    up: bool
    uv: bool
    be: bool
    bs: bool
    at: bool
    ed: bool

    @classmethod
    def from_byte(cls, value: int) -> AuthFlags:
        """:return: the flags of ``value`` (reserved bits are the parser's business)."""
        return cls(*(bool(value & bit) for bit in (UP, UV, BE, BS, AT, ED)))


# Every flags byte's AuthFlags (frozen, so shared): built once, not at every parse.
_FLAGS = tuple(AuthFlags.from_byte(value) for value in range(256))


@dataclass(frozen=True)
class AttestedCredential:
    """The attested credential data of a registration.

    :param aaguid: the key model's AAGUID (16 bytes).
    :param credential_id: the credential id (1 to 1023 bytes).
    :param public_key: the credential key.
    :param raw_key: the COSE key exactly as the key encoded it.
    """

    aaguid: bytes
    credential_id: bytes
    public_key: CoseKey
    raw_key: bytes = field(repr=False)


@dataclass(frozen=True)
class AuthenticatorData:
    """Parsed authenticator data; ``raw`` is what the key signed.

    :param rp_id_hash: SHA-256 of the relying party id the key used.
    :param flags: the flags.
    :param sign_count: the signature counter (0 for a key without one).
    :param credential: the attested credential data (registration), else ``None``.
    :param extensions: the authenticator extension outputs, else ``None``.
    :param raw: the bytes parsed.
    """

    rp_id_hash: bytes
    flags: AuthFlags
    sign_count: int
    credential: AttestedCredential | None
    extensions: Mapping[str, Any] | None
    raw: bytes = field(repr=False)

    @classmethod
    def parse(
        cls,
        data: bytes,
        *,
        algorithms: Collection[int] = DEFAULT_ALGORITHMS,
        max_bytes: int = MAX_LENGTH,
    ) -> AuthenticatorData:
        """Read authenticator data.

        :param data: the bytes, as the key produced them.
        :param algorithms: the COSE algorithms accepted for an attested credential key.
        :param max_bytes: the longest data accepted.
        :raises AuthDataFormatError: the layout is broken (the message names the offset).
        :raises CoseKeyFormatError: the credential key is not a COSE key of its type.
        :raises AttestationRefusedError: its algorithm is not accepted.
        """
        if not isinstance(data, bytes):
            raise TypeError(f"Authenticator data must be bytes, not {type(data).__name__}")
        if not MIN_LENGTH <= len(data) <= max_bytes:
            raise AuthDataFormatError(
                f"Authenticator data of {len(data)} bytes, not {MIN_LENGTH} to {max_bytes}"
            )
        flags_byte = data[32]
        if flags_byte & _RESERVED:
            raise AuthDataFormatError(
                f"Authenticator data flags {flags_byte:02x}: reserved bits set"
            )
        flags = _FLAGS[flags_byte]
        if flags.bs and not flags.be:
            raise AuthDataFormatError("Authenticator data flags: backed up (BS) but not eligible")
        pos, credential, extensions = MIN_LENGTH, None, None
        if flags.at:
            credential, pos = _credential(data, pos, algorithms)
        if flags.ed:
            extensions, pos = _extensions(data, pos)
        if pos != len(data):
            raise AuthDataFormatError(
                f"Authenticator data: {len(data) - pos} trailing bytes at offset {pos}"
            )
        return cls(
            data[:32], flags, int.from_bytes(data[33:37], "big"), credential, extensions, data
        )


def _credential(
    data: bytes, pos: int, algorithms: Collection[int]
) -> tuple[AttestedCredential, int]:
    if len(data) < pos + _CREDENTIAL_HEADER:
        raise AuthDataFormatError(
            f"Authenticator data: AT flag set but no attested credential data at offset {pos}"
        )
    aaguid = data[pos : pos + 16]
    length = int.from_bytes(data[pos + 16 : pos + 18], "big")
    start = pos + _CREDENTIAL_HEADER
    if not 1 <= length <= MAX_CREDENTIAL_ID:
        raise AuthDataFormatError(
            f"Authenticator data: credential id of {length} bytes at offset {start}, "
            f"not 1 to {MAX_CREDENTIAL_ID}"
        )
    if start + length > len(data):
        raise AuthDataFormatError(
            f"Authenticator data: credential id of {length} bytes runs past the end"
        )
    key_start = start + length
    try:
        obj, end = cbor.decode_at(data, key_start, canonical=False, max_depth=2)
    except CborFormatError as e:
        raise AuthDataFormatError(f"Authenticator data: credential public key: {e}") from e
    public_key = CoseKey.parse(obj, algorithms=algorithms)
    raw_key = data[key_start:end]
    return AttestedCredential(aaguid, data[start:key_start], public_key, raw_key), end


def _extensions(data: bytes, pos: int) -> tuple[dict[str, Any], int]:
    try:
        obj, end = cbor.decode_at(data, pos, canonical=False)
    except CborFormatError as e:
        raise AuthDataFormatError(f"Authenticator data: extensions: {e}") from e
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) for k in obj):
        raise AuthDataFormatError(
            f"Authenticator data: extensions at offset {pos} are not a map of named outputs"
        )
    return obj, end
