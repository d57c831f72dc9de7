"""PC/SC backend on pyscard's ``smartcard.scard`` (the only module of :mod:`mie` importing it).

Each call opens its own PC/SC context, so a restarted pcscd is picked up by the next call. Every
wait is bounded by a timeout. PC/SC error codes are translated into :mod:`mie.errors` types at
this edge; nothing above sees a pyscard type.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mie.core.connection import SmartCardConnection, Transport
from mie.core.errors import (
    CardRemovedError,
    NoCardError,
    NoReaderError,
    PcscUnavailableError,
    ReaderBusyError,
    TransportError,
    TransportTimeoutError,
)
from mie.core.log import log_command, log_response

try:
    from smartcard import scard
except ImportError as _exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("The PC/SC backend needs pyscard: pip install 'mie[pcsc]'") from _exc

logger = logging.getLogger(__name__)

_U32 = 0xFFFFFFFF
_NO_SERVICE = {scard.SCARD_E_NO_SERVICE & _U32, scard.SCARD_E_SERVICE_STOPPED & _U32}
_NO_READER = {
    scard.SCARD_E_NO_READERS_AVAILABLE & _U32,
    scard.SCARD_E_UNKNOWN_READER & _U32,
    scard.SCARD_E_READER_UNAVAILABLE & _U32,
}
_NO_CARD = {scard.SCARD_E_NO_SMARTCARD & _U32, scard.SCARD_W_UNPOWERED_CARD & _U32}
_REMOVED = {
    scard.SCARD_W_REMOVED_CARD & _U32,
    scard.SCARD_W_RESET_CARD & _U32,
    scard.SCARD_W_UNRESPONSIVE_CARD & _U32,
    scard.SCARD_E_INVALID_HANDLE & _U32,
    scard.SCARD_F_COMM_ERROR & _U32,
    scard.SCARD_E_NOT_TRANSACTED & _U32,
    scard.SCARD_E_COMM_DATA_LOST & _U32,
}
_TIMEOUT = scard.SCARD_E_TIMEOUT & _U32
_SHARING = scard.SCARD_E_SHARING_VIOLATION & _U32

DEFAULT_TIMEOUT = 5.0


def _check(hresult: int, what: str) -> None:
    """Raise the :mod:`mie` error for a PC/SC result code, naming the operation."""
    code = hresult & _U32
    if code == scard.SCARD_S_SUCCESS:
        return
    message = f"{what}: {scard.SCardGetErrorMessage(hresult)} (0x{code:08X})"
    if code in _NO_SERVICE:
        raise PcscUnavailableError(f"{what}: PC/SC service (pcscd) is not running")
    if code in _NO_READER:
        raise NoReaderError(message)
    if code in _NO_CARD:
        raise NoCardError(message)
    if code in _REMOVED:
        raise CardRemovedError(message)
    if code == _TIMEOUT:
        raise TransportTimeoutError(message)
    if code == _SHARING:
        raise ReaderBusyError(message)
    raise TransportError(message)


@contextlib.contextmanager
def _context() -> Iterator[int]:
    hresult, hcontext = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    _check(hresult, "Establishing PC/SC context")
    try:
        yield hcontext
    finally:
        scard.SCardReleaseContext(hcontext)


def _list(hcontext: int) -> list[str]:
    hresult, names = scard.SCardListReaders(hcontext, [])
    if hresult & _U32 == scard.SCARD_E_NO_READERS_AVAILABLE & _U32:
        return []
    _check(hresult, "Listing readers")
    return [str(n) for n in names]


@dataclass(frozen=True)
class ReaderStatus:
    """A reader and what it holds.

    :param name: the PC/SC reader name.
    :param card_present: whether a card is in (or on) the reader.
    :param atr: the card's ATR when present.
    """

    name: str
    card_present: bool
    atr: bytes | None


def _usable(event: int) -> bool:
    return bool(event & scard.SCARD_STATE_PRESENT) and not event & scard.SCARD_STATE_MUTE


def _statuses(hcontext: int, names: list[str], timeout: float = 0.0) -> list[ReaderStatus]:
    if not names:
        return []
    states = [(n, scard.SCARD_STATE_UNAWARE) for n in names]
    hresult, new_states = scard.SCardGetStatusChange(hcontext, int(timeout * 1000), states)
    _check(hresult, "Reading reader status")
    result = []
    for name, event, atr in new_states:
        present = _usable(event)
        result.append(ReaderStatus(str(name), present, bytes(atr) if present and atr else None))
    return result


def list_readers() -> list[ReaderStatus]:
    """List the PC/SC readers with card presence and ATR.

    :return: one entry per reader, in PC/SC order.
    :raises PcscUnavailableError: pcscd is not running.
    """
    with _context() as hcontext:
        return _statuses(hcontext, _list(hcontext))


def _resolve_reader(hcontext: int, reader: str | None) -> str:
    names = _list(hcontext)
    if not names:
        raise NoReaderError("No PC/SC reader is connected")
    if reader is None:
        for status in _statuses(hcontext, names):
            if status.card_present:
                return status.name
        raise NoCardError("No card in any reader")
    if reader in names:
        return reader
    matches = [n for n in names if reader.lower() in n.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NoReaderError(f"No reader named {reader!r} (readers: {', '.join(names)})")
    raise NoReaderError(f"Reader name {reader!r} is ambiguous: {', '.join(matches)}")


def _wait(reader: str, present: bool, timeout: float) -> bytes | None:
    """Wait until the reader's card presence equals ``present``; return the ATR if present."""
    with _context() as hcontext:
        name = _resolve_reader(hcontext, reader)
        states = [(name, scard.SCARD_STATE_UNAWARE)]
        deadline = _Deadline(timeout)
        while True:
            hresult, states = scard.SCardGetStatusChange(hcontext, deadline.remaining_ms(), states)
            if hresult & _U32 == _TIMEOUT:
                raise TransportTimeoutError(
                    f"Card {'insertion' if present else 'removal'} in {name!r}"
                    f" not seen within {timeout:g} s"
                )
            _check(hresult, f"Waiting on reader {name!r}")
            _, event, atr = states[0]
            if present and _usable(event):
                return bytes(atr)
            # Removal counts only once pcscd reports the slot empty: a card that failed mid-command
            # may show neither PRESENT nor EMPTY until pcscd's next poll.
            if not present and event & scard.SCARD_STATE_EMPTY:
                return None
            states = [(name, event & ~scard.SCARD_STATE_CHANGED)]


