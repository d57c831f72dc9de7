"""The device side of CTAPHID (CTAP 2.1 §11.2) over an emulated key, and an in-memory HID
connection python-fido2's own ``fido2.hid.CtapHidDevice`` drives.

:class:`CtapHidFraming` takes the host's 64-byte output reports (:meth:`~CtapHidFraming.feed`)
and gives back input reports (:meth:`~CtapHidFraming.read`): INIT on the broadcast channel
(its 8-byte nonce echoed with a new channel id), initialisation and continuation packets with
sequence numbers, PING, WINK, CANCEL, CBOR to
:meth:`mie.emulation.ctap2.EmulatedAuthenticator.handle` on a worker thread, KEEPALIVE reports
every 100 ms while it runs, and ERROR reports for a bad channel, sequence or length, a busy
channel or a missing continuation. A message is at most 7609 bytes (57 + 128 x 59). Nothing
raises out of :meth:`~CtapHidFraming.feed`: an unexpected failure is an ``ERR_OTHER`` report.

:class:`InMemoryHidConnection` is a ``fido2.hid.base.CtapHidConnection``:
``CtapHidDevice(hid_descriptor(), InMemoryHidConnection(CtapHidFraming(key)))``.
No report payload is logged (a PIN travels in them, encrypted, but still).
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from fido2.ctap import STATUS, CtapError
from fido2.hid import CTAPHID
from fido2.hid.base import CtapHidConnection, HidDescriptor

__all__ = [
    "FIDO_REPORT_DESCRIPTOR",
    "MAX_MESSAGE",
    "CtapHidFraming",
    "InMemoryHidConnection",
    "hid_descriptor",
]

log = logging.getLogger(__name__)
ERR = CtapError.ERR

BROADCAST_CID = 0xFFFFFFFF
TYPE_INIT = 0x80
REPORT_SIZE = 64
INIT_DATA = REPORT_SIZE - 7
CONT_DATA = REPORT_SIZE - 5
MAX_MESSAGE = INIT_DATA + 128 * CONT_DATA  # 7609
MAX_CHANNELS = 16
MAX_QUEUED = 512
MSG_TIMEOUT_S = 0.5
KEEPALIVE_S = 0.1
PROTOCOL_VERSION = 2
DEVICE_VERSION = (1, 0, 0)

#: The FIDO HID report descriptor: usage page F1D0, usage 01, 64-byte input and output reports.
FIDO_REPORT_DESCRIPTOR = bytes.fromhex(
    "06D0F1 0901 A101 0920 1500 26FF00 7508 9540 8102 0921 1500 26FF00 7508 9540 9102 C0"
)


class CtapEngine(Protocol):
    """What the framing needs of a key: :class:`mie.emulation.ctap2.EmulatedAuthenticator`."""

    @property
    def capabilities(self) -> int: ...

    def handle(
        self,
        cmd: int,
        payload: bytes,
        *,
        keepalive: Callable[[int], None],
        cancelled: threading.Event,
    ) -> bytes: ...


class _Assembly:
    """A request being received: its channel, command, declared length and data so far."""

    def __init__(self, cid: int, cmd: int, length: int, data: bytes) -> None:
        self.cid = cid
        self.cmd = cmd
        self.length = length
        self.data = bytearray(data)
        self.seq = 0
        self.deadline = time.monotonic() + MSG_TIMEOUT_S


class CtapHidFraming:
    """The CTAPHID device side of ``engine`` (64-byte reports).

    :param engine: the CTAP engine (an ``EmulatedAuthenticator``).
    :param rng: random bytes (channel ids).
    """

    def __init__(self, engine: CtapEngine, *, rng: Callable[[int], bytes] = os.urandom) -> None:
        self._engine = engine
        self._rng = rng
        self._channels: deque[int] = deque()
        self._assembly: _Assembly | None = None
        self._busy_cid: int | None = None
        self._cancelled = threading.Event()
        self._status = int(STATUS.PROCESSING)
        self._last_keepalive = 0.0
        self._out: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._generation = 0

    def __repr__(self) -> str:
        return f"CtapHidFraming(channels={len(self._channels)}, busy={self._busy_cid is not None})"

    @property
    def busy(self) -> bool:
        """:return: whether a CBOR command is running."""
        with self._cond:
            return self._busy_cid is not None

    def disconnect(self) -> None:
        """The host went away (a socket client closed): a running command is cancelled and its
        answer dropped, a half-received request and the queued reports are forgotten, so the
        next host reads only its own answers. Channels stay allocated."""
        with self._cond:
            self._generation += 1
            self._cancelled.set()
            self._busy_cid = None
            self._assembly = None
            self._out.clear()

    def close(self) -> None:
        """Stop answering: later reports are dropped, a running command is cancelled."""
        with self._cond:
            self._closed = True
            self._cancelled.set()
            self._out.clear()
            self._cond.notify_all()

    # Host to device

    def feed(self, report: bytes) -> None:
        """Take one output report from the host. Never raises."""
        try:
            with self._cond:
                if not self._closed:
                    self._feed(bytes(report))
        except Exception:  # a bug must not kill the host's transport
            log.exception("CTAPHID report handling failed")
            cid = int.from_bytes(report[:4], "big") if len(report) >= 4 else BROADCAST_CID
            with self._cond:
                self._assembly = None
                self._error(cid, ERR.OTHER)

    def _feed(self, report: bytes) -> None:
        self._expire()
        if len(report) < 5:
            log.debug("CTAPHID report of %d bytes dropped", len(report))
            return
        cid = int.from_bytes(report[:4], "big")
        if len(report) != REPORT_SIZE:
            self._error(cid, ERR.INVALID_LENGTH)
            return
        if cid == 0:
            self._error(cid, ERR.INVALID_CHANNEL)
            return
        if report[4] & TYPE_INIT:
            self._init_packet(cid, report[4] & 0x7F, report)
        else:
            self._continuation(cid, report[4], report[5:])

    def _init_packet(self, cid: int, cmd: int, report: bytes) -> None:
        length = struct.unpack_from(">H", report, 5)[0]
        data = report[7 : 7 + min(length, INIT_DATA)]
        if cmd == CTAPHID.INIT:
            self._init(cid, length, data)
            return
        if cid == BROADCAST_CID or cid not in self._channels:
            self._error(cid, ERR.INVALID_CHANNEL)
            return
        if cmd == CTAPHID.CANCEL:
            if self._busy_cid == cid:
                self._cancelled.set()
            return
        if self._busy_cid is not None or (self._assembly and self._assembly.cid != cid):
            self._error(cid, ERR.CHANNEL_BUSY)
            return
        if self._assembly is not None:  # the same channel starts over mid-message
            self._assembly = None
            self._error(cid, ERR.INVALID_SEQ)
            return
        if length > MAX_MESSAGE:
            self._error(cid, ERR.INVALID_LENGTH)
            return
        assembly = _Assembly(cid, cmd, length, data)
        if len(assembly.data) >= length:
            self._dispatch(assembly)
        else:
            self._assembly = assembly

    def _init(self, cid: int, length: int, nonce: bytes) -> None:
        if length != 8:
            self._error(cid, ERR.INVALID_LENGTH)
            return
        if cid == BROADCAST_CID:
            new_cid = self._allocate()
        elif cid in self._channels:
            new_cid = cid  # resynchronise: abort what this channel was sending or running
            if self._assembly is not None and self._assembly.cid == cid:
                self._assembly = None
            if self._busy_cid == cid:  # its running command is cancelled, its answer dropped
                self._generation += 1
                self._cancelled.set()
                self._busy_cid = None
        else:
            self._error(cid, ERR.INVALID_CHANNEL)
            return
        body = nonce + struct.pack(
            ">IB3BB", new_cid, PROTOCOL_VERSION, *DEVICE_VERSION, self._engine.capabilities
        )
        self._send(cid, CTAPHID.INIT, body)

    def _allocate(self) -> int:
        while True:
            new_cid = int.from_bytes(self._rng(4), "big")
            if new_cid not in (0, BROADCAST_CID) and new_cid not in self._channels:
                break
        if len(self._channels) >= MAX_CHANNELS:
            self._channels.popleft()
        self._channels.append(new_cid)
        return new_cid

    def _continuation(self, cid: int, seq: int, data: bytes) -> None:
        assembly = self._assembly
        if assembly is None or assembly.cid != cid:
            if cid in self._channels and (self._busy_cid is not None or assembly is not None):
                self._error(cid, ERR.CHANNEL_BUSY)
            # a spurious continuation on an idle device is ignored (CTAP 2.1 §11.2.4)
            return
        if seq != assembly.seq:
            self._assembly = None
            self._error(cid, ERR.INVALID_SEQ)
            return
        assembly.seq += 1
        assembly.data += data[: assembly.length - len(assembly.data)]
        if len(assembly.data) >= assembly.length:
            self._assembly = None
            self._dispatch(assembly)

    def _dispatch(self, assembly: _Assembly) -> None:
        cid, cmd, data = assembly.cid, assembly.cmd, bytes(assembly.data)
        if cmd == CTAPHID.PING:
            self._send(cid, cmd, data)
        elif cmd == CTAPHID.WINK:
            if data:
                self._error(cid, ERR.INVALID_LENGTH)
            else:
                self._send(cid, cmd, b"")
        elif cmd == CTAPHID.CBOR:
            if not data:
                self._error(cid, ERR.INVALID_LENGTH)
                return
            self._busy_cid = cid
            self._cancelled = threading.Event()
            self._status = int(STATUS.PROCESSING)
            self._last_keepalive = time.monotonic()
            worker = threading.Thread(
                target=self._run, args=(cid, data, self._cancelled, self._generation), daemon=True
            )
            worker.start()
        else:  # MSG (no CTAP1), LOCK (not offered), vendor commands
            self._error(cid, ERR.INVALID_COMMAND)

    def _run(self, cid: int, data: bytes, cancelled: threading.Event, generation: int) -> None:
        def keepalive(status: int) -> None:
            with self._cond:
                if generation == self._generation:
                    self._status = status

        try:
            response = self._engine.handle(
                data[0], data[1:], keepalive=keepalive, cancelled=cancelled
            )
        except Exception:
            log.exception("CTAP engine failed")
            response = bytes([ERR.OTHER])
        with self._cond:
            if generation != self._generation:
                return  # its host left (disconnect): the answer goes nowhere
            self._busy_cid = None
            if not self._closed:
                self._send(cid, CTAPHID.CBOR, response)

    def _expire(self) -> None:
        assembly = self._assembly
        if assembly is not None and time.monotonic() > assembly.deadline:
            self._assembly = None
            self._error(assembly.cid, ERR.TIMEOUT)

    # Device to host

    def _error(self, cid: int, code: int) -> None:
        log.debug("CTAPHID error 0x%02x on channel %08x", code, cid)
        self._send(cid, CTAPHID.ERROR, bytes([code]))

    def _send(self, cid: int, cmd: int, data: bytes) -> None:
        header = struct.pack(">IBH", cid, TYPE_INIT | cmd, len(data))
        packets = [(header + data[:INIT_DATA]).ljust(REPORT_SIZE, b"\0")]
        for seq, offset in enumerate(range(INIT_DATA, len(data), CONT_DATA)):
            chunk = struct.pack(">IB", cid, seq) + data[offset : offset + CONT_DATA]
            packets.append(chunk.ljust(REPORT_SIZE, b"\0"))
        if len(self._out) + len(packets) > MAX_QUEUED:
            log.debug("CTAPHID output queue full: %d reports dropped", len(packets))
            return
        self._out.extend(packets)
        self._cond.notify_all()

    def read(self, timeout: float) -> bytes | None:
        """The next input report, a KEEPALIVE every 100 ms while a command runs.

        :param timeout: seconds to wait at most.
        :return: a 64-byte report, or ``None`` when nothing came in time (or after close).
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while True:
                self._expire()
                if self._out:
                    return self._out.popleft()
                now = time.monotonic()
                if self._closed or now >= deadline:
                    return None
                if self._busy_cid is not None and now - self._last_keepalive >= KEEPALIVE_S:
                    self._last_keepalive = now
                    header = struct.pack(
                        ">IBHB", self._busy_cid, TYPE_INIT | CTAPHID.KEEPALIVE, 1, self._status
                    )
                    return header.ljust(REPORT_SIZE, b"\0")
                self._cond.wait(min(deadline - now, KEEPALIVE_S))


