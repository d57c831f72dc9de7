"""The interface of the shared state a verifier keeps, and the checks every backend shares.

State that several verifier nodes must agree on lives behind :class:`Store`: the badge second
factor (an opaque hash per badge and its failure counter) and the single-use challenge nonces
of the service (issued with an expiry, consumed exactly once), one table each on every
backend, created by the same idempotent schema step.

The failure counter is two monotonic numbers per badge: ``reserved`` counts every guess ever
reserved, ``cleared`` is the highest reservation a success has forgiven, and the failures are
``reserved - cleared``. A guess is reserved (``reserved + 1``, refused at the lockout) in one
atomic step *before* the PIN is checked, so two nodes checking one badge at once never both get
a guess past the lockout, and a crash between the reservation and the check counts the guess.
A success forgives only the guesses up to its own reservation (``cleared = max(cleared,
ticket)``): wrong guesses reserved meanwhile by other nodes stay counted.
"""

from __future__ import annotations

import re
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from mie.store.errors import StoreInputError

#: The characters and length of a badge name (the key of its state), e.g. a UID in hex or a
#: record identifier.
BADGE_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: The longest stored hash a backend accepts.
MAX_HASH_LENGTH = 512
#: The highest lockout a store accepts.
MAX_LIMIT = 1000
#: The shortest and longest challenge nonce a store keeps, in bytes.
MIN_NONCE_LENGTH = 16
MAX_NONCE_LENGTH = 64
#: The longest lifetime of a nonce, in seconds.
MAX_NONCE_LIFETIME = 3600.0


def new_generation() -> int:
    """:return: a random enrolment identifier, positive and below 2**62 (a signed 64-bit
    column holds it on every backend)."""
    return secrets.randbits(62) | 1


@dataclass(frozen=True)
class Reservation:
    """A guess reserved for one badge: what the verifier needs to check it, then to report it.

    :param badge: the badge.
    :param secret_hash: the stored hash to check the guess against.
    :param ticket: the number of this guess among every guess reserved for the badge.
    :param generation: the enrolment the hash belongs to (see :class:`SecretStatus`).
    :param failures: the failures counted with this guess included.
    """

    badge: str
    secret_hash: str
    ticket: int
    generation: int
    failures: int


@dataclass(frozen=True)
class SecretStatus:
    """The state of one badge's second factor (never the hash).

    :param failures: guesses counted and not forgiven by a success.
    :param generation: identifies the enrolment: a random number drawn anew by every
        :meth:`Store.put_secret`, so a reservation made before a re-enrolment (or a removal and a
        new enrolment) never forgives guesses of the new one.
    """

    failures: int
    generation: int


def check_badge(badge: str) -> str:
    """:return: ``badge``, checked.

    :raises StoreInputError: not a string of 1 to 128 characters among ``A-Za-z0-9._:-``.
    """
    if not isinstance(badge, str) or BADGE_PATTERN.fullmatch(badge) is None:
        raise StoreInputError("Badge name must be 1 to 128 characters among A-Z a-z 0-9 . _ : -")
    return badge


def check_hash(secret_hash: str) -> str:
    """:return: ``secret_hash``, checked.

    :raises StoreInputError: not printable ASCII of 1 to 512 characters.
    """
    if (
        not isinstance(secret_hash, str)
        or not 0 < len(secret_hash) <= MAX_HASH_LENGTH
        or not (secret_hash.isascii() and secret_hash.isprintable())
    ):
        raise StoreInputError(f"Stored hash must be 1 to {MAX_HASH_LENGTH} printable ASCII bytes")
    return secret_hash


