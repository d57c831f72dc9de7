"""The authenticator registry: probes by ATR, the demo card, DESFire badges and FIDO2 keys over
NFC, refusal of unknown cards."""

from __future__ import annotations

import pytest

from mie.auth import Authenticator, CpxAuthenticator, SerialBinding
from mie.cards.demo import DEMO_ATR, DemoAuthenticator
from mie.certcache import CertificateCache
from mie.core.connection import SmartCardConnection, Transport
from mie.desfire.authenticator import DesfireAuthenticator
from mie.emulation import EmulatedConnection, demo_card
from mie.emulation.ctap2 import EmulatedAuthenticator
from mie.emulation.fido_applet import ATR as FIDO_ATR
from mie.emulation.fido_applet import EmulatedFidoApplet
from mie.emulation.fido_pki import TestAttestationPki
from mie.emulation.registry import CardOptions, build_card
from mie.errors import CardRemovedError, UnsupportedCardError
from mie.fido.authenticator import Fido2Authenticator, credential_ref
from mie.registry import (
    DESFIRE_GET_VERSION,
    FIDO_SELECT,
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


def test_probes_end_with_desfire_then_fido() -> None:
    assert probes()[:4] == ("demo", "cpx", "desfire", "fido")


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


# FIDO2 keys over NFC (the fido probe, after DESFire)

ORIGIN = "https://iam.chu-exemple.fr"


@pytest.fixture(scope="module")
def fido_pki() -> TestAttestationPki:
    return TestAttestationPki.generate()


def test_a_fido_key_over_nfc_gets_a_fido2_authenticator_that_works(
    fido_pki: TestAttestationPki,
) -> None:
    engine = EmulatedAuthenticator("1234", pki=fido_pki, transports=("nfc",))
    connection = RecordingConnection(EmulatedConnection(EmulatedFidoApplet(engine)))
    authenticator = authenticator_for(connection, AuthenticatorOptions(fido_rp_id="chu-exemple.fr"))
    assert isinstance(authenticator, Fido2Authenticator)
    assert authenticator.rp_id == "chu-exemple.fr"
    assert authenticator.info.transport is Transport.CONTACTLESS
    assert authenticator.info.atr == FIDO_ATR and authenticator.info.kind == "fido2"
    sent = [e.command for e in connection.exchanges]
    # DESFire's GetVersion first (refused by the applet), then the FIDO SELECT.
    assert sent[:2] == [DESFIRE_GET_VERSION.hex(), FIDO_SELECT.hex()]
    data = authenticator.register(
        AuthRequest.new(ORIGIN), user=StaticPin("1234"), user_name="a", display_name="A"
    )
    assert data.transports == ("nfc",) and data.rp_id == "chu-exemple.fr"
    key = authenticator_for(
        EmulatedConnection(EmulatedFidoApplet(engine)),
        AuthenticatorOptions(fido_rp_id="chu-exemple.fr", fido_credentials=(data.credential_id,)),
    )
    assert isinstance(key, Fido2Authenticator)
    user = StaticPin("1234")
    evidence = key.authenticate(AuthRequest.new(ORIGIN), user=user)
    assert evidence.credential_id == data.credential_id and user.asked == [8]
    assert key.info.serial == credential_ref(data.credential_id)
    assert engine.credentials[0].sign_count == 1


def test_the_fido_probe_leaves_cps3_cl_and_desfire_alone(options: CardOptions) -> None:
    cps3_cl = RecordingConnection(EmulatedConnection(build_card("cps3-cl", options)))
    assert isinstance(authenticator_for(cps3_cl), CpxAuthenticator)
    assert cps3_cl.exchanges == []
    desfire = RecordingConnection(EmulatedConnection(build_card("desfire", options)))
    assert isinstance(authenticator_for(desfire), DesfireAuthenticator)
    assert [e.command for e in desfire.exchanges] == [DESFIRE_GET_VERSION.hex()]


CONTACTLESS_ATR = bytes.fromhex("3B8F8001804F0CA0000003060300030000000068")


def test_a_contactless_card_without_the_fido_applet_is_unsupported_after_two_commands() -> None:
    connection = ScriptedConnection(
        [(DESFIRE_GET_VERSION, b"", 0x6E00), (FIDO_SELECT, b"", 0x6A82)],
        atr=CONTACTLESS_ATR,
        transport=Transport.CONTACTLESS,
    )
    with pytest.raises(UnsupportedCardError):
        authenticator_for(connection)
    assert connection.remaining == 0


@pytest.mark.parametrize("answer", [b"FIDO_2_1", b"", b"U2F_V3"])
def test_a_select_answer_of_another_version_is_not_a_fido_key(answer: bytes) -> None:
    connection = ScriptedConnection(
        [(DESFIRE_GET_VERSION, b"", 0x6E00), (FIDO_SELECT, answer, 0x9000)],
        atr=CONTACTLESS_ATR,
        transport=Transport.CONTACTLESS,
    )
    with pytest.raises(UnsupportedCardError, match="ATR"):
        authenticator_for(connection)
    assert connection.remaining == 0


def test_a_dual_protocol_key_answering_u2f_v2_is_a_fido2_key(
    fido_pki: TestAttestationPki,
) -> None:
    # Most NFC keys (YubiKey 5 NFC) answer U2F_V2 to the SELECT and speak CTAP2 too.
    engine = EmulatedAuthenticator("1234", pki=fido_pki, transports=("nfc",))
    applet = EmulatedFidoApplet(engine, select_version=b"U2F_V2")
    key = authenticator_for(
        EmulatedConnection(applet), AuthenticatorOptions(fido_rp_id="chu-exemple.fr")
    )
    assert isinstance(key, Fido2Authenticator)
    data = key.register(
        AuthRequest.new(ORIGIN), user=StaticPin("1234"), user_name="a", display_name="A"
    )
    assert engine.credentials[0].id == data.credential_id


def test_a_select_answer_in_61xx_is_read_with_get_response(fido_pki: TestAttestationPki) -> None:
    class _SelectIn61xx(EmulatedConnection):
        pending = b""

        def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
            if apdu == FIDO_SELECT:
                self.pending, _ = super().send_and_receive(apdu)
                return b"", 0x6100 | len(self.pending)
            if apdu[:4] == bytes.fromhex("00C00000") and self.pending:
                data, self.pending = self.pending, b""
                return data, 0x9000
            return super().send_and_receive(apdu)

    engine = EmulatedAuthenticator(pki=fido_pki, transports=("nfc",))
    key = authenticator_for(_SelectIn61xx(EmulatedFidoApplet(engine)))
    assert isinstance(key, Fido2Authenticator)


def test_a_u2f_only_key_is_refused_as_not_ctap2() -> None:
    # SELECT answers U2F_V2; getInfo (NFCCTAP_MSG) is an unknown instruction.
    connection = ScriptedConnection(
        [
            (DESFIRE_GET_VERSION, b"", 0x6E00),
            (FIDO_SELECT, b"U2F_V2", 0x9000),
            (FIDO_SELECT, b"U2F_V2", 0x9000),
            (bytes.fromhex("80108000010400"), b"", 0x6D00),
        ],
        atr=CONTACTLESS_ATR,
        transport=Transport.CONTACTLESS,
    )
    with pytest.raises(UnsupportedCardError, match="CTAP2") as raised:
        authenticator_for(connection)
    assert raised.value.atr == CONTACTLESS_ATR
    assert connection.remaining == 0


def test_a_contact_card_is_never_sent_the_fido_select() -> None:
    connection = ScriptedConnection([], atr=UNKNOWN_ATR, transport=Transport.CONTACT)
    with pytest.raises(UnsupportedCardError):
        authenticator_for(connection)
    assert connection.sent == []


class _PullOnGetAssertion(EmulatedConnection):
    """The key leaves the field as the host sends the ``nth`` getAssertion (NFCCTAP_MSG whose
    CTAP command is 0x02): the applet's own pull fault, armed at that moment."""

    def __init__(self, applet: EmulatedFidoApplet, nth: int) -> None:
        super().__init__(applet)
        self.applet = applet
        self.nth = nth

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        if apdu[:2] == bytes.fromhex("8010") and len(apdu) > 5 and apdu[5] == 0x02:
            self.nth -= 1
            if self.nth == 0:
                self.applet.fail_after = self.applet.answered
        return super().send_and_receive(apdu)


def test_a_fido_key_pulled_mid_get_assertion_over_nfc_is_card_removed(
    fido_pki: TestAttestationPki,
) -> None:
    engine = EmulatedAuthenticator("1234", pki=fido_pki)
    key = authenticator_for(EmulatedConnection(EmulatedFidoApplet(engine)))
    assert isinstance(key, Fido2Authenticator)
    data = key.register(
        AuthRequest.new(ORIGIN), user=StaticPin("1234"), user_name="a", display_name="A"
    )
    # With an allowList python-fido2 sends an up=false pre-flight getAssertion, then the real one.
    connection = _PullOnGetAssertion(EmulatedFidoApplet(engine), nth=2)
    options = AuthenticatorOptions(fido_credentials=(data.credential_id,))
    pulled = authenticator_for(connection, options)
    with pytest.raises(CardRemovedError):
        pulled.authenticate(AuthRequest.new(ORIGIN), user=StaticPin("1234"))
    assert connection.nth == 0
    assert engine.credentials[0].sign_count == 0
