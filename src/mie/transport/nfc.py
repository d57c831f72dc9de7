"""Contactless cards through an NFC front end driven by nfcpy (``mie[nfc]``); the only module
of :mod:`mie` that imports :mod:`nfc`.

:class:`NfcConnection` senses an ISO/IEC 14443-4 type A card, activates it, and exchanges
APDUs with ``tag.transceive`` only: nfcpy's ``send_apdu`` refuses every status but ``9000``
(DESFire answers ``91xx``), and its NDEF support selects an application, which ends a DESFire
authentication. ``FF CA 00 00 00`` (PC/SC part 3 GET DATA, the UID) is answered here, as a PC/SC
reader would. nfcpy 1.0.4 is unmaintained but runs on Python 3.11.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from mie.core.connection import SmartCardConnection, Transport
from mie.core.errors import (
    CardRemovedError,
    NoCardError,
    TransportError,
    TransportTimeoutError,
    UnsupportedCardError,
)

PSEUDO_ATR = bytes.fromhex("3B80800101")
"""The PC/SC part 3 pseudo-ATR of a 14443-4 card without historical bytes (nfcpy drops the ATS)."""
GET_UID = bytes.fromhex("FFCA000000")
_SENSE_INTERVAL = 0.1


class NfcConnection(SmartCardConnection):
    """A connection to the first ISO/IEC 14443-4 type A card an NFC front end finds.

    :param path: nfcpy's device path: ``usb``, ``usb:VID:PID``, ``tty:…``, ``udp:HOST:PORT``.
    :param wait: how long to look for a card, in seconds.
    :param targets: the bit rates to sense (``106A``).
    :raises TransportError: the front end cannot be opened.
    :raises NoCardError: no card within ``wait``.
    :raises UnsupportedCardError: the card found is not ISO/IEC 14443-4.
    """

    def __init__(
        self, path: str = "usb", *, wait: float = 5.0, targets: Sequence[str] = ("106A",)
    ) -> None:
        import nfc
        import nfc.clf
        import nfc.tag.tt4

        # nfcpy logs every frame at DEBUG: keep a PIN or a key in an APDU out of any log.
        logging.getLogger("nfc").setLevel(max(logging.INFO, logging.getLogger("nfc").level))
        self._nfc = nfc
        try:
            self._clf: Any = nfc.ContactlessFrontend(path)
        except OSError as e:
            raise TransportError(f"Cannot open the NFC front end {path!r}: {e}") from e
        try:
            self._tag = self._activate(targets, wait)
        except BaseException:
            self._clf.close()
            raise

    def _activate(self, targets: Sequence[str], wait: float) -> Any:
        nfc = self._nfc
        remote = [nfc.clf.RemoteTarget(brty) for brty in targets]
        deadline = time.monotonic() + wait
        while True:
            try:
                found = self._clf.sense(*remote, iterations=1, interval=_SENSE_INTERVAL)
                tag = nfc.tag.activate(self._clf, found) if found is not None else None
            except nfc.clf.CommunicationError:
                tag = None
            if tag is not None:
                if not isinstance(tag, nfc.tag.tt4.Type4ATag):
                    raise UnsupportedCardError("The NFC card is not ISO 14443-4 (type 4A)")
                return tag
            if time.monotonic() >= deadline:
                raise NoCardError(f"No contactless card within {wait:g} s")

    @property
    def transport(self) -> Transport:
        return Transport.CONTACTLESS

    @property
    def atr(self) -> bytes:
        """The PC/SC part 3 pseudo-ATR (:data:`PSEUDO_ATR`)."""
        return PSEUDO_ATR

    @property
    def uid(self) -> bytes:
        """The UID the card gave at anticollision."""
        return bytes(self._tag.identifier)

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        if bytes(apdu) == GET_UID:
            return self.uid, 0x9000
        nfc = self._nfc
        try:
            response = bytes(self._tag.transceive(bytearray(apdu)))
        except nfc.tag.tt4.Type4TagCommandError as e:
            if e.errno == nfc.tag.TIMEOUT_ERROR:
                raise TransportTimeoutError("The contactless card did not answer in time") from e
            if e.errno == nfc.tag.RECEIVE_ERROR:
                raise CardRemovedError("The contactless card left the field") from e
            raise TransportError(f"Contactless exchange failed: {e}") from e
        except nfc.clf.BrokenLinkError as e:
            raise CardRemovedError("The NFC link is broken (RF off)") from e
        except nfc.clf.CommunicationError as e:
            raise TransportError(f"Contactless exchange failed: {e}") from e
        if len(response) < 2:
            raise TransportError("The contactless card answered without a status word")
        return response[:-2], int.from_bytes(response[-2:], "big")

    def close(self) -> None:
        """Release the front end (nfcpy's udp driver sends ``RFOFF``)."""
        self._clf.close()
