"""The persistent state of an emulated DESFire badge: PICC key and configuration, applications,
their keys and standard data files.

Only successful commands of :class:`mie.emulation.desfire.EmulatedDesfire` change it. The keys
are held in clear: this is an emulator's state, never a real badge's. No repr shows a key or a
file's content.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from mie.core.channel import CommMode

UID_SIZE = 7
AID_SIZE = 3
KEY_SIZE = 16
PICC_AID = bytes(AID_SIZE)
MAX_KEYS = 14
MAX_FILE_NO = 31
MAX_APPLICATIONS = 28
# The EEPROM of the largest DESFire EV3 (8 KiB): the most one file may hold.
MAX_FILE_SIZE = 8192
FREE = 0xE
DENY = 0xF
# The plan's application layout (issue 9 plan §2.3): 5 AES keys, key settings 0B, record file 01.
MIE_KEY_SETTINGS = 0x0B
MIE_APPLICATION_KEYS = 5
RECORD_FILE = 0x01
RECORD_SIZE = 176


class KeyType(IntEnum):
    """The key type bits of a DESFire key number or application key count (bits 7-6)."""

    DES = 0x00
    TDES_3K = 0x40
    AES = 0x80


@dataclass
class BadgeKey:
    """One key of a badge.

    :param key: 16 bytes (AES, DES/2K3DES) or 24 bytes (3K3DES).
    :param version: the key version (``00`` for a default key).
    :param key_type: its type.
    """

    key: bytes = field(repr=False)
    version: int = 0
    key_type: KeyType = KeyType.AES


@dataclass(frozen=True)
class FileAccess:
    """The access rights of a data file: a key number 0..13, :data:`FREE` or :data:`DENY`.

    :param read: ReadData.
    :param write: WriteData.
    :param read_write: both.
    :param change: ChangeFileSettings.
    """

    read: int
    write: int
    read_write: int
    change: int

    def encode(self) -> bytes:
        """:return: the 2 bytes on the wire: ``RW<<4 | Change``, then ``Read<<4 | Write``."""
        return bytes([self.read_write << 4 | self.change, self.read << 4 | self.write])

    @classmethod
    def parse(cls, data: bytes) -> FileAccess:
        """:return: the rights encoded in 2 bytes (see :meth:`encode`).
        :raises ValueError: when ``data`` is not 2 bytes."""
        if len(data) != 2:
            raise ValueError(f"Access rights are 2 bytes, got {len(data)}")
        return cls(data[1] >> 4, data[1] & 0x0F, data[0] >> 4, data[0] & 0x0F)


RECORD_ACCESS = FileAccess(read=2, write=0, read_write=0, change=0)


@dataclass
class DataFile:
    """A standard data file.

    :param mode: the file's communication mode.
    :param access: its access rights.
    :param data: its content (the file's size is its length).
    """

    mode: CommMode
    access: FileAccess
    data: bytearray = field(repr=False)


@dataclass
class Application:
    """An application: its key settings, keys and files.

    :param key_settings: the key settings byte (bits 7-4: the key that changes keys).
    :param keys: its keys, all of one type.
    :param files: standard data files by number.
    """

    key_settings: int
    keys: list[BadgeKey]
    files: dict[int, DataFile] = field(default_factory=dict)

    @property
    def key_type(self) -> KeyType:
        """The type of the application's keys."""
        return self.keys[0].key_type


@dataclass
class BadgeState:
    """What a badge keeps across power cycles.

    :param uid: the real 7-byte UID.
    :param picc_key: the PICC master key.
    :param picc_key_settings: the PICC key settings (``0F``: everything allowed).
    :param random_uid: anticollision shows a random UID (SetConfiguration; irreversible).
    :param format_disabled: FormatPICC is refused (SetConfiguration; irreversible).
    :param applications: by AID, in wire order (LSB first).
    """

    uid: bytes
    picc_key: BadgeKey
    picc_key_settings: int = 0x0F
    random_uid: bool = False
    format_disabled: bool = False
    applications: dict[bytes, Application] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.uid) != UID_SIZE:
            raise ValueError(f"A DESFire UID is 7 bytes, got {len(self.uid)}")

    @classmethod
    def blank(cls, uid: bytes) -> BadgeState:
        """A badge as NXP ships it: a DES PICC master key of zeros, version 0, no application.

        :param uid: the 7-byte UID.
        :return: the state.
        """
        return cls(uid, BadgeKey(bytes(KEY_SIZE), 0, KeyType.DES))


def personalise(
    state: BadgeState,
    *,
    aid: bytes,
    keys: Sequence[bytes],
    record: bytes,
    picc_key: bytes | None = None,
    random_uid: bool = False,
    version: int = 0x01,
) -> None:
    """Write the MIE layout into ``state`` directly, as an enrolment would leave it (issue 9
    plan §2.3), for tests that do not test enrolment.

    The application gets key settings ``0B``, the AES ``keys`` (all at ``version``) and the
    record file ``01`` (FULL mode, read with key 2, write and change with key 0); an existing
    application with that AID is replaced.

    :param state: the badge, changed in place.
    :param aid: the 3-byte AID, wire order.
    :param keys: the application's AES keys, 16 bytes each (the plan's layout has 5).
    :param record: the record file's content (its length is the file's size).
    :param picc_key: a new AES PICC master key, if any.
    :param random_uid: turn random UID on.
    :param version: the version of every key written.
    :raises ValueError: on a wrong AID or key length, or a key count outside 1..14.
    """
    if len(aid) != AID_SIZE or aid == PICC_AID:
        raise ValueError("An application AID is 3 bytes, not 000000")
    if not 1 <= len(keys) <= MAX_KEYS or any(len(k) != KEY_SIZE for k in keys):
        raise ValueError("An application has 1..14 AES keys of 16 bytes")
    if not 0 < len(record) <= MAX_FILE_SIZE:
        raise ValueError(f"A record file holds 1..{MAX_FILE_SIZE} bytes")
    if picc_key is not None:
        if len(picc_key) != KEY_SIZE:
            raise ValueError("The PICC master key is 16 bytes")
        state.picc_key = BadgeKey(bytes(picc_key), version, KeyType.AES)
    state.applications[bytes(aid)] = Application(
        MIE_KEY_SETTINGS,
        [BadgeKey(bytes(k), version, KeyType.AES) for k in keys],
        {RECORD_FILE: DataFile(CommMode.FULL, RECORD_ACCESS, bytearray(record))},
    )
    state.random_uid = state.random_uid or random_uid
