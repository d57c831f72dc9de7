"""The store of an IAM cluster: PostgreSQL through psycopg 3 (the ``mie[store]`` extra).

A guess is reserved by one ``UPDATE ... WHERE reserved - cleared < limit RETURNING``: PostgreSQL
locks the row and evaluates the condition again on the row another node has just updated, so
concurrent reservations for one badge are serialised and none passes the lockout. Every
connection has a connect timeout and a statement timeout (which also bounds waiting for a row
lock).

A store keeps a bounded pool of connections (``pool_size``, autocommit), reused last-in first-out.
A connection that raised is closed; when the error says the server went away
(``OperationalError``), every idle connection is closed too, so a restart costs one failed call
per call in flight, not one per pooled connection. No statement is ever retried by the store:
whether to repeat a call whose reply was lost is the caller's decision.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from mie.core.errors import MieError
from mie.store.base import (
    SUSPEND,
    CredentialRecord,
    LifecycleRecord,
    MieRef,
    Reservation,
    Revocation,
    SecretStatus,
    Store,
    TemporaryGrant,
    audit_conflict,
    audit_head_of,
    audit_lines_of,
    badge_only,
    binding_matches,
    check_audit,
    check_audit_range,
    check_badge,
    check_binding,
    check_context,
    check_credential,
    check_credential_id,
    check_grant,
    check_hash,
    check_id_nat,
    check_lifetime,
    check_limit,
    check_node,
    check_nonce,
    check_ref,
    check_revocation,
    check_rp_id,
    check_sign_count,
    check_suspension,
    clone_suspended,
    counter_refusal,
    credential_from_row,
    credential_grant,
    credential_name,
    grant_row,
    lifecycle_of,
    new_generation,
    refuse_grant,
    revocation_row,
    revoked_refusal,
    stored_revocation,
    unknown_credential,
)
from mie.store.errors import (
    AlreadyEnrolledError,
    AlreadyRegisteredError,
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
    # FIDO2 credentials (issue 10): the credential id in lower-case hex.
    "CREATE TABLE IF NOT EXISTS mie_fido_credential ("
    " rp_id text NOT NULL CHECK (length(rp_id) BETWEEN 1 AND 253),"
    " credential_id text NOT NULL CHECK (length(credential_id) BETWEEN 2 AND 2046),"
    " user_handle bytea NOT NULL CHECK (length(user_handle) BETWEEN 1 AND 64),"
    " public_key bytea NOT NULL CHECK (length(public_key) BETWEEN 1 AND 2048),"
    " alg integer NOT NULL,"
    " aaguid bytea NOT NULL CHECK (length(aaguid) = 16),"
    " sign_count bigint NOT NULL CHECK (sign_count BETWEEN 0 AND 4294967295),"
    " backup_eligible boolean NOT NULL,"
    " attestation text NOT NULL CHECK (length(attestation) BETWEEN 1 AND 64),"
    " certification text CHECK (length(certification) BETWEEN 1 AND 64),"
    " id_nat text NOT NULL CHECK (length(id_nat) BETWEEN 1 AND 64),"
    " test boolean NOT NULL,"
    " created_at timestamptz NOT NULL,"
    " last_used_at timestamptz,"
    " suspended text CHECK (suspended IN ('clone-suspected', 'revoked')),"
    " PRIMARY KEY (rp_id, credential_id)"
    ")",
    "CREATE INDEX IF NOT EXISTS mie_fido_credential_id_nat ON mie_fido_credential (id_nat)",
    # The MIE lifecycle (issue 11): a revocation and a temporary grant per badge or credential;
    # times in seconds since the epoch (the callers' clocks, as the grants' bounds).
    "CREATE TABLE IF NOT EXISTS mie_lifecycle ("
    " kind text NOT NULL CHECK (kind IN ('badge', 'fido2')),"
    " subject text NOT NULL CHECK (length(subject) BETWEEN 1 AND 2300),"
    " revoked_at float8,"
    " revoke_reason text,"
    " revoke_note text,"
    " revoked_by text,"
    " id_nat text,"
    " temp_reason text,"
    " issued_at float8,"
    " expires_at float8,"
    " max_level text,"
    " replaces text,"
    " granted_by text,"
    " CHECK ((revoked_at IS NULL) = (revoke_reason IS NULL)),"
    " CHECK ((id_nat IS NULL) = (expires_at IS NULL)),"
    " PRIMARY KEY (kind, subject)"
    ")",
    # The audit trail (issue 11): one hash chain per node, its records numbered from 1.
    "CREATE TABLE IF NOT EXISTS mie_audit ("
    " node text NOT NULL CHECK (length(node) BETWEEN 1 AND 64),"
    " seq bigint NOT NULL CHECK (seq > 0),"
    " line text NOT NULL,"
    " digest text NOT NULL CHECK (length(digest) = 64),"
    " PRIMARY KEY (node, seq)"
    ")",
)
#: Columns added to tables of an older schema (issue 11): ``(table, column, declaration)``.
#: Each ``ALTER TABLE`` runs only when ``information_schema`` lacks the column (it would take
#: the table's exclusive lock even with ``IF NOT EXISTS``), under the schema's advisory lock.
COLUMNS = (
    (
        "mie_nonce",
        "binding",
        "bytea CHECK (binding IS NULL OR length(binding) BETWEEN 1 AND 64)",
    ),
    (
        "mie_nonce",
        "context",
        "text CHECK (context IS NULL OR length(context) BETWEEN 1 AND 2048)",
    ),
)
#: The advisory lock key of the schema step (``mie`` in ASCII).
SCHEMA_LOCK = 0x6D6965
MAX_TIMEOUT = 600.0
#: The largest connection pool of one store.
MAX_POOL_SIZE = 64

#: The columns of a credential, in the order of :class:`~mie.store.base.CredentialRecord`
#: (times as seconds since the epoch).
_CREDENTIAL_COLUMNS = (
    "c.rp_id, c.credential_id, c.user_handle, c.public_key, c.alg, c.aaguid, c.sign_count,"
    " c.backup_eligible, c.attestation, c.certification, c.id_nat, c.test,"
    " extract(epoch FROM c.created_at)::float8, extract(epoch FROM c.last_used_at)::float8,"
    " c.suspended, l.id_nat, l.temp_reason, l.issued_at, l.expires_at, l.max_level, l.replaces,"
    " l.granted_by"
)
#: The join of a credential with its grant (a temporary credential's lifecycle row).
_CREDENTIAL_JOIN = (
    " LEFT JOIN mie_lifecycle l"
    " ON l.kind = 'fido2' AND l.subject = c.rp_id || ':' || c.credential_id"
)
# The statements below join constants of this module only (no input): S608 does not apply.
_SELECT_CREDENTIAL = (
    f"SELECT {_CREDENTIAL_COLUMNS} FROM mie_fido_credential c{_CREDENTIAL_JOIN}"  # noqa: S608
    " WHERE c.rp_id = %s AND c.credential_id = %s"
)
_CREDENTIALS_OF = (
    f"SELECT {_CREDENTIAL_COLUMNS} FROM mie_fido_credential c{_CREDENTIAL_JOIN}"  # noqa: S608
    " WHERE c.id_nat = %s AND (%s::text IS NULL OR c.rp_id = %s)"
    " ORDER BY c.created_at, c.rp_id, c.credential_id"
)
#: The counter's guard (plan D9), returning the credential with its grant.
_ADVANCE = (
    "WITH c AS (UPDATE mie_fido_credential SET sign_count = %s, last_used_at = now()"  # noqa: S608
    " WHERE rp_id = %s AND credential_id = %s AND suspended IS NULL"
    " AND (sign_count < %s OR (%s AND %s = 0 AND sign_count = 0))"
    f" RETURNING *) SELECT {_CREDENTIAL_COLUMNS} FROM c{_CREDENTIAL_JOIN}"
)
_SELECT_LIFECYCLE = (
    "SELECT revoked_at, revoke_reason, revoke_note, revoked_by, id_nat, temp_reason, issued_at,"
    " expires_at, max_level, replaces, granted_by FROM mie_lifecycle"
    " WHERE kind = %s AND subject = %s"
)
#: Revoke once: a row revoked already keeps its first revocation (one statement).
_REVOKE = (
    "INSERT INTO mie_lifecycle (kind, subject, revoked_at, revoke_reason, revoke_note, revoked_by)"
    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (kind, subject) DO UPDATE SET"
    " revoke_reason = coalesce(mie_lifecycle.revoke_reason, EXCLUDED.revoke_reason),"
    " revoke_note = CASE WHEN mie_lifecycle.revoked_at IS NULL THEN EXCLUDED.revoke_note"
    " ELSE mie_lifecycle.revoke_note END,"
    " revoked_by = coalesce(mie_lifecycle.revoked_by, EXCLUDED.revoked_by),"
    " revoked_at = coalesce(mie_lifecycle.revoked_at, EXCLUDED.revoked_at)"
    " RETURNING revoked_at, revoke_reason, revoke_note, revoked_by"
)
_GRANT = (
    "INSERT INTO mie_lifecycle (kind, subject, id_nat, temp_reason, issued_at, expires_at,"
    " max_level, replaces, granted_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (kind, subject) DO UPDATE SET id_nat = EXCLUDED.id_nat,"
    " temp_reason = EXCLUDED.temp_reason, issued_at = EXCLUDED.issued_at,"
    " expires_at = EXCLUDED.expires_at, max_level = EXCLUDED.max_level,"
    " replaces = EXCLUDED.replaces, granted_by = EXCLUDED.granted_by"
)
_CLEAR_GRANT = (
    "UPDATE mie_lifecycle SET id_nat = NULL, temp_reason = NULL, issued_at = NULL,"
    " expires_at = NULL, max_level = NULL, replaces = NULL, granted_by = NULL"
    " WHERE kind = 'fido2' AND subject = %s"
)
_DROP_EMPTY = (
    "DELETE FROM mie_lifecycle WHERE kind = 'fido2' AND subject = %s AND revoked_at IS NULL"
    " AND id_nat IS NULL"
)
#: Append a record only as the next of its chain: ``(node, seq)`` free and ``seq - 1`` the
#: head (a gap or a taken number is a conflict, never a fork; two writers racing for one
#: number meet on the primary key).
_APPEND = (
    "INSERT INTO mie_audit (node, seq, line, digest) SELECT %s, %s, %s, %s"
    " WHERE coalesce((SELECT max(seq) FROM mie_audit WHERE node = %s), 0) = %s - 1"
    " ON CONFLICT (node, seq) DO NOTHING"
)
#: How many times :meth:`PostgresStore.advance_counter` decides again when the row changed
#: between its update and its read (deleted and registered again).
_ATTEMPTS = 3

_SELECT = (
    "SELECT secret_hash, reserved, cleared, generation FROM mie_second_factor WHERE badge = %s"
)


class PostgresStore(Store):
    """State in a PostgreSQL database shared by every node of a cluster.

    At most ``pool_size`` connections (opened on demand, again after a failure), each used by
    one thread at a time; a thread finding them all busy waits for one, within the deadline of
    a connection and a statement.

    :param conninfo: a libpq connection string or URI (``postgresql://user@host:5432/db``).
    :param connect_timeout: the deadline, in seconds, to connect (libpq rounds it up to whole
        seconds, at least 2).
    :param statement_timeout: the deadline, in seconds, of every statement, waiting for a row
        lock included.
    :param pool_size: the most connections open at once, 1 to 64 (1: every call of the
        process is serialised).
    :raises StoreInputError: a timeout or pool size out of range.
    :raises StoreError: the database cannot be reached or the schema cannot be created.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        connect_timeout: float = 5.0,
        statement_timeout: float = 5.0,
        pool_size: int = 1,
    ) -> None:
        for name, value in (("Connect", connect_timeout), ("Statement", statement_timeout)):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 < value <= MAX_TIMEOUT
            ):
                raise StoreInputError(f"{name} timeout must be above 0 and at most {MAX_TIMEOUT} s")
        if (
            isinstance(pool_size, bool)
            or not isinstance(pool_size, int)
            or not 1 <= pool_size <= MAX_POOL_SIZE
        ):
            raise StoreInputError(f"Pool size must be a number from 1 to {MAX_POOL_SIZE}")
        self._conninfo = conninfo
        self._connect_timeout = max(2, math.ceil(connect_timeout))
        self._statement_ms = max(1, round(statement_timeout * 1000))
        # Waiting for a free connection: as long as one call may hold it (connect + statement).
        self._wait_s = self._connect_timeout + statement_timeout
        self._pool_size = pool_size
        self._slots = threading.BoundedSemaphore(pool_size)
        self._lock = threading.Lock()
        self._idle: list[psycopg.Connection[Any]] = []
        # Bumped by close(): a connection in use at that moment is closed when it comes back.
        self._generation = 0
        self._create_schema()

    @property
    def pool_size(self) -> int:
        """:return: the most connections this store opens at once."""
        return self._pool_size

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

    def issue_nonce(
        self,
        nonce: bytes,
        lifetime: float,
        *,
        binding: bytes | None = None,
        context: str | None = None,
    ) -> None:
        key = check_nonce(nonce)
        check_lifetime(lifetime)
        check_binding(binding)
        check_context(context)
        with self._cursor() as cursor:
            cursor.execute("DELETE FROM mie_nonce WHERE expires_at <= now()")
            cursor.execute(
                "INSERT INTO mie_nonce (nonce, expires_at, binding, context)"
                " VALUES (%s, now() + make_interval(secs => %s), %s, %s)"
                " ON CONFLICT (nonce) DO NOTHING",
                (key, lifetime, binding, context),
            )
            issued = cursor.rowcount
        if issued != 1:
            raise StoreInputError("Nonce was already issued")

    def consume_nonce(self, nonce: bytes, *, binding: bytes | None = None) -> str | None:
        key = check_nonce(nonce)
        check_binding(binding)
        with self._cursor() as cursor:
            # One statement in autocommit: of several nodes, exactly one gets the row back,
            # and it is gone whatever the binding check below decides.
            cursor.execute(
                "DELETE FROM mie_nonce WHERE nonce = %s"
                " RETURNING expires_at > now(), binding, context",
                (key,),
            )
            found = cursor.fetchone()
        if found is None:
            raise NonceUnknownError()
        alive, stored, context = found
        if isinstance(stored, memoryview):
            stored = bytes(stored)
        if (
            alive is not True
            or not isinstance(stored, bytes | None)
            or not isinstance(context, str | None)
            or not binding_matches(stored, binding)
        ):
            raise NonceUnknownError()
        return context

    def ping(self) -> None:
        with self._cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    def put_credential(
        self, record: CredentialRecord, *, temporary: TemporaryGrant | None = None
    ) -> None:
        check_credential(record)
        grant = credential_grant(record, temporary)
        ref = MieRef.fido2(record.rp_id, record.credential_id)
        row = (
            record.rp_id,
            record.credential_id.hex(),
            record.user_handle,
            record.public_key,
            record.alg,
            record.aaguid,
            record.sign_count,
            record.backup_eligible,
            record.attestation,
            record.certification,
            record.id_nat,
            record.test,
            float(record.created_at),
            None if record.last_used_at is None else float(record.last_used_at),
            record.suspended,
        )
        with self._cursor() as cursor, cursor.connection.transaction():
            cursor.execute(_SELECT_LIFECYCLE, (ref.kind, ref.subject))
            found = lifecycle_of(ref, cursor.fetchone())
            if found is not None and found.revocation is not None:
                raise revoked_refusal(found.revocation)
            cursor.execute(
                "INSERT INTO mie_fido_credential VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                " %s, %s, to_timestamp(%s), to_timestamp(%s), %s)"
                " ON CONFLICT (rp_id, credential_id) DO NOTHING",
                row,
            )
            if cursor.rowcount != 1:
                raise AlreadyRegisteredError(
                    f"Already registered: {credential_name(record.rp_id, record.credential_id)}"
                )
            if grant is not None:
                cursor.execute(_GRANT, (ref.kind, ref.subject, *grant_row(grant)))

    def get_credential(self, rp_id: str, credential_id: bytes) -> CredentialRecord:
        key = _credential_key(rp_id, credential_id)
        with self._cursor() as cursor:
            cursor.execute(_SELECT_CREDENTIAL, key)
            found = cursor.fetchone()
        if found is None:
            raise unknown_credential(rp_id, credential_id)
        return credential_from_row(found)

    def advance_counter(
        self, rp_id: str, credential_id: bytes, counter: int, *, allow_zero: bool
    ) -> CredentialRecord:
        key = _credential_key(rp_id, credential_id)
        check_sign_count(counter)
        zero = bool(allow_zero)
        for _ in range(_ATTEMPTS):
            with self._cursor() as cursor:
                # The guard: one statement, so PostgreSQL re-checks the condition on the row
                # another node has just updated, and of several nodes exactly one advances.
                cursor.execute(_ADVANCE, (counter, *key, counter, zero, counter))
                updated = cursor.fetchone()
                if updated is not None:
                    return credential_from_row(updated)
                cursor.execute(
                    "SELECT sign_count, suspended FROM mie_fido_credential"
                    " WHERE rp_id = %s AND credential_id = %s",
                    key,
                )
                found = cursor.fetchone()
                verdict = counter_refusal(
                    rp_id,
                    credential_id,
                    counter,
                    None if found is None else (found[0], found[1]),
                    allow_zero=zero,
                )
                if verdict == SUSPEND:
                    cursor.execute(
                        "UPDATE mie_fido_credential SET suspended = 'clone-suspected'"
                        " WHERE rp_id = %s AND credential_id = %s AND suspended IS NULL"
                        " AND sign_count > %s",
                        (*key, counter),
                    )
                    verdict = clone_suspended(rp_id, credential_id, counter)
            if isinstance(verdict, MieError):
                raise verdict
        raise StoreError(
            f"Signature counter of {credential_name(rp_id, credential_id)} kept changing"
        )

    def suspend_credential(self, rp_id: str, credential_id: bytes, reason: str) -> None:
        key = _credential_key(rp_id, credential_id)
        check_suspension(reason)
        with self._cursor() as cursor:
            cursor.execute(
                "UPDATE mie_fido_credential SET suspended ="
                " CASE WHEN suspended = 'revoked' THEN suspended ELSE %s END"
                " WHERE rp_id = %s AND credential_id = %s",
                (reason, *key),
            )
            changed = cursor.rowcount
        if changed != 1:
            raise unknown_credential(rp_id, credential_id)

    def delete_credential(self, rp_id: str, credential_id: bytes) -> None:
        key = _credential_key(rp_id, credential_id)
        with self._cursor() as cursor, cursor.connection.transaction():
            cursor.execute(
                "DELETE FROM mie_fido_credential WHERE rp_id = %s AND credential_id = %s", key
            )
            if cursor.rowcount != 1:
                raise unknown_credential(rp_id, credential_id)
            # Its grant goes with it; a revocation stays (never registered again).
            subject = ":".join(key)
            cursor.execute(_CLEAR_GRANT, (subject,))
            cursor.execute(_DROP_EMPTY, (subject,))

    def credentials_of(self, id_nat: str, rp_id: str | None = None) -> tuple[CredentialRecord, ...]:
        check_id_nat(id_nat)
        scope = None if rp_id is None else check_rp_id(rp_id)
        with self._cursor() as cursor:
            cursor.execute(_CREDENTIALS_OF, (id_nat, scope, scope))
            rows = cursor.fetchall()
        return tuple(credential_from_row(row) for row in rows)

    def revoke(self, revocation: Revocation) -> Revocation:
        check_revocation(revocation)
        ref = revocation.ref
        with self._cursor() as cursor, cursor.connection.transaction():
            cursor.execute(_SELECT_LIFECYCLE, (ref.kind, ref.subject))
            found = lifecycle_of(ref, cursor.fetchone())
            if found is not None and found.revocation is not None:
                return found.revocation  # the first one (the key may be deleted since)
            if ref.kind == "fido2":
                cursor.execute(
                    "UPDATE mie_fido_credential SET suspended = 'revoked'"
                    " WHERE rp_id = %s AND credential_id = %s",
                    (ref.rp_id, ref.credential_id.hex()),
                )
                if cursor.rowcount != 1:
                    raise unknown_credential(ref.rp_id, ref.credential_id)
            cursor.execute(_REVOKE, (ref.kind, ref.subject, *revocation_row(revocation)))
            stored = cursor.fetchone()
        return stored_revocation(ref, stored)

    def grant_temporary(self, grant: TemporaryGrant) -> None:
        check_grant(grant)
        ref = badge_only(grant)
        with self._cursor() as cursor, cursor.connection.transaction():
            # The row exists (empty if new), then is locked: two nodes granting at once are
            # serialised on it, and the second one sees the first one's grant.
            cursor.execute(
                "INSERT INTO mie_lifecycle (kind, subject) VALUES (%s, %s)"
                " ON CONFLICT (kind, subject) DO NOTHING",
                (ref.kind, ref.subject),
            )
            cursor.execute(_SELECT_LIFECYCLE + " FOR UPDATE", (ref.kind, ref.subject))
            refuse_grant(lifecycle_of(ref, cursor.fetchone()), grant)
            cursor.execute(_GRANT, (ref.kind, ref.subject, *grant_row(grant)))

    def lifecycle(self, ref: MieRef) -> LifecycleRecord | None:
        check_ref(ref)
        with self._cursor() as cursor:
            cursor.execute(_SELECT_LIFECYCLE, (ref.kind, ref.subject))
            found = cursor.fetchone()
        return lifecycle_of(ref, found)

    def audit_head(self, node: str) -> tuple[int, str] | None:
        check_node(node)
        with self._cursor() as cursor:
            cursor.execute(
                "SELECT seq, digest FROM mie_audit WHERE node = %s ORDER BY seq DESC LIMIT 1",
                (node,),
            )
            found = cursor.fetchone()
        return audit_head_of(node, found)

    def append_audit(self, node: str, seq: int, line: str, digest: str) -> None:
        check_audit(node, seq, line, digest)
        try:
            with self._cursor() as cursor:
                cursor.execute(_APPEND, (node, seq, line, digest, node, seq))
                inserted = cursor.rowcount
        except StoreError as e:
            # Two writers past the head check at once: the second meets the primary key.
            if isinstance(e.__cause__, pg_errors.UniqueViolation):
                raise audit_conflict(node, seq) from e
            raise
        if inserted != 1:
            raise audit_conflict(node, seq)

    def audit_lines(self, node: str, *, after: int = 0, limit: int = 1000) -> tuple[str, ...]:
        check_node(node)
        check_audit_range(after, limit)
        with self._cursor() as cursor:
            cursor.execute(
                "SELECT line FROM mie_audit WHERE node = %s AND seq > %s ORDER BY seq LIMIT %s",
                (node, after, limit),
            )
            rows = cursor.fetchall()
        return audit_lines_of(node, rows)

    def close(self) -> None:
        """Close the idle connections (and each one in use when it is given back); a later
        call opens a connection again."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._generation += 1
        _close_all(idle)

    def _change_one(self, badge: str, statement: str) -> None:
        with self._cursor() as cursor:
            cursor.execute(statement, (badge,))
            changed = cursor.rowcount
        if changed != 1:
            raise _not_enrolled(badge)

    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[Any]]:
        if not self._slots.acquire(timeout=self._wait_s):
            raise StoreTimeoutError(
                f"No PostgreSQL connection of the pool ({self._pool_size}) was free in time"
            )
        try:
            connection, generation = self._take()
            # A connection that raised a psycopg error is closed; after any other exception
            # (a refusal the caller raises mid-block) it serves again if no transaction is open.
            reusable = True
            try:
                try:
                    if connection is None:
                        connection = self._connect()
                    with connection.cursor() as cursor:
                        yield cursor
                except psycopg.Error as e:
                    reusable = False
                    if isinstance(e, psycopg.OperationalError):
                        # The server (or the network) went away: the idle connections are
                        # as dead as this one.
                        self._close_idle()
                    raise _translate(e) from e
            finally:
                self._give_back(connection, generation, reusable)
        finally:
            self._slots.release()

    def _take(self) -> tuple[psycopg.Connection[Any] | None, int]:
        with self._lock:
            connection = self._idle.pop() if self._idle else None
            return connection, self._generation

    def _give_back(
        self, connection: psycopg.Connection[Any] | None, generation: int, reusable: bool
    ) -> None:
        if connection is None:
            return
        keep = (
            reusable
            and not connection.closed
            and connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        )
        with self._lock:
            if keep and generation == self._generation:
                self._idle.append(connection)
                return
        _close_all([connection])

    def _close_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        _close_all(idle)

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=self._connect_timeout,
            options=f"-c statement_timeout={self._statement_ms}",
        )

    def _create_schema(self) -> None:
        with self._cursor() as cursor, cursor.connection.transaction():
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            for statement in SCHEMA:
                cursor.execute(statement)
            for table, column, declaration in COLUMNS:
                cursor.execute(
                    "SELECT 1 FROM information_schema.columns WHERE table_schema ="
                    " current_schema() AND table_name = %s AND column_name = %s",
                    (table, column),
                )
                if cursor.fetchone() is None:
                    cursor.execute(
                        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {declaration}"
                    )


def _close_all(connections: list[psycopg.Connection[Any]]) -> None:
    for connection in connections:
        with contextlib.suppress(psycopg.Error):
            connection.close()


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


def _credential_key(rp_id: str, credential_id: bytes) -> tuple[str, str]:
    return check_rp_id(rp_id), check_credential_id(credential_id)


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
