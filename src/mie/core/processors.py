"""The APDU processor stack: each concern is one processor wrapping the next.

From top to bottom: secure messaging (optional), command chaining, response chaining (``61xx``),
wrong-length re-send (``6Cxx``), and the formatter that encodes bytes onto the connection.
:class:`SmartCardProtocol` builds the stack in :meth:`SmartCardProtocol.configure`.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable

from mie.core.apdu import SHORT_MAX_DATA, CommandApdu
from mie.core.connection import SmartCardConnection
from mie.core.errors import (
    ApduError,
    ApduFormatError,
    ApplicationNotAvailableError,
    BadResponseError,
)
from mie.core.sw import SW

logger = logging.getLogger(__name__)

INS_SELECT = 0xA4
INS_GET_RESPONSE = 0xC0
CLA_CHAINING = 0x10
MAX_RESPONSE_CHAIN = 256

_APP_NOT_AVAILABLE = {SW.FILE_NOT_FOUND, SW.INCORRECT_P1P2, SW.INS_NOT_SUPPORTED, SW.WRONG_P1P2}


class ApduProcessor(abc.ABC):
    """One layer of the stack: takes a command, returns ``(data, sw)``."""

    @abc.abstractmethod
    def send_apdu(self, apdu: CommandApdu) -> tuple[bytes, int]:
        """Send ``apdu`` through this layer and the ones below it."""


class ApduFormatter(ApduProcessor):
    """Bottom layer: encodes commands and hands the bytes to the connection.

    :param connection: the card connection.
    :param extended_length: whether the card accepts extended-length APDUs.
    :param t0: send case-4 commands without Le, as the T=0 protocol requires; the card then
        answers ``61xx`` and the response-chaining layer fetches the data.
    """

    def __init__(
        self, connection: SmartCardConnection, extended_length: bool, t0: bool = False
    ) -> None:
        self.connection = connection
        self.extended_length = extended_length
        self.t0 = t0

    def send_apdu(self, apdu: CommandApdu) -> tuple[bytes, int]:
        if apdu.needs_extended and not self.extended_length:
            raise ApduFormatError("Command needs extended length, which this card does not accept")
        if self.t0 and apdu.data and apdu.le is not None:
            apdu = apdu.with_le(None)
        return self.connection.send_and_receive(apdu.encode())


class ChainedProcessor(ApduProcessor):
    """A layer that delegates to the one below it."""

    def __init__(self, delegate: ApduProcessor) -> None:
        self.delegate = delegate


class WrongLengthProcessor(ChainedProcessor):
    """Re-sends a command once with ``Le = SW2`` when the card answers ``6Cxx``.

    Only commands without a data field are sent again (``6Cxx`` is a case-2 answer): a command
    carrying data, a PIN above all, is never repeated behind the caller's back.
    """

    def send_apdu(self, apdu: CommandApdu) -> tuple[bytes, int]:
        data, sw = self.delegate.send_apdu(apdu)
        if sw >> 8 == 0x6C and not apdu.data:
            data, sw = self.delegate.send_apdu(apdu.with_le((sw & 0xFF) or 256))
        return data, sw


def _interindustry_cla(cla: int) -> int:
    """:return: an inter-industry CLA on the same logical channel as ``cla``."""
    if cla & 0x40:
        return 0x40 | (cla & 0x0F)
    return cla & 0x03


class ResponseChainingProcessor(ChainedProcessor):
    """Collects ``61xx`` continuations with GET RESPONSE until the card is done."""

    def send_apdu(self, apdu: CommandApdu) -> tuple[bytes, int]:
        data, sw = self.delegate.send_apdu(apdu)
        chunks = [data]
        for _ in range(MAX_RESPONSE_CHAIN):
            if sw >> 8 != 0x61:
                return b"".join(chunks), sw
            get_response = CommandApdu(
                _interindustry_cla(apdu.cla), INS_GET_RESPONSE, 0, 0, le=(sw & 0xFF) or 256
            )
            data, sw = self.delegate.send_apdu(get_response)
            chunks.append(data)
        if sw >> 8 != 0x61:
            return b"".join(chunks), sw
        raise BadResponseError(f"Card kept answering 61xx after {MAX_RESPONSE_CHAIN} GET RESPONSE")


class CommandChainingProcessor(ChainedProcessor):
    """Splits command data longer than ``max_data`` into a chain (CLA bit ``10``).

    :param delegate: the layer below.
    :param max_data: the largest data field one command may carry.
    """

    def __init__(self, delegate: ApduProcessor, max_data: int = SHORT_MAX_DATA) -> None:
        super().__init__(delegate)
        if not 1 <= max_data <= 65535:
            raise ValueError(f"max_data must be 1..65535, got {max_data}")
        self.max_data = max_data

    def send_apdu(self, apdu: CommandApdu) -> tuple[bytes, int]:
        if len(apdu.data) <= self.max_data:
            return self.delegate.send_apdu(apdu)
        offset = 0
        while len(apdu.data) - offset > self.max_data:
            chunk = apdu.data[offset : offset + self.max_data]
            link = CommandApdu(apdu.cla | CLA_CHAINING, apdu.ins, apdu.p1, apdu.p2, chunk)
            data, sw = self.delegate.send_apdu(link)
            if sw != SW.OK:
                return data, sw
            offset += self.max_data
        last = CommandApdu(apdu.cla, apdu.ins, apdu.p1, apdu.p2, apdu.data[offset:], apdu.le)
        return self.delegate.send_apdu(last)


class SecureMessagingProcessor(ChainedProcessor):
    """Slot for a secure channel: protects each command and unprotects each response.

    Subclasses own the channel state (keys, counters, IV) and implement the two transforms.
    """

    @abc.abstractmethod
    def protect(self, apdu: CommandApdu) -> CommandApdu:
        """Return the protected form of ``apdu``."""

    @abc.abstractmethod
    def unprotect(self, data: bytes, sw: int) -> tuple[bytes, int]:
        """Check and strip the protection of a response; raise if it does not verify."""

    def send_apdu(self, apdu: CommandApdu) -> tuple[bytes, int]:
        data, sw = self.delegate.send_apdu(self.protect(apdu))
        return self.unprotect(data, sw)


class SmartCardProtocol:
    """Sends commands to a card through a configurable processor stack.

    :param connection: the card connection.
    :param extended_length: whether the card accepts extended-length APDUs.
    :param t0: whether the link runs T=0 (case-4 commands go without Le).
    """

    def __init__(
        self, connection: SmartCardConnection, extended_length: bool = False, t0: bool = False
    ) -> None:
        self.connection = connection
        self.processor: ApduProcessor
        self.configure(extended_length=extended_length, t0=t0)

    def configure(
        self,
        *,
        extended_length: bool = False,
        t0: bool = False,
        max_command_data: int | None = None,
        secure_messaging: Callable[[ApduProcessor], SecureMessagingProcessor] | None = None,
    ) -> None:
        """(Re)build the processor stack.

        :param extended_length: whether the card accepts extended-length APDUs.
        :param t0: whether the link runs T=0.
        :param max_command_data: longest data field before command chaining; defaults to 255, or
            65535 with extended length.
        :param secure_messaging: builds the secure-messaging layer put on top, if any.
        """
        if max_command_data is None:
            max_command_data = 65535 if extended_length else SHORT_MAX_DATA
        processor: ApduProcessor = ApduFormatter(self.connection, extended_length, t0)
        processor = WrongLengthProcessor(processor)
        processor = ResponseChainingProcessor(processor)
        processor = CommandChainingProcessor(processor, max_command_data)
        if secure_messaging is not None:
            processor = secure_messaging(processor)
        self.processor = processor

    def transmit(self, apdu: CommandApdu) -> tuple[bytes, int]:
        """Send a command and return ``(data, sw)`` whatever the status word.

        :param apdu: the command.
        :return: the response data and status word.
        """
        return self.processor.send_apdu(apdu)

    def send_apdu(
        self, cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None
    ) -> bytes:
        """Send a command and return its data; any status word but ``9000`` raises.

        :return: the response data.
        :raises ApduError: the card answered another status word.
        """
        response, sw = self.transmit(CommandApdu(cla, ins, p1, p2, data, le))
        if sw != SW.OK:
            raise ApduError(response, sw)
        return response

    def select(self, aid: bytes, p2: int = 0x00, cla: int = 0x00) -> bytes:
        """SELECT an application by AID (P1 = ``04``).

        :param aid: the application identifier.
        :param p2: ``00`` for FCI, ``04`` for FCP, ``0C`` for no data.
        :param cla: class byte (logical channel).
        :return: the data returned by the card.
        :raises ApplicationNotAvailableError: the card does not have the application.
        """
        logger.debug("Selecting AID %s", aid.hex().upper())
        le = None if p2 == 0x0C else 256
        try:
            return self.send_apdu(cla, INS_SELECT, 0x04, p2, aid, le)
        except ApduError as e:
            if SW.of(e.sw) in _APP_NOT_AVAILABLE:
                raise ApplicationNotAvailableError(
                    e.data, e.sw, f"Application {aid.hex().upper()} not available on the card"
                ) from e
            raise
