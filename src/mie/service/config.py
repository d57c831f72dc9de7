"""The configuration of ``mie serve``: strict JSON ``mie-service/1``, frozen dataclasses.

Every member is checked when the file is read: an unknown member, a value of the wrong type or
out of range is a :class:`ServiceConfigError` (``usage``) naming it, so a mistyped option never
starts a service that silently ignores it. Paths in the file are relative to its directory.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
import stat
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mie.core import strictjson
from mie.core.errors import ErrorCode, MieError
from mie.request import check_origin

FORMAT = "mie-service/1"
MAX_CONFIG_BYTES = 1 << 20
SCOPES = frozenset({"verify", "enrol", "admin"})
NODE_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
CLIENT_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
MIN_LIFETIME = 30
MAX_LIFETIME = 3600
DEFAULT_LIFETIME = 300
DEFAULT_EVIDENCE_BYTES = 65536
DEFAULT_BODY_BYTES = 16384
MAX_BODY_LIMIT = 1 << 20
DEFAULT_CONCURRENCY = 16


class ServiceConfigError(MieError):
    """A service configuration that cannot be used: not strict JSON, an unknown member, a bad
    value, or a combination refused (open mode on a host other than loopback)."""

    code = ErrorCode.USAGE


@dataclass(frozen=True)
class Client:
    """A caller allowed to use the service (an IAM back end).

    :param name: its name (in the audit records and the revocations it makes).
    :param key_sha256: SHA-256 of its API key (the key itself is never configured).
    :param scopes: what it may do, among ``verify``, ``enrol``, ``admin``.
    """

    name: str
    key_sha256: bytes = field(repr=False)
    scopes: frozenset[str]


@dataclass(frozen=True)
class Limits:
    """Body size limits (bytes) and how many verifications run at once."""

    evidence_bytes: int = DEFAULT_EVIDENCE_BYTES
    body_bytes: int = DEFAULT_BODY_BYTES
    concurrency: int = DEFAULT_CONCURRENCY


@dataclass(frozen=True)
class TrustConfig:
    """What :func:`mie.trust.login.login_verifier` gets: anchor, intermediate and CRL files."""

    anchors: tuple[str, ...] = ()
    intermediates: tuple[str, ...] = ()
    crls: tuple[str, ...] = ()
    revocation: str = "hard"
    download: bool = True


@dataclass(frozen=True)
class AuditConfig:
    """Where audit records go: a JSONL file, the store, both or neither."""

    file: str | None = None
    store: bool = True


@dataclass(frozen=True)
class RelayConfig:
    """The badge relay: the URL agents reach this node at, and a session's deadline."""

    public_url: str | None = None
    session_timeout: int = 60


@dataclass(frozen=True)
class TlsConfig:
    """A certificate and key file for HTTPS (``None`` in :class:`ServiceConfig`: plain HTTP
    behind a TLS proxy)."""

    cert: str
    key: str


