"""Done-when line 2: ``mie.fido`` refuses self attestation under an attested-only policy, unknown
AAGUIDs, UV-less assertions for ``substantial``, revoked MDS entries and counter regressions; it
accepts the emulator's attested key at ``substantial``.

Each row registers a key made by the emulator through python-fido2's ``Fido2Client`` with
``verify_registration`` (the attestation chain to the TEST root, the model in a TEST FIDO
metadata blob or the allowlist), then verifies its assertions with ``FidoVerifier``: the same
two calls an IAM makes, nothing stubbed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from fido2.webauthn import RegistrationResponse, UserVerificationRequirement

from mie.core.errors import ErrorCode, MieError
from mie.emulation.ctap2 import EmulatedAuthenticator
from mie.emulation.fido_mds import Status, TestMds
from mie.emulation.fido_pki import EMULATOR_AAGUID, OTHER_AAGUID, TestAttestationPki
from mie.fido.allowlist import AaguidAllowlist, AllowedKey
from mie.fido.assertion import FidoVerifier
from mie.fido.errors import (
    AttestationRefusedError,
    MetadataStatusError,
    UnknownAaguidError,
    UserNotVerifiedError,
)
from mie.fido.mds import MetadataIndex
from mie.fido.policy import FidoPolicy, MetadataPolicy
from mie.fido.registration import RegisteredCredential, RegistrationData, verify_registration
from mie.policy import AssuranceLevel
from mie.store.errors import CloneSuspectedError
from mie.store.memory import MemoryStore
from mie.trust.identity import Identity
from mie.verification import Expected
from tests.fido.assertion_kit import ID_NAT, ORIGIN, PIN, RP_ID, UV_BIT, Key, register

LOW, SUBSTANTIAL = AssuranceLevel.LOW, AssuranceLevel.SUBSTANTIAL
CERTIFIED: Status = ("FIDO_CERTIFIED_L1", "2026-01-01")
USER_ID = b"\x5a" * 16


@pytest.fixture(scope="module")
def pki() -> TestAttestationPki:
    return TestAttestationPki.generate()


@pytest.fixture(scope="module")
def mds() -> TestMds:
    return TestMds.generate()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _metadata(mds: TestMds, pki: TestAttestationPki, *statuses: Status, no: int = 1) -> Any:
    entry = mds.entry(EMULATOR_AAGUID, [pki.root.certificate], statuses=statuses or (CERTIFIED,))
    return MetadataIndex.load(mds.blob([entry], no=no), root=mds.root, at=_now())


def _mds_policy(tmp_path: Path, **changes: Any) -> FidoPolicy:
    """Attested-only, the model's roots and status from the FIDO metadata."""
    return FidoPolicy(RP_ID, metadata=MetadataPolicy(blob=tmp_path / "mds.jwt"), **changes)


def _allowlist_policy(pki: TestAttestationPki, **changes: Any) -> FidoPolicy:
    """Attested-only, the model allowlisted with the TEST root as its own."""
    key = AllowedKey(EMULATOR_AAGUID, "mie TEST emulated key", roots=(pki.root.certificate,))
    return FidoPolicy(RP_ID, allowlist=AaguidAllowlist((key,)), **changes)


def _identity() -> Identity:
    return Identity(ID_NAT, "RPPS", ID_NAT[1:], None, None, None, None, False)


def _enrol(
    device: EmulatedAuthenticator,
    policy: FidoPolicy,
    store: MemoryStore,
    metadata: Any = None,
    *,
    uv: UserVerificationRequirement = UserVerificationRequirement.REQUIRED,
) -> RegisteredCredential:
    """``mie fido register``'s path: Fido2Client on the key, then verify_registration."""
    response: RegistrationResponse = register(device, user_id=USER_ID, uv=uv)
    nonce = response.response.client_data.challenge
    data = RegistrationData.from_webauthn(
        json.loads(json.dumps(dict(response))),
        nonce=nonce,
        origin=ORIGIN,
        rp_id=RP_ID,
        user_handle=USER_ID,
    )
    return verify_registration(
        data,
        Expected(nonce, ORIGIN),
        identity=_identity(),
        policy=policy,
        store=store,
        metadata=metadata,
    )


def _refused_registration(
    device: EmulatedAuthenticator,
    policy: FidoPolicy,
    error: type[MieError],
    code: ErrorCode,
    metadata: Any = None,
) -> None:
    store = MemoryStore()
    with pytest.raises(error) as caught:
        _enrol(device, policy, store, metadata)
    assert caught.value.code is code
    assert store.credentials_of(ID_NAT) == ()  # never half registered


