"""``mie desfire``: MIFARE DESFire badges: key diversification, inspection, enrolment.

``diversify`` computes an AN10922 AES-128 key from the command line alone. ``info`` reads what
any reader can (GetVersion, the applications, the originality signature) and, with a badge
configuration whose key provider holds the UID-read key, the real UID behind a random UID.
``enroll`` personalises blank badges (:mod:`mie.desfire.enrol`). A PIN is read from standard
input only, and never printed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mie._cli.lifecycle import REVOCATION_REASONS, TemporaryOptions, temporary_options
from mie._cli.options import Seconds, badge_config_option, load_badge_config, open_store
from mie._cli.output import emit_json, json_option, warn
from mie._cli.state import CliState, UsageError, read_stdin_pin
from mie.core.connection import SmartCardConnection
from mie.core.errors import (
    ApduError,
    BadResponseError,
    ErrorCode,
    MieError,
    SecureMessagingError,
    TransportError,
    TransportTimeoutError,
    UnsupportedCardError,
)

if TYPE_CHECKING:
    from mie.desfire.config import BadgeConfig
    from mie.desfire.enrol import EnrolledBadge, Enroller, EnrolmentRequest
    from mie.desfire.journal import EnrolmentRow, Incomplete, Journal
    from mie.desfire.session import DesfireSession
    from mie.desfire.types import ChipVersion
    from mie.store.base import Store

UID_BYTES = 7
AID_BYTES = 3
KEY_BYTES = 16
MIN_SYSTEM_ID = 6
MAX_SYSTEM_ID = 21
UID_READ_KEY_NO = 1
"""The shared UID-read key of the MIE application (plan §2.3)."""


def parse_hex(value: str, option: str, sizes: range) -> bytes:
    """:return: the bytes an option gives in hex.

    :param value: the option's text.
    :param option: the option's name, for the message.
    :param sizes: the lengths accepted, in bytes.
    :raises UsageError: not hex, or of another length (the value is not shown: it may be a key).
    """
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise UsageError(f"{option} is not hex") from None
    if len(data) not in sizes:
        wanted = str(sizes.start) if len(sizes) == 1 else f"{sizes.start} to {sizes.stop - 1}"
        raise UsageError(f"{option} must be {wanted} bytes, not {len(data)}")
    return data


@click.group("desfire")
def desfire_group() -> None:
    """MIFARE DESFire badges: diversify a key, inspect a badge, enrol badges."""


@desfire_group.command()
@click.option("--master-key", required=True, help="The AES-128 master key, 16 bytes in hex.")
@click.option("--uid", required=True, help="The badge's real UID, 7 bytes in hex.")
@click.option(
    "--aid", required=True, help="The application, 3 bytes in hex, wire order (LSB first)."
)
@click.option(
    "--system-id",
    required=True,
    help=f"The system identifier, {MIN_SYSTEM_ID} to {MAX_SYSTEM_ID} bytes in hex.",
)
@json_option('Print {"key": HEX}.')
def diversify(master_key: str, uid: str, aid: str, system_id: str, as_json: bool) -> int:
    """Print the AN10922 AES-128 key diversified from the master key for UID ‖ AID ‖ SYSTEM-ID,
    in hex."""
    from mie.desfire.crypto import diversify_aes128

    master = parse_hex(master_key, "--master-key", range(KEY_BYTES, KEY_BYTES + 1))
    message = (
        parse_hex(uid, "--uid", range(UID_BYTES, UID_BYTES + 1))
        + parse_hex(aid, "--aid", range(AID_BYTES, AID_BYTES + 1))
        + parse_hex(system_id, "--system-id", range(MIN_SYSTEM_ID, MAX_SYSTEM_ID + 1))
    )
    key = diversify_aes128(master, message).hex()
    if as_json:
        emit_json({"key": key})
    else:
        click.echo(key)
    return 0


@desfire_group.command()
@click.option("--reader", "-r", help="Reader name or a unique part of it, or nfc:PATH (nfcpy).")
@badge_config_option
@json_option("Print the badge's description as JSON.")
@click.pass_obj
def info(state: CliState, reader: str | None, badge_config: str | None, as_json: bool) -> int:
    """Describe the DESFire badge in the reader: product, versions, UID, applications,
    originality; with a badge configuration and its keys, the real UID behind a random UID."""
    config = load_badge_config(badge_config, required=False)
    from mie.desfire.session import DesfireSession

    with state.open_reader(reader) as connection:
        state.kind = "desfire"
        description = describe_badge(DesfireSession(connection), config)
    if as_json:
        emit_json(description)
    else:
        _print_description(description)
    return 0


def _chip(chip: ChipVersion) -> dict[str, int]:
    return asdict(chip)


def describe_badge(session: DesfireSession, config: BadgeConfig | None) -> dict[str, Any]:
    """Read what :command:`mie desfire info` shows (plan §4.4).

    :param session: a session on the badge, at PICC level, not authenticated.
    :param config: the badge configuration, or ``None`` (the default AID, NXP keys only).
    :return: the JSON object.
    :raises UnsupportedCardError: the card does not answer GetVersion as a DESFire badge.
    """
    from mie.desfire.config import DEFAULT_AID
    from mie.desfire.crypto import NXP_ORIGINALITY_KEYS
    from mie.desfire.errors import DesfireStatusError

    try:
        anticollision: bytes | None = session.reader_uid()
    except (BadResponseError, ApduError):
        anticollision = None
    try:
        version = session.get_version()
    except (BadResponseError, ApduError) as e:
        raise UnsupportedCardError(
            f"The card is not a DESFire badge: GetVersion failed ({e})"
        ) from e
    try:
        signature: bytes | None = session.read_signature()
    except (BadResponseError, DesfireStatusError):
        signature = None
    try:
        applications: tuple[bytes, ...] | None = session.get_application_ids()
    except DesfireStatusError:
        applications = None  # the PICC settings ask for an authentication first
    aid = config.aid if config is not None else DEFAULT_AID
    if applications is not None:
        has_application = aid in applications
    else:
        has_application = _selects(session, aid)
    uid = version.uid
    if uid is None and config is not None and config.keys is not None and has_application:
        uid = _real_uid(session, config, version.product)
    originality = None
    if signature is not None:
        keys = config.originality_key_set() if config is not None else NXP_ORIGINALITY_KEYS
        originality = _originality(uid, signature, keys)
    return {
        "product": version.product,
        "hw": _chip(version.hw),
        "sw": _chip(version.sw),
        "storage_bytes": version.storage_bytes,
        "uid": uid.hex() if uid is not None else None,
        "random_uid": version.uid is None,
        "anticollision_uid": anticollision.hex() if anticollision is not None else None,
        "originality": originality,
        "applications": [a.hex() for a in applications] if applications is not None else None,
        "mie_application": has_application,
    }


def _selects(session: DesfireSession, aid: bytes) -> bool:
    from mie.desfire.errors import DesfireStatusError

    try:
        session.select_application(aid)
    except DesfireStatusError:
        return False
    session.select_application(bytes(AID_BYTES))
    return True


def _real_uid(session: DesfireSession, config: BadgeConfig, product: str) -> bytes | None:
    """:return: the real UID, read with the shared UID-read key, or ``None`` (with a warning)
    when the badge refuses that key."""
    from mie.desfire.config import open_keys
    from mie.desfire.errors import DesfireAuthenticationError

    with open_keys(config) as keys:
        key = keys.diversify(config.labels.uid_read, config.uid_read_input())
    session.select_application(config.aid)
    try:
        if product == "EV1":
            session.authenticate_aes(UID_READ_KEY_NO, key)
        else:
            session.authenticate_ev2_first(UID_READ_KEY_NO, key)
    except DesfireAuthenticationError:
        warn("warning: the badge refused the configuration's UID-read key: real UID not read")
        return None
    return session.get_card_uid()


def _originality(uid: bytes | None, signature: bytes, keys: Any) -> dict[str, Any]:
    from mie.desfire.crypto import verify_originality_signature
    from mie.desfire.errors import OriginalitySignatureError

    if uid is None:
        return {"key": None, "verified": False}
    try:
        key = verify_originality_signature(uid, signature, keys)
    except OriginalitySignatureError:
        return {"key": None, "verified": False}
    return {"key": key.name, "verified": True}


def _print_description(description: dict[str, Any]) -> None:
    hw, sw = description["hw"], description["sw"]
    click.echo(f"DESFire {description['product']}")
    click.echo(f"  hardware: {hw['major']}.{hw['minor']}, software: {sw['major']}.{sw['minor']}")
    click.echo(f"  storage: {description['storage_bytes']} bytes")
    uid = description["uid"] or "(not read)"
    click.echo(f"  UID: {uid}{' (random UID on)' if description['random_uid'] else ''}")
    if description["anticollision_uid"] is not None:
        click.echo(f"  anticollision UID: {description['anticollision_uid']}")
    originality = description["originality"]
    if originality is None:
        click.echo("  originality: no signature")
    elif description["uid"] is None:
        # The signature is over the real UID, which a random UID hides: nothing was checked.
        click.echo("  originality: not checked (the real UID was not read)")
    elif originality["verified"]:
        click.echo(f"  originality: verified ({originality['key']})")
    else:
        click.echo("  originality: not verified")
    applications = description["applications"]
    shown = "not listed" if applications is None else " ".join(applications) or "none"
    click.echo(f"  applications: {shown}")
    click.echo(f"  MIE application: {'yes' if description['mie_application'] else 'no'}")


def one_line(text: str) -> str:
    """:return: ``text`` on one line (as the stderr line shows it)."""
    return " ".join(text.split())


# --- enroll ------------------------------------------------------------------------------------

BADGE_WAIT = 60.0
"""Seconds ``enroll --csv`` waits for each badge to be presented, and then removed."""
_ROW_NAME_SIZE = 32
_RETRY_PAUSE = 0.5


class EnrolmentFailedError(MieError):
    """A badge could not be enrolled, or was left half-enrolled: exit 1.

    :param message: one line (the incomplete rows, as the journal describes them).
    :param code: the contract code of the failure.
    """

    code = ErrorCode.CARD_ERROR

    def __init__(self, message: str, code: ErrorCode | None = None) -> None:
        self.code = code or ErrorCode.CARD_ERROR
        super().__init__(message)


def parse_identity_option(value: str) -> str:
    """:return: the national identifier (``id_nat``) that ``--identity`` names: ``rpps=`` and
    the 11 digits of an RPPS number (``8`` + them), or ``psi=`` and a PSI UUID (lower case).

    :raises UsageError: another form, or an identifier a badge record cannot hold.
    """
    from mie.desfire.journal import id_nat_problem

    kind, sep, number = value.partition("=")
    kind = kind.strip().lower()
    if not sep or kind not in ("rpps", "psi"):
        raise UsageError(f"--identity {value!r}: rpps=11 DIGITS or psi=UUID expected")
    id_nat = "8" + number if kind == "rpps" else number.lower()
    if id_nat_problem(id_nat) is not None:
        # The help's own terms: the 11 digits of the RPPS number (mie adds the 8), or a UUID.
        if kind == "rpps":
            raise UsageError(
                f"--identity {value!r}: rpps=11 DIGITS expected (an RPPS number, its last digit"
                " the Luhn check digit)"
            )
        raise UsageError(f"--identity {value!r}: psi=UUID expected (a PSI identifier)")
    return id_nat


def parse_issued(value: str | None) -> dt.date | None:
    """:return: the ``--issued`` date, or ``None`` (the enroller takes today's).

    :raises UsageError: not ``YYYY-MM-DD``.
    """
    if value is None:
        return None
    try:
        if len(value) != len("YYYY-MM-DD"):
            raise ValueError(value)
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--issued {value!r} is not a date YYYY-MM-DD") from None


def _read_pin() -> str:
    from mie.store.secondfactor import SECOND_FACTOR_PIN

    pin = read_stdin_pin()
    if not pin:
        raise UsageError("--pin-stdin: no PIN on standard input")
    SECOND_FACTOR_PIN.check(pin)  # PinFormatError (exit 2); its message never shows the PIN
    return pin


@desfire_group.command()
@click.option("--uid", required=True, help="The badge's UID, 7 bytes in hex.")
@click.option(
    "--reason", required=True, type=click.Choice(REVOCATION_REASONS), help="Why it is revoked."
)
@click.option("--note", help="A short note (at most 200 printable characters).")
@click.option(
    "--store",
    "store_url",
    required=True,
    help="The store every node reads (the service's): sqlite:PATH, sqlite:///PATH or "
    "postgresql://...",
)
@json_option(
    'Print {"mie", "reason", "note", "revoked_at", "by", "node", "already_revoked", "audit"}.'
)
def revoke(uid: str, reason: str, note: str | None, store_url: str, as_json: bool) -> int:
    """Revoke a badge (lost, stolen, damaged, its holder left...): every node refuses it from
    its next verification, before its PIN is asked. Revoking it again changes nothing (the
    first revocation is shown). Audited in the store's chain of node cli:HOSTNAME."""
    from mie._cli.lifecycle import print_revoked
    from mie._cli.lifecycle import revoke as revoke_mie
    from mie.store.base import MieRef

    ref = MieRef.badge(parse_hex(uid, "--uid", range(UID_BYTES, UID_BYTES + 1)))
    store = open_store(store_url)
    if store is None:
        raise UsageError("--store none: a revocation is written to the store every node reads")
    with store:
        done = revoke_mie(store, ref, reason, note)
    print_revoked(done, as_json)
    return 0


@desfire_group.command()
@click.option("--reader", "-r", help="Reader name or a unique part of it, or nfc:PATH (nfcpy).")
@badge_config_option
@click.option("--identity", help="One badge, for this professional: rpps=11 DIGITS or psi=UUID.")
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(dir_okay=False),
    help="One badge per row (UTF-8; header: id_nat and any of row, issuer, pin).",
)
@click.option("--issuer", help="The issuer the records name (default: the configuration's).")
@click.option("--issued", help="The issue date the records carry, YYYY-MM-DD (default: today).")
@click.option(
    "--pin-stdin",
    is_flag=True,
    help="Read the badge's second-factor PIN from the first line of stdin (with --identity).",
)
@click.option(
    "--journal",
    type=click.Path(dir_okay=False),
    help="The enrolment journal (default: CSV.journal.csv for --csv, else "
    "~/.config/mie/enrolment-journal.csv).",
)
@click.option(
    "--reset-incomplete",
    is_flag=True,
    help="Delete the application of a badge left incomplete, then enrol it again.",
)
@click.option(
    "--wait",
    type=Seconds(),
    default=BADGE_WAIT,
    show_default=True,
    help="With --csv: seconds to wait for each badge to be presented, then removed.",
)
@temporary_options
@json_option(
    'Print {"enrolled": [...], "incomplete": [...], "failed": [{row, code, message}], '
    '"error": {code, message} | null} (with --temporary, "temporary": [grant...]).'
)
@click.pass_obj
def enroll(
    state: CliState,
    reader: str | None,
    badge_config: str | None,
    identity: str | None,
    csv_file: str | None,
    issuer: str | None,
    issued: str | None,
    pin_stdin: bool,
    journal: str | None,
    reset_incomplete: bool,
    wait: float,
    temporary: str | None,
    expires: str | None,
    max_level: str | None,
    replaces: str | None,
    replaces_reason: str | None,
    as_json: bool,
) -> int:
    """Personalise blank DESFire badges: the MIE application with diversified AES keys, the
    signed identity record (FULL mode), the second-factor PIN, random UID, a new PICC master
    key. Every step is journaled: a badge left half-enrolled is reported first on the next run,
    which finishes it (or, with --reset-incomplete, enrols it again)."""
    from mie.desfire.journal import EnrolmentRow, Journal, issuer_problem, read_enrolment_csv

    # Everything the command line says is checked before a badge or the journal is touched.
    if (identity is None) == (csv_file is None):
        raise UsageError("Give --identity (one badge) or --csv FILE (one badge per row)")
    if pin_stdin and csv_file is not None:
        raise UsageError("--pin-stdin: with --identity only (--csv takes PINs from its pin column)")
    from mie._cli.lifecycle import parse_temporary

    spare = parse_temporary(temporary, expires, max_level, replaces, replaces_reason, rp_id=None)
    if spare is not None and csv_file is not None:
        raise UsageError("--temporary: with --identity only (one spare badge for one person)")
    day = parse_issued(issued)
    if issuer is not None and (problem := issuer_problem(issuer)) is not None:
        raise UsageError(f"--issuer: the issuer {problem}")
    if identity is not None:
        id_nat = parse_identity_option(identity)
        # A single badge's journal row: its identifier (a PSI UUID without its dashes).
        rows: tuple[EnrolmentRow, ...] = (
            EnrolmentRow(id_nat.replace("-", "")[:_ROW_NAME_SIZE], 0, id_nat),
        )
    else:
        assert csv_file is not None  # noqa: S101 - checked above
        rows = read_enrolment_csv(csv_file)
    # The configuration after the command line's own values: a bad --identity is named as such.
    config = load_badge_config(badge_config, required=True)
    assert config is not None  # noqa: S101 - required=True
    if issuer is None and config.issuer is None and any(r.issuer is None for r in rows):
        raise UsageError("--issuer: none given, and the badge configuration names no issuer")
    pin = _read_pin() if pin_stdin else None
    if (pin is not None or any(r.pin for r in rows)) and config.second_factor is None:
        raise UsageError("A PIN needs a second_factor store in the badge configuration")
    if spare is not None and config.second_factor is None:
        raise UsageError(
            "--temporary: the grant is written to the badge configuration's second_factor "
            "store, and it names none"
        )
    requests = [_request(r, issuer, day, pin) for r in rows]
    grants: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        opened = stack.enter_context(Journal.open(_journal_path(journal, csv_file)))
        enroller = _enroller(config, opened, stack, spare, rows[0].id_nat)
        run = _Enrolment(state, enroller, reader, reset_incomplete, wait)
        try:
            if csv_file is None:
                run.single(rows[0].row, requests[0])
            else:
                run.bulk(rows, requests)
        except EnrolmentFailedError as e:
            run.failed(e)  # no badge presented in time: the run stops, and says what it did
        incomplete = opened.incomplete()
        if spare is not None:
            grants = _granted(enroller, run.enrolled, spare)
    failure = run.failure
    failed = run.failed_rows_line()
    if incomplete or failed:
        # One line: why the run stopped (if it did), the rows not enrolled, the badges left.
        # (A badge failure of a single badge's run, e.g. the badge removed, is named too.)
        parts = [str(run.failure)] if run.failure is not None else []
        parts += [failed] if failed else []
        if incomplete:
            shown = "; ".join(i.describe() for i in incomplete)
            count = f"{len(incomplete)} badge{'s' if len(incomplete) != 1 else ''}"
            parts.append(f"{count} left incomplete (run again to finish): {shown}")
        failure = EnrolmentFailedError("; ".join(parts), run.first_error)
    _report(run, incomplete, as_json, failure, grants if spare is not None else None)
    if failure is not None:
        raise failure
    return 0


