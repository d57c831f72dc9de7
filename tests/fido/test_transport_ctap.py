"""mie.transport.ctap in process: the Unix-socket HID host and connection (python-fido2's own
CtapHidDevice over SOCK_SEQPACKET), open_ctap_device's specs, list_ctap_devices, and every pull
raising card_removed."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from fido2.ctap import CtapError
from fido2.ctap2.base import Ctap2
from fido2.hid import CTAPHID, ConnectionFailure, CtapHidDevice
from fido2.hid.base import CtapHidConnection, HidDescriptor

from mie.emulation.ctap2 import EmulatedAuthenticator
from mie.emulation.ctaphid import CtapHidFraming, hid_descriptor
from mie.emulation.fido_pki import TestAttestationPki
from mie.emulation.hid_socket import HidSocketHost
from mie.errors import CardRemovedError, ErrorCode, NoCardError, TransportTimeoutError
from mie.transport import ctap as transport
from mie.transport.ctap import (
    KeyListing,
    KeySpecError,
    SmartCardCtapDevice,
    SocketHidConnection,
    list_ctap_devices,
    open_ctap_device,
    removal_errors,
)

RP = {"id": "example.com", "name": "Example"}
USER = {"id": b"user-0001", "name": "alice", "displayName": "Alice"}
CDH = hashlib.sha256(b"client data").digest()
ES256: list[Mapping[str, Any]] = [{"type": "public-key", "alg": -7}]


@pytest.fixture(scope="module")
def pki() -> TestAttestationPki:
    return TestAttestationPki.generate()


@pytest.fixture
def socket_path() -> Iterator[Path]:
    # AF_UNIX paths are limited to 107 bytes: pytest's tmp_path can be longer.
    directory = Path(tempfile.mkdtemp(prefix="mie-hid-"))
    path = directory / "key.sock"
    yield path
    path.unlink(missing_ok=True)
    directory.rmdir()


@pytest.fixture
def host(pki: TestAttestationPki, socket_path: Path) -> Iterator[HidSocketHost]:
    engine = EmulatedAuthenticator(pki=pki)
    with HidSocketHost(CtapHidFraming(engine), socket_path) as serving:
        yield serving


def test_socket_is_private_and_removed_when_the_host_stops(
    pki: TestAttestationPki, socket_path: Path
) -> None:
    with HidSocketHost(CtapHidFraming(EmulatedAuthenticator(pki=pki)), socket_path):
        mode = socket_path.lstat().st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
        assert [p.name for p in socket_path.parent.iterdir()] == ["key.sock"]
    assert not socket_path.exists()


def test_a_stale_socket_is_replaced_and_a_live_one_or_a_file_refused(
    pki: TestAttestationPki, socket_path: Path
) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    stale.bind(str(socket_path))
    stale.close()  # the path stays, nobody listens: a dead emulator's
    framing = CtapHidFraming(EmulatedAuthenticator(pki=pki))
    with HidSocketHost(framing, socket_path):
        with pytest.raises(FileExistsError, match="Another emulator"):
            HidSocketHost(framing, socket_path)
    socket_path.write_text("not a socket")
    with pytest.raises(FileExistsError, match="not a socket"):
        HidSocketHost(framing, socket_path)


def test_a_live_socket_with_a_full_backlog_is_not_taken_for_a_stale_one(
    pki: TestAttestationPki, socket_path: Path
) -> None:
    # A busy emulator (its one-client backlog full) answers a connect with EAGAIN, not
    # ECONNREFUSED: its path must stay, not be unlinked and served by a second emulator.
    busy = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    busy.bind(str(socket_path))
    busy.listen(1)
    waiting: list[socket.socket] = []
    try:
        while True:
            client = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            client.setblocking(False)
            waiting.append(client)
            try:
                client.connect(str(socket_path))
            except BlockingIOError:
                break
            assert len(waiting) < 16, "the backlog never filled"
        framing = CtapHidFraming(EmulatedAuthenticator(pki=pki))
        with pytest.raises(FileExistsError, match="Another emulator"):
            HidSocketHost(framing, socket_path)
        assert stat.S_ISSOCK(socket_path.lstat().st_mode)
    finally:
        for client in waiting:
            client.close()
        busy.close()


def test_fido2_hid_device_over_the_socket_makes_and_gets(host: HidSocketHost) -> None:
    device = CtapHidDevice(hid_descriptor(str(host.path)), SocketHidConnection(host.path))
    ctap = Ctap2(device, strict_cbor=True)
    made = ctap.make_credential(CDH, RP, USER, ES256)
    data = made.auth_data.credential_data
    assert data is not None
    got = ctap.get_assertion("example.com", CDH, [{"type": "public-key", "id": data.credential_id}])
    got.verify(CDH, data.public_key)
    assert device.ping(b"x" * 300) == b"x" * 300
    device.close()


def test_open_ctap_device_socket_spec_and_a_second_client_after_the_first(
    host: HidSocketHost,
) -> None:
    first = open_ctap_device(f"socket:{host.path}")
    assert Ctap2(first).get_info().aaguid
    first.close()
    second = open_ctap_device(f"socket:{host.path}")
    assert "FIDO_2_1" in Ctap2(second).get_info().versions
    second.close()


def test_nothing_at_the_socket_is_no_card(socket_path: Path) -> None:
    with pytest.raises(NoCardError, match="No emulated FIDO key"):
        open_ctap_device(f"socket:{socket_path}")


def test_the_host_stopping_mid_operation_is_card_removed(host: HidSocketHost) -> None:
    device = open_ctap_device(f"socket:{host.path}")
    Ctap2(device).get_info()
    host.stop()
    host.close()
    with pytest.raises(CardRemovedError, match="removed") as e:
        Ctap2(device).get_info()
    assert e.value.code == ErrorCode.CARD_REMOVED


def test_fail_after_pulls_the_key_mid_make_credential(
    pki: TestAttestationPki, socket_path: Path
) -> None:
    engine = EmulatedAuthenticator(pki=pki)
    with HidSocketHost(CtapHidFraming(engine), socket_path) as serving:
        device = open_ctap_device(f"socket:{socket_path}")
        ctap = Ctap2(device)
        serving.fail_after = serving.received + 2  # the request has more reports than that
        with pytest.raises(CardRemovedError):
            ctap.make_credential(
                CDH, RP, USER, ES256, exclude_list=[{"type": "public-key", "id": bytes(100)}]
            )
        assert serving.gone.is_set()
    assert engine.credentials == ()


def test_a_silent_key_is_a_timeout(socket_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(socket_path))
    listener.listen(1)
    try:
        connection = SocketHidConnection(socket_path, timeout=0.2)
        with pytest.raises(TransportTimeoutError, match="sent nothing"):
            connection.read_packet()
        connection.close()
        with pytest.raises(CardRemovedError, match="closed"):
            connection.read_packet()
    finally:
        listener.close()


def test_a_report_of_the_wrong_size_is_refused(socket_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(socket_path))
    listener.listen(1)
    try:
        connection = SocketHidConnection(socket_path, timeout=1.0)
        peer, _ = listener.accept()
        peer.send(bytes(65))
        with pytest.raises(CardRemovedError, match="65-byte"):
            connection.read_packet()
        with pytest.raises(ValueError, match="64 bytes"):
            connection.write_packet(bytes(10))
        peer.close()
        connection.close()
    finally:
        listener.close()


class _SilentNode(CtapHidConnection):
    """A hidraw node (a file descriptor, as python-fido2's Linux backend has) that never
    answers: a key hung while plugged."""

    def __init__(self) -> None:
        self.handle, self._peer = os.pipe()
        self.closed = False

    def write_packet(self, data: bytes) -> None:
        pass

    def read_packet(self) -> bytes:
        return os.read(self.handle, 64)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.handle)
            os.close(self._peer)


def test_a_silent_hid_node_is_a_timeout_not_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    import fido2.hid

    node = _SilentNode()
    descriptor = HidDescriptor("/dev/hidraw-test", 0x1050, 0x0407, 64, 64, "Silent key", None)
    monkeypatch.setattr(fido2.hid, "get_descriptor", lambda path: descriptor)
    monkeypatch.setattr(fido2.hid, "open_connection", lambda d: node)
    monkeypatch.setattr(transport, "HID_SILENCE_S", 0.3)
    outcome: list[BaseException] = []

    def open_it() -> None:
        try:
            open_ctap_device("hid:/dev/hidraw-test")
        except BaseException as e:
            outcome.append(e)

    worker = threading.Thread(target=open_it, daemon=True)
    worker.start()
    worker.join(5.0)
    if worker.is_alive():  # python-fido2's bare os.read: free the thread before failing
        os.write(node._peer, bytes(64))
        worker.join(5.0)
        node.close()
        pytest.fail("opening a silent HID key hung")
    assert len(outcome) == 1 and isinstance(outcome[0], TransportTimeoutError)
    assert "sent nothing for 0.3 s" in str(outcome[0]) and node.closed


def test_a_hid_node_that_answers_is_read_through_the_deadline() -> None:
    node = _SilentNode()
    try:
        connection = transport._DeadlineHidConnection(node, "key", 1.0)
        os.write(node._peer, b"\x01" * 64)
        assert connection.read_packet() == b"\x01" * 64
    finally:
        node.close()


def test_open_ctap_device_emulator_spec() -> None:
    device = open_ctap_device("emulator")
    ctap = Ctap2(device, strict_cbor=True)
    made = ctap.make_credential(CDH, RP, USER, ES256)
    assert made.auth_data.credential_data is not None
    with pytest.raises(CtapError) as e:
        device.call(CTAPHID.MSG, b"\x00\x03\x00\x00")
    assert e.value.code == CtapError.ERR.INVALID_COMMAND
    device.close()


@pytest.mark.parametrize(
    "spec", ["", "socket", "socket:", "hid", "pcsc:", "usb:/dev/hidraw0", "/dev/hidraw0", "x:y"]
)
def test_open_ctap_device_refuses_unknown_specs(spec: str) -> None:
    with pytest.raises(KeySpecError, match="expected") as e:
        open_ctap_device(spec)
    assert e.value.code == ErrorCode.USAGE and isinstance(e.value, ValueError)


def test_a_missing_hid_node_is_no_card(tmp_path: Path) -> None:
    with pytest.raises(NoCardError, match="No FIDO key"):
        open_ctap_device(f"hid:{tmp_path / 'hidraw9'}")


@pytest.mark.parametrize(
    "failure", [OSError("read failed"), ConnectionFailure("Wrong channel"), BrokenPipeError()]
)
def test_removal_errors_maps_pulls_to_card_removed(failure: Exception) -> None:
    with pytest.raises(CardRemovedError, match="was removed") as e:
        with removal_errors("key"):
            raise failure
    assert e.value.__cause__ is failure


def test_removal_errors_lets_mie_errors_and_ctap_errors_through() -> None:
    timeout = TransportTimeoutError("slow")
    with pytest.raises(TransportTimeoutError) as e:
        with removal_errors("key"):
            raise timeout
    assert e.value is timeout
    with pytest.raises(CtapError):
        with removal_errors("key"):
            raise CtapError(CtapError.ERR.PIN_INVALID)


def test_list_ctap_devices_finds_hid_keys_and_fido_cards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        transport, "_list_hid", lambda: [KeyListing("hid:/dev/hidraw3", "hid", "Key")]
    )
    monkeypatch.setattr(transport, "_list_pcsc", lambda: [])
    assert list_ctap_devices() == [KeyListing("hid:/dev/hidraw3", "hid", "Key")]
    assert list_ctap_devices()[0].to_json() == {
        "spec": "hid:/dev/hidraw3",
        "transport": "hid",
        "name": "Key",
    }


def test_list_ctap_devices_without_hidraw_or_pcscd_is_empty_not_an_error() -> None:
    # This container has no /dev/hidraw*; pcscd may or may not run: either way no exception.
    assert all(isinstance(listing, KeyListing) for listing in list_ctap_devices())


def test_a_host_serves_again_after_its_client_leaves_mid_command(
    pki: TestAttestationPki, socket_path: Path
) -> None:
    from mie.emulation.ctap2 import Touch  # E2: the engine waits for the touch

    engine = EmulatedAuthenticator(pki=pki, touch=Touch.never())
    with HidSocketHost(CtapHidFraming(engine), socket_path):
        device = open_ctap_device(f"socket:{socket_path}")
        ctap = Ctap2(device)
        event = threading.Event()
        threading.Timer(0.3, event.set).start()
        with pytest.raises(CtapError) as e:
            ctap.make_credential(CDH, RP, USER, ES256, event=event)
        assert e.value.code == CtapError.ERR.KEEPALIVE_CANCEL
        device.close()
        again = open_ctap_device(f"socket:{socket_path}")
        assert Ctap2(again).get_info().aaguid
        again.close()


def test_open_ctap_device_emulator_with_a_state_file_keeps_its_credentials(
    tmp_path: Path,
) -> None:
    state = tmp_path / "key.json"
    ctap = Ctap2(open_ctap_device(f"emulator:{state}"))
    made = ctap.make_credential(CDH, RP, USER, ES256, options={"rk": True})
    data = made.auth_data.credential_data
    assert data is not None and state.exists()
    again = Ctap2(open_ctap_device(f"emulator:{state}"))
    got = again.get_assertion("example.com", CDH)  # discoverable: no allow list
    got.verify(CDH, data.public_key)
    assert got.credential is not None and got.credential["id"] == data.credential_id


def test_a_fido2_authenticator_on_an_opened_key_reports_its_transport(
    pki: TestAttestationPki, host: HidSocketHost
) -> None:
    # open_ctap_device's devices hide python-fido2's behind the pull guard: the transport is
    # still known (USB for HID reports, the card's for a FIDO applet).
    from mie.core.connection import Transport
    from mie.emulation.base import EmulatedConnection
    from mie.emulation.fido_applet import EmulatedFidoApplet
    from mie.fido.authenticator import Fido2Authenticator

    for spec in ("emulator", f"socket:{host.path}"):
        device = open_ctap_device(spec)
        try:
            assert Fido2Authenticator(device).info.transport is Transport.USB
        finally:
            device.close()
    card = SmartCardCtapDevice(
        EmulatedConnection(EmulatedFidoApplet(EmulatedAuthenticator(pki=pki))), name="reader"
    )
    assert Fido2Authenticator(card).info.transport is Transport.CONTACTLESS


def test_list_ctap_devices_lists_the_readers_whose_fido_applet_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mie.transport.pcsc as pcsc

    answers = {"Key 9000": 0x9000, "Key 61xx": 0x6108, "Card 6A82": 0x6A82}

    class _Reader:
        def __init__(self, name: str) -> None:
            self.name, self.card_present = name, True

    class _Connection:
        def __init__(self, reader: str, *, reset_on_close: bool = True) -> None:
            assert reset_on_close is False
            self.reader = reader

        def __enter__(self) -> _Connection:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
            assert apdu == transport.SELECT_FIDO
            return b"", answers[self.reader]

    monkeypatch.setattr(transport, "_list_hid", lambda: [])
    monkeypatch.setattr(pcsc, "list_readers", lambda: [_Reader(n) for n in answers])
    monkeypatch.setattr(pcsc, "PcscConnection", _Connection)
    assert [k.spec for k in list_ctap_devices()] == ["pcsc:Key 9000", "pcsc:Key 61xx"]


def test_a_card_answering_6100_with_no_data_for_ever_is_refused_not_looped_on() -> None:
    # L1 (L2's fuzz review): GET RESPONSE was asked again for as long as the card said 61xx; an
    # answer with no data never grew the response to its bound, so the loop had no end.
    from mie.core.connection import SmartCardConnection
    from mie.errors import CtapStatusError
    from mie.transport.ctap import SmartCardCtapDevice

    class _Empty61(SmartCardConnection):
        sent = 0

        @property
        def atr(self) -> bytes | None:
            return None

        def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
            self.sent += 1
            if self.sent > 10_000:  # the test's own bound: fail, not hang, if the loop is back
                raise AssertionError("GET RESPONSE asked for ever")
            return b"", 0x6100

    card = _Empty61()
    with pytest.raises(CtapStatusError, match="GET RESPONSE answered 6100 with no data"):
        SmartCardCtapDevice(card, name="reader")
    assert card.sent == 2
