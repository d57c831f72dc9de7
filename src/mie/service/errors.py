"""HTTP status of every contract error code, and the error answers of the service.

The status is a function of the code (:data:`STATUS`), with exactly two HTTP-layer exceptions
that carry ``usage``: 405 (method not allowed) and 415 (not ``application/json``). Every
failure body has a top-level ``"error"``: the contract's error object.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mie.core.errors import ErrorCode, MieError
from mie.result import ErrorInfo

log = logging.getLogger("mie.service")

_REFUSALS = (
    "expired", "not_yet_valid", "revoked", "untrusted", "bad_signature", "name_chaining",
    "not_ca", "path_length", "key_usage", "policy", "unknown_critical_extension",
    "invalid_pin", "last_try_refused", "pin_blocked", "pin_auth_blocked", "pin_not_set",
    "unsupported_card", "signature_invalid", "nonce_mismatch", "origin_mismatch",
    "key_mismatch", "suspected_clone", "integrity_error", "record_untrusted", "record_copied",
    "not_genuine", "legacy_crypto", "relay_refused", "rp_id_mismatch", "user_not_present",
    "user_not_verified", "credential_unknown", "already_registered", "counter_unsupported",
    "attestation_refused", "attestation_invalid", "aaguid_unknown", "metadata_status",
)  # fmt: skip
_UNAVAILABLE = ("store_unavailable", "revocation_unknown", "metadata_stale", "metadata_untrusted")

#: The HTTP status of each contract code (keys are the code strings: an
#: :class:`~mie.errors.ErrorCode` is one).
STATUS: Mapping[str, int] = {
    "malformed": 400,
    "usage": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "nonce_unknown": 409,
    "too_large": 413,
    **dict.fromkeys(_REFUSALS, 422),
    "internal_error": 500,
    **dict.fromkeys(("card_error", "card_removed", "no_card", "reader_error"), 502),
    **dict.fromkeys(_UNAVAILABLE, 503),
}

NO_STORE = {"Cache-Control": "no-store"}


def status_of(code: ErrorCode | str) -> int:
    """:return: the HTTP status of a contract code (500 for one not in :data:`STATUS`)."""
    return STATUS.get(str(code), 500)


class ServiceError(MieError):
    """An HTTP-level refusal of the service (its status may differ from the code's).

    Raised only through its subclasses; the base's code is ``internal_error`` so that one raised
    bare still carries a contract code (fail closed).
    """

    code = ErrorCode("internal_error")
    status: int | None = None
    headers: ClassVar[Mapping[str, str]] = {}


def _code(name: str) -> ErrorCode:
    # The service's codes (plan D4); ErrorCode(value) keeps this module importable by name.
    return ErrorCode(name)


class UnauthorizedError(ServiceError):
    """No API key, or one no client has (``unauthorized``, 401)."""

    code = _code("unauthorized")
    headers: ClassVar[Mapping[str, str]] = {"WWW-Authenticate": 'Bearer realm="mie"'}


class ForbiddenError(ServiceError):
    """A client asking for what its scopes do not allow (``forbidden``, 403)."""

    code = _code("forbidden")


class NotFoundError(ServiceError):
    """No such route or resource (``not_found``, 404)."""

    code = _code("not_found")


class TooLargeError(ServiceError):
    """A body over its limit (``too_large``, 413), refused before or while it is read."""

    code = _code("too_large")


class UnsupportedMediaError(ServiceError):
    """A body that is not ``application/json`` (``usage``, 415)."""

    code = ErrorCode.USAGE
    status = 415


class MethodNotAllowedError(ServiceError):
    """A method the route does not take (``usage``, 405)."""

    code = ErrorCode.USAGE
    status = 405


class RequestUsageError(ServiceError):
    """A request the service cannot take as given: an unknown query parameter, a missing or
    malformed header (``usage``, 400)."""

    code = ErrorCode.USAGE


class InternalError(ServiceError):
    """A failure of the service itself (``internal_error``, 500); the body names only the
    exception type, the log has the traceback."""

    code = _code("internal_error")


def error_info(error: MieError | ErrorInfo) -> ErrorInfo:
    """:return: the contract error object of ``error``."""
    if isinstance(error, ErrorInfo):
        return error
    return ErrorInfo.from_exception(error)


def error_body(error: MieError | ErrorInfo) -> dict[str, Any]:
    """:return: ``{"error": {"code", "message"[, "tries_left"]}}``."""
    return {"error": error_info(error).to_json()}


def response_headers(status: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """:return: the headers every answer carries (``Cache-Control: no-store``; ``Retry-After:
    1`` on 503), with ``extra``."""
    headers = dict(NO_STORE)
    if status == 503:
        headers["Retry-After"] = "1"
    if extra:
        headers.update(extra)
    return headers


def error_status(error: MieError | ErrorInfo) -> int:
    """:return: the status of ``error``: its own (405/415), else its code's."""
    if isinstance(error, ServiceError) and error.status is not None:
        return error.status
    return status_of(error_info(error).code)


def error_response(
    error: MieError | ErrorInfo,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """:return: the JSON answer of ``error`` (:func:`error_body`, its status)."""
    code = status if status is not None else error_status(error)
    extra = dict(error.headers) if isinstance(error, ServiceError) else {}
    extra.update(headers or {})
    return JSONResponse(error_body(error), status_code=code, headers=response_headers(code, extra))


async def mie_error_handler(request: Request, exc: Exception) -> Response:
    """Starlette handler of :class:`~mie.errors.MieError`: its JSON answer."""
    assert isinstance(exc, MieError)  # noqa: S101 - registered for MieError only
    return error_response(exc)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """Starlette handler of the router's :class:`HTTPException` (404, 405): our error object."""
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException only
    error: ServiceError
    if exc.status_code == 405:
        error = MethodNotAllowedError(f"{request.method} is not allowed on {request.url.path}")
        allow = (exc.headers or {}).get("Allow")
        return error_response(error, headers={"Allow": allow} if allow else None)
    if exc.status_code == 404:
        error = NotFoundError(f"No route {request.url.path[:100]!r}")
    else:
        error = InternalError(f"HTTP {exc.status_code}")
        return error_response(error, status=exc.status_code)
    return error_response(error)


async def internal_error_handler(request: Request, exc: Exception) -> Response:
    """Starlette handler of any other exception: 500 ``internal_error``, the traceback logged
    (never in the body)."""
    request_id = getattr(request.state, "request_id", None)
    log.error("internal error (request %s)", request_id, exc_info=exc)
    return error_response(InternalError(f"internal error ({type(exc).__name__})"))


__all__ = [
    "STATUS",
    "ForbiddenError",
    "InternalError",
    "MethodNotAllowedError",
    "NotFoundError",
    "RequestUsageError",
    "ServiceError",
    "TooLargeError",
    "UnauthorizedError",
    "UnsupportedMediaError",
    "error_body",
    "error_response",
    "error_status",
    "status_of",
]
