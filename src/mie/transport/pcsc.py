"""PC/SC backend on pyscard's ``smartcard.scard`` (the only module of :mod:`mie` importing it).

Each call opens its own PC/SC context, so a restarted pcscd is picked up by the next call. Every
wait is bounded by a timeout. PC/SC error codes are translated into :mod:`mie.errors` types at
this edge; nothing above sees a pyscard type.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from mie.core.connection import SmartCardConnection
from mie.core.errors import (
    CardRemovedError,
    CardResetError,
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
    if code == scard.SCARD_W_RESET_CARD & _U32:
        raise CardResetError(message)
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


def wait_for_any_card(timeout: float = DEFAULT_TIMEOUT) -> ReaderStatus:
    """Wait until some reader holds a card.

    :param timeout: seconds to wait.
    :return: the first reader (in PC/SC order) with a card, and its ATR.
    :raises TransportTimeoutError: no card in any reader within ``timeout``.
    :raises PcscUnavailableError: pcscd is not running.
    """
    deadline = _Deadline(timeout)
    with _context() as hcontext:
        while True:
            names = _list(hcontext)
            if not names:
                # No reader yet: the wait on the pseudo-reader that announces new readers.
                names = ["\\?PnP?\\Notification"]
            states = [(n, scard.SCARD_STATE_UNAWARE) for n in names]
            hresult, states = scard.SCardGetStatusChange(hcontext, 0, states)
            while True:
                _check(hresult, "Reading reader status")
                for name, event, atr in states:
                    if _usable(event) and not name.startswith("\\?PnP?"):
                        return ReaderStatus(str(name), True, bytes(atr))
                if deadline.remaining_ms() == 0:
                    raise TransportTimeoutError(f"No card in any reader within {timeout:g} s")
                states = [(n, e & ~scard.SCARD_STATE_CHANGED) for n, e, _ in states]
                hresult, states = scard.SCardGetStatusChange(
                    hcontext, min(deadline.remaining_ms(), 500), states
                )
                if hresult & _U32 == _TIMEOUT:
                    hresult = scard.SCARD_S_SUCCESS
                    # Readers may have come or gone: list them again.
                    break


def wait_for_removal(reader: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Wait until ``reader`` holds no card.

    :raises TransportTimeoutError: the card is still there after ``timeout``.
    """
    _wait(reader, False, timeout)


# Deadlines of the calls a connection makes to pcscd. A card (or an emulator) that stops answering
# blocks SCardTransmit for ever: pcsc-lite's client waits on pcscd without a timeout, and vpcd's
# driver waits on its socket without one.
EXCHANGE_TIMEOUT = 10.0
TRANSACTION_TIMEOUT = 10.0

_RESET = scard.SCARD_W_RESET_CARD & _U32
_PROTO_MISMATCH = scard.SCARD_E_PROTO_MISMATCH & _U32
_PROTOCOLS = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
_RETRY = 0.05


class _Call:
    """One PC/SC call handed to a connection's worker thread, so the caller can stop waiting."""

    def __init__(self, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._function = function
        self._args = args
        self.finished = False
        self._outcome: queue.SimpleQueue[tuple[Any, BaseException | None]] = queue.SimpleQueue()

    def run(self) -> None:
        """Run the call (in the worker thread) and hand its outcome over."""
        try:
            outcome: tuple[Any, BaseException | None] = (self._function(*self._args), None)
        except BaseException as e:  # handed to the caller's thread
            outcome = (None, e)
        self.finished = True
        self._outcome.put(outcome)

    def result(self, timeout: float | None) -> tuple[bool, Any]:
        """Wait for the outcome: ``(False, None)`` if the call still runs after ``timeout``.

        :raises BaseException: what the call raised.
        """
        try:
            value, error = self._outcome.get(timeout=timeout)
        except queue.Empty:
            return False, None
        if error is not None:
            raise error
        return True, value


class _Worker:
    """The thread that makes a connection's PC/SC calls, one at a time.

    One long-lived thread per connection: a thread per call costs 0.1 ms, the hand-over about
    0.02 ms, next to 0.4 ms for an APDU through pcscd.
    """

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="mie-pcsc", daemon=True).start()

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            call.run()

    def submit(self, function: Callable[..., Any], args: tuple[Any, ...]) -> _Call:
        """Queue one call; :return: its handle."""
        call = _Call(function, args)
        self._calls.put(call)
        return call

    def stop(self) -> None:
        """End the thread once the calls queued before are done."""
        self._calls.put(None)


