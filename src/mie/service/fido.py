"""The FIDO2 ceremonies of the service (plan §1.3): the shape of python-fido2's
``Fido2Server`` (begin → options for the browser, complete → verified), with mie's verifiers.

A ceremony's state (the idNat, the user handle, a temporary grant asked for) is stored with
its nonce in the shared store, so a registration begun on one node completes on any other.
W3C JSON throughout (base64url without padding).
"""

from __future__ import annotations

import base64
import functools
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mie.core.errors import EvidenceFormatError, MieError
from mie.evidence import check_fields
from mie.result import AuthResult
from mie.service.bodies import parse_query, read_json
from mie.service.callers import Caller
from mie.service.context import ServiceContext
from mie.service.core import NONCE_BYTES, Outcome, VerifyCore
from mie.service.errors import error_response
from mie.service.routes_auth import (
    authorised,
    context,
    core,
    json_response,
    outcome_response,
    request_id,
    run_sync,
)

TIMEOUT_MS = 120000
USER_HANDLE_BYTES = 16
MAX_NAME = 64
_HEX_NONCE = re.compile(r"[0-9a-f]{64}")
_TEMPORARY = ("reason", "expires_in", "max_level", "replaces")
_REPLACES = ("mie", "reason")
_REPLACE_REASONS = ("lost", "stolen", "damaged")


