"""Enrolment of an emulated blank badge (mie.desfire.enrol, plan §4.2-4.3, issue 9 item 7).

Every test personalises an :class:`EmulatedDesfire` that starts as NXP ships it
(:meth:`BadgeState.blank`: DES PICC key of zeros, no application), through the library's own
session, and checks the badge against keys computed here with
:func:`mie.desfire.crypto.diversify_aes128`, not through the provider the enroller used.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mie.core.channel import CommMode
from mie.core.errors import CardRemovedError, ErrorCode, MieError, UnsupportedCardError
from mie.desfire.config import BadgeConfig, UidSource
from mie.desfire.crypto import diversify_aes128
from mie.desfire.enrol import (
    BadgeAlreadyEnrolledError,
    BadgeNotBlankError,
    Enroller,
    EnrolmentInputError,
    EnrolmentRequest,
    IncompleteBadgeError,
    failed_row,
)
from mie.desfire.errors import DesfireAuthenticationError, OriginalitySignatureError
from mie.desfire.journal import EntryState, Journal, JournalError, Step
from mie.desfire.record import AuthorityKey, IdentityRecord, check_binding, verify
from mie.desfire.session import DesfireSession
from mie.emulation.base import EmulatedConnection
from mie.emulation.desfire import EmulatedDesfire
from mie.emulation.desfire_state import BadgeKey, BadgeState, KeyType, personalise
from mie.keys import SoftwareKeyProvider
from mie.store.secondfactor import SecondFactor
from mie.store.sqlite import SqliteStore
from tests.cards.faults import FailingConnection
from tests.store.targets import WEAK

UID = bytes.fromhex("04a1b2c3d4e5f6")
OTHER_UID = bytes.fromhex("04112233445566")
RPPS = "810001234565"
PSI = "0f8fad5b-d9cb-469f-a165-70867728950e"
PIN = "24681357"
TODAY = dt.date(2026, 12, 1)
MASTERS = {
    "mie-picc": bytes.fromhex("00112233445566778899aabbccddeeff"),
    "mie-app": bytes.fromhex("101112131415161718191a1b1c1d1e1f"),
    "mie-uid": bytes.fromhex("202122232425262728292a2b2c2d2e2f"),
    "mie-read": bytes.fromhex("303132333435363738393a3b3c3d3e3f"),
}
AUTHORITY = ec.derive_private_key(0x5EED_0F_E7_201, ec.SECP256R1())
TRUSTED = (AuthorityKey.of(AUTHORITY.public_key(), "CH Exemple", test=True),)
CONFIG = BadgeConfig(issuer="CH Exemple", authorities=TRUSTED, originality_keys=("mie-test",))
# A full enrolment of a blank EV3 with random UID (plan §4.2), command by command (the native
# command code of each APDU; AF = a further frame of the same command).
FULL_ENROLMENT = [
    # inspect: SelectApplication (PICC), GetVersion (3 frames), GetKeySettings,
    # GetKeyVersion 0, GetApplicationIDs
    *["5A", "60", "AF", "AF", "45", "64", "6A"],
    # PICC_KEY: AuthenticateISO (2), ChangeKey, AuthenticateEV2First (2)
    *["1A", "AF", "C4", "71", "AF"],
    # APPLICATION: CreateApplication
    "CA",
    # APP_KEYS: SelectApplication, EV2First (2) with key 0 = zeros, ChangeKey 1-4, then 0, EV2First
    *["5A", "71", "AF", "C4", "C4", "C4", "C4", "C4", "71", "AF"],
    # RECORD: CreateStdDataFile, WriteData (176 bytes FULL: 4 frames)
    *["CD", "3D", "AF", "AF", "AF"],
    # RANDOM_UID: SelectApplication (PICC), EV2First (2), SetConfiguration
    *["5A", "71", "AF", "5C"],
    # VERIFIED (mie auth's session): SelectApplication, EV2First key 1, GetCardUID,
    # EV2NonFirst key 2, ReadData (4), Read_Sig inside the session (2: 72 protected bytes)
    *["5A", "71", "AF", "51", "77", "AF", "BD", "AF", "AF", "AF", "3C", "AF"],
]


def key(label: str, uid: bytes, aid: bytes = CONFIG.aid) -> bytes:
    """:return: the diversified key, computed here (not by the provider under test)."""
    return diversify_aes128(MASTERS[label], uid + aid + CONFIG.system_id)


class Traced(EmulatedConnection):
    """The emulated badge, the native command code of every APDU kept."""

    def __init__(self, card: EmulatedDesfire) -> None:
        super().__init__(card)
        self.commands: list[str] = []
        self.apdus: list[bytes] = []

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self.commands.append(f"{apdu[1]:02X}")
        self.apdus.append(bytes(apdu))
        return super().send_and_receive(apdu)


@pytest.fixture
def keys() -> SoftwareKeyProvider:
    return SoftwareKeyProvider(MASTERS, {"mie-authority": AUTHORITY})


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "journal.csv"


@pytest.fixture
def journal(journal_path: Path) -> Iterator[Journal]:
    with Journal.open(journal_path) as journal:
        yield journal


def blank(uid: bytes = UID, product: str = "ev3") -> EmulatedDesfire:
    return EmulatedDesfire(BadgeState.blank(uid), product=product)


def enroller(
    keys: SoftwareKeyProvider, journal: Journal, config: BadgeConfig = CONFIG, **kwargs: object
) -> Enroller:
    return Enroller(config, keys, journal=journal, today=lambda: TODAY, **kwargs)  # type: ignore[arg-type]


def read_identity(card: EmulatedDesfire, config: BadgeConfig = CONFIG) -> IdentityRecord:
    """Authenticate as a verifier does (UID-read key, GetCardUID, record key, FULL read) and
    check the record: the keys computed here, the authority's public key only."""
    session = DesfireSession(EmulatedConnection(card))
    session.select_application(config.aid)
    session.authenticate_ev2_first(1, key("mie-uid", bytes(7)))
    uid = session.get_card_uid()
    session.authenticate_ev2_non_first(2, key("mie-read", uid))
    signed = IdentityRecord.parse(session.read_data(1, 0, 176, mode=CommMode.FULL))
    verify(signed, [AuthorityKey.of(AUTHORITY.public_key(), "test authority")])
    check_binding(signed.record, uid=uid, aid=config.aid)
    return signed.record


