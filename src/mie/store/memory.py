"""A store in the memory of one process: for tests, the demo and the benchmark.

**One process only**: nothing is shared with another process or node, and everything is lost
when the process ends. Every operation holds one lock, so threads of the process see the same
single-use and compare-and-set semantics as on the shared backends (SQLite, PostgreSQL).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

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
    credential_grant,
    credential_name,
    new_generation,
    refuse_grant,
    revoked_refusal,
    unknown_credential,
)
from mie.store.errors import (
    AlreadyEnrolledError,
    AlreadyRegisteredError,
    NonceUnknownError,
    NotEnrolledError,
    SecondFactorChangedError,
    SecondFactorLockedError,
    StoreError,
    StoreInputError,
)


def _used(record: CredentialRecord, counter: int, at: float) -> CredentialRecord:
    """:return: ``dataclasses.replace(record, sign_count=counter, last_used_at=at)``, the same
    value built without running ``__init__`` (about 0.6 µs instead of 4, the largest cost of an
    assertion after its signature check). Equivalent because :class:`CredentialRecord` is a
    frozen dataclass without ``__post_init__`` or slots: its state is its ``__dict__`` of fields
    (tests/store/test_memory_counter.py checks both). The new record is complete before the
    caller publishes it under the store's lock, as before."""
    updated = object.__new__(type(record))
    state = updated.__dict__
    state.update(record.__dict__)
    state["sign_count"] = counter
    state["last_used_at"] = at
    return updated


@dataclasses.dataclass
class _Secret:
    secret_hash: str
    reserved: int
    cleared: int
    generation: int


