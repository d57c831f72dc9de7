"""The connection interface every card transport implements."""

from __future__ import annotations

import abc
import contextlib
from enum import Enum, unique
from types import TracebackType
from typing import Self


@unique
class Transport(Enum):
    """How the card is reached."""

    CONTACT = "contact"
    CONTACTLESS = "contactless"


class SmartCardConnection(abc.ABC):
    """A link to one card that exchanges raw APDU bytes.

    Backends (PC/SC, NFC, replay, in-process emulators) convert their own types to ``bytes`` and one
    ``int`` status word at this edge; nothing above sees a backend type.
    """

    @property
    @abc.abstractmethod
    def transport(self) -> Transport:
        """How the card is reached."""

    @property
    @abc.abstractmethod
    def atr(self) -> bytes | None:
        """The card's ATR (or the reader's pseudo-ATR for contactless cards), if known."""

    @abc.abstractmethod
    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        """Send one encoded command APDU and return the response data and status word."""

    def transaction(self, reset: bool = False) -> contextlib.AbstractContextManager[None]:
        """Hold the card for a multi-APDU operation; backends without sharing do nothing.

        :param reset: reset the card when the transaction ends, so a PIN verified inside it
            is not left verified for other users of a shared reader.
        """
        return contextlib.nullcontext()

    def close(self) -> None:  # noqa: B027 - optional hook, most backends release nothing
        """Release the connection."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