@dataclass(frozen=True)
class ServiceConfig:
    """The whole configuration (see the module docstring and ``docs/architecture.md``).

    :param origin: the relying party's origin every evidence must be bound to.
    :param node: this node's name (audit chains are per node); ``None``: host name and port.
    :param store: the shared state, ``sqlite:PATH``, ``sqlite:///PATH`` or ``postgresql://``.
    :param clients: the callers; empty: open mode (loopback only).
    """

    origin: str
    node: str | None = None
    store: str | None = None
    store_pool: int = 16
    nonce_lifetime: int = DEFAULT_LIFETIME
    limits: Limits = Limits()
    clients: tuple[Client, ...] = ()
    trust: TrustConfig = TrustConfig()
    badge_config: str | None = None
    fido_policy: str | None = None
    psc_claims: str | None = None
    audit: AuditConfig = AuditConfig()
    relay: RelayConfig = RelayConfig()
    tls: TlsConfig | None = None

    def __post_init__(self) -> None:
        try:
            check_origin(self.origin)
        except (TypeError, ValueError) as e:
            raise ServiceConfigError(f"Origin: {e}") from e
        if self.node is not None and not NODE_PATTERN.fullmatch(self.node):
            raise ServiceConfigError("Node: 1 to 64 characters among A-Z a-z 0-9 . _ : -")
        if not MIN_LIFETIME <= self.nonce_lifetime <= MAX_LIFETIME:
            raise ServiceConfigError(
                f"nonce_lifetime: {self.nonce_lifetime} s, not {MIN_LIFETIME} to {MAX_LIFETIME}"
            )
        if not 1 <= self.store_pool <= 64:
            raise ServiceConfigError("store_pool: 1 to 64 connections")
        names = [c.name for c in self.clients]
        if len(set(names)) != len(names):
            raise ServiceConfigError("Clients: two clients have the same name")
        digests = [c.key_sha256 for c in self.clients]
        if len(set(digests)) != len(digests):
            raise ServiceConfigError("Clients: two clients have the same key")
        if self.trust.revocation not in ("hard", "soft"):
            raise ServiceConfigError("trust.revocation: hard or soft")

    @property
    def open_mode(self) -> bool:
        """:return: whether no client is configured (every caller is ``local``, all scopes)."""
        return not self.clients

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ServiceConfig:
        """Read a ``mie-service/1`` file.

        :raises ServiceConfigError: the file cannot be read, or is not a valid configuration.
        """
        name = f"service configuration {os.fspath(path)!r}"
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            with os.fdopen(fd, "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    raise ServiceConfigError(f"Cannot read {name} (not a regular file)")
                data = handle.read(MAX_CONFIG_BYTES + 1)
        except OSError as e:
            raise ServiceConfigError(f"Cannot read {name} ({e.strerror})") from e
        try:
            obj = strictjson.loads(data, name, max_bytes=MAX_CONFIG_BYTES)
        except MieError as e:
            raise ServiceConfigError(str(e)) from e
        return cls.from_json(obj, base=Path(path).resolve().parent)

    @classmethod
    def from_json(cls, obj: object, *, base: Path | None = None) -> ServiceConfig:
        """Read the parsed JSON of a configuration.

        :param base: the directory relative paths are read from (default: the working one).
        :raises ServiceConfigError: an unknown member, a bad value.
        """
        return _Reader(base or Path.cwd()).config(obj)

    def with_options(self, **options: Any) -> ServiceConfig:
        """:return: this configuration with the given top-level members replaced (the command
        line's flags override the file); ``None`` values are left out.

        :raises ServiceConfigError: an unknown member or a bad value.
        """
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ServiceConfigError(f"Unknown configuration member {unknown[0]!r}")
        given = {k: v for k, v in options.items() if v is not None}
        return dataclasses.replace(self, **given)

    def node_name(self, port: int | None = None) -> str:
        """:return: :attr:`node`, or the host name and ``port`` (cut to 64 characters)."""
        if self.node is not None:
            return self.node
        host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()) or "node"
        return f"{host}:{port}"[-64:] if port is not None else host[:64]

    def check_host(self, host: str) -> None:
        """Refuse open mode (no clients) on a host other than loopback.

        :raises ServiceConfigError: open mode and ``host`` is not a loopback address.
        """
        if self.open_mode and not is_loopback(host):
            raise ServiceConfigError(
                f"No clients configured (open mode) and host {host!r} is not loopback: "
                "configure clients with API keys, or listen on 127.0.0.1"
            )


def is_loopback(host: str) -> bool:
    """:return: whether ``host`` is a loopback IP address, or ``localhost`` when every address
    it resolves to is one (a name mapped elsewhere, or that does not resolve, is not)."""
    if host == "localhost":
        try:
            found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return False
        return bool(found) and all(is_loopback_ip(str(info[4][0])) for info in found)
    return is_loopback_ip(host.strip("[]"))


