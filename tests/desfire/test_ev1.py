"""DesfireSession over EV1 AES (AuthenticateAES ``AA``) and EV1 secure messaging, byte-exact on
the traces of desfire.md §8.1-§8.4 (ELM's published exchanges; §8.4 is derived from the §2
rules, not an outside trace)."""

from __future__ import annotations

import pytest

from mie.core.channel import CommMode
from mie.core.errors import BadResponseError
from mie.desfire import crypto
from mie.desfire.channel import Ev1Channel
from mie.desfire.errors import CardCryptogramError, DesfireStatusError, ResponseIntegrityError
from mie.desfire.session import AuthState, DesfireSession
from tests.desfire.ev2_ref import MORE, OK, new_session, wrapped
from tests.unit.fakes import Script, ScriptedConnection, h

AID = h("010000")
SELECT = (wrapped(0x5A, AID), b"", OK)
TRACES = [
    # key, key_no, E(RndB), RndA, E(RndA ‖ RndB') chained, E(RndA'), session key
    (
        "00000000000000000000000000000000",
        0,
        "B969FDFE56FD91FC9DE6F6F213B8FD1E",
        "F44B26F5686F3A391CD38EBD10772281",
        "36AAD7DF6E436BA08D18613830A70D5AD43E3D3F4A8D47541EEE623A934E4774",
        "800DB680BC146BD121D6578F2D2E2059",
        "F44B26F5C05DDD7110772281C4D066E8",
    ),
    (
        "10182028303840485058606870788088",
        1,
        "B351CB2465D4F33AC627FD6E87A168F2",
        "40E7D27174CBA675E8EFBAB99C530E3D",
        "044B6CAC343A0865895149649CA8DDE1F5AC4EC67BD208900AF02F049E05F0B0",
        "A2EE144B1012FBEB7B2F11132D95A454",
        "40E7D271626FFBD49C530E3D304F5B17",
    ),
]


def auth_script(trace: tuple[str | int, ...]) -> list[tuple[bytes, bytes, int]]:
    _, key_no, e_rnd_b, _, token, answer, _ = trace
    assert isinstance(key_no, int)
    return [
        (wrapped(0xAA, bytes([key_no])), h(str(e_rnd_b)), MORE),
        (wrapped(0xAF, h(str(token))), h(str(answer)), OK),
    ]


@pytest.mark.parametrize("trace", TRACES)
def test_authenticate_aes_traces(trace: tuple[str | int, ...]) -> None:
    key, key_no = h(str(trace[0])), int(trace[1])
    session, connection = new_session([SELECT, *auth_script(trace)], h(str(trace[3])))
    session.select_application(AID)
    session.authenticate_aes(key_no, key)
    assert session.auth == AuthState("ev1-aes", key_no, AID)
    assert isinstance(session.protocol.channel, Ev1Channel)
    assert connection.remaining == 0


def test_authenticate_then_change_the_authenticated_key() -> None:
    # §8.1 (key 0) gives the session key of §8.3 (a): ChangeKey(0) right after, IV 0.
    trace = TRACES[0]
    change = (
        wrapped(0xC4, h("00E9F85E219496C2B58C1090DC3935FAE9E840CF61B383D9531946256B1F110C10")),
        b"",
        OK,
    )
    session, connection = new_session([SELECT, *auth_script(trace), change], h(str(trace[3])))
    session.select_application(AID)
    session.authenticate_aes(0, bytes(16))
    channel = session.protocol.channel
    session.change_key(0, h("00102030405060708090A0B0B0A09080"), version=0x10)
    assert connection.remaining == 0
    # The badge ended the session: the host dropped its side.
    assert session.protocol.channel is None and session.auth is None
    assert isinstance(channel, Ev1Channel) and channel.is_dropped


def ev1_session(
    key: str, aid: bytes = AID, script: Script | None = None
) -> tuple[DesfireSession, ScriptedConnection, Ev1Channel]:
    """A session as AuthenticateAES with key 0 would leave it, on the session key of a trace."""
    session, connection = new_session(script or [])
    session._aid = aid
    channel = Ev1Channel(h(key))
    session.protocol.install_channel(channel)
    session._auth = AuthState("ev1-aes", 0, aid)
    return session, connection, channel


def test_change_another_key() -> None:
    # §8.3 (b): ChangeKey(1), old key 0, CRC of the command then CRC of the new key.
    enc = h("E7ECCB6BD1CA64BC161A12B1C024F71430337408C8A87EACAB7A1FF18951FCA3")
    session, connection, channel = ev1_session(
        "C2A1E47BD8100044FE6D00A74D7AB17C",
        script=[(wrapped(0xC4, h("01") + enc), h("2128D3CD9C9ACFFF"), OK)],
    )
    session.change_key(1, h("00102030405060708090A0B0B0A09080"), version=0x10, old_key=bytes(16))
    assert connection.remaining == 0
    assert session.protocol.channel is channel
    assert bytes(channel._iv or b"") == h("2128D3CD9C9ACFFFF6EB9546ADF35E17")


