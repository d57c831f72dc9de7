"""Fuzz target of the FIDO2 assertion verifier (mie.fido.evidence, mie.fido.assertion), see
:mod:`tests.fuzz.targets`.

One target, ``webauthn-evidence``, two modes chosen by the first byte of the input: even, the
rest is JSON, read as ``webauthn-assertion`` evidence (:meth:`mie.evidence.Evidence.from_json`)
or, when it has a ``rawId``, as the W3C ``AuthenticationResponseJSON``
(:meth:`~mie.fido.evidence.WebAuthnAssertionEvidence.from_webauthn` for the fixed request); odd,
the rest is length-prefixed records (credential id, authenticator data, client data JSON,
signature, user handle) made into evidence for the fixed request, so mutations reach the
authenticator data and client data parsers and the signature directly. The evidence is verified
by :class:`~mie.fido.assertion.FidoVerifier` under two
policies (the default attested-only one, and a relaxed one: no UV required, counterless keys and
syncable credentials allowed), each on a fresh :class:`~mie.store.memory.MemoryStore` holding
three registered credentials (ES256, EdDSA, ES256 backup-eligible).

Seeds are signed with fixed keys (no randomness: the runner that writes them and the processes
that judge them agree). Oracles, for an accepted assertion: the signature verifies, recomputed
with ``cryptography`` over ``authenticatorData ‖ SHA-256(clientDataJSON)`` with the registered
key; the client data names the request's challenge and origin and the relying party's hash;
UP is set (and UV under the default policy); the store's counter is the assertion's; a
``substantial`` level has UV and no BE; the identity is the registered one; and the same
evidence verified again is refused (single use), except a counterless one under the relaxed
policy.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from mie.core import cbor, strictjson
from mie.core.errors import MieError
from mie.emulation.fido_pki import EMULATOR_AAGUID
from mie.evidence import Evidence
from mie.fido.allowlist import AaguidAllowlist, AllowedKey
from mie.fido.assertion import FidoVerifier
from mie.fido.evidence import WebAuthnAssertionEvidence
from mie.fido.policy import FidoPolicy
from mie.policy import AssuranceLevel
from mie.result import AuthResult
from mie.store.base import CredentialRecord
from mie.store.errors import CloneSuspectedError
from mie.store.memory import MemoryStore
from mie.verification import Expected
from tests.fuzz.context import Context
from tests.fuzz.harness import OracleViolation, Reader, Run, Target, records

RP_ID = "iam.chu-exemple.fr"
ORIGIN = "https://iam.chu-exemple.fr"
NONCE = bytes(range(32))
ID_NAT = "810100099877"
_RP_ID_HASH = hashlib.sha256(RP_ID.encode()).digest()
_UP, _UV, _BE = 0x01, 0x04, 0x08
_MAX_JSON = 64 * 1024
_JSON, _FIELDS = b"\x00", b"\x01"
_ALLOWLIST = AaguidAllowlist((AllowedKey(EMULATOR_AAGUID, "mie TEST", test=True),))
_STRICT = FidoPolicy(RP_ID, allowlist=_ALLOWLIST)
_RELAXED = FidoPolicy(
    RP_ID,
    allowlist=_ALLOWLIST,
    require_uv=False,
    counter="allow-zero",
    backup_eligible="allow",
)


@functools.cache
def _credentials() -> tuple[tuple[CredentialRecord, Any], ...]:
    """Three registered credentials and their private keys (fixed)."""
    p256 = ec.derive_private_key(0x6D6965_0001, ec.SECP256R1())
    point = p256.public_key().public_numbers()
    es256 = {1: 2, 3: -7, -1: 1, -2: point.x.to_bytes(32, "big"), -3: point.y.to_bytes(32, "big")}
    edkey = ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"mie-fuzz").digest())
    eddsa = {1: 1, 3: -8, -1: 6, -2: edkey.public_key().public_bytes_raw()}
    made = []
    for index, (cose, key, backup) in enumerate(
        ((es256, p256, False), (eddsa, edkey, False), (es256, p256, True))
    ):
        record = CredentialRecord(
            rp_id=RP_ID,
            credential_id=bytes([index + 1]) * 32,
            user_handle=bytes([0xA0 + index]) * 16,
            public_key=cbor.encode(cose),
            alg=cose[3],  # type: ignore[arg-type]
            aaguid=EMULATOR_AAGUID,
            sign_count=0,
            backup_eligible=backup,
            attestation="packed/basic",
            certification=None,
            id_nat=ID_NAT,
            test=True,
            created_at=1_700_000_000.0,
        )
        made.append((record, key))
    return tuple(made)


def _sign(key: Any, message: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(message, ec.ECDSA(hashes.SHA256()))
    return bytes(key.sign(message))


def _client_data(kind: str = "webauthn.get", origin: str = ORIGIN) -> bytes:
    challenge = base64.urlsafe_b64encode(NONCE).rstrip(b"=").decode()
    obj = {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}
    return json.dumps(obj, separators=(",", ":")).encode()


def _evidence(index: int, flags: int, counter: int, *, handle: bool = False) -> Evidence:
    record, key = _credentials()[index]
    auth = _RP_ID_HASH + bytes([flags]) + counter.to_bytes(4, "big")
    client = _client_data()
    signature = _sign(key, auth + hashlib.sha256(client).digest())
    return WebAuthnAssertionEvidence(
        NONCE,
        ORIGIN,
        RP_ID,
        record.credential_id,
        auth,
        client,
        signature,
        record.user_handle if handle else None,
    )


def _seeds(context: Context) -> list[bytes]:
    made = [
        _evidence(0, _UP | _UV, 1),
        _evidence(0, _UP, 7, handle=True),
        _evidence(1, _UP | _UV, 0xFFFFFFFF),
        _evidence(2, _UP | _UV | _BE, 2),
        _evidence(0, _UP | _UV, 0),
        _evidence(1, _UV, 3),
    ]
    seeds = [_JSON + json.dumps(e.to_json()).encode() for e in made]
    assert isinstance(made[1], WebAuthnAssertionEvidence)
    seeds.append(_JSON + json.dumps(made[1].to_webauthn()).encode())
    for e in made:
        assert isinstance(e, WebAuthnAssertionEvidence)
        fields = [e.credential_id, e.authenticator_data, e.client_data_json, e.signature]
        seeds.append(_FIELDS + records([*fields, e.user_handle or b""]))
    return seeds


def _read(data: bytes) -> Evidence | None:
    """:return: the evidence the input describes (``None``: fields out of their bounds)."""
    if data[:1] and data[0] & 1:
        fields = [*Reader(data[1:]).records(), b"", b"", b"", b"", b""][:5]
        try:
            credential_id, auth, client, signature, handle = fields
            return WebAuthnAssertionEvidence(
                NONCE, ORIGIN, RP_ID, credential_id, auth, client, signature, handle or None
            )
        except ValueError:
            return None  # the constructor's bounds: what the JSON reader refuses
    obj = strictjson.loads(data[1:], "fuzz evidence", max_bytes=_MAX_JSON)
    if isinstance(obj, dict) and "rawId" in obj:
        return WebAuthnAssertionEvidence.from_webauthn(obj, nonce=NONCE, origin=ORIGIN, rp_id=RP_ID)
    return Evidence.from_json(obj)


def _store() -> MemoryStore:
    store = MemoryStore()
    for record, _ in _credentials():
        store.put_credential(record)
    return store


def _prepare(context: Context) -> Run:
    expected = Expected(NONCE, ORIGIN)
    keys = {record.credential_id: (record, key) for record, key in _credentials()}

    def run(data: bytes) -> None:
        evidence = _read(data)
        if evidence is None:
            return
        # Read back exactly: what is verified is what the JSON says.
        if Evidence.from_json(json.loads(json.dumps(evidence.to_json()))) != evidence:
            raise OracleViolation("webauthn: the evidence does not read back from its JSON")
        for policy in (_STRICT, _RELAXED):
            store = _store()
            verifier = FidoVerifier(policy, store)
            try:
                result = verifier.verify(evidence, expected)
            except MieError:
                continue
            assert isinstance(evidence, WebAuthnAssertionEvidence)
            _judge(evidence, result, policy, store, keys)
            _single_use(verifier, evidence, expected, policy)

    return run


def _judge(
    evidence: WebAuthnAssertionEvidence,
    result: AuthResult,
    policy: FidoPolicy,
    store: MemoryStore,
    keys: dict[bytes, tuple[CredentialRecord, Any]],
) -> None:
    record, key = keys[evidence.credential_id]
    signed = evidence.authenticator_data + hashlib.sha256(evidence.client_data_json).digest()
    try:
        public = key.public_key()
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(evidence.signature, signed, ec.ECDSA(hashes.SHA256()))
        else:
            public.verify(evidence.signature, signed)
    except Exception as e:
        raise OracleViolation("webauthn: accepted an assertion whose signature fails") from e
    client = json.loads(evidence.client_data_json)
    challenge = base64.urlsafe_b64encode(NONCE).rstrip(b"=").decode()
    if (client["type"], client["challenge"], client["origin"]) != (
        "webauthn.get",
        challenge,
        ORIGIN,
    ):
        raise OracleViolation("webauthn: accepted client data of another request")
    auth = evidence.authenticator_data
    flags, counter = auth[32], int.from_bytes(auth[33:37], "big")
    if auth[:32] != _RP_ID_HASH or len(auth) != 37 or not flags & _UP:
        raise OracleViolation("webauthn: accepted authData of another party, with AT/ED, or no UP")
    if policy.require_uv and not flags & _UV:
        raise OracleViolation("webauthn: accepted a UV-less assertion under require_uv")
    if bool(flags & _BE) != record.backup_eligible:
        raise OracleViolation("webauthn: accepted a changed backup eligibility")
    if store.get_credential(RP_ID, record.credential_id).sign_count != counter:
        raise OracleViolation("webauthn: the stored counter is not the assertion's")
    if result.level is AssuranceLevel.SUBSTANTIAL and (not flags & _UV or flags & _BE):
        if not (flags & _BE and policy.backup_eligible == "allow" and flags & _UV):
            raise OracleViolation("webauthn: substantial without UV, or for a syncable credential")
    if result.identity is None or result.identity.id_nat != record.id_nat:
        raise OracleViolation("webauthn: the identity is not the registered one")


def _single_use(
    verifier: FidoVerifier, evidence: WebAuthnAssertionEvidence, expected: Expected, policy: Any
) -> None:
    counter = int.from_bytes(evidence.authenticator_data[33:37], "big")
    try:
        verifier.verify(evidence, expected)
    except CloneSuspectedError:
        return
    if not (counter == 0 and policy.counter == "allow-zero"):
        raise OracleViolation("webauthn: the same assertion was accepted twice")


FIDO_ASSERTION_TARGETS = [
    Target(
        "webauthn-evidence",
        "webauthn-assertion evidence JSON and W3C AuthenticationResponseJSON, then FidoVerifier "
        "under two policies on a MemoryStore (mie.fido.evidence, mie.fido.assertion)",
        _seeds,
        _prepare,
        max_len=8192,
    ),
]
