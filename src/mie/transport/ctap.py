"""CTAP devices for python-fido2 over mie's transports: a FIDO applet on a smart card
(:class:`SmartCardCtapDevice`, NFCCTAP over any :class:`~mie.core.connection.SmartCardConnection`),
an emulated key's HID reports on a Unix socket (:class:`SocketHidConnection`), and
:func:`open_ctap_device` / :func:`list_ctap_devices` for the ``--key`` specs.

Whatever the transport, a key that goes away (a HID read or write failing, the socket closed,
python-fido2's ``ConnectionFailure``, the card leaving the reader) is
:class:`~mie.errors.CardRemovedError` (``card_removed``); a key that stops answering is
:class:`~mie.errors.TransportTimeoutError`. Every wait has a deadline.

This module imports python-fido2 (the ``fido`` extra); ``pcsc:`` specs need pyscard.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fido2.ctap import STATUS, CtapDevice, CtapError
from fido2.hid import CAPABILITY, CTAPHID, ConnectionFailure, CtapHidDevice
from fido2.hid.base import CtapHidConnection

from mie.core.connection import SmartCardConnection, Transport
from mie.core.errors import (
    CardRemovedError,
    ErrorCode,
    MieError,
    NoCardError,
    TransportError,
    TransportTimeoutError,
)
from mie.fido.errors import CtapStatusError, TouchTimeoutError

__all__ = [
    "AID_FIDO",
    "KeyListing",
    "KeySpecError",
    "SmartCardCtapDevice",
    "SocketHidConnection",
    "list_ctap_devices",
    "open_ctap_device",
]

log = logging.getLogger(__name__)
ERR = CtapError.ERR

AID_FIDO = bytes.fromhex("A0000006472F0001")
SELECT_FIDO = bytes.fromhex("00A4040008") + AID_FIDO + b"\x00"
REPORT_SIZE = 64
#: A chained NFCCTAP piece (python-fido2 and CTAP 2.1 §11.3.2 use 250).
CHAIN_PIECE = 250
#: The largest answer read through ``61xx`` GET RESPONSE pieces.
MAX_RESPONSE = 8192
POLL_INTERVAL_S = 0.1
#: How long a command may wait for the user (the key's own limit is 30 s).
USER_WAIT_S = 45.0
#: How long a USB key may stay silent. Keys should send a keepalive every 100 ms while they
#: work, but one that does not may stay quiet until its own user-presence timeout (30 s): the
#: bound is above it and above :data:`USER_WAIT_S`.
HID_SILENCE_S = 60.0
_SPECS = "hid:PATH, socket:PATH, pcsc:READER or emulator[:STATE] expected"
#: What a FIDO applet answers to its SELECT (CTAP 2.1 §11.3.3): ``U2F_V2`` for a key that also
#: speaks CTAP1 (most NFC keys, the YubiKey 5 NFC among them), ``FIDO_2_0`` for a CTAP2-only
#: one. Neither says whether CTAP2 is there: getInfo decides.
SELECT_VERSIONS = ("FIDO_2_0", "U2F_V2")


@dataclass(frozen=True)
class KeyListing:
    """A FIDO key :func:`list_ctap_devices` found.

    :param spec: what to give :func:`open_ctap_device` (``hid:/dev/hidraw3``, ``pcsc:READER``).
    :param transport: ``hid`` or ``pcsc``.
    :param name: the product name (HID) or the reader name (PC/SC).
    """

    spec: str
    transport: str
    name: str

    def to_json(self) -> dict[str, str]:
        """:return: ``{"spec", "transport", "name"}``."""
        return {"spec": self.spec, "transport": self.transport, "name": self.name}


class KeySpecError(MieError, ValueError):
    """A key spec of no known form (``hid:PATH``, ``socket:PATH``, ``pcsc:READER``,
    ``emulator[:STATE]``)."""

    code = ErrorCode.USAGE


@contextlib.contextmanager
def removal_errors(name: str) -> Iterator[None]:
    """Turn a key that went away into :class:`~mie.errors.CardRemovedError`: ``OSError`` (a HID
    node or socket gone), python-fido2's ``ConnectionFailure`` (a broken answer); mie's own
    errors pass unchanged.

    :param name: the key, for the message.
    """
    try:
        yield
    except MieError:
        raise
    except (OSError, ConnectionFailure) as e:
        raise CardRemovedError(f"The FIDO key {name} was removed: {e}") from e


class _Guarded(CtapDevice):
    """A python-fido2 device whose pulls raise :class:`~mie.errors.CardRemovedError`.

    :param transport: how the key is reached (USB for HID reports), as
        :class:`~mie.fido.authenticator.Fido2Authenticator` reports it.
    """

    def __init__(self, inner: CtapDevice, name: str, transport: Transport | None = None) -> None:
        self._inner = inner
        self._name = name
        self.transport = transport

    def __repr__(self) -> str:
        return f"CtapDevice({self._name!r})"

    @property
    def capabilities(self) -> int:
        return int(self._inner.capabilities)

    @property
    def inner(self) -> CtapDevice:
        """:return: the python-fido2 device."""
        return self._inner

    def call(
        self,
        cmd: int,
        data: bytes = b"",
        event: threading.Event | None = None,
        on_keepalive: Callable[[STATUS], None] | None = None,
    ) -> bytes:
        with removal_errors(self._name):
            return self._inner.call(cmd, data, event, on_keepalive)

    def close(self) -> None:
        with contextlib.suppress(OSError, ConnectionFailure):
            self._inner.close()

    @classmethod
    def list_devices(cls) -> Iterator[CtapDevice]:
        return iter(())


class SmartCardCtapDevice(CtapDevice):
    """A FIDO applet on a smart card (NFC, CTAP 2.1 §11.3) as a python-fido2 device, over any
    mie connection (PC/SC with its deadlines and removal errors, or an emulated card).

    Selects the applet (``U2F_V2`` or ``FIDO_2_0``, as python-fido2's ``CtapPcscDevice`` takes)
    and decides CTAP2 by getInfo, as it does. Requests go in NFCCTAP_MSG with P1 ``80``
    (``90`` pieces of 250 bytes before the last), a ``9100`` answer is polled every 100 ms with
    NFCCTAP_GETRESPONSE (P1 ``11`` once ``event`` is set: a cancel), ``61xx`` answers are read
    with GET RESPONSE. Each call holds a transaction on the connection.

    :param connection: the card's connection (closed by :meth:`close`).
    :param name: the key's name in messages (the reader's).
    :param user_wait: seconds a command may wait for the user before it is cancelled
        (:class:`~mie.errors.TouchTimeoutError`).
    :raises CtapStatusError: no FIDO applet answers the SELECT, or it does not speak CTAP2.
    :raises CardRemovedError: the card left.
    """

    def __init__(
        self, connection: SmartCardConnection, *, name: str, user_wait: float = USER_WAIT_S
    ) -> None:
        self._connection = connection
        self._name = name
        self._user_wait = user_wait
        with self._guard():
            version = self._select()
            try:
                info = self.call(CTAPHID.CBOR, b"\x04")
            except CtapStatusError as e:  # a U2F-only applet: NFCCTAP_MSG unknown (6D00)
                raise CtapStatusError(
                    ERR.OTHER, f"{name}: the FIDO applet ({version}) does not speak CTAP2 ({e})"
                ) from e
        if not info or info[0] != 0:
            status = info[0] if info else ERR.OTHER
            raise CtapStatusError(status, f"{name}: the FIDO applet ({version}) refused getInfo")
        log.debug("FIDO applet on %s: %s", name, version)

    def __repr__(self) -> str:
        return f"SmartCardCtapDevice({self._name!r})"

    @property
    def capabilities(self) -> int:
        """:return: CBOR (no CTAP1 over this device)."""
        return int(CAPABILITY.CBOR)

    @property
    def connection(self) -> SmartCardConnection:
        """:return: the card's connection."""
        return self._connection

    @property
    def transport(self) -> Transport:
        """:return: how the card is reached (contactless for a key on an NFC reader)."""
        return self._connection.transport

    @classmethod
    def list_devices(cls) -> Iterator[CtapDevice]:
        """:return: nothing: open one with :func:`open_ctap_device` (``pcsc:READER``)."""
        return iter(())

    def close(self) -> None:
        with contextlib.suppress(TransportError, OSError):
            self._connection.close()

    def call(
        self,
        cmd: int,
        data: bytes = b"",
        event: threading.Event | None = None,
        on_keepalive: Callable[[STATUS], None] | None = None,
    ) -> bytes:
        """Run one CTAP2 command (``CTAPHID.CBOR``: command byte and CBOR).

        :raises CtapError: ``INVALID_COMMAND`` for anything but CBOR (no CTAP1, PING or WINK).
        :raises CtapStatusError: the applet answered a status word NFCCTAP has no place for.
        :raises TouchTimeoutError: the user did not act within ``user_wait``.
        :raises CardRemovedError: the card left.
        """
        if cmd != CTAPHID.CBOR:
            raise CtapError(ERR.INVALID_COMMAND)
        with self._guard(), self._connection.transaction():
            return self._call_cbor(bytes(data), event or threading.Event(), on_keepalive)

    def _guard(self) -> contextlib.AbstractContextManager[None]:
        return removal_errors(self._name)

    def _select(self) -> str:
        data, sw = self._read(SELECT_FIDO)  # an answer in 61xx pieces too, as python-fido2's
        if sw != 0x9000:
            raise CtapStatusError(ERR.OTHER, f"{self._name}: no FIDO applet (SELECT: SW {sw:04X})")
        version = data.decode("ascii", "replace")
        if version not in SELECT_VERSIONS:
            raise CtapStatusError(
                ERR.OTHER, f"{self._name}: the FIDO applet answered {version!r} to its SELECT"
            )
        return version

    def _call_cbor(
        self,
        data: bytes,
        event: threading.Event,
        on_keepalive: Callable[[STATUS], None] | None,
    ) -> bytes:
        while len(data) > CHAIN_PIECE:
            piece, data = data[:CHAIN_PIECE], data[CHAIN_PIECE:]
            _, sw = self._exchange(bytes([0x90, 0x10, 0x80, 0x00, len(piece)]) + piece)
            self._expect_ok(sw, "NFCCTAP_MSG (chained)")
        body = bytes([len(data)]) + data if data else b""
        response, sw = self._read(bytes([0x80, 0x10, 0x80, 0x00]) + body + b"\x00")
        deadline = time.monotonic() + self._user_wait
        last: STATUS | None = None
        cancelled = False
        while sw == 0x9100:
            status = _keepalive_status(response)
            if on_keepalive is not None and status != last:
                last = status
                on_keepalive(status)
            if time.monotonic() > deadline:
                self._read(bytes([0x80, 0x11, 0x11, 0x00, 0x00]))
                raise TouchTimeoutError(
                    f"{self._name}: nobody touched the key within {self._user_wait:g} s"
                )
            if not cancelled and event.wait(POLL_INTERVAL_S):
                cancelled = True
                p1 = 0x11
            else:
                p1 = 0x00
                if cancelled:
                    time.sleep(POLL_INTERVAL_S)
            response, sw = self._read(bytes([0x80, 0x11, p1, 0x00, 0x00]))
        self._expect_ok(sw, "NFCCTAP_MSG")
        return response

    def _read(self, apdu: bytes) -> tuple[bytes, int]:
        """Exchange ``apdu`` and read a ``61xx`` answer to its end: each GET RESPONSE must
        bring data (a card answering ``6100`` with none, for ever, would never reach the size
        bound), so at most :data:`MAX_RESPONSE` + 1 rounds."""
        data, sw = self._exchange(apdu)
        response = bytearray(data)
        while sw >> 8 == 0x61:
            if len(response) > MAX_RESPONSE:
                raise CtapStatusError(
                    ERR.OTHER, f"{self._name}: an answer longer than {MAX_RESPONSE} bytes"
                )
            data, sw = self._exchange(bytes([0x00, 0xC0, 0x00, 0x00, sw & 0xFF]))
            if not data and sw >> 8 == 0x61:
                raise CtapStatusError(
                    ERR.OTHER, f"{self._name}: a GET RESPONSE answered {sw:04X} with no data"
                )
            response += data
        return bytes(response), sw

    def _exchange(self, apdu: bytes) -> tuple[bytes, int]:
        return self._connection.send_and_receive(apdu)

    def _expect_ok(self, sw: int, what: str) -> None:
        if sw != 0x9000:
            raise CtapStatusError(ERR.OTHER, f"{self._name}: {what} answered SW {sw:04X}")


