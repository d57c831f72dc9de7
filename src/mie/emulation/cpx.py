"""Emulated ANS CPx cards: CPS3 (IAS-ECC, contact and contactless), CPE/CPA, CPS4 (ChipDoc), PSI.

The IAS-ECC profile follows ``../shared/reference/cps-cards.md`` sections 2 to 8 closely enough for
OpenSC 0.23 to bind it: EF.ATR with the CPx leading ``80`` byte, ``46`` pre-issuing and ``E0`` I/O
sizes; EF.DIR; EF.SN (SFI ``1C``); a PKCS#15 application (ODF, TokenInfo, AODF, PrKDF, CDF,
certificates) in DF ``3F00 0001``; CHV and RSA-key SDOs answered to GET DATA; MSE SET AT with tags
in either order; INTERNAL AUTHENTICATE over a DigestInfo. Facts marked unknown in the reference
(certificate FIDs, labels, PIN block format, CPS4 file layout, the PSI card) are this module's own
choices, kept in constants.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from cryptography.hazmat.primitives.serialization import Encoding

from mie.core.apdu import CommandApdu
from mie.core.errors import TlvError
from mie.core.pin import PinRule
from mie.core.sw import SW
from mie.core.tlv import Tlv, encode_length, encode_tlvs, tlv_dict
from mie.emulation import pkcs15
from mie.emulation.iso7816 import ACL_ALWAYS, DF, EF, MF_FID, Iso7816Card, Response
from mie.emulation.testpki import CardCredentials, CardIdentity, TestPki

# The cards' own PIN rule (the emulator does not borrow the client's): 4 to 8 digits, FF-padded.
CPX_PIN_RULE = PinRule(4, 8, digits_only=True)
CPS3_ATR = bytes.fromhex("3BAC00402A00122500648000031000 9000".replace(" ", ""))
CPS3_CL_ATR = bytes.fromhex("3B8F8001003 1B86404B0ECC17394018082 90000E".replace(" ", ""))
CPS4_ATR = bytes.fromhex("3B9B188001001225006480040100009044")
PKCS15_AID = bytes.fromhex("E828BD080F8025000001FF0010")
PKCS15_CL_AID = bytes.fromhex("E828BD080F8025000001FF0020")
CHIPDOC_AID = bytes.fromhex("8025000001FF0100")
ISSUER = bytes.fromhex("8025000001")

FID_EF_DIR = 0x2F00
FID_EF_ATR = 0x2F01
FID_EF_SN = 0xD003
SFI_EF_SN = 0x1C
FID_APP = 0x0001
FID_ODF = 0x5031
FID_TOKEN_INFO = 0x5032
FID_AODF = 0x4401
FID_PRKDF = 0x4402
FID_CDF = 0x4403
# Not public: mie's choice of certificate file identifiers.
FID_CERT_SIG = 0xC001
FID_CERT_AUT = 0xC002
KEY_REF_SIG = 0x81
KEY_REF_AUT = 0x82
CPS4_KEY_AUT = 0x20
PIN_REF = 0x01
MAX_TRIES = 3
IO_SIZE = 0xE7
KEY_ID_SIG = PKCS15_AID + b"\x01"
KEY_ID_AUT = PKCS15_AID + b"\x02"

ALG_RSA_PKCS = 0x02
ALG_RSA_DECIPHER = 0x1A
CRT_AT = 0xA4
CRT_CT = 0xB8
SDO_CLASS_CHV = 0x01
SDO_CLASS_RSA_PRIVATE = 0x10
TAG_SDO_HEADER = 0xBF
TAG_DOCP = 0xA0

_DIGEST_INFO_PREFIXES: dict[bytes, hashes.HashAlgorithm] = {
    bytes.fromhex("302d300d06096086480165030402040500041c"): hashes.SHA224(),
    bytes.fromhex("3031300d060960864801650304020105000420"): hashes.SHA256(),
    bytes.fromhex("3041300d060960864801650304020205000430"): hashes.SHA384(),
    bytes.fromhex("3051300d060960864801650304020305000440"): hashes.SHA512(),
}


def sign_digest_info(key: rsa.RSAPrivateKey, digest_info: bytes) -> bytes:
    """RSA PKCS#1 v1.5 signature of an encoded ``digest_info``, as the card computes it.

    :raises ValueError: ``digest_info`` is not a DigestInfo of a supported hash.
    """
    for prefix, algorithm in _DIGEST_INFO_PREFIXES.items():
        if (
            digest_info.startswith(prefix)
            and len(digest_info) == len(prefix) + algorithm.digest_size
        ):
            digest = digest_info[len(prefix) :]
            return key.sign(digest, padding.PKCS1v15(), utils.Prehashed(algorithm))
    raise ValueError("Not a DigestInfo")


def _ef_atr() -> bytes:
    return b"\x80" + encode_tlvs(
        [
            Tlv(0x43, b"\xb8"),
            Tlv(0x46, bytes.fromhex("04200C01")),  # IC manufacturer, IC type, OS, IAS-ECC version
            Tlv(0x47, bytes.fromhex("948000")),  # no extended length
            Tlv(0x4F, PKCS15_AID),
            Tlv(0xE0, bytes.fromhex("020200E7" * 4)),  # send, send SM, recv, recv SM: 231 bytes
            Tlv(0x82, b"\x90\x00"),
        ]
    )


def _ef_sn(serial: str) -> bytes:
    if not (serial.isdigit() and len(serial) == 10):
        raise ValueError(f"Card serial must be 10 digits, got {serial!r}")
    return Tlv(0x5A, ISSUER + bytes.fromhex(serial)).encode()


def _directory(aid: bytes, label: str) -> bytes:
    return Tlv(0x61, Tlv(0x4F, aid).encode() + Tlv(0x50, label.encode()).encode()).encode()


def _cps3_pkcs15_files(credentials: CardCredentials, serial: str, label: str) -> list[EF | DF]:
    bits = credentials.authentication.key.key_size
    algorithms = [
        pkcs15.Algorithm(2, pkcs15.CKM_SHA256, pkcs15.OP_HASH, 0x40),
        pkcs15.Algorithm(4, pkcs15.CKM_SHA256_RSA_PKCS, pkcs15.OP_COMPUTE_SIGNATURE, 0x42),
        pkcs15.Algorithm(5, pkcs15.CKM_RSA_PKCS, pkcs15.OP_DECIPHER, ALG_RSA_DECIPHER),
        pkcs15.Algorithm(6, pkcs15.CKM_RSA_PKCS, pkcs15.OP_COMPUTE_SIGNATURE, ALG_RSA_PKCS),
    ]
    app_path = MF_FID.to_bytes(2, "big") + FID_APP.to_bytes(2, "big")
    aodf = pkcs15.pin_object("PIN", b"\x01", PIN_REF, 4, 8, 0xFF)
    prkdf = pkcs15.rsa_private_key_object(
        "CPS_PRIV_SIG", KEY_ID_SIG, b"\x01", {9}, KEY_REF_SIG, app_path, bits
    ) + pkcs15.rsa_private_key_object(
        "CPS_PRIV_AUT", KEY_ID_AUT, b"\x01", {1, 2}, KEY_REF_AUT, app_path, bits
    )
    cdf = pkcs15.certificate_object(
        "CPS_CERT_SIG", KEY_ID_SIG, FID_CERT_SIG.to_bytes(2, "big")
    ) + pkcs15.certificate_object("CPS_CERT_AUT", KEY_ID_AUT, FID_CERT_AUT.to_bytes(2, "big"))
    odf = pkcs15.odf(
        [
            (pkcs15.ODF_PRIVATE_KEYS, FID_PRKDF.to_bytes(2, "big")),
            (pkcs15.ODF_CERTIFICATES, FID_CDF.to_bytes(2, "big")),
            (pkcs15.ODF_AUTH_OBJECTS, FID_AODF.to_bytes(2, "big")),
        ]
    )
    token = pkcs15.token_info(bytes.fromhex(serial), "ASIP SANTE", f"{label}-{serial}", algorithms)
    der = _der_certificates(credentials)
    return [
        EF(FID_ODF, odf),
        EF(FID_TOKEN_INFO, token),
        EF(FID_AODF, aodf),
        EF(FID_PRKDF, prkdf),
        EF(FID_CDF, cdf),
        EF(FID_CERT_SIG, der[0]),
        EF(FID_CERT_AUT, der[1]),
    ]


def _der_certificates(credentials: CardCredentials) -> tuple[bytes, bytes]:
    return (
        credentials.signature.certificate.public_bytes(Encoding.DER),
        credentials.authentication.certificate.public_bytes(Encoding.DER),
    )


@dataclass(frozen=True)
class _SecurityEnvironment:
    template: int
    key_ref: int
    algorithm: int


class IasEccCard(Iso7816Card):
    """An IAS-ECC card: adds SDO GET DATA, MSE SET and INTERNAL AUTHENTICATE to the file system.

    :param keys: private keys by key reference (``81`` signature, ``82`` authentication).
    :param contactless: refuse PIN and private-key operations, as CPS3 does without contact.
    """

    def __init__(
        self,
        atr: bytes,
        mf: DF,
        *,
        pin: str,
        keys: dict[int, rsa.RSAPrivateKey],
        contactless: bool = False,
        t0: bool = True,
    ) -> None:
        super().__init__(
            atr,
            mf,
            pin=bytes(CPX_PIN_RULE.pad(pin)),
            pin_ref=PIN_REF,
            max_tries=MAX_TRIES,
            t0=t0,
            max_response=IO_SIZE,
        )
        self.keys = keys
        self.contactless = contactless
        self.credentials: CardCredentials | None = None
        self.handlers.update(
            {
                0xCB: self.get_data,
                0x22: self.manage_security_environment,
                0x88: self.internal_authenticate,
            }
        )

    def power_on(self) -> None:
        super().power_on()
        self._environment: _SecurityEnvironment | None = None

    def _ef_by_sfi(self, sfi: int) -> EF | None:
        # EF.SN lives in the MF but CPx cards answer its SFI from the application too.
        found = super()._ef_by_sfi(sfi)
        if found is None:
            found = next((c for c in self.mf.children if isinstance(c, EF) and c.sfi == sfi), None)
        return found

    def verify(self, apdu: CommandApdu) -> Response:
        if self.contactless:
            return b"", SW.CONDITIONS_NOT_SATISFIED
        return super().verify(apdu)

    def get_data(self, apdu: CommandApdu) -> Response:
        """GET DATA ``CB 3F FF`` of an SDO: ``4D { 70 { BF <class> <ref> { <tag> 80 } } }``."""
        if (apdu.p1, apdu.p2) != (0x3F, 0xFF):
            return b"", SW.INCORRECT_P1P2
        request = _parse_sdo_request(apdu.data)
        if request is None:
            return b"", SW.INVALID_DATA
        sdo_class, ref, tag = request
        answer = self._sdo(sdo_class, ref, tag)
        if isinstance(answer, int):
            return b"", answer
        header = bytes([TAG_SDO_HEADER, sdo_class | 0x80, ref])
        body = header + encode_length(len(answer)) + answer
        return Tlv(0x70, body).encode(), SW.OK

    def _sdo(self, sdo_class: int, ref: int, tag: int) -> bytes | int:
        if tag != TAG_DOCP:
            # Public components (7F41, 7F48) are not readable: OpenSC falls back to the DOCP.
            return int(SW.INCORRECT_P1P2)
        if sdo_class == SDO_CLASS_CHV and ref == PIN_REF and self.current_df is self.mf:
            docp = [
                Tlv(0x9A, bytes([self.max_tries])),
                Tlv(0x9B, bytes([self.tries_left])),
                Tlv(0xA1, Tlv(0x8C, bytes.fromhex("F3000013FF00")).encode()),
            ]
            return Tlv(TAG_DOCP, encode_tlvs(docp)).encode()
        key = self.keys.get(ref | 0x80)
        if (
            sdo_class == SDO_CLASS_RSA_PRIVATE
            and key is not None
            and self.current_df.fid == FID_APP
        ):
            # ACL: PSO sign never for the AUT key (always for SIG), INTERNAL AUTH and
            # DECIPHER after user authentication (SE 2).
            scbs = "FF1212" if ref | 0x80 == KEY_REF_AUT else "12FFFF"
            docp = [
                Tlv(0x80, key.key_size.to_bytes(2, "big")),
                Tlv(0xA1, Tlv(0x8C, bytes.fromhex("70" + scbs)).encode()),
            ]
            return Tlv(TAG_DOCP, encode_tlvs(docp)).encode()
        return int(SW.REFERENCE_NOT_FOUND)

    def manage_security_environment(self, apdu: CommandApdu) -> Response:
        """MSE SET (P1 ``41``) of an AT or CT template: ``84``/``83`` key and ``80`` algorithm,
        in either order."""
        if apdu.p1 != 0x41 or apdu.p2 not in (CRT_AT, CRT_CT):
            return b"", SW.INCORRECT_P1P2
        try:
            fields = tlv_dict(apdu.data)
        except TlvError:
            return b"", SW.INVALID_DATA
        key = fields.get(0x84, fields.get(0x83))
        algorithm = fields.get(0x80)
        if key is None or len(key) != 1 or algorithm is None or len(algorithm) != 1:
            return b"", SW.INVALID_DATA
        if set(fields) - {0x80, 0x83, 0x84}:
            return b"", SW.INVALID_DATA
        if key[0] | 0x80 not in self.keys:
            return b"", SW.REFERENCE_NOT_FOUND
        self._environment = _SecurityEnvironment(apdu.p2, key[0] | 0x80, algorithm[0])
        return b"", SW.OK

    def internal_authenticate(self, apdu: CommandApdu) -> Response:
        """INTERNAL AUTHENTICATE: PKCS#1 v1.5 signature of the DigestInfo in the command."""
        environment = self._environment
        if self.contactless:
            return b"", SW.CONDITIONS_NOT_SATISFIED
        if environment is None or environment.template != CRT_AT:
            return b"", SW.CONDITIONS_NOT_SATISFIED
        if environment.algorithm != ALG_RSA_PKCS or environment.key_ref != KEY_REF_AUT:
            return b"", SW.CONDITIONS_NOT_SATISFIED
        if not self.pin_verified:
            return b"", SW.SECURITY_STATUS_NOT_SATISFIED
        try:
            return sign_digest_info(self.keys[environment.key_ref], apdu.data), SW.OK
        except (ValueError, UnsupportedAlgorithm):
            return b"", SW.INVALID_DATA


