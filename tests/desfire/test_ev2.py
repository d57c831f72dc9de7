"""DesfireSession's EV2 authentication and secure messaging, byte-exact on scripted bytes.

Expected bytes are NXP AN12196 traces (as quoted in tests/desfire/test_crypto.py) or are
computed here with `cryptography` (tests/desfire/ev2_ref.py), never with the code under test.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import pytest

from mie.core.apdu import CommandApdu
from mie.core.channel import CommMode
from mie.core.errors import BadResponseError, SecureMessagingError
from mie.desfire.channel import Ev2Channel
from mie.desfire.errors import (
    CardCryptogramError,
    DesfireAuthenticationError,
    DesfireStatusError,
    ResponseIntegrityError,
)
from mie.desfire.session import AuthState, DesfireSession
from mie.desfire.types import AccessRights
from tests.desfire.ev2_ref import (
    MORE,
    OK,
    ZERO,
    Ev2Ref,
    cbc_decrypt,
    cbc_encrypt,
    new_session,
    response_script,
    rotl,
    session_keys,
    wrapped,
)
from tests.unit.fakes import Script, ScriptedConnection, h

# AN12196 §6.6/§6.10: key, RndA, E(RndB), E(RndA ‖ RndB'), E(TI ‖ RndA' ‖ caps), TI, ENC, MAC.
AN12196_AUTH = [
    (
        "00000000000000000000000000000000",
        "13C5DB8A5930439FC3DEF9A4C675360F",
        "A04C124213C186F22399D33AC2A30215",
        "35C3E05A752E0144BAC0DE51C1F22C56B34408A23D8AEA266CAB947EA8E0118D",
        "3FA64DB5446D1F34CD6EA311167F5E4985B89690C04A05F17FA7AB2F08120663",
        "9D00C4DF",
    ),
    (
        "00000000000000000000000000000000",
        "B98F4C50CF1C2E084FD150E33992B048",
        "B875CEB0E66A6C5CD00898DC371F92D1",
        "FF0306E47DFBC50087C4D8A78E88E62DE1E8BE457AA477C707E2F0874916A8B1",
        "0CC9A8094A8EEA683ECAAC5C7BF20584206D0608D477110FC6B3D5D3F65C3A6A",
        "7614281A",
    ),
]


def an12196_first(trace: tuple[str, ...]) -> Script:
    _, _, e_rnd_b, pcd, picc, _ = trace
    return [
        (h("9071000002000000"), h(e_rnd_b), MORE),
        (wrapped(0xAF, h(pcd)), h(picc), OK),
    ]


def test_an12196_authenticate_then_write_data_full() -> None:
    # AN12196 §6.6 authentication, then §5.4 WriteData(02, 0, 128) FULL at CmdCtr 0 with the
    # keys and TI it gives: the session keys and TI are right to the byte.
    trace = AN12196_AUTH[0]
    header = h("02000000800000")
    ciphertext = h(
        "421C73A27D827658AF481FDFF20A5025B559D0E3AA21E58D347F343CFFC768BF"
        "E596C706BC00F2176781D4B0242642A0FF5A42C461AAF894D9A1284B8C76BCFA"
        "658ACD40555D362E08DB15CF421B51283F9064BCBE20E96CAE545B407C9D651A"
        "3315B27373772E5DA2367D2064AE054AF996C6F1F669170FA88CE8C4E3A4A7BB"
        "BEF0FD971FF532C3A802AF745660F2B4"
    )
    sent = header + ciphertext + h("D1D9A8499661EBF3")
    parts = [sent[i : i + 54] for i in range(0, len(sent), 54)]
    script = [
        *an12196_first(trace),
        (wrapped(0x8D, parts[0]), b"", MORE),
        (wrapped(0xAF, parts[1]), b"", MORE),
        (wrapped(0xAF, parts[2]), h("FC222E5F7A542452"), OK),
    ]
    session, connection = new_session(script, h(trace[1]))
    session.authenticate_ev2_first(0, h(trace[0]))
    assert session.auth == AuthState("ev2", 0, bytes(3))
    ndef = h("0051D1014D5504") + b"choose.url.com/ntag424?e=" + b"0" * 32 + b"&c=" + b"0" * 16
    plain = ndef + bytes(128 - len(ndef))
    apdu = CommandApdu(0x90, 0x8D, 0, 0, header + plain, 256)
    assert session.protocol.transmit(
        apdu, header_length=7, mode=CommMode.FULL, response_mode=CommMode.MAC
    ) == (b"", OK)
    assert connection.remaining == 0


def test_an12196_second_authentication_then_short_write() -> None:
    trace = AN12196_AUTH[1]
    sent = h("030000000A0000") + h("6B5E6804909962FC4E3FF5522CF0F843") + h("6C0C53315B9C73AA")
    script = [*an12196_first(trace), (wrapped(0x8D, sent), h("C26D236E4A7C046D"), OK)]
    session, connection = new_session(script, h(trace[1]))
    session.authenticate_ev2_first(0, h(trace[0]))
    apdu = CommandApdu(0x90, 0x8D, 0, 0, h("030000000A0000") + h("0102030405060708090A"), 256)
    session.protocol.transmit(apdu, header_length=7, mode=CommMode.FULL, response_mode=CommMode.MAC)
    assert connection.remaining == 0


def test_an12196_mac_mode_get_file_settings() -> None:
    # AN12196 §5.3: GetFileSettings(02) MACed at CmdCtr 0 (an NTAG 424 file: SDM options).
    channel = Ev2Channel(bytes(16), h("8248134A386E86EB7FAF54A52E536CB6"), h("7A21085E"))
    answer = h("0040EEEE000100D1FE001F00004400004400002000006A0000")
    session, connection = new_session(
        [(wrapped(0xF5, h("02") + h("6597A457C8CD442C")), answer + h("2A474282E7A47986"), OK)]
    )
    session.protocol.install_channel(channel)
    # The MAC verifies, then the settings parser refuses the NTAG-only options.
    with pytest.raises(BadResponseError, match="7 bytes, got 25"):
        session.get_file_settings(2)
    assert connection.remaining == 0
    assert channel.cmd_ctr == 1


def test_an12196_get_card_uid() -> None:
    # AN12196 §7.3: GetCardUID, command MACed, response enciphered and MACed, CmdCtr 0.
    channel = Ev2Channel(
        h("2B4D963C014DC36F24F69A50A394F875"), h("379D32130CE61705DD5FD8C36B95D764"), h("DF055522")
    )
    session, connection = new_session(
        [
            (
                wrapped(0x51, h("8E2C155ADDA99BE3")),
                h("70756055688505B52A5E26E59E329CD6595F672298EA41B7"),
                OK,
            )
        ]
    )
    session.protocol.install_channel(channel)
    assert session.get_card_uid() == h("04958CAA5C5E80")
    assert connection.remaining == 0


# desfire.md §8.8: K 00*16, RndA, RndB -> SesAuthENC / SesAuthMAC.
K0 = bytes(16)
RND_A = h("B04D0787C93EE0CC8CACC8E86F16C6FE")
RND_B = h("FA659AD0DCA738DD65DC7DC38612AD81")
ENC = h("63DC07286289A7A6C0334CA31C314A04")
MAC = h("774F26743ECE6AF5033B6AE8522946F6")
TI = h("A1B2C3D4")
UID = h("04958CAA5C5E80")


def first_script(
    key: bytes = K0, key_no: int = 0, rnd_a: bytes = RND_A, rnd_b: bytes = RND_B, ti: bytes = TI
) -> Script:
    """The badge's side of AuthenticateEV2First, computed here."""
    e_rnd_b = cbc_encrypt(key, ZERO, rnd_b)
    token = cbc_encrypt(key, ZERO, rnd_a + rotl(rnd_b))
    answer = cbc_encrypt(key, ZERO, ti + rotl(rnd_a) + bytes(12))
    return [
        (wrapped(0x71, bytes([key_no, 0])), e_rnd_b, MORE),
        (wrapped(0xAF, token), answer, OK),
    ]