def test_get_key_version_chains_the_iv() -> None:
    # §8.2: the command's CMAC is not sent but becomes the IV; the response MAC is checked.
    session, connection, channel = ev1_session(
        "90F7A20191036845EC63DECD544B9931",
        script=[(wrapped(0x64, h("00")), h("108A8FA36F55CD210D"), OK)],
    )
    assert session.get_key_version(0) == 0x10
    assert bytes(channel._iv or b"") == h("8A8FA36F55CD210DD8054658AC70D99A")
    assert connection.remaining == 0


@pytest.mark.parametrize("bit", range(0, 64, 9))
def test_a_response_mac_one_bit_off(bit: int) -> None:
    answer = bytearray(h("108A8FA36F55CD210D"))
    answer[1 + bit // 8] ^= 1 << (bit % 8)
    session, _, channel = ev1_session(
        "90F7A20191036845EC63DECD544B9931", script=[(wrapped(0x64, h("00")), bytes(answer), OK)]
    )
    with pytest.raises(ResponseIntegrityError):
        session.get_key_version(0)
    assert channel.is_dropped and session.auth is None


def test_get_card_uid_enciphered() -> None:
    # §8.4 (derived): the response deciphers from the command's CMAC.
    session, connection, _ = ev1_session(
        "F44B26F5C05DDD7110772281C4D066E8",
        script=[(wrapped(0x51), h("34D4129E78B2D870323400779D9050C4"), OK)],
    )
    assert session.get_card_uid() == h("04958CAA5C5E80")
    assert connection.remaining == 0


def test_get_card_uid_with_a_bad_crc() -> None:
    session, _, channel = ev1_session(
        "F44B26F5C05DDD7110772281C4D066E8",
        script=[(wrapped(0x51), h("34D4129E78B2D870323400779D9050C5"), OK)],
    )
    with pytest.raises(ResponseIntegrityError):
        session.get_card_uid()
    assert channel.is_dropped


def test_rnd_a_prime_wrong_is_a_cryptogram_error() -> None:
    trace: list[str | int] = list(TRACES[0])
    answer = bytearray(h(str(trace[5])))
    answer[15] ^= 1
    trace[5] = bytes(answer).hex()
    session, _ = new_session(auth_script(tuple(trace)), h(str(trace[3])))
    with pytest.raises(CardCryptogramError):
        session.authenticate_aes(0, bytes(16))
    assert session.protocol.channel is None and session.auth is None


def test_read_signature_outside_a_session() -> None:
    signature = bytes(range(56))
    session, connection = new_session([(wrapped(0x3C, h("00")), signature, 0x9190)])
    assert session.read_signature() == signature
    assert connection.remaining == 0


@pytest.mark.parametrize(
    ("answer", "sw", "error"),
    [
        (bytes(55), 0x9190, BadResponseError),
        (bytes(57), 0x9190, BadResponseError),
        (bytes(56), 0x9100, DesfireStatusError),
        (b"", 0x911C, DesfireStatusError),
    ],
)
def test_read_signature_refuses_other_answers(
    answer: bytes, sw: int, error: type[Exception]
) -> None:
    session, _ = new_session([(wrapped(0x3C, h("00")), answer, sw)])
    with pytest.raises(error):
        session.read_signature()


def test_read_signature_inside_a_session_refuses_plain_and_sends_nothing() -> None:
    session, connection, _ = ev1_session("F44B26F5C05DDD7110772281C4D066E8")
    with pytest.raises(ValueError, match="plain mode inside a session"):
        session.read_signature(mode=CommMode.PLAIN)
    assert connection.sent == []


def _ev1_full_signature(key: bytes, signature: bytes) -> tuple[bytes, bytes]:
    """:return: (the IV after the command, the EV1 FULL answer) for Read_Sig, by the §2 rules:
    the command CMACed into the IV, the answer E_IV(sig ‖ CRC32(sig ‖ 90) ‖ 00…)."""
    iv = crypto.cmac(key, h("3C00"), bytes(16))
    plain = signature + crypto.crc32(signature + b"\x90")
    plain += bytes(-len(plain) % 16)
    return iv, crypto.aes_cbc_encrypt(key, iv, plain)


def test_read_signature_inside_an_ev1_session_is_enciphered_with_its_crc() -> None:
    key = h("F44B26F5C05DDD7110772281C4D066E8")
    signature = bytes(range(56))
    _, answer = _ev1_full_signature(key, signature)
    assert len(answer) == 64
    session, connection, channel = ev1_session(
        key.hex(), script=[(wrapped(0x3C, h("00")), answer, 0x9190)]
    )
    assert session.read_signature() == signature
    assert connection.remaining == 0
    assert session.protocol.channel is channel and session.auth is not None
    assert bytes(channel._iv or b"") == answer[-16:]


def test_read_signature_inside_an_ev1_session_refuses_a_bad_crc() -> None:
    key = h("F44B26F5C05DDD7110772281C4D066E8")
    _, answer = _ev1_full_signature(key, bytes(range(56)))
    changed = answer[:-1] + bytes([answer[-1] ^ 1])
    session, _, channel = ev1_session(key.hex(), script=[(wrapped(0x3C, h("00")), changed, 0x9190)])
    with pytest.raises(ResponseIntegrityError):
        session.read_signature()
    assert channel.is_dropped and session.auth is None
