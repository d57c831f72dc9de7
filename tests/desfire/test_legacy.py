"""mie.hazmat.desfire_legacy: ISO authentication (1A) to a blank badge's DES PICC key and the
change to AES, byte-exact against bytes computed here on `cryptography`'s TripleDES (no
published trace is known, so these check the EV1 rules with 8-byte blocks, not a real badge);
then the same host side against the emulated badge's card side (an enrolment's first step)."""

from __future__ import annotations

import copy
import zlib
from collections.abc import Callable

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.cmac import CMAC

from mie.desfire.channel import Ev1Channel
from mie.desfire.errors import CardCryptogramError, DesfireAuthenticationError
from mie.desfire.session import AuthState, DesfireSession
from mie.desfire.types import KeyType
from mie.emulation.base import EmulatedConnection
from mie.emulation.desfire import EmulatedDesfire, Ev1CardSession
from mie.emulation.desfire_state import Application, BadgeKey, BadgeState
from mie.emulation.desfire_state import KeyType as StateKeyType
from mie.hazmat.desfire_legacy import (
    LEGACY_OPT_IN,
    authenticate_iso,
    change_key_from_legacy,
    legacy_session_key,
    tdes_cmac,
)
from tests.desfire.ev2_ref import MORE, OK, new_session, wrapped
from tests.unit.fakes import Script, h

BLANK = bytes(16)
RND_A = h("0102030405060708")
RND_B = h("A1A2A3A4A5A6A7A8")
AES_KEY = h("00112233445566778899AABBCCDDEEFF")


def enc(key: bytes, iv: bytes, data: bytes) -> bytes:
    e = Cipher(TripleDES(key + key[:8] if len(key) == 16 else key), modes.CBC(iv)).encryptor()
    return e.update(data) + e.finalize()


def rotl(data: bytes) -> bytes:
    return data[1:] + data[:1]


def auth_script(key: bytes, rnd_a: bytes, rnd_b: bytes, key_no: int = 0) -> Script:
    e_rnd_b = enc(key, bytes(8), rnd_b)
    # 3DES-CBC decryption of E(RndB) under IV 0 gives RndB back; the next IV is its last block.
    token = enc(key, e_rnd_b[-8:], rnd_a + rotl(rnd_b))
    answer = enc(key, token[-8:], rotl(rnd_a))
    return [
        (wrapped(0x1A, bytes([key_no])), e_rnd_b, MORE),
        (wrapped(0xAF, token), answer, OK),
    ]


def test_authenticate_iso_then_change_the_picc_key_to_aes() -> None:
    session_key = RND_A[0:4] + RND_B[0:4]  # a DES key (halves equal): A[0:4] ‖ B[0:4]
    plain = (
        AES_KEY
        + h("01")
        + (~zlib.crc32(h("C480") + AES_KEY + h("01")) & 0xFFFFFFFF).to_bytes(4, "little")
    )
    plain += bytes(-len(plain) % 8)
    change = (wrapped(0xC4, h("80") + enc(session_key * 2, bytes(8), plain)), b"", OK)
    session, connection = new_session([*auth_script(BLANK, RND_A, RND_B), change], RND_A)
    authenticate_iso(session, 0, BLANK, opt_in=LEGACY_OPT_IN)
    assert session.auth == AuthState("legacy", 0, bytes(3))
    channel = session.protocol.channel
    assert isinstance(channel, Ev1Channel) and channel.cipher.block == 8
    change_key_from_legacy(session, 0, AES_KEY, version=1, opt_in=LEGACY_OPT_IN)
    assert session.protocol.channel is None and channel.is_dropped
    assert connection.remaining == 0


def test_2k3des_and_3k3des_session_keys() -> None:
    a, b = bytes(range(16)), bytes(range(16, 32))
    k2 = h("00112233445566778899AABBCCDDEEFF")
    assert legacy_session_key(k2, a[:8], b[:8]) == a[0:4] + b[0:4] + a[4:8] + b[4:8]
    k3 = bytes(range(24))
    assert legacy_session_key(k3, a, b) == (
        a[0:4] + b[0:4] + a[6:10] + b[6:10] + a[12:16] + b[12:16]
    )


def test_3k3des_authentication_uses_16_byte_randoms() -> None:
    key = bytes(range(24))
    rnd_a, rnd_b = bytes(range(100, 116)), bytes(range(200, 216))
    session, connection = new_session(auth_script(key, rnd_a, rnd_b, key_no=2), rnd_a)
    authenticate_iso(session, 2, key, opt_in=LEGACY_OPT_IN)
    assert session.auth == AuthState("legacy", 2, bytes(3))
    assert connection.remaining == 0


