"""What a relying party asks of an authenticator, and how the user is asked for a PIN.

An :class:`AuthRequest` carries the relying party's ``nonce`` and ``origin``. The card signs
:func:`bound_challenge` of the two, ``SHA-256(origin) ‖ SHA-256(nonce)`` (the Web eID rule), so a
signature made for one site never serves another: a rogue site that relays the IAM's nonce
obtains a signature bound to its own origin, which the IAM refuses.

A :class:`UserVerification` is asked for the PIN only when one is needed, at most once per
request, and told how many tries remain (python-fido2's ``UserInteraction`` is the pattern).
"""

from __future__ import annotations

import abc
import hashlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Self

from mie.core.random import RandomSource, SystemRandom

MIN_NONCE_BYTES = 16
DEFAULT_NONCE_BYTES = 32
# A nonce is hashed before it is signed; the bound only keeps hostile input small.
MAX_NONCE_BYTES = 1024
DEFAULT_ORIGIN = "https://localhost"
MAX_ORIGIN_LENGTH = 300

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_ORIGIN = re.compile(
    rf"(?P<scheme>https|http)://"
    rf"(?P<host>{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])"
    rf"(?::(?P<port>[1-9][0-9]{{0,4}}))?"
)
# Origins check_origin accepted (plain str only: a subclass may compare equal to one and differ);
# bounded, so origins from hostile client data cannot grow it without limit.
_CHECKED_ORIGINS: set[str] = set()
_MAX_CHECKED_ORIGINS = 256


def check_origin(origin: str) -> str:
    """Check an origin is ``https://host[:port]`` or ``http://localhost[:port]``.

    The origin is compared byte for byte later and never normalised, so only the canonical form
    is accepted: lower-case scheme and host, no path, no trailing ``/``, no user part. A port is
    kept as given (``:443`` is not dropped, and then differs from no port).

    :param origin: the relying party's origin, e.g. ``https://iam.chu-exemple.fr``.
    :return: ``origin``, unchanged.
    :raises ValueError: anything else (the message quotes at most the first 60 characters).
    """
    if type(origin) is str and origin in _CHECKED_ORIGINS:
        # A relying party has a few origins, checked on every request: each parsed once.
        return origin
    if not isinstance(origin, str):
        raise TypeError(f"Origin must be a str, not {type(origin).__name__}")
    if len(origin) > MAX_ORIGIN_LENGTH:
        raise ValueError(f"Origin of {len(origin)} characters, at most {MAX_ORIGIN_LENGTH}")
    match = _ORIGIN.fullmatch(origin)
    if match is None or not _host_ok(match["host"]) or not _port_ok(match["port"]):
        raise ValueError(
            f"Origin {_shown(origin)} is not https://host[:port] or http://localhost[:port]"
        )
    if match["scheme"] == "http" and match["host"] != "localhost":
        raise ValueError(f"Origin {_shown(origin)}: plain http is only for localhost")
    if type(origin) is str and len(_CHECKED_ORIGINS) < _MAX_CHECKED_ORIGINS:
        _CHECKED_ORIGINS.add(origin)
    return origin


