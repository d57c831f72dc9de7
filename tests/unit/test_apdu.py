from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mie.core.apdu import CommandApdu, split_response
from mie.core.errors import ApduFormatError
from tests.unit.fakes import h

DATA_256 = bytes(range(256))
DATA_300 = bytes(i & 0xFF for i in range(300))

# (case, command, short-or-auto encoding): ISO/IEC 7816-3 §12.1.
CASES = [
    ("1", CommandApdu(0x00, 0xA4, 0x00, 0x0C), h("00 A4 00 0C")),
    ("2S", CommandApdu(0x00, 0xB0, 0x00, 0x00, le=0x10), h("00 B0 00 00 10")),
    ("2S Le=256", CommandApdu(0x00, 0xB0, 0x00, 0x00, le=256), h("00 B0 00 00 00")),
    ("3S", CommandApdu(0x00, 0x20, 0x00, 0x01, h("31 32 33 34")), h("00 20 00 01 04 31 32 33 34")),
    (
        "4S",
        CommandApdu(0x00, 0xA4, 0x04, 0x00, h("A0 00 00 00 03"), le=256),
        h("00 A4 04 00 05 A0 00 00 00 03 00"),
    ),
    ("2E", CommandApdu(0x00, 0xB0, 0x00, 0x00, le=257), h("00 B0 00 00 00 01 01")),
    ("2E Le=65536", CommandApdu(0x00, 0xB0, 0x00, 0x00, le=65536), h("00 B0 00 00 00 00 00")),
    ("3E", CommandApdu(0x00, 0xDA, 0x01, 0x02, DATA_256), h("00 DA 01 02 00 01 00") + DATA_256),
    (
        "4E",
        CommandApdu(0x80, 0x2A, 0x9E, 0x9A, DATA_300, le=65536),
        h("80 2A 9E 9A 00 01 2C") + DATA_300 + h("00 00"),
    ),
    (
        "4E data fits short, Le does not",
        CommandApdu(0x00, 0x88, 0x00, 0x00, h("01 02"), le=300),
        h("00 88 00 00 00 00 02 01 02 01 2C"),
    ),
]


@pytest.mark.parametrize(("case", "apdu", "encoded"), CASES, ids=[c[0] for c in CASES])
def test_encode_gives_the_iso_bytes(case: str, apdu: CommandApdu, encoded: bytes) -> None:
    assert apdu.encode() == encoded
    assert bytes(apdu) == encoded


@pytest.mark.parametrize(("case", "apdu", "encoded"), CASES, ids=[c[0] for c in CASES])
def test_parse_reads_every_iso_case(case: str, apdu: CommandApdu, encoded: bytes) -> None:
    assert CommandApdu.parse(encoded) == apdu


@pytest.mark.parametrize(
    ("apdu", "encoded"),
    [
        (CommandApdu(0x00, 0xA4, 0x00, 0x0C), "00 A4 00 0C"),
        (CommandApdu(0x00, 0xB0, 0x00, 0x00, le=256), "00 B0 00 00 00 01 00"),
        (CommandApdu(0x00, 0xB0, 0x00, 0x00, le=0x10), "00 B0 00 00 00 00 10"),
        (CommandApdu(0x00, 0x20, 0x00, 0x01, h("31 32")), "00 20 00 01 00 00 02 31 32"),
        (CommandApdu(0x00, 0xA4, 0x04, 0x00, h("3F 00"), le=5), "00 A4 04 00 00 00 02 3F 00 00 05"),
    ],
)
def test_forced_extended_encoding(apdu: CommandApdu, encoded: str) -> None:
    assert apdu.encode(extended=True) == h(encoded)
    assert CommandApdu.parse(h(encoded)) == apdu


@pytest.mark.parametrize(
    "apdu",
    [
        CommandApdu(0x00, 0xB0, 0x00, 0x00, le=257),
        CommandApdu(0x00, 0xDA, 0x00, 0x00, DATA_256),
    ],
)
def test_short_encoding_of_extended_fields_raises(apdu: CommandApdu) -> None:
    with pytest.raises(ApduFormatError, match="extended"):
        apdu.encode(extended=False)


