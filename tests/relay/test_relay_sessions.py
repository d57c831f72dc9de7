"""RelaySessions on a scripted socket (the transport edge): the session book and the hello/card
exchange that RelayServer and ``mie serve``'s ASGI route share."""

from __future__ import annotations

import queue
import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from mie.core.connection import Transport
from mie.relay.errors import (
    RelayClosedError,
    RelayProtocolError,
    RelayRefusedError,
    RelayTimeoutError,
)
from mie.relay.iam import PendingSession, RelayConnection, RelaySessions, RelaySocket
from mie.relay.protocol import (
    CLOSE_NORMAL,
    CLOSE_PROTOCOL,
    CLOSE_REFUSED,
    CLOSE_TIMED_OUT,
    CLOSE_UNKNOWN_SESSION,
    Apdu,
    Card,
    Hello,
    Rapdu,
    Refused,
    encode,
    parse_iam_message,
    session_id,
)
from mie.request import AuthRequest

ORIGIN = "https://iam.example"
NONCE = bytes(range(32))
SESSION = session_id(NONCE)
GONE = object()


class ScriptedSocket:
    """A RelaySocket whose agent frames come from a queue: a str is a frame, GONE a disconnect,
    nothing a timeout."""

    def __init__(self, *frames: object) -> None:
        self.incoming: queue.Queue[object] = queue.Queue()
        for frame in frames:
            self.incoming.put(frame)
        self.sent: list[str] = []
        self.closes: list[tuple[int, str]] = []

    def send(self, message: str) -> None:
        if self.closes:
            raise ConnectionClosed(None, Close(*self.closes[0]))
        self.sent.append(message)

    def recv(self, timeout: float) -> str | bytes:
        try:
            frame = self.incoming.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError from None
        if frame is GONE:
            raise ConnectionClosed(Close(1001, "going away"), None)
        assert isinstance(frame, str)
        return frame

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        self.closes.append((code, reason))


def card(session: str = SESSION) -> str:
    return encode(Card(session, None, Transport.CONTACTLESS, "Reader 0"))


def sessions(**kwargs: float) -> RelaySessions:
    return RelaySessions(lambda s: f"ws://relay.test/v1/relay/{s}", **kwargs)


def expect(book: RelaySessions, *, timeout: float = 30.0, context: object = None) -> PendingSession:
    return book.expect(AuthRequest(NONCE, ORIGIN), timeout=timeout, context=context)


def test_a_scripted_socket_is_a_relay_socket() -> None:
    socket: RelaySocket = ScriptedSocket()  # mypy checks the protocol's shape here
    assert socket is not None


def test_expect_names_the_session_by_its_nonce_and_keeps_the_context() -> None:
    book = sessions()
    ticket = object()
    pending = expect(book, context=ticket)
    assert pending.session == SESSION
    assert pending.url == f"ws://relay.test/v1/relay/{SESSION}"
    assert pending.context is ticket
    assert book.find(SESSION) is pending and len(book) == 1
    with pytest.raises(ValueError, match="used once"):
        expect(book)


def test_a_url_given_to_expect_wins_and_no_url_is_refused() -> None:
    book = RelaySessions()
    with pytest.raises(ValueError, match="URL"):
        expect(book)
    pending = book.expect(AuthRequest(NONCE, ORIGIN), url="wss://node-a.example/v1/relay/x")
    assert pending.url == "wss://node-a.example/v1/relay/x"


@pytest.mark.parametrize("timeout", [0.0, -1.0, 120.5])
def test_a_session_timeout_out_of_range_is_refused(timeout: float) -> None:
    with pytest.raises(ValueError, match="0 to 120"):
        expect(sessions(), timeout=timeout)


def test_a_session_is_claimed_once_and_forgotten_on_request() -> None:
    book = sessions()
    pending = expect(book)
    assert book.claim("0" * 32) is None
    assert book.claim(SESSION) is pending
    assert book.claim(SESSION) is None
    assert book.find(SESSION) is pending  # claimed, still kept for its result
    book.forget(pending)
    assert book.find(SESSION) is None and len(book) == 0


def test_a_session_past_its_deadline_is_not_claimed_then_forgotten() -> None:
    book = sessions()
    expect(book, timeout=0.05)
    time.sleep(0.1)
    assert book.claim(SESSION) is None
    time.sleep(1.0)
    assert book.find(SESSION) is None