def _assert(device: EmulatedAuthenticator, registered: RegisteredCredential) -> tuple[Any, Any]:
    return Key(device, registered.record).assertion()


# --- Accepted ---------------------------------------------------------------------------------


def test_the_emulators_attested_key_is_substantial_through_the_metadata(
    pki: TestAttestationPki, mds: TestMds, tmp_path: Path
) -> None:
    device = EmulatedAuthenticator(PIN, pki=pki)
    policy, metadata, store = _mds_policy(tmp_path), _metadata(mds, pki), MemoryStore()
    registered = _enrol(device, policy, store, metadata)
    assert registered.level_cap is SUBSTANTIAL
    assert registered.record.attestation == "packed/basic"
    assert registered.record.certification == "L1"
    verifier = FidoVerifier(policy, store, metadata=metadata)
    for count in (1, 2):
        result = verifier.verify(*_assert(device, registered))
        assert result.level is SUBSTANTIAL
        assert store.get_credential(RP_ID, registered.record.credential_id).sign_count == count
    assert result.identity is not None and result.identity.id_nat == ID_NAT


def test_the_emulators_attested_key_is_substantial_through_the_allowlist(
    pki: TestAttestationPki,
) -> None:
    device = EmulatedAuthenticator(PIN, pki=pki)
    policy, store = _allowlist_policy(pki), MemoryStore()
    registered = _enrol(device, policy, store)
    assert registered.level_cap is SUBSTANTIAL
    result = FidoVerifier(policy, store).verify(*_assert(device, registered))
    assert result.level is SUBSTANTIAL


# --- Self and none attestation under an attested-only policy ---------------------------------


@pytest.mark.parametrize("attestation", ["self", "none"])
def test_self_and_none_attestation_are_refused_under_attested_only(
    pki: TestAttestationPki, mds: TestMds, tmp_path: Path, attestation: str
) -> None:
    device = EmulatedAuthenticator(PIN, pki=pki, attestation=attestation)  # type: ignore[arg-type]
    _refused_registration(
        device, _allowlist_policy(pki), AttestationRefusedError, ErrorCode.ATTESTATION_REFUSED
    )
    _refused_registration(
        device,
        _mds_policy(tmp_path),
        AttestationRefusedError,
        ErrorCode.ATTESTATION_REFUSED,
        _metadata(mds, pki),
    )
    # Under attestation optional it registers, and never reaches substantial.
    optional, store = _allowlist_policy(pki, attestation="optional"), MemoryStore()
    registered = _enrol(device, optional, store)
    assert registered.level_cap is LOW
    assert FidoVerifier(optional, store).verify(*_assert(device, registered)).level is LOW
    # A later attested-only policy refuses its assertions too.
    with pytest.raises(AttestationRefusedError):
        FidoVerifier(_allowlist_policy(pki), store).verify(*_assert(device, registered))


# --- Unknown AAGUIDs --------------------------------------------------------------------------


def test_an_unknown_aaguid_is_refused(
    mds: TestMds, pki: TestAttestationPki, tmp_path: Path
) -> None:
    # Another model, correctly attested by its own leaf, in neither the allowlist nor the MDS.
    other_pki = TestAttestationPki.generate(aaguid=OTHER_AAGUID)
    device = EmulatedAuthenticator(PIN, pki=other_pki, aaguid=OTHER_AAGUID)
    _refused_registration(
        device, _allowlist_policy(pki), UnknownAaguidError, ErrorCode.AAGUID_UNKNOWN
    )
    _refused_registration(
        device,
        _mds_policy(tmp_path),
        UnknownAaguidError,
        ErrorCode.AAGUID_UNKNOWN,
        _metadata(mds, pki),
    )


def test_a_model_dropped_from_the_allowlist_is_refused_at_assertion(
    pki: TestAttestationPki,
) -> None:
    device = EmulatedAuthenticator(PIN, pki=pki)
    store = MemoryStore()
    registered = _enrol(device, _allowlist_policy(pki), store)
    other = FidoPolicy(RP_ID, allowlist=AaguidAllowlist((AllowedKey(OTHER_AAGUID, "other"),)))
    with pytest.raises(UnknownAaguidError):
        FidoVerifier(other, store).verify(*_assert(device, registered))


# --- UV-less for substantial ------------------------------------------------------------------


