"""The relay endpoints of ``mie serve`` (mie.service.relay) over real HTTP and WebSockets on
127.0.0.1: uvicorn on a thread, mie's Agent (or a hand-driven websockets client) with an
emulated DESFire badge in process, and a minimal Starlette app holding the three handlers over
a core whose nonce book is a dict (the service's VerifyCore is tested with the app)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.harness import require_module

for _name in ("starlette", "uvicorn", "httpx"):
    require_module(_name, "the service tests need mie[service] and httpx (scripts/setup.sh)")

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.routing import Route, WebSocketRoute  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402
from websockets.typing import Origin, Subprotocol  # noqa: E402

from mie.core.connection import Transport  # noqa: E402
from mie.core.errors import MieError  # noqa: E402
from mie.core.log import TRAFFIC  # noqa: E402
from mie.desfire.record import IdentityRecord  # noqa: E402
from mie.desfire.verify import BadgeVerifier  # noqa: E402
from mie.policy import AssuranceLevel  # noqa: E402
from mie.relay.protocol import (  # noqa: E402
    CLOSE_PROTOCOL,
    CLOSE_UNKNOWN_SESSION,
    SUBPROTOCOL,
    Card,
    Hello,
    encode,
    parse_iam_message,
)
from mie.request import StaticPin  # noqa: E402
from mie.result import AuthResult  # noqa: E402
from mie.service import relay as service_relay  # noqa: E402
from mie.service.callers import Caller  # noqa: E402
from mie.service.core import VerifyCore  # noqa: E402
from mie.service.errors import error_response, status_of  # noqa: E402
from mie.store.errors import NonceUnknownError  # noqa: E402
from mie.store.secondfactor import Argon2Parameters, SecondFactor  # noqa: E402
from mie.store.sqlite import SqliteStore  # noqa: E402
from tests.desfire.badges import (  # noqa: E402
    KEYS,
    ORIGIN,
    RPPS,
    UID,
    badge,
    badge_state,
    config,
    counter_rng,
    record,
)
from tests.relay.peers import Reader, raw_agent, start_agent  # noqa: E402

WEAK = Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1, allow_weak=True)
PIN = "739146"
HEADERS = {"Mie-Session": "login-1", "Content-Type": "application/json"}


@dataclass(frozen=True)
class Challenge:
    nonce: bytes
    origin: str
    expires_at: float


@dataclass(frozen=True)
class Outcome:
    result: AuthResult
    status: int

    def to_json(self) -> dict[str, Any]:
        return {**self.result.to_json(), "psc_claims": None, "audit": None}


@dataclass
class NonceCore:
    """The core's nonce steps on a dict (issue, consume first-use-valid-or-not, purpose)."""

    ctx: Any
    nonces: dict[bytes, tuple[bytes | None, str]] = field(default_factory=dict)
    consumed: list[bytes] = field(default_factory=list)
    finished: list[tuple[str, AuthResult]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(
        self, caller: Caller, purpose: str, context: Mapping[str, Any] | None = None
    ) -> Challenge:
        nonce = hashlib.sha256(str(time.perf_counter_ns()).encode()).digest()
        with self.lock:
            self.nonces[nonce] = (caller.binding, purpose)
        return Challenge(nonce, ORIGIN, time.time() + 300)

    def consume(self, nonce: bytes, caller: Caller, purposes: Sequence[str]) -> dict[str, Any]:
        with self.lock:
            entry = self.nonces.pop(nonce, None)
            self.consumed.append(nonce)
        if entry is None or entry[0] != caller.binding or entry[1] not in purposes:
            raise NonceUnknownError()
        return {"purpose": entry[1]}

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
        self.finished.append((event, result))
        status = 200 if result.valid else status_of(result.error.code if result.error else "")
        return Outcome(result, status)


def the_services_core_is_a_relay_core(core: VerifyCore) -> service_relay.RelayCore:
    """mypy checks here that VerifyCore has what mie.service.relay calls (RelayCore)."""
    return core


def the_stub_is_a_relay_core(core: NonceCore) -> service_relay.RelayCore:
    return core


class Service:
    """uvicorn serving the relay routes on 127.0.0.1, on a thread."""

    def __init__(
        self,
        badges: BadgeVerifier | None,
        session_timeout: int = 30,
        ws_max_size: int = 16 * 1024,
    ) -> None:
        relay = SimpleNamespace(public_url=None, session_timeout=session_timeout)
        cfg = SimpleNamespace(clients=(), limits=SimpleNamespace(body_bytes=16384), relay=relay)
        self.ctx = SimpleNamespace(config=cfg, relay=None, badges=badges)
        self.core = NonceCore(self.ctx)
        app = Starlette(
            routes=[
                Route("/v1/relay/sessions", service_relay.relay_session, methods=["POST"]),
                Route("/v1/relay/sessions/{session}", service_relay.relay_result, methods=["GET"]),
                WebSocketRoute("/v1/relay/{session}", service_relay.relay_socket),
            ],
            exception_handlers={MieError: self._error},
        )
        app.state.mie, app.state.core = self.ctx, self.core
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                ws="websockets-sansio",
                ws_max_size=ws_max_size,
                ws_per_message_deflate=False,
                lifespan="off",
                log_config=None,
                access_log=False,
            )
        )
        # uvicorn's Config renames level 5 "TRACE"; give it back its mie name, as
        # mie.service.app.uvicorn_config does (the other tests read the records' level names).
        logging.addLevelName(TRAFFIC, "TRAFFIC")
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=40)

    @staticmethod
    async def _error(request: Any, exc: Exception) -> Any:
        assert isinstance(exc, MieError)
        return error_response(exc)

    def open_session(self, headers: Mapping[str, str] = HEADERS) -> dict[str, Any]:
        answer = self.http.post("/v1/relay/sessions", content=b"{}", headers=headers)
        assert answer.status_code == 201, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def result(
        self, session: str, wait: int = 20, headers: Mapping[str, str] = HEADERS
    ) -> httpx.Response:
        return self.http.get(f"/v1/relay/sessions/{session}?wait={wait}", headers=headers)

    def close(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def badges(tmp_path: Path) -> BadgeVerifier:
    cfg = config()
    factor = SecondFactor(SqliteStore(tmp_path / "mie.db"), max_failures=3, parameters=WEAK)
    signed = IdentityRecord.parse(record(UID, cfg))
    factor.enrol(signed.badge_name, signed.file, PIN)
    return BadgeVerifier(cfg, keys=KEYS, second_factor=factor)


@pytest.fixture
def service(badges: BadgeVerifier) -> Iterator[Service]:
    running = Service(badges)
    try:
        yield running
    finally:
        running.close()


def reader(seed: int = 5) -> Reader:
    return Reader(badge(badge_state(cfg=config()), rng=counter_rng(seed)))


def login_over_relay(service: Service, seed: int = 5) -> tuple[httpx.Response, AuthResult]:
    opened = service.open_session()
    agent = start_agent(opened["url"], reader(seed), origin=ORIGIN, pin=StaticPin(PIN))
    answer = service.result(opened["session"])
    agent.join(20)
    assert agent.error is None, agent.error
    assert agent.result is not None
    return answer, agent.result


def test_a_badge_login_runs_over_the_services_relay(service: Service) -> None:
    opened = service.open_session()
    assert set(opened) == {"session", "url", "nonce", "origin", "expires_at"}
    assert opened["url"] == f"ws://127.0.0.1:{service.port}/v1/relay/{opened['session']}"
    assert opened["origin"] == ORIGIN and len(bytes.fromhex(opened["nonce"])) == 32
    assert opened["expires_at"].endswith("Z")
    pending = service.result(opened["session"], wait=0)
    assert pending.status_code == 202 and pending.json()["state"] == "pending"
    agent = start_agent(opened["url"], reader(), origin=ORIGIN, pin=StaticPin(PIN))
    answer = service.result(opened["session"])
    agent.join(20)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["valid"] is True and body["level"] == "substantial"
    assert body["identity"]["id_nat"] == RPPS
    assert body["evidence"]["type"] == "desfire-session"
    assert body["evidence"]["nonce"] == opened["nonce"]
    assert agent.result is not None and agent.result.valid
    assert agent.result.level is AssuranceLevel.SUBSTANTIAL and agent.result.evidence is None
    # The outcome is delivered once; the nonce was consumed once.
    again = service.result(opened["session"], wait=0)
    assert again.status_code == 409 and again.json()["error"]["code"] == "nonce_unknown"
    assert service.core.consumed == [bytes.fromhex(opened["nonce"])]
    assert service.core.nonces == {}


def test_an_agent_that_disconnects_after_its_card_is_a_reader_error(service: Service) -> None:
    opened = service.open_session()
    with raw_agent(opened["url"]) as ws:
        hello = parse_iam_message(ws.recv(5))
        assert isinstance(hello, Hello) and hello.nonce.hex() == opened["nonce"]
        ws.send(encode(Card(hello.session, None, Transport.CONTACTLESS, "Reader 0")))
    answer = service.result(opened["session"])
    assert answer.status_code == 502, answer.text
    body = answer.json()
    assert body["valid"] is False and body["error"]["code"] == "reader_error"
    assert service.core.consumed == [bytes.fromhex(opened["nonce"])]
    assert service.core.nonces == {}
    # The node keeps serving: the next session logs in.
    answer, agent_result = login_over_relay(service, seed=9)
    assert answer.status_code == 200 and answer.json()["level"] == "substantial"
    assert agent_result.valid


def test_an_agent_that_leaves_before_its_card_burns_the_nonce(service: Service) -> None:
    opened = service.open_session()
    with raw_agent(opened["url"]) as ws:
        assert isinstance(parse_iam_message(ws.recv(5)), Hello)
    answer = service.result(opened["session"])
    assert answer.status_code == 502 and answer.json()["error"]["code"] == "reader_error"
    assert service.core.consumed == [bytes.fromhex(opened["nonce"])]


def test_a_frame_over_16_kib_ends_the_session(service: Service) -> None:
    opened = service.open_session()
    with raw_agent(opened["url"]) as ws:
        parse_iam_message(ws.recv(5))
        ws.send("x" * (16 * 1024 + 1))
        with pytest.raises(ConnectionClosed):
            ws.recv(5)
    answer = service.result(opened["session"])
    assert answer.status_code >= 400 and answer.json()["valid"] is False
    assert service.core.consumed == [bytes.fromhex(opened["nonce"])]


def test_a_frame_over_16_kib_is_refused_without_uvicorns_bound(badges: BadgeVerifier) -> None:
    service = Service(badges, ws_max_size=1024 * 1024)
    try:
        opened = service.open_session()
        with raw_agent(opened["url"]) as ws:
            parse_iam_message(ws.recv(5))
            ws.send(" " * (16 * 1024) + "{}")
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == CLOSE_PROTOCOL
        answer = service.result(opened["session"])
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "malformed"
    finally:
        service.close()


def test_a_browser_handshake_is_refused_and_leaves_the_session_to_the_agent(
    service: Service,
) -> None:
    opened = service.open_session()
    with pytest.raises(InvalidStatus) as refused:
        connect(
            opened["url"],
            subprotocols=[Subprotocol(SUBPROTOCOL)],
            origin=Origin("https://evil.example"),
            proxy=None,
            open_timeout=5,
        )
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        connect(opened["url"], proxy=None, open_timeout=5)  # no mie-relay.1
    assert service.core.consumed == []
    agent = start_agent(opened["url"], reader(), origin=ORIGIN, pin=StaticPin(PIN))
    answer = service.result(opened["session"])
    agent.join(20)
    assert answer.status_code == 200 and answer.json()["valid"] is True


def test_an_unknown_session_is_closed_with_its_code(service: Service) -> None:
    with raw_agent(f"ws://127.0.0.1:{service.port}/v1/relay/{'0' * 32}") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == CLOSE_UNKNOWN_SESSION
    with pytest.raises(InvalidStatus):
        raw_agent(f"ws://127.0.0.1:{service.port}/v1/relay/NOT-A-SESSION")


def test_a_session_is_claimed_once(service: Service) -> None:
    opened = service.open_session()
    answer, _ = login_over_relay_at(service, opened)
    assert answer.status_code == 200
    with raw_agent(opened["url"]) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == CLOSE_UNKNOWN_SESSION


def login_over_relay_at(
    service: Service, opened: dict[str, Any]
) -> tuple[httpx.Response, AuthResult | None]:
    agent = start_agent(opened["url"], reader(), origin=ORIGIN, pin=StaticPin(PIN))
    answer = service.result(opened["session"])
    agent.join(20)
    return answer, agent.result


def test_the_outcome_is_only_for_the_session_that_opened_it(service: Service) -> None:
    opened = service.open_session()
    other = {**HEADERS, "Mie-Session": "login-2"}
    assert service.result(opened["session"], wait=0, headers=other).status_code == 409
    assert service.result("f" * 32, wait=0).status_code == 409
    assert service.result("not-hex", wait=0).status_code == 409
    answer = service.result(opened["session"], wait=0)
    assert answer.status_code == 202


@pytest.mark.parametrize("query", ["wait=31", "wait=-1", "wait=x", "other=1"])
def test_a_bad_poll_query_is_usage(service: Service, query: str) -> None:
    opened = service.open_session()
    answer = service.http.get(f"/v1/relay/sessions/{opened['session']}?{query}", headers=HEADERS)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "usage"


@pytest.mark.parametrize(
    ("body", "status"), [(b'{"x": 1}', 400), (b"[", 400), (b"x" * 20_000, 413)]
)
def test_a_session_request_takes_an_empty_object(
    service: Service, body: bytes, status: int
) -> None:
    answer = service.http.post("/v1/relay/sessions", content=body, headers=HEADERS)
    assert answer.status_code == status
    assert service.core.nonces == {}


def test_a_session_request_needs_the_users_session(service: Service) -> None:
    answer = service.http.post("/v1/relay/sessions", json={})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "usage"


def test_no_agent_in_time_is_a_timeout_and_burns_the_nonce(badges: BadgeVerifier) -> None:
    service = Service(badges, session_timeout=1)
    try:
        opened = service.open_session()
        answer = service.result(opened["session"], wait=5)
        assert answer.status_code == 502, answer.text
        assert answer.json()["error"]["code"] == "reader_error"
        assert service.core.consumed == [bytes.fromhex(opened["nonce"])]
        with contextlib.suppress(InvalidStatus, ConnectionClosed, OSError):
            with raw_agent(opened["url"]) as ws:
                with pytest.raises(ConnectionClosed):
                    ws.recv(5)
    finally:
        service.close()


def test_a_node_without_a_badge_configuration_refuses_the_session() -> None:
    service = Service(None)
    try:
        answer = service.http.post("/v1/relay/sessions", content=b"{}", headers=HEADERS)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == "relay_refused"
        assert service.core.nonces == {}
    finally:
        service.close()


def test_a_node_keeps_a_bounded_number_of_sessions(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_relay, "MAX_SESSIONS", 2)
    first, _ = service.open_session(), service.open_session()
    answer = service.http.post("/v1/relay/sessions", content=b"{}", headers=HEADERS)
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "relay_refused"
    assert len(service.core.nonces) == 2  # no nonce issued for the refused one
    # A fetched outcome frees its place.
    agent = start_agent(first["url"], reader(), origin=ORIGIN, pin=StaticPin(PIN))
    assert service.result(first["session"]).status_code == 200
    agent.join(20)
    service.open_session()


# Found here: uvicorn hands the WebSocket library its uvicorn.error logger, whose DEBUG lines
# quote every frame, the pin frame included (mie.service.relay.NoFrames drops them).
def test_the_pin_reaches_no_log_even_at_debug(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    answer, _ = login_over_relay(service)
    assert answer.status_code == 200
    assert any(r.name == "uvicorn.error" for r in caplog.records)
    assert caplog.records and all(PIN not in r.getMessage() for r in caplog.records)


def test_the_agent_url_is_not_taken_from_a_forged_host_header(service: Service) -> None:
    # Review RS1: without relay.public_url the URL was built from the request's Host header, so
    # a caller naming another host sent the agent, and the PIN it relays, there.
    headers = {**HEADERS, "Host": "evil.example:1"}
    answer = service.http.post("/v1/relay/sessions", content=b"{}", headers=headers)
    assert answer.status_code == 201, answer.text
    opened = answer.json()
    assert "evil" not in opened["url"]
    assert opened["url"] == f"ws://127.0.0.1:{service.port}/v1/relay/{opened['session']}"
