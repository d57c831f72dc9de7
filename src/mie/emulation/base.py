"""The emulated-card interface and an in-process connection to one."""

from __future__ import annotations

import abc
import contextlib
import logging
from collections.abc import Iterator

from mie.core.apdu import split_response
from mie.core.connection import SmartCardConnection, Transport
from mie.core.log import log_command, log_response

logger = logging.getLogger(__name__)


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

    def reset(self) -> None:
        """Warm reset: same effect on volatile state as a power cycle."""
        self.power_off()
        self.power_on()


class EmulatedConnection(SmartCardConnection):
    """A connection straight to an emulated card in the same process (no reader, no daemon).

    :param card: the card.
    :param transport: how the card is presented.
    """

    def __init__(self, card: EmulatedCard, transport: Transport = Transport.CONTACT) -> None:
        self.card = card
        self._transport = transport
        card.power_on()

    @property
    def transport(self) -> Transport:
        return self._transport

    @property
    def atr(self) -> bytes:
        """The card's ATR."""
        return self.card.atr

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        log_command(logger, apdu)
        data, sw = split_response(self.card.process(apdu))
        log_response(logger, data, sw)
        return data, sw

    @contextlib.contextmanager
    def transaction(self, reset: bool = False) -> Iterator[None]:
        """Nothing to lock in process; ``reset`` resets the card at the end, as over PC/SC."""
        try:
            yield
        finally:
            if reset:
                self.card.reset()

    def close(self) -> None:
        self.card.power_off()
