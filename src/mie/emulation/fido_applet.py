"""The FIDO applet of an emulated key on a contactless card (CTAP 2.1 §11.3, NFC): what
python-fido2's ``fido2.pcsc.CtapPcscDevice`` and mie's
:class:`~mie.transport.ctap.SmartCardCtapDevice` drive through pcscd.

:class:`EmulatedFidoApplet` is an :class:`~mie.emulation.base.EmulatedCard` over the CTAP engine
(:meth:`mie.emulation.ctap2.EmulatedAuthenticator.handle`), hosted on vpcd like the other
emulated cards. It answers:

- SELECT ``00 A4 04 00 08 A0000006472F0001`` with ``FIDO_2_0`` (a CTAP2-only key), or with
  ``U2F_V2`` as most real NFC keys answer (``select_version``: they also speak CTAP1, which
  this applet does not; a host decides CTAP2 by getInfo); any other command before it ``6985``;
- NFCCTAP_MSG ``80 10 P1 00 Lc data``, the request in pieces of CLA ``90`` (each ``9000``)
  then one of CLA ``80``. The engine runs on a worker thread; with P1 ``80`` (the host polls)
  a command still waiting for the user is answered ``9100`` and one keepalive status byte
  (``01`` processing, ``02`` touch needed), and the host asks again with NFCCTAP_GETRESPONSE
  ``80 11 00 00``, or cancels with ``80 11 11 00`` (the engine's ``cancelled`` event: CTAP
  ``KEEPALIVE_CANCEL``). With P1 ``00`` the answer waits for the engine;
- an answer longer than Le (256 at most) in ``61xx`` pieces, read with GET RESPONSE
  ``00 C0 00 00 Le`` (``xx`` = the bytes left, ``00`` for 256 or more);
- CTAP1 (``01``/``02``/``03``) and any other instruction ``6D00``, another class ``6E00``,
  a malformed APDU ``6700``.

Power off (and a reset) power-cycles the key (:meth:`EmulatedAuthenticator.power_cycle`).
No APDU payload is logged: PIN material travels in them, encrypted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from fido2.ctap import STATUS, CtapError

from mie.core.apdu import CommandApdu
from mie.core.errors import ApduFormatError
from mie.emulation.base import CardGone, EmulatedCard

__all__ = ["AID_FIDO", "ATR", "EmulatedFidoApplet", "FidoEngine"]

log = logging.getLogger(__name__)

#: The PC/SC part 3 pseudo-ATR of a contactless card with no historical bytes.
ATR = bytes.fromhex("3B80800101")
AID_FIDO = bytes.fromhex("A0000006472F0001")
VERSION = b"FIDO_2_0"
#: The SELECT answers of CTAP 2.1 §11.3.3: CTAP2 only, or CTAP1 too (a dual-protocol key).
SELECT_VERSIONS = (VERSION, b"U2F_V2")

CLA_ISO = 0x00
CLA_PROPRIETARY = 0x80
CLA_CHAINING = 0x10
INS_SELECT = 0xA4
INS_GET_RESPONSE = 0xC0
INS_NFCCTAP_MSG = 0x10
INS_NFCCTAP_GETRESPONSE = 0x11
P1_GETRESPONSE_SUPPORTED = 0x80
P1_CANCEL = 0x11

SW_OK = 0x9000
SW_UPDATE = 0x9100
SW_MORE = 0x6100
SW_WRONG_LENGTH = 0x6700
SW_NOT_SATISFIED = 0x6985
SW_NOT_FOUND = 0x6A82
SW_WRONG_P1P2 = 0x6A86
SW_INS_UNKNOWN = 0x6D00
SW_CLA_UNKNOWN = 0x6E00

#: The largest CTAP request taken, in chained pieces (CTAPHID's limit: 57 + 128 x 59 bytes).
MAX_REQUEST = 7609
#: How long NFCCTAP_MSG (P1 ``80``) waits for the engine's answer before ``9100``, unless the
#: engine says sooner that it awaits the user: a busy machine does not turn a quick command
#: into polling.
FIRST_WAIT_S = 1.0
#: How long an NFCCTAP_GETRESPONSE poll waits for the engine before answering ``9100``.
POLL_WAIT_S = 0.1
#: How long an NFCCTAP command without polling (P1 ``00``) waits at most: longer than the
#: engine's own 30 s user-presence timeout.
BLOCKING_WAIT_S = 40.0


class FidoEngine(Protocol):
    """What the applet needs of a key: :class:`mie.emulation.ctap2.EmulatedAuthenticator`."""

    def handle(
        self,
        cmd: int,
        payload: bytes,
        *,
        keepalive: Callable[[int], None],
        cancelled: threading.Event,
    ) -> bytes: ...

    def power_cycle(self) -> None: ...


class _Job:
    """One CTAP command running on its worker thread."""

    def __init__(self, engine: FidoEngine, request: bytes) -> None:
        self.cancelled = threading.Event()
        self.done = threading.Event()
        self.news = threading.Event()  # done, or the user awaited
        self.status = int(STATUS.PROCESSING)
        self.response = b""
        self.pulled: str | None = None
        self._thread = threading.Thread(
            target=self._run, args=(engine, request), name="mie-fido-applet", daemon=True
        )
        self._thread.start()

    def _keepalive(self, status: int) -> None:
        self.status = status
        if status == STATUS.UPNEEDED:
            self.news.set()

    def _run(self, engine: FidoEngine, request: bytes) -> None:
        try:
            self.response = engine.handle(
                request[0], request[1:], keepalive=self._keepalive, cancelled=self.cancelled
            )
        except OSError as e:  # the engine's pull fault: the key leaves the field
            self.pulled = str(e) or "the key was pulled"
        except Exception:  # a bug answers CTAP ERR_OTHER, the host keeps a working card
            log.exception("CTAP engine failed")
            self.response = bytes([CtapError.ERR.OTHER])
        finally:
            self.done.set()
            self.news.set()


class EmulatedFidoApplet(EmulatedCard):
    """An emulated key's FIDO applet on a contactless card.

    :param engine: the CTAP engine (an ``EmulatedAuthenticator``).
    :param fail_after: test fault: answer this many APDUs, then leave the field (the next one
        raises :class:`~mie.emulation.base.CardGone` unanswered), as a key pulled from the
        reader mid-operation (``mie emulate fido2 --fail-after``); ``None`` never.
    :param select_version: the SELECT answer, ``b"FIDO_2_0"`` or ``b"U2F_V2"`` (a key like the
        YubiKey 5 NFC; CTAP1 commands are still ``6D00``).
    :raises ValueError: another ``select_version``.
    """

    def __init__(
        self,
        engine: FidoEngine,
        *,
        fail_after: int | None = None,
        select_version: bytes = VERSION,
    ) -> None:
        if select_version not in SELECT_VERSIONS:
            raise ValueError(f"A FIDO applet answers FIDO_2_0 or U2F_V2, not {select_version!r}")
        self.engine = engine
        self.fail_after = fail_after
        self.select_version = bytes(select_version)
        self.answered = 0
        self._selected = False
        self._chain = bytearray()
        self._out = b""
        self._job: _Job | None = None
        self._pulled: str | None = None

    def __repr__(self) -> str:
        return f"EmulatedFidoApplet(selected={self._selected}, busy={self._job is not None})"

    @property
    def atr(self) -> bytes:
        return ATR

    @property
    def gone(self) -> bool:
        """Whether the key left the field: ``fail_after`` answers given, or the engine pulled."""
        limit = self.fail_after
        return self._pulled is not None or (limit is not None and self.answered >= limit)

    def power_on(self) -> None:
        self._forget()

    def power_off(self) -> None:
        self._forget()
        self.engine.power_cycle()

    def _forget(self) -> None:
        job, self._job = self._job, None
        if job is not None:
            job.cancelled.set()
            # The engine returns at once when cancelled; power_cycle then sees it idle.
            job.done.wait(1.0)
        self._selected = False
        self._chain = bytearray()
        self._out = b""

    def process(self, apdu: bytes) -> bytes:
        """Answer one APDU; never raises but :class:`~mie.emulation.base.CardGone` (the key
        left the field)."""
        if self.gone:
            raise CardGone(self._pulled or f"The key answered {self.answered} APDUs (fail_after)")
        try:
            data, sw = self._process(bytes(apdu))
        except Exception:
            log.exception("Emulated FIDO applet failed on a command; answering 6F00")
            self._forget()
            data, sw = b"", 0x6F00
        if self._pulled is not None:
            raise CardGone(self._pulled)
        self.answered += 1
        return data + sw.to_bytes(2, "big")

    def _process(self, raw: bytes) -> tuple[bytes, int]:
        try:
            command = CommandApdu.parse(raw)
        except ApduFormatError:
            return b"", SW_WRONG_LENGTH
        cla = command.cla & ~CLA_CHAINING
        if cla not in (CLA_ISO, CLA_PROPRIETARY):
            return b"", SW_CLA_UNKNOWN
        chained = bool(command.cla & CLA_CHAINING)
        if chained and (cla, command.ins) != (CLA_PROPRIETARY, INS_NFCCTAP_MSG):
            return b"", SW_CLA_UNKNOWN
        if (cla, command.ins) == (CLA_ISO, INS_SELECT):
            return self._select(command)
        if not self._selected:
            return b"", SW_NOT_SATISFIED
        if (cla, command.ins) == (CLA_ISO, INS_GET_RESPONSE):
            return self._get_response(command)
        if (cla, command.ins) == (CLA_PROPRIETARY, INS_NFCCTAP_MSG):
            return self._message(command, chained)
        if (cla, command.ins) == (CLA_PROPRIETARY, INS_NFCCTAP_GETRESPONSE):
            return self._poll(command)
        return b"", SW_INS_UNKNOWN

    def _select(self, command: CommandApdu) -> tuple[bytes, int]:
        if (command.p1, command.p2) != (0x04, 0x00):
            return b"", SW_WRONG_P1P2
        self._forget()
        if command.data != AID_FIDO:
            return b"", SW_NOT_FOUND
        self._selected = True
        return self.select_version, SW_OK

    def _message(self, command: CommandApdu, chained: bool) -> tuple[bytes, int]:
        if self._job is not None:
            return b"", SW_NOT_SATISFIED
        if len(self._chain) + len(command.data) > MAX_REQUEST:
            self._chain = bytearray()
            return b"", SW_WRONG_LENGTH
        self._chain += command.data
        if chained:
            return b"", SW_OK
        request, self._chain = bytes(self._chain), bytearray()
        if not request:
            return b"", SW_WRONG_LENGTH
        self._out = b""
        self._job = _Job(self.engine, request)
        if command.p1 & P1_GETRESPONSE_SUPPORTED:
            self._job.news.wait(FIRST_WAIT_S)
            return self._answer(0.0, command.le)
        return self._answer(BLOCKING_WAIT_S, command.le)

    def _poll(self, command: CommandApdu) -> tuple[bytes, int]:
        job = self._job
        if job is None:
            return b"", SW_NOT_SATISFIED
        if command.p1 == P1_CANCEL:
            job.cancelled.set()
        return self._answer(POLL_WAIT_S, command.le)

    def _answer(self, wait: float, le: int | None) -> tuple[bytes, int]:
        """The engine's answer once it is there, else ``9100`` and the keepalive status."""
        job = self._job
        assert job is not None  # noqa: S101 - called with a job
        if not job.done.wait(wait):
            if wait >= BLOCKING_WAIT_S:
                job.cancelled.set()
                job.done.wait(1.0)
                self._job = None
                return bytes([CtapError.ERR.USER_ACTION_TIMEOUT]), SW_OK
            return bytes([job.status]), SW_UPDATE
        self._job = None
        if job.pulled is not None:
            self._pulled = job.pulled
            return b"", SW_NOT_SATISFIED
        self._out = job.response
        return self._next_piece(le)

    def _get_response(self, command: CommandApdu) -> tuple[bytes, int]:
        if not self._out:
            return b"", SW_NOT_SATISFIED
        return self._next_piece(command.le)

    def _next_piece(self, le: int | None) -> tuple[bytes, int]:
        size = min(le or 256, 256)
        piece, self._out = self._out[:size], self._out[size:]
        if self._out:
            return piece, SW_MORE | min(len(self._out), 256) & 0xFF
        return piece, SW_OK
