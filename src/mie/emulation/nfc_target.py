"""An emulated card as an ISO/IEC 14443-4 type A target for nfcpy's ``udp`` driver.

nfcpy's ``udp:HOST:PORT`` device (nfcpy 1.0.4 ``nfc/clf/udp.py``) is a reader that sends each
frame as one UDP datagram ``b"106A " + hex(frame)`` (no CRC) and ``RFOFF`` when it lets go. This
module plays the card side: ISO/IEC 14443-3 activation (REQA/WUPA, anticollision and select of a
7-byte UID or a 4-byte random one), RATS/ATS, then ISO-DEP I-blocks carrying the card's APDUs
(chained both ways, R(ACK), R(NAK), S(DESELECT)). No CID, no NAD.

The ATS announces FSCI 5 (64-byte frames) and FWI 11 (about 0.62 s; a real EV1 says FWI 8, 77
ms: the slack is for loaded CI machines). nfcpy waits only 30 ms for the ATS, so the thread
answers RATS at once and does no cryptography before it.
"""

from __future__ import annotations

import functools
import logging
import operator
import socket
import threading
from binascii import Error as HexError
from binascii import hexlify, unhexlify

from mie.emulation.base import CardGone
from mie.emulation.desfire import EmulatedDesfire

logger = logging.getLogger(__name__)

BIT_RATE = b"106A"
ATS = bytes.fromhex("067577B10280")
# The largest I-block information field the reader takes: its FSD (256, from RATS E0 80) less
# the PCB and the two CRC bytes nfcpy counts.
MAX_INF = 253
# The card's command buffer over a chain of I-blocks.
MAX_COMMAND = 4096
_POLL = 0.1
_REQA, _WUPA = b"\x26", b"\x52"
_CASCADE_TAG = 0x88
_SAK_CASCADE, _SAK_ISO_DEP = 0x24, 0x20


def _bcc(data: bytes) -> int:
    return functools.reduce(operator.xor, data, 0)


