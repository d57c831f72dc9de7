"""The emulated DESFire badge (mie.emulation.desfire), driven by a minimal client written here
on mie.desfire.crypto: byte-exact against NXP AN12196 and the EV1 traces of
shared/reference/desfire.md §8 where they apply (RndB and TI fixed through the badge's rng), the
other commands through their comm modes, and bad input answered with the DESFire status codes
of desfire.md §7, the state untouched.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mie.core.channel import CommMode
from mie.core.connection import Transport, transport_from_atr
from mie.core.errors import (
    BadResponseError,
    CardRemovedError,
    JsonFormatError,
    SecureMessagingError,
)
from mie.desfire import crypto
from mie.desfire.constants import Status
from mie.desfire.errors import (
    DesfireAuthenticationError,
    DesfireStatusError,
    OriginalitySignatureError,
    ResponseIntegrityError,
)
from mie.desfire.session import DesfireSession
from mie.desfire.types import AccessRights
from mie.desfire.types import KeyType as TypesKeyType
from mie.emulation.base import CardGone, EmulatedConnection
from mie.emulation.desfire import (
    TEST_ORIGINALITY_KEY,
    CommandLayout,
    EmulatedDesfire,
    Ev1CardSession,
    Ev2CardSession,
    open_badge,
)
from mie.emulation.desfire_state import (
    Application,
    BadgeKey,
    BadgeState,
    DataFile,
    FileAccess,
    KeyType,
    decode_state,
    encode_state,
    load_state,
    personalise,
    save_state,
)

h = bytes.fromhex
UID = h("04958CAA5C5E80")  # the UID of AN12196 §7.3 and desfire.md §8.4
AID = h("494DF0")
ZERO_KEY = bytes(16)
APP_KEYS = [bytes([i]) * 16 for i in range(5)]
PICC_KEY = h("00112233445566778899AABBCCDDEEFF")
RECORD = bytes(range(176))


class Rng:
    """The badge's random source, scripted: each call takes the next chunk."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    def __call__(self, size: int) -> bytes:
        chunk = self.chunks.pop(0)
        assert len(chunk) == size
        return chunk


def native(cmd: int, data: bytes = b"") -> bytes:
    """``90 CMD 00 00 [Lc data] 00``."""
    return bytes([0x90, cmd, 0, 0]) + (bytes([len(data)]) + data if data else b"") + b"\x00"


def split(response: bytes) -> tuple[bytes, int]:
    return response[:-2], int.from_bytes(response[-2:], "big")


def badge_state(*, random_uid: bool = False) -> BadgeState:
    state = BadgeState(UID, BadgeKey(PICC_KEY, 1, KeyType.AES))
    personalise(state, aid=AID, keys=APP_KEYS, record=RECORD, random_uid=random_uid)
    return state


def app_with_key0(key: bytes, *, key1: bytes = ZERO_KEY, version: int = 0) -> BadgeState:
    state = BadgeState(UID, BadgeKey(PICC_KEY, 1, KeyType.AES))
    state.applications[AID] = Application(
        0x0B, [BadgeKey(key, version), BadgeKey(key1, version)], {}
    )
    return state


class Client:
    """A minimal reader side, on mie.desfire.crypto only (the real one is mie.desfire.session)."""

    def __init__(self, card: EmulatedDesfire) -> None:
        self.card = card
        self.scheme: str | None = None
        self.enc = self.mac = self.ti = b""
        self.ctr = 0
        self.ev1_key = b""
        self.iv = crypto.ZERO_IV
        self.apdus = 0

    def raw(self, apdu: bytes) -> tuple[bytes, int]:
        self.apdus += 1
        return split(self.card.process(apdu))

    def send(self, cmd: int, data: bytes = b"", frame: int = 54) -> tuple[bytes, int]:
        """One native command: its data cut into frames, the response frames collected."""
        parts = [data[i : i + frame] for i in range(0, len(data), frame)] or [b""]
        body, sw = self.raw(native(cmd, parts[0]))
        for part in parts[1:]:
            assert (body, sw) == (b"", 0x91AF)
            body, sw = self.raw(native(0xAF, part))
        chunks = [body]
        while sw == 0x91AF:
            body, sw = self.raw(native(0xAF))
            chunks.append(body)
        return b"".join(chunks), sw

    def select(self, aid: bytes) -> None:
        assert self.send(0x5A, aid) == (b"", 0x9100)
        self.scheme = None

    def ev2_first(self, key_no: int, key: bytes, rnd_a: bytes = b"A" * 16) -> int:
        e_rnd_b, sw = self.raw(native(0x71, bytes([key_no, 0])))
        if sw != 0x91AF:
            return sw
        rnd_b = crypto.aes_cbc_decrypt(key, crypto.ZERO_IV, e_rnd_b)
        host = crypto.aes_cbc_encrypt(key, crypto.ZERO_IV, rnd_a + crypto.rotate_left(rnd_b))
        answer, sw = self.raw(native(0xAF, host))
        if sw != 0x9100:
            return sw
        plain = crypto.aes_cbc_decrypt(key, crypto.ZERO_IV, answer)
        assert plain[4:20] == crypto.rotate_left(rnd_a)
        self.enc, self.mac = crypto.ev2_session_keys(key, rnd_a, rnd_b)
        self.ti, self.ctr, self.scheme = plain[:4], 0, "ev2"
        return sw

    def ev2_non_first(self, key_no: int, key: bytes, rnd_a: bytes = b"N" * 16) -> int:
        e_rnd_b, sw = self.raw(native(0x77, bytes([key_no])))
        if sw != 0x91AF:
            return sw
        rnd_b = crypto.aes_cbc_decrypt(key, crypto.ZERO_IV, e_rnd_b)
        host = crypto.aes_cbc_encrypt(key, crypto.ZERO_IV, rnd_a + crypto.rotate_left(rnd_b))
        answer, sw = self.raw(native(0xAF, host))
        if sw == 0x9100:
            assert crypto.aes_cbc_decrypt(key, crypto.ZERO_IV, answer) == crypto.rotate_left(rnd_a)
            self.enc, self.mac = crypto.ev2_session_keys(key, rnd_a, rnd_b)
        return sw

    def aes(self, key_no: int, key: bytes, rnd_a: bytes = b"E" * 16) -> int:
        e_rnd_b, sw = self.raw(native(0xAA, bytes([key_no])))
        if sw != 0x91AF:
            return sw
        rnd_b = crypto.aes_cbc_decrypt(key, crypto.ZERO_IV, e_rnd_b)
        host = crypto.aes_cbc_encrypt(key, e_rnd_b, rnd_a + crypto.rotate_left(rnd_b))
        answer, sw = self.raw(native(0xAF, host))
        if sw == 0x9100:
            assert crypto.aes_cbc_decrypt(key, host[-16:], answer) == crypto.rotate_left(rnd_a)
            self.ev1_key, self.iv = crypto.ev1_session_key(rnd_a, rnd_b), crypto.ZERO_IV
            self.scheme = "ev1"
        return sw

    def ev2(
        self,
        cmd: int,
        header: bytes = b"",
        data: bytes = b"",
        *,
        mode: CommMode = CommMode.MAC,
        response: CommMode = CommMode.MAC,
        flip: bool = False,
    ) -> tuple[bytes, int]:
        """An EV2 secure-messaging exchange; the response MAC checked, FULL data deciphered."""
        body = header + data
        if mode is CommMode.FULL and data:
            iv = crypto.ev2_command_iv(self.enc, self.ti, self.ctr)
            body = header + crypto.ev2_encrypt(self.enc, iv, data)
        if mode is not CommMode.PLAIN:
            mac = crypto.ev2_command_mac(self.mac, cmd, self.ctr, self.ti, body)
            body += bytes([mac[0] ^ 1]) + mac[1:] if flip else mac
        answer, sw = self.send(cmd, body)
        if sw != 0x9100:
            return answer, sw
        self.ctr += 1
        if response is CommMode.PLAIN:
            return answer, sw
        answer, mac = answer[:-8], answer[-8:]
        crypto.ev2_verify_response_mac(self.mac, 0, self.ctr, self.ti, answer, mac)
        if response is CommMode.FULL and answer:
            iv = crypto.ev2_response_iv(self.enc, self.ti, self.ctr)
            answer = crypto.ev2_decrypt(self.enc, iv, answer)
        return answer, sw

    def ev1(
        self,
        cmd: int,
        header: bytes = b"",
        data: bytes = b"",
        *,
        full: bool = False,
        response_full: bool = False,
    ) -> tuple[bytes, int]:
        """An EV1 secure-messaging exchange (commands plain or enciphered; response MAC or CRC)."""
        if full:
            plain = data + crypto.crc32(bytes([cmd]) + header + data)
            ciphertext = crypto.ev1_encrypt(self.ev1_key, self.iv, plain)
            self.iv = ciphertext[-16:]
            body = header + ciphertext
        else:
            self.iv = crypto.cmac(self.ev1_key, bytes([cmd]) + header + data, self.iv)
            body = header + data
        answer, sw = self.send(cmd, body)
        if sw != 0x9100:
            return answer, sw
        if response_full:
            out = crypto.ev1_decrypt_response(self.ev1_key, self.iv, answer)
            self.iv = answer[-16:]
            return out, sw
        answer, mac = answer[:-8], answer[-8:]
        self.iv = crypto.ev1_verify_response_mac(self.ev1_key, self.iv, answer, 0, mac)
        return answer, sw


