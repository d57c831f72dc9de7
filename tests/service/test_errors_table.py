"""Every contract code has its HTTP status (plan §1.4), and a crash is a JSON 500."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import uvicorn
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mie.core.errors import ErrorCode
from mie.result import ErrorInfo
from mie.service import ServiceConfig, create_app
from mie.service.app import uvicorn_config
from mie.service.errors import (
    STATUS,
    MethodNotAllowedError,
    UnsupportedMediaError,
    error_body,
    error_status,
    status_of,
)
from tests.service.conftest import LiveService, headers


def test_every_error_code_has_a_status() -> None:
    missing = [code for code in ErrorCode if code not in STATUS]
    assert not missing
    assert set(STATUS) == {c.value for c in ErrorCode}


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("malformed", 400), ("usage", 400), ("unauthorized", 401), ("forbidden", 403),
        ("not_found", 404), ("nonce_unknown", 409), ("too_large", 413),
        ("origin_mismatch", 422), ("revoked", 422), ("suspected_clone", 422),
        ("internal_error", 500), ("reader_error", 502), ("card_removed", 502),
        ("store_unavailable", 503), ("revocation_unknown", 503), ("metadata_stale", 503),
    ],
)  # fmt: skip
def test_status_classes(code: str, status: int) -> None:
    assert status_of(ErrorCode(code)) == status
    assert error_status(ErrorInfo(ErrorCode(code), "m")) == status


def test_the_two_http_layer_statuses_carry_usage() -> None:
    for error, status in ((MethodNotAllowedError("m"), 405), (UnsupportedMediaError("m"), 415)):
        assert error.code is ErrorCode.USAGE
        assert error_status(error) == status
        assert error_body(error) == {"error": {"code": "usage", "message": "m"}}


def test_each_class_of_status_over_http(service: LiveService) -> None:
    client = service.client
    json = {**headers(), "Content-Type": "application/json"}
    assert client.post("/v1/verify", headers=json, content=b"{").status_code == 400
    assert client.post("/v1/verify", json={}).status_code == 401
    assert client.post("/v1/verify", headers=headers("desk"), json={}).status_code == 403
    assert client.get("/nowhere").status_code == 404
    assert client.get("/v1/verify").status_code == 405
    body = {"type": "x-signature"}
    assert client.post("/v1/verify", headers=headers(), data=body).status_code == 415


async def _boom(request: Request) -> Response:
    raise RuntimeError("secret detail /etc/shadow")


def test_a_crash_is_500_internal_error_without_traceback(
    make_config: Callable[..., ServiceConfig],
) -> None:
    import httpx

    config = make_config()
    app = create_app(config)
    app.router.routes.append(Route("/boom", _boom))
    server = uvicorn.Server(uvicorn_config(app, config, "127.0.0.1", 0))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        answer = httpx.get(f"http://127.0.0.1:{port}/boom", timeout=10)
        assert answer.status_code == 500
        body = answer.json()
        assert body == {
            "error": {"code": "internal_error", "message": "internal error (RuntimeError)"}
        }
        assert "Traceback" not in answer.text and "shadow" not in answer.text
        # The process keeps serving.
        assert httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=10).status_code == 200
    finally:
        server.should_exit = True
        thread.join(15)