def authenticated(script: Script) -> tuple[DesfireSession, ScriptedConnection]:
    session, connection = new_session(first_script() + script, RND_A)
    session.authenticate_ev2_first(0, K0)
    return session, connection


def test_the_reference_session_keys_come_from_the_handshake() -> None:
    assert session_keys(K0, RND_A, RND_B) == (ENC, MAC)  # the reference code agrees with §8.8
    ref = Ev2Ref(ENC, MAC, TI)
    script = [(wrapped(0x51, ref.command(0x51)), ref.response(UID, full=True), OK)]
    session, connection = authenticated(script)
    assert session.get_card_uid() == UID
    assert connection.remaining == 0


def test_read_data_full_comes_in_frames_and_is_deciphered() -> None:
    record = bytes(range(176))
    ref = Ev2Ref(ENC, MAC, TI)
    command = ref.command(0xBD, h("01000000000000"))
    response = ref.response(record, full=True)
    assert len(response) == 200  # 176 + 16 of padding + 8 of MAC: 4 frames of <= 59 bytes
    script = response_script(0xBD, command, response)
    assert len(script) == 4
    session, connection = authenticated(script)
    assert session.read_data(1, mode=CommMode.FULL) == record
    assert connection.remaining == 0


def test_read_signature_in_a_session_is_full_mode_and_the_session_goes_on() -> None:
    # Read_Sig inside an EV2 session (COMMAND_MODES): the command MACed, the answer
    # E(sig ‖ 80 0…) ‖ MACt over 90 ‖ CmdCtr+1 ‖ TI ‖ ciphertext, 72 bytes in 2 frames, 9190.
    signature = bytes(range(0x80, 0x80 + 56))
    ref = Ev2Ref(ENC, MAC, TI)
    command = ref.command(0x3C, h("00"))
    response = ref.response(signature, full=True, status=0x90)
    assert len(response) == 72
    script = [
        (wrapped(0x3C, command), response[:59], MORE),
        (wrapped(0xAF), response[59:], 0x9190),
    ]
    after = ref.command(0xF5, h("01"))
    settings = h("0003E0EE200000")
    script.append((wrapped(0xF5, after), settings + ref.response(settings)[-8:], OK))
    session, connection = authenticated(script)
    assert session.read_signature() == signature
    assert session.auth is not None
    assert session.get_file_settings(1).size == 0x20
    assert connection.remaining == 0


