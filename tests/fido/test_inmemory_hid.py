"""CTAPHID device side driven by python-fido2's own ``CtapHidDevice`` over an in-memory HID
connection, and by raw reports for the refusals."""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest
from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.ctap import CtapError
from fido2.ctap2.base import Ctap2
from fido2.hid import CTAPHID, CtapHidDevice
from fido2.hid.base import parse_report_descriptor
from fido2.server import Fido2Server
from fido2.webauthn import (
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    UserVerificationRequirement,
)

from mie.emulation.ctap2 import EmulatedAuthenticator
from mie.emulation.ctaphid import (
    FIDO_REPORT_DESCRIPTOR,
    MAX_MESSAGE,
    CtapHidFraming,
    InMemoryHidConnection,
    hid_descriptor,
)
from mie.emulation.fido_pki import TestAttestationPki

ERR = CtapError.ERR
PIN = "1234"
RP = {"id": "example.com", "name": "Example"}
USER = {"id": b"user-0001", "name": "alice", "displayName": "Alice"}
CDH = hashlib.sha256(b"client data").digest()
BROADCAST = 0xFFFFFFFF


@pytest.fixture(scope="module")
def pki() -> TestAttestationPki:
    return TestAttestationPki.generate()


class _Pin(UserInteraction):
    def __init__(self) -> None:
        self.asked = 0

    def request_pin(self, permissions: Any, rp_id: str | None) -> str:
        self.asked += 1
        return PIN


class _Recording(InMemoryHidConnection):
    def __init__(self, framing: CtapHidFraming) -> None:
        super().__init__(framing)
        self.written: list[bytes] = []

    def write_packet(self, data: bytes) -> None:
        self.written.append(bytes(data))
        super().write_packet(data)


def _key(
    pki: TestAttestationPki, pin: str | None = None
) -> tuple[EmulatedAuthenticator, CtapHidFraming]:
    engine = EmulatedAuthenticator(pin, pki=pki)
    return engine, CtapHidFraming(engine)


def _device(framing: CtapHidFraming) -> CtapHidDevice:
    return CtapHidDevice(hid_descriptor(), InMemoryHidConnection(framing))


def _report(cid: int, cmd: int, data: bytes = b"", length: int | None = None) -> bytes:
    n = len(data) if length is None else length
    return (struct.pack(">IBH", cid, 0x80 | cmd, n) + data).ljust(64, b"\0")


def _cont(cid: int, seq: int, data: bytes = b"") -> bytes:
    return (struct.pack(">IB", cid, seq) + data).ljust(64, b"\0")


def _read(framing: CtapHidFraming) -> bytes:
    report = framing.read(2.0)
    assert report is not None and len(report) == 64
    return report


def _channel(framing: CtapHidFraming) -> int:
    framing.feed(_report(BROADCAST, CTAPHID.INIT, b"12345678"))
    reply = _read(framing)
    return int(struct.unpack_from(">I", reply, 15)[0])


def _assert_error(framing: CtapHidFraming, cid: int, code: int) -> None:
    reply = _read(framing)
    assert struct.unpack_from(">IBHB", reply) == (cid, 0x80 | CTAPHID.ERROR, 1, code)
    assert framing.read(0.05) is None


def test_report_descriptor_is_a_fido_one() -> None:
    assert parse_report_descriptor(FIDO_REPORT_DESCRIPTOR) == (64, 64)


def test_init_echoes_the_nonce_on_the_broadcast_channel(pki: TestAttestationPki) -> None:
    engine, framing = _key(pki)
    framing.feed(_report(BROADCAST, CTAPHID.INIT, b"\x01\x02\x03\x04\x05\x06\x07\x08"))
    reply = _read(framing)
    cid, cmd, length = struct.unpack_from(">IBH", reply)
    assert (cid, cmd, length) == (BROADCAST, 0x80 | CTAPHID.INIT, 17)
    assert reply[7:15] == bytes(range(1, 9))
    new_cid = struct.unpack_from(">I", reply, 15)[0]
    assert new_cid not in (0, BROADCAST)
    assert reply[19:24] == bytes([2, 1, 0, 0, engine.capabilities])
    # python-fido2's own nonce check passes and it takes the new channel
    device = _device(framing)
    assert device.version == 2 and device.capabilities == engine.capabilities
    assert device._channel_id not in (0, BROADCAST, new_cid)


def test_get_info_make_credential_get_assertion_through_ctap2(pki: TestAttestationPki) -> None:
    engine, framing = _key(pki)
    ctap = Ctap2(_device(framing), strict_cbor=True)
    assert "FIDO_2_1" in ctap.info.versions
    made = ctap.make_credential(CDH, RP, USER, [{"type": "public-key", "alg": -7}])
    data = made.auth_data.credential_data
    assert data is not None
    got = ctap.get_assertion("example.com", CDH, [{"type": "public-key", "id": data.credential_id}])
    got.verify(CDH, data.public_key)
    assert got.auth_data.counter == 1 and len(engine.credentials) == 1


