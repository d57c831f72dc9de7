"""FIDO2 registration: what a key's ``create`` leaves, and its verification into a stored
credential.

:class:`RegistrationData` is what :meth:`mie.fido.authenticator.Fido2Authenticator.register`
returns and ``mie fido register --json`` prints (an enrolment ceremony, not evidence: it is never
an :class:`~mie.evidence.Evidence`). Its JSON, strict, in lower-case hex::

    {"type": "webauthn-registration", "nonce": hex (16..1024 bytes), "origin": str,
     "rp_id": str, "credential_id": hex (1..1023), "user_handle": hex (1..64),
     "client_data_json": hex (1..4096), "attestation_object": hex (1..16384),
     "transports": [str]}

:meth:`RegistrationData.to_webauthn` gives the W3C ``RegistrationResponseJSON`` (base64url) that
python-fido2's ``Fido2Server`` and py_webauthn take; :meth:`RegistrationData.from_webauthn` reads
one back (the relying party supplies the nonce, origin, relying party id and user handle it used).

:func:`verify_registration` checks, in this order, each step raising (plan §4.3):

1. the data against what the relying party expects: nonce and origin (constant time), relying
   party id (the policy's) → ``nonce_mismatch`` / ``origin_mismatch`` / ``rp_id_mismatch``;
2. the client data: strict, ``webauthn.create``, its challenge the nonce and its origin the
   origin → ``malformed`` / ``nonce_mismatch`` / ``origin_mismatch``;
3. the attestation object: a CBOR map of exactly ``fmt`` (text), ``authData`` (bytes) and
   ``attStmt`` (map) → ``malformed``;
4. the authenticator data: strict, with attested credential data whose id is the data's;
   rpIdHash → ``rp_id_mismatch``; UP → ``user_not_present``; UV when the policy requires it →
   ``user_not_verified``; the key's algorithm among the policy's → ``attestation_refused``;
   backup eligibility under ``backup_eligible: "refuse"`` → ``attestation_refused``;
5. the attestation (:func:`mie.fido.attestation.verify_attestation`);
6. the store: one :meth:`~mie.store.base.Store.put_credential` → ``already_registered``; a
   spare key registered for a professional who lost their MIE (``temporary=``) has its
   :class:`~mie.store.base.TemporaryGrant` written in the same transaction, so the key never
   exists as a permanent one, and its level cap is the grant's.

Nothing is stored before the last step, so a refused registration leaves no row; ``store=None``
is a dry run (the record is returned unsaved, with the reason ``not stored``).
:func:`credential_summary` is the ``credential`` object ``mie fido register --json`` prints.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import hmac
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from mie.core import cbor
from mie.core.errors import (
    EvidenceFormatError,
    NonceMismatchError,
    OriginMismatchError,
)
from mie.fido.attestation import AttestationReport, MetadataSource, verify_attestation
from mie.fido.authdata import AuthenticatorData
from mie.fido.clientdata import ClientData
from mie.fido.errors import (
    AttestationRefusedError,
    AuthDataFormatError,
    ClientDataFormatError,
    RpIdMismatchError,
    UserNotPresentError,
    UserNotVerifiedError,
)
from mie.fido.policy import FidoPolicy
from mie.lifecycle import cap_level
from mie.request import MAX_NONCE_BYTES, MIN_NONCE_BYTES, check_origin
from mie.store.base import RP_ID_PATTERN, CredentialRecord, Store, check_credential
from mie.store.errors import TemporaryIdentityError

if TYPE_CHECKING:
    from mie.policy import AssuranceLevel, LevelPolicy
    from mie.request import AuthRequest
    from mie.store.base import TemporaryGrant
    from mie.trust.identity import Identity
    from mie.verification import Expected

REGISTRATION_TYPE = "webauthn-registration"
MAX_CREDENTIAL_ID = 1023
MAX_USER_HANDLE = 64
MAX_CLIENT_DATA = 4096
MAX_ATTESTATION_OBJECT = 16 * 1024
MAX_TRANSPORTS = 8
NOT_STORED = "not stored (dry run: no credential store)"

_HEX = re.compile(r"(?:[0-9a-f]{2})*")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_TRANSPORT = re.compile(r"[a-z][a-z0-9-]{0,31}")
_ATTACHMENTS = (None, "platform", "cross-platform")
_FIELDS = (
    "type",
    "nonce",
    "origin",
    "rp_id",
    "credential_id",
    "user_handle",
    "client_data_json",
    "attestation_object",
    "transports",
)
_SIZES = {
    "nonce": range(MIN_NONCE_BYTES, MAX_NONCE_BYTES + 1),
    "credential_id": range(1, MAX_CREDENTIAL_ID + 1),
    "user_handle": range(1, MAX_USER_HANDLE + 1),
    "client_data_json": range(1, MAX_CLIENT_DATA + 1),
    "attestation_object": range(1, MAX_ATTESTATION_OBJECT + 1),
}
_CREDENTIAL = ("id", "rawId", "type", "response")
_CREDENTIAL_OPTIONAL = ("clientExtensionResults", "authenticatorAttachment")
_RESPONSE = ("clientDataJSON", "attestationObject")
# Level 3 JSON adds these for clients that cannot parse CBOR; they repeat what the attestation
# object holds, so they are read only for their shape and otherwise ignored.
_RESPONSE_OPTIONAL = ("transports", "publicKey", "publicKeyAlgorithm", "authenticatorData")
_ATTESTATION_OBJECT_KEYS = frozenset({"fmt", "authData", "attStmt"})


@dataclass(frozen=True)
class RegistrationData:
    """What a key's registration (WebAuthn ``create``) returned.

    :param nonce: the relying party's nonce (the challenge).
    :param origin: the relying party's origin.
    :param rp_id: the relying party id the credential is scoped to.
    :param credential_id: the new credential's id.
    :param user_handle: the WebAuthn ``user.id`` given to the key (random, no personal data).
    :param client_data_json: the client data, as the client made it.
    :param attestation_object: the CBOR attestation object, as the key made it.
    :param transports: the key's transports (``usb``, ``nfc``...), informative.
    :raises ValueError: a field out of its bound, or an origin or relying party id that is
        not canonical.
    :raises TypeError: a field of the wrong type.
    """

    type: ClassVar[str] = REGISTRATION_TYPE

    nonce: bytes
    origin: str
    rp_id: str
    credential_id: bytes
    user_handle: bytes
    client_data_json: bytes
    attestation_object: bytes
    transports: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, sizes in _SIZES.items():
            value = getattr(self, name)
            if isinstance(value, bytearray | memoryview):
                value = bytes(value)
                object.__setattr__(self, name, value)
            if not isinstance(value, bytes):
                raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
            if len(value) not in sizes:
                raise ValueError(
                    f"{name} of {len(value)} bytes, not {sizes.start} to {sizes.stop - 1}"
                )
        check_origin(self.origin)
        if not isinstance(self.rp_id, str):
            raise TypeError(f"rp_id must be a str, not {type(self.rp_id).__name__}")
        if RP_ID_PATTERN.fullmatch(self.rp_id) is None:
            raise ValueError(f"rp_id {self.rp_id[:60]!r} is not a lower-case host name")
        transports = self.transports
        if isinstance(transports, str) or not isinstance(transports, list | tuple):
            raise TypeError("The transports must be a sequence of strings")
        if len(transports) > MAX_TRANSPORTS:
            raise ValueError(f"More than {MAX_TRANSPORTS} transports")
        for transport in transports:
            if not isinstance(transport, str) or not _TRANSPORT.fullmatch(transport):
                raise ValueError(f"Transport {str(transport)[:40]!r} is not a transport name")
        if len(set(transports)) != len(transports):
            raise ValueError("A transport is named twice")
        object.__setattr__(self, "transports", tuple(transports))

    def to_json(self) -> dict[str, Any]:
        """:return: the JSON object of the module docstring."""
        return {
            "type": REGISTRATION_TYPE,
            "nonce": self.nonce.hex(),
            "origin": self.origin,
            "rp_id": self.rp_id,
            "credential_id": self.credential_id.hex(),
            "user_handle": self.user_handle.hex(),
            "client_data_json": self.client_data_json.hex(),
            "attestation_object": self.attestation_object.hex(),
            "transports": list(self.transports),
        }

    @classmethod
    def from_json(cls, obj: object) -> RegistrationData:
        """Read the JSON of :meth:`to_json` strictly (every field, nothing else).

        :raises EvidenceFormatError: not of the format (``malformed``).
        """
        what = "registration"
        if not isinstance(obj, dict):
            raise EvidenceFormatError(f"The {what} is not a JSON object")
        missing = [key for key in _FIELDS if key not in obj]
        if missing:
            raise EvidenceFormatError(f"The {what} has no {missing[0]!r} field")
        extra = sorted(str(key) for key in obj if key not in _FIELDS)
        if extra:
            raise EvidenceFormatError(f"The {what} has an unexpected field {extra[0][:40]!r}")
        if obj["type"] != REGISTRATION_TYPE:
            raise EvidenceFormatError(f"The {what} type is not {REGISTRATION_TYPE!r}")
        values: dict[str, Any] = {
            name: _hex(obj[name], f"{what}.{name}", sizes) for name, sizes in _SIZES.items()
        }
        for name in ("origin", "rp_id"):
            if not isinstance(obj[name], str):
                raise EvidenceFormatError(f"{what}.{name} is not a string")
            values[name] = obj[name]
        transports = obj["transports"]
        if not isinstance(transports, list):
            raise EvidenceFormatError(f"{what}.transports is not an array")
        values["transports"] = tuple(transports)
        return _built(what, values)

    def to_webauthn(self) -> dict[str, Any]:
        """:return: the W3C ``RegistrationResponseJSON`` (base64url, unpadded)."""
        raw_id = _b64(self.credential_id)
        return {
            "id": raw_id,
            "rawId": raw_id,
            "type": "public-key",
            "response": {
                "clientDataJSON": _b64(self.client_data_json),
                "attestationObject": _b64(self.attestation_object),
                "transports": list(self.transports),
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "cross-platform",
        }

    @classmethod
    def from_webauthn(
        cls,
        obj: Mapping[str, Any],
        *,
        nonce: bytes,
        origin: str,
        rp_id: str,
        user_handle: bytes,
    ) -> RegistrationData:
        """Read a W3C ``RegistrationResponseJSON`` (a browser's, or ``dict()`` of python-fido2's
        ``RegistrationResponse``) strictly.

        :param nonce: the challenge the relying party issued.
        :param origin: the relying party's origin.
        :param rp_id: the relying party id it asked the key for.
        :param user_handle: the ``user.id`` it gave the key.
        :raises EvidenceFormatError: not of the format (``malformed``).
        """
        what = "WebAuthn registration"
        credential = _members(obj, what, _CREDENTIAL, _CREDENTIAL_OPTIONAL)
        if credential["type"] != "public-key":
            raise EvidenceFormatError(f"The {what} type is not 'public-key'")
        if credential["id"] != credential["rawId"]:
            raise EvidenceFormatError(f"The {what} id is not its rawId")
        if credential.get("authenticatorAttachment") not in _ATTACHMENTS:
            raise EvidenceFormatError(f"The {what} authenticatorAttachment is not known")
        if not isinstance(credential.get("clientExtensionResults", {}), dict):
            raise EvidenceFormatError(f"The {what} clientExtensionResults is not an object")
        response = _members(
            credential["response"], f"{what} response", _RESPONSE, _RESPONSE_OPTIONAL
        )
        transports = response.get("transports", [])
        if not isinstance(transports, list):
            raise EvidenceFormatError(f"The {what} transports are not an array")
        values: dict[str, Any] = {
            "nonce": nonce,
            "origin": origin,
            "rp_id": rp_id,
            "user_handle": user_handle,
            "credential_id": _unb64(credential["rawId"], f"{what} rawId", MAX_CREDENTIAL_ID),
            "client_data_json": _unb64(
                response["clientDataJSON"], f"{what} clientDataJSON", MAX_CLIENT_DATA
            ),
            "attestation_object": _unb64(
                response["attestationObject"], f"{what} attestationObject", MAX_ATTESTATION_OBJECT
            ),
            "transports": tuple(transports),
        }
        return _built(what, values)


@dataclass(frozen=True)
class RegisteredCredential:
    """A verified registration.

    :param record: the credential record (stored, unless the store was ``None``); its
        ``temporary`` is the grant of a temporary credential.
    :param report: the attestation report.
    :param level_cap: the level an assertion of this credential with user verification gets
        now, under a temporary grant's cap (``None``: no level).
    :param reasons: why (the level decision, the attestation's reservations, ``not stored``).
    """

    record: CredentialRecord
    report: AttestationReport
    level_cap: AssuranceLevel | None
    reasons: tuple[str, ...]

    @property
    def stored(self) -> bool:
        """:return: whether the record was stored."""
        return NOT_STORED not in self.reasons


def verify_registration(
    data: RegistrationData,
    expected: Expected | AuthRequest,
    *,
    identity: Identity,
    policy: FidoPolicy,
    store: Store | None,
    metadata: MetadataSource | None = None,
    at: dt.datetime | None = None,
    level_policy: LevelPolicy | None = None,
    temporary: TemporaryGrant | None = None,
) -> RegisteredCredential:
    """Verify a registration and store its credential (order in the module docstring).

    :param data: what the key returned.
    :param expected: the nonce and origin the relying party used (an
        :class:`~mie.request.AuthRequest` is one).
    :param identity: the professional the enrolment desk registers the key for (its ``id_nat``
        is stored with the credential; the key never says who it belongs to).
    :param policy: the relying party's FIDO policy.
    :param store: where the credential goes; ``None``: a dry run, nothing stored.
    :param metadata: the verified FIDO metadata (required when the policy names metadata).
    :param at: an aware time to verify at (default: now).
    :param level_policy: the level table (default: :data:`mie.policy.DEFAULT_RULES`).
    :param temporary: register a temporary credential: this grant (from
        :func:`mie.lifecycle.new_grant`; its ``ref`` is replaced by the verified credential's)
        is stored with it in one transaction.
    :return: the registered credential.
    :raises TemporaryIdentityError: the grant names another idNat than ``identity``.
    :raises MieError: the first failed check, with its code (see the module docstring).
    """
    from mie.fido.levels import fido_proof
    from mie.policy import decide

    when = _aware(at)
    if not isinstance(data, RegistrationData):
        raise TypeError(f"Registration data must be RegistrationData, not {type(data).__name__}")
    if not isinstance(policy, FidoPolicy):
        raise TypeError(f"The policy must be a FidoPolicy, not {type(policy).__name__}")
    _check_binding(data, expected, policy)
    client_data = _client_data(data, expected)
    fmt, auth_bytes, att_stmt = _attestation_object(data.attestation_object)
    auth_data = _auth_data(auth_bytes, data, policy)
    report = verify_attestation(
        fmt, att_stmt, auth_data, client_data.hash, policy=policy, metadata=metadata, at=when
    )
    credential = auth_data.credential
    assert credential is not None  # noqa: S101 (_auth_data refuses data without one)
    record = check_credential(
        CredentialRecord(
            rp_id=policy.rp_id,
            credential_id=credential.credential_id,
            user_handle=data.user_handle,
            public_key=credential.raw_key,
            alg=credential.public_key.alg,
            aaguid=credential.aaguid,
            sign_count=auth_data.sign_count,
            backup_eligible=auth_data.flags.be,
            attestation=report.summary,
            certification=report.certification,
            id_nat=identity.id_nat,
            test=report.test or identity.test_card is True,
            created_at=when.timestamp(),
        )
    )
    proof = fido_proof(
        attested=report.attested,
        uv=True,
        backup_eligible=auth_data.flags.be,
        policy=policy,
        aaguid=credential.aaguid,
        certification=report.certification,
        test=record.test,
        attestation_type=report.type,
    )
    decision = decide(proof, level_policy)
    reasons = [*decision.reasons, *report.reasons]
    grant = _grant(temporary, record, identity)
    level, capped = cap_level(decision.level, grant)
    reasons.extend(capped)
    if store is None:
        reasons.append(NOT_STORED)
    elif grant is None:
        store.put_credential(record)
    else:
        store.put_credential(record, temporary=grant)
    if grant is not None:
        record = dataclasses.replace(record, temporary=grant)
    return RegisteredCredential(record, report, level, tuple(reasons))


def _grant(
    temporary: TemporaryGrant | None, record: CredentialRecord, identity: Identity
) -> TemporaryGrant | None:
    """:return: the grant of ``temporary`` for the verified credential, or ``None``."""
    if temporary is None:
        return None
    from mie.store.base import MieRef

    if not hmac.compare_digest(temporary.id_nat.encode(), record.id_nat.encode()):
        raise TemporaryIdentityError(
            f"The temporary grant is for another professional than {identity.id_nat[:64]}",
            grant=temporary,
        )
    return dataclasses.replace(temporary, ref=MieRef.fido2(record.rp_id, record.credential_id))


def credential_summary(
    registered: RegisteredCredential, *, discoverable: bool | None = None
) -> dict[str, Any]:
    """:return: the ``credential`` object of ``mie fido register --json`` (issue 10 plan §6.1),
    which the service's registration answers too; ``temporary`` is the grant's JSON or ``None``.

    :param registered: what :func:`verify_registration` returned.
    :param discoverable: whether the key holds the credential as discoverable (``None``: not
        known to the caller).
    """
    from mie.fido.cose import ALGORITHM_NAMES
    from mie.trust.identity import Identity, parse_id_nat

    record = registered.record
    report = registered.report
    entry = report.entry
    id_type, number = parse_id_nat(record.id_nat)
    identity = Identity(record.id_nat, id_type, number, None, None, None, None, record.test)
    return {
        "rp_id": record.rp_id,
        "credential_id": _b64(record.credential_id),
        # mie.fido.authenticator.credential_ref's rule (that module loads python-fido2).
        "credential_ref": hashlib.sha256(record.credential_id).digest()[:16].hex(),
        "aaguid": str(uuid.UUID(bytes=record.aaguid)),
        "alg": ALGORITHM_NAMES.get(record.alg, str(record.alg)),
        "sign_count": record.sign_count,
        "backup_eligible": record.backup_eligible,
        "discoverable": discoverable,
        "attestation": {
            "format": report.format,
            "type": report.type,
            "chain": [_subject(der) for der in report.chain],
            "trust_anchor": report.anchor,
            "metadata": None
            if entry is None
            else {
                "description": entry.description,
                "status": _status(entry),
                "certification": entry.certification,
            },
            "allowlisted": report.allowed is not None,
        },
        "identity": identity.to_json(),
        "level_cap": registered.level_cap.value if registered.level_cap else None,
        "temporary": None if record.temporary is None else grant_json(record.temporary),
        "reasons": list(registered.reasons),
    }


def grant_json(grant: TemporaryGrant) -> dict[str, Any]:
    """:return: a temporary grant as JSON (times ISO 8601 UTC with ``Z``), the shape of the
    service's ``POST /v1/mie/temporary`` answer."""
    return {
        "mie": str(grant.ref),
        "id_nat": grant.id_nat,
        "reason": grant.reason,
        "issued_at": _iso(grant.issued_at),
        "expires_at": _iso(grant.expires_at),
        "max_level": grant.max_level,
        "replaces": grant.replaces,
        "by": grant.by,
    }


def _iso(seconds: float) -> str:
    when = dt.datetime.fromtimestamp(seconds, dt.UTC).replace(microsecond=0)
    return when.isoformat().replace("+00:00", "Z")


def _subject(der: bytes) -> str:
    from mie.trust.parse import load_certificate_der

    return load_certificate_der(der, "attestation chain").subject.rfc4514_string()


def _status(entry: object) -> str | None:
    """:return: the latest status the metadata reports for the model (a
    :class:`~mie.fido.mds.MetadataView`), or ``None``."""
    statuses = getattr(entry, "statuses", ())
    return str(statuses[-1].status) if statuses else None


def _aware(at: dt.datetime | None) -> dt.datetime:
    if at is None:
        return dt.datetime.now(dt.UTC)
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("The verification time must be timezone-aware")
    return at.astimezone(dt.UTC)


def _same(a: str | bytes, b: str | bytes) -> bool:
    left = a.encode() if isinstance(a, str) else a
    right = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(left, right)


def _check_binding(
    data: RegistrationData, expected: Expected | AuthRequest, policy: FidoPolicy
) -> None:
    if not _same(data.nonce, expected.nonce):
        raise NonceMismatchError("The registration was made for another nonce")
    if not _same(data.origin, expected.origin):
        raise OriginMismatchError(
            f"The registration was made for origin {data.origin[:60]!r}, not "
            f"{expected.origin[:60]!r}"
        )
    if data.rp_id != policy.rp_id:
        raise RpIdMismatchError(
            f"The registration names relying party {data.rp_id!r}, the policy {policy.rp_id!r}"
        )


def _client_data(data: RegistrationData, expected: Expected | AuthRequest) -> ClientData:
    client_data = ClientData.parse(data.client_data_json)
    if client_data.type != "webauthn.create":
        raise ClientDataFormatError(
            f"Client data type {client_data.type!r} is not 'webauthn.create'"
        )
    if not _same(client_data.challenge, expected.nonce):
        raise NonceMismatchError("The client data challenge is not the nonce")
    if not _same(client_data.origin, expected.origin):
        raise OriginMismatchError(
            f"The client data origin {client_data.origin[:60]!r} is not {expected.origin[:60]!r}"
        )
    return client_data


def _attestation_object(raw: bytes) -> tuple[str, bytes, dict[Any, Any]]:
    # Not canonical (plan D3): a browser re-encodes the attestation object.
    obj = cbor.decode(raw, canonical=False)
    if not isinstance(obj, dict) or set(obj) != _ATTESTATION_OBJECT_KEYS:
        keys = sorted(repr(k)[:20] for k in obj) if isinstance(obj, dict) else None
        problem = "not a CBOR map" if keys is None else f"a map of {', '.join(keys) or 'nothing'}"
        raise EvidenceFormatError(
            f"The attestation object is {problem}, not exactly fmt, authData and attStmt"
        )
    fmt, auth_data, att_stmt = obj["fmt"], obj["authData"], obj["attStmt"]
    if not isinstance(fmt, str):
        raise EvidenceFormatError("The attestation object's fmt is not a text string")
    if not isinstance(auth_data, bytes):
        raise EvidenceFormatError("The attestation object's authData is not a byte string")
    if not isinstance(att_stmt, dict):
        raise EvidenceFormatError("The attestation object's attStmt is not a map")
    return fmt, auth_data, att_stmt


def _auth_data(raw: bytes, data: RegistrationData, policy: FidoPolicy) -> AuthenticatorData:
    auth_data = AuthenticatorData.parse(raw, algorithms=policy.algorithms)
    credential = auth_data.credential
    if credential is None:
        raise AuthDataFormatError("Registration authenticator data has no attested credential")
    wanted = hashlib.sha256(policy.rp_id.encode()).digest()
    if not hmac.compare_digest(auth_data.rp_id_hash, wanted):
        raise RpIdMismatchError(
            f"The authenticator data is for another relying party than {policy.rp_id!r}"
        )
    if not auth_data.flags.up:
        raise UserNotPresentError("The key registered without user presence (UP clear)")
    if policy.require_uv and not auth_data.flags.uv:
        raise UserNotVerifiedError(
            "The key registered without verifying its user (UV clear): the policy requires it"
        )
    if credential.credential_id != data.credential_id:
        raise EvidenceFormatError(
            "The registration's credential id is not the one in the authenticator data"
        )
    if auth_data.flags.be and policy.backup_eligible == "refuse":
        raise AttestationRefusedError(
            "Backup-eligible (syncable) credential refused: the policy takes device-bound ones"
        )
    return auth_data


def _hex(value: object, what: str, sizes: range) -> bytes:
    if isinstance(value, str) and len(value) > 2 * (sizes.stop - 1):
        raise EvidenceFormatError(f"{what} has over {sizes.stop - 1} bytes of hex")
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise EvidenceFormatError(f"{what} is not lower-case hex")
    return bytes.fromhex(value)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(value: object, what: str, maximum: int) -> bytes:
    if not isinstance(value, str):
        raise EvidenceFormatError(f"The {what} is not a string")
    if len(value) > (maximum * 4 + 2) // 3 or not _BASE64URL.fullmatch(value):
        raise EvidenceFormatError(
            f"The {what} is not unpadded base64url of at most {maximum} bytes"
        )
    if len(value) % 4 == 1:
        raise EvidenceFormatError(f"The {what} is not base64url")
    try:
        data = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as e:
        raise EvidenceFormatError(f"The {what} is not base64url") from e
    if _b64(data) != value:
        raise EvidenceFormatError(f"The {what} is not canonical base64url")
    return data


def _members(
    obj: object, what: str, required: tuple[str, ...], optional: tuple[str, ...]
) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise EvidenceFormatError(f"The {what} is not a JSON object")
    for key in required:
        if key not in obj:
            raise EvidenceFormatError(f"The {what} has no {key!r} member")
    allowed = {*required, *optional}
    extra = sorted(str(key)[:40] for key in obj if key not in allowed)
    if extra:
        raise EvidenceFormatError(f"The {what} has an unexpected member {extra[0]!r}")
    return obj


def _built(what: str, values: dict[str, Any]) -> RegistrationData:
    try:
        return RegistrationData(**values)
    except (ValueError, TypeError) as e:
        raise EvidenceFormatError(f"The {what}: {e}") from e


__all__ = [
    "NOT_STORED",
    "REGISTRATION_TYPE",
    "RegisteredCredential",
    "RegistrationData",
    "credential_summary",
    "grant_json",
    "verify_registration",
]
