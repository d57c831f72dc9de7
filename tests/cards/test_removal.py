"""A card removed at any exchange of an authentication: a typed error, never evidence, and the
next session starts with no verified PIN (issue 8, "Bad input and faults").

Each exchange k of a cold login (nothing cached) and of a warm one (the certificate cached by
the previous login) fails with :class:`~mie.errors.CardRemovedError`, once with the card
powered off at that moment (a removal) and once with the card left powered (a reader that fails
while the card stays: the authenticator's reset must still end the PIN's verified state).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mie.auth import CpxAuthenticator
from mie.certcache import CertificateCache
from mie.emulation import EmulatedConnection
from mie.emulation.cpx import IasEccCard
from mie.emulation.registry import CardOptions, build_card
from mie.errors import CardRemovedError
from mie.request import AuthRequest, StaticPin
from mie.transport.replay import RecordingConnection
from tests.cards.faults import FailingConnection

SELECT_PKCS15 = bytes.fromhex("00A4040C0DE828BD080F8025000001FF0010")
PIN_STATUS = bytes.fromhex("00200001")
# Exchanges of one login: cold reads EF.SN, ODF, CDF and the certificate; warm signs first and
# finds the certificate in the cache (CPS3), or looks it up by EF.SN before signing (CPS4).
EXCHANGES = {("cps3", False): 21, ("cps3", True): 6, ("cps4", False): 20, ("cps4", True): 9}


def _card(kind: str, options: CardOptions) -> IasEccCard:
    card = build_card(kind, options)
    assert isinstance(card, IasEccCard)
    return card


def _login(authenticator: CpxAuthenticator) -> None:
    evidence = authenticator.authenticate(AuthRequest.new(), user=StaticPin("4826"))
    authenticator.accepted(evidence, chain_verified=False)


def _exchanges(card: IasEccCard, cache: CertificateCache) -> int:
    recorder = RecordingConnection(EmulatedConnection(card))
    _login(CpxAuthenticator(recorder, cache=cache, chain_checked=False))
    return len(recorder.exchanges)


def _no_pin_verified(connection: EmulatedConnection) -> None:
    # Asked on the same connection, with no power cycle in between: as the next session through
    # a PC/SC reader would find the card.
    assert connection.send_and_receive(SELECT_PKCS15)[1] == 0x9000
    assert connection.send_and_receive(PIN_STATUS)[1] == 0x63C3


@pytest.mark.parametrize("kind", ["cps3", "cps4"])
@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
@pytest.mark.parametrize("powered_off", [True, False], ids=["removed", "reader-fails"])
def test_a_failure_at_any_exchange_raises_and_leaves_no_pin_verified(
    kind: str, warm: bool, powered_off: bool, options: CardOptions
) -> None:
    card = _card(kind, options)
    # Cold: every login starts with an empty cache. Warm: the cache holds the certificate (a
    # failed login never reaches accepted() or rejected(), so it stays).
    warm_cache = CertificateCache()
    if warm:
        _login(CpxAuthenticator(EmulatedConnection(card), cache=warm_cache, chain_checked=False))
    total = _exchanges(card, warm_cache if warm else CertificateCache())
    assert total == EXCHANGES[kind, warm]
    for at in range(total):
        cache = warm_cache if warm else CertificateCache()
        inner = EmulatedConnection(card)
        before: Callable[[], None] | None = card.power_off if powered_off else None
        failing = FailingConnection(
            inner, at=at, error=CardRemovedError("Card removed"), before=before
        )
        authenticator = CpxAuthenticator(failing, cache=cache, chain_checked=False)
        user = StaticPin("4826")
        with pytest.raises(CardRemovedError):
            authenticator.authenticate(AuthRequest.new(), user=user)
        assert failing.failed and len(failing.commands) == at
        _no_pin_verified(inner)
