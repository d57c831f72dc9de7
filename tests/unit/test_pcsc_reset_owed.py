"""A PIN verified inside ``transaction(reset=True)`` never outlives a connection that times out,
even with ``reset_on_close=False`` (review of issue 7 item 5). pcscd cannot make a call block on
demand at the exact APDU, so the PC/SC edge is a scripted fake here; tests/integration covers
the real stall through pcscd."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

scard = pytest.importorskip("smartcard.scard")

from mie.errors import TransportTimeoutError  # noqa: E402
from mie.transport.pcsc import PcscConnection  # noqa: E402

READER = "Fake Reader 00 00"
ATR = [0x3B, 0x00]


class _FakePcsc:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.release = threading.Event()
        self.disconnected: list[int] = []
        self.stall = False
        ok = scard.SCARD_S_SUCCESS
        present = scard.SCARD_STATE_PRESENT
        fakes: dict[str, Any] = {
            "SCardEstablishContext": lambda scope: (ok, 1),
            "SCardReleaseContext": lambda ctx: ok,
            "SCardListReaders": lambda ctx, groups: (ok, [READER]),
            "SCardGetStatusChange": lambda ctx, ms, states: (
                ok,
                [(READER, present, ATR)],
            ),
            "SCardConnect": lambda ctx, r, mode, p: (ok, 7, scard.SCARD_PROTOCOL_T0),
            "SCardBeginTransaction": lambda h: ok,
            "SCardStatus": lambda h: (ok, READER, present, scard.SCARD_PROTOCOL_T0, ATR),
            "SCardEndTransaction": lambda h, d: ok,
            "SCardCancel": lambda ctx: ok,
            "SCardTransmit": self._transmit,
            "SCardDisconnect": self._disconnect,
        }
        for name, fake in fakes.items():
            monkeypatch.setattr(scard, name, fake)

    def _transmit(self, h: int, protocol: int, apdu: list[int]) -> tuple[int, list[int]]:
        if self.stall:
            self.release.wait(30)
        return scard.SCARD_S_SUCCESS, [0x90, 0x00]

    def _disconnect(self, h: int, disposition: int) -> int:
        self.disconnected.append(disposition)
        return scard.SCARD_S_SUCCESS


def test_timeout_inside_a_resetting_transaction_resets_the_card(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _FakePcsc(monkeypatch)
    connection = PcscConnection(READER, reset_on_close=False, timeout=0.2)
    with pytest.raises(TransportTimeoutError), connection.transaction(reset=True):
        connection.send_and_receive(bytes.fromhex("0020000008"))  # the VERIFY went through
        fake.stall = True
        connection.send_and_receive(bytes.fromhex("0088000020"))  # the card goes silent
    fake.release.set()  # the card answers at last: the reaper releases the handles now
    deadline = time.monotonic() + 10
    while not fake.disconnected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.disconnected == [scard.SCARD_RESET_CARD]


def test_a_normal_session_without_reset_on_close_leaves_the_card(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _FakePcsc(monkeypatch)
    with PcscConnection(READER, reset_on_close=False) as connection:
        with connection.transaction(reset=True):
            connection.send_and_receive(bytes.fromhex("0020000008"))
        connection.send_and_receive(bytes.fromhex("00A4000C00"))
    assert fake.disconnected == [scard.SCARD_LEAVE_CARD]


def test_a_resetting_transaction_nested_in_a_plain_one_resets_when_the_outer_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _FakePcsc(monkeypatch)
    ended: list[int] = []

    def end(h: int, disposition: int) -> int:
        ended.append(disposition)
        return int(scard.SCARD_S_SUCCESS)

    monkeypatch.setattr(scard, "SCardEndTransaction", end)
    with PcscConnection(READER) as connection:
        with connection.transaction(), connection.transaction(reset=True):
            connection.send_and_receive(bytes.fromhex("0020000008"))
        assert ended == [scard.SCARD_RESET_CARD]
    assert fake.disconnected == [scard.SCARD_LEAVE_CARD]  # nothing sent since that reset