def test_short_encoding_when_fields_fit() -> None:
    apdu = CommandApdu(0x00, 0xB0, 0x00, 0x00, le=256)
    assert apdu.encode(extended=False) == h("00 B0 00 00 00")
    assert not apdu.needs_extended
    assert CommandApdu(0x00, 0xB0, 0x00, 0x00, le=257).needs_extended


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"cla": 0x100}, "CLA must be a byte, got 256"),
        ({"ins": -1}, "INS must be a byte"),
        ({"p1": 0x1FF}, "P1 must be a byte"),
        ({"p2": 256}, "P2 must be a byte"),
        ({"data": bytes(65536)}, "65535"),
        ({"le": 0}, "Le must be 1..65536"),
        ({"le": 65537}, "Le must be 1..65536"),
        ({"le": -1}, "Le must be 1..65536"),
    ],
)
def test_constructor_rejects_bad_fields(fields: dict[str, object], problem: str) -> None:
    arguments: dict[str, object] = {"cla": 0, "ins": 0xB0, "p1": 0, "p2": 0, **fields}
    with pytest.raises(ApduFormatError, match=re.escape(problem)):
        CommandApdu(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("encoded", "problem"),
    [
        ("", "shorter than its header"),
        ("00 A4 04", "shorter than its header"),
        ("00 A4 04 00 03 01 02", "Lc=3 does not match the 2 bytes"),
        ("00 A4 04 00 02 01 02 03 04", "Lc=2 does not match the 4 bytes"),
        ("00 B0 00 00 00 01", "truncated"),
        ("00 DA 00 00 00 00 00 01", "Extended Lc of zero"),
        ("00 DA 00 00 00 00 03 01 02", "Extended Lc=3 does not match the 2 bytes"),
        ("00 DA 00 00 00 00 02 01 02 03", "Extended Lc=2 does not match the 3 bytes"),
    ],
)
def test_parse_rejects_malformed_commands(encoded: str, problem: str) -> None:
    with pytest.raises(ApduFormatError, match=re.escape(problem)):
        CommandApdu.parse(h(encoded))


def test_with_le_keeps_the_other_fields() -> None:
    apdu = CommandApdu(0x01, 0xA4, 0x04, 0x00, h("3F 00"), le=256)
    assert apdu.with_le(None) == CommandApdu(0x01, 0xA4, 0x04, 0x00, h("3F 00"))
    assert apdu.with_le(0x12).encode() == h("01 A4 04 00 02 3F 00 12")


@pytest.mark.parametrize(
    ("response", "data", "sw"),
    [("90 00", "", 0x9000), ("01 02 03 61 10", "01 02 03", 0x6110), ("6A 82", "", 0x6A82)],
)
def test_split_response(response: str, data: str, sw: int) -> None:
    assert split_response(h(response)) == (h(data), sw)


@pytest.mark.parametrize("response", ["", "90"])
def test_split_response_without_status_word_raises(response: str) -> None:
    with pytest.raises(ApduFormatError, match="no status word"):
        split_response(h(response))


commands = st.builds(
    CommandApdu,
    cla=st.integers(0, 0xFF),
    ins=st.integers(0, 0xFF),
    p1=st.integers(0, 0xFF),
    p2=st.integers(0, 0xFF),
    data=st.one_of(st.binary(max_size=260), st.binary(min_size=250, max_size=700)),
    le=st.one_of(st.none(), st.integers(1, 65536), st.sampled_from([255, 256, 257, 65535])),
)


@given(apdu=commands)
def test_parse_inverts_the_automatic_encoding(apdu: CommandApdu) -> None:
    encoded = apdu.encode()
    assert CommandApdu.parse(encoded) == apdu
    assert (len(encoded) > 5 and encoded[4] == 0) == (
        apdu.needs_extended and (bool(apdu.data) or apdu.le is not None)
    )


@given(apdu=commands)
def test_parse_inverts_the_forced_extended_encoding(apdu: CommandApdu) -> None:
    assert CommandApdu.parse(apdu.encode(extended=True)) == apdu


@given(raw=st.one_of(st.binary(max_size=24), commands.map(lambda a: a.encode()[:-1])))
@example(raw=h("00 B0 00 00 00"))
@example(raw=h("00 B0 00 00 00 00"))
@example(raw=h("00 DA 00 00 00 FF FF"))
def test_arbitrary_bytes_parse_exactly_or_raise_apdu_format_error(raw: bytes) -> None:
    try:
        apdu = CommandApdu.parse(raw)
    except ApduFormatError:
        return
    extended = len(raw) > 5 and raw[4] == 0
    assert apdu.encode(extended=extended) == raw