@pytest.mark.parametrize("sw", [0x9100, 0x911C])
def test_read_signature_in_a_session_with_another_status_drops(sw: int) -> None:
    ref = Ev2Ref(ENC, MAC, TI)
    command = ref.command(0x3C, h("00"))
    response = ref.response(bytes(56), full=True, status=sw & 0xFF)
    session, _ = authenticated(
        [(wrapped(0x3C, command), response[:59], MORE), (wrapped(0xAF), response[59:], sw)]
    )
    with pytest.raises(DesfireStatusError):
        session.read_signature()
    assert session.protocol.channel is None and session.auth is None


def test_read_data_mac_and_plain() -> None:
    ref = Ev2Ref(ENC, MAC, TI)
    script = [
        (wrapped(0xBD, ref.command(0xBD, h("02000000100000"))), ref.response(b"M" * 16), OK),
    ]
    ref.plain()
    script.append((wrapped(0xBD, h("03040000050000")), b"plain", OK))
    session, connection = authenticated(script)
    assert session.read_data(2, 0, 16, mode=CommMode.MAC) == b"M" * 16
    assert session.read_data(3, 4, 5, mode=CommMode.PLAIN) == b"plain"
    assert session.protocol.channel is not None
    assert connection.remaining == 0


def test_write_data_full_and_mac() -> None:
    ref = Ev2Ref(ENC, MAC, TI)
    data = bytes(range(40))
    header = h("01000000280000")
    sent = ref.command(0x3D, header, data, full=True)
    assert len(sent) == 7 + 48 + 8
    script = [
        (wrapped(0x3D, sent[:54]), b"", MORE),
        (wrapped(0xAF, sent[54:]), ref.response(), OK),
    ]
    mac_sent = ref.command(0x3D, h("02100000030000"), b"abc")
    script.append((wrapped(0x3D, mac_sent), ref.response(), OK))
    session, connection = authenticated(script)
    session.write_data(1, data, mode=CommMode.FULL)
    session.write_data(2, b"abc", 16, mode=CommMode.MAC)
    assert connection.remaining == 0


def test_get_file_settings_is_maced_in_a_session() -> None:
    ref = Ev2Ref(ENC, MAC, TI)
    settings = h("0003 2030 B00000")
    script = [(wrapped(0xF5, ref.command(0xF5, h("01"))), ref.response(settings), OK)]
    session, connection = authenticated(script)
    got = session.get_file_settings(1)
    assert (got.file_type, got.mode, got.size) == (0, CommMode.FULL, 176)
    assert got.access == AccessRights(read=3, write=0, read_write=2, change=0)
    assert got.access.encode() == h("2030")
    assert connection.remaining == 0


