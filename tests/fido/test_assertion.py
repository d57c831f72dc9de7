"""FidoVerifier: an emulated key's assertion (made through python-fido2's Fido2Client) accepted at
``substantial``, and every step of plan §4.4 failing once, with its contract code; the counter
moves only for an accepted assertion."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fido2.webauthn import UserVerificationRequirement

from mie.core.connection import Transport
from mie.core.errors import (
    ErrorCode,
    EvidenceFormatError,
    MieError,
    NonceMismatchError,
    OriginMismatchError,
    SignatureInvalidError,
)
from mie.emulation.fido_mds import Status, TestMds
from mie.emulation.fido_pki import EMULATOR_AAGUID
from mie.evidence import X509SignatureEvidence
from mie.fido.allowlist import AaguidAllowlist, AllowedKey
from mie.fido.assertion import FidoVerifier
from mie.fido.authenticator import credential_ref
from mie.fido.errors import (
    AttestationRefusedError,
    AuthDataFormatError,
    ClientDataFormatError,
    FidoPolicyError,
    MetadataStaleError,
    MetadataStatusError,
    RpIdMismatchError,
    UnknownAaguidError,
    UserNotPresentError,
    UserNotVerifiedError,
)
from mie.fido.evidence import WebAuthnAssertionEvidence
from mie.fido.mds import MetadataIndex
from mie.fido.policy import MetadataPolicy
from mie.policy import (
    DEFAULT_RULES,
    AssuranceLevel,
    Factor,
    LevelPolicy,
    LevelRule,
    MieKind,
    Property,
)
from mie.request import AuthRequest, UserVerification
from mie.result import AuthenticatorInfo, AuthResult
from mie.store.base import CredentialRecord, Store
from mie.store.errors import (
    CloneSuspectedError,
    CounterUnsupportedError,
    CredentialUnknownError,
    MieRevokedError,
)
from mie.store.memory import MemoryStore
from mie.store.sqlite import SqliteStore
from mie.verification import Expected, login, verify_evidence
from tests.fido.assertion_kit import (
    BE_BIT,
    ID_NAT,
    ORIGIN,
    RP_ID,
    UV_BIT,
    Key,
    new_key,
    policy,
    register,
)

LOW, SUBSTANTIAL = AssuranceLevel.LOW, AssuranceLevel.SUBSTANTIAL
UP_BIT = 0x01
TWO_FACTORS = (
    "FIDO2 key of an attested model that verified its user, credential bound to the key: "
    "two factors"
)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The one-process store, and the default shared backend (one SQLite file)."""
    if request.param == "memory":
        yield MemoryStore()
        return
    with SqliteStore(tmp_path / "mie.sqlite") as opened:
        yield opened


@pytest.fixture
def key(store: Store) -> Key:
    return new_key(store)


def _verify(store: Store, evidence: Any, expected: Any, **changes: Any) -> AuthResult:
    return FidoVerifier(policy(**changes), store).verify(evidence, expected)


def _stored(store: Store, key: Key) -> CredentialRecord:
    return store.get_credential(RP_ID, key.record.credential_id)


def _refused(
    store: Store,
    key: Key,
    evidence: Any,
    expected: Any,
    error: type[MieError],
    code: ErrorCode,
    **changes: Any,
) -> MieError:
    before = _stored(store, key) if _registered(store, key) else None
    with pytest.raises(error) as caught:
        _verify(store, evidence, expected, **changes)
    assert caught.value.code is code
    if before is not None and not isinstance(caught.value, CloneSuspectedError):
        # A refusal before the counter step leaves the credential as it was.
        assert _stored(store, key) == before
    return caught.value


def _registered(store: Store, key: Key) -> bool:
    try:
        _stored(store, key)
    except CredentialUnknownError:
        return False
    return True


# --- Accepted ---------------------------------------------------------------------------------


