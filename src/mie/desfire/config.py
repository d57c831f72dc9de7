"""The badge configuration: which application, keys, authorities and checks a MIE badge uses.

One strict JSON file (``--badge-config FILE``, else ``$MIE_BADGE_CONFIG``, else
``~/.config/mie/badge.json``: :func:`default_path`), read by ``mie auth``, ``verify-evidence``,
``mie desfire`` and the IAM. Every member but ``format`` is optional and has the default shown::

    {"format": "mie-badge/1",
     "aid": "494df0",                     3 bytes, wire order (LSB first); not 000000 (the PICC)
     "system_id": "4d49452d485350",       6 to 21 bytes ("MIE-HSP"), ends every AN10922 input
     "keys": null,                        {"provider": "software", "file": "keys.json"} or
                                          {"provider": "pkcs11", "module": "/usr/lib/...so",
                                           "token": "mie", "pin_env": "MIE_HSM_PIN"}
     "labels": {"picc": "mie-picc", "app": "mie-app", "uid_read": "mie-uid",
                "read": "mie-read", "authority": "mie-authority"},
     "authorities": [],                   [{"name": "CH Exemple", "pem": "authority.pem",
                                            "test": false}]: P-256 PUBLIC KEY PEM files
     "issuer": null,                      the records' issuer (UTF-8, 1 to 30 bytes)
     "uid_source": "get-card-uid",        or "anticollision" (static UID only), "div-file"
     "random_uid": true,
     "originality": "required",           or "optional", "off"
     "originality_keys": ["nxp"],         any of "nxp", "mie-test" (the emulator's test key)
     "originality_read": "full",          Read_Sig last, inside the authenticated session, its
                                          answer enciphered and MACed; or "plain": first, before
                                          authenticating, in clear: the signature is static, so
                                          under random UID any reader can track the badge by it
     "second_factor": null,               {"store": "sqlite:///abs/mie.db" | "sqlite:rel.db" |
                                           "postgresql://...", "max_failures": 5}
     "legacy": false,                     accept DES/3DES badges (no level) when true
     "require_ev2": false}                refuse EV1 AES (AuthenticateAES, EV1 secure messaging):
                                          a badge whose version says EV1 or that answers 911C to
                                          EV2First (which a relay can fake for an EV2 badge)

Relative paths resolve against the configuration file's directory. Anything else (an unknown
member, a value of the wrong type, size or choice) raises :class:`BadgeConfigError` naming the
field. Diversification inputs are always ``UID(7) ‖ AID(3) ‖ system identifier``
(:func:`diversification_input`), 16 to 31 bytes, so a PKCS#11 token computes them as software
does (:data:`mie.keys.base.PORTABLE_DIVERSIFICATION_INPUT`).
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mie.core import strictjson
from mie.core.errors import ErrorCode, MieError
from mie.core.files import NotARegularInputError, read_regular_file
from mie.core.paths import user_dir
from mie.desfire.crypto import NXP_ORIGINALITY_KEYS, OriginalityKey
from mie.desfire.errors import DesfireInputError
from mie.desfire.record import AID_SIZE, MAX_ISSUER_BYTES, UID_SIZE, AuthorityKey

if TYPE_CHECKING:
    from mie.keys.base import KeyProvider

CONFIG_FORMAT = "mie-badge/1"
MAX_CONFIG_BYTES = 64 * 1024
"""Largest badge configuration file read."""
MAX_PEM_BYTES = 16 * 1024
"""Largest authority public-key file read."""
CONFIG_ENV = "MIE_BADGE_CONFIG"
DEFAULT_AID = bytes.fromhex("494df0")
DEFAULT_SYSTEM_ID = b"MIE-HSP"
MIN_SYSTEM_ID = 6
MAX_SYSTEM_ID = 21
UID_READ_UID = bytes(UID_SIZE)
"""The UID part of the shared UID-read key's input (the same key for every badge)."""
PICC_AID = bytes(AID_SIZE)
"""The AID part of the PICC master key's input."""
MAX_FAILURES = 1000
ORIGINALITY_KEY_NAMES = frozenset({"nxp", "mie-test"})
_MAX_LABEL = 64
_MAX_NAME = 64
_MAX_PATH = 4096
_MAX_AUTHORITIES = 16
_LABEL = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_HEX = re.compile(r"(?:[0-9a-f]{2})+")
_COUNT = re.compile(r"[1-9][0-9]{0,3}")
_MEMBERS = (
    "format",
    "aid",
    "system_id",
    "keys",
    "labels",
    "authorities",
    "issuer",
    "uid_source",
    "random_uid",
    "originality",
    "originality_keys",
    "originality_read",
    "second_factor",
    "legacy",
    "require_ev2",
)