class MemoryStore(Store):
    """State in this process's memory (a lock and dictionaries); not shared, not durable.

    :param clock: the wall clock of nonce lifetimes and of ``last_used_at`` (seconds since the
        epoch).
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._secrets: dict[str, _Secret] = {}
        # nonce -> (expires_at, binding, context)
        self._nonces: dict[str, tuple[float, bytes | None, str | None]] = {}
        self._credentials: dict[tuple[str, str], CredentialRecord] = {}
        self._lifecycle: dict[MieRef, LifecycleRecord] = {}
        # node -> [(line, digest)], record seq at index seq - 1
        self._audit: dict[str, list[tuple[str, str]]] = {}

    def put_secret(self, badge: str, secret_hash: str, *, replace: bool = False) -> None:
        check_badge(badge)
        check_hash(secret_hash)
        with self._lock:
            found = self._secrets.get(badge)
            if found is None:
                self._secrets[badge] = _Secret(secret_hash, 0, 0, new_generation())
            elif not replace:
                raise AlreadyEnrolledError(f"Badge {badge} already has a second factor")
            else:
                found.secret_hash = secret_hash
                found.cleared = found.reserved
                found.generation = new_generation()

    def reserve_guess(self, badge: str, limit: int) -> Reservation:
        check_badge(badge)
        check_limit(limit)
        with self._lock:
            found = self._secret(badge)
            if found.reserved - found.cleared >= limit:
                raise SecondFactorLockedError()
            found.reserved += 1
            return Reservation(
                badge,
                found.secret_hash,
                found.reserved,
                found.generation,
                found.reserved - found.cleared,
            )

    def forgive_guesses(self, reservation: Reservation) -> None:
        with self._lock:
            found = self._secrets.get(reservation.badge)
            if (
                found is None
                or found.generation != reservation.generation
                or found.reserved < reservation.ticket
            ):
                raise SecondFactorChangedError("Second factor was re-enrolled during the check")
            found.cleared = max(found.cleared, reservation.ticket)

    def clear_failures(self, badge: str) -> None:
        check_badge(badge)
        with self._lock:
            found = self._secret(badge)
            found.cleared = found.reserved

    def delete_secret(self, badge: str) -> None:
        check_badge(badge)
        with self._lock:
            self._secret(badge)
            del self._secrets[badge]

    def secret_status(self, badge: str) -> SecretStatus:
        check_badge(badge)
        with self._lock:
            found = self._secret(badge)
            return SecretStatus(found.reserved - found.cleared, found.generation)

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
        with self._lock:
            for expired in [k for k, row in self._nonces.items() if row[0] <= now]:
                del self._nonces[expired]
            if key in self._nonces:
                raise StoreInputError("Nonce was already issued")
            self._nonces[key] = (now + lifetime, binding, context)

    def consume_nonce(self, nonce: bytes, *, binding: bytes | None = None) -> str | None:
        key = check_nonce(nonce)
        check_binding(binding)
        now = self._clock()
        with self._lock:
            found = self._nonces.pop(key, None)
        if found is None:
            raise NonceUnknownError()
        expires_at, stored, context = found
        if expires_at <= now or not binding_matches(stored, binding):
            raise NonceUnknownError()
        return context

    def ping(self) -> None:
        # Always reachable: the state is this process's memory.
        return None

    def put_credential(
        self, record: CredentialRecord, *, temporary: TemporaryGrant | None = None
    ) -> None:
        check_credential(record)
        grant = credential_grant(record, temporary)
        ref = MieRef.fido2(record.rp_id, record.credential_id)
        key = (record.rp_id, record.credential_id.hex())
        with self._lock:
            found = self._lifecycle.get(ref)
            if found is not None and found.revocation is not None:
                raise revoked_refusal(found.revocation)
            if key in self._credentials:
                raise AlreadyRegisteredError(
                    f"Already registered: {credential_name(record.rp_id, record.credential_id)}"
                )
            self._credentials[key] = dataclasses.replace(
                record,
                created_at=float(record.created_at),
                last_used_at=None if record.last_used_at is None else float(record.last_used_at),
                temporary=grant,
            )
            if grant is not None:
                self._lifecycle[ref] = LifecycleRecord(ref, None, grant)

    def get_credential(self, rp_id: str, credential_id: bytes) -> CredentialRecord:
        key = _credential_key(rp_id, credential_id)
        with self._lock:
            found = self._credentials.get(key)
        if found is None:
            raise unknown_credential(rp_id, credential_id)
        return found

    def advance_counter(
        self, rp_id: str, credential_id: bytes, counter: int, *, allow_zero: bool
    ) -> CredentialRecord:
        key = _credential_key(rp_id, credential_id)
        check_sign_count(counter)
        zero = bool(allow_zero)
        with self._lock:
            found = self._credentials.get(key)
            if (
                found is not None
                and found.suspended is None
                and (found.sign_count < counter or (zero and counter == 0 == found.sign_count))
            ):
                updated = _used(found, counter, float(self._clock()))
                self._credentials[key] = updated
                return updated
            verdict = counter_refusal(
                rp_id,
                credential_id,
                counter,
                None if found is None else (found.sign_count, found.suspended),
                allow_zero=zero,
            )
            if verdict == SUSPEND and found is not None:
                self._credentials[key] = dataclasses.replace(found, suspended="clone-suspected")
                verdict = clone_suspended(rp_id, credential_id, counter)
        if isinstance(verdict, MieError):
            raise verdict
        # RETRY cannot happen under the lock: the condition above accepted every such case.
        raise StoreError(f"Signature counter of {credential_name(rp_id, credential_id)} is stuck")

    def suspend_credential(self, rp_id: str, credential_id: bytes, reason: str) -> None:
        key = _credential_key(rp_id, credential_id)
        check_suspension(reason)
        with self._lock:
            found = self._credentials.get(key)
            if found is None:
                raise unknown_credential(rp_id, credential_id)
            if found.suspended != "revoked":
                self._credentials[key] = dataclasses.replace(found, suspended=reason)

    def delete_credential(self, rp_id: str, credential_id: bytes) -> None:
        key = _credential_key(rp_id, credential_id)
        with self._lock:
            if self._credentials.pop(key, None) is None:
                raise unknown_credential(rp_id, credential_id)
            # Its grant goes with it; a revocation stays (never registered again).
            ref = MieRef.fido2(rp_id, credential_id)
            found = self._lifecycle.pop(ref, None)
            if found is not None and found.revocation is not None:
                self._lifecycle[ref] = LifecycleRecord(ref, found.revocation, None)

    def credentials_of(self, id_nat: str, rp_id: str | None = None) -> tuple[CredentialRecord, ...]:
        check_id_nat(id_nat)
        scope = None if rp_id is None else check_rp_id(rp_id)
        with self._lock:
            found = [
                r
                for r in self._credentials.values()
                if r.id_nat == id_nat and scope in (None, r.rp_id)
            ]
        return tuple(sorted(found, key=lambda r: (r.created_at, r.rp_id, r.credential_id.hex())))

    def revoke(self, revocation: Revocation) -> Revocation:
        check_revocation(revocation)
        ref = revocation.ref
        with self._lock:
            found = self._lifecycle.get(ref)
            if found is not None and found.revocation is not None:
                return found.revocation
            if ref.kind == "fido2":
                key = (ref.rp_id, ref.credential_id.hex())
                credential = self._credentials.get(key)
                if credential is None:
                    raise unknown_credential(ref.rp_id, ref.credential_id)
                self._credentials[key] = dataclasses.replace(credential, suspended="revoked")
            stored = dataclasses.replace(revocation, revoked_at=float(revocation.revoked_at))
            grant = None if found is None else found.temporary
            self._lifecycle[ref] = LifecycleRecord(ref, stored, grant)
            return stored

    def grant_temporary(self, grant: TemporaryGrant) -> None:
        check_grant(grant)
        ref = badge_only(grant)
        with self._lock:
            refuse_grant(self._lifecycle.get(ref), grant)
            self._lifecycle[ref] = LifecycleRecord(
                ref,
                None,
                dataclasses.replace(
                    grant,
                    issued_at=float(grant.issued_at),
                    expires_at=float(grant.expires_at),
                ),
            )

    def lifecycle(self, ref: MieRef) -> LifecycleRecord | None:
        check_ref(ref)
        with self._lock:
            return self._lifecycle.get(ref)

    def audit_head(self, node: str) -> tuple[int, str] | None:
        check_node(node)
        with self._lock:
            chain = self._audit.get(node)
            return (len(chain), chain[-1][1]) if chain else None

    def append_audit(self, node: str, seq: int, line: str, digest: str) -> None:
        check_audit(node, seq, line, digest)
        with self._lock:
            chain = self._audit.setdefault(node, [])
            if seq != len(chain) + 1:
                raise audit_conflict(node, seq)
            chain.append((line, digest))

    def audit_lines(self, node: str, *, after: int = 0, limit: int = 1000) -> tuple[str, ...]:
        check_node(node)
        check_audit_range(after, limit)
        with self._lock:
            chain = self._audit.get(node, [])
            return tuple(line for line, _ in chain[after : after + limit])

    def close(self) -> None:
        # Nothing to release; the state stays readable until the object is dropped.
        return None

    def _secret(self, badge: str) -> _Secret:
        found = self._secrets.get(badge)
        if found is None:
            raise NotEnrolledError(f"No second factor enrolled for badge {badge}")
        return found


def _credential_key(rp_id: str, credential_id: bytes) -> tuple[str, str]:
    return check_rp_id(rp_id), check_credential_id(credential_id)
