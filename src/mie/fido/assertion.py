"""The verifier of FIDO2 assertions: ``webauthn-assertion`` evidence against a policy and a store.

:meth:`FidoVerifier.verify` raises on the first failed check, in this order (plan §4.4):

1. the evidence's ``origin`` and ``nonce`` against what the relying party expects (constant-time
   compares), its ``rp_id`` against the policy's;
2. the client data, strictly: ``webauthn.get``, the challenge is the nonce, the origin is the
   origin (what the key signed must say what the evidence says);
3. the authenticator data, strictly: no attested credential data, the rpIdHash of the policy's
   relying party, UP set, UV set when the policy (or the request) requires it;
4. the stored credential: registered, not suspended (a revoked one is ``revoked``), the user
   handle it was registered with, the same backup eligibility, an attestation and model the
   policy still takes; a temporary credential's grant not expired and bound to its idNat
   (:func:`mie.lifecycle.check_temporary`), so an expired temporary key moves nothing;
5. the signature, with the stored COSE key, over ``authenticatorData ‖ SHA-256(clientDataJSON)``;
6. the FIDO metadata of the model now, when configured (a model revoked after registration is
   refused);
7. the signature counter, moved by :meth:`mie.store.base.Store.advance_counter` only after the
   signature verified: the one atomic step that makes the assertion single-use across
   verifier nodes (plan D9);
8. the level, by :func:`mie.policy.decide` on :func:`mie.fido.levels.fido_proof`, capped by a
   temporary credential's grant (:func:`mie.lifecycle.cap_level`).

The lifecycle is read from the store at every assertion (plan D7): a revocation committed by
another node while an assertion is checked still wins, as ``advance_counter`` refuses a
suspended credential in its one conditional update.

The identity is the one the enrolment desk registered with the credential (its ``id_nat``),
never anything the key says. This module imports no python-fido2 (plan D2).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import time
from typing import TYPE_CHECKING

from mie.core.errors import EvidenceFormatError, NonceMismatchError, OriginMismatchError
from mie.evidence import Evidence
from mie.fido.authdata import AuthenticatorData
from mie.fido.clientdata import ClientData
from mie.fido.cose import ALGORITHM_NAMES, CoseKey
from mie.fido.errors import (
    AttestationRefusedError,
    AuthDataFormatError,
    ClientDataFormatError,
    FidoPolicyError,
    MetadataStatusError,
    RpIdMismatchError,
    UnknownAaguidError,
    UserNotPresentError,
    UserNotVerifiedError,
)
from mie.fido.evidence import WebAuthnAssertionEvidence
from mie.fido.levels import fido_proof
from mie.lifecycle import cap_level, check_temporary, revoked_error
from mie.policy import ATTESTED_TYPES, LevelDecision, LevelPolicy, decide
from mie.request import AuthRequest
from mie.result import AuthenticatorInfo, AuthResult
from mie.store.base import CredentialRecord, Store, credential_name
from mie.store.errors import (
    CloneSuspectedError,
    CredentialUnknownError,
    MieRevokedError,
    StoreError,
)
from mie.trust.identity import Identity, parse_id_nat

if TYPE_CHECKING:
    from mie.fido.mds import MetadataIndex, MetadataView
    from mie.fido.policy import FidoPolicy
    from mie.verification import Expected

AUTHENTICATOR_KIND = "fido2"
"""The :attr:`mie.result.AuthenticatorInfo.kind` of a FIDO2 key."""
_KEY_CACHE = 1024
_DECISION_CACHE = 1024
_SIGNATURE_REASONS = {
    alg: f"FIDO2 assertion signature verified ({name})" for alg, name in ALGORITHM_NAMES.items()
}
_IDENTITY_CACHE = 4096
# The attestation summaries verify_registration stores (AttestationReport.summary) -> type.
_SUMMARIES = {
    "packed/basic": "basic",
    "packed/attca": "attca",
    "packed/self": "self",
    "none": "none",
}


class FidoVerifier:
    """Checks ``webauthn-assertion`` evidence (see the module docstring for the order).

    :param policy: the FIDO policy (relying party id, UV, backup eligibility, counter,
        algorithms, allowlist, metadata).
    :param store: the credential store: the registered credentials and their counters.
    :param metadata: the FIDO metadata, required when the policy configures it.
    :param level_policy: the level table (default :data:`mie.policy.DEFAULT_RULES`).
    :raises FidoPolicyError: the policy configures FIDO metadata and none is given.
    """

    def __init__(
        self,
        policy: FidoPolicy,
        store: Store,
        *,
        metadata: MetadataIndex | None = None,
        level_policy: LevelPolicy | None = None,
    ) -> None:
        if policy.metadata is not None and metadata is None:
            # Fail closed: a model revoked since its registration would pass unchecked.
            raise FidoPolicyError(
                "The FIDO policy configures metadata: the verifier needs the metadata index"
            )
        self.policy = policy
        self.store = store
        self.metadata = metadata if policy.metadata is not None else None
        self.level_policy = level_policy
        self._rp_id_hash = hashlib.sha256(policy.rp_id.encode("ascii")).digest()
        self._decisions: dict[tuple[object, ...], tuple[LevelPolicy | None, LevelDecision]] = {}

    def __repr__(self) -> str:
        return (
            f"FidoVerifier(rp_id={self.policy.rp_id!r}, store={type(self.store).__name__}, "
            f"metadata={self.metadata is not None})"
        )

    def verify(
        self,
        evidence: Evidence,
        expected: Expected | AuthRequest,
        *,
        at: dt.datetime | None = None,
        level_policy: LevelPolicy | None = None,
        authenticator: AuthenticatorInfo | None = None,
    ) -> AuthResult:
        """Verify an assertion the way an IAM does; accepted, it moves the stored counter.

        :param evidence: ``webauthn-assertion`` evidence.
        :param expected: the nonce and origin of the request. An
            :class:`~mie.request.AuthRequest` asking for user verification requires UV even
            when the policy does not.
        :param at: the time the FIDO metadata and a temporary grant's expiry are checked at
            (default: now).
        :param level_policy: the level table for this call (default: the verifier's).
        :param authenticator: what was presented, for its transport only (the kind and the
            serial are the credential's).
        :return: the valid result: the registered identity, the level and why.
        :raises EvidenceFormatError: evidence of another kind.
        :raises OriginMismatchError: the evidence or its client data names another origin.
        :raises NonceMismatchError: the evidence or its client data names another challenge.
        :raises RpIdMismatchError: another relying party id (evidence or rpIdHash).
        :raises ClientDataFormatError: client data that is not strict ``webauthn.get`` JSON.
        :raises AuthDataFormatError: authenticator data that breaks its layout, carries
            attested credential data, or changed the credential's backup eligibility.
        :raises UserNotPresentError: UP clear.
        :raises UserNotVerifiedError: UV clear while required.
        :raises CredentialUnknownError: no such credential, or another user handle.
        :raises MieRevokedError: the credential is revoked (also when the revocation lands
            while the assertion is checked).
        :raises TemporaryExpiredError: a temporary credential whose grant expired; the
            counter was not moved.
        :raises TemporaryIdentityError: a temporary credential granted to another idNat.
        :raises CloneSuspectedError: the credential is suspected a clone, or the counter is not
            above the stored one (a counter that went back suspends it).
        :raises CounterUnsupportedError: a counter of 0 after 0 under ``counter: required``.
        :raises AttestationRefusedError: the credential's attestation, key algorithm or
            backup eligibility is refused by the policy now.
        :raises UnknownAaguidError: the model is no longer in the allowlist (or the metadata).
        :raises SignatureInvalidError: the signature does not verify.
        :raises MieError: what the FIDO metadata check raises (``metadata_status``,
            ``metadata_stale``).
        """
        if not isinstance(evidence, WebAuthnAssertionEvidence):
            raise EvidenceFormatError(f"No FIDO2 verifier for evidence of type {evidence.type!r}")
        policy = self.policy
        self._check_binding(evidence, expected)
        client = self._client_data(evidence, expected)
        uv_required = policy.require_uv or (
            isinstance(expected, AuthRequest) and expected.user_verification
        )
        auth = self._authenticator_data(evidence, uv_required=uv_required)
        record = self._credential(evidence, auth)
        grant = check_temporary(
            record.temporary,
            id_nat=record.id_nat,
            at=at.timestamp() if at is not None else time.time(),
        )
        attestation_type = _attestation_type(record)
        key = _cose_key(record.public_key, policy.algorithms)
        key.verify(evidence.signature, auth.raw + client.hash)
        reasons = [_SIGNATURE_REASONS[key.alg]]
        attested, certification = self._model(record, attestation_type, at, reasons)
        try:
            updated = self.store.advance_counter(
                record.rp_id,
                record.credential_id,
                auth.sign_count,
                allow_zero=policy.counter == "allow-zero",
            )
        except CloneSuspectedError as e:
            if e.suspended == "revoked":
                # Revoked by another node since the read above.
                raise self._revoked(record) from e
            raise
        if auth.sign_count == 0:
            reasons.append("no signature counter (0): no clone detection (policy allow-zero)")
        else:
            reasons.append(f"signature counter {auth.sign_count} above {record.sign_count}")
        if record.backup_eligible:
            reasons.append(f"backup-eligible credential (policy {policy.backup_eligible})")
        decision = self._decision(
            attested=attested,
            uv=auth.flags.uv,
            record=record,
            certification=certification,
            attestation_type=attestation_type,
            level_policy=level_policy or self.level_policy,
        )
        reasons.extend(decision.reasons)
        level, capped = cap_level(decision.level, grant)
        reasons.extend(capped)
        return AuthResult(
            valid=True,
            authenticator=AuthenticatorInfo(
                AUTHENTICATOR_KIND,
                _credential_ref(updated.credential_id),
                None,
                authenticator.transport if authenticator is not None else None,
            ),
            identity=_identity(updated),
            level=level,
            reasons=tuple(reasons),
            evidence=evidence,
        )

    def _decision(
        self,
        *,
        attested: bool,
        uv: bool,
        record: CredentialRecord,
        certification: str | None,
        attestation_type: str,
        level_policy: LevelPolicy | None,
    ) -> LevelDecision:
        """:return: :func:`~mie.policy.decide` of :func:`~mie.fido.levels.fido_proof`, memoised:
        a pure function of these inputs, the policy's ``backup_eligible`` choice and the level
        table (held by the entry, so the ``is`` check below cannot match a reused id)."""
        policy = self.policy
        backup_eligible, test = record.backup_eligible, record.test
        cacheable = (
            # Exactly bool: 1 == True would otherwise find the entry of a valid proof.
            type(attested) is bool
            and type(uv) is bool
            and type(backup_eligible) is bool
            and type(test) is bool
            and (level_policy is None or type(level_policy.rules) is tuple)
        )
        key = (
            attested,
            uv,
            backup_eligible,
            test,
            record.aaguid,
            certification,
            attestation_type,
            policy.backup_eligible,
            id(level_policy),
        )
        if cacheable:
            found = self._decisions.get(key)
            if found is not None and found[0] is level_policy:
                return found[1]
        proof = fido_proof(
            attested=attested,
            uv=uv,
            backup_eligible=backup_eligible,
            policy=policy,
            aaguid=record.aaguid,
            certification=certification,
            test=test,
            attestation_type=attestation_type,
        )
        decision = decide(proof, level_policy)
        if cacheable:
            if len(self._decisions) >= _DECISION_CACHE:
                self._decisions.clear()
            self._decisions[key] = (level_policy, decision)
        return decision

    def _check_binding(
        self, evidence: WebAuthnAssertionEvidence, expected: Expected | AuthRequest
    ) -> None:
        # Constant-time compares: the nonce is the relying party's secret for the session.
        if not hmac.compare_digest(evidence.origin.encode(), expected.origin.encode()):
            raise OriginMismatchError("The evidence was made for another origin")
        if not hmac.compare_digest(evidence.nonce, expected.nonce):
            raise NonceMismatchError("The evidence was made for another nonce")
        if not hmac.compare_digest(evidence.rp_id.encode(), self.policy.rp_id.encode()):
            raise RpIdMismatchError(
                f"The evidence was made for relying party {evidence.rp_id!r:.60}, "
                f"not {self.policy.rp_id!r}"
            )

    @staticmethod
    def _client_data(
        evidence: WebAuthnAssertionEvidence, expected: Expected | AuthRequest
    ) -> ClientData:
        client = ClientData.parse(evidence.client_data_json)
        if client.type != "webauthn.get":
            raise ClientDataFormatError(
                f"Client data type {client.type!r} is not webauthn.get (an assertion)"
            )
        if not hmac.compare_digest(client.challenge, expected.nonce):
            raise NonceMismatchError("The client data challenge is not this request's nonce")
        if not hmac.compare_digest(client.origin.encode(), expected.origin.encode()):
            raise OriginMismatchError(
                f"The client data origin {client.origin!r:.60} is not {expected.origin!r}"
            )
        return client

    def _authenticator_data(
        self, evidence: WebAuthnAssertionEvidence, *, uv_required: bool
    ) -> AuthenticatorData:
        auth = AuthenticatorData.parse(
            evidence.authenticator_data, algorithms=self.policy.algorithms
        )
        if auth.credential is not None:
            raise AuthDataFormatError(
                "Authenticator data of an assertion carries attested credential data (AT)"
            )
        if not hmac.compare_digest(auth.rp_id_hash, self._rp_id_hash):
            raise RpIdMismatchError(
                f"The authenticator data rpIdHash is not SHA-256({self.policy.rp_id!r})"
            )
        if not auth.flags.up:
            raise UserNotPresentError("The key did not see the user present (UP clear)")
        if uv_required and not auth.flags.uv:
            raise UserNotVerifiedError(
                "The key did not verify the user (UV clear): PIN or biometrics required"
            )
        return auth

    def _credential(
        self, evidence: WebAuthnAssertionEvidence, auth: AuthenticatorData
    ) -> CredentialRecord:
        policy = self.policy
        record = self.store.get_credential(policy.rp_id, evidence.credential_id)
        if record.suspended == "revoked":
            raise self._revoked(record)
        if record.suspended is not None:
            raise CloneSuspectedError(
                f"Assertion refused: {_name(record)} is suspended ({record.suspended})",
                suspended=record.suspended,
            )
        handle = evidence.user_handle
        if handle is not None and not hmac.compare_digest(handle, record.user_handle):
            raise CredentialUnknownError(
                f"The user handle is not the one {_name(record)} was registered with"
            )
        if auth.flags.be != record.backup_eligible:
            raise AuthDataFormatError(
                f"Backup eligibility changed: BE {int(auth.flags.be)} for {_name(record)}, "
                f"registered with {int(record.backup_eligible)} (fixed for a credential's life)"
            )
        if record.backup_eligible and policy.backup_eligible == "refuse":
            raise AttestationRefusedError(
                f"{_name(record)} is backup-eligible (syncable): the policy refuses such "
                "credentials"
            )
        return record

    def _revoked(self, record: CredentialRecord) -> MieRevokedError:
        """:return: the refusal of a revoked credential, with the revocation's reason when the
        store holds its lifecycle row (read only on this path)."""
        from mie.store.base import MieRef

        try:
            row = self.store.lifecycle(MieRef.fido2(record.rp_id, record.credential_id))
        except StoreError:
            row = None
        if row is not None and row.revocation is not None:
            return revoked_error(row.revocation)
        return MieRevokedError(f"Assertion refused: {_name(record)} is revoked")

    def _model(
        self,
        record: CredentialRecord,
        attestation_type: str,
        at: dt.datetime | None,
        reasons: list[str],
    ) -> tuple[bool, str | None]:
        """The model checks of now: the policy's attestation and allowlist, the metadata.

        :return: whether the model is proven (attested), and its certification level.
        """
        policy = self.policy
        if policy.attestation == "required" and attestation_type not in ATTESTED_TYPES:
            raise AttestationRefusedError(
                f"{credential_name(record.rp_id, record.credential_id)} was registered with "
                f"{attestation_type} attestation: the policy requires an attested key"
            )
        aaguid = _aaguid_text(record.aaguid)
        # The model is proven only by an entry that lists it now: the allowlist's or the
        # metadata's (plan D6), whatever the registration found then.
        listed = False
        if policy.allowlist is not None:
            # An allowlist is the operator's list of accepted models under either attestation
            # setting, as at registration: a model dropped from it is refused from then on.
            entry = policy.allowlist.entry(record.aaguid)
            if entry is None:
                raise UnknownAaguidError(f"AAGUID {aaguid} is not in the allowlist")
            listed = True
            reasons.append(f"AAGUID {aaguid} allowlisted ({entry.name})")
        certification = record.certification
        if self.metadata is not None and policy.metadata is not None:
            when = at if at is not None else dt.datetime.now(dt.UTC)
            view = self.metadata.check(record.aaguid, policy=policy.metadata, at=when)
            if view is None:
                reasons.append(f"AAGUID {aaguid} has no FIDO metadata entry (not required)")
            else:
                _refuse_unknown_batch(view, policy.metadata.refuse, aaguid)
                listed = True
                reasons.append(f"AAGUID {aaguid}: FIDO metadata status accepted")
                certification = view.certification or certification
        if policy.attestation == "required" and not listed:
            raise UnknownAaguidError(
                f"AAGUID {aaguid} is listed neither in the allowlist nor in the FIDO metadata"
            )
        return attestation_type in ATTESTED_TYPES and listed, certification


@functools.lru_cache(maxsize=_KEY_CACHE)
def _cose_key(public_key: bytes, algorithms: tuple[int, ...]) -> CoseKey:
    # A stored key is read on every assertion of its credential: parsed once per process.
    return CoseKey.from_bytes(public_key, algorithms=algorithms)


def _refuse_unknown_batch(view: MetadataView, refuse: frozenset[str], aaguid: str) -> None:
    """Refuse a model with a refused status that names one attestation certificate.

    :meth:`~mie.fido.mds.MetadataIndex.check` refuses such a status only for a chain holding
    that certificate; the store keeps no chain, so at an assertion nothing tells whether this
    credential came from the compromised batch: fail closed.
    """
    for report in view.statuses:
        if report.status in refuse and report.certificate is not None:
            since = report.date.isoformat() if report.date else "an unknown date"
            raise MetadataStatusError(
                f"FIDO metadata of AAGUID {aaguid}: status {report.status} since {since} for "
                "one attestation certificate, and the credential's chain is not kept: refused"
            )


def _attestation_type(record: CredentialRecord) -> str:
    """:return: the attestation type of the stored summary (``packed/basic`` -> ``basic``)."""
    kind = _SUMMARIES.get(record.attestation)
    if kind is None:
        raise AttestationRefusedError(
            f"{credential_name(record.rp_id, record.credential_id)}: attestation "
            f"{record.attestation!r} is not one mie verifies"
        )
    return kind


def _name(record: CredentialRecord) -> str:
    return credential_name(record.rp_id, record.credential_id)


def _identity(record: CredentialRecord) -> Identity:
    return _identity_of(record.id_nat, record.test)


@functools.lru_cache(maxsize=_IDENTITY_CACHE, typed=True)
def _identity_of(id_nat: str, test: bool) -> Identity:
    # A pure function of the stored id_nat (Identity is frozen): parsed once per professional.
    id_type, ident = parse_id_nat(id_nat)
    return Identity(id_nat, id_type, ident, None, None, None, None, test)


@functools.lru_cache(maxsize=_IDENTITY_CACHE)
def _credential_ref(credential_id: bytes) -> str:
    """:return: the credential's short name in results, the first 16 bytes of its SHA-256 in
    hex: :func:`mie.fido.authenticator.credential_ref`'s rule (that module loads python-fido2)."""
    return hashlib.sha256(credential_id).digest()[:16].hex()


@functools.lru_cache(maxsize=_KEY_CACHE)
def _aaguid_text(aaguid: bytes) -> str:
    h = aaguid.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


__all__ = ["AUTHENTICATOR_KIND", "FidoVerifier"]