class BadgeConfigError(MieError, ValueError):
    """A badge configuration that cannot be used: missing, unreadable, or not of the format.

    :param message: one line naming the file and the field.
    :param field: the JSON path of the offending member (``labels.read``), or ``None`` for the
        file as a whole.
    """

    code = ErrorCode.USAGE

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class UidSource(enum.StrEnum):
    """Where the badge's real UID comes from."""

    GET_CARD_UID = "get-card-uid"
    """GetCardUID after authenticating with the shared UID-read key (works with random UID)."""
    ANTICOLLISION = "anticollision"
    """The reader's anticollision UID (static UID badges only)."""
    DIV_FILE = "div-file"
    """File ``02`` read in plain: a static identifier anyone can read, so the badge is
    trackable."""


class Originality(enum.StrEnum):
    """Whether the NXP originality signature is checked."""

    REQUIRED = "required"
    OPTIONAL = "optional"
    OFF = "off"


class OriginalityRead(enum.StrEnum):
    """When and how the originality signature (Read_Sig) is read.

    The signature is static (an ECDSA signature over the real UID): read in clear, it
    identifies the badge whatever its random UID.
    """

    FULL = "full"
    """Last, inside the session that read the record, in CommMode.Full (enciphered and MACed,
    the MAC checked before use; :data:`mie.desfire.constants.COMMAND_MODES` says what this
    rests on): nothing a badge answers before it authenticated is the same twice."""
    PLAIN = "plain"
    """First, at PICC level before any authentication, in clear (proxmark3's way): trackable
    under random UID, for badges that refuse Read_Sig inside a session."""


@dataclass(frozen=True)
class KeyLabels:
    """The labels of the keys in the key provider.

    :param picc: the PICC master key's master.
    :param app: the application master key's (and reserved keys') master.
    :param uid_read: the shared UID-read key's master.
    :param read: the record-read key's master.
    :param authority: the enrolment authority's signing key.
    """

    picc: str = "mie-picc"
    app: str = "mie-app"
    uid_read: str = "mie-uid"
    read: str = "mie-read"
    authority: str = "mie-authority"


@dataclass(frozen=True)
class SoftwareKeys:
    """Keys in a ``mie-keys/1`` file (:class:`mie.keys.SoftwareKeyProvider`).

    :param file: the key file.
    """

    file: Path


@dataclass(frozen=True)
class Pkcs11Keys:
    """Keys in a PKCS#11 token (:class:`mie.keys.pkcs11.Pkcs11KeyProvider`).

    :param module: the PKCS#11 module.
    :param token: the token label.
    :param pin_env: the environment variable that holds the user PIN when the provider opens.
    """

    module: Path
    token: str
    pin_env: str


@dataclass(frozen=True)
class SecondFactorSettings:
    """Where the second-factor state lives and when it locks.

    :param store: ``sqlite`` or ``postgresql``.
    :param location: the SQLite file, or the PostgreSQL connection string (not in the repr: it
        may hold a password).
    :param max_failures: wrong PINs after which the badge is locked.
    """

    store: str
    location: str = field(repr=False)
    max_failures: int = 5