def is_loopback_ip(text: str) -> bool:
    """:return: whether ``text`` is a loopback IP address (a scope id ignored)."""
    try:
        return ipaddress.ip_address(text.partition("%")[0]).is_loopback
    except ValueError:
        return False


def load_config(path: str | os.PathLike[str]) -> ServiceConfig:
    """:return: :meth:`ServiceConfig.load` of ``path``."""
    return ServiceConfig.load(path)


class _Reader:
    """Reads each member strictly, naming it in every refusal."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def fail(self, where: str, text: str) -> ServiceConfigError:
        return ServiceConfigError(f"{where}: {text}")

    def members(
        self, value: object, where: str, allowed: set[str], required: Set[str] = frozenset()
    ) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, "not an object")
        for key in value:
            if key not in allowed:
                raise ServiceConfigError(
                    f"Unknown configuration member {strictjson.shown(f'{where}.{key}')}"
                )
        for key in sorted(required):
            if key not in value:
                raise self.fail(where, f"{key!r} is required")
        return value

    def integer(self, value: object, where: str, low: int, high: int) -> int:
        text = value.text if isinstance(value, strictjson.Number) else None
        if text is None or not re.fullmatch(r"-?[0-9]{1,10}", text):
            raise self.fail(where, "not an integer")
        number = int(text)
        if not low <= number <= high:
            raise self.fail(where, f"{number} is not {low} to {high}")
        return number

    def string(self, value: object, where: str, *, optional: bool = False) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not 0 < len(value) <= 4096:
            raise self.fail(where, "not a string of 1 to 4096 characters")
        return value

    def path(self, value: object, where: str) -> str | None:
        text = self.string(value, where, optional=True)
        return None if text is None else str(self.base / text)

    def flag(self, value: object, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, "not true or false")
        return value

    def paths(self, value: object, where: str) -> tuple[str, ...]:
        if not isinstance(value, list) or len(value) > 64:
            raise self.fail(where, "not a list of at most 64 file names")
        return tuple(
            str(self.base / str(self.string(v, f"{where}[{i}]"))) for i, v in enumerate(value)
        )

    def store(self, value: object) -> str | None:
        text = self.string(value, "store", optional=True)
        if text is None or text.startswith(("postgresql://", "postgres://")):
            return text
        if text.startswith("sqlite:///"):
            return text
        if text.startswith("sqlite:") and len(text) > len("sqlite:"):
            return "sqlite:///" + str(self.base / text.removeprefix("sqlite:")).lstrip("/")
        raise self.fail("store", "not sqlite:PATH, sqlite:///PATH or postgresql://...")

    def config(self, obj: object) -> ServiceConfig:
        top = self.members(
            obj,
            "configuration",
            {
                "format", "origin", "node", "store", "store_pool", "nonce_lifetime", "limits",
                "clients", "trust", "badge_config", "fido_policy", "psc_claims", "audit",
                "relay", "tls",
            },
            {"format", "origin"},
        )  # fmt: skip
        if top["format"] != FORMAT:
            raise self.fail("format", f"not {FORMAT!r}")
        values: dict[str, Any] = {"origin": self.string(top["origin"], "origin")}
        if "node" in top:
            values["node"] = self.string(top["node"], "node", optional=True)
        if "store" in top:
            values["store"] = self.store(top["store"])
        if "store_pool" in top:
            values["store_pool"] = self.integer(top["store_pool"], "store_pool", 1, 64)
        if "nonce_lifetime" in top:
            values["nonce_lifetime"] = self.integer(
                top["nonce_lifetime"], "nonce_lifetime", MIN_LIFETIME, MAX_LIFETIME
            )
        if "limits" in top:
            values["limits"] = self.limits(top["limits"])
        if "clients" in top:
            values["clients"] = self.clients(top["clients"])
        if "trust" in top:
            values["trust"] = self.trust(top["trust"])
        for name in ("badge_config", "fido_policy", "psc_claims"):
            if name in top:
                values[name] = self.path(top[name], name)
        if "audit" in top:
            audit = self.members(top["audit"], "audit", {"file", "store"})
            values["audit"] = AuditConfig(
                file=self.path(audit.get("file"), "audit.file"),
                store=self.flag(audit.get("store", True), "audit.store"),
            )
        if "relay" in top:
            relay = self.members(top["relay"], "relay", {"public_url", "session_timeout"})
            timeout = relay.get("session_timeout")
            values["relay"] = RelayConfig(
                public_url=self.string(relay.get("public_url"), "relay.public_url", optional=True),
                session_timeout=60
                if timeout is None
                else self.integer(timeout, "relay.session_timeout", 5, 600),
            )
        if top.get("tls") is not None:
            tls = self.members(top["tls"], "tls", {"cert", "key"}, {"cert", "key"})
            values["tls"] = TlsConfig(
                cert=str(self.path(tls["cert"], "tls.cert")),
                key=str(self.path(tls["key"], "tls.key")),
            )
        return ServiceConfig(**values)

    def limits(self, value: object) -> Limits:
        obj = self.members(value, "limits", {"evidence_bytes", "body_bytes", "concurrency"})
        default = Limits()
        return Limits(
            evidence_bytes=self.integer(
                obj.get("evidence_bytes", strictjson.Number(str(default.evidence_bytes))),
                "limits.evidence_bytes",
                1024,
                MAX_BODY_LIMIT,
            ),
            body_bytes=self.integer(
                obj.get("body_bytes", strictjson.Number(str(default.body_bytes))),
                "limits.body_bytes",
                1024,
                MAX_BODY_LIMIT,
            ),
            concurrency=self.integer(
                obj.get("concurrency", strictjson.Number(str(default.concurrency))),
                "limits.concurrency",
                1,
                256,
            ),
        )

    def clients(self, value: object) -> tuple[Client, ...]:
        if not isinstance(value, list) or len(value) > 256:
            raise self.fail("clients", "not a list of at most 256 clients")
        out = []
        for i, item in enumerate(value):
            where = f"clients[{i}]"
            obj = self.members(
                item, where, {"name", "key_sha256", "scopes"}, {"name", "key_sha256", "scopes"}
            )
            name = self.string(obj["name"], f"{where}.name")
            if name is None or not CLIENT_PATTERN.fullmatch(name):
                raise self.fail(f"{where}.name", "1 to 64 characters among A-Z a-z 0-9 . _ -")
            digest = obj["key_sha256"]
            if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
                raise self.fail(f"{where}.key_sha256", "not 64 lower-case hex digits")
            scopes = obj["scopes"]
            if (
                not isinstance(scopes, list)
                or not scopes
                or not all(isinstance(s, str) and s in SCOPES for s in scopes)
            ):
                raise self.fail(f"{where}.scopes", f"not a non-empty list among {sorted(SCOPES)}")
            out.append(Client(name, bytes.fromhex(digest), frozenset(scopes)))
        return tuple(out)

    def trust(self, value: object) -> TrustConfig:
        obj = self.members(
            value, "trust", {"anchors", "intermediates", "crls", "revocation", "download"}
        )
        revocation = obj.get("revocation", "hard")
        if revocation not in ("hard", "soft"):
            raise self.fail("trust.revocation", "hard or soft")
        return TrustConfig(
            anchors=self.paths(obj.get("anchors", []), "trust.anchors"),
            intermediates=self.paths(obj.get("intermediates", []), "trust.intermediates"),
            crls=self.paths(obj.get("crls", []), "trust.crls"),
            revocation=revocation,
            download=self.flag(obj.get("download", True), "trust.download"),
        )


__all__ = [
    "FORMAT",
    "SCOPES",
    "AuditConfig",
    "Client",
    "Limits",
    "RelayConfig",
    "ServiceConfig",
    "ServiceConfigError",
    "TlsConfig",
    "TrustConfig",
    "is_loopback",
    "is_loopback_ip",
    "load_config",
]
