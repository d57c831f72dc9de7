"""Done-when line 1 (in-memory HID): python-fido2's ``Fido2Client`` drives the emulated key
through its own CTAPHID code (``CtapHidDevice`` over :class:`~mie.emulation.ctaphid.
InMemoryHidConnection`), and the same registration and assertion are accepted by four
independent verifiers: python-fido2's ``Fido2Server``, py_webauthn, and mie's
``verify_registration`` and ``FidoVerifier``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fido2.attestation.base import AttestationVerifier
from fido2.hid import CtapHidDevice
from fido2.server import Fido2Server
from fido2.webauthn import (
    AttestationConveyancePreference,
    AttestedCredentialData,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    UserVerificationRequirement,
)
from webauthn import verify_authentication_response, verify_registration_response
from webauthn.helpers.exceptions import InvalidAuthenticationResponse
from webauthn.helpers.structs import AttestationFormat

from mie.core.errors import SignatureInvalidError
from mie.emulation.ctap2 import EmulatedAuthenticator
from mie.emulation.ctaphid import CtapHidFraming, InMemoryHidConnection, hid_descriptor
from mie.emulation.fido_pki import EMULATOR_AAGUID, TestAttestationPki
from mie.evidence import Evidence
from mie.fido.allowlist import AaguidAllowlist, AllowedKey
from mie.fido.assertion import FidoVerifier
from mie.fido.authenticator import Fido2Authenticator
from mie.fido.evidence import WebAuthnAssertionEvidence
from mie.fido.policy import FidoPolicy
from mie.fido.registration import RegistrationData, verify_registration
from mie.policy import AssuranceLevel
from mie.request import AuthRequest, StaticPin
from mie.store.memory import MemoryStore
from mie.trust.identity import Identity
from mie.verification import Expected, login, verify_evidence
from tests.fido.assertion_kit import ID_NAT, ORIGIN, RP_ID, client

USER_ID = bytes(range(16))


class _TestRoot(AttestationVerifier):
    """python-fido2's attestation check, trusting the TEST root (it checks the packed
    statement and the chain itself)."""

    def __init__(self, root: bytes) -> None:
        super().__init__()
        self.root = root

    def ca_lookup(self, attestation_result: Any, auth_data: Any) -> bytes:
        return self.root


@pytest.fixture(scope="module")
def pki() -> TestAttestationPki:
    return TestAttestationPki.generate()


def _hid(emulator: EmulatedAuthenticator) -> CtapHidDevice:
    return CtapHidDevice(hid_descriptor(), InMemoryHidConnection(CtapHidFraming(emulator)))


def _policy(pki: TestAttestationPki) -> FidoPolicy:
    # The model allowlisted with the TEST root as its own (plan D6: a root listed for it).
    key = AllowedKey(EMULATOR_AAGUID, "mie TEST emulated key", roots=(pki.root.certificate,))
    return FidoPolicy(RP_ID, allowlist=AaguidAllowlist((key,)))


def _identity() -> Identity:
    return Identity(ID_NAT, "RPPS", ID_NAT[1:], None, None, None, None, True)


@pytest.mark.parametrize("algorithm", [-7, -8])
def test_one_credential_four_verifiers(pki: TestAttestationPki, algorithm: int) -> None:
    emulator = EmulatedAuthenticator("1234", pki=pki, algorithms=(algorithm,))
    device = _hid(emulator)
    fido2_client = client(device)
    server = Fido2Server(
        PublicKeyCredentialRpEntity(id=RP_ID, name="CHU exemple"),
        attestation=AttestationConveyancePreference.DIRECT,
        verify_attestation=_TestRoot(pki.root.der),
    )

    # Registration: Fido2Client over CTAPHID, then python-fido2's server...
    options, state = server.register_begin(
        PublicKeyCredentialUserEntity(name="dr.exemple", id=USER_ID, display_name="Dr Exemple"),
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    challenge = options.public_key.challenge
    registration = fido2_client.make_credential(options.public_key)
    server_data = server.register_complete(state, registration)
    credential = server_data.credential_data
    assert isinstance(credential, AttestedCredentialData)
    assert credential.aaguid == EMULATOR_AAGUID

    # ... py_webauthn on the same JSON, with the TEST root for packed (full chain check) ...
    registration_json = json.dumps(dict(registration))
    verified = verify_registration_response(
        credential=registration_json,
        expected_challenge=challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        require_user_verification=True,
        pem_root_certs_bytes_by_fmt={AttestationFormat.PACKED: [pki.root.pem]},
    )
    assert verified.credential_id == credential.credential_id
    assert verified.fmt == AttestationFormat.PACKED and verified.user_verified

    # ... and mie's verify_registration, which stores the credential.
    store = MemoryStore()
    data = RegistrationData.from_webauthn(
        json.loads(registration_json),
        nonce=challenge,
        origin=ORIGIN,
        rp_id=RP_ID,
        user_handle=USER_ID,
    )
    policy = _policy(pki)
    registered = verify_registration(
        data, Expected(challenge, ORIGIN), identity=_identity(), policy=policy, store=store
    )
    assert registered.stored and registered.level_cap is AssuranceLevel.SUBSTANTIAL
    assert registered.record.credential_id == credential.credential_id
    assert registered.record.public_key == verified.credential_public_key

    # Authentication: one assertion through Fido2Client, accepted by all three servers.
    request, auth_state = server.authenticate_begin(
        [credential], user_verification=UserVerificationRequirement.REQUIRED
    )
    nonce = request.public_key.challenge
    assertion = fido2_client.get_assertion(request.public_key).get_response(0)
    server.authenticate_complete(auth_state, [credential], assertion)

    assertion_json = json.dumps(dict(assertion))
    checked = verify_authentication_response(
        credential=assertion_json,
        expected_challenge=nonce,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        credential_public_key=verified.credential_public_key,
        credential_current_sign_count=verified.sign_count,
        require_user_verification=True,
    )
    assert checked.new_sign_count == 1 and checked.user_verified

    evidence = WebAuthnAssertionEvidence.from_webauthn(
        json.loads(assertion_json), nonce=nonce, origin=ORIGIN, rp_id=RP_ID
    )
    result = FidoVerifier(policy, store).verify(evidence, Expected(nonce, ORIGIN))
    assert result.valid and result.level is AssuranceLevel.SUBSTANTIAL
    assert result.identity is not None and result.identity.id_nat == ID_NAT
    assert store.get_credential(RP_ID, credential.credential_id).sign_count == 1

    # And mie's evidence, written back as W3C JSON, is what the others read.
    webauthn_json = json.dumps(evidence.to_webauthn())
    again = verify_authentication_response(
        credential=webauthn_json,
        expected_challenge=nonce,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        credential_public_key=verified.credential_public_key,
        credential_current_sign_count=0,
        require_user_verification=True,
    )
    assert again.new_sign_count == 1


def test_the_verifiers_agree_on_a_broken_signature(pki: TestAttestationPki) -> None:
    emulator = EmulatedAuthenticator("1234", pki=pki)
    device = _hid(emulator)
    server = Fido2Server(
        PublicKeyCredentialRpEntity(id=RP_ID, name="CHU exemple"),
        attestation=AttestationConveyancePreference.DIRECT,
        verify_attestation=_TestRoot(pki.root.der),
    )
    options, state = server.register_begin(
        PublicKeyCredentialUserEntity(name="dr.exemple", id=USER_ID, display_name="Dr Exemple"),
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    registration = client(device).make_credential(options.public_key)
    credential = server.register_complete(state, registration).credential_data
    assert credential is not None
    store = MemoryStore()
    data = RegistrationData.from_webauthn(
        json.loads(json.dumps(dict(registration))),
        nonce=options.public_key.challenge,
        origin=ORIGIN,
        rp_id=RP_ID,
        user_handle=USER_ID,
    )
    policy = _policy(pki)
    verify_registration(
        data,
        Expected(options.public_key.challenge, ORIGIN),
        identity=_identity(),
        policy=policy,
        store=store,
    )
    emulator.faults.bad_signature = True
    request, auth_state = server.authenticate_begin(
        [credential], user_verification=UserVerificationRequirement.REQUIRED
    )
    nonce = request.public_key.challenge
    assertion = client(device).get_assertion(request.public_key).get_response(0)
    with pytest.raises(ValueError):
        server.authenticate_complete(auth_state, [credential], assertion)
    with pytest.raises(InvalidAuthenticationResponse):
        verify_authentication_response(
            credential=json.dumps(dict(assertion)),
            expected_challenge=nonce,
            expected_rp_id=RP_ID,
            expected_origin=ORIGIN,
            credential_public_key=store.get_credential(RP_ID, credential.credential_id).public_key,
            credential_current_sign_count=0,
            require_user_verification=True,
        )
    evidence = WebAuthnAssertionEvidence.from_webauthn(
        dict(assertion), nonce=nonce, origin=ORIGIN, rp_id=RP_ID
    )
    with pytest.raises(SignatureInvalidError):
        FidoVerifier(policy, store).verify(evidence, Expected(nonce, ORIGIN))


def test_mies_own_client_and_verifier_over_hid_and_login(pki: TestAttestationPki) -> None:
    # mie's client (Fido2Authenticator over python-fido2) on the same CTAPHID device, mie's
    # registration verifier, then login(): the device side and the verifier in one process.
    emulator = EmulatedAuthenticator("1234", pki=pki)
    key = Fido2Authenticator(_hid(emulator), rp_id=RP_ID)
    enrolment = AuthRequest.new(ORIGIN)
    data = key.register(
        enrolment, user=StaticPin("1234"), user_name="dr.exemple", display_name="Dr Exemple"
    )
    assert isinstance(data, RegistrationData)
    policy, store = _policy(pki), MemoryStore()
    registered = verify_registration(
        data, enrolment, identity=_identity(), policy=policy, store=store
    )
    assert registered.level_cap is AssuranceLevel.SUBSTANTIAL
    fido = FidoVerifier(policy, store)
    signing_in = Fido2Authenticator(
        _hid(emulator), rp_id=RP_ID, credentials=(registered.record.credential_id,)
    )
    result = login(
        signing_in, AuthRequest.new(ORIGIN), user=StaticPin("1234"), verifier=None, fido=fido
    )
    assert result.level is AssuranceLevel.SUBSTANTIAL
    assert result.identity is not None and result.identity.id_nat == ID_NAT
    # Through verify_evidence too, with the evidence saved as JSON and read back.
    request = AuthRequest.new(ORIGIN)
    evidence = signing_in.authenticate(request, user=StaticPin("1234"))
    saved = Evidence.from_json(json.loads(json.dumps(evidence.to_json())))
    again = verify_evidence(saved, request, verifier=None, fido=fido)
    assert again.level is AssuranceLevel.SUBSTANTIAL
    assert store.get_credential(RP_ID, registered.record.credential_id).sign_count == 2
