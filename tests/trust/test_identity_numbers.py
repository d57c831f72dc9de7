"""Check digits of structure identifiers: SIRET, with La Poste's exception and its head office."""

from __future__ import annotations

import pytest

from mie.core.luhn import luhn_valid
from mie.trust import ErrorCode, VerificationError
from mie.trust.identity import LA_POSTE_HEAD_OFFICE, parse_id_nat


def test_la_poste_head_office_siret_follows_luhn() -> None:
    # Digit sum 26: the La Poste mod-5 rule refused it, although it is a real SIRET.
    assert sum(map(int, LA_POSTE_HEAD_OFFICE)) % 5 != 0 and luhn_valid(LA_POSTE_HEAD_OFFICE)
    assert parse_id_nat("535600000000048/A1") == ("SIRET", "35600000000048/A1")


@pytest.mark.parametrize(
    "siret",
    [
        "35600000000001",  # digit sum 15, no Luhn check digit
        "35600000000100",  # digit sum 15
        "35600000049990",  # digit sum 45
    ],
)
def test_other_la_poste_sirets_keep_the_digit_sum_rule(siret: str) -> None:
    assert parse_id_nat(f"5{siret}/X") == ("SIRET", f"{siret}/X")


@pytest.mark.parametrize(
    "siret",
    [
        "35600000000014",  # passes Luhn, digit sum 19: La Poste numbers are not Luhn-checked
        "35600000000002",  # digit sum 16
        "35600000000049",  # the head office with another last digit
    ],
)
def test_la_poste_sirets_failing_their_rule_are_malformed(siret: str) -> None:
    with pytest.raises(VerificationError) as caught:
        parse_id_nat(f"5{siret}/X")
    assert caught.value.code is ErrorCode.MALFORMED


def test_sirets_outside_la_poste_follow_luhn() -> None:
    assert parse_id_nat("500000000029751/CPAT0001") == ("SIRET", "00000000029751/CPAT0001")
    with pytest.raises(VerificationError):
        parse_id_nat("500000000029752/CPAT0001")


def test_la_poste_siren_follows_luhn() -> None:
    assert parse_id_nat("4356000000/X") == ("SIREN", "356000000/X")
