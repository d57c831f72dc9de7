"""An emulated MIFARE DESFire EV1/EV2/EV3 badge answering ISO-wrapped native commands.

The host sends ``90 CMD 00 00 [Lc data] 00`` and gets ``data ‖ 91 status``, as through a PC/SC
contactless reader (the ATR is the PC/SC part 3 pseudo-ATR ``3B 81 80 01 80 80``). The badge
keeps a PICC level and applications with AES keys and standard data files in PLAIN, MAC or FULL
mode (:mod:`mie.emulation.desfire_state`), authenticates with AuthenticateEV2First/NonFirst and
EV1 AuthenticateAES, and runs the matching secure messaging on :mod:`mie.desfire.crypto`. A
blank badge's DES PICC key answers the legacy AuthenticateISO (``1A``) with EV1 messaging on
3DES (:mod:`mie.hazmat.desfire_legacy`'s primitives), so that an enrolment can change it to AES.

It is a sibling of :class:`~mie.emulation.iso7816.Iso7816Card`, not a subclass: DESFire answers
``91xx``, frames long messages with ``91AF`` instead of ISO chaining or ``61xx``, and keeps its
own authentication state. What it does where no public source decides (marked [I] in
``shared/reference/desfire.md`` and the issue 9 plan §8) is what the client in
:mod:`mie.desfire` expects: an emulator that agrees with our client proves only that the two
agree.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import itertools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

from mie.core.channel import CommMode
from mie.core.errors import SecureMessagingError
from mie.desfire import crypto
from mie.desfire.channel import EV1_AES, Ev1Cipher
from mie.desfire.constants import (
    ADDITIONAL_FRAME,
    AUTH_AES,
    AUTH_EV2_FIRST,
    AUTH_EV2_NON_FIRST,
    AUTH_ISO,
    AUTH_LEGACY,
    CHANGE_KEY,
    CLA_NATIVE,
    COMMAND_MODES,
    CREATE_APPLICATION,
    CREATE_STD_DATA_FILE,
    DELETE_APPLICATION,
    FORMAT_PICC,
    GET_APPLICATION_IDS,
    GET_CARD_UID,
    GET_FILE_IDS,
    GET_FILE_SETTINGS,
    GET_KEY_SETTINGS,
    GET_KEY_VERSION,
    GET_VERSION,
    READ_DATA,
    READ_SIG,
    SELECT_APPLICATION,
    SET_CONFIGURATION,
    WRITE_DATA,
    Status,
)
from mie.desfire.crypto import OriginalityKey
from mie.emulation.base import CardGone, EmulatedCard
from mie.emulation.desfire_state import (
    AID_SIZE,
    DENY,
    FREE,
    KEY_SIZE,
    MAX_APPLICATIONS,
    MAX_FILE_NO,
    MAX_FILE_SIZE,
    MAX_KEYS,
    PICC_AID,
    Application,
    BadgeKey,
    BadgeState,
    DataFile,
    FileAccess,
    KeyType,
    load_state,
    save_state,
)
from mie.hazmat import desfire_legacy as legacy

logger = logging.getLogger(__name__)

ATR = bytes.fromhex("3B8180018080")
GET_UID = bytes.fromhex("FFCA000000")
SELECT_DESFIRE_AID = bytes.fromhex("00A4040007D2760000850100")
# Response frames carry at most 59 data bytes (libfreefare's MAX_RAPDU_SIZE 60 less the status).
MAX_RESPONSE_FRAME = 59
RANDOM_UID_PREFIX = b"\x08"

# Status bytes (SW2 after 91; shared/reference/desfire.md §7).
OK = Status.OK
OUT_OF_EEPROM = Status.OUT_OF_EEPROM
ILLEGAL_COMMAND = Status.ILLEGAL_COMMAND
INTEGRITY_ERROR = Status.INTEGRITY_ERROR
NO_SUCH_KEY = Status.NO_SUCH_KEY
LENGTH_ERROR = Status.LENGTH_ERROR
SIGNATURE = Status.SIGNATURE
PERMISSION_DENIED = Status.PERMISSION_DENIED
PARAMETER_ERROR = Status.PARAMETER_ERROR
APPLICATION_NOT_FOUND = Status.APPLICATION_NOT_FOUND
AUTHENTICATION_ERROR = Status.AUTHENTICATION_ERROR
BOUNDARY_ERROR = Status.BOUNDARY_ERROR
DUPLICATE_ERROR = Status.DUPLICATE_ERROR
FILE_NOT_FOUND = Status.FILE_NOT_FOUND

_FILE_MODES = {0x00: CommMode.PLAIN, 0x01: CommMode.MAC, 0x03: CommMode.FULL}
_FILE_MODE_BYTES = {CommMode.PLAIN: 0x00, CommMode.MAC: 0x01, CommMode.FULL: 0x03}
_KEY_SETTINGS_MASTER_CHANGEABLE = 0x01
_KEY_SETTINGS_FREE_LISTING = 0x02
_KEY_SETTINGS_FREE_CREATE = 0x04
_CHANGE_KEY_SAME = 0xE
_CHANGE_KEY_FROZEN = 0xF
_CONFIG_DISABLE_FORMAT = 0x01
_CONFIG_RANDOM_UID = 0x02
_MAC = crypto.MAC_SIZE
_BLOCK = crypto.BLOCK_SIZE

# GetVersion, per product: HW frame, SW frame (vendor, type, subtype, major, minor, storage,
# protocol). The HW majors are PM3's (shared/reference/desfire.md §6); the SW majors and the
# storage bytes are [I]: 8 KiB for EV2/EV3, the EV1 4K of a real sample.
PRODUCTS: dict[str, tuple[bytes, bytes]] = {
    "ev1": (bytes.fromhex("04010101001805"), bytes.fromhex("04010101041805")),
    "ev2": (bytes.fromhex("04010112001A05"), bytes.fromhex("04010102011A05")),
    "ev3": (bytes.fromhex("04010133001A05"), bytes.fromhex("04010103031A05")),
}
_BATCH = bytes.fromhex("4D49450000")  # "MIE" and zeros: no real production batch
_WEEK_YEAR = bytes.fromhex("4826")


def _test_originality_private() -> ec.EllipticCurvePrivateKey:
    # Derived from a published constant, so that anyone can sign as any emulated badge: a TEST
    # key, which no verifier trusts unless its configuration names "mie-test".
    seed = hashlib.sha256(b"mie test badge originality key, not a secret").digest()
    order = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFF16A2E0B8F03E13DD29455C5C2A3D
    return ec.derive_private_key(int.from_bytes(seed, "big") % (order - 1) + 1, ec.SECP224R1())


TEST_ORIGINALITY_PRIVATE = _test_originality_private()
"""The emulated badges' originality signing key (secp224r1), for tests only."""
TEST_ORIGINALITY_KEY = OriginalityKey.from_public_key(
    "mie test badge", TEST_ORIGINALITY_PRIVATE.public_key()
)
"""Its public key: what a verifier adds to trust an emulated badge's originality signature."""


