"""The relay's wire format: JSON text frames between the IAM and ``mie agent`` (plan §3.2).

Each message is one WebSocket text frame of at most :data:`MAX_MESSAGE` bytes, read with
:func:`mie.core.strictjson.loads` (no duplicate key, numbers kept as text) and then checked field
by field: the exact keys of its type, lower-case hex, integers in their range. Binary frames are
refused. The codecs are pure; the two peers are :mod:`mie.relay.iam` and :mod:`mie.relay.agent`.

::

    IAM -> agent   hello   {"type":"hello","v":1,"session":hex32,"nonce":hex,"origin":str,
                            "deadline_ms":int}
    agent -> IAM   card    {"type":"card","session":hex32,"atr":hex|null,"transport":str,
                            "reader":str}
    IAM -> agent   apdu    {"type":"apdu","seq":int,"c":hex}
    agent -> IAM   rapdu   {"type":"rapdu","seq":int,"r":hex}            (data ‖ SW1 SW2)
    IAM -> agent   pin     {"type":"pin","tries_left":int|null}
    agent -> IAM   pin     {"type":"pin","pin":str}
    agent -> IAM   refused {"type":"refused","seq":int|null,"reason":str}
    IAM -> agent   end     {"type":"end","result":AuthResult JSON, evidence null}

The agent connects to ``…/relay/<session>``, where ``session`` is :func:`session_id` of the
IAM's nonce: the hello must carry a nonce that hashes to the session the agent was sent to.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from mie.core import strictjson
from mie.core.connection import Transport
from mie.core.errors import JsonFormatError
from mie.relay.errors import RelayProtocolError
from mie.request import MAX_NONCE_BYTES, MIN_NONCE_BYTES, check_origin

PROTOCOL_VERSION = 1
SUBPROTOCOL = "mie-relay.1"
"""The WebSocket subprotocol both peers require."""
MAX_MESSAGE = 16 * 1024
"""The largest frame either peer sends or accepts, in bytes."""
RELAY_PATH = "/relay/"
"""The URL path prefix of a session: ``/relay/<session>``."""
SESSION_CHARS = 32
MAX_DEADLINE_MS = 120_000
"""The longest session an IAM may announce (the agent's idle wait)."""
MAX_SEQ = 1_000_000
MAX_COMMAND = 261
"""A short command APDU: header, Lc, 255 data bytes, Le."""
MAX_RESPONSE = 258
"""A short response APDU: 256 data bytes and the status word."""
MAX_ATR = 33
MAX_READER_CHARS = 200
MAX_REASON_CHARS = 300
MAX_PIN_CHARS = 64
MAX_TRIES = 255

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL = 4400
"""Close code: a message broke the wire format."""
CLOSE_REFUSED = 4403
"""Close code: the agent refused (after its ``refused`` message)."""
CLOSE_UNKNOWN_SESSION = 4404
"""Close code: the IAM expects no such session (unknown, used or expired)."""
CLOSE_TIMED_OUT = 4408
"""Close code: a wait ran out."""
CLOSE_CARD_ERROR = 4500
"""Close code: the agent's card or reader failed (the reason says how)."""
MAX_CLOSE_REASON = 123
"""The longest close reason a WebSocket close frame carries, in UTF-8 bytes."""
CLOSE_TIMEOUT = 0.25
"""Seconds a WebSocket close waits for the peer's close frame: a stalled peer gets no more."""

WIRE_LOGGER = logging.getLogger("mie.relay.wire")
"""The logger both peers hand the WebSocket library. Its level is WARNING whatever its parents'
say: the library's DEBUG lines quote frames, and a ``pin`` frame carries the user's PIN (its INFO
lines, connection opened and closed, the peers log themselves)."""
WIRE_LOGGER.setLevel(logging.WARNING)

_SESSION_PREFIX = b"mie relay\x00"
_HEX = re.compile(r"(?:[0-9a-f]{2})*")
_SESSION = re.compile(rf"[0-9a-f]{{{SESSION_CHARS}}}")
_INTEGER = re.compile(r"0|[1-9][0-9]{0,9}")
_TRANSPORTS = {t.value: t for t in Transport}


def session_id(nonce: bytes) -> str:
    """The relay session a nonce opens: the agent connects to ``/relay/<session_id(nonce)>``.

    :param nonce: the IAM's nonce (of the :class:`~mie.request.AuthRequest`).
    :return: ``SHA-256("mie relay" ‖ 00 ‖ nonce)``, first 16 bytes, lower-case hex.
    """
    return hashlib.sha256(_SESSION_PREFIX + nonce).digest()[: SESSION_CHARS // 2].hex()


def check_session(value: str) -> str:
    """:return: ``value``, a session id (32 lower-case hex characters).

    :raises RelayProtocolError: anything else.
    """
    if not isinstance(value, str) or _SESSION.fullmatch(value) is None:
        raise RelayProtocolError("A relay session id is 32 lower-case hex characters")
    return value


@dataclass(frozen=True)
class Hello:
    """The IAM opens the session.

    :param session: the session id (:func:`session_id` of ``nonce``).
    :param nonce: the nonce of the authentication request.
    :param origin: the relying party (see :func:`~mie.request.check_origin`).
    :param deadline_ms: how long the session may last from now, in milliseconds.
    """

    session: str
    nonce: bytes
    origin: str
    deadline_ms: int


@dataclass(frozen=True)
class Card:
    """The agent announces the badge, after checking it is a DESFire badge.

    :param session: the session id the agent was sent to.
    :param atr: the card's ATR (the reader's pseudo-ATR when contactless), if known.
    :param transport: how the card is reached.
    :param reader: the reader's name.
    """

    session: str
    atr: bytes | None
    transport: Transport
    reader: str


@dataclass(frozen=True)
class Apdu:
    """A command APDU for the badge.

    :param seq: its number; the first is 1 and each next one is one more.
    :param command: the command bytes.
    """

    seq: int
    command: bytes


@dataclass(frozen=True)
class Rapdu:
    """The badge's answer to the command ``seq``.

    :param seq: the number of the command answered.
    :param response: the response data and status word.
    """

    seq: int
    response: bytes


@dataclass(frozen=True)
class PinRequest:
    """The IAM asks for the user's second-factor PIN.

    :param tries_left: tries before the lockout, when the IAM says.
    """

    tries_left: int | None


@dataclass(frozen=True)
class PinReply:
    """The PIN the user typed (never in a repr or a log).

    :param pin: the PIN.
    """

    pin: str = field(repr=False)


@dataclass(frozen=True)
class Refused:
    """The agent refused and closes the session.

    :param seq: the number of the command refused, or ``None`` (the hello, the card, a PIN).
    :param reason: why, one line.
    """

    seq: int | None
    reason: str


@dataclass(frozen=True)
class End:
    """The IAM ends the session with the outcome (an ``AuthResult`` object without evidence).

    :param result: the ``AuthResult`` JSON object, ``evidence`` null.
    """

    result: dict[str, Any]


IamMessage = Hello | Apdu | PinRequest | End
"""What the IAM sends (and the agent reads)."""
AgentMessage = Card | Rapdu | PinReply | Refused
"""What the agent sends (and the IAM reads)."""


def encode(message: IamMessage | AgentMessage) -> str:
    """:return: the text frame of ``message``.

    :raises RelayProtocolError: it would be larger than :data:`MAX_MESSAGE`.
    """
    text = json.dumps(_to_json(message), separators=(",", ":"), ensure_ascii=False)
    if len(text.encode("utf-8")) > MAX_MESSAGE:
        raise RelayProtocolError(f"A relay message is at most {MAX_MESSAGE} bytes")
    return text


def _to_json(message: IamMessage | AgentMessage) -> dict[str, Any]:
    match message:
        case Hello():
            return {
                "type": "hello",
                "v": PROTOCOL_VERSION,
                "session": message.session,
                "nonce": message.nonce.hex(),
                "origin": message.origin,
                "deadline_ms": message.deadline_ms,
            }
        case Card():
            atr = message.atr.hex() if message.atr is not None else None
            return {
                "type": "card",
                "session": message.session,
                "atr": atr,
                "transport": message.transport.value,
                "reader": message.reader,
            }
        case Apdu():
            return {"type": "apdu", "seq": message.seq, "c": message.command.hex()}
        case Rapdu():
            return {"type": "rapdu", "seq": message.seq, "r": message.response.hex()}
        case PinRequest():
            return {"type": "pin", "tries_left": message.tries_left}
        case PinReply():
            return {"type": "pin", "pin": message.pin}
        case Refused():
            return {"type": "refused", "seq": message.seq, "reason": message.reason}
        case End():
            return {"type": "end", "result": message.result}
    raise TypeError(f"Not a relay message: {type(message).__name__}")


def parse_iam_message(frame: str | bytes) -> IamMessage:
    """Read a frame the IAM sent.

    :param frame: the frame as received (``bytes`` for a binary frame, which is refused).
    :return: the message.
    :raises RelayProtocolError: a binary frame, or anything the wire format does not allow.
    """
    obj, kind = _load(frame, ("hello", "apdu", "pin", "end"))
    if kind == "hello":
        return _hello(obj)
    if kind == "apdu":
        _keys(obj, "apdu", {"seq", "c"})
        return Apdu(_seq(obj["seq"]), _hex(obj["c"], "apdu.c", 1, MAX_COMMAND))
    if kind == "pin":
        _keys(obj, "pin", {"tries_left"})
        tries = obj["tries_left"]
        return PinRequest(None if tries is None else _integer(tries, "pin.tries_left", MAX_TRIES))
    _keys(obj, "end", {"result"})
    return End(_result(obj["result"]))


def parse_agent_message(frame: str | bytes) -> AgentMessage:
    """Read a frame the agent sent.

    :param frame: the frame as received (``bytes`` for a binary frame, which is refused).
    :return: the message.
    :raises RelayProtocolError: a binary frame, or anything the wire format does not allow.
    """
    obj, kind = _load(frame, ("card", "rapdu", "pin", "refused"))
    if kind == "card":
        return _card(obj)
    if kind == "rapdu":
        _keys(obj, "rapdu", {"seq", "r"})
        return Rapdu(_seq(obj["seq"]), _hex(obj["r"], "rapdu.r", 2, MAX_RESPONSE))
    if kind == "pin":
        _keys(obj, "pin", {"pin"})
        return PinReply(_text(obj["pin"], "pin.pin", 0, MAX_PIN_CHARS))
    _keys(obj, "refused", {"seq", "reason"})
    seq = None if obj["seq"] is None else _seq(obj["seq"])
    return Refused(seq, _text(obj["reason"], "refused.reason", 1, MAX_REASON_CHARS))


def _load(frame: str | bytes, kinds: tuple[str, ...]) -> tuple[dict[str, Any], str]:
    if not isinstance(frame, str):
        raise RelayProtocolError("A relay message is a text frame, not a binary one")
    data = frame.encode("utf-8", "surrogatepass")
    try:
        obj = strictjson.loads(data, "relay message", max_bytes=MAX_MESSAGE)
    except JsonFormatError as e:
        raise RelayProtocolError(str(e)) from e
    if not isinstance(obj, dict):
        raise RelayProtocolError("A relay message is a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in kinds:
        shown = strictjson.shown(kind) if isinstance(kind, str) else "missing or not a string"
        raise RelayProtocolError(f"Relay message type {shown}: expected one of {', '.join(kinds)}")
    return obj, kind


def _keys(obj: dict[str, Any], kind: str, expected: set[str]) -> None:
    keys = set(obj) - {"type"}
    if keys != expected:
        extra, missing = sorted(keys - expected), sorted(expected - keys)
        parts = [f"extra {', '.join(map(strictjson.shown, extra))}" if extra else ""]
        parts.append(f"missing {', '.join(missing)}" if missing else "")
        raise RelayProtocolError(f"Relay message {kind}: {'; '.join(p for p in parts if p)}")


def _hello(obj: dict[str, Any]) -> Hello:
    _keys(obj, "hello", {"v", "session", "nonce", "origin", "deadline_ms"})
    version = _integer(obj["v"], "hello.v", MAX_SEQ)
    if version != PROTOCOL_VERSION:
        raise RelayProtocolError(f"Relay protocol version {version}, this agent speaks 1")
    session = _session(obj["session"], "hello.session")
    nonce = _hex(obj["nonce"], "hello.nonce", MIN_NONCE_BYTES, MAX_NONCE_BYTES)
    origin = _origin(obj["origin"])
    deadline = _integer(obj["deadline_ms"], "hello.deadline_ms", MAX_DEADLINE_MS)
    if deadline == 0:
        raise RelayProtocolError("hello.deadline_ms is 0: the session has no time left")
    return Hello(session, nonce, origin, deadline)


def _card(obj: dict[str, Any]) -> Card:
    _keys(obj, "card", {"session", "atr", "transport", "reader"})
    atr = None if obj["atr"] is None else _hex(obj["atr"], "card.atr", 2, MAX_ATR)
    transport = _TRANSPORTS.get(obj["transport"]) if isinstance(obj["transport"], str) else None
    if transport is None:
        raise RelayProtocolError("card.transport is not 'contact' or 'contactless'")
    reader = _text(obj["reader"], "card.reader", 0, MAX_READER_CHARS)
    return Card(_session(obj["session"], "card.session"), atr, transport, reader)


def _result(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RelayProtocolError("end.result is not an object")
    if "evidence" not in value or value["evidence"] is not None:
        raise RelayProtocolError("end.result.evidence must be null: the evidence stays at the IAM")
    _integers(value)
    return value


def _integers(result: dict[str, Any]) -> None:
    """Turn the strict parser's numbers into ints in place (an ``AuthResult`` holds only small
    integers), without recursion: the nesting is bounded only by the parser's."""
    pending: list[Any] = [result]
    while pending:
        node = pending.pop()
        for key in list(node) if isinstance(node, dict) else range(len(node)):
            item = node[key]
            if isinstance(item, strictjson.Number):
                node[key] = _integer(item, "a number in end.result", MAX_SEQ)
            elif isinstance(item, dict | list):
                pending.append(item)


def _session(value: object, where: str) -> str:
    if not isinstance(value, str) or _SESSION.fullmatch(value) is None:
        raise RelayProtocolError(f"{where} is not 32 lower-case hex characters")
    return value


def _origin(value: object) -> str:
    if not isinstance(value, str):
        raise RelayProtocolError("hello.origin is not a string")
    try:
        return check_origin(value)
    except ValueError as e:
        raise RelayProtocolError(f"hello.origin: {e}") from e


def _hex(value: object, where: str, least: int, most: int) -> bytes:
    if not isinstance(value, str) or _HEX.fullmatch(value) is None:
        raise RelayProtocolError(f"{where} is not lower-case hex")
    if not least <= len(value) // 2 <= most:
        raise RelayProtocolError(f"{where} has {len(value) // 2} bytes, expected {least}..{most}")
    return bytes.fromhex(value)


def _integer(value: object, where: str, most: int) -> int:
    text = value.text if isinstance(value, strictjson.Number) else None
    if text is None or _INTEGER.fullmatch(text) is None or int(text) > most:
        raise RelayProtocolError(f"{where} is not an integer from 0 to {most}")
    return int(text)


def _seq(value: object) -> int:
    seq = _integer(value, "seq", MAX_SEQ)
    if seq == 0:
        raise RelayProtocolError("A seq number starts at 1")
    return seq


def _text(value: object, where: str, least: int, most: int) -> str:
    if not isinstance(value, str) or not least <= len(value) <= most:
        raise RelayProtocolError(f"{where} is not a string of {least} to {most} characters")
    if not value.isprintable():
        raise RelayProtocolError(f"{where} holds a control character")
    return value