def test_an_attested_uv_assertion_is_substantial(store: Store, key: Key) -> None:
    evidence, expected = key.assertion()
    result = _verify(store, evidence, expected)
    assert result.valid and result.level is SUBSTANTIAL
    assert result.reasons[0] == "FIDO2 assertion signature verified (ES256)"
    assert "signature counter 1 above 0" in result.reasons
    assert "user verified by the key (PIN or biometrics)" in result.reasons
    assert result.reasons[-1] == TWO_FACTORS
    assert result.identity is not None
    assert (result.identity.id_nat, result.identity.id_type) == (ID_NAT, "RPPS")
    assert result.identity.test_card is True and result.identity.given_name is None
    assert result.authenticator is not None and result.authenticator.kind == "fido2"
    # The serial names the credential as the client side does.
    assert result.authenticator.serial == credential_ref(key.record.credential_id)
    assert result.evidence == evidence and result.revocation is None
    stored = _stored(store, key)
    assert stored.sign_count == 1 and stored.last_used_at is not None
    # The result's JSON reads back (a saved mie fido auth --json output).
    assert AuthResult.from_json(json.loads(json.dumps(result.to_json()))) == result


def test_an_eddsa_credential_is_substantial(store: Store) -> None:
    key = new_key(store, algorithms=(-8,))
    evidence, expected = key.assertion()
    result = _verify(store, evidence, expected)
    assert result.level is SUBSTANTIAL
    assert result.reasons[0] == "FIDO2 assertion signature verified (EdDSA)"


def test_successive_assertions_move_the_counter(store: Store, key: Key) -> None:
    for count in (1, 2, 3):
        evidence, expected = key.assertion()
        assert _verify(store, evidence, expected).valid
        assert _stored(store, key).sign_count == count


def test_a_discoverable_credential_with_its_user_handle(store: Store) -> None:
    key = new_key(store, resident_key=True)
    evidence, expected = key.assertion(allow=False)
    assert evidence.user_handle == key.record.user_handle
    assert _verify(store, evidence, expected).level is SUBSTANTIAL


def test_a_transport_presented_is_kept(store: Store, key: Key) -> None:
    evidence, expected = key.assertion()
    presented = AuthenticatorInfo("fido2", "claimed", None, Transport.USB)
    result = FidoVerifier(policy(), store).verify(evidence, expected, authenticator=presented)
    assert result.authenticator is not None
    assert result.authenticator.transport is Transport.USB
    assert result.authenticator.serial != "claimed"  # the credential's id, not a claim


# --- 1. The evidence's binding ----------------------------------------------------------------


def test_another_origin_is_refused(store: Store, key: Key) -> None:
    evidence, expected = key.assertion()
    other = Expected(expected.nonce, "https://evil.example")
    _refused(store, key, evidence, other, OriginMismatchError, ErrorCode.ORIGIN_MISMATCH)


def test_another_nonce_is_refused(store: Store, key: Key) -> None:
    evidence, expected = key.assertion()
    other = Expected(bytes(32), expected.origin)
    _refused(store, key, evidence, other, NonceMismatchError, ErrorCode.NONCE_MISMATCH)


def test_evidence_for_another_rp_id_is_refused(store: Store, key: Key) -> None:
    evidence, expected = key.assertion()
    other = dataclasses.replace(evidence, rp_id="other.example")
    error = _refused(store, key, other, expected, RpIdMismatchError, ErrorCode.RP_ID_MISMATCH)
    assert "other.example" in str(error)


def test_evidence_of_another_kind_is_refused(store: Store, key: Key) -> None:
    _, expected = key.assertion()
    x509 = X509SignatureEvidence(expected.nonce, ORIGIN, bytes(64), b"\x01", (b"\x30",))
    with pytest.raises(EvidenceFormatError, match="x509-signature"):
        FidoVerifier(policy(), store).verify(x509, expected)


# --- 2. The client data: what the key signed must say what the evidence says --------------------


def test_evidence_fields_and_client_data_disagreeing_on_the_nonce(store: Store, key: Key) -> None:
    evidence, _ = key.assertion()
    forged = bytes(range(32))
    lying = dataclasses.replace(evidence, nonce=forged)
    error = _refused(
        store, key, lying, Expected(forged, ORIGIN), NonceMismatchError, ErrorCode.NONCE_MISMATCH
    )
    assert "client data challenge" in str(error)


