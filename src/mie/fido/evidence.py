"""The evidence a FIDO2 key's assertion leaves: what WebAuthn calls an authentication response.

:class:`WebAuthnAssertionEvidence` is registered in the :class:`mie.evidence.Evidence` union
under the type ``webauthn-assertion`` when this module is imported
(:meth:`mie.evidence.Evidence.from_json` imports it on first use). Its JSON, strict and in
lower-case hex like the other kinds::

    {"type": "webauthn-assertion", "nonce": hex, "origin": str, "rp_id": str,
     "credential_id": hex (1..1023 bytes), "authenticator_data": hex (37..1024),
     "client_data_json": hex (1..4096), "signature": hex (1..1024),
     "user_handle": hex (1..64) | null, "revocation": null}

The key signed ``authenticator_data ‖ SHA-256(client_data_json)``; the client data carries the
challenge (the request's nonce itself, plan D1) and the origin, so any WebAuthn verifier can check
the same assertion: :meth:`~WebAuthnAssertionEvidence.to_webauthn` gives the W3C JSON
(``AuthenticationResponseJSON``, base64url) that python-fido2's ``Fido2Server`` and py_webauthn
take, and :meth:`~WebAuthnAssertionEvidence.from_webauthn` reads it back (from a browser, or
python-fido2's ``AuthenticationResponse``, which is such a mapping). Nothing here is verified: see
:class:`mie.fido.assertion.FidoVerifier`.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from mie.core.errors import EvidenceFormatError
from mie.evidence import Evidence, check_fields, hex_field, shown, str_field
from mie.fido import _base64url
from mie.request import MAX_NONCE_BYTES, MIN_NONCE_BYTES, check_origin
from mie.store.base import RP_ID_PATTERN

MAX_CREDENTIAL_ID = 1023
MIN_AUTHENTICATOR_DATA, MAX_AUTHENTICATOR_DATA = 37, 1024
MAX_CLIENT_DATA = 4096
MAX_SIGNATURE = 1024
MAX_USER_HANDLE = 64

_NONCE_SIZES = range(MIN_NONCE_BYTES, MAX_NONCE_BYTES + 1)
_SIZES = {
    "credential_id": range(1, MAX_CREDENTIAL_ID + 1),
    "authenticator_data": range(MIN_AUTHENTICATOR_DATA, MAX_AUTHENTICATOR_DATA + 1),
    "client_data_json": range(1, MAX_CLIENT_DATA + 1),
    "signature": range(1, MAX_SIGNATURE + 1),
}
_CREDENTIAL_ID_SIZES = _SIZES["credential_id"]
_AUTHENTICATOR_DATA_SIZES = _SIZES["authenticator_data"]
_CLIENT_DATA_SIZES = _SIZES["client_data_json"]
_SIGNATURE_SIZES = _SIZES["signature"]
_USER_HANDLE_SIZES = range(1, MAX_USER_HANDLE + 1)
_ATTACHMENTS = (None, "platform", "cross-platform")
_CREDENTIAL = ("id", "rawId", "type", "response")
_CREDENTIAL_OPTIONAL = ("clientExtensionResults", "authenticatorAttachment")
_RESPONSE = ("clientDataJSON", "authenticatorData", "signature")
_FIELDS = (
    "type",
    "nonce",
    "origin",
    "rp_id",
    "credential_id",
    "authenticator_data",
    "client_data_json",
    "signature",
    "user_handle",
)


def check_rp_id(rp_id: object) -> str:
    """:return: ``rp_id``, a lower-case host name of 1 to 253 characters.

    :raises ValueError: anything else.
    :raises TypeError: not a string.
    """
    if not isinstance(rp_id, str):
        raise TypeError(f"The rp_id must be a str, not {type(rp_id).__name__}")
    if RP_ID_PATTERN.fullmatch(rp_id) is None:
        raise ValueError(f"The rp_id {shown(rp_id)} is not a lower-case host name")
    return rp_id


@Evidence.register
@dataclass(frozen=True, repr=False)
class WebAuthnAssertionEvidence(Evidence):
    """What a FIDO2 key produced for one request; see the module docstring.

    :param nonce: the request's nonce (the WebAuthn challenge).
    :param origin: the request's origin.
    :param rp_id: the relying party id the key was asked for.
    :param credential_id: the credential that signed (1 to 1023 bytes).
    :param authenticator_data: the authenticator data the key signed (37 to 1024 bytes).
    :param client_data_json: the client data whose SHA-256 the key signed (1 to 4096 bytes).
    :param signature: the assertion signature (1 to 1024 bytes).
    :param user_handle: the ``user.id`` the key returned (1 to 64 bytes), or ``None``.
    :raises ValueError: a field of the wrong size, an origin or rp_id that is not one.
    :raises TypeError: a field of the wrong type.
    """

    type: ClassVar[str] = "webauthn-assertion"
    nonce: bytes
    origin: str
    rp_id: str
    credential_id: bytes
    authenticator_data: bytes
    client_data_json: bytes
    signature: bytes
    user_handle: bytes | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.nonce, bytes):
            raise TypeError("The nonce must be bytes")
        if len(self.nonce) not in _NONCE_SIZES:
            raise ValueError(
                f"The nonce has {len(self.nonce)} bytes, not {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES}"
            )
        check_origin(self.origin)
        check_rp_id(self.rp_id)
        for name, value, sizes in (
            ("credential_id", self.credential_id, _CREDENTIAL_ID_SIZES),
            ("authenticator_data", self.authenticator_data, _AUTHENTICATOR_DATA_SIZES),
            ("client_data_json", self.client_data_json, _CLIENT_DATA_SIZES),
            ("signature", self.signature, _SIGNATURE_SIZES),
        ):
            if not isinstance(value, bytes):
                raise TypeError(f"The {name} must be bytes")
            if len(value) not in sizes:
                raise ValueError(
                    f"The {name} has {len(value)} bytes, not {sizes.start} to {sizes.stop - 1}"
                )
        handle = self.user_handle
        if handle is not None and not isinstance(handle, bytes):
            raise TypeError("The user_handle must be bytes or None")
        if handle is not None and len(handle) not in _USER_HANDLE_SIZES:
            raise ValueError(f"The user_handle has {len(handle)} bytes, not 1 to {MAX_USER_HANDLE}")

    def to_json(self) -> dict[str, Any]:
        """:return: the ``evidence`` object (``revocation`` null: a key has no revocation
        status)."""
        return {
            "type": self.type,
            "nonce": self.nonce.hex(),
            "origin": self.origin,
            "rp_id": self.rp_id,
            "credential_id": self.credential_id.hex(),
            "authenticator_data": self.authenticator_data.hex(),
            "client_data_json": self.client_data_json.hex(),
            "signature": self.signature.hex(),
            "user_handle": None if self.user_handle is None else self.user_handle.hex(),
            "revocation": None,
        }

    @classmethod
    def _parse(cls, obj: Mapping[str, Any]) -> WebAuthnAssertionEvidence:
        what = "evidence"
        check_fields(obj, what, _FIELDS, ("revocation",))
        if obj.get("revocation") is not None:
            raise EvidenceFormatError(f"{what}.revocation is not null (a FIDO2 key has none)")
        nonce = hex_field(obj, "nonce", what, sizes=_NONCE_SIZES)
        origin = str_field(obj, "origin", what)
        rp_id = str_field(obj, "rp_id", what)
        data = {name: hex_field(obj, name, what, sizes=sizes) for name, sizes in _SIZES.items()}
        handle = None
        if obj["user_handle"] is not None:
            handle = hex_field(obj, "user_handle", what, sizes=_USER_HANDLE_SIZES)
        try:
            return cls(nonce, origin, rp_id, **data, user_handle=handle)
        except (ValueError, TypeError) as e:
            raise EvidenceFormatError(f"{what}: {e}") from e

    def to_webauthn(self) -> dict[str, Any]:
        """:return: the W3C ``AuthenticationResponseJSON`` of this assertion (base64url, no
        padding), as a browser's ``credential.toJSON()`` gives it; ``userHandle`` only when the
        key returned one."""
        response = {
            "clientDataJSON": _b64(self.client_data_json),
            "authenticatorData": _b64(self.authenticator_data),
            "signature": _b64(self.signature),
        }
        if self.user_handle is not None:
            response["userHandle"] = _b64(self.user_handle)
        return {
            "id": _b64(self.credential_id),
            "rawId": _b64(self.credential_id),
            "type": "public-key",
            "response": response,
            "clientExtensionResults": {},
            "authenticatorAttachment": "cross-platform",
        }

    @classmethod
    def from_webauthn(
        cls, obj: object, *, nonce: bytes, origin: str, rp_id: str
    ) -> WebAuthnAssertionEvidence:
        """Read a W3C ``AuthenticationResponseJSON`` (a browser's, or python-fido2's
        ``AuthenticationResponse``, a mapping of the same members).

        The WebAuthn JSON does not carry the request: ``nonce``, ``origin`` and ``rp_id`` are
        the ones the relying party asked with (the verifier still checks them against the
        client data and the authenticator data). ``clientExtensionResults`` must be a mapping
        (its outputs are not read: mie asks for no extension).

        :param obj: the parsed JSON.
        :return: the evidence.
        :raises EvidenceFormatError: another shape: a missing or extra member, ``id`` not
            ``rawId``, a ``type`` other than ``public-key``, base64url that is padded, not
            canonical or of the wrong size.
        """
        what = "WebAuthn response"
        fields = _members(obj, what, _CREDENTIAL, _CREDENTIAL_OPTIONAL)
        if fields["type"] != "public-key":
            raise EvidenceFormatError(f"{what}.type {shown(fields['type'])} is not public-key")
        if not isinstance(fields.get("clientExtensionResults", {}), Mapping):
            raise EvidenceFormatError(f"{what}.clientExtensionResults is not an object")
        if fields.get("authenticatorAttachment") not in _ATTACHMENTS:
            raise EvidenceFormatError(
                f"{what}.authenticatorAttachment is not platform, cross-platform or null"
            )
        raw_id = _b64_field(fields, "rawId", what, _SIZES["credential_id"])
        if fields["id"] != fields["rawId"]:
            raise EvidenceFormatError(f"{what}.id is not its rawId")
        inner = f"{what}.response"
        response = _members(fields["response"], inner, _RESPONSE, ("userHandle",))
        handle = None
        if response.get("userHandle") is not None:
            handle = _b64_field(response, "userHandle", inner, _USER_HANDLE_SIZES)
        client = _b64_field(response, "clientDataJSON", inner, _SIZES["client_data_json"])
        auth = _b64_field(response, "authenticatorData", inner, _SIZES["authenticator_data"])
        signature = _b64_field(response, "signature", inner, _SIZES["signature"])
        try:
            return cls(nonce, origin, rp_id, raw_id, auth, client, signature, handle)
        except (ValueError, TypeError) as e:
            raise EvidenceFormatError(f"{what}: {e}") from e

    def __repr__(self) -> str:
        # The client data and the nonce are the relying party's: shown by size only.
        return (
            f"WebAuthnAssertionEvidence(rp_id={self.rp_id!r}, origin={self.origin!r}, "
            f"credential_id={self.credential_id[:8].hex()}"
            f"{'...' if len(self.credential_id) > 8 else ''}, "
            f"authenticator_data={len(self.authenticator_data)} bytes)"
        )


def _members(
    obj: object, what: str, required: tuple[str, ...], optional: tuple[str, ...]
) -> Mapping[str, Any]:
    # check_fields, for any mapping (python-fido2's response objects are mappings, not dicts).
    if not isinstance(obj, Mapping):
        raise EvidenceFormatError(f"The {what} is not a JSON object")
    fields = obj if type(obj) is dict else dict(obj)
    needed, allowed = _key_sets(required, optional)
    if needed <= fields.keys() <= allowed:
        return fields
    return check_fields(fields, what, required, optional)  # raises, naming the member


@functools.lru_cache(maxsize=8)
def _key_sets(
    required: tuple[str, ...], optional: tuple[str, ...]
) -> tuple[frozenset[str], frozenset[str]]:
    return frozenset(required), frozenset({*required, *optional})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64_field(obj: Mapping[str, Any], key: str, what: str, sizes: range) -> bytes:
    value = obj[key]
    # 4/3 of the largest size, refused before it is scanned: the JSON may be of any size.
    if not isinstance(value, str) or len(value) > (4 * (sizes.stop - 1) + 2) // 3:
        raise EvidenceFormatError(
            f"{what}.{key} is not base64url of at most {sizes.stop - 1} bytes"
        )
    try:
        data = _base64url.decode(value)
    except _base64url.Base64UrlError as e:
        raise EvidenceFormatError(f"{what}.{key} is {e}") from e
    if len(data) not in sizes:
        raise EvidenceFormatError(
            f"{what}.{key} has {len(data)} bytes, not {sizes.start} to {sizes.stop - 1}"
        )
    return data


__all__ = ["WebAuthnAssertionEvidence", "check_rp_id"]