def test_plain_commands_move_the_counter() -> None:
    ref = Ev2Ref(ENC, MAC, TI)
    script: Script = [(h("9060000000"), bytes(28), OK)]
    ref.plain()
    script.append((wrapped(0x51, ref.command(0x51)), ref.response(UID, full=True), OK))
    session, connection = authenticated(script)
    session.get_version()
    assert session.get_card_uid() == UID
    assert connection.remaining == 0


def test_non_first_rekeys_keeping_ti_and_counter() -> None:
    key2 = h("00112233445566778899AABBCCDDEEFF")
    rnd_a2 = h("0123456789ABCDEF0123456789ABCDEF")
    rnd_b2 = h("FEDCBA9876543210FEDCBA9876543210")
    # desfire.md §8.8's second vector.
    enc2, mac2 = h("195428119C8528D59580A73C7C96C6A3"), h("0AF00F6E39F904C4A6388C812D53DC94")
    assert session_keys(key2, rnd_a2, rnd_b2) == (enc2, mac2)
    first = Ev2Ref(ENC, MAC, TI)
    script = [(wrapped(0x51, first.command(0x51)), first.response(UID, full=True), OK)]
    script += [
        (wrapped(0x77, h("02")), cbc_encrypt(key2, ZERO, rnd_b2), MORE),
        (
            wrapped(0xAF, cbc_encrypt(key2, ZERO, rnd_a2 + rotl(rnd_b2))),
            cbc_encrypt(key2, ZERO, rotl(rnd_a2)),
            OK,
        ),
    ]
    second = Ev2Ref(enc2, mac2, TI, cmd_ctr=first.ctr)  # CmdCtr 1: NonFirst does not count
    script.append((wrapped(0x51, second.command(0x51)), second.response(UID, full=True), OK))
    randoms = [RND_A, rnd_a2]
    connection = ScriptedConnection(first_script() + script)
    session = DesfireSession(connection, rng=lambda n: randoms.pop(0))
    session.authenticate_ev2_first(0, K0)
    old = session.protocol.channel
    assert session.get_card_uid() == UID
    session.authenticate_ev2_non_first(2, key2)
    assert session.auth == AuthState("ev2", 2, bytes(3))
    assert isinstance(old, Ev2Channel) and old.is_dropped
    new = session.protocol.channel
    assert isinstance(new, Ev2Channel) and (new.ti, new.cmd_ctr) == (TI, 1)
    assert session.get_card_uid() == UID
    assert connection.remaining == 0


def test_non_first_needs_an_ev2_session() -> None:
    session, connection = new_session([])
    with pytest.raises(ValueError, match="EV2 session"):
        session.authenticate_ev2_non_first(2, K0)
    assert connection.sent == []


def test_select_application_drops_the_channel() -> None:
    session, connection = authenticated([(wrapped(0x5A, h("494DF0")), b"", OK)])
    channel = session.protocol.channel
    session.select_application(h("494DF0"))
    assert session.protocol.channel is None and session.auth is None
    assert isinstance(channel, Ev2Channel) and channel.is_dropped
    with pytest.raises(ValueError, match="authenticated session"):
        session.get_card_uid()
    with pytest.raises(SecureMessagingError, match="nothing was sent"):
        session.read_data(1, mode=CommMode.FULL)
    assert connection.remaining == 0


def test_a_new_authentication_drops_the_channel_first() -> None:
    session, connection = authenticated(first_script())
    old = session.protocol.channel
    session._rng = lambda n: RND_A
    session.authenticate_ev2_first(0, K0)
    assert isinstance(old, Ev2Channel) and old.is_dropped
    assert session.protocol.channel is not old
    assert connection.remaining == 0


