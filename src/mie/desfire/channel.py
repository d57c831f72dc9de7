"""The host side of DESFire EV2 secure messaging, as a :class:`~mie.core.channel.SecureChannel`.

:class:`Ev2Channel` is installed on a :class:`~mie.core.processors.SmartCardProtocol` once
AuthenticateEV2First ran on the plain stack (:mod:`mie.desfire.session`). It sees every command
whole, before ``AF`` chaining, with :attr:`ExchangeContext.ins` the native command code and
:attr:`ExchangeContext.command_header` its ``CmdHeader``, and every response whole, after the
frames, with the final status (reference ``desfire.md`` §3, NXP AN12196, AN12343):

- command MAC: ``MACt(CMAC(SesAuthMACKey, Cmd ‖ CmdCtr ‖ TI ‖ CmdHeader ‖ CmdData))``;
- FULL command data: ``E(SesAuthENCKey, IV = E(A5 5A ‖ TI ‖ CmdCtr ‖ 0…), data ‖ 80 0…)``;
- response MAC over ``RC ‖ CmdCtr+1 ‖ TI ‖ RespData`` (the ciphertext in FULL mode), checked
  before anything is deciphered or returned; response IV ``E(5A A5 ‖ TI ‖ CmdCtr+1 ‖ 0…)``;
- ``CmdCtr`` moves on every exchange, plain ones included.
"""

from __future__ import annotations

from mie.core.apdu import CommandApdu
from mie.core.channel import CommMode, ExchangeContext, SecureChannel
from mie.core.errors import SecureMessagingError
from mie.desfire import crypto
from mie.desfire.constants import CLA_NATIVE, ENDS_SESSION
from mie.desfire.errors import DesfireInputError, ResponseIntegrityError


def _wipe(buffer: bytearray | None) -> None:
    if buffer is not None:
        buffer[:] = bytes(len(buffer))


class Ev2Channel(SecureChannel):
    """One EV2 session: its two session keys, the transaction identifier and the counter.

    :param enc_key: SesAuthENCKey (16 bytes).
    :param mac_key: SesAuthMACKey (16 bytes).
    :param ti: the 4-byte transaction identifier the badge chose.
    :param cmd_ctr: the command counter (0 after AuthenticateEV2First).
    :raises DesfireInputError: a key, TI or counter of the wrong size.
    """

    def __init__(self, enc_key: bytes, mac_key: bytes, ti: bytes, cmd_ctr: int = 0) -> None:
        for name, value, size in (
            ("SesAuthENCKey", enc_key, crypto.KEY_SIZE),
            ("SesAuthMACKey", mac_key, crypto.KEY_SIZE),
            ("TI", ti, crypto.TI_SIZE),
        ):
            if len(value) != size:
                raise DesfireInputError(f"{name} must be {size} bytes, got {len(value)}")
        if not 0 <= cmd_ctr <= crypto.MAX_CMD_CTR:
            raise DesfireInputError(f"CmdCtr must be 0..65535, got {cmd_ctr}")
        self._enc: bytearray | None = bytearray(enc_key)
        self._mac: bytearray | None = bytearray(mac_key)
        self.ti = bytes(ti)
        self.cmd_ctr = cmd_ctr

    def __repr__(self) -> str:
        state = "dropped" if self.is_dropped else f"TI {self.ti.hex()}, CmdCtr {self.cmd_ctr}"
        return f"Ev2Channel({state})"

    @property
    def is_dropped(self) -> bool:
        """:return: whether :meth:`dropped` wiped the keys."""
        return self._enc is None

    def _keys(self) -> tuple[bytes, bytes]:
        if self._enc is None or self._mac is None:
            raise SecureMessagingError("The EV2 channel was dropped")
        return bytes(self._enc), bytes(self._mac)

    def drops_before(self, apdu: CommandApdu) -> bool:
        """:return: whether ``apdu`` is SelectApplication or an authentication other than
        NonFirst, after which the badge has no session."""
        return apdu.cla == CLA_NATIVE and apdu.ins in ENDS_SESSION

    def wrap(self, apdu: CommandApdu, context: ExchangeContext) -> CommandApdu:
        enc, mac = self._keys()
        if context.command_mode is CommMode.PLAIN:
            return apdu
        header, data = context.command_header, context.data
        if context.command_mode is CommMode.FULL and data:
            iv = crypto.ev2_command_iv(enc, self.ti, self.cmd_ctr)
            data = crypto.ev2_encrypt(enc, iv, data)
        body = header + data
        tag = crypto.ev2_command_mac(mac, context.ins, self.cmd_ctr, self.ti, body)
        return CommandApdu(apdu.cla, apdu.ins, apdu.p1, apdu.p2, body + tag, apdu.le)

    def unwrap(self, data: bytes, sw: int, context: ExchangeContext) -> tuple[bytes, int]:
        enc, mac = self._keys()
        if self.cmd_ctr >= crypto.MAX_CMD_CTR:
            raise ResponseIntegrityError("EV2 command counter exhausted: authenticate again")
        self.cmd_ctr += 1
        mode = context.response_mode
        if mode is CommMode.PLAIN:
            return data, sw
        if len(data) < crypto.MAC_SIZE:
            raise ResponseIntegrityError(
                f"EV2 response of {len(data)} bytes is too short for its 8-byte MAC"
            )
        body, tag = data[: -crypto.MAC_SIZE], data[-crypto.MAC_SIZE :]
        try:
            crypto.ev2_verify_response_mac(mac, sw & 0xFF, self.cmd_ctr, self.ti, body, tag)
        except SecureMessagingError as e:
            raise ResponseIntegrityError("EV2 response MAC does not verify") from e
        if mode is CommMode.MAC:
            return body, sw
        if not body or len(body) % crypto.BLOCK_SIZE:
            raise ResponseIntegrityError(
                f"EV2 enciphered response of {len(body)} bytes is not whole AES blocks"
            )
        try:
            iv = crypto.ev2_response_iv(enc, self.ti, self.cmd_ctr)
            return crypto.ev2_decrypt(enc, iv, body), sw
        except SecureMessagingError as e:
            raise ResponseIntegrityError("EV2 enciphered response has bad padding") from e

    def rekeyed(self, enc_key: bytes, mac_key: bytes) -> Ev2Channel:
        """The channel AuthenticateEV2NonFirst leaves: new session keys, the same TI and CmdCtr.

        :param enc_key: the new SesAuthENCKey.
        :param mac_key: the new SesAuthMACKey.
        :return: a new channel; this one is left as it is (the caller drops it).
        :raises SecureMessagingError: this channel was dropped.
        """
        self._keys()
        return Ev2Channel(enc_key, mac_key, self.ti, self.cmd_ctr)

    def dropped(self) -> None:
        """Wipe both session keys; the channel is never used again."""
        _wipe(self._enc)
        _wipe(self._mac)
        self._enc = self._mac = None
