"""Host an emulated card in pcscd through vsmartcard's vpcd driver.

vpcd (the pcscd reader driver from Debian's ``vsmartcard-vpcd``) listens on TCP 35963 for slot 0
(``Virtual PCD 00 00``) and 35964 for slot 1. The card side connects to it; every message either
way is a 2-byte big-endian length and a payload. A 1-byte payload from vpcd is a control code:
``00`` power off, ``01`` power on, ``02`` reset, ``04`` get ATR (answered with the ATR). Any other
payload is a command APDU, answered with the response APDU.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from mie.core.log import log_command, log_response
from mie.emulation.base import CardGone, EmulatedCard

logger = logging.getLogger(__name__)

VPCD_PORT = 35963
CTRL_OFF = 0x00
CTRL_ON = 0x01
CTRL_RESET = 0x02
CTRL_ATR = 0x04

_POLL = 0.2


def _quick_ack(sock: socket.socket) -> None:
    quick_ack = getattr(socket, "TCP_QUICKACK", None)
    if quick_ack is not None:
        sock.setsockopt(socket.IPPROTO_TCP, quick_ack, 1)


class _ClosedError(Exception):
    """The peer closed the socket."""


class ExchangeObserver:
    """Receives every exchange a host handles (used to write traces)."""

    def exchange(self, command: bytes, response: bytes) -> None:
        """Called after each APDU with the command and the full response."""

    def session_end(self) -> None:
        """Called when the card is powered off or reset, or the host stops."""


class VpcdHost:
    """Presents one :class:`EmulatedCard` to pcscd through vpcd.

    :param card: the card.
    :param port: vpcd's port (35963 for ``Virtual PCD 00 00``, 35964 for ``00 01``).
    :param host: where vpcd listens; loopback by default.
    :param observer: told of every exchange (traces).
    :param reconnect: when vpcd goes away (pcscd stopped), keep trying to reconnect.
    :param silence_timeout: if vpcd sends nothing within this many seconds of a connection, stop
        with :attr:`error` set: vpcd serves one card per port and leaves a second one waiting
        unanswered (``None``: wait for ever).
    :param stall_after: test fault: answer this many APDUs, then stop answering while keeping
        the connection open, as a card that goes silent (``None``: never).
    """

    def __init__(
        self,
        card: EmulatedCard,
        port: int = VPCD_PORT,
        host: str = "127.0.0.1",
        observer: ExchangeObserver | None = None,
        reconnect: bool = True,
        silence_timeout: float | None = None,
        stall_after: int | None = None,
    ) -> None:
        self.card = card
        self.address = (host, port)
        self.observer = observer or ExchangeObserver()
        self.reconnect = reconnect
        self.silence_timeout = silence_timeout
        self.stall_after = stall_after
        self.answered = 0
        self.stalled = threading.Event()
        self.gone = threading.Event()  # the card raised CardGone: the host stopped
        self.error: str | None = None
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._buffer = b""

    def start(self) -> VpcdHost:
        """Serve in a background thread; returns ``self``."""
        self._thread = threading.Thread(target=self.serve_forever, name="mie-vpcd", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: the card disappears from the reader."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> VpcdHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Connect to vpcd and answer it until :meth:`stop`; reconnect when vpcd goes away."""
        try:
            while not self._stop.is_set():
                if self._connect():
                    self._serve_connection()
                if not self.reconnect or self.error is not None:
                    return
                self._stop.wait(_POLL)
        finally:
            self.observer.session_end()

    def _connect(self) -> bool:
        try:
            sock = socket.create_connection(self.address, timeout=_POLL * 5)
        except OSError as e:
            logger.debug("vpcd at %s:%d not reachable: %s", *self.address, e)
            return False
        sock.settimeout(_POLL)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._buffer = sock, b""
        logger.debug("Connected to vpcd %s:%d", *self.address)
        return True

    def _serve_connection(self) -> None:
        assert self._sock is not None  # noqa: S101 - set by _connect
        deadline = None if self.silence_timeout is None else time.monotonic() + self.silence_timeout
        try:
            while not self._stop.is_set():
                message = self._receive()
                if message is not None:
                    if not self.connected.is_set():
                        # vpcd talks (asks for the ATR) once it has accepted this card.
                        self.connected.set()
                        logger.info("Card presented on vpcd %s:%d", *self.address)
                    self._handle(message)
                elif deadline is not None and not self.connected.is_set():
                    if time.monotonic() > deadline:
                        self.error = (
                            f"vpcd on {self.address[0]}:{self.address[1]} accepted the connection"
                            f" but sent nothing for {self.silence_timeout:g} s: another card is"
                            " probably on that port"
                        )
                        return
        except (_ClosedError, OSError) as e:
            logger.info("vpcd connection lost: %s", e)
        finally:
            self.connected.clear()
            self._sock.close()
            self._sock = None
            self.card.power_off()

    def _receive(self) -> bytes | None:
        """Read one framed message, or ``None`` if none began before the poll timeout.

        Bytes stay in the buffer until the whole message is there, so a poll timeout in the
        middle of a message loses nothing.
        """
        if not self._fill(2):
            return None
        need = 2 + int.from_bytes(self._buffer[:2], "big")
        while not self._fill(need):
            if self._stop.is_set():
                raise _ClosedError("stopped in the middle of a message")
        message, self._buffer = self._buffer[2:need], self._buffer[need:]
        return message

    def _fill(self, need: int) -> bool:
        """Buffer at least ``need`` bytes; ``False`` on a poll timeout."""
        assert self._sock is not None  # noqa: S101 - called while connected
        while len(self._buffer) < need:
            # vpcd writes the length and the APDU in two sends: the second waits (Nagle) for
            # our ACK of the first, which Linux would delay by 40 ms without QUICKACK.
            _quick_ack(self._sock)
            try:
                chunk = self._sock.recv(max(4096, need - len(self._buffer)))
            except TimeoutError:
                return False
            if not chunk:
                raise _ClosedError("vpcd closed the connection")
            self._buffer += chunk
        return True

    def _handle(self, message: bytes) -> None:
        if len(message) == 1:
            self._control(message[0])
            return
        if self.stall_after is not None and self.answered >= self.stall_after:
            if not self.stalled.is_set():
                logger.warning("Stall fault: not answering APDUs any more")
                self.stalled.set()
            return
        log_command(logger, message)
        try:
            response = self.card.process(message)
        except CardGone as e:
            # The card left the field (a test fault): unanswered, and no card on vpcd any more.
            logger.info("Card gone: %s", e)
            self.gone.set()
            self._stop.set()
            return
        except Exception:
            # Whatever a client sends, the card keeps serving: a host thread that died would take
            # the card out of the reader for every other client.
            logger.exception("Emulated card failed on a command; answering 6F00")
            response = b"\x6f\x00"
        self.answered += 1
        log_response(logger, response[:-2], int.from_bytes(response[-2:], "big"))
        self.observer.exchange(message, response)
        self._send(response)
        if self.card.gone:
            # The card leaves the field between two commands, not in the middle of one.
            logger.info("Card gone after %d APDUs", self.answered)
            self.gone.set()
            self._stop.set()

    def _control(self, code: int) -> None:
        logger.debug("vpcd control %02X", code)
        if code == CTRL_ATR:
            self._send(self.card.atr)
        elif code == CTRL_ON:
            self.card.power_on()
        elif code == CTRL_OFF:
            self.card.power_off()
            self.observer.session_end()
        elif code == CTRL_RESET:
            self.card.reset()
            self.observer.session_end()
        else:
            logger.warning("Unknown vpcd control code %02X", code)

    def _send(self, payload: bytes) -> None:
        assert self._sock is not None  # noqa: S101 - called while connected
        self._sock.sendall(len(payload).to_bytes(2, "big") + payload)
