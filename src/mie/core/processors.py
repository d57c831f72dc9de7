"""The APDU processor stack: each concern is one processor wrapping the next.

The stack is a recipe: the :class:`ApduFormatter` that encodes bytes onto the connection, then
layers bottom to top. :data:`ISO7816_LAYERS` is wrong-length re-send (``6Cxx``), response
chaining (``61xx``) and command chaining; DESFire puts native wrapping and ``AF`` chaining in their
place. :class:`SmartCardProtocol` builds the stack from its :class:`StackSettings` and recipe in
:meth:`SmartCardProtocol.configure`, which changes only what it is given, and carries the
secure-channel lifecycle (:mod:`mie.core.channel`) on top.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Final, Literal, TypeVar

from mie.core.apdu import SHORT_MAX_DATA, CommandApdu
from mie.core.channel import CommMode, ExchangeContext, SecureChannel
from mie.core.connection import SmartCardConnection
from mie.core.errors import (
    ApduError,
    ApduFormatError,
    ApplicationNotAvailableError,
    BadResponseError,
    SecureMessagingError,
)
from mie.core.sw import SW

logger = logging.getLogger(__name__)

INS_SELECT = 0xA4
INS_GET_RESPONSE = 0xC0
CLA_CHAINING = 0x10
MAX_RESPONSE_CHAIN = 256

_APP_NOT_AVAILABLE = {SW.FILE_NOT_FOUND, SW.INCORRECT_P1P2, SW.INS_NOT_SUPPORTED, SW.WRONG_P1P2}


class _Keep(Enum):
    KEEP = "KEEP"


KEEP: Final = _Keep.KEEP
"""Default of :meth:`SmartCardProtocol.configure`'s arguments: leave that setting as it is."""

Keep = Literal[_Keep.KEEP]
T = TypeVar("T")


def _pick(value: T | Keep, current: T) -> T:
    """:return: ``current`` for :data:`KEEP`, else ``value``."""
    return current if isinstance(value, _Keep) else value


def _check_layers(layers: tuple[Layer, ...]) -> tuple[Layer, ...]:
    if not isinstance(layers, tuple) or not all(callable(layer) for layer in layers):
        raise ValueError("The layers must be a tuple of layer builders")
    return layers


def is_interindustry(cla: int) -> bool:
    """Whether ``cla`` is an interindustry class byte (ISO/IEC 7816-4 §5.4.1).

    Only those carry the command-chaining bit ``10``; in a proprietary class (bit 8 set, such as
    DESFire's ``90``) the same bit means something else, and ``20``..``3F`` are reserved.

    :param cla: the class byte.
    :return: ``True`` for ``00``..``1F`` and ``40``..``7F``.
    """
    return not cla & 0x80 and cla & 0xE0 != 0x20


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
        if not is_interindustry(apdu.cla):
            raise ApduFormatError(
                f"Command data of {len(apdu.data)} bytes needs chaining, which CLA "
                f"{apdu.cla:02x} has no bit for (not an interindustry class)"
            )
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


@dataclass(frozen=True)
class StackSettings:
    """What the processor stack is built from.

    :param t0: the link runs T=0: case-4 commands go without Le.
    :param extended_length: the card accepts extended-length APDUs.
    :param max_command_data: longest data field before command chaining; ``None`` means 255, or
        65535 with extended length.
    :param success: the status words that mean success (``9000``; DESFire adds ``9100``). Any other
        makes :meth:`SmartCardProtocol.send_apdu` raise and drops a secure channel.
    """

    t0: bool = False
    extended_length: bool = False
    max_command_data: int | None = None
    success: frozenset[int] = frozenset({SW.OK})

    def __post_init__(self) -> None:
        if self.max_command_data is not None and not 1 <= self.max_command_data <= 65535:
            raise ValueError(f"max_command_data must be 1..65535, got {self.max_command_data}")
        if not isinstance(self.success, frozenset) or not self.success:
            raise ValueError("The success status words must be a non-empty frozenset")
        if any(not isinstance(sw, int) or not 0x6000 <= sw <= 0x9FFF for sw in self.success):
            raise ValueError("A success value is no status word (6000..9FFF)")

    @property
    def command_data_limit(self) -> int:
        """:return: the longest data field one command carries before chaining."""
        if self.max_command_data is not None:
            return self.max_command_data
        return 65535 if self.extended_length else SHORT_MAX_DATA


Layer = Callable[[ApduProcessor, StackSettings], ApduProcessor]
"""Builds one layer of the stack on top of ``delegate`` from the settings."""


def wrong_length(delegate: ApduProcessor, settings: StackSettings) -> ApduProcessor:
    """:return: the ``6Cxx`` re-send layer (:class:`WrongLengthProcessor`)."""
    return WrongLengthProcessor(delegate)


