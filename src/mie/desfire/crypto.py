"""Cryptography of MIFARE DESFire EV1/EV2/EV3 badges, AES only, on :mod:`cryptography`.

Every AES, CMAC and ECDSA operation is :mod:`cryptography`'s; this module only arranges the
inputs the DESFire protocols define: the CRC32 of EV1 full mode, the EV1 session key and its
CMAC chained on a running IV, the EV2 session keys, MACs and IVs (NXP AN12343, AN12196), the
AN10922 key diversification, and the originality signature check.

Keys are ``bytes`` and appear in no message, repr or log. A check that fails raises:
:class:`~mie.errors.SecureMessagingError` for a MAC, CRC or padding,
:class:`~mie.desfire.errors.OriginalitySignatureError` for the originality signature, and
:class:`~mie.desfire.errors.DesfireInputError` for an argument of the wrong length.
"""

from __future__ import annotations

import hmac
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mie.core.errors import SecureMessagingError
from mie.desfire.errors import DesfireInputError, OriginalitySignatureError

BLOCK_SIZE = 16
KEY_SIZE = 16
RND_SIZE = 16
MAC_SIZE = 8
TI_SIZE = 4
CRC_SIZE = 4
UID_SIZE = 7
MAX_CMD_CTR = 0xFFFF
MAX_DIVERSIFICATION_INPUT = 31
ORIGINALITY_SIGNATURE_SIZE = 56
ZERO_IV = bytes(BLOCK_SIZE)

_AN10922_AES128 = b"\x01"
_SV1_PREFIX = bytes.fromhex("A55A00010080")
_SV2_PREFIX = bytes.fromhex("5AA500010080")
_COMMAND_IV_LABEL = b"\xa5\x5a"
_RESPONSE_IV_LABEL = b"\x5a\xa5"
_SECP224R1_SCALAR = 28


def _require_length(name: str, value: bytes, size: int) -> None:
    if len(value) != size:
        raise DesfireInputError(f"{name} must be {size} bytes, got {len(value)}")


def _require_blocks(name: str, value: bytes) -> None:
    if len(value) % BLOCK_SIZE:
        raise DesfireInputError(f"{name} must be a multiple of 16 bytes, got {len(value)}")


