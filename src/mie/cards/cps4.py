"""CPS4 (NXP ChipDoc) and PSI cards: PKCS#15 on the basic channel, crypto on logical channel 1.

The ChipDoc applet (``80 25 00 00 01 FF 01 00``) is selected on channel 1 (CLA ``01``); the
authentication key (``20``) is used through MSE SET CT and a raw PSO DECIPHER of a PKCS#1 v1.5
type-01 block the host builds (``cps-cards.md`` §4), which yields the same signature a CPS3 makes.
"""

from __future__ import annotations

import logging

from mie.cards.cpx import (
    CHIPDOC_AID,
    CPS4_KEY_AUT,
    INS_MSE,
    INS_PSO,
    PIN_REF,
    CpxSession,
    cardholder_pin_block,
    digest_info,
)
from mie.core.connection import SmartCardConnection
from mie.core.errors import UnsupportedCardError
from mie.request import UserVerification

logger = logging.getLogger(__name__)

CLA_CHANNEL_1 = 0x01
MIN_PADDING = 8


def pkcs1_type1_block(message: bytes, size: int) -> bytes:
    """EMSA-PKCS1-v1_5 encoding ``00 01 FF…FF 00 ‖ message`` of ``size`` bytes (RFC 8017 §9.2).

    :param message: the DigestInfo.
    :param size: the modulus length in bytes.
    :raises ValueError: the message does not fit with at least 8 bytes of padding.
    """
    padding_length = size - len(message) - 3
    if padding_length < MIN_PADDING:
        raise ValueError(f"A {len(message)}-byte DigestInfo does not fit a {size}-byte modulus")
    return b"\x00\x01" + b"\xff" * padding_length + b"\x00" + message


class Cps4Session(CpxSession):
    """A CPS4 or PSI card.

    :param connection: the card connection.
    """

    def __init__(self, connection: SmartCardConnection) -> None:
        super().__init__(connection)
        self.key_bytes: int | None = None
        self._applet_selected = False

    def _select_applet(self) -> None:
        if not self._applet_selected:
            self.protocol.select(CHIPDOC_AID, p2=0x0C, cla=CLA_CHANNEL_1)
            self._applet_selected = True

    def verify_cardholder(self, user: UserVerification, allow_last_try: bool) -> None:
        """Ask for and present the PIN on channel 1 after checking the counter (see the CPS3
        session)."""
        self._select_applet()
        tries = self.check_pin_tries(PIN_REF, allow_last_try, cla=CLA_CHANNEL_1)
        self.present_pin(cardholder_pin_block(user, tries), PIN_REF, cla=CLA_CHANNEL_1)

    def sign_challenge(self, challenge: bytes) -> bytes:
        """Sign the DigestInfo of SHA-256(``challenge``); :attr:`key_bytes` must be set first."""
        if self.key_bytes is None:
            raise ValueError("The key size must be known (from the certificate) before signing")
        self._select_applet()
        try:
            block = pkcs1_type1_block(digest_info(challenge), self.key_bytes)
        except ValueError as e:
            raise UnsupportedCardError(f"CPS4 authentication key too small: {e}") from e
        logger.debug("Signing the challenge with the authentication key (raw decipher)")
        environment = bytes([0x83, 0x01, CPS4_KEY_AUT])
        self.protocol.send_apdu(CLA_CHANNEL_1, INS_MSE, 0x41, 0xB8, environment)
        signature = self.protocol.send_apdu(
            CLA_CHANNEL_1, INS_PSO, 0x80, 0x86, b"\x00" + block, 256
        )
        logger.info("Challenge signed")
        return signature