def test_serve_refuses_an_unknown_session_with_its_close_code() -> None:
    socket = ScriptedSocket()
    assert sessions().serve(socket, SESSION) is None
    assert socket.closes == [(CLOSE_UNKNOWN_SESSION, "unknown, used or expired session")]
    assert socket.sent == []


def test_serve_runs_the_iam_on_the_agents_thread_and_closes_after() -> None:
    book = sessions(apdu_timeout=1.0)
    pending = expect(book)
    socket = ScriptedSocket(card(), encode(Rapdu(1, bytes.fromhex("019000"))))
    seen: list[tuple[bytes, int]] = []

    def run(claimed: PendingSession, connection: RelayConnection) -> None:
        assert claimed is pending and connection.session == SESSION
        seen.append(connection.send_and_receive(bytes.fromhex("9060000000")))

    assert book.serve(socket, SESSION, run) is pending
    hello = parse_iam_message(socket.sent[0])
    assert isinstance(hello, Hello) and hello.nonce == NONCE and hello.origin == ORIGIN
    assert 29_000 < hello.deadline_ms <= 30_000
    assert parse_iam_message(socket.sent[1]) == Apdu(1, bytes.fromhex("9060000000"))
    assert seen == [(b"\x01", 0x9000)]
    assert socket.closes == [(CLOSE_NORMAL, "")]


def test_serve_closes_the_socket_when_the_iam_fails() -> None:
    book = sessions()
    expect(book)
    socket = ScriptedSocket(card())

    def run(claimed: PendingSession, connection: RelayConnection) -> None:
        raise RuntimeError("the IAM broke")

    with pytest.raises(RuntimeError, match="the IAM broke"):
        book.serve(socket, SESSION, run)
    assert socket.closes == [(CLOSE_NORMAL, "")]


def test_without_run_the_connection_goes_to_the_iams_thread() -> None:
    book = sessions()
    pending = expect(book)
    socket = ScriptedSocket(card())
    thread = threading.Thread(target=book.serve, args=(socket, SESSION), daemon=True)
    thread.start()
    connection = pending.connection(5)
    assert connection.reader == "Reader 0" and connection.transport is Transport.CONTACTLESS
    connection.close(CLOSE_NORMAL, "done")
    thread.join(5)
    assert not thread.is_alive() and socket.closes == [(CLOSE_NORMAL, "done")]


@pytest.mark.parametrize(
    ("frames", "error", "close"),
    [
        ([GONE], RelayClosedError, None),
        ([], RelayTimeoutError, CLOSE_TIMED_OUT),
        (["not json"], RelayProtocolError, CLOSE_PROTOCOL),
        ([card("f" * 32)], RelayProtocolError, CLOSE_PROTOCOL),
        ([encode(Refused(None, "not a DESFire badge"))], RelayRefusedError, CLOSE_REFUSED),
    ],
)
def test_an_agent_that_announces_no_card_is_the_sessions_error(
    frames: list[object], error: type[Exception], close: int | None
) -> None:
    book = sessions(hello_timeout=0.2)
    pending = expect(book)
    socket = ScriptedSocket(*frames)
    ran: list[object] = []
    assert book.serve(socket, SESSION, lambda p, c: ran.append(c)) is pending
    assert ran == []
    assert [code for code, _ in socket.closes] == ([] if close is None else [close])
    with pytest.raises(error):
        pending.connection(0)


def test_close_ends_every_open_session() -> None:
    book = sessions()
    pending = expect(book)
    socket = ScriptedSocket(card())
    thread = threading.Thread(target=book.serve, args=(socket, SESSION), daemon=True)
    thread.start()
    connection = pending.connection(5)
    book.close()
    thread.join(5)
    assert connection.closed and socket.closes == [(CLOSE_NORMAL, "server closing")]


def test_a_session_lingers_after_its_deadline_for_its_outcome() -> None:
    book = RelaySessions(lambda s: s, linger=30.0)
    pending = expect(book, timeout=0.05)
    time.sleep(0.1)
    assert book.claim(SESSION) is None  # too late for an agent
    assert book.find(SESSION) is pending  # still there for the IAM's poll
