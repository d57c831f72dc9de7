"""The MIE lifecycle API (plan §5.3): revoke a badge or a FIDO2 key, look one up, grant a
temporary badge. Every change is written to the shared store (read by every node at its next
verification) and audited.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mie.core.errors import EvidenceFormatError
from mie.evidence import check_fields
from mie.service.bodies import parse_query, read_json
from mie.service.callers import Caller
from mie.service.core import VerifyCore, utc_text
from mie.service.errors import NotFoundError
from mie.service.fido import _id_nat, _temporary, b64url, grant_json, replaced
from mie.service.routes_auth import authorised, context, core, json_response, request_id, run_sync
from mie.store.errors import CredentialUnknownError

MAX_REF = 1500


def rp_id_of(vcore: VerifyCore) -> str:
    """:return: the relying party id FIDO2 refs are read for (the policy's, else the origin's
    host)."""
    policy = vcore.ctx.fido_policy
    if policy is not None:
        return str(policy.rp_id)
    return vcore.ctx.origin.split("://", 1)[1].rsplit(":", 1)[0]


def _ref(vcore: VerifyCore, text: object) -> Any:
    from mie.store.base import MieRef

    if not isinstance(text, str) or len(text) > MAX_REF:
        raise EvidenceFormatError("The MIE is not badge:<14 hex> or fido2:<base64url id>")
    return MieRef.parse(text, rp_id=rp_id_of(vcore))


def revocation_json(revocation: Any, node: str) -> dict[str, Any]:
    """:return: a revocation's JSON."""
    return {
        "mie": str(revocation.ref),
        "reason": revocation.reason,
        "note": revocation.note,
        "revoked_at": utc_text(revocation.revoked_at),
        "by": revocation.by,
        "node": node,
    }


def _revoke(vcore: VerifyCore, who: Caller, body: object, rid: str) -> tuple[int, Any]:
    from mie.store.base import Revocation

    fields = check_fields(body, "revocation request", ("mie", "reason"), ("note",))
    ref = _ref(vcore, fields["mie"])
    note = fields.get("note")
    if note is not None and not isinstance(note, str):
        raise EvidenceFormatError("Revocation request: note is not a string or null")
    if not isinstance(fields["reason"], str):
        raise EvidenceFormatError("Revocation request: reason is not a string")
    mine = Revocation(ref, fields["reason"], note, time.time(), who.client)
    try:
        stored = vcore.ctx.store.revoke(mine)
    except CredentialUnknownError as e:
        raise NotFoundError(f"No FIDO2 credential {ref}") from e
    fresh = stored == mine
    if fresh:
        vcore.record_event(
            "revoke", who, None, rid, mie_ref=str(ref), detail={"reason": stored.reason}
        )
    return (201 if fresh else 200), revocation_json(stored, vcore.ctx.node)


async def revocations(request: Request) -> Response:
    """``POST /v1/mie/revocations``: revoke a MIE (201; already revoked: 200 with the first
    revocation)."""
    who = authorised(request, "admin", session=False)
    parse_query(request, {})
    body = await read_json(request, limit=context(request).config.limits.body_bytes)
    status, answer = await run_sync(request, _revoke, core(request), who, body, request_id(request))
    return json_response(answer, status)


def _lookup(vcore: VerifyCore, text: str) -> dict[str, Any]:
    ref = _ref(vcore, text)
    store = vcore.ctx.store
    record = store.lifecycle(ref)
    credential = None
    if ref.kind == "fido2":
        try:
            found = store.get_credential(ref.rp_id, ref.credential_id)
        except CredentialUnknownError:
            found = None
        if found is not None:
            credential = {
                "rp_id": found.rp_id,
                "credential_id": b64url(found.credential_id),
                "aaguid": found.aaguid.hex(),
                "id_nat": found.id_nat,
                "suspended": found.suspended,
                "sign_count": found.sign_count,
                "created_at": utc_text(found.created_at),
                "last_used_at": None
                if found.last_used_at is None
                else utc_text(found.last_used_at),
            }
    if record is None and credential is None:
        raise NotFoundError(f"Nothing is known of {ref}")
    revocation = None if record is None else record.revocation
    temporary = None if record is None else record.temporary
    return {
        "mie": str(ref),
        "revocation": None if revocation is None else revocation_json(revocation, vcore.ctx.node),
        "temporary": grant_json(temporary),
        "credential": credential,
    }


async def lookup(request: Request) -> Response:
    """``GET /v1/mie/{ref}``: what the store holds of a MIE (404: nothing)."""
    authorised(request, "admin", session=False)
    parse_query(request, {})
    answer = await run_sync(request, _lookup, core(request), request.path_params["ref"])
    return json_response(answer)


def _grant(vcore: VerifyCore, who: Caller, body: object, rid: str) -> dict[str, Any]:
    from mie.lifecycle import new_grant
    from mie.store.base import Revocation

    what = "temporary request"
    fields = check_fields(
        body, what, ("mie", "id_nat", "reason", "expires_in"), ("max_level", "replaces")
    )
    ref = _ref(vcore, fields["mie"])
    if ref.kind != "badge":
        raise EvidenceFormatError(
            "A temporary FIDO2 key is granted with its registration (POST /v1/fido/registrations)"
        )
    id_nat = _id_nat(fields["id_nat"], what)
    request = _temporary({k: v for k, v in fields.items() if k not in ("mie", "id_nat")}, id_nat)
    assert request is not None  # noqa: S101 - a dict was given
    # The replaced MIE is checked before the grant is stored (RS1): a revocation that
    # failed after it left a grant with nothing revoked.
    if replaced(vcore.ctx, request, id_nat, rp_id_of(vcore)) == ref:
        raise EvidenceFormatError("A temporary badge does not replace itself")
    now = time.time()
    replaces = request["replaces"]
    grant = new_grant(
        ref,
        id_nat=id_nat,
        reason=request["reason"],
        expires_in=request["expires_in"],
        max_level=request["max_level"],
        replaces=None if replaces is None else str(_ref(vcore, replaces["mie"])),
        by=who.client,
        at=now,
    )
    vcore.ctx.store.grant_temporary(grant)
    vcore.record_event(
        "temporary",
        who,
        None,
        rid,
        mie_ref=str(ref),
        identity={"id_nat": id_nat, "test": False},
        detail={"reason": grant.reason, "max_level": grant.max_level},
    )
    if replaces is not None:
        old = _ref(vcore, replaces["mie"])
        note = f"replaced by {ref}"
        stored = vcore.ctx.store.revoke(Revocation(old, replaces["reason"], note, now, who.client))
        vcore.record_event(
            "revoke", who, None, rid, mie_ref=str(old), detail={"reason": stored.reason}
        )
    answer = grant_json(grant)
    assert answer is not None  # noqa: S101 - a grant was made
    return answer


async def temporary(request: Request) -> Response:
    """``POST /v1/mie/temporary``: grant a temporary badge (then enrolled at the desk)."""
    who = authorised(request, "enrol", session=False)
    parse_query(request, {})
    body = await read_json(request, limit=context(request).config.limits.body_bytes)
    answer = await run_sync(request, _grant, core(request), who, body, request_id(request))
    return json_response(answer, 201)


__all__ = ["lookup", "revocations", "temporary"]
