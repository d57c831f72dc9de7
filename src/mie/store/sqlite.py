"""The embedded default store: one SQLite file in WAL mode, safe across processes.

Every operation runs in its own ``BEGIN IMMEDIATE`` transaction, which takes the database's
write lock before reading: two processes reserving a guess for one badge are serialised by
SQLite, the second one reading the counter the first one wrote. ``synchronous = FULL`` makes a
reserved guess (and a moved signature counter) durable before the operation returns, so a power
loss cannot give it back. Each thread of each process keeps one connection to the file, opened
at its first operation (a connection is never shared between threads, nor kept across a
``fork``), and drops it after any SQLite error; :meth:`SqliteStore.close` closes them.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

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
    lifecycle_from_row,
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
#: single-use challenges) is one more statement.
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS mie_second_factor ("
    " badge TEXT PRIMARY KEY,"
    " secret_hash TEXT NOT NULL,"
    " reserved INTEGER NOT NULL CHECK (reserved >= 0),"
    " cleared INTEGER NOT NULL CHECK (cleared >= 0 AND cleared <= reserved),"
    " generation INTEGER NOT NULL"
    ")",
    "CREATE TABLE IF NOT EXISTS mie_nonce (nonce TEXT PRIMARY KEY, expires_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS mie_nonce_expiry ON mie_nonce (expires_at)",
    # FIDO2 credentials (issue 10): the credential id in lower-case hex.
    "CREATE TABLE IF NOT EXISTS mie_fido_credential ("
    " rp_id TEXT NOT NULL CHECK (length(rp_id) BETWEEN 1 AND 253),"
    " credential_id TEXT NOT NULL CHECK (length(credential_id) BETWEEN 2 AND 2046),"
    " user_handle BLOB NOT NULL CHECK (length(user_handle) BETWEEN 1 AND 64),"
    " public_key BLOB NOT NULL CHECK (length(public_key) BETWEEN 1 AND 2048),"
    " alg INTEGER NOT NULL,"
    " aaguid BLOB NOT NULL CHECK (length(aaguid) = 16),"
    " sign_count INTEGER NOT NULL CHECK (sign_count BETWEEN 0 AND 4294967295),"
    " backup_eligible INTEGER NOT NULL CHECK (backup_eligible IN (0, 1)),"
    " attestation TEXT NOT NULL CHECK (length(attestation) BETWEEN 1 AND 64),"
    " certification TEXT CHECK (length(certification) BETWEEN 1 AND 64),"
    " id_nat TEXT NOT NULL CHECK (length(id_nat) BETWEEN 1 AND 64),"
    " test INTEGER NOT NULL CHECK (test IN (0, 1)),"
    " created_at REAL NOT NULL,"
    " last_used_at REAL,"
    " suspended TEXT CHECK (suspended IN ('clone-suspected', 'revoked')),"
    " PRIMARY KEY (rp_id, credential_id)"
    ")",
    "CREATE INDEX IF NOT EXISTS mie_fido_credential_id_nat ON mie_fido_credential (id_nat)",
    # The MIE lifecycle (issue 11): a revocation and a temporary grant per badge or credential;
    # times in seconds since the epoch (the callers' clocks, as the grants' bounds).
    "CREATE TABLE IF NOT EXISTS mie_lifecycle ("
    " kind TEXT NOT NULL CHECK (kind IN ('badge', 'fido2')),"
    " subject TEXT NOT NULL CHECK (length(subject) BETWEEN 1 AND 2300),"
    " revoked_at REAL,"
    " revoke_reason TEXT,"
    " revoke_note TEXT,"
    " revoked_by TEXT,"
    " id_nat TEXT,"
    " temp_reason TEXT,"
    " issued_at REAL,"
    " expires_at REAL,"
    " max_level TEXT,"
    " replaces TEXT,"
    " granted_by TEXT,"
    " CHECK ((revoked_at IS NULL) = (revoke_reason IS NULL)),"
    " CHECK ((id_nat IS NULL) = (expires_at IS NULL)),"
    " PRIMARY KEY (kind, subject)"
    ")",
    # The audit trail (issue 11): one hash chain per node, its records numbered from 1.
    "CREATE TABLE IF NOT EXISTS mie_audit ("
    " node TEXT NOT NULL CHECK (length(node) BETWEEN 1 AND 64),"
    " seq INTEGER NOT NULL CHECK (seq > 0),"
    " line TEXT NOT NULL,"
    " digest TEXT NOT NULL CHECK (length(digest) = 64),"
    " PRIMARY KEY (node, seq)"
    ")",
)
#: Columns added to tables of an older schema (issue 11): ``(table, column, declaration)``;
#: each is added, once, by the schema step when ``PRAGMA table_info`` lacks it.
COLUMNS = (
    ("mie_nonce", "binding", "BLOB CHECK (binding IS NULL OR length(binding) BETWEEN 1 AND 64)"),
    ("mie_nonce", "context", "TEXT CHECK (context IS NULL OR length(context) BETWEEN 1 AND 2048)"),
)
#: A credential's columns with its grant's (a temporary credential's lifecycle row), in the
#: order :func:`~mie.store.base.credential_from_row` reads.
_CREDENTIAL_COLUMNS = (
    "c.rp_id, c.credential_id, c.user_handle, c.public_key, c.alg, c.aaguid, c.sign_count,"
    " c.backup_eligible, c.attestation, c.certification, c.id_nat, c.test, c.created_at,"
    " c.last_used_at, c.suspended, l.id_nat, l.temp_reason, l.issued_at, l.expires_at,"
    " l.max_level, l.replaces, l.granted_by FROM mie_fido_credential c LEFT JOIN mie_lifecycle l"
    " ON l.kind = 'fido2' AND l.subject = c.rp_id || ':' || c.credential_id"
)
_SELECT_CREDENTIAL = f"SELECT {_CREDENTIAL_COLUMNS} WHERE c.rp_id = ? AND c.credential_id = ?"
_SELECT_LIFECYCLE = (
    "SELECT revoked_at, revoke_reason, revoke_note, revoked_by, id_nat, temp_reason, issued_at,"
    " expires_at, max_level, replaces, granted_by FROM mie_lifecycle WHERE kind = ? AND subject = ?"
)
#: Revoke once: a row revoked already keeps its first revocation (one statement).
_REVOKE = (
    "INSERT INTO mie_lifecycle (kind, subject, revoked_at, revoke_reason, revoke_note, revoked_by)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, subject) DO UPDATE SET"
    " revoke_reason = coalesce(mie_lifecycle.revoke_reason, excluded.revoke_reason),"
    " revoke_note = CASE WHEN mie_lifecycle.revoked_at IS NULL THEN excluded.revoke_note"
    " ELSE mie_lifecycle.revoke_note END,"
    " revoked_by = coalesce(mie_lifecycle.revoked_by, excluded.revoked_by),"
    " revoked_at = coalesce(mie_lifecycle.revoked_at, excluded.revoked_at)"
    " RETURNING revoked_at, revoke_reason, revoke_note, revoked_by"
)
_GRANT = (
    "INSERT INTO mie_lifecycle (kind, subject, id_nat, temp_reason, issued_at, expires_at,"
    " max_level, replaces, granted_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (kind, subject) DO UPDATE SET id_nat = excluded.id_nat,"
    " temp_reason = excluded.temp_reason, issued_at = excluded.issued_at,"
    " expires_at = excluded.expires_at, max_level = excluded.max_level,"
    " replaces = excluded.replaces, granted_by = excluded.granted_by"
)

#: How many times :meth:`SqliteStore.advance_counter` decides again when the row changed under
#: it (it cannot within one transaction: a bound, not a loop).
_ATTEMPTS = 3
MAX_BUSY_TIMEOUT = 600.0

_SELECT = "SELECT secret_hash, reserved, cleared, generation FROM mie_second_factor WHERE badge = ?"


class SqliteStore(Store):
    """State in one SQLite file, shared by every process that opens the same path.

    :param path: the database file (created, with its schema, when missing).
    :param busy_timeout: the deadline, in seconds, for the write lock of one operation; past
        it the operation raises :class:`~mie.store.errors.StoreTimeoutError`.
    :param clock: the wall clock nonce lifetimes are measured on (seconds since the epoch,
        shared by every process of the host).
    :raises StoreInputError: an in-memory or empty path (not shared), or a timeout out of range.
    :raises StoreError: the file cannot be opened, or refuses WAL mode.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = os.fspath(path)
        if self._path in ("", ":memory:"):
            raise StoreInputError("SQLite store needs a file path, shared by every process")
        if not 0 < busy_timeout <= MAX_BUSY_TIMEOUT:
            raise StoreInputError(f"Busy timeout must be above 0 and at most {MAX_BUSY_TIMEOUT} s")
        self._busy_timeout = busy_timeout
        self._clock = clock
        # This thread's connection, with the process and the close() generation it belongs to;
        # the set only refers to them weakly: a thread that ends takes its connection along.
        self._local = threading.local()
        self._opened: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._opened_lock = threading.Lock()
        self._generation = 0
        self._create_schema()

    @property
    def path(self) -> str:
        """:return: the database file."""
        return self._path

    def put_secret(self, badge: str, secret_hash: str, *, replace: bool = False) -> None:
        check_badge(badge)
        check_hash(secret_hash)
        with self._transaction() as db:
            found = db.execute(_SELECT, (badge,)).fetchone()
            if found is None:
                db.execute(
                    "INSERT INTO mie_second_factor VALUES (?, ?, 0, 0, ?)",
                    (badge, secret_hash, new_generation()),
                )
            elif not replace:
                raise AlreadyEnrolledError(f"Badge {badge} already has a second factor")
            else:
                db.execute(
                    "UPDATE mie_second_factor SET secret_hash = ?, cleared = reserved,"
                    " generation = ? WHERE badge = ?",
                    (secret_hash, new_generation(), badge),
                )

    def reserve_guess(self, badge: str, limit: int) -> Reservation:
        check_badge(badge)
        check_limit(limit)
        with self._transaction() as db:
            secret_hash, reserved, cleared, generation = _row(badge, db.execute(_SELECT, (badge,)))
            if reserved - cleared >= limit:
                raise SecondFactorLockedError()
            db.execute(
                "UPDATE mie_second_factor SET reserved = reserved + 1 WHERE badge = ?",
                (badge,),
            )
        ticket = reserved + 1
        return Reservation(badge, secret_hash, ticket, generation, ticket - cleared)

    def forgive_guesses(self, reservation: Reservation) -> None:
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE mie_second_factor SET cleared = max(cleared, ?)"
                " WHERE badge = ? AND generation = ? AND reserved >= ?",
                (reservation.ticket, reservation.badge, reservation.generation, reservation.ticket),
            ).rowcount
        if changed != 1:
            raise SecondFactorChangedError("Second factor was re-enrolled during the check")

    def clear_failures(self, badge: str) -> None:
        check_badge(badge)
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE mie_second_factor SET cleared = reserved WHERE badge = ?", (badge,)
            ).rowcount
            if changed != 1:
                raise _not_enrolled(badge)

    def delete_secret(self, badge: str) -> None:
        check_badge(badge)
        with self._transaction() as db:
            changed = db.execute("DELETE FROM mie_second_factor WHERE badge = ?", (badge,)).rowcount
            if changed != 1:
                raise _not_enrolled(badge)

    def secret_status(self, badge: str) -> SecretStatus:
        check_badge(badge)
        with self._transaction() as db:
            _, reserved, cleared, generation = _row(badge, db.execute(_SELECT, (badge,)))
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
        now = self._clock()
        with self._transaction() as db:
            db.execute("DELETE FROM mie_nonce WHERE expires_at <= ?", (now,))
            if db.execute("SELECT 1 FROM mie_nonce WHERE nonce = ?", (key,)).fetchone():
                raise StoreInputError("Nonce was already issued")
            db.execute(
                "INSERT INTO mie_nonce (nonce, expires_at, binding, context) VALUES (?, ?, ?, ?)",
                (key, now + lifetime, binding, context),
            )

    def consume_nonce(self, nonce: bytes, *, binding: bytes | None = None) -> str | None:
        key = check_nonce(nonce)
        check_binding(binding)
        now = self._clock()
        with self._transaction() as db:
            found = db.execute(
                "SELECT expires_at, binding, context FROM mie_nonce WHERE nonce = ?", (key,)
            ).fetchone()
            db.execute("DELETE FROM mie_nonce WHERE nonce = ?", (key,))
        if found is None:
            raise NonceUnknownError()
        expires_at, stored, context = found
        if (
            not isinstance(expires_at, float)
            or expires_at <= now
            or not isinstance(stored, bytes | None)
            or not isinstance(context, str | None)
            or not binding_matches(stored, binding)
        ):
            raise NonceUnknownError()
        return context

    def ping(self) -> None:
        with self._transaction() as db:
            db.execute("SELECT 1").fetchone()

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
            int(record.backup_eligible),
            record.attestation,
            record.certification,
            record.id_nat,
            int(record.test),
            float(record.created_at),
            None if record.last_used_at is None else float(record.last_used_at),
            record.suspended,
        )
        with self._transaction() as db:
            _refuse_revoked(db, ref)
            inserted = db.execute(
                "INSERT INTO mie_fido_credential"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (rp_id, credential_id) DO NOTHING",
                row,
            ).rowcount
            if inserted != 1:
                raise AlreadyRegisteredError(
                    f"Already registered: {credential_name(record.rp_id, record.credential_id)}"
                )
            if grant is not None:
                db.execute(_GRANT, (ref.kind, ref.subject, *grant_row(grant)))

    def get_credential(self, rp_id: str, credential_id: bytes) -> CredentialRecord:
        key = _credential_key(rp_id, credential_id)
        with self._transaction() as db:
            found = db.execute(_SELECT_CREDENTIAL, key).fetchone()
        if found is None:
            raise unknown_credential(rp_id, credential_id)
        return credential_from_row(found)

    def advance_counter(
        self, rp_id: str, credential_id: bytes, counter: int, *, allow_zero: bool
    ) -> CredentialRecord:
        key = _credential_key(rp_id, credential_id)
        check_sign_count(counter)
        for _ in range(_ATTEMPTS):
            with self._transaction() as db:
                updated = db.execute(
                    "UPDATE mie_fido_credential SET sign_count = ?, last_used_at = ?"
                    " WHERE rp_id = ? AND credential_id = ? AND suspended IS NULL"
                    " AND (sign_count < ? OR (? AND ? = 0 AND sign_count = 0))"
                    " RETURNING rp_id, credential_id, user_handle, public_key, alg, aaguid,"
                    " sign_count, backup_eligible, attestation, certification, id_nat, test,"
                    " created_at, last_used_at, suspended",
                    (counter, self._clock(), *key, counter, int(bool(allow_zero)), counter),
                ).fetchone()
                if updated is not None:
                    grant = db.execute(
                        "SELECT id_nat, temp_reason, issued_at, expires_at, max_level, replaces,"
                        " granted_by FROM mie_lifecycle WHERE kind = 'fido2' AND subject = ?",
                        (":".join(key),),
                    ).fetchone()
                    return credential_from_row(tuple(updated) + tuple(grant or (None,) * 7))
                found = db.execute(
                    "SELECT sign_count, suspended FROM mie_fido_credential"
                    " WHERE rp_id = ? AND credential_id = ?",
                    key,
                ).fetchone()
                verdict = counter_refusal(
                    rp_id, credential_id, counter, found, allow_zero=bool(allow_zero)
                )
                if verdict == SUSPEND:
                    db.execute(
                        "UPDATE mie_fido_credential SET suspended = 'clone-suspected'"
                        " WHERE rp_id = ? AND credential_id = ? AND suspended IS NULL"
                        " AND sign_count > ?",
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
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE mie_fido_credential SET suspended ="
                " CASE WHEN suspended = 'revoked' THEN suspended ELSE ? END"
                " WHERE rp_id = ? AND credential_id = ?",
                (reason, *key),
            ).rowcount
        if changed != 1:
            raise unknown_credential(rp_id, credential_id)

    def delete_credential(self, rp_id: str, credential_id: bytes) -> None:
        key = _credential_key(rp_id, credential_id)
        with self._transaction() as db:
            changed = db.execute(
                "DELETE FROM mie_fido_credential WHERE rp_id = ? AND credential_id = ?", key
            ).rowcount
            if changed != 1:
                raise unknown_credential(rp_id, credential_id)
            # Its grant goes with it; a revocation stays (never registered again).
            subject = ":".join(key)
            db.execute(_CLEAR_GRANT, (subject,))
            db.execute(_DROP_EMPTY, (subject,))

    def credentials_of(self, id_nat: str, rp_id: str | None = None) -> tuple[CredentialRecord, ...]:
        check_id_nat(id_nat)
        scope = None if rp_id is None else check_rp_id(rp_id)
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT {_CREDENTIAL_COLUMNS} WHERE c.id_nat = ? AND (? IS NULL OR c.rp_id = ?)"
                " ORDER BY c.created_at, c.rp_id, c.credential_id",
                (id_nat, scope, scope),
            ).fetchall()
        return tuple(credential_from_row(row) for row in rows)

    def revoke(self, revocation: Revocation) -> Revocation:
        check_revocation(revocation)
        ref = revocation.ref
        with self._transaction() as db:
            found = lifecycle_of(
                ref, db.execute(_SELECT_LIFECYCLE, (ref.kind, ref.subject)).fetchone()
            )
            if found is not None and found.revocation is not None:
                return found.revocation  # the first one (the key may be deleted since)
            if ref.kind == "fido2":
                changed = db.execute(
                    "UPDATE mie_fido_credential SET suspended = 'revoked'"
                    " WHERE rp_id = ? AND credential_id = ?",
                    (ref.rp_id, ref.credential_id.hex()),
                ).rowcount
                if changed != 1:
                    raise unknown_credential(ref.rp_id, ref.credential_id)
            stored = db.execute(
                _REVOKE, (ref.kind, ref.subject, *revocation_row(revocation))
            ).fetchone()
        return stored_revocation(ref, stored)

    def grant_temporary(self, grant: TemporaryGrant) -> None:
        check_grant(grant)
        ref = badge_only(grant)
        with self._transaction() as db:
            found = db.execute(_SELECT_LIFECYCLE, (ref.kind, ref.subject)).fetchone()
            if found is not None:
                refuse_grant(lifecycle_from_row(ref, found), grant)
            db.execute(_GRANT, (ref.kind, ref.subject, *grant_row(grant)))

    def lifecycle(self, ref: MieRef) -> LifecycleRecord | None:
        check_ref(ref)
        with self._transaction() as db:
            found = db.execute(_SELECT_LIFECYCLE, (ref.kind, ref.subject)).fetchone()
        return lifecycle_of(ref, found)

    def audit_head(self, node: str) -> tuple[int, str] | None:
        check_node(node)
        with self._transaction() as db:
            found = db.execute(
                "SELECT seq, digest FROM mie_audit WHERE node = ? ORDER BY seq DESC LIMIT 1",
                (node,),
            ).fetchone()
        return audit_head_of(node, found)

    def append_audit(self, node: str, seq: int, line: str, digest: str) -> None:
        check_audit(node, seq, line, digest)
        with self._transaction() as db:
            inserted = db.execute(_APPEND, (node, seq, line, digest, node, seq)).rowcount
        if inserted != 1:
            raise audit_conflict(node, seq)

    def audit_lines(self, node: str, *, after: int = 0, limit: int = 1000) -> tuple[str, ...]:
        check_node(node)
        check_audit_range(after, limit)
        with self._transaction() as db:
            rows = db.execute(
                "SELECT line FROM mie_audit WHERE node = ? AND seq > ? ORDER BY seq LIMIT ?",
                (node, after, limit),
            ).fetchall()
        return audit_lines_of(node, rows)

    def close(self) -> None:
        """Close the connections this store opened in this process; a later operation opens
        its thread's connection again."""
        with self._opened_lock:
            opened, self._opened = list(self._opened), weakref.WeakSet()
            self._generation += 1
        for db in opened:
            if db.pid == os.getpid():  # a connection inherited through fork is not this process's
                with contextlib.suppress(sqlite3.Error):
                    db.close()

    def _connect(self) -> _Connection:
        db = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
            factory=_Connection,
        )
        try:
            db.execute("PRAGMA synchronous = FULL")
        except BaseException:
            db.close()
            raise
        return db

    def _connection(self) -> _Connection:
        """:return: this thread's connection, opened at its first use (again after a fork, a
        :meth:`close` or an error)."""
        mine = getattr(self._local, "connection", None)
        if mine is not None and mine[0] == self._generation and mine[1].pid == os.getpid():
            db: _Connection = mine[1]
            return db
        db = self._connect()
        with self._opened_lock:
            self._opened.add(db)
            self._local.connection = (self._generation, db)
        return db

    def _drop_connection(self, db: _Connection) -> None:
        # After an SQLite error the connection's state is not trusted: the next operation of
        # this thread opens a new one.
        self._local.connection = None
        with self._opened_lock:
            self._opened.discard(db)
        with contextlib.suppress(sqlite3.Error):
            db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            db = self._connection()
        except sqlite3.Error as e:
            raise _translate(e) from e
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as e:
            self._drop_connection(db)
            raise _translate(e) from e
        except BaseException:
            # Rolled back: the connection serves again; anything else: a new one next time.
            if not _idle(db):
                self._drop_connection(db)
            raise

    def _wal(self, db: _Connection) -> str:
        """Switch the file to WAL mode. SQLite answers "database is locked" at once, without its
        busy handler, while another process holds a transaction on a file still in rollback mode
        (two nodes starting on one new file): the switch is tried again until the busy deadline."""
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                (mode,) = db.execute("PRAGMA journal_mode = WAL").fetchone()
                return str(mode)
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    def _create_schema(self) -> None:
        try:
            db = self._connection()
            try:
                mode = self._wal(db)
            except BaseException:
                self._drop_connection(db)
                raise
        except sqlite3.Error as e:
            raise _translate(e) from e
        if mode != "wal":
            raise StoreError(f"SQLite file {self._path} refuses WAL mode (journal mode {mode})")
        # Inside BEGIN IMMEDIATE: two processes upgrading at once are serialised, and the
        # second one finds the columns the first added.
        with self._transaction() as schema:
            for statement in SCHEMA:
                schema.execute(statement)
            for table, column, declaration in COLUMNS:
                present = {row[1] for row in schema.execute(f"PRAGMA table_info({table})")}
                if column not in present:
                    schema.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


