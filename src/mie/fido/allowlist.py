"""The AAGUID allowlist: the FIDO2 key models an operator accepts, read strictly.

One JSON file (``mie-fido-aaguids/1``) that operators keep from the ANS list of keys compatible
with Pro Santé Connect (no public list exists, and third-party ones disagree: the FIDO metadata
service is the authority on a model, this file is the operator's choice among them)::

    {"format": "mie-fido-aaguids/1",
     "source": "ANS, liste des clés compatibles (2026-11)",      1 to 256 characters
     "updated": "2026-11-30",                                     YYYY-MM-DD
     "keys": [{"aaguid": "6d69652d-5445-5354-2d46-49444f320001",  lower-case UUID, not all zero
               "name": "mie TEST emulated authenticator",         1 to 128 characters
               "roots": ["fido-attestation-root.pem"],            optional: PEM/DER files
               "min_certification": "L2",                         optional: L1 ... L3plus
               "test": true}]}                                    required: a TEST model

Relative paths resolve against the file's directory. An unknown member, a value of the wrong
type, size or choice, a duplicate AAGUID, more than :data:`MAX_KEYS` keys or a file larger than
:data:`MAX_ALLOWLIST_BYTES` raise :class:`~mie.fido.errors.FidoPolicyError` naming the field.
An entry's ``roots`` are the attestation roots trusted for that model only (plan D6): a vendor
root never vouches for another vendor's AAGUID.

The helpers :func:`read_file` and :class:`FieldReader` are shared with :mod:`mie.fido.policy`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from mie.core import strictjson
from mie.core.errors import JsonFormatError, MieError
from mie.core.files import NotARegularInputError, read_regular_file
from mie.fido.errors import FidoPolicyError

ALLOWLIST_FORMAT = "mie-fido-aaguids/1"
MAX_ALLOWLIST_BYTES = 1024 * 1024
"""Largest allowlist file read."""
MAX_KEYS = 4096
"""Most models in one allowlist."""
MAX_ROOTS = 8
"""Most root files per model."""
MAX_NAME = 128
MAX_SOURCE = 256
MAX_PATH = 4096
CERTIFICATION_LEVELS = ("L1", "L1plus", "L2", "L2plus", "L3", "L3plus")
"""FIDO authenticator certification levels, lowest first (FIDO_CERTIFIED_Lx in the metadata)."""
ZERO_AAGUID = bytes(16)

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TEST_WORD = re.compile(r"\bTEST\b")
_ALLOWLIST_MEMBERS = ("format", "source", "updated", "keys")
_KEY_MEMBERS = ("aaguid", "name", "roots", "min_certification", "test")


def aaguid_text(aaguid: bytes) -> str:
    """:return: ``aaguid`` (16 bytes) as a lower-case UUID string."""
    return str(uuid.UUID(bytes=aaguid))


def certification_rank(level: str) -> int:
    """:return: the position of ``level`` in :data:`CERTIFICATION_LEVELS` (L1 = 0).

    :raises ValueError: not a level.
    """
    return CERTIFICATION_LEVELS.index(level)


def is_test_root(certificate: x509.Certificate) -> bool:
    """Whether an attestation root is a TEST one: ``TEST`` as a word in its organisation or
    common name (``O=mie TEST``), or an IGC-Santé TEST name. A wrong "yes" only marks the
    credentials under it TEST (never trusted as real), so the rule errs that way.

    :return: whether credentials attested under it are TEST keys.
    """
    from mie.trust.identity import is_test_name

    subject = certificate.subject
    names = [
        str(a.value)
        for oid in (NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME)
        for a in subject.get_attributes_for_oid(oid)
    ]
    return is_test_name(subject) or any(_TEST_WORD.search(n) for n in names)


def read_file(path: Path, limit: int, what: str) -> bytes:
    """Read a small input file: opened non-blocking (a FIFO never stalls), a regular file only,
    at most ``limit`` bytes.

    :param path: the file.
    :param limit: the largest size accepted.
    :param what: what messages call it (``FIDO policy``).
    :raises FidoPolicyError: missing, unreadable, not a regular file, or too large.
    """
    name = f"{what} {str(path)!r}"
    try:
        data = read_regular_file(path, limit)
    except NotARegularInputError as e:
        raise FidoPolicyError(f"Cannot read {name}: not a regular file") from e
    except FileNotFoundError as e:
        raise FidoPolicyError(f"No {name}: the file does not exist") from e
    except OSError as e:
        raise FidoPolicyError(f"Cannot read {name} ({e.strerror})") from e
    if len(data) > limit:
        raise FidoPolicyError(f"{name[:1].upper()}{name[1:]} is larger than {limit} bytes")
    return data


def read_json(path: Path, limit: int, what: str) -> Any:
    """:return: the strict JSON of ``path`` (numbers as :class:`strictjson.Number`).

    :raises FidoPolicyError: unreadable (see :func:`read_file`) or not strict JSON.
    """
    data = read_file(path, limit, what)
    try:
        return strictjson.loads(data, f"{what} {str(path)!r}", max_bytes=limit)
    except JsonFormatError as e:
        raise FidoPolicyError(str(e)) from e


class FieldReader:
    """Reads the parsed JSON of a FIDO policy or allowlist, each failure naming the field.

    :param title: what messages call the file (``FIDO policy 'p.json'``).
    :param base: the directory relative paths resolve against.
    """

    def __init__(self, title: str, base: Path) -> None:
        self.title = title
        self.base = base

    def fail(self, problem: str) -> FidoPolicyError:
        """:return: the error; ``problem`` names the field first."""
        return FidoPolicyError(f"{self.title}: {problem}")

    def members(
        self, obj: object, name: str, allowed: tuple[str, ...], required: tuple[str, ...]
    ) -> Mapping[str, Any]:
        """:return: ``obj`` once checked to be an object with only ``allowed`` members and
        every ``required`` one."""
        if not isinstance(obj, dict):
            raise self.fail(f"{name} is not a JSON object")
        prefix = "" if name == "the file" else f"{name}."
        for key in obj:
            if key not in allowed:
                raise self.fail(f"{prefix}{strictjson.shown(key)} is not a member of the format")
        for key in required:
            if key not in obj:
                raise self.fail(f"{prefix}{key} is missing")
        return obj

    def text(self, value: object, name: str, maximum: int) -> str:
        """:return: ``value``, a printable string of 1 to ``maximum`` characters."""
        if not isinstance(value, str) or not 0 < len(value) <= maximum:
            raise self.fail(f"{name} is not a string of 1 to {maximum} characters")
        if not value.isprintable():
            raise self.fail(f"{name} has a control character")
        return value

    def flag(self, value: object, name: str) -> bool:
        """:return: ``value``, true or false."""
        if not isinstance(value, bool):
            raise self.fail(f"{name} is not true or false")
        return value

    def choice(self, value: object, name: str, choices: Iterable[str]) -> str:
        """:return: ``value``, one of ``choices``."""
        options = tuple(choices)
        if not isinstance(value, str) or value not in options:
            raise self.fail(f"{name} is not one of {', '.join(options)}")
        return value

    def path(self, value: object, name: str) -> Path:
        """:return: ``value`` as a path, relative ones against :attr:`base`."""
        text = self.text(value, name, MAX_PATH)
        if "\x00" in text:
            raise self.fail(f"{name} is not a file name")
        path = Path(text)
        return path if path.is_absolute() else self.base / path

    def array(self, value: object, name: str, maximum: int) -> list[Any]:
        """:return: ``value``, an array of at most ``maximum`` items."""
        if not isinstance(value, list):
            raise self.fail(f"{name} is not an array")
        if len(value) > maximum:
            raise self.fail(f"{name} has {len(value)} items, more than {maximum}")
        return value

    def certificates(self, value: object, name: str, maximum: int) -> tuple[x509.Certificate, ...]:
        """:return: the certificates of an array of PEM/DER/PKCS#7 file names, strictly parsed."""
        from mie.trust.parse import MAX_CERTIFICATE_FILE_BYTES, load_certificates

        result: list[x509.Certificate] = []
        for position, item in enumerate(self.array(value, name, maximum)):
            where = f"{name}[{position}]"
            path = self.path(item, where)
            data = read_file(path, MAX_CERTIFICATE_FILE_BYTES, f"certificate file of {where}")
            try:
                result += load_certificates(data, str(path))
            except MieError as e:
                raise self.fail(f"{where}: {e}") from e
        return tuple(result)

    def crls(
        self, value: object, name: str, maximum: int
    ) -> tuple[x509.CertificateRevocationList, ...]:
        """:return: the CRLs of an array of PEM/DER CRL file names, strictly parsed."""
        from mie.trust.parse import load_crl, max_crl_bytes

        result = []
        for position, item in enumerate(self.array(value, name, maximum)):
            where = f"{name}[{position}]"
            path = self.path(item, where)
            data = read_file(path, max_crl_bytes(), f"CRL file of {where}")
            try:
                result.append(load_crl(data, str(path)))
            except MieError as e:
                raise self.fail(f"{where}: {e}") from e
        return tuple(result)


