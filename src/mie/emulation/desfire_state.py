"""The persistent state of an emulated DESFire badge: PICC key and configuration, applications,
their keys and standard data files.

Only successful commands of :class:`mie.emulation.desfire.EmulatedDesfire` change it. The keys
are held in clear: this is an emulator's state, never a real badge's. No repr shows a key or a
file's content. :func:`save_state` / :func:`load_state` keep it in a strict
``mie-badge-state/1`` JSON file (mode 0600).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from mie.core import strictjson
from mie.core.channel import CommMode
from mie.core.files import atomic_write
from mie.core.strictjson import FieldChecks, Number

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


# --- the state file (mie-badge-state/1) -----------------------------------------------------

STATE_FORMAT = "mie-badge-state/1"
# Every file of a full badge in hex, with room to spare.
MAX_STATE_BYTES = 256 * 1024
_KEY_TYPES = {"des": KeyType.DES, "3k3des": KeyType.TDES_3K, "aes": KeyType.AES}
_KEY_TYPE_NAMES = {v: k for k, v in _KEY_TYPES.items()}
_MODES = {m.value: m for m in CommMode}
_KEY_SIZES = {KeyType.DES: (16,), KeyType.TDES_3K: (24,), KeyType.AES: (16,)}
_HEX = re.compile(r"(?:[0-9a-f]{2})*")
_BYTE = re.compile(r"0|[1-9][0-9]{0,2}")


def _key_json(key: BadgeKey) -> dict[str, object]:
    return {"type": _KEY_TYPE_NAMES[key.key_type], "key": key.key.hex(), "version": key.version}


def encode_state(state: BadgeState) -> bytes:
    """:return: ``state`` as a ``mie-badge-state/1`` JSON document (keys in clear: an
    emulator's file, written mode 0600 by :func:`save_state`)."""
    applications = [
        {
            "aid": aid.hex(),
            "key_settings": app.key_settings,
            "keys": [_key_json(k) for k in app.keys],
            "files": [
                {
                    "no": no,
                    "mode": f.mode.value,
                    "access": f.access.encode().hex(),
                    "data": bytes(f.data).hex(),
                }
                for no, f in sorted(app.files.items())
            ],
        }
        for aid, app in state.applications.items()
    ]
    document = {
        "format": STATE_FORMAT,
        "uid": state.uid.hex(),
        "picc_key": _key_json(state.picc_key),
        "picc_key_settings": state.picc_key_settings,
        "random_uid": state.random_uid,
        "format_disabled": state.format_disabled,
        "applications": applications,
    }
    return json.dumps(document, indent=1).encode("utf-8") + b"\n"


class _Reader(FieldChecks):
    """Field checks for one document; every failure names the field."""

    def items(self, value: Any, where: str, most: int) -> list[Any]:
        if not isinstance(value, list) or len(value) > most:
            raise self.fail(f"{where} is not a list of at most {most} items")
        return value

    def bytes_(self, value: Any, where: str, sizes: tuple[int, ...] | range) -> bytes:
        if not isinstance(value, str) or not _HEX.fullmatch(value) or len(value) // 2 not in sizes:
            raise self.fail(f"{where} is not lower-case hex of the right length")
        return bytes.fromhex(value)

    def byte(self, value: Any, where: str, most: int = 0xFF) -> int:
        if not isinstance(value, Number) or not _BYTE.fullmatch(value.text):
            raise self.fail(f"{where} is not an integer 0..{most}")
        number = int(value.text)
        if number > most:
            raise self.fail(f"{where} is not an integer 0..{most}")
        return number

    def key(self, value: Any, where: str) -> BadgeKey:
        obj = self.object(value, where, {"type", "key", "version"})
        key_type = _KEY_TYPES.get(obj["type"]) if isinstance(obj["type"], str) else None
        if key_type is None:
            raise self.fail(f"{where}.type is not one of {sorted(_KEY_TYPES)}")
        key = self.bytes_(obj["key"], f"{where}.key", _KEY_SIZES[key_type])
        return BadgeKey(key, self.byte(obj["version"], f"{where}.version"), key_type)


def decode_state(data: bytes, name: str = "badge state") -> BadgeState:
    """Read a ``mie-badge-state/1`` document strictly: every field present, nothing else,
    lengths and ranges checked.

    :param data: the document.
    :param name: what messages call it (a file name).
    :return: the state.
    :raises JsonFormatError: on anything else.
    """
    r = _Reader(name)
    top = r.object(
        strictjson.loads(data, name, max_bytes=MAX_STATE_BYTES),
        "document",
        {"format", "uid", "picc_key", "picc_key_settings", "random_uid", "format_disabled"}
        | {"applications"},
    )
    if top["format"] != STATE_FORMAT:
        raise r.fail(f"The format is not {STATE_FORMAT!r}")
    state = BadgeState(
        r.bytes_(top["uid"], "uid", (UID_SIZE,)),
        r.key(top["picc_key"], "picc_key"),
        r.byte(top["picc_key_settings"], "picc_key_settings"),
        r.flag(top["random_uid"], "random_uid"),
        r.flag(top["format_disabled"], "format_disabled"),
    )
    for i, item in enumerate(r.items(top["applications"], "applications", MAX_APPLICATIONS)):
        where = f"applications[{i}]"
        obj = r.object(item, where, {"aid", "key_settings", "keys", "files"})
        aid = r.bytes_(obj["aid"], f"{where}.aid", (AID_SIZE,))
        if aid == PICC_AID or aid in state.applications:
            raise r.fail(f"{where}.aid is 000000 or repeated")
        keys = [
            r.key(k, f"{where}.keys[{j}]")
            for j, k in enumerate(r.items(obj["keys"], f"{where}.keys", MAX_KEYS))
        ]
        if not keys or len({k.key_type for k in keys}) != 1:
            raise r.fail(f"{where}.keys must be 1..14 keys of one type")
        application = Application(r.byte(obj["key_settings"], f"{where}.key_settings"), keys)
        for j, entry in enumerate(r.items(obj["files"], f"{where}.files", MAX_FILE_NO + 1)):
            at = f"{where}.files[{j}]"
            f = r.object(entry, at, {"no", "mode", "access", "data"})
            no = r.byte(f["no"], f"{at}.no", MAX_FILE_NO)
            mode = _MODES.get(f["mode"]) if isinstance(f["mode"], str) else None
            if mode is None or no in application.files:
                raise r.fail(f"{at} has an unknown mode or a repeated number")
            access = FileAccess.parse(r.bytes_(f["access"], f"{at}.access", (2,)))
            content = r.bytes_(f["data"], f"{at}.data", range(1, MAX_FILE_SIZE + 1))
            application.files[no] = DataFile(mode, access, bytearray(content))
        state.applications[aid] = application
    return state


def save_state(path: str | os.PathLike[str], state: BadgeState) -> None:
    """Write ``state`` to ``path`` atomically, mode 0600 (it holds keys in clear).

    :raises OSError: the file cannot be written.
    """
    atomic_write(path, encode_state(state), mode=0o600)


def load_state(path: str | os.PathLike[str]) -> BadgeState:
    """:return: the state in the file at ``path``.
    :raises JsonFormatError: not a valid state document.
    :raises OSError: the file cannot be read."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_STATE_BYTES + 1)
    return decode_state(data, f"badge state {os.fspath(path)!r}")
