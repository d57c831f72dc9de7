"""The handlers of challenges, verification, health, metrics and the OpenAPI document.

Each handler checks the caller, reads its body strictly (:mod:`mie.service.bodies`), then runs
the synchronous step (:class:`~mie.service.core.VerifyCore`) on a worker thread bounded by the
node's limiter.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import mie
from mie.core.errors import MieError
from mie.service.bodies import parse_evidence_body, parse_query, read_json
from mie.service.callers import Caller, caller
from mie.service.context import ServiceContext
from mie.service.core import Outcome, VerifyCore
from mie.service.errors import RequestUsageError, error_response, response_headers
from mie.store.errors import StoreError

log = logging.getLogger("mie.service")
T = TypeVar("T")
HEALTH_DEADLINE = 1.0


def context(request: Request) -> ServiceContext:
    """:return: the node's resources."""
    ctx: ServiceContext = request.app.state.mie
    return ctx


def core(request: Request) -> VerifyCore:
    """:return: the node's verification steps."""
    found: VerifyCore = request.app.state.core
    return found


def request_id(request: Request) -> str:
    """:return: this request's id (16 hex), made on first use."""
    rid = getattr(request.state, "request_id", None)
    if rid is None:
        rid = secrets.token_hex(8)
        request.state.request_id = rid
    return str(rid)


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    """:return: a JSON answer with the service's headers."""
    return JSONResponse(body, status_code=status, headers=response_headers(status, headers))


async def run_sync(request: Request, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` on a worker thread, within the node's concurrency limit."""
    limiter = request.app.state.limiter
    return await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=limiter)


def authorised(request: Request, scope: str | None, *, session: bool = True) -> Caller:
    """:return: the caller, allowed ``scope`` (see :func:`mie.service.callers.caller`)."""
    return caller(request, context(request).config.clients, scope, session=session)


async def challenges(request: Request) -> Response:
    """``POST /v1/challenges``: ``{}`` or empty → 201 ``{"nonce", "origin", "expires_at"}``."""
    who = authorised(request, "verify")
    ctx = context(request)
    parse_query(request, {})
    body = await read_json(request, limit=ctx.config.limits.body_bytes, empty={})
    if body != {}:
        raise RequestUsageError("POST /v1/challenges takes an empty object")
    challenge = await run_sync(request, core(request).issue, who, "verify", None)
    return json_response(challenge.to_json(), 201)


def outcome_response(outcome: Outcome) -> JSONResponse:
    """:return: the answer of a verification: its result JSON with its status."""
    return json_response(outcome.to_json(), outcome.status)


async def verify(request: Request) -> Response:
    """``POST /v1/verify``: evidence (bare, ``{"evidence"}`` or a whole result) → the
    result, ``psc_claims`` and ``audit``; a failure is the result with ``valid`` false."""
    who = authorised(request, "verify")
    ctx = context(request)
    parse_query(request, {})
    body = await read_json(request, limit=ctx.config.limits.evidence_bytes)
    evidence, authenticator = parse_evidence_body(body)
    outcome = await run_sync(
        request,
        functools.partial(core(request).verify, request_id=request_id(request)),
        who,
        evidence,
        authenticator,
    )
    return outcome_response(outcome)


def _health(ctx: ServiceContext) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {
        "status": "ok",
        "node": ctx.node,
        "version": mie.__version__,
        "store": "ok",
        "audit": "ok" if ctx.audit is not None else "off",
    }
    # Anyone may ask: the error's text (a database address, a path) is logged, not answered.
    try:
        ctx.store.ping()
    except StoreError as e:
        log.warning("health: the store is unavailable: %s", e)
        message = "The store is unavailable (see the service's log)"
        body.update(
            status="unavailable", store="unavailable", error={"code": e.code, "message": message}
        )
        return 503, body
    if ctx.audit is not None:
        try:
            body["audit_heads"] = [None if h is None else h[1] for h in ctx.audit.heads()]
        except MieError as e:
            log.warning("health: the audit trail is unavailable: %s", e)
            message = "The audit trail is unavailable (see the service's log)"
            body.update(
                status="unavailable",
                audit="unavailable",
                error={"code": e.code, "message": message},
            )
            return 503, body
    return 200, body


async def health(request: Request) -> Response:
    """``GET /v1/health``: 200 when the store answers (``ping``, 1 s deadline), 503 with the
    error otherwise."""
    parse_query(request, {})
    ctx = context(request)
    with anyio.move_on_after(HEALTH_DEADLINE) as scope:
        status, body = await anyio.to_thread.run_sync(_health, ctx, abandon_on_cancel=True)
    if scope.cancelled_caught:
        status, body = (
            503,
            {
                "status": "unavailable",
                "node": ctx.node,
                "version": mie.__version__,
                "store": "unavailable",
                "audit": "unknown",
                "error": {
                    "code": "store_unavailable",
                    "message": "The store did not answer in 1 s",
                },
            },
        )
    return json_response(body, status)


async def metrics(request: Request) -> Response:
    """``GET /metrics``: the Prometheus text exposition."""
    parse_query(request, {})
    ctx = context(request)
    return Response(
        ctx.metrics.render(),
        200,
        headers=response_headers(200),
        media_type=ctx.metrics.content_type,
    )


async def openapi(request: Request) -> Response:
    """``GET /openapi.json``: the service's OpenAPI 3.1 document."""
    parse_query(request, {})
    return json_response(request.app.state.openapi)


def mie_error(error: MieError) -> JSONResponse:
    """:return: the JSON answer of ``error``."""
    return error_response(error)


__all__ = [
    "challenges",
    "context",
    "core",
    "health",
    "json_response",
    "metrics",
    "openapi",
    "outcome_response",
    "request_id",
    "run_sync",
    "verify",
]
