"""The service's verification steps, synchronous and free of HTTP (plan D11): the handlers run
them on worker threads, the benchmark's floor and the unit tests call them directly.

A verification, in order: the nonce's size (32 bytes, else ``nonce_unknown`` without a store
call); its consumption in the shared store, bound to the caller's session (first use, valid
or not: ``nonce_unknown`` for absent, expired or another session's); its purpose; then
:func:`mie.verify_evidence` against the service's origin (binding, signature, chain,
revocation, lifecycle, level); the PSC claims at ``substantial`` and above; the audit record
(a success is answered only once every sink recorded it); the metrics.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mie.core.errors import ErrorCode, MieError, VerificationError
from mie.evidence import Evidence
from mie.policy import AssuranceLevel
from mie.result import AuthenticatorInfo, AuthResult
from mie.service.callers import Caller
from mie.service.context import ServiceContext
from mie.service.errors import status_of
from mie.service.metrics import kind_of
from mie.store.errors import NonceUnknownError, StoreError
from mie.verification import Expected, verify_evidence

log = logging.getLogger("mie.service")

NONCE_BYTES = 32
MAX_CONTEXT = 2048
PURPOSES = ("verify", "relay", "fido.register", "fido.authenticate")
_LEVELS = {AssuranceLevel.SUBSTANTIAL, AssuranceLevel.HIGH}
_SYSTEM = Caller("mie", frozenset())


def utc_text(seconds: float) -> str:
    """:return: ``seconds`` since the epoch as ISO 8601 UTC with ``Z`` (milliseconds)."""
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Challenge:
    """An issued nonce.

    :param nonce: 32 random bytes.
    :param origin: the origin evidence must be bound to.
    :param expires_at: its expiry, seconds since the epoch.
    """

    nonce: bytes
    origin: str
    expires_at: float

    def to_json(self) -> dict[str, Any]:
        """:return: ``{"nonce": hex, "origin", "expires_at": ISO 8601}``."""
        return {
            "nonce": self.nonce.hex(),
            "origin": self.origin,
            "expires_at": utc_text(self.expires_at),
        }


@dataclass(frozen=True)
class Outcome:
    """What a verification answers.

    :param result: the result (``valid`` false with its error on a failure).
    :param status: the HTTP status (200, or the error code's).
    :param claims: the PSC claims (a ``mie.psc.PscClaims``), if emitted.
    :param audit: the audit stamp (``node``, ``seq``) of its record, if audited.
    """

    result: AuthResult
    status: int
    claims: Any = None
    audit: Any = None

    def to_json(self) -> dict[str, Any]:
        """:return: the result's JSON with ``psc_claims`` and ``audit``."""
        body = self.result.to_json()
        body["psc_claims"] = self.claims.to_json() if self.claims is not None else None
        body["audit"] = (
            {"node": self.audit.node, "seq": self.audit.seq} if self.audit is not None else None
        )
        return body


class VerifyCore:
    """The verification steps of one node (see the module docstring).

    :param ctx: the node's resources.
    """

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def issue(
        self, caller: Caller, purpose: str, context: Mapping[str, Any] | None = None
    ) -> Challenge:
        """Issue a nonce for ``purpose``, bound to the caller's session, with ``context``
        stored beside it (the state of a ceremony, for whichever node completes it).

        :raises StoreError: the store is unavailable (``store_unavailable``).
        """
        if purpose not in PURPOSES:
            raise ValueError(f"Unknown nonce purpose {purpose!r}")
        text = json.dumps(
            {**(context or {}), "purpose": purpose}, separators=(",", ":"), sort_keys=True
        )
        if len(text) > MAX_CONTEXT:
            raise ValueError(f"Nonce context of {len(text)} characters, at most {MAX_CONTEXT}")
        nonce = secrets.token_bytes(NONCE_BYTES)
        lifetime = self.ctx.config.nonce_lifetime
        now = self.ctx.clock()
        try:
            self.ctx.store.issue_nonce(nonce, lifetime, binding=caller.binding, context=text)
        except StoreError:
            self.ctx.metrics.store_errors.inc()
            raise
        self.ctx.metrics.challenges.labels(purpose).inc()
        return Challenge(nonce, self.ctx.origin, now + lifetime)

    def started(self) -> None:
        """Record the node's ``start`` event (its version)."""
        import mie

        self.record_event("start", _SYSTEM, None, None, detail={"version": mie.__version__})

    def stopped(self) -> None:
        """Record the node's ``stop`` event (the heads of its chains)."""
        heads = self.ctx.audit.heads() if self.ctx.audit is not None else ()
        detail = {"heads": [None if h is None else h[1] for h in heads]}
        self.record_event("stop", _SYSTEM, None, None, detail=detail)

    def consume(self, nonce: bytes, caller: Caller, purposes: Sequence[str]) -> dict[str, Any]:
        """Consume ``nonce`` (first use, valid or not) and return its context.

        :raises NonceUnknownError: not 32 bytes (no store call), absent, expired, bound to
            another session, or issued for another purpose.
        :raises StoreError: the store is unavailable.
        """
        if len(nonce) != NONCE_BYTES:
            raise NonceUnknownError()
        try:
            text = self.ctx.store.consume_nonce(nonce, binding=caller.binding)
        except StoreError:
            self.ctx.metrics.store_errors.inc()
            raise
        context = _context(text)
        if context.get("purpose") not in purposes:
            raise NonceUnknownError()
        return context

    def verify(
        self,
        caller: Caller,
        evidence: Evidence,
        authenticator: AuthenticatorInfo | None,
        *,
        purposes: Sequence[str] = ("verify", "fido.authenticate"),
        request_id: str | None = None,
        event: str = "verify",
    ) -> Outcome:
        """Consume the evidence's nonce and verify the evidence (never raises a
        :class:`~mie.errors.MieError`: a failure is the outcome's result).

        :param purposes: the nonce purposes this route takes.
        :return: the outcome.
        """
        started = time.perf_counter()
        kind = kind_of(evidence.type)
        try:
            context = self.consume(evidence.nonce, caller, purposes)
            result = verify_evidence(
                evidence,
                Expected(evidence.nonce, self.ctx.origin),
                verifier=self.ctx.verifier,
                authenticator=authenticator,
                badges=self.ctx.badges,
                user=None,
                fido=self.ctx.fido,
            )
            _check_professional(context, result)
        except MieError as e:
            result = AuthResult.failure(e, authenticator)
        return self.finish(
            caller, result, evidence.nonce, kind, started, request_id=request_id, event=event
        )

    def finish(
        self,
        caller: Caller,
        result: AuthResult,
        nonce: bytes | None,
        kind: str,
        started: float,
        *,
        request_id: str | None,
        event: str,
    ) -> Outcome:
        """Add the PSC claims, record the audit event and count the metrics of a result.

        :return: the outcome (a success whose audit record failed is 503
            ``store_unavailable``, its result withheld).
        """
        claims = self.claims(result) if result.valid else None
        if isinstance(claims, str):
            result = _with_reason(result, claims)
            claims = None
        status = 200 if result.valid else status_of(_code(result) or "internal_error")
        stamp = None
        try:
            stamp = self.record(event, result, caller, nonce, request_id)
        except MieError as e:
            log.error("audit record not written (request %s): %s", request_id, e)
            result, claims, status = AuthResult.failure(e, result.authenticator), None, 503
        self.ctx.metrics.authentication(kind, status, _code(result), time.perf_counter() - started)
        return Outcome(result, status, claims, stamp)

    def claims(self, result: AuthResult) -> Any:
        """:return: the PSC claims of a valid result at ``substantial`` or above, the reason
        they were not emitted (a string), or ``None`` (below the level, or no mapping)."""
        mapping = self.ctx.psc
        if mapping is None or result.level not in _LEVELS:
            return None
        from mie.psc import psc_claims  # type: ignore[import-not-found,unused-ignore]

        try:
            return psc_claims(result, mapping, auth_time=dt.datetime.now(dt.UTC))
        except MieError as e:
            return f"PSC claims not emitted: {e}"

    def record(
        self,
        event: str,
        result: AuthResult,
        caller: Caller,
        nonce: bytes | None,
        request_id: str | None,
        detail: Mapping[str, Any] | None = None,
    ) -> Any:
        """Append the audit record of ``result`` to every sink.

        :return: the stamp, or ``None`` with no trail.
        :raises MieError: a sink failed (``store_unavailable``).
        """
        trail = self.ctx.audit
        if trail is None:
            return None
        from mie.audit import AuditEvent  # type: ignore[import-not-found,unused-ignore]

        if not result.valid and result.authenticator is not None:
            # A refused request's kind and serial are what the caller posted, never checked: the
            # security officer must not read them as the MIE that was presented.
            detail = {**(detail or {}), "authenticator": "claimed, not verified"}
        record = AuditEvent.from_result(
            event,
            result,
            rp=self.ctx.origin,
            client=caller.client,
            nonce=nonce,
            binding=caller.binding,
            request_id=request_id,
            detail=dict(detail) if detail else None,
        )
        stamp = trail.append(record)
        for sink in getattr(trail, "sinks", ()):
            self.ctx.metrics.audit_records.labels(type(sink).__name__).inc()
        return stamp

    def record_event(
        self,
        event: str,
        caller: Caller,
        nonce: bytes | None,
        request_id: str | None,
        *,
        mie_ref: str | None = None,
        identity: Mapping[str, Any] | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> Any:
        """Append an audit record that is not a verification's (a revocation, a grant).

        :return: the stamp, or ``None`` with no trail.
        :raises MieError: a sink failed (``store_unavailable``).
        """
        trail = self.ctx.audit
        if trail is None:
            return None
        from mie.audit import AuditEvent, short_digest  # type: ignore[import-not-found,unused-ignore]

        mie = None
        if mie_ref is not None:
            kind = mie_ref.partition(":")[0]
            mie = {"kind": kind, "serial": None, "credential": mie_ref, "evidence": None}
        record = AuditEvent(
            event,
            request=request_id,
            rp=self.ctx.origin,
            client=caller.client,
            mie=mie,
            identity=dict(identity) if identity else None,
            nonce=short_digest(nonce) if nonce is not None else None,
            session=short_digest(caller.binding) if caller.binding is not None else None,
            detail=dict(detail) if detail else None,
        )
        stamp = trail.append(record)
        for sink in getattr(trail, "sinks", ()):
            self.ctx.metrics.audit_records.labels(type(sink).__name__).inc()
        return stamp


def _check_professional(context: Mapping[str, Any], result: AuthResult) -> None:
    """Refuse a result for another professional than the one the ceremony was begun for (a
    FIDO2 authentication begun with an idNat: ``allowCredentials`` binds only the browser).

    :raises VerificationError: ``policy``.
    """
    wanted = context.get("id_nat")
    if wanted is None or result.identity is None:
        return
    if result.identity.id_nat != wanted:
        raise VerificationError(
            ErrorCode.POLICY,
            "The authentication was begun for another professional than the key's",
        )


def _code(result: AuthResult) -> str | None:
    return result.error.code.value if result.error is not None else None


def _with_reason(result: AuthResult, reason: str) -> AuthResult:
    import dataclasses

    return dataclasses.replace(result, reasons=(*result.reasons, reason))


def _context(text: str | None) -> dict[str, Any]:
    # Written by issue() only; anything else (a row of an older node) has no purpose.
    if not text:
        return {"purpose": "verify"}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


__all__ = ["NONCE_BYTES", "PURPOSES", "Challenge", "Outcome", "VerifyCore", "utc_text"]
