"""Fuzz targets of the FIDO2 registration side (mie.fido.registration, attestation, policy,
allowlist), see :mod:`tests.fuzz.targets`.

- ``attestation-object``: :func:`~mie.fido.registration.verify_registration` on fuzz attestation
  objects. The first byte picks the registration the object is checked against (the seeds are
  real ones the emulated key made through python-fido2: packed, self and none attestation, ES256
  and EdDSA, a backup-eligible key) and the policy (attested-only with an allowlist, optional,
  attested-only with TEST metadata); the rest is the attestation object. Oracles: a registration
  that verifies stored exactly its record, for the template's credential, with the attestation
  the policy takes (attested under an attested-only policy) and never a ``high`` cap; a refused
  one stored nothing.
- ``fido-policy``: :meth:`~mie.fido.policy.FidoPolicy.load` on a fuzz file beside a valid
  allowlist, root and CRL. Oracle: a policy that loads holds its invariants (an attested-only
  one has an allowlist or metadata; choices and algorithms known) and rebuilds equal in code.
- ``fido-aaguids``: :meth:`~mie.fido.allowlist.AaguidAllowlist.load` on a fuzz file. Oracle:
  every key is found by its AAGUID, none twice, none all zero.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import os
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.webauthn import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialCreationOptions,
    PublicKeyCredentialParameters,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialType,
    PublicKeyCredentialUserEntity,
    UserVerificationRequirement,
)

from mie.emulation.ctap2 import EmulatedAuthenticator
from mie.emulation.fido_mds import TestMds
from mie.emulation.fido_pki import EMULATOR_AAGUID, TestAttestationPki
from mie.fido.allowlist import ZERO_AAGUID, AaguidAllowlist, AllowedKey
from mie.fido.cose import ALGORITHM_NAMES
from mie.fido.mds import MetadataIndex
from mie.fido.policy import (
    ATTESTATION_CHOICES,
    BACKUP_ELIGIBLE_CHOICES,
    COUNTER_CHOICES,
    FidoPolicy,
    MetadataPolicy,
)
from mie.fido.registration import RegistrationData, verify_registration
from mie.policy import AssuranceLevel
from mie.store.memory import MemoryStore
from mie.trust.identity import Identity
from mie.verification import Expected
from tests.fuzz.context import Context
from tests.fuzz.harness import OracleViolation, Run, Target, scratch

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
RP_ID = "iam.chu-exemple.fr"
ORIGIN = "https://iam.chu-exemple.fr"
NONCE = bytes(range(32))
USER_HANDLE = b"mie-fuzz-user-01"
ID_NAT = "810100099877"
PIN = "1234"
_IDENTITY = Identity(ID_NAT, "RPPS", "10100099877", None, None, None, None, False)
# (attestation, algorithm, backup eligible) of each template registration.
_KINDS = (
    ("packed", -7, False),
    ("packed", -8, False),
    ("packed", -7, True),
    ("self", -7, False),
    ("none", -8, False),
)


class _Pin(UserInteraction):
    def request_pin(self, permissions: Any, rp_id: str | None) -> str:
        return PIN


def _counting_rng(label: int) -> Any:
    counter = iter(range(1 << 20))

    def rng(size: int) -> bytes:
        # Credential ids and PIN protocol values: reproducible, so a finding replays.
        return (bytes([label]) + next(counter).to_bytes(8, "big")).ljust(size, b"\x5a")[:size]

    return rng


@functools.cache
def _pki() -> TestAttestationPki:
    return TestAttestationPki.generate(now=NOW)


@functools.cache
def _templates() -> tuple[RegistrationData, ...]:
    """One real registration per kind, made by the emulated key through Fido2Client."""
    made = []
    for label, (attestation, alg, backup) in enumerate(_KINDS):
        device = EmulatedAuthenticator(
            PIN,
            pki=_pki(),
            attestation=attestation,  # type: ignore[arg-type]
            algorithms=(alg,),
            backup_eligible=backup,
            rng=_counting_rng(label),
        )
        client = Fido2Client(device, DefaultClientDataCollector(ORIGIN), user_interaction=_Pin())
        options = PublicKeyCredentialCreationOptions(
            rp=PublicKeyCredentialRpEntity(id=RP_ID, name="CHU Exemple"),
            user=PublicKeyCredentialUserEntity(id=USER_HANDLE, name="pro", display_name="Pro"),
            challenge=NONCE,
            pub_key_cred_params=[
                PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=alg)
            ],
            attestation=AttestationConveyancePreference.DIRECT,
            authenticator_selection=AuthenticatorSelectionCriteria(
                user_verification=UserVerificationRequirement.REQUIRED
            ),
        )
        response = client.make_credential(options)
        made.append(
            RegistrationData.from_webauthn(
                dict(response), nonce=NONCE, origin=ORIGIN, rp_id=RP_ID, user_handle=USER_HANDLE
            )
        )
    return tuple(made)


@functools.cache
def _metadata() -> MetadataIndex:
    mds = TestMds.generate(now=NOW)
    entry = mds.entry(EMULATOR_AAGUID, [_pki().root.certificate])
    return MetadataIndex.load(mds.blob([entry]), root=mds.root, at=NOW)


def _policies() -> tuple[FidoPolicy, ...]:
    allowlist = AaguidAllowlist((AllowedKey(EMULATOR_AAGUID, "emulator", test=True),))
    roots = (_pki().root.certificate,)
    return (
        FidoPolicy(RP_ID, allowlist=allowlist, attestation_roots=roots),
        FidoPolicy(RP_ID, attestation="optional", allowlist=allowlist, attestation_roots=roots),
        FidoPolicy(RP_ID, metadata=MetadataPolicy(Path("fuzz.jwt")), backup_eligible="allow"),
    )


def _attestation_seeds(context: Context) -> list[bytes]:
    seeds = []
    for index, template in enumerate(_templates()):
        for policy in range(3):
            seeds.append(bytes([policy << 4 | index]) + template.attestation_object)
    return seeds


def _attestation_prepare(context: Context) -> Run:
    templates = _templates()
    policies = _policies()
    metadata = _metadata()
    expected = Expected(NONCE, ORIGIN)

    def run(data: bytes) -> None:
        if len(data) < 2:
            return
        template = templates[(data[0] & 0x0F) % len(templates)]
        policy = policies[(data[0] >> 4) % len(policies)]
        registration = dataclasses.replace(template, attestation_object=data[1:])
        store = MemoryStore()
        try:
            registered = verify_registration(
                registration,
                expected,
                identity=_IDENTITY,
                policy=policy,
                store=store,
                metadata=metadata,
                at=NOW,
            )
        except Exception:
            if store.credentials_of(ID_NAT):
                raise OracleViolation("a refused registration left a credential stored") from None
            raise
        record = registered.record
        if store.credentials_of(ID_NAT) != (record,):
            raise OracleViolation("an accepted registration did not store exactly its record")
        if record.credential_id != template.credential_id or record.rp_id != RP_ID:
            raise OracleViolation("the record is not the registration's credential")
        if policy.attested_only and not registered.report.attested:
            raise OracleViolation("an attested-only policy took an unattested key")
        if registered.level_cap is AssuranceLevel.HIGH:
            raise OracleViolation("a FIDO2 registration was capped at high")
        if registered.level_cap is AssuranceLevel.SUBSTANTIAL and not registered.report.attested:
            raise OracleViolation("an unattested key was capped at substantial")

    return run


# --- policy and allowlist files -------------------------------------------------------------

_EMULATOR = "6d69652d-5445-5354-2d46-49444f320001"


def _allowlist_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": "mie-fido-aaguids/1",
        "source": "fuzz",
        "updated": "2026-12-01",
        "keys": [
            {"aaguid": _EMULATOR, "name": "emulator", "test": True},
            {
                "aaguid": "0bb43545-fd2c-4185-87dd-feb0b2916ace",
                "name": "vendor",
                "roots": ["root.pem"],
                "min_certification": "L1",
                "test": False,
            },
        ],
    }
    doc.update(changes)
    return doc


@functools.cache
def _files() -> Path:
    """The directory the file targets write into, with the files their seeds name."""
    directory = scratch("fido-files")
    pki = _pki()
    (directory / "root.pem").write_bytes(pki.root_pem)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(pki.root.certificate.subject)
        .last_update(NOW - dt.timedelta(days=1))
        .next_update(NOW + dt.timedelta(days=30))
        .sign(pki.root.key, hashes.SHA256())
    )
    (directory / "root.crl").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    (directory / "aaguids.json").write_text(json.dumps(_allowlist_doc()))
    return directory


def _policy_seeds(context: Context) -> list[bytes]:
    full = {
        "format": "mie-fido-policy/1",
        "rp_id": RP_ID,
        "attestation": "required",
        "allowlist": "aaguids.json",
        "metadata": {
            "blob": "mds.jwt",
            "root": None,
            "required": True,
            "min_certification": "L1",
            "refuse": ["REVOKED", "USER_VERIFICATION_BYPASS"],
            "stale": "warn",
        },
        "attestation_roots": ["root.pem"],
        "crls": ["root.crl"],
        "require_uv": True,
        "backup_eligible": "low",
        "counter": "allow-zero",
        "algorithms": ["ES256", "EdDSA", "RS256"],
    }
    minimal = {"format": "mie-fido-policy/1", "rp_id": RP_ID, "attestation": "optional"}
    return [json.dumps(doc).encode() for doc in (full, minimal)] + [
        b'{"format":"mie-fido-policy/1","rp_id":"a.b","allowlist":"aaguids.json"}'
    ]


def _policy_prepare(context: Context) -> Run:
    directory = _files()
    path = directory / f"policy-{os.getpid()}.json"

    def run(data: bytes) -> None:
        path.write_bytes(data)
        policy = FidoPolicy.load(path)
        if policy.attested_only and policy.allowlist is None and policy.metadata is None:
            raise OracleViolation("an attested-only policy loaded without allowlist or metadata")
        if (
            policy.attestation not in ATTESTATION_CHOICES
            or policy.backup_eligible not in BACKUP_ELIGIBLE_CHOICES
            or policy.counter not in COUNTER_CHOICES
            or not isinstance(policy.require_uv, bool)
        ):
            raise OracleViolation("a policy loaded with a value outside its choices")
        if not policy.algorithms or not set(policy.algorithms) <= set(ALGORITHM_NAMES):
            raise OracleViolation("a policy loaded with unknown algorithms")
        if dataclasses.replace(policy) != policy:
            raise OracleViolation("a loaded policy does not rebuild equal in code")

    return run


def _allowlist_seeds(context: Context) -> list[bytes]:
    return [
        json.dumps(_allowlist_doc()).encode(),
        json.dumps(_allowlist_doc(keys=[])).encode(),
    ]


def _allowlist_prepare(context: Context) -> Run:
    directory = _files()
    path = directory / f"aaguids-{os.getpid()}.json"

    def run(data: bytes) -> None:
        path.write_bytes(data)
        allowlist = AaguidAllowlist.load(path)
        seen = set()
        for key in allowlist.keys:
            if allowlist.entry(key.aaguid) is not key:
                raise OracleViolation("an allowlisted key is not found by its AAGUID")
            if key.aaguid in seen or key.aaguid == ZERO_AAGUID or len(key.aaguid) != 16:
                raise OracleViolation("an allowlist loaded a duplicate or all-zero AAGUID")
            seen.add(key.aaguid)

    return run


FIDO_VERIFIER_TARGETS = [
    Target(
        "attestation-object",
        "verify_registration on fuzz attestation objects: CBOR shape, authData, packed/self/none "
        "statements, leaf profile, chain, allowlist and metadata, store (mie.fido.registration)",
        _attestation_seeds,
        _attestation_prepare,
        max_len=8192,
        uninstrumented=("mie.emulation", "fido2"),
    ),
    Target(
        "fido-policy",
        "FIDO policy files (mie-fido-policy/1) with the allowlist, roots and CRLs they name "
        "(mie.fido.policy)",
        _policy_seeds,
        _policy_prepare,
    ),
    Target(
        "fido-aaguids",
        "AAGUID allowlist files (mie-fido-aaguids/1) with their root files (mie.fido.allowlist)",
        _allowlist_seeds,
        _allowlist_prepare,
    ),
]
