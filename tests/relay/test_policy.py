"""The agent's allow-list (mie.relay.policy), entry by entry: what is forwarded, and every
refusal with its reason."""

from __future__ import annotations

import pytest

from mie.core.errors import ErrorCode
from mie.relay.errors import RelayRefusedError
from mie.relay.policy import ALLOWED_INS, check_command, check_desfire

h = bytes.fromhex

FORWARDED = [
    ("GetVersion", "9060000000"),
    ("SelectApplication", "905a00000349 4df0 00"),
    ("AuthenticateEV2First", "9071000002 0100 00"),
    ("AuthenticateEV2NonFirst", "9077000001 02 00"),
    ("AuthenticateAES (EV1)", "90aa000001 01 00"),
    ("GetCardUID", "9051000000"),
    ("ReadData", "90bd000007 01 000000 000000 00"),
    ("GetFileSettings", "90f5000001 01 00"),
    ("GetKeySettings", "9045000000"),
    ("GetKeyVersion", "9064000001 00 00"),
    ("GetApplicationIDs", "906a000000"),
    ("GetFileIDs", "906f000000"),
    ("Read_Sig", "903c000001 00 00"),
    ("the reader's GET DATA of the UID", "ffca000000"),
    ("the largest short command", "90bd0000ff" + "00" * 255 + "00"),
]


def hexa(text: str) -> bytes:
    return h(text.replace(" ", ""))


@pytest.mark.parametrize(("name", "apdu"), FORWARDED, ids=[n for n, _ in FORWARDED])
def test_a_read_or_an_authentication_is_forwarded(name: str, apdu: str) -> None:
    check_command(hexa(apdu), after_af=False)
    check_command(hexa(apdu), after_af=True)


def test_the_allow_list_is_the_plans_thirteen_commands() -> None:
    assert sorted(ALLOWED_INS) == sorted(
        [0x60, 0x5A, 0x71, 0x77, 0xAA, 0x51, 0xBD, 0xF5, 0x45, 0x64, 0x6A, 0x6F, 0x3C]
    )


REFUSED = [
    ("VERIFY", "0020000108 3132333400000000", "VERIFY (INS 20) is never relayed"),
    ("VERIFY with the native class", "9020000000", "VERIFY (INS 20) is never relayed"),
    ("VERIFY, other form", "0021000100", "VERIFY (INS 21) is never relayed"),
    ("CHANGE REFERENCE DATA", "0024000100", "CHANGE REFERENCE DATA (INS 24)"),
    ("RESET RETRY COUNTER", "002c000100", "RESET RETRY COUNTER (INS 2C)"),
    ("ISO SELECT", "00a4040007 a0000000040000 00", "CLA 00 is not DESFire's native wrapping"),
    ("ISO READ BINARY", "00b0000000", "CLA 00 is not DESFire's native wrapping"),
    ("a proprietary class", "80ca9f7f00", "CLA 80 is not DESFire's native wrapping"),
    ("another reader command", "ffca010000", "CLA FF is not DESFire's native wrapping"),
    ("a reader escape", "ff00000000", "CLA FF is not DESFire's native wrapping"),
    ("ISO authentication 1A", "901a000001 00 00", "legacy ISO authentication (1A)"),
    ("legacy authentication 0A", "900a000001 00 00", "legacy DES authentication (0A)"),
    ("WriteData", "903d000008 01 000000 010000 aa 00", "WriteData (3D) writes"),
    ("WriteRecord", "903b000008 01 000000 010000 aa 00", "WriteRecord (3B) writes"),
    ("ChangeKey", "90c4000002 0011 00", "ChangeKey (C4) writes"),
    ("ChangeKeySettings", "9054000001 0f 00", "ChangeKeySettings (54) writes"),
    ("ChangeFileSettings", "905f000001 01 00", "ChangeFileSettings (5F) writes"),
    ("CreateApplication", "90ca000005 494df0 0b 85 00", "CreateApplication (CA) writes"),
    ("DeleteApplication", "90da000003 494df0 00", "DeleteApplication (DA) writes"),
    ("CreateStdDataFile", "90cd000001 01 00", "CreateStdDataFile (CD) writes"),
    ("DeleteFile", "90df000001 01 00", "DeleteFile (DF) writes"),
    ("SetConfiguration", "905c000001 00 00", "SetConfiguration (5C) writes"),
    ("FormatPICC", "90fc000000", "FormatPICC (FC) erases"),
    ("CommitTransaction", "90c7000000", "CommitTransaction (C7) writes"),
    ("FreeMemory, not listed", "906e000000", "INS 6E is not in the relay's allow-list"),
    ("an unknown INS", "9001000000", "INS 01 is not in the relay's allow-list"),
    ("P1 not 00", "9060010000", "P1 P2 01 00"),
    ("P2 not 00", "9060000100", "P1 P2 00 01"),
    ("no Le", "90600000", "this one has no Le"),
    ("Le not 00", "9060000010", "a native command ends with Le 00, not 10"),
    ("data without Le", "905a000003 494df0", "the length Lc 03 does not match the data"),
    ("Lc too long", "905a000004 494df0 00", "the length Lc 04 does not match the data"),
    ("Lc too short", "905a000002 494df0 00", "the length Lc 02 does not match the data"),
    ("last byte not 00", "905a000003 494df0 01", "a native command ends with Le 00, not 01"),
    ("an extended APDU", "9060000000 0001 aa 0000", "an extended APDU is not relayed"),
    ("an extended Le", "90bd00000000 00", "an extended APDU is not relayed"),
    ("longer than short", "90bd0000ff" + "00" * 256 + "00", "longer than a short APDU"),
    ("three bytes", "906000", "a command of 3 bytes is not an APDU"),
    ("nothing", "", "a command of 0 bytes is not an APDU"),
    ("AF with no pending frame", "90af000000", "AF (additional frame) without a pending 91AF"),
]


