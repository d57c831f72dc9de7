"""The MIE lifecycle on every backend (SQLite, PostgreSQL, memory): revocations (idempotent; a
FIDO2 credential suspended in the same transaction), temporary grants (bounds, one unexpired
grant per badge), a temporary credential written atomically with its grant (plan §2.3)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mie.store.base import (
    MAX_TEMPORARY_S,
    LifecycleRecord,
    MieRef,
    Revocation,
    Store,
    TemporaryGrant,
)
from mie.store.errors import (
    AlreadyRegisteredError,
    CloneSuspectedError,
    CredentialUnknownError,
    MieRevokedError,
    StoreInputError,
)
from tests.store.test_credentials import CRED, ID_NAT, OTHER_ID_NAT, RECORD, RP

T0 = 1_800_000_000.0
DAY = 86400.0
UID = bytes.fromhex("04a1b2c3d4e5f6")
BADGE = MieRef.badge(UID)
KEY = MieRef.fido2(RP, CRED)


def revocation(ref: MieRef = BADGE, **changes: Any) -> Revocation:
    values: dict[str, Any] = {
        "ref": ref,
        "reason": "lost",
        "note": "left in a taxi",
        "revoked_at": T0,
        "by": "officer",
    }
    values.update(changes)
    return Revocation(**values)


def grant(ref: MieRef = BADGE, **changes: Any) -> TemporaryGrant:
    values: dict[str, Any] = {
        "ref": ref,
        "id_nat": ID_NAT,
        "reason": "pvd",
        "issued_at": T0,
        "expires_at": T0 + 3 * DAY,
        "max_level": "substantial",
        "replaces": "badge:04112233445566",
        "by": "desk-1",
    }
    values.update(changes)
    return TemporaryGrant(**values)


# --- MieRef -----------------------------------------------------------------------------------


def test_refs_and_their_text() -> None:
    assert (BADGE.kind, BADGE.subject, str(BADGE)) == ("badge", UID.hex(), "badge:04a1b2c3d4e5f6")
    assert BADGE.uid == UID
    assert (KEY.kind, KEY.subject) == ("fido2", f"{RP}:{CRED.hex()}")
    assert (KEY.rp_id, KEY.credential_id) == (RP, CRED)
    assert str(KEY) == "fido2:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA"
    assert MieRef.parse(str(KEY), rp_id=RP) == KEY
    assert MieRef.parse(str(BADGE), rp_id=RP) == BADGE
    with pytest.raises(StoreInputError):
        BADGE.credential_id  # noqa: B018
    with pytest.raises(StoreInputError):
        KEY.uid  # noqa: B018


@pytest.mark.parametrize(
    "text",
    [
        "badge:04A1B2C3D4E5F6",  # upper case: one spelling only
        "badge:04a1b2c3d4e5",
        "badge:04a1b2c3d4e5f6aa",
        "fido2:AQ=",
        "fido2:AR",  # stray bits in the last character
        "fido2:A",
        "fido2:" + "A" * 1365,
        "cps:0123",
        "",
        "badge: 04a1b2c3d4e5f6",
        None,
    ],
)
def test_a_bad_ref_text_is_a_typed_error(text: Any) -> None:
    with pytest.raises(StoreInputError):
        MieRef.parse(text, rp_id=RP)


@pytest.mark.parametrize(
    "ref",
    [
        MieRef("badge", "04A1B2C3D4E5F6"),
        MieRef("badge", "04a1"),
        MieRef("fido2", "no-colon"),
        MieRef("fido2", f"{RP}:abc"),
        MieRef("fido2", f"Not.A.Host:{CRED.hex()}"),
        MieRef("cps", "x"),
        "badge:04a1b2c3d4e5f6",
    ],
    ids=repr,
)
def test_a_bad_ref_is_refused_by_every_lifecycle_call(any_store: Store, ref: Any) -> None:
    with pytest.raises(StoreInputError):
        any_store.lifecycle(ref)
    with pytest.raises(StoreInputError):
        any_store.revoke(revocation(ref))


# --- revocation ---------------------------------------------------------------------------------


def test_a_badge_is_revoked_once(any_store: Store) -> None:
    assert any_store.lifecycle(BADGE) is None
    first = any_store.revoke(revocation())
    assert first == revocation()
    assert any_store.lifecycle(BADGE) == LifecycleRecord(BADGE, first, None)
    # Again, with another reason, time and author: the first revocation stays.
    again = any_store.revoke(revocation(reason="stolen", note=None, revoked_at=T0 + 60, by="x"))
    assert again == first
    assert any_store.lifecycle(BADGE) == LifecycleRecord(BADGE, first, None)


def test_revoking_a_key_suspends_it_in_the_same_step(any_store: Store) -> None:
    any_store.put_credential(RECORD)
    stored = any_store.revoke(revocation(KEY, reason="compromised", note=None))
    assert stored.reason == "compromised" and stored.ref == KEY
    assert any_store.get_credential(RP, CRED).suspended == "revoked"
    lifecycle = any_store.lifecycle(KEY)
    assert lifecycle is not None and lifecycle.revocation == stored
    with pytest.raises(CloneSuspectedError) as refused:
        any_store.advance_counter(RP, CRED, 9, allow_zero=False)
    assert refused.value.suspended == "revoked"
    # A clone suspicion never replaces the revocation.
    any_store.suspend_credential(RP, CRED, "clone-suspected")
    assert any_store.get_credential(RP, CRED).suspended == "revoked"


def test_revoking_an_unknown_key_writes_nothing(any_store: Store) -> None:
    with pytest.raises(CredentialUnknownError):
        any_store.revoke(revocation(KEY))
    assert any_store.lifecycle(KEY) is None


def test_a_revoked_key_deleted_is_never_registered_again(any_store: Store) -> None:
    any_store.put_credential(RECORD)
    first = any_store.revoke(revocation(KEY))
    any_store.delete_credential(RP, CRED)
    assert any_store.lifecycle(KEY) == LifecycleRecord(KEY, first, None)
    with pytest.raises(MieRevokedError) as refused:
        any_store.put_credential(RECORD)
    assert refused.value.revocation == first
    with pytest.raises(CredentialUnknownError):
        any_store.get_credential(RP, CRED)
    # Revoking it again stays idempotent, the key gone or not.
    assert any_store.revoke(revocation(KEY, reason="other")) == first


@pytest.mark.parametrize(
    "changes",
    [
        {"reason": "misplaced"},
        {"reason": None},
        {"note": ""},
        {"note": "x" * 201},
        {"note": "two\nlines"},
        {"revoked_at": float("nan")},
        {"revoked_at": -1.0},
        {"revoked_at": True},
        {"by": ""},
        {"by": "a b"},
        {"by": "x" * 129},
    ],
    ids=repr,
)
def test_a_bad_revocation_is_refused_and_writes_nothing(
    any_store: Store, changes: dict[str, Any]
) -> None:
    with pytest.raises(StoreInputError):
        any_store.revoke(revocation(**changes))
    assert any_store.lifecycle(BADGE) is None


# --- temporary grants ----------------------------------------------------------------------------


def test_a_badge_grant_reads_back(any_store: Store) -> None:
    any_store.grant_temporary(grant())
    assert any_store.lifecycle(BADGE) == LifecycleRecord(BADGE, None, grant())
    unannounced = MieRef.badge(bytes(7))
    any_store.grant_temporary(
        grant(unannounced, reason="unannounced", max_level="low", replaces=None)
    )
    found = any_store.lifecycle(unannounced)
    assert found is not None and found.temporary is not None
    assert (found.temporary.reason, found.temporary.max_level) == ("unannounced", "low")


def test_a_second_grant_is_refused_until_the_first_expires(any_store: Store) -> None:
    any_store.grant_temporary(grant())
    with pytest.raises(StoreInputError):
        any_store.grant_temporary(grant(id_nat=OTHER_ID_NAT, issued_at=T0 + 60))
    assert any_store.lifecycle(BADGE) == LifecycleRecord(BADGE, None, grant())
    later = grant(issued_at=T0 + 3 * DAY, expires_at=T0 + 4 * DAY, id_nat=OTHER_ID_NAT)
    any_store.grant_temporary(later)
    assert any_store.lifecycle(BADGE) == LifecycleRecord(BADGE, None, later)


def test_a_revoked_badge_gets_no_grant_and_a_revocation_keeps_the_grant(
    any_store: Store,
) -> None:
    revoked = MieRef.badge(bytes(7))
    any_store.revoke(revocation(revoked))
    with pytest.raises(StoreInputError):
        any_store.grant_temporary(grant(revoked))
    any_store.grant_temporary(grant())
    stored = any_store.revoke(revocation())
    assert any_store.lifecycle(BADGE) == LifecycleRecord(BADGE, stored, grant())


@pytest.mark.parametrize(
    "changes",
    [
        {"expires_at": T0 + MAX_TEMPORARY_S + 1},
        {"expires_at": T0},
        {"expires_at": T0 - 1},
        {"max_level": "high"},
        {"max_level": "medium"},
        {"reason": "lost"},
        {"id_nat": "not an idNat"},
        {"id_nat": ""},
        {"replaces": "cps:1234"},
        {"replaces": ""},
        {"by": ""},
        {"issued_at": float("inf")},
    ],
    ids=repr,
)
def test_grant_bounds(any_store: Store, changes: dict[str, Any]) -> None:
    with pytest.raises(StoreInputError):
        any_store.grant_temporary(grant(**changes))
    assert any_store.lifecycle(BADGE) is None


def test_the_longest_grant_is_7_days(any_store: Store) -> None:
    any_store.grant_temporary(grant(expires_at=T0 + MAX_TEMPORARY_S))
    found = any_store.lifecycle(BADGE)
    assert found is not None and found.temporary is not None
    assert found.temporary.expires_at - found.temporary.issued_at == 7 * 86400


def test_a_key_grant_is_written_with_the_key_only(any_store: Store) -> None:
    with pytest.raises(StoreInputError):
        any_store.grant_temporary(grant(KEY))
    assert any_store.lifecycle(KEY) is None


# --- temporary credentials ----------------------------------------------------------------------


def test_a_temporary_credential_reads_back_with_its_grant(any_store: Store) -> None:
    key_grant = grant(KEY, replaces="fido2:bG9zdA")
    any_store.put_credential(RECORD, temporary=key_grant)
    stored = any_store.get_credential(RP, CRED)
    assert stored == dataclasses.replace(RECORD, temporary=key_grant)
    assert any_store.lifecycle(KEY) == LifecycleRecord(KEY, None, key_grant)
    assert any_store.credentials_of(ID_NAT) == (stored,)
    advanced = any_store.advance_counter(RP, CRED, 9, allow_zero=False)
    assert advanced.temporary == key_grant and advanced.sign_count == 9
    # A permanent credential has none.
    other = dataclasses.replace(RECORD, credential_id=b"\x09" * 16)
    any_store.put_credential(other)
    assert any_store.get_credential(RP, other.credential_id).temporary is None


def test_a_record_carrying_its_grant_is_stored_with_it(any_store: Store) -> None:
    key_grant = grant(KEY)
    any_store.put_credential(dataclasses.replace(RECORD, temporary=key_grant))
    assert any_store.get_credential(RP, CRED).temporary == key_grant
    assert any_store.lifecycle(KEY) == LifecycleRecord(KEY, None, key_grant)


def test_a_failing_registration_writes_no_grant(any_store: Store) -> None:
    any_store.put_credential(RECORD)
    with pytest.raises(AlreadyRegisteredError):
        any_store.put_credential(RECORD, temporary=grant(KEY))
    assert any_store.lifecycle(KEY) is None
    assert any_store.get_credential(RP, CRED).temporary is None


@pytest.mark.parametrize(
    "bad",
    [
        grant(BADGE),  # another MIE's grant
        grant(MieRef.fido2(RP, b"\x09" * 16)),
        grant(KEY, id_nat=OTHER_ID_NAT),  # another professional's
        grant(KEY, max_level="high"),
    ],
    ids=["badge", "other-key", "other-id-nat", "high"],
)
def test_a_grant_that_is_not_the_credentials_registers_nothing(
    any_store: Store, bad: TemporaryGrant
) -> None:
    with pytest.raises(StoreInputError):
        any_store.put_credential(RECORD, temporary=bad)
    with pytest.raises(CredentialUnknownError):
        any_store.get_credential(RP, CRED)
    assert any_store.lifecycle(bad.ref) is None


def test_two_different_grants_are_refused(any_store: Store) -> None:
    with pytest.raises(StoreInputError):
        any_store.put_credential(
            dataclasses.replace(RECORD, temporary=grant(KEY)),
            temporary=grant(KEY, reason="unannounced", max_level="low"),
        )
    assert any_store.lifecycle(KEY) is None


def test_deleting_a_temporary_credential_deletes_its_grant(any_store: Store) -> None:
    any_store.put_credential(RECORD, temporary=grant(KEY))
    any_store.delete_credential(RP, CRED)
    assert any_store.lifecycle(KEY) is None
    any_store.put_credential(RECORD)  # registered again, permanent this time
    assert any_store.get_credential(RP, CRED).temporary is None


@given(st.one_of(st.text(max_size=80), st.from_regex(r"\A(badge|fido2):[0-9a-fA-F_=-]{0,30}\Z")))
def test_ref_parsing_refuses_or_round_trips(text: str) -> None:
    # MieRef.parse reads an operator's or API client's text: a typed refusal, or a ref whose
    # text is exactly the input (one spelling per MIE).
    try:
        ref = MieRef.parse(text, rp_id=RP)
    except StoreInputError:
        return
    assert str(ref) == text
    assert MieRef.parse(str(ref), rp_id=RP) == ref