def ref_subkey2(key: bytes) -> bytes:
    e = Cipher(TripleDES(key + key[:8]), modes.ECB()).encryptor()  # noqa: S305 - one block
    value = int.from_bytes(e.update(bytes(8)) + e.finalize(), "big")
    for _ in range(2):
        value = (value << 1) ^ (0x1B if value >> 63 else 0)
        value &= (1 << 64) - 1
    return value.to_bytes(8, "big")


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 16, 20])
def test_tdes_cmac_chains_from_an_iv(size: int) -> None:
    key, iv, data = (
        h("0123456789ABCDEF FEDCBA9876543210"),
        h("1122334455667788"),
        bytes(range(size)),
    )
    if size >= 8:
        mac = CMAC(TripleDES(key + key[:8]))
        mac.update(bytes(x ^ y for x, y in zip(data[:8], iv, strict=True)) + data[8:])
        expected = mac.finalize()
    else:
        padded = data + b"\x80" + bytes(7 - size)
        block = bytes(x ^ y ^ z for x, y, z in zip(padded, iv, ref_subkey2(key), strict=True))
        expected = enc(key, bytes(8), block)
    assert tdes_cmac(key, data, iv) == expected
    plain = CMAC(TripleDES(key + key[:8]))
    plain.update(data)
    assert tdes_cmac(key, data) == plain.finalize()


def test_a_maced_response_under_the_legacy_session() -> None:
    session_key = (RND_A[0:4] + RND_B[0:4]) * 2
    iv = tdes_cmac(session_key, h("6400"))  # the command's CMAC, not sent
    tag = tdes_cmac(session_key, h("10 00"), iv)[:8]
    script = [*auth_script(BLANK, RND_A, RND_B), (wrapped(0x64, h("00")), h("10") + tag, OK)]
    session, connection = new_session(script, RND_A)
    authenticate_iso(session, 0, BLANK, opt_in=LEGACY_OPT_IN)
    assert session.get_key_version(0) == 0x10
    assert connection.remaining == 0


@pytest.mark.parametrize("opt_in", [None, True, "LEGACY_OPT_IN", object()])
def test_without_the_opt_in_nothing_is_sent(opt_in: object) -> None:
    session, connection = new_session([])
    with pytest.raises(ValueError, match="opt_in=LEGACY_OPT_IN"):
        authenticate_iso(session, 0, BLANK, opt_in=opt_in)
    with pytest.raises(ValueError, match="opt_in=LEGACY_OPT_IN"):
        change_key_from_legacy(session, 0, AES_KEY, version=1, opt_in=opt_in)
    assert connection.sent == []


def test_change_key_from_legacy_needs_a_legacy_session() -> None:
    session, connection = new_session([])
    with pytest.raises(ValueError, match="legacy session"):
        change_key_from_legacy(session, 0, AES_KEY, version=1, opt_in=LEGACY_OPT_IN)
    assert connection.sent == []


def test_a_wrong_rnd_a_prime_is_a_cryptogram_error() -> None:
    script = auth_script(BLANK, RND_A, RND_B)
    script[1] = (script[1][0], bytes(8), OK)
    session, _ = new_session(script, RND_A)
    with pytest.raises(CardCryptogramError):
        authenticate_iso(session, 0, BLANK, opt_in=LEGACY_OPT_IN)
    assert session.protocol.channel is None and session.auth is None