def read_header(file_no: int, offset: int = 0, length: int = 0) -> bytes:
    return bytes([file_no]) + offset.to_bytes(3, "little") + length.to_bytes(3, "little")


def snapshot(card: EmulatedDesfire) -> BadgeState:
    return copy.deepcopy(card.state)


# --- the card as a reader sees it ----------------------------------------------------------


def test_atr_reads_as_contactless() -> None:
    card = EmulatedDesfire(badge_state())
    assert card.atr == h("3B8180018080")
    assert transport_from_atr(card.atr) is Transport.CONTACTLESS
    assert EmulatedConnection(card).transport is Transport.CONTACTLESS


def test_reader_get_data_uid_and_iso_select() -> None:
    card = EmulatedDesfire(badge_state())
    assert split(card.process(h("FFCA000000"))) == (UID, 0x9000)
    assert split(card.process(h("00A4040007D276000085010000"))) == (b"", 0x9000)
    # Any other interindustry command (VERIFY included) is not for this card.
    assert split(card.process(h("0020000104") + b"1234")) == (b"", 0x6E00)
    assert split(card.process(h("80CA000000"))) == (b"", 0x6E00)


@pytest.mark.parametrize(("product", "hw_major"), [("ev3", 0x33), ("ev2", 0x12), ("ev1", 0x01)])
def test_get_version_three_frames(product: str, hw_major: int) -> None:
    card = EmulatedDesfire(badge_state(), product=product)
    frames = []
    data, sw = split(card.process(native(0x60)))
    frames.append((data, sw))
    while sw == 0x91AF:
        data, sw = split(card.process(native(0xAF)))
        frames.append((data, sw))
    assert [len(f) for f, _ in frames] == [7, 7, 14]
    assert [s for _, s in frames] == [0x91AF, 0x91AF, 0x9100]
    hw, sw_frame, third = (f for f, _ in frames)
    assert hw[0] == sw_frame[0] == 0x04 and hw[3] == hw_major
    assert third[:7] == UID


def test_random_uid_is_drawn_at_each_power_on_and_hidden_from_get_version() -> None:
    rng = Rng(h("111111"), h("222222"), h("333333"))
    card = EmulatedDesfire(badge_state(random_uid=True), rng=rng)
    assert card.anticollision_uid == h("08111111")
    connection = EmulatedConnection(card)  # powers the card on again
    assert connection.send_and_receive(h("FFCA000000")) == (h("08222222"), 0x9000)
    card.reset()
    assert split(card.process(h("FFCA000000"))) == (h("08333333"), 0x9000)
    client = Client(card)
    version, sw = client.send(0x60)
    assert sw == 0x9100 and version[14:21] == bytes(7)


def test_static_uid_when_random_uid_is_off() -> None:
    card = EmulatedDesfire(badge_state(), rng=Rng())  # no random byte is drawn
    card.reset()
    assert card.anticollision_uid == UID


# --- AN12196 EV2 traces ---------------------------------------------------------------------

AN12196_AUTH = [
    # AN12196 §6.6 p.28 and §6.10 p.34: key, RndA, E(RndB), E(RndA ‖ RndB'), E(TI ‖ RndA' ‖ caps),
    # TI, SesAuthENCKey, SesAuthMACKey (the same traces as tests/desfire/test_crypto.py).
    (
        "13C5DB8A5930439FC3DEF9A4C675360F",
        "A04C124213C186F22399D33AC2A30215",
        "35C3E05A752E0144BAC0DE51C1F22C56B34408A23D8AEA266CAB947EA8E0118D",
        "3FA64DB5446D1F34CD6EA311167F5E4985B89690C04A05F17FA7AB2F08120663",
        "9D00C4DF",
        "1309C877509E5A215007FF0ED19CA564",
        "4C6626F5E72EA694202139295C7A7FC7",
    ),
    (
        "B98F4C50CF1C2E084FD150E33992B048",
        "B875CEB0E66A6C5CD00898DC371F92D1",
        "FF0306E47DFBC50087C4D8A78E88E62DE1E8BE457AA477C707E2F0874916A8B1",
        "0CC9A8094A8EEA683ECAAC5C7BF20584206D0608D477110FC6B3D5D3F65C3A6A",
        "7614281A",
        "7A93D6571E4B180FCA6AC90C9A7488D4",
        "FC4AF159B62E549B5812394CAB1918CC",
    ),
]


@pytest.mark.parametrize(("rnd_a", "e_rnd_b", "pcd", "picc", "ti", "enc", "mac"), AN12196_AUTH)
def test_an12196_authenticate_ev2_first_replays(
    rnd_a: str, e_rnd_b: str, pcd: str, picc: str, ti: str, enc: str, mac: str
) -> None:
    rnd_b = crypto.aes_cbc_decrypt(ZERO_KEY, crypto.ZERO_IV, h(e_rnd_b))
    card = EmulatedDesfire(app_with_key0(ZERO_KEY), rng=Rng(rnd_b, h(ti)))
    assert split(card.process(native(0x5A, AID))) == (b"", 0x9100)
    assert split(card.process(h("9071000002000000"))) == (h(e_rnd_b), 0x91AF)
    assert split(card.process(native(0xAF, h(pcd)))) == (h(picc), 0x9100)
    # The badge's session runs on the trace's keys: a MACed GetKeyVersion(0) under them.
    command_mac = crypto.ev2_command_mac(h(mac), 0x64, 0, h(ti), b"\x00")
    data, sw = split(card.process(native(0x64, b"\x00" + command_mac)))
    assert sw == 0x9100
    crypto.ev2_verify_response_mac(h(mac), 0, 1, h(ti), data[:1], data[1:])
    assert data[:1] == b"\x00"