def test_fido2_client_with_a_pin_registers_and_authenticates(pki: TestAttestationPki) -> None:
    _, framing = _key(pki, PIN)
    user = _Pin()
    client = Fido2Client(
        _device(framing), DefaultClientDataCollector("https://example.com"), user_interaction=user
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
    assert response.response.authenticator_data.is_user_verified()
    assert user.asked == 2


def test_a_large_exclude_list_needs_many_continuations(pki: TestAttestationPki) -> None:
    engine, framing = _key(pki)
    connection = _Recording(framing)
    ctap = Ctap2(CtapHidDevice(hid_descriptor(), connection))
    made = ctap.make_credential(CDH, RP, USER, [{"type": "public-key", "alg": -7}])
    assert made.auth_data.credential_data is not None
    exclude: list[Mapping[str, Any]] = [
        {"type": "public-key", "id": bytes([i]) * 64} for i in range(7)
    ]
    exclude.append({"type": "public-key", "id": made.auth_data.credential_data.credential_id})
    connection.written.clear()
    with pytest.raises(CtapError) as e:
        ctap.make_credential(
            CDH, RP, USER, [{"type": "public-key", "alg": -7}], exclude_list=exclude
        )
    assert e.value.code == ERR.CREDENTIAL_EXCLUDED
    assert len(connection.written) >= 10
    assert [r[4] for r in connection.written[1:]] == list(range(len(connection.written) - 1))
    assert len(engine.credentials) == 1


def test_ping_round_trip_and_wink(pki: TestAttestationPki) -> None:
    _, framing = _key(pki)
    device = _device(framing)
    message = bytes(range(256)) * 4
    assert device.ping(message) == message
    assert device.ping(b"") == b""
    device.wink()


def test_keepalive_while_the_engine_works(pki: TestAttestationPki) -> None:
    release = threading.Event()

    class _Slow:
        capabilities = 0x05

        def handle(
            self, cmd: int, payload: bytes, *, keepalive: Any, cancelled: threading.Event
        ) -> bytes:
            keepalive(2)
            release.wait(2.0)
            return b"\x00"

    framing = CtapHidFraming(_Slow())
    cid = _channel(framing)
    framing.feed(_report(cid, CTAPHID.CBOR, b"\x04"))
    time.sleep(0.15)
    keepalive = _read(framing)
    assert struct.unpack_from(">IBHB", keepalive) == (cid, 0x80 | CTAPHID.KEEPALIVE, 1, 2)
    other = _channel(framing)
    framing.feed(_report(other, CTAPHID.PING, b"x"))
    assert struct.unpack_from(">IBHB", _read(framing)) == (
        other,
        0x80 | CTAPHID.ERROR,
        1,
        ERR.CHANNEL_BUSY,
    )
    release.set()
    while (reply := _read(framing))[4] == 0x80 | CTAPHID.KEEPALIVE:
        pass
    assert struct.unpack_from(">IBHB", reply) == (cid, 0x80 | CTAPHID.CBOR, 1, 0)


def test_cancel_reaches_the_engine(pki: TestAttestationPki) -> None:
    seen: list[bool] = []

    class _Waiting:
        capabilities = 0x05

        def handle(
            self, cmd: int, payload: bytes, *, keepalive: Any, cancelled: threading.Event
        ) -> bytes:
            seen.append(cancelled.wait(2.0))
            return bytes([ERR.KEEPALIVE_CANCEL])

    framing = CtapHidFraming(_Waiting())
    cid = _channel(framing)
    framing.feed(_report(cid, CTAPHID.CBOR, b"\x02"))
    framing.feed(_report(cid, CTAPHID.CANCEL))
    while (reply := _read(framing))[4] == 0x80 | CTAPHID.KEEPALIVE:
        pass
    assert seen == [True]
    assert struct.unpack_from(">IBHB", reply) == (cid, 0x80 | CTAPHID.CBOR, 1, ERR.KEEPALIVE_CANCEL)


def test_init_on_a_busy_channel_aborts_its_command(pki: TestAttestationPki) -> None:
    # CTAP 2.1, CTAPHID_INIT: INIT on an allocated channel aborts its transaction, so the host
    # that resynchronised never reads the old command's answer as the answer to its next one.
    seen: list[bool] = []

    class _Waiting:
        capabilities = 0x05

        def handle(
            self, cmd: int, payload: bytes, *, keepalive: Any, cancelled: threading.Event
        ) -> bytes:
            seen.append(cancelled.wait(2.0))
            return b"\x00stale answer"

    framing = CtapHidFraming(_Waiting())
    cid = _channel(framing)
    framing.feed(_report(cid, CTAPHID.CBOR, b"\x02"))
    framing.feed(_report(cid, CTAPHID.INIT, b"abcdefgh"))
    while (reply := _read(framing))[4] == 0x80 | CTAPHID.KEEPALIVE:
        pass
    assert reply[4] == 0x80 | CTAPHID.INIT and reply[7:15] == b"abcdefgh"
    assert not framing.busy
    deadline = time.monotonic() + 2.0
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == [True]  # the engine saw the cancel
    assert framing.read(0.3) is None  # and its answer went nowhere


def test_wrong_sequence_is_refused(pki: TestAttestationPki) -> None:
    _, framing = _key(pki)
    cid = _channel(framing)
    framing.feed(_report(cid, CTAPHID.PING, b"a" * 57, length=100))
    framing.feed(_cont(cid, 1, b"b" * 43))
    _assert_error(framing, cid, ERR.INVALID_SEQ)
    # the channel works again afterwards
    framing.feed(_report(cid, CTAPHID.PING, b"ok"))
    assert _read(framing)[7:9] == b"ok"


def test_unknown_channel_and_channel_zero_are_refused(pki: TestAttestationPki) -> None:
    _, framing = _key(pki)
    _channel(framing)
    framing.feed(_report(0x12345678, CTAPHID.PING, b"x"))
    _assert_error(framing, 0x12345678, ERR.INVALID_CHANNEL)
    framing.feed(_report(0, CTAPHID.INIT, b"12345678"))
    _assert_error(framing, 0, ERR.INVALID_CHANNEL)
    framing.feed(_report(BROADCAST, CTAPHID.PING, b"x"))
    _assert_error(framing, BROADCAST, ERR.INVALID_CHANNEL)


def test_oversize_and_bad_lengths_are_refused(pki: TestAttestationPki) -> None:
    _, framing = _key(pki)
    cid = _channel(framing)
    framing.feed(_report(cid, CTAPHID.CBOR, length=MAX_MESSAGE + 1))
    _assert_error(framing, cid, ERR.INVALID_LENGTH)
    framing.feed(_report(BROADCAST, CTAPHID.INIT, b"1234567", length=7))
    _assert_error(framing, BROADCAST, ERR.INVALID_LENGTH)
    framing.feed(_report(cid, CTAPHID.PING, b"x")[:40])
    _assert_error(framing, cid, ERR.INVALID_LENGTH)
    framing.feed(_report(cid, CTAPHID.CBOR))
    _assert_error(framing, cid, ERR.INVALID_LENGTH)
    framing.feed(_report(cid, CTAPHID.MSG, b"\x00"))
    _assert_error(framing, cid, ERR.INVALID_COMMAND)


def test_missing_continuation_times_out(pki: TestAttestationPki) -> None:
    _, framing = _key(pki)
    cid = _channel(framing)
    framing.feed(_report(cid, CTAPHID.PING, b"a" * 57, length=100))
    assert framing.read(0.2) is None
    report = framing.read(1.0)
    assert report is not None
    assert struct.unpack_from(">IBHB", report) == (cid, 0x80 | CTAPHID.ERROR, 1, ERR.TIMEOUT)


def test_garbage_never_raises(pki: TestAttestationPki) -> None:
    _, framing = _key(pki)
    for report in (
        b"",
        b"\xff",
        bytes(64),
        b"\xff" * 64,
        b"\x00\x00\x00\x01" + b"\x00" * 60,
        b"\x01" * 200,
    ):
        framing.feed(report)
    while framing.read(0.05) is not None:
        pass
    assert _device(framing).ping(b"alive") == b"alive"


def test_a_key_pulled_mid_response_raises(pki: TestAttestationPki) -> None:
    _, framing = _key(pki)
    device = CtapHidDevice(hid_descriptor(), InMemoryHidConnection(framing, fail_after=2))
    with pytest.raises(OSError, match="removed"):
        device.ping(b"z" * 200)


def test_a_pull_through_the_transport_guard_is_card_removed(pki: TestAttestationPki) -> None:
    from mie.errors import CardRemovedError
    from mie.transport.ctap import removal_errors

    _, framing = _key(pki)
    device = CtapHidDevice(hid_descriptor(), InMemoryHidConnection(framing, fail_after=2))
    with pytest.raises(CardRemovedError, match="removed") as e:
        with removal_errors("emulator"):
            device.ping(b"z" * 200)
    assert isinstance(e.value.__cause__, OSError)


def test_disconnect_drops_the_running_command_s_answer(pki: TestAttestationPki) -> None:
    release = threading.Event()
    seen: list[bool] = []

    class _Slow:
        capabilities = 0x05

        def handle(
            self, cmd: int, payload: bytes, *, keepalive: Any, cancelled: threading.Event
        ) -> bytes:
            seen.append(cancelled.wait(2.0))
            release.set()
            return b"\x00"

    framing = CtapHidFraming(_Slow())
    cid = _channel(framing)
    framing.feed(_report(cid, CTAPHID.CBOR, b"\x04"))
    framing.feed(_report(cid, CTAPHID.PING, b"a" * 57, length=100))  # busy: an error queued
    framing.disconnect()
    assert release.wait(2.0) and seen == [True]
    assert framing.read(0.2) is None  # neither the error nor the late answer reaches anyone
    assert not framing.busy
    framing.feed(_report(cid, CTAPHID.PING, b"ok"))
    assert _read(framing)[7:9] == b"ok"