def assert_enrolled(card: EmulatedDesfire, id_nat: str = RPPS) -> None:
    state = card.state
    assert state.picc_key.key == key("mie-picc", card.state.uid, bytes(3))
    assert (state.picc_key.version, state.picc_key.key_type) == (1, KeyType.AES)
    application = state.applications[CONFIG.aid]
    assert application.key_settings == 0x0B
    app, read = key("mie-app", state.uid), key("mie-read", state.uid)
    assert [k.key for k in application.keys] == [app, key("mie-uid", bytes(7)), read, app, app]
    assert all(k.version == 1 and k.key_type is KeyType.AES for k in application.keys)
    assert state.random_uid
    record = read_identity(card)
    assert (record.uid, record.id_nat, record.issuer, record.issued) == (
        state.uid,
        id_nat,
        "CH Exemple",
        TODAY,
    )


# --- a whole enrolment ---------------------------------------------------------------------


def test_a_blank_badge_is_enrolled_then_authenticates(
    keys: SoftwareKeyProvider, journal: Journal
) -> None:
    card = blank()
    connection = Traced(card)
    started: list[Step] = []
    enrolled = enroller(keys, journal).enrol(
        connection, EnrolmentRequest(RPPS), row="17", progress=started.append
    )
    assert_enrolled(card)
    assert connection.commands == FULL_ENROLMENT
    assert len(connection.commands) == 44
    assert enrolled.uid == UID and enrolled.row == "17" and enrolled.resumed_at is None
    steps = [Step.BEGIN, Step.PICC_KEY, Step.APPLICATION, Step.APP_KEYS, Step.RECORD]
    steps += [Step.RANDOM_UID, Step.VERIFIED]
    assert list(enrolled.steps) == started == steps
    assert [(e.step, e.state) for e in journal.history(UID)] == [
        (step, state) for step in steps for state in (EntryState.INTENT, EntryState.DONE)
    ]
    assert journal.incomplete() == ()
    assert enrolled.record.file == bytes(card.state.applications[CONFIG.aid].files[1].data)


def test_random_uid_is_set_last(keys: SoftwareKeyProvider, journal: Journal) -> None:
    connection = Traced(blank())
    enroller(keys, journal).enrol(connection, EnrolmentRequest(RPPS), row="1")
    commands = connection.commands
    set_configuration = commands.index("5C")
    changes = {"C4", "CA", "CD", "3D"}
    assert max(i for i, c in enumerate(commands) if c in changes) < set_configuration
    # Only the verifying reads come after it.
    assert set(commands[set_configuration + 1 :]) <= {"3C", "5A", "71", "AF", "51", "77", "BD"}
    assert commands.count("5C") == 1


def test_without_random_uid_the_badge_keeps_its_uid(
    keys: SoftwareKeyProvider, journal: Journal
) -> None:
    card = blank()
    connection = Traced(card)
    config = dataclasses.replace(CONFIG, random_uid=False)
    enroller(keys, journal, config).enrol(connection, EnrolmentRequest(PSI), row="1")
    assert "5C" not in connection.commands and not card.state.random_uid
    assert read_identity(card).id_nat == PSI
    assert len(connection.commands) == len(FULL_ENROLMENT) - 4


def test_the_div_file_source_writes_file_02(keys: SoftwareKeyProvider, journal: Journal) -> None:
    card = blank()
    config = dataclasses.replace(CONFIG, random_uid=False, uid_source=UidSource.DIV_FILE)
    enroller(keys, journal, config).enrol(EmulatedConnection(card), EnrolmentRequest(RPPS), row="1")
    div = card.state.applications[CONFIG.aid].files[2]
    assert (div.mode, bytes(div.data)) == (CommMode.PLAIN, UID + bytes(9))
    session = DesfireSession(EmulatedConnection(card))
    session.select_application(CONFIG.aid)
    assert session.read_data(2, 0, 16, mode=CommMode.PLAIN) == UID + bytes(9)


def test_inspect_tells_a_blank_badge_from_an_enrolled_one(
    keys: SoftwareKeyProvider, journal: Journal
) -> None:
    card = blank()
    enrolling = enroller(keys, journal)
    status = enrolling.inspect(EmulatedConnection(card))
    assert (status.uid, status.blank, status.step_done, status.picc_key) == (
        UID,
        True,
        Step.BEGIN,
        "default",
    )
    enrolling.enrol(EmulatedConnection(card), EnrolmentRequest(RPPS), row="1")
    # Random UID is on: the real UID comes through the application's UID-read key.
    status = enrolling.inspect(EmulatedConnection(card))
    assert (status.uid, status.blank, status.random_uid, status.step_done) == (
        UID,
        False,
        True,
        Step.VERIFIED,
    )
    assert status.key_versions == (1, 1, 1, 1, 1) and status.record is not None
    secrets = [key(label, UID).hex() for label in MASTERS] + [RPPS]
    assert not any(secret in repr(status) for secret in secrets)


# --- a badge removed at every exchange -----------------------------------------------------


def _first_run_fails_at(k: int, keys: SoftwareKeyProvider, path: Path) -> EmulatedDesfire:
    card = blank()
    connection = FailingConnection(
        EmulatedConnection(card),
        at=k,
        error=CardRemovedError("The badge left the reader"),
        before=card.power_off,
    )
    with Journal.open(path) as journal, pytest.raises(CardRemovedError):
        enroller(keys, journal).enrol(connection, EnrolmentRequest(RPPS), row="17")
    return card


