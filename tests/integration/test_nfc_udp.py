"""UdpTypeATarget against nfcpy's own reader side (the ``udp`` driver), in one process: the badge
is activated as a Type 4A tag and answers DESFire commands through ISO-DEP. No daemon needed.

nfcpy waits 30 ms for the ATS; the target answers it at once, and activation is retried once
(a loaded machine can miss the window).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mie.emulation.desfire import EmulatedDesfire
from mie.emulation.desfire_state import BadgeKey, BadgeState, KeyType, personalise
from mie.emulation.nfc_target import UdpTypeATarget

nfc = pytest.importorskip("nfc")
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
            return target._datagram(b"106A " + hex_frame.encode())

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
        assert target._datagram(b"106A zz") is None
        assert target._datagram(b"212F 0600ffff0100") is None
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
