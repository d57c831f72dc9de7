"""Fuzz targets of the relay (mie.relay): the two message codecs, the agent's allow-list, and the
agent's forwarder fed fuzz frames in place of the IAM (see :mod:`tests.fuzz.targets`).

The allow-list's oracle is a second, independent statement of the plan's rule (§3.2): whatever
:func:`~mie.relay.policy.check_command` lets through must satisfy it. The forwarder's oracle:
the card receives only the agent's own GetVersion and commands that rule allows (AF only right
after a ``91AF``), nothing after a refusal, and never a command before the hello was accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed

from mie.core.channel import CommMode
from mie.core.connection import SmartCardConnection, SmartCardConnectionWrapper, Transport
from mie.desfire.session import DesfireSession
from mie.emulation.base import EmulatedConnection
from mie.emulation.desfire import EmulatedDesfire
from mie.emulation.desfire_state import BadgeKey, BadgeState, KeyType, personalise
from mie.relay.agent import Agent
from mie.relay.errors import RelayRefusedError
from mie.relay.policy import GET_VERSION_PROBE, check_command
from mie.relay.protocol import (
    MAX_MESSAGE,
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
    encode,
    parse_agent_message,
    parse_iam_message,
    session_id,
)
from mie.request import UserVerification
from tests.fuzz.context import Context
from tests.fuzz.harness import OracleViolation, Reader, Run, Target, records

_NONCE = bytes(range(32))
_SESSION = session_id(_NONCE)
_ORIGIN = "https://iam.example"
_UID = bytes.fromhex("04958caa5c5e80")
_AID = bytes.fromhex("494df0")
_KEYS = [bytes([0x40 + i]) * 16 for i in range(5)]
_RESULT: dict[str, Any] = {
    "valid": True,
    "error": None,
    "authenticator": {"kind": "desfire", "serial": None, "atr": None, "transport": None},
    "identity": None,
    "level": "low",
    "reasons": ["badge alone"],
    "evidence": None,
}
_ALLOWED = {0x60, 0x5A, 0x71, 0x77, 0xAA, 0x51, 0xBD, 0xF5, 0x45, 0x64, 0x6A, 0x6F, 0x3C}


def _frame(data: bytes) -> str | bytes:
    """A fuzz record as a WebSocket frame: text when it is UTF-8 (as every text frame is)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def _badge() -> EmulatedDesfire:
    state = BadgeState(_UID, BadgeKey(bytes(16), 1, KeyType.AES))
    personalise(state, aid=_AID, keys=_KEYS, record=bytes(range(176)), random_uid=True)
    counter = iter(range(1 << 30))
    return EmulatedDesfire(state, rng=lambda n: bytes((next(counter) + i) & 0xFF for i in range(n)))


class _Recorder(SmartCardConnectionWrapper):
    def __init__(self, inner: SmartCardConnection) -> None:
        super().__init__(inner)
        self.sent: list[bytes] = []
        self.answers: list[int] = []

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent.append(bytes(apdu))
        data, sw = self.inner.send_and_receive(apdu)
        self.answers.append(sw)
        return data, sw


def _identity_commands() -> list[bytes]:
    """The APDUs of an identity read (select, EV2 First, GetCardUID, NonFirst, FULL read)."""
    connection = _Recorder(EmulatedConnection(_badge()))
    session = DesfireSession(connection, rng=lambda n: bytes(n))
    session.get_version()
    session.select_application(_AID)
    session.authenticate_ev2_first(1, _KEYS[1])
    session.get_card_uid()
    session.authenticate_ev2_non_first(2, _KEYS[2])
    session.read_data(1, mode=CommMode.FULL)
    return connection.sent


# --- the codecs ------------------------------------------------------------------------------


def _iam_seeds(context: Context) -> list[bytes]:
    messages: list[IamMessage] = [
        Hello(_SESSION, _NONCE, _ORIGIN, 60_000),
        *(Apdu(i + 1, c) for i, c in enumerate(_identity_commands()[:4])),
        PinRequest(3),
        PinRequest(None),
        End(_RESULT),
    ]
    return [encode(m).encode() for m in messages] + [b"{}", b"[]", b"\xff"]


def _agent_seeds(context: Context) -> list[bytes]:
    messages: list[AgentMessage] = [
        Card(_SESSION, bytes.fromhex("3b8180018080"), Transport.CONTACTLESS, "Virtual PCD 00 00"),
        Card(_SESSION, None, Transport.CONTACT, ""),
        Rapdu(1, bytes.fromhex("04010133001a0591af")),
        PinReply("1234"),
        Refused(3, "ChangeKey (C4) writes to the badge"),
        Refused(None, "not a DESFire badge"),
    ]
    return [encode(m).encode() for m in messages]


def _codec_prepare(parse: Callable[[str | bytes], Any]) -> Callable[[Context], Run]:
    def prepare(context: Context) -> Run:
        def run(data: bytes) -> None:
            message = parse(_frame(data))
            again = encode(message)
            if len(again.encode()) > MAX_MESSAGE:
                raise OracleViolation("relay: a message read back encodes over 16 KiB")
            if parse(again) != message:
                raise OracleViolation("relay: a message read back does not round-trip")

        return run

    return prepare


# --- the allow-list --------------------------------------------------------------------------