def test_an12196_get_card_uid_full_mode() -> None:
    # AN12196 §7.3 p.43: GetCardUID in CommMode.FULL, CmdCtr 0.
    card = EmulatedDesfire(app_with_key0(ZERO_KEY))
    card.process(native(0x5A, AID))
    card.session = Ev2CardSession(
        h("2B4D963C014DC36F24F69A50A394F875"),
        h("379D32130CE61705DD5FD8C36B95D764"),
        h("DF055522"),
        0,
    )
    answer = card.process(h("90510000088E2C155ADDA99BE300"))
    assert answer == h("70756055688505B52A5E26E59E329CD6") + h("595F672298EA41B7") + h("9100")


def test_an12196_card_side_mac_and_full_mode() -> None:
    # AN12196 §5.3 p.21 (GetFileSettings in MAC mode) and §5.4 p.22 / §6.12 p.36 (WriteData in
    # FULL mode, NTAG code 8D): the badge's channel verifies and deciphers the commands and MACs
    # its answers as the traces show.
    session = Ev2CardSession(bytes(16), h("8248134A386E86EB7FAF54A52E536CB6"), h("7A21085E"), 0)
    assert session.unwrap(0xF5, h("026597A457C8CD442C"), CommMode.MAC, CommandLayout(1)) == h("02")
    data = h("0040EEEE000100D1FE001F00004400004400002000006A0000")
    assert session.wrap(0, data, CommMode.MAC) == data + h("2A474282E7A47986")

    session = Ev2CardSession(
        h("7A93D6571E4B180FCA6AC90C9A7488D4"),
        h("FC4AF159B62E549B5812394CAB1918CC"),
        h("7614281A"),
        0,
    )
    command = h("030000000A0000") + h("6B5E6804909962FC4E3FF5522CF0F843") + h("6C0C53315B9C73AA")
    plain = session.unwrap(0x8D, command, CommMode.FULL, CommandLayout(7))
    assert plain == h("030000000A0000") + h("0102030405060708090A")
    assert session.wrap(0, b"", CommMode.MAC) == h("C26D236E4A7C046D")

    session = Ev2CardSession(
        h("1309C877509E5A215007FF0ED19CA564"),
        h("4C6626F5E72EA694202139295C7A7FC7"),
        h("9D00C4DF"),
        0,
    )
    ciphertext = h(
        "421C73A27D827658AF481FDFF20A5025B559D0E3AA21E58D347F343CFFC768BF"
        "E596C706BC00F2176781D4B0242642A0FF5A42C461AAF894D9A1284B8C76BCFA"
        "658ACD40555D362E08DB15CF421B51283F9064BCBE20E96CAE545B407C9D651A"
        "3315B27373772E5DA2367D2064AE054AF996C6F1F669170FA88CE8C4E3A4A7BB"
        "BEF0FD971FF532C3A802AF745660F2B4"
    )
    command = h("02000000800000") + ciphertext + h("D1D9A8499661EBF3")
    plain = session.unwrap(0x8D, command, CommMode.FULL, CommandLayout(7))
    assert isinstance(plain, bytes) and plain[:7] == h("02000000800000") and len(plain) == 135
    assert plain[7:14] == h("0051D1014D5504")
    assert session.wrap(0, b"", CommMode.MAC) == h("FC222E5F7A542452")