def b64url(data: bytes) -> str:
    """:return: ``data`` in base64url without padding (WebAuthn's JSON)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _fido(ctx: ServiceContext) -> Any:
    if ctx.fido is None:
        raise EvidenceFormatError("No FIDO2 verifier configured: the service has no fido_policy")
    return ctx.fido


def _text(obj: Mapping[str, Any], key: str, what: str, *, optional: bool = False) -> str | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME or not value.isprintable():
        raise EvidenceFormatError(f"{what}.{key} is not a printable string of 1 to {MAX_NAME}")
    return value


def _id_nat(value: object, what: str) -> str:
    from mie.trust.identity import parse_id_nat

    if not isinstance(value, str) or len(value) > MAX_NAME:
        raise EvidenceFormatError(f"{what}.id_nat is not an idNat")
    try:
        parse_id_nat(value)
    except MieError as e:
        raise EvidenceFormatError(f"{what}.id_nat: {e}") from e
    return value


def _nonce(obj: Mapping[str, Any], what: str) -> bytes:
    value = obj.get("nonce")
    if not isinstance(value, str) or not _HEX_NONCE.fullmatch(value):
        raise EvidenceFormatError(f"{what}.nonce is not {NONCE_BYTES} bytes of lower-case hex")
    return bytes.fromhex(value)


def _number(value: object, what: str) -> int:
    from mie.core.strictjson import Number

    text = value.text if isinstance(value, Number) else None
    if text is None or not re.fullmatch(r"[0-9]{1,7}", text):
        raise EvidenceFormatError(f"{what} is not a whole number of seconds")
    return int(text)


def _temporary(value: object, id_nat: str) -> dict[str, Any] | None:
    """Read and check a ``temporary`` request (reason, expires_in, max_level, replaces)."""
    if value is None:
        return None
    what = "registration request.temporary"
    fields = check_fields(value, what, ("reason", "expires_in"), ("max_level", "replaces"))
    from mie.lifecycle import new_grant
    from mie.store.base import MieRef

    expires_in = _number(fields["expires_in"], f"{what}.expires_in")
    if not 300 <= expires_in <= 604800:
        raise EvidenceFormatError(f"{what}.expires_in is not 300 to 604800 s")
    replaces = fields.get("replaces")
    if replaces is not None:
        inner = check_fields(replaces, f"{what}.replaces", _REPLACES)
        if inner["reason"] not in _REPLACE_REASONS:
            raise EvidenceFormatError(f"{what}.replaces.reason is not lost, stolen or damaged")
        if not isinstance(inner["mie"], str) or len(inner["mie"]) > 1500:
            raise EvidenceFormatError(f"{what}.replaces.mie is not a MIE reference")
    # Checked now with a stand-in ref, so a bad request is refused before any nonce is issued.
    try:
        new_grant(
            MieRef.badge(bytes(7)),
            id_nat=id_nat,
            reason=fields["reason"],
            expires_in=expires_in,
            max_level=fields.get("max_level"),
            by="check",
            at=time.time(),
        )
    except MieError as e:
        raise EvidenceFormatError(f"{what}: {e}") from e
    return {
        "reason": fields["reason"],
        "expires_in": expires_in,
        "max_level": fields.get("max_level"),
        "replaces": None
        if replaces is None
        else {"mie": replaces["mie"], "reason": replaces["reason"]},
    }


def replaced(
    ctx: ServiceContext, temporary: Mapping[str, Any] | None, id_nat: str, rp_id: str
) -> Any:
    """Check the MIE a temporary key replaces, before anything is issued or stored.

    :return: its ref, or ``None`` when nothing is replaced.
    :raises EvidenceFormatError: not a MIE reference.
    :raises NotFoundError: a FIDO2 key the store does not hold.
    :raises VerificationError: a FIDO2 key of another professional (``policy``): the
        ``enrol`` scope revokes only the lost MIE of the professional it enrols.
    """
    from mie.core.errors import ErrorCode, VerificationError
    from mie.service.errors import NotFoundError
    from mie.store.base import MieRef
    from mie.store.errors import CredentialUnknownError, StoreInputError

    replaces = None if temporary is None else temporary.get("replaces")
    if replaces is None:
        return None
    try:
        ref = MieRef.parse(replaces["mie"], rp_id=rp_id)
    except StoreInputError as e:
        raise EvidenceFormatError(f"temporary.replaces.mie: {e}") from e
    if ref.kind == "fido2":
        try:
            old = ctx.store.get_credential(ref.rp_id, ref.credential_id)
        except CredentialUnknownError as e:
            raise NotFoundError(f"No FIDO2 credential {ref}") from e
        if old.id_nat != id_nat:
            raise VerificationError(
                ErrorCode.POLICY, f"{ref} is another professional's key: it is not replaced"
            )
    return ref


def _begin_registration(vcore: VerifyCore, who: Caller, body: object) -> dict[str, Any]:
    ctx = vcore.ctx
    fido = _fido(ctx)
    what = "registration request"
    fields = check_fields(body, what, ("id_nat", "user_name"), ("display_name", "temporary"))
    id_nat = _id_nat(fields["id_nat"], what)
    user_name = _text(fields, "user_name", what)
    display = _text(fields, "display_name", what, optional=True)
    temporary = _temporary(fields.get("temporary"), id_nat)
    replaced(ctx, temporary, id_nat, fido.policy.rp_id)
    policy = fido.policy
    handle = secrets.token_bytes(USER_HANDLE_BYTES)
    existing = ctx.store.credentials_of(id_nat, policy.rp_id)
    state = {
        "id_nat": id_nat,
        "user_handle": handle.hex(),
        "user_name": user_name,
        "temporary": temporary,
    }
    challenge = vcore.issue(who, "fido.register", state)
    options = {
        "rp": {"id": policy.rp_id, "name": policy.rp_id},
        "user": {"id": b64url(handle), "name": user_name, "displayName": display or user_name},
        "challenge": b64url(challenge.nonce),
        "pubKeyCredParams": [{"type": "public-key", "alg": alg} for alg in policy.algorithms],
        "timeout": TIMEOUT_MS,
        "excludeCredentials": [
            {"type": "public-key", "id": b64url(r.credential_id)} for r in existing
        ],
        "authenticatorSelection": {"userVerification": "required", "residentKey": "discouraged"},
        "attestation": "direct",
    }
    return {**challenge.to_json(), "rp_id": policy.rp_id, "options": options}


async def registrations(request: Request) -> Response:
    """``POST /v1/fido/registrations``: begin a registration for a professional."""
    who = authorised(request, "enrol")
    parse_query(request, {})
    body = await read_json(request, limit=context(request).config.limits.body_bytes)
    answer = await run_sync(request, _begin_registration, core(request), who, body)
    return json_response(answer, 201)


def _complete_registration(
    vcore: VerifyCore, who: Caller, body: object, rid: str
) -> tuple[int, dict[str, Any]]:
    from mie.fido.registration import RegistrationData, credential_summary, verify_registration
    from mie.lifecycle import new_grant
    from mie.store.base import MieRef, Revocation
    from mie.trust.identity import Identity, parse_id_nat
    from mie.verification import Expected

    ctx = vcore.ctx
    fido = _fido(ctx)
    policy = fido.policy
    what = "registration completion"
    fields = check_fields(body, what, ("nonce",), ("credential", "registration"))
    if ("credential" in fields) == ("registration" in fields):
        raise EvidenceFormatError(f"The {what} holds one of credential or registration")
    nonce = _nonce(fields, what)
    try:
        state = vcore.consume(nonce, who, ("fido.register",))
    except MieError as e:
        # Audited as every attempt (a used, unknown or other-purpose nonce included).
        vcore.record("fido.register", AuthResult.failure(e), who, nonce, rid)
        raise
    handle = bytes.fromhex(state["user_handle"])
    id_nat = state["id_nat"]
    now = time.time()
    try:
        if "credential" in fields:
            if not isinstance(fields["credential"], dict):
                raise EvidenceFormatError(f"The {what}.credential is not an object")
            data = RegistrationData.from_webauthn(
                fields["credential"],
                nonce=nonce,
                origin=ctx.origin,
                rp_id=policy.rp_id,
                user_handle=handle,
            )
        else:
            data = RegistrationData.from_json(fields["registration"])
            if data.user_handle != handle:
                raise EvidenceFormatError("The registration's user handle is not the one issued")
        id_type, number = parse_id_nat(id_nat)
        identity = Identity(id_nat, id_type, number, None, None, None, None, False)
        temporary = state.get("temporary")
        # Checked again before the key is stored: a revocation must not fail after it.
        old = replaced(ctx, temporary, id_nat, policy.rp_id)
        grant = None
        if temporary is not None:
            replaces = temporary.get("replaces")
            grant = new_grant(
                MieRef.badge(bytes(7)),
                id_nat=id_nat,
                reason=temporary["reason"],
                expires_in=temporary["expires_in"],
                max_level=temporary.get("max_level"),
                replaces=None if replaces is None else replaces["mie"],
                by=who.client,
                at=now,
            )
        registered = verify_registration(
            data,
            Expected(nonce, ctx.origin),
            identity=identity,
            policy=policy,
            store=ctx.store,
            metadata=ctx.fido_metadata,
            temporary=grant,
        )
    except MieError as e:
        failure = AuthResult.failure(e)
        vcore.record("fido.register", failure, who, nonce, rid)
        return error_status_body(e)
    record = registered.record
    stored_grant = getattr(record, "temporary", None)
    credential = credential_summary(registered)
    ref = str(MieRef.fido2(record.rp_id, record.credential_id))
    if old is not None and temporary is not None:
        revocation = ctx.store.revoke(
            Revocation(
                old, temporary["replaces"]["reason"], f"replaced by {ref}"[:200], now, who.client
            )
        )
        vcore.record_event(
            "revoke", who, None, rid, mie_ref=str(old),
            detail={"reason": revocation.reason, "replaced_by": ref},
        )  # fmt: skip
    result = AuthResult(
        True,
        identity=identity,
        level=registered.level_cap,
        reasons=registered.reasons,
    )
    stamp = vcore.record(
        "fido.register",
        result,
        who,
        nonce,
        rid,
        detail={"credential": ref, "temporary": grant_json(stored_grant)},
    )
    return 201, {
        "credential": credential,
        "identity": identity.to_json(),
        "temporary": grant_json(stored_grant),
        "audit": None if stamp is None else {"node": stamp.node, "seq": stamp.seq},
    }


def grant_json(grant: Any) -> dict[str, Any] | None:
    """:return: a temporary grant's JSON (``mie``, ``id_nat``, ``reason``, ``issued_at``,
    ``expires_at``, ``max_level``, ``replaces``, ``by``), or ``None``."""
    from mie.service.core import utc_text

    if grant is None:
        return None
    return {
        "mie": str(grant.ref),
        "id_nat": grant.id_nat,
        "reason": grant.reason,
        "issued_at": utc_text(grant.issued_at),
        "expires_at": utc_text(grant.expires_at),
        "max_level": grant.max_level,
        "replaces": grant.replaces,
        "by": grant.by,
    }


def error_status_body(error: MieError) -> tuple[int, dict[str, Any]]:
    """:return: the status and ``{"error"}`` body of ``error``."""
    from mie.service.errors import error_body, error_status

    return error_status(error), error_body(error)


async def registrations_complete(request: Request) -> Response:
    """``POST /v1/fido/registrations/complete``: verify the key's answer and store the
    credential."""
    who = authorised(request, "enrol")
    parse_query(request, {})
    body = await read_json(request, limit=context(request).config.limits.evidence_bytes)
    status, answer = await run_sync(
        request, _complete_registration, core(request), who, body, request_id(request)
    )
    return json_response(answer, status)


def _begin_authentication(vcore: VerifyCore, who: Caller, body: object) -> dict[str, Any]:
    ctx = vcore.ctx
    policy = _fido(ctx).policy
    what = "authentication request"
    fields = check_fields(body, what, (), ("id_nat",))
    id_nat = None if fields.get("id_nat") is None else _id_nat(fields["id_nat"], what)
    allow: list[dict[str, str]] = []
    if id_nat is not None:
        allow = [
            {"type": "public-key", "id": b64url(r.credential_id)}
            for r in ctx.store.credentials_of(id_nat, policy.rp_id)
            if r.suspended is None
        ]
    challenge = vcore.issue(who, "fido.authenticate", {"id_nat": id_nat})
    options = {
        "challenge": b64url(challenge.nonce),
        "rpId": policy.rp_id,
        "allowCredentials": allow,
        "userVerification": "required",
        "timeout": TIMEOUT_MS,
    }
    return {**challenge.to_json(), "rp_id": policy.rp_id, "options": options}


async def authentications(request: Request) -> Response:
    """``POST /v1/fido/authentications``: begin an authentication (``id_nat`` null:
    discoverable credentials)."""
    who = authorised(request, "verify")
    parse_query(request, {})
    body = await read_json(request, limit=context(request).config.limits.body_bytes, empty={})
    answer = await run_sync(request, _begin_authentication, core(request), who, body)
    return json_response(answer, 201)


def _complete_authentication(vcore: VerifyCore, who: Caller, body: object, rid: str) -> Outcome:
    from mie.fido.evidence import WebAuthnAssertionEvidence

    ctx = vcore.ctx
    policy = _fido(ctx).policy
    what = "authentication completion"
    fields = check_fields(body, what, ("nonce", "credential"))
    nonce = _nonce(fields, what)
    evidence = WebAuthnAssertionEvidence.from_webauthn(
        fields["credential"], nonce=nonce, origin=ctx.origin, rp_id=policy.rp_id
    )
    return vcore.verify(
        who,
        evidence,
        None,
        purposes=("fido.authenticate",),
        request_id=rid,
        event="fido.authenticate",
    )


async def authentications_complete(request: Request) -> Response:
    """``POST /v1/fido/authentications/complete``: verify the assertion (as ``/v1/verify``)."""
    who = authorised(request, "verify")
    parse_query(request, {})
    body = await read_json(request, limit=context(request).config.limits.evidence_bytes)
    outcome = await run_sync(
        request,
        functools.partial(_complete_authentication, core(request), who, body),
        request_id(request),
    )
    return outcome_response(outcome)


__all__ = [
    "authentications",
    "authentications_complete",
    "b64url",
    "error_response",
    "grant_json",
    "registrations",
    "registrations_complete",
    "replaced",
]
