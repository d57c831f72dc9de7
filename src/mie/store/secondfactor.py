"""The second factor of a badge: a PIN known to the professional, checked by the verifier.

A badge alone proves possession. With :class:`SecondFactor` the verifier also checks a PIN
against an Argon2id hash (argon2-cffi) kept in a :class:`~mie.store.base.Store`. The hashed
input is a domain label, the SHA-256 of the badge's signed identity record, then the PIN: a hash
copied to another badge's row (another record) never verifies. Every guess is reserved in the
store before it is checked (see :mod:`mie.store.base`), so the lockout holds across processes
and nodes.

The PIN is never logged or stored; a ``bytearray`` PIN is zeroed in place on every path. The
Argon2 binding takes ``bytes``, an immutable copy nobody can wipe: it is made just before the
call and dropped just after.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass

from argon2 import exceptions as argon2_errors
from argon2 import low_level

from mie.core.pin import PinRule
from mie.store.base import Store, check_badge, check_limit
from mie.store.errors import (
    StoreCorruptError,
    StoreInputError,
    WrongSecondFactorError,
)

logger = logging.getLogger(__name__)

#: The format of a second-factor PIN unless the deployment sets its own: 4 to 8 digits.
SECOND_FACTOR_PIN = PinRule(4, 8, True)
#: Failures after which a badge's second factor is locked, unless configured.
DEFAULT_MAX_FAILURES = 5
#: The longest identity record accepted, in bytes.
MAX_RECORD_LENGTH = 64 * 1024
#: Separates this use of Argon2 from any other hash of the same PIN.
DOMAIN = b"mie badge second factor v1\x00"
_ENCODED_PREFIX = b"$argon2id$"

# RFC 9106 section 4 second recommendation, argon2-cffi's RFC_9106_LOW_MEMORY profile; the
# floor is OWASP's lowest Argon2id configuration (19 MiB, two passes).
_FLOOR_MEMORY_KIB = 19 * 1024
_FLOOR_TIME_COST = 2


@dataclass(frozen=True)
class Argon2Parameters:
    """The cost of one Argon2id hash.

    :param time_cost: passes over the memory.
    :param memory_kib: memory, in KiB (default 64 MiB).
    :param parallelism: lanes.
    :param hash_len: bytes of hash output.
    :param salt_len: bytes of random salt per enrolment.
    :param allow_weak: accept a cost below 19 MiB or two passes; only for tests.
    :raises ValueError: a cost below the floor without ``allow_weak``, or out of Argon2's range.
    """

    time_cost: int = 3
    memory_kib: int = 64 * 1024
    parallelism: int = 4
    hash_len: int = 32
    salt_len: int = 16
    allow_weak: bool = False

    def __post_init__(self) -> None:
        if not (1 <= self.parallelism <= 255 and self.memory_kib >= 8 * self.parallelism):
            raise ValueError("Argon2 needs 1 to 255 lanes and at least 8 KiB of memory per lane")
        if not (1 <= self.time_cost <= 100 and self.memory_kib <= 4 * 1024 * 1024):
            raise ValueError("Argon2 cost must be 1 to 100 passes and at most 4 GiB")
        if not (16 <= self.hash_len <= 64 and 16 <= self.salt_len <= 64):
            raise ValueError("Argon2 hash and salt must each be 16 to 64 bytes")
        weak = self.memory_kib < _FLOOR_MEMORY_KIB or self.time_cost < _FLOOR_TIME_COST
        if weak and not self.allow_weak:
            raise ValueError("Argon2 cost below 19 MiB and 2 passes needs allow_weak=True")


class SecondFactor:
    """Enrol and check badge PINs against the hashes and counters of a store.

    Every node of a cluster must use the same ``max_failures``: the store enforces the one each
    check passes.

    :param store: where the hashes and failure counters live.
    :param rule: the PIN format (checked before anything is counted).
    :param max_failures: wrong guesses after which the badge is locked.
    :param parameters: the Argon2id cost of new enrolments (checks read it from each hash).
    """

    def __init__(
        self,
        store: Store,
        *,
        rule: PinRule = SECOND_FACTOR_PIN,
        max_failures: int = DEFAULT_MAX_FAILURES,
        parameters: Argon2Parameters | None = None,
    ) -> None:
        self.store = store
        self.rule = rule
        self.max_failures = check_limit(max_failures)
        self.parameters = parameters if parameters is not None else Argon2Parameters()

    def enrol(
        self, badge: str, record: bytes, pin: str | bytes | bytearray, *, replace: bool = False
    ) -> None:
        """Store the hash of ``pin`` bound to ``record`` for ``badge``, no failure counted.

        :param badge: the badge's name in the store.
        :param record: the bytes of the badge's signed identity record.
        :param pin: the PIN the professional chose; a ``bytearray`` is wiped.
        :param replace: replace an enrolled PIN (a reset) instead of refusing.
        :raises PinFormatError: the rule refuses the PIN.
        :raises StoreInputError: a bad badge name or record.
        :raises AlreadyEnrolledError: the badge has a PIN and ``replace`` is false.
        :raises StoreError: the store failed.
        """
        logger.debug("Enrolling a second factor")
        try:
            self.rule.check(pin)
            check_badge(badge)
            secret = _secret(_record_digest(record), pin)
        finally:
            _wipe(pin)
        try:
            encoded = _hash(secret, self.parameters)
        finally:
            _wipe(secret)
        self.store.put_secret(badge, encoded, replace=replace)
        logger.info("Second factor enrolled")

    def verify(self, badge: str, record: bytes, pin: str | bytes | bytearray) -> None:
        """Check ``pin`` for ``badge``; the guess is counted before it is checked.

        A success forgives the failures counted up to this guess.

        :param badge: the badge's name in the store.
        :param record: the bytes of the badge's signed identity record, as read and verified.
        :param pin: the PIN typed by the professional; a ``bytearray`` is wiped.
        :raises PinFormatError: the rule refuses the PIN; nothing was counted.
        :raises StoreInputError: a bad badge name or record; nothing was counted.
        :raises NotEnrolledError: the badge has no second factor.
        :raises SecondFactorLockedError: the badge is locked; nothing was checked.
        :raises WrongSecondFactorError: the PIN does not match (or was enrolled for another
            record); the guess stays counted.
        :raises SecondFactorChangedError: the badge was re-enrolled during the check.
        :raises StoreCorruptError: the stored hash is not an Argon2id hash; the guess stays
            counted.
        :raises StoreError: the store failed.
        """
        logger.debug("Checking a second factor")
        try:
            self.rule.check(pin)
            digest = _record_digest(record)
            reservation = self.store.reserve_guess(badge, self.max_failures)
            secret = _secret(digest, pin)
        finally:
            _wipe(pin)
        try:
            matched = _matches(reservation.secret_hash, secret)
        finally:
            _wipe(secret)
        if not matched:
            raise WrongSecondFactorError(max(0, self.max_failures - reservation.failures))
        self.store.forgive_guesses(reservation)
        logger.info("Second factor verified")

    def unlock(self, badge: str) -> None:
        """Forgive every failure of ``badge`` (an operator's unlock); the PIN stays.

        :raises NotEnrolledError: the badge has no second factor.
        :raises StoreError: the store failed.
        """
        self.store.clear_failures(badge)

    def remove(self, badge: str) -> None:
        """Remove ``badge``'s PIN and counter.

        :raises NotEnrolledError: the badge has no second factor.
        :raises StoreError: the store failed.
        """
        self.store.delete_secret(badge)

    def tries_left(self, badge: str) -> int:
        """:return: the guesses ``badge`` has left before the lockout.

        :raises NotEnrolledError: the badge has no second factor.
        :raises StoreError: the store failed.
        """
        return max(0, self.max_failures - self.store.secret_status(badge).failures)


def _record_digest(record: bytes) -> bytes:
    if not isinstance(record, bytes | bytearray) or not 0 < len(record) <= MAX_RECORD_LENGTH:
        raise StoreInputError(f"Identity record must be 1 to {MAX_RECORD_LENGTH} bytes")
    return hashlib.sha256(record).digest()


def _secret(record_digest: bytes, pin: str | bytes | bytearray) -> bytearray:
    secret = bytearray(DOMAIN)
    secret += record_digest
    secret += pin.encode("utf-8") if isinstance(pin, str) else pin
    return secret


def _hash(secret: bytearray, parameters: Argon2Parameters) -> str:
    encoded = low_level.hash_secret(
        bytes(secret),
        os.urandom(parameters.salt_len),
        parameters.time_cost,
        parameters.memory_kib,
        parameters.parallelism,
        parameters.hash_len,
        low_level.Type.ID,
    )
    return encoded.decode("ascii")


def _matches(encoded: str, secret: bytearray) -> bool:
    stored = encoded.encode("ascii")
    if not stored.startswith(_ENCODED_PREFIX):
        raise StoreCorruptError("Stored second-factor hash is not an Argon2id hash")
    try:
        low_level.verify_secret(stored, bytes(secret), low_level.Type.ID)
    except argon2_errors.VerifyMismatchError:
        return False
    except argon2_errors.Argon2Error as e:
        raise StoreCorruptError("Stored second-factor hash cannot be read") from e
    return True


def _wipe(value: str | bytes | bytearray) -> None:
    if isinstance(value, bytearray):
        value[:] = bytes(len(value))