@pytest.mark.parametrize("bit", [0, 7, 63])
def test_card_side_ev2_mac_one_bit_off_is_an_integrity_error(bit: int) -> None:
    session = Ev2CardSession(bytes(16), h("8248134A386E86EB7FAF54A52E536CB6"), h("7A21085E"), 0)
    mac = bytearray(h("6597A457C8CD442C"))
    mac[bit // 8] ^= 1 << (bit % 8)
    assert session.unwrap(0xF5, b"\x02" + mac, CommMode.MAC, CommandLayout(1)) == 0x1E


# --- desfire.md §8 EV1 traces ---------------------------------------------------------------

EV1_RND_B = h("C05DDD714FD788A6B7B754F3C4D066E8")
EV1_HOST = h("36AAD7DF6E436BA08D18613830A70D5AD43E3D3F4A8D47541EEE623A934E4774")


def ev1_traced_card(state: BadgeState, aid: bytes = AID) -> EmulatedDesfire:
    """A badge after the §8.1 AuthenticateAES trace with key 0 = zeros (session key F44B…)."""
    card = EmulatedDesfire(state, rng=Rng(EV1_RND_B))
    assert split(card.process(native(0x5A, aid))) == (b"", 0x9100)
    assert split(card.process(h("90AA0000010000"))) == (
        h("B969FDFE56FD91FC9DE6F6F213B8FD1E"),
        0x91AF,
    )
    answer = split(card.process(native(0xAF, EV1_HOST)))
    assert answer == (h("800DB680BC146BD121D6578F2D2E2059"), 0x9100)
    return card


def test_ev1_authenticate_aes_trace_then_get_card_uid() -> None:
    # desfire.md §8.1 then §8.4: GetCardUID enciphered with the running IV = CMAC(51).
    card = ev1_traced_card(app_with_key0(ZERO_KEY))
    assert card.process(h("9051000000")) == h("34D4129E78B2D870323400779D9050C4") + h("9100")


def test_ev1_authenticate_aes_second_trace() -> None:
    state = app_with_key0(ZERO_KEY, key1=h("10182028303840485058606870788088"))
    card = EmulatedDesfire(state, rng=Rng(h("626FFBD45CAF334ACCA45599304F5B17")))
    card.process(native(0x5A, AID))
    assert split(card.process(h("90AA0000010100"))) == (
        h("B351CB2465D4F33AC627FD6E87A168F2"),
        0x91AF,
    )
    host = h("044B6CAC343A0865895149649CA8DDE1F5AC4EC67BD208900AF02F049E05F0B0")
    assert split(card.process(native(0xAF, host))) == (
        h("A2EE144B1012FBEB7B2F11132D95A454"),
        0x9100,
    )


def test_ev1_change_key_same_key_trace() -> None:
    # desfire.md §8.3 (a): ChangeKey of the authenticated key 0, version 10; the answer is plain
    # and the session ends.
    card = ev1_traced_card(app_with_key0(ZERO_KEY))
    enc = h("E9F85E219496C2B58C1090DC3935FAE9E840CF61B383D9531946256B1F110C10")
    assert card.process(h("90C4000021") + b"\x00" + enc + b"\x00") == h("9100")
    key = card.state.applications[AID].keys[0]
    assert (key.key, key.version) == (h("00102030405060708090A0B0B0A09080"), 0x10)
    assert card.session is None


def test_ev1_change_key_other_key_trace() -> None:
    # desfire.md §8.3 (b): ChangeKey(1) with old key zeros under session key C2A1…, IV 0.
    card = EmulatedDesfire(app_with_key0(h("AA") * 16))
    card.process(native(0x5A, AID))
    card.session = Ev1CardSession(h("C2A1E47BD8100044FE6D00A74D7AB17C"), 0)
    enc = h("E7ECCB6BD1CA64BC161A12B1C024F71430337408C8A87EACAB7A1FF18951FCA3")
    assert card.process(h("90C4000021") + b"\x01" + enc + b"\x00") == h("2128D3CD9C9ACFFF9100")
    key = card.state.applications[AID].keys[1]
    assert (key.key, key.version) == (h("00102030405060708090A0B0B0A09080"), 0x10)


def test_ev1_get_key_version_cmac_trace() -> None:
    # desfire.md §8.2: GetKeyVersion(0) right after authentication; answer 10 ‖ CMAC[:8].
    card = EmulatedDesfire(app_with_key0(ZERO_KEY, version=0x10))
    card.process(native(0x5A, AID))
    card.session = Ev1CardSession(h("90F7A20191036845EC63DECD544B9931"), 0)
    assert card.process(h("90640000010000")) == h("108A8FA36F55CD210D9100")


# --- EV2 sessions through the minimal client -------------------------------------------------


def test_ev2_identity_read_with_random_uid() -> None:
    # The plan's D5 sequence: Select, EV2First (UID-read key), GetCardUID, NonFirst (read key),
    # ReadData of the 176-byte record in FULL mode: 200 bytes in 4 frames.
    card = EmulatedDesfire(badge_state(random_uid=True))
    client = Client(card)
    client.select(AID)
    assert client.ev2_first(1, APP_KEYS[1]) == 0x9100
    assert client.ev2(0x51, response=CommMode.FULL) == (UID, 0x9100)
    assert client.ev2_non_first(2, APP_KEYS[2]) == 0x9100
    assert client.ctr == 1  # NonFirst kept the counter
    before = client.apdus
    data, sw = client.ev2(0xBD, read_header(1), response=CommMode.FULL)
    assert (data, sw) == (RECORD, 0x9100)
    assert client.apdus - before == 4  # 59 + 59 + 59 + 23 bytes


def test_ev2_read_record_frames_are_59_bytes() -> None:
    card = EmulatedDesfire(badge_state())
    client = Client(card)
    client.select(AID)
    client.ev2_first(2, APP_KEYS[2])
    mac = crypto.ev2_command_mac(client.mac, 0xBD, 0, client.ti, read_header(1))
    sizes = []
    data, sw = client.raw(native(0xBD, read_header(1) + mac))
    sizes.append(len(data))
    while sw == 0x91AF:
        data, sw = client.raw(native(0xAF))
        sizes.append(len(data))
    assert sizes == [59, 59, 59, 23] and sw == 0x9100


def test_ev2_mac_mode_and_plain_files_move_the_counter() -> None:
    state = badge_state()
    app = state.applications[AID]
    app.files[3] = DataFile(CommMode.MAC, FileAccess(2, 2, 2, 0), bytearray(b"mac file"))
    app.files[4] = DataFile(CommMode.PLAIN, FileAccess(2, 2, 2, 0), bytearray(b"plain"))
    client = Client(EmulatedDesfire(state))
    client.select(AID)
    client.ev2_first(2, APP_KEYS[2])
    assert client.ev2(0xBD, read_header(4), mode=CommMode.PLAIN, response=CommMode.PLAIN) == (
        b"plain",
        0x9100,
    )
    assert client.ev2(0xBD, read_header(3, 4, 4)) == (b"file", 0x9100)
    assert client.ctr == 2
    assert client.ev2(0xF5, b"\x03") == (
        h("0001") + FileAccess(2, 2, 2, 0).encode() + h("080000"),
        0x9100,
    )


@pytest.mark.parametrize("size", [1, 40, 100, 176])
def test_ev2_write_data_full_in_frames_then_read_back(size: int) -> None:
    card = EmulatedDesfire(badge_state())
    client = Client(card)
    client.select(AID)
    client.ev2_first(0, APP_KEYS[0])
    payload = bytes([0xA5]) * size
    header = read_header(1, 0, size)
    frames_before = client.apdus
    assert client.ev2(0x3D, header, payload, mode=CommMode.FULL) == (b"", 0x9100)
    wire = 7 + (size + 1 + 15) // 16 * 16 + 8
    assert client.apdus - frames_before == (wire + 53) // 54
    assert bytes(card.state.applications[AID].files[1].data[:size]) == payload
    client.select(AID)
    client.ev2_first(2, APP_KEYS[2])
    data, _ = client.ev2(0xBD, read_header(1, 0, size), response=CommMode.FULL)
    assert data == payload


def test_ev2_change_key_other_then_same_key() -> None:
    card = EmulatedDesfire(badge_state())
    client = Client(card)
    client.select(AID)
    client.ev2_first(0, APP_KEYS[0])
    new = h("0F") * 16
    xored = bytes(a ^ b for a, b in zip(new, APP_KEYS[3], strict=True))
    data = xored + b"\x07" + crypto.crc32(new)
    assert client.ev2(0xC4, b"\x03", data, mode=CommMode.FULL) == (b"", 0x9100)
    assert card.state.applications[AID].keys[3] == BadgeKey(new, 7)
    new0 = h("F0") * 16
    # Same key: the answer is plain and the session ends.
    assert client.ev2(
        0xC4, b"\x00", new0 + b"\x02", mode=CommMode.FULL, response=CommMode.PLAIN
    ) == (
        b"",
        0x9100,
    )
    assert card.state.applications[AID].keys[0] == BadgeKey(new0, 2)
    assert card.session is None
    assert client.ev2_first(0, new0) == 0x9100


def test_ev2_enrolment_commands_at_picc_level() -> None:
    state = BadgeState(UID, BadgeKey(PICC_KEY, 1, KeyType.AES))
    changes: list[int] = []
    card = EmulatedDesfire(state, on_change=lambda s: changes.append(len(s.applications)))
    client = Client(card)
    assert client.ev2_first(0, PICC_KEY) == 0x9100
    assert client.ev2(0xCA, AID + b"\x0b\x85") == (b"", 0x9100)
    assert client.ev2(0xCA, AID + b"\x0b\x85") == (b"", 0x91DE)  # duplicate, session dropped
    assert client.ev2_first(0, PICC_KEY) == 0x9100
    assert client.ev2(0x6A) == (AID, 0x9100)
    assert client.ev2(0x45) == (h("0F81"), 0x9100)
    assert client.ev2(0x5C, b"\x00", b"\x02", mode=CommMode.FULL) == (b"", 0x9100)
    assert state.random_uid
    # Random UID is irreversible.
    assert client.ev2(0x5C, b"\x00", b"\x00", mode=CommMode.FULL) == (b"", 0x9100)
    assert state.random_uid
    client.select(AID)
    assert client.ev2_first(0, ZERO_KEY) == 0x9100
    access = FileAccess(2, 0, 0, 0).encode()
    assert client.ev2(0xCD, b"\x01\x03" + access + h("B00000")) == (b"", 0x9100)
    assert client.ev2(0x6F) == (b"\x01", 0x9100)
    assert client.ev2(0x64, b"\x04") == (b"\x00", 0x9100)
    assert changes == [1, 1, 1, 1]
    assert state.applications[AID].files[1].mode is CommMode.FULL
    client.select(b"\x00\x00\x00")
    assert client.ev2_first(0, PICC_KEY) == 0x9100
    assert client.ev2(0xFC) == (b"", 0x9100)
    assert state.applications == {}


def test_ev2_change_picc_key_from_des_blank() -> None:
    # A blank badge's DES PICC key refuses EV2 and AES authentication (91AE).
    card = EmulatedDesfire(BadgeState.blank(UID))
    client = Client(card)
    assert client.ev2_first(0, ZERO_KEY) == 0x91AE
    assert client.aes(0, ZERO_KEY) == 0x91AE


def test_format_disabled_refuses_format() -> None:
    state = BadgeState(UID, BadgeKey(PICC_KEY, 1, KeyType.AES), format_disabled=True)
    state.applications[AID] = Application(0x0B, [BadgeKey(ZERO_KEY)])
    client = Client(EmulatedDesfire(state))
    client.ev2_first(0, PICC_KEY)
    assert client.ev2(0xFC) == (b"", 0x919D)
    assert AID in state.applications


# --- EV1 sessions through the minimal client -------------------------------------------------


def test_ev1_identity_read() -> None:
    card = EmulatedDesfire(badge_state(), product="ev1")
    client = Client(card)
    client.select(AID)
    assert client.aes(1, APP_KEYS[1]) == 0x9100
    assert client.ev1(0x51, response_full=True) == (UID, 0x9100)
    client.select(AID)
    assert client.aes(2, APP_KEYS[2]) == 0x9100
    assert client.ev1(0xBD, read_header(1), response_full=True) == (RECORD, 0x9100)
    assert client.ev1(0xF5, b"\x01") == (
        h("0003") + FileAccess(2, 0, 0, 0).encode() + h("B00000"),
        0x9100,
    )


def test_ev1_write_data_full() -> None:
    card = EmulatedDesfire(badge_state())
    client = Client(card)
    client.select(AID)
    assert client.aes(0, APP_KEYS[0]) == 0x9100
    assert client.ev1(0x3D, read_header(1, 10, 60), b"\x5a" * 60, full=True) == (b"", 0x9100)
    assert bytes(card.state.applications[AID].files[1].data[10:70]) == b"\x5a" * 60


def test_ev1_product_has_no_ev2_authentication_nor_signature() -> None:
    client = Client(EmulatedDesfire(badge_state(), product="ev1"))
    assert client.send(0x3C, b"\x00") == (b"", 0x911C)
    client.select(AID)
    assert client.ev2_first(2, APP_KEYS[2]) == 0x911C


# --- Read_Sig ------------------------------------------------------------------------------


def test_read_sig_verifies_with_the_test_key_only() -> None:
    card = EmulatedDesfire(badge_state(random_uid=True))
    signature, sw = Client(card).send(0x3C, b"\x00")
    assert sw == 0x9190 and len(signature) == 56
    assert (
        crypto.verify_originality_signature(UID, signature, [TEST_ORIGINALITY_KEY])
        == TEST_ORIGINALITY_KEY
    )
    assert card.originality_public_key == TEST_ORIGINALITY_KEY
    with pytest.raises(OriginalitySignatureError):
        crypto.verify_originality_signature(UID, signature)
    # The same signature each time, as a real badge's.
    assert Client(EmulatedDesfire(badge_state())).send(0x3C, b"\x00") == (signature, 0x9190)
    assert Client(card).send(0x3C, b"\x01") == (b"", 0x919E)


def test_read_sig_with_an_injected_key() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP224R1())
    card = EmulatedDesfire(badge_state(), originality_key=private)
    signature, _ = Client(card).send(0x3C, b"\x00")
    key = crypto.OriginalityKey.from_public_key("injected", private.public_key())
    assert crypto.verify_originality_signature(UID, signature, [key]) == key
    with pytest.raises(OriginalitySignatureError):
        crypto.verify_originality_signature(UID, signature, [TEST_ORIGINALITY_KEY])


