from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mie.core.atr import Atr
from mie.core.connection import Transport, transport_from_atr
from mie.core.errors import ApduFormatError
from tests.unit.fakes import h

ROOT = Path(__file__).resolve().parents[2]
# Real ATRs, from ../shared/reference/cps-cards.md §1 (Cryptolib and OpenSC tables).
CPS3_CONTACT = h("3B AC 00 40 2A 00 12 25 00 64 80 00 03 10 00 90 00")
CPS3_CONTACTLESS = h("3B 8F 80 01 00 31 B8 64 04 B0 EC C1 73 94 01 80 82 90 00 0E")
CPS4 = h("3B 9B 18 80 01 00 12 25 00 64 80 04 01 00 00 90 44")
CPS4_T0 = h("3B DC 18 FF 00 00 12 25 00 64 80 00 04 01 00 90 00")
# sysmocom sysmoUSIM-GR1, as printed by pcsc_scan ("TCK = C2 (correct checksum)"): T=0 and the
# global T=15 bytes, so ISO/IEC 7816-3 §8.2.5 requires TCK although T=0 is the only protocol.
SYSMO_USIM = h("3B 9F 95 80 1F C7 80 31 E0 73 FE 21 13 57 12 29 11 02 01 00 00 C2")


@pytest.mark.parametrize(
    ("raw", "protocols", "historical"),
    [
        pytest.param(CPS3_CONTACT, (0,), "00 12 25 00 64 80 00 03 10 00 90 00", id="cps3"),
        pytest.param(CPS4, (0, 1), "00 12 25 00 64 80 04 01 00 00 90", id="cps4"),
        pytest.param(
            CPS3_CONTACTLESS,
            (0, 1),
            "00 31 B8 64 04 B0 EC C1 73 94 01 80 82 90 00",
            id="cps3-contactless",
        ),
        pytest.param(CPS4_T0, (0,), "00 12 25 00 64 80 00 04 01 00 90 00", id="cps4-t0"),
        pytest.param(
            SYSMO_USIM, (0,), "80 31 E0 73 FE 21 13 57 12 29 11 02 01 00 00", id="t0-and-t15"
        ),
        pytest.param(h("3B 09 80") + b"MIE-GEN1", (0,), "80 4D 49 45 2D 47 45 4E 31", id="demo"),
        pytest.param(h("3B 00"), (0,), "", id="minimal"),
    ],
)
def test_parse_real_atrs(raw: bytes, protocols: tuple[int, ...], historical: str) -> None:
    atr = Atr.parse(raw)
    assert atr.raw == raw
    assert atr.protocols == protocols
    assert atr.historical == h(historical)
    assert atr.t0_only is (protocols == (0,))


def test_cps3_contact_is_t0_only_and_cps4_is_not() -> None:
    assert Atr.parse(CPS3_CONTACT).t0_only
    assert not Atr.parse(CPS4).t0_only


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (CPS4[:-1] + bytes([CPS4[-1] ^ 0x01]), "TCK is wrong"),
        (CPS3_CONTACTLESS[:-1] + h("00"), "TCK is wrong"),
        (CPS4[:-1], "TCK missing"),
        (CPS4 + h("00"), "TCK missing or followed by extra bytes"),
        (SYSMO_USIM[:-1], "TCK missing"),
        (CPS3_CONTACT[:-1], "announces 12 historical bytes, has 11"),
        (CPS3_CONTACT + h("00"), "1 unexpected bytes"),
        (CPS3_CONTACT[:3], "truncated in its interface bytes"),
        (h("3B 9B 18"), "truncated in its interface bytes"),
        (h("3B F0 11 22 33"), "truncated in its interface bytes"),
        (h("3A") + CPS3_CONTACT[1:], "initial character 3A"),
        (h("00") + CPS4[1:], "initial character 00"),
        (h("3B"), "ATR of 1 bytes"),
        (b"", "ATR of 0 bytes"),
        (h("3B 0F") + bytes(15) + bytes(17), "ATR of 34 bytes"),
    ],
)
def test_parse_rejects_malformed_atrs(raw: bytes, problem: str) -> None:
    with pytest.raises(ApduFormatError, match=re.escape(problem)):
        Atr.parse(raw)


@given(raw=st.one_of(st.binary(max_size=40), st.binary(max_size=32).map(lambda b: h("3B") + b)))
@example(raw=h("3B 80"))
@example(raw=h("3B F0 FF FF FF"))
@example(raw=h("3B 80 80 80 80 80 80 80 80 80 80 80 80 80 80 80 80 80"))
def test_arbitrary_bytes_parse_or_raise_apdu_format_error(raw: bytes) -> None:
    try:
        atr = Atr.parse(raw)
    except ApduFormatError:
        return
    assert atr.raw == raw
    assert len(atr.historical) == raw[1] & 0x0F
    assert raw.endswith(atr.historical) or raw[:-1].endswith(atr.historical)


# PC/SC part 3 §3.1.3.2.3 pseudo-ATRs: an ISO 14443-4 card (a DESFire EV1, historical byte 80)
# and a storage card (MIFARE Classic 1K: RID A0 00 00 03 06, standard 03, card name 00 01).
DESFIRE = h("3B 81 80 01 80 80")
MIFARE_1K = h("3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00 6A")


@pytest.mark.parametrize(
    ("raw", "contactless"),
    [
        pytest.param(CPS3_CONTACTLESS, True, id="cps3-contactless"),
        pytest.param(DESFIRE, True, id="iso14443-4"),
        pytest.param(MIFARE_1K, True, id="storage-card"),
        pytest.param(h("3B 80 80 01 01"), True, id="no-historical-bytes"),
        pytest.param(CPS3_CONTACT, False, id="cps3"),
        pytest.param(CPS4, False, id="cps4"),
        pytest.param(CPS4_T0, False, id="cps4-t0"),
        pytest.param(SYSMO_USIM, False, id="t0-and-t15"),
        pytest.param(h("3B 09 80") + b"MIE-GEN1", False, id="demo"),
        pytest.param(h("3B 00"), False, id="minimal"),
    ],
)
def test_contactless_is_the_pcsc_pseudo_atr(raw: bytes, contactless: bool) -> None:
    assert Atr.parse(raw).contactless is contactless
    expected = Transport.CONTACTLESS if contactless else Transport.CONTACT
    assert transport_from_atr(raw) is expected


def test_the_contactless_cps3_vector_atr_is_contactless() -> None:
    vector = json.loads((ROOT / "vectors" / "cps3-cl-info-pcsc.json").read_text())
    assert transport_from_atr(bytes.fromhex(vector["atr"])) is Transport.CONTACTLESS


@pytest.mark.parametrize(
    "raw",
    [None, b"", h("3B 81 80 01 80"), h("3B 81 80 01 80 81"), h("3F 81 80 01 80 80")],
    ids=["none", "empty", "truncated", "bad-tck", "inverse-convention"],
)
def test_an_unknown_or_unreadable_atr_means_contact(raw: bytes | None) -> None:
    assert transport_from_atr(raw) is Transport.CONTACT
