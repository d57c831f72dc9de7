"""The IAM side of the relay: WebSocket sessions that are card connections.

:class:`RelaySessions` keeps the sessions (expect, claim, open) on any socket implementing
:class:`RelaySocket`; :class:`RelayServer` is its own WebSocket server on a thread (the
``websockets`` package), and ``mie serve`` gives the same sessions an ASGI WebSocket
(:mod:`mie.service.relay`). The IAM :meth:`RelaySessions.expect`\\ s one session per
:class:`~mie.request.AuthRequest` and sends the workstation the session URL
(``…/relay/<session_id(nonce)>``). When ``mie agent``
connects and has checked its card, :meth:`PendingSession.connection` gives a
:class:`RelayConnection`: a :class:`~mie.core.connection.SmartCardConnection` whose APDUs go to
the agent's reader, so the IAM runs ``DesfireAuthenticator`` with the keys it holds exactly as it
would locally. The agent forwards only what :mod:`mie.relay.policy` allows.

A handshake carrying an ``Origin`` header is refused (HTTP 403): browsers send one on every
WebSocket, ``mie agent`` never does, so a page in a browser cannot claim a session.

Every wait has a deadline: the agent's hello answer (``hello_timeout``), each APDU's answer
(``apdu_timeout``), the user's PIN (``pin_timeout``), and the whole session (``expect``'s
``timeout``). A stalled agent raises :class:`~mie.relay.errors.RelayTimeoutError`, a vanished
one :class:`~mie.relay.errors.RelayClosedError`, both within their wait plus a fraction of a
second (the WebSocket close is bounded by :data:`~mie.relay.protocol.CLOSE_TIMEOUT`).
"""

from __future__ import annotations

import hmac
import logging
import ssl as ssl_module
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from http import HTTPStatus
from typing import Protocol

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from mie.core.connection import SmartCardConnection, Transport
from mie.relay.errors import (
    RelayClosedError,
    RelayProtocolError,
    RelayRefusedError,
    RelayTimeoutError,
)
from mie.relay.protocol import (
    CLOSE_CARD_ERROR,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL,
    CLOSE_REFUSED,
    CLOSE_TIMED_OUT,
    CLOSE_TIMEOUT,
    CLOSE_UNKNOWN_SESSION,
    MAX_DEADLINE_MS,
    MAX_MESSAGE,
    RELAY_PATH,
    SUBPROTOCOL,
    WIRE_LOGGER,
    AgentMessage,
    Apdu,
    Card,
    End,
    Hello,
    IamMessage,
    PinReply,
    PinRequest,
    Rapdu,
    Refused,
    check_session,
    encode,
    parse_agent_message,
    session_id,
)
from mie.request import AuthRequest, UserVerification
from mie.result import AuthResult

logger = logging.getLogger(__name__)

APDU_TIMEOUT = 5.0
"""Seconds the IAM waits for the answer to one APDU."""
PIN_TIMEOUT = 60.0
"""Seconds the IAM waits for the user's PIN."""
HELLO_TIMEOUT = 10.0
"""Seconds the IAM waits for the agent's card (or refusal) after its hello."""
SESSION_TIMEOUT = 60.0
"""Default seconds a session may last, from :meth:`RelayServer.expect` to its end."""


