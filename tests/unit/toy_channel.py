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
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable

from mie.core.apdu import CommandApdu
from mie.core.channel import CommMode, ExchangeContext, SecureChannel
from mie.core.errors import SecureMessagingError
from mie.core.processors import SmartCardProtocol
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

    def wrap(self, apdu: CommandApdu, data: bytes) -> bytes:
        counter = self.counter
        self.counter += 1
        if apdu.cla & 0x80 or not apdu.cla & CLA_SM:
            return data
        return data + hmac_sha256(self.ks, _ctr(counter), _ctr(SW_OK), data)[:MAC_SIZE]


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
