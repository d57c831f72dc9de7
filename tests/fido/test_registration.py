"""FIDO2 registration (plan §4.3): real registrations made by the emulated key through
python-fido2's Fido2Client, each step of verify_registration failing once, and the credential
store (memory and SQLite) holding no row after every refusal (never half registered)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.hid import CtapHidDevice
from fido2.webauthn import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialCreationOptions,
    PublicKeyCredentialParameters,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialType,
    PublicKeyCredentialUserEntity,
    RegistrationResponse,
    UserVerificationRequirement,
)

from mie.core import cbor
from mie.core.errors import ErrorCode, EvidenceFormatError, MieError
from mie.emulation.ctap2 import EmulatedAuthenticator
from mie.emulation.ctaphid import CtapHidFraming, InMemoryHidConnection, hid_descriptor
from mie.emulation.fido_mds import TestMds
from mie.emulation.fido_pki import EMULATOR_AAGUID, OTHER_AAGUID, Fault, TestAttestationPki
from mie.fido.allowlist import AaguidAllowlist, AllowedKey
from mie.fido.attestation import CHAIN_PREFIX
from mie.fido.authdata import UP, UV
from mie.fido.mds import MetadataIndex
from mie.fido.policy import FidoPolicy, MetadataPolicy
from mie.fido.registration import (
    NOT_STORED,
    RegisteredCredential,
    RegistrationData,
    verify_registration,
)
from mie.policy import AssuranceLevel
from mie.store.base import Store
from mie.store.errors import CredentialUnknownError
from mie.store.memory import MemoryStore
from mie.store.sqlite import SqliteStore
from mie.trust.identity import Identity, parse_id_nat
from mie.verification import Expected

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
RP_ID = "iam.chu-exemple.fr"
ORIGIN = "https://iam.chu-exemple.fr"
NONCE = bytes(range(32))
PIN = "1234"
ID_NAT = "810100099877"


def identity(id_nat: str = ID_NAT, test: bool = False) -> Identity:
    id_type, number = parse_id_nat(id_nat)
    return Identity(id_nat, id_type, number, None, None, None, None, test)


@pytest.fixture(scope="module")
def pki() -> TestAttestationPki:
    return TestAttestationPki.generate(now=NOW)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    backend: Store = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "s.db")
    yield backend
    backend.close()


class _Pin(UserInteraction):
    def request_pin(self, permissions: Any, rp_id: str | None) -> str:
        return PIN


def register(
    device: Any,
    *,
    nonce: bytes = NONCE,
    origin: str = ORIGIN,
    rp_id: str = RP_ID,
    algorithms: tuple[int, ...] = (-7, -8),
) -> RegistrationData:
    """One real registration: Fido2Client → CTAP2 → the emulated key, read back from the W3C
    JSON python-fido2 gives."""
    client = Fido2Client(device, DefaultClientDataCollector(origin), user_interaction=_Pin())
    user_handle = os.urandom(16)
    options = PublicKeyCredentialCreationOptions(
        rp=PublicKeyCredentialRpEntity(id=rp_id, name="CHU Exemple"),
        user=PublicKeyCredentialUserEntity(id=user_handle, name="pro", display_name="Pro"),
        challenge=nonce,
        pub_key_cred_params=[
            PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=alg)
            for alg in algorithms
        ],
        attestation=AttestationConveyancePreference.DIRECT,
        authenticator_selection=AuthenticatorSelectionCriteria(
            user_verification=UserVerificationRequirement.REQUIRED
        ),
    )
    response = client.make_credential(options)
    return RegistrationData.from_webauthn(
        dict(response), nonce=nonce, origin=origin, rp_id=rp_id, user_handle=user_handle
    )


def policy(pki: TestAttestationPki, **changes: Any) -> FidoPolicy:
    values: dict[str, Any] = {
        "rp_id": RP_ID,
        "allowlist": AaguidAllowlist((AllowedKey(EMULATOR_AAGUID, "emulator", test=True),)),
        "attestation_roots": (pki.root.certificate,),
    }
    values.update(changes)
    return FidoPolicy(**values)


def verify(
    data: RegistrationData,
    rules: FidoPolicy,
    store: Store | None,
    *,
    expected: Expected | None = None,
    metadata: MetadataIndex | None = None,
) -> RegisteredCredential:
    return verify_registration(
        data,
        expected or Expected(NONCE, ORIGIN),
        identity=identity(),
        policy=rules,
        store=store,
        metadata=metadata,
        at=NOW,
    )


def assert_empty(store: Store, data: RegistrationData | None = None) -> None:
    assert store.credentials_of(ID_NAT) == ()
    if data is not None:
        with pytest.raises(CredentialUnknownError):
            store.get_credential(RP_ID, data.credential_id)


# An accepted registration


def test_attested_key_registered(pki: TestAttestationPki, store: Store) -> None:
    device = EmulatedAuthenticator(PIN, pki=pki)
    data = register(device)
    registered = verify(data, policy(pki), store)
    record = registered.record
    assert record == store.get_credential(RP_ID, data.credential_id)
    assert store.credentials_of(ID_NAT) == (record,)
    (stored,) = device.credentials
    assert record.credential_id == data.credential_id == stored.id
    assert record.user_handle == stored.user["id"]
    assert record.rp_id == RP_ID
    assert record.user_handle == data.user_handle
    assert record.alg == -7
    assert record.aaguid == EMULATOR_AAGUID
    assert record.sign_count == 0
    assert record.backup_eligible is False
    assert record.attestation == "packed/basic"
    assert record.certification is None
    assert record.id_nat == ID_NAT
    assert record.test is True
    assert record.created_at == NOW.timestamp()
    assert record.suspended is None
    assert registered.report.attested
    assert registered.level_cap is AssuranceLevel.SUBSTANTIAL
    assert registered.stored
    assert NOT_STORED not in registered.reasons


def test_registered_through_in_memory_hid(pki: TestAttestationPki, store: Store) -> None:
    # python-fido2's real CTAPHID client (INIT, continuations, keepalives) over the emulator's
    # device side: the bytes reach the verifier as a USB key would send them.
    framing = CtapHidFraming(EmulatedAuthenticator(PIN, pki=pki))
    try:
        device = CtapHidDevice(hid_descriptor(), InMemoryHidConnection(framing))
        registered = verify(register(device), policy(pki), store)
    finally:
        framing.close()
    assert registered.level_cap is AssuranceLevel.SUBSTANTIAL
    assert store.credentials_of(ID_NAT) == (registered.record,)


def test_dry_run_stores_nothing(pki: TestAttestationPki) -> None:
    data = register(EmulatedAuthenticator(PIN, pki=pki))
    registered = verify(data, policy(pki), None)
    assert not registered.stored
    assert NOT_STORED in registered.reasons
    assert registered.level_cap is AssuranceLevel.SUBSTANTIAL


def test_eddsa_key(pki: TestAttestationPki, store: Store) -> None:
    device = EmulatedAuthenticator(PIN, pki=pki, algorithms=(-8,))
    registered = verify(register(device, algorithms=(-8,)), policy(pki), store)
    assert registered.record.alg == -8


def test_backup_eligible_key_is_low(pki: TestAttestationPki, store: Store) -> None:
    data = register(EmulatedAuthenticator(PIN, pki=pki, backup_eligible=True))
    registered = verify(data, policy(pki), store)
    assert registered.record.backup_eligible is True
    assert registered.level_cap is AssuranceLevel.LOW
    allowed = verify(
        register(EmulatedAuthenticator(PIN, pki=pki, backup_eligible=True)),
        policy(pki, backup_eligible="allow"),
        None,
    )
    assert allowed.level_cap is AssuranceLevel.SUBSTANTIAL


@pytest.mark.parametrize("kind", ["self", "none"])
def test_unattested_accepted_under_optional_at_low(
    pki: TestAttestationPki, store: Store, kind: Any
) -> None:
    data = register(EmulatedAuthenticator(PIN, pki=pki, attestation=kind))
    registered = verify(data, policy(pki, attestation="optional"), store)
    assert registered.report.type == kind
    assert registered.record.attestation == ("packed/self" if kind == "self" else "none")
    assert registered.level_cap is AssuranceLevel.LOW
    assert store.credentials_of(ID_NAT) == (registered.record,)


def test_registered_twice_refused(pki: TestAttestationPki, store: Store) -> None:
    data = register(EmulatedAuthenticator(PIN, pki=pki))
    first = verify(data, policy(pki), store)
    with pytest.raises(MieError) as info:
        verify(data, policy(pki), store)
    assert info.value.code is ErrorCode.ALREADY_REGISTERED
    assert store.credentials_of(ID_NAT) == (first.record,)


# Each step failing once; the store stays empty


@dataclass
class Case:
    """One refusal: how the key is made, what is changed, and the code expected."""

    code: ErrorCode
    device: dict[str, Any] = field(default_factory=dict)
    faults: dict[str, Any] = field(default_factory=dict)
    rules: dict[str, Any] = field(default_factory=dict)
    mutate: Callable[[RegistrationData], RegistrationData] | None = None
    expected: Expected | None = None
    message: str | None = None


def _attestation(data: RegistrationData) -> dict[str, Any]:
    obj = cbor.decode(data.attestation_object, canonical=False)
    assert isinstance(obj, dict)
    return obj


def _with_object(change: Callable[[dict[str, Any]], object]) -> Callable[..., RegistrationData]:
    def mutate(data: RegistrationData) -> RegistrationData:
        obj = change(_attestation(data))
        raw = obj if isinstance(obj, bytes) else cbor.encode(obj)
        return dataclasses.replace(data, attestation_object=raw)

    return mutate


def _with_client_data(old: str, new: str) -> Callable[[RegistrationData], RegistrationData]:
    def mutate(data: RegistrationData) -> RegistrationData:
        text = data.client_data_json.decode()
        assert old in text
        return dataclasses.replace(data, client_data_json=text.replace(old, new).encode())

    return mutate


def _raw(data: RegistrationData, change: Callable[[bytes], bytes]) -> RegistrationData:
    return dataclasses.replace(data, attestation_object=change(data.attestation_object))


def _duplicate_fmt(data: RegistrationData) -> RegistrationData:
    obj = _attestation(data)
    text = cbor.encode("fmt") + cbor.encode(obj["fmt"])
    body = (
        text
        + text
        + cbor.encode("authData")
        + cbor.encode(obj["authData"])
        + cbor.encode("attStmt")
        + cbor.encode(obj["attStmt"])
    )
    return dataclasses.replace(data, attestation_object=b"\xa4" + body)


def _float_fmt(data: RegistrationData) -> RegistrationData:
    obj = _attestation(data)
    body = (
        cbor.encode("fmt")
        + b"\xf9\x3e\x00"  # half-precision 1.5: CBOR floats are refused
        + cbor.encode("authData")
        + cbor.encode(obj["authData"])
        + cbor.encode("attStmt")
        + cbor.encode(obj["attStmt"])
    )
    return dataclasses.replace(data, attestation_object=b"\xa3" + body)


def _indefinite(data: RegistrationData) -> RegistrationData:
    raw = data.attestation_object
    assert raw[0] == 0xA3
    return dataclasses.replace(data, attestation_object=b"\xbf" + raw[1:] + b"\xff")


def _fido_u2f(data: RegistrationData) -> RegistrationData:
    obj = _attestation(data)
    obj["fmt"] = "fido-u2f"
    obj["attStmt"] = {"sig": obj["attStmt"]["sig"], "x5c": obj["attStmt"]["x5c"][:1]}
    return dataclasses.replace(data, attestation_object=cbor.encode(obj))


def _other_nonce() -> Expected:
    return Expected(bytes(32), ORIGIN)


CASES: dict[str, Case] = {
    # 1. the data against what the relying party expects
    "nonce": Case(ErrorCode.NONCE_MISMATCH, expected=_other_nonce()),
    "origin": Case(ErrorCode.ORIGIN_MISMATCH, expected=Expected(NONCE, "https://evil.example")),
    "rp_id-of-data": Case(ErrorCode.RP_ID_MISMATCH, rules={"rp_id": "other.chu-exemple.fr"}),
    # 2. the client data
    "client-data-type": Case(
        ErrorCode.MALFORMED, mutate=_with_client_data("webauthn.create", "webauthn.get")
    ),
    "client-data-challenge": Case(
        ErrorCode.NONCE_MISMATCH,
        mutate=lambda d: dataclasses.replace(d, nonce=bytes(32)),
        expected=_other_nonce(),
    ),
    "client-data-origin": Case(
        ErrorCode.ORIGIN_MISMATCH,
        mutate=lambda d: dataclasses.replace(d, origin="https://other.chu-exemple.fr"),
        expected=Expected(NONCE, "https://other.chu-exemple.fr"),
    ),
    "client-data-cross-origin": Case(
        ErrorCode.MALFORMED, mutate=_with_client_data('"crossOrigin":false', '"crossOrigin":true')
    ),
    # 3. the attestation object (the D3 table and the map's shape)
    "cbor-trailing-byte": Case(ErrorCode.MALFORMED, mutate=lambda d: _raw(d, lambda r: r + b"\0")),
    "cbor-truncated": Case(ErrorCode.MALFORMED, mutate=lambda d: _raw(d, lambda r: r[:-1])),
    "cbor-indefinite-map": Case(ErrorCode.MALFORMED, mutate=_indefinite),
    "cbor-duplicate-key": Case(ErrorCode.MALFORMED, mutate=_duplicate_fmt),
    "cbor-tag": Case(ErrorCode.MALFORMED, mutate=lambda d: _raw(d, lambda r: b"\xd8\x18" + r)),
    "cbor-float": Case(ErrorCode.MALFORMED, mutate=_float_fmt),
    "not-a-map": Case(ErrorCode.MALFORMED, mutate=_with_object(lambda o: [o["fmt"]])),
    "extra-member": Case(ErrorCode.MALFORMED, mutate=_with_object(lambda o: {**o, "ext": 1})),
    "missing-attStmt": Case(
        ErrorCode.MALFORMED, mutate=_with_object(lambda o: {"fmt": o["fmt"], "authData": b"x"})
    ),
    "fmt-not-text": Case(ErrorCode.MALFORMED, mutate=_with_object(lambda o: {**o, "fmt": b"x"})),
    "authData-not-bytes": Case(
        ErrorCode.MALFORMED, mutate=_with_object(lambda o: {**o, "authData": "x"})
    ),
    "attStmt-not-map": Case(
        ErrorCode.MALFORMED, mutate=_with_object(lambda o: {**o, "attStmt": []})
    ),
    # 4. the authenticator data
    "authData-trailing-byte": Case(
        ErrorCode.MALFORMED,
        mutate=_with_object(lambda o: {**o, "authData": o["authData"] + b"\0"}),
        message="trailing",
    ),
    "authData-without-credential": Case(
        ErrorCode.MALFORMED,
        mutate=_with_object(
            lambda o: {**o, "authData": bytes([*o["authData"][:32], 0x05, 0, 0, 0, 0])}
        ),
    ),
    "rp_id-hash": Case(ErrorCode.RP_ID_MISMATCH, faults={"other_rp": True}),
    "up-clear": Case(ErrorCode.USER_NOT_PRESENT, faults={"flags_mask": UP}),
    "uv-clear": Case(ErrorCode.USER_NOT_VERIFIED, faults={"flags_mask": UV}),
    "algorithm-not-in-policy": Case(ErrorCode.ATTESTATION_REFUSED, rules={"algorithms": (-8,)}),
    "credential-id-differs": Case(
        ErrorCode.MALFORMED, mutate=lambda d: dataclasses.replace(d, credential_id=b"\x01" * 48)
    ),
    "backup-eligible-refused": Case(
        ErrorCode.ATTESTATION_REFUSED,
        device={"backup_eligible": True},
        rules={"backup_eligible": "refuse"},
    ),
    # 5. the attestation
    "self-under-required": Case(ErrorCode.ATTESTATION_REFUSED, device={"attestation": "self"}),
    "none-under-required": Case(ErrorCode.ATTESTATION_REFUSED, device={"attestation": "none"}),
    "unsupported-fmt": Case(ErrorCode.ATTESTATION_REFUSED, mutate=_fido_u2f),
    "attestation-signature": Case(ErrorCode.SIGNATURE_INVALID, faults={"bad_signature": True}),
    "unknown-aaguid": Case(
        ErrorCode.AAGUID_UNKNOWN,
        device={"aaguid": OTHER_AAGUID, "fault_aaguid": OTHER_AAGUID},
    ),
    "self-unknown-aaguid-under-optional": Case(
        ErrorCode.AAGUID_UNKNOWN,
        device={"attestation": "self", "aaguid": OTHER_AAGUID},
        rules={"attestation": "optional"},
    ),
    "no-root-for-the-model": Case(ErrorCode.UNTRUSTED, rules={"attestation_roots": ()}),
}
PKI_FAULTS = {
    Fault.EXPIRED_INTERMEDIATE: ErrorCode.EXPIRED,
    Fault.INTERMEDIATE_NOT_CA: ErrorCode.NOT_CA,
    Fault.PATH_LENGTH: ErrorCode.PATH_LENGTH,
    Fault.UNKNOWN_ROOT: ErrorCode.UNTRUSTED,
    Fault.EXPIRED_LEAF: ErrorCode.EXPIRED,
    Fault.LEAF_NOT_YET_VALID: ErrorCode.NOT_YET_VALID,
    Fault.LEAF_BAD_SIGNATURE: ErrorCode.BAD_SIGNATURE,
    Fault.LEAF_IS_CA: ErrorCode.ATTESTATION_INVALID,
    Fault.LEAF_WITHOUT_BASIC_CONSTRAINTS: ErrorCode.ATTESTATION_INVALID,
    Fault.LEAF_WRONG_OU: ErrorCode.ATTESTATION_INVALID,
    Fault.LEAF_WITHOUT_CN: ErrorCode.ATTESTATION_INVALID,
    Fault.LEAF_WITHOUT_AAGUID: ErrorCode.ATTESTATION_INVALID,
    Fault.LEAF_OTHER_AAGUID: ErrorCode.ATTESTATION_INVALID,
    Fault.LEAF_AAGUID_CRITICAL: ErrorCode.ATTESTATION_INVALID,
    Fault.LEAF_AAGUID_NOT_OCTET_STRING: ErrorCode.ATTESTATION_INVALID,
}
for _fault, _code in PKI_FAULTS.items():
    CASES[f"chain-fault-{_fault.value}"] = Case(_code, device={"fault": _fault})


def _device(pki: TestAttestationPki, options: dict[str, Any]) -> EmulatedAuthenticator:
    options = dict(options)
    fault = options.pop("fault", None)
    aaguid = options.pop("fault_aaguid", None)
    if fault is not None:
        pki = TestAttestationPki.generate(now=NOW, fault=fault)
    elif aaguid is not None:
        pki = TestAttestationPki.generate(now=NOW, aaguid=aaguid)
    return EmulatedAuthenticator(PIN, pki=pki, **options)


@pytest.mark.parametrize("name", list(CASES))
def test_refusal_leaves_no_row(pki: TestAttestationPki, store: Store, name: str) -> None:
    case = CASES[name]
    device = _device(pki, case.device)
    for hook, value in case.faults.items():
        setattr(device.faults, hook, value)
    data = register(device)
    if case.mutate is not None:
        data = case.mutate(data)
    with pytest.raises(MieError) as info:
        verify(data, policy(pki, **case.rules), store, expected=case.expected)
    assert info.value.code is case.code, info.value
    if case.message is not None:
        assert case.message in str(info.value)
    if name.startswith("chain-fault") and case.code is not ErrorCode.ATTESTATION_INVALID:
        assert str(info.value).startswith(CHAIN_PREFIX)
    assert_empty(store, data)


MESSAGES = {
    "nonce": "registration was made for another nonce",
    "origin": "registration was made for origin",
    "rp_id-of-data": "names relying party",
    "client-data-type": "is not 'webauthn.create'",
    "client-data-challenge": "challenge is not the nonce",
    "client-data-origin": "client data origin",
    "client-data-cross-origin": "crossOrigin is true",
    "extra-member": "not exactly fmt, authData and attStmt",
    "missing-attStmt": "not exactly fmt, authData and attStmt",
    "not-a-map": "not a CBOR map",
    "fmt-not-text": "fmt is not a text string",
    "authData-not-bytes": "authData is not a byte string",
    "attStmt-not-map": "attStmt is not a map",
    "authData-without-credential": "no attested credential",
    "rp_id-hash": "another relying party",
    "up-clear": "UP clear",
    "uv-clear": "UV clear",
    "algorithm-not-in-policy": "ES256 is not accepted",
    "credential-id-differs": "credential id is not the one",
    "backup-eligible-refused": "Backup-eligible",
    "self-under-required": "Self attestation refused",
    "none-under-required": "None attestation refused",
    "unsupported-fmt": "'fido-u2f' is not supported",
    "unknown-aaguid": "not in the allowlist",
    "self-unknown-aaguid-under-optional": "not in the allowlist",
    "no-root-for-the-model": "no attestation root is listed",
}


def test_refusals_fail_at_their_step(pki: TestAttestationPki) -> None:
    # The code alone could come from an earlier step: the message names the step.
    for name, message in MESSAGES.items():
        case = CASES[name]
        device = _device(pki, case.device)
        for hook, value in case.faults.items():
            setattr(device.faults, hook, value)
        data = register(device)
        if case.mutate is not None:
            data = case.mutate(data)
        with pytest.raises(MieError, match=message):
            verify(data, policy(pki, **case.rules), None, expected=case.expected)


def test_every_pki_fault_is_a_case() -> None:
    assert set(PKI_FAULTS) == set(Fault)


# FIDO metadata


@pytest.fixture(scope="module")
def mds() -> TestMds:
    return TestMds.generate(now=NOW)


def metadata_for(
    mds: TestMds, pki: TestAttestationPki, statuses: Any = (("FIDO_CERTIFIED_L1", "2026-01-01"),)
) -> MetadataIndex:
    entry = mds.entry(EMULATOR_AAGUID, [pki.root.certificate], statuses=statuses)
    return MetadataIndex.load(mds.blob([entry]), root=mds.root, at=NOW)


def metadata_policy(pki: TestAttestationPki, **changes: Any) -> FidoPolicy:
    return FidoPolicy(RP_ID, metadata=MetadataPolicy(Path("unused.jwt"), **changes))


def test_metadata_registration(pki: TestAttestationPki, mds: TestMds, store: Store) -> None:
    data = register(EmulatedAuthenticator(PIN, pki=pki))
    registered = verify(data, metadata_policy(pki), store, metadata=metadata_for(mds, pki))
    assert registered.record.certification == "L1"
    assert registered.report.entry is not None
    assert registered.report.allowed is None
    assert registered.level_cap is AssuranceLevel.SUBSTANTIAL
    assert store.credentials_of(ID_NAT) == (registered.record,)


def _leaf_der(pki: TestAttestationPki) -> bytes:
    return pki.x5c[0]


METADATA_CASES: dict[str, tuple[Any, dict[str, Any], ErrorCode]] = {
    "revoked": (
        (("FIDO_CERTIFIED_L1", "2026-01-01"), ("REVOKED", "2026-06-01")),
        {},
        ErrorCode.METADATA_STATUS,
    ),
    "user-verification-bypass": (
        (("FIDO_CERTIFIED_L1", "2026-01-01"), ("USER_VERIFICATION_BYPASS", "2026-06-01")),
        {},
        ErrorCode.METADATA_STATUS,
    ),
    "compromise-of-this-chain": (
        "leaf",
        {},
        ErrorCode.METADATA_STATUS,
    ),
    # The report names the model's attestation root: the key's x5c does not carry it, the
    # verified path ends at it.
    "compromise-of-this-root": (
        "root",
        {},
        ErrorCode.METADATA_STATUS,
    ),
    "l1-below-l2": (
        (("FIDO_CERTIFIED_L1", "2026-01-01"),),
        {"min_certification": "L2"},
        ErrorCode.METADATA_STATUS,
    ),
    "not-listed": (None, {}, ErrorCode.AAGUID_UNKNOWN),
}


@pytest.mark.parametrize("name", list(METADATA_CASES))
def test_metadata_refusal_leaves_no_row(
    pki: TestAttestationPki, mds: TestMds, store: Store, name: str
) -> None:
    statuses, changes, code = METADATA_CASES[name]
    if statuses == "leaf":
        statuses = (
            ("FIDO_CERTIFIED_L1", "2026-01-01"),
            ("ATTESTATION_KEY_COMPROMISE", "2026-06-01", _leaf_der(pki)),
        )
    if statuses == "root":
        root_der = pki.root.certificate.public_bytes(serialization.Encoding.DER)
        assert root_der not in pki.x5c
        statuses = (
            ("FIDO_CERTIFIED_L1", "2026-01-01"),
            ("ATTESTATION_KEY_COMPROMISE", "2026-06-01", root_der),
        )
    if statuses is None:
        other = mds.entry(OTHER_AAGUID, [pki.root.certificate])
        index = MetadataIndex.load(mds.blob([other]), root=mds.root, at=NOW)
    else:
        index = metadata_for(mds, pki, statuses)
    data = register(EmulatedAuthenticator(PIN, pki=pki))
    with pytest.raises(MieError) as info:
        verify(data, metadata_policy(pki, **changes), store, metadata=index)
    assert info.value.code is code, info.value
    assert_empty(store, data)


def test_compromise_of_another_batch_does_not_refuse(
    pki: TestAttestationPki, mds: TestMds, store: Store
) -> None:
    other_leaf = TestAttestationPki.generate(now=NOW, fault=Fault.LEAF_WRONG_OU).x5c[0]
    statuses = (
        ("FIDO_CERTIFIED_L1", "2026-01-01"),
        ("ATTESTATION_KEY_COMPROMISE", "2026-06-01", other_leaf),
    )
    data = register(EmulatedAuthenticator(PIN, pki=pki))
    registered = verify(
        data, metadata_policy(pki), store, metadata=metadata_for(mds, pki, statuses)
    )
    assert registered.stored


def test_metadata_roots_listed_for_the_model(
    pki: TestAttestationPki, mds: TestMds, store: Store
) -> None:
    # The MDS entry lists another root for the model: the emulator's chain does not end there.
    other = TestAttestationPki.generate(now=NOW, fault=Fault.UNKNOWN_ROOT).issuing_root
    entry = mds.entry(EMULATOR_AAGUID, [other.certificate])
    index = MetadataIndex.load(mds.blob([entry]), root=mds.root, at=NOW)
    data = register(EmulatedAuthenticator(PIN, pki=pki))
    with pytest.raises(MieError) as info:
        verify(data, metadata_policy(pki), store, metadata=index)
    assert info.value.code is ErrorCode.UNTRUSTED
    assert_empty(store, data)


# RegistrationData: JSON, W3C JSON


@pytest.fixture(scope="module")
def sample(pki: TestAttestationPki) -> RegistrationData:
    return register(EmulatedAuthenticator(PIN, pki=pki))


def test_json_round_trip(sample: RegistrationData) -> None:
    obj = sample.to_json()
    assert obj["type"] == "webauthn-registration"
    assert obj["credential_id"] == sample.credential_id.hex()
    assert RegistrationData.from_json(json.loads(json.dumps(obj))) == sample


def test_webauthn_round_trip(sample: RegistrationData) -> None:
    obj = sample.to_webauthn()
    again = RegistrationData.from_webauthn(
        obj,
        nonce=sample.nonce,
        origin=sample.origin,
        rp_id=sample.rp_id,
        user_handle=sample.user_handle,
    )
    assert again == sample
    parsed = RegistrationResponse.from_dict(obj)
    assert bytes(parsed.raw_id) == sample.credential_id
    assert bytes(parsed.response.attestation_object) == sample.attestation_object


def test_webauthn_json_read_by_py_webauthn(
    pki: TestAttestationPki, sample: RegistrationData
) -> None:
    from webauthn import verify_registration_response
    from webauthn.helpers.structs import AttestationFormat

    verified = verify_registration_response(
        credential=sample.to_webauthn(),
        expected_challenge=sample.nonce,
        expected_origin=ORIGIN,
        expected_rp_id=RP_ID,
        require_user_verification=True,
        pem_root_certs_bytes_by_fmt={AttestationFormat.PACKED: [pki.root_pem]},
    )
    assert verified.credential_id == sample.credential_id


def _json_bad(sample: RegistrationData) -> list[tuple[str, Any, str]]:
    good = sample.to_json()
    return [
        ("type", {**good, "type": "webauthn-assertion"}, "type is not"),
        ("extra", {**good, "level": "high"}, "unexpected field 'level'"),
        ("missing", {k: v for k, v in good.items() if k != "user_handle"}, "no 'user_handle'"),
        ("upper hex", {**good, "nonce": good["nonce"].upper()}, "not lower-case hex"),
        ("odd hex", {**good, "nonce": good["nonce"][:-1]}, "not lower-case hex"),
        ("short nonce", {**good, "nonce": "00" * 15}, "nonce of 15 bytes"),
        ("long object", {**good, "attestation_object": "00" * 16385}, "over 16384 bytes"),
        ("empty user handle", {**good, "user_handle": ""}, "user_handle of 0 bytes"),
        ("origin", {**good, "origin": "https://IAM.example"}, "not https://host"),
        ("origin type", {**good, "origin": 5}, "origin is not a string"),
        ("rp_id", {**good, "rp_id": "IAM.example"}, "not a lower-case host"),
        ("transports", {**good, "transports": "usb"}, "transports is not an array"),
        ("transport", {**good, "transports": ["USB"]}, "not a transport name"),
        ("transport twice", {**good, "transports": ["usb", "usb"]}, "named twice"),
        ("not object", [], "not a JSON object"),
    ]


def test_json_strictness(sample: RegistrationData) -> None:
    for name, obj, message in _json_bad(sample):
        with pytest.raises(EvidenceFormatError, match=message):
            RegistrationData.from_json(obj)
        assert name


def test_webauthn_strictness(sample: RegistrationData) -> None:
    good = sample.to_webauthn()
    response = good["response"]
    bad: list[tuple[dict[str, Any], str]] = [
        ({**good, "id": good["id"][:-1] + "A"}, "id is not its rawId"),
        ({**good, "type": "password"}, "type is not 'public-key'"),
        ({**good, "extra": 1}, "unexpected member 'extra'"),
        ({**good, "authenticatorAttachment": "usb"}, "authenticatorAttachment"),
        ({**good, "clientExtensionResults": []}, "clientExtensionResults"),
        ({k: v for k, v in good.items() if k != "response"}, "no 'response'"),
        (
            {**good, "response": {**response, "clientDataJSON": response["clientDataJSON"] + "="}},
            "not unpadded base64url",
        ),
        ({**good, "response": {**response, "attestationObject": "A"}}, "not base64url"),
        ({**good, "response": {**response, "userHandle": "AA"}}, "unexpected member"),
        ({**good, "response": {**response, "transports": "usb"}}, "transports are not"),
        ({**good, "rawId": 5, "id": 5}, "rawId is not a string"),
    ]
    for obj, message in bad:
        with pytest.raises(EvidenceFormatError, match=message):
            RegistrationData.from_webauthn(
                obj, nonce=sample.nonce, origin=ORIGIN, rp_id=RP_ID, user_handle=b"u" * 16
            )
    not_canonical = good["response"]["clientDataJSON"][:-1] + "B"
    with pytest.raises(EvidenceFormatError):
        RegistrationData.from_webauthn(
            {**good, "response": {**response, "clientDataJSON": not_canonical}},
            nonce=sample.nonce,
            origin=ORIGIN,
            rp_id=RP_ID,
            user_handle=b"u" * 16,
        )


def test_constructor_checks(sample: RegistrationData) -> None:
    with pytest.raises(TypeError):
        dataclasses.replace(sample, nonce="00" * 16)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="user_handle of 65 bytes"):
        dataclasses.replace(sample, user_handle=b"u" * 65)
    kept = dataclasses.replace(sample, user_handle=bytearray(b"u" * 16))  # type: ignore[arg-type]
    assert isinstance(kept.user_handle, bytes)


def test_verify_arguments(pki: TestAttestationPki, sample: RegistrationData) -> None:
    with pytest.raises(TypeError):
        verify(sample.to_json(), policy(pki), None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_registration(
            sample,
            Expected(NONCE, ORIGIN),
            identity=identity(),
            policy=policy(pki),
            store=None,
            at=NOW.replace(tzinfo=None),
        )


def test_client_data_hash_binds_the_attestation(pki: TestAttestationPki, store: Store) -> None:
    # The client data is what the attestation signed: changing a member that no step reads
    # (an extra one) still breaks the signature.
    data = register(EmulatedAuthenticator(PIN, pki=pki))
    text = data.client_data_json.decode()
    changed = dataclasses.replace(data, client_data_json=(text[:-1] + ',"other":"x"}').encode())
    assert (
        hashlib.sha256(changed.client_data_json).digest()
        != hashlib.sha256(data.client_data_json).digest()
    )
    with pytest.raises(MieError) as info:
        verify(changed, policy(pki), store)
    assert info.value.code is ErrorCode.SIGNATURE_INVALID
    assert_empty(store, data)