class _Deadline:
    def __init__(self, timeout: float) -> None:
        self._end = time.monotonic() + timeout

    def remaining_ms(self) -> int:
        return max(0, int((self._end - time.monotonic()) * 1000))


def wait_for_card(reader: str, timeout: float = DEFAULT_TIMEOUT) -> bytes:
    """Wait until a card is in ``reader``.

    :param reader: reader name (or a unique part of it).
    :param timeout: seconds to wait.
    :return: the card's ATR.
    :raises TransportTimeoutError: no card within ``timeout``.
    """
    atr = _wait(reader, True, timeout)
    return atr or b""


def wait_for_removal(reader: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Wait until ``reader`` holds no card.

    :raises TransportTimeoutError: the card is still there after ``timeout``.
    """
    _wait(reader, False, timeout)


class PcscConnection(SmartCardConnection):
    """A connection to the card in one PC/SC reader.

    :param reader: reader name or a unique part of it; ``None`` takes the first reader with a card.
    :param exclusive: connect in exclusive mode (no other process may use the card).
    :param reset_on_close: reset the card on close, so no verified PIN state outlives the session.
    """

    def __init__(
        self, reader: str | None = None, exclusive: bool = False, reset_on_close: bool = True
    ) -> None:
        self._reset_on_close = reset_on_close
        hresult, self._hcontext = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        _check(hresult, "Establishing PC/SC context")
        try:
            self.reader = _resolve_reader(self._hcontext, reader)
            self._hcard, self._protocol = self._connect(exclusive)
            self._atr = self._read_atr()
        except BaseException:
            scard.SCardReleaseContext(self._hcontext)
            raise
        self._in_transaction = False
        logger.debug("Connected to %r (protocol %d)", self.reader, self._protocol)

    def _connect(self, exclusive: bool) -> tuple[int, int]:
        mode = scard.SCARD_SHARE_EXCLUSIVE if exclusive else scard.SCARD_SHARE_SHARED
        self._mode = mode
        protocols = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        hresult, hcard, protocol = scard.SCardConnect(self._hcontext, self.reader, mode, protocols)
        _check(hresult, f"Connecting to the card in {self.reader!r}")
        return hcard, protocol

    def _read_atr(self) -> bytes:
        hresult, _, _, _, atr = scard.SCardStatus(self._hcard)
        _check(hresult, "Reading card status")
        return bytes(atr)

    @property
    def transport(self) -> Transport:
        # PC/SC part 3 pseudo-ATRs of contactless cards carry category 80 and RID A0 00 00 03 06.
        atr = self._atr
        if len(atr) > 8 and atr[4:6] == b"\x80\x4f" and b"\xa0\x00\x00\x03\x06" in atr:
            return Transport.CONTACTLESS
        return Transport.CONTACT

    @property
    def atr(self) -> bytes:
        """The card's ATR."""
        return self._atr

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        log_command(logger, apdu)
        hresult, response = scard.SCardTransmit(self._hcard, self._protocol, list(apdu))
        _check(hresult, "Transmitting APDU")
        if len(response) < 2:
            raise CardRemovedError(f"Card answered {len(response)} bytes, no status word")
        data, sw = bytes(response[:-2]), (response[-2] << 8) | response[-1]
        log_response(logger, data, sw)
        return data, sw

    @contextlib.contextmanager
    def transaction(self, reset: bool = False) -> Iterator[None]:
        """Hold a PC/SC transaction: no other process can send APDUs to the card meanwhile.

        Wrap every multi-APDU operation (PIN + MSE + signature) in one transaction.

        :param reset: reset the card when it ends (drops any verified PIN state).
        """
        if self._in_transaction:
            yield
            return
        _check(scard.SCardBeginTransaction(self._hcard), "Beginning transaction")
        self._in_transaction = True
        disposition = scard.SCARD_RESET_CARD if reset else scard.SCARD_LEAVE_CARD
        try:
            yield
        finally:
            self._in_transaction = False
            scard.SCardEndTransaction(self._hcard, disposition)
            if reset:
                self._reconnect_after_reset()

    def _reconnect_after_reset(self) -> None:
        # Our own handle sees the reset as SCARD_W_RESET_CARD until it reconnects.
        protocols = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        hresult, protocol = scard.SCardReconnect(
            self._hcard, self._mode, protocols, scard.SCARD_LEAVE_CARD
        )
        if hresult & _U32 == scard.SCARD_S_SUCCESS:
            self._protocol = protocol

    def close(self) -> None:
        if self._hcontext is None:
            return
        disposition = scard.SCARD_RESET_CARD if self._reset_on_close else scard.SCARD_LEAVE_CARD
        scard.SCardDisconnect(self._hcard, disposition)
        scard.SCardReleaseContext(self._hcontext)
        self._hcontext = None
        logger.debug("Disconnected from %r", self.reader)


CardCallback = Callable[[str, bytes], None]
RemovalCallback = Callable[[str], None]


class CardMonitor:
    """Watches readers in a background thread and calls back on card insertion and removal.

    :param on_insert: called with ``(reader, atr)`` when a card arrives (and for cards already in).
    :param on_remove: called with ``(reader,)`` when a card leaves.
    :param poll: seconds each PC/SC wait lasts, which bounds how long :meth:`stop` takes.
    """

    def __init__(
        self,
        on_insert: CardCallback | None = None,
        on_remove: RemovalCallback | None = None,
        poll: float = 0.5,
    ) -> None:
        self._on_insert = on_insert
        self._on_remove = on_remove
        self._poll = poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mie-card-monitor", daemon=True)
        self._present: dict[str, bytes] = {}
        self.error: BaseException | None = None

    def start(self) -> CardMonitor:
        """Start watching; returns ``self``."""
        self._thread.start()
        return self

    def stop(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop watching and wait for the thread to end."""
        self._stop.set()
        self._thread.join(timeout)

    def __enter__(self) -> CardMonitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._watch_once()
            except TransportError as e:
                # pcscd stopped or a reader vanished: report removals, then keep trying.
                logger.debug("Card monitor: %s", e)
                self._update({})
                self._stop.wait(self._poll)
            except BaseException as e:  # a callback failed: stop and expose it
                self.error = e
                return

    def _watch_once(self) -> None:
        with _context() as hcontext:
            states = [(n, scard.SCARD_STATE_UNAWARE) for n in _list(hcontext)]
            if not states:
                self._update({})
                self._stop.wait(self._poll)
                return
            while not self._stop.is_set():
                hresult, states = scard.SCardGetStatusChange(
                    hcontext, int(self._poll * 1000), states
                )
                if hresult & _U32 != _TIMEOUT:
                    _check(hresult, "Watching readers")
                present = {
                    str(n): bytes(atr)
                    for n, event, atr in states
                    if event & scard.SCARD_STATE_PRESENT
                }
                self._update(present)
                states = [(n, event & ~scard.SCARD_STATE_CHANGED) for n, event, _ in states]
                if len(_list(hcontext)) != len(states):
                    return

    def _update(self, present: dict[str, bytes]) -> None:
        for name in list(self._present):
            if name not in present or present[name] != self._present[name]:
                del self._present[name]
                if self._on_remove:
                    self._on_remove(name)
        for name, atr in present.items():
            if name not in self._present:
                self._present[name] = atr
                if self._on_insert:
                    self._on_insert(name, atr)