class UdpTypeATarget:
    """Present ``card`` to nfcpy's ``udp`` reader on ``host:port`` until :meth:`stop`.

    :param card: the badge.
    :param host: the address to listen on.
    :param port: the UDP port (nfcpy's default is 54321; 0 picks a free one, see :attr:`port`).
    """

    def __init__(self, card: EmulatedDesfire, host: str = "127.0.0.1", port: int = 54321) -> None:
        self.link = TypeALink(card)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind((host, port))
        self._socket.settimeout(_POLL)
        self.port: int = self._socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def card(self) -> EmulatedDesfire:
        """The badge presented."""
        return self.link.card

    @property
    def gone(self) -> threading.Event:
        """Set when the card left the field (:class:`~mie.emulation.base.CardGone`, a test
        fault): the target stopped serving."""
        return self.link.gone

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> UdpTypeATarget:
        """Serve in a daemon thread. :return: self."""
        self._thread = threading.Thread(target=self.serve_forever, name="udp-type-a", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close the socket."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> UdpTypeATarget:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Answer datagrams until :meth:`stop` or the card is gone; a malformed one is ignored,
        as noise on the air."""
        while not self._stop.is_set() and not self.gone.is_set():
            try:
                datagram, peer = self._socket.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            answer = self.link.answer(datagram)
            if answer is not None:
                self._socket.sendto(BIT_RATE + b" " + hexlify(answer), peer)


class TypeALink:
    """The card side of nfcpy's ``udp`` link, without the socket: one datagram in, the
    answer (a frame) out. :class:`UdpTypeATarget` serves it; the fuzz tests drive it directly.

    :param card: the badge.
    """

    def __init__(self, card: EmulatedDesfire) -> None:
        self.card = card
        self.gone = threading.Event()
        self._reset_link(powered=False)
        self._halted = False

    def answer(self, datagram: bytes) -> bytes | None:
        """:return: the frame answering ``datagram`` (``None``: no answer, as for noise, a
        frame out of sequence, ``RFOFF``, or a card gone)."""
        if self.gone.is_set():
            return None
        answered = self.card.answered
        try:
            answer = self._datagram(datagram)
        except CardGone as e:
            logger.info("Card gone: %s", e)
            self.gone.set()
            return None
        if self.card.answered != answered and self.card.gone and not self._pending:
            # Its last answer is this one: the card leaves the field once it is out.
            logger.info("Card gone after its last answer")
            self.gone.set()
        return answer

    # -- frames ---------------------------------------------------------------------------------

    def _reset_link(self, *, powered: bool) -> None:
        self._powered = powered
        self._level = 0  # cascade levels selected
        self._active = False  # selected (layer 3 done)
        self._protocol = False  # RATS answered (layer 4)
        self._block = 1  # the card's block number: the first I-block received carries 0
        self._chain = b""
        self._pending: list[bytes] = []

    def _datagram(self, datagram: bytes) -> bytes | None:
        if datagram.startswith(b"RFOFF"):
            if self._powered:
                self.card.power_off()
            self._reset_link(powered=False)
            self._halted = False
            return None
        brty, _, text = datagram.partition(b" ")
        if brty != BIT_RATE:
            return None
        try:
            frame = unhexlify(text.strip())
        except (HexError, ValueError):
            return None
        if not frame:
            return None
        if self._protocol:
            return self._iso_dep(frame)
        return self._activation(frame)

    def _uid(self) -> bytes:
        return self.card.anticollision_uid

    def _activation(self, frame: bytes) -> bytes | None:
        if frame in (_REQA, _WUPA):
            if self._halted and frame == _REQA:
                return None
            if not self._powered or self._halted:
                self.card.power_on()  # a new random UID for each activation
            self._reset_link(powered=True)
            self._halted = False
            return b"\x44\x03" if len(self._uid()) == 7 else b"\x04\x03"
        if not self._powered:
            return None
        uid = self._uid()
        double = len(uid) == 7
        levels = [bytes([_CASCADE_TAG]) + uid[:3], uid[3:7]] if double else [uid[:4]]
        for level, (sel, part) in enumerate(zip((0x93, 0x95), levels, strict=False)):
            if frame == bytes([sel, 0x20]) and self._level == level:
                return part + bytes([_bcc(part)])
            if frame == bytes([sel, 0x70]) + part + bytes([_bcc(part)]) and self._level == level:
                self._level = level + 1
                last = self._level == len(levels)
                self._active = last
                return bytes([_SAK_ISO_DEP if last else _SAK_CASCADE])
        if self._active and len(frame) == 2 and frame[0] == 0xE0:
            self._protocol = True
            return ATS
        return None

    def _iso_dep(self, frame: bytes) -> bytes | None:
        pcb = frame[0]
        if pcb & 0xE2 == 0x02 and not pcb & 0x0C:  # I-block, no CID/NAD
            return self._i_block(pcb, frame[1:])
        if pcb & 0xF6 == 0xA2:  # R(ACK)
            return self._next_response(pcb & 1)
        if pcb & 0xF6 == 0xB2:  # R(NAK): a presence check
            return bytes([0xA2 | self._block])
        if pcb == 0xC2:  # S(DESELECT)
            self._reset_link(powered=True)
            self._halted = True
            return b"\xc2"
        return None

    def _i_block(self, pcb: int, inf: bytes) -> bytes:
        self._block = pcb & 1
        self._pending = []
        self._chain += inf
        if len(self._chain) > MAX_COMMAND:
            self._chain = b""
            return bytes([0x02 | self._block]) + b"\x67\x00"
        if pcb & 0x10:  # chained: more to come
            return bytes([0xA2 | self._block])
        apdu, self._chain = self._chain, b""
        response = self.card.process(apdu)
        self._pending = [response[i : i + MAX_INF] for i in range(0, len(response), MAX_INF)]
        return self._send_block()

    def _send_block(self) -> bytes:
        part = self._pending.pop(0)
        more = 0x10 if self._pending else 0x00
        return bytes([0x02 | more | self._block]) + part

    def _next_response(self, block: int) -> bytes | None:
        if not self._pending:
            return bytes([0xA2 | self._block])
        self._block = block
        return self._send_block()
