"""Test peers for the relay: the agent on a thread, a hand-written IAM and a hand-written agent
(to stall, vanish or break the protocol where the real ones would not), and the test badge."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from websockets.sync.client import ClientConnection, connect
from websockets.sync.server import ServerConnection, serve

from mie.core.connection import SmartCardConnection, SmartCardConnectionWrapper
from mie.emulation.base import EmulatedCard, EmulatedConnection
from mie.emulation.desfire_state import BadgeKey, BadgeState, KeyType, personalise
from mie.relay.agent import Agent, AgentTimeouts
from mie.relay.protocol import SUBPROTOCOL
from mie.request import UserVerification
from mie.result import AuthResult

h = bytes.fromhex
UID = h("04958CAA5C5E80")
AID = h("494DF0")
PICC_KEY = h("00112233445566778899AABBCCDDEEFF")
APP_KEYS = [bytes([0x40 + i]) * 16 for i in range(5)]
RECORD = bytes(range(176))
ORIGIN = "https://iam.example"


def badge_state(*, random_uid: bool = True) -> BadgeState:
    state = BadgeState(UID, BadgeKey(PICC_KEY, 1, KeyType.AES))
    personalise(state, aid=AID, keys=APP_KEYS, record=RECORD, random_uid=random_uid)
    return state


def counter_rng(seed: int) -> Callable[[int], bytes]:
    """A deterministic rng (the badge's RndB, TI and random UID; the reader's RndA)."""
    state = {"n": seed}

    def rng(size: int) -> bytes:
        state["n"] += 1
        return bytes((state["n"] + i) & 0xFF for i in range(size))

    return rng


class Counting(SmartCardConnectionWrapper):
    """Keeps every APDU that reached the card, and whether the connection was opened."""

    def __init__(self, inner: SmartCardConnection) -> None:
        super().__init__(inner)
        self.sent: list[bytes] = []
        self.closed = False

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent.append(bytes(apdu))
        return self.inner.send_and_receive(apdu)

    def close(self) -> None:
        self.closed = True
        super().close()


@dataclass
class Reader:
    """What the agent's ``open_connection`` serves: one card, counted."""

    card: EmulatedCard
    opened: list[str | None] = field(default_factory=list)
    connection: Counting | None = None

    def open(self, reader: str | None) -> SmartCardConnection:
        self.opened.append(reader)
        self.connection = Counting(EmulatedConnection(self.card))
        return self.connection

    @property
    def sent(self) -> list[bytes]:
        return self.connection.sent if self.connection is not None else []


class AgentThread:
    """Runs :meth:`Agent.run` on a thread and keeps its result or exception."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.result: AuthResult | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = self.agent.run()
        except BaseException as e:
            self.error = e

    def join(self, timeout: float = 10.0) -> AgentThread:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the agent did not end"
        return self


def start_agent(
    url: str,
    reader: Reader,
    *,
    origin: str = ORIGIN,
    pin: UserVerification | None = None,
    timeouts: AgentTimeouts | None = None,
) -> AgentThread:
    agent = Agent(
        url, origin=origin, open_connection=reader.open, pin_prompt=pin, timeouts=timeouts
    )
    return AgentThread(agent)


@contextlib.contextmanager
def fake_iam(script: Callable[[ServerConnection], None]) -> Iterator[str]:
    """A WebSocket server that runs ``script`` on each connection; yields ``ws://127.0.0.1:P``."""
    server = serve(
        script,
        "127.0.0.1",
        0,
        subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        compression=None,
        close_timeout=0.25,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
    finally:
        server.shutdown()
        thread.join(5)


def raw_agent(url: str) -> ClientConnection:
    """A hand-driven agent connection."""
    return connect(
        url,
        subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        proxy=None,
        compression=None,
        open_timeout=5,
        close_timeout=0.25,
    )
