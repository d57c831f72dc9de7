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

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

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


EV1_MAC_SENT = frozenset({0x3D, 0x3B})
"""EV1 commands whose MAC mode sends the MAC (WriteData, WriteRecord); the others only chain
their CMAC into the running IV."""
_CHANGE_KEY_BODY = 17
"""EV1 ChangeKey of another key: the CRC covers ``Cmd ‖ KeyNo ‖ key ⊕ old ‖ version`` and goes
after them, before the CRC of the new key."""


@dataclass(frozen=True)
class Ev1Cipher:
    """The block cipher of an EV1-style session: AES (:data:`EV1_AES`), or 2K3DES/3K3DES
    after a legacy ISO authentication (:mod:`mie.hazmat.desfire_legacy`).

    :param name: for reprs.
    :param block: the block size (16 or 8).
    :param cmac: ``cmac(key, data, iv)``: the full CMAC, its CBC chain started from ``iv``.
    :param encrypt: ``encrypt(key, iv, data)``: CBC over whole blocks, no padding.
    :param decrypt: ``decrypt(key, iv, data)``: its inverse.
    """

    name: str
    block: int
    cmac: Callable[[bytes, bytes, bytes], bytes]
    encrypt: Callable[[bytes, bytes, bytes], bytes]
    decrypt: Callable[[bytes, bytes, bytes], bytes]


EV1_AES: Final = Ev1Cipher(
    "AES", crypto.BLOCK_SIZE, crypto.cmac, crypto.aes_cbc_encrypt, crypto.aes_cbc_decrypt
)


def _crc_checks(plaintext: bytes, size: int, status: int, block: int) -> bool:
    end = size + crypto.CRC_SIZE
    padding = plaintext[end:]
    if len(padding) >= block or padding.strip(b"\x00"):
        return False
    return hmac.compare_digest(
        plaintext[size:end], crypto.crc32(plaintext[:size] + bytes([status]))
    )


class Ev1Channel(SecureChannel):
    """One EV1 session (after AuthenticateAES ``AA``, or a legacy ISO authentication): one
    session key for CMAC and encryption, and one running IV they share (reference
    ``desfire.md`` §2).

    - Every command, plain ones included: ``IV = CMAC_IV(Cmd ‖ header ‖ data)``; MAC mode sends
      its first 8 bytes only for WriteData and WriteRecord.
    - FULL command data: ``header ‖ E_IV(data ‖ CRC32(Cmd ‖ header ‖ data) ‖ 00…)``; the IV is
      then the last ciphertext block.
    - Response (status ``00``) in MAC mode: the last 8 bytes are ``CMAC_IV(data ‖ 00)[:8]``,
      whose full value is the next IV; in FULL mode ``E_IV(data ‖ CRC32(data ‖ 00) ‖ 00…)``.
      :class:`~mie.desfire.session.DesfireSession` asks MAC for the responses its table calls
      plain: EV1 MACs them all.

    :param session_key: the session key (16 bytes for AES).
    :param cipher: :data:`EV1_AES`, or a legacy cipher.
    :raises DesfireInputError: a key of the wrong size for ``cipher`` (from the cipher).
    """

    def __init__(self, session_key: bytes, cipher: Ev1Cipher = EV1_AES) -> None:
        if cipher is EV1_AES and len(session_key) != crypto.KEY_SIZE:
            raise DesfireInputError(f"An EV1 session key is 16 bytes, got {len(session_key)}")
        self.cipher = cipher
        self._key: bytearray | None = bytearray(session_key)
        self._iv: bytearray | None = bytearray(cipher.block)

    def __repr__(self) -> str:
        state = "dropped" if self.is_dropped else "open"
        return f"Ev1Channel({self.cipher.name}, {state})"

    @property
    def is_dropped(self) -> bool:
        """:return: whether :meth:`dropped` wiped the key."""
        return self._key is None

    def _state(self) -> tuple[bytes, bytes]:
        if self._key is None or self._iv is None:
            raise SecureMessagingError("The EV1 channel was dropped")
        return bytes(self._key), bytes(self._iv)

    def _set_iv(self, iv: bytes) -> None:
        if self._iv is not None:
            self._iv[:] = iv

    def drops_before(self, apdu: CommandApdu) -> bool:
        """:return: whether ``apdu`` is SelectApplication or an authentication."""
        return apdu.cla == CLA_NATIVE and apdu.ins in ENDS_SESSION

    def wrap(self, apdu: CommandApdu, context: ExchangeContext) -> CommandApdu:
        key, iv = self._state()
        block = self.cipher.block
        cmd = bytes([context.ins])
        header, data = context.command_header, context.data
        if context.command_mode is CommMode.FULL and data:
            if context.ins == 0xC4 and len(data) > _CHANGE_KEY_BODY:
                body, tail = data[:_CHANGE_KEY_BODY], data[_CHANGE_KEY_BODY:]
            else:
                body, tail = data, b""
            plaintext = body + crypto.crc32(cmd + header + body) + tail
            plaintext += bytes(-len(plaintext) % block)
            ciphertext = self.cipher.encrypt(key, iv, plaintext)
            self._set_iv(ciphertext[-block:])
            return CommandApdu(apdu.cla, apdu.ins, apdu.p1, apdu.p2, header + ciphertext, apdu.le)
        full_cmac = self.cipher.cmac(key, cmd + header + data, iv)
        self._set_iv(full_cmac)
        if context.command_mode is CommMode.MAC and context.ins in EV1_MAC_SENT:
            tag = full_cmac[: crypto.MAC_SIZE]
            return CommandApdu(apdu.cla, apdu.ins, apdu.p1, apdu.p2, apdu.data + tag, apdu.le)
        return apdu

    def unwrap(self, data: bytes, sw: int, context: ExchangeContext) -> tuple[bytes, int]:
        key, iv = self._state()
        block = self.cipher.block
        status = sw & 0xFF
        mode = context.response_mode
        if mode is CommMode.PLAIN:
            return data, sw
        if mode is CommMode.FULL:
            if not data or len(data) % block:
                raise ResponseIntegrityError(
                    f"EV1 enciphered response of {len(data)} bytes is not whole blocks"
                )
            plaintext = self.cipher.decrypt(key, iv, data)
            last = len(plaintext) - crypto.CRC_SIZE
            for size in range(last, max(last - block, -1), -1):
                if _crc_checks(plaintext, size, status, block):
                    self._set_iv(data[-block:])
                    return plaintext[:size], sw
            raise ResponseIntegrityError("EV1 enciphered response: CRC32 or padding does not check")
        if len(data) < crypto.MAC_SIZE:
            raise ResponseIntegrityError(
                f"EV1 response of {len(data)} bytes is too short for its 8-byte MAC"
            )
        body, tag = data[: -crypto.MAC_SIZE], data[-crypto.MAC_SIZE :]
        full_cmac = self.cipher.cmac(key, body + bytes([status]), iv)
        if not hmac.compare_digest(full_cmac[: crypto.MAC_SIZE], tag):
            raise ResponseIntegrityError("EV1 response MAC does not verify")
        self._set_iv(full_cmac)
        return body, sw

    def dropped(self) -> None:
        """Wipe the session key and the IV; the channel is never used again."""
        _wipe(self._key)
        _wipe(self._iv)
        self._key = self._iv = None