def test_mie_loads_no_legacy_code() -> None:
    import subprocess
    import sys

    code = (
        "import sys, mie, mie.desfire.session, mie.desfire.channel;"
        "assert not any(m.startswith('mie.hazmat') for m in sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the host side against the emulated badge's card side ---------------------------------

UID = h("04958CAA5C5E80")


class Counting(EmulatedConnection):
    """The emulated badge, every APDU sent kept."""

    def __init__(self, card: EmulatedDesfire) -> None:
        super().__init__(card)
        self.sent: list[bytes] = []

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent.append(bytes(apdu))
        return super().send_and_receive(apdu)


def fixed_rng(*values: bytes) -> Callable[[int], bytes]:
    queue = list(values)

    def rng(size: int) -> bytes:
        value = queue.pop(0)
        assert len(value) == size
        return value

    return rng


def blank_session() -> tuple[DesfireSession, EmulatedDesfire, Counting]:
    card = EmulatedDesfire(BadgeState.blank(UID))
    connection = Counting(card)
    return DesfireSession(connection), card, connection


def test_the_badge_answers_the_reference_bytes_of_an_iso_authentication() -> None:
    # The card side, fed the host messages computed above on cryptography, answers exactly
    # the bytes computed there (RndB from the badge's rng): both ends agree with the rules.
    card = EmulatedDesfire(BadgeState.blank(UID), rng=fixed_rng(RND_B))
    session_key = RND_A[0:4] + RND_B[0:4]
    plain = (
        AES_KEY
        + h("01")
        + (~zlib.crc32(h("C480") + AES_KEY + h("01")) & 0xFFFFFFFF).to_bytes(4, "little")
    )
    plain += bytes(-len(plain) % 8)
    script = [
        *auth_script(BLANK, RND_A, RND_B),
        (wrapped(0xC4, h("80") + enc(session_key * 2, bytes(8), plain)), b"", OK),
    ]
    for command, data, sw in script:
        assert card.process(command) == data + sw.to_bytes(2, "big")
    assert card.state.picc_key == BadgeKey(AES_KEY, 1, StateKeyType.AES)
    assert card.session is None


def test_a_blank_badge_gets_an_aes_picc_key_under_the_legacy_session() -> None:
    session, card, _ = blank_session()
    authenticate_iso(session, 0, BLANK, opt_in=LEGACY_OPT_IN)
    assert session.auth == AuthState("legacy", 0, bytes(3))
    assert isinstance(card.session, Ev1CardSession) and card.session.scheme == "legacy"
    # A MACed answer under the 3DES session (EV1 MACs every response).
    assert session.get_key_version(0) == 0
    assert session.get_key_settings().key_type is KeyType.DES_2K3DES
    change_key_from_legacy(session, 0, AES_KEY, version=1, opt_in=LEGACY_OPT_IN)
    assert session.auth is None and card.session is None
    assert card.state.picc_key == BadgeKey(AES_KEY, 1, StateKeyType.AES)
    session.authenticate_ev2_first(0, AES_KEY)
    assert session.get_key_version(0) == 1
    assert session.get_key_settings().key_type is KeyType.AES
    # The DES key is gone: ISO authentication to the AES key is refused.
    with pytest.raises(DesfireAuthenticationError):
        authenticate_iso(session, 0, BLANK, opt_in=LEGACY_OPT_IN)
    assert session.auth is None and card.session is None


def test_a_wrong_des_key_is_refused_and_the_badge_untouched() -> None:
    session, card, _ = blank_session()
    before = copy.deepcopy(card.state)
    with pytest.raises(DesfireAuthenticationError) as caught:
        authenticate_iso(session, 0, h("0011223344556677 0011223344556677"), opt_in=LEGACY_OPT_IN)
    assert caught.value.sw == 0x91AE
    assert session.auth is None and session.protocol.channel is None
    assert card.session is None and card.state == before
    # The badge still takes its default key.
    authenticate_iso(session, 0, BLANK, opt_in=LEGACY_OPT_IN)
    assert session.auth == AuthState("legacy", 0, bytes(3))


def test_the_blank_des_key_refuses_aes_authentications() -> None:
    session, card, _ = blank_session()
    before = copy.deepcopy(card.state)
    with pytest.raises(DesfireAuthenticationError):
        session.authenticate_ev2_first(0, BLANK)
    with pytest.raises(DesfireAuthenticationError):
        session.authenticate_aes(0, BLANK)
    assert card.state == before


@pytest.mark.parametrize("opt_in", [None, True, "LEGACY_OPT_IN"])
def test_without_the_opt_in_the_library_sends_nothing_to_the_badge(opt_in: object) -> None:
    session, card, connection = blank_session()
    before = copy.deepcopy(card.state)
    with pytest.raises(ValueError, match="opt_in=LEGACY_OPT_IN"):
        authenticate_iso(session, 0, BLANK, opt_in=opt_in)
    authenticate_iso(session, 0, BLANK, opt_in=LEGACY_OPT_IN)
    sent = len(connection.sent)
    with pytest.raises(ValueError, match="opt_in=LEGACY_OPT_IN"):
        change_key_from_legacy(session, 0, AES_KEY, version=1, opt_in=opt_in)
    assert len(connection.sent) == sent and card.state == before


def test_session_change_key_refuses_des_keys() -> None:
    session, _, connection = blank_session()
    authenticate_iso(session, 0, BLANK, opt_in=LEGACY_OPT_IN)
    sent = len(connection.sent)
    with pytest.raises(ValueError, match="AES keys"):
        session.change_key(0, BLANK, version=0, key_type=KeyType.DES_2K3DES)
    assert len(connection.sent) == sent


@pytest.mark.parametrize(
    ("key_type", "key"),
    [
        (StateKeyType.DES, h("00112233445566778899AABBCCDDEEFF")),  # 2K3DES, halves differ
        (StateKeyType.DES, h("0011223344556677") * 2),  # single DES
        (StateKeyType.TDES_3K, bytes(range(24))),
    ],
)
def test_both_ends_agree_on_each_legacy_session_key(key_type: StateKeyType, key: bytes) -> None:
    # An application key of each 3DES kind: the session keys must agree, or the MAC of the
    # GetKeyVersion answer (and the enciphered GetCardUID) would not verify.
    state = BadgeState.blank(UID)
    state.applications[h("494DF0")] = Application(0x0B, [BadgeKey(key, 7, key_type)])
    card = EmulatedDesfire(state)
    session = DesfireSession(EmulatedConnection(card))
    session.select_application(h("494DF0"))
    authenticate_iso(session, 0, key, opt_in=LEGACY_OPT_IN)
    assert session.get_key_version(0) == 7
    assert session.get_card_uid() == UID
    assert session.get_key_version(0) == 7
