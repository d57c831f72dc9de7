"""Enrolment: personalise a blank DESFire badge as a MIE badge, resumably (issue 9 plan §4).

:class:`Enroller` runs the steps of :class:`~mie.desfire.journal.Step` on a badge, each one
announced in the journal (``intent``, fsynced) before it starts and confirmed (``done``) after::

    BEGIN          the real UID (GetVersion: a blank badge has random UID off); a temporary
                   badge's grant (``Enroller(temporary=)``) written to the lifecycle store,
                   before anything is written to the badge
    PICC_KEY       ISO authentication to the DES default key (mie.hazmat, once), ChangeKey to
                   the diversified AES PICC master key (version 01), EV2 authentication with it
    APPLICATION    CreateApplication: AID from the configuration, key settings 0B, 5 AES keys
    APP_KEYS       keys 1-4 then key 0 (same-key change last) to their diversified values,
                   version 01; EV2 authentication with the new key 0
    RECORD         the 176-byte record file 01 (FULL, read with key 2), the identity record
                   signed by the enrolment authority; div-file mode adds file 02 (plain)
    SECOND_FACTOR  the PIN's Argon2id hash in mie.store, bound to the record (a PIN given only)
    RANDOM_UID     SetConfiguration random UID on (configured only; irreversible, so last)
    VERIFIED       the badge authenticates as ``mie auth`` will: DesfireAuthenticator and
                   mie.verification.login with the badge verifier of this configuration (the
                   session replayed, record signature and binding, originality as configured;
                   no PIN asked), and reads back the record written

The application keys (plan §2.3): key 0 and the reserved keys 3-4 from ``labels.app``, key 1
the shared UID-read key (``labels.uid_read`` with a zero UID), key 2 from ``labels.read``; the
PICC master key from ``labels.picc`` with the AID part ``000000`` (see
:class:`~mie.desfire.config.BadgeConfig`).

**Resume.** Every run starts with :meth:`Enroller.inspect`, which reads what is on the badge (its
real UID, the PICC key's type and version, the application, its key versions, its files, and a
record it can verify) and runs only the steps whose effect is missing, so a run stopped at any
point (a badge pulled out, a crash) is finished by the next one. A key's version tells its value:
``00`` the default (zeros), ``01`` the diversified key. A badge the journal does not know is
enrolled only when blank; a badge the journal left incomplete is finished under its own row, or
reset (:meth:`Enroller.reset`: the application is deleted, the PICC key stays diversified).

**One badge per row.** While a row has a badge left incomplete (not reset), no other badge is
enrolled for it (:class:`IncompleteBadgeError` naming that badge); an incomplete badge is not
finished for a row that another badge was enrolled and verified for since (reset it to enrol it
again). A row whose badge was verified may take a new blank badge (a replacement).

**A PIN asked for stays asked for.** A run given a PIN journals ``second_factor,planned`` before
it changes the badge; a later run without the PIN refuses to finish that badge unless the store
already holds its PIN (:class:`EnrolmentInputError`).

**Errors carry the row.** Every :class:`~mie.core.errors.MieError` that :meth:`Enroller.enrol` or
:meth:`Enroller.reset` raises about a badge (a refusal, a bad request, a badge removed, a card
error) has ``row`` set to the row being enrolled (:func:`failed_row`), so a bulk run can report
it and go on; a :class:`~mie.desfire.journal.JournalError` does not (the run cannot go on).

Nothing here logs, journals or shows a key or a PIN.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mie.core.channel import CommMode
from mie.core.connection import SmartCardConnection
from mie.core.errors import ErrorCode, MieError, UnsupportedCardError
from mie.desfire.config import BadgeConfig, UidSource
from mie.desfire.errors import (
    DesfireAuthenticationError,
    DesfireError,
    DesfireStatusError,
    RecordCopiedError,
    RecordFormatError,
    RecordUntrustedError,
)
from mie.desfire.journal import (
    EntryState,
    Incomplete,
    Journal,
    JournalEntry,
    JournalError,
    Step,
    check_row,
    id_nat_problem,
    issuer_problem,
)
from mie.desfire.record import (
    DIV_FILE_SIZE,
    RECORD_FILE_SIZE,
    AuthorityKey,
    IdentityRecord,
    SignedRecord,
    authority_key_id,
    check_binding,
    div_file,
    verify,
)
from mie.desfire.session import PICC_AID, DesfireSession, Rng
from mie.desfire.types import AccessRights, KeySettings, KeyType
from mie.keys.base import KeyProvider

if TYPE_CHECKING:
    from mie.store.base import Store, TemporaryGrant
    from mie.store.secondfactor import SecondFactor

logger = logging.getLogger(__name__)

APPLICATION_KEYS = 5
APPLICATION_KEY_SETTINGS = 0x0B
"""Master key changeable, free directory listing, create/delete with the master key,
configuration changeable; keys changed with the master key."""
KEY_MASTER = 0
KEY_UID_READ = 1
KEY_READ = 2
PERSONALISED = 0x01
"""The version of every key enrolment sets; ``00`` is a default key."""
DEFAULT_KEY = bytes(16)
RECORD_FILE = 0x01
RECORD_ACCESS = AccessRights(read=KEY_READ, write=KEY_MASTER, read_write=KEY_MASTER, change=0)
DIV_FILE = 0x02
DIV_FILE_ACCESS = AccessRights(read=0xE, write=KEY_MASTER, read_write=KEY_MASTER, change=0)
SUPPORTED_PRODUCTS = frozenset({"EV2", "EV2 XL", "EV3"})
"""Products enrolment personalises: EV2 authentication and GetCardUID are needed."""

Progress = Callable[[Step], None]


# --- errors ----------------------------------------------------------------------------------


class EnrolmentError(DesfireError):
    """Base class of the enrolment's refusals (the badge is left as it was found).

    :param message: one line.
    :param row: the row being enrolled (set by :meth:`Enroller.enrol` when not given).
    """

    code = ErrorCode.USAGE

    def __init__(self, message: str, *, row: str | None = None) -> None:
        self.row = row
        super().__init__(message)


def failed_row(error: BaseException) -> str | None:
    """:return: the row whose enrolment raised ``error`` (see :meth:`Enroller.enrol`), or
    ``None`` for an error that is not about one badge (a journal that cannot be written)."""
    row = getattr(error, "row", None)
    return row if isinstance(row, str) else None


def _tag_row(error: MieError, row: str) -> None:
    if isinstance(error, JournalError) or failed_row(error) is not None:
        return
    error.row = row  # type: ignore[attr-defined]


class EnrolmentInputError(EnrolmentError, ValueError):
    """The request or the configuration cannot be enrolled: a bad national identifier or
    issuer, no issuer at all, a PIN without a second-factor store, no authority key, or a badge
    that carries a valid record of another professional (reset it first). Nothing was sent
    to the badge, or only reads."""


class BadgeNotBlankError(EnrolmentError):
    """The badge is not blank (another PICC key, the MIE application present, random UID on)
    and the journal does not know it: enrolled by another run, another journal or another
    system. Nothing was changed."""

    code = ErrorCode.UNSUPPORTED_CARD


class BadgeAlreadyEnrolledError(EnrolmentError):
    """The journal says this badge was enrolled and verified.

    :param enrolled_row: the row it was enrolled for.
    :param uid: its real UID.
    :param row: the row being enrolled.
    """

    def __init__(
        self, message: str, *, enrolled_row: str, uid: bytes, row: str | None = None
    ) -> None:
        self.enrolled_row = enrolled_row
        self.uid = uid
        super().__init__(message, row=row)


class IncompleteBadgeError(EnrolmentError):
    """The badge is another row's, whose enrolment is incomplete: finish that row (or reset the
    badge) before it takes a new one; or the row being enrolled has another badge left
    incomplete: finish that badge (or reset it) before the row takes another.

    :param incomplete: the journal's account of the incomplete badge.
    :param row: the row being enrolled.
    """

    def __init__(self, message: str, incomplete: Incomplete, *, row: str | None = None) -> None:
        self.incomplete = incomplete
        super().__init__(message, row=row)


# --- requests and results ----------------------------------------------------------------


@dataclass(frozen=True)
class EnrolmentRequest:
    """Who a badge is enrolled for.

    :param id_nat: the national identifier: RPPS ``8`` + 11 digits, or a PSI UUID in lower case.
    :param issuer: the record's issuer; ``None``: the configuration's.
    :param issued: the issue date; ``None``: the enroller's ``today()``.
    :param pin: the second-factor PIN, or ``None`` (possession only); never shown in a repr.
    :raises EnrolmentInputError: a bad ``id_nat`` or ``issuer``.
    """

    id_nat: str
    issuer: str | None = None
    issued: dt.date | None = None
    pin: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        problem = id_nat_problem(self.id_nat) if isinstance(self.id_nat, str) else "not text"
        if problem is not None:
            raise EnrolmentInputError(f"The national identifier to enrol {problem}")
        if self.issuer is not None:
            problem = issuer_problem(self.issuer) if isinstance(self.issuer, str) else "not text"
            if problem is not None:
                raise EnrolmentInputError(f"The issuer {problem}")
        if self.issued is not None and (
            not isinstance(self.issued, dt.date) or isinstance(self.issued, dt.datetime)
        ):
            raise EnrolmentInputError("The issue date is not a date")


@dataclass(frozen=True)
class BadgeStatus:
    """What :meth:`Enroller.inspect` read on a badge.

    :param uid: its real UID.
    :param product: ``EV2``, ``EV3``...
    :param step_done: the last step whose effect is on the badge, every earlier one's too
        (``VERIFIED`` when the journal says so as well).
    :param blank: as NXP ships it: DES PICC key at version 00, no MIE application, random UID
        off.
    :param random_uid: random UID is on.
    :param picc_key: ``"default"`` (DES, version 00), ``"personalised"`` (AES, version 01:
        the enrolment's, not yet proven) or ``"other"``.
    :param application: the MIE application exists.
    :param key_versions: the versions of its keys (empty without the application).
    :param files: its file numbers.
    :param record: the record file, when it holds a record this enrolment's authority signed
        for this badge and application.
    :param journal: the journal's last line about the badge, if any.
    """

    uid: bytes
    product: str
    step_done: Step
    blank: bool
    random_uid: bool
    picc_key: str
    application: bool
    key_versions: tuple[int, ...] = ()
    files: bytes = b""
    record: SignedRecord | None = field(default=None, repr=False)
    journal: JournalEntry | None = None

    def __repr__(self) -> str:
        return (
            f"BadgeStatus(uid={self.uid.hex()}, {self.product}, step_done={self.step_done.value}, "
            f"blank={self.blank}, random_uid={self.random_uid}, picc_key={self.picc_key}, "
            f"application={self.application}, key_versions={list(self.key_versions)}, "
            f"files={self.files.hex()}, record={self.record is not None})"
        )


@dataclass(frozen=True)
class EnrolledBadge:
    """A badge enrolled and verified.

    :param row: its journal row.
    :param uid: its real UID.
    :param record: the record it carries.
    :param resumed_at: the first step this run performed, when an earlier run had started
        the badge (``None``: enrolled from blank by this run).
    :param steps: the steps this run performed, in order.
    """

    row: str
    uid: bytes
    record: SignedRecord = field(repr=False)
    resumed_at: Step | None = None
    steps: tuple[Step, ...] = ()

    @property
    def badge_name(self) -> str:
        """:return: the badge's name in :mod:`mie.store` (``desfire:`` + SHA-256 of the record)."""
        return self.record.badge_name


@dataclass(frozen=True)
class _Keys:
    """The keys of one badge (never in a repr)."""

    picc: bytes = field(repr=False)
    app: bytes = field(repr=False)
    uid_read: bytes = field(repr=False)
    read: bytes = field(repr=False)

    def application(self, key_no: int) -> bytes:
        """:return: the value key ``key_no`` of the application gets."""
        return {KEY_UID_READ: self.uid_read, KEY_READ: self.read}.get(key_no, self.app)


# --- the enroller ----------------------------------------------------------------------------


class Enroller:
    """Enrols badges with one configuration, key provider and journal.

    :param config: the badge configuration (AID, system identifier, labels, issuer, random UID,
        UID source).
    :param keys: the key provider holding the masters and the authority's signing key.
    :param journal: the enrolment journal (open).
    :param second_factor: where PINs are enrolled; needed when a request has a PIN.
    :param today: the issue date of requests without one.
    :param rng: RndA of every authentication (the system's CSPRNG by default).
    :param temporary: enrol temporary badges (a spare for a lost card, an unannounced
        arrival): this grant (from :func:`mie.lifecycle.new_grant`; its ``ref`` is replaced by
        each badge's) is written at ``BEGIN``, before any badge write, so a badge never exists
        as a permanent one by accident (a grant left by a run that failed only caps).
    :param lifecycle: where a revocation is read (a revoked badge is never enrolled) and the
        grant goes; ``None``: the second factor's store.
    :param clock: now, in seconds since the epoch (whether a badge's grant is still valid).
    """

    def __init__(
        self,
        config: BadgeConfig,
        keys: KeyProvider,
        *,
        journal: Journal,
        second_factor: SecondFactor | None = None,
        today: Callable[[], dt.date] = dt.date.today,
        rng: Rng | None = None,
        temporary: TemporaryGrant | None = None,
        lifecycle: Store | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.keys = keys
        self.journal = journal
        self.second_factor = second_factor
        self.temporary = temporary
        self.lifecycle = (
            lifecycle if lifecycle is not None or second_factor is None else second_factor.store
        )
        self._clock = clock
        self._today = today
        self._rng = rng
        self._authority: AuthorityKey | None = None
        for item in journal.incomplete():
            logger.warning("Enrolment journal: %s", item.describe())

    def __repr__(self) -> str:
        return f"Enroller(aid={self.config.aid.hex()}, journal={self.journal!r})"

    # -- what the journal and the badge say ---------------------------------------------------

    def incomplete(self) -> tuple[Incomplete, ...]:
        """:return: the badges the journal shows half-enrolled (ask for these first)."""
        return self.journal.incomplete()

    def authority(self) -> AuthorityKey:
        """:return: the enrolment authority: the trusted authority of the configuration whose
        key is the provider's ``labels.authority`` key.

        :raises EnrolmentInputError: the configuration does not trust that key, so every
            verifier with this configuration would refuse the records it signs.
        :raises KeyProviderError: the provider has no such key.
        """
        if self._authority is None:
            label = self.config.labels.authority
            key_id = authority_key_id(self.keys.public_key(label))
            trusted = [a for a in self.config.authorities if a.key_id == key_id]
            if not trusted:
                raise EnrolmentInputError(
                    f"The authority key {label!r} is not among the badge configuration's "
                    "authorities: verifiers would refuse the records it signs"
                )
            self._authority = trusted[0]
        return self._authority

    def inspect(
        self, connection: SmartCardConnection, candidates: Sequence[bytes] | None = None
    ) -> BadgeStatus:
        """Read what is on a badge (no change is made).

        :param connection: the badge.
        :param candidates: real UIDs to try when random UID hides the badge's and its
            application cannot tell it (default: the journal's incomplete badges).
        :return: the badge's status.
        :raises UnsupportedCardError: not a DESFire EV2/EV3.
        :raises BadgeNotBlankError: random UID on, and neither the UID-read key nor the PICC
            key of a candidate reveals the real UID.
        :raises TransportError: the badge was removed or the reader failed.
        """
        with connection.transaction():
            return self._inspect(DesfireSession(connection, rng=self._rng), candidates)

    def _inspect(self, session: DesfireSession, candidates: Sequence[bytes] | None) -> BadgeStatus:
        # SelectApplication first: it ends any session an earlier exchange left on the badge,
        # under which GetVersion would need a MAC this new session cannot give.
        session.select_application(PICC_AID)
        version = session.get_version()
        if version.product not in SUPPORTED_PRODUCTS:
            raise UnsupportedCardError(
                f"The badge is a DESFire {version.product}: enrolment needs an EV2 or EV3"
            )
        uid = version.uid
        random_uid = uid is None
        if uid is None:
            if candidates is None:
                candidates = [item.uid for item in self.journal.incomplete()]
            uid = self._hidden_uid(session, candidates)
            session.select_application(PICC_AID)
        keys = self._keys(uid)
        picc = session.get_key_settings()
        picc_version = session.get_key_version(KEY_MASTER)
        picc_key = _picc_key_state(picc, picc_version)
        application = self.config.aid in session.get_application_ids()
        key_versions: tuple[int, ...] = ()
        files = b""
        record = None
        if application:
            session.select_application(self.config.aid)
            key_versions = tuple(session.get_key_version(n) for n in range(APPLICATION_KEYS))
            files = session.get_file_ids()
            if RECORD_FILE in files and all(v == PERSONALISED for v in key_versions):
                record = self._read_record(session, uid, keys)
        last = self.journal.last(uid)
        step = _step_done(picc_key, application, key_versions, record, random_uid)
        if step is Step.RANDOM_UID or (step is Step.RECORD and not self.config.random_uid):
            if last is not None and last.step is Step.VERIFIED and last.state is EntryState.DONE:
                step = Step.VERIFIED
        blank = picc_key == "default" and not application and not random_uid
        status = BadgeStatus(
            uid,
            version.product,
            step,
            blank,
            random_uid,
            picc_key,
            application,
            key_versions,
            files,
            record,
            last,
        )
        logger.info("Badge %s inspected: %s done", uid.hex(), step.value)
        return status

    def _hidden_uid(self, session: DesfireSession, candidates: Sequence[bytes]) -> bytes:
        """:return: the real UID behind a random UID: through the application's UID-read key,
        else through the PICC key of a candidate."""
        try:
            session.select_application(self.config.aid)
            session.authenticate_ev2_first(KEY_UID_READ, self._uid_read_key())
            return session.get_card_uid()
        except DesfireStatusError:
            logger.debug("The UID-read key does not open this badge")
        for uid in candidates:
            try:
                session.select_application(PICC_AID)
                session.authenticate_ev2_first(KEY_MASTER, self._picc_key(uid))
                real = session.get_card_uid()
            except DesfireAuthenticationError:
                continue
            if hmac.compare_digest(real, uid):
                return real
        raise BadgeNotBlankError(
            "The badge has random UID on and neither its application nor the PICC key of an "
            "incomplete badge of the journal reveals its UID: it was not enrolled here"
        )

    def _read_record(self, session: DesfireSession, uid: bytes, keys: _Keys) -> SignedRecord | None:
        """:return: the record file, if it holds a record of this authority for this badge;
        ``None`` when it holds anything else (an interrupted write, zeros)."""
        try:
            session.authenticate_ev2_first(KEY_READ, keys.read)
            data = session.read_data(RECORD_FILE, 0, RECORD_FILE_SIZE, mode=CommMode.FULL)
        except DesfireStatusError:
            return None
        finally:
            session.select_application(self.config.aid)
        try:
            signed = IdentityRecord.parse(data)
            verify(signed, [self.authority()])
            check_binding(signed.record, uid=uid, aid=self.config.aid)
        except (RecordFormatError, RecordUntrustedError, RecordCopiedError):
            return None
        return signed

    # -- enrolment ----------------------------------------------------------------------------

    def enrol(
        self,
        connection: SmartCardConnection,
        request: EnrolmentRequest,
        *,
        row: str,
        progress: Progress | None = None,
    ) -> EnrolledBadge:
        """Enrol the badge on ``connection`` for ``request``, or finish its interrupted
        enrolment.

        :param connection: the badge.
        :param request: who it is for.
        :param row: its name in the journal (the CSV row).
        :param progress: called with each step as it starts.
        :return: the enrolled, verified badge.
        :raises EnrolmentInputError: a request this enroller cannot enrol (no issuer, a PIN
            without a second-factor store, the badge carries another professional's record, no PIN
            for a badge the journal shows stopped while its PIN was being enrolled);
            nothing was changed.
        :raises BadgeNotBlankError: the badge is not blank and not in the journal.
        :raises BadgeAlreadyEnrolledError: the journal says it was enrolled and verified.
        :raises IncompleteBadgeError: it is another row's, incomplete.
        :raises UnsupportedCardError: not a DESFire EV2/EV3.
        :raises TransportError: the badge was removed or the reader failed (the journal shows
            the step it stopped in; the next run finishes it).
        :raises DesfireAuthenticationError: a key of the badge is not the one the journal and
            the key versions imply (``key_mismatch``).
        :raises MieError: any of these, and every other error about the badge, has ``row``
            set to ``row`` (:func:`failed_row`); a :class:`JournalError` does not.
        """
        check_row(row)
        try:
            issuer = request.issuer if request.issuer is not None else self.config.issuer
            if issuer is None:
                raise EnrolmentInputError(
                    "No issuer: the request names none and the badge configuration has no issuer"
                )
            if request.pin is not None and self.second_factor is None:
                raise EnrolmentInputError(
                    "A PIN was given but no second-factor store is configured"
                )
            if self.temporary is not None:
                if self.lifecycle is None:
                    raise EnrolmentInputError(
                        "A temporary badge needs a store for its grant: none is configured"
                    )
                if not hmac.compare_digest(self.temporary.id_nat.encode(), request.id_nat.encode()):
                    raise EnrolmentInputError(
                        "The temporary grant is for another professional than the request's"
                    )
            self.authority()
            with connection.transaction():
                return self._enrol(
                    DesfireSession(connection, rng=self._rng), request, row, issuer, progress
                )
        except MieError as e:
            _tag_row(e, row)
            raise

    def _enrol(
        self,
        session: DesfireSession,
        request: EnrolmentRequest,
        row: str,
        issuer: str,
        progress: Progress | None,
    ) -> EnrolledBadge:
        status = self._inspect(session, None)
        uid = status.uid
        self._admit(status, row)
        if status.record is not None and status.record.record.id_nat != request.id_nat:
            raise EnrolmentInputError(
                f"Badge {uid.hex()} carries the record of another professional: reset it first"
            )
        if request.pin is None and self._pin_pending(status):
            raise EnrolmentInputError(
                f"Row {row}: badge {uid.hex()} was started with a second-factor PIN that the "
                "store does not hold: give the PIN to finish it, or reset the badge"
            )
        run = _Run(self, session, status, row, self._keys(uid), progress)
        if status.picc_key == "personalised":
            # The UID, the key versions and the application were read without a key: a badge
            # can copy them from an incomplete one. Before a key or a record is sent to it, or
            # the journal believes what it shows, it proves this badge's PICC key.
            run.prove_picc()
        # Before the first badge write, whether the run starts or resumes.
        self._grant(uid, request)
        if status.journal is None:
            run.mark(Step.BEGIN)
            run.plan_second_factor(request.pin)
            run.finish(Step.BEGIN)
        else:
            if status.journal.state is EntryState.INTENT and _shown(status, status.journal.step):
                # The last run stopped after the step took effect, before its "done" line.
                run.finish(status.journal.step)
            run.plan_second_factor(request.pin)
        run.picc_key()
        run.application()
        run.app_keys()
        record = run.record(request, issuer)
        run.second_factor(record, request.pin)
        run.random_uid()
        run.verified(record)
        logger.info("Badge %s enrolled (row %s)", uid.hex(), row)
        return EnrolledBadge(row, uid, record, run.resumed_at, tuple(run.steps))

    def _grant(self, uid: bytes, request: EnrolmentRequest) -> None:
        """Refuse a revoked ``uid``, then write its temporary grant (nothing when the enroller
        has none, or the store holds this professional's unexpired grant: a resumed run).

        :raises MieRevokedError: the badge is revoked (a revoked badge is never reissued).
        :raises StoreInputError: another unexpired grant exists for it.
        """
        template = self.temporary
        store = self.lifecycle
        if store is None:
            return
        import dataclasses

        from mie.lifecycle import revoked_error
        from mie.store.base import MieRef

        ref = MieRef.badge(uid)
        row = store.lifecycle(ref)
        # Read for a permanent badge too: a revoked badge is never reissued (RS1).
        if row is not None and row.revocation is not None:
            raise revoked_error(row.revocation)
        if template is None:
            return
        held = row.temporary if row is not None else None
        if held is not None and held.id_nat == request.id_nat and self._clock() < held.expires_at:
            return
        store.grant_temporary(dataclasses.replace(template, ref=ref))
        logger.info("Badge %s: temporary grant (%s) written", uid.hex(), template.reason)

    def _admit(self, status: BadgeStatus, row: str) -> None:
        last = status.journal
        uid = status.uid
        if last is None:
            if not status.blank:
                raise BadgeNotBlankError(
                    f"Badge {uid.hex()} is not blank (PICC key {status.picc_key}, MIE "
                    f"application {'present' if status.application else 'absent'}, random UID "
                    f"{'on' if status.random_uid else 'off'}) and this journal does not know it"
                )
        else:
            if last.step is Step.VERIFIED and last.state is EntryState.DONE:
                raise BadgeAlreadyEnrolledError(
                    f"Badge {uid.hex()} was enrolled for row {last.row} and verified",
                    enrolled_row=last.row,
                    uid=uid,
                    row=row,
                )
            if last.row != row and last.state is not EntryState.RESET:
                incomplete = next(i for i in self.journal.incomplete() if i.uid == uid)
                raise IncompleteBadgeError(
                    f"Badge {uid.hex()} is {incomplete.describe()}: finish that row or reset "
                    f"the badge before enrolling row {row}",
                    incomplete,
                    row=row,
                )
        self._admit_row(uid, last, row)

    def _admit_row(self, uid: bytes, last: JournalEntry | None, row: str) -> None:
        """A row has one badge: refuse ``uid`` for ``row`` while the row has another badge
        left incomplete, or when ``uid`` is an incomplete badge of the row and another badge
        was enrolled and verified for the row since."""
        for other in self.journal.badges_of_row(row):
            if other.uid == uid:
                continue
            verified = other.step is Step.VERIFIED and other.state is EntryState.DONE
            if not verified and other.state is not EntryState.RESET:
                incomplete = next(i for i in self.journal.incomplete() if i.uid == other.uid)
                raise IncompleteBadgeError(
                    f"Row {row} has badge {other.uid.hex()} left incomplete at "
                    f"{incomplete.step.value}: present that badge to finish it, or reset it "
                    f"(mie desfire enroll --reset-incomplete with badge {other.uid.hex()} in the "
                    f"reader), before badge {uid.hex()} is enrolled for row {row}",
                    incomplete,
                    row=row,
                )
            if verified and last is not None and last.row == row:
                if last.state is EntryState.RESET:
                    continue
                raise BadgeAlreadyEnrolledError(
                    f"Row {row} has badge {other.uid.hex()} enrolled and verified since badge "
                    f"{uid.hex()} was left incomplete: badge {uid.hex()} is not finished for it "
                    f"too; reset it (mie desfire enroll --reset-incomplete with badge "
                    f"{uid.hex()} in the reader) to enrol it again",
                    enrolled_row=row,
                    uid=other.uid,
                    row=row,
                )

    def _pin_pending(self, status: BadgeStatus) -> bool:
        """:return: whether the journal shows a PIN given for the badge (since its last reset:
        ``second_factor,planned``, or the ``intent`` of a journal written before that line) that
        the second-factor store does not hold for the badge's record."""
        pending = self.journal.second_factor_planned(status.uid)
        if not pending or self.second_factor is None or status.record is None:
            return pending
        from mie.store.errors import NotEnrolledError

        try:
            self.second_factor.store.secret_status(status.record.badge_name)
        except NotEnrolledError:
            return True
        return False

    # -- reset --------------------------------------------------------------------------------

    def reset(self, connection: SmartCardConnection, uid: bytes) -> BadgeStatus:
        """Reset an incomplete badge to just before ``APPLICATION``: delete the MIE application
        (the PICC master key stays diversified; random UID, if on, stays on) and the PIN hash a
        record it carried was bound to. The journal gets a ``reset`` line; the next
        :meth:`enrol` of its row starts again at ``APPLICATION``.

        :param connection: the badge.
        :param uid: the real UID the caller means to reset (the journal's incomplete badge).
        :return: the badge's status after the reset.
        :raises EnrolmentInputError: the badge on ``connection`` is another one, or the journal
            shows it complete or does not know it.
        :raises TransportError: the badge was removed.
        """
        incomplete = next((i for i in self.journal.incomplete() if i.uid == uid), None)
        if incomplete is None:
            raise EnrolmentInputError(
                f"Badge {uid.hex()} is not an incomplete badge of this journal: nothing to reset"
            )
        try:
            with connection.transaction():
                return self._reset(DesfireSession(connection, rng=self._rng), uid, incomplete)
        except MieError as e:
            _tag_row(e, incomplete.row)
            raise

    def _reset(self, session: DesfireSession, uid: bytes, incomplete: Incomplete) -> BadgeStatus:
        status = self._inspect(session, [uid])
        if not hmac.compare_digest(status.uid, uid):
            raise EnrolmentInputError(
                f"The badge presented is {status.uid.hex()}, not {uid.hex()}: nothing was reset"
            )
        keys = self._keys(uid)
        if status.picc_key == "default":
            # Nothing was changed yet: the badge is blank as far as MIE goes.
            self.journal.record(incomplete.row, uid, Step.PICC_KEY, EntryState.RESET)
            return self._inspect(session, [uid])
        if status.record is not None and self.second_factor is not None:
            self._forget_second_factor(status.record)
        if status.application:
            session.select_application(PICC_AID)
            session.authenticate_ev2_first(KEY_MASTER, keys.picc)
            session.delete_application(self.config.aid)
        self.journal.record(incomplete.row, uid, Step.APPLICATION, EntryState.RESET)
        logger.info("Badge %s reset (row %s)", uid.hex(), incomplete.row)
        return self._inspect(session, [uid])

    def _forget_second_factor(self, record: SignedRecord) -> None:
        from mie.store.errors import NotEnrolledError

        assert self.second_factor is not None  # noqa: S101 - checked by the caller
        try:
            self.second_factor.remove(record.badge_name)
        except NotEnrolledError:
            return
        logger.info("Second factor of the reset badge removed")

    # -- keys ---------------------------------------------------------------------------------

    def _picc_key(self, uid: bytes) -> bytes:
        return self.keys.diversify(self.config.labels.picc, self.config.picc_input(uid))

    def _uid_read_key(self) -> bytes:
        return self.keys.diversify(self.config.labels.uid_read, self.config.uid_read_input())

    def _keys(self, uid: bytes) -> _Keys:
        labels = self.config.labels
        badge_input = self.config.diversification_input(uid)
        return _Keys(
            picc=self._picc_key(uid),
            app=self.keys.diversify(labels.app, badge_input),
            uid_read=self._uid_read_key(),
            read=self.keys.diversify(labels.read, badge_input),
        )


class _Run:
    """One enrolment run on one badge: the steps, each skipped when its effect is there."""

    def __init__(
        self,
        enroller: Enroller,
        session: DesfireSession,
        status: BadgeStatus,
        row: str,
        keys: _Keys,
        progress: Progress | None,
    ) -> None:
        self.enroller = enroller
        self.config = enroller.config
        self.journal = enroller.journal
        self.session = session
        self.status = status
        self.row = row
        self.uid = status.uid
        self.keys = keys
        self.progress = progress
        self.steps: list[Step] = []
        self.resumed_at: Step | None = None

    def mark(self, step: Step) -> None:
        if not self.steps and self.status.journal is not None:
            self.resumed_at = step
        self.steps.append(step)
        if self.progress is not None:
            self.progress(step)
        self.journal.record(self.row, self.uid, step, EntryState.INTENT)

    def finish(self, step: Step) -> None:
        self.journal.record(self.row, self.uid, step, EntryState.DONE)

    def plan_second_factor(self, pin: str | None) -> None:
        """Journal that the badge is to have a second factor (a PIN was given; never the PIN),
        before the run changes the badge, unless the journal says so already."""
        if pin is not None and not self.journal.second_factor_planned(self.uid):
            self.journal.record(self.row, self.uid, Step.SECOND_FACTOR, EntryState.PLANNED)

    def _picc_session(self) -> None:
        """Authenticate with the (AES) PICC master key, unless already."""
        auth = self.session.auth
        if auth is not None and auth.aid == PICC_AID and auth.key_no == KEY_MASTER:
            return
        if self.session.aid != PICC_AID:
            self.session.select_application(PICC_AID)
        self.session.authenticate_ev2_first(KEY_MASTER, self.keys.picc)

    def prove_picc(self) -> None:
        """:raises DesfireAuthenticationError: the badge does not hold this badge's PICC key."""
        self._picc_session()

    def picc_key(self) -> None:
        if self.status.picc_key == "personalised":
            return
        if self.status.picc_key == "other":
            # Neither the DES default nor this enrolment's AES key (version 01): someone
            # changed it since the run the journal remembers.
            raise BadgeNotBlankError(
                f"Badge {self.uid.hex()} has a PICC master key that is neither the default nor "
                "this enrolment's"
            )
        from mie.hazmat.desfire_legacy import (
            LEGACY_OPT_IN,
            authenticate_iso,
            change_key_from_legacy,
        )

        self.mark(Step.PICC_KEY)
        session = self.session
        if session.aid != PICC_AID:
            session.select_application(PICC_AID)
        # The one use of DES (plan D7): the blank badge's default PICC key, replaced at once.
        authenticate_iso(session, KEY_MASTER, DEFAULT_KEY, opt_in=LEGACY_OPT_IN)
        change_key_from_legacy(
            session, KEY_MASTER, self.keys.picc, version=PERSONALISED, opt_in=LEGACY_OPT_IN
        )
        session.authenticate_ev2_first(KEY_MASTER, self.keys.picc)
        self.finish(Step.PICC_KEY)

    def application(self) -> None:
        if self.status.application:
            return
        self.mark(Step.APPLICATION)
        self._picc_session()
        self.session.create_application(
            self.config.aid,
            keys=APPLICATION_KEYS,
            key_settings=APPLICATION_KEY_SETTINGS,
            key_type=KeyType.AES,
        )
        self.finish(Step.APPLICATION)

    def app_keys(self) -> None:
        versions = self.status.key_versions or (0,) * APPLICATION_KEYS
        if self.status.application and all(v == PERSONALISED for v in versions):
            return
        self.mark(Step.APP_KEYS)
        session = self.session
        session.select_application(self.config.aid)
        master = self.keys.app if versions[KEY_MASTER] == PERSONALISED else DEFAULT_KEY
        session.authenticate_ev2_first(KEY_MASTER, master)
        for key_no in range(1, APPLICATION_KEYS):
            if versions[key_no] == PERSONALISED:
                continue
            session.change_key(
                key_no,
                self.keys.application(key_no),
                version=PERSONALISED,
                old_key=DEFAULT_KEY,
            )
        if versions[KEY_MASTER] != PERSONALISED:
            # The key authenticated with goes last: changing it ends the session.
            session.change_key(KEY_MASTER, self.keys.app, version=PERSONALISED)
            session.authenticate_ev2_first(KEY_MASTER, self.keys.app)
        self.finish(Step.APP_KEYS)

    def _app_master_session(self) -> None:
        auth = self.session.auth
        if auth is not None and auth.aid == self.config.aid and auth.key_no == KEY_MASTER:
            return
        self.session.select_application(self.config.aid)
        self.session.authenticate_ev2_first(KEY_MASTER, self.keys.app)

    def record(self, request: EnrolmentRequest, issuer: str) -> SignedRecord:
        if self.status.record is not None and self._div_file_done():
            return self.status.record
        self.mark(Step.RECORD)
        self._app_master_session()
        session = self.session
        files = self.status.files if self.status.application else b""
        if self.status.record is not None:
            signed = self.status.record
        else:
            if RECORD_FILE not in files:
                session.create_std_data_file(
                    RECORD_FILE, RECORD_FILE_SIZE, mode=CommMode.FULL, access=RECORD_ACCESS
                )
            signed = self._sign(request, issuer)
            session.write_data(RECORD_FILE, signed.file, mode=CommMode.FULL)
        if self.config.uid_source is UidSource.DIV_FILE:
            if DIV_FILE not in files:
                session.create_std_data_file(
                    DIV_FILE, DIV_FILE_SIZE, mode=CommMode.PLAIN, access=DIV_FILE_ACCESS
                )
            session.write_data(DIV_FILE, div_file(self.uid), mode=CommMode.PLAIN)
        self.finish(Step.RECORD)
        return signed

    def _div_file_done(self) -> bool:
        # A div-file badge's file 02 is written in the same step as the record, after it.
        return self.config.uid_source is not UidSource.DIV_FILE or DIV_FILE in self.status.files

    def _sign(self, request: EnrolmentRequest, issuer: str) -> SignedRecord:
        authority = self.enroller.authority()
        issued = request.issued if request.issued is not None else self.enroller._today()
        record = IdentityRecord(
            uid=self.uid,
            aid=self.config.aid,
            id_nat=request.id_nat,
            issuer=issuer,
            issued=issued,
            authority_key_id=authority_key_id(authority.public_key),
        )
        file = record.sign(self.enroller.keys, self.config.labels.authority)
        return IdentityRecord.parse(file)

    def second_factor(self, record: SignedRecord, pin: str | None) -> None:
        second_factor = self.enroller.second_factor
        if pin is None or second_factor is None:
            return
        from mie.store.errors import NotEnrolledError

        try:
            second_factor.store.secret_status(record.badge_name)
        except NotEnrolledError:
            pass
        else:
            # An earlier run enrolled it for this very record (its name is the record's hash).
            return
        self.mark(Step.SECOND_FACTOR)
        second_factor.enrol(record.badge_name, record.file, pin)
        self.finish(Step.SECOND_FACTOR)

    def random_uid(self) -> None:
        if not self.config.random_uid or self.status.random_uid:
            return
        self.mark(Step.RANDOM_UID)
        self._picc_session()
        self.session.set_configuration(random_uid=True)
        self.finish(Step.RANDOM_UID)

    def verified(self, record: SignedRecord) -> None:
        self.mark(Step.VERIFIED)
        _verify_badge(
            self.session.protocol.connection, self.config, self.enroller.keys, self.uid, record
        )
        self.finish(Step.VERIFIED)


def _verify_badge(
    connection: SmartCardConnection,
    config: BadgeConfig,
    keys: KeyProvider,
    uid: bytes,
    record: SignedRecord,
) -> None:
    """Authenticate the badge as ``mie auth`` will, in a fresh session: the
    :class:`~mie.desfire.authenticator.DesfireAuthenticator` with this configuration, then the
    badge verifier (the session replayed, the record's signature and binding, the originality
    signature as configured). The PIN is not asked.

    :raises EnrolmentError: the badge authenticates but does not read back the record written.
    :raises MieError: what the authentication or the verification raised.
    """
    from mie.desfire.authenticator import DesfireAuthenticator
    from mie.desfire.evidence import DesfireSessionEvidence
    from mie.desfire.verify import BadgeVerifier
    from mie.request import AuthRequest
    from mie.verification import login

    badge = DesfireAuthenticator(connection, config, keys=keys)
    request = AuthRequest.new(user_verification=False)
    result = login(
        badge, request, user=None, verifier=None, badges=BadgeVerifier(config, keys=keys)
    )
    evidence = result.evidence
    if not isinstance(evidence, DesfireSessionEvidence) or not hmac.compare_digest(
        evidence.record, record.file
    ):
        raise EnrolmentError(f"Badge {uid.hex()} does not read back the record written")
    if not hmac.compare_digest(evidence.uid, uid):
        raise EnrolmentError(f"Badge {uid.hex()} authenticates with another UID")
    logger.info("Badge %s authenticated as enrolled", uid.hex())


def _shown(status: BadgeStatus, step: Step) -> bool:
    """:return: whether the badge shows ``step``'s effect (``VERIFIED`` never does)."""
    if step is Step.SECOND_FACTOR:
        return False
    return step is not Step.VERIFIED and status.step_done.index >= step.index


def _picc_key_state(settings: KeySettings, version: int) -> str:
    if settings.key_type is KeyType.DES_2K3DES and version == 0:
        return "default"
    if settings.key_type is KeyType.AES and version == PERSONALISED:
        return "personalised"
    return "other"


def _step_done(
    picc_key: str,
    application: bool,
    key_versions: tuple[int, ...],
    record: SignedRecord | None,
    random_uid: bool,
) -> Step:
    if random_uid and record is not None:
        return Step.RANDOM_UID
    if record is not None:
        return Step.RECORD
    if application and all(v == PERSONALISED for v in key_versions):
        return Step.APP_KEYS
    if application:
        return Step.APPLICATION
    if picc_key == "personalised":
        return Step.PICC_KEY
    return Step.BEGIN


__all__ = [
    "BadgeAlreadyEnrolledError",
    "BadgeNotBlankError",
    "BadgeStatus",
    "EnrolledBadge",
    "Enroller",
    "EnrolmentError",
    "EnrolmentInputError",
    "EnrolmentRequest",
    "IncompleteBadgeError",
    "Step",
    "failed_row",
]