def _allowed_by_the_plan(apdu: bytes, after_af: bool) -> bool:
    if apdu == bytes.fromhex("ffca000000"):
        return True
    if len(apdu) < 5 or len(apdu) > 261 or apdu[0] != 0x90 or apdu[2:4] != b"\x00\x00":
        return False
    if apdu[-1] != 0:
        return False
    if len(apdu) > 5 and (apdu[4] == 0 or len(apdu) != 6 + apdu[4]):
        return False
    return apdu[1] in _ALLOWED or (apdu[1] == 0xAF and after_af)


def _policy_seeds(context: Context) -> list[bytes]:
    commands = _identity_commands()
    seeds = [b"\x00" + c for c in commands] + [b"\x01" + c for c in commands]
    return [
        *seeds,
        b"\x00" + bytes.fromhex("0020000108313233340000000000")[:-1],
        b"\x00" + bytes.fromhex("90c4000002001100"),
        b"\x00" + bytes.fromhex("ffca000000"),
        b"\x01" + bytes.fromhex("90af000000"),
    ]


def _policy_prepare(context: Context) -> Run:
    def run(data: bytes) -> None:
        after_af, apdu = bool(data[:1] and data[0] & 1), data[1:]
        try:
            check_command(apdu, after_af=after_af)
        except RelayRefusedError as e:
            if _allowed_by_the_plan(apdu, after_af):
                raise OracleViolation(f"relay policy refused an allowed command: {e}") from e
            if not e.reason or "\n" in e.reason:
                raise OracleViolation("relay policy: a refusal without a one-line reason") from e
            return
        if not _allowed_by_the_plan(apdu, after_af):
            raise OracleViolation(f"relay policy let {apdu[:8].hex()}… through")

    return run


# --- the agent's forwarder --------------------------------------------------------------------


class _FuzzWebSocket:
    """Serves the fuzz records as the IAM's frames; the end of the input is the IAM leaving."""

    def __init__(self, data: bytes) -> None:
        self.frames = Reader(data).records()
        self.sent: list[str] = []
        self.closed: int | None = None
        self.subprotocol = "mie-relay.1"

    def recv(self, timeout: float | None = None) -> str | bytes:
        if self.closed is not None:
            raise ConnectionClosed(None, None)
        frame = next(self.frames, None)
        if frame is None:
            raise ConnectionClosed(None, None)
        return _frame(frame)

    def send(self, message: str) -> None:
        if self.closed is not None:
            raise ConnectionClosed(None, None)
        self.sent.append(message)

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = code if self.closed is None else self.closed


class _Pin(UserVerification):
    def request_pin(self, tries_left: int | None) -> str:
        return "1234"


def _agent_seeds_frames(context: Context) -> list[bytes]:
    hello = encode(Hello(_SESSION, _NONCE, _ORIGIN, 60_000)).encode()
    apdus = [encode(Apdu(i + 1, c)).encode() for i, c in enumerate(_identity_commands())]
    pin = encode(PinRequest(2)).encode()
    end = encode(End(_RESULT)).encode()
    refused = encode(Apdu(1, bytes.fromhex("90c4000002001100"))).encode()
    other = encode(Hello(_SESSION, bytes(32), _ORIGIN, 60_000)).encode()
    return [
        records([hello, *apdus, pin, end]),
        records([hello, apdus[0], pin, end]),
        records([hello, refused, end]),
        records([other, *apdus]),
        records([hello]),
    ]


def _agent_prepare(context: Context) -> Run:
    url = f"ws://127.0.0.1:9/relay/{_SESSION}"

    def run(data: bytes) -> None:
        recorder: list[_Recorder] = []

        def open_connection(reader: str | None) -> SmartCardConnection:
            recorder.append(_Recorder(EmulatedConnection(_badge())))
            return recorder[0]

        agent = Agent(url, origin=_ORIGIN, open_connection=open_connection, pin_prompt=_Pin())
        websocket = _FuzzWebSocket(data)
        try:
            agent._serve(websocket)  # type: ignore[arg-type]
        finally:
            if recorder:
                _check_forwarded(recorder[0], websocket)

    return run


def _check_forwarded(card: _Recorder, websocket: _FuzzWebSocket) -> None:
    if card.sent[:1] != [GET_VERSION_PROBE]:
        raise OracleViolation("relay agent: the first command to the card is not its GetVersion")
    for i, apdu in enumerate(card.sent[1:], start=1):
        after_af = i > 1 and card.answers[i - 1] == 0x91AF
        if not _allowed_by_the_plan(apdu, after_af):
            raise OracleViolation(f"relay agent forwarded {apdu[:8].hex()}…")
    refusals = [m for m in websocket.sent if m.startswith('{"type":"refused"')]
    if refusals and websocket.sent[-1] is not refusals[-1]:
        raise OracleViolation("relay agent: it went on after a refusal")
    for message in websocket.sent:
        parse_agent_message(message)


RELAY_TARGETS = [
    Target(
        "relay-iam-message",
        "relay frames from the IAM (parse_iam_message, then encode round trip)",
        _iam_seeds,
        _codec_prepare(parse_iam_message),
        max_len=16500,
    ),
    Target(
        "relay-agent-message",
        "relay frames from the agent (parse_agent_message, then encode round trip)",
        _agent_seeds,
        _codec_prepare(parse_agent_message),
        max_len=16500,
    ),
    Target(
        "relay-policy",
        "the agent's allow-list (check_command) against the plan's rule restated",
        _policy_seeds,
        _policy_prepare,
        max_len=300,
    ),
    Target(
        "relay-agent",
        "the agent's hello check and forwarder on fuzz IAM frames, an emulated badge behind it",
        _agent_seeds_frames,
        _agent_prepare,
        max_len=8192,
        uninstrumented=("mie.emulation", "mie.desfire"),
    ),
]