@pytest.mark.parametrize("bit", range(64))
def test_a_response_mac_one_bit_off_returns_nothing_and_drops(bit: int) -> None:
    ref = Ev2Ref(ENC, MAC, TI)
    command = ref.command(0x51)
    response = bytearray(ref.response(UID, full=True))
    response[16 + bit // 8] ^= 1 << (bit % 8)
    script = [(wrapped(0x51, command), bytes(response), OK)]
    script.append((h("9060000000"), bytes(28), OK))  # the next command goes out plain
    session, connection = authenticated(script)
    with pytest.raises(ResponseIntegrityError):
        session.get_card_uid()
    assert session.protocol.channel is None and session.auth is None
    session.get_version()
    assert connection.remaining == 0


def test_a_replayed_response_does_not_verify() -> None:
    ref = Ev2Ref(ENC, MAC, TI)
    header = h("01000000100000")
    command = ref.command(0xBD, header)
    first = ref.response(b"R" * 16)
    script = [(wrapped(0xBD, command), first, OK)]
    script.append((wrapped(0xBD, ref.command(0xBD, header)), first, OK))  # served again
    session, connection = authenticated(script)
    assert session.read_data(1, 0, 16, mode=CommMode.MAC) == b"R" * 16
    with pytest.raises(ResponseIntegrityError):
        session.read_data(1, 0, 16, mode=CommMode.MAC)
    assert connection.remaining == 0


@pytest.mark.parametrize(
    ("mode", "answer"),
    [(CommMode.MAC, bytes(7)), (CommMode.FULL, bytes(23)), (CommMode.FULL, bytes(8))],
)
def test_a_truncated_protected_response_is_an_integrity_error(
    mode: CommMode, answer: bytes
) -> None:
    ref = Ev2Ref(ENC, MAC, TI)
    script = [(wrapped(0xBD, ref.command(0xBD, h("01000000000000"))), answer, OK)]
    session, _ = authenticated(script)
    with pytest.raises(ResponseIntegrityError):
        session.read_data(1, mode=mode)
    assert session.protocol.channel is None


def test_a_full_response_with_a_good_mac_but_bad_padding() -> None:
    ref = Ev2Ref(ENC, MAC, TI)
    command = ref.command(0xBD, h("01000000000000"))
    iv = cbc_encrypt(ENC, ZERO, h("5AA5") + TI + h("0100") + bytes(8))
    ciphertext = cbc_encrypt(ENC, iv, bytes(16))  # no 80 marker
    response = ref.response(ciphertext)  # MAC over the ciphertext, as the badge does
    script = [(wrapped(0xBD, command), response, OK)]
    session, _ = authenticated(script)
    with pytest.raises(ResponseIntegrityError, match="padding"):
        session.read_data(1, mode=CommMode.FULL)


@pytest.mark.parametrize("sw", [0x919D, 0x917E, 0x9142, 0x91F0])
def test_an_error_status_drops_the_channel(sw: int) -> None:
    ref = Ev2Ref(ENC, MAC, TI)
    script = [(wrapped(0xBD, ref.command(0xBD, h("01000000000000"))), b"", sw)]
    session, _ = authenticated(script)
    channel = session.protocol.channel
    with pytest.raises(DesfireStatusError) as caught:
        session.read_data(1, mode=CommMode.FULL)
    assert caught.value.sw == sw and caught.value.status.value in (sw & 0xFF, -1)
    assert session.protocol.channel is None and session.auth is None
    assert isinstance(channel, Ev2Channel) and channel.is_dropped


def test_a_wrong_key_is_an_authentication_error() -> None:
    e_rnd_b = cbc_encrypt(K0, ZERO, RND_B)
    token = cbc_encrypt(h("01" * 16), ZERO, RND_A + rotl(cbc_decrypt(h("01" * 16), ZERO, e_rnd_b)))
    session, connection = new_session(
        [(wrapped(0x71, h("0000")), e_rnd_b, MORE), (wrapped(0xAF, token), b"", 0x91AE)], RND_A
    )
    with pytest.raises(DesfireAuthenticationError) as caught:
        session.authenticate_ev2_first(0, h("01" * 16))
    assert caught.value.status.name == "AUTHENTICATION_ERROR"
    assert session.protocol.channel is None and session.auth is None
    assert connection.remaining == 0


@pytest.mark.parametrize("bit", [0, 7, 64, 127])
def test_rnd_a_prime_off_by_one_bit_is_a_cryptogram_error(bit: int) -> None:
    rotated = bytearray(rotl(RND_A))
    rotated[bit // 8] ^= 1 << (bit % 8)
    answer = cbc_encrypt(K0, ZERO, TI + bytes(rotated) + bytes(12))
    script = first_script()
    script[1] = (script[1][0], answer, OK)
    session, _ = new_session(script, RND_A)
    with pytest.raises(CardCryptogramError):
        session.authenticate_ev2_first(0, K0)
    assert session.protocol.channel is None and session.auth is None


@pytest.mark.parametrize(("step", "size"), [(0, 15), (0, 17), (1, 16), (1, 31)])
def test_a_handshake_answer_of_the_wrong_size_is_malformed(step: int, size: int) -> None:
    script = first_script()
    script[step] = (script[step][0], bytes(size), script[step][2])
    session, _ = new_session(script[: step + 1], RND_A)
    with pytest.raises(BadResponseError):
        session.authenticate_ev2_first(0, K0)
    assert session.protocol.channel is None


def test_a_first_answer_other_than_af_is_a_status_error() -> None:
    session, _ = new_session([(wrapped(0x71, h("0000")), b"", 0x9140)], RND_A)
    with pytest.raises(DesfireStatusError) as caught:
        session.authenticate_ev2_first(0, K0)
    assert caught.value.status.name == "NO_SUCH_KEY"


@pytest.mark.parametrize(("key_no", "key"), [(14, K0), (-1, K0), (0, bytes(15)), (0, bytes(24))])
def test_bad_authentication_arguments_send_nothing(key_no: int, key: bytes) -> None:
    session, connection = new_session([])
    with pytest.raises(ValueError):
        session.authenticate_ev2_first(key_no, key)
    assert connection.sent == []


def test_the_counter_cannot_wrap() -> None:
    channel = Ev2Channel(ENC, MAC, TI, cmd_ctr=0xFFFF)
    session, _ = new_session([(h("9060000000"), bytes(28), OK)])
    session.protocol.install_channel(channel)
    with pytest.raises(ResponseIntegrityError, match="exhausted"):
        session.get_version()
    assert channel.is_dropped


def test_no_key_in_reprs() -> None:
    channel = Ev2Channel(ENC, MAC, TI)
    assert ENC.hex() not in repr(channel).lower() and MAC.hex() not in repr(channel).lower()
    session, _ = authenticated([])
    text = repr(session) + repr(session.protocol.channel)
    for secret in (ENC, MAC, RND_A, RND_B, K0 + b"\x01"):
        assert secret.hex() not in text.lower()


def jamcrc(data: bytes) -> bytes:
    return (~zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "little")


NEW_KEY = h("00102030405060708090A0B0B0A09080")


def test_change_another_key_ev2() -> None:
    ref = Ev2Ref(ENC, MAC, TI)
    old = h("11" * 16)
    xored = bytes(a ^ b for a, b in zip(NEW_KEY, old, strict=True))
    sent = ref.command(0xC4, h("81"), xored + h("01") + jamcrc(NEW_KEY), full=True)
    assert len(sent) == 1 + 32 + 8
    session, connection = authenticated([(wrapped(0xC4, sent), ref.response(), OK)])
    session.change_key(1, NEW_KEY, version=1, old_key=old)  # PICC level: KeyNo 80 | 1
    assert session.auth is not None
    assert connection.remaining == 0


def test_change_the_authenticated_key_ends_the_session() -> None:
    ref = Ev2Ref(ENC, MAC, TI)
    sent = ref.command(0xC4, h("80"), NEW_KEY + h("02"), full=True)
    session, connection = authenticated([(wrapped(0xC4, sent), b"", OK)])
    channel = session.protocol.channel
    session.change_key(0, NEW_KEY, version=2)
    assert session.protocol.channel is None and session.auth is None
    assert isinstance(channel, Ev2Channel) and channel.is_dropped
    assert connection.remaining == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"key_no": 1, "new_key": NEW_KEY, "version": 1}, "current 16-byte value"),
        ({"key_no": 1, "new_key": NEW_KEY, "version": 256, "old_key": K0}, "one byte"),
        ({"key_no": 1, "new_key": NEW_KEY[:8], "version": 1, "old_key": K0}, "16 bytes"),
    ],
)
def test_change_key_arguments_send_nothing(kwargs: dict[str, object], match: str) -> None:
    session, connection = authenticated([])
    with pytest.raises(ValueError, match=match):
        session.change_key(**kwargs)  # type: ignore[arg-type]
    assert len(connection.sent) == 2


