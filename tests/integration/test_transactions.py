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
from mie.core.connection import SmartCardConnection
from mie.core.processors import SmartCardProtocol
from mie.emulation.base import EmulatedConnection
from mie.emulation.iso7816 import DEMO_AID, demo_card
from tests.harness import READER0, attached

PIN = "4826"
PIN_BLOCK = PIN.encode() + b"\xff" * 4
OK = 0x9000
NOT_VERIFIED = 0x63C3


@contextlib.contextmanager
def _emulated() -> Iterator[SmartCardConnection]:
    with EmulatedConnection(demo_card(pin=PIN)) as connection:
        yield connection


@contextlib.contextmanager
def _pcsc() -> Iterator[SmartCardConnection]:
    from mie.transport.pcsc import PcscConnection

    with attached(demo_card(pin=PIN)), PcscConnection(READER0) as connection:
        yield connection


@pytest.fixture(params=["emulated", pytest.param("pcsc", marks=pytest.mark.pcsc)])
def connection(request: pytest.FixtureRequest) -> Iterator[SmartCardConnection]:
    """A connection to a fresh demo card, in process or through pcscd + vpcd."""
    if request.param == "pcsc":
        request.getfixturevalue("pcscd")
        backend = _pcsc
    else:
        backend = _emulated
    with backend() as opened:
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
