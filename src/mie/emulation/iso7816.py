"""A generic ISO/IEC 7816-4 card: file system, SELECT, READ BINARY, VERIFY, GET RESPONSE.

It speaks T=0 or T=1 framing as its ATR says: under T=0, data of case-4 commands is handed out
through ``61xx`` + GET RESPONSE and a wrong Le gets ``6Cxx``, as real T=0 cards (CPS3) do. Card
applications (CPx, DESFire) subclass it and add handlers to :attr:`Iso7816Card.handlers` (by INS,
interindustry CLAs) or :attr:`Iso7816Card.proprietary_handlers` (CLA bit 8 set). Command chaining
is understood on interindustry CLAs only. A handshake handler may open a :class:`CardChannel`,
the card side of a secure channel.
"""

from __future__ import annotations

import abc
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from mie.core.apdu import CommandApdu
from mie.core.errors import ApduFormatError
from mie.core.pin import PinRule
from mie.core.processors import CLA_CHAINING, is_interindustry
from mie.core.sw import SW
from mie.core.tlv import Tlv, encode_tlvs
from mie.emulation.base import EmulatedCard

logger = logging.getLogger(__name__)

MF_FID = 0x3F00
# The emulated cards' command buffer: well above what a client of these cards sends in one
# command (an RSA-2048 block), and a bound on what any local PC/SC client can make them hold.
MAX_COMMAND = 4096
ACL_ALWAYS = 0x00
ACL_PIN = 0x11
ACL_NEVER = 0xFF

INS_SELECT = 0xA4
INS_GET_RESPONSE = 0xC0

Response = tuple[bytes, int]
Handler = Callable[[CommandApdu], Response]


def _secure_messaging_indicated(cla: int) -> bool:
    """Whether an interindustry ``cla`` announces secure messaging (ISO/IEC 7816-4 §5.4.1)."""
    if not is_interindustry(cla):
        return False
    return bool(cla & 0x0C) if cla < 0x40 else bool(cla & 0x20)


class CardChannel(abc.ABC):
    """The card side of a secure channel, opened by a handshake handler that sets
    :attr:`Iso7816Card.secure_channel`.

    It sees every command after chaining, GET RESPONSE excepted, and the answer of each before
    ``61xx`` framing. SELECT, a reset, a command whose protection fails and an answer outside
    :attr:`Iso7816Card.channel_success` (``9000``; a DESFire card adds ``9100``) close it.
    """

    @abc.abstractmethod
    def unwrap(self, apdu: CommandApdu) -> CommandApdu | int:
        """:return: the command as its handler must see it, or the status word refusing it."""

    @abc.abstractmethod
    def wrap(self, apdu: CommandApdu, data: bytes, sw: int) -> bytes:
        """:return: the response data of ``apdu`` (as received) answered ``sw``, a status word
        of :attr:`Iso7816Card.channel_success`, protected."""


@dataclass
class EF:
    """A transparent elementary file.

    :param fid: file identifier.
    :param data: content.
    :param sfi: short file identifier, if the file has one.
    :param read_acl: security condition for READ BINARY (:data:`ACL_ALWAYS`, :data:`ACL_PIN`, ...).
    """

    fid: int
    data: bytes
    sfi: int | None = None
    read_acl: int = ACL_ALWAYS


@dataclass
class DF:
    """A dedicated file (the MF is the DF with FID ``3F00``).

    :param fid: file identifier.
    :param children: the EFs and DFs it holds.
    :param aid: the application identifier (DF name), if any.
    """

    fid: int
    children: list[EF | DF] = field(default_factory=list)
    aid: bytes | None = None
    parent: DF | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for child in self.children:
            if isinstance(child, DF):
                child.parent = self

    def child(self, fid: int) -> EF | DF | None:
        """:return: the direct child with ``fid``, if any."""
        return next((c for c in self.children if c.fid == fid), None)

    def walk(self) -> list[DF]:
        """:return: this DF and every DF below it."""
        found = [self]
        for c in self.children:
            if isinstance(c, DF):
                found.extend(c.walk())
        return found