def test_evidence_fields_and_client_data_disagreeing_on_the_origin(store: Store, key: Key) -> None:
    evidence, expected = key.assertion()
    lying = dataclasses.replace(evidence, origin="https://other.example")
    other = Expected(expected.nonce, "https://other.example")
    error = _refused(store, key, lying, other, OriginMismatchError, ErrorCode.ORIGIN_MISMATCH)
    assert "client data origin" in str(error)


def _client_data(evidence: WebAuthnAssertionEvidence, **changes: Any) -> bytes:
    obj = json.loads(evidence.client_data_json)
    obj.update(changes)
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda e: _client_data(e, type="webauthn.create"), "is not webauthn.get"),
        (lambda e: _client_data(e, crossOrigin=True), "crossOrigin is true"),
        (lambda e: b"not json", "client data"),
        (lambda e: b'{"type":"webauthn.get","type":"webauthn.get"}', "duplicate"),
    ],
)
def test_client_data_is_strict(store: Store, key: Key, make: Any, message: str) -> None:
    evidence, expected = key.assertion()
    bad = dataclasses.replace(evidence, client_data_json=make(evidence))
    error = _refused(store, key, bad, expected, ClientDataFormatError, ErrorCode.MALFORMED)
    assert message in str(error).lower() or message in str(error)


# --- 3. The authenticator data ----------------------------------------------------------------


def test_authenticator_data_with_trailing_bytes(store: Store, key: Key) -> None:
    evidence, expected = key.assertion()
    bad = dataclasses.replace(evidence, authenticator_data=evidence.authenticator_data + b"\x00")
    error = _refused(store, key, bad, expected, AuthDataFormatError, ErrorCode.MALFORMED)
    assert "trailing" in str(error)


def test_attested_credential_data_in_an_assertion(store: Store, key: Key) -> None:
    evidence, expected = key.assertion()
    registration = register(key.device)
    auth_data = bytes(registration.response.attestation_object.auth_data)
    bad = dataclasses.replace(evidence, authenticator_data=auth_data)
    error = _refused(store, key, bad, expected, AuthDataFormatError, ErrorCode.MALFORMED)
    assert "attested credential data" in str(error)


def test_rp_id_hash(store: Store, key: Key) -> None:
    key.device.faults.other_rp = True
    evidence, expected = key.assertion()
    error = _refused(store, key, evidence, expected, RpIdMismatchError, ErrorCode.RP_ID_MISMATCH)
    assert "rpIdHash" in str(error)


def test_up_clear(store: Store, key: Key) -> None:
    key.device.faults.flags_mask = UP_BIT
    evidence, expected = key.assertion()
    _refused(store, key, evidence, expected, UserNotPresentError, ErrorCode.USER_NOT_PRESENT)


def test_uv_clear_for_substantial(store: Store, key: Key) -> None:
    key.device.faults.flags_mask = UV_BIT
    evidence, expected = key.assertion()
    _refused(store, key, evidence, expected, UserNotVerifiedError, ErrorCode.USER_NOT_VERIFIED)


def test_uv_less_is_low_under_require_uv_false(store: Store, key: Key) -> None:
    key.device.faults.flags_mask = UV_BIT
    evidence, expected = key.assertion()
    result = _verify(store, evidence, expected, require_uv=False)
    assert result.level is LOW
    assert result.reasons[-1] == "FIDO2 key without user verification: possession only"
    assert "user verified by the key (PIN or biometrics)" not in result.reasons


def test_uv_less_is_refused_when_the_request_asks_for_uv(store: Store, key: Key) -> None:
    key.device.faults.flags_mask = UV_BIT
    evidence, expected = key.assertion()
    request = AuthRequest(expected.nonce, expected.origin, user_verification=True)
    _refused(store, key, evidence, request, UserNotVerifiedError, ErrorCode.USER_NOT_VERIFIED)
    relaxed = AuthRequest(expected.nonce, expected.origin, user_verification=False)
    assert _verify(store, evidence, relaxed, require_uv=False).level is LOW


def test_a_key_without_pin_is_low_under_require_uv_false(store: Store) -> None:
    key = new_key(store, pin=None)
    evidence, expected = key.assertion(uv=UserVerificationRequirement.DISCOURAGED)
    _refused(store, key, evidence, expected, UserNotVerifiedError, ErrorCode.USER_NOT_VERIFIED)
    assert _verify(store, evidence, expected, require_uv=False).level is LOW