_CLEAR_GRANT = (
    "UPDATE mie_lifecycle SET id_nat = NULL, temp_reason = NULL, issued_at = NULL,"
    " expires_at = NULL, max_level = NULL, replaces = NULL, granted_by = NULL"
    " WHERE kind = 'fido2' AND subject = ?"
)
_DROP_EMPTY = (
    "DELETE FROM mie_lifecycle WHERE kind = 'fido2' AND subject = ? AND revoked_at IS NULL"
    " AND id_nat IS NULL"
)
#: Append a record only as the next of its chain: ``(node, seq)`` free and ``seq - 1`` the
#: head (a gap or a taken number is a conflict, never a fork).
_APPEND = (
    "INSERT INTO mie_audit (node, seq, line, digest) SELECT ?, ?, ?, ?"
    " WHERE coalesce((SELECT max(seq) FROM mie_audit WHERE node = ?), 0) = ? - 1"
    " ON CONFLICT (node, seq) DO NOTHING"
)


def _refuse_revoked(db: sqlite3.Connection, ref: MieRef) -> None:
    found = db.execute(_SELECT_LIFECYCLE, (ref.kind, ref.subject)).fetchone()
    record = lifecycle_of(ref, found)
    if record is not None and record.revocation is not None:
        raise revoked_refusal(record.revocation)


class _Connection(sqlite3.Connection):
    """A connection that knows the process that opened it (and that a weak set can hold)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pid = os.getpid()


def _idle(db: sqlite3.Connection) -> bool:
    """:return: whether ``db`` is open with no transaction in progress."""
    try:
        return not db.in_transaction
    except sqlite3.Error:
        return False


def _row(badge: str, cursor: sqlite3.Cursor) -> tuple[str, int, int, int]:
    found = cursor.fetchone()
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


def _translate(error: sqlite3.Error) -> StoreError:
    if isinstance(error, sqlite3.OperationalError) and error.sqlite_errorname in (
        "SQLITE_BUSY",
        "SQLITE_LOCKED",
    ):
        return StoreTimeoutError("SQLite store stayed locked past the busy timeout")
    return StoreError(f"SQLite store failed: {error}")