def _fcp(node: EF | DF) -> bytes:
    """The FCP template (tag ``62``) OpenSC expects: size, descriptor, FID, name, LCS and ACL."""
    if isinstance(node, EF):
        items = [
            Tlv(0x80, len(node.data).to_bytes(2, "big")),
            Tlv(0x82, b"\x01"),
            Tlv(0x83, node.fid.to_bytes(2, "big")),
        ]
        if node.sfi is not None:
            items.append(Tlv(0x88, bytes([node.sfi << 3])))
        items += [Tlv(0x8A, b"\x05"), Tlv(0x8C, bytes([0x03, ACL_NEVER, node.read_acl]))]
    else:
        items = [Tlv(0x82, b"\x38"), Tlv(0x83, node.fid.to_bytes(2, "big"))]
        if node.aid:
            items.append(Tlv(0x84, node.aid))
        items += [Tlv(0x8A, b"\x05"), Tlv(0x8C, bytes([0x02, ACL_NEVER]))]
    return Tlv(0x62, encode_tlvs(items)).encode()


class Iso7816Card(EmulatedCard):
    """A generic file-system card with one global PIN.

    :param atr: the ATR; T=0 framing is used when it offers T=0 only.
    :param mf: the master file and everything under it.
    :param pin: the PIN bytes exactly as VERIFY must carry them, or ``None`` for no PIN.
    :param pin_ref: the PIN reference (VERIFY P2).
    :param max_tries: tries before the PIN blocks.
    :param t0: use T=0 framing.
    :param extended_length: accept extended-length APDUs.
    :param max_response: the most data one response carries before ``61xx``.
    :param max_command: the card's command buffer: the most data a command, chained or not, may
        carry (a longer chain is refused with ``6700`` and dropped).
    """

    def __init__(
        self,
        atr: bytes,
        mf: DF,
        *,
        pin: bytes | None = None,
        pin_ref: int = 0x01,
        max_tries: int = 3,
        t0: bool = True,
        extended_length: bool = False,
        max_response: int = 256,
        max_command: int = MAX_COMMAND,
    ) -> None:
        self._atr = atr
        self.mf = mf
        self._pin = pin
        self.pin_ref = pin_ref
        self.max_tries = max_tries
        self.tries_left = max_tries
        self.t0 = t0
        self.extended_length = extended_length
        self.max_response = max_response
        self.max_command = max_command
        self.handlers: dict[int, Handler] = {
            INS_SELECT: self.select,
            0xB0: self.read_binary,
            INS_GET_RESPONSE: self.get_response,
            0x20: self.verify,
        }
        # By INS, for a proprietary CLA (bit 8 set); with none, such a CLA gets 6E00.
        self.proprietary_handlers: dict[int, Handler] = {}
        # The answers that keep a secure channel open (and are protected by it).
        self.channel_success: frozenset[int] = frozenset({SW.OK})
        self.power_on()

    @property
    def atr(self) -> bytes:
        return self._atr

    def power_on(self) -> None:
        self.current_df: DF = self.mf
        self.current_ef: EF | None = None
        self.pin_verified = False
        self._pending = b""
        self._chain: CommandApdu | None = None
        self.secure_channel: CardChannel | None = None

    def power_off(self) -> None:
        self.power_on()

    def process(self, apdu: bytes) -> bytes:
        """Answer one command APDU; never raises: a fault in a handler answers ``6F00``.

        Any local PC/SC client can send an emulator anything; an exception out of here would
        end the host serving it for every client.
        """
        try:
            data, sw = self._process(apdu)
        except Exception:
            logger.exception("Emulated card failed on a command; answering 6F00")
            self._chain, self._pending, self.secure_channel = None, b"", None
            return SW.NO_PRECISE_DIAGNOSIS.to_bytes(2, "big")
        return data + (sw & 0xFFFF).to_bytes(2, "big")

    def _process(self, raw: bytes) -> Response:
        try:
            apdu = CommandApdu.parse(raw)
        except ApduFormatError:
            return b"", SW.WRONG_LENGTH
        if len(raw) > 5 and raw[4] == 0 and not self.extended_length:
            return b"", SW.WRONG_LENGTH
        if apdu.ins != INS_GET_RESPONSE:
            self._pending = b""
        chained = self._chain_step(apdu)
        if chained is None:
            return b"", SW.OK
        if isinstance(chained, int):
            return b"", chained
        return self._dispatch(chained)

    def _chain_step(self, apdu: CommandApdu) -> CommandApdu | int | None:
        """Accumulate command chaining; return the full command, ``None`` to wait, or an SW.

        Only an interindustry CLA chains; any other command is returned as it came.
        """
        previous, self._chain = self._chain, None
        if previous is not None and (previous.ins, previous.p1, previous.p2) != (
            apdu.ins,
            apdu.p1,
            apdu.p2,
        ):
            return int(SW.LAST_COMMAND_EXPECTED)
        if not is_interindustry(apdu.cla):
            # Bit 10 of a proprietary class is no chaining bit (DESFire's 90 is one such CLA).
            return int(SW.LAST_COMMAND_EXPECTED) if previous is not None else apdu
        data = (previous.data if previous else b"") + apdu.data
        if len(data) > self.max_command:
            return int(SW.WRONG_LENGTH)
        cla = apdu.cla & ~CLA_CHAINING
        if apdu.cla & CLA_CHAINING:
            self._chain = CommandApdu(cla, apdu.ins, apdu.p1, apdu.p2, data)
            return None
        return CommandApdu(cla, apdu.ins, apdu.p1, apdu.p2, data, apdu.le)

    def _dispatch(self, apdu: CommandApdu) -> Response:
        if apdu.ins == INS_GET_RESPONSE and is_interindustry(apdu.cla):
            # GET RESPONSE belongs to the link, below any secure channel.
            return self._handle(apdu)
        data, sw = self._through_channel(apdu)
        return self._deliver(apdu, data, sw)

    def _handle(self, apdu: CommandApdu) -> Response:
        """Run the handler for ``apdu``, by INS among :attr:`handlers` or, for a proprietary CLA,
        among :attr:`proprietary_handlers`."""
        if is_interindustry(apdu.cla):
            handlers = self.handlers
        elif apdu.cla & 0x80 and self.proprietary_handlers:
            handlers = self.proprietary_handlers
        else:
            return b"", SW.CLA_NOT_SUPPORTED
        handler = handlers.get(apdu.ins)
        if handler is None:
            return b"", SW.INS_NOT_SUPPORTED
        return handler(apdu)

    def _through_channel(self, apdu: CommandApdu) -> Response:
        """Pass ``apdu`` through the card side of the secure channel, if one is open.

        SELECT, a command whose protection fails, and an answer outside :attr:`channel_success`
        close it.
        Without a channel, a CLA that announces secure messaging gets ``6882``: its data carries
        protection nothing here would check.
        """
        channel = self.secure_channel
        if channel is None:
            if _secure_messaging_indicated(apdu.cla):
                return b"", SW.SECURE_MESSAGING_NOT_SUPPORTED
            return self._handle(apdu)
        if apdu.ins == INS_SELECT and is_interindustry(apdu.cla):
            self.secure_channel = None
            return self._handle(apdu)
        inner = channel.unwrap(apdu)
        if isinstance(inner, int):
            self.secure_channel = None
            return b"", inner
        data, sw = self._handle(inner)
        if self.secure_channel is not channel:
            # The handler closed or replaced the channel (a new handshake): answer outside it.
            return data, sw
        if sw not in self.channel_success:
            self.secure_channel = None
            return data, sw
        return channel.wrap(apdu, data, sw), sw

    def _deliver(self, apdu: CommandApdu, data: bytes, sw: int) -> Response:
        """Frame response data as the link protocol requires (``61xx`` / ``6Cxx``)."""
        if not data:
            return data, sw
        if self.t0 and apdu.data:
            return self._defer(data, sw)
        if apdu.le is None:
            return self._defer(data, sw)
        # 6Cxx can only announce up to 256 bytes; longer answers go out through 61xx below.
        if self.t0 and apdu.le != len(data) and sw == SW.OK and len(data) <= 256:
            return b"", 0x6C00 | (len(data) & 0xFF)
        limit = min(apdu.le, self.max_response)
        if len(data) > limit:
            self._pending = data[limit:]
            return data[:limit], 0x6100 | (min(len(self._pending), 256) & 0xFF)
        return data, sw

    def _defer(self, data: bytes, sw: int) -> Response:
        if sw != SW.OK:
            return data, sw
        self._pending = data
        return b"", 0x6100 | (min(len(data), 256) & 0xFF)

    def get_response(self, apdu: CommandApdu) -> Response:
        """GET RESPONSE: hand out data kept back by ``61xx``."""
        if not self._pending:
            return b"", SW.CONDITIONS_NOT_SATISFIED
        le = apdu.le or 256
        if self.t0 and le > len(self._pending):
            return b"", 0x6C00 | (len(self._pending) & 0xFF)
        data, self._pending = self._pending[:le], self._pending[le:]
        if self._pending:
            return data, 0x6100 | (min(len(self._pending), 256) & 0xFF)
        return data, SW.OK

    def select(self, apdu: CommandApdu) -> Response:
        """SELECT by FID (P1 00/01/02), parent (03), DF name (04) or path (08/09)."""
        if apdu.p2 & 0xF3:
            return b"", SW.INCORRECT_P1P2
        node = self._find(apdu.p1, apdu.data)
        if isinstance(node, int):
            return b"", node
        if isinstance(node, DF):
            self.current_df, self.current_ef = node, None
        else:
            self.current_ef = node
        if apdu.p2 == 0x0C:
            return b"", SW.OK
        fcp = _fcp(node)
        if apdu.p2 == 0x00:
            fcp = Tlv(0x6F, Tlv.parse(fcp).value).encode()
        return fcp, SW.OK

    def _find(self, p1: int, data: bytes) -> EF | DF | int:
        finders: dict[int, Callable[[bytes], EF | DF | None]] = {
            0x00: self._by_fid,
            0x01: lambda d: self._typed(self._by_fid(d), DF),
            # IAS-ECC cards (and OpenSC's driver for them) select the MF with P1=02 too.
            0x02: lambda d: self.mf if d == b"\x3f\x00" else self._typed(self._by_fid(d), EF),
            0x03: lambda d: self.current_df.parent or self.mf,
            0x04: self._by_name,
            0x08: lambda d: self._by_path(self.mf, d),
            0x09: lambda d: self._by_path(self.current_df, d),
        }
        finder = finders.get(p1)
        if finder is None:
            return int(SW.INCORRECT_P1P2)
        if p1 in (0x00, 0x01, 0x02) and len(data) != 2 and not (p1 == 0 and not data):
            return int(SW.WRONG_LENGTH)
        if p1 in (0x08, 0x09) and (not data or len(data) % 2):
            return int(SW.WRONG_LENGTH)
        found = finder(data) if data or p1 in (0x00, 0x03) else None
        return found if found is not None else int(SW.FILE_NOT_FOUND)

    @staticmethod
    def _typed(node: EF | DF | None, kind: type[EF] | type[DF]) -> EF | DF | None:
        return node if isinstance(node, kind) else None

    def _by_fid(self, data: bytes) -> EF | DF | None:
        if not data:
            return self.mf
        fid = int.from_bytes(data, "big")
        if fid == MF_FID:
            return self.mf
        if self.current_df.fid == fid:
            return self.current_df
        return self.current_df.child(fid)

    def _by_name(self, aid: bytes) -> DF | None:
        return next((df for df in self.mf.walk() if df.aid and df.aid.startswith(aid)), None)

    def _by_path(self, start: DF, path: bytes) -> EF | DF | None:
        fids = [int.from_bytes(path[i : i + 2], "big") for i in range(0, len(path), 2)]
        node: EF | DF | None = start
        if fids[0] == MF_FID:
            node, fids = self.mf, fids[1:]
        for fid in fids:
            if not isinstance(node, DF):
                return None
            node = node.child(fid)
        return node

    def _ef_by_sfi(self, sfi: int) -> EF | None:
        return next(
            (c for c in self.current_df.children if isinstance(c, EF) and c.sfi == sfi), None
        )

    def read_binary(self, apdu: CommandApdu) -> Response:
        """READ BINARY from the current EF or by SFI (P1 bit 8)."""
        if apdu.le is None:
            return b"", SW.WRONG_LENGTH
        if apdu.p1 & 0x80:
            if apdu.p1 & 0x60:
                return b"", SW.INCORRECT_P1P2
            ef = self._ef_by_sfi(apdu.p1 & 0x1F)
            if ef is None:
                return b"", SW.FILE_NOT_FOUND
            self.current_ef, offset = ef, apdu.p2
        else:
            if self.current_ef is None:
                return b"", SW.COMMAND_NOT_ALLOWED
            ef, offset = self.current_ef, (apdu.p1 << 8) | apdu.p2
        if not self._access(ef.read_acl):
            return b"", SW.SECURITY_STATUS_NOT_SATISFIED
        if offset > len(ef.data):
            return b"", SW.WRONG_P1P2
        # Answers longer than max_response are split by _deliver (61xx), not cut short here.
        chunk = ef.data[offset : offset + apdu.le]
        if len(chunk) < apdu.le and offset + len(chunk) == len(ef.data) and not self.t0:
            return chunk, SW.END_OF_FILE
        return chunk, SW.OK

    def _access(self, acl: int) -> bool:
        if acl == ACL_ALWAYS:
            return True
        if acl == ACL_PIN:
            return self.pin_verified
        return False

    def verify(self, apdu: CommandApdu) -> Response:
        """VERIFY: check the PIN, or with no data report its status without spending a try."""
        if apdu.p1 != 0x00:
            return b"", SW.INCORRECT_P1P2
        if self._pin is None or apdu.p2 & 0x7F != self.pin_ref & 0x7F:
            return b"", SW.REFERENCE_NOT_FOUND
        if not apdu.data:
            return self._pin_status()
        if self.tries_left == 0:
            return b"", SW.AUTH_METHOD_BLOCKED
        if hmac.compare_digest(apdu.data, self._pin):
            self.tries_left = self.max_tries
            self.pin_verified = True
            return b"", SW.OK
        self.tries_left -= 1
        self.pin_verified = False
        if self.tries_left == 0:
            return b"", SW.AUTH_METHOD_BLOCKED
        return b"", 0x63C0 | self.tries_left

    def _pin_status(self) -> Response:
        if self.tries_left == 0:
            return b"", SW.AUTH_METHOD_BLOCKED
        if self.pin_verified:
            return b"", SW.OK
        return b"", 0x63C0 | self.tries_left