def _host_ok(host: str) -> bool:
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    if all(c.isdigit() or c == "." for c in host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
    return len(host) <= 253


def _port_ok(port: str | None) -> bool:
    return port is None or int(port) <= 65535


def _shown(text: str) -> str:
    cut = text[:60] + ("…" if len(text) > 60 else "")
    return repr(cut)


def bound_challenge(origin: str, nonce: bytes) -> bytes:
    """The 64 bytes a card signs for ``origin`` and ``nonce``.

    :param origin: the relying party's origin (see :func:`check_origin`).
    :param nonce: the relying party's nonce.
    :return: ``SHA-256(origin, UTF-8) ‖ SHA-256(nonce)``.
    """
    return hashlib.sha256(origin.encode()).digest() + hashlib.sha256(nonce).digest()


@dataclass(frozen=True)
class AuthRequest:
    """One authentication asked by a relying party.

    :param nonce: the relying party's fresh random value, 16 to 1024 bytes.
    :param origin: the relying party's origin (see :func:`check_origin`).
    :param user_verification: whether the user must be verified (PIN); a CPx card signs only
        after its PIN, so it refuses ``False``.
    :param allow_last_try: whether the PIN may be presented when one try is left.
    :raises ValueError: a nonce of the wrong size or a malformed origin.
    :raises TypeError: a nonce that is not ``bytes``.
    """

    nonce: bytes
    origin: str = DEFAULT_ORIGIN
    user_verification: bool = True
    allow_last_try: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.nonce, bytearray | memoryview):
            # Frozen, so an immutable copy: the request signed is the request checked.
            object.__setattr__(self, "nonce", bytes(self.nonce))
        if not isinstance(self.nonce, bytes):
            raise TypeError(f"Nonce must be bytes, not {type(self.nonce).__name__}")
        if not MIN_NONCE_BYTES <= len(self.nonce) <= MAX_NONCE_BYTES:
            raise ValueError(
                f"Nonce of {len(self.nonce)} bytes, expected {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES}"
            )
        check_origin(self.origin)

    @classmethod
    def new(
        cls,
        origin: str = DEFAULT_ORIGIN,
        *,
        rng: RandomSource | None = None,
        size: int = DEFAULT_NONCE_BYTES,
        user_verification: bool = True,
        allow_last_try: bool = False,
    ) -> Self:
        """A request with a fresh nonce.

        :param origin: the relying party's origin.
        :param rng: where the nonce comes from (drawn as ``"nonce"``, so a recording keeps it and
            a replay serves it again); ``None``: the system's random source.
        :param size: nonce length in bytes.
        :param user_verification: see the class.
        :param allow_last_try: see the class.
        :raises ValueError: a bad size or origin, or a source that returned another length.
        """
        if not MIN_NONCE_BYTES <= size <= MAX_NONCE_BYTES:
            raise ValueError(f"Nonce size {size}, expected {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES}")
        nonce = (rng if rng is not None else SystemRandom()).draw("nonce", size)
        if len(nonce) != size:
            raise ValueError(f"The random source gave {len(nonce)} bytes, {size} were asked")
        return cls(nonce, origin, user_verification, allow_last_try)

    @property
    def challenge(self) -> bytes:
        """:return: the 64 bytes the authenticator signs (:func:`bound_challenge`)."""
        return bound_challenge(self.origin, self.nonce)


class UserVerification(abc.ABC):
    """How an authenticator asks the user for a PIN.

    An authenticator calls :meth:`request_pin` only when it needs a PIN, and at most once per
    request. Raising from it (the user cancelled) stops the authentication: the exception
    propagates and nothing more is sent to the authenticator.
    """

    @abc.abstractmethod
    def request_pin(self, tries_left: int | None) -> str | bytes | bytearray:
        """Ask the user for the PIN.

        :param tries_left: tries before the PIN blocks, when the authenticator says.
        :return: the PIN; a ``bytearray`` is wiped by the authenticator after use.
        """


class StaticPin(UserVerification):
    """Serves one PIN, once (tests, scripts, and a PIN read from a pipe).

    :param pin: the PIN. A ``bytearray`` is handed over as is, so the authenticator wipes it.
    """

    def __init__(self, pin: str | bytes | bytearray) -> None:
        self._pin: str | bytes | bytearray | None = pin
        #: The ``tries_left`` of each call, in order.
        self.asked: list[int | None] = []

    def request_pin(self, tries_left: int | None) -> str | bytes | bytearray:
        """:return: the PIN given at construction.

        :raises RuntimeError: the PIN was already served (an authenticator asked twice).
        """
        self.asked.append(tries_left)
        pin, self._pin = self._pin, None
        if pin is None:
            raise RuntimeError("StaticPin serves its PIN once; it was asked again")
        return pin

    def __repr__(self) -> str:
        served = "served" if self._pin is None else "unserved"
        return f"StaticPin(<{served}>)"
