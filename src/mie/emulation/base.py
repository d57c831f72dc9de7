"""The emulated-card interface and an in-process connection to one."""

from __future__ import annotations

import abc
import contextlib
import logging
from collections.abc import Iterator

from mie.core.apdu import split_response
from mie.core.connection import SmartCardConnection, Transport, transport_from_atr
from mie.core.errors import CardRemovedError
from mie.core.log import log_command, log_response

logger = logging.getLogger(__name__)


class CardGone(Exception):  # noqa: N818 - an event, not an error of the card's answer
    """Raised by :meth:`EmulatedCard.process` when the card has left the field (a test
    fault): the host stops presenting it, without answering the command."""


class EmulatedCard(abc.ABC):
    """A card that answers APDUs: what a host presents to a reader."""

    @property
    @abc.abstractmethod
    def atr(self) -> bytes:
        """The ATR the card answers to a reset."""

    @abc.abstractmethod
    def process(self, apdu: bytes) -> bytes:
        """Answer one command APDU with a response APDU (data followed by SW1 SW2)."""

    @abc.abstractmethod
    def power_on(self) -> None:
        """Power the card up: every volatile state starts fresh."""

    @abc.abstractmethod
    def power_off(self) -> None:
        """Power the card down: volatile state (verified PIN, selection) is lost."""

    @property
    def gone(self) -> bool:
        """Whether the card has left the field after its last answer (a test fault): a host
        stops presenting it once that answer is out."""
        return False

    def reset(self) -> None:
        """Warm reset: same effect on volatile state as a power cycle."""
        self.power_off()
        self.power_on()


class EmulatedConnection(SmartCardConnection):
    """A connection straight to an emulated card in the same process (no reader, no daemon).

    :param card: the card.
    :param transport: how the card is presented; ``None``: read from the card's ATR, as a
        PC/SC connection does.
    """

    def __init__(self, card: EmulatedCard, transport: Transport | None = None) -> None:
        self.card = card
        self._transport = transport
        self._depth = 0
        self._reset_owed = False
        card.power_on()

    @property
    def transport(self) -> Transport:
        return self._transport if self._transport is not None else transport_from_atr(self.atr)

    @property
    def atr(self) -> bytes:
        """The card's ATR."""
        return self.card.atr

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        log_command(logger, apdu)
        try:
            response = self.card.process(apdu)
        except CardGone as e:
            raise CardRemovedError(f"The emulated card left the field: {e}") from e
        data, sw = split_response(response)
        log_response(logger, data, sw)
        return data, sw

    @contextlib.contextmanager
    def transaction(self, reset: bool = False) -> Iterator[None]:
        """Nothing to lock in process; ``reset`` resets the card when the outermost transaction
        ends, as over PC/SC (a nested ``reset=True`` is owed to the outer one)."""
        self._reset_owed = self._reset_owed or reset
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0 and self._reset_owed:
                self._reset_owed = False
                self.card.reset()

    def close(self) -> None:
        self.card.power_off()