# --- refusals: status codes, state untouched --------------------------------------------------


def refused(card: EmulatedDesfire, action: Callable[[], object], expected: object) -> None:
    before = snapshot(card)
    assert action() == expected
    assert card.state == before


def test_wrong_key_is_an_authentication_error_and_nothing_changes() -> None:
    card = EmulatedDesfire(badge_state())
    client = Client(card)
    client.select(AID)
    refused(card, lambda: client.ev2_first(2, h("EE") * 16), 0x91AE)
    assert card.session is None
    refused(card, lambda: client.aes(2, h("EE") * 16), 0x91AE)
    refused(card, lambda: client.ev2_first(9, APP_KEYS[0]), 0x9140)


def test_wrong_command_mac_is_an_integrity_error_and_drops_the_session() -> None:
    card = EmulatedDesfire(badge_state())
    client = Client(card)
    client.select(AID)
    client.ev2_first(0, APP_KEYS[0])
    refused(
        card,
        lambda: client.ev2(0x3D, read_header(1, 0, 4), b"evil", mode=CommMode.FULL, flip=True),
        (b"", 0x911E),
    )
    assert card.session is None
    assert client.ev2(0x51, response=CommMode.FULL) == (b"", 0x91AE)


def test_ev1_wrong_crc_is_an_integrity_error() -> None:
    card = EmulatedDesfire(badge_state())
    client = Client(card)
    client.select(AID)
    client.aes(0, APP_KEYS[0])
    plain = b"abcd" + crypto.crc32(b"\x3d" + read_header(1, 0, 4) + b"abce")
    ciphertext = crypto.ev1_encrypt(client.ev1_key, client.iv, plain)
    refused(card, lambda: client.send(0x3D, read_header(1, 0, 4) + ciphertext), (b"", 0x911E))


def test_access_rights_and_authentication_are_required() -> None:
    card = EmulatedDesfire(badge_state())
    client = Client(card)
    client.select(AID)
    refused(card, lambda: client.send(0xBD, read_header(1)), (b"", 0x919D))
    refused(card, lambda: client.send(0x3D, read_header(1, 0, 1) + b"x"), (b"", 0x919D))
    refused(card, lambda: client.send(0x51), (b"", 0x91AE))
    refused(card, lambda: client.send(0xC4, b"\x00" + bytes(40)), (b"", 0x91AE))
    client.ev2_first(1, APP_KEYS[1])
    # Key 1 is not the record's read key (2), nor may it change keys.
    refused(card, lambda: client.ev2(0xBD, read_header(1), response=CommMode.FULL), (b"", 0x919D))
    client.ev2_first(1, APP_KEYS[1])
    data = bytes(16) + b"\x01" + crypto.crc32(bytes(16))
    refused(card, lambda: client.ev2(0xC4, b"\x02", data, mode=CommMode.FULL), (b"", 0x919D))


def test_listing_needs_the_master_key_without_free_listing() -> None:
    state = badge_state()
    state.applications[AID].key_settings = 0x09
    card = EmulatedDesfire(state)
    client = Client(card)
    client.select(AID)
    refused(card, lambda: client.send(0x6F), (b"", 0x919D))
    refused(card, lambda: client.send(0xF5, b"\x01"), (b"", 0x919D))
    client.ev2_first(0, APP_KEYS[0])
    assert client.ev2(0x6F) == (b"\x01", 0x9100)
    state.picc_key_settings = 0x0D
    client.select(b"\x00\x00\x00")
    refused(card, lambda: client.send(0x6A), (b"", 0x919D))


