"""The store of an IAM cluster: PostgreSQL through psycopg 3 (the ``mie[store]`` extra).

A guess is reserved by one ``UPDATE ... WHERE reserved - cleared < limit RETURNING``: PostgreSQL
locks the row and evaluates the condition again on the row another node has just updated, so
concurrent reservations for one badge are serialised and none passes the lockout. Every
connection has a connect timeout and a statement timeout (which also bounds waiting for a row
lock).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from mie.store.base import (
    Reservation,
    SecretStatus,
    Store,
    check_badge,
    check_hash,
    check_lifetime,
    check_limit,
    check_nonce,
    new_generation,
)
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
)

#: The statements that create the schema; each is idempotent, and a new table (the service's
#: single-use challenges) is one more statement. They run under an advisory lock, since two
#: nodes running ``CREATE TABLE IF NOT EXISTS`` at once can still collide.
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS mie_second_factor ("
    " badge text PRIMARY KEY,"
    " secret_hash text NOT NULL,"
    " reserved bigint NOT NULL CHECK (reserved >= 0),"
    " cleared bigint NOT NULL CHECK (cleared >= 0 AND cleared <= reserved),"
    " generation bigint NOT NULL"
    ")",
    "CREATE TABLE IF NOT EXISTS mie_nonce ("
    " nonce text PRIMARY KEY,"
    " expires_at timestamptz NOT NULL"
    ")",
    "CREATE INDEX IF NOT EXISTS mie_nonce_expiry ON mie_nonce (expires_at)",
)
#: The advisory lock key of the schema step (``mie`` in ASCII).
SCHEMA_LOCK = 0x6D6965
MAX_TIMEOUT = 600.0

_SELECT = (
    "SELECT secret_hash, reserved, cleared, generation FROM mie_second_factor WHERE badge = %s"
)


class PostgresStore(Store):
    """State in a PostgreSQL database shared by every node of a cluster.

    One connection per store (opened again after a failure), used by one thread at a time.

    :param conninfo: a libpq connection string or URI (``postgresql://user@host:5432/db``).
    :param connect_timeout: the deadline, in seconds, to connect (libpq rounds it up to whole
        seconds, at least 2).
    :param statement_timeout: the deadline, in seconds, of every statement, waiting for a row
        lock included.
    :raises StoreInputError: a timeout out of range.
    :raises StoreError: the database cannot be reached or the schema cannot be created.
    """

    def __init__(
        self, conninfo: str, *, connect_timeout: float = 5.0, statement_timeout: float = 5.0
    ) -> None:
        for name, value in (("Connect", connect_timeout), ("Statement", statement_timeout)):
            if not 0 < value <= MAX_TIMEOUT:
                raise StoreInputError(f"{name} timeout must be above 0 and at most {MAX_TIMEOUT} s")
        self._conninfo = conninfo
        self._connect_timeout = max(2, math.ceil(connect_timeout))
        self._statement_ms = max(1, round(statement_timeout * 1000))
        self._lock = threading.Lock()
        self._connection: psycopg.Connection[Any] | None = None
        self._create_schema()

    def put_secret(self, badge: str, secret_hash: str, *, replace: bool = False) -> None:
        check_badge(badge)
        check_hash(secret_hash)
        insert = "INSERT INTO mie_second_factor VALUES (%s, %s, 0, 0, %s) ON CONFLICT (badge) DO "
        if replace:
            insert += (
                "UPDATE SET secret_hash = EXCLUDED.secret_hash, cleared ="
                " mie_second_factor.reserved, generation = EXCLUDED.generation"
            )
        else:
            insert += "NOTHING"
        with self._cursor() as cursor:
            cursor.execute(insert, (badge, secret_hash, new_generation()))
            changed = cursor.rowcount
        if changed != 1:
            raise AlreadyEnrolledError(f"Badge {badge} already has a second factor")

    def reserve_guess(self, badge: str, limit: int) -> Reservation:
        check_badge(badge)
        check_limit(limit)
        with self._cursor() as cursor:
            cursor.execute(
                "UPDATE mie_second_factor SET reserved = reserved + 1"
                " WHERE badge = %s AND reserved - cleared < %s"
                " RETURNING secret_hash, reserved, cleared, generation",
                (badge, limit),
            )
            reserved_row = cursor.fetchone()
            if reserved_row is None:
                cursor.execute(_SELECT, (badge,))
                _row(badge, cursor.fetchone())
                raise SecondFactorLockedError()
        secret_hash, ticket, cleared, generation = _row(badge, reserved_row)
        return Reservation(badge, secret_hash, ticket, generation, ticket - cleared)

    def forgive_guesses(self, reservation: Reservation) -> None:
        with self._cursor() as cursor:
            cursor.execute(
                "UPDATE mie_second_factor SET cleared = GREATEST(cleared, %s)"
                " WHERE badge = %s AND generation = %s AND reserved >= %s",
                (reservation.ticket, reservation.badge, reservation.generation, reservation.ticket),
            )
            changed = cursor.rowcount
        if changed != 1:
            raise SecondFactorChangedError("Second factor was re-enrolled during the check")

    def clear_failures(self, badge: str) -> None:
        check_badge(badge)
        self._change_one(badge, "UPDATE mie_second_factor SET cleared = reserved WHERE badge = %s")

    def delete_secret(self, badge: str) -> None:
        check_badge(badge)
        self._change_one(badge, "DELETE FROM mie_second_factor WHERE badge = %s")

    def secret_status(self, badge: str) -> SecretStatus:
        check_badge(badge)
        with self._cursor() as cursor:
            cursor.execute(_SELECT, (badge,))
            _, reserved, cleared, generation = _row(badge, cursor.fetchone())
        return SecretStatus(reserved - cleared, generation)

    def issue_nonce(self, nonce: bytes, lifetime: float) -> None:
        key = check_nonce(nonce)
        check_lifetime(lifetime)
        with self._cursor() as cursor:
            cursor.execute("DELETE FROM mie_nonce WHERE expires_at <= now()")
            cursor.execute(
                "INSERT INTO mie_nonce VALUES (%s, now() + make_interval(secs => %s))"
                " ON CONFLICT (nonce) DO NOTHING",
                (key, lifetime),
            )
            issued = cursor.rowcount
        if issued != 1:
            raise StoreInputError("Nonce was already issued")

    def consume_nonce(self, nonce: bytes) -> None:
        key = check_nonce(nonce)
        with self._cursor() as cursor:
            cursor.execute(
                "DELETE FROM mie_nonce WHERE nonce = %s RETURNING expires_at > now()", (key,)
            )
            found = cursor.fetchone()
        if found is None or found[0] is not True:
            raise NonceUnknownError()

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _change_one(self, badge: str, statement: str) -> None:
        with self._cursor() as cursor:
            cursor.execute(statement, (badge,))
            changed = cursor.rowcount
        if changed != 1:
            raise _not_enrolled(badge)

    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[Any]]:
        with self._lock:
            try:
                connection = self._connect()
                with connection.cursor() as cursor:
                    yield cursor
            except psycopg.Error as e:
                self._drop()
                raise _translate(e) from e

    def _connect(self) -> psycopg.Connection[Any]:
        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=self._connect_timeout,
                options=f"-c statement_timeout={self._statement_ms}",
            )
        return self._connection

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _create_schema(self) -> None:
        with self._cursor() as cursor, cursor.connection.transaction():
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            for statement in SCHEMA:
                cursor.execute(statement)


def _row(badge: str, found: Sequence[Any] | None) -> tuple[str, int, int, int]:
    if found is None:
        raise _not_enrolled(badge)
    secret_hash, reserved, cleared, generation = found
    if not (
        isinstance(secret_hash, str)
        and isinstance(reserved, int)
        and isinstance(cleared, int)
        and isinstance(generation, int)
    ):
        raise StoreCorruptError(f"Second-factor row of badge {badge} has the wrong types")
    return secret_hash, reserved, cleared, generation


def _not_enrolled(badge: str) -> NotEnrolledError:
    return NotEnrolledError(f"No second factor enrolled for badge {badge}")


def _translate(error: psycopg.Error) -> StoreError:
    if isinstance(error, pg_errors.QueryCanceled | pg_errors.LockNotAvailable):
        return StoreTimeoutError("PostgreSQL store did not answer before the statement timeout")
    if isinstance(error, psycopg.OperationalError):
        return StoreError(f"PostgreSQL store unreachable: {_first_line(error)}")
    return StoreError(f"PostgreSQL store failed: {_first_line(error)}")


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