def response_chaining(delegate: ApduProcessor, settings: StackSettings) -> ApduProcessor:
    """:return: the ``61xx`` GET RESPONSE layer (:class:`ResponseChainingProcessor`)."""
    return ResponseChainingProcessor(delegate)


def command_chaining(delegate: ApduProcessor, settings: StackSettings) -> ApduProcessor:
    """:return: the ISO command-chaining layer, cut at ``settings.command_data_limit``."""
    return CommandChainingProcessor(delegate, settings.command_data_limit)


ISO7816_LAYERS: Final[tuple[Layer, ...]] = (wrong_length, response_chaining, command_chaining)
"""The ISO/IEC 7816-4 recipe, bottom to top above the :class:`ApduFormatter`."""

SecureMessagingFactory = Callable[[ApduProcessor], SecureMessagingProcessor]


def _is_select(apdu: CommandApdu) -> bool:
    return apdu.ins == INS_SELECT and is_interindustry(apdu.cla)


class SmartCardProtocol:
    """Sends commands to a card through a processor stack built from a recipe.

    The stack is the :class:`ApduFormatter` with ``layers`` on top of it, bottom to top. A
    :class:`~mie.core.channel.SecureChannel`, once installed, sits above all of them.

    :param connection: the card connection.
    :param extended_length: whether the card accepts extended-length APDUs.
    :param t0: whether the link runs T=0 (case-4 commands go without Le).
    :param layers: the recipe; :data:`ISO7816_LAYERS` by default.
    :param success: the status words that mean success.
    """

    def __init__(
        self,
        connection: SmartCardConnection,
        extended_length: bool = False,
        t0: bool = False,
        *,
        layers: tuple[Layer, ...] = ISO7816_LAYERS,
        success: frozenset[int] = frozenset({SW.OK}),
    ) -> None:
        self.connection = connection
        self.processor: ApduProcessor
        self._settings = StackSettings(t0=t0, extended_length=extended_length, success=success)
        self._layers = _check_layers(layers)
        self._secure_messaging: SecureMessagingFactory | None = None
        self._channel: SecureChannel | None = None
        self._transactions = 0
        self._build()

    @property
    def settings(self) -> StackSettings:
        """:return: the settings the current stack was built from."""
        return self._settings

    @property
    def layers(self) -> tuple[Layer, ...]:
        """:return: the recipe of the current stack, bottom to top above the formatter."""
        return self._layers

    @property
    def channel(self) -> SecureChannel | None:
        """:return: the installed secure channel, or ``None``."""
        return self._channel

    def configure(
        self,
        *,
        extended_length: bool | Keep = KEEP,
        t0: bool | Keep = KEEP,
        max_command_data: int | Keep | None = KEEP,
        success: frozenset[int] | Keep = KEEP,
        layers: tuple[Layer, ...] | Keep = KEEP,
        secure_messaging: SecureMessagingFactory | Keep | None = KEEP,
    ) -> None:
        """Change some settings and rebuild the processor stack; the others stay as they are.

        An installed secure channel stays installed: nothing is sent.

        :param extended_length: whether the card accepts extended-length APDUs.
        :param t0: whether the link runs T=0.
        :param max_command_data: longest data field before command chaining; ``None`` means 255,
            or 65535 with extended length.
        :param success: the status words that mean success.
        :param layers: the recipe, bottom to top (DESFire: native wrapping, then ``AF`` chaining).
        :param secure_messaging: deprecated (use :meth:`install_channel`): builds a layer put on
            top of the recipe; ``None`` removes it.
        :raises ValueError: a setting out of range (the stack is left unchanged).
        """
        old = self._settings
        settings = StackSettings(
            t0=_pick(t0, old.t0),
            extended_length=_pick(extended_length, old.extended_length),
            max_command_data=_pick(max_command_data, old.max_command_data),
            success=_pick(success, old.success),
        )
        recipe = _check_layers(_pick(layers, self._layers))
        if secure_messaging is not KEEP and secure_messaging is not None:
            warnings.warn(
                "configure(secure_messaging=...) is deprecated; install a SecureChannel with "
                "SmartCardProtocol.install_channel",
                DeprecationWarning,
                stacklevel=2,
            )
        self._settings, self._layers = settings, recipe
        self._secure_messaging = _pick(secure_messaging, self._secure_messaging)
        self._build()

    def _build(self) -> None:
        settings = self._settings
        processor: ApduProcessor = ApduFormatter(
            self.connection, settings.extended_length, settings.t0
        )
        for layer in self._layers:
            processor = layer(processor, settings)
        if self._secure_messaging is not None:
            processor = self._secure_messaging(processor)
        self.processor = processor

    def install_channel(self, channel: SecureChannel) -> None:
        """Put ``channel`` on top of the stack, after its handshake ran on the plain stack.

        From now on every command goes through it, until SELECT or a command the channel says
        ends the session (:meth:`~mie.core.channel.SecureChannel.drops_before`), a status word
        outside ``settings.success``, a failure inside an exchange, or :meth:`drop_channel`. A
        channel installed before is dropped first.

        :param channel: the established channel.
        """
        if self._channel is not None and self._channel is not channel:
            self.drop_channel()
        self._channel = channel
        logger.debug("Secure channel installed")

    @contextlib.contextmanager
    def transaction(self, reset: bool = False) -> Iterator[None]:
        """Hold the card (:meth:`SmartCardConnection.transaction`); a secure channel still
        installed when the outermost block ends is dropped: other clients may talk to the card
        between transactions, and a reset ends the card's side of it.

        :param reset: reset the card when the outermost transaction ends.
        """
        self._transactions += 1
        try:
            with self.connection.transaction(reset):
                yield
        finally:
            self._transactions -= 1
            if not self._transactions:
                self.drop_channel()

    def detach_channel(self) -> SecureChannel | None:
        """Remove the installed secure channel **without** dropping it: its state stays for the
        caller, who runs a handshake on the plain stack and installs a successor, then drops
        the old channel itself (DESFire AuthenticateEV2NonFirst re-keys a session whose TI and
        command counter survive; installed, the channel would be dropped by the handshake's
        ``91AF``).

        :return: the channel that was installed, or ``None``.
        """
        channel, self._channel = self._channel, None
        if channel is not None:
            logger.debug("Secure channel detached")
        return channel

    def drop_channel(self) -> None:
        """Drop the installed secure channel, if any, and let it wipe its state."""
        channel, self._channel = self._channel, None
        if channel is not None:
            logger.debug("Secure channel dropped")
            channel.dropped()

    def _ends_channel(self, channel: SecureChannel, apdu: CommandApdu) -> bool:
        if _is_select(apdu):
            return True
        try:
            return channel.drops_before(apdu)
        except BaseException:
            self.drop_channel()
            raise

    def transmit(
        self,
        apdu: CommandApdu,
        *,
        header_length: int = 0,
        mode: CommMode = CommMode.PLAIN,
        response_mode: CommMode | None = None,
    ) -> tuple[bytes, int]:
        """Send a command and return ``(data, sw)`` whatever the status word.

        :param apdu: the command, unprotected.
        :param header_length: how many leading data bytes are the command's own header (a
            secure channel authenticates them but does not encrypt them).
        :param mode: how the installed channel protects the command.
        :param response_mode: how it protects the response; ``None`` means as ``mode``.
        :return: the response data and status word.
        :raises SecureMessagingError: a protected mode without a channel (nothing is sent), or a
            response that does not verify (the channel is dropped).

        With a channel installed, a status word outside ``settings.success``, the card's or the
        one the channel found inside the protected response, drops the channel.
        """
        context = ExchangeContext.of(apdu, header_length, mode, response_mode)
        if self._channel is not None and self._ends_channel(self._channel, apdu):
            self.drop_channel()
        channel = self._channel
        if channel is None:
            if not context.plain:
                raise SecureMessagingError(
                    f"No secure channel is installed for a {context.command_mode.value}/"
                    f"{context.response_mode.value} command; nothing was sent"
                )
            return self.processor.send_apdu(apdu)
        try:
            data, sw = self.processor.send_apdu(channel.wrap(apdu, context))
            if sw in self._settings.success:
                # ISO secure messaging carries the real status word inside (DO 99).
                data, sw = channel.unwrap(data, sw, context)
            if sw not in self._settings.success:
                self.drop_channel()
            return data, sw
        except BaseException:
            # Whatever failed, the two ends may disagree on the channel state now.
            self.drop_channel()
            raise

    def send_apdu(
        self,
        cla: int,
        ins: int,
        p1: int,
        p2: int,
        data: bytes = b"",
        le: int | None = None,
        *,
        header_length: int = 0,
        mode: CommMode = CommMode.PLAIN,
        response_mode: CommMode | None = None,
    ) -> bytes:
        """Send a command and return its data; a status word outside ``settings.success`` raises.

        The keyword arguments are those of :meth:`transmit`.

        :return: the response data.
        :raises ApduError: the card answered another status word.
        :raises SecureMessagingError: as :meth:`transmit`.
        """
        apdu = CommandApdu(cla, ins, p1, p2, data, le)
        response, sw = self.transmit(
            apdu, header_length=header_length, mode=mode, response_mode=response_mode
        )
        if sw not in self._settings.success:
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
