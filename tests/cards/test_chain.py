"""Logins of a CpxAuthenticator with chain, revocation and level checks (mie.trust), in process."""

from __future__ import annotations

import pytest

from mie.auth import CpxAuthenticator
from mie.emulation import EmulatedConnection
from mie.emulation.cpx import IasEccCard
from mie.emulation.registry import CardOptions, build_card
from mie.emulation.testpki import TestPki
from mie.policy import AssuranceLevel
from mie.trust import (
    Anchor,
    ErrorCode,
    RevocationMode,
    TrustStore,
    Usage,
    VerificationError,
    VerifierBuilder,
)
from mie.trust.crl import RevocationStatus
from tests.cards.logins import evidence_of, log_in
from tests.cards.pki import pki_verifier


def _card(kind: str, options: CardOptions) -> IasEccCard:
    card = build_card(kind, options)
    assert isinstance(card, IasEccCard)
    return card


@pytest.mark.parametrize(
    ("kind", "level"),
    [("cps3", "substantial"), ("cpe", "low"), ("cps4", "substantial"), ("psi", "substantial")],
)
def test_level_follows_the_issuing_ca(kind: str, level: str, options: CardOptions) -> None:
    pki = options.pki()
    authenticator = CpxAuthenticator(EmulatedConnection(build_card(kind, options)))
    result = log_in(authenticator, verifier=pki_verifier(pki))
    assert result.level is AssuranceLevel(level)
    assert result.revocation is RevocationStatus.GOOD
    assert result.identity is not None and result.identity.test_card
    assert len(evidence_of(result).chain) == 3


def test_revoked_card_fails_with_revoked(options: CardOptions) -> None:
    pki = options.pki()
    card = _card("cps3", options)
    assert card.credentials is not None
    serial = card.credentials.authentication.certificate.serial_number
    authenticator = CpxAuthenticator(EmulatedConnection(card))
    with pytest.raises(VerificationError) as raised:
        log_in(authenticator, verifier=pki_verifier(pki, [serial]))
    assert raised.value.code is ErrorCode.REVOKED


def test_card_of_a_lookalike_hierarchy_fails_with_untrusted(options: CardOptions) -> None:
    # Another TEST PKI has the same CA names but other keys: no CA with the right key is known
    # (issue 7, item 17: a real TEST card must not look forged).
    authenticator = CpxAuthenticator(EmulatedConnection(build_card("cps3", options)))
    with pytest.raises(VerificationError) as raised:
        log_in(authenticator, verifier=pki_verifier(TestPki()))
    assert raised.value.code is ErrorCode.UNTRUSTED


def test_card_without_any_trusted_anchor_fails_with_untrusted(options: CardOptions) -> None:
    verifier = VerifierBuilder().store(TrustStore([])).usage(Usage.AUTH).build()
    authenticator = CpxAuthenticator(EmulatedConnection(build_card("cps3", options)))
    with pytest.raises(VerificationError) as raised:
        log_in(authenticator, verifier=verifier)
    assert raised.value.code is ErrorCode.UNTRUSTED


def test_missing_crl_fails_closed_unless_soft(options: CardOptions) -> None:
    pki = options.pki()
    anchors = [Anchor.from_certificate(i.certificate, "explicit", True) for i in pki.roots.values()]
    store = TrustStore(anchors, [i.certificate for i in pki.intermediates.values()])
    for mode, expected in (("hard", None), ("soft", "unknown")):
        verifier = (
            VerifierBuilder()
            .store(store)
            .usage(Usage.AUTH)
            .revocation(RevocationMode(mode))
            .build()
        )
        authenticator = CpxAuthenticator(EmulatedConnection(build_card("cps3", options)))
        if expected is None:
            with pytest.raises(VerificationError) as raised:
                log_in(authenticator, verifier=verifier)
            assert raised.value.code is ErrorCode.REVOCATION_UNKNOWN
        else:
            result = log_in(authenticator, verifier=verifier)
            assert result.revocation is RevocationStatus(expected)
            assert result.to_json()["evidence"]["revocation"] == expected
            assert result.level is None, "a level was granted on an unknown revocation status"
