from __future__ import annotations

import re

import pytest

from mie.cards.cpx import CPX_PIN
from mie.cards.demo import DemoReport, DemoSession
from mie.cards.iso7816 import Iso7816Session, PinStatus, file_size_from_fcp
from mie.core.errors import (
    ApduError,
    ApplicationNotAvailableError,
    BadResponseError,
    InvalidPinError,
    LastTryRefusedError,
    PinBlockedError,
)
from mie.emulation import EmulatedConnection, demo_card
from mie.emulation.iso7816 import DF, EF, MF_FID, Iso7816Card
from tests.unit.fakes import CountingConnection, ScriptFactory, h

PIN = "4826"
AID = h("F0 4D 49 45 44 45 4D 4F")
PUBLIC = bytes((i * 7) & 0xFF for i in range(700))
STATUS_QUERY = h("00 20 00 01")
CPS4_ATR = h("3B 9B 18 80 01 00 12 25 00 64 80 04 01 00 00 90 44")


@pytest.fixture
def card() -> Iso7816Card:
    return demo_card(pin=PIN, holder="Dr Test")


@pytest.fixture
def link(card: Iso7816Card) -> CountingConnection:
    return CountingConnection(EmulatedConnection(card))


def test_demo_session_selects_the_application(link: CountingConnection) -> None:
    session = DemoSession(link)
    assert session.fci is not None
    assert session.fci[0] == 0x6F
    assert link.sent[0] == h("00 A4 04 00 08") + AID


def test_read_file_selects_then_reads_in_chunks(link: CountingConnection) -> None:
    session = DemoSession(link)
    del link.sent[:]
    assert session.read_file(0x0101) == b"MIE0000001"
    assert session.read_file(0x0102) == PUBLIC
    reads = [apdu for apdu in link.sent if apdu[1] == 0xB0]
    assert reads == [
        h("00 B0 00 00 0A"),
        h("00 B0 00 00 00"),
        h("00 B0 01 00 00"),
        h("00 B0 02 00 BC"),
    ]


def test_read_sfi_reads_a_700_byte_file_without_knowing_its_size(
    link: CountingConnection,
) -> None:
    session = DemoSession(link)
    assert session.read_sfi(2) == PUBLIC
    assert session.read_sfi(1) == b"MIE0000001"


def test_read_sfi_on_a_t1_card_stops_at_6282() -> None:
    app = DF(
        0x0001,
        aid=AID,
        children=[EF(0x0102, PUBLIC, sfi=2), EF(0x0104, bytes(range(256)) * 2, sfi=4)],
    )
    card = Iso7816Card(CPS4_ATR, DF(MF_FID, [app]), t0=False)
    link = CountingConnection(EmulatedConnection(card))
    session = Iso7816Session(link, AID)
    assert link.sent[0] == h("00 A4 04 00 08") + AID + h("00")
    assert session.read_sfi(2) == PUBLIC
    assert session.read_sfi(4) == bytes(range(256)) * 2
    assert link.sent[-1] == h("00 B0 02 00 00")


@pytest.mark.parametrize("sfi", [0, 31, -1])
def test_read_sfi_rejects_an_sfi_out_of_range(link: CountingConnection, sfi: int) -> None:
    session = DemoSession(link)
    with pytest.raises(ValueError, match=r"SFI must be 1\.\.30"):
        session.read_sfi(sfi)


def test_read_of_a_missing_file_raises_apdu_error(link: CountingConnection) -> None:
    session = DemoSession(link)
    with pytest.raises(ApduError) as raised:
        session.read_file(0x0999)
    assert raised.value.sw == 0x6A82
    with pytest.raises(ApduError) as raised:
        session.read_sfi(5)
    assert raised.value.sw == 0x6A82


def test_selecting_an_absent_application_raises(link: CountingConnection) -> None:
    with pytest.raises(ApplicationNotAvailableError):
        Iso7816Session(link, h("A0 00 00 00 03 10 10"))


