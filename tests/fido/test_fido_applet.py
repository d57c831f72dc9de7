"""The emulated key's FIDO applet (NFCCTAP over APDUs) byte by byte, and driven in process by
mie's SmartCardCtapDevice and by python-fido2's own CtapPcscDevice (over a pyscard-shaped
adapter of EmulatedConnection), as pcscd would carry it."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.ctap import STATUS, CtapError
from fido2.ctap2.base import Ctap2
from fido2.ctap2.pin import ClientPin
from fido2.pcsc import CtapPcscDevice
from fido2.server import Fido2Server
from fido2.webauthn import (
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    UserVerificationRequirement,
)

from mie.core import cbor
from mie.core.connection import SmartCardConnectionWrapper, Transport
from mie.emulation.base import EmulatedConnection
from mie.emulation.ctap2 import EmulatedAuthenticator, Touch
from mie.emulation.fido_applet import AID_FIDO, ATR, EmulatedFidoApplet
from mie.emulation.fido_pki import TestAttestationPki
from mie.emulation.iso7816 import demo_card
from mie.errors import CardRemovedError
from mie.fido.errors import CtapStatusError, TouchTimeoutError
from mie.transport.ctap import SmartCardCtapDevice

ERR = CtapError.ERR
PIN = "1234"
RP = {"id": "example.com", "name": "Example"}
USER = {"id": b"user-0001", "name": "alice", "displayName": "Alice"}
CDH = hashlib.sha256(b"client data").digest()
SELECT = bytes.fromhex("00A4040008") + AID_FIDO
ES256: list[Mapping[str, Any]] = [{"type": "public-key", "alg": -7}]


@pytest.fixture(scope="module")
def pki() -> TestAttestationPki:
    return TestAttestationPki.generate()


class _Recording(SmartCardConnectionWrapper):
    """Keeps every command APDU and status word."""

    def __init__(self, inner: EmulatedConnection) -> None:
        super().__init__(inner)
        self.sent: list[bytes] = []
        self.sws: list[int] = []

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent.append(bytes(apdu))
        data, sw = super().send_and_receive(apdu)
        self.sws.append(sw)
        return data, sw


class _Script:
    """A scripted engine at the transport edge: waits for ``touch`` while calling
    ``keepalive(UPNEEDED)``, answers CTAP 0x2D when cancelled."""

    def __init__(self, response: bytes = b"\x00\xa0") -> None:
        self.touch = threading.Event()
        self.response = response
        self.cycles = 0
        self.seen_cancel = False

    def handle(
        self,
        cmd: int,
        payload: bytes,
        *,
        keepalive: Callable[[int], None],
        cancelled: threading.Event,
    ) -> bytes:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            keepalive(int(STATUS.UPNEEDED))
            if cancelled.is_set():
                self.seen_cancel = True
                return bytes([ERR.KEEPALIVE_CANCEL])
            if self.touch.wait(0.02):
                return self.response
        return bytes([ERR.USER_ACTION_TIMEOUT])

    def power_cycle(self) -> None:
        self.cycles += 1


def _applet(pki: TestAttestationPki, pin: str | None = None) -> EmulatedFidoApplet:
    return EmulatedFidoApplet(EmulatedAuthenticator(pin, pki=pki))


def _send(applet: EmulatedFidoApplet, apdu: bytes | str) -> tuple[bytes, int]:
    raw = bytes.fromhex(apdu) if isinstance(apdu, str) else apdu
    response = applet.process(raw)
    return response[:-2], int.from_bytes(response[-2:], "big")


def _selected(applet: EmulatedFidoApplet) -> EmulatedFidoApplet:
    assert _send(applet, SELECT) == (b"FIDO_2_0", 0x9000)
    return applet


# The applet, byte by byte


def test_atr_is_the_contactless_pseudo_atr(pki: TestAttestationPki) -> None:
    connection = EmulatedConnection(_applet(pki))
    assert connection.atr == ATR == bytes.fromhex("3B80800101")
    assert connection.transport is Transport.CONTACTLESS


def test_select_answers_fido_2_0_with_or_without_le(pki: TestAttestationPki) -> None:
    applet = _applet(pki)
    assert _send(applet, SELECT + b"\x00") == (b"FIDO_2_0", 0x9000)
    assert _send(applet, SELECT) == (b"FIDO_2_0", 0x9000)


def test_nothing_before_select_and_another_aid_deselects(pki: TestAttestationPki) -> None:
    applet = _applet(pki)
    assert _send(applet, "8010000001 04 00") == (b"", 0x6985)
    assert _send(applet, "00C0000000") == (b"", 0x6985)
    _selected(applet)
    assert _send(applet, "00A4040007 A0000000030000") == (b"", 0x6A82)
    assert _send(applet, "8010000001 04 00") == (b"", 0x6985)
    assert _send(applet, "00A4000002 3F00") == (b"", 0x6A86)


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("0001000000", 0x6D00),  # CTAP1 register
        ("0002030000", 0x6D00),  # CTAP1 authenticate
        ("0003000000", 0x6D00),  # CTAP1 version
        ("80CA000000", 0x6D00),
        ("8012000000", 0x6D00),
        ("A410000001 04", 0x6E00),
        ("8410000001 04", 0x6E00),
        ("1001000000", 0x6E00),  # chaining on anything but NFCCTAP_MSG
        ("80", 0x6700),
        ("8010000005 0401", 0x6700),  # Lc beyond the data
        ("8010000000", 0x6700),  # an empty CTAP request
    ],
)
def test_other_instructions_classes_and_lengths(
    pki: TestAttestationPki, apdu: str, sw: int
) -> None:
    applet = _selected(_applet(pki))
    assert _send(applet, apdu) == (b"", sw)
    # the applet still works afterwards
    data, status = _send(applet, "8010800001 04 00")
    assert status == 0x9000 and data[0] == 0


def test_get_info_in_one_message(pki: TestAttestationPki) -> None:
    applet = _selected(_applet(pki))
    data, sw = _send(applet, "8010800001 04 00")
    assert sw == 0x9000 and data[0] == 0
    info = cbor.decode(data[1:], canonical=True)
    assert "FIDO_2_1" in info[1] and info[5] == 1200


def test_a_request_in_chained_pieces_and_a_long_answer_in_61xx_pieces(
    pki: TestAttestationPki,
) -> None:
    applet = _selected(_applet(pki))
    request = b"\x01" + cbor.encode(
        {1: CDH, 2: RP, 3: USER, 4: ES256, 5: [{"type": "public-key", "id": bytes(100)}] * 4}
    )
    assert len(request) > 500
    pieces = [request[i : i + 250] for i in range(0, len(request), 250)]
    for piece in pieces[:-1]:
        assert _send(applet, bytes([0x90, 0x10, 0x80, 0x00, len(piece)]) + piece) == (b"", 0x9000)
    last = pieces[-1]
    data, sw = _send(applet, bytes([0x80, 0x10, 0x80, 0x00, len(last)]) + last + b"\x00")
    answer = bytearray(data)
    assert len(data) == 256 and sw >> 8 == 0x61
    while sw >> 8 == 0x61:
        left = sw & 0xFF or 256
        data, sw = _send(applet, bytes([0x00, 0xC0, 0x00, 0x00, sw & 0xFF]))
        assert len(data) == left if sw == 0x9000 else len(data) == 256
        answer += data
    assert sw == 0x9000 and answer[0] == 0
    made = cbor.decode(bytes(answer[1:]), canonical=True)
    assert made[1] == "packed" and len(made[3]["x5c"]) == 2
    assert _send(applet, "00C0000000") == (b"", 0x6985)  # nothing left to read


def test_a_short_le_gives_short_pieces(pki: TestAttestationPki) -> None:
    applet = _selected(_applet(pki))
    data, sw = _send(applet, "8010800001 04 10")
    assert len(data) == 16 and sw >> 8 == 0x61
    rest, sw = _send(applet, "00C0000000")
    assert sw == 0x9000 and data[0] == 0 and cbor.decode(data[1:] + rest, canonical=True)[5]


def test_an_oversize_chained_request_is_refused(pki: TestAttestationPki) -> None:
    applet = _selected(_applet(pki))
    piece = bytes([0x90, 0x10, 0x80, 0x00, 250]) + bytes(250)
    answers = [_send(applet, piece)[1] for _ in range(31)]
    assert answers[:30] == [0x9000] * 30 and answers[30] == 0x6700
    data, sw = _send(applet, "8010800001 04 00")
    assert sw == 0x9000 and data[0] == 0


def test_polling_answers_9100_with_the_keepalive_status_until_the_touch() -> None:
    engine = _Script()
    applet = _selected(EmulatedFidoApplet(engine))
    assert _send(applet, "8010800001 02 00") == (bytes([STATUS.UPNEEDED]), 0x9100)
    assert _send(applet, "8011000000") == (bytes([STATUS.UPNEEDED]), 0x9100)
    assert _send(applet, "8010800001 04 00") == (b"", 0x6985)  # one command at a time
    engine.touch.set()
    time.sleep(0.05)
    assert _send(applet, "8011000000") == (b"\x00\xa0", 0x9000)
    assert _send(applet, "8011000000") == (b"", 0x6985)  # nothing left to poll


def test_cancel_ends_the_command_with_keepalive_cancel() -> None:
    engine = _Script()
    applet = _selected(EmulatedFidoApplet(engine))
    assert _send(applet, "8010800001 02 00")[1] == 0x9100
    assert _send(applet, "8011110000") == (bytes([ERR.KEEPALIVE_CANCEL]), 0x9000)
    assert engine.seen_cancel


def test_without_polling_the_answer_waits_for_the_engine() -> None:
    engine = _Script()
    applet = _selected(EmulatedFidoApplet(engine))
    threading.Timer(0.3, engine.touch.set).start()
    assert _send(applet, "8010000001 02 00") == (b"\x00\xa0", 0x9000)


def test_power_off_power_cycles_the_key_and_forgets_the_selection() -> None:
    engine = _Script()
    applet = _selected(EmulatedFidoApplet(engine))
    assert _send(applet, "8010800001 02 00")[1] == 0x9100
    applet.reset()
    assert engine.cycles == 1 and engine.seen_cancel
    assert _send(applet, "8011000000") == (b"", 0x6985)
    _selected(applet)


def test_fail_after_leaves_the_field(pki: TestAttestationPki) -> None:
    applet = EmulatedFidoApplet(EmulatedAuthenticator(pki=pki), fail_after=2)
    connection = EmulatedConnection(applet)
    connection.send_and_receive(SELECT)
    connection.send_and_receive(bytes.fromhex("801080000104" + "00"))
    assert applet.gone
    with pytest.raises(CardRemovedError):
        connection.send_and_receive(SELECT)


def test_an_engine_failure_answers_ctap_other_and_the_applet_goes_on() -> None:
    class _Broken(_Script):
        def handle(self, cmd: int, payload: bytes, **kwargs: Any) -> bytes:
            raise RuntimeError("bug")

    applet = _selected(EmulatedFidoApplet(_Broken()))
    assert _send(applet, "8010800001 04 00") == (bytes([ERR.OTHER]), 0x9000)
    assert _send(applet, SELECT)[1] == 0x9000


def test_an_engine_pull_takes_the_key_out_of_the_field() -> None:
    class _Pulled(_Script):
        def handle(self, cmd: int, payload: bytes, **kwargs: Any) -> bytes:
            raise OSError("pulled")

    applet = EmulatedFidoApplet(_Pulled())
    connection = EmulatedConnection(applet)
    assert connection.send_and_receive(SELECT)[1] == 0x9000
    with pytest.raises(CardRemovedError, match="pulled"):
        connection.send_and_receive(bytes.fromhex("801080000104" + "00"))
    assert applet.gone


# mie's SmartCardCtapDevice over the applet


def _device(applet: EmulatedFidoApplet, **options: Any) -> tuple[SmartCardCtapDevice, _Recording]:
    connection = _Recording(EmulatedConnection(applet))
    return SmartCardCtapDevice(connection, name="test reader", **options), connection


def test_smart_card_ctap_device_runs_make_credential_and_get_assertion(
    pki: TestAttestationPki,
) -> None:
    applet = _applet(pki)
    device, connection = _device(applet)
    ctap = Ctap2(device, strict_cbor=True)
    exclude: list[Mapping[str, Any]] = [
        {"type": "public-key", "id": bytes([i]) * 100} for i in range(4)
    ]
    made = ctap.make_credential(CDH, RP, USER, ES256, exclude_list=exclude)
    data = made.auth_data.credential_data
    assert data is not None and made.fmt == "packed"
    assert any(apdu[0] == 0x90 and len(apdu) == 5 + 250 for apdu in connection.sent)
    assert any(apdu[:4] == b"\x00\xc0\x00\x00" for apdu in connection.sent)
    got = ctap.get_assertion("example.com", CDH, [{"type": "public-key", "id": data.credential_id}])
    got.verify(CDH, data.public_key)
    assert got.auth_data.counter == 1
    assert connection.sent[0] == SELECT + b"\x00"


def test_smart_card_ctap_device_with_fido2_client_server_and_a_pin(
    pki: TestAttestationPki,
) -> None:
    device, _ = _device(_applet(pki, PIN))

    class _Pin(UserInteraction):
        def request_pin(self, permissions: Any, rp_id: str | None) -> str:
            return PIN

    client = Fido2Client(
        device, DefaultClientDataCollector("https://example.com"), user_interaction=_Pin()
    )
    server = Fido2Server(PublicKeyCredentialRpEntity(id="example.com", name="Example"))
    options, state = server.register_begin(
        PublicKeyCredentialUserEntity(name="alice", id=b"user-0001", display_name="Alice"),
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    auth_data = server.register_complete(state, client.make_credential(options.public_key))
    credential = auth_data.credential_data
    assert credential is not None and auth_data.is_user_verified()
    request, auth_state = server.authenticate_begin(
        [credential], user_verification=UserVerificationRequirement.REQUIRED
    )
    response = client.get_assertion(request.public_key).get_response(0)
    server.authenticate_complete(auth_state, [credential], response)


def test_smart_card_ctap_device_polls_and_reports_keepalives() -> None:
    engine = _Script(b"\x00" + cbor.encode({1: ["FIDO_2_0"], 3: bytes(16)}))
    engine.touch.set()  # the getInfo probe answers at once
    device, connection = _device(EmulatedFidoApplet(engine))
    engine.touch.clear()
    seen: list[STATUS] = []
    threading.Timer(0.35, engine.touch.set).start()
    answer = device.call(0x10, b"\x02", on_keepalive=seen.append)
    assert answer == engine.response
    assert seen == [STATUS.UPNEEDED]
    polls = [apdu for apdu in connection.sent if apdu[:2] == b"\x80\x11"]
    assert polls and all(apdu == bytes.fromhex("8011000000") for apdu in polls)


def test_smart_card_ctap_device_cancels_on_the_event() -> None:
    engine = _Script(b"\x00" + cbor.encode({1: ["FIDO_2_0"], 3: bytes(16)}))
    engine.touch.set()
    device, connection = _device(EmulatedFidoApplet(engine))
    engine.touch.clear()
    event = threading.Event()
    threading.Timer(0.25, event.set).start()
    answer = device.call(0x10, b"\x02", event=event)
    assert answer == bytes([ERR.KEEPALIVE_CANCEL]) and engine.seen_cancel
    assert bytes.fromhex("8011110000") in connection.sent


def test_smart_card_ctap_device_gives_up_waiting_for_the_user() -> None:
    engine = _Script(b"\x00" + cbor.encode({1: ["FIDO_2_0"], 3: bytes(16)}))
    engine.touch.set()
    device, connection = _device(EmulatedFidoApplet(engine), user_wait=0.3)
    engine.touch.clear()
    with pytest.raises(TouchTimeoutError, match="touched"):
        device.call(0x10, b"\x02")
    assert engine.seen_cancel or bytes.fromhex("8011110000") in connection.sent


def test_smart_card_ctap_device_refuses_a_card_without_the_applet() -> None:
    with pytest.raises(CtapStatusError, match=r"no FIDO applet.*6A82"):
        SmartCardCtapDevice(EmulatedConnection(demo_card()), name="reader")


def test_smart_card_ctap_device_refuses_other_status_words(pki: TestAttestationPki) -> None:
    class _Mangled(SmartCardConnectionWrapper):
        armed = False

        def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
            data, sw = super().send_and_receive(apdu)
            return (data, 0x6F00) if apdu[:2] == b"\x80\x10" and self.armed else (data, sw)

    connection = _Mangled(EmulatedConnection(_applet(pki)))
    device = SmartCardCtapDevice(connection, name="reader")
    connection.armed = True
    with pytest.raises(CtapStatusError, match="6F00"):
        device.call(0x10, b"\x04")


def test_smart_card_ctap_device_only_speaks_cbor(pki: TestAttestationPki) -> None:
    device, _ = _device(_applet(pki))
    for cmd in (0x01, 0x03, 0x08):
        with pytest.raises(CtapError) as e:
            device.call(cmd, b"")
        assert e.value.code == ERR.INVALID_COMMAND


def test_a_key_pulled_mid_operation_is_card_removed(pki: TestAttestationPki) -> None:
    applet = _applet(pki)
    device, _ = _device(applet)
    ctap = Ctap2(device)
    applet.fail_after = applet.answered + 2  # the makeCredential answer is cut
    with pytest.raises(CardRemovedError):
        ctap.make_credential(CDH, RP, USER, ES256)


def test_power_cycle_through_a_reset_ends_the_pin_mismatch_block(pki: TestAttestationPki) -> None:
    applet = _applet(pki, PIN)
    connection = EmulatedConnection(applet)
    client_pin = ClientPin(Ctap2(SmartCardCtapDevice(connection, name="reader")))
    for _ in range(3):
        with pytest.raises(CtapError):
            client_pin.get_pin_token("9999")
    with pytest.raises(CtapError) as e:
        client_pin.get_pin_token(PIN)
    assert e.value.code == ERR.PIN_AUTH_BLOCKED
    applet.reset()
    client_pin = ClientPin(Ctap2(SmartCardCtapDevice(connection, name="reader")))
    assert client_pin.get_pin_token(PIN)
    assert client_pin.get_pin_retries()[0] == 8


# python-fido2's own PC/SC device over the applet


class _PyscardLike:
    """The four pyscard CardConnection calls CtapPcscDevice makes, over EmulatedConnection."""

    def __init__(self, applet: EmulatedFidoApplet) -> None:
        self._connection = EmulatedConnection(applet)

    def connect(self) -> None:
        pass

    def getATR(self) -> list[int]:  # noqa: N802 - pyscard's name
        return list(self._connection.card.atr)

    def transmit(self, apdu: list[int], protocol: int | None = None) -> tuple[list[int], int, int]:
        data, sw = self._connection.send_and_receive(bytes(apdu))
        return list(data), sw >> 8, sw & 0xFF

    def disconnect(self) -> None:
        pass


def test_fido2_ctap_pcsc_device_registers_and_authenticates(pki: TestAttestationPki) -> None:
    device = CtapPcscDevice(_PyscardLike(_applet(pki)), "emulated")
    client = Fido2Client(device, DefaultClientDataCollector("https://example.com"))
    server = Fido2Server(PublicKeyCredentialRpEntity(id="example.com", name="Example"))
    options, state = server.register_begin(
        PublicKeyCredentialUserEntity(name="alice", id=b"user-0001", display_name="Alice"),
        user_verification=UserVerificationRequirement.DISCOURAGED,
    )
    auth_data = server.register_complete(state, client.make_credential(options.public_key))
    credential = auth_data.credential_data
    assert credential is not None
    request, auth_state = server.authenticate_begin(
        [credential], user_verification=UserVerificationRequirement.DISCOURAGED
    )
    response = client.get_assertion(request.public_key).get_response(0)
    server.authenticate_complete(auth_state, [credential], response)
    assert response.response.authenticator_data.counter == 1


def test_the_engine_s_touch_wait_polls_with_upneeded_through_smart_card_ctap_device(
    pki: TestAttestationPki,
) -> None:
    applet = EmulatedFidoApplet(EmulatedAuthenticator(pki=pki, touch=Touch.after(0.4)))
    device, connection = _device(applet)
    seen: list[int] = []
    made = Ctap2(device).make_credential(CDH, RP, USER, ES256, on_keepalive=seen.append)
    assert made.auth_data.is_user_present()
    assert seen == [STATUS.UPNEEDED]
    assert 0x9100 in connection.sws


def test_a_cancelled_touch_wait_is_keepalive_cancel_and_nothing_is_made(
    pki: TestAttestationPki,
) -> None:
    engine = EmulatedAuthenticator(pki=pki, touch=Touch.never())
    device, _ = _device(EmulatedFidoApplet(engine))
    event = threading.Event()
    threading.Timer(0.3, event.set).start()
    with pytest.raises(CtapError) as e:
        Ctap2(device).make_credential(CDH, RP, USER, ES256, event=event)
    assert e.value.code == ERR.KEEPALIVE_CANCEL
    assert engine.credentials == ()


# A dual-protocol key (CTAP 2.1 §11.3.3): SELECT answers U2F_V2, CTAP2 is decided by getInfo


def test_the_applet_can_answer_u2f_v2_like_a_dual_protocol_key(pki: TestAttestationPki) -> None:
    applet = EmulatedFidoApplet(EmulatedAuthenticator(pki=pki), select_version=b"U2F_V2")
    assert _send(applet, SELECT + b"\x00") == (b"U2F_V2", 0x9000)
    with pytest.raises(ValueError, match="U2F_V2"):
        EmulatedFidoApplet(EmulatedAuthenticator(pki=pki), select_version=b"FIDO_2_1")


def test_smart_card_ctap_device_takes_a_u2f_v2_key_that_speaks_ctap2(
    pki: TestAttestationPki,
) -> None:
    applet = EmulatedFidoApplet(EmulatedAuthenticator(pki=pki), select_version=b"U2F_V2")
    device, connection = _device(applet)
    assert connection.sent[:2] == [SELECT + b"\x00", bytes.fromhex("80108000010400")]
    ctap = Ctap2(device, strict_cbor=True)
    made = ctap.make_credential(CDH, RP, USER, ES256)
    data = made.auth_data.credential_data
    assert data is not None
    got = ctap.get_assertion("example.com", CDH, [{"type": "public-key", "id": data.credential_id}])
    got.verify(CDH, data.public_key)


def test_python_fido2_takes_the_same_u2f_v2_key(pki: TestAttestationPki) -> None:
    # The independent host: CtapPcscDevice accepts U2F_V2 and finds CTAP2 by getInfo.
    applet = EmulatedFidoApplet(EmulatedAuthenticator(pki=pki), select_version=b"U2F_V2")
    device = CtapPcscDevice(_PyscardLike(applet), "emulated")
    assert "FIDO_2_1" in Ctap2(device).get_info().versions


class _U2fOnly(SmartCardConnectionWrapper):
    """A U2F-only key: SELECT answers U2F_V2, NFCCTAP_MSG is an unknown instruction."""

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        if apdu[:2] == b"\x80\x10":
            return b"", 0x6D00
        return super().send_and_receive(apdu)


def test_smart_card_ctap_device_refuses_a_u2f_only_key_after_get_info(
    pki: TestAttestationPki,
) -> None:
    applet = EmulatedFidoApplet(EmulatedAuthenticator(pki=pki), select_version=b"U2F_V2")
    with pytest.raises(CtapStatusError, match=r"U2F_V2.*does not speak CTAP2.*6D00"):
        SmartCardCtapDevice(_U2fOnly(EmulatedConnection(applet)), name="reader")


@pytest.mark.parametrize("answer", [b"FIDO_2_1", b"", b"U2F_V3"])
def test_smart_card_ctap_device_refuses_another_select_answer(answer: bytes) -> None:
    class _Answer(SmartCardConnectionWrapper):
        def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
            return answer, 0x9000

    with pytest.raises(CtapStatusError, match="to its SELECT"):
        SmartCardCtapDevice(_Answer(EmulatedConnection(demo_card())), name="reader")


class _SelectIn61xx(SmartCardConnectionWrapper):
    """A reader that hands the SELECT answer over in a 61xx GET RESPONSE."""

    pending = b""

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        if apdu[:4] == bytes.fromhex("00A40400"):
            data, sw = super().send_and_receive(apdu)
            assert sw == 0x9000
            self.pending = data
            return b"", 0x6100 | len(data)
        if apdu[:4] == bytes.fromhex("00C00000") and self.pending:
            data, self.pending = self.pending, b""
            return data, 0x9000
        return super().send_and_receive(apdu)


def test_smart_card_ctap_device_reads_a_select_answer_given_in_61xx(
    pki: TestAttestationPki,
) -> None:
    device = SmartCardCtapDevice(_SelectIn61xx(EmulatedConnection(_applet(pki))), name="reader")
    assert "FIDO_2_0" in Ctap2(device).get_info().versions