@dataclass(frozen=True)
class AllowedKey:
    """One accepted key model.

    :param aaguid: the model's AAGUID (16 bytes, not all zero).
    :param name: what the operator calls it.
    :param roots: attestation roots trusted for this model only (empty: the policy's
        ``attestation_roots``, or the metadata's roots, decide).
    :param min_certification: the lowest FIDO certification level accepted for it (checked
        against the metadata when configured), or ``None``.
    :param test: a TEST model: credentials of it are TEST keys (``test_card``).
    :raises FidoPolicyError: a field of the wrong type or value.
    """

    aaguid: bytes
    name: str
    roots: tuple[x509.Certificate, ...] = ()
    min_certification: str | None = None
    test: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.aaguid, bytes) or len(self.aaguid) != 16:
            raise FidoPolicyError("Allowed key: an AAGUID is 16 bytes")
        if self.aaguid == ZERO_AAGUID:
            raise FidoPolicyError("Allowed key: the all-zero AAGUID names no model")
        if not isinstance(self.name, str) or not 0 < len(self.name) <= MAX_NAME:
            raise FidoPolicyError(
                f"Allowed key: name is not a string of 1 to {MAX_NAME} characters"
            )
        roots = tuple(self.roots) if isinstance(self.roots, list | tuple) else None
        if roots is None or not all(isinstance(r, x509.Certificate) for r in roots):
            raise FidoPolicyError("Allowed key: roots are not a sequence of certificates")
        object.__setattr__(self, "roots", roots)
        if (
            self.min_certification is not None
            and self.min_certification not in CERTIFICATION_LEVELS
        ):
            raise FidoPolicyError(
                "Allowed key: min_certification is not one of " + ", ".join(CERTIFICATION_LEVELS)
            )
        if not isinstance(self.test, bool):
            raise FidoPolicyError("Allowed key: test is not true or false")

    @property
    def uuid(self) -> str:
        """:return: the AAGUID as a lower-case UUID string."""
        return aaguid_text(self.aaguid)


