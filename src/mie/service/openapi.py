"""The OpenAPI 3.1 document of the service, written by hand (plan D9).

:data:`OPERATIONS` describes every route the service can mount: its summary, scope, body
schema, success status and the error codes it can answer (each answered with the status
:data:`mie.service.errors.STATUS` gives). :func:`document` keeps the routes the application
has, so the document never names a route that is not there; a test checks the other way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.routing import BaseRoute, Route, WebSocketRoute

import mie
from mie.service.config import ServiceConfig
from mie.service.errors import STATUS


@dataclass(frozen=True)
class Operation:
    """One documented operation.

    :param method: ``get``, ``post`` (``get`` for the relay WebSocket).
    :param summary: one line.
    :param scope: the client scope it needs (``None``: no key).
    :param success: the success status and its schema name.
    :param codes: the error codes it can answer.
    :param body: the request body's schema name, if any.
    :param extra: other statuses the HTTP layer answers (405, 415) with their code.
    """

    method: str
    summary: str
    scope: str | None
    success: tuple[int, str]
    codes: tuple[str, ...]
    body: str | None = None
    extra: tuple[int, ...] = ()


_AUTH = ("unauthorized", "forbidden", "usage")
_BODY = ("malformed", "too_large")
_NONCE = ("nonce_unknown", "store_unavailable")
_REFUSED = (
    "origin_mismatch", "nonce_mismatch", "signature_invalid", "untrusted", "expired",
    "not_yet_valid", "revoked", "bad_signature", "name_chaining", "not_ca", "path_length",
    "key_usage", "policy", "unknown_critical_extension", "revocation_unknown",
    "credential_unknown", "suspected_clone", "user_not_verified", "user_not_present",
    "rp_id_mismatch", "counter_unsupported", "aaguid_unknown", "metadata_status",
    "metadata_stale", "metadata_untrusted", "integrity_error", "record_untrusted",
    "record_copied", "not_genuine", "key_mismatch", "legacy_crypto", "invalid_pin",
    "pin_blocked", "unsupported_card",
)  # fmt: skip
_REGISTER = (
    "attestation_refused", "attestation_invalid", "aaguid_unknown", "already_registered",
    "metadata_status", "metadata_stale", "metadata_untrusted", "rp_id_mismatch",
    "user_not_present", "user_not_verified", "origin_mismatch", "nonce_mismatch",
    "signature_invalid", "expired", "policy",
)  # fmt: skip
_HTTP = (405, 415)

OPERATIONS: dict[str, Operation] = {
    "/v1/challenges": Operation(
        "post",
        "Issue a nonce for a verification",
        "verify",
        (201, "Challenge"),
        (*_AUTH, *_BODY, "store_unavailable", "internal_error"),
        "Empty",
        _HTTP,
    ),
    "/v1/verify": Operation(
        "post",
        "Verify evidence (CPx, FIDO2, badge possession)",
        "verify",
        (200, "VerifyResult"),
        (*_AUTH, *_BODY, *_NONCE, *_REFUSED, "internal_error"),
        "Evidence",
        _HTTP,
    ),
    "/v1/health": Operation(
        "get",
        "Health of the node: store and audit sinks",
        None,
        (200, "Health"),
        ("store_unavailable", "usage"),
        None,
        (405,),
    ),
    "/metrics": Operation(
        "get",
        "Prometheus metrics (text 0.0.4)",
        None,
        (200, "Metrics"),
        ("usage",),
        None,
        (405,),
    ),
    "/openapi.json": Operation(
        "get",
        "This document",
        None,
        (200, "OpenApi"),
        ("usage",),
        None,
        (405,),
    ),
    "/v1/fido/registrations": Operation(
        "post",
        "Begin a FIDO2 registration",
        "enrol",
        (201, "FidoRegistrationOptions"),
        (*_AUTH, *_BODY, "store_unavailable", "internal_error"),
        "FidoRegistrationBegin",
        _HTTP,
    ),
    "/v1/fido/registrations/complete": Operation(
        "post",
        "Complete a FIDO2 registration",
        "enrol",
        (201, "FidoRegistered"),
        (*_AUTH, *_BODY, *_NONCE, *_REGISTER, "revoked", "not_found", "internal_error"),
        "FidoRegistrationComplete",
        _HTTP,
    ),
    "/v1/fido/authentications": Operation(
        "post",
        "Begin a FIDO2 authentication",
        "verify",
        (201, "FidoAuthenticationOptions"),
        (*_AUTH, *_BODY, "store_unavailable", "internal_error"),
        "FidoAuthenticationBegin",
        _HTTP,
    ),
    "/v1/fido/authentications/complete": Operation(
        "post",
        "Complete a FIDO2 authentication",
        "verify",
        (200, "VerifyResult"),
        (*_AUTH, *_BODY, *_NONCE, *_REFUSED, "internal_error"),
        "FidoAuthenticationComplete",
        _HTTP,
    ),
    "/v1/mie/revocations": Operation(
        "post",
        "Revoke a badge or a FIDO2 key",
        "admin",
        (201, "Revocation"),
        (*_AUTH, *_BODY, "not_found", "store_unavailable", "internal_error"),
        "RevocationRequest",
        _HTTP,
    ),
    "/v1/mie/temporary": Operation(
        "post",
        "Grant a temporary badge",
        "enrol",
        (201, "TemporaryGrant"),
        (*_AUTH, *_BODY, "store_unavailable", "internal_error"),
        "TemporaryRequest",
        _HTTP,
    ),
    "/v1/mie/{ref}": Operation(
        "get",
        "What is known of a badge or a FIDO2 key",
        "admin",
        (200, "Lifecycle"),
        (*_AUTH, "malformed", "not_found", "store_unavailable", "internal_error"),
        None,
        (405,),
    ),
    "/v1/relay/sessions": Operation(
        "post",
        "Open a badge relay session",
        "verify",
        (201, "RelaySession"),
        (*_AUTH, *_BODY, "store_unavailable", "internal_error"),
        "Empty",
        _HTTP,
    ),
    "/v1/relay/sessions/{session}": Operation(
        "get",
        "The outcome of a relay session (long poll)",
        "verify",
        (200, "VerifyResult"),
        (
            *_AUTH,
            *_NONCE,
            *_REFUSED,
            "card_error",
            "card_removed",
            "no_card",
            "reader_error",
            "relay_refused",
            "internal_error",
        ),
        None,
        (202, 405),
    ),
    "/v1/relay/{session}": Operation(
        "get",
        "The relay agent's WebSocket (subprotocol mie-relay.1)",
        None,
        (101, "Empty"),
        (),
    ),
}

_OBJECT: dict[str, Any] = {"type": "object"}
_STRING: dict[str, Any] = {"type": "string"}
_NULLABLE_STRING: dict[str, Any] = {"type": ["string", "null"]}

SCHEMAS: dict[str, Any] = {
    "Empty": {"type": "object", "additionalProperties": False},
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "enum": sorted(STATUS)},
                    "message": _STRING,
                    "tries_left": {"type": ["integer", "null"]},
                },
            }
        },
    },
    "Challenge": {
        "type": "object",
        "required": ["nonce", "origin", "expires_at"],
        "properties": {
            "nonce": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "origin": _STRING,
            "expires_at": {"type": "string", "format": "date-time"},
        },
    },
    "Evidence": {
        "description": "Bare evidence ({type, ...}), {evidence, authenticator?}, or a whole "
        "mie auth --json result",
        "type": "object",
    },
    "AuthResult": {
        "type": "object",
        "required": ["valid", "error", "authenticator", "identity", "level", "reasons", "evidence"],
        "properties": {
            "valid": {"type": "boolean"},
            "error": {
                "oneOf": [{"$ref": "#/components/schemas/Error/properties/error"}, {"type": "null"}]
            },
            "authenticator": {"type": ["object", "null"]},
            "identity": {"type": ["object", "null"]},
            "level": {"enum": ["low", "substantial", "high", None]},
            "reasons": {"type": "array", "items": _STRING},
            "evidence": {"type": ["object", "null"]},
        },
    },
    "PscClaims": {
        "type": "object",
        "required": ["SubjectNameID", "given_name", "family_name", "acr", "amr", "auth_time"],
        "properties": {
            "SubjectNameID": _STRING,
            "given_name": _NULLABLE_STRING,
            "family_name": _NULLABLE_STRING,
            "acr": {"const": "eidas1"},
            "amr": {"type": "array", "items": _STRING},
            "auth_time": {"type": "integer"},
        },
    },
    "VerifyResult": {
        "allOf": [
            {"$ref": "#/components/schemas/AuthResult"},
            {
                "type": "object",
                "properties": {
                    "psc_claims": {
                        "oneOf": [{"$ref": "#/components/schemas/PscClaims"}, {"type": "null"}]
                    },
                    "audit": {
                        "type": ["object", "null"],
                        "properties": {"node": _STRING, "seq": {"type": "integer"}},
                    },
                },
            },
        ]
    },
    "Health": {
        "type": "object",
        "required": ["status", "node", "version", "store", "audit"],
        "properties": {"status": {"enum": ["ok", "unavailable"]}},
    },
    "Metrics": {"type": "string"},
    "OpenApi": _OBJECT,
    "FidoRegistrationBegin": {
        "type": "object",
        "required": ["id_nat", "user_name"],
        "properties": {
            "id_nat": _STRING,
            "user_name": _STRING,
            "display_name": _NULLABLE_STRING,
            "temporary": {"type": ["object", "null"]},
        },
    },
    "FidoRegistrationOptions": _OBJECT,
    "FidoRegistrationComplete": {
        "type": "object",
        "required": ["nonce"],
        "properties": {"nonce": _STRING, "credential": _OBJECT, "registration": _OBJECT},
    },
    "FidoRegistered": _OBJECT,
    "FidoAuthenticationBegin": {"type": "object", "properties": {"id_nat": _NULLABLE_STRING}},
    "FidoAuthenticationOptions": _OBJECT,
    "FidoAuthenticationComplete": {
        "type": "object",
        "required": ["nonce", "credential"],
        "properties": {"nonce": _STRING, "credential": _OBJECT},
    },
    "RevocationRequest": {
        "type": "object",
        "required": ["mie", "reason"],
        "properties": {"mie": _STRING, "reason": _STRING, "note": _NULLABLE_STRING},
    },
    "Revocation": _OBJECT,
    "TemporaryRequest": {
        "type": "object",
        "required": ["mie", "id_nat", "reason", "expires_in"],
        "properties": {
            "mie": _STRING,
            "id_nat": _STRING,
            "reason": {"enum": ["pvd", "unannounced"]},
            "expires_in": {"type": "integer"},
            "max_level": {"enum": ["low", "substantial", None]},
            "replaces": {"type": ["object", "null"]},
        },
    },
    "TemporaryGrant": _OBJECT,
    "Lifecycle": _OBJECT,
    "RelaySession": _OBJECT,
}


def statuses(operation: Operation) -> dict[int, str]:
    """:return: every status ``operation`` answers, and its schema name."""
    out = {operation.success[0]: operation.success[1]}
    for code in operation.codes:
        out.setdefault(STATUS[code], "Error")
    for status in operation.extra:
        out.setdefault(status, "Error" if status >= 400 else "Empty")
    return out


def _operation(path: str, operation: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, schema in sorted(statuses(operation).items()):
        codes = [c for c in operation.codes if STATUS[c] == status]
        if status == 415:
            codes = ["usage"]
        description = ", ".join(codes) if codes else ("success" if status < 400 else "usage")
        responses[str(status)] = {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        }
    body: dict[str, Any] = {
        "summary": operation.summary,
        "operationId": path.strip("/").replace("/", "_").replace("{", "").replace("}", "")
        or "root",
        "responses": responses,
        "x-mie-codes": list(operation.codes),
    }
    if operation.scope is not None:
        body["security"] = [{"bearer": [operation.scope]}]
    if operation.body is not None:
        body["requestBody"] = {
            "required": operation.body != "Empty",
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{operation.body}"}}
            },
        }
    params = [p.strip("{}") for p in path.split("/") if p.startswith("{")]
    if params:
        body["parameters"] = [
            {"name": p, "in": "path", "required": True, "schema": _STRING} for p in params
        ]
    return body


def route_paths(routes: Sequence[BaseRoute]) -> dict[str, set[str]]:
    """:return: each route's path template and its methods (lower case; ``get`` for a
    WebSocket)."""
    out: dict[str, set[str]] = {}
    for route in routes:
        if isinstance(route, Route):
            methods = {m.lower() for m in (route.methods or ()) if m != "HEAD"}
            out.setdefault(route.path, set()).update(methods)
        elif isinstance(route, WebSocketRoute):
            out.setdefault(route.path, set()).add("get")
    return out


def document(config: ServiceConfig, routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """:return: the OpenAPI 3.1 document of the routes the application has."""
    paths: dict[str, Any] = {}
    for path, methods in route_paths(routes).items():
        operation = OPERATIONS.get(path)
        if operation is None or operation.method not in methods:
            continue  # undocumented: the route test names it
        paths[path] = {operation.method: _operation(path, operation)}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mie verification service",
            "version": mie.__version__,
            "description": "Verifies French health professionals' MIE (CPx cards, DESFire "
            "badges, FIDO2 keys) for an IAM: single-use nonces bound to the caller's session, "
            "PSC claims, an audit trail.",
        },
        "servers": [{"url": config.origin}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [],
    }


__all__ = ["OPERATIONS", "SCHEMAS", "Operation", "document", "route_paths", "statuses"]
