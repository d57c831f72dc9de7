"""Value types of DESFire answers: frozen dataclasses with a strict, size-bounded ``parse``.

Every ``parse`` reads bytes from the badge (outside input): a wrong size or an unknown field
raises :class:`~mie.errors.BadResponseError`, never returns a partial value.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, unique

from mie.core.channel import CommMode
from mie.core.errors import BadResponseError

VERSION_SIZE = 28
"""GetVersion's three frames: HW (7), SW (7), then UID, batch, week and year (14)."""
MAX_VERSION_SIZE = 64
UID_SIZE = 7
KEY_ANY = 0x0E
"""An access right granted to everyone (free access)."""
KEY_NONE = 0x0F
"""An access right granted to no one (denied)."""

# (HW type, HW major) to product (reference desfire.md §6, PM3 getCardType).
_PRODUCTS = {
    (0x01, 0x00): "D40",
    (0x01, 0x01): "EV1",
    (0x01, 0x12): "EV2",
    (0x01, 0x22): "EV2 XL",
    (0x01, 0x33): "EV3",
    (0x08, 0x30): "Light",
    (0x81, 0x42): "EV2",
    (0x81, 0x43): "EV3",
    (0x91, 0x62): "EV2",
}


@dataclass(frozen=True)
class ChipVersion:
    """One of GetVersion's first two frames (hardware or software).

    :param vendor: ``04`` for NXP.
    :param type: ``01`` native IC, ``08`` Light, ``81``/``83`` microcontroller, ``91`` applet.
    :param subtype: the subtype byte.
    :param major: the major version.
    :param minor: the minor version.
    :param storage: the storage byte (size ``2 ** (storage >> 1)``).
    :param protocol: ``05`` for ISO 14443-2 and -3.
    """

    vendor: int
    type: int
    subtype: int
    major: int
    minor: int
    storage: int
    protocol: int

    @classmethod
    def parse(cls, frame: bytes) -> ChipVersion:
        """:param frame: 7 bytes. :return: the version. :raises BadResponseError: another size."""
        if len(frame) != 7:
            raise BadResponseError(f"A GetVersion frame has 7 bytes, got {len(frame)}")
        return cls(*frame)


@dataclass(frozen=True)
class Version:
    """What GetVersion (``60``) answers.

    :param hw: the hardware frame.
    :param sw: the software frame.
    :param uid: the 7-byte UID, or ``None`` when the badge shows zeros (random UID on).
    :param batch: the 5-byte batch number.
    :param week: the production week (BCD).
    :param year: the production year (BCD).
    """

    hw: ChipVersion
    sw: ChipVersion
    uid: bytes | None
    batch: bytes
    week: int
    year: int

    @classmethod
    def parse(cls, frames: bytes) -> Version:
        """Read the concatenated frames; bytes after the first 28 are tolerated (up to 64).

        :param frames: GetVersion's data, every frame.
        :return: the version.
        :raises BadResponseError: fewer than 28 bytes, or more than 64.
        """
        if not VERSION_SIZE <= len(frames) <= MAX_VERSION_SIZE:
            raise BadResponseError(
                f"GetVersion answered {len(frames)} bytes, "
                f"expected {VERSION_SIZE}..{MAX_VERSION_SIZE}"
            )
        uid = frames[14:21]
        return cls(
            hw=ChipVersion.parse(frames[0:7]),
            sw=ChipVersion.parse(frames[7:14]),
            uid=None if not any(uid) else uid,
            batch=frames[21:26],
            week=frames[26],
            year=frames[27],
        )

    @property
    def product(self) -> str:
        """:return: ``EV1``, ``EV2``, ``EV2 XL``, ``EV3``, ``Light``, ``D40`` or ``unknown``."""
        if self.hw.vendor != 0x04:
            return "unknown"
        return _PRODUCTS.get((self.hw.type, self.hw.major), "unknown")

    @property
    def storage_bytes(self) -> int:
        """:return: the storage size the software frame announces (its lower bound)."""
        return 1 << (self.sw.storage >> 1)


@unique
class KeyType(Enum):
    """The crypto of an application's keys (bits 7..6 of KeySettings2 and ChangeKey's KeyNo)."""

    DES_2K3DES = 0x00
    TDES_3K = 0x40
    AES = 0x80