def _keepalive_status(response: bytes) -> STATUS:
    try:
        return STATUS(response[0])
    except (IndexError, ValueError):
        return STATUS.PROCESSING


class SocketHidConnection(CtapHidConnection):
    """The HID reports of ``mie emulate fido2 --hid-socket PATH``: one 64-byte report per
    ``SOCK_SEQPACKET`` message, either way.

    :param path: the socket's path.
    :param timeout: seconds a read waits for a report (the key sends a keepalive every 100 ms
        while it works, so silence means it hangs).
    :raises NoCardError: nothing listens at ``path``.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 5.0) -> None:
        self.path = os.fspath(path)
        self._timeout = timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.settimeout(timeout)
        try:
            sock.connect(self.path)
        except OSError as e:
            sock.close()
            raise NoCardError(
                f"No emulated FIDO key at socket {self.path} ({e.strerror or e})"
            ) from e
        self._sock: socket.socket | None = sock

    def __repr__(self) -> str:
        return f"SocketHidConnection({self.path!r})"

    def _socket(self) -> socket.socket:
        if self._sock is None:
            raise CardRemovedError(f"The key at socket {self.path} is closed")
        return self._sock

    def write_packet(self, data: bytes) -> None:
        if len(data) != REPORT_SIZE:
            raise ValueError(f"A CTAPHID report is {REPORT_SIZE} bytes, got {len(data)}")
        try:
            self._socket().send(bytes(data))
        except TimeoutError as e:
            raise TransportTimeoutError(f"The key at socket {self.path} takes no report") from e
        except OSError as e:
            self.close()
            raise CardRemovedError(f"The key at socket {self.path} was removed: {e}") from e

    def read_packet(self) -> bytes:
        try:
            report = self._socket().recv(REPORT_SIZE + 1)
        except TimeoutError as e:
            raise TransportTimeoutError(
                f"The key at socket {self.path} sent nothing for {self._timeout:g} s"
            ) from e
        except OSError as e:
            self.close()
            raise CardRemovedError(f"The key at socket {self.path} was removed: {e}") from e
        if not report:
            self.close()
            raise CardRemovedError(f"The key at socket {self.path} was removed (socket closed)")
        if len(report) != REPORT_SIZE:
            raise CardRemovedError(
                f"The key at socket {self.path} sent a {len(report)}-byte report, not 64"
            )
        return report

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def open_ctap_device(spec: str) -> CtapDevice:
    """Open the FIDO key ``spec`` names.

    - ``hid:/dev/hidrawN``: a USB key (python-fido2's HID backend);
    - ``socket:PATH``: ``mie emulate fido2 --hid-socket PATH``;
    - ``pcsc:READER``: the FIDO applet of the card in a PC/SC reader (a unique part of its name);
    - ``emulator`` or ``emulator:STATE``: an emulated key in this process, over python-fido2's
      own CTAPHID code (its credentials kept in the state file ``STATE`` when given; a
      ``STATE`` not there yet, in a directory that is, is a new key with no PIN set).

    :return: a python-fido2 device; a pull raises :class:`~mie.errors.CardRemovedError`.
    :raises KeySpecError: a spec of no known form, or an ``emulator:STATE`` whose directory
        is not there (a mistyped path would otherwise make a new, blank key).
    :raises NoCardError: nothing at that socket, or no card in that reader.
    :raises CtapStatusError: the card has no FIDO applet.
    """
    kind, sep, rest = spec.partition(":")
    if kind == "emulator":
        return _emulator(Path(rest) if sep and rest else None)
    if not sep or not rest or kind not in ("socket", "hid", "pcsc"):
        raise KeySpecError(f"--key {spec!r}: {_SPECS}")
    if kind == "socket":
        return _hid(SocketHidConnection(rest), rest, f"socket {rest}")
    if kind == "hid":
        return _open_hid(rest)
    return _open_pcsc(rest)


def _hid(connection: CtapHidConnection, path: str, name: str) -> CtapDevice:
    from mie.emulation.ctaphid import hid_descriptor

    try:
        with removal_errors(name):
            device = CtapHidDevice(hid_descriptor(path), connection)
    except BaseException:
        connection.close()
        raise
    return _Guarded(device, name, Transport.USB)


class _DeadlineHidConnection(CtapHidConnection):
    """A HID node whose reads end: python-fido2's hidraw ``read_packet`` is a bare blocking
    ``os.read``, so a key that hangs while plugged would hold the caller for ever. A read waits
    at most ``timeout`` seconds for the node to be readable (on a backend with a file
    descriptor: Linux and the BSDs), then raises :class:`~mie.errors.TransportTimeoutError`."""

    def __init__(self, inner: CtapHidConnection, name: str, timeout: float = HID_SILENCE_S):
        self._inner = inner
        self._name = name
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"HidConnection({self._name!r})"

    def write_packet(self, data: bytes) -> None:
        self._inner.write_packet(data)

    def read_packet(self) -> bytes:
        handle = getattr(self._inner, "handle", None)
        if isinstance(handle, int):
            ready, _, _ = select.select([handle], [], [], self._timeout)
            if not ready:
                raise TransportTimeoutError(
                    f"The FIDO key {self._name} sent nothing for {self._timeout:g} s"
                )
        return self._inner.read_packet()

    def close(self) -> None:
        self._inner.close()


def _open_hid(path: str) -> CtapDevice:
    from fido2.hid import get_descriptor, open_connection

    try:
        descriptor = get_descriptor(path)
        connection = _DeadlineHidConnection(open_connection(descriptor), path, HID_SILENCE_S)
    except (OSError, ConnectionFailure) as e:
        raise NoCardError(f"No FIDO key at {path}: {e}") from e
    try:
        device = CtapHidDevice(descriptor, connection)
    except (OSError, ConnectionFailure) as e:
        connection.close()
        raise NoCardError(f"No FIDO key at {path}: {e}") from e
    except BaseException:
        connection.close()
        raise
    return _Guarded(device, path, Transport.USB)


def _open_pcsc(reader: str) -> CtapDevice:
    from mie.transport.pcsc import PcscConnection

    connection = PcscConnection(reader)
    try:
        return SmartCardCtapDevice(connection, name=connection.reader)
    except BaseException:
        connection.close()
        raise


def _emulator(state: Path | None) -> CtapDevice:
    from mie.emulation.ctap2 import EmulatedAuthenticator
    from mie.emulation.ctaphid import CtapHidFraming, InMemoryHidConnection

    if state is not None and not state.parent.is_dir():
        raise KeySpecError(
            f"--key emulator:{state}: the directory {str(state.parent)!r} is not there"
            " (a new key's state file goes in a directory that is)"
        )
    options: dict[str, Any] = {} if state is None else {"state": state}
    engine = EmulatedAuthenticator(**options)
    return _hid(InMemoryHidConnection(CtapHidFraming(engine)), "emulator", "emulator")


def list_ctap_devices() -> list[KeyListing]:
    """The FIDO keys attached: USB keys (when python-fido2's HID backend can list them) and
    the cards of PC/SC readers whose FIDO applet answers (when pcscd runs).

    :return: one listing per key, HID first.
    """
    found = [*_list_hid(), *_list_pcsc()]
    log.debug("FIDO keys: %s", found)
    return found


def _list_hid() -> list[KeyListing]:
    try:
        from fido2.hid import list_descriptors

        descriptors = list(list_descriptors())
    except Exception as e:  # no hidraw, no backend: no HID keys
        log.debug("No HID listing: %s", e)
        return []
    listings = []
    for descriptor in descriptors:
        path = os.fsdecode(descriptor.path)
        listings.append(KeyListing(f"hid:{path}", "hid", descriptor.product_name or path))
    return listings


def _list_pcsc() -> list[KeyListing]:
    try:
        from mie.transport.pcsc import PcscConnection, list_readers

        readers = [r.name for r in list_readers() if r.card_present]
    except (ImportError, TransportError) as e:
        log.debug("No PC/SC listing: %s", e)
        return []
    listings = []
    for reader in readers:
        try:
            # No reset on close: a reset would end another process's session with the card.
            with PcscConnection(reader, reset_on_close=False) as connection:
                _, sw = connection.send_and_receive(SELECT_FIDO)
        except TransportError as e:
            log.debug("Reader %r: %s", reader, e)
            continue
        if sw == 0x9000 or sw >> 8 == 0x61:  # 61xx: the answer waits for GET RESPONSE
            listings.append(KeyListing(f"pcsc:{reader}", "pcsc", reader))
    return listings
