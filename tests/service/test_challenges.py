"""POST /v1/challenges: the nonce, its expiry, and who may ask for one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from mie.service import ServiceConfig, ServiceConfigError
from mie.service.app import create_app, uvicorn_config
from tests.service.conftest import ORIGIN, SESSION, LiveService, headers


def test_a_challenge_is_32_fresh_bytes_for_300_s(service: LiveService) -> None:
    nonces = set()
    for _ in range(5):
        before = dt.datetime.now(dt.UTC)
        answer = service.client.post("/v1/challenges", headers=headers(), json={})
        assert answer.status_code == 201, answer.text
        body = answer.json()
        assert set(body) == {"nonce", "origin", "expires_at"}
        assert body["origin"] == ORIGIN
        nonce = bytes.fromhex(body["nonce"])
        assert len(nonce) == 32 and body["nonce"] == nonce.hex()
        nonces.add(nonce)
        expires = dt.datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
        assert body["expires_at"].endswith("Z")
        assert abs((expires - before).total_seconds() - 300) < 2
        assert answer.headers["cache-control"] == "no-store"
        assert len(answer.headers["x-request-id"]) == 16
    assert len(nonces) == 5


def test_an_empty_body_is_an_empty_request(service: LiveService) -> None:
    answer = service.client.post("/v1/challenges", headers=headers())
    assert answer.status_code == 201, answer.text


def test_a_body_with_members_is_refused(service: LiveService) -> None:
    answer = service.client.post("/v1/challenges", headers=headers(), json={"purpose": "x"})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "usage"


def test_no_key_is_401_with_www_authenticate(service: LiveService) -> None:
    answer = service.client.post("/v1/challenges", headers={"Mie-Session": SESSION}, json={})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    assert answer.headers["www-authenticate"] == 'Bearer realm="mie"'


def test_an_unknown_key_is_401(service: LiveService) -> None:
    bad = {"Authorization": "Bearer not-a-key", "Mie-Session": SESSION}
    answer = service.client.post("/v1/challenges", headers=bad, json={})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"


def test_the_wrong_scope_is_403(service: LiveService) -> None:
    answer = service.client.post("/v1/challenges", headers=headers("desk"), json={})
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("session", [None, "", "a b", "x" * 129, "é"])
def test_a_missing_or_bad_session_is_400_usage(service: LiveService, session: str | None) -> None:
    values = {"Authorization": headers()["Authorization"]}
    if session is not None:
        values["Mie-Session"] = session
    try:
        answer = service.client.post("/v1/challenges", headers=values, json={})
    except UnicodeEncodeError:
        answer = service.client.post(
            "/v1/challenges",
            headers=[("Authorization", values["Authorization"]), ("Mie-Session", session.encode())],  # type: ignore[union-attr]
            json={},
        )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "usage"


def test_open_mode_is_loopback_only(make_config: Callable[..., ServiceConfig]) -> None:
    config = make_config(clients=())
    app = create_app(config)
    uvicorn_config(app, config, "127.0.0.1", 0)
    uvicorn_config(app, config, "::1", 0)
    for host in ("0.0.0.0", "192.0.2.1", "iam.example"):  # noqa: S104 - refused, the test
        with pytest.raises(ServiceConfigError, match="open mode"):
            uvicorn_config(app, config, host, 0)
    with_clients = make_config()
    uvicorn_config(create_app(with_clients), with_clients, "0.0.0.0", 0)  # noqa: S104


def test_open_mode_caller_is_local(
    live_service: Callable[[ServiceConfig], LiveService], make_config: Callable[..., ServiceConfig]
) -> None:
    live = live_service(make_config(clients=()))
    answer = live.client.post("/v1/challenges", headers={"Mie-Session": SESSION}, json={})
    assert answer.status_code == 201, answer.text


def test_open_mode_on_a_localhost_resolving_elsewhere_is_refused(
    make_config: Callable[..., ServiceConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    # RS1: "localhost" was taken for loopback by its name; an /etc/hosts (or resolver) that
    # maps it to another address exposed the key-less service there.
    import socket

    config = make_config(clients=())
    app = create_app(config)
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "localhost":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.7", 0))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(ServiceConfigError, match="open mode"):
        uvicorn_config(app, config, "localhost", 0)
    monkeypatch.setattr(socket, "getaddrinfo", real)
    uvicorn_config(app, config, "localhost", 0)


@pytest.mark.parametrize("peer", ["192.0.2.1", "::ffff:192.0.2.1", "2001:db8::1"])
def test_open_mode_refuses_a_caller_that_is_not_on_loopback(peer: str) -> None:
    # RS1: open mode was checked only where mie binds its socket (uvicorn_config, mie serve);
    # the app served by another ASGI server on a public address took every caller as local.
    from starlette.requests import Request

    from mie.service.callers import caller
    from mie.service.errors import UnauthorizedError

    def request(host: str) -> Request:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/challenges",
            "headers": [(b"mie-session", SESSION.encode())],
            "client": (host, 40000),
        }
        return Request(scope)

    with pytest.raises(UnauthorizedError, match="loopback"):
        caller(request(peer), (), "verify")
    for host in ("127.0.0.1", "::1"):
        assert caller(request(host), (), "verify").client == "local"