def _flip(data: bytes, bit: int) -> bytes:
    """:return: ``data`` with bit ``bit`` of its last 8 bytes (the MAC) flipped."""
    flipped = bytearray(data)
    bit %= 8 * _MAC
    flipped[len(data) - _MAC + bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(flipped)


def _pad16(size: int) -> int:
    return size + (-size % _BLOCK)


def _legacy_session_key(key: BadgeKey, rnd_a: bytes, rnd_b: bytes) -> bytes:
    """The session key a badge derives after AuthenticateISO, from its own key (reference
    ``desfire.md`` §1; PM3 ``DesfireGenSessionKeyEV1`` and its single-DES rule): 3K3DES
    ``A0-3 B0-3 A6-9 B6-9 A12-15 B12-15``; 2K3DES ``A0-3 B0-3 A4-7 B4-7``; a 2K3DES key whose
    halves are equal is single DES, whose session key is ``A0-3 B0-3`` twice. [I] The halves
    are compared as stored, parity (version) bits included."""
    if key.key_type is KeyType.TDES_3K:
        return rnd_a[0:4] + rnd_b[0:4] + rnd_a[6:10] + rnd_b[6:10] + rnd_a[12:16] + rnd_b[12:16]
    if key.key[:8] == key.key[8:]:
        return 2 * (rnd_a[0:4] + rnd_b[0:4])
    return rnd_a[0:4] + rnd_b[0:4] + rnd_a[4:8] + rnd_b[4:8]


# --- card side of the secure channels ------------------------------------------------------


class CardSession(Protocol):
    """The card side of an authenticated session (EV2 or EV1 secure messaging)."""

    scheme: str
    key_no: int

    def unwrap(self, cmd: int, body: bytes, mode: CommMode, spec: CommandLayout) -> bytes | int:
        """:return: ``header ‖ data`` in clear, or the status refusing the command."""

    def wrap(self, status: int, data: bytes, mode: CommMode) -> bytes:
        """:return: the response data protected in ``mode`` (``status`` is ``00``)."""

    def command_length(self, mode: CommMode, header: int, data: int) -> int:
        """:return: how many bytes a command with ``header`` and ``data`` bytes has on the wire."""


@dataclass(frozen=True)
class CommandLayout:
    """How a command's body is laid out.

    :param header: the bytes sent in clear before the data (MACed, never enciphered).
    :param ev1_data: EV1 full mode: the data length the CRC32 follows.
    :param ev1_extra: EV1 full mode: bytes after the CRC32 (ChangeKey's CRC of the new key).
    :param ev1_mac_on_wire: EV1 MAC mode sends the command MAC (WriteData only).
    """

    header: int
    ev1_data: int | None = None
    ev1_extra: int = 0
    ev1_mac_on_wire: bool = False


class Ev2CardSession:
    """The card side of EV2 secure messaging (AN12343, AN12196).

    :param enc_key: SesAuthENCKey.
    :param mac_key: SesAuthMACKey.
    :param ti: the transaction identifier.
    :param key_no: the key authenticated with.
    :param cmd_ctr: the command counter.
    """

    scheme = "ev2"

    def __init__(
        self, enc_key: bytes, mac_key: bytes, ti: bytes, key_no: int, cmd_ctr: int = 0
    ) -> None:
        self._enc = enc_key
        self._mac = mac_key
        self.ti = ti
        self.key_no = key_no
        self.cmd_ctr = cmd_ctr

    def __repr__(self) -> str:
        return f"Ev2CardSession(key_no={self.key_no}, cmd_ctr={self.cmd_ctr})"

    def rekeyed(self, enc_key: bytes, mac_key: bytes, key_no: int) -> Ev2CardSession:
        """:return: the session after AuthenticateEV2NonFirst: new keys, same TI and counter."""
        return Ev2CardSession(enc_key, mac_key, self.ti, key_no, self.cmd_ctr)

    def unwrap(self, cmd: int, body: bytes, mode: CommMode, spec: CommandLayout) -> bytes | int:
        if self.cmd_ctr >= crypto.MAX_CMD_CTR:
            return INTEGRITY_ERROR
        if mode is CommMode.PLAIN:
            return body
        if len(body) < spec.header + _MAC:
            return LENGTH_ERROR
        covered, mac = body[:-_MAC], body[-_MAC:]
        expected = crypto.ev2_command_mac(self._mac, cmd, self.cmd_ctr, self.ti, covered)
        if not hmac.compare_digest(expected, mac):
            return INTEGRITY_ERROR
        header, ciphertext = covered[: spec.header], covered[spec.header :]
        if mode is CommMode.MAC or not ciphertext:
            return covered
        if len(ciphertext) % _BLOCK:
            return LENGTH_ERROR
        iv = crypto.ev2_command_iv(self._enc, self.ti, self.cmd_ctr)
        try:
            return header + crypto.ev2_decrypt(self._enc, iv, ciphertext)
        except SecureMessagingError:
            return INTEGRITY_ERROR

    def wrap(self, status: int, data: bytes, mode: CommMode) -> bytes:
        self.cmd_ctr += 1
        if mode is CommMode.PLAIN:
            return data
        if mode is CommMode.FULL and data:
            iv = crypto.ev2_response_iv(self._enc, self.ti, self.cmd_ctr)
            data = crypto.ev2_encrypt(self._enc, iv, data)
        return data + crypto.ev2_response_mac(self._mac, status, self.cmd_ctr, self.ti, data)

    def command_length(self, mode: CommMode, header: int, data: int) -> int:
        if mode is CommMode.PLAIN:
            return header + data
        if mode is CommMode.MAC:
            return header + data + _MAC
        return header + (_pad16(data + 1) if data else 0) + _MAC


class Ev1CardSession:
    """The card side of EV1 secure messaging after AuthenticateAES, or after a legacy ISO
    authentication on 3DES: one running IV shared by CMAC and CBC, responses MACed (or
    enciphered with a CRC32) whatever the command's mode.

    :param session_key: the EV1 session key.
    :param key_no: the key authenticated with.
    :param cipher: :data:`~mie.desfire.channel.EV1_AES`, or the 3DES rules of
        :mod:`mie.hazmat.desfire_legacy` (8-byte blocks).
    """

    def __init__(self, session_key: bytes, key_no: int, cipher: Ev1Cipher = EV1_AES) -> None:
        self._key = session_key
        self.key_no = key_no
        self.cipher = cipher
        self.scheme = "ev1-aes" if cipher is EV1_AES else "legacy"
        self.iv = bytes(cipher.block)

    def __repr__(self) -> str:
        return f"Ev1CardSession({self.cipher.name}, key_no={self.key_no})"

    def _pad(self, size: int) -> int:
        return size + (-size % self.cipher.block)

    def unwrap(self, cmd: int, body: bytes, mode: CommMode, spec: CommandLayout) -> bytes | int:
        if mode is CommMode.FULL and len(body) > spec.header and spec.ev1_data is not None:
            return self._decipher(cmd, body, spec, spec.ev1_data)
        if mode is CommMode.MAC and spec.ev1_mac_on_wire:
            if len(body) < spec.header + _MAC:
                return LENGTH_ERROR
            covered, mac = body[:-_MAC], body[-_MAC:]
            full = self.cipher.cmac(self._key, bytes([cmd]) + covered, self.iv)
            if not hmac.compare_digest(full[:_MAC], mac):
                return INTEGRITY_ERROR
            self.iv = full
            return covered
        self.iv = self.cipher.cmac(self._key, bytes([cmd]) + body, self.iv)
        return body

    def _decipher(self, cmd: int, body: bytes, spec: CommandLayout, size: int) -> bytes | int:
        header, ciphertext = body[: spec.header], body[spec.header :]
        if len(ciphertext) != self._pad(size + crypto.CRC_SIZE + spec.ev1_extra):
            return LENGTH_ERROR
        plain = self.cipher.decrypt(self._key, self.iv, ciphertext)
        self.iv = ciphertext[-self.cipher.block :]
        data, crc = plain[:size], plain[size : size + crypto.CRC_SIZE]
        rest = plain[size + crypto.CRC_SIZE :]
        extra, padding = rest[: spec.ev1_extra], rest[spec.ev1_extra :]
        expected = crypto.crc32(bytes([cmd]) + header + data)
        if not hmac.compare_digest(crc, expected) or padding.strip(b"\x00"):
            return INTEGRITY_ERROR
        return header + data + extra

    def wrap(self, status: int, data: bytes, mode: CommMode) -> bytes:
        if mode is CommMode.FULL and data:
            plain = data + crypto.crc32(data + bytes([status]))
            plain += bytes(-len(plain) % self.cipher.block)
            ciphertext = self.cipher.encrypt(self._key, self.iv, plain)
            self.iv = ciphertext[-self.cipher.block :]
            return ciphertext
        full = self.cipher.cmac(self._key, data + bytes([status]), self.iv)
        self.iv = full
        return data + full[:_MAC]

    def command_length(self, mode: CommMode, header: int, data: int) -> int:
        if mode is CommMode.FULL:
            return header + self._pad(data + crypto.CRC_SIZE)
        if mode is CommMode.MAC:
            return header + data + _MAC
        return header + data


# --- the badge ------------------------------------------------------------------------------


@dataclass
class BadgeFaults:
    """Faults a test (or ``mie emulate``'s hidden options) injects into the badge's answers;
    none by default.

    :param flip_mac_bit: flip this bit (0..63) of the MAC of every protected answer.
    :param af_forever: answer every response frame with ``91AF`` and one more byte, for ever.
    :param replay_previous: answer a command with the answer its previous run got (the new
        one is computed, and the state changed, as a real badge behind a replaying relay).
    :param fail_after: answer this many APDUs (every one :meth:`EmulatedDesfire.process`
        gets), then leave the field: the next one raises :class:`~mie.emulation.base.CardGone`
        unanswered, and the state is what the answered commands left (``mie emulate desfire
        --fail-after``; a badge pulled mid-enrolment). Hosts see :attr:`EmulatedDesfire.gone`
        once the last answer is out and stop presenting the badge.
    """

    flip_mac_bit: int | None = None
    af_forever: bool = False
    replay_previous: bool = False
    fail_after: int | None = None


@dataclass(frozen=True)
class _Reply:
    data: bytes = b""
    status: int = OK
    frames: tuple[int, ...] = ()  # GetVersion's frame boundaries, else cut at 59 bytes
    plain: bool = False  # sent outside the session, which then ends (ChangeKey of its own key)
    changed: bool = False  # the persistent state changed: on_change runs before the answer


_Modes = tuple[CommMode, CommMode]
_Handler = Callable[[bytes], _Reply]


@dataclass(frozen=True)
class _Command:
    handler: _Handler
    # (command mode, response mode) under a session, from the clear header; or a status.
    modes: Callable[[bytes], _Modes | int]
    layout: Callable[[bytes], CommandLayout]
    needs_session: bool = False


def _plain_modes(header: bytes) -> _Modes | int:
    return CommMode.PLAIN, CommMode.PLAIN


def _constant_layout(layout: CommandLayout) -> Callable[[bytes], CommandLayout]:
    return lambda body: layout


# The statuses after which a session goes on: OK, a frame to come, and Read_Sig's 9190 (inside
# a session its answer is protected like an OK one: CommMode.Full, COMMAND_MODES).
_SESSION_GOES_ON = frozenset({OK, ADDITIONAL_FRAME, SIGNATURE})

# The commands a badge refuses (91AE) outside an authenticated session.
_NEEDS_SESSION = frozenset({GET_CARD_UID, CHANGE_KEY, SET_CONFIGURATION, FORMAT_PICC})


def _u24(data: bytes) -> int:
    return int.from_bytes(data, "little")


class _Pending(Protocol):
    def step(self, data: bytes) -> tuple[bytes, int]: ...


class EmulatedDesfire(EmulatedCard):
    """A DESFire badge for tests, ``mie emulate`` and the NFC target.

    :param state: its persistent state, changed in place by successful commands.
    :param product: ``"ev3"``, ``"ev2"`` or ``"ev1"`` (no EV2 authentication, no Read_Sig).
    :param originality_key: the key Read_Sig signs with (:data:`TEST_ORIGINALITY_PRIVATE`;
        no emulator can sign as NXP).
    :param rng: random bytes (RndB, TI, the random UID): inject one to replay a trace.
    :param on_change: called with the state after each command that changed it, before the
        answer leaves (a caller saves it there).
    """

    def __init__(
        self,
        state: BadgeState,
        *,
        product: str = "ev3",
        originality_key: ec.EllipticCurvePrivateKey = TEST_ORIGINALITY_PRIVATE,
        rng: Callable[[int], bytes] = os.urandom,
        on_change: Callable[[BadgeState], None] | None = None,
    ) -> None:
        if product not in PRODUCTS:
            raise ValueError(f"Unknown DESFire product {product!r}: one of {sorted(PRODUCTS)}")
        self.state = state
        self.product = product
        self._originality_key = originality_key
        self._signature: tuple[bytes, bytes] | None = None
        self._rng = rng
        self._on_change = on_change
        self._commands = self._command_table()
        self.faults = BadgeFaults()
        self.answered = 0  # APDUs answered, across power cycles (for fail_after)
        self._answers: dict[int, tuple[bytes, int]] = {}
        self.power_on()

    @property
    def atr(self) -> bytes:
        return ATR

    @property
    def gone(self) -> bool:
        """Whether the ``fail_after`` fault has answered its last APDU."""
        limit = self.faults.fail_after
        return limit is not None and self.answered >= limit

    @property
    def originality_public_key(self) -> OriginalityKey:
        """The public key the badge's originality signature verifies with."""
        return OriginalityKey.from_public_key(
            "mie test badge" if self._originality_key is TEST_ORIGINALITY_PRIVATE else "injected",
            self._originality_key.public_key(),
        )

    def power_on(self) -> None:
        self.selected: bytes = PICC_AID
        self.session: CardSession | None = None
        self._pending: _Pending | None = None
        if self.state.random_uid:
            self.anticollision_uid = RANDOM_UID_PREFIX + self._random(3)
        else:
            self.anticollision_uid = self.state.uid

    def power_off(self) -> None:
        self.selected = PICC_AID
        self.session = None
        self._pending = None

    def _random(self, size: int) -> bytes:
        value = self._rng(size)
        if len(value) != size:
            raise ValueError(f"The badge's rng gave {len(value)} bytes, not {size}")
        return value

    # -- framing ------------------------------------------------------------------------------

    def process(self, apdu: bytes) -> bytes:
        """Answer one APDU; never raises but :class:`~mie.emulation.base.CardGone` (the
        ``fail_after`` fault): a fault in a handler answers ``6F00`` and ends the session (any
        local PC/SC client can send an emulator anything)."""
        if self.gone:
            self.session, self._pending = None, None
            raise CardGone(
                f"The badge answered {self.answered} APDUs (fail_after {self.faults.fail_after})"
            )
        self.answered += 1
        try:
            data, sw = self._process(bytes(apdu))
        except Exception:
            logger.exception("Emulated DESFire failed on a command; answering 6F00")
            self.session, self._pending = None, None
            return b"\x6f\x00"
        return data + sw.to_bytes(2, "big")

    def _process(self, raw: bytes) -> tuple[bytes, int]:
        if raw == GET_UID:
            # The PC/SC part 3 reader's own answer: the anticollision UID.
            return self.anticollision_uid, 0x9000
        if raw[:1] == b"\x00":
            if raw in (SELECT_DESFIRE_AID, SELECT_DESFIRE_AID + b"\x00"):
                self.session, self._pending, self.selected = None, None, PICC_AID
                return b"", 0x9000
            return b"", 0x6E00
        if raw[:1] != bytes([CLA_NATIVE]):
            return b"", 0x6E00
        data = self._native_data(raw)
        if data is None:
            self.session, self._pending = None, None
            return b"", 0x9100 | LENGTH_ERROR
        data, status = self._native(raw[1], data)
        logger.debug("DESFire command %02X answered %02X", raw[1], status)
        return data, 0x9100 | status

    @staticmethod
    def _native_data(raw: bytes) -> bytes | None:
        """:return: the data of ``90 CMD 00 00 [Lc data] 00``, or ``None`` when malformed."""
        if len(raw) < 5 or raw[2:4] != b"\x00\x00" or raw[-1] != 0:
            return None
        if len(raw) == 5:
            return b""
        if raw[4] == 0 or len(raw) != 6 + raw[4]:
            return None
        return raw[5:-1]

    def _native(self, cmd: int, data: bytes) -> tuple[bytes, int]:
        pending, self._pending = self._pending, None
        if cmd == ADDITIONAL_FRAME:
            if pending is None:
                self.session = None
                return b"", ILLEGAL_COMMAND
            data, status = pending.step(data)
        else:
            # A new command aborts whatever chain was pending [I].
            data, status = self._command(cmd, data)
        if status not in _SESSION_GOES_ON:
            self.session = None
        return data, status

    # -- commands -----------------------------------------------------------------------------

    def _command(self, cmd: int, body: bytes) -> tuple[bytes, int]:
        if cmd in (SELECT_APPLICATION, AUTH_EV2_FIRST, AUTH_AES, AUTH_ISO, AUTH_LEGACY):
            self.session = None
        if cmd == AUTH_EV2_NON_FIRST:
            return self._auth_ev2_non_first(body)
        command = self._commands.get(cmd)
        if command is None or (self.product == "ev1" and cmd in (AUTH_EV2_FIRST, READ_SIG)):
            return b"", ILLEGAL_COMMAND
        if command.needs_session and self.session is None:
            return b"", AUTHENTICATION_ERROR
        if cmd == WRITE_DATA:
            return self._write_frames(command, body)
        return self._execute(cmd, command, body)

    def _execute(self, cmd: int, command: _Command, body: bytes) -> tuple[bytes, int]:
        session = self.session
        spec = command.layout(body)
        if len(body) < spec.header:
            return b"", LENGTH_ERROR
        modes = command.modes(body[: spec.header])
        if isinstance(modes, int):
            return b"", modes
        if session is None:
            plain = body
        else:
            unwrapped = session.unwrap(cmd, body, modes[0], spec)
            if isinstance(unwrapped, int):
                return b"", unwrapped
            plain = unwrapped
        reply = command.handler(plain)
        if reply.status not in _SESSION_GOES_ON:
            return reply.data, reply.status
        if reply.changed and self._on_change is not None:
            self._on_change(self.state)
        data = reply.data
        if reply.plain:
            self.session = None
        elif session is not None and self.session is session:
            data = session.wrap(reply.status, data, modes[1])
            if self.faults.flip_mac_bit is not None and len(data) >= _MAC:
                data = _flip(data, self.faults.flip_mac_bit)
        previous = self._answers.get(cmd)
        self._answers[cmd] = (data, reply.status)
        if self.faults.replay_previous and previous is not None:
            data = previous[0]
        return self._frames(data, reply.status, reply.frames)

    def _frames(self, data: bytes, status: int, bounds: tuple[int, ...] = ()) -> tuple[bytes, int]:
        """Hand ``data`` out in ``91AF`` frames of at most 59 bytes (or cut at ``bounds``)."""
        cuts = list(bounds) if bounds else list(range(0, len(data), MAX_RESPONSE_FRAME))[1:]
        edges = [0, *cuts, len(data)]
        frames = [data[a:b] for a, b in itertools.pairwise(edges)]
        if self.faults.af_forever:
            self._pending = _Forever(self)
            return frames[0], ADDITIONAL_FRAME
        if len(frames) <= 1:
            return data, status
        self._pending = _ResponseFrames(self, frames[1:], status)
        return frames[0], ADDITIONAL_FRAME

    def _write_frames(self, command: _Command, body: bytes) -> tuple[bytes, int]:
        """WriteData: wait for as many frames as its header announces."""
        if len(body) < 7:
            return b"", LENGTH_ERROR
        modes = command.modes(body[:7])
        if isinstance(modes, int):
            return b"", modes
        file = self._file(body[0])
        if isinstance(file, int):
            return b"", file
        span = self._range(file, body)
        if isinstance(span, int):
            return b"", span
        length = _u24(body[4:7])
        if length == 0:
            return b"", LENGTH_ERROR
        if self.session is None:
            expected = 7 + length
        else:
            expected = self.session.command_length(modes[0], 7, length)
        if len(body) > expected:
            return b"", LENGTH_ERROR
        if len(body) == expected:
            return self._execute(WRITE_DATA, command, body)
        self._pending = _CommandFrames(self, command, body, expected)
        return b"", ADDITIONAL_FRAME

    def _command_table(self) -> dict[int, _Command]:
        def shared(cmd: int) -> Callable[[bytes], _Modes | int]:
            modes = COMMAND_MODES[cmd]
            return lambda header: modes

        table: dict[int, tuple[_Handler, CommandLayout | Callable[[bytes], CommandLayout]]] = {
            GET_VERSION: (self._get_version, CommandLayout(0)),
            SELECT_APPLICATION: (self._select_application, CommandLayout(0)),
            GET_CARD_UID: (self._get_card_uid, CommandLayout(0)),
            GET_FILE_SETTINGS: (self._get_file_settings, CommandLayout(1)),
            GET_FILE_IDS: (self._get_file_ids, CommandLayout(0)),
            GET_APPLICATION_IDS: (self._get_application_ids, CommandLayout(0)),
            GET_KEY_SETTINGS: (self._get_key_settings, CommandLayout(0)),
            GET_KEY_VERSION: (self._get_key_version, CommandLayout(1)),
            READ_SIG: (self._read_sig, CommandLayout(1)),
            CHANGE_KEY: (self._change_key, self._change_key_layout),
            CREATE_APPLICATION: (self._create_application, CommandLayout(0)),
            DELETE_APPLICATION: (self._delete_application, CommandLayout(0)),
            CREATE_STD_DATA_FILE: (self._create_std_data_file, CommandLayout(0)),
            SET_CONFIGURATION: (self._set_configuration, CommandLayout(1, ev1_data=1)),
            FORMAT_PICC: (self._format_picc, CommandLayout(0)),
        }
        commands = {
            cmd: _Command(
                handler,
                shared(cmd),
                layout if callable(layout) else _constant_layout(layout),
                needs_session=cmd in _NEEDS_SESSION,
            )
            for cmd, (handler, layout) in table.items()
        }
        for cmd in (GET_FILE_SETTINGS, GET_FILE_IDS, GET_APPLICATION_IDS):
            commands[cmd] = replace(commands[cmd], modes=self._listing_modes)
        header_only = _constant_layout(CommandLayout(0))
        commands[AUTH_EV2_FIRST] = _Command(self._auth_ev2_first, _plain_modes, header_only)
        commands[AUTH_AES] = _Command(self._auth_aes, _plain_modes, header_only)
        commands[AUTH_ISO] = _Command(self._auth_iso, _plain_modes, header_only)
        read_layout = _constant_layout(CommandLayout(7))
        commands[READ_DATA] = _Command(self._read_data, self._read_modes, read_layout)
        commands[WRITE_DATA] = _Command(self._write_data, self._write_modes, self._write_layout)
        return commands

    # -- where we are -------------------------------------------------------------------------

    def _application(self) -> Application | None:
        return self.state.applications.get(self.selected)

    def _key(self, key_no: int) -> BadgeKey | int:
        """:return: the key ``key_no`` of the selected level, or ``NO_SUCH_KEY``."""
        application = self._application()
        if application is None:
            return self.state.picc_key if key_no == 0 else NO_SUCH_KEY
        if key_no >= len(application.keys):
            return NO_SUCH_KEY
        return application.keys[key_no]

    def _authenticated(self, key_no: int) -> bool:
        return self.session is not None and self.session.key_no == key_no

    def _file(self, file_no: int) -> DataFile | int:
        application = self._application()
        if application is None or file_no not in application.files:
            return FILE_NOT_FOUND
        return application.files[file_no]

    def _access_modes(self, file: DataFile, rights: tuple[int, ...]) -> _Modes | int:
        if self.session is not None and self.session.key_no in rights:
            command = CommMode.MAC if file.mode is CommMode.FULL else file.mode
            return command, file.mode
        if FREE in rights:
            return CommMode.PLAIN, CommMode.PLAIN
        return PERMISSION_DENIED

    # -- GetVersion, SelectApplication, Read_Sig, GetCardUID ---------------------------------

    def _get_version(self, body: bytes) -> _Reply:
        if body:
            return _Reply(status=LENGTH_ERROR)
        hw, sw = PRODUCTS[self.product]
        uid = bytes(crypto.UID_SIZE) if self.state.random_uid else self.state.uid
        return _Reply(hw + sw + uid + _BATCH + _WEEK_YEAR, frames=(7, 14))

    def _select_application(self, body: bytes) -> _Reply:
        if len(body) != AID_SIZE:
            return _Reply(status=LENGTH_ERROR)
        if body != PICC_AID and body not in self.state.applications:
            return _Reply(status=APPLICATION_NOT_FOUND)
        self.selected = body
        return _Reply()

    def _read_sig(self, body: bytes) -> _Reply:
        # Plain outside a session; inside one (EV2 or EV1) _execute protects the 9190 answer as
        # COMMAND_MODES says: CommMode.Full, as the host's session expects it.
        if len(body) != 1:
            return _Reply(status=LENGTH_ERROR)
        if body != b"\x00":
            return _Reply(status=PARAMETER_ERROR)
        return _Reply(self._originality_signature(), SIGNATURE)

    def _originality_signature(self) -> bytes:
        uid = self.state.uid
        if self._signature is None or self._signature[0] != uid:
            # Deterministic (RFC 6979): a badge answers the same signature every time.
            algorithm = ec.ECDSA(Prehashed(hashes.SHA224()), deterministic_signing=True)
            der = self._originality_key.sign(crypto.originality_digest(uid), algorithm)
            r, s = decode_dss_signature(der)
            self._signature = (uid, r.to_bytes(28, "big") + s.to_bytes(28, "big"))
        return self._signature[1]

    def _get_card_uid(self, body: bytes) -> _Reply:
        if body:
            return _Reply(status=LENGTH_ERROR)
        return _Reply(self.state.uid)

    # -- authentication -----------------------------------------------------------------------

    def _aes_key(self, key_no: int) -> BadgeKey | int:
        key = self._key(key_no)
        if isinstance(key, int):
            return key
        if key.key_type is not KeyType.AES:
            return AUTHENTICATION_ERROR
        return key

    def _auth_ev2_first(self, body: bytes) -> _Reply:
        if len(body) < 2 or len(body) != 2 + body[1]:
            return _Reply(status=LENGTH_ERROR)
        key_no = body[0]
        key = self._aes_key(key_no)
        if isinstance(key, int):
            return _Reply(status=key)
        k = key.key
        rnd_b = self._random(crypto.RND_SIZE)
        first = crypto.aes_cbc_encrypt(k, crypto.ZERO_IV, rnd_b)

        def second(data: bytes) -> tuple[bytes, int]:
            rnd_a = self._check_cryptogram(k, crypto.ZERO_IV, data, rnd_b)
            if isinstance(rnd_a, int):
                return b"", rnd_a
            ti = self._random(crypto.TI_SIZE)
            answer = ti + crypto.rotate_left(rnd_a) + bytes(12)
            enc, mac = crypto.ev2_session_keys(k, rnd_a, rnd_b)
            self.session = Ev2CardSession(enc, mac, ti, key_no)
            return crypto.aes_cbc_encrypt(k, crypto.ZERO_IV, answer), OK

        self._pending = _Handshake(second)
        return _Reply(first, ADDITIONAL_FRAME)

    def _auth_ev2_non_first(self, body: bytes) -> tuple[bytes, int]:
        old = self.session
        self.session = None
        if self.product == "ev1":
            return b"", ILLEGAL_COMMAND
        if not isinstance(old, Ev2CardSession):
            # [I] NonFirst continues an EV2 session; without one the badge refuses it.
            return b"", AUTHENTICATION_ERROR
        if len(body) != 1:
            return b"", LENGTH_ERROR
        key_no = body[0]
        key = self._aes_key(key_no)
        if isinstance(key, int):
            return b"", key
        k = key.key
        rnd_b = self._random(crypto.RND_SIZE)

        def second(data: bytes) -> tuple[bytes, int]:
            rnd_a = self._check_cryptogram(k, crypto.ZERO_IV, data, rnd_b)
            if isinstance(rnd_a, int):
                return b"", rnd_a
            # [I] TI and CmdCtr survive NonFirst, which does not count itself (PM3).
            self.session = old.rekeyed(*crypto.ev2_session_keys(k, rnd_a, rnd_b), key_no)
            return crypto.aes_cbc_encrypt(k, crypto.ZERO_IV, crypto.rotate_left(rnd_a)), OK

        self._pending = _Handshake(second)
        return crypto.aes_cbc_encrypt(k, crypto.ZERO_IV, rnd_b), ADDITIONAL_FRAME

    def _auth_aes(self, body: bytes) -> _Reply:
        if len(body) != 1:
            return _Reply(status=LENGTH_ERROR)
        key_no = body[0]
        key = self._aes_key(key_no)
        if isinstance(key, int):
            return _Reply(status=key)
        k = key.key
        rnd_b = self._random(crypto.RND_SIZE)
        first = crypto.aes_cbc_encrypt(k, crypto.ZERO_IV, rnd_b)

        def second(data: bytes) -> tuple[bytes, int]:
            # EV1 chains the CBC across the handshake: IV = the last block received.
            rnd_a = self._check_cryptogram(k, first, data, rnd_b)
            if isinstance(rnd_a, int):
                return b"", rnd_a
            self.session = Ev1CardSession(crypto.ev1_session_key(rnd_a, rnd_b), key_no)
            return crypto.aes_cbc_encrypt(k, data[-_BLOCK:], crypto.rotate_left(rnd_a)), OK

        self._pending = _Handshake(second)
        return _Reply(first, ADDITIONAL_FRAME)

    def _auth_iso(self, body: bytes) -> _Reply:
        """AuthenticateISO (``1A``) on a DES/2K3DES key (RndA, RndB 8 bytes) or a 3K3DES key
        (16 bytes): the EV1 rules on 3DES, CBC chained over the handshake from IV 0."""
        if len(body) != 1:
            return _Reply(status=LENGTH_ERROR)
        key_no = body[0]
        key = self._key(key_no)
        if isinstance(key, int):
            return _Reply(status=key)
        if key.key_type is KeyType.AES:
            return _Reply(status=AUTHENTICATION_ERROR)
        k = key.key
        size = 16 if key.key_type is KeyType.TDES_3K else 8
        rnd_b = self._random(size)
        first = legacy.tdes_cbc_encrypt(k, bytes(legacy.DES_BLOCK), rnd_b)

        def second(data: bytes) -> tuple[bytes, int]:
            if len(data) != 2 * size:
                return b"", LENGTH_ERROR
            plain = legacy.tdes_cbc_decrypt(k, first[-legacy.DES_BLOCK :], data)
            if not hmac.compare_digest(plain[size:], crypto.rotate_left(rnd_b)):
                return b"", AUTHENTICATION_ERROR
            rnd_a = plain[:size]
            session_key = _legacy_session_key(key, rnd_a, rnd_b)
            self.session = Ev1CardSession(session_key, key_no, legacy.TDES_EV1)
            answer = crypto.rotate_left(rnd_a)
            return legacy.tdes_cbc_encrypt(k, data[-legacy.DES_BLOCK :], answer), OK

        self._pending = _Handshake(second)
        return _Reply(first, ADDITIONAL_FRAME)

    @staticmethod
    def _check_cryptogram(key: bytes, iv: bytes, data: bytes, rnd_b: bytes) -> bytes | int:
        """:return: RndA from the host's ``E(RndA ‖ RndB')``, or the status refusing it."""
        if len(data) != 2 * crypto.RND_SIZE:
            return LENGTH_ERROR
        plain = crypto.aes_cbc_decrypt(key, iv, data)
        if not hmac.compare_digest(plain[crypto.RND_SIZE :], crypto.rotate_left(rnd_b)):
            return AUTHENTICATION_ERROR
        return plain[: crypto.RND_SIZE]

    # -- data files ---------------------------------------------------------------------------

    def _read_modes(self, header: bytes) -> _Modes | int:
        file = self._file(header[0])
        if isinstance(file, int):
            return file
        return self._access_modes(file, (file.access.read, file.access.read_write))

    def _write_modes(self, header: bytes) -> _Modes | int:
        file = self._file(header[0])
        if isinstance(file, int):
            return file
        modes = self._access_modes(file, (file.access.write, file.access.read_write))
        if isinstance(modes, int) or modes == (CommMode.PLAIN, CommMode.PLAIN):
            return modes
        return file.mode, CommMode.MAC

    def _write_layout(self, body: bytes) -> CommandLayout:
        length = _u24(body[4:7]) if len(body) >= 7 else 0
        return CommandLayout(7, ev1_data=length, ev1_mac_on_wire=True)

    def _range(self, file: DataFile, header: bytes) -> tuple[int, int] | int:
        offset, length = _u24(header[1:4]), _u24(header[4:7])
        size = len(file.data)
        if offset >= size or offset + length > size:
            return BOUNDARY_ERROR
        return offset, (length or size - offset)

    def _read_data(self, body: bytes) -> _Reply:
        if len(body) != 7:
            return _Reply(status=LENGTH_ERROR)
        file = self._file(body[0])
        if isinstance(file, int):
            return _Reply(status=file)
        span = self._range(file, body)
        if isinstance(span, int):
            return _Reply(status=span)
        offset, length = span
        return _Reply(bytes(file.data[offset : offset + length]))

    def _write_data(self, body: bytes) -> _Reply:
        file = self._file(body[0])
        if isinstance(file, int):
            return _Reply(status=file)
        length = _u24(body[4:7])
        span = self._range(file, body)
        if isinstance(span, int) or length == 0:
            return _Reply(status=BOUNDARY_ERROR if isinstance(span, int) else LENGTH_ERROR)
        if len(body) != 7 + length:
            return _Reply(status=LENGTH_ERROR)
        offset = span[0]
        file.data[offset : offset + length] = body[7:]
        return _Reply(changed=True)

    def _listing_modes(self, header: bytes) -> _Modes | int:
        application = self._application()
        settings = self.state.picc_key_settings if application is None else application.key_settings
        if self.session is not None:
            return COMMAND_MODES[GET_FILE_IDS]
        if settings & _KEY_SETTINGS_FREE_LISTING:
            return CommMode.PLAIN, CommMode.PLAIN
        return PERMISSION_DENIED

    def _get_file_settings(self, body: bytes) -> _Reply:
        if len(body) != 1:
            return _Reply(status=LENGTH_ERROR)
        file = self._file(body[0])
        if isinstance(file, int):
            return _Reply(status=file)
        size = len(file.data).to_bytes(3, "little")
        return _Reply(bytes([0x00, _FILE_MODE_BYTES[file.mode]]) + file.access.encode() + size)

    def _get_file_ids(self, body: bytes) -> _Reply:
        application = self._application()
        if body:
            return _Reply(status=LENGTH_ERROR)
        if application is None:
            return _Reply(status=PERMISSION_DENIED)
        return _Reply(bytes(sorted(application.files)))

    def _get_application_ids(self, body: bytes) -> _Reply:
        if body:
            return _Reply(status=LENGTH_ERROR)
        if self.selected != PICC_AID:
            return _Reply(status=PERMISSION_DENIED)
        return _Reply(b"".join(self.state.applications))

    # -- keys ---------------------------------------------------------------------------------

    def _get_key_settings(self, body: bytes) -> _Reply:
        if body:
            return _Reply(status=LENGTH_ERROR)
        application = self._application()
        if application is None:
            key = self.state.picc_key
            return _Reply(bytes([self.state.picc_key_settings, 0x01 | key.key_type]))
        count = len(application.keys) | application.key_type
        return _Reply(bytes([application.key_settings, count]))

    def _get_key_version(self, body: bytes) -> _Reply:
        if len(body) != 1:
            return _Reply(status=LENGTH_ERROR)
        key = self._key(body[0] & 0x3F if self._application() is None else body[0])
        if isinstance(key, int):
            return _Reply(status=key)
        return _Reply(bytes([key.version]))

    def _change_key_target(self, key_byte: int) -> tuple[int, KeyType | None]:
        """:return: the key number and, at PICC level, the new key type (``None``: invalid)."""
        if self._application() is None:
            bits = key_byte & 0xC0
            return key_byte & 0x3F, None if bits == 0xC0 else KeyType(bits)
        return key_byte, None

    def _change_key_layout(self, body: bytes) -> CommandLayout:
        if not body:
            return CommandLayout(1)
        target = self._change_key_target(body[0])[0]
        same = self._authenticated(target)
        return CommandLayout(1, ev1_data=KEY_SIZE + 1, ev1_extra=0 if same else crypto.CRC_SIZE)

    def _may_change_key(self, key_no: int) -> bool:
        application = self._application()
        settings = self.state.picc_key_settings if application is None else application.key_settings
        changer = settings >> 4
        if key_no == 0:
            return bool(settings & _KEY_SETTINGS_MASTER_CHANGEABLE) and self._authenticated(0)
        if changer == _CHANGE_KEY_SAME:
            return self._authenticated(key_no)
        return changer != _CHANGE_KEY_FROZEN and self._authenticated(changer)

    def _change_key(self, body: bytes) -> _Reply:
        if len(body) < 1:
            return _Reply(status=LENGTH_ERROR)
        key_no, new_type = self._change_key_target(body[0])
        application = self._application()
        if application is None and (key_no != 0 or new_type is None):
            return _Reply(status=NO_SUCH_KEY if key_no else PARAMETER_ERROR)
        current = self._key(key_no)
        if isinstance(current, int):
            return _Reply(status=current)
        if not self._may_change_key(key_no):
            return _Reply(status=PERMISSION_DENIED)
        same = self._authenticated(key_no)
        data = body[1:]
        if same:
            if len(data) != KEY_SIZE + 1:
                return _Reply(status=LENGTH_ERROR)
            new = data[:KEY_SIZE]
        else:
            if len(data) != KEY_SIZE + 1 + crypto.CRC_SIZE:
                return _Reply(status=LENGTH_ERROR)
            new = bytes(a ^ b for a, b in zip(data[:KEY_SIZE], current.key, strict=True))
            if not hmac.compare_digest(data[KEY_SIZE + 1 :], crypto.crc32(new)):
                return _Reply(status=INTEGRITY_ERROR)
        key_type = new_type if new_type is not None else current.key_type
        replacement = BadgeKey(bytes(new), data[KEY_SIZE], key_type)
        if application is None:
            self.state.picc_key = replacement
        else:
            application.keys[key_no] = replacement
        return _Reply(plain=same, changed=True)

    # -- applications, files, configuration ---------------------------------------------------

    def _may_create(self, settings: int) -> bool:
        return bool(settings & _KEY_SETTINGS_FREE_CREATE) or self._authenticated(0)

    def _create_application(self, body: bytes) -> _Reply:
        if len(body) != AID_SIZE + 2:
            return _Reply(status=LENGTH_ERROR)
        if self.selected != PICC_AID or not self._may_create(self.state.picc_key_settings):
            return _Reply(status=PERMISSION_DENIED)
        aid, settings, count = body[:AID_SIZE], body[3], body[4]
        key_bits, keys = count & 0xC0, count & 0x0F
        if aid == PICC_AID or not 1 <= keys <= MAX_KEYS or key_bits == 0xC0 or count & 0x30:
            return _Reply(status=PARAMETER_ERROR)
        if aid in self.state.applications:
            return _Reply(status=DUPLICATE_ERROR)
        if len(self.state.applications) >= MAX_APPLICATIONS:
            return _Reply(status=OUT_OF_EEPROM)
        key_type = KeyType(key_bits)
        size = 24 if key_type is KeyType.TDES_3K else KEY_SIZE
        application = Application(
            settings, [BadgeKey(bytes(size), 0, key_type) for _ in range(keys)]
        )
        self.state.applications[bytes(aid)] = application
        return _Reply(changed=True)

    def _delete_application(self, body: bytes) -> _Reply:
        if len(body) != AID_SIZE:
            return _Reply(status=LENGTH_ERROR)
        if body not in self.state.applications:
            return _Reply(status=APPLICATION_NOT_FOUND)
        at_picc = self.selected == PICC_AID and self._authenticated(0)
        in_app = self.selected == body and self._authenticated(0)
        if not (at_picc or in_app):
            return _Reply(status=PERMISSION_DENIED)
        del self.state.applications[body]
        if self.selected == body:
            self.selected = PICC_AID
        return _Reply(changed=True)

    def _create_std_data_file(self, body: bytes) -> _Reply:
        if len(body) != 7:
            return _Reply(status=LENGTH_ERROR)
        application = self._application()
        if application is None or not self._may_create(application.key_settings):
            return _Reply(status=PERMISSION_DENIED)
        file_no, mode_byte, size = body[0], body[1], _u24(body[4:7])
        mode = _FILE_MODES.get(0x00 if mode_byte == 0x02 else mode_byte)
        if file_no > MAX_FILE_NO or mode is None or not 0 < size <= MAX_FILE_SIZE:
            return _Reply(status=PARAMETER_ERROR)
        if file_no in application.files:
            return _Reply(status=DUPLICATE_ERROR)
        access = FileAccess.parse(body[2:4])
        rights = (access.read, access.write, access.read_write, access.change)
        if any(r not in (FREE, DENY) and r >= len(application.keys) for r in rights):
            return _Reply(status=NO_SUCH_KEY)
        application.files[file_no] = DataFile(mode, access, bytearray(size))
        return _Reply(changed=True)

    def _set_configuration(self, body: bytes) -> _Reply:
        if self.selected != PICC_AID or not self._authenticated(0):
            return _Reply(status=PERMISSION_DENIED)
        if len(body) != 2:
            return _Reply(status=LENGTH_ERROR)
        if body[0] != 0x00 or body[1] & ~(_CONFIG_RANDOM_UID | _CONFIG_DISABLE_FORMAT):
            return _Reply(status=PARAMETER_ERROR)
        # Both settings are irreversible on a real badge.
        self.state.random_uid = self.state.random_uid or bool(body[1] & _CONFIG_RANDOM_UID)
        self.state.format_disabled = self.state.format_disabled or bool(
            body[1] & _CONFIG_DISABLE_FORMAT
        )
        return _Reply(changed=True)

    def _format_picc(self, body: bytes) -> _Reply:
        if body:
            return _Reply(status=LENGTH_ERROR)
        if self.selected != PICC_AID or not self._authenticated(0) or self.state.format_disabled:
            return _Reply(status=PERMISSION_DENIED)
        self.state.applications.clear()
        return _Reply(changed=True)


class _ResponseFrames:
    def __init__(self, card: EmulatedDesfire, frames: list[bytes], status: int) -> None:
        self._card, self._frames, self._status = card, frames, status

    def step(self, data: bytes) -> tuple[bytes, int]:
        if data:
            return b"", LENGTH_ERROR
        frame, rest = self._frames[0], self._frames[1:]
        if not rest:
            return frame, self._status
        self._card._pending = _ResponseFrames(self._card, rest, self._status)
        return frame, ADDITIONAL_FRAME


class _Forever:
    def __init__(self, card: EmulatedDesfire) -> None:
        self._card = card

    def step(self, data: bytes) -> tuple[bytes, int]:
        self._card._pending = self
        return b"\x00", ADDITIONAL_FRAME


class _CommandFrames:
    def __init__(
        self, card: EmulatedDesfire, command: _Command, body: bytes, expected: int
    ) -> None:
        self._card, self._command, self._body, self._expected = card, command, body, expected

    def step(self, data: bytes) -> tuple[bytes, int]:
        body = self._body + data
        if len(body) > self._expected:
            return b"", LENGTH_ERROR
        if len(body) < self._expected:
            self._card._pending = _CommandFrames(self._card, self._command, body, self._expected)
            return b"", ADDITIONAL_FRAME
        return self._card._execute(WRITE_DATA, self._command, body)


class _Handshake:
    def __init__(self, second: Callable[[bytes], tuple[bytes, int]]) -> None:
        self._second = second

    def step(self, data: bytes) -> tuple[bytes, int]:
        return self._second(data)


NXP_UID_PREFIX = b"\x04"


def open_badge(
    state_file: str | os.PathLike[str] | None = None,
    *,
    uid: bytes | None = None,
    product: str = "ev3",
    rng: Callable[[int], bytes] = os.urandom,
) -> EmulatedDesfire:
    """A badge kept in a state file, as ``mie emulate desfire --state`` hosts it.

    A missing file is created with a blank badge (DES PICC key, no application) and every
    change is saved to it before the answer leaves, so a badge killed mid-enrolment comes back
    as it was. Without a file the badge lives in memory only.

    :param state_file: the ``mie-badge-state/1`` file, if any.
    :param uid: the 7-byte UID of a new badge (default: ``04`` and 6 random bytes).
    :param product: ``"ev3"``, ``"ev2"`` or ``"ev1"``.
    :param rng: the badge's random source.
    :return: the badge, powered on.
    :raises ValueError: a UID that is not 7 bytes, or one given for an existing badge.
    :raises JsonFormatError: the file is not a badge state.
    :raises OSError: the file cannot be read or written.
    """
    if uid is not None and len(uid) != crypto.UID_SIZE:
        raise ValueError(f"A DESFire UID is 7 bytes, got {len(uid)}")
    if state_file is not None and os.path.exists(state_file):
        state = load_state(state_file)
        if uid is not None and uid != state.uid:
            raise ValueError("A UID is given to a new badge only: the state file has one")
    else:
        state = BadgeState.blank(uid or NXP_UID_PREFIX + rng(crypto.UID_SIZE - 1))
        if state_file is not None:
            save_state(state_file, state)
    saver = None if state_file is None else functools.partial(save_state, state_file)
    return EmulatedDesfire(state, product=product, rng=rng, on_change=saver)
