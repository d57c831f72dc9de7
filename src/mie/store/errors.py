"""Exceptions of :mod:`mie.store` and of the badge second factor.

A wrong PIN and a locked PIN are the same contract outcomes as on a card, so they subclass
:class:`~mie.errors.InvalidPinError` and :class:`~mie.errors.PinBlockedError`. No message ever
contains a PIN, a hash or a salt.

The verifier's own state has two codes of its own (issue 11, plan D4): ``store_unavailable``
(:class:`StoreError` and its subclasses) and ``nonce_unknown`` (:class:`NonceUnknownError`). The
lifecycle of a MIE (a revoked badge or key, a temporary grant) reuses the certificate codes
``revoked``, ``expired`` and ``policy``. Two classes still carry the nearest existing code, named
in their docstrings with the code proposed for them: ``not_enrolled`` (:class:`NotEnrolledError`)
and ``already_enrolled`` (:class:`AlreadyEnrolledError`).
"""

from __future__ import annotations

from mie.core.errors import ErrorCode, InvalidPinError, MieError, PinBlockedError


class StoreInputError(MieError, ValueError):
    """An argument a store refuses before any query: a badge name that is empty, too long or
    outside the allowed characters, or an identity record that is empty or too large."""

    code = ErrorCode.MALFORMED


class StoreError(MieError):
    """The shared state could not be read or written (database unreachable, query failed).

    Nothing was decided: the caller must fail closed. Code ``store_unavailable`` (the CLI exits
    1, as for a reader that fails; the service answers 503).
    """

    code = ErrorCode.STORE_UNAVAILABLE


class StoreTimeoutError(StoreError):
    """The database did not answer, or a lock was not granted, before the deadline."""


class StoreCorruptError(StoreError):
    """A stored value is not what :mod:`mie` writes (e.g. a hash that is not Argon2id); a guess
    reserved for it stays counted."""


class NotEnrolledError(MieError):
    """No second factor is enrolled for the badge: it cannot prove more than possession.

    Code ``unsupported_card`` for now (``not_enrolled`` proposed).
    """

    code = ErrorCode.UNSUPPORTED_CARD


class AlreadyEnrolledError(MieError):
    """The badge already has a second factor and the caller did not ask to replace it.

    Code ``usage`` for now (``already_enrolled`` proposed).
    """

    code = ErrorCode.USAGE


class SecondFactorChangedError(StoreError):
    """The badge's second factor was re-enrolled or removed while a PIN was being checked: the
    check proves nothing about the current PIN, and the guess stays counted."""


class NonceUnknownError(MieError):
    """A challenge nonce the store does not hold: never issued, already used, or expired (one
    outcome, so a caller learns nothing about other sessions' nonces), or one bound to another
    caller's session. Code ``nonce_unknown`` (DESIGN.md).
    """

    code = ErrorCode.NONCE_UNKNOWN

    def __init__(self) -> None:
        super().__init__("Nonce unknown, already used or expired")


class AuditConflictError(StoreError):
    """The audit record's place in its node's chain (node, sequence number) is already taken:
    another writer appended to the same chain first. Nothing was written; the caller may read
    the new head and retry."""


class MieRevokedError(MieError):
    """The MIE (a badge or a FIDO2 key) was revoked: it proves nothing any more, whatever it
    signs. Checked before its PIN or signature counter, so neither is asked nor moved.

    :param message: one line naming the MIE, the reason and the time (``badge 04a1… revoked
        (lost) at 2026-12-01T10:00:00Z``).
    :param revocation: the store's revocation record (:class:`mie.store.base.Revocation`), or
        ``None`` when the reason is not known (a credential suspended ``revoked`` without a
        lifecycle row).
    """

    code = ErrorCode.REVOKED

    def __init__(self, message: str, *, revocation: object | None = None) -> None:
        super().__init__(message)
        self.revocation = revocation


class TemporaryExpiredError(MieError):
    """A temporary MIE (a spare badge or key granted for a few days) used after its grant
    expired.

    :param message: one line naming the MIE and when its grant expired.
    :param grant: the expired grant (:class:`mie.store.base.TemporaryGrant`), when known.
    """

    code = ErrorCode.EXPIRED

    def __init__(self, message: str, *, grant: object | None = None) -> None:
        super().__init__(message)
        self.grant = grant


class TemporaryIdentityError(MieError):
    """A temporary MIE presenting another identity (idNat) than the one it was granted for.

    :param message: one line naming the MIE (never the identities' full records).
    :param grant: the grant (:class:`mie.store.base.TemporaryGrant`), when known.
    """

    code = ErrorCode.POLICY

    def __init__(self, message: str, *, grant: object | None = None) -> None:
        super().__init__(message)
        self.grant = grant


class WrongSecondFactorError(InvalidPinError):
    """The second-factor PIN does not match; the guess was counted.

    :param tries_left: guesses left before the lockout (``0``: the next one is refused).
    """

    def __init__(self, tries_left: int) -> None:
        super().__init__(tries_left)
        self.args = (f"Wrong second-factor PIN, {tries_left} tries left",)


class SecondFactorLockedError(PinBlockedError):
    """The badge's second factor is locked: the failure counter reached the lockout; nothing
    was checked. Only an operator's reset (or a new enrolment) unlocks it."""

    def __init__(self) -> None:
        super().__init__("Second-factor PIN locked after too many wrong guesses")


class CredentialUnknownError(MieError):
    """No FIDO2 credential is stored for the relying party and credential id (never
    registered, or deleted)."""

    code = ErrorCode.CREDENTIAL_UNKNOWN


class AlreadyRegisteredError(MieError):
    """A FIDO2 credential with this relying party and credential id is already stored;
    nothing was written."""

    code = ErrorCode.ALREADY_REGISTERED


class CloneSuspectedError(MieError):
    """A FIDO2 assertion whose signature counter is not above the stored one, or a
    credential suspended as a suspected clone (or revoked).

    A counter already seen (equal: a replayed assertion, or the loser of two verifiers handed
    the same one) is refused without suspending the credential; only a counter going back
    suspends it.

    :param suspended: the credential's suspension after the refusal (``None``: not suspended).
    """

    code = ErrorCode.SUSPECTED_CLONE

    def __init__(self, message: str, *, suspended: str | None = None) -> None:
        super().__init__(message)
        self.suspended = suspended


class CounterUnsupportedError(MieError):
    """The key's signature counter is 0 and so is the stored one: a key without a counter,
    which has no clone detection, while the policy requires one."""

    code = ErrorCode.COUNTER_UNSUPPORTED
