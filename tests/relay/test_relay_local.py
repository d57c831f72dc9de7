"""The relay end to end in process, over real WebSockets on 127.0.0.1: a RelayServer, the Agent
on a thread and an emulated badge (or a CPS card) behind a counting connection; hand-written
peers where a real one would not stall, vanish or misbehave."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.sync.server import ServerConnection

from mie.core.channel import CommMode
from mie.core.connection import Transport
from mie.core.errors import CardRemovedError, ErrorCode, NoCardError
from mie.desfire.session import DesfireSession
from mie.emulation.base import EmulatedConnection
from mie.emulation.desfire import ATR, EmulatedDesfire
from mie.emulation.registry import CardOptions, build_card
from mie.relay.agent import Agent, AgentTimeouts
from mie.relay.errors import (
    RelayClosedError,
    RelayProtocolError,
    RelayRefusedError,
    RelayTimeoutError,
)
from mie.relay.iam import RelayConnection, RelayPin, RelayServer
from mie.relay.protocol import (
    Apdu,
    Card,
    Hello,
    PinRequest,
    encode,
    parse_agent_message,
    parse_iam_message,
    session_id,
)
from mie.request import AuthRequest, StaticPin, UserVerification
from mie.result import AuthResult, ErrorInfo
from tests.relay.peers import (
    AID,
    APP_KEYS,
    ORIGIN,
    RECORD,
    UID,
    AgentThread,
    Reader,
    badge_state,
    counter_rng,
    fake_iam,
    raw_agent,
    start_agent,
)

APDU_TIMEOUT = 1.0
# A wait that runs out raises within its timeout plus this (plan §3.2).
SLACK = 0.5
VERIFY = bytes.fromhex("0020000108313233340000000000")[:-1]
CHANGE_KEY = bytes.fromhex("90c4000002001100")
PROBE = bytes.fromhex("9060000000")


@pytest.fixture
def server() -> Iterator[RelayServer]:
    with RelayServer(apdu_timeout=APDU_TIMEOUT, pin_timeout=APDU_TIMEOUT, hello_timeout=2.0) as s:
        yield s


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as entered:
        yield entered


def request() -> AuthRequest:
    return AuthRequest.new(ORIGIN)


def badge_reader(seed: int = 7) -> Reader:
    return Reader(EmulatedDesfire(badge_state(), rng=counter_rng(seed)))


def identity_read(session: DesfireSession) -> bytes:
    session.get_version()
    session.select_application(AID)
    session.authenticate_ev2_first(1, APP_KEYS[1])
    assert session.get_card_uid() == UID
    session.authenticate_ev2_non_first(2, APP_KEYS[2])
    return session.read_data(1, mode=CommMode.FULL)


def opened(
    server: RelayServer, reader: Reader, **kwargs: object
) -> tuple[RelayConnection, AgentThread]:
    pending = server.expect(request(), timeout=20)
    agent = start_agent(pending.url, reader, **kwargs)  # type: ignore[arg-type]
    return pending.connection(5), agent


def done(connection: RelayConnection) -> None:
    connection.finish(AuthResult(False, ErrorInfo(ErrorCode.CARD_ERROR, "test over")))


# --- a session through the relay ------------------------------------------------------------


def test_a_desfire_session_runs_through_the_relay_as_it_does_locally(server: RelayServer) -> None:
    local = badge_reader()
    connection = local.open(None)
    assert identity_read(DesfireSession(connection, rng=counter_rng(100))) == RECORD

    relayed = badge_reader()
    relay, agent = opened(server, relayed)
    assert relay.atr == ATR and relay.transport is Transport.CONTACTLESS
    assert identity_read(DesfireSession(relay, rng=counter_rng(100))) == RECORD
    done(relay)
    agent.join()
    assert agent.error is None and agent.result is not None
    assert agent.result.error == ErrorInfo(ErrorCode.CARD_ERROR, "test over")
    # The agent's own GetVersion first, then byte for byte what the local session sent.
    assert relayed.sent == [PROBE, *local.sent]
    assert relayed.connection is not None and relayed.connection.closed


def test_the_agent_holds_one_card_transaction_for_the_whole_session(server: RelayServer) -> None:
    reader = badge_reader()
    depth: list[int] = []

    class Watched(EmulatedConnection):
        def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
            depth.append(self._depth)
            return super().send_and_receive(apdu)

    reader.open = lambda name: Watched(reader.card)  # type: ignore[method-assign,assignment]
    relay, agent = opened(server, reader)
    identity_read(DesfireSession(relay))
    done(relay)
    agent.join()
    assert depth and set(depth) == {1}


def test_the_pin_prompt_reaches_the_user_through_the_relay(server: RelayServer) -> None:
    pin = StaticPin("4711")
    relay, agent = opened(server, badge_reader(), pin=pin)
    assert RelayPin(relay).request_pin(3) == "4711"
    assert pin.asked == [3]
    assert identity_read(DesfireSession(relay)) == RECORD
    done(relay)
    assert agent.join().error is None


def test_the_agent_asks_the_user_for_one_pin_per_session(server: RelayServer) -> None:
    # The verifier asks once per login; an IAM asking again (after a wrong PIN, or to collect a
    # second guess) is refused: the agent never prompts again on the IAM's say-so.
    pin = StaticPin("4711")
    relay, agent = opened(server, badge_reader(), pin=pin)
    assert RelayPin(relay).request_pin(3) == "4711"
    with pytest.raises(RelayRefusedError, match="one PIN per session"):
        RelayPin(relay).request_pin(2)
    assert pin.asked == [3]
    assert isinstance(agent.join().error, RelayRefusedError)


def test_an_agent_without_a_prompt_refuses_the_pin_request(server: RelayServer) -> None:
    relay, agent = opened(server, badge_reader())
    with pytest.raises(RelayRefusedError, match="no PIN prompt"):
        relay.request_pin(None)
    assert isinstance(agent.join().error, RelayRefusedError)


def test_a_prompt_that_fails_ends_the_session(server: RelayServer) -> None:
    class Cancelled(UserVerification):
        def request_pin(self, tries_left: int | None) -> str:
            raise KeyboardInterrupt

    relay, agent = opened(server, badge_reader(), pin=Cancelled())
    with pytest.raises(RelayRefusedError, match="the user gave no PIN"):
        relay.request_pin(None)
    assert isinstance(agent.join().error, KeyboardInterrupt)


# --- refusals before any card I/O -----------------------------------------------------------


@pytest.mark.parametrize(
    ("apdu", "reason"),
    [
        (VERIFY, "VERIFY (INS 20) is never relayed"),
        (CHANGE_KEY, "ChangeKey (C4) writes to the badge"),
        (bytes.fromhex("903d0000080100000001000041 00".replace(" ", "")), "WriteData (3D)"),
        (bytes.fromhex("90af000000"), "without a pending 91AF"),
        (bytes.fromhex("00a4040007a000000004000000"), "CLA 00"),
    ],
    ids=["VERIFY", "ChangeKey", "WriteData", "AF first", "ISO SELECT"],
)
def test_a_command_outside_the_allow_list_never_reaches_the_card(
    server: RelayServer, apdu: bytes, reason: str
) -> None:
    reader = badge_reader()
    relay, agent = opened(server, reader)
    with pytest.raises(RelayRefusedError, match=re.escape(reason)) as caught:
        relay.send_and_receive(apdu)
    assert caught.value.code is ErrorCode.RELAY_REFUSED
    assert reader.sent == [PROBE]
    assert isinstance(agent.join().error, RelayRefusedError)
    # The refusal ended the session.
    assert relay.closed
    with pytest.raises(RelayClosedError):
        relay.send_and_receive(PROBE)


def test_a_write_in_the_middle_of_a_session_is_refused_and_the_badge_is_unchanged(
    server: RelayServer,
) -> None:
    reader = badge_reader()
    before = badge_state()
    relay, agent = opened(server, reader)
    session = DesfireSession(relay)
    session.select_application(AID)
    session.authenticate_ev2_first(0, APP_KEYS[0])
    sent = len(reader.sent)
    with pytest.raises(RelayRefusedError, match="WriteData"):
        session.write_data(1, b"\x00" * 16, mode=CommMode.FULL)
    assert len(reader.sent) == sent
    assert isinstance(reader.card, EmulatedDesfire) and reader.card.state == before
    agent.join()


def test_a_cps_card_in_the_reader_is_refused_after_one_command(
    server: RelayServer, test_pki_dir: Path
) -> None:
    reader = Reader(build_card("cps3", CardOptions(pki_dir=test_pki_dir)))
    pending = server.expect(request(), timeout=20)
    agent = start_agent(pending.url, reader)
    with pytest.raises(RelayRefusedError, match="not a DESFire badge"):
        pending.connection(5)
    assert reader.sent == [PROBE]
    assert isinstance(agent.join().error, RelayRefusedError)


# --- binding: session, nonce, origin --------------------------------------------------------


def test_an_agent_sent_to_an_unexpected_session_is_refused(server: RelayServer) -> None:
    reader = badge_reader()
    url = server.url(session_id(b"a nonce the IAM never issued"))
    agent = start_agent(url, reader).join()
    assert isinstance(agent.error, RelayRefusedError)
    assert "does not expect this session" in str(agent.error)
    assert reader.opened == []


def test_a_session_is_used_once(server: RelayServer) -> None:
    pending = server.expect(request(), timeout=20)
    first = start_agent(pending.url, badge_reader())
    relay = pending.connection(5)
    second_reader = badge_reader()
    second = start_agent(pending.url, second_reader).join()
    assert isinstance(second.error, RelayRefusedError) and second_reader.opened == []
    done(relay)
    first.join()
    third = start_agent(pending.url, second_reader).join()
    assert isinstance(third.error, RelayRefusedError) and second_reader.opened == []


def test_a_nonce_opens_one_session(server: RelayServer) -> None:
    auth = request()
    server.expect(auth)
    with pytest.raises(ValueError, match="a nonce is used once"):
        server.expect(auth)


def test_a_hello_for_another_origin_is_refused_before_the_card_is_opened(
    server: RelayServer,
) -> None:
    reader = badge_reader()
    pending = server.expect(request(), timeout=20)
    agent = start_agent(pending.url, reader, origin="https://rogue.example")
    with pytest.raises(RelayRefusedError, match="hello for another origin"):
        pending.connection(5)
    assert isinstance(agent.join().error, RelayRefusedError)
    assert reader.opened == []


def test_a_hello_whose_nonce_is_not_the_sessions_is_refused() -> None:
    nonce, other = bytes(32), bytes([1]) * 32
    seen: list[object] = []

    def iam(ws: ServerConnection) -> None:
        # The URL's session is that of `other`; the hello claims it but carries `nonce`.
        ws.send(encode(Hello(session_id(other), nonce, ORIGIN, 5000)))
        seen.append(parse_agent_message(ws.recv(timeout=5)))

    reader = badge_reader()
    with fake_iam(iam) as base:
        agent = start_agent(f"{base}/relay/{session_id(other)}", reader).join()
    assert isinstance(agent.error, RelayRefusedError)
    assert "hello for another session or nonce" in str(agent.error)
    assert reader.opened == []
    assert len(seen) == 1 and "another session" in getattr(seen[0], "reason", "")


def test_a_hello_for_another_session_is_refused() -> None:
    nonce = bytes(32)

    def iam(ws: ServerConnection) -> None:
        ws.send(encode(Hello(session_id(nonce), nonce, ORIGIN, 5000)))
        ws.recv(timeout=5)

    reader = badge_reader()
    with fake_iam(iam) as base:
        agent = start_agent(f"{base}/relay/{session_id(b'x' * 32)}", reader).join()
    assert isinstance(agent.error, RelayRefusedError) and reader.opened == []


def test_apdus_out_of_order_end_the_session() -> None:
    nonce = bytes(32)
    session = session_id(nonce)

    def iam(ws: ServerConnection) -> None:
        ws.send(encode(Hello(session, nonce, ORIGIN, 5000)))
        assert isinstance(parse_agent_message(ws.recv(timeout=5)), Card)
        ws.send(encode(Apdu(2, PROBE)))
        ws.recv(timeout=5)

    reader = badge_reader()
    with fake_iam(iam) as base:
        agent = start_agent(f"{base}/relay/{session}", reader).join()
    assert isinstance(agent.error, RelayProtocolError)
    assert reader.sent == [PROBE]


# --- deadlines --------------------------------------------------------------------------------


def test_a_stalled_agent_times_out_within_the_apdu_timeout(
    server: RelayServer, stack: ExitStack
) -> None:
    pending = server.expect(request(), timeout=20)
    peer = stack.enter_context(raw_agent(pending.url))
    hello = parse_iam_message(peer.recv(timeout=5))
    assert isinstance(hello, Hello) and hello.origin == ORIGIN
    peer.send(encode(Card(hello.session, ATR, Transport.CONTACTLESS, "stalled")))
    relay = pending.connection(5)
    start = time.monotonic()
    with pytest.raises(RelayTimeoutError, match="no answer to APDU 1"):
        relay.send_and_receive(PROBE)
    elapsed = time.monotonic() - start
    assert APDU_TIMEOUT <= elapsed <= APDU_TIMEOUT + SLACK
    peer.close()


def test_an_agent_that_vanishes_mid_session_is_a_closed_relay(
    server: RelayServer, stack: ExitStack
) -> None:
    pending = server.expect(request(), timeout=20)
    peer = stack.enter_context(raw_agent(pending.url))
    hello = parse_iam_message(peer.recv(timeout=5))
    assert isinstance(hello, Hello)
    peer.send(encode(Card(hello.session, ATR, Transport.CONTACTLESS, "killed")))
    relay = pending.connection(5)

    def kill() -> None:
        peer.recv(timeout=5)  # the first APDU, then the process "dies": no close frame
        peer.socket.shutdown(socket.SHUT_RDWR)
        peer.socket.close()

    threading.Thread(target=kill, daemon=True).start()
    start = time.monotonic()
    with pytest.raises(RelayClosedError, match="no close frame"):
        relay.send_and_receive(PROBE)
    assert time.monotonic() - start <= APDU_TIMEOUT


def test_a_stalled_pin_is_a_timeout_on_both_sides(server: RelayServer) -> None:
    class Asleep(UserVerification):
        def request_pin(self, tries_left: int | None) -> str:
            time.sleep(30)
            return "never"

    timeouts = AgentTimeouts(pin=0.5)
    relay, agent = opened(server, badge_reader(), pin=Asleep(), timeouts=timeouts)
    start = time.monotonic()
    with pytest.raises(RelayRefusedError, match="no PIN typed in time"):
        relay.request_pin(2)
    assert time.monotonic() - start <= 0.5 + SLACK
    assert isinstance(agent.join().error, RelayTimeoutError)


def test_the_iam_waits_for_a_pin_no_longer_than_its_timeout(
    server: RelayServer, stack: ExitStack
) -> None:
    pending = server.expect(request(), timeout=20)
    peer = stack.enter_context(raw_agent(pending.url))
    hello = parse_iam_message(peer.recv(timeout=5))
    assert isinstance(hello, Hello)
    peer.send(encode(Card(hello.session, ATR, Transport.CONTACTLESS, "silent")))
    relay = pending.connection(5)
    start = time.monotonic()
    with pytest.raises(RelayTimeoutError, match="no PIN within"):
        relay.request_pin(None)
    assert time.monotonic() - start <= APDU_TIMEOUT + SLACK
    assert isinstance(parse_iam_message(peer.recv(timeout=1)), PinRequest)
    peer.close()


def test_no_agent_in_time_and_a_late_one_is_refused(server: RelayServer) -> None:
    pending = server.expect(request(), timeout=20)
    start = time.monotonic()
    with pytest.raises(RelayTimeoutError, match="No agent opened relay session"):
        pending.connection(0.5)
    assert time.monotonic() - start <= 0.5 + SLACK
    late = start_agent(pending.url, badge_reader()).join()
    assert isinstance(late.error, RelayRefusedError)


def test_the_session_deadline_bounds_every_wait(server: RelayServer, stack: ExitStack) -> None:
    pending = server.expect(request(), timeout=1.5)
    peer = stack.enter_context(raw_agent(pending.url))
    hello = parse_iam_message(peer.recv(timeout=5))
    assert isinstance(hello, Hello) and 0 < hello.deadline_ms <= 1500
    peer.send(encode(Card(hello.session, ATR, Transport.CONTACTLESS, "slow")))
    relay = pending.connection(5)
    relay.apdu_timeout = 60
    start = time.monotonic()
    with pytest.raises(RelayTimeoutError):
        relay.send_and_receive(PROBE)
    assert time.monotonic() - start <= 1.5 + SLACK
    peer.close()


def test_an_agent_that_hears_nothing_times_out() -> None:
    nonce = bytes(32)
    session = session_id(nonce)
    release = threading.Event()

    def iam(ws: ServerConnection) -> None:
        ws.send(encode(Hello(session, nonce, ORIGIN, 60_000)))
        ws.recv(timeout=5)  # the card
        release.wait(10)

    timeouts = AgentTimeouts(idle=0.5)
    with fake_iam(iam) as base:
        start = time.monotonic()
        agent = start_agent(f"{base}/relay/{session}", badge_reader(), timeouts=timeouts)
        agent.join()
        elapsed = time.monotonic() - start
        release.set()
    assert isinstance(agent.error, RelayTimeoutError)
    assert elapsed <= 0.5 + SLACK + 0.5  # the idle wait, plus connecting


def test_the_hellos_deadline_bounds_the_agent() -> None:
    nonce = bytes(32)
    session = session_id(nonce)
    release = threading.Event()

    def iam(ws: ServerConnection) -> None:
        ws.send(encode(Hello(session, nonce, ORIGIN, 700)))
        ws.recv(timeout=5)
        release.wait(10)

    with fake_iam(iam) as base:
        start = time.monotonic()
        agent = start_agent(f"{base}/relay/{session}", badge_reader()).join()
        elapsed = time.monotonic() - start
        release.set()
    assert isinstance(agent.error, RelayTimeoutError)
    assert elapsed <= 0.7 + SLACK + 0.5


def test_an_iam_that_vanishes_is_a_closed_relay() -> None:
    nonce = bytes(32)
    session = session_id(nonce)

    def iam(ws: ServerConnection) -> None:
        ws.send(encode(Hello(session, nonce, ORIGIN, 60_000)))
        ws.recv(timeout=5)
        ws.socket.shutdown(socket.SHUT_RDWR)
        ws.socket.close()

    with fake_iam(iam) as base:
        agent = start_agent(f"{base}/relay/{session}", badge_reader()).join()
    assert isinstance(agent.error, RelayClosedError)


def test_an_iam_that_never_answers_the_handshake_times_out() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        start = time.monotonic()
        agent = start_agent(
            f"ws://127.0.0.1:{port}/relay/{session_id(bytes(32))}",
            badge_reader(),
            timeouts=AgentTimeouts(connect=0.5),
        ).join()
        elapsed = time.monotonic() - start
    finally:
        listener.close()
    assert isinstance(agent.error, RelayTimeoutError)
    assert elapsed <= 0.5 + SLACK


def test_an_unreachable_iam_is_a_closed_relay() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    agent = start_agent(f"ws://127.0.0.1:{port}/relay/{session_id(bytes(32))}", badge_reader())
    assert isinstance(agent.join().error, RelayClosedError)


def test_a_path_that_is_no_session_is_refused_at_the_handshake(server: RelayServer) -> None:
    agent = start_agent(
        f"ws://127.0.0.1:{server.port}/iam/relay/{session_id(bytes(32))}", badge_reader()
    ).join()
    assert isinstance(agent.error, RelayRefusedError) and "HTTP 404" in str(agent.error)


# --- what must not leak -----------------------------------------------------------------------


def test_the_pin_reaches_no_log_even_at_debug(
    server: RelayServer, caplog: pytest.LogCaptureFixture
) -> None:
    # websockets' DEBUG lines quote every frame: both peers hand it a logger held at INFO.
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="mie")
    relay, agent = opened(server, badge_reader(), pin=StaticPin("4711"))
    assert RelayPin(relay).request_pin(3) == "4711"
    identity_read(DesfireSession(relay))
    done(relay)
    agent.join()
    assert "mie.relay" in caplog.text and "4711" not in caplog.text


@pytest.mark.parametrize(
    "host", ["iam.example", "10.0.0.1", "[2001:db8::1]", "127.0.0.1.example", "localhost.example"]
)
def test_a_ws_url_to_another_machine_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match=r"must name this machine \(tests\); use wss://"):
        start_agent(f"ws://{host}:8443/relay/{session_id(bytes(32))}", badge_reader())


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "localhost", "[::1]"])
def test_a_ws_url_to_this_machine_is_taken(host: str) -> None:
    agent = start_agent(f"ws://{host}:9/relay/{session_id(bytes(32))}", badge_reader()).join()
    assert isinstance(agent.error, RelayClosedError)


# --- wss:// ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A server context with a self-signed certificate for 127.0.0.1; :return: it and the
    certificate file a client trusts."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mie relay test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file


def test_a_session_runs_over_wss(tls: tuple[ssl.SSLContext, Path]) -> None:
    context, cert_file = tls
    with RelayServer(ssl=context) as server:
        pending = server.expect(request(), timeout=20)
        assert pending.url.startswith("wss://127.0.0.1:")
        reader = badge_reader()
        client = ssl.create_default_context(cafile=cert_file)
        agent = AgentThread(
            Agent(pending.url, origin=ORIGIN, open_connection=reader.open, ssl=client)
        )
        relay = pending.connection(5)
        assert identity_read(DesfireSession(relay)) == RECORD
        done(relay)
        assert agent.join().error is None


def test_an_agent_that_does_not_trust_the_iams_certificate_opens_nothing(
    tls: tuple[ssl.SSLContext, Path],
) -> None:
    context, _ = tls
    with RelayServer(ssl=context) as server:
        pending = server.expect(request(), timeout=20)
        reader = badge_reader()
        agent = start_agent(pending.url, reader).join()
    assert isinstance(agent.error, RelayClosedError)
    assert "certificate verify failed" in str(agent.error)
    assert reader.opened == []


def test_a_card_removed_mid_session_is_told_to_the_iam(server: RelayServer) -> None:
    reader = badge_reader()

    class Removed(EmulatedConnection):
        def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
            if apdu[1] == 0x71:  # the badge leaves as the IAM starts authenticating
                raise CardRemovedError("The card left the reader")
            return super().send_and_receive(apdu)

    reader.open = lambda name: Removed(reader.card)  # type: ignore[method-assign,assignment]
    relay, agent = opened(server, reader)
    session = DesfireSession(relay)
    session.select_application(AID)
    with pytest.raises(RelayClosedError, match="its card or reader failed: card_removed: The card"):
        session.authenticate_ev2_first(1, APP_KEYS[1])
    assert isinstance(agent.join().error, CardRemovedError)


def test_no_card_in_the_reader_is_told_to_the_iam(server: RelayServer) -> None:
    reader = badge_reader()

    def empty(name: str | None) -> EmulatedConnection:
        raise NoCardError("No card in the reader")

    reader.open = empty  # type: ignore[method-assign,assignment]
    pending = server.expect(request(), timeout=20)
    agent = start_agent(pending.url, reader)
    with pytest.raises(RelayClosedError, match="its card or reader failed: no_card"):
        pending.connection(5)
    assert isinstance(agent.join().error, NoCardError)


def test_a_browser_handshake_is_refused_and_leaves_the_session_to_the_agent(
    server: RelayServer,
) -> None:
    # A page in a browser sends an Origin header on every WebSocket handshake; mie agent never
    # does. A cross-site page that learnt the session URL must not claim it (nor hear the nonce).
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect
    from websockets.typing import Origin, Subprotocol

    pending = server.expect(request(), timeout=20)
    with pytest.raises(InvalidStatus) as refused:
        connect(
            pending.url,
            origin=Origin("https://evil.example"),
            subprotocols=[Subprotocol("mie-relay.1")],
            proxy=None,
            open_timeout=5,
        )
    assert refused.value.response.status_code == 403
    reader = badge_reader()
    agent = start_agent(pending.url, reader)
    relay = pending.connection(5)
    assert DesfireSession(relay).get_version().hw.major >= 0
    done(relay)
    assert agent.join().error is None


def test_an_agent_that_hears_nothing_closes_with_the_timeout_code() -> None:
    # 4408, as the IAM closes on a wait that ran out: not 1000, which reads as a normal end.
    from websockets.exceptions import ConnectionClosed

    nonce = bytes(32)
    session = session_id(nonce)
    codes: list[int | None] = []

    def iam(ws: ServerConnection) -> None:
        ws.send(encode(Hello(session, nonce, ORIGIN, 60_000)))
        ws.recv(timeout=5)  # the card
        try:
            ws.recv(timeout=5)
        except ConnectionClosed as e:
            codes.append(e.rcvd.code if e.rcvd is not None else None)

    with fake_iam(iam) as base:
        agent = start_agent(
            f"{base}/relay/{session}", badge_reader(), timeouts=AgentTimeouts(idle=0.5)
        ).join()
        deadline = time.monotonic() + 5
        while not codes and time.monotonic() < deadline:
            time.sleep(0.05)
    assert isinstance(agent.error, RelayTimeoutError)
    assert codes == [4408]
