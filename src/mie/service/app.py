"""The ASGI application of ``mie serve`` (Starlette 1.x: routes, handlers and lifespan given to
the constructor) and its uvicorn settings."""

from __future__ import annotations

import contextlib
import importlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Route, WebSocketRoute

from mie.core.errors import MieError
from mie.core.log import TRAFFIC
from mie.service import routes_auth
from mie.service.config import ServiceConfig
from mie.service.context import ServiceContext
from mie.service.core import VerifyCore
from mie.service.errors import http_error_handler, internal_error_handler, mie_error_handler
from mie.service.openapi import document

log = logging.getLogger("mie.service")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
WS_MAX_SIZE = 16 * 1024


def routes() -> list[BaseRoute]:
    """:return: every route of the service (those of modules not installed left out)."""
    table: list[BaseRoute] = [
        Route("/v1/challenges", routes_auth.challenges, methods=["POST"]),
        Route("/v1/verify", routes_auth.verify, methods=["POST"]),
        Route("/v1/health", routes_auth.health, methods=["GET"]),
        Route("/metrics", routes_auth.metrics, methods=["GET"]),
        Route("/openapi.json", routes_auth.openapi, methods=["GET"]),
    ]
    table += _optional_routes()
    return table


def _optional_routes() -> list[BaseRoute]:
    # The ceremonies, the lifecycle API and the relay, each from its own module.
    table: list[BaseRoute] = []
    for name, spec in _OPTIONAL.items():
        try:
            module = importlib.import_module(f"mie.service.{name}")
        except ImportError as e:
            if e.name != f"mie.service.{name}":
                raise
            continue
        for kind, path, attr, methods in spec:
            handler = getattr(module, attr, None)
            if handler is None:
                continue
            if kind == "ws":
                table.append(WebSocketRoute(path, handler))
            else:
                table.append(Route(path, handler, methods=methods))
    return table


_OPTIONAL: dict[str, list[tuple[str, str, str, list[str]]]] = {
    "fido": [
        ("http", "/v1/fido/registrations", "registrations", ["POST"]),
        ("http", "/v1/fido/registrations/complete", "registrations_complete", ["POST"]),
        ("http", "/v1/fido/authentications", "authentications", ["POST"]),
        ("http", "/v1/fido/authentications/complete", "authentications_complete", ["POST"]),
    ],
    "admin": [
        ("http", "/v1/mie/revocations", "revocations", ["POST"]),
        ("http", "/v1/mie/temporary", "temporary", ["POST"]),
        ("http", "/v1/mie/{ref}", "lookup", ["GET"]),
    ],
    "relay": [
        ("http", "/v1/relay/sessions", "relay_session", ["POST"]),
        ("http", "/v1/relay/sessions/{session}", "relay_result", ["GET"]),
        ("ws", "/v1/relay/{session}", "relay_socket", []),
    ],
}


class RequestMiddleware:
    """Gives every HTTP request an id (``X-Request-Id``) and counts it by route template and
    status (``mie_http_requests_total``)."""

    def __init__(self, app: ASGIApp, ctx_of: Callable[[], ServiceContext | None]) -> None:
        self.app = app
        self.ctx_of = ctx_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = rid
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            ctx = self.ctx_of()
            if ctx is not None:
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                ctx.metrics.http_requests.labels(template, str(status)).inc()


def create_app(config: ServiceConfig, *, port: int | None = None) -> Starlette:
    """The service's ASGI application; its resources (:class:`ServiceContext`) are opened in
    the lifespan and closed at shutdown.

    :param config: the configuration.
    :param port: the port, for the default node name.
    """
    holder: dict[str, ServiceContext] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ctx = await anyio.to_thread.run_sync(lambda: ServiceContext.open(config, port=port))
        holder["ctx"] = ctx
        app.state.mie = ctx
        app.state.core = VerifyCore(ctx)
        app.state.limiter = anyio.CapacityLimiter(config.limits.concurrency)
        app.state.openapi = document(config, app.routes)
        start = getattr(app.state.core, "started", None)
        if callable(start):
            await anyio.to_thread.run_sync(start)
        if config.open_mode:
            log.warning("mie serve: no clients configured: open mode (loopback only)")
        try:
            yield
        finally:
            stop = getattr(app.state.core, "stopped", None)
            if callable(stop):
                with contextlib.suppress(MieError):
                    await anyio.to_thread.run_sync(stop)
            holder.pop("ctx", None)
            await anyio.to_thread.run_sync(ctx.close)

    app = Starlette(
        debug=False,
        routes=routes(),
        lifespan=lifespan,
        exception_handlers={
            MieError: mie_error_handler,
            HTTPException: http_error_handler,
            Exception: internal_error_handler,
        },
    )
    app.add_middleware(RequestMiddleware, ctx_of=lambda: holder.get("ctx"))
    return app


def uvicorn_config(app: Starlette, config: ServiceConfig, host: str, port: int) -> Any:
    """:return: the :class:`uvicorn.Config` of the service (plan D1).

    :raises ServiceConfigError: open mode on a host other than loopback.
    """
    import uvicorn

    config.check_host(host)
    tls: dict[str, Any] = {}
    if config.tls is not None:
        tls = {"ssl_certfile": config.tls.cert, "ssl_keyfile": config.tls.key}
    settings = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        ws="websockets-sansio",
        ws_max_size=WS_MAX_SIZE,
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=5,
        **tls,
    )
    # uvicorn names level 5 "TRACE" when it configures its logging; it is mie's (and
    # python-fido2's) TRAFFIC level, which the log lines of `--log-level traffic` must keep.
    logging.addLevelName(TRAFFIC, "TRAFFIC")
    return settings


def run(config: ServiceConfig, *, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve until stopped (SIGINT, SIGTERM).

    :raises ServiceConfigError: open mode on a host other than loopback.
    """
    import uvicorn

    server = uvicorn.Server(uvicorn_config(create_app(config, port=port), config, host, port))
    server.run()
    if not server.started:
        raise SystemExit(1)


__all__ = ["create_app", "routes", "run", "uvicorn_config"]
