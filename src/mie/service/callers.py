"""Who calls the service: an API key naming a configured client, and its user's session.

``Authorization: Bearer <key>`` names a client (its SHA-256 compared with each configured
digest in constant time); ``Mie-Session: <id>`` is the IAM's handle of its user's login
session. A nonce is bound to ``SHA-256("mie session\\0" ‖ client ‖ "\\0" ‖ session)``: only
the same client, for the same session, can use it. With no client configured (open mode,
loopback only) every caller is ``local`` with every scope.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from starlette.requests import Request

from mie.service.config import SCOPES, Client, is_loopback_ip
from mie.service.errors import ForbiddenError, RequestUsageError, UnauthorizedError

SESSION_HEADER = "mie-session"
SESSION_PATTERN = re.compile(r"[A-Za-z0-9._~-]{1,128}")
MAX_KEY_LENGTH = 512
LOCAL_CLIENT = "local"
_BEARER = re.compile(r"Bearer ([\x21-\x7e]{1,512})")


@dataclass(frozen=True)
class Caller:
    """An authenticated caller.

    :param client: the client's name.
    :param scopes: what it may do.
    :param session: its user's session handle (``Mie-Session``), if given.
    :param binding: what nonces issued to it are bound to (``None`` without a session).
    """

    client: str
    scopes: frozenset[str]
    session: str | None = field(repr=False, default=None)
    binding: bytes | None = field(repr=False, default=None)


def session_binding(client: str, session: str) -> bytes:
    """:return: the 32-byte binding of a nonce to ``client`` and ``session``."""
    return hashlib.sha256(b"mie session\0" + client.encode() + b"\0" + session.encode()).digest()


def digest_prefix(data: bytes | None) -> str | None:
    """:return: the first 8 bytes of SHA-256 of ``data`` in hex (the audit form of a nonce or
    a binding), or ``None``."""
    return None if data is None else hashlib.sha256(data).hexdigest()[:16]


def authenticate(
    authorization: str | None, clients: Sequence[Client]
) -> tuple[str, frozenset[str]]:
    """Find the client an ``Authorization`` header names.

    :param clients: the configured clients; empty: open mode (``local``, every scope).
    :return: the client's name and scopes.
    :raises UnauthorizedError: no ``Bearer`` key, or one no client has.
    """
    if not clients:
        return LOCAL_CLIENT, SCOPES
    match = _BEARER.fullmatch(authorization or "")
    if match is None:
        raise UnauthorizedError("An API key is required: Authorization: Bearer <key>")
    digest = hashlib.sha256(match[1].encode("ascii")).digest()
    found: Client | None = None
    for client in clients:
        # Every digest is compared: the time taken does not say which client matched.
        if hmac.compare_digest(digest, client.key_sha256):
            found = client
    if found is None:
        raise UnauthorizedError("Unknown API key")
    return found.name, found.scopes


def caller(
    request: Request, clients: Sequence[Client], scope: str | None, *, session: bool = True
) -> Caller:
    """The caller of ``request``, allowed ``scope``.

    :param scope: the scope the route needs (``None``: any authenticated client).
    :param session: whether the route needs ``Mie-Session``.
    :raises UnauthorizedError: no or an unknown key (401).
    :raises ForbiddenError: the client lacks ``scope`` (403).
    :raises RequestUsageError: a missing or malformed ``Mie-Session`` (400 ``usage``).
    """
    if not clients:
        # Open mode: loopback callers only, whatever address the server was bound to.
        peer = request.client
        if peer is None or not is_loopback_ip(peer.host):
            raise UnauthorizedError(
                "No clients configured (open mode): only a caller on loopback is served"
            )
    name, scopes = authenticate(request.headers.get("authorization"), clients)
    if scope is not None and scope not in scopes:
        raise ForbiddenError(f"Client {name!r} has no {scope!r} scope")
    values = request.headers.getlist(SESSION_HEADER)
    if not values:
        if session:
            raise RequestUsageError("A Mie-Session header is required (the user's session)")
        return Caller(name, scopes)
    if len(values) != 1 or not SESSION_PATTERN.fullmatch(values[0]):
        raise RequestUsageError("Mie-Session: one value of 1 to 128 of A-Z a-z 0-9 . _ ~ -")
    return Caller(name, scopes, values[0], session_binding(name, values[0]))


__all__ = [
    "LOCAL_CLIENT",
    "SESSION_HEADER",
    "Caller",
    "authenticate",
    "caller",
    "digest_prefix",
    "session_binding",
]