def test_a_badge_removed_at_any_exchange_is_finished_by_the_next_run(
    keys: SoftwareKeyProvider, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mie")
    blank_state = BadgeState.blank(UID)
    resumed = 0
    for k in range(len(FULL_ENROLMENT)):
        path = tmp_path / f"journal-{k}.csv"
        card = _first_run_fails_at(k, keys, path)
        caplog.clear()
        with Journal.open(path) as journal:
            enrolling = enroller(keys, journal)
            pending = enrolling.incomplete()
            # Never left changed and unnoticed: a badge that is not blank any more is listed.
            if card.state != blank_state:
                assert [(i.row, i.uid) for i in pending] == [("17", UID)], k
                assert f"row 17 ({UID.hex()}) incomplete at" in caplog.text, k
            again = Traced(card)
            enrolled = enrolling.enrol(again, EnrolmentRequest(RPPS), row="17")
            assert journal.incomplete() == (), k
            history = journal.history(UID)
        assert_enrolled(card)
        assert history[-1].step is Step.VERIFIED and history[-1].state is EntryState.DONE
        if pending:
            resumed += 1
            # The journal shows the resume: the second run starts where the first stopped.
            assert enrolled.resumed_at is not None, k
            assert enrolled.resumed_at.index >= pending[0].step.index, k
            assert len(again.commands) < len(FULL_ENROLMENT) + 12, k
        else:
            assert enrolled.resumed_at is None and again.commands == FULL_ENROLMENT, k
    # The inspection reads (7 exchanges) come before the first journal line.
    assert resumed == len(FULL_ENROLMENT) - 7


@pytest.mark.parametrize("first", range(7, len(FULL_ENROLMENT), 5))
def test_a_resumed_run_removed_again_is_finished_by_a_third(
    first: int, keys: SoftwareKeyProvider, tmp_path: Path
) -> None:
    for second in range(0, 30, 4):
        path = tmp_path / f"journal-{second}.csv"
        card = _first_run_fails_at(first, keys, path)
        with Journal.open(path) as journal:
            failing = FailingConnection(
                EmulatedConnection(card),
                at=second,
                error=CardRemovedError("The badge left the reader again"),
                before=card.power_off,
            )
            try:
                enroller(keys, journal).enrol(failing, EnrolmentRequest(RPPS), row="17")
            except CardRemovedError:
                assert journal.incomplete(), (first, second)
        with Journal.open(path) as journal:
            enroller(keys, journal).enrol(
                EmulatedConnection(card), EnrolmentRequest(RPPS), row="17"
            )
            assert journal.incomplete() == ()
        assert_enrolled(card)


def test_a_removal_during_the_picc_key_change_leaves_it_noted_at_default_keys(
    keys: SoftwareKeyProvider, journal_path: Path
) -> None:
    at = FULL_ENROLMENT.index("C4")  # ChangeKey of the PICC key never reaches the badge
    card = _first_run_fails_at(at, keys, journal_path)
    assert card.state == BadgeState.blank(UID)
    with Journal.open(journal_path) as journal:
        (pending,) = journal.incomplete()
        assert (pending.step, pending.state) == (Step.PICC_KEY, EntryState.INTENT)


# --- a run stopped between steps; reset ------------------------------------------------------


class StopError(Exception):
    """The operator stops the run (Ctrl-C between two steps)."""


def _stop_before(step: Step) -> Callable[[Step], None]:
    def progress(current: Step) -> None:
        if current is step:
            raise StopError(step.value)

    return progress


def test_a_run_stopped_after_application_is_reported_first_then_reset_and_finished(
    keys: SoftwareKeyProvider, journal_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mie")
    card = blank()
    with Journal.open(journal_path) as journal, pytest.raises(StopError):
        enroller(keys, journal).enrol(
            EmulatedConnection(card),
            EnrolmentRequest(RPPS),
            row="17",
            progress=_stop_before(Step.APP_KEYS),
        )
    assert [k.version for k in card.state.applications[CONFIG.aid].keys] == [0] * 5
    caplog.clear()
    with Journal.open(journal_path) as journal:
        enrolling = enroller(keys, journal)
        # Reported before anything is sent to any badge.
        assert caplog.records[0].getMessage() == (
            f"Enrolment journal: row 17 ({UID.hex()}) incomplete at app_keys"
        )
        (pending,) = enrolling.incomplete()
        assert (pending.row, pending.uid, pending.step) == ("17", UID, Step.APP_KEYS)
        # The badge cannot be taken for another row.
        with pytest.raises(IncompleteBadgeError, match="row 17") as caught:
            enrolling.enrol(EmulatedConnection(card), EnrolmentRequest(PSI), row="18")
        assert caught.value.incomplete == pending and failed_row(caught.value) == "18"
        status = enrolling.reset(EmulatedConnection(card), UID)
        assert CONFIG.aid not in card.state.applications
        assert card.state.picc_key.key == key("mie-picc", UID, bytes(3))
        assert (status.step_done, status.application, status.picc_key) == (
            Step.PICC_KEY,
            False,
            "personalised",
        )
        assert journal.history(UID)[-1].state is EntryState.RESET
        assert enrolling.incomplete()[0].step is Step.APPLICATION
        enrolled = enrolling.enrol(EmulatedConnection(card), EnrolmentRequest(RPPS), row="17")
        assert enrolled.resumed_at is Step.APPLICATION
    assert_enrolled(card)


def test_reset_of_a_badge_with_half_its_keys_changed(
    keys: SoftwareKeyProvider, journal_path: Path
) -> None:
    at = FULL_ENROLMENT.index("C4", FULL_ENROLMENT.index("CA")) + 2  # keys 1 and 2 changed
    card = _first_run_fails_at(at, keys, journal_path)
    assert [k.version for k in card.state.applications[CONFIG.aid].keys] == [0, 1, 1, 0, 0]
    with Journal.open(journal_path) as journal:
        enrolling = enroller(keys, journal)
        enrolling.reset(EmulatedConnection(card), UID)
        assert CONFIG.aid not in card.state.applications
        enrolling.enrol(EmulatedConnection(card), EnrolmentRequest(RPPS), row="17")
    assert_enrolled(card)


def test_reset_after_random_uid_finds_the_badge_through_its_picc_key(
    keys: SoftwareKeyProvider, journal_path: Path
) -> None:
    at = len(FULL_ENROLMENT) - 1  # removed during the last verifying read
    card = _first_run_fails_at(at, keys, journal_path)
    assert card.state.random_uid
    with Journal.open(journal_path) as journal:
        enrolling = enroller(keys, journal)
        enrolling.reset(EmulatedConnection(card), UID)
        # The application is gone, random UID stays: the PICC key of the journal's badge
        # reveals the real UID.
        status = enrolling.inspect(EmulatedConnection(card))
        assert (status.uid, status.random_uid, status.application) == (UID, True, False)
        enrolled = enrolling.enrol(EmulatedConnection(card), EnrolmentRequest(RPPS), row="17")
        assert Step.RANDOM_UID not in enrolled.steps
    assert_enrolled(card)


def test_reset_refuses_a_badge_that_is_not_the_incomplete_one(
    keys: SoftwareKeyProvider, journal: Journal
) -> None:
    enrolling = enroller(keys, journal)
    with pytest.raises(EnrolmentInputError, match="not an incomplete badge"):
        enrolling.reset(EmulatedConnection(blank()), UID)
    with pytest.raises(StopError):
        enrolling.enrol(
            EmulatedConnection(blank()),
            EnrolmentRequest(RPPS),
            row="1",
            progress=_stop_before(Step.APPLICATION),
        )
    other = blank(OTHER_UID)
    before = copy.deepcopy(other.state)
    with pytest.raises(EnrolmentInputError, match="not 04a1b2c3d4e5f6"):
        enrolling.reset(EmulatedConnection(other), UID)
    assert other.state == before


# --- refusals ------------------------------------------------------------------------------


def test_an_enrolled_badge_is_not_enrolled_again(
    keys: SoftwareKeyProvider, journal: Journal
) -> None:
    card = blank()
    enrolling = enroller(keys, journal)
    enrolling.enrol(EmulatedConnection(card), EnrolmentRequest(RPPS), row="1")
    before = copy.deepcopy(card.state)
    with pytest.raises(BadgeAlreadyEnrolledError, match="row 1") as caught:
        enrolling.enrol(EmulatedConnection(card), EnrolmentRequest(PSI), row="2")
    assert (caught.value.enrolled_row, caught.value.uid, caught.value.row) == ("1", UID, "2")
    assert card.state == before


def test_a_badge_the_journal_does_not_know_must_be_blank(
    keys: SoftwareKeyProvider, journal: Journal, tmp_path: Path
) -> None:
    card = blank()
    with Journal.open(tmp_path / "elsewhere.csv") as other_journal:
        enroller(keys, other_journal).enrol(
            EmulatedConnection(card), EnrolmentRequest(RPPS), row="1"
        )
    before = copy.deepcopy(card.state)
    with pytest.raises(BadgeNotBlankError, match=r"is not blank .* does not know it") as caught:
        enroller(keys, journal).enrol(EmulatedConnection(card), EnrolmentRequest(RPPS), row="1")
    assert caught.value.code is ErrorCode.UNSUPPORTED_CARD
    # Enrolled under other masters: random UID hides a UID no key of this enroller reveals.
    theirs = SoftwareKeyProvider({k: bytes(16) for k in MASTERS}, {"mie-authority": AUTHORITY})
    foreign = blank(OTHER_UID)
    with Journal.open(tmp_path / "theirs.csv") as their_journal:
        enroller(theirs, their_journal).enrol(
            EmulatedConnection(foreign), EnrolmentRequest(RPPS), row="1"
        )
    with pytest.raises(BadgeNotBlankError, match="it was not enrolled here"):
        enroller(keys, journal).enrol(EmulatedConnection(foreign), EnrolmentRequest(RPPS), row="1")
    # Random UID off, another PICC key: refused by what the badge shows.
    static = blank(OTHER_UID)
    personalise(static.state, aid=bytes.fromhex("010203"), keys=[bytes(16)], record=b"x",
                picc_key=bytes(range(16)))  # fmt: skip
    static_before = copy.deepcopy(static.state)
    with pytest.raises(BadgeNotBlankError, match="PICC key personalised"):
        enroller(keys, journal).enrol(EmulatedConnection(static), EnrolmentRequest(RPPS), row="2")
    assert card.state == before and static.state == static_before
    assert journal.entries == ()


def test_an_incomplete_badge_under_another_master_key_is_a_key_mismatch(
    journal_path: Path,
) -> None:
    theirs = SoftwareKeyProvider(
        {**MASTERS, "mie-app": bytes(range(16))}, {"mie-authority": AUTHORITY}
    )
    card = blank()
    with Journal.open(journal_path) as journal, pytest.raises(StopError):
        enroller(theirs, journal).enrol(
            EmulatedConnection(card),
            EnrolmentRequest(RPPS),
            row="1",
            progress=_stop_before(Step.RECORD),
        )
    with Journal.open(journal_path) as journal:
        ours = SoftwareKeyProvider(MASTERS, {"mie-authority": AUTHORITY})
        with pytest.raises(DesfireAuthenticationError) as caught:
            enroller(ours, journal).enrol(EmulatedConnection(card), EnrolmentRequest(RPPS), row="1")
    assert caught.value.code is ErrorCode.KEY_MISMATCH


def test_an_ev1_badge_is_refused(keys: SoftwareKeyProvider, journal: Journal) -> None:
    card = blank(product="ev1")
    with pytest.raises(UnsupportedCardError, match="EV1"):
        enroller(keys, journal).enrol(EmulatedConnection(card), EnrolmentRequest(RPPS), row="1")
    assert card.state == BadgeState.blank(UID)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda: EnrolmentRequest("810001234566"), "national identifier"),
        (lambda: EnrolmentRequest(PSI.upper()), "lower-case PSI"),
        (lambda: EnrolmentRequest(RPPS, issuer="x" * 31), "issuer"),
        (lambda: EnrolmentRequest(RPPS, issued=dt.datetime(2026, 1, 1)), "not a date"),
    ],
)
def test_a_bad_request_is_refused(make: Callable[[], EnrolmentRequest], problem: str) -> None:
    with pytest.raises(EnrolmentInputError, match=problem) as caught:
        make()
    assert caught.value.code is ErrorCode.USAGE


