"""MIFARE DESFire native command codes, status codes and the comm mode of each command.

The session (:mod:`mie.desfire.session`) and the emulated badge (:mod:`mie.emulation.desfire`)
both read :data:`COMMAND_MODES`, so the two ends agree on how each command is protected inside
an authenticated session (reference ``desfire.md`` §6, PM3's command table).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum, unique
from types import MappingProxyType
from typing import Final

from mie.core.channel import CommMode

CLA_NATIVE: Final = 0x90
"""The class byte of DESFire's ISO wrapping: ``90 CMD 00 00 [Lc data] 00``."""
SW1_NATIVE: Final = 0x91
"""The first status byte of a wrapped answer: ``91 status``."""
SW_OK: Final = 0x9100
SW_ADDITIONAL_FRAME: Final = 0x91AF
SW_AUTHENTICATION_ERROR: Final = 0x91AE
SW_SIGNATURE: Final = 0x9190

GET_VERSION: Final = 0x60
SELECT_APPLICATION: Final = 0x5A
AUTH_EV2_FIRST: Final = 0x71
AUTH_EV2_NON_FIRST: Final = 0x77
AUTH_AES: Final = 0xAA
AUTH_ISO: Final = 0x1A
AUTH_LEGACY: Final = 0x0A
ADDITIONAL_FRAME: Final = 0xAF
GET_CARD_UID: Final = 0x51
READ_DATA: Final = 0xBD
WRITE_DATA: Final = 0x3D
GET_FILE_SETTINGS: Final = 0xF5
GET_KEY_SETTINGS: Final = 0x45
GET_KEY_VERSION: Final = 0x64
GET_APPLICATION_IDS: Final = 0x6A
GET_FILE_IDS: Final = 0x6F
READ_SIG: Final = 0x3C
CHANGE_KEY: Final = 0xC4
CREATE_APPLICATION: Final = 0xCA
DELETE_APPLICATION: Final = 0xDA
CREATE_STD_DATA_FILE: Final = 0xCD
SET_CONFIGURATION: Final = 0x5C
FORMAT_PICC: Final = 0xFC

AUTHENTICATIONS: Final = frozenset(
    {AUTH_EV2_FIRST, AUTH_EV2_NON_FIRST, AUTH_AES, AUTH_ISO, AUTH_LEGACY}
)
"""The commands whose ``91AF`` asks for the host's next handshake message, not for more frames."""

ENDS_SESSION: Final = frozenset(
    {SELECT_APPLICATION, AUTH_EV2_FIRST, AUTH_AES, AUTH_ISO, AUTH_LEGACY}
)
"""The commands after which the badge has no session any more: a host channel is dropped before
them. AuthenticateEV2NonFirst (``77``) is not one: it keeps TI and CmdCtr and re-keys."""


@unique
class Status(IntEnum):
    """The native status byte (the second byte of ``91xx``; reference ``desfire.md`` §7).

    A value outside the list reads as :attr:`UNKNOWN`.
    """

    UNKNOWN = -1
    OK = 0x00
    NO_CHANGES = 0x0C
    OUT_OF_EEPROM = 0x0E
    ILLEGAL_COMMAND = 0x1C
    INTEGRITY_ERROR = 0x1E
    NO_SUCH_KEY = 0x40
    LENGTH_ERROR = 0x7E
    SIGNATURE = 0x90
    PERMISSION_DENIED = 0x9D
    PARAMETER_ERROR = 0x9E
    APPLICATION_NOT_FOUND = 0xA0
    APPL_INTEGRITY_ERROR = 0xA1
    AUTHENTICATION_ERROR = 0xAE
    ADDITIONAL_FRAME = 0xAF
    BOUNDARY_ERROR = 0xBE
    PICC_INTEGRITY_ERROR = 0xC1
    COMMAND_ABORTED = 0xCA
    PICC_DISABLED = 0xCD
    COUNT_ERROR = 0xCE
    DUPLICATE_ERROR = 0xDE
    EEPROM_ERROR = 0xEE
    FILE_NOT_FOUND = 0xF0
    FILE_INTEGRITY_ERROR = 0xF1

    @classmethod
    def _missing_(cls, value: object) -> Status:
        return cls.UNKNOWN


_PLAIN = (CommMode.PLAIN, CommMode.PLAIN)
_MAC = (CommMode.MAC, CommMode.MAC)

COMMAND_MODES: Final[Mapping[int, tuple[CommMode, CommMode]]] = MappingProxyType(
    {
        GET_VERSION: _PLAIN,
        SELECT_APPLICATION: _PLAIN,
        READ_SIG: (CommMode.MAC, CommMode.FULL),
        GET_CARD_UID: (CommMode.MAC, CommMode.FULL),
        GET_FILE_SETTINGS: _MAC,
        GET_KEY_SETTINGS: _MAC,
        GET_KEY_VERSION: _MAC,
        GET_APPLICATION_IDS: _MAC,
        GET_FILE_IDS: _MAC,
        CREATE_APPLICATION: _MAC,
        DELETE_APPLICATION: _MAC,
        CREATE_STD_DATA_FILE: _MAC,
        FORMAT_PICC: _MAC,
        CHANGE_KEY: (CommMode.FULL, CommMode.MAC),
        SET_CONFIGURATION: (CommMode.FULL, CommMode.MAC),
    }
)
"""``(command mode, response mode)`` of each command inside an authenticated session; ReadData
and WriteData follow the file's comm mode instead. Without a session every command is plain.

Read_Sig (``3C``) inside a session: the command MACed, its ``91 90`` answer enciphered and
MACed (CommMode.Full). Sources: the ``ntag424`` crate (docs.rs, 0.1.0,
``src/commands/read_sig.rs``) has a plain Read_Sig for NTAG 424 DNA (NT4H2421Gx §10.12; the
``91 90`` status "documented by example" in AN12196 Table 30) and an authenticated one whose
answer it reads as ciphertext; proxmark3 sends Read_Sig only unauthenticated
(``cmdhfmfdes.c``), and its secure-channel table (``desfiresecurechan.c``) has no entry for it.
[I] That a DESFire EV2/EV3 answers it in CommMode.Full inside a session is inferred from those
and from the EV2 secure messaging the products share, not from a trace of a real badge
(reference ``desfire.md`` §11).
"""