class RelaySocket(Protocol):
    """What :class:`RelaySessions` needs of the agent's WebSocket, once the handshake is done.

    ``websockets``' sync ``ServerConnection`` is one; :class:`mie.service.relay.AsgiRelaySocket`
    another. A peer that went away raises ``websockets.exceptions.ConnectionClosed`` from
    :meth:`send` and :meth:`recv`.
    """

    def send(self, message: str) -> None:
        """Send one text frame.

        :param message: the frame.
        :raises websockets.exceptions.ConnectionClosed: the peer went away.
        """

    def recv(self, timeout: float) -> str | bytes:
        """Wait for the next frame.

        :param timeout: seconds to wait.
        :return: the frame.
        :raises TimeoutError: none within ``timeout``.
        :raises websockets.exceptions.ConnectionClosed: the peer went away.
        """

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Close the WebSocket (a second call does nothing); bounded by
        :data:`~mie.relay.protocol.CLOSE_TIMEOUT`.

        :param code: the close code.
        :param reason: the close reason.
        """


class RelayConnection(SmartCardConnection):
    """The card in the agent's reader, seen from the IAM.

    ``transaction()`` does nothing: the agent holds the PC/SC transaction for the whole session.

    :param websocket: the agent's connection.
    :param card: what the agent announced.
    :param deadline: the session's end (``time.monotonic()`` value).
    :param apdu_timeout: seconds to wait for each answer.
    :param pin_timeout: seconds to wait for the user's PIN.
    """

    def __init__(
        self,
        websocket: RelaySocket,
        card: Card,
        *,
        deadline: float,
        apdu_timeout: float = APDU_TIMEOUT,
        pin_timeout: float = PIN_TIMEOUT,
    ) -> None:
        self._ws = websocket
        self._card = card
        self._deadline = deadline
        self.apdu_timeout = apdu_timeout
        self.pin_timeout = pin_timeout
        self._seq = 0
        self._closed = threading.Event()

    def __repr__(self) -> str:
        return f"RelayConnection(session={self._card.session}, reader={self._card.reader!r})"

    @property
    def atr(self) -> bytes | None:
        """The ATR the agent reported."""
        return self._card.atr

    @property
    def transport(self) -> Transport:
        """How the agent reaches the card."""
        return self._card.transport

    @property
    def reader(self) -> str:
        """The name of the agent's reader."""
        return self._card.reader

    @property
    def session(self) -> str:
        """The relay session id."""
        return self._card.session

    @property
    def closed(self) -> bool:
        """Whether the session is over."""
        return self._closed.is_set()

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        """Have the agent send ``apdu`` to the card.

        :param apdu: the command APDU.
        :return: the response data and status word.
        :raises RelayRefusedError: the agent refused the command (the session is over).
        :raises RelayTimeoutError: no answer within ``apdu_timeout`` or the session's deadline.
        :raises RelayClosedError: the agent went away.
        :raises RelayProtocolError: the agent answered out of the wire format.
        """
        seq = self._seq + 1
        self._send(Apdu(seq, bytes(apdu)))
        message = self._receive(self.apdu_timeout, f"answer to APDU {seq}")
        if not isinstance(message, Rapdu) or message.seq != seq:
            self._protocol_error(f"The agent answered APDU {seq} with {_describe(message)}")
        assert isinstance(message, Rapdu)  # noqa: S101 - _protocol_error raised otherwise
        self._seq = seq
        response = message.response
        return response[:-2], int.from_bytes(response[-2:], "big")

    def request_pin(self, tries_left: int | None) -> str:
        """Ask the user at the workstation for the second-factor PIN.

        :param tries_left: tries before the lockout, shown to the user.
        :return: the PIN typed.
        :raises RelayRefusedError: the user or the agent gave none.
        :raises RelayTimeoutError: no PIN within ``pin_timeout`` or the session's deadline.
        :raises RelayClosedError: the agent went away.
        """
        self._send(PinRequest(tries_left))
        message = self._receive(self.pin_timeout, "PIN")
        if not isinstance(message, PinReply):
            self._protocol_error(f"The agent answered the PIN request with {_describe(message)}")
        assert isinstance(message, PinReply)  # noqa: S101 - _protocol_error raised otherwise
        return message.pin

    def finish(self, result: AuthResult) -> None:
        """Tell the agent the outcome (without the evidence, which stays here) and close.

        :param result: the verified result.
        :raises RelayClosedError: the agent went away first.
        """
        summary = replace(result, evidence=None, revocation=None).to_json()
        try:
            self._send(End(summary))
        finally:
            self.close()

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """End the session (the agent closes its card connection)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._ws.close(code, reason)

    def wait_closed(self, timeout: float) -> bool:
        """:return: whether the session ended within ``timeout`` seconds."""
        return self._closed.wait(timeout)

    def _send(self, message: IamMessage) -> None:
        if self._closed.is_set():
            raise RelayClosedError("The relay session is closed")
        try:
            self._ws.send(encode(message))
        except ConnectionClosed as e:
            self._closed.set()
            raise RelayClosedError(f"The agent closed the relay ({_close_code(e)})") from e

    def _receive(self, timeout: float, what: str) -> AgentMessage:
        wait = min(timeout, self._deadline - time.monotonic())
        if wait <= 0:
            self.close(CLOSE_TIMED_OUT, "session deadline")
            raise RelayTimeoutError("The relay session's deadline passed")
        try:
            frame = self._ws.recv(timeout=wait)
        except TimeoutError as e:
            self.close(CLOSE_TIMED_OUT, "timeout")
            raise RelayTimeoutError(f"The agent sent no {what} within {wait:.1f} s") from e
        except ConnectionClosed as e:
            self._closed.set()
            raise RelayClosedError(f"The agent closed the relay ({_close_code(e)})") from e
        try:
            message = parse_agent_message(frame)
        except RelayProtocolError:
            self.close(CLOSE_PROTOCOL, "protocol error")
            raise
        if isinstance(message, Refused):
            self.close(CLOSE_REFUSED, "refused")
            raise RelayRefusedError(message.reason)
        return message

    def _protocol_error(self, text: str) -> None:
        self.close(CLOSE_PROTOCOL, "protocol error")
        raise RelayProtocolError(text)


class RelayPin(UserVerification):
    """Asks for the PIN at the workstation, through the relay.

    :param connection: the relay session.
    """

    def __init__(self, connection: RelayConnection) -> None:
        self.connection = connection

    def request_pin(self, tries_left: int | None) -> str:
        """:return: the PIN the user typed at the workstation (see
        :meth:`RelayConnection.request_pin`)."""
        return self.connection.request_pin(tries_left)


class PendingSession:
    """A session the IAM expects an agent to open.

    :param request: the authentication request (its nonce names the session).
    :param url: where the agent connects.
    :param deadline: the session's end (``time.monotonic()`` value).
    :param context: what the IAM keeps with the session (:attr:`context`; the relay never reads
        it).
    """

    def __init__(
        self, request: AuthRequest, url: str, deadline: float, context: object = None
    ) -> None:
        self.request = request
        self.session = session_id(request.nonce)
        self.url = url
        self.deadline = deadline
        self.context = context
        self.claimed = False
        self.abandoned = False
        self._ready = threading.Event()
        self._connection: RelayConnection | None = None
        self._error: Exception | None = None
        self._taken = False

    def __repr__(self) -> str:
        return f"PendingSession(session={self.session})"

    def connection(self, timeout: float | None = None) -> RelayConnection:
        """Wait for the agent to connect and announce its badge.

        :param timeout: seconds to wait (``None``: until the session's deadline).
        :return: the card connection (once; a second call raises ``RuntimeError``).
        :raises RelayTimeoutError: no agent within the time.
        :raises RelayRefusedError: the agent refused the session or its card.
        :raises RelayClosedError: the agent left before announcing a card.
        :raises RelayProtocolError: the agent broke the wire format.
        """
        if self._taken:
            raise RuntimeError("The connection of a relay session is taken once")
        left = self.deadline - time.monotonic()
        wait = left if timeout is None else min(timeout, left)
        if not self._ready.wait(max(wait, 0.0)):
            self.abandoned = True
            # An agent that arrived as the wait ran out is not left waiting for commands.
            if self._ready.is_set() and self._connection is not None:
                self._connection.close(CLOSE_TIMED_OUT, "abandoned")
            raise RelayTimeoutError(f"No agent opened relay session {self.session} in time")
        self._taken = True
        if self._error is not None:
            raise self._error
        assert self._connection is not None  # noqa: S101 - set with _ready
        return self._connection

    def _deliver(self, connection: RelayConnection | None, error: Exception | None) -> None:
        self._connection, self._error = connection, error
        self._ready.set()


class RelaySessions:
    """The IAM's relay sessions, on whatever carries the agent's WebSocket.

    A transport (:class:`RelayServer`, or ``mie serve``'s ASGI route) checks the handshake, then
    hands the socket and the session id from the URL to :meth:`serve` (or to :meth:`claim` and
    :meth:`open`).

    :param url: the URL the agent opens a session at (``None``: :meth:`expect` is given it).
    :param apdu_timeout: seconds a :class:`RelayConnection` waits for each answer.
    :param pin_timeout: seconds it waits for the user's PIN.
    :param hello_timeout: seconds to wait for the agent's card after the hello.
    :param linger: seconds a session stays known (:meth:`find`) after its deadline, so that its
        outcome can still be fetched.
    """

    def __init__(
        self,
        url: Callable[[str], str] | None = None,
        *,
        apdu_timeout: float = APDU_TIMEOUT,
        pin_timeout: float = PIN_TIMEOUT,
        hello_timeout: float = HELLO_TIMEOUT,
        linger: float = 1.0,
    ) -> None:
        self._url = url
        self.linger = linger
        self.apdu_timeout = apdu_timeout
        self.pin_timeout = pin_timeout
        self.hello_timeout = hello_timeout
        self._lock = threading.Lock()
        self._sessions: dict[str, PendingSession] = {}
        self._open_connections: list[RelayConnection] = []

    def expect(
        self,
        request: AuthRequest,
        *,
        timeout: float = SESSION_TIMEOUT,
        url: str | None = None,
        context: object = None,
    ) -> PendingSession:
        """Open a session for ``request``: an agent may connect to it once, within ``timeout``.

        :param request: the authentication request (a fresh nonce: one session per nonce).
        :param timeout: seconds the whole session may last, connection included (at most 120).
        :param url: the session's URL (default: the one the ``url`` given at construction makes).
        :param context: kept as the session's :attr:`PendingSession.context`.
        :return: the pending session; send its :attr:`~PendingSession.url` to the workstation.
        :raises ValueError: a session for this nonce exists, the timeout is out of range, or
            there is no URL.
        """
        if not 0 < timeout <= MAX_DEADLINE_MS / 1000:
            raise ValueError(f"A relay session lasts 0 to {MAX_DEADLINE_MS // 1000} s")
        session = session_id(request.nonce)
        if url is None:
            if self._url is None:
                raise ValueError("A relay session needs a URL")
            url = self._url(session)
        pending = PendingSession(request, url, time.monotonic() + timeout, context)
        with self._lock:
            self._forget_expired()
            if session in self._sessions:
                raise ValueError("A relay session for this nonce exists: a nonce is used once")
            self._sessions[session] = pending
        logger.info("Relay session %s expected", session)
        return pending

    def find(self, session: str) -> PendingSession | None:
        """:return: the session of that id still kept (constant-time compare), claimed or not;
        ``None`` if unknown or past its deadline by more than ``linger`` seconds."""
        with self._lock:
            self._forget_expired()
            found = None
            for known, candidate in self._sessions.items():
                if hmac.compare_digest(known, session):
                    found = candidate
            return found

    def forget(self, pending: PendingSession) -> None:
        """Drop ``pending`` (its result was delivered): its id is then unknown."""
        with self._lock:
            if self._sessions.get(pending.session) is pending:
                del self._sessions[pending.session]

    def __len__(self) -> int:
        with self._lock:
            self._forget_expired()
            return len(self._sessions)

    def close(self) -> None:
        """End every open session."""
        with self._lock:
            connections, self._open_connections = self._open_connections, []
        for connection in connections:
            connection.close(CLOSE_NORMAL, "server closing")

    def _forget_expired(self) -> None:
        now = time.monotonic()
        for session in [s for s, p in self._sessions.items() if p.deadline + self.linger < now]:
            del self._sessions[session]

    def claim(self, session: str) -> PendingSession | None:
        """Take ``session`` for the agent that opened its URL: once, before its deadline.

        :param session: the id from the URL.
        :return: the pending session, or ``None`` (unknown, used, abandoned or expired).
        """
        with self._lock:
            pending = None
            for known, candidate in self._sessions.items():
                if hmac.compare_digest(known, session):
                    pending = candidate
            if pending is None or pending.claimed or pending.abandoned:
                return None
            if time.monotonic() >= pending.deadline:
                return None
            pending.claimed = True
            return pending

    def serve(
        self,
        websocket: RelaySocket,
        session: str,
        run: Callable[[PendingSession, RelayConnection], None] | None = None,
    ) -> PendingSession | None:
        """Run one agent's connection to the end: claim, hello, card, then hold the socket until
        the IAM ends the session (or its deadline).

        :param websocket: the agent's socket, handshake done.
        :param session: the session id from the URL.
        :param run: called on this thread with the open connection (``None``: the IAM takes it
            from :meth:`PendingSession.connection` on another thread).
        :return: the claimed session (``None``: refused, the socket closed with
            :data:`~mie.relay.protocol.CLOSE_UNKNOWN_SESSION`).
        """
        pending = self.claim(session)
        if pending is None:
            logger.info("Relay connection refused: unknown, used or expired session")
            websocket.close(CLOSE_UNKNOWN_SESSION, "unknown, used or expired session")
            return None
        connection = self.open(websocket, pending)
        if connection is None:
            return pending
        if run is not None:
            try:
                run(pending, connection)
            finally:
                connection.close(CLOSE_NORMAL, "")
            return pending
        # The transport closes the WebSocket when this returns: hold it until the session ends.
        if not connection.wait_closed(max(pending.deadline - time.monotonic(), 0.0) + 1.0):
            connection.close(CLOSE_TIMED_OUT, "session deadline")
        return pending

    def open(self, websocket: RelaySocket, pending: PendingSession) -> RelayConnection | None:
        """Send the hello and wait for the agent's card; deliver the outcome to ``pending``.

        :param websocket: the agent's socket.
        :param pending: the session it claimed.
        :return: the card connection, or ``None`` (refused, broken, timed out or gone: the
            error is what :meth:`PendingSession.connection` raises).
        """
        left = pending.deadline - time.monotonic()
        deadline_ms = max(1, min(int(left * 1000), MAX_DEADLINE_MS))
        request = pending.request
        try:
            hello = Hello(pending.session, request.nonce, request.origin, deadline_ms)
            websocket.send(encode(hello))
            frame = websocket.recv(timeout=min(self.hello_timeout, left))
            card = _card(parse_agent_message(frame), pending.session)
        except TimeoutError:
            websocket.close(CLOSE_TIMED_OUT, "timeout")
            pending._deliver(None, RelayTimeoutError("The agent announced no card in time"))
            return None
        except ConnectionClosed as e:
            error = RelayClosedError(f"The agent closed the relay ({_close_code(e)})")
            pending._deliver(None, error)
            return None
        except (RelayProtocolError, RelayRefusedError) as e:
            refused = isinstance(e, RelayRefusedError)
            websocket.close(CLOSE_REFUSED if refused else CLOSE_PROTOCOL, "")
            pending._deliver(None, e)
            return None
        logger.info("Relay session %s: the agent announced a card", pending.session)
        connection = RelayConnection(
            websocket,
            card,
            deadline=pending.deadline,
            apdu_timeout=self.apdu_timeout,
            pin_timeout=self.pin_timeout,
        )
        with self._lock:
            self._open_connections = [c for c in self._open_connections if not c.closed]
            self._open_connections.append(connection)
        pending._deliver(connection, None)
        if pending.abandoned:
            connection.close(CLOSE_TIMED_OUT, "abandoned")
        return connection


class RelayServer:
    """The IAM's relay endpoint: a WebSocket server on a thread, serving :class:`RelaySessions`.

    :param host: the address to listen on.
    :param port: the port (``0``: any free one, see :attr:`port`).
    :param ssl: a server TLS context (``wss://``); ``None``: plain ``ws://``, for tests on
        127.0.0.1 only.
    :param apdu_timeout: seconds a :class:`RelayConnection` waits for each answer.
    :param pin_timeout: seconds it waits for the user's PIN.
    :param hello_timeout: seconds the server waits for the agent's card after its hello.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl: ssl_module.SSLContext | None = None,
        apdu_timeout: float = APDU_TIMEOUT,
        pin_timeout: float = PIN_TIMEOUT,
        hello_timeout: float = HELLO_TIMEOUT,
    ) -> None:
        self.sessions = RelaySessions(
            self.url,
            apdu_timeout=apdu_timeout,
            pin_timeout=pin_timeout,
            hello_timeout=hello_timeout,
        )
        self._scheme = "wss" if ssl is not None else "ws"
        self._server: Server = serve(
            self._handle,
            host,
            port,
            ssl=ssl,
            compression=None,
            max_size=MAX_MESSAGE,
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            process_request=self._check_path,
            server_header=None,
            open_timeout=HELLO_TIMEOUT,
            close_timeout=CLOSE_TIMEOUT,
            logger=WIRE_LOGGER,
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="mie-relay-server", daemon=True
        )
        self._thread.start()

    def __enter__(self) -> RelayServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def apdu_timeout(self) -> float:
        """Seconds a :class:`RelayConnection` waits for each answer."""
        return self.sessions.apdu_timeout

    @property
    def pin_timeout(self) -> float:
        """Seconds a :class:`RelayConnection` waits for the user's PIN."""
        return self.sessions.pin_timeout

    @property
    def hello_timeout(self) -> float:
        """Seconds the server waits for the agent's card after its hello."""
        return self.sessions.hello_timeout

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return str(self._server.socket.getsockname()[0])

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self._server.socket.getsockname()[1])

    def url(self, session: str) -> str:
        """:return: the URL the agent opens ``session`` at."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self._scheme}://{host}:{self.port}{RELAY_PATH}{check_session(session)}"

    def expect(self, request: AuthRequest, *, timeout: float = SESSION_TIMEOUT) -> PendingSession:
        """Open a session for ``request`` (see :meth:`RelaySessions.expect`).

        :param request: the authentication request (a fresh nonce: one session per nonce).
        :param timeout: seconds the whole session may last, connection included (at most 120).
        :return: the pending session; send its :attr:`~PendingSession.url` to the workstation.
        :raises ValueError: a session for this nonce exists, or the timeout is out of range.
        """
        return self.sessions.expect(request, timeout=timeout)

    def close(self) -> None:
        """Stop listening and end every session."""
        self.sessions.close()
        self._server.shutdown()
        self._thread.join(timeout=5)

    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        if "Origin" in request.headers:
            # A browser sends Origin on every WebSocket handshake, mie agent never does: a
            # cross-site page that learnt a session URL must not claim the session.
            return connection.respond(HTTPStatus.FORBIDDEN, "Not a relay agent\n")
        path = request.path
        if not path.startswith(RELAY_PATH) or len(path) != len(RELAY_PATH) + 32:
            return connection.respond(HTTPStatus.NOT_FOUND, "Not a relay session\n")
        return None

    def _handle(self, websocket: ServerConnection) -> None:
        session = websocket.request.path[len(RELAY_PATH) :] if websocket.request else ""
        self.sessions.serve(websocket, session)


def _card(message: AgentMessage, session: str) -> Card:
    if isinstance(message, Refused):
        raise RelayRefusedError(message.reason)
    if not isinstance(message, Card):
        raise RelayProtocolError(f"The agent answered the hello with {_describe(message)}")
    if not hmac.compare_digest(message.session, session):
        raise RelayProtocolError("The agent announced a card for another session")
    return message


def _describe(message: AgentMessage) -> str:
    names = {Card: "a card", Rapdu: "an answer", PinReply: "a PIN", Refused: "a refusal"}
    what = names.get(type(message), "a message")
    if isinstance(message, Rapdu):
        what += f" to APDU {message.seq}"
    return what


def _close_code(error: ConnectionClosed) -> str:
    received = error.rcvd
    if received is None:
        return "no close frame"
    if received.code == CLOSE_CARD_ERROR:
        return f"its card or reader failed: {received.reason}"
    return f"code {received.code}" + (f": {received.reason[:60]}" if received.reason else "")
