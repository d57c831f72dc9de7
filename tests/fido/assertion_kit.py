"""Credentials and assertions for the verifier's tests, made by the emulated key through
python-fido2's own client (``Fido2Client``), the way a browser would: the key signs real
authenticator data over real client data, nothing is built by hand.

:func:`enrol` makes the :class:`~mie.store.base.CredentialRecord` with ``verify_registration``
(a dry run under a lenient policy), as an IAM's enrolment desk would.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.webauthn import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialCreationOptions,
    PublicKeyCredentialDescriptor,
    PublicKeyCredentialParameters,
    PublicKeyCredentialRequestOptions,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialType,
    PublicKeyCredentialUserEntity,
    RegistrationResponse,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from mie.emulation.ctap2 import EmulatedAuthenticator
from mie.emulation.fido_pki import EMULATOR_AAGUID, TestAttestationPki
from mie.fido.allowlist import AaguidAllowlist, AllowedKey
from mie.fido.evidence import WebAuthnAssertionEvidence
from mie.fido.policy import FidoPolicy
from mie.fido.registration import RegistrationData, verify_registration
from mie.store.base import CredentialRecord
from mie.trust.identity import Identity
from mie.verification import Expected

PIN = "1234"
RP_ID = "iam.chu-exemple.fr"
ORIGIN = "https://iam.chu-exemple.fr"
ID_NAT = "810100099877"
"""An RPPS idNat (the README's demonstration professional)."""
UV_BIT, BE_BIT = 0x04, 0x08


class Pin(UserInteraction):
    """Answers python-fido2's PIN request with a fixed PIN."""

    def __init__(self, pin: str = PIN) -> None:
        self.pin = pin

    def request_pin(self, permissions: Any, rp_id: str | None) -> str:
        return self.pin


def client(device: Any, *, origin: str = ORIGIN, pin: str = PIN) -> Fido2Client:
    """:return: python-fido2's client on ``device``, collecting client data for ``origin``."""
    return Fido2Client(device, DefaultClientDataCollector(origin), user_interaction=Pin(pin))


ALLOWLIST = AaguidAllowlist((AllowedKey(EMULATOR_AAGUID, "mie TEST emulated key", test=True),))
"""The emulator's TEST model, allowlisted."""


def policy(**changes: Any) -> FidoPolicy:
    """:return: a policy for :data:`RP_ID` allowlisting the emulator's model, the rest at its
    defaults (attestation required), with ``changes``."""
    values: dict[str, Any] = {"rp_id": RP_ID, "allowlist": ALLOWLIST}
    values.update(changes)
    return FidoPolicy(**values)


def register(
    device: Any,
    *,
    rp_id: str = RP_ID,
    origin: str = ORIGIN,
    uv: UserVerificationRequirement = UserVerificationRequirement.REQUIRED,
    user_id: bytes | None = None,
    resident_key: bool = False,
) -> RegistrationResponse:
    """Register a new credential on ``device`` through ``Fido2Client``, packed attestation
    asked (the key gives what it is configured for)."""
    options = PublicKeyCredentialCreationOptions(
        rp=PublicKeyCredentialRpEntity(id=rp_id, name="CHU exemple"),
        user=PublicKeyCredentialUserEntity(
            id=user_id or os.urandom(16), name="dr.exemple", display_name="Dr Exemple"
        ),
        challenge=os.urandom(32),
        pub_key_cred_params=[
            PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=-7),
            PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=-8),
        ],
        authenticator_selection=AuthenticatorSelectionCriteria(
            user_verification=uv,
            resident_key=(
                ResidentKeyRequirement.REQUIRED
                if resident_key
                else ResidentKeyRequirement.DISCOURAGED
            ),
        ),
        attestation=AttestationConveyancePreference.DIRECT,
    )
    return client(device, origin=origin).make_credential(options)


@dataclasses.dataclass
class Key:
    """An emulated key with one registered credential (its record written to a store)."""

    device: EmulatedAuthenticator
    record: CredentialRecord
    origin: str = ORIGIN
    rp_id: str = RP_ID

    def assertion(
        self,
        *,
        nonce: bytes | None = None,
        uv: UserVerificationRequirement = UserVerificationRequirement.REQUIRED,
        allow: bool = True,
    ) -> tuple[WebAuthnAssertionEvidence, Expected]:
        """:return: an assertion of the credential through ``Fido2Client``, as evidence, and
        the request it answers."""
        challenge = nonce if nonce is not None else os.urandom(32)
        options = PublicKeyCredentialRequestOptions(
            challenge=challenge,
            rp_id=self.rp_id,
            allow_credentials=(
                [
                    PublicKeyCredentialDescriptor(
                        type=PublicKeyCredentialType.PUBLIC_KEY, id=self.record.credential_id
                    )
                ]
                if allow
                else None
            ),
            user_verification=uv,
        )
        selection = client(self.device, origin=self.origin).get_assertion(options)
        response = selection.get_response(0)
        evidence = WebAuthnAssertionEvidence.from_webauthn(
            dict(response), nonce=challenge, origin=self.origin, rp_id=self.rp_id
        )
        return evidence, Expected(challenge, self.origin)


def enrol(
    device: EmulatedAuthenticator,
    response: RegistrationResponse,
    *,
    user_id: bytes,
    rp_id: str = RP_ID,
    origin: str = ORIGIN,
) -> CredentialRecord:
    """:return: the record ``verify_registration`` makes of a registration (a dry run: not
    stored), under a lenient policy (attestation optional with the key's TEST root trusted, UV
    not required, backup-eligible credentials allowed) so every emulator setting registers."""
    lenient = FidoPolicy(
        rp_id,
        attestation="optional",
        allowlist=ALLOWLIST,
        attestation_roots=(device.pki.root.certificate,),
        require_uv=False,
        backup_eligible="allow",
    )
    challenge = response.response.client_data.challenge
    data = RegistrationData.from_webauthn(
        dict(response), nonce=challenge, origin=origin, rp_id=rp_id, user_handle=user_id
    )
    identity = Identity(ID_NAT, "RPPS", ID_NAT[1:], None, None, None, None, True)
    registered = verify_registration(
        data, Expected(challenge, origin), identity=identity, policy=lenient, store=None
    )
    return registered.record


def new_key(
    store: Any | None = None,
    *,
    pki: TestAttestationPki | None = None,
    pin: str | None = PIN,
    attestation_summary: str | None = None,
    user_id: bytes | None = None,
    resident_key: bool = False,
    configure: Callable[[EmulatedAuthenticator], None] | None = None,
    **device: Any,
) -> Key:
    """A new emulated key with one credential registered by ``verify_registration``; its
    record put in ``store``, with ``attestation_summary`` instead of the verified one when
    given (a credential registered under another policy, or by another version)."""
    emulator = EmulatedAuthenticator(pin, pki=pki, **device)
    if configure is not None:
        configure(emulator)
    handle = user_id or os.urandom(16)
    uv = (
        UserVerificationRequirement.REQUIRED
        if pin is not None
        else UserVerificationRequirement.DISCOURAGED
    )
    response = register(emulator, uv=uv, user_id=handle, resident_key=resident_key)
    record = enrol(emulator, response, user_id=handle)
    if attestation_summary is not None:
        record = dataclasses.replace(record, attestation=attestation_summary)
    if store is not None:
        store.put_credential(record)
    return Key(emulator, record)
