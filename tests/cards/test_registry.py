"""The authenticator registry: probes by ATR, the demo card, refusal of unknown cards."""

from __future__ import annotations

import pytest

from mie.auth import Authenticator, CpxAuthenticator, SerialBinding
from mie.cards.demo import DEMO_ATR, DemoAuthenticator
from mie.certcache import CertificateCache
from mie.core.connection import SmartCardConnection
from mie.emulation import EmulatedConnection, demo_card
from mie.emulation.registry import CardOptions, build_card
from mie.errors import UnsupportedCardError
from mie.registry import (
    AuthenticatorOptions,
    authenticator_for,
    open_authenticator,
    probes,
    register_probe,
)
from mie.request import AuthRequest, StaticPin
from mie.transport.replay import RecordingConnection
from tests.unit.fakes import ScriptedConnection

UNKNOWN_ATR = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")


def test_the_demo_card_identifies_with_its_serial_and_no_identity() -> None:
    identification = authenticator_for(EmulatedConnection(demo_card())).identify()
    assert identification.authenticator.kind == "iso7816"
    assert identification.authenticator.serial == "MIE0000001"
    assert identification.identity is None and identification.certificate is None


def test_the_demo_card_refuses_to_authenticate_without_sending_or_asking() -> None:
    connection = RecordingConnection(EmulatedConnection(demo_card()))
    authenticator = authenticator_for(connection)
    assert isinstance(authenticator, DemoAuthenticator)
    assert authenticator.info.atr == DEMO_ATR and authenticator.info.serial is None
    user = StaticPin("1234")
    with pytest.raises(UnsupportedCardError, match="demo card"):
        authenticator.authenticate(AuthRequest.new(), user=user)
    assert connection.exchanges == [] and user.asked == []


@pytest.mark.parametrize(
    ("kind", "family"),
    [("cps3", "cps3"), ("cpe", "cps3"), ("cps4", "cps4"), ("psi", "cps4"), ("cps3-cl", "cps3-cl")],
)
def test_cpx_cards_get_a_cpx_authenticator_and_probing_sends_nothing(
    kind: str, family: str, options: CardOptions
) -> None:
    connection = RecordingConnection(EmulatedConnection(build_card(kind, options)))
    authenticator = authenticator_for(connection)
    assert isinstance(authenticator, CpxAuthenticator)
    assert authenticator.info.kind == family
    assert connection.exchanges == []
    assert authenticator.identify().authenticator.kind == kind


def test_options_reach_the_authenticator(options: CardOptions) -> None:
    cache = CertificateCache()
    chosen = AuthenticatorOptions(cache, SerialBinding.NONE, chain_checked=False)
    authenticator = authenticator_for(EmulatedConnection(build_card("cps3", options)), chosen)
    assert isinstance(authenticator, CpxAuthenticator)
    assert authenticator.cache is cache
    assert authenticator.serial_binding is SerialBinding.NONE
    assert authenticator.chain_checked is False


def test_an_unknown_card_is_refused_naming_its_atr_and_nothing_is_sent() -> None:
    connection = ScriptedConnection([], atr=UNKNOWN_ATR)
    with pytest.raises(UnsupportedCardError, match=UNKNOWN_ATR.hex()) as raised:
        authenticator_for(connection)
    assert raised.value.atr == UNKNOWN_ATR


def test_probes_are_tried_demo_then_cpx() -> None:
    assert probes()[:2] == ("demo", "cpx")


def test_a_registered_probe_gets_its_turn_and_can_be_replaced() -> None:
    seen: list[bytes | None] = []

    def probe(connection: SmartCardConnection, options: AuthenticatorOptions) -> None:
        seen.append(connection.atr)

    register_probe("test-never", probe)
    try:
        with pytest.raises(UnsupportedCardError):
            authenticator_for(ScriptedConnection([], atr=UNKNOWN_ATR))
        assert seen == [UNKNOWN_ATR]
        assert probes()[-1] == "test-never"
        register_probe("test-never", lambda c, o: None)
        assert probes().count("test-never") == 1
    finally:
        from mie import registry

        registry._PROBES.pop("test-never")


class _Closing(ScriptedConnection):
    closed = False

    def close(self) -> None:
        self.closed = True


def test_open_authenticator_never_closes_a_callers_connection() -> None:
    connection = _Closing([], atr=UNKNOWN_ATR)
    with pytest.raises(UnsupportedCardError):
        open_authenticator(connection=connection)
    assert not connection.closed


def test_open_authenticator_with_a_connection_returns_its_authenticator(
    options: CardOptions,
) -> None:
    authenticator: Authenticator = open_authenticator(
        connection=EmulatedConnection(build_card("cps4", options))
    )
    assert isinstance(authenticator, CpxAuthenticator)