# --- 4. The stored credential -----------------------------------------------------------------


def test_an_unknown_credential(store: Store) -> None:
    key = new_key(None)
    evidence, expected = key.assertion()
    _refused(store, key, evidence, expected, CredentialUnknownError, ErrorCode.CREDENTIAL_UNKNOWN)


def test_the_credential_of_another_relying_party_is_unknown(store: Store) -> None:
    key = new_key(None)
    store.put_credential(dataclasses.replace(key.record, rp_id="other.example"))
    evidence, expected = key.assertion()
    _refused(store, key, evidence, expected, CredentialUnknownError, ErrorCode.CREDENTIAL_UNKNOWN)


def test_a_user_handle_of_another(store: Store) -> None:
    key = new_key(store, resident_key=True)
    evidence, expected = key.assertion(allow=False)
    other = dataclasses.replace(evidence, user_handle=b"someone else")
    error = _refused(
        store, key, other, expected, CredentialUnknownError, ErrorCode.CREDENTIAL_UNKNOWN
    )
    assert "user handle" in str(error)


def test_a_credential_suspected_a_clone(store: Store, key: Key) -> None:
    store.suspend_credential(RP_ID, key.record.credential_id, "clone-suspected")
    evidence, expected = key.assertion()
    error = _refused(store, key, evidence, expected, CloneSuspectedError, ErrorCode.SUSPECTED_CLONE)
    assert getattr(error, "suspended", None) == "clone-suspected"
    assert _stored(store, key).sign_count == 0


def test_a_revoked_credential_is_revoked_not_a_clone(store: Store, key: Key) -> None:
    # Suspended 'revoked' without a lifecycle row (a store written before issue 11): still
    # refused as revoked, not as a suspected clone; the counter does not move.
    store.suspend_credential(RP_ID, key.record.credential_id, "revoked")
    evidence, expected = key.assertion()
    error = _refused(store, key, evidence, expected, MieRevokedError, ErrorCode.REVOKED)
    assert not isinstance(error, CloneSuspectedError)
    assert "revoked" in str(error)
    assert _stored(store, key).sign_count == 0


def test_backup_eligibility_changed(store: Store) -> None:
    key = new_key(store, backup_eligible=True)
    key.device.faults.flags_mask = BE_BIT
    evidence, expected = key.assertion()
    error = _refused(store, key, evidence, expected, AuthDataFormatError, ErrorCode.MALFORMED)
    assert "Backup eligibility changed" in str(error)


def test_a_backup_eligible_credential_is_low(store: Store) -> None:
    key = new_key(store, backup_eligible=True)
    evidence, expected = key.assertion()
    result = _verify(store, evidence, expected)
    assert result.level is LOW
    assert result.reasons[-1].startswith("backup-eligible (syncable) FIDO2 credential")
    assert "backup-eligible credential (policy low)" in result.reasons


def test_a_backup_eligible_credential_under_allow_and_refuse(store: Store) -> None:
    key = new_key(store, backup_eligible=True)
    evidence, expected = key.assertion()
    _refused(
        store,
        key,
        evidence,
        expected,
        AttestationRefusedError,
        ErrorCode.ATTESTATION_REFUSED,
        backup_eligible="refuse",
    )
    result = _verify(store, evidence, expected, backup_eligible="allow")
    assert result.level is SUBSTANTIAL


@pytest.mark.parametrize(("attestation", "summary"), [("self", "packed/self"), ("none", "none")])
def test_an_unattested_credential_under_required_and_optional(
    store: Store, attestation: str, summary: str
) -> None:
    key = new_key(store, attestation=attestation)
    assert key.record.attestation == summary  # as verify_registration recorded it
    evidence, expected = key.assertion()
    error = _refused(
        store, key, evidence, expected, AttestationRefusedError, ErrorCode.ATTESTATION_REFUSED
    )
    assert summary.split("/")[-1] in str(error)
    result = _verify(store, evidence, expected, attestation="optional")
    assert result.level is LOW
    assert result.reasons[-1].startswith("FIDO2 key without attestation (self or none)")


