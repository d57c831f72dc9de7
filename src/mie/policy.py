"""RIE / eIDAS assurance level from what was proven.

A :class:`Proof` says which MIE was used (:class:`MieKind`), which factors it proved
(:class:`Factor`) and which certificate chain verified; :func:`decide` grants the level of the
first :class:`LevelRule` of :attr:`LevelPolicy.rules` it matches. DESFire badges are rows of the
same table without a gamme (an MIE without certificate), and so are FIDO2 security keys.

Rules (``../shared/reference/ans-pki.md`` §1.2, §6): a card *authentication* certificate issued
by ``AC IGC-SANTE FORT PERSONNES`` (CPS: smart card + PIN) gives ``substantial``; STANDARD
(CPE/CPA) and ELEMENTAIRE (software certificates) give ``low``. ``high`` is never granted from a
certificate alone (it needs a certified means, not known from the chain). IGC-Santé policy OIDs
for authentication are not public, so they are configuration: when set, the leaf must carry one
of them or the decision fails with ``policy``.

A DESFire badge (issue 9) has no chain: its proof carries a :class:`BadgeAttestation` (the
verifier re-ran the session). The badge alone proves possession and gives ``low``; with a PIN
checked by the verifier against the store, two factors give ``substantial``; a legacy DES/3DES
badge gets no level (``docs/rie-conformance.md``).

A FIDO2 key (issue 10) has no chain either: its proof carries a :class:`FidoAttestation` (what
the verifier established at registration and again at the assertion) and :class:`Property`
flags. A key whose model is proven by attestation, that verified its user (PIN or biometrics)
and whose credential cannot leave it gives ``substantial``; any other verified assertion gives
``low``; ``high`` never (no public FIDO certification to eIDAS high mapping).

These rows are inferred from the IGC-Santé gammes, not read in a published RIE table: an
integrator whose RIE decides otherwise replaces them with :attr:`LevelPolicy.rules`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, unique

from cryptography import x509

from mie.trust.crl import RevocationStatus
from mie.trust.errors import ErrorCode, VerificationError
from mie.trust.store import CaClass, Domain, Gamme, classify
from mie.trust.verify import Usage, VerificationResult


@unique
class AssuranceLevel(Enum):
    """eIDAS levels as the RIE uses them."""

    LOW = "low"
    SUBSTANTIAL = "substantial"
    HIGH = "high"


@unique
class MieKind(Enum):
    """The kind of means of electronic identification (MIE) that produced a proof."""

    CPX_CARD = "cpx-card"
    DESFIRE_BADGE = "desfire-badge"
    FIDO2_KEY = "fido2-key"
    #: A certificate checked on its own (``mie verify-cert``): nothing says how its key is held.
    CERTIFICATE = "certificate"


@unique
class Factor(Enum):
    """Authentication factors a proof establishes."""

    POSSESSION = "possession"
    KNOWLEDGE = "knowledge"
    INHERENCE = "inherence"


@dataclass(frozen=True)
class BadgeAttestation:
    """What the verifier established about a badge session it re-ran.

    :param scheme: the secure messaging: ``ev2``, ``ev1-aes`` or ``legacy`` (DES/3DES).
    :param originality: the NXP originality signature verified.
    """

    scheme: str
    originality: bool


LEGACY_SCHEME = "legacy"


@unique
class Property(Enum):
    """What a proof establishes about the MIE beyond its factors (FIDO2 keys)."""

    #: Packed full attestation verified to a root listed for the key's AAGUID, the AAGUID
    #: allowlisted or in the FIDO metadata with an accepted status.
    ATTESTED = "attested"
    #: The credential cannot leave the key: backup eligibility (BE) clear, or allowed by policy.
    DEVICE_BOUND = "device-bound"


ATTESTED_TYPES = frozenset({"basic", "attca"})
"""The attestation types (:attr:`FidoAttestation.type`) that prove the model: full packed
attestation to a vendor root (``self`` and ``none`` prove nothing about it)."""


@dataclass(frozen=True)
class FidoAttestation:
    """What the verifier established about a FIDO2 credential it checked an assertion of.

    :param type: the attestation of its registration: ``basic``, ``attca``, ``self`` or
        ``none``.
    :param aaguid: the key model (16 bytes).
    :param certification: the model's FIDO certification level (``L1``, ``L2``...), if known.
    :param test: a TEST key (its attestation root or allowlist entry is marked TEST).
    """

    type: str
    aaguid: bytes
    certification: str | None
    test: bool


@dataclass(frozen=True)
class Proof:
    """What a verification established, the input of the level decision.

    :param mie: the kind of MIE.
    :param factors: the factors proven (a CPx login: the card, possession, and its PIN,
        knowledge).
    :param chain: the verified certificate path, or ``None`` when no chain was checked.
    :param usage: what the certificate was verified for.
    :param attestation: a verified attestation: a :class:`BadgeAttestation` for a badge, a
        :class:`FidoAttestation` for a FIDO2 key, or ``None``.
    :param properties: what else was established (:class:`Property`, FIDO2 keys).
    """

    mie: MieKind
    factors: frozenset[Factor]
    chain: VerificationResult | None
    usage: Usage = Usage.AUTH
    attestation: object | None = None
    properties: frozenset[Property] = frozenset()


@dataclass(frozen=True)
class LevelRule:
    """One row of the level table: a proof matching it gets ``level``.

    :param mie: the MIE kind it applies to (``None``: any).
    :param factors: factors the proof must include (a subset of :attr:`Proof.factors`).
    :param gamme: the IGC-Santé gamme of the leaf's issuer; ``None``: an MIE without
        certificate (a DESFire badge), matched only by proofs without a chain.
    :param domain: the issuer's domain (``None``: any).
    :param level: the level granted.
    :param reason: the reason given when the row decides.
    :param requires: properties the proof must have (a subset of :attr:`Proof.properties`).
    """

    mie: MieKind | None
    factors: frozenset[Factor]
    gamme: Gamme | None
    domain: Domain | None
    level: AssuranceLevel
    reason: str
    requires: frozenset[Property] = frozenset()

    def matches(self, proof: Proof, issuer: CaClass | None) -> bool:
        """:return: whether ``proof``, whose leaf ``issuer`` issued (``None``: a proof without
        a chain), falls under this row."""
        if self.mie not in (None, proof.mie) or not self.factors <= proof.factors:
            return False
        if not self.requires <= proof.properties:
            return False
        if issuer is None:
            return self.gamme is None
        return self.gamme is issuer.gamme and self.domain in (None, issuer.domain)


_CARD_AND_PIN = frozenset({Factor.POSSESSION, Factor.KNOWLEDGE})
_POSSESSION = frozenset({Factor.POSSESSION})
_FORT_PERSONNES = "FORT PERSONNES card certificate: smart card and PIN, two factors"
_NONE: frozenset[Factor] = frozenset()
_ATTESTED = frozenset({Property.ATTESTED})

DEFAULT_RULES: tuple[LevelRule, ...] = (
    # That the RIE grants substantial to card + PIN for FORT PERSONNES is inferred from the
    # IGC-Santé gammes (ans-pki.md §1.2, §6), not read in a published table.
    LevelRule(
        MieKind.CPX_CARD,
        _CARD_AND_PIN,
        Gamme.FORT,
        Domain.PERSONNES,
        AssuranceLevel.SUBSTANTIAL,
        _FORT_PERSONNES,
    ),
    # A FORT PERSONNES certificate is only issued on a CPS card, whose key needs the PIN
    # (inferred too: ``mie verify-cert`` sees the certificate, not the card).
    LevelRule(
        MieKind.CERTIFICATE,
        _NONE,
        Gamme.FORT,
        Domain.PERSONNES,
        AssuranceLevel.SUBSTANTIAL,
        _FORT_PERSONNES,
    ),
    LevelRule(None, _NONE, Gamme.FORT, None, AssuranceLevel.LOW, "FORT gamme grants low at most"),
    LevelRule(
        None, _NONE, Gamme.STANDARD, None, AssuranceLevel.LOW, "STANDARD gamme grants low at most"
    ),
    LevelRule(
        None,
        _NONE,
        Gamme.ELEMENTAIRE,
        None,
        AssuranceLevel.LOW,
        "ELEMENTAIRE gamme grants low at most",
    ),
    # DESFire badges (no chain): inferred from the RIE's factor rules, docs/rie-conformance.md.
    LevelRule(
        MieKind.DESFIRE_BADGE,
        _CARD_AND_PIN,
        None,
        None,
        AssuranceLevel.SUBSTANTIAL,
        "DESFire AES mutual authentication with a diversified key and a PIN checked by the "
        "verifier: two factors",
    ),
    LevelRule(
        MieKind.DESFIRE_BADGE,
        _POSSESSION,
        None,
        None,
        AssuranceLevel.LOW,
        "DESFire badge alone: possession only",
    ),
    # FIDO2 keys (no chain): inferred, no published RIE row (docs/rie-conformance.md). The
    # user verification is a second factor whether it is a PIN or a fingerprint: the key says
    # that it verified the user, not how.
    LevelRule(
        MieKind.FIDO2_KEY,
        _CARD_AND_PIN,
        None,
        None,
        AssuranceLevel.SUBSTANTIAL,
        "FIDO2 key of an attested model that verified its user, credential bound to the key: "
        "two factors",
        frozenset({Property.ATTESTED, Property.DEVICE_BOUND}),
    ),
    LevelRule(
        MieKind.FIDO2_KEY,
        _CARD_AND_PIN,
        None,
        None,
        AssuranceLevel.LOW,
        "backup-eligible (syncable) FIDO2 credential: it can leave the key, not a hardware-bound "
        "factor",
        _ATTESTED,
    ),
    LevelRule(
        MieKind.FIDO2_KEY,
        _POSSESSION,
        None,
        None,
        AssuranceLevel.LOW,
        "FIDO2 key without user verification: possession only",
        _ATTESTED,
    ),
    LevelRule(
        MieKind.FIDO2_KEY,
        _POSSESSION,
        None,
        None,
        AssuranceLevel.LOW,
        "FIDO2 key without attestation (self or none): its model and key protection are unproven",
    ),
)
"""The level table: the first row a proof matches decides."""


@dataclass(frozen=True)
class LevelPolicy:
    """Configuration of the level decision.

    :param auth_policy_oids: per gamme, the certificate policy OIDs an authentication
        certificate must carry; a gamme absent from the mapping has no OID requirement.
    :param rules: the level table (default :data:`DEFAULT_RULES`).
    """

    auth_policy_oids: Mapping[Gamme, frozenset[str]] = field(default_factory=dict)
    rules: tuple[LevelRule, ...] = DEFAULT_RULES


@dataclass(frozen=True)
class LevelDecision:
    """The level and why.

    :param level: the level, or ``None`` when the chain is not an IGC-Santé chain.
    :param reasons: human-readable reasons, in order.
    """

    level: AssuranceLevel | None
    reasons: tuple[str, ...]


def decide(proof: Proof, policy: LevelPolicy | None = None) -> LevelDecision:
    """Decide the level a proof grants.

    :param proof: what a verification established.
    :param policy: configuration (default: no policy OID requirement, :data:`DEFAULT_RULES`).
    :return: the decision (level ``None`` when no chain was verified, the issuer is not an
        IGC-Santé CA, the revocation status is unknown or no row matches).
    :raises VerificationError: ``policy`` when a configured policy OID is missing.
    """
    policy = policy or LevelPolicy()
    result = proof.chain
    if result is None and proof.mie is MieKind.DESFIRE_BADGE:
        return _decide_badge(proof, policy)
    if result is None and proof.mie is MieKind.FIDO2_KEY:
        return _decide_fido(proof, policy)
    if result is None:
        return LevelDecision(None, ("certificate chain not verified: no level granted",))
    issuer = result.certificate(1) if len(result.path) > 1 else None
    info = classify(issuer.subject) if issuer is not None else None
    if issuer is None or info is None or info.gamme is None:
        return LevelDecision(None, ("issuer is not an IGC-Santé CA",))
    reasons = [f"issued by an IGC-Santé {info.gamme.value} CA ({issuer.subject.rfc4514_string()})"]
    if info.test or result.anchor.test:
        reasons.append("TEST hierarchy")
    _check_policy_oids(result.leaf, info.gamme, policy, reasons)
    if result.revocation is RevocationStatus.UNKNOWN:
        # Accepted under soft revocation, but a level is only granted on a known status.
        reasons.append("revocation status unknown: no level granted")
        return LevelDecision(None, tuple(reasons))
    if proof.usage is not Usage.AUTH:
        reasons.append("not verified as an authentication certificate")
        return LevelDecision(AssuranceLevel.LOW, tuple(reasons))
    reasons.append("authentication certificate (digitalSignature)")
    rule = next((r for r in policy.rules if r.matches(proof, info)), None)
    if rule is None:
        reasons.append("no level rule matches")
        return LevelDecision(None, tuple(reasons))
    reasons.append(rule.reason)
    return LevelDecision(rule.level, tuple(reasons))


def _decide_badge(proof: Proof, policy: LevelPolicy) -> LevelDecision:
    """A badge has no chain: the rows without a gamme decide, once the session was verified."""
    attestation = proof.attestation
    if not isinstance(attestation, BadgeAttestation):
        return LevelDecision(None, ("badge session not verified: no level granted",))
    if attestation.scheme == LEGACY_SCHEME:
        return LevelDecision(None, ("legacy DES/3DES badge: not RIE-conformant, no level",))
    rule = next((r for r in policy.rules if r.matches(proof, None)), None)
    if rule is None:
        return LevelDecision(None, ("no level rule matches",))
    return LevelDecision(rule.level, (rule.reason,))


def _decide_fido(proof: Proof, policy: LevelPolicy) -> LevelDecision:
    """A FIDO2 key has no chain: the rows without a gamme decide, on its factors and
    properties, once an assertion was verified."""
    attestation = proof.attestation
    if not isinstance(attestation, FidoAttestation):
        return LevelDecision(None, ("FIDO2 assertion not verified: no level granted",))
    reasons = [f"FIDO2 key, attestation {attestation.type}"]
    if attestation.certification is not None:
        reasons.append(f"FIDO certification {attestation.certification}")
    if attestation.test:
        reasons.append("TEST key")
    if Property.ATTESTED in proof.properties and attestation.type not in ATTESTED_TYPES:
        # A caller's bug, not the key's: fail closed rather than trust the flag.
        reasons.append(f"attested property with {attestation.type} attestation: no level granted")
        return LevelDecision(None, tuple(reasons))
    if Factor.KNOWLEDGE in proof.factors:
        reasons.append("user verified by the key (PIN or biometrics)")
    rule = next((r for r in policy.rules if r.matches(proof, None)), None)
    if rule is None:
        reasons.append("no level rule matches")
        return LevelDecision(None, tuple(reasons))
    reasons.append(rule.reason)
    return LevelDecision(rule.level, tuple(reasons))


def decide_level(
    result: VerificationResult, usage: Usage, policy: LevelPolicy | None = None
) -> LevelDecision:
    """Decide the level a verified certificate grants on its own (:attr:`MieKind.CERTIFICATE`).

    :param result: a successful verification.
    :param usage: the usage the certificate was verified for.
    :param policy: configuration (default: no policy OID requirement).
    :return: the decision.
    :raises VerificationError: ``policy`` when a configured policy OID is missing.
    """
    return decide(Proof(MieKind.CERTIFICATE, _NONE, result, usage), policy)


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
            f"The certificate policies {sorted(present)} include none of {sorted(wanted)}",
        )
    reasons.append(f"certificate policy {sorted(matched)[0]}")