class InMemoryHidConnection(CtapHidConnection):
    """A python-fido2 HID connection to a :class:`CtapHidFraming` in the same process.

    :param framing: the device side.
    :param timeout: seconds ``read_packet`` waits before ``OSError("The emulated key is silent")``.
    :param fail_after: pull the key after this many reports read (tests), ``None`` never.
    """

    def __init__(
        self, framing: CtapHidFraming, *, timeout: float = 5.0, fail_after: int | None = None
    ) -> None:
        self._framing = framing
        self._timeout = timeout
        self._fail_after = fail_after
        self._read = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"InMemoryHidConnection(closed={self._closed})"

    def write_packet(self, data: bytes) -> None:
        if self._closed:
            raise OSError("The emulated key connection is closed")
        if len(data) != REPORT_SIZE:
            raise OSError(f"A CTAPHID report is {REPORT_SIZE} bytes, got {len(data)}")
        self._framing.feed(data)

    def read_packet(self) -> bytes:
        if self._closed:
            raise OSError("The emulated key connection is closed")
        if self._fail_after is not None and self._read >= self._fail_after:
            self._closed = True
            self._framing.close()
            raise OSError("The emulated key was removed")
        report = self._framing.read(self._timeout)
        if report is None:
            raise OSError("The emulated key is silent")
        self._read += 1
        return report

    def close(self) -> None:
        self._closed = True


def hid_descriptor(path: str = "mie-emulated-key", serial: str | None = None) -> HidDescriptor:
    """:return: the HID descriptor of an emulated key (vendor 0x1209, product 0x0001, 64-byte
    reports)."""
    return HidDescriptor(
        path, 0x1209, 0x0001, REPORT_SIZE, REPORT_SIZE, "mie emulated FIDO2 key", serial
    )