def _reap(
    call: _Call,
    worker: _Worker,
    hcontext: int,
    hcard: int | None,
    disposition: int,
    interrupt: bool,
) -> None:
    """Release the handles of a connection abandoned while ``call`` was blocked.

    pcsc-lite holds a context's lock for the whole of a call: any other call on that context
    waits behind it (and SCardDisconnect / SCardReleaseContext hold the library-wide lock while
    waiting, which would block every PC/SC call of the process). So the handles are released only
    once the blocked call has returned (the card answered, or left). SCardCancel takes neither
    lock; pcsc-lite only cancels SCardGetStatusChange with it, other stacks may do more. A
    transaction wait (``interrupt``) retries inside the library and drops the context's lock
    between tries: disconnecting then ends it at its next try. That disconnect leaves the card
    as it is: a reset would wait in pcscd for the very transaction we gave up waiting for, while
    holding the lock the waiting call needs for its next try (and so the library-wide one).
    """
    with contextlib.suppress(Exception):
        scard.SCardCancel(hcontext)
    if interrupt and hcard is not None:
        with contextlib.suppress(Exception):
            scard.SCardDisconnect(hcard, scard.SCARD_LEAVE_CARD)
        hcard = None
    with contextlib.suppress(BaseException):
        call.result(None)
    worker.stop()
    with contextlib.suppress(Exception):
        if hcard is not None:
            scard.SCardDisconnect(hcard, disposition)
        scard.SCardReleaseContext(hcontext)
    logger.debug("Released a PC/SC connection abandoned after a timeout")