@dataclass(frozen=True)
class AaguidAllowlist:
    """The key models accepted; build it with :meth:`load` or directly.

    :param keys: the models (no AAGUID twice, at most :data:`MAX_KEYS`).
    :param source: where the list comes from.
    :param updated: when it was last updated.
    :param path: the file it was read from.
    :raises FidoPolicyError: a duplicate AAGUID, too many keys, or an entry that is not an
        :class:`AllowedKey`.
    """

    keys: tuple[AllowedKey, ...]
    source: str | None = None
    updated: dt.date | None = None
    path: Path | None = None
    _index: Mapping[bytes, AllowedKey] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = tuple(self.keys) if isinstance(self.keys, list | tuple) else None
        if keys is None or not all(isinstance(k, AllowedKey) for k in keys):
            raise FidoPolicyError("AAGUID allowlist: keys are not a sequence of AllowedKey")
        if len(keys) > MAX_KEYS:
            raise FidoPolicyError(f"AAGUID allowlist: {len(keys)} keys, more than {MAX_KEYS}")
        index: dict[bytes, AllowedKey] = {}
        for key in keys:
            if key.aaguid in index:
                raise FidoPolicyError(f"AAGUID allowlist: AAGUID {key.uuid} is listed twice")
            index[key.aaguid] = key
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.keys)

    def entry(self, aaguid: bytes) -> AllowedKey | None:
        """:return: the entry of ``aaguid``, or ``None`` when the model is not listed."""
        return self._index.get(aaguid)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AaguidAllowlist:
        """Read an allowlist file (root files resolve against its directory).

        :raises FidoPolicyError: unreadable, not strict JSON, or not of the format.
        """
        file = Path(path)
        obj = read_json(file, MAX_ALLOWLIST_BYTES, "AAGUID allowlist")
        return cls.from_json(obj, base=file.parent, path=file)

    @classmethod
    def from_json(cls, obj: object, *, base: Path, path: Path | None = None) -> AaguidAllowlist:
        """Read an allowlist from its parsed JSON (numbers as :class:`strictjson.Number`).

        :param base: the directory relative root files resolve against.
        :param path: the file it came from, for messages.
        :raises FidoPolicyError: not of the format, naming the field.
        """
        title = "AAGUID allowlist" + ("" if path is None else f" {str(path)!r}")
        reader = FieldReader(title, base)
        members = reader.members(obj, "the file", _ALLOWLIST_MEMBERS, _ALLOWLIST_MEMBERS)
        if members["format"] != ALLOWLIST_FORMAT:
            raise reader.fail(f"format is not {ALLOWLIST_FORMAT!r}")
        source = reader.text(members["source"], "source", MAX_SOURCE)
        updated = _date(reader, members["updated"], "updated")
        keys = reader.array(members["keys"], "keys", MAX_KEYS)
        entries: list[AllowedKey] = []
        seen: set[bytes] = set()
        for position, item in enumerate(keys):
            entry = _key(reader, item, f"keys[{position}]")
            if entry.aaguid in seen:
                raise reader.fail(f"keys[{position}].aaguid {entry.uuid} is listed twice")
            seen.add(entry.aaguid)
            entries.append(entry)
        return cls(tuple(entries), source, updated, path)