def _require_byte(name: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise DesfireInputError(f"{name} must be one byte (0..255), got {value}")


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _ecb(key: bytes) -> Cipher[modes.ECB]:
    # ECB on single blocks only: the EV2 IVs and the CMAC chaining below are one-block operations.
    return Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305


def _encrypt_block(key: bytes, block: bytes) -> bytes:
    encryptor = _ecb(key).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def _decrypt_block(key: bytes, block: bytes) -> bytes:
    decryptor = _ecb(key).decryptor()
    return decryptor.update(block) + decryptor.finalize()


def _plain_cmac(key: bytes, data: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def _last_block_with_k2(key: bytes, chained: bytes) -> bytes:
    """:return: ``E(K, chained XOR K2)``, the last step of a CMAC whose final block was padded.

    :mod:`cryptography` neither exposes the subkey K2 nor takes an IV, so the step is made a
    real CMAC: a one-byte tail ``00`` is padded to ``00 80 00..`` and masked with K2, and the
    block before it is chosen (by one AES decryption) so that its ciphertext cancels that
    padding and leaves ``chained``.
    """
    tail = b"\x00"
    first = _decrypt_block(key, _xor(chained, pad_iso9797_m2(tail)))
    return _plain_cmac(key, first + tail)


def crc32(data: bytes) -> bytes:
    """CRC-32/JAMCRC of EV1 full mode: reflected polynomial ``EDB88320``, initial value
    ``FFFFFFFF``, no final XOR.

    :param data: the bytes covered (``Cmd ‖ header ‖ data`` for a command, ``data ‖ status``
        for a response).
    :return: the 4 CRC bytes as the badge sends them, little-endian.
    """
    return (~zlib.crc32(data) & 0xFFFFFFFF).to_bytes(CRC_SIZE, "little")


def pad_iso9797_m2(data: bytes) -> bytes:
    """ISO/IEC 9797-1 padding method 2 (EV2 full mode): ``80`` always, then zeros to 16 bytes.

    :param data: the bytes to pad.
    :return: ``data ‖ 80 ‖ 00…``, a multiple of 16 bytes (a full block is added when ``data``
        is one already).
    """
    padded = data + b"\x80"
    return padded + bytes(-len(padded) % BLOCK_SIZE)


def unpad_iso9797_m2(data: bytes) -> bytes:
    """Remove ISO/IEC 9797-1 method-2 padding.

    :param data: padded bytes, a non-empty multiple of 16 bytes.
    :return: the bytes before the padding.
    :raises SecureMessagingError: when the last block does not end in ``80 00…``.
    """
    stripped = data.rstrip(b"\x00")
    if (
        not data
        or len(data) % BLOCK_SIZE
        or not stripped.endswith(b"\x80")
        or len(data) - len(stripped) >= BLOCK_SIZE
    ):
        raise SecureMessagingError("EV2 response: bad ISO/IEC 9797-1 padding")
    return stripped[:-1]


def pad_zeros(data: bytes) -> bytes:
    """Zero padding of EV1 full mode (no ``80``).

    :param data: the bytes to pad.
    :return: ``data`` followed by zeros to a multiple of 16 bytes (nothing added when it is one).
    """
    return data + bytes(-len(data) % BLOCK_SIZE)


def aes_cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-128-CBC encryption, no padding (the DESFire protocols pad themselves).

    :param key: 16-byte AES key.
    :param iv: 16-byte IV.
    :param data: plaintext, a multiple of 16 bytes.
    :return: the ciphertext, as long as ``data``.
    :raises DesfireInputError: on a wrong length.
    """
    _require_length("AES key", key, KEY_SIZE)
    _require_length("IV", iv, BLOCK_SIZE)
    _require_blocks("plaintext", data)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def aes_cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-128-CBC decryption, no padding removed.

    :param key: 16-byte AES key.
    :param iv: 16-byte IV.
    :param data: ciphertext, a multiple of 16 bytes.
    :return: the plaintext, as long as ``data``.
    :raises DesfireInputError: on a wrong length.
    """
    _require_length("AES key", key, KEY_SIZE)
    _require_length("IV", iv, BLOCK_SIZE)
    _require_blocks("ciphertext", data)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def rotate_left(data: bytes) -> bytes:
    """:return: ``data`` rotated left by one byte (RndB' from RndB, RndA' from RndA)."""
    return data[1:] + data[:1]


def cmac(key: bytes, data: bytes, iv: bytes = ZERO_IV) -> bytes:
    """AES-CMAC (NIST SP 800-38B) of ``data``, its CBC chain started from ``iv``.

    With the default zero IV this is plain CMAC. EV1 secure messaging chains the running
    session IV into every CMAC and takes the full result as the next IV.

    :param key: 16-byte AES key.
    :param data: the bytes to MAC.
    :param iv: 16-byte chaining value.
    :return: the 16-byte CMAC.
    :raises DesfireInputError: on a wrong key or IV length.
    """
    _require_length("AES key", key, KEY_SIZE)
    _require_length("IV", iv, BLOCK_SIZE)
    if len(data) >= BLOCK_SIZE:
        # CBC from an IV is CBC from zero over a first block XORed with that IV.
        return _plain_cmac(key, _xor(data[:BLOCK_SIZE], iv) + data[BLOCK_SIZE:])
    return _last_block_with_k2(key, _xor(iv, pad_iso9797_m2(data)))


def diversify_aes128(master_key: bytes, diversification_input: bytes) -> bytes:
    """NXP AN10922 §2.2 AES-128 key diversification.

    The message ``01 ‖ input`` is padded to **32** bytes with ``80 00…`` and its last block
    masked with K2 when shorter than 32 bytes; at exactly 32 bytes it is not padded and K1 is
    used. Plain CMAC pads short messages to 16 bytes only (libfreefare issue #91): inputs of
    1..15 bytes differ from it, and are handled here.

    :param master_key: 16-byte AES master key.
    :param diversification_input: 1..31 bytes, typically ``UID(7) ‖ AID(3) ‖ system identifier``.
    :return: the 16-byte diversified key.
    :raises DesfireInputError: on a master key that is not 16 bytes or an input outside 1..31
        bytes.
    """
    _require_length("master key", master_key, KEY_SIZE)
    if not 1 <= len(diversification_input) <= MAX_DIVERSIFICATION_INPUT:
        raise DesfireInputError(
            f"Diversification input must be 1..31 bytes, got {len(diversification_input)}"
        )
    message = _AN10922_AES128 + diversification_input
    if len(message) == 2 * BLOCK_SIZE:
        return _plain_cmac(master_key, message)
    padded = message + b"\x80" + bytes(2 * BLOCK_SIZE - len(message) - 1)
    first = _encrypt_block(master_key, padded[:BLOCK_SIZE])
    return _last_block_with_k2(master_key, _xor(first, padded[BLOCK_SIZE:]))


# EV1 (AuthenticateAES, ``AA``) and its secure messaging.


def ev1_session_key(rnd_a: bytes, rnd_b: bytes) -> bytes:
    """EV1 AES session key ``RndA[0:4] ‖ RndB[0:4] ‖ RndA[12:16] ‖ RndB[12:16]``.

    :param rnd_a: the reader's 16-byte random.
    :param rnd_b: the badge's 16-byte random.
    :return: the 16-byte session key (used for both CMAC and encryption).
    :raises DesfireInputError: on a wrong length.
    """
    _require_length("RndA", rnd_a, RND_SIZE)
    _require_length("RndB", rnd_b, RND_SIZE)
    return rnd_a[0:4] + rnd_b[0:4] + rnd_a[12:16] + rnd_b[12:16]


def ev1_truncate_mac(full_cmac: bytes) -> bytes:
    """:return: the EV1 MAC on the wire: the first 8 bytes of a 16-byte CMAC."""
    _require_length("CMAC", full_cmac, BLOCK_SIZE)
    return full_cmac[:MAC_SIZE]


def ev1_verify_response_mac(
    session_key: bytes, iv: bytes, data: bytes, status: int, mac: bytes
) -> bytes:
    """Check the MAC of an EV1 response: the first 8 bytes of ``CMAC_IV(data ‖ status)``.

    :param session_key: the EV1 session key.
    :param iv: the running IV, as the command left it.
    :param data: the response data without the MAC (all frames concatenated).
    :param status: the final status byte (``00``).
    :param mac: the 8 MAC bytes the badge sent.
    :return: the full CMAC, the next running IV.
    :raises SecureMessagingError: when the MAC does not verify.
    """
    _require_byte("status", status)
    full_cmac = cmac(session_key, data + bytes([status]), iv)
    if not hmac.compare_digest(full_cmac[:MAC_SIZE], mac):
        raise SecureMessagingError("EV1 response MAC does not verify")
    return full_cmac


def ev1_encrypt(session_key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """Encipher EV1 full-mode command data: zero padding, then AES-CBC from the running IV.

    The caller builds ``plaintext`` with its CRC32 (:func:`crc32` over ``Cmd ‖ header ‖
    data``); the next running IV is the last ciphertext block.

    :param session_key: the EV1 session key.
    :param iv: the running IV.
    :param plaintext: ``data ‖ CRC32…``, before padding.
    :return: the ciphertext.
    :raises DesfireInputError: on a wrong key or IV length.
    """
    return aes_cbc_encrypt(session_key, iv, pad_zeros(plaintext))


def ev1_decrypt_response(
    session_key: bytes, iv: bytes, ciphertext: bytes, status: int = 0, length: int | None = None
) -> bytes:
    """Decipher EV1 full-mode response data ``E(data ‖ CRC32(data ‖ status) ‖ 00…)``.

    :param session_key: the EV1 session key.
    :param iv: the running IV (for a command without data, its CMAC).
    :param ciphertext: the enciphered bytes (all frames concatenated, without the status).
    :param status: the final status byte the CRC covers.
    :param length: the data length when the command defines it; otherwise the CRC is searched
        in the last block and its padding.
    :return: the data.
    :raises SecureMessagingError: when no CRC32 and zero padding check, or the ciphertext is
        not a non-empty multiple of 16 bytes.
    """
    _require_byte("status", status)
    if not ciphertext or len(ciphertext) % BLOCK_SIZE:
        raise SecureMessagingError("EV1 response: enciphered data is not whole AES blocks")
    plaintext = aes_cbc_decrypt(session_key, iv, ciphertext)
    last = len(plaintext) - CRC_SIZE
    candidates = [length] if length is not None else range(last, last - BLOCK_SIZE, -1)
    for size in candidates:
        if 0 <= size <= last and _ev1_crc_checks(plaintext, size, status):
            return plaintext[:size]
    raise SecureMessagingError("EV1 response: CRC32 or padding does not check")


def _ev1_crc_checks(plaintext: bytes, size: int, status: int) -> bool:
    crc_end = size + CRC_SIZE
    padding = plaintext[crc_end:]
    if len(padding) >= BLOCK_SIZE or padding.strip(b"\x00"):
        return False
    expected = crc32(plaintext[:size] + bytes([status]))
    return hmac.compare_digest(plaintext[size:crc_end], expected)


# EV2 (AuthenticateEV2First/NonFirst, ``71``/``77``) and its secure messaging.


def ev2_session_keys(key: bytes, rnd_a: bytes, rnd_b: bytes) -> tuple[bytes, bytes]:
    """EV2 session keys (AN12343 §"Session key generation"):
    ``CMAC(K, SV1)`` and ``CMAC(K, SV2)`` with ``SV = A5 5A|5A A5 ‖ 00 01 00 80 ‖ RndA[0:2] ‖
    (RndA[2:8] XOR RndB[0:6]) ‖ RndB[6:16] ‖ RndA[8:16]``.

    :param key: the 16-byte AES key authenticated with.
    :param rnd_a: the reader's 16-byte random.
    :param rnd_b: the badge's 16-byte random.
    :return: ``(SesAuthENCKey, SesAuthMACKey)``.
    :raises DesfireInputError: on a wrong length.
    """
    _require_length("AES key", key, KEY_SIZE)
    _require_length("RndA", rnd_a, RND_SIZE)
    _require_length("RndB", rnd_b, RND_SIZE)
    context = rnd_a[0:2] + _xor(rnd_a[2:8], rnd_b[0:6]) + rnd_b[6:16] + rnd_a[8:16]
    return _plain_cmac(key, _SV1_PREFIX + context), _plain_cmac(key, _SV2_PREFIX + context)


def ev2_truncate_mac(full_cmac: bytes) -> bytes:
    """:return: the EV2 MAC (MACt): bytes 1, 3, …, 15 (from 0) of a 16-byte CMAC, which NXP
    calls the even-numbered bytes."""
    _require_length("CMAC", full_cmac, BLOCK_SIZE)
    return full_cmac[1::2]


def _counter(cmd_ctr: int) -> bytes:
    if not 0 <= cmd_ctr <= MAX_CMD_CTR:
        raise DesfireInputError(f"Command counter must be 0..65535, got {cmd_ctr}")
    return cmd_ctr.to_bytes(2, "little")


def _ev2_mac(mac_key: bytes, code: int, cmd_ctr: int, ti: bytes, data: bytes) -> bytes:
    _require_length("TI", ti, TI_SIZE)
    counter = _counter(cmd_ctr)
    return ev2_truncate_mac(cmac(mac_key, bytes([code]) + counter + ti + data))


def ev2_command_mac(mac_key: bytes, command: int, cmd_ctr: int, ti: bytes, data: bytes) -> bytes:
    """EV2 command MAC: ``MACt(CMAC(SesAuthMACKey, Cmd ‖ CmdCtr ‖ TI ‖ header ‖ data))``.

    :param mac_key: SesAuthMACKey.
    :param command: the command byte.
    :param cmd_ctr: the command counter (sent little-endian).
    :param ti: the 4-byte transaction identifier.
    :param data: the header in clear, then the data as sent (enciphered in full mode).
    :return: the 8 MAC bytes.
    :raises DesfireInputError: on a wrong length or range.
    """
    _require_byte("command", command)
    return _ev2_mac(mac_key, command, cmd_ctr, ti, data)


def ev2_response_mac(mac_key: bytes, status: int, cmd_ctr: int, ti: bytes, data: bytes) -> bytes:
    """EV2 response MAC: ``MACt(CMAC(SesAuthMACKey, status ‖ CmdCtr ‖ TI ‖ data))``.

    :param mac_key: SesAuthMACKey.
    :param status: the response status byte (``00``).
    :param cmd_ctr: the counter **after** the increment of this command (CmdCtr + 1).
    :param ti: the 4-byte transaction identifier.
    :param data: the response data as sent (enciphered in full mode), without the MAC.
    :return: the 8 MAC bytes.
    :raises DesfireInputError: on a wrong length or range.
    """
    _require_byte("status", status)
    return _ev2_mac(mac_key, status, cmd_ctr, ti, data)


def ev2_verify_response_mac(
    mac_key: bytes, status: int, cmd_ctr: int, ti: bytes, data: bytes, mac: bytes
) -> None:
    """Check an EV2 response MAC (see :func:`ev2_response_mac`), in constant time.

    :param mac: the 8 MAC bytes the badge sent.
    :raises SecureMessagingError: when the MAC does not verify.
    """
    expected = ev2_response_mac(mac_key, status, cmd_ctr, ti, data)
    if not hmac.compare_digest(expected, mac):
        raise SecureMessagingError("EV2 response MAC does not verify")


def _ev2_iv(enc_key: bytes, label: bytes, ti: bytes, cmd_ctr: int) -> bytes:
    _require_length("AES key", enc_key, KEY_SIZE)
    _require_length("TI", ti, TI_SIZE)
    return _encrypt_block(enc_key, label + ti + _counter(cmd_ctr) + bytes(8))


def ev2_command_iv(enc_key: bytes, ti: bytes, cmd_ctr: int) -> bytes:
    """EV2 command IV: ``E_ECB(SesAuthENCKey, A5 5A ‖ TI ‖ CmdCtr ‖ 00 * 8)``.

    :param enc_key: SesAuthENCKey.
    :param ti: the 4-byte transaction identifier.
    :param cmd_ctr: the command counter (little-endian in the block).
    :return: the 16-byte IV.
    :raises DesfireInputError: on a wrong length or range.
    """
    return _ev2_iv(enc_key, _COMMAND_IV_LABEL, ti, cmd_ctr)


def ev2_response_iv(enc_key: bytes, ti: bytes, cmd_ctr: int) -> bytes:
    """EV2 response IV: ``E_ECB(SesAuthENCKey, 5A A5 ‖ TI ‖ CmdCtr ‖ 00 * 8)``.

    :param enc_key: SesAuthENCKey.
    :param ti: the 4-byte transaction identifier.
    :param cmd_ctr: the counter **after** the increment of this command (CmdCtr + 1).
    :return: the 16-byte IV.
    :raises DesfireInputError: on a wrong length or range.
    """
    return _ev2_iv(enc_key, _RESPONSE_IV_LABEL, ti, cmd_ctr)


def ev2_encrypt(enc_key: bytes, iv: bytes, data: bytes) -> bytes:
    """Encipher EV2 full-mode data: ISO/IEC 9797-1 method 2 padding, then AES-CBC.

    :param enc_key: SesAuthENCKey.
    :param iv: the command IV (:func:`ev2_command_iv`).
    :param data: the command data (the header stays in clear and is not passed here).
    :return: the ciphertext (at least one block: padding is always added).
    :raises DesfireInputError: on a wrong key or IV length.
    """
    return aes_cbc_encrypt(enc_key, iv, pad_iso9797_m2(data))


def ev2_decrypt(enc_key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """Decipher EV2 full-mode response data and remove its padding.

    Check the response MAC first (:func:`ev2_verify_response_mac`): EV2 MACs the ciphertext.

    :param enc_key: SesAuthENCKey.
    :param iv: the response IV (:func:`ev2_response_iv`).
    :param ciphertext: the enciphered bytes, a non-empty multiple of 16 bytes.
    :return: the data.
    :raises SecureMessagingError: on a length that is not whole blocks or bad padding.
    """
    if not ciphertext or len(ciphertext) % BLOCK_SIZE:
        raise SecureMessagingError("EV2 response: enciphered data is not whole AES blocks")
    return unpad_iso9797_m2(aes_cbc_decrypt(enc_key, iv, ciphertext))


# Originality signature (Read_Sig, ``3C``).


@dataclass(frozen=True)
class OriginalityKey:
    """A public key that originality signatures may verify with.

    :param name: the product family the key belongs to (returned by a successful check).
    :param point: the uncompressed secp224r1 point (``04 ‖ X ‖ Y``, 57 bytes).
    """

    name: str
    point: bytes

    @classmethod
    def from_public_key(cls, name: str, key: ec.EllipticCurvePublicKey) -> OriginalityKey:
        """A key for an emulated badge or a test, from a :mod:`cryptography` public key.

        :param name: the name a successful check returns.
        :param key: a secp224r1 public key.
        :return: the key.
        :raises DesfireInputError: when the key is on another curve.
        """
        if not isinstance(key.curve, ec.SECP224R1):
            raise DesfireInputError(f"Originality key must be on secp224r1, not {key.curve.name}")
        return cls(name, key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """:return: the key as a :mod:`cryptography` public key.
        :raises DesfireInputError: when ``point`` is not a secp224r1 point."""
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP224R1(), self.point)
        except ValueError as e:
            raise DesfireInputError(
                f"Originality key {self.name!r} is not a secp224r1 point"
            ) from e


# NXP originality public keys, as published in proxmark3 client/src/crypto/originality.c
# (RfidResearchGroup/proxmark3 1c8c3b78d4d8), NXP AN12196 §8.2 and AN12343; each verifies the
# real signatures quoted in tests/desfire/test_crypto.py except the NTAG413/EV1 key, which is
# known from NTAG413 samples only.
NXP_ORIGINALITY_KEYS: tuple[OriginalityKey, ...] = (
    OriginalityKey(
        "DESFire EV2",
        bytes.fromhex(
            "04B304DC4C615F5326FE9383DDEC9AA892DF3A57FA7FFB3276192BC0EAA252ED"
            "45A865E3B093A3D0DCE5BE29E92F1392CE7DE321E3E5C52B3A"
        ),
    ),
    OriginalityKey(
        "DESFire EV2 XL",
        bytes.fromhex(
            "04CD5D45E50B1502F0BA4656FF37669597E7E183251150F9574CC8DA56BF01C7"
            "ABE019E29FEA48F9CE22C3EA4029A765E1BC95A89543BAD1BC"
        ),
    ),
    OriginalityKey(
        "DESFire EV3",
        bytes.fromhex(
            "041DB46C145D0A36539C6544BD6D9B0AA62FF91EC48CBC6ABAE36E0089A46F0D"
            "08C8A715EA40A63313B92E90DDC1730230E0458A33276FB743"
        ),
    ),
    OriginalityKey(
        "DESFire Light",
        bytes.fromhex(
            "040E98E117AAA36457F43173DC920A8757267F44CE4EC5ADD3C54075571AEBBF"
            "7B942A9774A1D94AD02572427E5AE0A2DD36591B1FB34FCF3D"
        ),
    ),
    OriginalityKey(
        "NTAG413 DNA, DESFire EV1",
        bytes.fromhex(
            "04BB5D514F7050025C7D0F397310360EEC91EAF792E96FC7E0F496CB4E669D41"
            "4F877B7B27901FE67C2E3B33CD39D1C797715189AC951C2ADD"
        ),
    ),
    OriginalityKey(
        "NTAG424 DNA",
        bytes.fromhex(
            "048A9B380AF2EE1B98DC417FECC263F8449C7625CECE82D9B916C992DA209D68"
            "422B81EC20B65A66B5102A61596AF3379200599316A00A1410"
        ),
    ),
)


def originality_digest(uid: bytes) -> bytes:
    """:return: the 28-byte ECDSA input for ``uid``: the UID itself, used as the digest without
    hashing, left-padded with zeros to the size of a secp224r1 scalar.
    :raises DesfireInputError: when ``uid`` is not 7 bytes."""
    _require_length("UID", uid, UID_SIZE)
    return bytes(_SECP224R1_SCALAR - len(uid)) + uid


def verify_originality_signature(
    uid: bytes, signature: bytes, keys: Sequence[OriginalityKey] = NXP_ORIGINALITY_KEYS
) -> OriginalityKey:
    """Check a badge's originality signature (Read_Sig): ECDSA on secp224r1 over the UID.

    :param uid: the 7-byte UID (the real one, not a random UID).
    :param signature: the 56 bytes ``r ‖ s`` (big-endian) the badge returned.
    :param keys: the keys to try; the NXP keys by default, a test key for an emulated badge.
    :return: the key that verified the signature.
    :raises OriginalitySignatureError: on a signature that is not 56 bytes, or that verifies
        with none of ``keys``.
    :raises DesfireInputError: on a UID that is not 7 bytes or a key that is not a point.
    """
    digest = originality_digest(uid)
    if len(signature) != ORIGINALITY_SIGNATURE_SIZE:
        raise OriginalitySignatureError(
            f"Originality signature must be 56 bytes, got {len(signature)}"
        )
    r = int.from_bytes(signature[:_SECP224R1_SCALAR], "big")
    s = int.from_bytes(signature[_SECP224R1_SCALAR:], "big")
    der = encode_dss_signature(r, s)
    algorithm = ec.ECDSA(Prehashed(hashes.SHA224()))
    for key in keys:
        try:
            key.public_key().verify(der, digest, algorithm)
        except InvalidSignature:
            continue
        return key
    raise OriginalitySignatureError(
        f"Originality signature verifies with none of the {len(keys)} trusted keys"
    )
