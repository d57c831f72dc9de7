"""The strict JSON reader shared by vectors and evidence files."""

from __future__ import annotations

import json

import pytest

from mie.core import strictjson
from mie.core.errors import JsonFormatError, MieError


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"[" * 5000, "Evidence 'e.json' is nested too deeply"),
        (b'{"a": 1, "a": 2}', "Evidence 'e.json': duplicate key 'a'"),
        (b'{"a": "\xe9"}', "Cannot read evidence 'e.json': not UTF-8 text"),
        (b'{"a": "\\ud800"}', "Cannot read evidence 'e.json': not UTF-8 text"),
        (b"{} {}", "Evidence 'e.json' is not JSON"),
        (b" " * 10001, "Evidence 'e.json' is larger than 10000 bytes"),
        # Python's parser takes these three; they are not JSON (RFC 8259).
        (b'{"a": NaN}', "Evidence 'e.json' is not JSON: NaN is not a JSON value"),
        (b"[Infinity]", "Evidence 'e.json' is not JSON: Infinity is not a JSON value"),
        (b"-Infinity", "Evidence 'e.json' is not JSON: -Infinity is not a JSON value"),
    ],
)
def test_hostile_json_raises_json_format_error_naming_the_input(data: bytes, named: str) -> None:
    with pytest.raises(JsonFormatError) as raised:
        strictjson.loads(data, "evidence 'e.json'", max_bytes=10000)
    assert str(raised.value).startswith(named)
    assert isinstance(raised.value, MieError) and raised.value.code is not None


def test_numbers_are_kept_as_text_never_converted() -> None:
    obj = strictjson.loads(b'{"n": ' + b"9" * 5000 + b', "f": 1e400}', "x", max_bytes=10**6)
    assert isinstance(obj["n"], strictjson.Number) and obj["n"].text == "9" * 5000
    assert isinstance(obj["f"], strictjson.Number) and obj["f"].text == "1e400"


def test_a_long_duplicate_key_is_cut_short_and_escaped() -> None:
    key = "\x1b[31m" + "k" * 500
    quoted = json.dumps(key)
    data = f"{{{quoted}: 1, {quoted}: 2}}".encode()
    with pytest.raises(JsonFormatError) as raised:
        strictjson.loads(data, "x", max_bytes=10**6)
    assert "\x1b" not in str(raised.value) and len(str(raised.value)) < 100