def _parse_sdo_request(data: bytes) -> tuple[int, int, int] | None:
    """Parse ``4D L 70 L BF <class> <ref> L <tag> 80``; ``None`` when malformed."""
    try:
        outer = Tlv.parse(data)
        template = Tlv.parse(outer.value) if outer.tag == 0x4D else None
    except TlvError:
        return None
    if template is None or template.tag != 0x70:
        return None
    body = template.value
    if len(body) < 6 or body[0] != TAG_SDO_HEADER or body[3] != len(body) - 4 or body[-1] != 0x80:
        return None
    tag = int.from_bytes(body[4:-1], "big")
    return body[1] & 0x7F, body[2] & 0x3F, tag


@dataclass(frozen=True)
class CpxProfile:
    """What differs between the IAS-ECC CPx variants."""

    kind: str
    atr: bytes
    aid: bytes
    label: str
    contactless: bool


CPS3 = CpxProfile("cps3", CPS3_ATR, PKCS15_AID, "CPS3v3", False)
CPS3_CL = CpxProfile("cps3-cl", CPS3_CL_ATR, PKCS15_CL_AID, "CPS3v3", True)
CPE = CpxProfile("cpe", CPS3_ATR, PKCS15_AID, "CPE3v3", False)


def build_ias_ecc_card(
    profile: CpxProfile,
    identity: CardIdentity,
    pki: TestPki,
    *,
    pin: str = "1234",
    serial: str = "2800000001",
) -> IasEccCard:
    """Build an emulated IAS-ECC CPx card with freshly issued TEST certificates.

    :param profile: CPS3, CPS3 contactless or CPE.
    :param identity: the holder.
    :param pki: the TEST PKI that issues the card certificates.
    :param pin: the cardholder PIN (4 to 8 digits).
    :param serial: the 10-digit card serial (EF.SN and the NOS extension).
    """
    credentials = pki.issue_card(identity, serial)
    files = _cps3_pkcs15_files(credentials, serial, profile.label)
    app = DF(FID_APP, files, aid=profile.aid)
    mf = DF(
        MF_FID,
        [
            EF(FID_EF_DIR, _directory(profile.aid, profile.label), sfi=0x1E),
            EF(FID_EF_ATR, _ef_atr(), sfi=0x1D),
            EF(FID_EF_SN, _ef_sn(serial), sfi=SFI_EF_SN, read_acl=ACL_ALWAYS),
            app,
        ],
    )
    keys = {KEY_REF_SIG: credentials.signature.key, KEY_REF_AUT: credentials.authentication.key}
    card = IasEccCard(
        profile.atr,
        mf,
        pin=pin,
        keys=keys,
        contactless=profile.contactless,
        t0=not profile.contactless,
    )
    card.credentials = credentials
    return card