def test_an_attestation_summary_mie_does_not_verify(store: Store) -> None:
    key = new_key(store, attestation_summary="fido-u2f/basic")
    evidence, expected = key.assertion()
    _refused(store, key, evidence, expected, AttestationRefusedError, ErrorCode.ATTESTATION_REFUSED)


OTHER_MODEL = AaguidAllowlist((AllowedKey(b"\x42" * 16, "another model"),))


def test_a_model_no_longer_allowlisted(store: Store, key: Key) -> None:
    evidence, expected = key.assertion()
    _refused(
        store,
        key,
        evidence,
        expected,
        UnknownAaguidError,
        ErrorCode.AAGUID_UNKNOWN,
        allowlist=OTHER_MODEL,
    )
    # Under attestation optional too: the allowlist is the operator's list of accepted models,
    # as at registration, so a model dropped from it no longer logs in.
    _refused(
        store,
        key,
        evidence,
        expected,
        UnknownAaguidError,
        ErrorCode.AAGUID_UNKNOWN,
        attestation="optional",
        allowlist=OTHER_MODEL,
    )


def test_a_packed_credential_without_any_list_is_not_attested(store: Store, key: Key) -> None:
    # attestation optional, no allowlist, no metadata: nothing lists the model now.
    evidence, expected = key.assertion()
    result = _verify(store, evidence, expected, attestation="optional", allowlist=None)
    assert result.level is LOW


# --- 5. The signature -------------------------------------------------------------------------


def test_a_broken_signature(store: Store, key: Key) -> None:
    key.device.faults.bad_signature = True
    evidence, expected = key.assertion()
    _refused(store, key, evidence, expected, SignatureInvalidError, ErrorCode.SIGNATURE_INVALID)


def test_a_signature_over_other_authenticator_data(store: Store, key: Key) -> None:
    evidence, expected = key.assertion()
    data = bytearray(evidence.authenticator_data)
    data[36] ^= 0x10  # the counter: a replay trying a higher count
    bad = dataclasses.replace(evidence, authenticator_data=bytes(data))
    _refused(store, key, bad, expected, SignatureInvalidError, ErrorCode.SIGNATURE_INVALID)


def test_a_key_algorithm_the_policy_no_longer_takes(store: Store) -> None:
    key = new_key(store, algorithms=(-8,))
    evidence, expected = key.assertion()
    error = _refused(
        store,
        key,
        evidence,
        expected,
        AttestationRefusedError,
        ErrorCode.ATTESTATION_REFUSED,
        algorithms=(-7,),
    )
    assert "EdDSA" in str(error)


def test_the_signature_is_checked_before_the_counter(store: Store, key: Key) -> None:
    for _ in range(3):
        evidence, expected = key.assertion()
        _verify(store, evidence, expected)
    key.device.credentials[0].sign_count = 0  # a clone with a lower counter...
    key.device.faults.bad_signature = True  # ...and a signature that does not verify
    evidence, expected = key.assertion()
    _refused(store, key, evidence, expected, SignatureInvalidError, ErrorCode.SIGNATURE_INVALID)
    assert _stored(store, key).suspended is None  # not suspended by an unverified assertion


# --- 6. The FIDO metadata now -----------------------------------------------------------------


@pytest.fixture(scope="module")
def mds() -> TestMds:
    return TestMds.generate()


def _index(mds: TestMds, key: Key, *statuses: Status, no: int = 1) -> MetadataIndex:
    """A verified TEST MDS blob listing the emulator's model with ``statuses``."""
    entry = mds.entry(EMULATOR_AAGUID, [key.device.pki.root.certificate], statuses=statuses)
    blob = mds.blob([entry], no=no)
    return MetadataIndex.load(blob, root=mds.root, at=dt.datetime.now(dt.UTC))


def _metadata_policy(tmp_path: Path, **changes: Any) -> Any:
    return policy(metadata=MetadataPolicy(blob=tmp_path / "mds.jwt", **changes))


CERTIFIED = ("FIDO_CERTIFIED_L1", "2026-01-01")


