"""The client side of the generic demo card (``mie emulate iso7816``, ``mie demo``): its session,
and the authenticator that identifies it (it has no key, so it never authenticates)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from mie.auth import Authenticator
from mie.cards.cpx import CPX_PIN
from mie.cards.iso7816 import Iso7816Session, PinStatus
from mie.core.connection import SmartCardConnection
from mie.core.errors import UnsupportedCardError
from mie.evidence import Evidence
from mie.request import AuthRequest, UserVerification
from mie.result import AuthenticatorInfo, Identification

logger = logging.getLogger(__name__)

DEMO_ATR = bytes.fromhex("3B0980") + b"MIE-GEN1"
DEMO_AID = bytes.fromhex("F04D49454445") + b"MO"
DEMO_KIND = "iso7816"
FID_SERIAL = 0x0101
SFI_PUBLIC = 2
FID_HOLDER = 0x0103


@dataclass(frozen=True)
class DemoReport:
    """What the demo read from the card.

    :param serial: the card serial.
    :param public_size: bytes read from the public file.
    :param pin_status: the PIN status before VERIFY.
    :param holder: the holder name, readable only after VERIFY.
    """

    serial: str
    public_size: int
    pin_status: PinStatus
    holder: str


class DemoSession(Iso7816Session):
    """Selects the demo application.

    :param connection: the card connection.
    """

    def __init__(self, connection: SmartCardConnection) -> None:
        super().__init__(connection, DEMO_AID)

    def serial(self) -> str:
        """:return: the card serial (no PIN needed)."""
        return self.read_file(FID_SERIAL).decode("ascii", errors="replace")

    def run(self, pin: str, allow_last_try: bool = False) -> DemoReport:
        """Read the serial and the public file, verify the PIN, read the holder.

        :param pin: the cardholder PIN.
        :param allow_last_try: present the PIN even with one try left.
        :return: what was read.
        """
        block = CPX_PIN.pad(pin)
        serial = self.serial()
        public = self.read_sfi(SFI_PUBLIC)
        status = self.pin_status()
        self.verify_pin(block, allow_last_try=allow_last_try)
        holder = self.read_file(FID_HOLDER).decode("utf-8", errors="replace")
        return DemoReport(serial, len(public), status, holder)


class DemoAuthenticator(Authenticator):
    """The generic demo card as an authenticator: it identifies (serial, no identity, no
    certificate) and refuses to authenticate.

    :param connection: the card connection.
    """

    connection: SmartCardConnection

    def __init__(self, connection: SmartCardConnection) -> None:
        self.connection = connection
        self._info = AuthenticatorInfo(DEMO_KIND, None, connection.atr, connection.transport)

    @property
    def info(self) -> AuthenticatorInfo:
        """The demo card; the serial once :meth:`identify` read it."""
        return self._info

    def identify(self) -> Identification:
        """Read the card serial (no PIN).

        :return: the card, with no identity and no certificate.
        """
        with self.connection.transaction():
            serial = DemoSession(self.connection).serial()
        self._info = replace(self._info, serial=serial)
        return Identification(self._info, None, None)

    def authenticate(
        self, request: AuthRequest, *, user: UserVerification | None = None
    ) -> Evidence:
        """Refused: the demo card holds no key.

        :raises UnsupportedCardError: always; nothing is sent and the user is not asked.
        """
        raise UnsupportedCardError(
            "The demo card identifies but does not authenticate", self.connection.atr
        )
