"""UdpTypeATarget against nfcpy's own reader side (the ``udp`` driver), in one process: the badge
is activated as a Type 4A tag and answers DESFire commands through ISO-DEP. No daemon needed.

nfcpy waits 30 ms for the ATS; the target answers it at once, and activation is retried once
(a loaded machine can miss the window).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mie.core.channel import CommMode
from mie.core.connection import Transport, transport_from_atr
from mie.core.errors import NoCardError, TransportError
from mie.desfire.session import DesfireSession
from mie.emulation.desfire import EmulatedDesfire
from mie.emulation.desfire_state import BadgeKey, BadgeState, KeyType, personalise
from mie.emulation.nfc_target import UdpTypeATarget
from tests.harness import require_module

nfc = require_module("nfc", "nfcpy (mie[nfc]) is the reader side")
from nfc.clf import RemoteTarget  # noqa: E402
from nfc.tag.tt4 import Type4ATag  # noqa: E402

h = bytes.fromhex
UID = h("04958CAA5C5E80")
AID = h("494DF0")
KEYS = [bytes([i]) * 16 for i in range(5)]


def badge(*, random_uid: bool = False) -> EmulatedDesfire:
    state = BadgeState(UID, BadgeKey(bytes(16), 1, KeyType.AES))
    personalise(state, aid=AID, keys=KEYS, record=bytes(range(176)), random_uid=random_uid)
    return EmulatedDesfire(state)


@pytest.fixture
def target() -> Iterator[UdpTypeATarget]:
    with UdpTypeATarget(badge(), port=0) as served:
        yield served


def activate(port: int) -> tuple[Any, Type4ATag]:
    clf = nfc.ContactlessFrontend(f"udp:127.0.0.1:{port}")
    for _ in range(2):
        found = clf.sense(RemoteTarget("106A"), iterations=3, interval=0.05)
        if found is not None:
            tag = nfc.tag.activate(clf, found)
            if tag is not None:
                return clf, tag
    clf.close()
    raise AssertionError("the target was not activated")


def test_activation_as_type_4a_with_the_uid(target: UdpTypeATarget) -> None:
    clf, tag = activate(target.port)
    try:
        assert isinstance(tag, Type4ATag)
        assert bytes(tag.identifier) == UID
        version = bytes(tag.transceive(h("9060000000")))
        assert version[-2:] == h("91AF") and version[0] == 0x04
    finally:
        clf.close()


class EchoBadge(EmulatedDesfire):
    """A badge that records each APDU and answers 300 bytes."""

    answer = bytes(range(256)) + bytes(44)

    def __init__(self) -> None:
        super().__init__(BadgeState(UID, BadgeKey(bytes(16), 1, KeyType.AES)))
        self.apdus: list[bytes] = []

    def process(self, apdu: bytes) -> bytes:
        self.apdus.append(bytes(apdu))
        return self.answer


def test_long_command_and_response_are_chained() -> None:
    # A 300-byte command (five 61-byte I-blocks) and a 300-byte answer (two I-blocks).
    card = EchoBadge()
    with UdpTypeATarget(card, port=0) as target:
        clf, tag = activate(target.port)
        try:
            command = bytes([0x90, 0x3D, 0, 0]) + bytes(range(256)) + bytes(40)
            assert bytes(tag.transceive(command)) == EchoBadge.answer
            assert card.apdus == [command]
            assert tag.is_present  # R(NAK) presence check
        finally:
            clf.close()


def test_frames_deselect_and_halt() -> None:
    target = UdpTypeATarget(badge(), port=0)
    try:

        def frame(hex_frame: str) -> bytes | None:
            return target.link.answer(b"106A " + hex_frame.encode())

        assert frame("26") == h("4403")
        cl1 = h("88") + UID[:3]
        assert frame("9320") == cl1 + bytes([cl1[0] ^ cl1[1] ^ cl1[2] ^ cl1[3]])
        assert frame("9370" + (cl1 + bytes([cl1[0] ^ cl1[1] ^ cl1[2] ^ cl1[3]])).hex()) == h("24")
        cl2 = UID[3:]
        bcc2 = bytes([cl2[0] ^ cl2[1] ^ cl2[2] ^ cl2[3]])
        assert frame("9520") == cl2 + bcc2
        assert frame("9570" + (cl2 + bcc2).hex()) == h("20")
        assert frame("E080") == h("067577B10280")
        assert frame("02" + "905A000003494DF000") == h("029100")
        assert frame("B3") == h("A2")  # presence check answered with the current block
        assert (frame("039060000000") or b"")[:1] == h("03")
        assert frame("C2") == h("C2")
        assert frame("26") is None  # halted: only WUPA wakes it
        assert frame("52") == h("4403")
        assert target.link.answer(b"106A zz") is None
        assert target.link.answer(b"212F 0600ffff0100") is None
    finally:
        target.stop()


def test_rfoff_then_a_new_random_uid() -> None:
    with UdpTypeATarget(badge(random_uid=True), port=0) as target:
        clf, tag = activate(target.port)
        first = bytes(tag.identifier)
        clf.close()  # RFOFF
        clf, tag = activate(target.port)
        second = bytes(tag.identifier)
        clf.close()
    assert len(first) == len(second) == 4
    assert first[0] == second[0] == 0x08
    assert first != second


# --- NfcConnection (mie.transport.nfc) and mie emulate desfire --nfc ---------------------------


def test_nfc_connection_runs_a_desfire_session(target: UdpTypeATarget) -> None:
    from mie.transport.nfc import NfcConnection

    with NfcConnection(f"udp:127.0.0.1:{target.port}", wait=3) as connection:
        assert connection.transport is Transport.CONTACTLESS
        assert transport_from_atr(connection.atr) is Transport.CONTACTLESS
        assert connection.send_and_receive(h("FFCA000000")) == (UID, 0x9000)
        session = DesfireSession(connection)
        assert session.get_version().uid == UID
        session.select_application(AID)
        session.authenticate_ev2_first(1, KEYS[1])
        assert session.get_card_uid() == UID
        session.authenticate_ev2_non_first(2, KEYS[2])
        assert session.read_data(1, mode=CommMode.FULL) == bytes(range(176))


def test_nfc_connection_without_a_card_is_no_card() -> None:
    from mie.transport.nfc import NfcConnection

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(NoCardError):
            NfcConnection(f"udp:127.0.0.1:{port}", wait=0.5)
        assert time.monotonic() - started < 10


def test_nfc_connection_card_gone_is_typed() -> None:
    from mie.transport.nfc import NfcConnection

    target = UdpTypeATarget(badge(), port=0).start()
    with NfcConnection(f"udp:127.0.0.1:{target.port}", wait=3) as connection:
        target.stop()
        with pytest.raises(TransportError):
            connection.send_and_receive(h("9060000000"))


def test_emulate_desfire_over_nfc(tmp_path: Path) -> None:
    from mie.transport.nfc import NfcConnection

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state = tmp_path / "badge.json"
    command = [sys.executable, "-m", "mie", "emulate", "desfire", "--nfc", f"127.0.0.1:{port}"]
    command += ["--state", str(state), "--uid", UID.hex(), "--product", "ev2"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        assert "Emulating desfire" in process.stderr.readline()
        with NfcConnection(f"udp:127.0.0.1:{port}", wait=5) as connection:
            version = DesfireSession(connection).get_version()
        assert (version.uid, version.product) == (UID, "EV2")
        assert state.stat().st_mode & 0o777 == 0o600
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_emulate_desfire_over_nfc_fail_after(tmp_path: Path) -> None:
    # --fail-after N over NFC: N APDUs answered (GetVersion: 3 frames), then no answer and the
    # emulator exits 1; the state file is still the badge.
    from mie.transport.nfc import NfcConnection

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state = tmp_path / "badge.json"
    command = [sys.executable, "-m", "mie", "emulate", "desfire", "--nfc", f"127.0.0.1:{port}"]
    command += ["--state", str(state), "--uid", UID.hex(), "--fail-after", "3"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        assert "Emulating desfire" in process.stderr.readline()
        with NfcConnection(f"udp:127.0.0.1:{port}", wait=5) as connection:
            session = DesfireSession(connection)
            assert session.get_version().uid == UID
            with pytest.raises(TransportError):
                session.get_version()
        assert process.wait(timeout=10) == 1
        assert "--fail-after: the badge answered 3 APDUs" in process.stderr.read()
        assert state.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def test_a_gone_card_stops_the_link() -> None:
    card = badge()
    card.faults.fail_after = 0
    target = UdpTypeATarget(card, port=0)
    try:
        for frame in ("26", "9320"):
            assert target.link.answer(b"106A " + frame.encode()) is not None
        cl1 = h("88") + UID[:3]
        bcc1 = bytes([cl1[0] ^ cl1[1] ^ cl1[2] ^ cl1[3]])
        cl2 = UID[3:]
        bcc2 = bytes([cl2[0] ^ cl2[1] ^ cl2[2] ^ cl2[3]])
        for frame in ("9370" + (cl1 + bcc1).hex(), "9520", "9570" + (cl2 + bcc2).hex(), "E080"):
            assert target.link.answer(b"106A " + frame.encode()) is not None
        assert target.link.answer(b"106A 029060000000") is None
        assert target.gone.is_set()
        assert target.link.answer(b"106A 26") is None  # gone for good
    finally:
        target.stop()


@pytest.mark.parametrize(
    "argv",
    [
        ["emulate", "desfire", "--pin", "1234"],
        ["emulate", "desfire", "--identity", "rpps=10000000001"],
        ["emulate", "desfire", "--uid", "0102"],
        ["emulate", "desfire", "--nfc", "nowhere"],
        ["emulate", "cps3", "--state", "x.json"],
        ["emulate", "iso7816", "--product", "ev1"],
        ["emulate", "iso7816", "--fail-after", "3"],
        ["emulate", "desfire", "--fail-after", "-1"],
    ],
)
def test_emulate_desfire_bad_usage_is_refused(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from mie._cli.__main__ import run

    assert run(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("mie: error: ")


def test_emulate_desfire_state_file_not_a_badge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mie._cli.__main__ import run

    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert run(["emulate", "desfire", "--state", str(bad), "--nfc", "127.0.0.1:1"]) == 2
    assert "--state" in capsys.readouterr().err
