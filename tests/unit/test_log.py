from __future__ import annotations

import logging
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mie.cards.demo import DemoSession
from mie.core.apdu import CommandApdu
from mie.core.log import TRAFFIC, log_command, log_response, redact_command
from mie.emulation import EmulatedConnection, demo_card
from tests.unit.fakes import h

PIN_BLOCK = "31 32 33 34 FF FF FF FF"


@pytest.mark.parametrize(
    ("apdu", "redacted"),
    [
        ("00 20 00 01 08 " + PIN_BLOCK, "0020000108" + "*" * 16),
        ("00 21 00 01 06 7F 2E 03 31 32 33", "0021000106" + "*" * 12),
        ("00 24 00 01 10 " + PIN_BLOCK + " 39 38 37 36 FF FF FF FF", "0024000110" + "*" * 32),
        ("00 2C 00 01 10 " + PIN_BLOCK * 2, "002c000110" + "*" * 32),
        ("00 20 00 81 04 31 32 33 34 00", "0020008104" + "*" * 8 + "00"),
        ("00 20 00 01 00 00 04 31 32 33 34", "00200001000004" + "*" * 8),
        ("00 20 00 01 00 00 04 31 32 33 34 01 00", "00200001000004" + "*" * 8 + "0100"),
    ],
)
def test_pin_carrying_data_is_masked_keeping_its_length(apdu: str, redacted: str) -> None:
    assert redact_command(h(apdu)) == redacted


@pytest.mark.parametrize(
    "apdu",
    [
        "00 20 00 01",
        "00 20 00 01 00",
        "00 A4 04 00 04 31 32 33 34",
        "00 DA 00 01 04 31 32 33 34",
        "00 B0 00 00 08",
        "00 A4",
    ],
)
def test_commands_without_pin_data_are_untouched(apdu: str) -> None:
    assert redact_command(h(apdu)) == h(apdu).hex()


@pytest.mark.parametrize(
    "apdu",
    [
        "00 20 00 01 08 31 32 33 34",
        "00 20 00 01 31 32 33 34",
        "00 20 00 01 02 31 32 33 34 35 36",
        "00 20 00 01 00 31",
        "00 20 00 01 00 00 08 31 32 33 34",
        "00 20 00 01 00 00 00 31 32 33 34",
        "00 24 00 01 00 00 02 31 32 33 34 35",
    ],
)
def test_malformed_lengths_mask_everything_after_the_header(apdu: str) -> None:
    raw = h(apdu)
    assert redact_command(raw) == raw[:4].hex() + "*" * (2 * (len(raw) - 4))


def test_log_command_at_traffic_level_never_emits_the_pin(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("tests.unit.traffic")
    caplog.set_level(TRAFFIC, logger=logger.name)
    log_command(logger, h("00 20 00 01 08 " + PIN_BLOCK))
    log_response(logger, b"", 0x9000)
    assert [r.levelname for r in caplog.records] == ["TRAFFIC", "TRAFFIC"]
    assert caplog.records[0].getMessage() == "SEND: 0020000108" + "*" * 16
    assert caplog.records[1].getMessage() == "RECV:  9000"
    assert "31323334" not in caplog.text


def test_log_command_is_silent_above_traffic_level(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.unit.traffic")
    caplog.set_level(logging.DEBUG, logger=logger.name)
    log_command(logger, h("00 A4 04 00 02 3F 00"))
    assert caplog.records == []


def test_a_whole_session_at_traffic_level_never_logs_the_pin(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(TRAFFIC, logger="mie")
    with EmulatedConnection(demo_card(pin="4826")) as connection:
        DemoSession(connection).run("4826")
    sent = [r.getMessage() for r in caplog.records if r.getMessage().startswith("SEND: 0020")]
    assert sent == ["SEND: 00200001", "SEND: 00200001", "SEND: 0020000108" + "*" * 16]
    assert "34383236" not in caplog.text
    assert "4826" not in caplog.text


pin_commands = st.builds(
    CommandApdu,
    cla=st.integers(0, 0xFF),
    ins=st.sampled_from([0x20, 0x21, 0x24, 0x2C]),
    p1=st.integers(0, 0xFF),
    p2=st.integers(0, 0xFF),
    data=st.binary(min_size=1, max_size=300),
    le=st.one_of(st.none(), st.integers(1, 65536)),
)


@given(apdu=pin_commands, extended=st.booleans(), other=st.randoms(use_true_random=False))
def test_redaction_depends_only_on_the_data_length(
    apdu: CommandApdu, extended: bool, other: random.Random
) -> None:
    extended = extended or apdu.needs_extended
    same_length = bytes(other.randrange(256) for _ in apdu.data)
    encoded = apdu.encode(extended=extended)
    redacted = redact_command(encoded)
    assert redacted == redact_command(
        CommandApdu(apdu.cla, apdu.ins, apdu.p1, apdu.p2, same_length, apdu.le).encode(extended)
    )
    assert len(redacted) == 2 * len(encoded)
    assert redacted.count("*") == 2 * len(apdu.data)
    assert redacted.startswith(encoded[:4].hex())


@given(raw=st.binary(min_size=4, max_size=40), ins=st.sampled_from([0x20, 0x21, 0x24, 0x2C]))
def test_redaction_of_any_bytes_keeps_the_header_and_length(raw: bytes, ins: int) -> None:
    apdu = raw[:1] + bytes([ins]) + raw[2:]
    redacted = redact_command(apdu)
    assert redacted.startswith(apdu[:4].hex())
    assert len(redacted) == 2 * len(apdu)
