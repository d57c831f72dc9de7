"""Sessions for ANS CPx cards: CPS3 / CPE / CPA (IAS-ECC) and CPS4 / PSI (ChipDoc).

Facts come from ``../shared/reference/cps-cards.md``: ATRs and masks (§1), AIDs and EF.SN (§2),
PIN and retry counter (§3), MSE / INTERNAL AUTHENTICATE (§4, §8) and the CPS4 logical channel.
The authentication signs the PKCS#1 v1.5 DigestInfo of SHA-256(challenge), so the signature
verifies with any standard RSA library against the authentication certificate.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from enum import Enum, unique

from mie.cards.iso7816 import Iso7816Session
from mie.cards.pkcs15 import ODF_CERTIFICATES, CertificateEntry, parse_cdf, parse_odf
from mie.core.connection import SmartCardConnection, Transport
from mie.core.errors import BadResponseError, TlvError, UnsupportedCardError
from mie.core.pin import PinRule
from mie.core.tlv import Tlv
from mie.request import UserVerification

logger = logging.getLogger(__name__)

PKCS15_AID = bytes.fromhex("E828BD080F8025000001FF0010")
PKCS15_CL_AID = bytes.fromhex("E828BD080F8025000001FF0020")
CHIPDOC_AID = bytes.fromhex("8025000001FF0100")
CARD_ISSUER = bytes.fromhex("8025000001")
SFI_EF_SN = 0x1C
FID_ODF = 0x5031
EF_SN_SIZE = 12
# EF.SN (12 bytes) holds 10 BCD digits after the issuer number; 20 leaves room, no more.
TAG_EF_SN = 0x5A
PIN_REF = 0x01
KEY_REF_AUT = 0x82
CPS4_KEY_AUT = 0x20
ALG_RSA_PKCS = 0x02
CPX_READ_CHUNK = 0xE7
AUT_OBJECT_SUFFIX = b"\x02"
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")

#: The cardholder PIN of every CPx card: 4 to 8 decimal digits (``cps-cards.md`` §3), sent as
#: ASCII padded with ``FF`` to 8 bytes.
CPX_PIN = PinRule(4, 8, digits_only=True)

INS_MSE = 0x22
INS_INTERNAL_AUTHENTICATE = 0x88
INS_PSO = 0x2A


@unique
class CpxFamily(Enum):
    """Card families told apart by ATR."""

    CPS3 = "cps3"
    CPS3_CL = "cps3-cl"
    CPS4 = "cps4"


@dataclass(frozen=True)
class _AtrPattern:
    value: bytes
    mask: bytes
    family: CpxFamily

    def __post_init__(self) -> None:
        if len(self.mask) != len(self.value):
            raise ValueError(f"ATR pattern {self.value.hex()}: mask of another length")

    def matches(self, atr: bytes) -> bool:
        return len(atr) == len(self.value) and all(
            (a & m) == (v & m) for a, v, m in zip(atr, self.value, self.mask, strict=True)
        )


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# The Cryptolib's exact CPS4 ATRs come first: OpenSC's CPS3 mask also matches the CPS4 T=0 ATR.
# Then OpenSC's mask for the CPS3 contact ATR, and the Cryptolib's masks for contactless CPS3.
_PATTERNS = [
    _AtrPattern(
        _hex("3B 9B 18 80 01 00 12 25 00 64 80 04 01 00 00 90 44"), b"\xff" * 17, CpxFamily.CPS4
    ),
    _AtrPattern(
        _hex("3B 9B 18 80 01 00 12 25 00 64 80 00 04 01 00 90 44"), b"\xff" * 17, CpxFamily.CPS4
    ),
    _AtrPattern(
        _hex("3B DC 18 FF 00 00 12 25 00 64 80 00 04 01 00 90 00"), b"\xff" * 17, CpxFamily.CPS4
    ),
    _AtrPattern(
        _hex("3B AC 00 40 2A 00 12 25 00 64 80 00 03 10 00 90 00"),
        _hex("FF 00 00 00 00 FF FF FF FF FF FF 00 00 00 FF FF FF"),
        CpxFamily.CPS3,
    ),
    _AtrPattern(
        _hex("3B 8F 80 01 00 31 B8 64 04 B0 EC C1 73 94 01 80 82 90 00 0E"),
        _hex("FF FF FF FF FF FF FF FF 00 00 FF C0 FF FF FF FF FF FF FF FF"),
        CpxFamily.CPS3_CL,
    ),
]


def detect_family(atr: bytes | None) -> CpxFamily:
    """Tell the CPx family from the ATR.

    :param atr: the card's ATR.
    :return: the family.
    :raises UnsupportedCardError: the ATR is not a known CPx ATR (the message names it).
    """
    for pattern in _PATTERNS:
        if atr is not None and pattern.matches(atr):
            return pattern.family
    shown = atr.hex().upper() if atr else "none"
    raise UnsupportedCardError(f"Unsupported card: ATR {shown} is not a known CPx card", atr)


def digest_info(challenge: bytes) -> bytes:
    """The DigestInfo of SHA-256(``challenge``) the card signs.

    :param challenge: the challenge (any length; 16 bytes or more recommended).
    """
    return SHA256_DIGEST_INFO + hashlib.sha256(challenge).digest()


def cardholder_pin_block(user: UserVerification, tries_left: int | None) -> bytearray:
    """Ask ``user`` for the PIN and format it as a CPx card takes it.

    :param user: asked once.
    :param tries_left: what the card said, passed on to the user.
    :return: the PIN block, a ``bytearray`` to wipe after use (a ``bytearray`` PIN from the user
        is wiped here).
    :raises PinFormatError: the PIN is not 4 to 8 digits (the message does not echo it).
    """
    pin = user.request_pin(tries_left)
    try:
        return CPX_PIN.pad(pin)
    finally:
        if isinstance(pin, bytearray):
            pin[:] = bytes(len(pin))


def parse_ef_sn(data: bytes) -> str:
    """Parse EF.SN: ``5A`` with the ANS issuer ``80 25 00 00 01`` then the BCD serial.

    :return: the serial digits (without the issuer).
    :raises BadResponseError: malformed content or another issuer.
    """
    try:
        tlv = Tlv.parse(data)
    except TlvError as e:
        raise BadResponseError(f"Malformed EF.SN: {e}") from e
    if tlv.tag != TAG_EF_SN or not tlv.value.startswith(CARD_ISSUER):
        raise BadResponseError("EF.SN does not carry the ANS issuer number 8025000001")
    digits = tlv.value[len(CARD_ISSUER) :].hex().upper().rstrip("F")
    if not digits or not digits.isdigit():
        raise BadResponseError("EF.SN serial is not BCD")
    return digits


class CpxSession(Iso7816Session):
    """Reading a CPx card: serial, PKCS#15 directory and the authentication certificate.

    :param connection: the card connection.
    :param aid: the PKCS#15 application to select.
    """

    def __init__(self, connection: SmartCardConnection, aid: bytes = PKCS15_AID) -> None:
        super().__init__(connection)
        self.read_chunk = CPX_READ_CHUNK
        self.protocol.select(aid, p2=0x0C)
        logger.info("CPx application selected")

    def serial(self) -> str:
        """:return: the card serial from EF.SN (SFI ``1C``), without the issuer number."""
        data = self.protocol.send_apdu(0x00, 0xB0, 0x80 | SFI_EF_SN, 0x00, le=EF_SN_SIZE)
        return parse_ef_sn(data)

    def certificates(self) -> list[CertificateEntry]:
        """Read the ODF and the CDF.

        :return: the certificate objects the card declares.
        """
        odf = parse_odf(self.read_file(FID_ODF))
        cdf_path = odf.get(ODF_CERTIFICATES)
        if cdf_path is None:
            raise BadResponseError("ODF lists no certificate directory")
        return parse_cdf(self.read_file(self._fid(cdf_path)))

    def authentication_certificate(self) -> bytes:
        """Read the authentication certificate (the CDF object whose iD ends in ``02``).

        :return: the certificate, DER.
        """
        entries = [e for e in self.certificates() if e.id.endswith(AUT_OBJECT_SUFFIX)]
        if len(entries) != 1:
            raise BadResponseError(f"Expected one authentication certificate, found {len(entries)}")
        return self.read_file(self._fid(entries[0].path))

    @staticmethod
    def _fid(path: bytes) -> int:
        # PKCS#15 paths of two bytes are relative to the application, which is selected.
        if len(path) != 2:
            raise BadResponseError(f"Unsupported PKCS#15 path {path.hex()} (expected a FID)")
        return int.from_bytes(path, "big")

    def verify_cardholder(self, user: UserVerification, allow_last_try: bool) -> None:
        """Read the retry counter, ask ``user`` for the PIN (once, told the tries left), then
        present it once (ASCII, ``FF``-padded to 8 bytes).

        :raises PinBlockedError: no try left; the user was not asked.
        :raises LastTryRefusedError: one try left and ``allow_last_try`` is false; not asked.
        :raises PinFormatError: the PIN is not 4 to 8 digits; it was not sent.
        :raises InvalidPinError: the card refused the PIN.
        """
        tries = self.check_pin_tries(PIN_REF, allow_last_try)
        self.present_pin(cardholder_pin_block(user, tries), PIN_REF)

    def sign_challenge(self, challenge: bytes) -> bytes:
        """Have the authentication key sign the DigestInfo of SHA-256(``challenge``).

        :return: the PKCS#1 v1.5 signature.
        """
        if self.connection.transport is Transport.CONTACTLESS:
            raise UnsupportedCardError("A contactless CPx card does not sign")
        return self._sign(digest_info(challenge))

    def _sign(self, digest: bytes) -> bytes:
        logger.debug("Signing the challenge with the authentication key")
        # Cryptolib order: algorithm then key; the card accepts both.
        environment = bytes([0x80, 0x01, ALG_RSA_PKCS, 0x84, 0x01, KEY_REF_AUT])
        self.protocol.send_apdu(0x00, INS_MSE, 0x41, 0xA4, environment)
        signature = self.protocol.send_apdu(0x00, INS_INTERNAL_AUTHENTICATE, 0, 0, digest, 256)
        logger.info("Challenge signed")
        return signature


class Cps3ContactlessSession(CpxSession):
    """A CPS3 read without contact: identity only, never a PIN or a signature."""

    def __init__(self, connection: SmartCardConnection) -> None:
        super().__init__(connection, PKCS15_CL_AID)

    def verify_cardholder(self, user: UserVerification, allow_last_try: bool) -> None:
        raise UnsupportedCardError("A contactless CPS3 does not take a PIN")

    def sign_challenge(self, challenge: bytes) -> bytes:
        raise UnsupportedCardError("A contactless CPS3 does not sign")
