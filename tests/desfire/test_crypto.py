"""mie.desfire.crypto against the vectors of shared/reference/desfire.md §8 and NXP AN12196.

Each vector names its source in a comment: the desfire.md section, and the original source it
quotes (ELM = Elmue's DESFire EV1 examples, PM3 = proxmark3 desfiretest.c, LFF = libfreefare
tests, AN12196 = NXP "NTAG 424 DNA features and hints" Rev. 1.5, as quoted by the tests of
icedevml/nfc-ev2-crypto). Properties compare the module with a textbook CMAC written here, whose
subkeys are themselves checked against §8.6.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from mie.core.errors import ErrorCode, SecureMessagingError, SignatureInvalidError
from mie.desfire import crypto
from mie.desfire.errors import DesfireError, DesfireInputError, OriginalitySignatureError

h = bytes.fromhex

# --- A textbook AES-CMAC (NIST SP 800-38B), for the property tests only ---------------------


def ref_encrypt_block(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305
    return encryptor.update(block) + encryptor.finalize()


def ref_double(block: bytes) -> bytes:
    value = int.from_bytes(block, "big") << 1
    if value >> 128:
        value = (value & ((1 << 128) - 1)) ^ 0x87
    return value.to_bytes(16, "big")


def ref_subkeys(key: bytes) -> tuple[bytes, bytes]:
    k1 = ref_double(ref_encrypt_block(key, bytes(16)))
    return k1, ref_double(k1)


def ref_xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def ref_cbc_last(key: bytes, iv: bytes, blocks: bytes) -> bytes:
    state = iv
    for i in range(0, len(blocks), 16):
        state = ref_encrypt_block(key, ref_xor(state, blocks[i : i + 16]))
    return state


def ref_cmac(key: bytes, data: bytes, iv: bytes = bytes(16)) -> bytes:
    k1, k2 = ref_subkeys(key)
    if data and len(data) % 16 == 0:
        data, last = data[:-16], ref_xor(data[-16:], k1)
    else:
        padded = data + b"\x80" + bytes(-(len(data) + 1) % 16)
        data, last = padded[:-16], ref_xor(padded[-16:], k2)
    return ref_cbc_last(key, iv, data + last)


def ref_an10922(key: bytes, div_input: bytes) -> bytes:
    message = b"\x01" + div_input
    k1, k2 = ref_subkeys(key)
    if len(message) == 32:
        return ref_cbc_last(key, bytes(16), message[:16] + ref_xor(message[16:], k1))
    padded = message + b"\x80" + bytes(31 - len(message))
    return ref_cbc_last(key, bytes(16), padded[:16] + ref_xor(padded[16:], k2))


keys = st.binary(min_size=16, max_size=16)


# --- §8.6 AES-CMAC subkeys and NIST SP 800-38B (PM3 TestCMACSubkeys, LFF test_mifare_desfire_aes)


@pytest.mark.parametrize(
    ("key", "k1", "k2"),
    [
        (
            "00112233445566778899AABBCCDDEEFF",
            "FBC9F75C9413C041DFEE452D3F0706D1",
            "F793EEB928278083BFDC8A5A7E0E0D25",
        ),
        (
            "2B7E151628AED2A6ABF7158809CF4F3C",
            "FBEED618357133667C85E08F7236A8DE",
            "F7DDAC306AE266CCF90BC11EE46D513B",
        ),
    ],
)
def test_reference_subkeys_match_desfire_md_8_6(key: str, k1: str, k2: str) -> None:
    assert ref_subkeys(h(key)) == (h(k1), h(k2))


@pytest.mark.parametrize(
    ("message", "mac"),
    [
        # desfire.md §8.6 (NIST SP 800-38B example 1 and 2).
        ("", "BB1D6929E95937287FA37D129B756746"),
        ("6BC1BEE22E409F96E93D7E117393172A", "070A16B46B4D4144F79BDD9DD04A287C"),
        # RFC 4493 §4, examples 3 and 4 (same key).
        (
            "6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E5130C81C46A35CE411",
            "DFA66747DE9AE63030CA32611497C827",
        ),
        (
            "6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E51"
            "30C81C46A35CE411E5FBC1191A0A52EFF69F2445DF4F9B17AD2B417BE66C3710",
            "51F0BEBF7E3B9D92FC49741779363CFE",
        ),
    ],
)
def test_cmac_nist_vectors(message: str, mac: str) -> None:
    assert crypto.cmac(h("2B7E151628AED2A6ABF7158809CF4F3C"), h(message)) == h(mac)


@given(key=keys, iv=st.binary(min_size=16, max_size=16), data=st.binary(max_size=80))
def test_cmac_with_iv_equals_textbook_cbc_chain(key: bytes, iv: bytes, data: bytes) -> None:
    assert crypto.cmac(key, data, iv) == ref_cmac(key, data, iv)


def test_cmac_iv_changes_the_result() -> None:
    key = h("90F7A20191036845EC63DECD544B9931")
    assert crypto.cmac(key, b"\x64\x00", bytes(16)) != crypto.cmac(key, b"\x64\x00", b"\x01" * 16)


# --- §8.5 CRC32 / JAMCRC (PM3 TestCRC32) and the CRCs quoted in §8.3 (ELM) -----------------


@pytest.mark.parametrize(
    ("data", "crc"),
    [
        ("04440F3276318000", "99CE1AD4"),  # §8.5: data 04440F32763180 ‖ status 00
        ("313233343536373839", "D9C60B34"),  # §8.5: JAMCRC("123456789") = 0x340BC6D9
        ("C40000102030405060708090A0B0B0A0908010", "D2C6E66B"),  # §8.3 (a) 0x6BE6C6D2
        ("C40100102030405060708090A0B0B0A0908010", "3370B484"),  # §8.3 (b) 0x84B47033
        ("00102030405060708090A0B0B0A09080", "BFE37919"),  # §8.3 (b) CRC(newKey) 0x1979E3BF
        ("04958CAA5C5E8000", "880FF82C"),  # §8.4 UID ‖ 00
    ],
)
def test_crc32_jamcrc(data: str, crc: str) -> None:
    assert crypto.crc32(h(data)) == h(crc)


# --- §8.1 EV1 AES authentication (ELM, skelsec/pydesfire AuthTest_AES, AuthTest_AES2) -------

EV1_AUTH = [
    # key, E(RndB), RndB, RndA, PCD cryptogram, PICC answer, session key
    (
        "00000000000000000000000000000000",
        "B969FDFE56FD91FC9DE6F6F213B8FD1E",
        "C05DDD714FD788A6B7B754F3C4D066E8",
        "F44B26F5686F3A391CD38EBD10772281",
        "36AAD7DF6E436BA08D18613830A70D5AD43E3D3F4A8D47541EEE623A934E4774",
        "800DB680BC146BD121D6578F2D2E2059",
        "F44B26F5C05DDD7110772281C4D066E8",
    ),
    (
        "10182028303840485058606870788088",
        "B351CB2465D4F33AC627FD6E87A168F2",
        "626FFBD45CAF334ACCA45599304F5B17",
        "40E7D27174CBA675E8EFBAB99C530E3D",
        "044B6CAC343A0865895149649CA8DDE1F5AC4EC67BD208900AF02F049E05F0B0",
        "A2EE144B1012FBEB7B2F11132D95A454",
        "40E7D271626FFBD49C530E3D304F5B17",
    ),
]


@pytest.mark.parametrize(("key", "e_rnd_b", "rnd_b", "rnd_a", "pcd", "picc", "sess"), EV1_AUTH)
def test_ev1_authentication_trace(
    key: str, e_rnd_b: str, rnd_b: str, rnd_a: str, pcd: str, picc: str, sess: str
) -> None:
    k = h(key)
    assert crypto.aes_cbc_decrypt(k, crypto.ZERO_IV, h(e_rnd_b)) == h(rnd_b)
    # EV1 chains CBC across the exchange: the IV is the last block received, then sent.
    sent = crypto.aes_cbc_encrypt(k, h(e_rnd_b), h(rnd_a) + crypto.rotate_left(h(rnd_b)))
    assert sent == h(pcd)
    assert crypto.aes_cbc_encrypt(k, crypto.ZERO_IV, h(rnd_a) + h(rnd_b)[1:] + h(rnd_b)[:1]) != (
        h(pcd)
    )
    assert crypto.aes_cbc_decrypt(k, sent[-16:], h(picc)) == crypto.rotate_left(h(rnd_a))
    assert crypto.ev1_session_key(h(rnd_a), h(rnd_b)) == h(sess)


def test_rotate_left() -> None:
    # desfire.md §8.1: RndB -> RndB'.
    rnd_b = h("C05DDD714FD788A6B7B754F3C4D066E8")
    assert crypto.rotate_left(rnd_b) == h("5DDD714FD788A6B7B754F3C4D066E8C0")


# --- §8.2 EV1 CMAC on GetKeyVersion (ELM, Identiv apduengine sampleDocs) -------------------

EV1_SESS = h("90F7A20191036845EC63DECD544B9931")


def test_ev1_get_key_version_cmac_chain() -> None:
    tx_cmac = crypto.cmac(EV1_SESS, h("6400"), crypto.ZERO_IV)
    assert tx_cmac == h("257FC538618A944A3A20967B6F314348")
    next_iv = crypto.ev1_verify_response_mac(
        EV1_SESS, tx_cmac, h("10"), 0x00, h("8A8FA36F55CD210D")
    )
    assert next_iv == h("8A8FA36F55CD210DD8054658AC70D99A")
    assert crypto.ev1_truncate_mac(next_iv) == h("8A8FA36F55CD210D")


@pytest.mark.parametrize("bit", [0, 7, 63])
def test_ev1_response_mac_one_bit_off_is_refused(bit: int) -> None:
    tx_cmac = crypto.cmac(EV1_SESS, h("6400"))
    mac = bytearray(h("8A8FA36F55CD210D"))
    mac[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(SecureMessagingError) as info:
        crypto.ev1_verify_response_mac(EV1_SESS, tx_cmac, h("10"), 0x00, bytes(mac))
    assert info.value.code is ErrorCode.CARD_ERROR


def test_ev1_response_mac_with_the_wrong_iv_is_refused() -> None:
    with pytest.raises(SecureMessagingError):
        crypto.ev1_verify_response_mac(
            EV1_SESS, crypto.ZERO_IV, h("10"), 0x00, h("8A8FA36F55CD210D")
        )


def test_ev1_response_mac_truncated_is_refused() -> None:
    tx_cmac = crypto.cmac(EV1_SESS, h("6400"))
    with pytest.raises(SecureMessagingError):
        crypto.ev1_verify_response_mac(EV1_SESS, tx_cmac, h("10"), 0x00, h("8A8FA36F55CD21"))


# --- §8.3 EV1 full mode, ChangeKey AES (ELM, skelsec/pydesfire ChangeKeyTest_AES, _AES3) ----

NEW_KEY = h("00102030405060708090A0B0B0A09080")


def test_ev1_change_key_same_key() -> None:
    # §8.3 (a): newKey ‖ keyVer ‖ CRC32(C4 ‖ KeyNo ‖ newKey ‖ keyVer), zero padded.
    sess = h("F44B26F5C05DDD7110772281C4D066E8")
    plain = NEW_KEY + b"\x10" + crypto.crc32(b"\xc4\x00" + NEW_KEY + b"\x10")
    assert crypto.pad_zeros(plain) == h(
        "00102030405060708090A0B0B0A0908010D2C6E66B0000000000000000000000"
    )
    assert crypto.ev1_encrypt(sess, crypto.ZERO_IV, plain) == h(
        "E9F85E219496C2B58C1090DC3935FAE9E840CF61B383D9531946256B1F110C10"
    )


def test_ev1_change_key_other_key_and_response_mac() -> None:
    # §8.3 (b): (newKey XOR oldKey) ‖ keyVer ‖ CRC32(C4 ‖ KeyNo ‖ xored ‖ keyVer) ‖ CRC32(newKey).
    sess = h("C2A1E47BD8100044FE6D00A74D7AB17C")
    xored = NEW_KEY  # the old key is zero
    plain = xored + b"\x10" + crypto.crc32(b"\xc4\x01" + xored + b"\x10") + crypto.crc32(NEW_KEY)
    enc = crypto.ev1_encrypt(sess, crypto.ZERO_IV, plain)
    assert enc == h("E7ECCB6BD1CA64BC161A12B1C024F71430337408C8A87EACAB7A1FF18951FCA3")
    next_iv = crypto.ev1_verify_response_mac(sess, enc[-16:], b"", 0x00, h("2128D3CD9C9ACFFF"))
    assert next_iv == h("2128D3CD9C9ACFFFF6EB9546ADF35E17")


# --- §8.4 EV1 GetCardUID (derived in desfire.md from the §2 rules, [I]) --------------------

EV1_UID_SESS = h("F44B26F5C05DDD7110772281C4D066E8")
EV1_UID_RESPONSE = h("34D4129E78B2D870323400779D9050C4")


@pytest.mark.parametrize("length", [7, None])
def test_ev1_get_card_uid(length: int | None) -> None:
    iv = crypto.cmac(EV1_UID_SESS, h("51"))
    assert iv == h("364F68F745D5616173FFC4A987F76305")
    assert crypto.aes_cbc_decrypt(EV1_UID_SESS, iv, EV1_UID_RESPONSE) == h(
        "04958CAA5C5E80880FF82C0000000000"
    )
    uid = crypto.ev1_decrypt_response(EV1_UID_SESS, iv, EV1_UID_RESPONSE, 0x00, length)
    assert uid == h("04958CAA5C5E80")


@pytest.mark.parametrize(
    ("ciphertext", "length", "status"),
    [
        (EV1_UID_RESPONSE[:-1] + bytes([EV1_UID_RESPONSE[-1] ^ 1]), None, 0),  # tampered
        (EV1_UID_RESPONSE, 6, 0),  # wrong length announced
        (EV1_UID_RESPONSE, 13, 0),  # longer than the block allows
        (EV1_UID_RESPONSE, None, 0xAF),  # CRC over another status
        (EV1_UID_RESPONSE[:15], None, 0),  # not whole blocks
        (b"", None, 0),
    ],
)
def test_ev1_full_mode_response_refused(ciphertext: bytes, length: int | None, status: int) -> None:
    iv = crypto.cmac(EV1_UID_SESS, h("51"))
    with pytest.raises(SecureMessagingError):
        crypto.ev1_decrypt_response(EV1_UID_SESS, iv, ciphertext, status, length)


@given(key=keys, iv=st.binary(min_size=16, max_size=16), data=st.binary(max_size=60))
def test_ev1_full_mode_round_trip(key: bytes, iv: bytes, data: bytes) -> None:
    ciphertext = crypto.ev1_encrypt(key, iv, data + crypto.crc32(data + b"\x00"))
    assert crypto.ev1_decrypt_response(key, iv, ciphertext, 0x00, len(data)) == data


# --- §8.7 AN10922 AES-128 diversification (PM3 TestAn10922KDFAES, LFF test_..._an10922_aes128)

MASTER = h("00112233445566778899AABBCCDDEEFF")


def test_an10922_vector() -> None:
    div_input = h("04782E21801D80") + h("3042F5") + h("4E585020416275")  # UID ‖ AID ‖ "NXP Abu"
    assert crypto.diversify_aes128(MASTER, div_input) == h("A8DD63A3B89D54B37CA802473FDA9175")


@given(key=keys, div_input=st.binary(min_size=1, max_size=31))
def test_an10922_equals_the_textbook_construction(key: bytes, div_input: bytes) -> None:
    assert crypto.diversify_aes128(key, div_input) == ref_an10922(key, div_input)


@pytest.mark.parametrize("size", range(1, 32))
def test_an10922_short_inputs_are_not_plain_cmac(size: int) -> None:
    # libfreefare issue #91: plain CMAC pads M = 01 ‖ input to 16 bytes only, AN10922 to 32.
    # Both agree from 17 bytes of M (input of 16..31 bytes), and differ below.
    div_input = bytes(range(size))
    diversified = crypto.diversify_aes128(MASTER, div_input)
    assert diversified == ref_an10922(MASTER, div_input)
    if size >= 16:
        assert diversified == crypto.cmac(MASTER, b"\x01" + div_input)
    else:
        assert diversified != crypto.cmac(MASTER, b"\x01" + div_input)


def test_an10922_31_byte_input_uses_k1_without_padding() -> None:
    div_input = bytes(range(31))
    k1, _ = ref_subkeys(MASTER)
    message = b"\x01" + div_input
    expected = ref_cbc_last(MASTER, bytes(16), message[:16] + ref_xor(message[16:], k1))
    assert crypto.diversify_aes128(MASTER, div_input) == expected


@pytest.mark.parametrize("size", [0, 32, 40])
def test_an10922_input_out_of_bounds(size: int) -> None:
    with pytest.raises(DesfireInputError) as info:
        crypto.diversify_aes128(MASTER, bytes(size))
    assert info.value.code is ErrorCode.MALFORMED
    assert isinstance(info.value, DesfireError)


@pytest.mark.parametrize("size", [0, 15, 17, 24, 32])
def test_an10922_master_key_must_be_aes128(size: int) -> None:
    key = bytes(range(size))
    with pytest.raises(DesfireInputError) as info:
        crypto.diversify_aes128(key, b"\x01")
    assert key.hex() not in str(info.value) or not key


# --- §8.8 EV2 session keys (PM3 TestEV2SessionKeys, AN12343 pp.33-34) -----------------------


@pytest.mark.parametrize(
    ("key", "rnd_a", "rnd_b", "enc", "mac"),
    [
        (
            "00000000000000000000000000000000",
            "B04D0787C93EE0CC8CACC8E86F16C6FE",
            "FA659AD0DCA738DD65DC7DC38612AD81",
            "63DC07286289A7A6C0334CA31C314A04",
            "774F26743ECE6AF5033B6AE8522946F6",
        ),
        (
            "00112233445566778899AABBCCDDEEFF",
            "0123456789ABCDEF0123456789ABCDEF",
            "FEDCBA9876543210FEDCBA9876543210",
            "195428119C8528D59580A73C7C96C6A3",
            "0AF00F6E39F904C4A6388C812D53DC94",
        ),
    ],
)
def test_ev2_session_keys(key: str, rnd_a: str, rnd_b: str, enc: str, mac: str) -> None:
    assert crypto.ev2_session_keys(h(key), h(rnd_a), h(rnd_b)) == (h(enc), h(mac))


def test_ev2_session_vectors_sv1_sv2() -> None:
    # desfire.md §8.8: the SV1/SV2 of the first vector give the session keys by plain CMAC.
    key = bytes(16)
    sv1 = h("A55A00010080B04DFDE253EE3C6B38DD65DC7DC38612AD818CACC8E86F16C6FE")
    sv2 = h("5AA500010080B04DFDE253EE3C6B38DD65DC7DC38612AD818CACC8E86F16C6FE")
    assert crypto.cmac(key, sv1) == h("63DC07286289A7A6C0334CA31C314A04")
    assert crypto.cmac(key, sv2) == h("774F26743ECE6AF5033B6AE8522946F6")


# --- AN12196 (NTAG 424 DNA) EV2 traces ------------------------------------------------------

AN12196_AUTH = [
    # AN12196 §6.6 p.28 and §6.10 p.34: key, RndA, E(RndB), E(RndA ‖ RndB'), E(TI ‖ RndA' ‖ caps),
    # TI, SesAuthENCKey, SesAuthMACKey.
    (
        "00000000000000000000000000000000",
        "13C5DB8A5930439FC3DEF9A4C675360F",
        "A04C124213C186F22399D33AC2A30215",
        "35C3E05A752E0144BAC0DE51C1F22C56B34408A23D8AEA266CAB947EA8E0118D",
        "3FA64DB5446D1F34CD6EA311167F5E4985B89690C04A05F17FA7AB2F08120663",
        "9D00C4DF",
        "1309C877509E5A215007FF0ED19CA564",
        "4C6626F5E72EA694202139295C7A7FC7",
    ),
    (
        "00000000000000000000000000000000",
        "B98F4C50CF1C2E084FD150E33992B048",
        "B875CEB0E66A6C5CD00898DC371F92D1",
        "FF0306E47DFBC50087C4D8A78E88E62DE1E8BE457AA477C707E2F0874916A8B1",
        "0CC9A8094A8EEA683ECAAC5C7BF20584206D0608D477110FC6B3D5D3F65C3A6A",
        "7614281A",
        "7A93D6571E4B180FCA6AC90C9A7488D4",
        "FC4AF159B62E549B5812394CAB1918CC",
    ),
]


@pytest.mark.parametrize(
    ("key", "rnd_a", "e_rnd_b", "pcd", "picc", "ti", "enc", "mac"), AN12196_AUTH
)
def test_an12196_authenticate_ev2_first(
    key: str, rnd_a: str, e_rnd_b: str, pcd: str, picc: str, ti: str, enc: str, mac: str
) -> None:
    k = h(key)
    # EV2 enciphers each message on its own, IV = 0.
    rnd_b = crypto.aes_cbc_decrypt(k, crypto.ZERO_IV, h(e_rnd_b))
    sent = crypto.aes_cbc_encrypt(k, crypto.ZERO_IV, h(rnd_a) + crypto.rotate_left(rnd_b))
    assert sent == h(pcd)
    answer = crypto.aes_cbc_decrypt(k, crypto.ZERO_IV, h(picc))
    assert answer[0:4] == h(ti)
    assert answer[4:20] == crypto.rotate_left(h(rnd_a))
    assert answer[20:32] == bytes(12)  # PDcap2 ‖ PCDcap2
    assert crypto.ev2_session_keys(k, h(rnd_a), rnd_b) == (h(enc), h(mac))


def test_an12196_mac_mode_get_file_settings() -> None:
    # AN12196 §5.3 p.21: GetFileSettings(02) in CommMode.MAC, CmdCtr 0, then its response.
    mac_key, ti = h("8248134A386E86EB7FAF54A52E536CB6"), h("7A21085E")
    # The MAC input is Cmd ‖ CmdCtr ‖ TI ‖ header.
    assert crypto.ev2_truncate_mac(crypto.cmac(mac_key, h("F500007A21085E02"))) == h(
        "6597A457C8CD442C"
    )
    assert crypto.ev2_command_mac(mac_key, 0xF5, 0, ti, h("02")) == h("6597A457C8CD442C")
    data = h("0040EEEE000100D1FE001F00004400004400002000006A0000")
    assert crypto.ev2_response_mac(mac_key, 0x00, 1, ti, data) == h("2A474282E7A47986")
    crypto.ev2_verify_response_mac(mac_key, 0x00, 1, ti, data, h("2A474282E7A47986"))


# An NDEF file: NLEN 0051, a URI record "choose.url.com/ntag424?e=…&c=…", then zeros to 128 bytes.
AN12196_S54_NDEF = (
    h("0051D1014D5504") + b"choose.url.com/ntag424?e=" + b"0" * 32 + b"&c=" + b"0" * 16
)
AN12196_S54_PLAIN = AN12196_S54_NDEF + bytes(128 - len(AN12196_S54_NDEF))


def test_an12196_full_mode_write_data() -> None:
    # AN12196 §5.4 p.22: WriteData(02, offset 0, length 128) in CommMode.FULL, CmdCtr 0.
    enc_key, mac_key = h("1309C877509E5A215007FF0ED19CA564"), h("4C6626F5E72EA694202139295C7A7FC7")
    ti, header = h("9D00C4DF"), h("02000000800000")
    assert len(AN12196_S54_PLAIN) == 128
    iv = crypto.ev2_command_iv(enc_key, ti, 0)
    ciphertext = crypto.ev2_encrypt(enc_key, iv, AN12196_S54_PLAIN)
    assert ciphertext == h(
        "421C73A27D827658AF481FDFF20A5025B559D0E3AA21E58D347F343CFFC768BF"
        "E596C706BC00F2176781D4B0242642A0FF5A42C461AAF894D9A1284B8C76BCFA"
        "658ACD40555D362E08DB15CF421B51283F9064BCBE20E96CAE545B407C9D651A"
        "3315B27373772E5DA2367D2064AE054AF996C6F1F669170FA88CE8C4E3A4A7BB"
        "BEF0FD971FF532C3A802AF745660F2B4"
    )
    assert crypto.ev2_command_mac(mac_key, 0x8D, 0, ti, header + ciphertext) == h(
        "D1D9A8499661EBF3"
    )
    crypto.ev2_verify_response_mac(mac_key, 0x00, 1, ti, b"", h("FC222E5F7A542452"))


def test_an12196_full_mode_write_data_short() -> None:
    # AN12196 §6.12 p.36: WriteData(03, offset 0, length 10) in CommMode.FULL, CmdCtr 0.
    enc_key, mac_key = h("7A93D6571E4B180FCA6AC90C9A7488D4"), h("FC4AF159B62E549B5812394CAB1918CC")
    ti, header = h("7614281A"), h("030000000A0000")
    iv = crypto.ev2_command_iv(enc_key, ti, 0)
    ciphertext = crypto.ev2_encrypt(enc_key, iv, h("0102030405060708090A"))
    assert ciphertext == h("6B5E6804909962FC4E3FF5522CF0F843")
    assert crypto.ev2_command_mac(mac_key, 0x8D, 0, ti, header + ciphertext) == h(
        "6C0C53315B9C73AA"
    )
    crypto.ev2_verify_response_mac(mac_key, 0x00, 1, ti, b"", h("C26D236E4A7C046D"))


def test_an12196_full_mode_get_card_uid() -> None:
    # AN12196 §7.3 p.43: GetCardUID in CommMode.FULL, CmdCtr 0; response enciphered and MACed.
    enc_key, mac_key = h("2B4D963C014DC36F24F69A50A394F875"), h("379D32130CE61705DD5FD8C36B95D764")
    ti = h("DF055522")
    assert crypto.ev2_command_mac(mac_key, 0x51, 0, ti, b"") == h("8E2C155ADDA99BE3")
    ciphertext = h("70756055688505B52A5E26E59E329CD6")
    crypto.ev2_verify_response_mac(mac_key, 0x00, 1, ti, ciphertext, h("595F672298EA41B7"))
    iv = crypto.ev2_response_iv(enc_key, ti, 1)
    assert crypto.ev2_decrypt(enc_key, iv, ciphertext) == h("04958CAA5C5E80")


def test_an12196_response_mac_under_the_old_counter_is_refused() -> None:
    # A replayed response (counter not incremented) does not verify.
    mac_key, ti = h("379D32130CE61705DD5FD8C36B95D764"), h("DF055522")
    ciphertext = h("70756055688505B52A5E26E59E329CD6")
    with pytest.raises(SecureMessagingError):
        crypto.ev2_verify_response_mac(mac_key, 0x00, 0, ti, ciphertext, h("595F672298EA41B7"))


@pytest.mark.parametrize("bit", [0, 31, 63])
def test_ev2_response_mac_one_bit_off_is_refused(bit: int) -> None:
    mac_key, ti = h("8248134A386E86EB7FAF54A52E536CB6"), h("7A21085E")
    data = h("0040EEEE000100D1FE001F00004400004400002000006A0000")
    mac = bytearray(h("2A474282E7A47986"))
    mac[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(SecureMessagingError):
        crypto.ev2_verify_response_mac(mac_key, 0x00, 1, ti, data, bytes(mac))


def test_ev2_truncate_mac_keeps_odd_bytes() -> None:
    assert crypto.ev2_truncate_mac(bytes(range(16))) == bytes([1, 3, 5, 7, 9, 11, 13, 15])
    assert crypto.ev1_truncate_mac(bytes(range(16))) == bytes(range(8))


def test_ev2_ivs_follow_the_layout() -> None:
    enc_key, ti = h("2B4D963C014DC36F24F69A50A394F875"), h("DF055522")
    assert crypto.ev2_command_iv(enc_key, ti, 0x0102) == ref_encrypt_block(
        enc_key, h("A55A") + ti + h("0201") + bytes(8)
    )
    assert crypto.ev2_response_iv(enc_key, ti, 0x0102) == ref_encrypt_block(
        enc_key, h("5AA5") + ti + h("0201") + bytes(8)
    )


@pytest.mark.parametrize("cmd_ctr", [-1, 0x10000])
def test_ev2_counter_out_of_range(cmd_ctr: int) -> None:
    with pytest.raises(DesfireInputError):
        crypto.ev2_command_iv(bytes(16), bytes(4), cmd_ctr)
    with pytest.raises(DesfireInputError):
        crypto.ev2_command_mac(bytes(16), 0x51, cmd_ctr, bytes(4), b"")


@pytest.mark.parametrize("ti", [b"", bytes(3), bytes(5)])
def test_ev2_ti_must_be_4_bytes(ti: bytes) -> None:
    with pytest.raises(DesfireInputError):
        crypto.ev2_response_mac(bytes(16), 0, 1, ti, b"")


# --- ISO/IEC 9797-1 method 2 padding and EV2 decryption faults ------------------------------


@pytest.mark.parametrize(
    ("data", "padded"),
    [
        ("", "80000000000000000000000000000000"),
        ("0102030405060708090A", "0102030405060708090A800000000000"),
        (
            "000102030405060708090A0B0C0D0E0F",
            "000102030405060708090A0B0C0D0E0F80000000000000000000000000000000",
        ),
        ("000102030405060708090A0B0C0D0E", "000102030405060708090A0B0C0D0E80"),
    ],
)
def test_iso9797_m2_padding(data: str, padded: str) -> None:
    assert crypto.pad_iso9797_m2(h(data)) == h(padded)
    assert crypto.unpad_iso9797_m2(h(padded)) == h(data)


@pytest.mark.parametrize(
    "padded",
    [
        "",
        "00000000000000000000000000000000",  # no 80
        "01020304050607080900000000000000",  # no 80
        "0102030405060708090A80000000000001",  # not whole blocks
        "0102030405060708090A8000000000FF",  # byte after 80
        "80000000000000000000000000000000" + "00" * 16,  # padding longer than a block
    ],
)
def test_iso9797_m2_bad_padding(padded: str) -> None:
    with pytest.raises(SecureMessagingError):
        crypto.unpad_iso9797_m2(h(padded))


@given(key=keys, iv=st.binary(min_size=16, max_size=16), data=st.binary(max_size=70))
def test_ev2_full_mode_round_trip(key: bytes, iv: bytes, data: bytes) -> None:
    assert crypto.ev2_decrypt(key, iv, crypto.ev2_encrypt(key, iv, data)) == data


@pytest.mark.parametrize("size", [0, 8, 17])
def test_ev2_decrypt_refuses_partial_blocks(size: int) -> None:
    with pytest.raises(SecureMessagingError):
        crypto.ev2_decrypt(bytes(16), bytes(16), bytes(size))


def test_ev2_decrypt_with_the_wrong_iv_fails_on_padding() -> None:
    enc_key, ti = h("2B4D963C014DC36F24F69A50A394F875"), h("DF055522")
    ciphertext = h("70756055688505B52A5E26E59E329CD6")
    with pytest.raises(SecureMessagingError):
        crypto.ev2_decrypt(enc_key, crypto.ev2_command_iv(enc_key, ti, 1), ciphertext)


# --- Argument lengths ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: crypto.cmac(bytes(15), b""),
        lambda: crypto.cmac(bytes(16), b"", bytes(8)),
        lambda: crypto.aes_cbc_encrypt(bytes(16), bytes(16), bytes(15)),
        lambda: crypto.aes_cbc_decrypt(bytes(16), bytes(15), bytes(16)),
        lambda: crypto.ev1_session_key(bytes(15), bytes(16)),
        lambda: crypto.ev1_session_key(bytes(16), bytes(17)),
        lambda: crypto.ev2_session_keys(bytes(16), bytes(16), bytes(8)),
        lambda: crypto.ev2_session_keys(bytes(32), bytes(16), bytes(16)),
        lambda: crypto.ev2_command_mac(bytes(16), 0x100, 0, bytes(4), b""),
        lambda: crypto.ev1_verify_response_mac(bytes(16), bytes(16), b"", 256, bytes(8)),
        lambda: crypto.ev2_truncate_mac(bytes(8)),
    ],
)
def test_wrong_lengths_raise_a_typed_error(call: object) -> None:
    assert callable(call)
    with pytest.raises(DesfireInputError):
        call()


def test_error_messages_never_carry_the_key() -> None:
    key = h("00112233445566778899AABBCCDDEE")  # 15 bytes
    for call in (
        lambda: crypto.diversify_aes128(key, b"\x01"),
        lambda: crypto.ev2_session_keys(key, bytes(16), bytes(16)),
        lambda: crypto.cmac(key, b""),
    ):
        with pytest.raises(DesfireInputError) as info:
            call()
        assert key.hex() not in str(info.value).lower()
        assert "15" in str(info.value)


# --- Originality signature (desfire.md §5: PM3 tools/recover_pk.py, EV2C test_ecc.py) -------

ORIGINALITY_SAMPLES = [
    (
        "DESFire EV2",
        "042A41CAE45380",
        "B2769F8DDB575AEA2A680ADCA8FFED4FAB81A1E9908E2B82FE0FABB6"
        "97BBD9B23835C416970E75768F12902ACA491349E94E6589EAF4F508",
    ),
    (
        "DESFire EV2",
        "040D259A965B80",
        "B158073A7100C88C3726F4299FA58311FC3CB18744686DE3F234928A"
        "D74578F5CAD7FCEC1DCB962ECC7CC000B8557B37F45B76DC6573A58F",
    ),
    (
        "DESFire EV3",
        "04448BD2DB6B80",
        "5CBB5632795C8F15263FEFB095B51C7B541AFD914A1AE44EF6FB8AF6"
        "05EDF13DBFEE6C3A2DB372245E671DFE0D42CB1F0D0B8FE67A89D2F6",
    ),
    (
        "DESFire EV3",
        "04445DD2DB6B80",
        "166BFD9F9BFAA451172566101580DF9894F582C4A4E258C15037AD2F"
        "35A475CF1D7FB817618623A6569F991931AFB2766984E21A18512A6D",
    ),
    (
        "DESFire EV2 XL",
        "044CA092806480",
        "9D86DACD3866058B1CF122FF5FC80E997251D99179BC1F996ACF6ED7"
        "D495DA5C39DDE699E2760C08D747EF08487B9897D48957E5AFD755E2",
    ),
    (
        "DESFire Light",
        "0439556ACB6480",
        "D5BD0978106E1E38B513642335966AB21E9F950DCFCFAB45FF13D0DC"
        "3CA4C2AE7E0D671DF1240937D040DAC4601C5F66ED62C546EE03ED08",
    ),
    (
        "NTAG424 DNA",
        "047728824D6580",
        "9C7068636A285FEBA1E2406654009DCE6E8A9C9CE318BE0262ED1625"
        "19B970B32FB802858420D667D12CEBCD32BB4BC8AFE21C753A5A6C26",
    ),
]


@pytest.mark.parametrize(("name", "uid", "signature"), ORIGINALITY_SAMPLES)
def test_originality_real_samples_verify(name: str, uid: str, signature: str) -> None:
    assert crypto.verify_originality_signature(h(uid), h(signature)).name == name


@pytest.mark.parametrize(("name", "uid", "signature"), ORIGINALITY_SAMPLES)
def test_originality_flipped_uid_bit_fails(name: str, uid: str, signature: str) -> None:
    flipped = bytearray(h(uid))
    flipped[-1] ^= 0x01
    with pytest.raises(OriginalitySignatureError) as info:
        crypto.verify_originality_signature(bytes(flipped), h(signature))
    assert isinstance(info.value, SignatureInvalidError)
    assert info.value.code is ErrorCode.NOT_GENUINE


@pytest.mark.parametrize(("name", "uid", "signature"), ORIGINALITY_SAMPLES)
def test_originality_wrong_key_fails(name: str, uid: str, signature: str) -> None:
    others = [k for k in crypto.NXP_ORIGINALITY_KEYS if k.name != name]
    with pytest.raises(OriginalitySignatureError):
        crypto.verify_originality_signature(h(uid), h(signature), others)


def test_originality_no_key_fails_closed() -> None:
    uid, signature = h(ORIGINALITY_SAMPLES[0][1]), h(ORIGINALITY_SAMPLES[0][2])
    with pytest.raises(OriginalitySignatureError):
        crypto.verify_originality_signature(uid, signature, ())


@pytest.mark.parametrize("size", [0, 28, 55, 57, 64])
def test_originality_signature_length(size: int) -> None:
    signature = (h(ORIGINALITY_SAMPLES[0][2]) * 2)[:size]
    with pytest.raises(OriginalitySignatureError, match="56 bytes"):
        crypto.verify_originality_signature(h(ORIGINALITY_SAMPLES[0][1]), signature)


@pytest.mark.parametrize("size", [0, 4, 6, 8, 10])
def test_originality_uid_length(size: int) -> None:
    with pytest.raises(DesfireInputError):
        crypto.verify_originality_signature(bytes(size), h(ORIGINALITY_SAMPLES[0][2]))


def test_originality_zero_signature_fails() -> None:
    with pytest.raises(OriginalitySignatureError):
        crypto.verify_originality_signature(h(ORIGINALITY_SAMPLES[0][1]), bytes(56))


def sign_as_emulated_badge(private: ec.EllipticCurvePrivateKey, uid: bytes) -> bytes:
    der = private.sign(bytes(21) + uid, ec.ECDSA(Prehashed(hashes.SHA224())))
    r, s = decode_dss_signature(der)
    return r.to_bytes(28, "big") + s.to_bytes(28, "big")


def test_originality_injected_test_key() -> None:
    private = ec.generate_private_key(ec.SECP224R1())
    uid = h("04112233445566")
    signature = sign_as_emulated_badge(private, uid)
    test_key = crypto.OriginalityKey.from_public_key("mie test", private.public_key())
    assert crypto.verify_originality_signature(uid, signature, [test_key]) == test_key
    with pytest.raises(OriginalitySignatureError):
        crypto.verify_originality_signature(uid, signature)  # not an NXP chip
    with pytest.raises(OriginalitySignatureError):
        crypto.verify_originality_signature(h("04112233445567"), signature, [test_key])


def test_originality_digest_is_the_uid_unhashed() -> None:
    assert crypto.originality_digest(h("042A41CAE45380")) == bytes(21) + h("042A41CAE45380")


def test_originality_key_on_another_curve() -> None:
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(DesfireInputError):
        crypto.OriginalityKey.from_public_key("p256", other)
    bad = crypto.OriginalityKey("broken", b"\x04" + bytes(56))
    with pytest.raises(DesfireInputError):
        crypto.verify_originality_signature(
            h(ORIGINALITY_SAMPLES[0][1]), h(ORIGINALITY_SAMPLES[0][2]), [bad]
        )


def test_nxp_keys_are_secp224r1_points() -> None:
    assert len(crypto.NXP_ORIGINALITY_KEYS) == 6
    for key in crypto.NXP_ORIGINALITY_KEYS:
        assert isinstance(key.public_key().curve, ec.SECP224R1)


# --- Import weight ---------------------------------------------------------------------------


def test_import_loads_no_card_trust_or_asn1_code() -> None:
    code = (
        "import sys, mie.desfire.crypto; "
        "print(' '.join(m for m in sys.modules if m.startswith(('mie.cards', 'mie.trust', "
        "'asn1crypto', 'smartcard', 'mie.auth', 'mie.transport'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""