def test_not_found_and_boundaries() -> None:
    card = EmulatedDesfire(badge_state())
    client = Client(card)
    refused(card, lambda: client.send(0x5A, h("010203")), (b"", 0x91A0))
    client.select(AID)
    client.ev2_first(2, APP_KEYS[2])
    refused(card, lambda: client.ev2(0xBD, read_header(7)), (b"", 0x91F0))
    client.ev2_first(2, APP_KEYS[2])
    refused(
        card,
        lambda: client.ev2(0xBD, read_header(1, 170, 10), response=CommMode.FULL),
        (b"", 0x91BE),
    )
    client.ev2_first(0, APP_KEYS[0])
    refused(
        card,
        lambda: client.ev2(0x3D, read_header(1, 176, 1), b"x", mode=CommMode.FULL),
        (b"", 0x91BE),
    )


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("905A000003494DF0", 0x917E),  # no Le
        ("905A000004494DF000", 0x917E),  # Lc says 4, 3 bytes follow
        ("905A000002494DF000", 0x917E),  # Lc says 2, 3 bytes follow
        ("905A010003494DF000", 0x917E),  # P1 not 00
        ("905A00000000", 0x917E),  # Lc 00 then Le
        ("905A000002494D00", 0x917E),  # an AID of 2 bytes
        ("9060000001FF00", 0x917E),  # GetVersion takes no data
        ("907100000100" + "00", 0x917E),  # EV2First without LenCap
        ("9099000000", 0x911C),  # unknown command
        ("90AF000000", 0x911C),  # AF with nothing pending
        ("9060", 0x917E),
        ("", 0x6E00),
    ],
)
def test_malformed_commands(apdu: str, sw: int) -> None:
    card = EmulatedDesfire(badge_state())
    refused(card, lambda: split(card.process(h(apdu))), (b"", sw))


def test_truncated_authentication_message_is_a_length_error() -> None:
    card = EmulatedDesfire(badge_state())
    card.process(native(0x5A, AID))
    assert split(card.process(native(0x71, b"\x02\x00")))[1] == 0x91AF
    assert split(card.process(native(0xAF, bytes(31)))) == (b"", 0x917E)
    assert card.session is None


def test_truncated_mac_is_a_length_error() -> None:
    card = EmulatedDesfire(badge_state())
    client = Client(card)
    client.select(AID)
    client.ev2_first(1, APP_KEYS[1])
    assert client.send(0x51, bytes(7)) == (b"", 0x917E)
    assert card.session is None


def test_non_first_needs_an_ev2_session() -> None:
    card = EmulatedDesfire(badge_state())
    client = Client(card)
    client.select(AID)
    assert client.ev2_non_first(2, APP_KEYS[2]) == 0x91AE
    client.aes(1, APP_KEYS[1])
    assert client.ev2_non_first(2, APP_KEYS[2]) == 0x91AE


def test_a_new_command_aborts_a_pending_chain() -> None:
    card = EmulatedDesfire(badge_state())
    client = Client(card)
    _first, sw = client.raw(native(0x60))
    assert sw == 0x91AF
    client.select(AID)  # aborts GetVersion
    assert client.raw(native(0xAF)) == (b"", 0x911C)
    # A write waiting for its frames is aborted too, and nothing is written.
    client.ev2_first(0, APP_KEYS[0])
    header = read_header(1, 0, 100)
    iv = crypto.ev2_command_iv(client.enc, client.ti, client.ctr)
    body = header + crypto.ev2_encrypt(client.enc, iv, bytes(100))
    assert client.raw(native(0x3D, body[:54])) == (b"", 0x91AF)
    refused(card, lambda: client.raw(native(0x60))[1], 0x91AF)


def test_write_frames_beyond_the_announced_length() -> None:
    card = EmulatedDesfire(badge_state())
    client = Client(card)
    client.select(AID)
    client.ev2_first(0, APP_KEYS[0])
    assert client.raw(native(0x3D, read_header(1, 0, 100) + bytes(40))) == (b"", 0x91AF)
    refused(card, lambda: client.raw(native(0xAF, bytes(200))), (b"", 0x917E))


def test_a_fault_answers_6f00_and_never_raises() -> None:
    card = EmulatedDesfire(badge_state(), rng=lambda n: b"short")
    card.process(native(0x5A, AID))
    assert card.process(native(0x71, b"\x02\x00")) == h("6F00")
    assert card.session is None


def test_repr_shows_no_key() -> None:
    key = h("0123456789ABCDEF0123456789ABCDEF")
    state = badge_state()
    state.applications[AID].keys[2] = BadgeKey(key, 1)
    session = Ev2CardSession(key, key, b"\x00" * 4, 0)
    for text in (repr(state), repr(session), repr(Ev1CardSession(key, 0))):
        assert key.hex() not in text.lower()
        assert "RECORD" not in text and RECORD.hex() not in text


def test_personalise_refuses_bad_layouts() -> None:
    state = BadgeState.blank(UID)
    with pytest.raises(ValueError, match="AID"):
        personalise(state, aid=b"\x00\x00\x00", keys=APP_KEYS, record=RECORD)
    with pytest.raises(ValueError, match="AES keys"):
        personalise(state, aid=AID, keys=[b"short"], record=RECORD)
    with pytest.raises(ValueError, match="7 bytes"):
        BadgeState.blank(b"\x04" * 4)
    assert state.applications == {}


def test_emulated_connection_round_trip() -> None:
    connection = EmulatedConnection(EmulatedDesfire(badge_state()))
    assert connection.send_and_receive(native(0x5A, AID)) == (b"", 0x9100)
    assert connection.send_and_receive(native(0x6F)) == (b"\x01", 0x9100)


# --- in process with the real client (mie.desfire.session) -----------------------------------


class CountingConnection(EmulatedConnection):
    """An emulated connection that counts the APDUs sent to the badge."""

    def __init__(self, card: EmulatedDesfire) -> None:
        super().__init__(card)
        self.apdus: list[bytes] = []

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self.apdus.append(bytes(apdu))
        return super().send_and_receive(apdu)


def session_on(card: EmulatedDesfire) -> tuple[DesfireSession, CountingConnection]:
    connection = CountingConnection(card)
    return DesfireSession(connection), connection


@pytest.mark.parametrize("product", ["ev2", "ev3"])
def test_session_identity_read_d5_sequence(product: str) -> None:
    # Plan D5, random UID: Select + EV2First (2) + GetCardUID + NonFirst (2) + ReadData (4 APDUs
    # for 4 frames) and, before them, Read_Sig and GetVersion.
    card = EmulatedDesfire(badge_state(random_uid=True), product=product)
    session, connection = session_on(card)
    version = session.get_version()
    assert version.uid is None
    assert version.product == product.upper()
    signature = session.read_signature()
    assert crypto.verify_originality_signature(UID, signature, [TEST_ORIGINALITY_KEY])
    start = len(connection.apdus)
    session.select_application(AID)
    session.authenticate_ev2_first(1, APP_KEYS[1])
    assert session.get_card_uid() == UID
    session.authenticate_ev2_non_first(2, APP_KEYS[2])
    assert session.read_data(1, mode=CommMode.FULL) == RECORD
    assert len(connection.apdus) - start == 1 + 2 + 1 + 2 + 4


def test_session_static_uid_and_file_commands() -> None:
    card = EmulatedDesfire(badge_state())
    session, _ = session_on(card)
    assert session.get_version().uid == UID
    assert session.get_version().storage_bytes == 8192
    assert session.get_application_ids() == (AID,)
    settings = session.get_key_settings()
    assert (settings.settings, settings.max_keys, settings.key_type) == (0x0F, 1, TypesKeyType.AES)
    session.select_application(AID)
    assert session.get_file_ids() == b"\x01"
    file_settings = session.get_file_settings(1)
    assert (file_settings.mode, file_settings.size) == (CommMode.FULL, 176)
    assert file_settings.access == AccessRights(2, 0, 0, 0)
    session.authenticate_ev2_first(0, APP_KEYS[0])
    assert session.get_key_version(2) == 1
    session.write_data(1, b"\x11" * 100, 20, mode=CommMode.FULL)
    assert session.get_file_settings(1).size == 176  # MACed inside the session
    session.authenticate_ev2_first(2, APP_KEYS[2])
    assert session.read_data(1, 20, 100, mode=CommMode.FULL) == b"\x11" * 100


