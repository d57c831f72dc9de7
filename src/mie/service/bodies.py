"""Request bodies and query strings, read by mie rather than by Starlette (plan D10).

A body must be ``application/json`` (``charset=utf-8`` allowed), else 415; a
``Content-Length`` over the limit is refused before anything is read, and a body without one
is read up to the limit plus one byte; then it is parsed strictly (:mod:`mie.core.strictjson`:
UTF-8, no duplicate key, no NaN) with a nesting bound, else 400 ``malformed``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from starlette.requests import Request

from mie.core import strictjson
from mie.core.errors import JsonFormatError
from mie.evidence import Evidence, parse_evidence_document
from mie.result import AuthenticatorInfo
from mie.service.errors import RequestUsageError, TooLargeError, UnsupportedMediaError

MAX_DEPTH = 32
"""Deepest nesting of arrays and objects a body may have (evidence needs 4)."""
BODY_DEADLINE = 10.0
"""Seconds a whole body may take to arrive (a client that stops sending is refused)."""
_MEDIA = re.compile(r"application/json\s*(?:;\s*charset\s*=\s*\"?utf-8\"?\s*)?", re.IGNORECASE)
_LENGTH = re.compile(r"[0-9]{1,19}")


def check_media_type(value: str | None) -> None:
    """:raises UnsupportedMediaError: not ``application/json`` (optionally ``charset=utf-8``)."""
    if value is None or not _MEDIA.fullmatch(value.strip()):
        shown = "none" if value is None else repr(value[:60])
        raise UnsupportedMediaError(f"Content-Type {shown}: application/json expected")


async def read_body(request: Request, *, limit: int) -> bytes:
    """Read a body of at most ``limit`` bytes.

    :raises TooLargeError: a ``Content-Length`` over the limit (nothing read), or more bytes
        than the limit.
    :raises JsonFormatError: a ``Content-Length`` that is not a number.
    :raises RequestUsageError: the body did not arrive within :data:`BODY_DEADLINE`.
    """
    length = request.headers.get("content-length")
    if length is not None:
        if not _LENGTH.fullmatch(length.strip()):
            raise JsonFormatError("Content-Length is not a number")
        if int(length) > limit:
            raise TooLargeError(f"Body of {int(length)} bytes, at most {limit}")
    chunks: list[bytes] = []
    size = 0
    deadline = BODY_DEADLINE
    with anyio.move_on_after(deadline) as scope:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLargeError(f"Body over {limit} bytes")
            chunks.append(chunk)
    if scope.cancelled_caught:
        raise RequestUsageError(f"The request body did not arrive within {deadline:g} s")
    return b"".join(chunks)


def parse_json(data: bytes, *, limit: int, name: str = "request body") -> Any:
    """Parse a body strictly.

    :param data: the bytes read.
    :raises JsonFormatError: not strict JSON, or nested deeper than :data:`MAX_DEPTH`.
    :raises TooLargeError: over ``limit``.
    """
    if len(data) > limit:
        raise TooLargeError(f"Body of {len(data)} bytes, at most {limit}")
    obj = strictjson.loads(data, name, max_bytes=limit)
    check_depth(obj, name)
    return obj


def check_depth(obj: object, name: str, limit: int = MAX_DEPTH) -> None:
    """:raises JsonFormatError: ``obj`` nests arrays and objects deeper than ``limit``."""
    stack: list[tuple[object, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                raise JsonFormatError(f"The {name} is nested deeper than {limit} levels")
            items = value.values() if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)


async def read_json(request: Request, *, limit: int, empty: object = None) -> Any:
    """Read and parse a JSON body (see the module docstring).

    :param empty: what an empty body stands for; ``None``: an empty body is malformed.
    :raises UnsupportedMediaError: not ``application/json`` (415).
    :raises TooLargeError: over ``limit`` (413).
    :raises JsonFormatError: not strict JSON (400 ``malformed``).
    """
    length = request.headers.get("content-length")
    if empty is not None and length == "0" and "content-type" not in request.headers:
        return empty
    check_media_type(request.headers.get("content-type"))
    data = await read_body(request, limit=limit)
    if not data and empty is not None:
        return empty
    return parse_json(data, limit=limit)


def parse_evidence_body(obj: object) -> tuple[Evidence, AuthenticatorInfo | None]:
    """The evidence of a ``/v1/verify`` body: bare evidence (``{"type": …}``), ``{"evidence":
    …}`` alone, or a whole ``mie auth --json`` result
    (:func:`mie.evidence.parse_evidence_document`).

    :return: the evidence, and the authenticator a result names.
    :raises EvidenceFormatError: another shape, or a failed result (no evidence).
    """
    return parse_evidence_document(obj, "request body")


def parse_query(request: Request, allowed: Mapping[str, Callable[[str], Any]]) -> dict[str, Any]:
    """Read the query string strictly.

    :param allowed: each parameter's reader (a :class:`ValueError` from it is a refusal
        naming the parameter).
    :return: the parameters given, read.
    :raises RequestUsageError: an unknown or repeated parameter, or a bad value (400 ``usage``).
    """
    out: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        if key not in allowed:
            raise RequestUsageError(f"Unknown query parameter {strictjson.shown(key)}")
        if key in out:
            raise RequestUsageError(f"Query parameter {key!r} given twice")
        try:
            out[key] = allowed[key](value)
        except ValueError as e:
            raise RequestUsageError(f"Query parameter {key!r}: {e}") from e
    return out


__all__ = [
    "BODY_DEADLINE",
    "MAX_DEPTH",
    "check_depth",
    "check_media_type",
    "parse_evidence_body",
    "parse_json",
    "parse_query",
    "read_body",
    "read_json",
]