# The client (mie.cards.demo) defines the same values on its own: card and client stay independent.
DEMO_ATR = bytes.fromhex("3B0980") + b"MIE-GEN1"
DEMO_AID = bytes.fromhex("F04D49454445") + b"MO"
DEMO_PIN = "1234"
# The demo application's own PIN rule (the emulator does not borrow the client's).
DEMO_PIN_RULE = PinRule(min_length=4, max_length=8, digits_only=True)


def demo_card(
    serial: str = "MIE0000001", pin: str = DEMO_PIN, holder: str = "Dr Demo"
) -> Iso7816Card:
    """The generic demo card: an application with a serial, a large public file, a PIN-locked one.

    :param serial: the card serial, readable without PIN (EF ``0101``, SFI 1).
    :param pin: the cardholder PIN.
    :param holder: the holder's name, readable after VERIFY (EF ``0103``).
    :return: a fresh card.
    """
    # 700 bytes is more than two READ BINARY chunks, so the demo exercises chunked reads.
    public = bytes((i * 7) & 0xFF for i in range(700))
    app = DF(
        0x0001,
        aid=DEMO_AID,
        children=[
            EF(0x0101, serial.encode(), sfi=1),
            EF(0x0102, public, sfi=2),
            EF(0x0103, holder.encode(), sfi=3, read_acl=ACL_PIN),
        ],
    )
    directory = Tlv(0x61, Tlv(0x4F, DEMO_AID).encode() + Tlv(0x50, b"MIE DEMO").encode())
    mf = DF(MF_FID, [EF(0x2F00, directory.encode(), sfi=0x1E), app])
    return Iso7816Card(DEMO_ATR, mf, pin=bytes(DEMO_PIN_RULE.pad(pin)))
