"""mie.psc: the PSC claims of a verified result, the mapping file's strictness, and the factor
rule behind it (issue 11 plan §3)."""

from __future__ import annotations

import datetime as dt
import importlib.resources
import json
import os
from pathlib import Path
from typing import Any

import pytest

from mie.core.errors import ErrorCode
from mie.desfire.config import UidSource
from mie.desfire.evidence import BadgeScheme, DesfireSessionEvidence, TranscriptExchange
from mie.emulation.testpki import CardIdentity, default_rpps
from mie.emulation.testpki import TestPki as Pki
from mie.evidence import Evidence
from mie.fido.evidence import WebAuthnAssertionEvidence
from mie.policy import DEFAULT_RULES, AssuranceLevel, Factor, MieKind
from mie.psc import (
    EVIDENCE_CLASS,
    MAX_MAPPING_BYTES,
    MIE_CLASSES,
    MIE_KIND_CLASS,
    PscMapping,
    PscMappingError,
    PscRefusedError,
    mie_class,
    psc_claims,
)
from mie.result import AuthResult, ErrorInfo
from mie.trust.identity import Identity
from mie.verification import Expected, verify_evidence
from tests.cards.pki import pki_verifier
from tests.trust.evidence_kit import NONCE, ORIGIN, signed_evidence

ROOT = Path(__file__).resolve().parents[2]
WHEN = dt.datetime(2026, 12, 2, 10, 15, 30, tzinfo=dt.UTC)
RPPS = "810100099877"
SUBSTANTIAL = AssuranceLevel.SUBSTANTIAL
HIGH = AssuranceLevel.HIGH
LOW = AssuranceLevel.LOW
ALLOW_TEST = PscMapping(PscMapping.default().amr, PscMapping.default().acr, test_identities="allow")


def identity(*, test: bool = False, names: bool = True) -> Identity:
    given, family = ("Marie", "Curie") if names else (None, None)
    return Identity("8" + RPPS[1:], "RPPS", RPPS[1:], given, family, "10", "CPS", test)


def x509_evidence() -> Evidence:
    from mie.evidence import X509SignatureEvidence

    return X509SignatureEvidence(NONCE, ORIGIN, bytes(64), b"\x01" * 256, (b"\x30\x00",))


def badge_evidence() -> Evidence:
    return DesfireSessionEvidence(
        NONCE,
        ORIGIN,
        BadgeScheme.EV2,
        bytes(3),
        bytes(7),
        UidSource.GET_CARD_UID,
        bytes(176),
        None,
        (TranscriptExchange(b"\x90\x60\x00\x00\x00", b"\x91\x00"),),
    )


def fido_evidence() -> Evidence:
    return WebAuthnAssertionEvidence(
        NONCE, ORIGIN, "iam.example", b"\x01" * 16, bytes(37), b"{}", b"\x02" * 70
    )


EVIDENCE = {"cpx": x509_evidence, "badge": badge_evidence, "fido2": fido_evidence}


def result(
    mie: str = "cpx", level: AssuranceLevel | None = SUBSTANTIAL, *, test: bool = False
) -> AuthResult:
    return AuthResult(True, None, None, identity(test=test), level, ("why",), EVIDENCE[mie]())


# --- claims of each class and level ---------------------------------------------------------


@pytest.mark.parametrize(
    ("mie", "level", "amr"),
    [
        ("cpx", SUBSTANTIAL, ["sc", "pin", "mfa"]),
        ("cpx", HIGH, ["sc", "pin", "mfa"]),
        ("badge", SUBSTANTIAL, ["sc", "pin", "mfa"]),
        ("fido2", SUBSTANTIAL, ["hwk", "mfa"]),
        ("fido2", HIGH, ["hwk", "mfa"]),
    ],
)
def test_each_class_and_level_gets_its_claims(
    mie: str, level: AssuranceLevel, amr: list[str]
) -> None:
    claims = psc_claims(result(mie, level), auth_time=WHEN)
    assert claims.to_json() == {
        "SubjectNameID": "810100099877",
        "given_name": "Marie",
        "family_name": "Curie",
        "acr": "eidas1",
        "amr": amr,
        "auth_time": int(WHEN.timestamp()),
    }


def test_a_badge_at_high_has_no_amr_row() -> None:
    with pytest.raises(PscRefusedError, match="no amr for badge at high") as raised:
        psc_claims(result("badge", HIGH), auth_time=WHEN)
    assert raised.value.code is ErrorCode.POLICY


@pytest.mark.parametrize("mie", MIE_CLASSES)
@pytest.mark.parametrize("level", [LOW, None])
def test_low_or_no_level_is_refused(mie: str, level: AssuranceLevel | None) -> None:
    with pytest.raises(PscRefusedError, match="below the PSC minimum substantial"):
        psc_claims(result(mie, level), auth_time=WHEN)