def test_requests_the_enroller_cannot_serve_touch_nothing(
    keys: SoftwareKeyProvider, journal: Journal
) -> None:
    card = blank()
    connection = Traced(card)
    no_issuer = enroller(keys, journal, dataclasses.replace(CONFIG, issuer=None))
    with pytest.raises(EnrolmentInputError, match="No issuer"):
        no_issuer.enrol(connection, EnrolmentRequest(RPPS), row="1")
    with pytest.raises(EnrolmentInputError, match="no second-factor store"):
        enroller(keys, journal).enrol(connection, EnrolmentRequest(RPPS, pin=PIN), row="1")
    with pytest.raises(ValueError, match="row name"):
        enroller(keys, journal).enrol(connection, EnrolmentRequest(RPPS), row="row 1")
    untrusting = enroller(keys, journal, dataclasses.replace(CONFIG, authorities=()))
    with pytest.raises(EnrolmentInputError, match="not among the badge configuration's"):
        untrusting.enrol(connection, EnrolmentRequest(RPPS), row="1")
    assert connection.commands == [] and journal.entries == ()


def test_a_resumed_badge_keeps_its_professional(
    keys: SoftwareKeyProvider, journal: Journal
) -> None:
    card = blank()
    enrolling = enroller(keys, journal)
    with pytest.raises(StopError):
        enrolling.enrol(
            EmulatedConnection(card),
            EnrolmentRequest(RPPS),
            row="1",
            progress=_stop_before(Step.RANDOM_UID),
        )
    with pytest.raises(EnrolmentInputError, match="another professional"):
        enrolling.enrol(EmulatedConnection(card), EnrolmentRequest(PSI), row="1")
    enrolled = enrolling.enrol(EmulatedConnection(card), EnrolmentRequest(RPPS), row="1")
    assert enrolled.steps == (Step.RANDOM_UID, Step.VERIFIED)
    assert_enrolled(card)


