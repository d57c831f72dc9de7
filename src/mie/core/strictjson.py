"""Strict, bounded JSON for files that come from other people (vectors, evidence).

At most ``max_bytes``; UTF-8 only, lone surrogates refused; no duplicate keys; nesting bounded
by the interpreter's recursion limit; ``NaN``, ``Infinity`` and ``-Infinity`` (which Python's
parser takes, JSON does not have) refused. Numbers are never converted: each one is kept as a
:class:`Number` (its text), which no field check of :mod:`mie` accepts, so a
100,000-digit integer costs nothing. Every failure is a :class:`JsonFormatError` naming the
input.
"""

from __future__ import annotations

import json
from typing import Any

from mie.core.errors import JsonFormatError

_MAX_KEY_SHOWN = 40


class Number:
    """A JSON number, kept as its text.

    :param text: the number as written.
    """

    def __init__(self, text: str) -> None:
        self.text = text


def shown(name: str) -> str:
    """:return: ``name`` (read from a file) quoted, control characters escaped, cut short."""
    return repr(name) if len(name) <= _MAX_KEY_SHOWN else repr(name[: _MAX_KEY_SHOWN - 3]) + "..."


class FieldChecks:
    """Field checks for one parsed document, each failure a :class:`JsonFormatError` naming
    the document and the field; a format's reader subclasses it with its own fields.

    :param name: what messages call the document (a file name).
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def fail(self, text: str) -> JsonFormatError:
        """:return: the error; ``text`` names the field first."""
        return JsonFormatError(f"{self.name}: {text}")

    def object(self, value: Any, where: str, fields: set[str]) -> dict[str, Any]:
        """:return: ``value``, an object with exactly ``fields``."""
        if not isinstance(value, dict):
            raise self.fail(f"{where} is not an object")
        if set(value) != fields:
            raise self.fail(f"{where} must have exactly the fields {sorted(fields)}")
        return value

    def flag(self, value: Any, where: str) -> bool:
        """:return: ``value``, true or false."""
        if not isinstance(value, bool):
            raise self.fail(f"{where} is not true or false")
        return value


def loads(data: bytes, name: str, *, max_bytes: int) -> Any:
    """Parse JSON strictly.

    :param data: the bytes read (a caller reads at most ``max_bytes + 1``).
    :param name: what messages call the input, e.g. ``vector 'v.json'``.
    :param max_bytes: the largest input accepted.
    :return: the parsed value (numbers as :class:`Number`).
    :raises JsonFormatError: too large, not UTF-8, not JSON, a duplicate key, nested too deeply.
    """
    title = name[:1].upper() + name[1:]
    if len(data) > max_bytes:
        raise JsonFormatError(f"{title} is larger than {max_bytes} bytes")
    try:
        text = data.decode("utf-8")
        if text.startswith("\ufeff"):  # what json.loads refuses before it decodes
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        obj = _DECODER.decode(text)
        # Encoding back refuses lone surrogates, which only JSON escapes (\udXXX) can carry:
        # the UTF-8 decoder refused encoded ones, so text without a \u escape has none.
        if "\\u" in text:
            json.dumps(obj, ensure_ascii=False, default=lambda _: None).encode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError) as e:
        raise JsonFormatError(f"Cannot read {name}: not UTF-8 text ({e.reason})") from e
    except RecursionError as e:
        raise JsonFormatError(f"{title} is nested too deeply") from e
    except json.JSONDecodeError as e:
        raise JsonFormatError(f"{title} is not JSON: {e}") from e
    except _DuplicateKeyError as e:
        raise JsonFormatError(f"{title}: duplicate key {shown(e.key)}") from e
    except _NotJsonError as e:
        raise JsonFormatError(f"{title} is not JSON: {e.constant} is not a JSON value") from e
    return obj


class _NotJsonError(Exception):
    def __init__(self, constant: str) -> None:
        self.constant = constant


def _constant(text: str) -> None:
    raise _NotJsonError(text)


class _DuplicateKeyError(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKeyError(key)
        obj[key] = value
    return obj


# Built once (json.loads builds one per call when given hooks); it keeps no state between calls.
_DECODER = json.JSONDecoder(
    parse_int=Number,
    parse_float=Number,
    parse_constant=_constant,
    object_pairs_hook=_unique_keys,
)