def _date(reader: FieldReader, value: object, name: str) -> dt.date:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise reader.fail(f"{name} is not a date YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as e:
        raise reader.fail(f"{name} is not a date YYYY-MM-DD") from e


def _key(reader: FieldReader, obj: object, name: str) -> AllowedKey:
    members = reader.members(obj, name, _KEY_MEMBERS, ("aaguid", "name", "test"))
    value = members["aaguid"]
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise reader.fail(f"{name}.aaguid is not a lower-case UUID")
    aaguid = uuid.UUID(value).bytes
    if aaguid == ZERO_AAGUID:
        raise reader.fail(f"{name}.aaguid is all zero: it names no model")
    display = reader.text(members["name"], f"{name}.name", MAX_NAME)
    roots = reader.certificates(members.get("roots", []), f"{name}.roots", MAX_ROOTS)
    level = members.get("min_certification")
    if level is not None:
        level = reader.choice(level, f"{name}.min_certification", CERTIFICATION_LEVELS)
    test = reader.flag(members["test"], f"{name}.test")
    return AllowedKey(aaguid, display, roots, level, test)


__all__ = [
    "ALLOWLIST_FORMAT",
    "CERTIFICATION_LEVELS",
    "MAX_ALLOWLIST_BYTES",
    "MAX_KEYS",
    "AaguidAllowlist",
    "AllowedKey",
    "FieldReader",
    "aaguid_text",
    "certification_rank",
    "is_test_root",
    "read_file",
    "read_json",
]