def test_pin_status_reads_the_counter_without_spending_a_try(
    card: Iso7816Card, link: CountingConnection
) -> None:
    session = DemoSession(link)
    assert session.pin_status() == PinStatus(False, 3)
    assert session.pin_status() == PinStatus(False, 3)
    assert card.tries_left == 3
    session.verify_pin(CPX_PIN.pad(PIN))
    assert session.pin_status() == PinStatus(True, None)
    card.tries_left = 0
    blocked = session.pin_status()
    assert blocked == PinStatus(False, 0)
    assert blocked.blocked


def test_pin_status_with_another_reference_raises(link: CountingConnection) -> None:
    with pytest.raises(ApduError) as raised:
        DemoSession(link).pin_status(pin_ref=0x02)
    assert raised.value.sw == 0x6A88


def test_verify_pin_sends_the_status_query_then_the_pin(
    card: Iso7816Card, link: CountingConnection
) -> None:
    session = DemoSession(link)
    del link.sent[:]
    session.verify_pin(CPX_PIN.pad(PIN))
    assert link.sent == [STATUS_QUERY, h("00 20 00 01 08 34 38 32 36 FF FF FF FF")]
    assert card.pin_verified


def test_verify_pin_refuses_the_last_try_and_sends_no_pin(
    card: Iso7816Card, link: CountingConnection
) -> None:
    session = DemoSession(link)
    card.tries_left = 1
    del link.sent[:]
    block = CPX_PIN.pad(PIN)
    with pytest.raises(LastTryRefusedError):
        session.verify_pin(block)
    assert link.sent == [STATUS_QUERY]
    assert card.tries_left == 1
    assert block == bytearray(8)


def test_verify_pin_spends_the_last_try_when_allowed(
    card: Iso7816Card, link: CountingConnection
) -> None:
    session = DemoSession(link)
    card.tries_left = 1
    session.verify_pin(CPX_PIN.pad(PIN), allow_last_try=True)
    assert card.pin_verified
    assert card.tries_left == 3


def test_verify_pin_on_a_blocked_pin_raises_and_sends_no_pin(
    card: Iso7816Card, link: CountingConnection
) -> None:
    session = DemoSession(link)
    card.tries_left = 0
    del link.sent[:]
    with pytest.raises(PinBlockedError) as raised:
        session.verify_pin(CPX_PIN.pad(PIN), allow_last_try=True)
    cause = raised.value.__cause__
    assert isinstance(cause, ApduError) and cause.sw == 0x6983
    assert link.sent == [STATUS_QUERY]


def test_a_wrong_pin_raises_invalid_pin_error_with_the_tries_left(
    card: Iso7816Card, link: CountingConnection
) -> None:
    session = DemoSession(link)
    with pytest.raises(InvalidPinError) as raised:
        session.verify_pin(CPX_PIN.pad("9999"))
    cause = raised.value.__cause__
    assert isinstance(cause, ApduError)
    assert (raised.value.tries_left, cause.sw) == (2, 0x63C2)
    assert "2 tries left" in str(raised.value)
    assert card.tries_left == 2


def test_the_wrong_pin_that_blocks_raises_pin_blocked_error(
    card: Iso7816Card, link: CountingConnection
) -> None:
    session = DemoSession(link)
    card.tries_left = 1
    with pytest.raises(PinBlockedError):
        session.verify_pin(CPX_PIN.pad("9999"), allow_last_try=True)
    assert card.tries_left == 0


def test_check_pin_tries_sends_only_the_status_query_and_says_the_tries(
    card: Iso7816Card, link: CountingConnection
) -> None:
    session = DemoSession(link)
    del link.sent[:]
    assert session.check_pin_tries() == 3
    card.tries_left = 1
    assert session.check_pin_tries(allow_last_try=True) == 1
    with pytest.raises(LastTryRefusedError):
        session.check_pin_tries()
    card.tries_left = 0
    with pytest.raises(PinBlockedError):
        session.check_pin_tries(allow_last_try=True)
    assert link.sent == [STATUS_QUERY] * 4
    assert card.tries_left == 0


def test_check_pin_tries_on_a_verified_pin_says_none(
    card: Iso7816Card, link: CountingConnection
) -> None:
    session = DemoSession(link)
    session.verify_pin(CPX_PIN.pad(PIN))
    assert session.check_pin_tries() is None