def _nibble(name: str, value: int) -> int:
    if not 0 <= value <= 0x0F:
        raise ValueError(f"Access right {name} must be a key number 0..15, got {value}")
    return value


@dataclass(frozen=True)
class AccessRights:
    """A file's four access rights: a key number ``0..13``, :data:`KEY_ANY` or :data:`KEY_NONE`.

    :param read: who may read.
    :param write: who may write.
    :param read_write: who may read and write.
    :param change: who may change the settings.
    """

    read: int
    write: int
    read_write: int
    change: int

    def __post_init__(self) -> None:
        for name in ("read", "write", "read_write", "change"):
            _nibble(name, getattr(self, name))

    def encode(self) -> bytes:
        """:return: the 2 bytes as sent (``RW << 4 | Change``, then ``Read << 4 | Write``)."""
        return bytes([self.read_write << 4 | self.change, self.read << 4 | self.write])

    @classmethod
    def parse(cls, data: bytes) -> AccessRights:
        """:param data: 2 bytes. :return: the rights. :raises BadResponseError: another size."""
        if len(data) != 2:
            raise BadResponseError(f"Access rights are 2 bytes, got {len(data)}")
        return cls(
            read=data[1] >> 4, write=data[1] & 0x0F, read_write=data[0] >> 4, change=data[0] & 0x0F
        )


_COMM_MODES = {0x00: CommMode.PLAIN, 0x02: CommMode.PLAIN, 0x01: CommMode.MAC, 0x03: CommMode.FULL}
COMM_MODE_BYTES = {CommMode.PLAIN: 0x00, CommMode.MAC: 0x01, CommMode.FULL: 0x03}
"""The comm-mode byte of CreateStdDataFile and GetFileSettings."""

STANDARD_FILE = 0x00
BACKUP_FILE = 0x01
MAX_FILE_SIZE = 0xFFFFFF


@dataclass(frozen=True)
class FileSettings:
    """What GetFileSettings (``F5``) answers for a standard or backup data file.

    :param file_type: :data:`STANDARD_FILE` or :data:`BACKUP_FILE`.
    :param mode: the file's comm mode.
    :param access: its access rights.
    :param size: its size in bytes.
    """

    file_type: int
    mode: CommMode
    access: AccessRights
    size: int

    @classmethod
    def parse(cls, data: bytes) -> FileSettings:
        """:param data: the 7 bytes ``type comm access(2) size(3, LE)``.
        :return: the settings.
        :raises BadResponseError: another size, another file type, or an option this library
            does not read (additional access rights, secure dynamic messaging).
        """
        if len(data) != 7:
            raise BadResponseError(f"Data file settings are 7 bytes, got {len(data)}")
        if data[0] not in (STANDARD_FILE, BACKUP_FILE):
            raise BadResponseError(f"File type {data[0]:02X} is not a standard or backup data file")
        mode = _COMM_MODES.get(data[1])
        if mode is None:
            raise BadResponseError(f"File option byte {data[1]:02X} is not a plain comm mode")
        return cls(
            data[0], mode, AccessRights.parse(data[2:4]), int.from_bytes(data[4:7], "little")
        )


@dataclass(frozen=True)
class KeySettings:
    """What GetKeySettings (``45``) answers.

    :param settings: the key settings byte (``0x0B``: master key changeable, free directory
        and create/delete with the master key, configuration changeable).
    :param max_keys: how many keys the application (or the PICC) has.
    :param key_type: the type of its keys.
    """

    settings: int
    max_keys: int
    key_type: KeyType

    @classmethod
    def parse(cls, data: bytes) -> KeySettings:
        """:param data: 2 bytes. :return: the settings.
        :raises BadResponseError: another size, or key-type bits that name no type.
        """
        if len(data) != 2:
            raise BadResponseError(f"Key settings are 2 bytes, got {len(data)}")
        try:
            key_type = KeyType(data[1] & 0xC0)
        except ValueError:
            raise BadResponseError(f"Key settings name no key type ({data[1]:02X})") from None
        return cls(data[0], data[1] & 0x0F, key_type)