@pytest.mark.parametrize(("name", "apdu", "reason"), REFUSED, ids=[n for n, _, _ in REFUSED])
def test_everything_else_is_refused_and_named(name: str, apdu: str, reason: str) -> None:
    with pytest.raises(RelayRefusedError) as caught:
        check_command(hexa(apdu), after_af=False)
    assert reason in caught.value.reason
    assert caught.value.code is ErrorCode.RELAY_REFUSED
    assert str(caught.value) == f"Relay refused: {caught.value.reason}"


@pytest.mark.parametrize(
    "apdu",
    ["90af000000", "90af000020" + "11" * 32 + "00"],
    ids=["the next frame of an answer", "the second authentication message"],
)
def test_additional_frame_only_right_after_91af(apdu: str) -> None:
    check_command(hexa(apdu), after_af=True)
    with pytest.raises(RelayRefusedError, match="without a pending 91AF"):
        check_command(hexa(apdu), after_af=False)


@pytest.mark.parametrize(
    "apdu", ["0020000108 3132333400000000", "90c4000002 0011 00", "901a000001 00 00"]
)
def test_a_pending_frame_opens_nothing_else(apdu: str) -> None:
    with pytest.raises(RelayRefusedError):
        check_command(hexa(apdu), after_af=True)


def test_a_desfire_answer_to_getversion_is_a_badge() -> None:
    check_desfire(h("04010133001a05"), 0x91AF)


@pytest.mark.parametrize(
    ("data", "sw"),
    [
        (b"", 0x6E00),  # a CPS card: class not supported
        (b"", 0x6D00),
        (h("04010133001a05"), 0x9100),  # not the first of three frames
        (h("04010133001a05"), 0x9000),
        (h("05010133001a05"), 0x91AF),  # another vendor
        (h("040101330005"), 0x91AF),  # a frame of 6 bytes
        (h("04010133001a0500"), 0x91AF),
    ],
)
def test_any_other_answer_to_getversion_is_not_a_desfire_badge(data: bytes, sw: int) -> None:
    with pytest.raises(RelayRefusedError, match="not a DESFire badge"):
        check_desfire(data, sw)
