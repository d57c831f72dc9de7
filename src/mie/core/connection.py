"""The connection interfaces every transport implements, and the wrapper base.

:class:`Connection` is any link to an authenticator (a CTAP device will be one);
:class:`SmartCardConnection` adds APDUs, the ATR, the transport and transactions;
:class:`SmartCardConnectionWrapper` forwards all of that to an inner connection, so a recorder,
a counter or a fault injector overrides only what it changes.
"""

from __future__ import annotations

import abc
import contextlib
from enum import Enum, unique
from types import TracebackType
from typing import Self

from mie.core.atr import Atr
from mie.core.errors import ApduFormatError


@unique
class Transport(Enum):
    """How the card (or security key) is reached."""

    CONTACT = "contact"
    CONTACTLESS = "contactless"
    #: A FIDO2 security key on USB (HID).
    USB = "usb"


def transport_from_atr(atr: bytes | None) -> Transport:
    """Tell a contactless card from its ATR: the PC/SC part 3 pseudo-ATR (see
    :attr:`Atr.contactless`) means contactless; anything else, an unknown or unreadable ATR
    included, means contact.

    A contact card whose real ATR has the pseudo-ATR's form (``3B 8x 80 01 …``) reads as
    contactless: PC/SC tells nothing better.

    :param atr: the ATR, if known.
    :return: the transport.
    """
    if atr is None:
        return Transport.CONTACT
    try:
        contactless = Atr.parse(atr).contactless
    except ApduFormatError:
        return Transport.CONTACT
    return Transport.CONTACTLESS if contactless else Transport.CONTACT


class Connection(abc.ABC):  # noqa: B024 - the base of every kind of link, with nothing abstract
    """A link to one authenticator; a context manager that closes it."""

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


class SmartCardConnection(Connection):
    """A link to one card that exchanges raw APDU bytes.

    Backends (PC/SC, NFC, replay, in-process emulators) convert their own types to ``bytes`` and one
    ``int`` status word at this edge; nothing above sees a backend type.
    """

    @property
    def transport(self) -> Transport:
        """How the card is reached; by default read from the ATR (:func:`transport_from_atr`)."""
        return transport_from_atr(self.atr)

    @property
    @abc.abstractmethod
    def atr(self) -> bytes | None:
        """The card's ATR (or the reader's pseudo-ATR for contactless cards), if known."""

    @abc.abstractmethod
    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        """Send one encoded command APDU and return the response data and status word."""

    def transaction(self, reset: bool = False) -> contextlib.AbstractContextManager[None]:
        """Hold the card for a multi-APDU operation; backends without sharing do nothing.

        Transactions nest: an inner ``transaction(reset=True)`` owes its reset to the
        outermost one, and the card is reset when that one ends (PC/SC cannot reset a card
        inside a transaction it holds without ending it).

        :param reset: reset the card when the (outermost) transaction ends, so a PIN verified
            inside it is not left verified for other users of a shared reader.
        """
        return contextlib.nullcontext()


class SmartCardConnectionWrapper(SmartCardConnection):
    """A connection that forwards everything to ``inner``: transport, ATR, transactions,
    exchanges and ``close``. Subclasses override what they change (usually
    :meth:`send_and_receive`).

    :param inner: the wrapped connection.
    """

    def __init__(self, inner: SmartCardConnection) -> None:
        self.inner = inner

    @property
    def connection(self) -> SmartCardConnection:
        """The wrapped connection (another name for :attr:`inner`)."""
        return self.inner

    @property
    def transport(self) -> Transport:
        return self.inner.transport

    @property
    def atr(self) -> bytes | None:
        return self.inner.atr

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        return self.inner.send_and_receive(apdu)

    def transaction(self, reset: bool = False) -> contextlib.AbstractContextManager[None]:
        return self.inner.transaction(reset)

    def close(self) -> None:
        self.inner.close()