# --- the second factor; no PIN anywhere ------------------------------------------------------


def test_the_pin_is_enrolled_and_never_in_the_journal_logs_or_reprs(
    keys: SoftwareKeyProvider,
    journal: Journal,
    journal_path: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="mie")
    card = blank()
    with SqliteStore(tmp_path / "mie.db") as store:
        factor = SecondFactor(store, parameters=WEAK)
        enrolling = enroller(keys, journal, second_factor=factor)
        request = EnrolmentRequest(RPPS, pin=PIN)
        enrolled = enrolling.enrol(EmulatedConnection(card), request, row="1")
        assert Step.SECOND_FACTOR in enrolled.steps
        factor.verify(enrolled.badge_name, enrolled.record.file, PIN)
        status = enrolling.inspect(EmulatedConnection(card))
        shown = [repr(request), repr(enrolled), repr(status), repr(enrolling), str(enrolled)]
    assert PIN not in caplog.text
    assert PIN not in journal_path.read_text()
    assert not any(PIN in text for text in shown)
    assert_enrolled(card)


def test_a_second_factor_already_stored_is_not_enrolled_twice(
    keys: SoftwareKeyProvider, journal: Journal, tmp_path: Path
) -> None:
    card = blank()
    with SqliteStore(tmp_path / "mie.db") as store:
        factor = SecondFactor(store, parameters=WEAK)
        enrolling = enroller(keys, journal, second_factor=factor)
        with pytest.raises(StopError):
            enrolling.enrol(
                EmulatedConnection(card),
                EnrolmentRequest(RPPS, pin=PIN),
                row="1",
                progress=_stop_before(Step.RANDOM_UID),
            )
        enrolled = enrolling.enrol(
            EmulatedConnection(card), EnrolmentRequest(RPPS, pin=PIN), row="1"
        )
        assert Step.SECOND_FACTOR not in enrolled.steps
        factor.verify(enrolled.badge_name, enrolled.record.file, PIN)


def test_the_anticollision_source_verifies_with_the_reader_uid(
    keys: SoftwareKeyProvider, journal: Journal
) -> None:
    card = blank()
    config = dataclasses.replace(CONFIG, random_uid=False, uid_source=UidSource.ANTICOLLISION)
    outside: list[bytes] = []

    class Locked(Traced):
        depth = 0

        @contextlib.contextmanager
        def transaction(self, reset: bool = False) -> Iterator[None]:
            self.depth += 1
            try:
                yield
            finally:
                self.depth -= 1

        def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
            if not self.depth:
                outside.append(apdu)
            return super().send_and_receive(apdu)

    connection = Locked(card)
    enrolled = enroller(keys, journal, config).enrol(connection, EnrolmentRequest(RPPS), row="1")
    assert enrolled.record.record.uid == UID and not card.state.random_uid
    # The reader's GET DATA (FF CA) replaces the UID-read key and GetCardUID.
    assert "51" not in connection.commands
    assert connection.apdus.count(bytes.fromhex("FFCA000000")) == 1
    # The whole enrolment runs in a transaction (no other process between two steps).
    assert connection.commands and outside == []


def test_verified_is_the_verifiers_check_and_leaves_a_failing_badge_incomplete(
    keys: SoftwareKeyProvider, journal: Journal
) -> None:
    # A configuration that trusts only NXP's originality keys refuses the emulated badge, as
    # mie auth would: the enrolment stops at VERIFIED and says so.
    nxp_only = dataclasses.replace(CONFIG, originality_keys=("nxp",))
    card = blank()
    with pytest.raises(OriginalitySignatureError) as caught:
        enroller(keys, journal, nxp_only).enrol(
            EmulatedConnection(card), EnrolmentRequest(RPPS), row="1"
        )
    assert caught.value.code is ErrorCode.NOT_GENUINE
    (pending,) = journal.incomplete()
    assert (pending.step, pending.state) == (Step.VERIFIED, EntryState.INTENT)
    # With the right configuration the next run only verifies.
    enrolled = enroller(keys, journal).enrol(
        EmulatedConnection(card), EnrolmentRequest(RPPS), row="1"
    )
    assert enrolled.steps == (Step.VERIFIED,)
    assert_enrolled(card)