def test_change_key_needs_a_session() -> None:
    session, connection = new_session([])
    with pytest.raises(ValueError, match="authenticated"):
        session.change_key(0, NEW_KEY, version=1)
    assert connection.sent == []


def test_personalisation_commands_are_maced() -> None:
    ref = Ev2Ref(ENC, MAC, TI)
    script: Script = []
    script.append((wrapped(0xCA, ref.command(0xCA, h("494DF0 0B 85"))), ref.response(), OK))
    script.append(
        (wrapped(0x5C, ref.command(0x5C, h("00"), h("02"), full=True)), ref.response(), OK)
    )
    script.append((wrapped(0x6A, ref.command(0x6A)), ref.response(h("494DF0 010203")), OK))
    script.append((wrapped(0x45, ref.command(0x45)), ref.response(h("0F 81")), OK))
    script.append((wrapped(0xDA, ref.command(0xDA, h("010203"))), ref.response(), OK))
    script.append((wrapped(0xFC, ref.command(0xFC)), ref.response(), OK))
    session, connection = authenticated(script)
    session.create_application(h("494DF0"), keys=5)
    session.set_configuration(random_uid=True)
    assert session.get_application_ids() == (h("494DF0"), h("010203"))
    settings = session.get_key_settings()
    assert (settings.settings, settings.max_keys, settings.key_type.name) == (0x0F, 1, "AES")
    session.delete_application(h("010203"))
    session.format_picc()
    assert connection.remaining == 0