_CHOICES: tuple[tuple[str, type[enum.StrEnum]], ...] = (
    ("uid_source", UidSource),
    ("originality", Originality),
    ("originality_read", OriginalityRead),
)
"""The members that are a choice, and its enum."""


@dataclass(frozen=True)
class BadgeConfig:
    """A badge configuration (see the module docstring for the JSON).

    :param aid: the badge application, 3 bytes in wire order.
    :param system_id: the system identifier that ends every diversification input.
    :param keys: the key provider, or ``None`` (a verifier that only checks records).
    :param labels: the key labels.
    :param authorities: the trusted enrolment authorities.
    :param issuer: the issuer written into records at enrolment.
    :param uid_source: where the real UID comes from.
    :param random_uid: enrolment turns random UID on.
    :param originality: whether the originality signature is checked.
    :param originality_keys: the names of the originality key sets trusted.
    :param originality_read: when and how the signature is read (:class:`OriginalityRead`).
    :param second_factor: the second-factor store, or ``None`` (possession only).
    :param legacy: DES/3DES badges are accepted, with no level.
    :param require_ev2: only EV2 authentication and secure messaging are accepted: an EV1
        badge, or an EV2 one made to look EV1 (a relay answering ``911C`` to EV2First), is
        refused instead of read under EV1 AES.
    :param source: the file it was read from.
    :raises BadgeConfigError: values that do not hold together (see :meth:`from_json`).
    """

    aid: bytes = DEFAULT_AID
    system_id: bytes = DEFAULT_SYSTEM_ID
    keys: SoftwareKeys | Pkcs11Keys | None = None
    labels: KeyLabels = KeyLabels()
    authorities: tuple[AuthorityKey, ...] = ()
    issuer: str | None = None
    uid_source: UidSource = UidSource.GET_CARD_UID
    random_uid: bool = True
    originality: Originality = Originality.REQUIRED
    originality_keys: tuple[str, ...] = ("nxp",)
    originality_read: OriginalityRead = OriginalityRead.FULL
    second_factor: SecondFactorSettings | None = None
    legacy: bool = False
    require_ev2: bool = False
    source: Path | None = None

    def __post_init__(self) -> None:
        where = "" if self.source is None else f" {str(self.source)!r}"
        # The checks compare with ``is``: a str given for a choice (it compares equal) would be
        # none of them, and "required" would read as optional. Made the enum, or refused.
        for name, choice in _CHOICES:
            value = getattr(self, name)
            if isinstance(value, choice):
                continue
            try:
                object.__setattr__(self, name, choice(value))
            except (ValueError, TypeError):
                raise BadgeConfigError(
                    f"Badge configuration{where}: {name} is not one of "
                    + ", ".join(c.value for c in choice),
                    name,
                ) from None
        for name in ("random_uid", "legacy", "require_ev2"):
            # Only a bool: BadgeConfig(legacy="false") is a truthy opt-in to DES/3DES.
            if not isinstance(getattr(self, name), bool):
                raise BadgeConfigError(
                    f"Badge configuration{where}: {name} is not true or false", name
                )
        if len(self.aid) != AID_SIZE or self.aid == PICC_AID:
            raise BadgeConfigError(f"Badge configuration{where}: aid is not an application", "aid")
        if not MIN_SYSTEM_ID <= len(self.system_id) <= MAX_SYSTEM_ID:
            raise BadgeConfigError(
                f"Badge configuration{where}: system_id has {len(self.system_id)} bytes, "
                f"not {MIN_SYSTEM_ID} to {MAX_SYSTEM_ID}",
                "system_id",
            )
        if self.random_uid and self.uid_source is UidSource.ANTICOLLISION:
            raise BadgeConfigError(
                f"Badge configuration{where}: uid_source anticollision needs random_uid false "
                "(a random UID is not the badge's)",
                "uid_source",
            )
        if self.require_ev2 and self.legacy:
            raise BadgeConfigError(
                f"Badge configuration{where}: require_ev2 and legacy cannot both be true "
                "(a legacy DES/3DES session is not EV2)",
                "require_ev2",
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> BadgeConfig:
        """Read a badge configuration file.

        :param path: the file; ``None``: :func:`default_path`.
        :return: the configuration.
        :raises BadgeConfigError: the file does not exist or cannot be read, or is not of the
            format (the error names the field).
        :raises JsonFormatError: the file is not strict JSON (too large, not UTF-8...).
        """
        file = Path(path) if path is not None else default_path()
        name = f"badge configuration {str(file)!r}"
        try:
            data = read_regular_file(file, MAX_CONFIG_BYTES)
        except NotARegularInputError as e:
            raise BadgeConfigError(f"Cannot read {name}: not a regular file") from e
        except FileNotFoundError as e:
            raise BadgeConfigError(f"No badge configuration: {str(file)!r} does not exist") from e
        except OSError as e:
            raise BadgeConfigError(f"Cannot read {name} ({e.strerror})") from e
        obj = strictjson.loads(data, name, max_bytes=MAX_CONFIG_BYTES)
        return cls.from_json(obj, base=file.parent, source=file)

    @classmethod
    def from_json(
        cls, obj: object, *, base: Path | None = None, source: Path | None = None
    ) -> BadgeConfig:
        """Read a configuration from its parsed JSON (numbers as :class:`strictjson.Number`).

        :param obj: the parsed JSON value.
        :param base: the directory relative paths resolve against (``None``: the current one).
        :param source: the file it came from, for messages.
        :return: the configuration; the authority key files are read now.
        :raises BadgeConfigError: not of the format, naming the field.
        """
        reader = _Reader(source, base if base is not None else Path("."))
        return reader.config(obj)

    def originality_key_set(self) -> tuple[OriginalityKey, ...]:
        """:return: the originality public keys :attr:`originality_keys` names: ``nxp`` the NXP
        keys (:data:`mie.desfire.crypto.NXP_ORIGINALITY_KEYS`), ``mie-test`` the emulated
        badges' TEST key (which lets anyone pass as genuine: tests and demonstrations only)."""
        keys: list[OriginalityKey] = []
        for name in self.originality_keys:
            if name == "nxp":
                keys += NXP_ORIGINALITY_KEYS
            else:
                # Loaded only when configured: a production verifier imports no emulator code.
                from mie.emulation.desfire import TEST_ORIGINALITY_KEY

                keys.append(TEST_ORIGINALITY_KEY)
        return tuple(keys)

    def diversification_input(self, uid: bytes) -> bytes:
        """:return: ``uid ‖ aid ‖ system_id``, the input of a per-badge application key.

        :raises DesfireInputError: ``uid`` is not 7 bytes.
        """
        return diversification_input(uid, self.aid, self.system_id)

    def uid_read_input(self) -> bytes:
        """:return: ``00 * 7 ‖ aid ‖ system_id``, the input of the shared UID-read key."""
        return diversification_input(UID_READ_UID, self.aid, self.system_id)

    def picc_input(self, uid: bytes) -> bytes:
        """:return: ``uid ‖ 000000 ‖ system_id``, the input of the PICC master key.

        :raises DesfireInputError: ``uid`` is not 7 bytes.
        """
        return diversification_input(uid, PICC_AID, self.system_id)


def diversification_input(uid: bytes, aid: bytes, system_id: bytes) -> bytes:
    """Build an AN10922 diversification input (plan D11).

    :param uid: the badge's real UID (7 bytes), or :data:`UID_READ_UID`.
    :param aid: the application (3 bytes, wire order), or :data:`PICC_AID`.
    :param system_id: 6 to 21 bytes.
    :return: ``uid ‖ aid ‖ system_id``, 16 to 31 bytes.
    :raises DesfireInputError: a part of the wrong length (named, its value not shown).
    """
    if not isinstance(uid, bytes) or len(uid) != UID_SIZE:
        raise DesfireInputError(f"The UID of a diversification input must be {UID_SIZE} bytes")
    if not isinstance(aid, bytes) or len(aid) != AID_SIZE:
        raise DesfireInputError(f"The AID of a diversification input must be {AID_SIZE} bytes")
    if not isinstance(system_id, bytes) or not MIN_SYSTEM_ID <= len(system_id) <= MAX_SYSTEM_ID:
        raise DesfireInputError(
            f"The system identifier of a diversification input must be {MIN_SYSTEM_ID} to "
            f"{MAX_SYSTEM_ID} bytes"
        )
    return uid + aid + system_id


def default_path() -> Path:
    """:return: ``$MIE_BADGE_CONFIG`` when set, else ``$XDG_CONFIG_HOME/mie/badge.json`` (or
    ``~/.config/mie/badge.json``)."""
    return user_dir("config", "badge.json", env=CONFIG_ENV)


def open_keys(config: BadgeConfig) -> KeyProvider:
    """Open the key provider a configuration names.

    :param config: the configuration.
    :return: the provider (close it when done).
    :raises BadgeConfigError: the configuration names no provider, or the PIN variable of a
        PKCS#11 token is not set.
    :raises KeyProviderError: the provider cannot be opened (an unreadable key file, a token
        missing or refusing the PIN).
    """
    keys = config.keys
    if keys is None:
        raise BadgeConfigError("The badge configuration names no key provider (keys)", "keys")
    if isinstance(keys, SoftwareKeys):
        from mie.keys.software import SoftwareKeyProvider

        return SoftwareKeyProvider.from_file(keys.file)
    pin = os.environ.get(keys.pin_env)
    if not pin:
        raise BadgeConfigError(
            f"The token PIN variable {keys.pin_env} of keys.pin_env is not set", "keys.pin_env"
        )
    from mie.keys.pkcs11 import Pkcs11KeyProvider

    return Pkcs11KeyProvider(keys.module, keys.token, lambda: pin)


class _Reader:
    """Reads the JSON of a configuration, each failure naming the field."""

    def __init__(self, source: Path | None, base: Path) -> None:
        self.source = source
        self.where = "" if source is None else f" {str(source)!r}"
        self.base = base

    def fail(self, problem: str, field: str) -> BadgeConfigError:
        """:return: the error of ``field``; ``problem`` is a sentence that starts with it."""
        return BadgeConfigError(f"Badge configuration{self.where}: {problem}", field)

    def config(self, obj: object) -> BadgeConfig:
        members = self.members(obj, "the configuration", _MEMBERS, required=("format",))
        if members["format"] != CONFIG_FORMAT:
            raise self.fail(f"The format is not {CONFIG_FORMAT!r}", "format")
        values: dict[str, Any] = {}
        simple: dict[str, Callable[[object, str], Any]] = {
            "aid": lambda v, n: self.hex(v, n, range(AID_SIZE, AID_SIZE + 1)),
            "system_id": lambda v, n: self.hex(v, n, range(MIN_SYSTEM_ID, MAX_SYSTEM_ID + 1)),
            "keys": lambda v, n: None if v is None else self.keys(v, n),
            "labels": self.labels,
            "authorities": self.authorities,
            "issuer": lambda v, n: None if v is None else self.issuer(v, n),
            "uid_source": lambda v, n: self.choice(v, n, UidSource),
            "random_uid": self.flag,
            "originality": lambda v, n: self.choice(v, n, Originality),
            "originality_keys": self.originality_keys,
            "originality_read": lambda v, n: self.choice(v, n, OriginalityRead),
            "second_factor": lambda v, n: None if v is None else self.second_factor(v, n),
            "legacy": self.flag,
            "require_ev2": self.flag,
        }
        for name, read in simple.items():
            if name in members:
                values[name] = read(members[name], name)
        if values.get("aid") == PICC_AID:
            raise self.fail("The aid is 000000, the PICC level, not an application", "aid")
        return BadgeConfig(**values, source=self.source)

    def members(
        self, obj: object, name: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()
    ) -> Mapping[str, Any]:
        top = name == "the configuration"
        if not isinstance(obj, dict):
            if top:
                raise BadgeConfigError(f"Badge configuration{self.where} is not a JSON object")
            raise self.fail(f"{name} is not a JSON object", name)
        for key in required:
            if key not in obj:
                field = key if top else f"{name}.{key}"
                raise self.fail(f"{field} is missing", field)
        for key in obj:
            if key not in allowed:
                shown = strictjson.shown(key)
                field = shown if top else f"{name}.{shown}"
                raise self.fail(f"{field} is not a member of the format", field)
        return obj

    def string(self, value: object, name: str, maximum: int = _MAX_NAME) -> str:
        if not isinstance(value, str) or not 0 < len(value) <= maximum:
            raise self.fail(f"{name} is not a string of 1 to {maximum} characters", name)
        if any(not c.isprintable() for c in value):
            raise self.fail(f"{name} has a control character", name)
        return value

    def hex(self, value: object, name: str, sizes: range) -> bytes:
        if not isinstance(value, str) or len(value) > 2 * sizes.stop or not _HEX.fullmatch(value):
            raise self.fail(f"{name} is not lower-case hex", name)
        data = bytes.fromhex(value)
        if len(data) not in sizes:
            wanted = f"{sizes.start}" if len(sizes) == 1 else f"{sizes.start} to {sizes.stop - 1}"
            raise self.fail(f"{name} has {len(data)} bytes, not {wanted}", name)
        return data

    def flag(self, value: object, name: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(f"{name} is not true or false", name)
        return value

    def choice(self, value: object, name: str, kind: type[enum.StrEnum]) -> Any:
        choices = ", ".join(m.value for m in kind)
        if not isinstance(value, str) or value not in {m.value for m in kind}:
            raise self.fail(f"{name} is not one of {choices}", name)
        return kind(value)

    def path(self, value: object, name: str) -> Path:
        path = Path(self.string(value, name, _MAX_PATH))
        return path if path.is_absolute() else self.base / path

    def label(self, value: object, name: str) -> str:
        if not isinstance(value, str) or not _LABEL.fullmatch(value):
            raise self.fail(
                f"{name} is not a label (1 to {_MAX_LABEL} of A-Z a-z 0-9 . _ : -)", name
            )
        return value

    def keys(self, value: object, name: str) -> SoftwareKeys | Pkcs11Keys:
        if not isinstance(value, dict):
            raise self.fail(f"{name} is not a JSON object or null", name)
        provider = value.get("provider")
        if provider == "software":
            members = self.members(value, name, ("provider", "file"), ("provider", "file"))
            return SoftwareKeys(self.path(members["file"], f"{name}.file"))
        if provider == "pkcs11":
            allowed = ("provider", "module", "token", "pin_env")
            members = self.members(value, name, allowed, allowed)
            pin_env = members["pin_env"]
            if not isinstance(pin_env, str) or not _ENV_NAME.fullmatch(pin_env):
                raise self.fail(
                    f"{name}.pin_env is not an environment variable name", f"{name}.pin_env"
                )
            return Pkcs11Keys(
                self.path(members["module"], f"{name}.module"),
                self.string(members["token"], f"{name}.token", 32),
                pin_env,
            )
        raise self.fail(f"{name}.provider is not software or pkcs11", f"{name}.provider")

    def labels(self, value: object, name: str) -> KeyLabels:
        allowed = ("picc", "app", "uid_read", "read", "authority")
        members = self.members(value, name, allowed)
        return KeyLabels(**{k: self.label(v, f"{name}.{k}") for k, v in members.items()})

    def authorities(self, value: object, name: str) -> tuple[AuthorityKey, ...]:
        if not isinstance(value, list) or len(value) > _MAX_AUTHORITIES:
            raise self.fail(f"{name} is not a list of at most {_MAX_AUTHORITIES} authorities", name)
        found: list[AuthorityKey] = []
        for index, item in enumerate(value):
            where = f"{name}[{index}]"
            members = self.members(item, where, ("name", "pem", "test"), ("name", "pem"))
            authority = AuthorityKey.of(
                self.public_key(members["pem"], f"{where}.pem"),
                self.string(members["name"], f"{where}.name"),
                test=self.flag(members.get("test", False), f"{where}.test"),
            )
            if any(a.key_id == authority.key_id for a in found):
                raise self.fail(f"{where} has the same key as an earlier authority", where)
            found.append(authority)
        return tuple(found)

    def public_key(self, value: object, name: str) -> ec.EllipticCurvePublicKey:
        path = self.path(value, name)
        try:
            data = read_regular_file(path, MAX_PEM_BYTES)
        except NotARegularInputError as e:
            raise self.fail(f"{name} is not a regular file", name) from e
        except OSError as e:
            raise self.fail(f"{name} cannot be read ({e.strerror})", name) from e
        if len(data) > MAX_PEM_BYTES:
            raise self.fail(f"{name} is larger than {MAX_PEM_BYTES} bytes", name)
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as e:
            raise self.fail(f"{name} is not a PEM public key", name) from e
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise self.fail(f"{name} is not a P-256 public key", name)
        return key

    def issuer(self, value: object, name: str) -> str:
        text = self.string(value, name, MAX_ISSUER_BYTES)
        if len(text.encode("utf-8", errors="replace")) > MAX_ISSUER_BYTES:
            raise self.fail(f"{name} has over {MAX_ISSUER_BYTES} bytes of UTF-8", name)
        return text

    def originality_keys(self, value: object, name: str) -> tuple[str, ...]:
        known = ", ".join(sorted(ORIGINALITY_KEY_NAMES))
        if not isinstance(value, list) or not value:
            raise self.fail(f"{name} is not a non-empty list of {known}", name)
        for item in value:
            if not isinstance(item, str) or item not in ORIGINALITY_KEY_NAMES:
                raise self.fail(f"{name} holds something else than {known}", name)
        if len(set(value)) != len(value):
            raise self.fail(f"{name} names a key set twice", name)
        return tuple(value)

    def second_factor(self, value: object, name: str) -> SecondFactorSettings:
        members = self.members(value, name, ("store", "max_failures"), ("store",))
        store, location = self.store(members["store"], f"{name}.store")
        max_failures = 5
        if "max_failures" in members:
            max_failures = self.count(members["max_failures"], f"{name}.max_failures")
        return SecondFactorSettings(store, location, max_failures)

    def store(self, value: object, name: str) -> tuple[str, str]:
        if not isinstance(value, str) or not 0 < len(value) <= _MAX_PATH:
            raise self.fail(f"{name} is not a store URL", name)
        if value.startswith(("postgresql://", "postgres://")):
            return "postgresql", value
        if value.startswith("sqlite://"):
            rest = value.removeprefix("sqlite://")
            if not rest.startswith("/"):
                raise self.fail(
                    f"{name} is sqlite:// without an absolute path (sqlite:///...)", name
                )
            return "sqlite", str(self.path(rest, name))
        if value.startswith("sqlite:"):
            return "sqlite", str(self.path(value.removeprefix("sqlite:"), name))
        raise self.fail(f"{name} is not a sqlite: or postgresql:// URL", name)

    def count(self, value: object, name: str) -> int:
        text = value.text if isinstance(value, strictjson.Number) else None
        if text is None or not _COUNT.fullmatch(text) or int(text) > MAX_FAILURES:
            raise self.fail(f"{name} is not a whole number from 1 to {MAX_FAILURES}", name)
        return int(text)


__all__ = [
    "CONFIG_FORMAT",
    "DEFAULT_AID",
    "DEFAULT_SYSTEM_ID",
    "AuthorityKey",
    "BadgeConfig",
    "BadgeConfigError",
    "KeyLabels",
    "Originality",
    "OriginalityRead",
    "Pkcs11Keys",
    "SecondFactorSettings",
    "SoftwareKeys",
    "UidSource",
    "default_path",
    "diversification_input",
    "open_keys",
]