def test_a_picc_key_changed_behind_the_journal_is_refused(
    keys: SoftwareKeyProvider, journal: Journal
) -> None:
    card = blank()
    with pytest.raises(StopError):
        enroller(keys, journal).enrol(
            EmulatedConnection(card),
            EnrolmentRequest(RPPS),
            row="1",
            progress=_stop_before(Step.PICC_KEY),
        )
    card.state.picc_key = BadgeKey(bytes(range(16)), 7, KeyType.AES)
    before = copy.deepcopy(card.state)
    with pytest.raises(BadgeNotBlankError, match="neither the default nor this enrolment's"):
        enroller(keys, journal).enrol(EmulatedConnection(card), EnrolmentRequest(RPPS), row="1")
    assert card.state == before


def test_a_run_stopped_while_storing_the_pin_is_not_finished_without_it(
    keys: SoftwareKeyProvider, journal: Journal, tmp_path: Path
) -> None:
    # The journal shows a PIN was being enrolled for the badge: a run without one must not
    # finish it as possession-only, leaving the operator to believe the PIN was set.
    class StoreDown(SecondFactor):
        def enrol(self, *args: object, **kwargs: object) -> None:
            raise OSError("store unreachable")

    card = blank()
    with SqliteStore(tmp_path / "mie.db") as store:
        with pytest.raises(OSError, match="store unreachable"):
            enroller(keys, journal, second_factor=StoreDown(store, parameters=WEAK)).enrol(
                EmulatedConnection(card), EnrolmentRequest(RPPS, pin=PIN), row="1"
            )
        factor = SecondFactor(store, parameters=WEAK)
        enrolling = enroller(keys, journal, second_factor=factor)
        with pytest.raises(
            EnrolmentInputError,
            match="Row 1: badge 04a1b2c3d4e5f6 was started with a second-factor PIN",
        ):
            enrolling.enrol(EmulatedConnection(card), EnrolmentRequest(RPPS), row="1")
        assert [i.step for i in journal.incomplete()] == [Step.SECOND_FACTOR]
        # With the PIN the run finishes, and the PIN is the badge's.
        enrolled = enrolling.enrol(
            EmulatedConnection(card), EnrolmentRequest(RPPS, pin=PIN), row="1"
        )
        assert Step.SECOND_FACTOR in enrolled.steps
        factor.verify(enrolled.badge_name, enrolled.record.file, PIN)
    assert journal.incomplete() == ()


def test_a_badge_that_only_claims_an_incomplete_badges_uid_gets_none_of_its_keys(
    keys: SoftwareKeyProvider, journal: Journal
) -> None:
    # GetVersion's UID and the key versions are read without a key: an emulated badge can copy
    # them from an incomplete badge of the journal. Its application keys are still the default,
    # so without a proof of the PICC key the run would send it the real badge's diversified
    # keys (ChangeKey) and its signed record: a clone. The resumed run proves the PICC key first.
    config = dataclasses.replace(CONFIG, random_uid=False)
    enrolling = enroller(keys, journal, config)
    card = blank()
    with pytest.raises(StopError):
        enrolling.enrol(
            EmulatedConnection(card),
            EnrolmentRequest(RPPS),
            row="1",
            progress=_stop_before(Step.APP_KEYS),
        )
    impostor_state = copy.deepcopy(card.state)
    impostor_state.picc_key = BadgeKey(bytes(range(16)), 1, KeyType.AES)
    impostor = EmulatedDesfire(impostor_state, product="ev3")
    traced = Traced(impostor)
    with pytest.raises(DesfireAuthenticationError):
        enrolling.enrol(traced, EnrolmentRequest(RPPS), row="1")
    assert "C4" not in traced.commands and "3D" not in traced.commands
    assert [k.version for k in impostor.state.applications[CONFIG.aid].keys] == [0] * 5
    assert [i.step for i in journal.incomplete()] == [Step.APP_KEYS]
    # The real badge still resumes.
    enrolled = enrolling.enrol(EmulatedConnection(card), EnrolmentRequest(RPPS), row="1")
    assert enrolled.resumed_at is not None


# --- a PIN asked for stays asked for ---------------------------------------------------------


@pytest.mark.parametrize("stop", [Step.PICC_KEY, Step.APP_KEYS, Step.RECORD, Step.SECOND_FACTOR])
def test_a_run_started_with_a_pin_is_not_finished_without_it(
    keys: SoftwareKeyProvider, journal: Journal, journal_path: Path, tmp_path: Path, stop: Step
) -> None:
    # Stopped before SECOND_FACTOR, the journal had no trace of the PIN: a run without it
    # finished the badge possession-only and reported it enrolled.
    card = blank()
    with SqliteStore(tmp_path / "mie.db") as store:
        factor = SecondFactor(store, parameters=WEAK)
        enrolling = enroller(keys, journal, second_factor=factor)
        with pytest.raises(StopError):
            enrolling.enrol(
                EmulatedConnection(card),
                EnrolmentRequest(RPPS, pin=PIN),
                row="1",
                progress=_stop_before(stop),
            )
        before = copy.deepcopy(card.state)
        traced = Traced(card)
        with pytest.raises(EnrolmentInputError, match=r"Row 1: .* PIN") as caught:
            enrolling.enrol(traced, EnrolmentRequest(RPPS), row="1")
        assert failed_row(caught.value) == "1"
        assert card.state == before and not {"C4", "CA", "CD", "3D", "5C"} & set(traced.commands)
        # Nor without a store to look the PIN up in.
        with pytest.raises(EnrolmentInputError, match="PIN"):
            enroller(keys, journal).enrol(EmulatedConnection(card), EnrolmentRequest(RPPS), row="1")
        assert card.state == before and journal.incomplete()[0].uid == UID
        # With the PIN the run finishes, and the PIN is the badge's.
        enrolled = enrolling.enrol(
            EmulatedConnection(card), EnrolmentRequest(RPPS, pin=PIN), row="1"
        )
        assert Step.SECOND_FACTOR in enrolled.steps
        factor.verify(enrolled.badge_name, enrolled.record.file, PIN)
    assert PIN not in journal_path.read_text()
    assert journal_path.read_text().count(",second_factor,planned,") == 1
    assert_enrolled(card)