def test_a_model_revoked_after_registration(
    store: Store, key: Key, mds: TestMds, tmp_path: Path
) -> None:
    fido_policy = _metadata_policy(tmp_path)
    before = FidoVerifier(fido_policy, store, metadata=_index(mds, key, CERTIFIED))
    evidence, expected = key.assertion()
    result = before.verify(evidence, expected)
    assert result.level is SUBSTANTIAL
    assert "FIDO certification L1" in result.reasons
    # The next blob reports the model REVOKED: its registered keys are refused from now on.
    revoked = _index(mds, key, CERTIFIED, ("REVOKED", "2026-11-30"), no=2)
    after = FidoVerifier(fido_policy, store, metadata=revoked)
    evidence, expected = key.assertion()
    with pytest.raises(MetadataStatusError, match="status REVOKED since 2026-11-30") as caught:
        after.verify(evidence, expected)
    assert caught.value.code is ErrorCode.METADATA_STATUS
    assert _stored(store, key).sign_count == 1  # refused before the counter moved


def test_a_model_below_the_minimum_certification(
    store: Store, key: Key, mds: TestMds, tmp_path: Path
) -> None:
    fido_policy = _metadata_policy(tmp_path, min_certification="L2")
    verifier = FidoVerifier(fido_policy, store, metadata=_index(mds, key, CERTIFIED))
    evidence, expected = key.assertion()
    with pytest.raises(MetadataStatusError):
        verifier.verify(evidence, expected)


def test_a_model_missing_from_the_metadata(
    store: Store, key: Key, mds: TestMds, tmp_path: Path
) -> None:
    empty = MetadataIndex.load(mds.blob([]), root=mds.root, at=dt.datetime.now(dt.UTC))
    evidence, expected = key.assertion()
    required = FidoVerifier(_metadata_policy(tmp_path), store, metadata=empty)
    with pytest.raises(UnknownAaguidError, match="not in the FIDO metadata"):
        required.verify(evidence, expected)
    # Not required, and the allowlist lists it: still attested.
    optional = FidoVerifier(_metadata_policy(tmp_path, required=False), store, metadata=empty)
    result = optional.verify(evidence, expected)
    assert result.level is SUBSTANTIAL
    assert any("has no FIDO metadata entry" in r for r in result.reasons)


def test_a_batch_compromise_refuses_the_model_at_assertion(
    store: Store, key: Key, mds: TestMds, tmp_path: Path
) -> None:
    # The report names one attestation certificate; the store keeps no chain: fail closed.
    leaf = key.device.pki.leaf.der
    compromised = _index(mds, key, CERTIFIED, ("ATTESTATION_KEY_COMPROMISE", "2026-11-01", leaf))
    verifier = FidoVerifier(_metadata_policy(tmp_path), store, metadata=compromised)
    evidence, expected = key.assertion()
    with pytest.raises(MetadataStatusError, match="chain is not kept"):
        verifier.verify(evidence, expected)


def test_a_stale_blob_at_assertion(store: Store, key: Key, mds: TestMds, tmp_path: Path) -> None:
    verifier = FidoVerifier(_metadata_policy(tmp_path), store, metadata=_index(mds, key, CERTIFIED))
    evidence, expected = key.assertion()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=60)
    with pytest.raises(MetadataStaleError):
        verifier.verify(evidence, expected, at=later)


def test_metadata_in_the_policy_needs_the_index(store: Store, tmp_path: Any) -> None:
    fido_policy = policy(metadata=MetadataPolicy(blob=tmp_path / "mds.jwt"))
    with pytest.raises(FidoPolicyError, match="metadata index"):
        FidoVerifier(fido_policy, store)


# --- 7. The signature counter (plan D9) -------------------------------------------------------


def test_counter_back_suspends(store: Store, key: Key) -> None:
    for _ in range(3):
        evidence, expected = key.assertion()
        _verify(store, evidence, expected)
    key.device.credentials[0].sign_count = 1  # a clone made after the first assertion
    evidence, expected = key.assertion()  # counter 2 < 3
    error = _refused(store, key, evidence, expected, CloneSuspectedError, ErrorCode.SUSPECTED_CLONE)
    assert getattr(error, "suspended", None) == "clone-suspected"
    assert "went back" in str(error)
    assert _stored(store, key).suspended == "clone-suspected"
    # The genuine key, its counter well above, is refused too until an operator acts.
    key.device.credentials[0].sign_count = 100
    evidence, expected = key.assertion()
    error = _refused(store, key, evidence, expected, CloneSuspectedError, ErrorCode.SUSPECTED_CLONE)
    assert "suspended" in str(error)