def test_session_ev1_aes() -> None:
    card = EmulatedDesfire(badge_state(), product="ev1")
    session, _ = session_on(card)
    assert session.get_version().product == "EV1"
    session.select_application(AID)
    session.authenticate_aes(1, APP_KEYS[1])
    assert session.get_card_uid() == UID
    session.authenticate_aes(0, APP_KEYS[0])
    session.write_data(1, b"\x22" * 70, mode=CommMode.FULL)
    assert session.get_key_version(3) == 1
    session.authenticate_aes(2, APP_KEYS[2])
    assert session.read_data(1, 0, 70, mode=CommMode.FULL) == b"\x22" * 70


@pytest.mark.parametrize("scheme", ["ev2", "ev1"])
def test_session_enrolment_commands(scheme: str) -> None:
    state = BadgeState(UID, BadgeKey(PICC_KEY, 1, KeyType.AES))
    saved: list[BadgeState] = []
    card = EmulatedDesfire(state, on_change=lambda s: saved.append(copy.deepcopy(s)))
    session, _ = session_on(card)

    def authenticate(key_no: int, key: bytes) -> None:
        if scheme == "ev2":
            session.authenticate_ev2_first(key_no, key)
        else:
            session.authenticate_aes(key_no, key)

    authenticate(0, PICC_KEY)
    session.create_application(AID, keys=5)
    session.select_application(AID)
    authenticate(0, ZERO_KEY)
    for key_no in range(1, 5):
        session.change_key(key_no, APP_KEYS[key_no], version=1, old_key=ZERO_KEY)
    session.change_key(0, APP_KEYS[0], version=1)
    assert session.auth is None
    authenticate(0, APP_KEYS[0])
    session.create_std_data_file(1, 176, mode=CommMode.FULL, access=AccessRights(2, 0, 0, 0))
    session.write_data(1, RECORD, mode=CommMode.FULL)
    session.select_application(b"\x00\x00\x00")
    authenticate(0, PICC_KEY)
    new_picc = h("99") * 16
    session.change_key(0, new_picc, version=1)
    authenticate(0, new_picc)
    session.set_configuration(random_uid=True)
    assert state.random_uid and state.picc_key.key == new_picc
    assert [k.key for k in state.applications[AID].keys] == APP_KEYS
    assert bytes(state.applications[AID].files[1].data) == RECORD
    assert saved[-1] == state
    # The personalised badge reads as personalise() would have left it.
    expected = BadgeState(UID, BadgeKey(new_picc, 1, KeyType.AES))
    personalise(expected, aid=AID, keys=APP_KEYS, record=RECORD, random_uid=True)
    assert state == expected


def test_session_wrong_key_and_refusals_are_typed() -> None:
    card = EmulatedDesfire(badge_state())
    session, _ = session_on(card)
    with pytest.raises(DesfireStatusError) as error:
        session.select_application(h("010203"))
    assert error.value.status is Status.APPLICATION_NOT_FOUND
    session.select_application(AID)
    before = snapshot(card)
    with pytest.raises(DesfireAuthenticationError):
        session.authenticate_ev2_first(2, h("EE") * 16)
    assert card.state == before
    with pytest.raises(DesfireStatusError) as error:
        session.read_data(1, mode=CommMode.PLAIN)
    assert error.value.status is Status.PERMISSION_DENIED


# --- the state file -----------------------------------------------------------------------


def rich_state() -> BadgeState:
    state = badge_state(random_uid=True)
    state.format_disabled = True
    state.applications[h("010203")] = Application(
        0x0F,
        [BadgeKey(h("11") * 24, 3, KeyType.TDES_3K)],
        {
            0: DataFile(CommMode.PLAIN, FileAccess(0xE, 0xF, 0, 0), bytearray(b"x")),
            31: DataFile(CommMode.MAC, FileAccess(0, 0, 0, 0), bytearray(32)),
        },
    )
    return state


def test_state_round_trip_through_a_file(tmp_path: Path) -> None:
    state = rich_state()
    path = tmp_path / "badge.json"
    save_state(path, state)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_state(path) == state
    assert decode_state(encode_state(state)) == state


def test_state_file_follows_the_badge(tmp_path: Path) -> None:
    # on_change saves the state before the answer: a new emulator on the file has the write.
    path = tmp_path / "badge.json"
    card = EmulatedDesfire(badge_state(), on_change=lambda s: save_state(path, s))
    session, _ = session_on(card)
    session.select_application(AID)
    session.authenticate_ev2_first(0, APP_KEYS[0])
    session.write_data(1, b"persisted", mode=CommMode.FULL)
    reborn = EmulatedDesfire(load_state(path))
    session, _ = session_on(reborn)
    session.select_application(AID)
    session.authenticate_ev2_first(2, APP_KEYS[2])
    assert session.read_data(1, 0, 9, mode=CommMode.FULL) == b"persisted"


def edited(change: Callable[[dict[str, Any]], object]) -> bytes:
    document = json.loads(encode_state(rich_state()))
    change(document)
    return json.dumps(document).encode()


def first_app(d: dict[str, Any]) -> dict[str, Any]:
    app: dict[str, Any] = d["applications"][0]
    return app


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(format="mie-badge-state/2"),
        lambda d: d.update(extra=1),
        lambda d: d.pop("random_uid"),
        lambda d: d.update(uid="04958CAA5C5E80"),  # upper case
        lambda d: d.update(uid="04958caa5c5e"),
        lambda d: d.update(picc_key_settings=256),
        lambda d: d.update(picc_key_settings=-1),
        lambda d: d.update(picc_key_settings=1.0),
        lambda d: d.update(picc_key_settings="0f"),
        lambda d: d.update(random_uid=1),
        lambda d: d["picc_key"].update(type="lrp"),
        lambda d: d["picc_key"].update(key="00" * 24),
        lambda d: d["applications"].append(d["applications"][0]),
        lambda d: first_app(d).update(aid="000000"),
        lambda d: first_app(d).update(keys=[]),
        lambda d: first_app(d)["keys"].append(d["applications"][1]["keys"][0]),
        lambda d: first_app(d)["files"].append(first_app(d)["files"][0]),
        lambda d: first_app(d)["files"][0].update(mode="enciphered"),
        lambda d: first_app(d)["files"][0].update(no=32),
        lambda d: first_app(d)["files"][0].update(data=""),
        lambda d: first_app(d)["files"][0].update(access="e0"),
        lambda d: d.update(applications={}),
    ],
)
def test_state_file_is_strict(change: Callable[[dict[str, Any]], object]) -> None:
    with pytest.raises(JsonFormatError):
        decode_state(edited(change), "badge.json")


def test_state_file_refuses_duplicate_keys_and_size() -> None:
    text = encode_state(rich_state())
    with pytest.raises(JsonFormatError, match="duplicate"):
        decode_state(text.replace(b'"random_uid"', b'"uid": "00", "random_uid"', 1))
    with pytest.raises(JsonFormatError, match="larger"):
        decode_state(b" " * (256 * 1024 + 1))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_state_file_edits_fail_typed(data: st.DataObject) -> None:
    text = bytearray(encode_state(rich_state()))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text) - 1))
        text[i] = data.draw(st.sampled_from(b'0aAf"{}[],: 9-.x\x00\xff'))
    try:
        decode_state(bytes(text))
    except JsonFormatError:
        pass


