"""The workstation side of the relay: ``mie agent`` forwards the IAM's APDUs to the badge.

The agent connects to the session URL the IAM gave (``wss://…/relay/<session>``) and refuses the
IAM's hello unless its nonce hashes to that session (:func:`~mie.relay.protocol.session_id`) and
its origin is the one the agent was told to serve. Only then does it open the card, in one
transaction for the whole session, and ask it ``90 60 00 00 00`` itself: a card that is not a
DESFire badge is refused after that one command, so a CPS card left in the reader is never
spoken to again. Each APDU the IAM sends passes :func:`mie.relay.policy.check_command` before it
reaches the card; the first refusal ends the session. The user is asked for one PIN per session
at most: a second PIN request is refused.

The agent holds no key and needs none: this module imports no key provider, no DESFire crypto
and no authenticator (a test checks the imports of ``mie agent``).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import ssl as ssl_module
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection, connect

from mie.core.connection import SmartCardConnection
from mie.core.errors import EvidenceFormatError, MieError
from mie.desfire.constants import SW_ADDITIONAL_FRAME
from mie.relay.errors import (
    RelayClosedError,
    RelayProtocolError,
    RelayRefusedError,
    RelayTimeoutError,
)
from mie.relay.policy import GET_VERSION_PROBE, check_command, check_desfire
from mie.relay.protocol import (
    CLOSE_CARD_ERROR,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL,
    CLOSE_REFUSED,
    CLOSE_TIMED_OUT,
    CLOSE_TIMEOUT,
    CLOSE_UNKNOWN_SESSION,
    MAX_CLOSE_REASON,
    MAX_MESSAGE,
    MAX_PIN_CHARS,
    MAX_READER_CHARS,
    MAX_RESPONSE,
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
    parse_iam_message,
    session_id,
)
from mie.request import UserVerification, check_origin
from mie.result import AuthResult

logger = logging.getLogger(__name__)

OpenConnection = Callable[[str | None], SmartCardConnection]
"""Opens the card in the named reader (``None``: the only or first one)."""


@dataclass(frozen=True)
class AgentTimeouts:
    """How long the agent waits, in seconds.

    :param connect: the WebSocket handshake, then the IAM's hello.
    :param idle: at most this long for each next message of the IAM (the hello's
        ``deadline_ms`` also bounds every wait).
    :param pin: the user typing the PIN.
    """

    connect: float = 10.0
    idle: float = 120.0
    pin: float = 60.0

    def __post_init__(self) -> None:
        for name in ("connect", "idle", "pin"):
            if not 0 < getattr(self, name) <= 600:
                raise ValueError(f"The agent's {name} timeout must be in 0..600 s")


def origin_of(url: str) -> str:
    """:return: the ``https://`` origin of a ``wss://`` URL (the port kept only if not 443).

    :raises ValueError: not a ``wss://`` URL with a host.
    """
    parts = urlsplit(url)
    if parts.scheme != "wss" or not parts.hostname:
        raise ValueError("Only a wss:// URL has an origin to default to")
    port = parts.port
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return check_origin(f"https://{host}" + (f":{port}" if port not in (None, 443) else ""))


def session_of(url: str) -> str:
    """:return: the session id at the end of a relay URL (``…/relay/<session>``).

    :raises ValueError: not a ``wss://`` URL (or ``ws://`` to a loopback address) ending in a
        session path.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError("The relay URL must be wss://HOST[:PORT]/… (ws:// on this machine only)")
    if parts.scheme == "ws" and not _loopback(parts.hostname):
        # The PIN would cross the network in clear text.
        raise ValueError("A ws:// relay URL must name this machine (tests); use wss://")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("The relay URL carries no query, fragment or user part")
    _, found, session = parts.path.rpartition(RELAY_PATH)
    if not found or "/" in session:
        raise ValueError(f"The relay URL's path must end with {RELAY_PATH}SESSION")
    try:
        return check_session(session)
    except RelayProtocolError as e:
        raise ValueError(f"The relay URL's session: {e}") from e


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Agent:
    """Forwards one relay session's APDUs between the IAM and the card.

    :param url: the session URL the IAM gave.
    :param origin: the IAM's origin: a hello for another origin is refused.
    :param reader: the reader to use (``None``: what ``open_connection`` picks).
    :param open_connection: opens the card in a reader.
    :param pin_prompt: asks the user for the second-factor PIN (``None``: a PIN request is
        refused).
    :param timeouts: the agent's waits.
    :param ssl: the TLS context of a ``wss://`` URL (``None``: the system's defaults).
    :raises ValueError: a malformed URL or origin, or ``ssl`` with a ``ws://`` URL.
    """

    def __init__(
        self,
        url: str,
        *,
        origin: str,
        reader: str | None = None,
        open_connection: OpenConnection,
        pin_prompt: UserVerification | None = None,
        timeouts: AgentTimeouts | None = None,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.session = session_of(url)
        if ssl is not None and not url.startswith("wss://"):
            raise ValueError("A TLS context needs a wss:// URL")
        self.url = url
        self.origin = check_origin(origin)
        self.reader = reader
        self._open_connection = open_connection
        self._pin_prompt = pin_prompt
        self.timeouts = timeouts if timeouts is not None else AgentTimeouts()
        self._ssl = ssl

    def __repr__(self) -> str:
        return f"Agent(session={self.session}, origin={self.origin!r})"

    def run(self) -> AuthResult:
        """Serve the session to its end.

        :return: the outcome the IAM sent (its evidence stays at the IAM).
        :raises RelayRefusedError: the agent refused the hello, the card, a command or a PIN
            request, or the IAM refused the session.
        :raises RelayTimeoutError: the IAM (or the user, for the PIN) did not go on in time.
        :raises RelayClosedError: the IAM could not be reached or went away.
        :raises RelayProtocolError: the IAM broke the wire format.
        """
        with self._connect() as websocket:
            try:
                return self._serve(websocket)
            except RelayRefusedError as e:
                if e.__cause__ is None:
                    logger.info("Relay session refused: %s", e.reason)
                raise

    def _connect(self) -> ClientConnection:
        try:
            websocket = connect(
                self.url,
                ssl=self._ssl,
                proxy=None,
                compression=None,
                max_size=MAX_MESSAGE,
                open_timeout=self.timeouts.connect,
                close_timeout=CLOSE_TIMEOUT,
                subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                user_agent_header=None,
                logger=WIRE_LOGGER,
            )
        except TimeoutError as e:
            wait = self.timeouts.connect
            raise RelayTimeoutError(f"The IAM did not answer within {wait} s") from e
        except InvalidStatus as e:
            status = e.response.status_code
            raise RelayRefusedError(f"the IAM refused the relay URL (HTTP {status})") from e
        except (OSError, InvalidHandshake, InvalidURI) as e:
            raise RelayClosedError(f"Cannot open the relay: {e}") from e
        return websocket

    def _serve(self, websocket: ClientConnection) -> AuthResult:
        if websocket.subprotocol != SUBPROTOCOL:
            websocket.close(CLOSE_PROTOCOL)
            raise RelayProtocolError(f"The IAM does not speak {SUBPROTOCOL}")
        hello = self._hello(websocket)
        deadline = time.monotonic() + hello.deadline_ms / 1000
        try:
            with self._open_connection(self.reader) as card, card.transaction():
                self._probe(websocket, card)
                reader = (self.reader or "")[:MAX_READER_CHARS]
                reader = reader if reader.isprintable() else ""
                _send(websocket, Card(self.session, card.atr, card.transport, reader))
                logger.info("Relay session %s: the badge is announced", self.session)
                return _Forwarder(self, websocket, card, deadline).loop()
        except _RELAY_ERRORS:
            raise
        except MieError as e:
            # The reader or the card failed: the IAM hears why, not just that the agent left.
            websocket.close(CLOSE_CARD_ERROR, _close_reason(f"{e.code}: {e}"))
            raise

    def _hello(self, websocket: ClientConnection) -> Hello:
        message = _receive(websocket, self.timeouts.connect, "hello")
        if not isinstance(message, Hello):
            websocket.close(CLOSE_PROTOCOL)
            raise RelayProtocolError("The IAM's first message is not a hello")
        # The URL names the session; the hello must be for that session and its nonce.
        bound = hmac.compare_digest(message.session, self.session) and hmac.compare_digest(
            session_id(message.nonce), self.session
        )
        if not bound:
            _refuse(websocket, None, "hello for another session or nonce")
        if not hmac.compare_digest(message.origin.encode(), self.origin.encode()):
            _refuse(websocket, None, "hello for another origin")
        return message

    def _probe(self, websocket: ClientConnection, card: SmartCardConnection) -> None:
        data, sw = card.send_and_receive(GET_VERSION_PROBE)
        try:
            check_desfire(data, sw)
        except RelayRefusedError as e:
            _refuse(websocket, None, e.reason)

    def ask_pin(self, tries_left: int | None, deadline: float) -> str:
        """Ask the user for the PIN, within the PIN timeout and the session's deadline.

        :param tries_left: what the IAM says remains.
        :param deadline: the session's end (``time.monotonic()`` value).
        :return: the PIN.
        :raises RelayTimeoutError: the user typed nothing in time.
        :raises RelayRefusedError: no prompt, or a PIN too long to send.
        """
        if self._pin_prompt is None:
            raise RelayRefusedError("this agent has no PIN prompt")
        box: list[str | bytes | bytearray | BaseException] = []
        prompt = self._pin_prompt

        def ask() -> None:
            try:
                box.append(prompt.request_pin(tries_left))
            except BaseException as e:  # handed to the waiting thread
                box.append(e)

        thread = threading.Thread(target=ask, name="mie-agent-pin", daemon=True)
        thread.start()
        wait = min(self.timeouts.pin, deadline - time.monotonic())
        thread.join(max(wait, 0.0))
        if not box:
            raise RelayTimeoutError(f"No PIN was typed within {max(wait, 0.0):.1f} s")
        answer = box[0]
        if isinstance(answer, BaseException):
            raise answer
        return _pin_text(answer)


_RELAY_ERRORS = (RelayClosedError, RelayProtocolError, RelayRefusedError, RelayTimeoutError)


def _close_reason(text: str) -> str:
    """:return: ``text`` on one line, cut to what a close frame carries."""
    data = " ".join(text.split()).encode("utf-8")[:MAX_CLOSE_REASON]
    return data.decode("utf-8", "ignore")


def _pin_text(pin: str | bytes | bytearray) -> str:
    text = pin if isinstance(pin, str) else bytes(pin).decode("utf-8", "replace")
    if isinstance(pin, bytearray):
        pin[:] = bytes(len(pin))
    if len(text) > MAX_PIN_CHARS or not text.isprintable():
        raise RelayRefusedError(f"the PIN is not {MAX_PIN_CHARS} printable characters or fewer")
    return text


class _Forwarder:
    """The APDU loop of one session."""

    def __init__(
        self,
        agent: Agent,
        websocket: ClientConnection,
        card: SmartCardConnection,
        deadline: float,
    ) -> None:
        self.agent = agent
        self.websocket = websocket
        self.card = card
        self.deadline = deadline
        self.seq = 0
        self.after_af = False
        self.pin_asked = False

    def loop(self) -> AuthResult:
        while True:
            wait = min(self.agent.timeouts.idle, self.deadline - time.monotonic())
            if wait <= 0:
                raise RelayTimeoutError("The relay session's deadline passed")
            message = _receive(self.websocket, wait, "next message")
            if isinstance(message, Apdu):
                self._forward(message)
            elif isinstance(message, PinRequest):
                self._pin(message)
            elif isinstance(message, End):
                return _result(self.websocket, message)
            else:
                self.websocket.close(CLOSE_PROTOCOL)
                raise RelayProtocolError("The IAM sent a second hello")

    def _forward(self, message: Apdu) -> None:
        if message.seq != self.seq + 1:
            self.websocket.close(CLOSE_PROTOCOL)
            raise RelayProtocolError(f"APDU {message.seq} after APDU {self.seq}")
        try:
            check_command(message.command, after_af=self.after_af)
        except RelayRefusedError as e:
            _refuse(self.websocket, message.seq, e.reason)
        data, sw = self.card.send_and_receive(message.command)
        response = data + sw.to_bytes(2, "big")
        if len(response) > MAX_RESPONSE:
            _refuse(self.websocket, message.seq, "the card answered more than a short response")
        self.after_af = sw == SW_ADDITIONAL_FRAME
        self.seq = message.seq
        _send(self.websocket, Rapdu(message.seq, response))

    def _pin(self, message: PinRequest) -> None:
        if self.pin_asked:
            # The verifier asks once per login: the user is not prompted again on the IAM's say-so.
            _refuse(self.websocket, None, "one PIN per session: the IAM asked again")
        self.pin_asked = True
        try:
            pin = self.agent.ask_pin(message.tries_left, self.deadline)
        except RelayRefusedError as e:
            _refuse(self.websocket, None, e.reason)
        except RelayTimeoutError:
            _send_refusal(self.websocket, None, "no PIN typed in time")
            raise
        except BaseException:
            _send_refusal(self.websocket, None, "the user gave no PIN")
            raise
        _send(self.websocket, PinReply(pin))


def _result(websocket: ClientConnection, message: End) -> AuthResult:
    try:
        result = AuthResult.from_json(message.result)
    except EvidenceFormatError as e:
        websocket.close(CLOSE_PROTOCOL)
        raise RelayProtocolError(f"The IAM's result: {e}") from e
    websocket.close(CLOSE_NORMAL)
    return result


def _send(websocket: ClientConnection, message: AgentMessage) -> None:
    try:
        websocket.send(encode(message))
    except ConnectionClosed as e:
        raise _closed(e) from e


def _send_refusal(websocket: ClientConnection, seq: int | None, reason: str) -> None:
    try:
        websocket.send(encode(Refused(seq, reason)))
    except ConnectionClosed:
        pass
    websocket.close(CLOSE_REFUSED, "refused")


def _refuse(websocket: ClientConnection, seq: int | None, reason: str) -> None:
    """Tell the IAM, close, and raise :class:`RelayRefusedError`."""
    _send_refusal(websocket, seq, reason)
    raise RelayRefusedError(reason)


def _receive(websocket: ClientConnection, wait: float, what: str) -> IamMessage:
    try:
        frame = websocket.recv(timeout=wait)
    except TimeoutError as e:
        websocket.close(CLOSE_TIMED_OUT, "timeout")
        raise RelayTimeoutError(f"The IAM sent no {what} within {wait:.1f} s") from e
    except ConnectionClosed as e:
        raise _closed(e) from e
    try:
        return parse_iam_message(frame)
    except RelayProtocolError:
        websocket.close(CLOSE_PROTOCOL)
        raise


def _closed(error: ConnectionClosed) -> RelayClosedError | RelayRefusedError:
    received = error.rcvd
    if received is not None and received.code == CLOSE_UNKNOWN_SESSION:
        return RelayRefusedError("the IAM does not expect this session (unknown, used or expired)")
    code = f"code {received.code}" if received is not None else "no close frame"
    return RelayClosedError(f"The IAM closed the relay ({code})")
