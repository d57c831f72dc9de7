"""A toy MAC-only secure channel, both ends: test code only, no toy crypto ships in mie (STYLE H6).

It exists so the channel lifecycle of :class:`mie.core.processors.SmartCardProtocol` is tested
byte-exact before DESFire EV2 lands on it. HMAC-SHA256 from :mod:`hmac`, nothing hand-rolled.

- Handshake, on the plain stack: ``80 F0 00 00 10 ‖ RndA ‖ 18`` answered
  ``RndB ‖ HMAC(key, "card" ‖ RndA ‖ RndB)[:8]``; session key ``Ks = HMAC(key, RndA ‖ RndB)[:16]``.
- A MACed command sets CLA bit ``04`` (ISO 7816-4: proprietary secure messaging) and carries
  ``data ‖ HMAC(Ks, ctr ‖ header ‖ data)[:8]``, where ``header`` is the unprotected
  ``CLA INS P1 P2`` plus the command's own header; its response is
  ``data ‖ HMAC(Ks, ctr ‖ SW ‖ data)[:8]``. ``ctr`` (2 bytes, big-endian) starts at 0 and moves
  on every successful exchange, plain ones included.
- Only ``PLAIN`` or ``MAC`` both ways: one CLA bit tells the card both directions. Le is not
  protected; a response longer than Le comes through ``61xx``.

:class:`ToyNativeChannel` and :func:`af_chaining` have DESFire EV2's shape (reference
``desfire.md`` §3, §6), HMAC-SHA256 standing in for AES-CMAC: commands ISO-wrapped
(``90 CMD 00 00 Lc data 00``), ``AF`` frames both ways, success ``9100``; the command MAC over
``Cmd ‖ CmdCtr ‖ TI ‖ CmdHeader ‖ CmdData`` is appended to the whole data before it is framed,
the response MAC over ``RC ‖ CmdCtr+1 ‖ TI ‖ RespData`` ends the last frame; ``CmdCtr``
(2 bytes, little-endian) moves on every exchange, plain ones included.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable

from mie.core.apdu import CommandApdu
from mie.core.channel import CommMode, ExchangeContext, SecureChannel
from mie.core.errors import BadResponseError, SecureMessagingError
from mie.core.processors import ApduProcessor, ChainedProcessor, SmartCardProtocol, StackSettings
from mie.emulation.iso7816 import CardChannel, Iso7816Card

CLA_HANDSHAKE = 0x80
INS_HANDSHAKE = 0xF0
CLA_SM = 0x04
RND_SIZE = 16
MAC_SIZE = 8
KEY_SIZE = 16
SW_OK = 0x9000
SW_SM_DATA_INCORRECT = 0x6988
SW_WRONG_LENGTH = 0x6700


def hmac_sha256(key: bytes | bytearray, *parts: bytes) -> bytes:
    """:return: HMAC-SHA256 of the concatenated ``parts``."""
    return hmac.new(bytes(key), b"".join(parts), hashlib.sha256).digest()


def card_cryptogram(key: bytes, rnd_a: bytes, rnd_b: bytes) -> bytes:
    """:return: what the card proves it knows ``key`` with."""
    return hmac_sha256(key, b"card", rnd_a, rnd_b)[:MAC_SIZE]


def session_key(key: bytes, rnd_a: bytes, rnd_b: bytes) -> bytes:
    """:return: ``Ks``."""
    return hmac_sha256(key, rnd_a, rnd_b)[:KEY_SIZE]


def _ctr(value: int) -> bytes:
    return value.to_bytes(2, "big")


class ToyMacChannel(SecureChannel):
    """The host side, once the handshake is done.

    :param ks: the session key.
    """

    def __init__(self, ks: bytes) -> None:
        self._ks: bytearray | None = bytearray(ks)
        self.counter = 0
        self.contexts: list[ExchangeContext] = []

    @property
    def is_dropped(self) -> bool:
        """:return: whether :meth:`dropped` wiped the key."""
        return self._ks is None

    def _key(self) -> bytearray:
        if self._ks is None:
            raise SecureMessagingError("The toy channel was dropped")
        return self._ks

    def wrap(self, apdu: CommandApdu, context: ExchangeContext) -> CommandApdu:
        self.contexts.append(context)
        key = self._key()
        if CommMode.FULL in (context.command_mode, context.response_mode):
            raise ValueError("The toy channel has no encryption")
        if context.command_mode is not context.response_mode:
            raise ValueError("The toy channel protects a command and its response alike")
        if context.command_mode is CommMode.PLAIN:
            return apdu
        if apdu.cla & 0xFC:
            raise ValueError(f"The toy channel cannot mark CLA {apdu.cla:02x} as MACed")
        mac = hmac_sha256(key, _ctr(self.counter), context.header, context.data)[:MAC_SIZE]
        return CommandApdu(apdu.cla | CLA_SM, apdu.ins, apdu.p1, apdu.p2, apdu.data + mac, apdu.le)

    def unwrap(self, data: bytes, sw: int, context: ExchangeContext) -> tuple[bytes, int]:
        key = self._key()
        if context.response_mode is CommMode.MAC:
            if len(data) < MAC_SIZE:
                raise SecureMessagingError("Toy response too short to carry its MAC")
            body, mac = data[:-MAC_SIZE], data[-MAC_SIZE:]
            expected = hmac_sha256(key, _ctr(self.counter), sw.to_bytes(2, "big"), body)
            if not hmac.compare_digest(mac, expected[:MAC_SIZE]):
                raise SecureMessagingError("Toy response MAC does not verify")
            data = body
        self.counter += 1
        return data, sw

    def dropped(self) -> None:
        if self._ks is not None:
            self._ks[:] = bytes(len(self._ks))
        self._ks = None


def open_toy_channel(protocol: SmartCardProtocol, key: bytes, rnd_a: bytes) -> ToyMacChannel:
    """Run the handshake on the plain stack, check the card, install the channel.

    :param protocol: the stack; a channel installed on it is dropped first.
    :param key: the shared key.
    :param rnd_a: the host challenge (16 bytes).
    :return: the installed channel.
    :raises SecureMessagingError: the card's cryptogram does not verify (nothing is installed).
    """
    protocol.drop_channel()
    answer = protocol.send_apdu(CLA_HANDSHAKE, INS_HANDSHAKE, 0, 0, rnd_a, le=RND_SIZE + MAC_SIZE)
    if len(answer) != RND_SIZE + MAC_SIZE:
        raise SecureMessagingError("Toy handshake answer of the wrong length")
    rnd_b, cryptogram = answer[:RND_SIZE], answer[RND_SIZE:]
    if not hmac.compare_digest(cryptogram, card_cryptogram(key, rnd_a, rnd_b)):
        raise SecureMessagingError("Toy card cryptogram does not verify")
    channel = ToyMacChannel(session_key(key, rnd_a, rnd_b))
    protocol.install_channel(channel)
    return channel


class ToyCardChannel(CardChannel):
    """The card side.

    :param ks: the session key.
    """

    def __init__(self, ks: bytes) -> None:
        self.ks = ks
        self.counter = 0

    def unwrap(self, apdu: CommandApdu) -> CommandApdu | int:
        if apdu.cla & 0x80 or not apdu.cla & CLA_SM:
            return apdu
        if len(apdu.data) < MAC_SIZE:
            return SW_SM_DATA_INCORRECT
        cla = apdu.cla & ~CLA_SM
        body, mac = apdu.data[:-MAC_SIZE], apdu.data[-MAC_SIZE:]
        header = bytes([cla, apdu.ins, apdu.p1, apdu.p2])
        expected = hmac_sha256(self.ks, _ctr(self.counter), header, body)[:MAC_SIZE]
        if not hmac.compare_digest(mac, expected):
            return SW_SM_DATA_INCORRECT
        # Under T=0 a MACed case-2 command arrives without its Le (it has data now): answer
        # as for Le = 00, all there is, as T=0 cards do for case 4.
        le = 256 if apdu.le is None and not body else apdu.le
        return CommandApdu(cla, apdu.ins, apdu.p1, apdu.p2, body, le)

    def wrap(self, apdu: CommandApdu, data: bytes, sw: int) -> bytes:
        counter = self.counter
        self.counter += 1
        if apdu.cla & 0x80 or not apdu.cla & CLA_SM:
            return data
        return data + hmac_sha256(self.ks, _ctr(counter), _ctr(sw), data)[:MAC_SIZE]


def install_toy_handshake(
    card: Iso7816Card, key: bytes, rnd_b: Callable[[], bytes] = lambda: os.urandom(RND_SIZE)
) -> None:
    """Teach ``card`` the toy handshake (``80 F0``).

    :param card: the emulated card.
    :param key: the shared key.
    :param rnd_b: draws the card challenge.
    """

    def handshake(apdu: CommandApdu) -> tuple[bytes, int]:
        card.secure_channel = None
        if (apdu.p1, apdu.p2) != (0, 0):
            return b"", 0x6A86
        if len(apdu.data) != RND_SIZE:
            return b"", SW_WRONG_LENGTH
        challenge = rnd_b()
        card.secure_channel = ToyCardChannel(session_key(key, apdu.data, challenge))
        return challenge + card_cryptogram(key, apdu.data, challenge), SW_OK

    card.proprietary_handlers[INS_HANDSHAKE] = handshake


# DESFire EV2's shape (test code).

CLA_NATIVE = 0x90
INS_ADDITIONAL_FRAME = 0xAF
SW_MORE = 0x91AF
SW_NATIVE_OK = 0x9100
# The commands after which the card has no session any more (SelectApplication, the
# authentications): the channel is dropped before they are sent.
ENDS_SESSION = frozenset({0x5A, 0xAA, 0x1A, 0x0A, 0x71})
MAX_FRAMES = 16


class ToyNativeChannel(SecureChannel):
    """The host side of an EV2-shaped MAC channel.

    :param ks: the session MAC key.
    :param ti: the transaction identifier (4 bytes).
    """

    def __init__(self, ks: bytes, ti: bytes) -> None:
        self._ks: bytearray | None = bytearray(ks)
        self.ti = ti
        self.counter = 0
        self.contexts: list[ExchangeContext] = []

    @property
    def is_dropped(self) -> bool:
        """:return: whether :meth:`dropped` wiped the key."""
        return self._ks is None

    def _mac(self, *parts: bytes) -> bytes:
        if self._ks is None:
            raise SecureMessagingError("The toy channel was dropped")
        return hmac_sha256(self._ks, *parts)[:MAC_SIZE]

    def drops_before(self, apdu: CommandApdu) -> bool:
        return apdu.cla == CLA_NATIVE and apdu.ins in ENDS_SESSION

    def wrap(self, apdu: CommandApdu, context: ExchangeContext) -> CommandApdu:
        self.contexts.append(context)
        if CommMode.FULL in (context.command_mode, context.response_mode):
            raise ValueError("The toy channel has no encryption")
        if context.command_mode is CommMode.PLAIN:
            self._mac()  # a dropped channel sends nothing
            return apdu
        mac = self._mac(
            bytes([context.ins]),
            self.counter.to_bytes(2, "little"),
            self.ti,
            context.command_header,
            context.data,
        )
        return CommandApdu(apdu.cla, apdu.ins, apdu.p1, apdu.p2, apdu.data + mac, apdu.le)

    def unwrap(self, data: bytes, sw: int, context: ExchangeContext) -> tuple[bytes, int]:
        self.counter += 1
        if context.response_mode is CommMode.MAC:
            if len(data) < MAC_SIZE:
                raise SecureMessagingError("Toy response too short to carry its MAC")
            body, mac = data[:-MAC_SIZE], data[-MAC_SIZE:]
            expected = self._mac(
                bytes([sw & 0xFF]), self.counter.to_bytes(2, "little"), self.ti, body
            )
            if not hmac.compare_digest(mac, expected):
                raise SecureMessagingError("Toy response MAC does not verify")
            data = body
        return data, sw

    def dropped(self) -> None:
        if self._ks is not None:
            self._ks[:] = bytes(len(self._ks))
        self._ks = None


class AfChaining(ChainedProcessor):
    """DESFire ``AF`` frames both ways, for ISO-wrapped native commands (CLA ``90``).

    A command's data is sent ``frame`` bytes at a time, the first frame with its command code,
    the next ones as ``90 AF 00 00 Lc part 00``, each answered ``91AF``; a response answered
    ``91AF`` is collected with ``90 AF 00 00 00``. An authentication's ``91AF`` asks for the host's
    next message, not for more frames: those commands are passed through.

    :param delegate: the layer below.
    :param frame: the most data bytes one frame carries.
    """

    def __init__(self, delegate: ApduProcessor, frame: int) -> None:
        super().__init__(delegate)
        self.frame = frame

    def _next(self, data: bytes) -> CommandApdu:
        return CommandApdu(CLA_NATIVE, INS_ADDITIONAL_FRAME, 0, 0, data, 256)

    def send_apdu(self, apdu: CommandApdu) -> tuple[bytes, int]:
        if apdu.cla != CLA_NATIVE or apdu.ins in ENDS_SESSION - {0x5A}:
            return self.delegate.send_apdu(apdu)
        parts = [apdu.data[i : i + self.frame] for i in range(0, len(apdu.data), self.frame)]
        first = CommandApdu(apdu.cla, apdu.ins, apdu.p1, apdu.p2, parts[0] if parts else b"", 256)
        data, sw = self.delegate.send_apdu(first)
        for part in parts[1:]:
            if sw != SW_MORE or data:
                return data, sw
            data, sw = self.delegate.send_apdu(self._next(part))
        chunks = [data]
        for _ in range(MAX_FRAMES):
            if sw != SW_MORE:
                return b"".join(chunks), sw
            data, sw = self.delegate.send_apdu(self._next(b""))
            chunks.append(data)
        raise BadResponseError(f"The card sent more than {MAX_FRAMES} AF frames")


def af_chaining(frame: int) -> Callable[[ApduProcessor, StackSettings], ApduProcessor]:
    """:return: the layer builder of :class:`AfChaining` with ``frame`` bytes a frame."""
    return lambda delegate, settings: AfChaining(delegate, frame)