def _request(
    row: EnrolmentRow, issuer: str | None, day: dt.date | None, pin: str | None
) -> EnrolmentRequest:
    from mie.desfire.enrol import EnrolmentRequest

    return EnrolmentRequest(row.id_nat, row.issuer or issuer, day, row.pin or pin)


def _journal_path(journal: str | None, csv_file: str | None) -> Path:
    if journal is not None:
        return Path(journal)
    if csv_file is not None:
        return Path(csv_file + ".journal.csv")
    from mie.core.paths import user_dir

    path = user_dir("config", "enrolment-journal.csv")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _granted(
    enroller: Enroller, enrolled: Sequence[EnrolledBadge], spare: TemporaryOptions
) -> list[dict[str, Any]]:
    """Audit the grant of each temporary badge enrolled (and revoke what it replaces).

    :return: each grant's JSON (:func:`mie._cli.lifecycle.granted`).
    """
    from mie._cli.lifecycle import granted
    from mie.store.base import MieRef

    store = enroller.lifecycle
    out = []
    for badge in enrolled:
        held = store.lifecycle(MieRef.badge(badge.uid)) if store is not None else None
        if store is None or held is None or held.temporary is None:
            continue
        out.append(granted(store, held.temporary, spare))
    return out


def _enroller(
    config: BadgeConfig,
    journal: Journal,
    stack: contextlib.ExitStack,
    spare: TemporaryOptions | None = None,
    id_nat: str | None = None,
) -> Enroller:
    """:return: the enroller of ``config``, its key provider and second-factor store closed by
    ``stack``; with ``spare``, its badges are temporary ones of ``id_nat`` (the grant written
    to the second-factor store before any badge write)."""
    from mie.desfire.config import open_keys
    from mie.desfire.enrol import Enroller

    keys = stack.enter_context(open_keys(config))
    second_factor = None
    settings = config.second_factor
    if settings is not None:
        from mie.store.secondfactor import SecondFactor

        store: Store
        if settings.store == "sqlite":
            from mie.store.sqlite import SqliteStore

            store = SqliteStore(settings.location)
        else:
            from mie.store.postgres import PostgresStore

            store = PostgresStore(settings.location)
        stack.callback(store.close)
        second_factor = SecondFactor(store, max_failures=settings.max_failures)
    temporary = None
    if spare is not None and id_nat is not None:
        from mie.store.base import MieRef

        # The template's ref is replaced by each badge's own at its BEGIN.
        temporary = spare.grant(MieRef.badge(bytes(UID_BYTES)), id_nat)
    return Enroller(config, keys, journal=journal, second_factor=second_factor, temporary=temporary)


