"""mie.hazmat.desfire_legacy: ISO authentication (1A) to a blank badge's DES PICC key and the
change to AES, byte-exact against bytes computed here on `cryptography`'s TripleDES (no
published trace is known, so these check the EV1 rules with 8-byte blocks, not a real badge)."""

from __future__ import annotations

import zlib

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.cmac import CMAC

from mie.desfire.channel import Ev1Channel
from mie.desfire.errors import CardCryptogramError
from mie.desfire.session import AuthState
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
