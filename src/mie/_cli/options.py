"""Option types and option groups shared by the commands."""

from __future__ import annotations

import datetime as dt
import functools
import math
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from mie._cli.state import UsageError
from mie.request import MAX_NONCE_BYTES, MIN_NONCE_BYTES
from mie.trust import CrlCache, RevocationMode, Verifier
from mie.trust.login import REVOCATION_BUDGET_S, login_verifier

if TYPE_CHECKING:
    from mie.desfire.config import BadgeConfig
    from mie.store.base import Store


class Seconds(click.ParamType):
    """A duration in seconds: a finite number, above zero (or from zero with ``zero_ok``), at
    most ``maximum``. ``nan`` and ``inf`` are refused: every wait has a deadline.

    :param zero_ok: accept ``0`` (do not wait).
    :param maximum: the largest value accepted, if any.
    """

    name = "seconds"

    def __init__(self, *, zero_ok: bool = False, maximum: float | None = None) -> None:
        self.zero_ok = zero_ok
        self.maximum = maximum

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            seconds = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        low = "0 or more" if self.zero_ok else "more than 0"
        high = f" and at most {self.maximum:g}" if self.maximum is not None else ""
        too_low = seconds < 0 if self.zero_ok else seconds <= 0
        too_high = self.maximum is not None and seconds > self.maximum
        if not math.isfinite(seconds) or too_low or too_high:
            self.fail(f"{value!r}: seconds must be finite, {low}{high}", param, ctx)
        return seconds

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "SECONDS"


trust_file_option = click.option("--trust", multiple=True, help="Extra trust anchor file (repeat).")
"""``--trust``: extra trust anchor files."""
crl_file_option = click.option(
    "--crl", multiple=True, help="CRL or delta CRL file, PEM or DER (repeat)."
)
"""``--crl``: CRL or delta CRL files."""
revocation_option = click.option(
    "--revocation",
    type=click.Choice(["hard", "soft"]),
    default="hard",
    show_default=True,
    help="soft: accept an unknown revocation status (reported).",
)
"""``--revocation hard|soft``."""


def parse_at(value: str | None) -> dt.datetime | None:
    """:return: the ``--at`` time (ISO 8601 with a time zone), or ``None``.

    :raises UsageError: not an ISO 8601 date-time, or one without a time zone.
    """
    if value is None:
        return None
    try:
        at = dt.datetime.fromisoformat(value)
    except ValueError as e:
        raise UsageError(f"--at {value!r} is not an ISO 8601 date-time") from e
    if at.tzinfo is None:
        raise UsageError(f"--at {value!r} has no time zone (add Z or +01:00)")
    return at


@dataclass(frozen=True)
class TrustOptions:
    """What ``--trust``, ``--intermediate``, ``--crl``, ``--revocation``, ``--at`` and
    ``--timeout`` say (:func:`with_trust_options`), as given; checked when the verifier is built.

    :param trust: extra trust anchor files.
    :param intermediates: extra intermediate CA files.
    :param crls: CRL or delta CRL files.
    :param revocation: ``hard`` or ``soft``.
    :param at_text: the ``--at`` text, or ``None``.
    :param timeout: seconds the revocation step may take in all.
    """

    trust: tuple[str, ...]
    intermediates: tuple[str, ...]
    crls: tuple[str, ...]
    revocation: str
    at_text: str | None
    timeout: float

    def verifier(self, cache: CrlCache | None = None) -> Verifier:
        """The login verifier of these options (:func:`mie.trust.login.login_verifier`).

        :param cache: the CRL cache (default: the downloading one in the CRL cache directory).
        :return: the verifier.
        :raises UsageError: ``--at`` is not an ISO 8601 time with a time zone.
        :raises VerificationError: ``malformed`` for a file that cannot be read.
        """
        return login_verifier(
            trust=self.trust,
            intermediates=self.intermediates,
            crls=self.crls,
            revocation=RevocationMode(self.revocation),
            at=parse_at(self.at_text),
            cache=cache,
            timeout=self.timeout,
        )