def _parse_type1_block(block: bytes) -> bytes | None:
    """Return the message of an EMSA-PKCS1-v1_5 block ``00 01 FF… 00 ‖ M``, or ``None``."""
    if len(block) < 11 or block[:2] != b"\x00\x01":
        return None
    separator = block.find(b"\x00", 2)
    if separator < 10 or any(b != 0xFF for b in block[2:separator]):
        return None
    return block[separator + 1 :]


class ChipDocCard(IasEccCard):
    """A CPS4-like ChipDoc card: the PKCS#15 application as on CPS3 for reading, and the ChipDoc
    applet, reached on logical channel 1, for PIN and key operations.

    Each logical channel keeps its own selection and security environment; the verified PIN is
    card-wide. The raw PSO DECIPHER used for authentication is answered only for PKCS#1 type-01
    blocks (the signature use): the emulator has no raw RSA.
    """

    def __init__(self, atr: bytes, mf: DF, *, pin: str, keys: dict[int, rsa.RSAPrivateKey]) -> None:
        super().__init__(atr, mf, pin=pin, keys=keys, t0=False)
        self.handlers[0x2A] = self.perform_security_operation
        self.handlers[0x70] = self.manage_channel

    def power_on(self) -> None:
        super().power_on()
        self._channels: dict[int, tuple[DF, EF | None, _SecurityEnvironment | None]] = {}

    def _dispatch(self, apdu: CommandApdu) -> Response:
        channel = apdu.cla & 0x03
        if apdu.ins == 0x70:
            return super()._dispatch(apdu)
        saved = (self.current_df, self.current_ef, self._environment)
        self.current_df, self.current_ef, self._environment = self._channels.get(
            channel, (self.mf, None, None)
        )
        try:
            return super()._dispatch(apdu)
        finally:
            self._channels[channel] = (self.current_df, self.current_ef, self._environment)
            if channel != 0:
                self.current_df, self.current_ef, self._environment = saved

    def manage_channel(self, apdu: CommandApdu) -> Response:
        """MANAGE CHANNEL: open (P1 ``00``) returns channel 1; close (P1 ``80``) resets it."""
        if apdu.p1 == 0x00:
            self._channels[1] = (self.mf, None, None)
            return b"\x01", SW.OK
        if apdu.p1 == 0x80 and apdu.p2 in (1, 2, 3):
            self._channels.pop(apdu.p2, None)
            return b"", SW.OK
        return b"", SW.INCORRECT_P1P2

    def internal_authenticate(self, apdu: CommandApdu) -> Response:
        return b"", SW.INS_NOT_SUPPORTED

    def perform_security_operation(self, apdu: CommandApdu) -> Response:
        """PSO DECIPHER (``80 86``) without padding removal, with key ``20`` set by MSE SET CT."""
        environment = self._environment
        if (apdu.p1, apdu.p2) != (0x80, 0x86):
            return b"", SW.INCORRECT_P1P2
        if self.current_df.aid != CHIPDOC_AID:
            return b"", SW.CONDITIONS_NOT_SATISFIED
        if environment is None or environment.template != CRT_CT:
            return b"", SW.CONDITIONS_NOT_SATISFIED
        if not self.pin_verified:
            return b"", SW.SECURITY_STATUS_NOT_SATISFIED
        key = self.keys[environment.key_ref]
        if not apdu.data or apdu.data[0] != 0x00 or len(apdu.data) - 1 != key.key_size // 8:
            return b"", SW.WRONG_LENGTH
        message = _parse_type1_block(apdu.data[1:])
        if message is None:
            return b"", SW.INVALID_DATA
        try:
            return sign_digest_info(key, message), SW.OK
        except (ValueError, UnsupportedAlgorithm):
            return b"", SW.INVALID_DATA

    def manage_security_environment(self, apdu: CommandApdu) -> Response:
        if apdu.p2 == CRT_CT and 0x80 not in _tags(apdu.data):
            # ChipDoc's CT template carries only the key: the algorithm is implicit.
            apdu = CommandApdu(apdu.cla, apdu.ins, apdu.p1, apdu.p2, apdu.data + b"\x80\x01\x00")
        return super().manage_security_environment(apdu)


