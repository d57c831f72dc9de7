"""The strict base64url decoder of the WebAuthn members against the re-encoding rule it replaced."""

from __future__ import annotations

import base64
import binascii
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mie.fido._base64url import (
    NOT_BASE64URL,
    NOT_CANONICAL,
    NOT_UNPADDED,
    Base64UrlError,
    decode,
)

_URLSAFE = re.compile(r"[A-Za-z0-9_-]*")


def _reference(text: str) -> bytes | str:
    """The rule before: alphabet, no 4n+1, decode, and the decoded bytes re-encode to ``text``."""
    if not _URLSAFE.fullmatch(text) or len(text) % 4 == 1:
        return NOT_UNPADDED
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return NOT_BASE64URL
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii") != text:
        return NOT_CANONICAL
    return data


def _decoded(text: str) -> bytes | str:
    try:
        return decode(text)
    except Base64UrlError as e:
        return str(e)


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@given(st.text(alphabet=_ALPHABET + "+/= .\n\u00e9", max_size=24))
def test_any_text_is_judged_as_the_reencoding_rule_does(text: str) -> None:
    assert _decoded(text) == _reference(text)


@given(st.binary(max_size=64))
def test_every_encoding_decodes_back(data: bytes) -> None:
    assert decode(base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")) == data


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("AB", NOT_CANONICAL),  # 4 unused bits, one set
        ("AAB", NOT_CANONICAL),  # 2 unused bits, one set
        ("AA==", NOT_UNPADDED),
        ("AA+/", NOT_UNPADDED),
        ("A", NOT_UNPADDED),
        ("AAAAA", NOT_UNPADDED),
    ],
)
def test_refusals_name_the_problem(text: str, problem: str) -> None:
    with pytest.raises(Base64UrlError, match=f"^{problem}$"):
        decode(text)
    assert _reference(text) == problem
