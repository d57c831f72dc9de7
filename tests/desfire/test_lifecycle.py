"""A badge's lifecycle (issue 11 plan §5): the badge verifier reads its revocation and temporary
grant from the store at every verification, after the record check and before the PIN (a
revoked badge's PIN is never asked nor counted), caps a temporary badge's level; the enroller
writes a temporary badge's grant at BEGIN, before anything is written to the badge."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mie.core.errors import CardRemovedError, ErrorCode
from mie.desfire.authenticator import DesfireAuthenticator
from mie.desfire.enrol import Enroller, EnrolmentInputError, EnrolmentRequest
from mie.desfire.journal import Journal
from mie.desfire.record import IdentityRecord
from mie.desfire.verify import NO_LIFECYCLE, BadgeVerifier
from mie.emulation.base import EmulatedConnection
from mie.emulation.desfire import EmulatedDesfire
from mie.emulation.desfire_state import BadgeState
from mie.keys import SoftwareKeyProvider
from mie.lifecycle import new_grant
from mie.policy import AssuranceLevel
from mie.request import StaticPin, UserVerification
from mie.result import AuthResult
from mie.store.base import MieRef, Revocation, Store, TemporaryGrant
from mie.store.errors import (
    MieRevokedError,
    StoreInputError,
    TemporaryExpiredError,
    TemporaryIdentityError,
)
from mie.store.memory import MemoryStore
from mie.store.secondfactor import SecondFactor
from mie.store.sqlite import SqliteStore
from mie.verification import login
from tests.cards.faults import FailingConnection
from tests.desfire import test_enrol as enrolment
from tests.desfire.badges import (
    KEYS,
    RPPS,
    UID,
    badge,
    badge_state,
    config,
    connect,
    record,
    request,
)
from tests.store.targets import WEAK

LOW, SUBSTANTIAL = AssuranceLevel.LOW, AssuranceLevel.SUBSTANTIAL
PIN = "1234"
OTHER_ID_NAT = "810100099877"
T0 = 1_800_000_000.0
DAY = 86400.0
REF = MieRef.badge(UID)
BADGE_NAME = IdentityRecord.parse(record()).badge_name


class NeverAsked(UserVerification):
    """Fails the test if the verifier asks for the PIN."""

    def request_pin(self, tries_left: int | None) -> str:
        pytest.fail("the PIN of a refused badge was asked")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "mie.sqlite") as opened:
        yield opened


@pytest.fixture
def factor(store: SqliteStore) -> SecondFactor:
    factor = SecondFactor(store, max_failures=3, parameters=WEAK)
    signed = IdentityRecord.parse(record())
    factor.enrol(signed.badge_name, signed.file, PIN)
    return factor


def _grant(ref: MieRef = REF, **changes: Any) -> TemporaryGrant:
    values: dict[str, Any] = {
        "id_nat": RPPS,
        "reason": "pvd",
        "expires_in": DAY,
        "replaces": "badge:04112233445566",
        "by": "desk-1",
        "at": T0,
    }
    values.update(changes)
    return new_grant(ref, **values)


def _revocation(ref: MieRef = REF, reason: str = "lost") -> Revocation:
    return Revocation(ref=ref, reason=reason, note="left in a taxi", revoked_at=T0, by="officer")


def _run(verifier: BadgeVerifier, user: UserVerification | None) -> AuthResult:
    cfg = verifier.config
    authenticator = DesfireAuthenticator(connect(badge(badge_state(cfg=cfg))), cfg, keys=KEYS)
    return login(authenticator, request(), user=user, verifier=None, badges=verifier)


def _verifier(factor: SecondFactor, *, at: float = T0 + 60, **kwargs: Any) -> BadgeVerifier:
    return BadgeVerifier(config(), keys=KEYS, second_factor=factor, clock=lambda: at, **kwargs)


def _failures(store: Store) -> int:
    return store.secret_status(BADGE_NAME).failures


# --- the verifier -----------------------------------------------------------------------------


def test_a_badge_not_revoked_is_checked_and_substantial(factor: SecondFactor) -> None:
    result = _run(_verifier(factor), StaticPin(PIN))
    assert result.valid and result.level is SUBSTANTIAL
    assert "badge not revoked" in result.reasons
    assert NO_LIFECYCLE not in result.reasons


def test_a_revoked_badge_is_refused_before_its_pin(factor: SecondFactor, store: Store) -> None:
    revocation = store.revoke(_revocation())
    with pytest.raises(MieRevokedError) as caught:
        _run(_verifier(factor), NeverAsked())
    assert caught.value.code is ErrorCode.REVOKED
    assert caught.value.revocation == revocation
    assert str(caught.value) == "badge:04958caa5c5e80 revoked (lost) at 2027-01-15T08:00:00Z"
    # No guess was counted, not even reserved.
    assert _failures(store) == 0
    assert factor.tries_left(BADGE_NAME) == 3


def test_a_revoked_badge_without_a_pin_is_refused_too() -> None:
    lifecycle = MemoryStore()
    lifecycle.revoke(_revocation(reason="stolen"))
    verifier = BadgeVerifier(config(), keys=KEYS, lifecycle=lifecycle)
    with pytest.raises(MieRevokedError, match=r"revoked \(stolen\)"):
        _run(verifier, None)


_REVOKE = textwrap.dedent(
    """
    import sys
    from mie.store.base import MieRef, Revocation
    from mie.store.sqlite import SqliteStore

    with SqliteStore(sys.argv[1]) as store:
        ref = MieRef.badge(bytes.fromhex(sys.argv[2]))
        store.revoke(Revocation(ref, "lost", None, 1.8e9, "cli"))
    """
)


def test_a_revocation_by_another_process_is_seen_at_the_next_verification(
    factor: SecondFactor, store: SqliteStore, tmp_path: Path
) -> None:
    verifier = _verifier(factor)
    assert _run(verifier, StaticPin(PIN)).level is SUBSTANTIAL
    # Another node (another process on the same file, its own store instance) revokes it.
    subprocess.run(
        [sys.executable, "-c", _REVOKE, str(tmp_path / "mie.sqlite"), UID.hex()],
        check=True,
        timeout=60,
    )
    with pytest.raises(MieRevokedError):
        _run(verifier, NeverAsked())
    assert _failures(store) == 0


def test_without_a_store_the_result_says_revocations_were_not_checked() -> None:
    result = _run(BadgeVerifier(config(), keys=KEYS), None)
    assert result.valid and result.level is LOW
    assert NO_LIFECYCLE in result.reasons
    assert NO_LIFECYCLE == "revocation list not checked (no store)"


def test_open_reads_the_lifecycle_from_the_second_factor_store(factor: SecondFactor) -> None:
    verifier = BadgeVerifier(config(), keys=KEYS, second_factor=factor)
    assert verifier.lifecycle is factor.store


def test_a_temporary_badge_until_its_expiry(factor: SecondFactor, store: Store) -> None:
    store.grant_temporary(_grant())
    result = _run(_verifier(factor, at=T0 + DAY - 1), StaticPin(PIN))
    assert result.valid and result.level is SUBSTANTIAL
    assert "badge not revoked, temporary" in result.reasons
    assert result.reasons[-1].startswith("temporary MIE (pvd, replaces badge:04112233445566)")
    with pytest.raises(TemporaryExpiredError) as caught:
        _run(_verifier(factor, at=T0 + DAY), NeverAsked())
    assert caught.value.code is ErrorCode.EXPIRED
    assert _failures(store) == 0


def test_an_unannounced_temporary_badge_is_low_even_with_its_pin(
    factor: SecondFactor, store: Store
) -> None:
    store.grant_temporary(_grant(reason="unannounced", replaces=None))
    pin = StaticPin(PIN)
    result = _run(_verifier(factor), pin)
    assert result.level is LOW
    assert "second-factor PIN verified" in result.reasons
    assert result.reasons[-1].endswith("level capped at low")


def test_a_temporary_badge_of_another_professional_is_policy(
    factor: SecondFactor, store: Store
) -> None:
    # The grant was made for OTHER_ID_NAT; the badge's signed record names RPPS.
    store.grant_temporary(_grant(id_nat=OTHER_ID_NAT))
    with pytest.raises(TemporaryIdentityError) as caught:
        _run(_verifier(factor), NeverAsked())
    assert caught.value.code is ErrorCode.POLICY
    assert _failures(store) == 0


# --- the enroller -----------------------------------------------------------------------------


class Watching(SqliteStore):
    """Notes how many APDUs the badge had received when the grant was written."""

    connection: Any = None
    sent_at_grant: int | None = None

    def grant_temporary(self, grant: TemporaryGrant) -> None:
        self.sent_at_grant = len(self.connection.commands)
        super().grant_temporary(grant)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(tmp_path / "journal.csv") as opened:
        yield opened


def _enroller(journal: Journal, lifecycle: Store, **kwargs: Any) -> Enroller:
    return Enroller(
        enrolment.CONFIG,
        SoftwareKeyProvider(enrolment.MASTERS, {"mie-authority": enrolment.AUTHORITY}),
        journal=journal,
        today=lambda: enrolment.TODAY,
        temporary=kwargs.pop("temporary", _grant(id_nat=enrolment.RPPS)),
        lifecycle=lifecycle,
        clock=lambda: T0 + 60,
        **kwargs,
    )


def _blank() -> EmulatedDesfire:
    return EmulatedDesfire(BadgeState.blank(enrolment.UID), product="ev3")


def test_the_grant_is_written_before_any_badge_write(journal: Journal, tmp_path: Path) -> None:
    card = _blank()
    connection = enrolment.Traced(card)
    with Watching(tmp_path / "watched.sqlite") as lifecycle:
        lifecycle.connection = connection
        _enroller(journal, lifecycle).enrol(connection, EnrolmentRequest(enrolment.RPPS), row="1")
        # Only inspect's reads came before it (the first write, ChangeKey, is later).
        assert lifecycle.sent_at_grant == 7
        assert "C4" not in connection.commands[: lifecycle.sent_at_grant]
        row = lifecycle.lifecycle(MieRef.badge(enrolment.UID))
    assert row is not None and row.temporary is not None and row.revocation is None
    assert row.temporary.id_nat == enrolment.RPPS
    assert str(row.temporary.ref) == f"badge:{enrolment.UID.hex()}"
    enrolment.assert_enrolled(card)


def test_a_run_failing_after_begin_leaves_the_grant_and_the_next_one_finishes(
    journal: Journal, store: Store
) -> None:
    card = _blank()
    failing = FailingConnection(
        EmulatedConnection(card),
        at=12,
        error=CardRemovedError("The badge left the reader"),
        before=card.power_off,
    )
    with pytest.raises(CardRemovedError):
        _enroller(journal, store).enrol(failing, EnrolmentRequest(enrolment.RPPS), row="1")
    row = store.lifecycle(MieRef.badge(enrolment.UID))
    assert row is not None and row.temporary is not None
    first = row.temporary
    # No application, no record: nothing on the badge could pass for a permanent MIE.
    assert enrolment.CONFIG.aid not in card.state.applications
    # The next run finishes under the same grant (not refused as a second one).
    _enroller(journal, store).enrol(
        EmulatedConnection(card), EnrolmentRequest(enrolment.RPPS), row="1"
    )
    enrolment.assert_enrolled(card)
    again = store.lifecycle(MieRef.badge(enrolment.UID))
    assert again is not None and again.temporary == first


def test_a_refused_grant_writes_nothing_to_the_badge(journal: Journal, store: Store) -> None:
    # Another professional's unexpired grant for this badge: the store refuses a second one.
    store.grant_temporary(_grant(MieRef.badge(enrolment.UID), id_nat=OTHER_ID_NAT))
    card = _blank()
    connection = enrolment.Traced(card)
    with pytest.raises(StoreInputError):
        _enroller(journal, store).enrol(connection, EnrolmentRequest(enrolment.RPPS), row="1")
    assert connection.commands == enrolment.FULL_ENROLMENT[:7]
    assert card.state.picc_key.version == 0


def test_a_revoked_badge_is_not_reissued(journal: Journal, store: Store) -> None:
    store.revoke(_revocation(MieRef.badge(enrolment.UID)))
    card = _blank()
    connection = enrolment.Traced(card)
    with pytest.raises(MieRevokedError):
        _enroller(journal, store).enrol(connection, EnrolmentRequest(enrolment.RPPS), row="1")
    assert connection.commands == enrolment.FULL_ENROLMENT[:7]


def test_a_grant_for_another_professional_than_the_request(journal: Journal, store: Store) -> None:
    card = _blank()
    connection = enrolment.Traced(card)
    enroller = _enroller(journal, store, temporary=_grant(id_nat=OTHER_ID_NAT))
    with pytest.raises(EnrolmentInputError) as caught:
        enroller.enrol(connection, EnrolmentRequest(enrolment.RPPS), row="1")
    assert "another professional" in str(caught.value)
    assert connection.commands == []
    assert store.lifecycle(MieRef.badge(enrolment.UID)) is None


def test_a_revoked_badge_is_not_reissued_as_a_permanent_one(journal: Journal, store: Store) -> None:
    # RS1: only a temporary enrolment read the revocation: a permanent one rewrote a revoked
    # badge (keys, record, PIN) that every verification then refused.
    store.revoke(_revocation(MieRef.badge(enrolment.UID)))
    card = _blank()
    connection = enrolment.Traced(card)
    with pytest.raises(MieRevokedError):
        _enroller(journal, store, temporary=None).enrol(
            connection, EnrolmentRequest(enrolment.RPPS), row="1"
        )
    assert connection.commands == enrolment.FULL_ENROLMENT[:7]
    assert card.state.picc_key.version == 0
