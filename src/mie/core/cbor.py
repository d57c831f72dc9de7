"""Strict CBOR (RFC 8949) for CTAP2 and WebAuthn: the subset FIDO2 uses, bounded, no leniency.

Decoding always refuses indefinite lengths, trailing bytes, duplicate map keys, lengths that run
past the data, nesting deeper than ``max_depth``, containers of more than :data:`MAX_ITEMS`
items, map keys other than integers, text and byte strings, and any item other than an integer,
a byte string, a text string (valid UTF-8), an array, a map, ``false`` and ``true``: no tags,
floats, ``null``, ``undefined`` or other simple values. ``canonical=True`` adds CTAP2's canonical
form: minimal integer and length encodings, and map keys in increasing order of major type,
encoded length, then encoded bytes. Every refusal is a :class:`~mie.core.errors.CborFormatError`
naming the problem and its offset.

:func:`encode` writes that canonical form, byte for byte what python-fido2's ``fido2.cbor.encode``
writes for the same value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mie.core.errors import CborFormatError

MAX_DEPTH = 16
"""The deepest nesting of arrays and maps :func:`decode` reads by default."""
MAX_ITEMS = 4096
"""The most items (array elements, or map entries) one container may hold."""
_DEPTH_CEILING = 64

_UINT_LIMIT = 1 << 64
_MINIMUM = {24: 24, 25: 0x100, 26: 0x10000, 27: 0x100000000}
_SIMPLE = {20: False, 21: True}
_SIMPLE_NAMES = {22: "null", 23: "undefined", 24: "a simple value", 31: "a break"}


def decode(
    data: bytes | bytearray | memoryview, *, canonical: bool, max_depth: int = MAX_DEPTH
) -> Any:
    """Decode exactly one CBOR item that fills ``data``.

    :param data: the encoded item.
    :param canonical: also require CTAP2 canonical form (the authenticator/client link).
    :param max_depth: the deepest nesting accepted (1 to 64).
    :return: the value: ``int``, ``bytes``, ``str``, ``bool``, ``list`` or ``dict``.
    :raises CborFormatError: anything but one strict item, trailing bytes included.
    """
    raw = _bytes(data)
    value, end = _Decoder(raw, canonical, max_depth).item(0, 0)
    if end != len(raw):
        raise CborFormatError(f"{len(raw) - end} trailing bytes after the item", end)
    return value


def decode_prefix(
    data: bytes | bytearray | memoryview, *, canonical: bool, max_depth: int = MAX_DEPTH
) -> tuple[Any, bytes]:
    """Decode the CBOR item at the start of ``data`` (a COSE key inside authenticator data).

    :return: the value and the bytes that follow it.
    :raises CborFormatError: as :func:`decode`, trailing bytes apart.
    """
    raw = _bytes(data)
    value, end = decode_at(raw, 0, canonical=canonical, max_depth=max_depth)
    return value, raw[end:]


def decode_at(
    data: bytes | bytearray | memoryview,
    offset: int,
    *,
    canonical: bool,
    max_depth: int = MAX_DEPTH,
) -> tuple[Any, int]:
    """Decode the CBOR item that starts at ``offset``; errors name offsets in ``data``.

    :return: the value and the offset just after it.
    :raises CborFormatError: as :func:`decode`, trailing bytes apart.
    """
    if not 0 <= offset <= len(data):
        raise ValueError(f"Offset {offset} is outside the {len(data)} bytes given")
    return _Decoder(_bytes(data), canonical, max_depth).item(offset, 0)


def encode(value: object) -> bytes:
    """Encode ``value`` in CTAP2 canonical CBOR.

    :param value: ``int`` (-2**64 to 2**64 - 1), ``bool``, ``str``, ``bytes``-like, ``list``
        or ``tuple``, or a mapping whose keys are ``int``, ``str`` or ``bytes``.
    :return: the encoding.
    :raises TypeError: a value of another type (``None`` and floats included).
    :raises ValueError: an integer out of range, or two keys that encode alike.
    """
    out = bytearray()
    _encode(value, out)
    return bytes(out)


def _bytes(data: object) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"CBOR input must be bytes, not {type(data).__name__}")


class _Decoder:
    __slots__ = ("canonical", "data", "max_depth")

    def __init__(self, data: bytes, canonical: bool, max_depth: int) -> None:
        if not isinstance(max_depth, int) or not 1 <= max_depth <= _DEPTH_CEILING:
            raise ValueError(f"max_depth must be 1..{_DEPTH_CEILING}")
        self.data = data
        self.canonical = canonical
        self.max_depth = max_depth

    def head(self, pos: int) -> tuple[int, int, int]:
        """:return: the major type, the argument, and the offset after the head at ``pos``."""
        data = self.data
        if pos >= len(data):
            raise CborFormatError("unexpected end of data", pos)
        initial = data[pos]
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            return major, info, pos + 1
        if info > 27:
            what = "an indefinite length" if info == 31 else f"reserved additional info {info}"
            raise CborFormatError(f"{what} is not accepted", pos)
        end = pos + 1 + (1 << (info - 24))
        if end > len(data):
            raise CborFormatError("unexpected end of data in an item head", pos)
        argument = int.from_bytes(data[pos + 1 : end], "big")
        if self.canonical and argument < _MINIMUM[info]:
            raise CborFormatError(f"non-minimal encoding of {argument}", pos)
        return major, argument, end

    def item(self, pos: int, depth: int) -> tuple[Any, int]:
        data = self.data
        if pos < len(data) and data[pos] >> 5 == 7:
            return self.simple(pos)
        major, argument, start = self.head(pos)
        if major == 0:
            return argument, start
        if major == 1:
            return -1 - argument, start
        if major in (2, 3):
            end = start + argument
            if end > len(data):
                raise CborFormatError(f"string of {argument} bytes runs past the end", pos)
            if major == 2:
                return data[start:end], end
            try:
                return data[start:end].decode("utf-8"), end
            except UnicodeDecodeError as e:
                raise CborFormatError("text string is not UTF-8", pos) from e
        if major == 6:
            raise CborFormatError(f"tag {argument} is not accepted", pos)
        if depth >= self.max_depth:
            raise CborFormatError(f"nested deeper than {self.max_depth}", pos)
        if argument > MAX_ITEMS:
            raise CborFormatError(f"container of {argument} items, more than {MAX_ITEMS}", pos)
        # Each item takes at least one byte: a count the data cannot hold is refused at once.
        if argument * (major - 3) > len(data) - start:
            raise CborFormatError(f"container of {argument} items runs past the end", pos)
        if major == 4:
            return self.array(argument, start, depth + 1)
        return self.map(argument, start, depth + 1)

    def simple(self, pos: int) -> tuple[bool, int]:
        info = self.data[pos] & 0x1F
        if info in _SIMPLE:
            return _SIMPLE[info], pos + 1
        if 25 <= info <= 27:
            raise CborFormatError("floating-point numbers are not accepted", pos)
        what = _SIMPLE_NAMES.get(info, f"simple value {info}")
        if info > 27 and info != 31:
            what = f"reserved additional info {info}"
        raise CborFormatError(f"{what} is not accepted", pos)

    def array(self, count: int, pos: int, depth: int) -> tuple[list[Any], int]:
        values = []
        for _ in range(count):
            value, pos = self.item(pos, depth)
            values.append(value)
        return values, pos

    def map(self, count: int, pos: int, depth: int) -> tuple[dict[Any, Any], int]:
        values: dict[Any, Any] = {}
        previous = b""
        for _ in range(count):
            key, end = self.item(pos, depth)
            if type(key) not in (int, str, bytes):
                raise CborFormatError(f"map key of type {type(key).__name__}", pos)
            if key in values:
                raise CborFormatError("duplicate map key", pos)
            if self.canonical:
                encoded = self.data[pos:end]
                if previous and _key_order(encoded) <= _key_order(previous):
                    raise CborFormatError("map keys are not in canonical order", pos)
                previous = encoded
            values[key], pos = self.item(end, depth)
        return values, pos


def _key_order(encoded: bytes) -> tuple[int, int, bytes]:
    return encoded[0] >> 5, len(encoded), encoded


def _head(major: int, argument: int, out: bytearray) -> None:
    if argument < 24:
        out.append(major << 5 | argument)
    elif argument < 0x100:
        out += bytes((major << 5 | 24, argument))
    elif argument < 0x10000:
        out.append(major << 5 | 25)
        out += argument.to_bytes(2, "big")
    elif argument < 0x100000000:
        out.append(major << 5 | 26)
        out += argument.to_bytes(4, "big")
    else:
        out.append(major << 5 | 27)
        out += argument.to_bytes(8, "big")


def _encode(value: object, out: bytearray) -> None:
    if isinstance(value, bool):
        out.append(0xF5 if value else 0xF4)
    elif isinstance(value, int):
        if not -_UINT_LIMIT <= value < _UINT_LIMIT:
            raise ValueError(f"Integer {value} does not fit in CBOR's 64 bits")
        if value >= 0:
            _head(0, value, out)
        else:
            _head(1, -1 - value, out)
    elif isinstance(value, str):
        text = value.encode("utf-8")
        _head(3, len(text), out)
        out += text
    elif isinstance(value, bytes | bytearray | memoryview):
        _head(2, len(value), out)
        out += value
    elif isinstance(value, list | tuple):
        _head(4, len(value), out)
        for element in value:
            _encode(element, out)
    elif isinstance(value, Mapping):
        _encode_map(value, out)
    else:
        raise TypeError(f"CBOR of mie has no {type(value).__name__}")


def _encode_map(value: Mapping[Any, Any], out: bytearray) -> None:
    entries = []
    for key, element in value.items():
        if type(key) not in (int, str, bytes):
            raise TypeError(f"CBOR map keys are int, str or bytes, not {type(key).__name__}")
        encoded = bytearray()
        _encode(key, encoded)
        entries.append((_key_order(bytes(encoded)), element))
    entries.sort(key=lambda entry: entry[0])
    _head(5, len(entries), out)
    previous = None
    for order, element in entries:
        if order == previous:
            raise ValueError("Two CBOR map keys encode alike")
        previous = order
        out += order[2]
        _encode(element, out)