def _operational() -> tuple[type[MieError], ...]:
    from mie.keys.base import KeyProviderError
    from mie.store.errors import StoreError

    return (KeyProviderError, StoreError)


# A badge that failed on the way (removed, refused a key, a MAC that did not verify): the
# journal shows where it stopped, and the next run finishes it.
_BADGE_FAILURES = (TransportError, ApduError, BadResponseError, SecureMessagingError)


def _refusals() -> tuple[type[MieError], ...]:
    """:return: the errors of a badge that cannot be enrolled as presented (not blank,
    enrolled already, another row's, not an EV2/EV3): nothing was changed on it."""
    from mie.desfire.enrol import (
        BadgeAlreadyEnrolledError,
        BadgeNotBlankError,
        IncompleteBadgeError,
    )

    return (
        BadgeNotBlankError,
        BadgeAlreadyEnrolledError,
        IncompleteBadgeError,
        UnsupportedCardError,
    )


def _refusal_code(error: MieError) -> ErrorCode:
    # The enrolment's refusals are usage errors in the library; here, a badge the run could not
    # take, as a card that is not the one expected.
    code = error.code
    return code if code is not None and code is not ErrorCode.USAGE else ErrorCode.CARD_ERROR


class _Enrolment:
    """One ``enroll`` run: the badges presented, what became of each."""

    def __init__(
        self,
        state: CliState,
        enroller: Enroller,
        reader: str | None,
        reset_incomplete: bool,
        wait: float,
    ) -> None:
        self.state = state
        self.enroller = enroller
        self.reader = reader
        self.reset_incomplete = reset_incomplete
        self.wait = wait
        self.enrolled: list[EnrolledBadge] = []
        self.failure: MieError | None = None
        self.first_error: ErrorCode | None = None
        self.failed_rows: list[tuple[str, MieError]] = []
        """The rows that could not be enrolled as asked, and why (the run went on)."""

    def single(self, row: str, request: EnrolmentRequest) -> None:
        """Enrol the badge in the reader."""
        with self.state.open_reader(self.reader) as connection:
            self.state.kind = "desfire"
            try:
                self._enrol(connection, row, request)
            except _refusals() as e:
                self.failed(EnrolmentFailedError(str(e), _refusal_code(e)))
            except _BADGE_FAILURES as e:
                self.failed(e)
            except _operational() as e:
                # The token or the store failed with the badge in the reader (maybe changed
                # already): the run stops and, as a bulk run, reports what it left (exit 1).
                self.failed(EnrolmentFailedError(str(e), e.code))

    def bulk(self, rows: Sequence[EnrolmentRow], requests: Sequence[EnrolmentRequest]) -> None:
        """Enrol one badge per row, the rows the journal shows incomplete first; each badge is
        waited for, then its removal."""
        journal = self.enroller.journal
        done = journal.completed_rows()
        left = {i.row: i for i in journal.incomplete()}
        order = sorted(range(len(rows)), key=lambda i: rows[i].row not in left)
        todo = []
        for index in order:
            if rows[index].row in done and rows[index].row not in left:
                warn(f"row {rows[index].row}: enrolled by an earlier run, skipped")
            else:
                todo.append(index)
        with click.progressbar(todo, label="Enrolling", file=sys.stderr, show_pos=True) as bar:
            for index in bar:
                row = rows[index].row
                expected = left[row].uid if row in left else None
                self._present(row, requests[index], expected)

    def _present(self, row: str, request: EnrolmentRequest, expected: bytes | None) -> None:
        """Wait for the badge of ``row`` and enrol it; a badge refused is reported and another
        one waited for, until the deadline; a row that cannot be enrolled as asked is noted in
        :attr:`failed_rows` and the run goes on."""
        from mie.desfire.enrol import failed_row

        deadline = time.monotonic() + self.wait
        which = f"its badge {expected.hex()}, to finish it" if expected else "a blank badge"
        refused: tuple[type[MieError], ...] = (*_refusals(), EnrolmentFailedError)
        operational = _operational()
        warn(f"\nrow {row}: present {which}")
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EnrolmentFailedError(
                    f"Row {row}: no badge enrolled within {self.wait:g} s", ErrorCode.NO_CARD
                )
            try:
                connection = self.state.wait_for_badge(self.reader, remaining)
            except TransportTimeoutError:
                raise EnrolmentFailedError(
                    f"Row {row}: no badge enrolled within {self.wait:g} s", ErrorCode.NO_CARD
                ) from None
            with connection:
                self.state.kind = "desfire"
                try:
                    if expected is not None:
                        uid = self.enroller.inspect(connection, [expected]).uid
                        if uid != expected:
                            raise EnrolmentFailedError(
                                f"Badge {uid.hex()} is not row {row}'s ({expected.hex()})"
                            )
                    self._enrol(connection, row, request)
                    return_now = True
                except refused as e:
                    warn(f"row {row}: {e}; present another badge")
                    return_now = False
                    # An NFC front end finds a badge left in the field again at once.
                    time.sleep(min(_RETRY_PAUSE, max(deadline - time.monotonic(), 0)))
                except _BADGE_FAILURES as e:
                    warn(f"row {row}: {e}")
                    self.first_error = self.first_error or e.code
                    return_now = False
                except operational as e:
                    # The token or the store failed: every badge after would fail the same way
                    # (and be left incomplete): the run stops, and says what it did.
                    raise EnrolmentFailedError(f"Row {row}: {e}; the run stops", e.code) from e
                except MieError as e:
                    if failed_row(e) is None:
                        raise  # not about this badge (the journal cannot be written): stop
                    # The row cannot be enrolled as asked (its request, a PIN it needs, a
                    # record or badge the verifier refuses...): reported, the run goes on.
                    warn(f"row {row}: {e}; not enrolled, next row")
                    self.failed_rows.append((row, e))
                    self.first_error = self.first_error or _refusal_code(e)
                    return_now = True
            self.state.wait_for_removal(self.reader, max(deadline - time.monotonic(), 0.1))
            if return_now:
                return

    def _enrol(self, connection: SmartCardConnection, row: str, request: EnrolmentRequest) -> None:
        if self.reset_incomplete:
            row = self._reset(connection, row)
        badge = self.enroller.enrol(connection, request, row=row)
        if badge.resumed_at is not None:
            warn(f"row {row}: badge {badge.uid.hex()} resumed at {badge.resumed_at.value}")
        self.enrolled.append(badge)

    def _reset(self, connection: SmartCardConnection, row: str) -> str:
        """Reset the badge if the journal shows it incomplete. :return: ``row``: a reset
        releases the badge from the row it was left incomplete for (:mod:`mie.desfire.enrol`),
        and it is enrolled for the row asked, with that row's request."""
        status = self.enroller.inspect(connection)
        incomplete = next((i for i in self.enroller.incomplete() if i.uid == status.uid), None)
        if incomplete is None:
            return row
        self.enroller.reset(connection, status.uid)
        warn(f"row {incomplete.row}: badge {status.uid.hex()} reset, enrolled for row {row}")
        return row

    def failed_rows_line(self) -> str:
        """:return: ``"2 rows not enrolled: row 3: ...; row 7: ..."``, or ``""``."""
        if not self.failed_rows:
            return ""
        count = len(self.failed_rows)
        shown = "; ".join(f"row {row}: {error}" for row, error in self.failed_rows)
        return f"{count} row{'s' if count != 1 else ''} not enrolled: {shown}"

    def failed(self, error: MieError) -> None:
        """Note the error that ended the run (the first one's code is the run's)."""
        self.failure = error
        self.first_error = self.first_error or error.code