def test_a_badge_whose_pin_is_stored_is_finished_without_it(
    keys: SoftwareKeyProvider, journal: Journal, tmp_path: Path
) -> None:
    card = blank()
    with SqliteStore(tmp_path / "mie.db") as store:
        factor = SecondFactor(store, parameters=WEAK)
        enrolling = enroller(keys, journal, second_factor=factor)
        with pytest.raises(StopError):
            enrolling.enrol(
                EmulatedConnection(card),
                EnrolmentRequest(RPPS, pin=PIN),
                row="1",
                progress=_stop_before(Step.RANDOM_UID),
            )
        enrolled = enrolling.enrol(EmulatedConnection(card), EnrolmentRequest(RPPS), row="1")
        assert enrolled.steps == (Step.RANDOM_UID, Step.VERIFIED)
        factor.verify(enrolled.badge_name, enrolled.record.file, PIN)
    assert_enrolled(card)


def test_a_pin_brought_by_a_resumed_run_is_planned_before_the_badge_changes(
    keys: SoftwareKeyProvider, journal: Journal, tmp_path: Path
) -> None:
    card = blank()
    with SqliteStore(tmp_path / "mie.db") as store:
        enrolling = enroller(keys, journal, second_factor=SecondFactor(store, parameters=WEAK))
        with pytest.raises(StopError):
            enrolling.enrol(
                EmulatedConnection(card),
                EnrolmentRequest(RPPS),
                row="1",
                progress=_stop_before(Step.APP_KEYS),
            )
        assert not journal.second_factor_planned(UID)
        with pytest.raises(StopError):
            enrolling.enrol(
                EmulatedConnection(card),
                EnrolmentRequest(RPPS, pin=PIN),
                row="1",
                progress=_stop_before(Step.RECORD),
            )
        assert journal.second_factor_planned(UID)
        with pytest.raises(EnrolmentInputError, match="PIN"):
            enrolling.enrol(EmulatedConnection(card), EnrolmentRequest(RPPS), row="1")


# --- one badge per row -------------------------------------------------------------------------


def test_a_row_with_an_incomplete_badge_takes_no_other(
    keys: SoftwareKeyProvider, journal: Journal
) -> None:
    # X left incomplete for row 1, then a blank Y enrolled for row 1, then X finished for row 1
    # too: two badges of one row, both verified.
    enrolling = enroller(keys, journal)
    x = blank(UID)
    with pytest.raises(StopError):
        enrolling.enrol(
            EmulatedConnection(x),
            EnrolmentRequest(RPPS),
            row="1",
            progress=_stop_before(Step.RECORD),
        )
    y = blank(OTHER_UID)
    traced = Traced(y)
    with pytest.raises(IncompleteBadgeError, match=f"Row 1 has badge {UID.hex()} left") as caught:
        enrolling.enrol(traced, EnrolmentRequest(RPPS), row="1")
    assert "--reset-incomplete" in str(caught.value) and OTHER_UID.hex() in str(caught.value)
    assert caught.value.incomplete.uid == UID and failed_row(caught.value) == "1"
    assert y.state == BadgeState.blank(OTHER_UID) and journal.history(OTHER_UID) == ()
    assert not {"1A", "C4", "CA"} & set(traced.commands)
    # Another row takes Y; row 1 finishes X.
    enrolling.enrol(EmulatedConnection(y), EnrolmentRequest(PSI), row="2")
    enrolling.enrol(EmulatedConnection(x), EnrolmentRequest(RPPS), row="1")
    assert journal.incomplete() == ()
    assert_enrolled(x)


def test_a_reset_badge_releases_its_row(keys: SoftwareKeyProvider, journal: Journal) -> None:
    enrolling = enroller(keys, journal)
    x = blank(UID)
    with pytest.raises(StopError):
        enrolling.enrol(
            EmulatedConnection(x),
            EnrolmentRequest(RPPS),
            row="1",
            progress=_stop_before(Step.RECORD),
        )
    enrolling.reset(EmulatedConnection(x), UID)
    y = blank(OTHER_UID)
    enrolling.enrol(EmulatedConnection(y), EnrolmentRequest(RPPS), row="1")
    # The reset badge may be taken for another row.
    enrolling.enrol(EmulatedConnection(x), EnrolmentRequest(PSI), row="2")
    assert journal.incomplete() == ()
    assert_enrolled(x, PSI)


def test_an_incomplete_badge_is_not_finished_for_a_row_verified_since(
    keys: SoftwareKeyProvider, journal: Journal
) -> None:
    # A journal of the version without the rule: Y enrolled and verified for row 1 while X,
    # row 1's, was incomplete. X is not finished for row 1 too.
    enrolling = enroller(keys, journal)
    x = blank(UID)
    with pytest.raises(StopError):
        enrolling.enrol(
            EmulatedConnection(x),
            EnrolmentRequest(RPPS),
            row="1",
            progress=_stop_before(Step.RECORD),
        )
    for step in Step:
        journal.record("1", OTHER_UID, step, EntryState.INTENT)
        journal.record("1", OTHER_UID, step, EntryState.DONE)
    before = copy.deepcopy(x.state)
    with pytest.raises(BadgeAlreadyEnrolledError, match="reset it") as caught:
        enrolling.enrol(EmulatedConnection(x), EnrolmentRequest(RPPS), row="1")
    assert (caught.value.enrolled_row, caught.value.uid, caught.value.row) == ("1", OTHER_UID, "1")
    assert UID.hex() in str(caught.value) and OTHER_UID.hex() in str(caught.value)
    assert x.state == before
    # Reset, it is enrolled again.
    enrolling.reset(EmulatedConnection(x), UID)
    enrolling.enrol(EmulatedConnection(x), EnrolmentRequest(RPPS), row="1")
    assert_enrolled(x)