def with_trust_options(timeout_help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the trust options of a command that verifies a login, handed to it as one
    ``trust_options`` argument (:class:`TrustOptions`).

    :param timeout_help: the help of ``--timeout``.
    :return: the decorator.
    """
    options = (
        trust_file_option,
        click.option("--intermediate", multiple=True, help="Extra intermediate CA file (repeat)."),
        crl_file_option,
        revocation_option,
        click.option("--at", "at_text", help="Check the certificate at this ISO 8601 time."),
        click.option(
            "--timeout",
            type=Seconds(),
            default=REVOCATION_BUDGET_S,
            show_default=True,
            help=timeout_help,
        ),
    )

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def collect(
            *args: Any,
            trust: tuple[str, ...],
            intermediate: tuple[str, ...],
            crl: tuple[str, ...],
            revocation: str,
            at_text: str | None,
            timeout: float,
            **kwargs: Any,
        ) -> Any:
            given = TrustOptions(trust, intermediate, crl, revocation, at_text, timeout)
            return command(*args, trust_options=given, **kwargs)

        decorated: Callable[..., Any] = collect
        for option in reversed(options):
            decorated = option(decorated)
        return decorated

    return decorate


def with_evidence_arguments(command: Callable[..., Any]) -> Callable[..., Any]:
    """``FILE``, ``--nonce`` and ``--origin``, all required: the saved evidence and what this
    verifier expects of it (``mie verify-evidence``, ``mie fido verify``)."""
    command = click.option(
        "--origin", required=True, help="This relying party's origin, e.g. https://iam.example."
    )(command)
    command = click.option(
        "--nonce",
        "nonce_hex",
        required=True,
        help=f"The nonce this verifier issued, hex, {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES} bytes.",
    )(command)
    return click.argument("file", type=click.Path(dir_okay=False))(command)


def with_fido_options(subject: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--fido-policy FILE`` and ``--store URL``, both optional: what verifies a FIDO2 key's
    assertion in a command that takes other cards too (``mie auth``, ``mie verify-evidence``).

    :param subject: what their help says they are for (``A FIDO2 key``).
    """

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option(
            "--store",
            "store_url",
            help=f"{subject}: the credential store (sqlite:PATH, sqlite:///PATH, postgresql://...).",
        )(command)
        return click.option(
            "--fido-policy",
            "fido_policy",
            type=click.Path(dir_okay=False),
            help=f"{subject}: the FIDO policy file (mie-fido-policy/1).",
        )(command)

    return decorate


badge_config_option = click.option(
    "--badge-config",
    "badge_config",
    type=click.Path(dir_okay=False),
    help="DESFire badge configuration (default: $MIE_BADGE_CONFIG, else "
    "~/.config/mie/badge.json when it exists).",
)
"""``--badge-config FILE``: the badge configuration (plan D9)."""


def load_badge_config(path: str | None, *, required: bool) -> BadgeConfig | None:
    """Read the badge configuration named by ``--badge-config``, else ``$MIE_BADGE_CONFIG``,
    else the default file (:func:`mie.desfire.config.default_path`).

    :param path: the ``--badge-config`` value, or ``None``.
    :param required: the command needs one: a missing default file is an error too (otherwise
        it means "no badge configuration", and ``None`` is returned).
    :return: the configuration, or ``None``.
    :raises BadgeConfigError: a named file is missing, unreadable or not of the format.
    :raises JsonFormatError: the file is not strict JSON.
    """
    from mie.desfire.config import CONFIG_ENV, default_path

    if path is not None:
        return _load_badge_config(path)
    if os.environ.get(CONFIG_ENV):
        return _load_badge_config(default_path())
    default = default_path()
    if not required and not default.exists():
        return None
    return _load_badge_config(default)


def _load_badge_config(path: str | os.PathLike[str]) -> BadgeConfig:
    """:return: :meth:`BadgeConfig.load` of ``path``, once it is known not to be a FIFO or a
    device (whose opening for reading waits for a writer, for ever).

    :raises BadgeConfigError: ``path`` exists and is not a regular file.
    """
    from mie.desfire.config import BadgeConfig, BadgeConfigError

    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None  # missing or unreadable: BadgeConfig.load says which
    if mode is not None and not stat.S_ISREG(mode):
        raise BadgeConfigError(
            f"Cannot read badge configuration {str(path)!r} (not a regular file)"
        )
    return BadgeConfig.load(path)


STORE_NONE = "none"
"""``--store none``: no credential store (a registration dry run: nothing saved)."""
MAX_STORE_URL = 4096


def parse_store_url(url: str) -> tuple[str, str] | None:
    """Read a ``--store`` URL: ``sqlite:PATH`` (relative to the working directory),
    ``sqlite:///ABSOLUTE``, ``postgresql://…`` or ``postgres://…`` (a libpq URI), or ``none``.

    :return: the backend (``sqlite`` or ``postgresql``) and its path or connection string, or
        ``None`` for ``none``.
    :raises UsageError: any other form.
    """
    if url == STORE_NONE:
        return None
    if not 0 < len(url) <= MAX_STORE_URL:
        raise UsageError(f"--store: a store URL has 1 to {MAX_STORE_URL} characters")
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql", url
    if url.startswith("sqlite://"):
        rest = url.removeprefix("sqlite://")
        if not rest.startswith("/"):
            raise UsageError("--store: sqlite:// needs an absolute path (sqlite:///PATH)")
        return "sqlite", rest
    if url.startswith("sqlite:") and url.removeprefix("sqlite:"):
        return "sqlite", url.removeprefix("sqlite:")
    shown = url if len(url) <= 60 else url[:57] + "..."
    raise UsageError(
        f"--store {shown!r}: sqlite:PATH, sqlite:///PATH, postgresql://... or none expected"
    )


def _check_sqlite_path(url: str, path: str, *, must_exist: bool = False) -> None:
    """Refuse a SQLite path that is there and is not a regular file (a directory, a device, a
    FIFO): SQLite would fail on it only after creating its journal beside it (``/dev/zero``
    gains ``/dev/zero-journal``). A link to a regular file is a database like another. A path
    that is not there is refused when its directory is not there either (SQLite's 'unable to
    open database file' names neither), or when ``must_exist`` (a reader: opening it would
    create an empty store).

    :raises UsageError: the path is not a regular file, or cannot be examined.
    """
    shown = url if len(url) <= 60 else url[:57] + "..."
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if must_exist:
            raise UsageError(f"--store {shown!r}: no such file (a SQLite database file)") from None
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise UsageError(f"--store {shown!r}: its directory does not exist") from None
        return
    except OSError as e:
        raise UsageError(f"--store {shown!r}: {e.strerror or e}") from e
    if not stat.S_ISREG(mode):
        raise UsageError(f"--store {shown!r}: not a regular file (a SQLite database file)")


def open_store(url: str, *, must_exist: bool = False) -> Store | None:
    """Open the store a ``--store`` URL names (:func:`parse_store_url`); ``must_exist``: a
    SQLite file that is not there is refused, not created.

    :return: the store (the caller closes it), or ``None`` for ``none``.
    :raises UsageError: a malformed URL, or PostgreSQL without psycopg installed.
    :raises StoreError: the store cannot be opened (a database unreachable, a file not a
        store).
    """
    parsed = parse_store_url(url)
    if parsed is None:
        return None
    backend, where = parsed
    if backend == "sqlite":
        from mie.store.sqlite import SqliteStore

        _check_sqlite_path(url, where, must_exist=must_exist)
        return SqliteStore(where)
    try:
        from mie.store.postgres import PostgresStore
    except ImportError as e:
        raise UsageError(f"--store postgresql needs psycopg: pip install 'mie[store]' ({e})") from e
    return PostgresStore(where)