COMMAND_CODES = [0x60, 0x5A, 0x71, 0x77, 0xAA, 0x1A, 0xAF, 0x51, 0xBD, 0x3D, 0xF5, 0x45, 0x64]
COMMAND_CODES += [0x6A, 0x6F, 0x3C, 0xC4, 0xCA, 0xDA, 0xCD, 0x5C, 0xFC, 0x00, 0xFF]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(COMMAND_CODES), st.binary(max_size=60), st.booleans()),
        max_size=12,
    )
)
def test_any_command_sequence_gets_a_status_never_a_fault(
    commands: list[tuple[int, bytes, bool]],
) -> None:
    card = EmulatedDesfire(badge_state(), rng=lambda n: b"\x5a" * n)
    for cmd, data, authenticated in commands:
        if authenticated and cmd == 0x00:
            card.session = Ev2CardSession(bytes(16), bytes(16), bytes(4), 0)
            continue
        answer = card.process(native(cmd, data))
        assert len(answer) >= 2
        assert answer[-2] == 0x91, answer.hex()


@pytest.mark.pcsc
@pytest.mark.usefixtures("pcscd")
def test_session_through_pcscd_and_vpcd() -> None:
    # Hosted on vpcd, the badge is a contactless card to PC/SC (part 3 ATR) and answers the
    # same D5 identity read as in process.
    from mie.transport.pcsc import PcscConnection
    from tests.harness import READER0, attached

    card = EmulatedDesfire(badge_state(random_uid=True))
    with attached(card), PcscConnection(READER0) as connection:
        assert connection.atr == h("3B8180018080")
        assert connection.transport is Transport.CONTACTLESS
        session = DesfireSession(connection)
        assert session.get_version().product == "EV3"
        assert len(session.read_signature()) == 56
        session.select_application(AID)
        session.authenticate_ev2_first(1, APP_KEYS[1])
        assert session.get_card_uid() == UID
        session.authenticate_ev2_non_first(2, APP_KEYS[2])
        assert session.read_data(1, mode=CommMode.FULL) == RECORD


# --- injected faults, as the client sees them -----------------------------------------------


def authenticated_reader(**faults: object) -> tuple[DesfireSession, EmulatedDesfire]:
    card = EmulatedDesfire(badge_state())
    session, _ = session_on(card)
    session.select_application(AID)
    session.authenticate_ev2_first(2, APP_KEYS[2])
    for name, value in faults.items():
        setattr(card.faults, name, value)
    return session, card


@pytest.mark.parametrize("bit", [0, 9, 31, 63])
def test_fault_flipped_mac_bit_is_an_integrity_error(bit: int) -> None:
    session, _ = authenticated_reader(flip_mac_bit=bit)
    with pytest.raises(ResponseIntegrityError):
        session.read_data(1, mode=CommMode.FULL)
    assert session.auth is None


def test_fault_flipped_mac_bit_ev1() -> None:
    card = EmulatedDesfire(badge_state())
    session, _ = session_on(card)
    session.select_application(AID)
    session.authenticate_aes(2, APP_KEYS[2])
    card.faults.flip_mac_bit = 5
    with pytest.raises(SecureMessagingError):
        session.get_key_version(0)


def test_fault_af_forever_is_a_bad_response() -> None:
    card = EmulatedDesfire(badge_state())
    card.faults.af_forever = True
    session, connection = session_on(card)
    with pytest.raises(BadResponseError, match="AF"):
        session.get_version()
    assert 200 < len(connection.apdus) <= 300


def test_fault_replayed_answer_is_an_integrity_error() -> None:
    session, card = authenticated_reader(replay_previous=True)
    assert session.read_data(1, 0, 16, mode=CommMode.FULL) == RECORD[:16]  # nothing to replay yet
    with pytest.raises(ResponseIntegrityError):
        session.read_data(1, 0, 16, mode=CommMode.FULL)
    card.faults.replay_previous = False
    session.authenticate_ev2_first(2, APP_KEYS[2])
    assert session.read_data(1, 0, 16, mode=CommMode.FULL) == RECORD[:16]


def test_fault_fail_after_leaves_the_field_and_a_restart_resumes(tmp_path: Path) -> None:
    # A badge pulled mid-enrolment: it answers fail_after APDUs, the state file holds what
    # they wrote, the next APDU gets no answer (CardRemovedError through a connection), and
    # the badge reopened from its file carries on.
    from mie.hazmat.desfire_legacy import LEGACY_OPT_IN, authenticate_iso, change_key_from_legacy

    path = tmp_path / "badge.json"
    card = open_badge(path, uid=UID)
    card.faults.fail_after = 3
    session, connection = session_on(card)
    authenticate_iso(session, 0, bytes(16), opt_in=LEGACY_OPT_IN)  # 2 APDUs
    change_key_from_legacy(session, 0, PICC_KEY, version=1, opt_in=LEGACY_OPT_IN)  # 1 APDU
    assert card.answered == 3
    with pytest.raises(CardRemovedError, match="left the field"):
        session.create_application(AID, keys=5)
    with pytest.raises(CardGone):
        card.process(h("9060000000"))
    assert card.answered == 3 and len(connection.apdus) == 4
    assert load_state(path).picc_key == BadgeKey(PICC_KEY, 1, KeyType.AES)
    assert load_state(path).applications == {}
    again = open_badge(path)
    session, _ = session_on(again)
    session.authenticate_ev2_first(0, PICC_KEY)
    session.create_application(AID, keys=5)
    assert AID in load_state(path).applications


def test_fault_fail_after_zero_answers_nothing() -> None:
    card = EmulatedDesfire(badge_state())
    card.faults.fail_after = 0
    before = copy.deepcopy(card.state)
    with pytest.raises(CardGone):
        card.process(h("905A000003") + AID + h("00"))
    assert card.answered == 0 and card.state == before


def test_open_badge_creates_then_reloads_its_state_file(tmp_path: Path) -> None:
    path = tmp_path / "badges" / "a.json"
    card = open_badge(path, uid=UID)
    assert load_state(path) == BadgeState.blank(UID)
    session, _ = session_on(card)
    assert session.get_version().uid == UID
    card.state.picc_key = BadgeKey(PICC_KEY, 1, KeyType.AES)  # as after the legacy step
    session.authenticate_ev2_first(0, PICC_KEY)
    session.create_application(AID, keys=5)
    again = open_badge(path, product="ev2")
    assert AID in again.state.applications and again.product == "ev2"
    with pytest.raises(ValueError, match="new badge"):
        open_badge(path, uid=h("04000000000001"))


def test_open_badge_without_a_file_draws_a_uid() -> None:
    card = open_badge(rng=lambda n: b"\x77" * n)
    assert card.state.uid == h("04777777777777")
    assert card.state == BadgeState.blank(card.state.uid)
    with pytest.raises(ValueError, match="7 bytes"):
        open_badge(uid=b"\x04")


@pytest.mark.pcsc
@pytest.mark.usefixtures("pcscd")
def test_mie_emulate_desfire_on_vpcd(tmp_path: Path) -> None:
    # `mie emulate desfire --state` in its own process: a blank badge created in the state file,
    # reached through pcscd as a contactless card; a change is in the file before the answer.
    from mie.transport.pcsc import PcscConnection
    from tests.harness import READER0, emulator_process

    path = tmp_path / "badge.json"
    with emulator_process("desfire", "--state", str(path), "--uid", UID.hex()):
        with PcscConnection(READER0) as connection:
            assert connection.transport is Transport.CONTACTLESS
            session = DesfireSession(connection)
            assert session.get_version().uid == UID
            assert session.get_application_ids() == ()
            session.create_application(AID, keys=5)  # blank PICC settings: free create
    assert AID in load_state(path).applications
