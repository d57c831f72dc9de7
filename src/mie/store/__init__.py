"""Shared state of a verifier: the badge second factor (issue 9), single-use challenge
nonces and FIDO2 credentials with their signature counters (issue 10); the nonces' session
binding and context, the MIE lifecycle (revocations, temporary grants) and the audit chains of
the service (issue 11).

:class:`~mie.store.base.Store` is the interface; :class:`~mie.store.sqlite.SqliteStore` (one
file, WAL, safe across processes) is the default and :class:`~mie.store.postgres.PostgresStore`
serves IAM clusters (``mie[store]``: psycopg 3); :class:`~mie.store.memory.MemoryStore` keeps
one process's state in memory (tests, demo, benchmark).
:class:`~mie.store.secondfactor.SecondFactor` enrols and checks the PINs. ``import mie.store``
loads no backend.
"""

from __future__ import annotations

from mie.store.base import (
    CredentialRecord,
    LifecycleRecord,
    MieRef,
    Reservation,
    Revocation,
    SecretStatus,
    Store,
    TemporaryGrant,
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

__all__ = [
    "AlreadyEnrolledError",
    "AlreadyRegisteredError",
    "AuditConflictError",
    "CloneSuspectedError",
    "CounterUnsupportedError",
    "CredentialRecord",
    "CredentialUnknownError",
    "LifecycleRecord",
    "MieRef",
    "MieRevokedError",
    "NonceUnknownError",
    "NotEnrolledError",
    "Reservation",
    "Revocation",
    "SecondFactorChangedError",
    "SecondFactorLockedError",
    "SecretStatus",
    "Store",
    "StoreCorruptError",
    "StoreError",
    "StoreInputError",
    "StoreTimeoutError",
    "TemporaryExpiredError",
    "TemporaryGrant",
    "TemporaryIdentityError",
    "WrongSecondFactorError",
]