def test_a_minimum_of_high_refuses_substantial() -> None:
    default = PscMapping.default()
    strict = PscMapping(default.amr, default.acr, minimum=HIGH)
    assert psc_claims(result("cpx", HIGH), strict, auth_time=WHEN).acr == "eidas1"
    with pytest.raises(PscRefusedError, match="below the PSC minimum high"):
        psc_claims(result("cpx", SUBSTANTIAL), strict, auth_time=WHEN)


def test_names_the_mie_does_not_state_are_left_out() -> None:
    bare = AuthResult(True, None, None, identity(names=False), SUBSTANTIAL, (), badge_evidence())
    assert psc_claims(bare, auth_time=WHEN).to_json() == {
        "SubjectNameID": "810100099877",
        "acr": "eidas1",
        "amr": ["sc", "pin", "mfa"],
        "auth_time": int(WHEN.timestamp()),
    }


def test_auth_time_is_utc_and_needs_a_zone() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    claims = psc_claims(result(), auth_time=WHEN.astimezone(paris))
    assert claims.auth_time == WHEN and claims.auth_time.tzinfo is dt.UTC
    with pytest.raises(ValueError, match="time zone"):
        psc_claims(result(), auth_time=WHEN.replace(tzinfo=None))


# --- refusals ---------------------------------------------------------------------------------


def test_a_test_identity_is_refused_by_default_and_allowed_when_the_mapping_says_so() -> None:
    with pytest.raises(PscRefusedError, match="TEST identity"):
        psc_claims(result(test=True), auth_time=WHEN)
    claims = psc_claims(result(test=True), ALLOW_TEST, auth_time=WHEN)
    assert claims.subject_name_id == "810100099877"


def test_an_invalid_result_is_refused() -> None:
    failed = AuthResult(False, ErrorInfo(ErrorCode.SIGNATURE_INVALID, "bad"), None, identity())
    with pytest.raises(PscRefusedError, match="failed"):
        psc_claims(failed, ALLOW_TEST, auth_time=WHEN)


def test_a_result_without_identity_or_evidence_is_refused() -> None:
    nobody = AuthResult(True, None, None, None, SUBSTANTIAL, (), x509_evidence())
    with pytest.raises(PscRefusedError, match="no identity"):
        psc_claims(nobody, auth_time=WHEN)
    # mie verify-cert's result: a certificate alone, no evidence of a card and PIN.
    bare = AuthResult(True, None, None, identity(), SUBSTANTIAL, ())
    with pytest.raises(PscRefusedError, match="no evidence"):
        psc_claims(bare, auth_time=WHEN)


def test_a_class_missing_from_the_mapping_is_refused() -> None:
    default = PscMapping.default()
    cards_only = PscMapping({"cpx": default.amr["cpx"]}, default.acr)
    assert psc_claims(result("cpx"), cards_only, auth_time=WHEN).amr == ("sc", "pin", "mfa")
    with pytest.raises(PscRefusedError, match="no amr for fido2 at substantial"):
        psc_claims(result("fido2"), cards_only, auth_time=WHEN)


def test_mie_class_follows_the_evidence_type() -> None:
    for mie, make in EVIDENCE.items():
        assert mie_class(result(mie)) == mie
        assert EVIDENCE_CLASS[make().type] == mie


def test_a_verified_test_card_result() -> None:
    # A real verification of TEST-card evidence: substantial, a TEST identity.
    pki = Pki.load(os.environ["MIE_TEST_PKI"])
    card = pki.issue_card(CardIdentity("RPPS", default_rpps(), "CPS"), "2800000009")
    verified = verify_evidence(
        signed_evidence(card.authentication), Expected(NONCE, ORIGIN), verifier=pki_verifier(pki)
    )
    assert verified.level is SUBSTANTIAL and verified.identity is not None
    with pytest.raises(PscRefusedError, match="TEST identity"):
        psc_claims(verified, auth_time=WHEN)
    claims = psc_claims(verified, ALLOW_TEST, auth_time=WHEN)
    assert claims.subject_name_id == verified.identity.id_nat
    assert (claims.acr, claims.amr) == ("eidas1", ("sc", "pin", "mfa"))


# --- the factor rule behind the mapping ---------------------------------------------------------


def test_every_default_rule_granting_substantial_or_more_to_a_psc_class_needs_two_factors() -> None:
    two = frozenset({Factor.POSSESSION, Factor.KNOWLEDGE})
    checked = 0
    for rule in DEFAULT_RULES:
        if rule.level is LOW:
            continue
        if rule.mie not in MIE_KIND_CLASS:
            # A row for a kind PSC never sees (a certificate checked alone): mie_class refuses
            # its results, which carry no evidence.
            assert rule.mie is MieKind.CERTIFICATE, rule
            continue
        assert two <= rule.factors, rule
        checked += 1
    assert checked >= 3  # the card, badge and FIDO2 rows


def test_the_factor_check_can_fail() -> None:
    from mie.policy import LevelRule

    lax = LevelRule(MieKind.FIDO2_KEY, frozenset({Factor.POSSESSION}), None, None, SUBSTANTIAL, "x")
    assert not frozenset({Factor.POSSESSION, Factor.KNOWLEDGE}) <= lax.factors