def _tags(data: bytes) -> set[int]:
    try:
        return set(tlv_dict(data))
    except TlvError:
        return set()


CPS4_KEY_SIG = 0x21


def build_chipdoc_card(
    identity: CardIdentity,
    pki: TestPki,
    *,
    pin: str = "1234",
    serial: str = "2800000001",
    label: str = "CPS4v1",
) -> ChipDocCard:
    """Build an emulated CPS4 (or, with a PSI identity, PSI) card with fresh TEST certificates."""
    credentials = pki.issue_card(identity, serial)
    files = _cps3_pkcs15_files(credentials, serial, label)
    app = DF(FID_APP, files, aid=PKCS15_AID)
    applet = DF(0x0002, [], aid=CHIPDOC_AID)
    mf = DF(
        MF_FID,
        [
            EF(FID_EF_DIR, _directory(PKCS15_AID, label), sfi=0x1E),
            EF(FID_EF_ATR, _ef_atr(), sfi=0x1D),
            EF(FID_EF_SN, _ef_sn(serial), sfi=SFI_EF_SN),
            app,
            applet,
        ],
    )
    keys = {
        CPS4_KEY_AUT | 0x80: credentials.authentication.key,
        CPS4_KEY_SIG | 0x80: credentials.signature.key,
    }
    card = ChipDocCard(CPS4_ATR, mf, pin=pin, keys=keys)
    card.credentials = credentials
    return card