def test_create_std_data_file_in_the_application() -> None:
    ref = Ev2Ref(ENC, MAC, TI)
    script: Script = [(wrapped(0x6F, ref.command(0x6F)), ref.response(h("0102")), OK)]
    script.append((wrapped(0xCD, ref.command(0xCD, h("01 03 2030 B00000"))), ref.response(), OK))
    script.append((wrapped(0x64, ref.command(0x64, h("02"))), ref.response(h("01")), OK))
    session, connection = authenticated(script)
    assert session.get_file_ids() == h("0102")
    access = AccessRights(read=3, write=0, read_write=2, change=0)
    session.create_std_data_file(1, 176, mode=CommMode.FULL, access=access)
    assert session.get_key_version(2) == 1
    assert connection.remaining == 0


def test_set_configuration_needs_a_session() -> None:
    session, connection = new_session([])
    with pytest.raises(ValueError, match="authenticated"):
        session.set_configuration(random_uid=True)
    assert connection.sent == []


def test_unauthenticated_commands_go_plain() -> None:
    script: Script = [
        (wrapped(0x45), h("0F 01"), OK),
        (wrapped(0xCA, h("494DF0 0B 85")), b"", OK),
        (wrapped(0xF5, h("01")), h("00 03 2030 B00000"), OK),
    ]
    session, connection = new_session(script)
    assert session.get_key_settings().key_type.name == "DES_2K3DES"
    session.create_application(h("494DF0"), keys=5)
    assert session.get_file_settings(1).size == 176
    assert connection.remaining == 0


@pytest.mark.parametrize(
    "error",
    [
        CardCryptogramError("RndA' wrong"),
        ResponseIntegrityError("MAC wrong"),
        DesfireAuthenticationError(b"", 0x91AE, 0x71),
        DesfireStatusError(b"", 0x919D, 0xBD),
    ],
)
def test_a_failed_badge_check_exits_1(error: Exception) -> None:
    from mie._cli.app import exit_code_for
    from mie.core.errors import MieError

    assert isinstance(error, MieError) and exit_code_for(error) == 1


def test_91ae_to_a_command_is_not_a_key_mismatch() -> None:
    # GetCardUID or ReadData answered 91AE: "authenticate first", not "wrong key".
    session, _ = new_session([(wrapped(0x64, h("00")), b"", 0x91AE)])
    with pytest.raises(DesfireStatusError) as caught:
        session.get_key_version(0)
    assert not isinstance(caught.value, DesfireAuthenticationError)
    assert caught.value.status.name == "AUTHENTICATION_ERROR"


@pytest.mark.parametrize("step", [0, 1])
def test_91ae_to_either_handshake_message_is_an_authentication_error(step: int) -> None:
    script = first_script()[: step + 1]
    script[step] = (script[step][0], b"", 0x91AE)
    session, _ = new_session(script, RND_A)
    with pytest.raises(DesfireAuthenticationError):
        session.authenticate_ev2_first(0, K0)