def test_every_mie_kind_with_a_class_maps_to_the_evidence_class() -> None:
    assert sorted(MIE_KIND_CLASS.values()) == sorted(MIE_CLASSES) == sorted(EVIDENCE_CLASS.values())


# --- the mapping file ---------------------------------------------------------------------------


def mapping_json() -> dict[str, Any]:
    return json.loads(importlib.resources.files("mie").joinpath("psc-claims.json").read_bytes())


def test_the_packaged_mapping_equals_the_documented_example() -> None:
    packaged = importlib.resources.files("mie").joinpath("psc-claims.json").read_bytes()
    assert packaged == (ROOT / "docs" / "examples" / "psc-claims.json").read_bytes()
    assert PscMapping.load(ROOT / "docs" / "examples" / "psc-claims.json") == PscMapping.default()


def test_the_default_mapping_round_trips() -> None:
    default = PscMapping.default()
    assert default.to_json() == mapping_json()
    assert PscMapping.from_json(default.to_json()) == default
    assert default.minimum is SUBSTANTIAL and default.test_identities == "refuse"


def _broken(edit: Any) -> bytes:
    obj = mapping_json()
    edit(obj)
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda o: o.update(extra=1), "unknown member 'extra'"),
        (lambda o: o.pop("acr"), "no acr member"),
        (lambda o: o.update(format="mie-psc-claims/2"), "format"),
        (lambda o: o.update(minimum="low"), "minimum: low gets no PSC claims"),
        (lambda o: o.update(minimum="medium"), "minimum: 'medium' is not a level"),
        (lambda o: o.update(test_identities="yes"), "test_identities"),
        (lambda o: o["acr"].update(low="eidas1"), "acr: low gets no PSC claims"),
        (lambda o: o["acr"].update(high=1), "acr.high: .* is not an acr value"),
        (lambda o: o["acr"].pop("high"), "amr.cpx.high: acr has no high value"),
        (lambda o: o["amr"].update(sms={"substantial": ["otp"]}), "amr: unknown member 'sms'"),
        (lambda o: o["amr"]["cpx"].update(low=["sc"]), "amr.cpx: low gets no PSC claims"),
        (lambda o: o["amr"]["cpx"].update(best=["sc"]), "amr.cpx: unknown member 'best'"),
        (lambda o: o["amr"]["cpx"].update(high=[]), "amr.cpx.high: not a non-empty list"),
        (lambda o: o["amr"]["cpx"].update(high="sc"), "amr.cpx.high: not a list"),
        (lambda o: o["amr"]["cpx"].update(high=["sc", "sc"]), "appears twice"),
        (lambda o: o["amr"]["cpx"].update(high=["s c"]), "'s c' is not an amr value"),
        (lambda o: o["amr"]["cpx"].update(high=[1]), "is not an amr value"),
        (lambda o: o["amr"]["fido2"].clear(), "amr.fido2: no level"),
        (lambda o: o.update(amr={}), "amr: no MIE class"),
        (lambda o: o.update(amr=[]), "amr is not a JSON object"),
    ],
)
def test_a_mapping_file_is_strict(edit: Any, message: str, tmp_path: Path) -> None:
    path = tmp_path / "psc.json"
    path.write_bytes(_broken(edit))
    with pytest.raises(PscMappingError, match=message) as raised:
        PscMapping.load(path)
    assert raised.value.code is ErrorCode.USAGE
    assert str(path) in str(raised.value)


def test_a_duplicate_key_or_a_number_or_junk_is_refused(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "examples" / "psc-claims.json").read_text()
    for bad, message in [
        (text.replace('"minimum"', '"minimum": "high", "minimum"'), "duplicate key 'minimum'"),
        (text.replace('"eidas1"', "1", 1), "acr.substantial"),
        ("[]", "the mapping is not a JSON object"),
        ("{", "not JSON"),
        ("\ufeff" + text, "not JSON"),
    ]:
        with pytest.raises(PscMappingError, match=message):
            PscMapping.parse(bad.encode(), "m")


def test_a_mapping_file_that_is_large_missing_or_not_a_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (MAX_MAPPING_BYTES + 1))
    with pytest.raises(PscMappingError, match="larger than"):
        PscMapping.load(big)
    with pytest.raises(PscMappingError, match="does not exist"):
        PscMapping.load(tmp_path / "none.json")
    with pytest.raises(PscMappingError, match=r"not a regular file|Is a directory"):
        PscMapping.load(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(PscMappingError, match="not a regular file"):
        PscMapping.load(fifo)  # opened non-blocking: no writer needed, no wait


def test_the_constructor_checks_what_the_file_check_does() -> None:
    default = PscMapping.default()
    with pytest.raises(ValueError, match="minimum"):
        PscMapping(default.amr, default.acr, minimum=LOW)
    with pytest.raises(ValueError, match=r"amr\.cpx\.high: acr has no high value"):
        PscMapping(default.amr, {SUBSTANTIAL: "eidas1"})
    with pytest.raises(ValueError, match="test_identities"):
        PscMapping(default.amr, default.acr, test_identities="maybe")  # type: ignore[arg-type]
