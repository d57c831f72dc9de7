"""The secure-channel interface: what a session protocol plugs on top of the processor stack.

A :class:`SecureChannel` holds one session's state (keys, counters, IV). The handshake that
creates it runs on the plain stack; :meth:`mie.core.processors.SmartCardProtocol.install_channel`
then puts it on top, where it sees every command the session sends, plain ones included (their
counter still moves), with an :class:`ExchangeContext` saying which bytes are header and which are
data, and how the command and its response are protected. SELECT (and any command the channel
says ends the session at the card, :meth:`SecureChannel.drops_before`), a status word outside the
stack's success set, and any failure inside the exchange drop it (:meth:`SecureChannel.dropped`).

The channel sits above every layer of the recipe: it protects a command whole, before command
chaining (ISO ``10`` or DESFire ``AF`` frames) cuts it, and checks a response whole, after the
layers below collected its frames (``61xx``, ``91AF``), with the final status word. Under DESFire's
ISO wrapping (``90 CMD 00 00 Lc data 00``) :attr:`ExchangeContext.ins` is the native command
code and :attr:`ExchangeContext.command_header` the command's own header (EV2's ``CmdHeader``).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from enum import Enum, unique

from mie.core.apdu import CommandApdu


@unique
class CommMode(Enum):
    """How one direction of an exchange is protected."""

    PLAIN = "plain"
    """Sent as is; the channel still counts the exchange."""
    MAC = "mac"
    """Sent in clear with a MAC."""
    FULL = "full"
    """Encrypted and MACed."""


@dataclass(frozen=True)
class ExchangeContext:
    """What a secure channel is told about one command and its response.

    :param header: the bytes to authenticate but never encrypt: ``CLA INS P1 P2`` followed by the
        command's own header, if any (the first bytes of its data field).
    :param data: the rest of the data field: what ``FULL`` mode encrypts.
    :param le: the command's Le, or ``None``.
    :param command_mode: how the command is protected.
    :param response_mode: how the response is protected.
    """

    header: bytes
    data: bytes
    le: int | None
    command_mode: CommMode
    response_mode: CommMode

    @classmethod
    def of(
        cls,
        apdu: CommandApdu,
        header_length: int = 0,
        mode: CommMode = CommMode.PLAIN,
        response_mode: CommMode | None = None,
    ) -> ExchangeContext:
        """Describe ``apdu``.

        :param apdu: the command as the session built it, before any protection.
        :param header_length: how many leading data bytes belong to the command header.
        :param mode: the command's protection.
        :param response_mode: the response's protection; ``None`` means the same as ``mode``.
        :return: the context.
        :raises ValueError: ``header_length`` is negative or longer than the data.
        """
        if not 0 <= header_length <= len(apdu.data):
            raise ValueError(
                f"header_length must be 0..{len(apdu.data)} (the data length), got {header_length}"
            )
        header = bytes([apdu.cla, apdu.ins, apdu.p1, apdu.p2]) + apdu.data[:header_length]
        return cls(
            header=header,
            data=apdu.data[header_length:],
            le=apdu.le,
            command_mode=mode,
            response_mode=mode if response_mode is None else response_mode,
        )

    @property
    def ins(self) -> int:
        """:return: the INS byte (under DESFire's ISO wrapping, the native command code)."""
        return self.header[1]

    @property
    def command_header(self) -> bytes:
        """:return: the command's own header: ``header`` without ``CLA INS P1 P2``."""
        return self.header[4:]

    @property
    def plain(self) -> bool:
        """:return: whether neither direction is protected."""
        return self.command_mode is CommMode.PLAIN and self.response_mode is CommMode.PLAIN


class SecureChannel(abc.ABC):
    """One secure-messaging session, installed on a :class:`~mie.core.processors.SmartCardProtocol`.

    Implementations raise :class:`~mie.core.errors.SecureMessagingError` when a response does not
    verify; the protocol then drops the channel. Never log or keep key material outside it.
    """

    @abc.abstractmethod
    def wrap(self, apdu: CommandApdu, context: ExchangeContext) -> CommandApdu:
        """Return the command to send for ``apdu``, protected as ``context.command_mode`` says.

        Called for every command while the channel is installed, plain ones included (a
        counter moves), with the whole command, before any chaining.
        """

    @abc.abstractmethod
    def unwrap(self, data: bytes, sw: int, context: ExchangeContext) -> tuple[bytes, int]:
        """Check and strip the protection of a successful response; raise if it does not verify.

        Called only for a status word in the stack's success set, with all the response's data
        (every frame the layers below collected) and the final status word.
        """

    def drops_before(self, apdu: CommandApdu) -> bool:
        """Whether sending ``apdu`` ends the session at the card, so the channel must be dropped
        before it is sent (and ``apdu`` goes out plain). An interindustry SELECT always does;
        DESFire adds SelectApplication (``5A``) and a new authentication.

        :param apdu: the command about to be sent, unprotected.
        :return: ``False`` by default.
        """
        return False

    def dropped(self) -> None:  # noqa: B027 - optional hook: a channel without secrets has none
        """The channel was dropped: wipe keys and counters; it is never used again."""