def _report(
    run: _Enrolment,
    incomplete: Sequence[Incomplete],
    as_json: bool,
    failure: MieError | None,
    grants: Sequence[dict[str, Any]] | None = None,
) -> None:
    """Print what the run did; under ``--json``, with the ``error`` object of the failure that
    ends it with exit 1 (``null`` when it succeeded), as the stderr line says."""
    if as_json:
        error = None
        if failure is not None:
            code = failure.code or ErrorCode.CARD_ERROR
            error = {"code": code.value, "message": one_line(str(failure))}
        emit_json(
            {
                "enrolled": [
                    {
                        "row": b.row,
                        "uid": b.uid.hex(),
                        "resumed_at": b.resumed_at.value if b.resumed_at else None,
                    }
                    for b in run.enrolled
                ],
                "incomplete": [
                    {"row": i.row, "uid": i.uid.hex(), "step": i.step.value} for i in incomplete
                ],
                "failed": [
                    {"row": row, "code": _refusal_code(e).value, "message": one_line(str(e))}
                    for row, e in run.failed_rows
                ],
                "error": error,
                **({"temporary": list(grants)} if grants is not None else {}),
            }
        )
        return
    for badge in run.enrolled:
        click.echo(f"Enrolled: row {badge.row}, badge {badge.uid.hex()}")
    for grant in grants or ():
        click.echo(
            f"Temporary: {grant['mie']} for {grant['id_nat']} ({grant['reason']}) until "
            f"{grant['expires_at']}, level at most {grant['max_level']}"
        )
        if grant["replaced"] is not None:
            click.echo(f"Revoked: {grant['replaced']['mie']} ({grant['replaced']['reason']})")
    for item in incomplete:
        click.echo(f"Incomplete: {item.describe()}")
    for row, e in run.failed_rows:
        click.echo(f"Failed: row {row}: {one_line(str(e))}")
