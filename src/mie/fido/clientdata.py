"""WebAuthn client data JSON (W3C WebAuthn §5.8.1), read strictly.

The bytes a key signs the hash of: one JSON object (UTF-8, at most ``max_bytes``, duplicate keys
refused) with ``type`` ``"webauthn.get"`` or ``"webauthn.create"``, ``challenge`` (unpadded
base64url of 16 to 1024 bytes), ``origin`` (as :func:`mie.request.check_origin` takes it) and
``crossOrigin`` absent or false. A ``topOrigin`` (a cross-origin iframe) is refused; other
members are ignored, as WebAuthn lets the dictionary grow.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from mie.core import strictjson
from mie.core.errors import JsonFormatError
from mie.fido import _base64url
from mie.fido.errors import ClientDataFormatError
from mie.request import check_origin

MAX_LENGTH = 4096
MIN_CHALLENGE, MAX_CHALLENGE = 16, 1024
TYPES = ("webauthn.get", "webauthn.create")


@dataclass(frozen=True)
class ClientData:
    """Parsed client data.

    :param type: ``"webauthn.get"`` (assertion) or ``"webauthn.create"`` (registration).
    :param challenge: the challenge bytes (the relying party's nonce).
    :param origin: the origin the client saw.
    :param raw: the bytes parsed: :attr:`hash` is what the key signed.
    """

    type: str
    challenge: bytes
    origin: str
    raw: bytes = field(repr=False)

    @classmethod
    def parse(cls, raw: bytes, *, max_bytes: int = MAX_LENGTH) -> ClientData:
        """Read client data JSON.

        :raises ClientDataFormatError: any departure from the strict form above.
        """
        if not isinstance(raw, bytes):
            raise TypeError(f"Client data must be bytes, not {type(raw).__name__}")
        try:
            obj = strictjson.loads(raw, "client data", max_bytes=max_bytes)
        except JsonFormatError as e:
            raise ClientDataFormatError(str(e)) from e
        if not isinstance(obj, dict):
            raise ClientDataFormatError("Client data is not a JSON object")
        kind = _text(obj, "type")
        if kind not in TYPES:
            raise ClientDataFormatError(f"Client data type {strictjson.shown(kind)} is not known")
        challenge = _challenge(_text(obj, "challenge"))
        origin = _text(obj, "origin")
        try:
            check_origin(origin)
        except ValueError as e:
            raise ClientDataFormatError(f"Client data origin: {e}") from e
        cross = obj.get("crossOrigin", False)
        if cross is not False:
            problem = "true" if cross is True else "not a boolean"
            raise ClientDataFormatError(f"Client data crossOrigin is {problem}")
        if "topOrigin" in obj:
            raise ClientDataFormatError("Client data has a topOrigin: made in a cross-origin frame")
        return cls(kind, challenge, origin, raw)

    @property
    def hash(self) -> bytes:
        """:return: SHA-256 of the raw bytes (the ``clientDataHash`` the key signed)."""
        return hashlib.sha256(self.raw).digest()


def _text(obj: dict[str, object], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str):
        problem = "missing" if value is None else "not a string"
        raise ClientDataFormatError(f"Client data {name} is {problem}")
    return value


def _challenge(text: str) -> bytes:
    if len(text) > 2 * MAX_CHALLENGE:
        raise ClientDataFormatError(
            f"Client data challenge {strictjson.shown(text)} is not unpadded base64url"
        )
    try:
        # One encoding per challenge: unused low bits of the last character must be zero.
        value = _base64url.decode(text)
    except _base64url.Base64UrlError as e:
        raise ClientDataFormatError(f"Client data challenge {strictjson.shown(text)} is {e}") from e
    if not MIN_CHALLENGE <= len(value) <= MAX_CHALLENGE:
        raise ClientDataFormatError(
            f"Client data challenge of {len(value)} bytes, not {MIN_CHALLENGE} to {MAX_CHALLENGE}"
        )
    return value
