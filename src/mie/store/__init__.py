"""Shared state of a verifier: the badge second factor (issue 9) and single-use challenge
nonces.

:class:`~mie.store.base.Store` is the interface; :class:`~mie.store.sqlite.SqliteStore` (one
file, WAL, safe across processes) is the default and :class:`~mie.store.postgres.PostgresStore`
serves IAM clusters (``mie[store]``: psycopg 3). :class:`~mie.store.secondfactor.SecondFactor`
enrols and checks the PINs. ``import mie.store`` loads neither backend.
"""

from __future__ import annotations

from mie.store.base import Reservation, SecretStatus, Store
from mie.store.errors import (
    AlreadyEnrolledError,
    NonceUnknownError,
    NotEnrolledError,
    SecondFactorChangedError,
    SecondFactorLockedError,
    StoreCorruptError,
    StoreError,
    StoreInputError,
    StoreTimeoutError,
    WrongSecondFactorError,
)

__all__ = [
    "AlreadyEnrolledError",
    "NonceUnknownError",
    "NotEnrolledError",
    "Reservation",
    "SecondFactorChangedError",
    "SecondFactorLockedError",
    "SecretStatus",
    "Store",
    "StoreCorruptError",
    "StoreError",
    "StoreInputError",
    "StoreTimeoutError",
    "WrongSecondFactorError",
]