class PcscConnection(SmartCardConnection):
    """A connection to the card in one PC/SC reader.

    Every call to the card has a deadline. When one passes, the call is abandoned: the
    connection raises :class:`~mie.errors.TransportTimeoutError` and is unusable from then on
    (open a new one); its PC/SC handles are released in the background once the blocked call
    returns (the card is reset then if ``reset_on_close`` or inside ``transaction(reset=True)``,
    unless what timed out was a wait for another process's transaction: this connection held none).

    :param reader: reader name or a unique part of it; ``None`` takes the first reader with a card.
    :param exclusive: connect in exclusive mode (no other process may use the card).
    :param reset_on_close: reset the card on close, so no verified PIN state outlives the session.
    :param timeout: seconds one exchange (an APDU and its answer) may take; default
        :data:`EXCHANGE_TIMEOUT` (10 s).
    :param transaction_timeout: seconds to wait for another process's transaction to end, when
        connecting and when beginning a transaction; default :data:`TRANSACTION_TIMEOUT` (10 s).
    :raises TransportTimeoutError: connecting did not finish within ``transaction_timeout``.
    """

    def __init__(
        self,
        reader: str | None = None,
        exclusive: bool = False,
        reset_on_close: bool = True,
        *,
        timeout: float = EXCHANGE_TIMEOUT,
        transaction_timeout: float = TRANSACTION_TIMEOUT,
    ) -> None:
        self._reset_on_close = reset_on_close
        self._timeout = timeout
        self._transaction_timeout = transaction_timeout
        self._abandoned = False
        self._in_transaction = False
        self._dirty = False
        # A transaction(reset=True) began and its closing reset has not happened yet: whatever
        # ends this connection resets the card then, even with reset_on_close=False.
        self._reset_owed = False
        self._exchanged = False
        self._hcard: int | None = None
        self._mode = scard.SCARD_SHARE_EXCLUSIVE if exclusive else scard.SCARD_SHARE_SHARED
        self._protocol = 0
        self.reader = reader or ""
        hresult, hcontext = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        _check(hresult, "Establishing PC/SC context")
        self._hcontext: int | None = hcontext
        self._worker = _Worker()
        # A connection dropped without close() must not leave its thread waiting for ever.
        weakref.finalize(self, self._worker.stop)
        try:
            self.reader = _resolve_reader(hcontext, reader)
            self._connect()
            self._atr = self._read_atr()
        except BaseException:
            self.close()
            raise
        logger.debug("Connected to %r (protocol %d)", self.reader, self._protocol)

    @property
    def _disposition(self) -> int:
        reset = self._reset_on_close or self._reset_owed
        return scard.SCARD_RESET_CARD if reset else scard.SCARD_LEAVE_CARD

    def _call(self, what: str, timeout: float, function: Callable[..., Any], *args: Any) -> Any:
        """Run one PC/SC call with a deadline; abandon the connection if it passes."""
        if self._abandoned or self._hcontext is None:
            raise TransportTimeoutError(
                f"{what}: the connection to {self.reader!r} was abandoned after a timeout"
            )
        call = self._worker.submit(function, args)
        interrupt = function is scard.SCardBeginTransaction
        try:
            done, value = call.result(timeout)
        except BaseException:
            # Ctrl-C while the call runs: nothing may wait on this context afterwards.
            if not call.finished:
                self._abandon(call, interrupt)
            raise
        if done:
            return value
        self._abandon(call, interrupt)
        raise TransportTimeoutError(f"{what}: no answer from {self.reader!r} within {timeout:g} s")

    def _abandon(self, call: _Call, interrupt: bool) -> None:
        assert self._hcontext is not None  # noqa: S101 - checked by _call
        self._abandoned = True
        reaper = threading.Thread(
            target=_reap,
            args=(call, self._worker, self._hcontext, self._hcard, self._disposition, interrupt),
            name="mie-pcsc-reaper",
            daemon=True,
        )
        reaper.start()
        self._hcontext = None
        logger.info("Abandoned the PC/SC connection to %r after a timeout", self.reader)

    def _connect(self) -> None:
        # pcscd holds a connect back while another process's transaction is open.
        hresult, hcard, protocol = self._call(
            "Connecting to the card",
            self._transaction_timeout,
            scard.SCardConnect,
            self._hcontext,
            self.reader,
            self._mode,
            _PROTOCOLS,
        )
        _check(hresult, f"Connecting to the card in {self.reader!r}")
        self._hcard, self._protocol = hcard, protocol

    def _read_atr(self) -> bytes:
        # From the reader's state, not SCardStatus: that one fails with a sharing violation while
        # another process holds a transaction, which is no reason to fail a connection.
        assert self._hcontext is not None  # noqa: S101 - connected
        status = _statuses(self._hcontext, [self.reader])[0]
        if status.atr is None:
            raise NoCardError(f"The card left {self.reader!r} while connecting")
        return status.atr

    @property
    def atr(self) -> bytes:
        """The card's ATR."""
        return self._atr

    @contextlib.contextmanager
    def transaction(self, reset: bool = False) -> Iterator[None]:
        """Hold a PC/SC transaction: no other process can send APDUs to the card meanwhile.

        Wrap every multi-APDU operation (PIN + MSE + signature) in one transaction. A reset of
        the card by another process before the transaction began (the end of its session) is
        recovered here by reconnecting once; the operation starts on a freshly reset card.

        :param reset: reset the card when it ends (drops any verified PIN state).
        :raises TransportTimeoutError: another process held the card longer than the
            transaction timeout (connection abandoned).
        """
        if self._in_transaction:
            # Nested: the outer transaction ends with the reset asked for here.
            self._reset_owed = self._reset_owed or reset
            yield
            return
        self._begin()
        self._in_transaction = True
        self._reset_owed = self._reset_owed or reset
        try:
            yield
        finally:
            self._in_transaction = False
            if not self._abandoned:
                reset_now = self._reset_owed
                self._end(scard.SCARD_RESET_CARD if reset_now else scard.SCARD_LEAVE_CARD)

    def _begin(self) -> None:
        what = "Beginning transaction"
        hresult = self._call(
            what, self._transaction_timeout, scard.SCardBeginTransaction, self._hcard
        )
        if hresult & _U32 == _RESET:
            # Our handle is flagged by a reset (another process's, or ours ending the previous
            # transaction): no lock is taken until it reconnects.
            self._reconnect()
            hresult = self._call(
                what, self._transaction_timeout, scard.SCardBeginTransaction, self._hcard
            )
            if hresult & _U32 == _RESET:
                raise CardResetError(f"{what}: the card was reset again while reconnecting")
            _check(hresult, what)
            return
        _check(hresult, what)
        # A reset that raced our connect can leave this handle unflagged but the card's protocol
        # not negotiated (transmits would fail with a protocol mismatch): check, and reconnect
        # (we hold the transaction now, so nobody else can reset the card).
        status = self._call("Reading card status", self._timeout, scard.SCardStatus, self._hcard)
        code = status[0] & _U32
        if code == _RESET or (code == scard.SCARD_S_SUCCESS and status[3] != self._protocol):
            self._reconnect()

    def _reconnect(self) -> None:
        """Reconnect without touching the card; waits (bounded) for another's transaction."""
        what = "Reconnecting after a reset"
        deadline = time.monotonic() + self._transaction_timeout
        while True:
            hresult, protocol = self._call(
                what,
                self._timeout,
                scard.SCardReconnect,
                self._hcard,
                self._mode,
                _PROTOCOLS,
                scard.SCARD_LEAVE_CARD,
            )
            code = hresult & _U32
            if code != _SHARING:
                break
            if time.monotonic() >= deadline:
                raise TransportTimeoutError(
                    f"{what}: {self.reader!r} stayed in another process's transaction for"
                    f" {self._transaction_timeout:g} s"
                )
            time.sleep(_RETRY)
        if code == _RESET:
            raise CardResetError(f"{what}: the card was reset again")
        _check(hresult, what)
        self._protocol = protocol
        self._exchanged = False
        logger.debug("%s: protocol %d", what, protocol)

    def _end(self, disposition: int) -> None:
        # Never raises: the operation inside the transaction is complete; a card that cannot be
        # reset now is reset (or left) by close().
        try:
            hresult = self._call(
                "Ending transaction",
                self._timeout,
                scard.SCardEndTransaction,
                self._hcard,
                disposition,
            )
        except TransportError as e:
            logger.info("%s", e)
            return
        if hresult & _U32 != scard.SCARD_S_SUCCESS:
            logger.info("Ending transaction: %s", scard.SCardGetErrorMessage(hresult))
        elif disposition == scard.SCARD_RESET_CARD:
            self._dirty = False
            self._reset_owed = False
            # Our own reset flags our handle too: the next exchange reconnects (nothing of this
            # connection's state is lost) instead of raising CardResetError.
            self._exchanged = False

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        """Exchange one APDU.

        :raises TransportTimeoutError: no answer within the exchange timeout (the connection is
            abandoned).
        :raises CardResetError: the card was reset since an earlier exchange of this connection.
        """
        log_command(logger, apdu)
        self._dirty = True
        hresult, response = self._transmit(apdu)
        if hresult & _U32 in (_RESET, _PROTO_MISMATCH) and not self._exchanged:
            # Reset before this connection's first exchange (outside a transaction; inside one,
            # _begin has checked): nothing of ours was lost, so reconnect and send it again.
            self._reconnect()
            hresult, response = self._transmit(apdu)
        _check(hresult, "Transmitting APDU")
        self._exchanged = True
        if len(response) < 2:
            raise CardRemovedError(f"Card answered {len(response)} bytes, no status word")
        data, sw = bytes(response[:-2]), (response[-2] << 8) | response[-1]
        log_response(logger, data, sw)
        return data, sw

    def _transmit(self, apdu: bytes) -> tuple[int, list[int]]:
        hresult, response = self._call(
            "Transmitting APDU",
            self._timeout,
            scard.SCardTransmit,
            self._hcard,
            self._protocol,
            list(apdu),
        )
        return hresult, response

    def close(self) -> None:
        """Disconnect, resetting the card if ``reset_on_close`` and APDUs were sent since the
        last transaction that ended with a reset."""
        if self._hcontext is None:
            return
        reset = (self._reset_on_close and self._dirty) or self._reset_owed
        disposition = scard.SCARD_RESET_CARD if reset else scard.SCARD_LEAVE_CARD
        if self._hcard is not None:
            try:
                # A reset waits in pcscd for another process's transaction to end.
                self._call(
                    "Disconnecting",
                    self._transaction_timeout,
                    scard.SCardDisconnect,
                    self._hcard,
                    disposition,
                )
            except TransportTimeoutError as e:
                logger.info("%s", e)
                return
        hcontext, self._hcontext = self._hcontext, None
        self._worker.stop()
        scard.SCardReleaseContext(hcontext)
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
