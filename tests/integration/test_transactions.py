"""One transaction semantics on every backend: the same scenarios in process and through pcscd.

A nested ``transaction(reset=True)`` owes its reset to the outermost transaction, and the card is
reset when that one ends (plan decision D1: PC/SC cannot reset a card inside a held transaction
without ending it). Only APDUs are asserted, as a client of the card sees them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from mie.core.apdu import CommandApdu
from mie.core.channel import CommMode
from mie.core.connection import SmartCardConnection
from mie.core.errors import SecureMessagingError
from mie.core.processors import SmartCardProtocol
from mie.emulation.base import EmulatedConnection
from mie.emulation.iso7816 import DEMO_AID, Iso7816Card, demo_card
from tests.harness import READER0, attached
from tests.unit.toy_channel import install_toy_handshake, open_toy_channel

PIN = "4826"
PIN_BLOCK = PIN.encode() + b"\xff" * 4
OK = 0x9000
NOT_VERIFIED = 0x63C3
KEY = bytes(range(16))


@contextlib.contextmanager
def _emulated(card: Iso7816Card) -> Iterator[SmartCardConnection]:
    with EmulatedConnection(card) as connection:
        yield connection


@contextlib.contextmanager
def _pcsc(card: Iso7816Card) -> Iterator[SmartCardConnection]:
    from mie.transport.pcsc import PcscConnection

    with attached(card), PcscConnection(READER0) as connection:
        yield connection


@pytest.fixture
def card() -> Iso7816Card:
    """A fresh demo card that also knows the toy secure-channel handshake."""
    fresh = demo_card(pin=PIN)
    install_toy_handshake(fresh, KEY)
    return fresh


@pytest.fixture(params=["emulated", pytest.param("pcsc", marks=pytest.mark.pcsc)])
def connection(request: pytest.FixtureRequest, card: Iso7816Card) -> Iterator[SmartCardConnection]:
    """A connection to ``card``, in process or through pcscd + vpcd."""
    if request.param == "pcsc":
        request.getfixturevalue("pcscd")
        backend = _pcsc
    else:
        backend = _emulated
    with backend(card) as opened:
        yield opened


def _status(protocol: SmartCardProtocol) -> int:
    """SELECT the application, then VERIFY without data: ``9000`` once the PIN is verified."""
    protocol.select(DEMO_AID, p2=0x0C)
    return protocol.transmit(CommandApdu(0x00, 0x20, 0x00, 0x01))[1]


def _verify(protocol: SmartCardProtocol) -> int:
    protocol.select(DEMO_AID, p2=0x0C)
    return protocol.transmit(CommandApdu(0x00, 0x20, 0x00, 0x01, PIN_BLOCK))[1]


def _status_afterwards(connection: SmartCardConnection, protocol: SmartCardProtocol) -> int:
    # In a transaction of its own, as a next session would query the card.
    with connection.transaction():
        return _status(protocol)


def test_a_nested_reset_is_owed_to_the_outer_transaction(
    connection: SmartCardConnection,
) -> None:
    protocol = SmartCardProtocol(connection, t0=True)
    with connection.transaction():
        assert _status(protocol) == NOT_VERIFIED
        with connection.transaction(reset=True):
            assert _verify(protocol) == OK
        # Still inside the outer transaction: the card was not reset under it.
        assert _status(protocol) == OK
    assert _status_afterwards(connection, protocol) == NOT_VERIFIED


class _CancelledError(Exception):
    pass


def test_an_exception_out_of_the_inner_block_still_ends_in_the_reset(
    connection: SmartCardConnection,
) -> None:
    protocol = SmartCardProtocol(connection, t0=True)
    with pytest.raises(_CancelledError), connection.transaction():
        with connection.transaction(reset=True):
            assert _verify(protocol) == OK
            raise _CancelledError
    assert _status_afterwards(connection, protocol) == NOT_VERIFIED


def test_a_reset_owed_by_one_nested_block_is_not_forgotten_by_the_next(
    connection: SmartCardConnection,
) -> None:
    protocol = SmartCardProtocol(connection, t0=True)
    with connection.transaction():
        with connection.transaction(reset=True):
            assert _verify(protocol) == OK
        with connection.transaction():
            assert _status(protocol) == OK
    assert _status_afterwards(connection, protocol) == NOT_VERIFIED


def test_without_a_reset_the_pin_stays_verified(connection: SmartCardConnection) -> None:
    # The reset above comes from reset=True, not from the transactions themselves.
    protocol = SmartCardProtocol(connection, t0=True)
    with connection.transaction(), connection.transaction():
        assert _verify(protocol) == OK
    assert _status_afterwards(connection, protocol) == OK


def test_a_secure_channel_ends_with_the_transaction_that_resets_the_card(
    connection: SmartCardConnection, card: Iso7816Card
) -> None:
    protocol = SmartCardProtocol(connection, t0=True)
    with protocol.transaction(reset=True):
        protocol.select(DEMO_AID, p2=0x0C)
        channel = open_toy_channel(protocol, KEY, bytes(16))
        with protocol.transaction():
            protocol.send_apdu(0x00, 0x20, 0x00, 0x01, PIN_BLOCK, mode=CommMode.MAC)
        assert protocol.channel is channel
        assert protocol.send_apdu(0x00, 0xB0, 0x81, 0x00, le=10, mode=CommMode.MAC)
    # Both ends lost it: the host dropped and wiped it, the reset closed the card's side.
    assert protocol.channel is None and channel.is_dropped
    assert card.secure_channel is None
    with pytest.raises(SecureMessagingError, match="nothing was sent"):
        protocol.transmit(CommandApdu(0x00, 0xB0, 0x81, 0x00, le=10), mode=CommMode.MAC)
    assert _status_afterwards(connection, protocol) == NOT_VERIFIED