def test_an_equal_counter_is_refused_but_suspends_nothing(store: Store, key: Key) -> None:
    evidence, expected = key.assertion()
    _verify(store, evidence, expected)
    error = _refused(store, key, evidence, expected, CloneSuspectedError, ErrorCode.SUSPECTED_CLONE)
    assert getattr(error, "suspended", "?") is None
    assert "already seen" in str(error)
    assert _stored(store, key).suspended is None
    evidence, expected = key.assertion()
    assert _verify(store, evidence, expected).valid  # the key goes on working


def test_a_counterless_key(store: Store) -> None:
    key = new_key(store, counter="zero")
    evidence, expected = key.assertion()
    _refused(store, key, evidence, expected, CounterUnsupportedError, ErrorCode.COUNTER_UNSUPPORTED)
    result = _verify(store, evidence, expected, counter="allow-zero")
    assert result.level is SUBSTANTIAL
    assert "no signature counter (0): no clone detection (policy allow-zero)" in result.reasons
    # No guard at all: the same assertion passes again (the nonce is the caller's guard).
    assert _verify(store, evidence, expected, counter="allow-zero").valid


# --- The verification dispatch ----------------------------------------------------------------


def test_verify_evidence_dispatches_to_the_fido_verifier(store: Store, key: Key) -> None:
    evidence, expected = key.assertion()
    with pytest.raises(EvidenceFormatError, match="No FIDO2 verifier configured"):
        verify_evidence(evidence, expected, verifier=None)
    assert _stored(store, key).sign_count == 0
    fido = FidoVerifier(policy(), store)
    result = verify_evidence(evidence, expected, verifier=None, fido=fido)
    assert result.level is SUBSTANTIAL


class _Prover:
    """The device side of login() for an emulated key (C's Fido2Authenticator does this)."""

    def __init__(self, key: Key) -> None:
        self.key = key
        self.heard: list[str] = []

    @property
    def info(self) -> AuthenticatorInfo:
        return AuthenticatorInfo("fido2", None, None)

    def authenticate(
        self, request: AuthRequest, *, user: UserVerification | None = None
    ) -> WebAuthnAssertionEvidence:
        evidence, _ = self.key.assertion(nonce=request.nonce)
        return evidence

    def accepted(self, evidence: Any, *, chain_verified: bool) -> None:
        self.heard.append("accepted")

    def rejected(self, evidence: Any) -> None:
        self.heard.append("rejected")


def test_login_with_a_fido_verifier(store: Store, key: Key) -> None:
    prover = _Prover(key)
    fido = FidoVerifier(policy(), store)
    request = AuthRequest.new(ORIGIN)
    result = login(prover, request, user=None, verifier=None, fido=fido)
    assert result.level is SUBSTANTIAL and prover.heard == ["accepted"]
    key.device.faults.bad_signature = True
    with pytest.raises(SignatureInvalidError):
        login(prover, AuthRequest.new(ORIGIN), user=None, verifier=None, fido=fido)
    assert prover.heard == ["accepted", "rejected"]


def test_the_level_table_of_verify_evidence_reaches_the_fido_verifier(
    store: Store, key: Key
) -> None:
    high = LevelRule(
        MieKind.FIDO2_KEY,
        frozenset({Factor.POSSESSION, Factor.KNOWLEDGE}),
        None,
        None,
        AssuranceLevel.HIGH,
        "operator rule",
        frozenset({Property.ATTESTED, Property.DEVICE_BOUND}),
    )
    table = LevelPolicy(rules=(high, *DEFAULT_RULES))
    fido = FidoVerifier(policy(), store)
    evidence, expected = key.assertion()
    result = verify_evidence(evidence, expected, verifier=None, policy=table, fido=fido)
    assert (result.level, result.reasons[-1]) == (AssuranceLevel.HIGH, "operator rule")
    # The verifier's own table otherwise (the default one here).
    evidence, expected = key.assertion()
    assert verify_evidence(evidence, expected, verifier=None, fido=fido).level is SUBSTANTIAL
