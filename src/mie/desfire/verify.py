"""The verifier side of a MIE badge: check a ``desfire-session`` evidence (issue 9 plan §2.4).

:func:`verify_badge_evidence` runs these checks in this order; each raises:

1. the origin, then the nonce the evidence was made for (constant-time compares); then the
   scheme: a ``legacy`` session without the configuration's opt-in (``legacy_crypto``), an
   ``ev1-aes`` one when it sets ``require_ev2`` (``unsupported_card``: EV2 badges can be made
   to answer as EV1 by whoever relays them);
2. with the key provider, the replay: the reader side of the session
   (:func:`~mie.desfire.reading.read_identity`) runs again against the transcript, RndA
   derived from the expected nonce and origin. Another key or another nonce makes other
   commands (:class:`~mie.errors.SignatureInvalidError`); an answer that was changed fails its
   MAC (``integrity_error``) or RndA' (``suspected_clone``); what the replay read must be what
   the evidence states. Without a key provider nothing proves the badge took part: the result
   has no level;
3. the record parses (``malformed``) and a trusted authority signed it (``record_untrusted``);
4. the record was issued for this badge and application (``record_copied``);
5. the originality signature, when the configuration requires it (``not_genuine``). The replay
   reads it where the configuration's ``originality_read`` says (``full``: last, inside the
   session, its protected answer's MAC checked; ``plain``: first, in clear), so the evidence's
   ``originality`` is what that answer held;
6. the lifecycle, read from the store at every verification (issue 11 plan D7): a revoked
   badge is refused (``revoked``) before its PIN is asked, so its PIN is neither asked nor
   counted; a temporary badge's grant must not have expired (``expired``) and must be for the
   record's idNat (``policy``). Without a lifecycle store the result says the revocation list
   was not checked;
7. the second factor: the PIN is asked (``user.request_pin(tries_left)``) and checked against
   the store; a wrong one is counted (``invalid_pin``), a locked badge refused (``pin_blocked``);
8. the level (:func:`mie.policy.decide`): the badge alone is possession (``low``), with the PIN
   two factors (``substantial``), a legacy DES badge none; a temporary badge's is capped at its
   grant's (:func:`mie.lifecycle.cap_level`).
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import time
from typing import TYPE_CHECKING

from mie.core.connection import Transport
from mie.core.errors import (
    EvidenceFormatError,
    NonceMismatchError,
    OriginMismatchError,
    ReplayMismatchError,
    SignatureInvalidError,
    UnsupportedCardError,
)
from mie.desfire import constants as c
from mie.desfire.config import (
    BadgeConfig,
    Originality,
    SecondFactorSettings,
    open_keys,
)
from mie.desfire.crypto import verify_originality_signature
from mie.desfire.errors import LegacyCryptoError, OriginalitySignatureError, RecordCopiedError
from mie.desfire.evidence import BadgeScheme, DesfireSessionEvidence
from mie.desfire.reading import BoundRndA, read_identity
from mie.desfire.record import AuthorityKey, IdentityRecord, SignedRecord, check_binding, verify
from mie.desfire.session import DesfireSession
from mie.keys.base import KeyProvider
from mie.lifecycle import cap_level, check_lifecycle
from mie.policy import BadgeAttestation, Factor, LevelPolicy, MieKind, Proof, decide
from mie.request import AuthRequest, UserVerification, bound_challenge
from mie.result import AuthenticatorInfo, AuthResult
from mie.store.errors import NotEnrolledError, SecondFactorLockedError
from mie.transport.replay import Exchange, ReplayConnection, Vector

if TYPE_CHECKING:
    from collections.abc import Callable

    from mie.store.base import Store, TemporaryGrant
    from mie.store.secondfactor import SecondFactor
    from mie.verification import Expected

logger = logging.getLogger(__name__)

_NATIVE_CLA = 0x90
_FIRST_AUTHENTICATIONS = frozenset({c.AUTH_EV2_FIRST, c.AUTH_AES, c.AUTH_ISO})
NOT_REPLAYED = "badge session not re-verified: no key provider"
NO_LIFECYCLE = "revocation list not checked (no store)"
_SCHEMES = {
    BadgeScheme.EV2: "EV2 AES mutual authentication with a diversified key",
    BadgeScheme.EV1_AES: "EV1 AES mutual authentication with a diversified key",
    BadgeScheme.LEGACY: "legacy DES/3DES authentication",
}


class BadgeVerifier:
    """What a verifier needs to check badge evidence.

    :param config: the badge configuration (application, authorities, checks).
    :param keys: the key provider, to re-run the session; ``None``: the record is checked,
        the session is not, and no level is granted. It stays the caller's to close.
    :param second_factor: the PIN store; ``None``: possession only (``low``).
    :param lifecycle: the store of revocations and temporary grants, read at every
        verification; ``None``: the second factor's store, if any (otherwise nothing is
        checked, and the result says so).
    :param clock: now, in seconds since the epoch (a temporary grant's expiry).
    """

    def __init__(
        self,
        config: BadgeConfig,
        *,
        keys: KeyProvider | None,
        second_factor: SecondFactor | None = None,
        lifecycle: Store | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.keys = keys
        self.second_factor = second_factor
        self._lifecycle = lifecycle
        self.clock = clock
        self._owned: list[KeyProvider | Store] = []

    @classmethod
    def open(cls, config: BadgeConfig) -> BadgeVerifier:
        """Open what ``config`` names: its key provider (if any) and its second-factor store
        (if any); :meth:`close` closes them.

        :raises BadgeConfigError: a PKCS#11 PIN variable not set.
        :raises KeyProviderError: the provider cannot be opened.
        :raises StoreError: the store cannot be opened.
        """
        verifier = cls(config, keys=None)
        try:
            if config.keys is not None:
                verifier.keys = open_keys(config)
                verifier._owned.append(verifier.keys)
            if config.second_factor is not None:
                verifier.second_factor = _open_second_factor(config.second_factor, verifier)
        except BaseException:
            verifier.close()
            raise
        return verifier

    @property
    def lifecycle(self) -> Store | None:
        """:return: the store the lifecycle is read from: the one given, else the second
        factor's."""
        if self._lifecycle is not None:
            return self._lifecycle
        return self.second_factor.store if self.second_factor is not None else None

    @lifecycle.setter
    def lifecycle(self, store: Store | None) -> None:
        self._lifecycle = store

    def close(self) -> None:
        """Close what :meth:`open` opened (nothing for a verifier built directly)."""
        owned, self._owned = self._owned, []
        for item in reversed(owned):
            item.close()

    def __enter__(self) -> BadgeVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def verify(
        self,
        evidence: DesfireSessionEvidence,
        expected: Expected | AuthRequest,
        *,
        user: UserVerification | None = None,
        policy: LevelPolicy | None = None,
        authenticator: AuthenticatorInfo | None = None,
    ) -> AuthResult:
        """:func:`verify_badge_evidence` with this verifier."""
        return verify_badge_evidence(
            evidence, expected, self, user=user, policy=policy, authenticator=authenticator
        )


def _open_second_factor(settings: SecondFactorSettings, verifier: BadgeVerifier) -> SecondFactor:
    from mie.store.secondfactor import SecondFactor

    store: Store
    if settings.store == "sqlite":
        from mie.store.sqlite import SqliteStore

        store = SqliteStore(settings.location)
    else:
        from mie.store.postgres import PostgresStore

        store = PostgresStore(settings.location)
    verifier._owned.append(store)
    return SecondFactor(store, max_failures=settings.max_failures)


def verify_badge_evidence(
    evidence: DesfireSessionEvidence,
    expected: Expected | AuthRequest,
    badges: BadgeVerifier,
    *,
    user: UserVerification | None = None,
    policy: LevelPolicy | None = None,
    authenticator: AuthenticatorInfo | None = None,
) -> AuthResult:
    """Verify a badge session's evidence (the checks of the module docstring, in order).

    :param evidence: what the badge authenticator produced.
    :param expected: the nonce and origin of the request; an
        :class:`~mie.request.AuthRequest` also says whether the user is to be verified (the
        PIN is asked only then; an :class:`~mie.verification.Expected` always asks).
    :param badges: the configuration, key provider and second-factor store.
    :param user: asked for the second-factor PIN, once, after every other check passed;
        ``None``: possession only.
    :param policy: the level policy.
    :param authenticator: what was presented; its serial, when set, must be the badge's UID.
    :return: the valid result (``identity`` from the record, ``authenticator.serial`` the UID).
    :raises OriginMismatchError: made for another origin.
    :raises NonceMismatchError: made for another nonce.
    :raises SignatureInvalidError: the transcript does not replay with these keys and this
        nonce, or states other values than it read.
    :raises ResponseIntegrityError: a response in the transcript fails its MAC.
    :raises CardCryptogramError: the transcript's badge does not prove the key.
    :raises RecordFormatError: the record does not parse (``malformed``).
    :raises RecordUntrustedError: no trusted authority signed the record.
    :raises RecordCopiedError: the record names another badge or application.
    :raises OriginalitySignatureError: required, and missing or not verifying.
    :raises MieRevokedError: the badge is revoked (its PIN was not asked).
    :raises TemporaryExpiredError: a temporary badge whose grant expired.
    :raises TemporaryIdentityError: a temporary badge whose record is another professional's.
    :raises StoreError: the lifecycle store failed (nothing decided).
    :raises LegacyCryptoError: a legacy session and the configuration does not opt in.
    :raises UnsupportedCardError: an EV1 AES session and the configuration requires EV2.
    :raises WrongSecondFactorError: the PIN is wrong (counted; ``tries_left``).
    :raises SecondFactorLockedError: the badge's PIN is locked.
    :raises EvidenceFormatError: the presented authenticator names another badge.
    """
    config = badges.config
    _check_binding(evidence, expected)
    if evidence.scheme is BadgeScheme.LEGACY and not config.legacy:
        raise LegacyCryptoError(
            "The badge session used DES/3DES: refused unless the configuration sets legacy"
        )
    if evidence.scheme is not BadgeScheme.EV2 and config.require_ev2:
        raise UnsupportedCardError(
            f"The badge session used {evidence.scheme.value}: the configuration requires EV2 "
            "(require_ev2)"
        )
    reasons: list[str] = []
    replayed = badges.keys is not None
    if badges.keys is not None:
        _replay(evidence, expected, config, badges.keys)
        reasons.append(f"badge session re-verified ({_SCHEMES[evidence.scheme]})")
    else:
        reasons.append(NOT_REPLAYED)
    signed, authority = _check_record(evidence, config)
    reasons.append(f"identity record signed by {authority.name!r}")
    originality = _check_originality(evidence, config, reasons)
    # Before the PIN: it is asked only once every other check passed.
    presented = _presented(authenticator, evidence)
    grant = _check_lifecycle(evidence, badges, signed, reasons)
    factors = {Factor.POSSESSION}
    if replayed:
        if _second_factor(evidence, expected, badges, signed, user, reasons):
            factors.add(Factor.KNOWLEDGE)
    else:
        reasons.append("second factor not checked: badge session not re-verified")
    level = None
    if replayed:
        attestation = BadgeAttestation(evidence.scheme.value, originality)
        proof = Proof(MieKind.DESFIRE_BADGE, frozenset(factors), None, attestation=attestation)
        decision = decide(proof, policy)
        reasons.extend(decision.reasons)
        level, capped = cap_level(decision.level, grant)
        reasons.extend(capped)
    else:
        reasons.append("no level granted")
    return AuthResult(
        valid=True,
        authenticator=presented,
        identity=signed.record.to_identity(test_card=authority.test),
        level=level,
        reasons=tuple(reasons),
        evidence=evidence,
    )


def _check_binding(evidence: DesfireSessionEvidence, expected: Expected | AuthRequest) -> None:
    # Constant-time compares: the nonce is the relying party's secret for the session.
    if not hmac.compare_digest(evidence.origin.encode(), expected.origin.encode()):
        raise OriginMismatchError("The evidence was made for another origin")
    if not hmac.compare_digest(evidence.nonce, expected.nonce):
        raise NonceMismatchError("The evidence was made for another nonce")


def _replay(
    evidence: DesfireSessionEvidence,
    expected: Expected | AuthRequest,
    config: BadgeConfig,
    keys: KeyProvider,
) -> None:
    """Run the reader side of the session against the transcript; raise unless it makes the
    same commands, gets through every check and reads what the evidence states."""
    if evidence.uid_source is not config.uid_source:
        raise SignatureInvalidError(
            f"The badge session took the UID from {evidence.uid_source.value}, the "
            f"configuration from {config.uid_source.value}"
        )
    vector = Vector(
        "badge session evidence",
        "evidence",
        "desfire",
        exchanges=[Exchange(e.command.hex(), e.response) for e in evidence.transcript],
    )
    replay = ReplayConnection(vector, Transport.CONTACTLESS)
    challenge = bound_challenge(expected.origin, expected.nonce)
    session = DesfireSession(replay, rng=BoundRndA(challenge))
    # The live session tried EV2 first unless it knew the badge was EV1 (then AuthenticateAES
    # first, also for a legacy badge diagnosed after it): the first authentication says which.
    first = next(
        (
            e.command[1]
            for e in evidence.transcript
            if e.command[0] == _NATIVE_CLA and e.command[1] in _FIRST_AUTHENTICATIONS
        ),
        None,
    )
    ev1 = True if first == c.AUTH_AES else None
    try:
        outcome = read_identity(session, config, keys, ev1=ev1)
        replay.assert_complete()
    except ReplayMismatchError as e:
        raise SignatureInvalidError(
            "The badge transcript does not verify with this key and nonce"
        ) from e
    stated = (evidence.scheme, evidence.uid, evidence.record, evidence.originality)
    read = (outcome.scheme, outcome.uid, outcome.record, outcome.originality)
    if stated != read:
        names = ("scheme", "uid", "record", "originality")
        differ = next(n for n, a, b in zip(names, stated, read, strict=True) if a != b)
        raise SignatureInvalidError(f"The evidence {differ} is not what the badge session read")


def _check_record(
    evidence: DesfireSessionEvidence, config: BadgeConfig
) -> tuple[SignedRecord, AuthorityKey]:
    signed = IdentityRecord.parse(evidence.record)
    authority = verify(signed, config.authorities)
    check_binding(signed.record, uid=evidence.uid, aid=config.aid)
    if evidence.aid != config.aid:
        raise RecordCopiedError(
            RecordCopiedError.AID,
            f"The badge session read application {evidence.aid.hex()}, the configuration "
            f"names {config.aid.hex()}",
        )
    return signed, authority


def _check_lifecycle(
    evidence: DesfireSessionEvidence,
    badges: BadgeVerifier,
    signed: SignedRecord,
    reasons: list[str],
) -> TemporaryGrant | None:
    """:return: the badge's temporary grant, if any (a revoked badge, an expired grant or one
    of another professional raises: see :func:`~mie.lifecycle.check_lifecycle`)."""
    store = badges.lifecycle
    if store is None:
        reasons.append(NO_LIFECYCLE)
        return None
    from mie.store.base import MieRef

    row = store.lifecycle(MieRef.badge(evidence.uid))
    grant = check_lifecycle(row, id_nat=signed.record.id_nat, at=badges.clock())
    reasons.append("badge not revoked" if grant is None else "badge not revoked, temporary")
    return grant


def _check_originality(
    evidence: DesfireSessionEvidence, config: BadgeConfig, reasons: list[str]
) -> bool:
    """:return: whether the originality signature verified (raises when required)."""
    if config.originality is Originality.OFF:
        reasons.append("originality signature not checked")
        return False
    try:
        if evidence.originality is None:
            raise OriginalitySignatureError("The badge gave no originality signature")
        key = verify_originality_signature(
            evidence.uid, evidence.originality, config.originality_key_set()
        )
    except OriginalitySignatureError as e:
        if config.originality is Originality.REQUIRED:
            raise
        reasons.append(f"originality signature not verified (optional): {e}")
        return False
    reasons.append(f"originality signature verified ({key.name})")
    return True


def _second_factor(
    evidence: DesfireSessionEvidence,
    expected: Expected | AuthRequest,
    badges: BadgeVerifier,
    signed: SignedRecord,
    user: UserVerification | None,
    reasons: list[str],
) -> bool:
    """:return: whether the PIN was checked and matched (a wrong or locked one raises)."""
    factor = badges.second_factor
    if factor is None:
        reasons.append("no second factor configured: possession only")
        return False
    if isinstance(expected, AuthRequest) and not expected.user_verification:
        reasons.append("second factor not requested")
        return False
    badge = signed.badge_name
    try:
        tries_left = factor.tries_left(badge)
    except NotEnrolledError:
        reasons.append("no second factor enrolled for this badge: possession only")
        return False
    if user is None:
        reasons.append("second factor not presented")
        return False
    if tries_left <= 0:
        raise SecondFactorLockedError()
    pin = user.request_pin(tries_left)
    factor.verify(badge, signed.file, pin)
    reasons.append("second-factor PIN verified")
    return True


def _presented(
    authenticator: AuthenticatorInfo | None, evidence: DesfireSessionEvidence
) -> AuthenticatorInfo:
    uid = evidence.uid.hex()
    if authenticator is None:
        kind = "desfire-ev1" if evidence.scheme is BadgeScheme.EV1_AES else "desfire"
        return AuthenticatorInfo(kind, uid, None, Transport.CONTACTLESS)
    if authenticator.serial is not None and authenticator.serial != uid:
        raise EvidenceFormatError(
            f"The authenticator names badge {authenticator.serial!r:.40}, the evidence badge {uid}"
        )
    return dataclasses.replace(authenticator, serial=uid)


__all__ = [
    "NOT_REPLAYED",
    "NO_LIFECYCLE",
    "BadgeVerifier",
    "verify_badge_evidence",
]
