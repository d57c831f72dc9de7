"""Strict BER-TLV (ISO/IEC 7816-4 / X.690 subset used by smart cards).

Tags are handled as ints made of their encoded bytes (``0x7F49``, ``0xBF8101``), as cards
document them.
Parsing rejects everything that is not the one canonical encoding: truncated values, indefinite or
non-minimal lengths, non-minimal tags, and trailing bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mie.core.errors import TlvError

_MAX_LENGTH_BYTES = 4
_MAX_TAG_BYTES = 4


def _tag_bytes(tag: int) -> bytes:
    if tag < 0:
        raise TlvError(f"Negative tag {tag}")
    encoded = tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")
    _check_tag(encoded)
    return encoded


def _check_tag(encoded: bytes) -> None:
    first = encoded[0]
    if first & 0x1F != 0x1F:
        if len(encoded) != 1:
            raise TlvError(f"Tag {encoded.hex().upper()}: low-tag-number form must be one byte")
        return
    if len(encoded) > _MAX_TAG_BYTES:
        raise TlvError(f"Tag {encoded.hex().upper()}: longer than 4 bytes")
    rest = encoded[1:]
    if not rest:
        raise TlvError(f"Tag {encoded.hex().upper()}: high-tag-number form needs more bytes")
    if rest[0] == 0x80:
        raise TlvError(f"Tag {encoded.hex().upper()}: non-minimal tag number")
    if any(b & 0x80 == 0 for b in rest[:-1]) or rest[-1] & 0x80:
        raise TlvError(f"Tag {encoded.hex().upper()}: bad continuation bits")
    if len(rest) == 1 and rest[0] < 0x1F:
        raise TlvError(f"Tag {encoded.hex().upper()}: number < 31 must use the one-byte form")


def encode_length(length: int) -> bytes:
    """Encode a BER length in its minimal definite form.

    :param length: the value length, 0 to 2**32 - 1.
    :return: the encoded length bytes.
    """
    if length < 0:
        raise TlvError(f"Negative length {length}")
    if length < 0x80:
        return bytes([length])
    size = (length.bit_length() + 7) // 8
    if size > _MAX_LENGTH_BYTES:
        raise TlvError(f"Length {length} too large")
    return bytes([0x80 | size]) + length.to_bytes(size, "big")


def _read_tag(data: bytes, offset: int) -> tuple[int, int]:
    if offset >= len(data):
        raise TlvError(f"Missing tag at offset {offset}")
    end = offset + 1
    if data[offset] & 0x1F == 0x1F:
        while True:
            if end >= len(data):
                raise TlvError(f"Truncated tag at offset {offset}")
            byte = data[end]
            end += 1
            if byte & 0x80 == 0:
                break
            if end - offset >= _MAX_TAG_BYTES:
                raise TlvError(f"Tag longer than 4 bytes at offset {offset}")
    encoded = data[offset:end]
    _check_tag(encoded)
    return int.from_bytes(encoded, "big"), end


def _read_length(data: bytes, offset: int) -> tuple[int, int]:
    if offset >= len(data):
        raise TlvError(f"Missing length at offset {offset}")
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    size = first & 0x7F
    if size == 0:
        raise TlvError(f"Indefinite length at offset {offset}")
    if size > _MAX_LENGTH_BYTES:
        raise TlvError(f"Length field of {size} bytes at offset {offset}")
    end = offset + 1 + size
    if end > len(data):
        raise TlvError(f"Truncated length at offset {offset}")
    length = int.from_bytes(data[offset + 1 : end], "big")
    if length < 0x80 or length.bit_length() <= 8 * (size - 1):
        raise TlvError(f"Non-minimal length encoding at offset {offset}")
    return length, end


@dataclass(frozen=True)
class Tlv:
    """One BER-TLV data object.

    :param tag: the tag as an int of its encoded bytes.
    :param value: the value bytes (for a constructed tag, the encoded children).
    """

    tag: int
    value: bytes = b""

    def __post_init__(self) -> None:
        _tag_bytes(self.tag)

    @property
    def constructed(self) -> bool:
        """:return: whether the tag marks a constructed object (bit 6 of its first byte)."""
        return bool(_tag_bytes(self.tag)[0] & 0x20)

    def encode(self) -> bytes:
        """:return: the tag, length and value bytes."""
        return _tag_bytes(self.tag) + encode_length(len(self.value)) + self.value

    def __bytes__(self) -> bytes:
        return self.encode()

    def children(self) -> list[Tlv]:
        """Parse the value as a sequence of TLVs.

        :return: the child objects, in order.
        """
        return parse_tlvs(self.value)

    @classmethod
    def parse_from(cls, data: bytes, offset: int = 0) -> tuple[Tlv, int]:
        """Parse one TLV starting at ``offset``; bytes after it are left to the caller.

        :param data: the buffer.
        :param offset: where the TLV starts.
        :return: the TLV and the offset just after it.
        """
        tag, offset = _read_tag(data, offset)
        length, offset = _read_length(data, offset)
        end = offset + length
        if end > len(data):
            raise TlvError(
                f"Tag {tag:X}: value of {length} bytes but only {len(data) - offset} remain"
            )
        return cls(tag, bytes(data[offset:end])), end

    @classmethod
    def parse(cls, data: bytes) -> Tlv:
        """Parse exactly one TLV; trailing bytes are an error.

        :param data: the encoded TLV.
        :return: the TLV.
        """
        tlv, end = cls.parse_from(data)
        if end != len(data):
            raise TlvError(f"{len(data) - end} trailing bytes after tag {tlv.tag:X}")
        return tlv


def parse_tlvs(data: bytes) -> list[Tlv]:
    """Parse a concatenation of TLVs that must cover ``data`` exactly.

    :param data: the encoded objects.
    :return: the objects in order.
    """
    result: list[Tlv] = []
    offset = 0
    while offset < len(data):
        tlv, offset = Tlv.parse_from(data, offset)
        result.append(tlv)
    return result


def tlv_dict(data: bytes) -> dict[int, bytes]:
    """Parse a concatenation of TLVs into ``{tag: value}``; a repeated tag is an error.

    :param data: the encoded objects.
    :return: the values by tag.
    """
    result: dict[int, bytes] = {}
    for tlv in parse_tlvs(data):
        if tlv.tag in result:
            raise TlvError(f"Tag {tlv.tag:X} repeated")
        result[tlv.tag] = tlv.value
    return result


def encode_tlvs(tlvs: Iterable[Tlv]) -> bytes:
    """:return: the concatenated encodings of ``tlvs``."""
    return b"".join(t.encode() for t in tlvs)
