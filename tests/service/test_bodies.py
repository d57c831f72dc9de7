"""Request bodies (plan D10): size limits before reading, strict JSON, the media type; every
answer is the JSON error object, never HTML or plain text."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mie.emulation.testpki import CardCredentials
from tests.service.conftest import LiveService, challenge, cpx_evidence, headers, still_serving

EVIDENCE_LIMIT = 65536
JSON = {"Content-Type": "application/json"}


def _error(answer: Any, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert set(body["error"]) >= {"code", "message"}
    assert body["error"]["code"] == code


def test_content_length_over_the_limit_is_refused_before_reading(service: LiveService) -> None:
    # The declared length is refused: the service answers without waiting for the bytes.
    import socket

    host, port = service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = (
            "POST /v1/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: {headers()['Authorization']}\r\nMie-Session: s\r\n"
            f"Content-Length: {EVIDENCE_LIMIT + 1}\r\n\r\n"
        )
        sock.sendall(head.encode())
        data = b""
        while b'"too_large"' not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        answer = data.decode()
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert '"too_large"' in answer


def test_content_length_over_the_limit(service: LiveService) -> None:
    body = b"{" + b" " * EVIDENCE_LIMIT + b"}"
    answer = service.client.post("/v1/verify", headers={**headers(), **JSON}, content=body)
    _error(answer, 413, "too_large")


def test_chunked_without_length_over_the_limit(service: LiveService) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"type": "x-signature", "pad": "'
        for _ in range(80):
            yield b"x" * 1024
        yield b'"}'

    answer = service.client.post("/v1/verify", headers={**headers(), **JSON}, content=chunks())
    _error(answer, 413, "too_large")


def test_other_bodies_have_the_smaller_limit(service: LiveService) -> None:
    body = b'{"a": "' + b"x" * 16384 + b'"}'
    answer = service.client.post("/v1/challenges", headers={**headers(), **JSON}, content=body)
    _error(answer, 413, "too_large")


MALFORMED = {
    "not utf-8": b'{"type": "\xff"}',
    "trailing data": b'{"type": "x"} {}',
    "duplicate key": b'{"type": "x", "type": "y"}',
    "NaN": b'{"type": NaN}',
    "depth 100": b"[" * 100 + b"]" * 100,
    "an array": b"[]",
    "not json": b"hello",
    "empty": b"",
    "a BOM": b'\xef\xbb\xbf{"type": "x"}',
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_body(service: LiveService, card: CardCredentials, name: str) -> None:
    answer = service.client.post(
        "/v1/verify", headers={**headers(), **JSON}, content=MALFORMED[name]
    )
    _error(answer, 400, "malformed")
    still_serving(service, card)


@pytest.mark.parametrize(
    "media",
    ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1", None],
)
def test_not_json_media_type_is_415(service: LiveService, media: str | None) -> None:
    values = headers()
    if media is not None:
        values["Content-Type"] = media
    answer = service.client.post("/v1/verify", headers=values, content=b"{}")
    _error(answer, 415, "usage")


def test_charset_utf8_is_json(service: LiveService, card: CardCredentials) -> None:
    nonce = challenge(service)
    import json

    body = json.dumps(cpx_evidence(card, nonce).to_json()).encode()
    values = {**headers(), "Content-Type": "application/json; charset=utf-8"}
    assert service.client.post("/v1/verify", headers=values, content=body).status_code == 200


def test_method_not_allowed_is_405_usage(service: LiveService) -> None:
    answer = service.client.get("/v1/verify", headers=headers())
    _error(answer, 405, "usage")
    assert "POST" in answer.headers["allow"]


def test_unknown_path_is_404_not_found(service: LiveService) -> None:
    _error(service.client.get("/v1/nothing"), 404, "not_found")
    _error(service.client.get("/"), 404, "not_found")


def test_unknown_query_parameter_is_400_usage(service: LiveService) -> None:
    _error(service.client.get("/v1/health?verbose=1"), 400, "usage")
    answer = service.client.post("/v1/challenges?x=1", headers=headers(), json={})
    _error(answer, 400, "usage")


def test_a_body_that_stops_arriving_is_refused_at_its_deadline(
    service: LiveService, card: CardCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    # RS1: the body was read without a deadline: a client that declared 100 bytes and sent
    # 10 held its request (and a task) for as long as it kept the connection open.
    import socket

    from mie.service import bodies

    monkeypatch.setattr(bodies, "BODY_DEADLINE", 0.5, raising=False)
    host, port = service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = (
            "POST /v1/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: {headers()['Authorization']}\r\nMie-Session: s\r\n"
            "Content-Length: 100\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"type": "')
        data = b""
        while b"\r\n\r\n" not in data or b"}" not in data.partition(b"\r\n\r\n")[2]:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status = data.split(b"\r\n", 1)[0]
    assert b" 400 " in status, data[:300]
    assert b'"code":"usage"' in data and b"did not arrive" in data
    monkeypatch.undo()
    still_serving(service, card)