def test_uv_less_never_reaches_substantial(pki: TestAttestationPki) -> None:
    device = EmulatedAuthenticator(PIN, pki=pki)
    policy, store = _allowlist_policy(pki), MemoryStore()
    # A registration without UV is refused under require_uv ...
    device.faults.flags_mask = UV_BIT
    _refused_registration(device, policy, UserNotVerifiedError, ErrorCode.USER_NOT_VERIFIED)
    device.faults.flags_mask = 0
    registered = _enrol(device, policy, store)
    # ... and so is a UV-less assertion of a registered key.
    device.faults.flags_mask = UV_BIT
    with pytest.raises(UserNotVerifiedError) as caught:
        FidoVerifier(policy, store).verify(*_assert(device, registered))
    assert caught.value.code is ErrorCode.USER_NOT_VERIFIED
    # A policy that does not require UV takes it, at low only.
    relaxed = _allowlist_policy(pki, require_uv=False)
    result = FidoVerifier(relaxed, store).verify(*_assert(device, registered))
    assert result.level is LOW
    assert result.reasons[-1] == "FIDO2 key without user verification: possession only"


def test_a_syncable_credential_is_low(pki: TestAttestationPki) -> None:
    device = EmulatedAuthenticator(PIN, pki=pki, backup_eligible=True)
    policy, store = _allowlist_policy(pki), MemoryStore()
    registered = _enrol(device, policy, store)
    assert registered.level_cap is LOW
    assert FidoVerifier(policy, store).verify(*_assert(device, registered)).level is LOW


# --- Revoked MDS entries ----------------------------------------------------------------------

REVOKED: Sequence[Status] = (CERTIFIED, ("REVOKED", "2026-11-30"))


def test_a_revoked_model_is_refused_at_registration(
    pki: TestAttestationPki, mds: TestMds, tmp_path: Path
) -> None:
    device = EmulatedAuthenticator(PIN, pki=pki)
    _refused_registration(
        device,
        _mds_policy(tmp_path),
        MetadataStatusError,
        ErrorCode.METADATA_STATUS,
        _metadata(mds, pki, *REVOKED),
    )


def test_a_model_revoked_after_registration_is_refused_at_assertion(
    pki: TestAttestationPki, mds: TestMds, tmp_path: Path
) -> None:
    device = EmulatedAuthenticator(PIN, pki=pki)
    policy, store = _mds_policy(tmp_path), MemoryStore()
    registered = _enrol(device, policy, store, _metadata(mds, pki))
    later = FidoVerifier(policy, store, metadata=_metadata(mds, pki, *REVOKED, no=2))
    with pytest.raises(MetadataStatusError, match="REVOKED") as caught:
        later.verify(*_assert(device, registered))
    assert caught.value.code is ErrorCode.METADATA_STATUS


@pytest.mark.parametrize(
    "status",
    ["USER_VERIFICATION_BYPASS", "USER_KEY_REMOTE_COMPROMISE", "ATTESTATION_KEY_COMPROMISE"],
)
def test_other_refused_statuses(
    pki: TestAttestationPki, mds: TestMds, tmp_path: Path, status: str
) -> None:
    device = EmulatedAuthenticator(PIN, pki=pki)
    _refused_registration(
        device,
        _mds_policy(tmp_path),
        MetadataStatusError,
        ErrorCode.METADATA_STATUS,
        _metadata(mds, pki, CERTIFIED, (status, "2026-11-01")),
    )


# --- Counter regressions ----------------------------------------------------------------------


def test_a_counter_regression_is_a_suspected_clone(pki: TestAttestationPki) -> None:
    device = EmulatedAuthenticator(PIN, pki=pki)
    policy, store = _allowlist_policy(pki), MemoryStore()
    registered = _enrol(device, policy, store)
    verifier = FidoVerifier(policy, store)
    for _ in range(3):
        verifier.verify(*_assert(device, registered))
    # A clone made after the first assertion: its counter is behind.
    device.credentials[0].sign_count = 1
    with pytest.raises(CloneSuspectedError) as caught:
        verifier.verify(*_assert(device, registered))
    assert caught.value.code is ErrorCode.SUSPECTED_CLONE
    credential_id = registered.record.credential_id
    assert store.get_credential(RP_ID, credential_id).suspended == "clone-suspected"
    # The genuine key is refused too, until an operator looks.
    device.credentials[0].sign_count = 50
    with pytest.raises(CloneSuspectedError):
        verifier.verify(*_assert(device, registered))