def test_a_verified_row_takes_a_replacement_badge(
    keys: SoftwareKeyProvider, journal: Journal
) -> None:
    enrolling = enroller(keys, journal)
    enrolling.enrol(EmulatedConnection(blank(UID)), EnrolmentRequest(RPPS), row="1")
    replacement = blank(OTHER_UID)
    enrolling.enrol(EmulatedConnection(replacement), EnrolmentRequest(RPPS), row="1")
    assert journal.incomplete() == ()


# --- every error about a badge names its row ------------------------------------------------


def _failures(keys: SoftwareKeyProvider, journal: Journal, tmp_path: Path) -> Iterator[MieError]:
    def caught(run: Callable[[], object]) -> MieError:
        try:
            run()
        except MieError as e:
            return e
        raise AssertionError("no error")

    enrolling = enroller(keys, journal)
    # EnrolmentInputError: no issuer; a PIN without a store.
    no_issuer = enroller(keys, journal, dataclasses.replace(CONFIG, issuer=None))
    yield caught(
        lambda: no_issuer.enrol(EmulatedConnection(blank()), EnrolmentRequest(RPPS), row="r1")
    )
    yield caught(
        lambda: enrolling.enrol(
            EmulatedConnection(blank()), EnrolmentRequest(RPPS, pin=PIN), row="r1"
        )
    )
    # UnsupportedCardError: an EV1.
    yield caught(
        lambda: enrolling.enrol(
            EmulatedConnection(blank(product="ev1")), EnrolmentRequest(RPPS), row="r1"
        )
    )
    # CardRemovedError, then IncompleteBadgeError (row r1 has that badge left incomplete).
    card = blank()
    failing = FailingConnection(
        EmulatedConnection(card),
        at=12,
        error=CardRemovedError("The badge left the reader"),
        before=card.power_off,
    )
    yield caught(lambda: enrolling.enrol(failing, EnrolmentRequest(RPPS), row="r1"))
    fourth = blank(bytes.fromhex("04777777777777"))
    yield caught(
        lambda: enrolling.enrol(EmulatedConnection(fourth), EnrolmentRequest(RPPS), row="r1")
    )
    # BadgeAlreadyEnrolledError.
    enrolling.enrol(EmulatedConnection(card), EnrolmentRequest(RPPS), row="r1")
    yield caught(
        lambda: enrolling.enrol(EmulatedConnection(card), EnrolmentRequest(RPPS), row="r1")
    )
    # BadgeNotBlankError: enrolled through another journal.
    other = blank(OTHER_UID)
    with Journal.open(tmp_path / "elsewhere.csv") as elsewhere:
        enroller(keys, elsewhere).enrol(EmulatedConnection(other), EnrolmentRequest(RPPS), row="x")
    yield caught(
        lambda: enrolling.enrol(EmulatedConnection(other), EnrolmentRequest(RPPS), row="r1")
    )
    # OriginalitySignatureError at VERIFIED; the DesfireAuthenticationError of another master.
    nxp_only = enroller(keys, journal, dataclasses.replace(CONFIG, originality_keys=("nxp",)))
    third = blank(bytes.fromhex("04999999999999"))
    yield caught(
        lambda: nxp_only.enrol(EmulatedConnection(third), EnrolmentRequest(RPPS), row="r1")
    )


def test_every_error_about_a_badge_carries_its_row(
    keys: SoftwareKeyProvider, journal: Journal, tmp_path: Path
) -> None:
    errors = list(_failures(keys, journal, tmp_path))
    kinds = [type(e).__name__ for e in errors]
    assert kinds == [
        "EnrolmentInputError",
        "EnrolmentInputError",
        "UnsupportedCardError",
        "CardRemovedError",
        "IncompleteBadgeError",
        "BadgeAlreadyEnrolledError",
        "BadgeNotBlankError",
        "OriginalitySignatureError",
    ]
    assert [failed_row(e) for e in errors] == ["r1"] * len(errors)
    assert all(e.code is not None for e in errors)


def test_a_key_mismatch_and_a_reset_failure_carry_the_row(
    keys: SoftwareKeyProvider, journal: Journal
) -> None:
    theirs = SoftwareKeyProvider(
        {**MASTERS, "mie-app": bytes(range(16))}, {"mie-authority": AUTHORITY}
    )
    card = blank()
    with pytest.raises(StopError):
        enroller(theirs, journal).enrol(
            EmulatedConnection(card),
            EnrolmentRequest(RPPS),
            row="7",
            progress=_stop_before(Step.RECORD),
        )
    with pytest.raises(DesfireAuthenticationError) as mismatch:
        enroller(keys, journal).enrol(EmulatedConnection(card), EnrolmentRequest(RPPS), row="7")
    assert failed_row(mismatch.value) == "7"
    failing = FailingConnection(
        EmulatedConnection(card),
        at=3,
        error=CardRemovedError("The badge left the reader"),
        before=card.power_off,
    )
    with pytest.raises(CardRemovedError) as removed:
        enroller(keys, journal).reset(failing, UID)
    assert failed_row(removed.value) == "7"


def test_a_journal_that_cannot_be_written_is_not_a_row_s_failure(
    keys: SoftwareKeyProvider, journal: Journal
) -> None:
    enrolling = enroller(keys, journal)
    journal.close()
    with pytest.raises(JournalError) as caught:
        enrolling.enrol(EmulatedConnection(blank()), EnrolmentRequest(RPPS), row="1")
    assert failed_row(caught.value) is None
