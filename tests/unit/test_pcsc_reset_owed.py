"""A PIN verified inside ``transaction(reset=True)`` never outlives a connection that times out,
even with ``reset_on_close=False`` (review of issue 7 item 5). pcscd cannot make a call block on
demand at the exact APDU, so the PC/SC edge is a scripted fake here; tests/integration covers
the real stall through pcscd."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.harness import require_module

scard = require_module("smartcard.scard", "pyscard (mie[pcsc]) is the PC/SC edge faked here")

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


def test_an_exchange_after_our_own_reset_reconnects_instead_of_raising(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # pcscd flags every handle after a reset, ours included: the first transmit after the
    # transaction we ended with a reset answers SCARD_W_RESET_CARD (the status query that checks
    # no PIN is left verified). Nothing of this connection's state is lost: reconnect, resend.
    fake = _FakePcsc(monkeypatch)
    flagged: list[bool] = []
    reconnects: list[int] = []
    sent: list[list[int]] = []

    def end(h: int, disposition: int) -> int:
        flagged.append(disposition == scard.SCARD_RESET_CARD)
        return int(scard.SCARD_S_SUCCESS)

    def transmit(h: int, protocol: int, apdu: list[int]) -> tuple[int, list[int]]:
        if flagged and flagged[-1]:
            flagged[-1] = False
            return int(scard.SCARD_W_RESET_CARD), []
        sent.append(apdu)
        return int(scard.SCARD_S_SUCCESS), [0x63, 0xC3]

    def reconnect(h: int, mode: int, protocols: int, init: int) -> tuple[int, int]:
        reconnects.append(init)
        return int(scard.SCARD_S_SUCCESS), int(scard.SCARD_PROTOCOL_T0)

    monkeypatch.setattr(scard, "SCardEndTransaction", end)
    monkeypatch.setattr(scard, "SCardTransmit", transmit)
    monkeypatch.setattr(scard, "SCardReconnect", reconnect)
    with PcscConnection(READER) as connection:
        with connection.transaction(reset=True):
            connection.send_and_receive(bytes.fromhex("0020000108"))
        assert connection.send_and_receive(bytes.fromhex("00200001")) == (b"", 0x63C3)
    assert reconnects == [scard.SCARD_LEAVE_CARD]
    assert sent[-1] == [0x00, 0x20, 0x00, 0x01]
    assert fake.disconnected
