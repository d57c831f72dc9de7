"""Legacy DES/3DES authentication to MIFARE DESFire badges. HAZARDOUS: read this first.

.. warning::

   DES and two-key 3DES are broken or deprecated ciphers, and a DES-keyed badge is not
   RIE-conformant. This module exists for one job: a blank badge ships with a DES PICC master
   key (all zeros), and enrolment must authenticate to it once to change it to AES
   (:func:`change_key_from_legacy`). Nothing else in :mod:`mie` accepts a DES key, and every
   function here refuses to run (``ValueError``, nothing sent) unless it is passed
   ``opt_in=LEGACY_OPT_IN``.

The ISO authentication (``1A``) follows the EV1 rules with 8-byte blocks (reference
``desfire.md`` §1-§2): CBC chained over the whole handshake, then one running IV shared by the
CMAC (NIST SP 800-38B, 64-bit, on ``cryptography``'s TripleDES) and the enciphered data, with
the CRC32 of EV1. The DES and 3DES primitives are :mod:`cryptography.hazmat.decrepit`'s.
[I] No published trace of an ISO authentication was found: the bytes follow the EV1 rules
(checked against PM3 ``DesfireAuthenticateEV1`` and libfreefare ``authenticate``: IV 0 once,
CBC chained over both messages, session IV 0 after) and are checked against the emulated
badge's card side (:mod:`mie.emulation.desfire`) only, never against a real badge.
"""

from __future__ import annotations

import hmac
from typing import Final

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.cmac import CMAC

from mie.desfire import constants as c
from mie.desfire.channel import Ev1Channel, Ev1Cipher
from mie.desfire.errors import CardCryptogramError, DesfireInputError
from mie.desfire.session import AuthState, DesfireSession

DES_BLOCK: Final = 8


class _LegacyOptIn:
    """The type of :data:`LEGACY_OPT_IN`."""

    def __repr__(self) -> str:
        return "LEGACY_OPT_IN"


LEGACY_OPT_IN: Final = _LegacyOptIn()
"""Pass this as ``opt_in`` to say you mean to use DES/3DES."""


def _require_opt_in(opt_in: object) -> None:
    if opt_in is not LEGACY_OPT_IN:
        raise ValueError("Legacy DES/3DES needs opt_in=LEGACY_OPT_IN (mie.hazmat.desfire_legacy)")


def _tdes(key: bytes) -> TripleDES:
    if len(key) == 16:
        # K1 K2 K1 is two-key 3DES; cryptography deprecates the 16-byte form of the same key.
        return TripleDES(key + key[:8])
    if len(key) == 24:
        return TripleDES(key)
    raise DesfireInputError(f"A 3DES key is 16 or 24 bytes, got {len(key)}")


def _check_iv(iv: bytes) -> None:
    if len(iv) != DES_BLOCK:
        raise DesfireInputError(f"A 3DES IV is 8 bytes, got {len(iv)}")