def test_the_badge_errors_carry_the_d8_codes() -> None:
    from mie.core import errors as core
    from mie.core.errors import MieError
    from mie.desfire import errors

    assert errors.ResponseIntegrityError is core.ResponseIntegrityError
    assert issubclass(errors.ResponseIntegrityError, SecureMessagingError)
    expected: dict[type[MieError], str] = {
        errors.DesfireAuthenticationError: "key_mismatch",
        errors.CardCryptogramError: "suspected_clone",
        errors.ResponseIntegrityError: "integrity_error",
        errors.RecordUntrustedError: "record_untrusted",
        errors.RecordCopiedError: "record_copied",
        errors.OriginalitySignatureError: "not_genuine",
        errors.LegacyCryptoError: "legacy_crypto",
        errors.DesfireStatusError: "card_error",
        errors.DesfireInputError: "malformed",
    }
    assert {kind: kind.code for kind in expected} == expected
    assert issubclass(errors.LegacyCryptoError, core.UnsupportedCardError)


def _answered_with_data(
    cmd: int, header: bytes, data: bytes = b"", full: bool = False
) -> tuple[DesfireSession, ScriptedConnection]:
    ref = Ev2Ref(ENC, MAC, TI)
    sent = ref.command(cmd, header, data, full=full)
    # A MAC that verifies over one byte the command never answers.
    return authenticated([(wrapped(cmd, sent), ref.response(h("00")), OK)])


OLD_KEY = h("11" * 16)
XORED = bytes(a ^ b for a, b in zip(NEW_KEY, OLD_KEY, strict=True))
NO_DATA_COMMANDS: list[tuple[str, tuple[int, bytes, bytes, bool], Callable[[DesfireSession], None]]]
NO_DATA_COMMANDS = [
    (
        "ChangeKey",
        (0xC4, h("81"), XORED + h("01") + jamcrc(NEW_KEY), True),
        lambda s: s.change_key(1, NEW_KEY, version=1, old_key=OLD_KEY),
    ),
    (
        "CreateApplication",
        (0xCA, h("494DF0 0B 85"), b"", False),
        lambda s: s.create_application(h("494DF0"), keys=5),
    ),
    (
        "DeleteApplication",
        (0xDA, h("010203"), b"", False),
        lambda s: s.delete_application(h("010203")),
    ),
    (
        "CreateStdDataFile",
        (0xCD, h("01 03 2030 B00000"), b"", False),
        lambda s: s.create_std_data_file(
            1, 176, mode=CommMode.FULL, access=AccessRights(read=3, write=0, read_write=2, change=0)
        ),
    ),
    (
        "SetConfiguration",
        (0x5C, h("00"), h("02"), True),
        lambda s: s.set_configuration(random_uid=True),
    ),
    ("FormatPICC", (0xFC, b"", b"", False), lambda s: s.format_picc()),
]


@pytest.mark.parametrize(
    ("name", "command", "call"), NO_DATA_COMMANDS, ids=[c[0] for c in NO_DATA_COMMANDS]
)
def test_a_command_that_answers_nothing_answered_with_data_is_malformed(
    name: str,
    command: tuple[int, bytes, bytes, bool],
    call: Callable[[DesfireSession], None],
) -> None:
    # As SelectApplication (428f43e): the badge answers these with the status (and its MAC)
    # alone; an answer carrying data, even MACed, is not the badge's (a transcript with another
    # exchange's answer moved there must not verify).
    session, connection = _answered_with_data(*command)
    with pytest.raises(BadResponseError, match=f"answered {name} with data"):
        call(session)
    assert connection.remaining == 0


def test_change_of_the_authenticated_key_answered_with_data_is_malformed() -> None:
    ref = Ev2Ref(ENC, MAC, TI)
    sent = ref.command(0xC4, h("80"), NEW_KEY + h("02"), full=True)
    session, _ = authenticated([(wrapped(0xC4, sent), h("00"), OK)])
    with pytest.raises(BadResponseError, match="answered ChangeKey with data"):
        session.change_key(0, NEW_KEY, version=2)
    assert session.protocol.channel is None and session.auth is None
