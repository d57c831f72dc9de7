"""The MIE lifecycle (issue 11 plan §5): :mod:`mie.lifecycle`'s pure checks, and a FIDO2 key's
revocation and temporary grant in :func:`~mie.fido.registration.verify_registration` and
:class:`~mie.fido.assertion.FidoVerifier` (an emulated key, its assertions made through
python-fido2's client)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mie.core.errors import ErrorCode
from mie.emulation.ctap2 import EmulatedAuthenticator
from mie.fido.assertion import FidoVerifier
from mie.fido.policy import FidoPolicy
from mie.fido.registration import (
    RegisteredCredential,
    RegistrationData,
    credential_summary,
    grant_json,
    verify_registration,
)
from mie.lifecycle import (
    DEFAULT_CAP,
    MAX_TEMPORARY_S,
    cap_level,
    check_lifecycle,
    check_temporary,
    new_grant,
)
from mie.policy import AssuranceLevel
from mie.store.base import (
    CredentialRecord,
    LifecycleRecord,
    MieRef,
    Revocation,
    Store,
    TemporaryGrant,
)
from mie.store.errors import (
    AlreadyRegisteredError,
    MieRevokedError,
    StoreInputError,
    TemporaryExpiredError,
    TemporaryIdentityError,
)
from mie.store.memory import MemoryStore
from mie.store.sqlite import SqliteStore
from mie.trust.identity import Identity
from mie.verification import Expected
from tests.fido.assertion_kit import ALLOWLIST, ID_NAT, ORIGIN, RP_ID, Key, policy, register

LOW, SUBSTANTIAL, HIGH = AssuranceLevel.LOW, AssuranceLevel.SUBSTANTIAL, AssuranceLevel.HIGH
OTHER_ID_NAT = "810001234565"
T0 = 1_800_000_000.0
"""2027-01-15T08:00:00Z: a grant's issue time (the verifier's clock is injected)."""
DAY = 86400.0
BADGE = MieRef.badge(bytes.fromhex("04a1b2c3d4e5f6"))
IDENTITY = Identity(ID_NAT, "RPPS", ID_NAT[1:], None, None, None, None, True)


def _at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _grant(ref: MieRef = BADGE, **changes: Any) -> TemporaryGrant:
    values: dict[str, Any] = {
        "id_nat": ID_NAT,
        "reason": "pvd",
        "expires_in": 3 * DAY,
        "replaces": "badge:04112233445566",
        "by": "desk-1",
        "at": T0,
    }
    values.update(changes)
    return new_grant(ref, **values)


def _revocation(ref: MieRef = BADGE, reason: str = "lost") -> Revocation:
    return Revocation(ref=ref, reason=reason, note=None, revoked_at=T0, by="officer")


# --- mie.lifecycle ----------------------------------------------------------------------------


def test_default_caps_and_the_longest_grant() -> None:
    assert dict(DEFAULT_CAP) == {"pvd": SUBSTANTIAL, "unannounced": LOW}
    assert MAX_TEMPORARY_S == 7 * 86400
    assert _grant().max_level == "substantial"
    assert _grant(reason="unannounced").max_level == "low"
    # The operator may raise an unannounced arrival to substantial, never to high.
    assert _grant(reason="unannounced", max_level="substantial").max_level == "substantial"
    grant = _grant(expires_in=MAX_TEMPORARY_S)
    assert grant.expires_at - grant.issued_at == MAX_TEMPORARY_S
    assert (grant.id_nat, grant.reason, grant.by, grant.ref) == (ID_NAT, "pvd", "desk-1", BADGE)


@pytest.mark.parametrize(
    "changes",
    [
        {"expires_in": MAX_TEMPORARY_S + 1},
        {"expires_in": 0},
        {"expires_in": -1.0},
        {"expires_in": math.nan},
        {"expires_in": math.inf},
        {"expires_in": True},
        {"expires_in": "3600"},
        {"reason": "lost"},
        {"reason": None},
        {"max_level": "high"},
        {"max_level": HIGH},
        {"max_level": "medium"},
    ],
)
def test_new_grant_bounds(changes: dict[str, Any]) -> None:
    with pytest.raises(StoreInputError) as caught:
        _grant(**changes)
    assert caught.value.code is ErrorCode.MALFORMED


def test_check_lifecycle_of_a_permanent_mie() -> None:
    assert check_lifecycle(None, id_nat=ID_NAT, at=T0) is None
    assert check_lifecycle(LifecycleRecord(BADGE, None, None), id_nat=ID_NAT, at=T0) is None


def test_check_lifecycle_refuses_a_revoked_mie_first() -> None:
    revocation = _revocation()
    # Revoked wins over a grant that is still valid.
    row = LifecycleRecord(BADGE, revocation, _grant())
    with pytest.raises(MieRevokedError) as caught:
        check_lifecycle(row, id_nat=ID_NAT, at=T0 + 1)
    assert caught.value.code is ErrorCode.REVOKED
    assert caught.value.revocation == revocation
    assert str(caught.value) == "badge:04a1b2c3d4e5f6 revoked (lost) at 2027-01-15T08:00:00Z"


def test_a_grant_is_valid_until_it_expires() -> None:
    grant = _grant(expires_in=DAY)
    row = LifecycleRecord(BADGE, None, grant)
    assert check_lifecycle(row, id_nat=ID_NAT, at=T0) == grant
    assert check_lifecycle(row, id_nat=ID_NAT, at=T0 + DAY - 0.001) == grant
    for at in (T0 + DAY, T0 + 8 * DAY):
        with pytest.raises(TemporaryExpiredError) as caught:
            check_lifecycle(row, id_nat=ID_NAT, at=at)
        assert caught.value.code is ErrorCode.EXPIRED
        assert "expired at 2027-01-16T08:00:00Z" in str(caught.value)


def test_a_grant_of_another_professional_is_policy() -> None:
    with pytest.raises(TemporaryIdentityError) as caught:
        check_temporary(_grant(), id_nat=OTHER_ID_NAT, at=T0)
    assert caught.value.code is ErrorCode.POLICY


@pytest.mark.parametrize(
    ("level", "reason", "max_level", "expected"),
    [
        (SUBSTANTIAL, "pvd", None, SUBSTANTIAL),
        (HIGH, "pvd", None, SUBSTANTIAL),
        (LOW, "pvd", None, LOW),
        (SUBSTANTIAL, "unannounced", None, LOW),
        (HIGH, "unannounced", "substantial", SUBSTANTIAL),
        (SUBSTANTIAL, "pvd", "low", LOW),
        (None, "pvd", None, None),
    ],
)
def test_cap_level(
    level: AssuranceLevel | None,
    reason: str,
    max_level: str | None,
    expected: AssuranceLevel | None,
) -> None:
    capped, reasons = cap_level(level, _grant(reason=reason, max_level=max_level))
    assert capped is expected
    assert len(reasons) == 1
    assert reasons[0].startswith(f"temporary MIE ({reason}, replaces badge:04112233445566) until")
    if level is not None and level is not expected:
        assert reasons[0].endswith(f"level capped at {expected.value}")  # type: ignore[union-attr]


def test_cap_level_without_a_grant_changes_nothing() -> None:
    assert cap_level(HIGH, None) == (HIGH, ())
    assert cap_level(None, None) == (None, ())


# --- a FIDO2 key ------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    with SqliteStore(tmp_path / "mie.sqlite") as opened:
        yield opened


def _lenient(device: EmulatedAuthenticator) -> FidoPolicy:
    return FidoPolicy(
        RP_ID,
        attestation="optional",
        allowlist=ALLOWLIST,
        attestation_roots=(device.pki.root.certificate,),
        require_uv=False,
    )


def _registered(
    store: Store | None, temporary: TemporaryGrant | None = None, *, identity: Identity = IDENTITY
) -> tuple[Key, RegisteredCredential]:
    """A new emulated key registered through verify_registration into ``store``."""
    device = EmulatedAuthenticator("1234")
    handle = b"user-handle-0001"
    response = register(device, user_id=handle)
    challenge = response.response.client_data.challenge
    data = RegistrationData.from_webauthn(
        dict(response), nonce=challenge, origin=ORIGIN, rp_id=RP_ID, user_handle=handle
    )
    registered = verify_registration(
        data,
        Expected(challenge, ORIGIN),
        identity=identity,
        policy=_lenient(device),
        store=store,
        temporary=temporary,
        at=_at(T0),
    )
    return Key(device, registered.record), registered


def _fido2(key: Key) -> MieRef:
    return MieRef.fido2(RP_ID, key.record.credential_id)


def _stored(store: Store, key: Key) -> CredentialRecord:
    return store.get_credential(RP_ID, key.record.credential_id)


def _verify(store: Store, key: Key, *, at: float = T0 + 60) -> Any:
    evidence, expected = key.assertion()
    return FidoVerifier(policy(), store).verify(evidence, expected, at=_at(at))


def test_a_revoked_key_is_refused_with_revoked(store: Store) -> None:
    key, _ = _registered(store)
    assert _verify(store, key).level is SUBSTANTIAL
    before = _stored(store, key)
    revocation = store.revoke(_revocation(_fido2(key), "stolen"))
    with pytest.raises(MieRevokedError) as caught:
        _verify(store, key)
    assert caught.value.code is ErrorCode.REVOKED
    assert caught.value.revocation == revocation
    assert "revoked (stolen)" in str(caught.value)
    # Nothing moved: the counter and the last use are the ones before the revocation.
    after = _stored(store, key)
    assert (after.sign_count, after.last_used_at) == (before.sign_count, before.last_used_at)
    assert after.suspended == "revoked"


def test_a_revocation_landing_during_the_assertion_wins(tmp_path: Path) -> None:
    class RevokedMeanwhile(MemoryStore):
        """Another node revokes the credential between the verifier's read and its counter."""

        def get_credential(self, rp_id: str, credential_id: bytes) -> CredentialRecord:
            record = super().get_credential(rp_id, credential_id)
            self.revoke(_revocation(MieRef.fido2(rp_id, credential_id), "compromised"))
            return record

    store = RevokedMeanwhile()
    key, _ = _registered(store)
    with pytest.raises(MieRevokedError) as caught:
        _verify(store, key)
    assert "revoked (compromised)" in str(caught.value)
    assert _stored(store, key).sign_count == key.record.sign_count


