"""Reference EV2 arithmetic for the session tests, written on :mod:`cryptography` directly so the
expected bytes never come from the code under test (mie.desfire.crypto, mie.desfire.channel)."""

from __future__ import annotations

from collections.abc import Iterator

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from mie.desfire.session import DesfireSession
from tests.unit.fakes import Script, ScriptedConnection, h

OK = 0x9100
MORE = 0x91AF
ZERO = bytes(16)


def cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    e = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return e.update(data) + e.finalize()


def cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    d = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return d.update(data) + d.finalize()


def ecb_block(key: bytes, block: bytes) -> bytes:
    return cbc_encrypt(key, ZERO, block)


def aes_cmac(key: bytes, data: bytes) -> bytes:
    c = CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def mact(key: bytes, data: bytes) -> bytes:
    """EV2 MACt: the odd-index bytes of the CMAC."""
    return aes_cmac(key, data)[1::2]


def rotl(data: bytes) -> bytes:
    return data[1:] + data[:1]


def pad_m2(data: bytes) -> bytes:
    data += b"\x80"
    return data + bytes(-len(data) % 16)


def ctr(value: int) -> bytes:
    return value.to_bytes(2, "little")


def session_keys(key: bytes, rnd_a: bytes, rnd_b: bytes) -> tuple[bytes, bytes]:
    xored = bytes(a ^ b for a, b in zip(rnd_a[2:8], rnd_b[0:6], strict=True))
    context = rnd_a[0:2] + xored + rnd_b[6:16] + rnd_a[8:16]
    return aes_cmac(key, h("A55A00010080") + context), aes_cmac(key, h("5AA500010080") + context)


class Ev2Ref:
    """The badge's side of one EV2 session, computed by hand: what the host must send, and
    what a genuine badge answers."""

    def __init__(self, enc: bytes, mac: bytes, ti: bytes, cmd_ctr: int = 0) -> None:
        self.enc, self.mac, self.ti, self.ctr = enc, mac, ti, cmd_ctr

    def command(
        self, cmd: int, header: bytes = b"", data: bytes = b"", full: bool = False
    ) -> bytes:
        """:return: the protected data field (``CmdHeader ‖ data ‖ MAC``) of a MAC/FULL command."""
        if full and data:
            iv = ecb_block(self.enc, h("A55A") + self.ti + ctr(self.ctr) + bytes(8))
            data = cbc_encrypt(self.enc, iv, pad_m2(data))
        body = header + data
        return body + mact(self.mac, bytes([cmd]) + ctr(self.ctr) + self.ti + body)

    def response(self, data: bytes = b"", full: bool = False, status: int = 0) -> bytes:
        """Move the counter and :return: the protected response (``data ‖ MAC``)."""
        self.ctr += 1
        if full:
            iv = ecb_block(self.enc, h("5AA5") + self.ti + ctr(self.ctr) + bytes(8))
            data = cbc_encrypt(self.enc, iv, pad_m2(data))
        return data + mact(self.mac, bytes([status]) + ctr(self.ctr) + self.ti + data)

    def plain(self) -> None:
        """A plain exchange: the counter moves, nothing is added."""
        self.ctr += 1


def wrapped(cmd: int, data: bytes = b"") -> bytes:
    """:return: ``90 CMD 00 00 [Lc data] 00``."""
    if not data:
        return bytes([0x90, cmd, 0, 0, 0])
    return bytes([0x90, cmd, 0, 0, len(data)]) + data + b"\x00"


def frames(data: bytes, size: int = 59) -> Iterator[tuple[bytes, int]]:
    """:return: a response cut into ``size``-byte frames: ``91AF`` each, the last ``9100``."""
    parts = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
    for i, part in enumerate(parts):
        yield part, OK if i == len(parts) - 1 else MORE


def response_script(cmd: int, command_data: bytes, response: bytes) -> Script:
    """:return: the APDUs of one single-frame command whose response comes in 59-byte frames."""
    script: Script = []
    for i, (part, sw) in enumerate(frames(response)):
        sent = wrapped(cmd, command_data) if i == 0 else wrapped(0xAF)
        script.append((sent, part, sw))
    return script


def new_session(
    script: Script, rnd_a: bytes | None = None
) -> tuple[DesfireSession, ScriptedConnection]:
    connection = ScriptedConnection(script)

    def rng(n: int) -> bytes:
        assert rnd_a is not None and n == len(rnd_a)
        return rnd_a

    return DesfireSession(connection, rng=rng), connection