def check_limit(limit: int) -> int:
    """:return: ``limit``, checked.

    :raises StoreInputError: not an int from 1 to 1000.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise StoreInputError(f"Lockout must be a number of guesses from 1 to {MAX_LIMIT}")
    return limit


def check_nonce(nonce: bytes) -> str:
    """:return: ``nonce`` in lower-case hex, the form every backend stores.

    :raises StoreInputError: not 16 to 64 bytes.
    """
    if not isinstance(nonce, bytes) or not MIN_NONCE_LENGTH <= len(nonce) <= MAX_NONCE_LENGTH:
        raise StoreInputError(
            f"Nonce must be {MIN_NONCE_LENGTH} to {MAX_NONCE_LENGTH} bytes of type bytes"
        )
    return nonce.hex()


def check_lifetime(lifetime: float) -> float:
    """:return: ``lifetime``, checked.

    :raises StoreInputError: not a number of seconds above 0 and at most 3600.
    """
    if (
        isinstance(lifetime, bool)
        or not isinstance(lifetime, int | float)
        or not 0 < lifetime <= MAX_NONCE_LIFETIME
    ):
        raise StoreInputError(f"Nonce lifetime must be above 0 and at most {MAX_NONCE_LIFETIME} s")
    return float(lifetime)


class Store(ABC):
    """Shared state of a verifier, safe across processes and (for PostgreSQL) nodes.

    Every method is one atomic step on the backend, with a deadline; a backend failure raises
    :class:`~mie.store.errors.StoreError` and decides nothing. A store is a context manager
    that closes itself.
    """

    @abstractmethod
    def put_secret(self, badge: str, secret_hash: str, *, replace: bool = False) -> None:
        """Enrol ``secret_hash`` for ``badge`` with no failure counted.

        :param badge: the badge.
        :param secret_hash: the hash to store (opaque to the store).
        :param replace: replace an enrolled hash (a new generation) instead of refusing.
        :raises AlreadyEnrolledError: the badge is enrolled and ``replace`` is false.
        """

    @abstractmethod
    def reserve_guess(self, badge: str, limit: int) -> Reservation:
        """Count one guess for ``badge`` unless ``limit`` failures are already counted.

        :param badge: the badge.
        :param limit: the lockout, in failures.
        :return: the reservation to check the guess with.
        :raises NotEnrolledError: no hash is enrolled for the badge.
        :raises SecondFactorLockedError: ``limit`` failures are counted; nothing was reserved.
        """

    @abstractmethod
    def forgive_guesses(self, reservation: Reservation) -> None:
        """Forgive every guess of the badge up to the reservation's (a success).

        :param reservation: the reservation of the guess that matched.
        :raises SecondFactorChangedError: the badge was re-enrolled or removed meanwhile.
        """

    @abstractmethod
    def clear_failures(self, badge: str) -> None:
        """Forgive every guess counted for ``badge`` (an operator's unlock); the hash stays.

        :raises NotEnrolledError: no hash is enrolled for the badge.
        """

    @abstractmethod
    def delete_secret(self, badge: str) -> None:
        """Remove ``badge``'s hash and counter.

        :raises NotEnrolledError: no hash is enrolled for the badge.
        """

    @abstractmethod
    def secret_status(self, badge: str) -> SecretStatus:
        """:return: the failures and enrolment of ``badge``.

        :raises NotEnrolledError: no hash is enrolled for the badge.
        """

    @abstractmethod
    def issue_nonce(self, nonce: bytes, lifetime: float) -> None:
        """Keep ``nonce`` for ``lifetime`` seconds, for one :meth:`consume_nonce`.

        Expired nonces are purged here. PostgreSQL measures lifetimes on the database's clock,
        which every node shares; SQLite on the host's.

        :param nonce: the challenge, 16 to 64 random bytes.
        :param lifetime: seconds until it expires.
        :raises StoreInputError: a bad nonce or lifetime, or a nonce already issued.
        """

    @abstractmethod
    def consume_nonce(self, nonce: bytes) -> None:
        """Use up ``nonce``: of several nodes consuming it at once, exactly one succeeds.

        :raises NonceUnknownError: never issued, already consumed, or expired.
        :raises StoreInputError: not 16 to 64 bytes.
        """

    @abstractmethod
    def close(self) -> None:
        """Release the connection(s); the store is not used afterwards."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