_REVOKE = textwrap.dedent(
    """
    import sys
    from mie.store.base import MieRef, Revocation
    from mie.store.sqlite import SqliteStore

    path, rp_id, credential_id = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
    with SqliteStore(path) as store:
        store.revoke(Revocation(MieRef.fido2(rp_id, credential_id), "lost", None, 1.8e9, "cli"))
    """
)


def test_a_revocation_by_another_process_is_seen_at_the_next_assertion(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    with SqliteStore(path) as store:
        key, _ = _registered(store)
        verifier = FidoVerifier(policy(), store)
        evidence, expected = key.assertion()
        assert verifier.verify(evidence, expected).valid
        # Another process (another node) on the same file revokes the key.
        subprocess.run(
            [sys.executable, "-c", _REVOKE, str(path), RP_ID, key.record.credential_id.hex()],
            check=True,
            timeout=60,
        )
        evidence, expected = key.assertion()
        with pytest.raises(MieRevokedError):
            verifier.verify(evidence, expected)


def test_a_temporary_key_is_stored_with_its_grant(store: Store) -> None:
    template = _grant(BADGE, replaces="fido2:bG9zdA")
    key, registered = _registered(store, template)
    grant = dataclasses.replace(template, ref=_fido2(key))
    assert registered.record.temporary == grant
    assert _stored(store, key).temporary == grant
    lifecycle = store.lifecycle(_fido2(key))
    assert lifecycle is not None and lifecycle.temporary == grant and lifecycle.revocation is None
    assert registered.level_cap is SUBSTANTIAL
    summary = credential_summary(registered, discoverable=False)
    assert summary["temporary"] == grant_json(grant)
    assert summary["temporary"]["mie"] == str(_fido2(key))
    assert summary["temporary"]["expires_at"] == "2027-01-18T08:00:00Z"


def test_a_temporary_key_is_valid_until_expiry_then_expired(store: Store) -> None:
    key, _ = _registered(store, _grant(expires_in=DAY))
    result = _verify(store, key, at=T0 + DAY - 1)
    assert result.valid and result.level is SUBSTANTIAL
    assert any(r.startswith("temporary MIE (pvd, replaces badge:") for r in result.reasons)
    before = _stored(store, key)
    with pytest.raises(TemporaryExpiredError) as caught:
        _verify(store, key, at=T0 + DAY)
    assert caught.value.code is ErrorCode.EXPIRED
    # An expired temporary key moves nothing.
    assert _stored(store, key) == before


def test_an_unannounced_temporary_key_is_low(store: Store) -> None:
    key, registered = _registered(store, _grant(reason="unannounced", replaces=None))
    assert registered.level_cap is LOW
    result = _verify(store, key)
    assert result.level is LOW
    assert result.reasons[-1].startswith("temporary MIE (unannounced) until")
    assert result.reasons[-1].endswith("level capped at low")


def test_a_grant_for_another_professional_registers_nothing(store: Store) -> None:
    with pytest.raises(TemporaryIdentityError) as caught:
        _registered(store, _grant(id_nat=OTHER_ID_NAT))
    assert caught.value.code is ErrorCode.POLICY
    assert store.credentials_of(ID_NAT) == ()


def test_a_second_registration_with_a_grant_leaves_the_first(store: Store) -> None:
    key, _ = _registered(store, _grant())
    first = store.lifecycle(_fido2(key))
    with pytest.raises(AlreadyRegisteredError):
        store.put_credential(
            dataclasses.replace(key.record, temporary=None),
            temporary=_grant(_fido2(key), reason="unannounced"),
        )
    assert store.lifecycle(_fido2(key)) == first


def test_a_dry_run_with_a_grant_caps_and_stores_nothing() -> None:
    _, registered = _registered(None, _grant(reason="unannounced"))
    assert registered.level_cap is LOW and not registered.stored
    assert registered.record.temporary is not None


def test_credential_summary_of_a_permanent_key(store: Store) -> None:
    key, registered = _registered(store)
    summary = credential_summary(registered, discoverable=True)
    assert summary["temporary"] is None
    assert summary["discoverable"] is True
    assert summary["level_cap"] == "substantial"
    assert summary["identity"]["id_nat"] == ID_NAT
    assert summary["rp_id"] == RP_ID
    assert summary["sign_count"] == key.record.sign_count
    assert summary["attestation"]["format"] == "packed"
    assert summary["reasons"] == list(registered.reasons)