def tdes_cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """:return: 3DES-CBC of ``data`` (whole 8-byte blocks, no padding)."""
    _check_iv(iv)
    if len(data) % DES_BLOCK:
        raise DesfireInputError(f"3DES data must be whole 8-byte blocks, got {len(data)}")
    encryptor = Cipher(_tdes(key), modes.CBC(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def tdes_cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """:return: the 3DES-CBC decryption of ``data`` (whole 8-byte blocks)."""
    _check_iv(iv)
    if len(data) % DES_BLOCK:
        raise DesfireInputError(f"3DES data must be whole 8-byte blocks, got {len(data)}")
    decryptor = Cipher(_tdes(key), modes.CBC(iv)).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def _plain_cmac(key: bytes, data: bytes) -> bytes:
    mac = CMAC(_tdes(key))
    mac.update(data)
    return mac.finalize()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _pad(data: bytes) -> bytes:
    padded = data + b"\x80"
    return padded + bytes(-len(padded) % DES_BLOCK)


def tdes_cmac(key: bytes, data: bytes, iv: bytes = bytes(DES_BLOCK)) -> bytes:
    """64-bit CMAC (NIST SP 800-38B, Rb ``1B``) on 3DES, its CBC chain started from ``iv``.

    As :func:`mie.desfire.crypto.cmac` does for AES: a long message has ``iv`` XORed into its
    first block; a short one is made a two-block message whose first block (one 3DES
    decryption) cancels the padding of a one-byte tail, so the CMAC is all
    :mod:`cryptography`'s.

    :return: the 8-byte CMAC (the next running IV).
    """
    _check_iv(iv)
    if len(data) >= DES_BLOCK:
        return _plain_cmac(key, _xor(data[:DES_BLOCK], iv) + data[DES_BLOCK:])
    chained = _xor(iv, _pad(data))
    decryptor = Cipher(_tdes(key), modes.ECB()).decryptor()  # noqa: S305 - one block
    first = decryptor.update(_xor(chained, _pad(b"\x00"))) + decryptor.finalize()
    return _plain_cmac(key, first + b"\x00")


TDES_EV1: Final = Ev1Cipher("3DES", DES_BLOCK, tdes_cmac, tdes_cbc_encrypt, tdes_cbc_decrypt)
"""The EV1 rules on 3DES, for :class:`~mie.desfire.channel.Ev1Channel`."""


def legacy_session_key(key: bytes, rnd_a: bytes, rnd_b: bytes) -> bytes:
    """The session key of an ISO authentication (reference ``desfire.md`` §1, PM3
    ``DesfireGenSessionKeyEV1``).

    - DES (a 16-byte key whose halves are equal): ``A[0:4] ‖ B[0:4]``, twice [S: PM3
      ``DesfireAuthenticateEV1`` copies the first half of a 2K3DES session key into the
      second when the key's halves are equal, "we are really using single DES"];
    - 2K3DES: ``A[0:4] ‖ B[0:4] ‖ A[4:8] ‖ B[4:8]``;
    - 3K3DES: ``A[0:4] ‖ B[0:4] ‖ A[6:10] ‖ B[6:10] ‖ A[12:16] ‖ B[12:16]``.

    :return: 16 or 24 bytes.
    """
    if len(key) == 24:
        return rnd_a[0:4] + rnd_b[0:4] + rnd_a[6:10] + rnd_b[6:10] + rnd_a[12:16] + rnd_b[12:16]
    if key[:8] == key[8:16]:
        return 2 * (rnd_a[0:4] + rnd_b[0:4])
    return rnd_a[0:4] + rnd_b[0:4] + rnd_a[4:8] + rnd_b[4:8]


def authenticate_iso(session: DesfireSession, key_no: int, key: bytes, *, opt_in: object) -> None:
    """ISO authentication (``1A``) with a DES, 2K3DES (16-byte) or 3K3DES (24-byte) key;
    installs a 3DES :class:`~mie.desfire.channel.Ev1Channel`.

    :param session: the session (its channel, if any, is dropped first).
    :param key_no: the key number (0..13).
    :param key: 16 or 24 bytes.
    :param opt_in: must be :data:`LEGACY_OPT_IN`.
    :raises ValueError: no opt-in, or an argument out of range (nothing sent).
    :raises DesfireAuthenticationError: ``91AE``.
    :raises CardCryptogramError: the badge's answer does not carry RndA'.
    """
    _require_opt_in(opt_in)
    if not 0 <= key_no <= 0x0D:
        raise ValueError(f"key_no must be 0..13, got {key_no}")
    if len(key) not in (16, 24):
        raise ValueError(f"A DES/3DES key is 16 or 24 bytes, got {len(key)}")
    size = 16 if len(key) == 24 else 8
    session.protocol.drop_channel()
    session._auth = None
    e_rnd_b = session._handshake_step(c.AUTH_ISO, bytes([key_no]), c.SW_ADDITIONAL_FRAME, size)
    rnd_b = tdes_cbc_decrypt(key, bytes(DES_BLOCK), e_rnd_b)
    rnd_a = session._rnd_a(size)
    token = tdes_cbc_encrypt(key, e_rnd_b[-DES_BLOCK:], rnd_a + rnd_b[1:] + rnd_b[:1])
    answer = session._handshake_step(c.ADDITIONAL_FRAME, token, c.SW_OK, size)
    rotated = tdes_cbc_decrypt(key, token[-DES_BLOCK:], answer)
    if not hmac.compare_digest(rotated, rnd_a[1:] + rnd_a[:1]):
        raise CardCryptogramError(
            "The badge's answer does not carry RndA': it does not know the key"
        )
    channel = Ev1Channel(legacy_session_key(key, rnd_a, rnd_b), TDES_EV1)
    session.protocol.install_channel(channel)
    session._auth = AuthState("legacy", key_no, session.aid)


def change_key_from_legacy(
    session: DesfireSession, key_no: int, new_key: bytes, *, version: int, opt_in: object
) -> None:
    """Replace the DES/3DES key the session authenticated with by an AES key (ChangeKey,
    enciphered under the 3DES session; at PICC level ``KeyNo`` carries the AES bit ``80``).
    The badge ends the session.

    :param session: a session after :func:`authenticate_iso` with ``key_no``.
    :param key_no: the key authenticated with.
    :param new_key: the new 16-byte AES key.
    :param version: its version byte.
    :param opt_in: must be :data:`LEGACY_OPT_IN`.
    :raises ValueError: no opt-in, no legacy session with that key (nothing sent).
    """
    _require_opt_in(opt_in)
    auth = session.auth
    if auth is None or auth.scheme != "legacy" or auth.key_no != key_no:
        raise ValueError("change_key_from_legacy needs a legacy session with that key")
    session.change_key(key_no, new_key, version=version)
