"""The level table: what was proven (MIE, factors, chain) decides the level; decide_level keeps
the answers it gave before the table."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from mie.emulation.testpki import Issued
from mie.fido.levels import fido_proof
from mie.fido.policy import FidoPolicy
from mie.policy import (
    DEFAULT_RULES,
    AssuranceLevel,
    BadgeAttestation,
    Factor,
    FidoAttestation,
    LevelPolicy,
    LevelRule,
    MieKind,
    Proof,
    Property,
    decide,
    decide_level,
)
from mie.trust import ErrorCode, RevocationStatus, VerificationError
from mie.trust.store import Anchor, Gamme, classify
from mie.trust.verify import Usage, VerificationResult
from tests.trust.conftest import make_cert, person, spare_key

LOW, SUBSTANTIAL = AssuranceLevel.LOW, AssuranceLevel.SUBSTANTIAL
FORT_LOW = "FORT gamme grants low at most"
CARD_AND_PIN = frozenset({Factor.POSSESSION, Factor.KNOWLEDGE})
NONE: frozenset[Factor] = frozenset()


def _name(cn: str, *, test: bool = False) -> x509.Name:
    units = ["0002 187512751", "IGC-SANTE TEST" if test else "IGC-SANTE"]
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ASIP-SANTE"),
            *(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, u) for u in units),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


@functools.cache
def _result(
    issuer_cn: str,
    *,
    test: bool = False,
    revocation: RevocationStatus = RevocationStatus.GOOD,
    policies: tuple[str, ...] = (),
) -> VerificationResult:
    key = spare_key()
    root_name = _name("AC RACINE IGC-SANTE FORT", test=test)
    signer = Issued(None, key)  # type: ignore[arg-type]  # self-signed: no issuer certificate
    root_cert = make_cert(
        signer, root_name, ca=True, issuer_name=root_name, key=key, signing_key=key
    ).certificate
    root = Issued(root_cert, key)
    issuer = make_cert(root, _name(issuer_cn, test=test), ca=True)
    extra: list[tuple[x509.ExtensionType, bool]] = []
    if policies:
        info = [x509.PolicyInformation(x509.ObjectIdentifier(p), None) for p in policies]
        extra.append((x509.CertificatePolicies(info), False))
    leaf = make_cert(issuer, person(), extra=extra)
    anchor = Anchor.from_certificate(root.certificate, "explicit", test)
    path = (leaf.certificate, issuer.certificate, root.certificate)
    return VerificationResult(path, anchor, revocation, ("chain[0]: good",), "cryptography")


FORT_PP = "AC IGC-SANTE FORT PERSONNES"
ISSUED_BY_FORT_PP = f"issued by an IGC-Santé FORT CA ({_name(FORT_PP).rfc4514_string()})"
TWO_FACTORS = "FORT PERSONNES card certificate: smart card and PIN, two factors"
AUTH = "authentication certificate (digitalSignature)"


@pytest.mark.parametrize(
    ("issuer_cn", "usage", "level", "last"),
    [
        (FORT_PP, Usage.AUTH, SUBSTANTIAL, TWO_FACTORS),
        (FORT_PP, Usage.SIGN, LOW, "not verified as an authentication certificate"),
        ("AC IGC-SANTE FORT ORGANISATIONS", Usage.AUTH, LOW, FORT_LOW),
        ("AC IGC-SANTE STANDARD PERSONNES", Usage.AUTH, LOW, "STANDARD gamme grants low at most"),
        (
            "AC IGC-SANTE ELEMENTAIRE ORGANISATIONS",
            Usage.AUTH,
            LOW,
            "ELEMENTAIRE gamme grants low at most",
        ),
        ("AC RACINE IGC-SANTE STANDARD", Usage.AUTH, LOW, "STANDARD gamme grants low at most"),
        ("Some Other CA", Usage.AUTH, None, "issuer is not an IGC-Santé CA"),
    ],
)
def test_decide_level_keeps_its_answers(
    issuer_cn: str, usage: Usage, level: AssuranceLevel | None, last: str
) -> None:
    decision = decide_level(_result(issuer_cn), usage)
    assert decision.level is level
    assert decision.reasons[-1] == last


def test_decide_level_reasons_in_full() -> None:
    decision = decide_level(_result(FORT_PP), Usage.AUTH)
    assert decision.reasons == (ISSUED_BY_FORT_PP, AUTH, TWO_FACTORS)


def test_test_hierarchy_is_named_and_still_decides() -> None:
    decision = decide_level(_result(f"TEST {FORT_PP}", test=True), Usage.AUTH)
    assert decision.level is AssuranceLevel.SUBSTANTIAL
    assert decision.reasons[1] == "TEST hierarchy"


def test_unknown_revocation_grants_no_level() -> None:
    result = _result(FORT_PP, revocation=RevocationStatus.UNKNOWN)
    for proof in (
        Proof(MieKind.CPX_CARD, CARD_AND_PIN, result),
        Proof(MieKind.CERTIFICATE, NONE, result),
    ):
        decision = decide(proof)
        assert decision.level is None
        assert decision.reasons[-1] == "revocation status unknown: no level granted"


@pytest.mark.parametrize(
    ("mie", "factors", "level", "last"),
    [
        (MieKind.CPX_CARD, CARD_AND_PIN, SUBSTANTIAL, TWO_FACTORS),
        (MieKind.CPX_CARD, CARD_AND_PIN | {Factor.INHERENCE}, SUBSTANTIAL, TWO_FACTORS),
        # A card without its PIN proves possession only.
        (MieKind.CPX_CARD, frozenset({Factor.POSSESSION}), LOW, FORT_LOW),
        (MieKind.CERTIFICATE, NONE, SUBSTANTIAL, TWO_FACTORS),
        # No row grants a badge or a key anything for a card certificate's chain.
        (MieKind.DESFIRE_BADGE, CARD_AND_PIN, LOW, FORT_LOW),
        (MieKind.FIDO2_KEY, CARD_AND_PIN, LOW, FORT_LOW),
    ],
)
def test_rows_match_on_mie_and_factors(
    mie: MieKind, factors: frozenset[Factor], level: AssuranceLevel, last: str
) -> None:
    decision = decide(Proof(mie, factors, _result(FORT_PP)))
    assert decision.level is level
    assert decision.reasons == (ISSUED_BY_FORT_PP, AUTH, last)


def test_no_chain_grants_no_level() -> None:
    decision = decide(Proof(MieKind.CPX_CARD, CARD_AND_PIN, None))
    assert decision.level is None and decision.reasons


def test_the_first_matching_row_decides() -> None:
    high = LevelRule(
        MieKind.CPX_CARD, CARD_AND_PIN, Gamme.FORT, None, AssuranceLevel.HIGH, "operator rule"
    )
    policy = LevelPolicy(rules=(high, *DEFAULT_RULES))
    decision = decide(Proof(MieKind.CPX_CARD, CARD_AND_PIN, _result(FORT_PP)), policy)
    assert (decision.level, decision.reasons[-1]) == (AssuranceLevel.HIGH, "operator rule")
    certificate = decide(Proof(MieKind.CERTIFICATE, NONE, _result(FORT_PP)), policy)
    assert certificate.level is AssuranceLevel.SUBSTANTIAL


def test_a_table_without_a_matching_row_grants_no_level() -> None:
    policy = LevelPolicy(rules=DEFAULT_RULES[:1])
    decision = decide(Proof(MieKind.CERTIFICATE, NONE, _result(FORT_PP)), policy)
    assert (decision.level, decision.reasons[-1]) == (None, "no level rule matches")


def test_policy_oids_are_required_when_configured() -> None:
    policy = LevelPolicy(auth_policy_oids={Gamme.FORT: frozenset({"1.2.250.1.71.4.2.1"})})
    with pytest.raises(VerificationError) as caught:
        decide(Proof(MieKind.CPX_CARD, CARD_AND_PIN, _result(FORT_PP)), policy)
    assert caught.value.code is ErrorCode.POLICY
    carrying = _result(FORT_PP, policies=("1.2.250.1.71.4.2.1",))
    decision = decide(Proof(MieKind.CPX_CARD, CARD_AND_PIN, carrying), policy)
    assert decision.level is AssuranceLevel.SUBSTANTIAL
    assert "certificate policy 1.2.250.1.71.4.2.1" in decision.reasons


# --- DESFire badges (issue 9): rows without a gamme, for proofs without a chain -------------

BADGE_ALONE = "DESFire badge alone: possession only"
BADGE_AND_PIN = (
    "DESFire AES mutual authentication with a diversified key and a PIN checked by the "
    "verifier: two factors"
)
POSSESSION = frozenset({Factor.POSSESSION})


@pytest.mark.parametrize(
    ("factors", "scheme", "originality", "level", "last"),
    [
        (POSSESSION, "ev2", True, LOW, BADGE_ALONE),
        (POSSESSION, "ev1-aes", False, LOW, BADGE_ALONE),
        (CARD_AND_PIN, "ev2", True, SUBSTANTIAL, BADGE_AND_PIN),
        (CARD_AND_PIN, "ev1-aes", True, SUBSTANTIAL, BADGE_AND_PIN),
        (
            CARD_AND_PIN,
            "legacy",
            True,
            None,
            "legacy DES/3DES badge: not RIE-conformant, no level",
        ),
        (POSSESSION, "legacy", False, None, "legacy DES/3DES badge: not RIE-conformant, no level"),
        # A badge proof that proves nothing matches no row.
        (NONE, "ev2", True, None, "no level rule matches"),
    ],
)
def test_badge_rows(
    factors: frozenset[Factor],
    scheme: str,
    originality: bool,
    level: AssuranceLevel | None,
    last: str,
) -> None:
    proof = Proof(
        MieKind.DESFIRE_BADGE, factors, None, attestation=BadgeAttestation(scheme, originality)
    )
    decision = decide(proof)
    assert decision.level is level
    assert decision.reasons[-1] == last


def test_a_badge_proof_without_attestation_grants_no_level() -> None:
    decision = decide(Proof(MieKind.DESFIRE_BADGE, CARD_AND_PIN, None))
    assert decision.level is None
    assert decision.reasons == ("badge session not verified: no level granted",)


def test_badge_rows_never_match_a_proof_with_a_chain_nor_card_rows_a_badge() -> None:
    badge_rows = [r for r in DEFAULT_RULES if r.gamme is None and r.mie is MieKind.DESFIRE_BADGE]
    assert [r.level for r in badge_rows] == [SUBSTANTIAL, LOW]
    # The other rows without a gamme are the FIDO2 keys' (below).
    assert {r.mie for r in DEFAULT_RULES if r.gamme is None} == {
        MieKind.DESFIRE_BADGE,
        MieKind.FIDO2_KEY,
    }
    issuer = _result(FORT_PP).certificate(1)
    assert issuer is not None
    info = classify(issuer.subject)
    assert info is not None
    for rule in badge_rows:
        proof = Proof(MieKind.DESFIRE_BADGE, CARD_AND_PIN, _result(FORT_PP))
        assert decide(proof).reasons[-1] == FORT_LOW
        assert not rule.matches(proof, info)
    card_rows = [r for r in DEFAULT_RULES if r.gamme is not None]
    badge = Proof(
        MieKind.DESFIRE_BADGE, CARD_AND_PIN, None, attestation=BadgeAttestation("ev2", True)
    )
    assert not any(rule.matches(badge, None) for rule in card_rows)


def test_a_cpx_proof_without_chain_still_grants_no_level() -> None:
    # The badge path is for badges only: a card without a chain keeps its answer.
    attestation = BadgeAttestation("ev2", True)
    decision = decide(Proof(MieKind.CPX_CARD, CARD_AND_PIN, None, attestation=attestation))
    assert decision == decide(Proof(MieKind.CPX_CARD, CARD_AND_PIN, None))
    assert decision.level is None


# --- FIDO2 keys (issue 10): rows without a gamme, on factors and properties ------------------

FIDO_SUBSTANTIAL = (
    "FIDO2 key of an attested model that verified its user, credential bound to the key: "
    "two factors"
)
FIDO_SYNCABLE = (
    "backup-eligible (syncable) FIDO2 credential: it can leave the key, not a hardware-bound factor"
)
FIDO_NO_UV = "FIDO2 key without user verification: possession only"
FIDO_UNATTESTED = (
    "FIDO2 key without attestation (self or none): its model and key protection are unproven"
)
ATTESTED, BOUND = Property.ATTESTED, Property.DEVICE_BOUND
AAGUID = bytes(range(16))


def _fido(factors: frozenset[Factor], properties: set[Property], kind: str = "basic") -> Proof:
    attestation = FidoAttestation(kind, AAGUID, None, False)
    return Proof(
        MieKind.FIDO2_KEY,
        factors,
        None,
        attestation=attestation,
        properties=frozenset(properties),
    )


@pytest.mark.parametrize(
    ("factors", "properties", "kind", "level", "last"),
    [
        # attested model, UV, device-bound: the only substantial row
        (CARD_AND_PIN, {ATTESTED, BOUND}, "basic", SUBSTANTIAL, FIDO_SUBSTANTIAL),
        (CARD_AND_PIN, {ATTESTED, BOUND}, "attca", SUBSTANTIAL, FIDO_SUBSTANTIAL),
        # biometrics count as the second factor too
        (
            CARD_AND_PIN | {Factor.INHERENCE},
            {ATTESTED, BOUND},
            "basic",
            SUBSTANTIAL,
            FIDO_SUBSTANTIAL,
        ),
        # backup-eligible (syncable): low
        (CARD_AND_PIN, {ATTESTED}, "basic", LOW, FIDO_SYNCABLE),
        # no UV (policy require_uv false): possession only
        (POSSESSION, {ATTESTED, BOUND}, "basic", LOW, FIDO_NO_UV),
        (POSSESSION, {ATTESTED}, "basic", LOW, FIDO_NO_UV),
        # self / none attestation (policy attestation optional): low, UV or not
        (CARD_AND_PIN, {BOUND}, "self", LOW, FIDO_UNATTESTED),
        (CARD_AND_PIN, {BOUND}, "none", LOW, FIDO_UNATTESTED),
        (POSSESSION, set(), "none", LOW, FIDO_UNATTESTED),
        # a proof that proves not even possession matches no row
        (NONE, {ATTESTED, BOUND}, "basic", None, "no level rule matches"),
    ],
)
def test_fido_rows(
    factors: frozenset[Factor],
    properties: set[Property],
    kind: str,
    level: AssuranceLevel | None,
    last: str,
) -> None:
    decision = decide(_fido(factors, properties, kind))
    assert decision.level is level
    assert decision.reasons[-1] == last
    assert decision.reasons[0] == f"FIDO2 key, attestation {kind}"


def test_fido_never_high_by_default() -> None:
    everything = frozenset(Factor)
    decision = decide(_fido(everything, set(Property)))
    assert decision.level is SUBSTANTIAL
    assert AssuranceLevel.HIGH not in {r.level for r in DEFAULT_RULES}


def test_fido_reasons_name_certification_test_and_uv() -> None:
    attestation = FidoAttestation("basic", AAGUID, "L2", True)
    proof = Proof(
        MieKind.FIDO2_KEY,
        CARD_AND_PIN,
        None,
        attestation=attestation,
        properties=frozenset({ATTESTED, BOUND}),
    )
    assert decide(proof).reasons == (
        "FIDO2 key, attestation basic",
        "FIDO certification L2",
        "TEST key",
        "user verified by the key (PIN or biometrics)",
        FIDO_SUBSTANTIAL,
    )


def test_a_fido_proof_without_attestation_grants_no_level() -> None:
    for attestation in (None, BadgeAttestation("ev2", True)):
        proof = Proof(
            MieKind.FIDO2_KEY,
            CARD_AND_PIN,
            None,
            attestation=attestation,
            properties=frozenset({ATTESTED, BOUND}),
        )
        decision = decide(proof)
        assert decision.level is None
        assert decision.reasons == ("FIDO2 assertion not verified: no level granted",)


@pytest.mark.parametrize("kind", ["self", "none"])
def test_an_attested_property_on_a_self_or_none_attestation_fails_closed(kind: str) -> None:
    decision = decide(_fido(CARD_AND_PIN, {ATTESTED, BOUND}, kind))
    assert decision.level is None
    assert decision.reasons[-1] == (f"attested property with {kind} attestation: no level granted")


def test_fido_rows_match_no_other_mie_and_other_rows_no_fido_proof() -> None:
    fido_rows = [r for r in DEFAULT_RULES if r.mie is MieKind.FIDO2_KEY]
    assert [r.level for r in fido_rows] == [SUBSTANTIAL, LOW, LOW, LOW]
    assert all(r.gamme is None for r in fido_rows)
    proof = _fido(CARD_AND_PIN, {ATTESTED, BOUND})
    assert not any(r.matches(proof, None) for r in DEFAULT_RULES if r.mie is not MieKind.FIDO2_KEY)
    badge = Proof(
        MieKind.DESFIRE_BADGE,
        CARD_AND_PIN,
        None,
        attestation=BadgeAttestation("ev2", True),
        properties=frozenset({ATTESTED, BOUND}),
    )
    assert not any(r.matches(badge, None) for r in fido_rows)
    # A badge's answer does not change with properties it never has.
    assert decide(badge).reasons == (BADGE_AND_PIN,)


def test_a_fido_row_requires_every_property() -> None:
    rule = DEFAULT_RULES[[r.mie for r in DEFAULT_RULES].index(MieKind.FIDO2_KEY)]
    assert rule.requires == frozenset({ATTESTED, BOUND})
    for properties in (set(), {ATTESTED}, {BOUND}):
        assert not rule.matches(_fido(CARD_AND_PIN, properties), None)
    assert rule.matches(_fido(CARD_AND_PIN, {ATTESTED, BOUND}), None)


def test_an_operator_row_can_grant_fido_high() -> None:
    high = LevelRule(
        MieKind.FIDO2_KEY,
        CARD_AND_PIN,
        None,
        None,
        AssuranceLevel.HIGH,
        "operator rule: certified L3 keys",
        frozenset({ATTESTED, BOUND}),
    )
    policy = LevelPolicy(rules=(high, *DEFAULT_RULES))
    decision = decide(_fido(CARD_AND_PIN, {ATTESTED, BOUND}), policy)
    assert (decision.level, decision.reasons[-1]) == (AssuranceLevel.HIGH, high.reason)
    # Existing rows (no requires) keep matching proofs without properties.
    assert all(r.requires == frozenset() for r in DEFAULT_RULES if r.mie is not MieKind.FIDO2_KEY)


# --- mie.fido.levels.fido_proof: what the verifier established, as the proof decide() reads --


def _policy(backup_eligible: str = "low") -> FidoPolicy:
    return FidoPolicy(
        "iam.example",
        attestation="optional",
        backup_eligible=backup_eligible,  # type: ignore[arg-type]
    )


def _level(policy: FidoPolicy, **changes: object) -> tuple[AssuranceLevel | None, str]:
    values: dict[str, Any] = {
        "attested": True,
        "uv": True,
        "backup_eligible": False,
        "policy": policy,
        "aaguid": AAGUID,
        "certification": None,
        "test": False,
        "attestation_type": "basic",
    }
    values.update(changes)
    decision = decide(fido_proof(**values))
    return decision.level, decision.reasons[-1]


@pytest.mark.parametrize(
    ("changes", "backup", "level", "last"),
    [
        ({}, "low", SUBSTANTIAL, FIDO_SUBSTANTIAL),
        ({"attestation_type": "attca"}, "low", SUBSTANTIAL, FIDO_SUBSTANTIAL),
        ({"uv": False}, "low", LOW, FIDO_NO_UV),
        ({"backup_eligible": True}, "low", LOW, FIDO_SYNCABLE),
        # backup_eligible "refuse" is the verifier's refusal; described, it is not device-bound
        ({"backup_eligible": True}, "refuse", LOW, FIDO_SYNCABLE),
        ({"backup_eligible": True}, "allow", SUBSTANTIAL, FIDO_SUBSTANTIAL),
        ({"attested": False, "attestation_type": "self"}, "low", LOW, FIDO_UNATTESTED),
        ({"attested": False, "attestation_type": "none"}, "allow", LOW, FIDO_UNATTESTED),
        # a packed full attestation whose model is not accepted (no allowlist/MDS entry)
        ({"attested": False}, "low", LOW, FIDO_UNATTESTED),
        ({"attested": False, "uv": False, "attestation_type": "none"}, "low", LOW, FIDO_UNATTESTED),
    ],
)
def test_fido_proof_levels(
    changes: dict[str, object], backup: str, level: AssuranceLevel, last: str
) -> None:
    assert _level(_policy(backup), **changes) == (level, last)


def test_fido_proof_carries_what_was_verified() -> None:
    proof = fido_proof(
        attested=True,
        uv=True,
        backup_eligible=False,
        policy=_policy(),
        aaguid=AAGUID,
        certification="L1",
        test=True,
        attestation_type="basic",
    )
    assert proof.mie is MieKind.FIDO2_KEY and proof.chain is None
    assert proof.factors == CARD_AND_PIN
    assert proof.properties == frozenset({ATTESTED, BOUND})
    assert proof.attestation == FidoAttestation("basic", AAGUID, "L1", True)
    assert "TEST key" in decide(proof).reasons


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"attested": True, "attestation_type": "self"}, ValueError),
        ({"attested": True, "attestation_type": "none"}, ValueError),
        ({"attestation_type": "fido-u2f"}, ValueError),
        ({"aaguid": b"short"}, ValueError),
        ({"uv": 1}, TypeError),
        ({"attested": "false"}, TypeError),
        ({"backup_eligible": None}, TypeError),
        ({"test": "true"}, TypeError),
    ],
)
def test_fido_proof_refuses_what_does_not_hold_together(
    changes: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        _level(_policy(), **changes)
