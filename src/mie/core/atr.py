"""Answer-to-reset parsing (ISO/IEC 7816-3 §8), strict: interface bytes, historical bytes, TCK."""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

from mie.core.errors import ApduFormatError

_MAX_ATR = 33


@dataclass(frozen=True)
class Atr:
    """A parsed ATR.

    :param raw: the ATR bytes.
    :param protocols: transmission protocols offered (``0`` for T=0, ``1`` for T=1, ...), in order.
    :param historical: the historical bytes.
    """

    raw: bytes
    protocols: tuple[int, ...]
    historical: bytes

    @property
    def t0_only(self) -> bool:
        """:return: whether T=0 is the only protocol the card offers."""
        return self.protocols == (0,)

    @property
    def contactless(self) -> bool:
        """:return: whether this is the pseudo-ATR a PC/SC reader builds for a contactless card
        (PC/SC part 3 §3.1.3.2.3): ``3B 8n 80 01``, then the n historical bytes and TCK. It
        covers ISO 14443-4 cards (``3B 81 80 01 80 80``: historical bytes from the ATS or ATQB)
        and storage cards (``… 80 4F 0C A0 00 00 03 06 …``)."""
        return self.raw[0] == 0x3B and self.raw[1] & 0xF0 == 0x80 and self.raw[2:4] == b"\x80\x01"

    @classmethod
    def parse(cls, raw: bytes) -> Atr:
        """Parse an ATR.

        :param raw: the ATR bytes as returned by the reader.
        :return: the ATR.
        """
        if not 2 <= len(raw) <= _MAX_ATR:
            raise ApduFormatError(f"ATR of {len(raw)} bytes (must be 2 to 33)")
        if raw[0] not in (0x3B, 0x3F):
            raise ApduFormatError(f"ATR initial character {raw[0]:02X} is neither 3B nor 3F")
        offset, protocols, needs_tck = _interface_bytes(raw)
        k = raw[1] & 0x0F
        historical = raw[offset : offset + k]
        if len(historical) != k:
            raise ApduFormatError(f"ATR announces {k} historical bytes, has {len(historical)}")
        offset += k
        _check_tck(raw, offset, needs_tck)
        return cls(bytes(raw), tuple(protocols) or (0,), bytes(historical))


def _interface_bytes(raw: bytes) -> tuple[int, list[int], bool]:
    """:return: the offset of the historical bytes, the protocols offered, whether TCK is due."""
    offset = 1
    protocols: list[int] = []
    # TCK is absent only when T=0 alone is indicated; T=15 (global bytes) counts (7816-3 §8.2.5).
    needs_tck = False
    while True:
        if offset >= len(raw):
            raise ApduFormatError("ATR truncated in its interface bytes")
        y = raw[offset] >> 4
        offset += 1 + bin(y & 0x7).count("1")
        if not y & 0x8:
            if offset > len(raw):
                raise ApduFormatError("ATR truncated in its interface bytes")
            return offset, protocols, needs_tck
        if offset >= len(raw):
            raise ApduFormatError("ATR truncated in its interface bytes")
        protocol = raw[offset] & 0x0F
        needs_tck = needs_tck or protocol != 0
        if protocol not in protocols and protocol != 15:
            protocols.append(protocol)


def _check_tck(raw: bytes, offset: int, needs_tck: bool) -> None:
    if not needs_tck:
        if offset != len(raw):
            raise ApduFormatError(f"{len(raw) - offset} unexpected bytes at the end of the ATR")
        return
    if offset + 1 != len(raw):
        raise ApduFormatError("ATR check byte TCK missing or followed by extra bytes")
    if reduce(lambda a, b: a ^ b, raw[1:], 0) != 0:
        raise ApduFormatError("ATR check byte TCK is wrong")
