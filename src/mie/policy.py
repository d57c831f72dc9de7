"""RIE / eIDAS assurance level from verified evidence.

Rules (``../shared/reference/ans-pki.md`` §1.2, §6): a card *authentication* certificate issued
by ``AC IGC-SANTE FORT PERSONNES`` (CPS: smart card + PIN) gives ``substantial``; STANDARD
(CPE/CPA) and ELEMENTAIRE (software certificates) give ``low``. ``high`` is never granted from a
certificate alone (it needs a certified means, not known from the chain). IGC-Santé policy OIDs
for authentication are not public, so they are configuration: when set, the leaf must carry one
of them or the decision fails with ``policy``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, unique

from cryptography import x509

from mie.trust.crl import RevocationStatus
from mie.trust.errors import ErrorCode, VerificationError
from mie.trust.store import Domain, Gamme, classify
from mie.trust.verify import Usage, VerificationResult


@unique
class AssuranceLevel(Enum):
    """eIDAS levels as the RIE uses them."""

    LOW = "low"
    SUBSTANTIAL = "substantial"
    HIGH = "high"


@dataclass(frozen=True)
class LevelPolicy:
    """Configuration of the level decision.

    :param auth_policy_oids: per gamme, the certificate policy OIDs an authentication
        certificate must carry; a gamme absent from the mapping has no OID requirement.
    """

    auth_policy_oids: Mapping[Gamme, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class LevelDecision:
    """The level and why.

    :param level: the level, or ``None`` when the chain is not an IGC-Santé chain.
    :param reasons: human-readable reasons, in order.
    """

    level: AssuranceLevel | None
    reasons: tuple[str, ...]


def decide_level(
    result: VerificationResult, usage: Usage, policy: LevelPolicy | None = None
) -> LevelDecision:
    """Decide the level a verified certificate grants.

    :param result: a successful verification.
    :param usage: the usage the certificate was verified for.
    :param policy: configuration (default: no policy OID requirement).
    :return: the decision.
    :raises VerificationError: ``policy`` when a configured policy OID is missing.
    """
    policy = policy or LevelPolicy()
    issuer = result.certificate(1) if len(result.path) > 1 else None
    info = classify(issuer.subject) if issuer is not None else None
    if info is None or info.gamme is None:
        return LevelDecision(None, ("issuer is not an IGC-Santé CA",))
    reasons = [f"issued by an IGC-Santé {info.gamme.value} CA ({issuer.subject.rfc4514_string()})"]  # type: ignore[union-attr]
    if info.test or result.anchor.test:
        reasons.append("TEST hierarchy")
    _check_policy_oids(result.leaf, info.gamme, policy, reasons)
    if result.revocation is RevocationStatus.UNKNOWN:
        # Accepted under soft revocation, but a level is only granted on a known status.
        reasons.append("revocation status unknown: no level granted")
        return LevelDecision(None, tuple(reasons))
    if usage is not Usage.AUTH:
        reasons.append("not verified as an authentication certificate")
        return LevelDecision(AssuranceLevel.LOW, tuple(reasons))
    reasons.append("authentication certificate (digitalSignature)")
    if info.gamme is Gamme.FORT and info.domain is Domain.PERSONNES:
        reasons.append("FORT PERSONNES card certificate: smart card and PIN, two factors")
        return LevelDecision(AssuranceLevel.SUBSTANTIAL, tuple(reasons))
    reasons.append(f"{info.gamme.value} gamme grants low at most")
    return LevelDecision(AssuranceLevel.LOW, tuple(reasons))


def _check_policy_oids(
    leaf: x509.Certificate, gamme: Gamme, policy: LevelPolicy, reasons: list[str]
) -> None:
    wanted = policy.auth_policy_oids.get(gamme)
    if not wanted:
        return
    try:
        policies = leaf.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except x509.ExtensionNotFound:
        policies = x509.CertificatePolicies([])
    present = {p.policy_identifier.dotted_string for p in policies}
    matched = present & wanted
    if not matched:
        raise VerificationError(
            ErrorCode.POLICY,
            f"certificate policies {sorted(present)} include none of {sorted(wanted)}",
        )
    reasons.append(f"certificate policy {sorted(matched)[0]}")
