"""What ``mie agent`` forwards to the card: a deny-by-default allow-list (plan §3.2, §8).

The agent is the gate that stops a server from using the workstation's reader for anything but
reading a DESFire badge: no VERIFY (which would spend a CPS card's PIN tries), no interindustry
command, no write, no legacy DES authentication, no extended APDU. It forwards only

- a well-formed short native command ``90 INS 00 00 [Lc data] 00`` whose INS reads or
  authenticates (:data:`ALLOWED_INS`);
- ``90 AF 00 00 [Lc data] 00`` (additional frame) right after the card answered ``91AF``;
- the reader's GET DATA of the UID, exactly ``FF CA 00 00 00`` (PC/SC part 3).

Before it announces a card, the agent asks it ``90 60 00 00 00`` (GetVersion) itself: only a
``91AF`` answer with NXP's vendor byte ``04`` is a DESFire badge (:func:`check_desfire`).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from mie.desfire import constants as c
from mie.relay.errors import RelayRefusedError

ALLOWED_INS: Final = frozenset(
    {
        c.GET_VERSION,
        c.SELECT_APPLICATION,
        c.AUTH_EV2_FIRST,
        c.AUTH_EV2_NON_FIRST,
        c.AUTH_AES,
        c.GET_CARD_UID,
        c.READ_DATA,
        c.GET_FILE_SETTINGS,
        c.GET_KEY_SETTINGS,
        c.GET_KEY_VERSION,
        c.GET_APPLICATION_IDS,
        c.GET_FILE_IDS,
        c.READ_SIG,
    }
)
"""The native commands the agent forwards: they read the badge or authenticate to it."""

GET_DATA_UID: Final = bytes.fromhex("FFCA000000")
"""The reader's GET DATA of the card UID (answered by the reader, not the card)."""
GET_VERSION_PROBE: Final = bytes.fromhex("9060000000")
"""The one command the agent sends on its own, to tell a DESFire badge from any other card."""
NXP_VENDOR: Final = 0x04
VERSION_FRAME_SIZE: Final = 7
HEADER_SIZE: Final = 4
MAX_SHORT_APDU: Final = 261

_PIN_INS: Final = MappingProxyType(
    {0x20: "VERIFY", 0x21: "VERIFY", 0x24: "CHANGE REFERENCE DATA", 0x2C: "RESET RETRY COUNTER"}
)
_NAMED_REFUSALS: Final = MappingProxyType(
    {
        c.AUTH_ISO: "legacy ISO authentication (1A) is not relayed",
        c.AUTH_LEGACY: "legacy DES authentication (0A) is not relayed",
        c.WRITE_DATA: "WriteData (3D) writes to the badge",
        0x3B: "WriteRecord (3B) writes to the badge",
        c.CHANGE_KEY: "ChangeKey (C4) writes to the badge",
        0x54: "ChangeKeySettings (54) writes to the badge",
        0x5F: "ChangeFileSettings (5F) writes to the badge",
        c.CREATE_APPLICATION: "CreateApplication (CA) writes to the badge",
        c.DELETE_APPLICATION: "DeleteApplication (DA) writes to the badge",
        c.CREATE_STD_DATA_FILE: "CreateStdDataFile (CD) writes to the badge",
        0xDF: "DeleteFile (DF) writes to the badge",
        c.SET_CONFIGURATION: "SetConfiguration (5C) writes to the badge",
        c.FORMAT_PICC: "FormatPICC (FC) erases the badge",
        0xC7: "CommitTransaction (C7) writes to the badge",
    }
)


def check_command(apdu: bytes, *, after_af: bool) -> None:
    """Decide whether the agent may forward ``apdu`` to the card.

    :param apdu: the command APDU the IAM asked to send.
    :param after_af: whether the card's last answer was ``91AF`` (a frame is pending).
    :raises RelayRefusedError: the command is outside the allow-list; the reason names why.
    """
    if len(apdu) < HEADER_SIZE:
        raise RelayRefusedError(f"a command of {len(apdu)} bytes is not an APDU")
    if apdu == GET_DATA_UID:
        return
    cla, ins, p1, p2 = apdu[:HEADER_SIZE]
    if ins in _PIN_INS:
        raise RelayRefusedError(
            f"{_PIN_INS[ins]} (INS {ins:02X}) is never relayed: it would spend a card's PIN tries"
        )
    if cla != c.CLA_NATIVE:
        raise RelayRefusedError(f"CLA {cla:02X} is not DESFire's native wrapping (90)")
    if (p1, p2) != (0, 0):
        raise RelayRefusedError(f"P1 P2 {p1:02X} {p2:02X}: a native command has 00 00")
    _check_short_form(apdu)
    _check_ins(ins, after_af)


def _check_short_form(apdu: bytes) -> None:
    if len(apdu) > MAX_SHORT_APDU:
        raise RelayRefusedError(f"a command of {len(apdu)} bytes is longer than a short APDU")
    if len(apdu) == HEADER_SIZE:
        raise RelayRefusedError("a native command ends with Le 00, this one has no Le")
    if len(apdu) == HEADER_SIZE + 1:
        if apdu[4] != 0:
            raise RelayRefusedError(f"a native command ends with Le 00, not {apdu[4]:02X}")
        return
    lc = apdu[4]
    if lc == 0:
        raise RelayRefusedError("an extended APDU is not relayed")
    if len(apdu) != HEADER_SIZE + 1 + lc + 1:
        raise RelayRefusedError(f"the length Lc {lc:02X} does not match the data")
    if apdu[-1] != 0:
        raise RelayRefusedError(f"a native command ends with Le 00, not {apdu[-1]:02X}")


def _check_ins(ins: int, after_af: bool) -> None:
    if ins == c.ADDITIONAL_FRAME:
        if not after_af:
            raise RelayRefusedError("AF (additional frame) without a pending 91AF answer")
        return
    if ins in ALLOWED_INS:
        return
    named = _NAMED_REFUSALS.get(ins)
    raise RelayRefusedError(named or f"INS {ins:02X} is not in the relay's allow-list")


def check_desfire(data: bytes, sw: int) -> None:
    """Check the card's answer to :data:`GET_VERSION_PROBE` is a DESFire badge's.

    :param data: the response data.
    :param sw: the status word.
    :raises RelayRefusedError: not ``91AF`` with a 7-byte hardware frame of vendor ``04``.
    """
    if sw != c.SW_ADDITIONAL_FRAME or len(data) != VERSION_FRAME_SIZE or data[0] != NXP_VENDOR:
        raise RelayRefusedError(
            f"not a DESFire badge (GetVersion answered SW {sw:04X} with {len(data)} bytes)"
        )
