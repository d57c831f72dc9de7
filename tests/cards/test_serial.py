"""The card serial reported is the one the certificate names (issue 7, item 7).

Reproducers: a rewritten EF.SN gave a valid result whose serial was the rewritten value, and the
warm CPS3 path reported whatever serial an earlier PIN-less identify() had cached.
"""

from __future__ import annotations

import dataclasses

import pytest

from mie.auth import CertificateCache, CpxAuthenticator, SerialBinding
from mie.emulation import EmulatedConnection
from mie.emulation.registry import CardOptions, build_card
from mie.errors import BadResponseError
from mie.trust.identity import parse_nos_card_serial
from tests.cards.faults import CorruptingConnection, replace_ef_sn
from tests.cards.logins import log_in
from tests.cards.pki import pki_verifier

FAMILIES = {"cps3": "2800000001", "cpe": "2800000001", "cps4": "2900000001", "psi": "2900000001"}
OTHER_EF_SN = bytes.fromhex("5A0A80250000012812345678")


def _rewritten(card: object) -> CorruptingConnection:
    return CorruptingConnection(EmulatedConnection(card), replace_ef_sn(OTHER_EF_SN))  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_a_rewritten_ef_sn_fails_a_checked_login(kind: str, options: CardOptions) -> None:
    authenticator = CpxAuthenticator(_rewritten(build_card(kind, options)))
    with pytest.raises(BadResponseError, match="2812345678"):
        log_in(authenticator, verifier=pki_verifier(options.pki()))


@pytest.mark.parametrize("kind", [*sorted(FAMILIES), "cps3-cl"])
def test_a_rewritten_ef_sn_fails_identification(kind: str, options: CardOptions) -> None:
    with pytest.raises(BadResponseError, match=r"EF\.SN"):
        CpxAuthenticator(_rewritten(build_card(kind, options)), chain_checked=False).identify()


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_cold_and_warm_logins_report_the_certificate_serial(
    kind: str, options: CardOptions
) -> None:
    card = build_card(kind, options)
    cache = CertificateCache()
    verifier = pki_verifier(options.pki())
    for _ in range(2):
        result = log_in(CpxAuthenticator(EmulatedConnection(card), cache=cache), verifier=verifier)
        assert result.authenticator is not None
        assert result.authenticator.serial == FAMILIES[kind]
        assert result.identity is not None and result.identity.card_serial is not None
        assert parse_nos_card_serial(result.identity.card_serial) == FAMILIES[kind]


def test_warm_login_serial_does_not_come_from_an_earlier_identify(options: CardOptions) -> None:
    card = build_card("cps3", options)
    cache = CertificateCache()
    with pytest.raises(BadResponseError):
        CpxAuthenticator(_rewritten(card), cache=cache, chain_checked=False).identify()
    for _ in range(2):
        result = log_in(
            CpxAuthenticator(EmulatedConnection(card), cache=cache, chain_checked=False)
        )
        assert result.authenticator is not None
        assert result.authenticator.serial == "2800000001"


def test_unbound_serial_is_shown_by_identify_and_never_reported_by_a_login(
    options: CardOptions,
) -> None:
    card = build_card("cps3", options)
    cache = CertificateCache()
    unbound = SerialBinding.NONE
    identification = CpxAuthenticator(
        _rewritten(card), cache=cache, serial_binding=unbound, chain_checked=False
    ).identify()
    assert identification.authenticator.serial == "2812345678"
    for connection in (_rewritten(card), EmulatedConnection(card)):
        authenticator = CpxAuthenticator(
            connection, cache=cache, serial_binding=unbound, chain_checked=False
        )
        result = log_in(authenticator)
        assert result.authenticator is not None and result.authenticator.serial is None
        assert authenticator.info.serial is None


def test_cps4_card_showing_another_cached_cards_serial_is_refused(options: CardOptions) -> None:
    # Card A's certificate is cached under its EF.SN; card B shows A's EF.SN: the cached
    # certificate does not verify B's signature, B's own is read and names B, not A.
    cache = CertificateCache()
    first = build_card("cps4", options)
    log_in(CpxAuthenticator(EmulatedConnection(first), cache=cache, chain_checked=False))
    second = build_card("cps4", dataclasses.replace(options, serial="2900000002"))
    shown = bytes.fromhex("5A0A80250000012900000001")
    connection = CorruptingConnection(EmulatedConnection(second), replace_ef_sn(shown))
    with pytest.raises(BadResponseError, match="2900000002"):
        log_in(CpxAuthenticator(connection, cache=cache, chain_checked=False))


@pytest.mark.parametrize(
    "value",
    [
        "2800000001",
        "8025000002/2800000001",
        "8025000001/",
        "8025000001/28A0",
        "8025000001/" + "1" * 21,
    ],
)
def test_malformed_certificate_serial_is_a_bad_response(value: str) -> None:
    with pytest.raises(BadResponseError):
        parse_nos_card_serial(value)