def test_present_pin_sends_only_the_verify_and_wipes_the_block(
    card: Iso7816Card, link: CountingConnection
) -> None:
    session = DemoSession(link)
    del link.sent[:]
    block = CPX_PIN.pad(PIN)
    session.present_pin(block)
    assert link.sent == [h("00 20 00 01 08 34 38 32 36 FF FF FF FF")]
    assert block == bytearray(8) and card.pin_verified
    wrong = CPX_PIN.pad("9999")
    with pytest.raises(InvalidPinError):
        session.present_pin(wrong)
    assert wrong == bytearray(8)


@pytest.mark.parametrize("pin", [PIN, "9999"])
def test_the_pin_block_is_zeroed_after_verify_pin(link: CountingConnection, pin: str) -> None:
    session = DemoSession(link)
    block = CPX_PIN.pad(pin)
    try:
        session.verify_pin(block)
    except InvalidPinError:
        pass
    assert block == bytearray(8)


def test_demo_session_run_reports_what_it_read(card: Iso7816Card) -> None:
    with EmulatedConnection(card) as connection:
        report = DemoSession(connection).run(PIN)
    assert report == DemoReport("MIE0000001", 700, PinStatus(False, 3), "Dr Test")
    assert not card.pin_verified


def test_demo_session_run_with_a_wrong_pin_raises(card: Iso7816Card) -> None:
    with EmulatedConnection(card) as connection, pytest.raises(InvalidPinError):
        DemoSession(connection).run("9999")


SELECT_0101 = h("00 A4 02 04 02 01 01 00")


@pytest.mark.parametrize(
    ("fcp", "problem"),
    [
        ("62 05 80 02 00", "Malformed FCP"),
        ("62", "Malformed FCP"),
        ("", "Malformed FCP"),
        ("62 04 80 02 00 0A FF", "Malformed FCP"),
        ("62 08 80 02 00 0A 80 02 00 0B", "Malformed FCP"),
        ("62 81 04 80 02 00 0A", "Malformed FCP"),
        ("62 03 82 01 01", "no valid file size"),
        ("62 02 80 00", "no valid file size"),
        ("62 05 80 03 00 00 0A", "no valid file size"),
        ("63 04 80 02 00 0A", "not an FCP/FCI"),
        ("80 02 00 0A", "not an FCP/FCI"),
    ],
)
def test_a_garbage_fcp_raises_bad_response_error(
    scripted: ScriptFactory, fcp: str, problem: str
) -> None:
    connection = scripted([(SELECT_0101, h(fcp), 0x9000)], atr=CPS4_ATR)
    with pytest.raises(BadResponseError, match=re.escape(problem)):
        Iso7816Session(connection).read_file(0x0101)


def test_fci_with_a_one_byte_size_is_accepted() -> None:
    assert file_size_from_fcp(h("6F 03 80 01 0A")) == 10


def test_a_short_read_binary_raises_bad_response_error(scripted: ScriptFactory) -> None:
    connection = scripted(
        [
            (SELECT_0101, h("62 04 80 02 00 0A"), 0x9000),
            (h("00 B0 00 00 0A"), b"MIE00", 0x9000),
        ],
        atr=CPS4_ATR,
    )
    with pytest.raises(BadResponseError, match="returned 5 bytes, expected 10"):
        Iso7816Session(connection).read_file(0x0101)


def test_a_file_size_above_32767_raises_before_reading(scripted: ScriptFactory) -> None:
    connection = scripted([(SELECT_0101, h("62 04 80 02 80 00"), 0x9000)], atr=CPS4_ATR)
    with pytest.raises(BadResponseError, match="32768 bytes"):
        Iso7816Session(connection).read_file(0x0101)


def test_a_session_on_a_t0_card_sends_case_4_without_le(scripted: ScriptFactory) -> None:
    connection = scripted(
        [
            (h("00 A4 02 04 02 01 01"), b"", 0x6106),
            (h("00 C0 00 00 06"), h("62 04 80 02 00 02"), 0x9000),
            (h("00 B0 00 00 02"), h("AB CD"), 0x9000),
        ],
        atr=h("3B AC 00 40 2A 00 12 25 00 64 80 00 03 10 00 90 00"),
    )
    assert Iso7816Session(connection).read_file(0x0101) == h("AB CD")
