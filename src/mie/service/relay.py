"""The badge relay in ``mie serve``: the same :class:`~mie.relay.iam.RelaySessions` as
:class:`~mie.relay.iam.RelayServer`, on the service's own port.

The IAM ``POST /v1/relay/sessions`` (scope ``verify``, with its ``Mie-Session``): the node
issues a nonce (purpose ``relay``, bound to the caller) and expects a session for it; the IAM
sends the workstation the ``url``. ``mie agent`` opens it (``WS /v1/relay/<session>``,
subprotocol ``mie-relay.1``, no ``Origin`` header: a browser's handshake is refused as
:class:`~mie.relay.iam.RelayServer` refuses it); the session then runs on a worker thread, where
:func:`finish_relay` consumes the nonce (``VerifyCore.consume``) and
runs the badge login over the :class:`~mie.relay.iam.RelayConnection`; ``VerifyCore.finish``
adds the PSC claims, the audit record and the metrics, as for ``/v1/verify``. The IAM fetches the
outcome once with ``GET /v1/relay/sessions/<session>?wait=S`` (the same caller and session):
the ``/v1/verify`` answer, or 202 while it is pending.

Sessions are node-local: the URL names this node (``relay.public_url``), a load balancer routes
``/v1/relay/*`` by node. Relay sessions run on their own :data:`RELAY_THREADS` worker threads, so
they cannot starve ``/v1/verify``; each holds one for at most its ``session_timeout``.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import anyio.from_thread
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from mie.core.errors import MieError
from mie.desfire.authenticator import DesfireAuthenticator
from mie.relay.errors import RelayClosedError, RelayProtocolError, RelayRefusedError
from mie.relay.iam import (
    APDU_TIMEOUT,
    PIN_TIMEOUT,
    PendingSession,
    RelayConnection,
    RelayPin,
    RelaySessions,
)
from mie.relay.protocol import (
    CLOSE_NORMAL,
    CLOSE_TIMEOUT,
    MAX_DEADLINE_MS,
    SUBPROTOCOL,
    check_session,
    session_id,
)
from mie.request import AuthRequest
from mie.result import AuthResult
from mie.service.bodies import parse_query, read_json
from mie.service.callers import Caller, caller
from mie.service.errors import (
    InternalError,
    RequestUsageError,
    error_response,
    response_headers,
)
from mie.store.errors import NonceUnknownError
from mie.verification import login

logger = logging.getLogger(__name__)

RELAY_PATH = "/v1/relay/"
"""Where agents open sessions on the service: ``/v1/relay/<session>``."""
RELAY_THREADS = 8
"""Worker threads relay sessions may hold at once (apart from ``/v1/verify``'s)."""
SEND_TIMEOUT = 5.0
"""Seconds one frame to the agent may take to leave."""
MAX_WAIT = 30
"""The longest ``wait`` of a result poll, in seconds."""
DEFAULT_WAIT = 25
POLL_INTERVAL = 0.05
LINGER = 2 * MAX_WAIT
"""Seconds an outcome stays fetchable after the session's deadline."""
MAX_SESSIONS = 4096
"""Relay sessions a node keeps at once (open, pending or with an outcome not yet fetched)."""
UVICORN_LOGGER = "uvicorn.error"
"""The logger uvicorn hands the WebSocket library (its sans-I/O protocol): see
:class:`NoFrames`."""


class NoFrames(logging.Filter):
    """Drops the WebSocket library's DEBUG lines that quote a frame (``< TEXT '…'``, ``> …``):
    a ``pin`` frame carries the user's PIN. uvicorn gives the library its own ``uvicorn.error``
    logger, so this filter sits there (installed when this module loads); what
    :data:`~mie.relay.protocol.WIRE_LOGGER`'s WARNING level does for :class:`RelayServer
    <mie.relay.iam.RelayServer>`."""

    def filter(self, record: logging.LogRecord) -> bool:
        """:return: whether ``record`` may be logged (not a frame)."""
        return not (record.levelno <= logging.DEBUG and record.msg in ("< %s", "> %s"))


_uvicorn_logger = logging.getLogger(UVICORN_LOGGER)
if not any(isinstance(f, NoFrames) for f in _uvicorn_logger.filters):
    _uvicorn_logger.addFilter(NoFrames())


class Challenge(Protocol):
    """What :meth:`RelayCore.issue` answers (``mie.service.core.Challenge``)."""

    @property
    def nonce(self) -> bytes:
        """The 32-byte nonce."""

    @property
    def origin(self) -> str:
        """The origin evidence must be bound to."""

    @property
    def expires_at(self) -> float:
        """Its expiry, seconds since the epoch."""


class Outcome(Protocol):
    """What a verification answers (``mie.service.core.Outcome``)."""

    @property
    def result(self) -> AuthResult:
        """The result (``valid`` false with its error on a failure)."""

    @property
    def status(self) -> int:
        """The HTTP status."""

    def to_json(self) -> dict[str, Any]:
        """:return: the ``/v1/verify`` answer's body."""


class RelayCore(Protocol):
    """What the relay needs of the service's verification core
    (:class:`mie.service.core.VerifyCore`)."""

    ctx: Any

    def issue(
        self, caller: Caller, purpose: str, context: Mapping[str, Any] | None = None
    ) -> Challenge:
        """Issue a nonce bound to ``caller`` for ``purpose``."""

    def consume(self, nonce: bytes, caller: Caller, purposes: Sequence[str]) -> dict[str, Any]:
        """Consume ``nonce`` (first use, valid or not) for one of ``purposes``."""

    def finish(
        self,
        caller: Caller,
        result: AuthResult,
        nonce: bytes | None,
        kind: str,
        started: float,
        *,
        request_id: str | None,
        event: str,
    ) -> Outcome:
        """Add the PSC claims, record the audit event and count the metrics of ``result``."""


def finish_relay(
    core: RelayCore, pending: PendingSession, connection: RelayConnection | None
) -> Outcome:
    """Consume the session's nonce and run the badge login over the relay: the IAM's
    ``DesfireAuthenticator`` with the node's keys, the second-factor PIN asked at the
    workstation; then tell the agent the outcome (without the evidence).

    The nonce is consumed first, whatever follows: an agent that announced no card, a badge
    that fails, an agent that vanishes mid-session all burn it.

    :param pending: the session (its :attr:`~PendingSession.context` a :class:`RelayTicket`).
    :param connection: the card connection; ``None``: the agent announced no card, and
        ``pending.connection(0)`` raises why.
    :return: the outcome (a failure is its result with ``valid`` false, never an exception).
    """
    ticket = pending.context
    assert isinstance(ticket, RelayTicket)  # noqa: S101 - relay_session puts it there
    started = time.perf_counter()
    badges = core.ctx.badges
    result: AuthResult
    try:
        core.consume(pending.request.nonce, ticket.caller, ("relay",))
        if connection is None:
            connection = pending.connection(0)
        if badges is None:
            raise RelayRefusedError("This node has no badge configuration")
        authenticator = DesfireAuthenticator(connection, badges.config, keys=badges.keys)
        result = login(
            authenticator,
            pending.request,
            user=RelayPin(connection),
            verifier=None,
            badges=badges,
        )
    except MieError as e:
        result = AuthResult.failure(e, None)
    outcome = core.finish(
        ticket.caller,
        result,
        pending.request.nonce,
        "badge",
        started,
        request_id=ticket.request_id,
        event="relay",
    )
    if connection is not None and not connection.closed:
        try:
            connection.finish(outcome.result)
        except RelayClosedError:
            logger.info("Relay session %s: the agent left before the outcome", pending.session)
    return outcome


@dataclass
class RelayTicket:
    """What the service keeps with a relay session (its :attr:`PendingSession.context`).

    :param caller: who asked for it (only it fetches the outcome).
    :param expires_at: the session's end (seconds since the epoch).
    :param request_id: the ``X-Request-Id`` of the request that opened it (in its audit record).
    """

    caller: Caller
    expires_at: float
    request_id: str | None = None
    outcome: Any = None
    fetched: bool = False
    _started: bool = field(default=False, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def finish(
        self, core: RelayCore, pending: PendingSession, connection: RelayConnection | None
    ) -> None:
        """Run :func:`finish_relay` once for the session (a second call does nothing)."""
        with self._lock:
            if self._started:
                return
            self._started = True
        try:
            self.outcome = finish_relay(core, pending, connection)
        finally:
            self._done.set()

    @property
    def done(self) -> bool:
        """Whether the outcome is there."""
        return self._done.is_set()

    def take(self) -> bool:
        """:return: whether this call is the one that delivers the outcome (once)."""
        with self._lock:
            if self.fetched or not self._done.is_set():
                return False
            self.fetched = True
            return True


class AsgiRelaySocket:
    """A :class:`~mie.relay.iam.RelaySocket` over a Starlette WebSocket, for a worker thread
    (started by :func:`anyio.to_thread.run_sync`): every call goes through the event loop with
    :mod:`anyio.from_thread`, every wait has a deadline, and the peer's disconnect is the
    ``websockets`` ``ConnectionClosed`` :class:`~mie.relay.iam.RelayConnection` expects.

    :param websocket: the agent's WebSocket, accepted.
    :param send_timeout: seconds a frame may take to leave.
    """

    def __init__(self, websocket: WebSocket, *, send_timeout: float = SEND_TIMEOUT) -> None:
        self._ws = websocket
        self._send_timeout = send_timeout
        self._received: Close | None = None
        self._closed = False

    def send(self, message: str) -> None:
        """Send one text frame.

        :raises ConnectionClosed: the agent went away, or the frame did not leave in time.
        """
        if self._closed or self._received is not None:
            raise ConnectionClosed(self._received, None)
        try:
            anyio.from_thread.run(self._send, message)
        except (WebSocketDisconnect, RuntimeError, OSError, TimeoutError) as e:
            raise ConnectionClosed(self._received, None) from e

    def recv(self, timeout: float) -> str | bytes:
        """Wait for the agent's next frame.

        :raises TimeoutError: none within ``timeout`` seconds.
        :raises ConnectionClosed: the agent went away.
        """
        if self._received is not None or self._closed:
            raise ConnectionClosed(self._received, None)
        try:
            message = anyio.from_thread.run(self._receive, timeout)
        except (RuntimeError, OSError, WebSocketDisconnect) as e:
            raise ConnectionClosed(self._received, None) from e
        if message["type"] == "websocket.disconnect":
            self._received = Close(int(message.get("code", 1005)), str(message.get("reason") or ""))
            raise ConnectionClosed(self._received, None)
        text, data = message.get("text"), message.get("bytes")
        # uvicorn's ws_max_size (16 KiB in the service) refuses a larger frame before it is
        # here; parse_agent_message refuses one over MAX_MESSAGE bytes whatever the server.
        frame: str | bytes = text if text is not None else (data or b"")
        return frame

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Close the WebSocket (a second call, or one after the agent left, does nothing)."""
        if self._closed:
            return
        self._closed = True
        if self._received is not None:
            return
        try:
            anyio.from_thread.run(self._close, code, reason)
        except (RuntimeError, OSError, WebSocketDisconnect):
            logger.debug("Relay socket already closed")

    async def _send(self, message: str) -> None:
        with anyio.fail_after(self._send_timeout):
            await self._ws.send_text(message)

    async def _receive(self, timeout: float) -> Mapping[str, Any]:
        with anyio.fail_after(max(timeout, 0.0)):
            return await self._ws.receive()

    async def _close(self, code: int, reason: str) -> None:
        with anyio.move_on_after(CLOSE_TIMEOUT + SEND_TIMEOUT):
            await self._ws.close(code, reason)


def relay_sessions(
    *, apdu_timeout: float = APDU_TIMEOUT, pin_timeout: float = PIN_TIMEOUT
) -> RelaySessions:
    """:return: the relay sessions of a service node (``ServiceContext.relay``)."""
    return RelaySessions(apdu_timeout=apdu_timeout, pin_timeout=pin_timeout, linger=LINGER)


_limiters: weakref.WeakKeyDictionary[RelaySessions, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)
_setup = threading.Lock()


def _sessions(ctx: Any) -> RelaySessions:
    with _setup:
        if ctx.relay is None:
            ctx.relay = relay_sessions()
        sessions: RelaySessions = ctx.relay
        return sessions


def _limiter(sessions: RelaySessions) -> anyio.CapacityLimiter:
    # Made on the event loop at first use (an anyio limiter belongs to one loop).
    with _setup:
        limiter = _limiters.get(sessions)
        if limiter is None:
            limiter = _limiters[sessions] = anyio.CapacityLimiter(RELAY_THREADS)
        return limiter


def _core(state: Any) -> RelayCore:
    core = getattr(state, "core", None)
    if core is None:
        core = state.mie.core
    assert core is not None  # noqa: S101 - the app's lifespan sets it
    return core


def _session_timeout(ctx: Any) -> float:
    return float(min(ctx.config.relay.session_timeout, MAX_DEADLINE_MS // 1000))


def _url(ctx: Any, request: Request, session: str) -> str:
    public = ctx.config.relay.public_url
    if public:
        return public.rstrip("/") + "/" + session
    # Not the request's Host header: a caller could forge it and send the agent, with the PIN
    # it relays, to another server. The socket the request came in on is the service's own.
    scheme = "wss" if request.url.scheme == "https" else "ws"
    server = request.scope.get("server")
    if not server or server[1] is None:
        raise RelayRefusedError("No relay.public_url configured and no bound address to name")
    host, port = str(server[0]), int(server[1])
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}{RELAY_PATH}{session}"


def _time(seconds: float) -> str:
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


async def relay_session(request: Request) -> Response:
    """``POST /v1/relay/sessions``: issue a relay nonce and expect its session.

    :return: 201 ``{"session", "url", "nonce", "origin", "expires_at"}``; 422
        ``relay_refused`` on a node with no badge configuration or :data:`MAX_SESSIONS` sessions.
    """
    ctx = request.app.state.mie
    who = caller(request, ctx.config.clients, "verify")
    body = await read_json(request, limit=ctx.config.limits.body_bytes, empty={})
    if body != {}:
        raise RequestUsageError("A relay session takes an empty JSON object")
    if ctx.badges is None:
        # Refused before a nonce is issued: no agent could log in here.
        raise RelayRefusedError("This node has no badge configuration")
    sessions = _sessions(ctx)
    if len(sessions) >= MAX_SESSIONS:
        # A bound on what a node keeps in memory; the IAM retries or another node takes it.
        raise RelayRefusedError(f"This node keeps {MAX_SESSIONS} relay sessions already")
    core = _core(request.app.state)
    challenge = await anyio.to_thread.run_sync(core.issue, who, "relay", None)
    now = time.time()
    timeout = min(_session_timeout(ctx), challenge.expires_at - now)
    expires_at = now + timeout
    auth = AuthRequest(challenge.nonce, challenge.origin)
    pending = sessions.expect(
        auth,
        timeout=timeout,
        url=_url(ctx, request, session_id(auth.nonce)),
        context=RelayTicket(who, expires_at, getattr(request.state, "request_id", None)),
    )
    logger.info("Relay session %s for client %s", pending.session, who.client)
    body = {
        "session": pending.session,
        "url": pending.url,
        "nonce": challenge.nonce.hex(),
        "origin": challenge.origin,
        "expires_at": _time(expires_at),
    }
    return JSONResponse(body, status_code=201, headers=response_headers(201))


def _wait(value: str) -> int:
    if not value.isdecimal() or not 0 <= int(value) <= MAX_WAIT:
        raise ValueError(f"The wait is 0 to {MAX_WAIT} seconds")
    return int(value)


def _unknown() -> NonceUnknownError:
    # One answer for never opened, another caller's and already fetched, like a nonce's.
    return NonceUnknownError()


async def relay_result(request: Request) -> Response:
    """``GET /v1/relay/sessions/<session>?wait=S``: the session's outcome, once.

    :return: the ``/v1/verify`` answer of the badge login (its status), or 202 ``{"state":
        "pending", "expires_at"}`` if it is not there within ``wait`` seconds; 409
        ``nonce_unknown`` for a session unknown, another caller's or already fetched.
    """
    ctx = request.app.state.mie
    who = caller(request, ctx.config.clients, "verify")
    wait = parse_query(request, {"wait": _wait}).get("wait", DEFAULT_WAIT)
    session = str(request.path_params.get("session", ""))
    sessions = _sessions(ctx)
    pending = sessions.find(session) if _well_formed(session) else None
    ticket = pending.context if pending is not None else None
    if pending is None or not isinstance(ticket, RelayTicket) or not _same(ticket.caller, who):
        return error_response(_unknown())
    core = _core(request.app.state)
    until = time.monotonic() + wait
    while not ticket.done:
        if time.monotonic() >= pending.deadline and not pending.claimed:
            # No agent came: the outcome is that timeout (the nonce consumed all the same).
            await anyio.to_thread.run_sync(ticket.finish, core, pending, None)
            break
        if time.monotonic() >= until:
            body = {"state": "pending", "expires_at": _time(ticket.expires_at)}
            return JSONResponse(body, status_code=202, headers=response_headers(202))
        await anyio.sleep(POLL_INTERVAL)
    if not ticket.take():
        return error_response(_unknown())
    sessions.forget(pending)
    if ticket.outcome is None:
        # The session's thread failed (logged there); the nonce is consumed all the same.
        raise InternalError("internal error (relay session)")
    return outcome_response(ticket.outcome)


def outcome_response(outcome: Outcome) -> Response:
    """:return: the HTTP answer of an outcome, as ``/v1/verify`` gives it."""
    status = int(outcome.status)
    return JSONResponse(outcome.to_json(), status_code=status, headers=response_headers(status))


def _well_formed(session: str) -> bool:
    try:
        check_session(session)
    except RelayProtocolError:
        return False
    return True


def _same(owner: Caller, who: Caller) -> bool:
    if owner.binding is None or who.binding is None:
        return False
    return hmac.compare_digest(owner.binding, who.binding)


async def relay_socket(websocket: WebSocket) -> None:
    """``WS /v1/relay/<session>``: an agent opens its session.

    A handshake with an ``Origin`` header (a browser) or without the ``mie-relay.1``
    subprotocol, or for a malformed session id, is refused (HTTP 403); an unknown, used or
    expired session is closed with code 4404 after the handshake, as
    :class:`~mie.relay.iam.RelayServer` does.
    """
    session = str(websocket.path_params.get("session", ""))
    if (
        "origin" in websocket.headers
        or SUBPROTOCOL not in websocket.scope.get("subprotocols", ())
        or not _well_formed(session)
    ):
        # A browser sends Origin on every WebSocket handshake, mie agent never does.
        logger.info("Relay handshake refused (Origin, no %s, or no session id)", SUBPROTOCOL)
        await websocket.close(1008)
        return
    ctx = websocket.app.state.mie
    sessions = _sessions(ctx)
    core = _core(websocket.app.state)
    await websocket.accept(subprotocol=SUBPROTOCOL)
    socket = AsgiRelaySocket(websocket)

    def agent() -> None:
        def run(pending: PendingSession, connection: RelayConnection) -> None:
            ticket = pending.context
            if isinstance(ticket, RelayTicket):
                ticket.finish(core, pending, connection)

        pending = sessions.serve(socket, session, run)
        ticket = pending.context if pending is not None else None
        if pending is not None and isinstance(ticket, RelayTicket):
            # The agent announced no card (gone, refused, timed out): that is the outcome.
            ticket.finish(core, pending, None)

    try:
        await anyio.to_thread.run_sync(agent, limiter=_limiter(sessions))
    except Exception:
        # No HTTP answer to give here: the poll answers 500 (no outcome), the log has why.
        logger.exception("Relay session %s failed", session)
    finally:
        if not socket._closed:
            await _quiet_close(websocket)


async def _quiet_close(websocket: WebSocket) -> None:
    try:
        with anyio.move_on_after(CLOSE_TIMEOUT + SEND_TIMEOUT):
            await websocket.close(CLOSE_NORMAL)
    except (RuntimeError, OSError, WebSocketDisconnect):
        pass


__all__ = [
    "RELAY_PATH",
    "AsgiRelaySocket",
    "NoFrames",
    "RelayCore",
    "RelayTicket",
    "finish_relay",
    "outcome_response",
    "relay_result",
    "relay_session",
    "relay_sessions",
    "relay_socket",
]
