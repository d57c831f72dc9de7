"""Connections: one wrapper base forwards transactions (a recorder or counter must not leave a
PIN verified), nested transactions owe their reset to the outer one, and the transport comes
from the ATR."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mie.core.connection import (
    SmartCardConnection,
    SmartCardConnectionWrapper,
    Transport,
)
from mie.core.errors import CardRemovedError
from mie.emulation import EmulatedConnection, demo_card
from mie.emulation.base import EmulatedCard
from mie.emulation.cpx import CPS3, CPS3_CL, IasEccCard, build_ias_ecc_card
from mie.emulation.testpki import TestPki, parse_identity
from mie.transport.replay import RecordingConnection, ReplayConnection, load_vector
from tests.cards.faults import CorruptingConnection, FailingConnection
from tests.unit.fakes import CountingConnection, h

ROOT = Path(__file__).resolve().parents[2]
SELECT_PKCS15 = h("00 A4 04 0C 0D E8 28 BD 08 0F 80 25 00 00 01 FF 00 10")
VERIFY_1234 = h("00 20 00 01 08 31 32 33 34 FF FF FF FF")
STATUS_QUERY = h("00 20 00 01")

Wrap = Callable[[SmartCardConnection], SmartCardConnectionWrapper]
WRAPPERS: list[tuple[str, Wrap]] = [
    ("recording", RecordingConnection),
    ("counting", CountingConnection),
    ("corrupting", lambda inner: CorruptingConnection(inner, lambda c, d, s: None)),
    ("failing-never", lambda inner: FailingConnection(inner, at=1000, error=RuntimeError())),
]


@pytest.fixture(scope="module")
def cps3(test_pki_dir: Path) -> IasEccCard:
    pki = TestPki.load(test_pki_dir)
    return build_ias_ecc_card(CPS3, parse_identity(None, "CPS"), pki, pin="1234")


def _status(connection: SmartCardConnection) -> int:
    assert connection.send_and_receive(SELECT_PKCS15)[1] == 0x9000
    return connection.send_and_receive(STATUS_QUERY)[1]


@pytest.mark.parametrize(("name", "wrap"), WRAPPERS, ids=[n for n, _ in WRAPPERS])
def test_a_pin_verified_in_a_resetting_transaction_through_a_wrapper_is_not_left_verified(
    cps3: IasEccCard, name: str, wrap: Wrap
) -> None:
    # Issue 8: RecordingConnection fell back to the base's no-op transaction(), so a login
    # agent keeping its connection open kept a verified card.
    wrapped = wrap(EmulatedConnection(cps3))
    with wrapped.transaction(reset=True):
        assert _status(wrapped) == 0x63C3
        assert wrapped.send_and_receive(VERIFY_1234)[1] == 0x9000
        assert wrapped.send_and_receive(STATUS_QUERY)[1] == 0x9000
    assert _status(wrapped) == 0x63C3


class _ClosingSpy(EmulatedConnection):
    closed = 0

    def close(self) -> None:
        self.closed += 1
        super().close()


@pytest.mark.parametrize(("name", "wrap"), WRAPPERS, ids=[n for n, _ in WRAPPERS])
def test_a_wrapper_forwards_atr_transport_and_close(name: str, wrap: Wrap) -> None:
    card = demo_card()
    inner = _ClosingSpy(card, Transport.CONTACTLESS)
    wrapped = wrap(inner)
    assert wrapped.atr == card.atr
    assert wrapped.transport is Transport.CONTACTLESS
    assert wrapped.connection is inner and wrapped.inner is inner
    with wrapped:
        assert inner.closed == 0
    assert inner.closed == 1


def test_the_recorder_records_through_a_transaction(cps3: IasEccCard) -> None:
    recorder = RecordingConnection(EmulatedConnection(cps3))
    with recorder.transaction(reset=True):
        recorder.send_and_receive(SELECT_PKCS15)
        recorder.send_and_receive(VERIFY_1234)
    assert [e.command for e in recorder.exchanges] == [
        SELECT_PKCS15.hex(),
        "0020000108" + "**" * 8,
    ]


def test_a_failing_connection_fails_at_the_chosen_exchange_and_runs_before_once() -> None:
    card = demo_card()
    calls: list[str] = []
    failing = FailingConnection(
        EmulatedConnection(card),
        at=1,
        error=CardRemovedError("The card was removed"),
        before=lambda: calls.append("before"),
    )
    assert failing.send_and_receive(h("00 A4 04 00 08 F0 4D 49 45 44 45 4D 4F"))[1] == 0x611A
    for _ in range(2):
        with pytest.raises(CardRemovedError):
            failing.send_and_receive(STATUS_QUERY)
    assert calls == ["before"]
    assert len(failing.commands) == 1


def test_a_nested_resetting_transaction_resets_when_the_outer_one_ends(cps3: IasEccCard) -> None:
    # Decision D1, as over PC/SC: the emulator used to reset at the inner exit.
    connection = EmulatedConnection(cps3)
    with connection.transaction():
        with connection.transaction(reset=True):
            assert _status(connection) == 0x63C3
            assert connection.send_and_receive(VERIFY_1234)[1] == 0x9000
        assert connection.send_and_receive(STATUS_QUERY)[1] == 0x9000
    assert _status(connection) == 0x63C3


def test_a_transaction_without_reset_leaves_the_pin_verified(cps3: IasEccCard) -> None:
    connection = EmulatedConnection(cps3)
    with connection.transaction():
        _status(connection)
        assert connection.send_and_receive(VERIFY_1234)[1] == 0x9000
    assert connection.send_and_receive(STATUS_QUERY)[1] == 0x9000
    connection.close()


class _AtrCard(EmulatedCard):
    def __init__(self, atr: bytes) -> None:
        self._atr = atr

    @property
    def atr(self) -> bytes:
        return self._atr

    def process(self, apdu: bytes) -> bytes:
        return b"\x90\x00"

    def power_on(self) -> None:
        pass

    def power_off(self) -> None:
        pass


@pytest.mark.parametrize(
    ("atr", "transport"),
    [
        (CPS3_CL.atr, Transport.CONTACTLESS),
        (h("3B 81 80 01 80 80"), Transport.CONTACTLESS),
        (CPS3.atr, Transport.CONTACT),
        (demo_card().atr, Transport.CONTACT),
    ],
    ids=["cps3-cl", "iso14443-4", "cps3", "demo"],
)
def test_an_emulated_connection_takes_its_transport_from_the_atr(
    atr: bytes, transport: Transport
) -> None:
    assert EmulatedConnection(_AtrCard(atr)).transport is transport
    other = Transport.CONTACT if transport is Transport.CONTACTLESS else Transport.CONTACTLESS
    assert EmulatedConnection(_AtrCard(atr), other).transport is other


def test_the_contactless_cps3_vector_replays_as_contactless() -> None:
    vector = load_vector(ROOT / "vectors" / "cps3-cl-info-pcsc.json")
    assert ReplayConnection(vector).transport is Transport.CONTACTLESS
    assert ReplayConnection(vector, Transport.CONTACT).transport is Transport.CONTACT
    contact = load_vector(ROOT / "vectors" / "cps3-info-pcsc.json")
    assert ReplayConnection(contact).transport is Transport.CONTACT
