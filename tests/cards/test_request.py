"""AuthRequest, the bound challenge, origin rules (decision D2) and StaticPin."""

from __future__ import annotations

import hashlib

import pytest

from mie.core.random import RandomSource, RecordingRandom, ReplayRandom
from mie.request import (
    DEFAULT_NONCE_BYTES,
    DEFAULT_ORIGIN,
    MAX_NONCE_BYTES,
    MIN_NONCE_BYTES,
    AuthRequest,
    StaticPin,
    UserVerification,
    bound_challenge,
    check_origin,
)

NONCE = bytes(range(32))


class _Drawn(RandomSource):
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def draw(self, name: str, size: int) -> bytes:
        self.calls.append((name, size))
        return bytes([0xA5]) * size


def test_challenge_is_sha256_of_origin_then_sha256_of_nonce() -> None:
    request = AuthRequest(NONCE, "https://iam.chu-exemple.fr")
    expected = (
        hashlib.sha256(b"https://iam.chu-exemple.fr").digest() + hashlib.sha256(NONCE).digest()
    )
    assert request.challenge == expected
    assert len(request.challenge) == 64
    assert bound_challenge("https://iam.chu-exemple.fr", NONCE) == expected


def test_another_origin_or_nonce_gives_another_challenge() -> None:
    base = AuthRequest(NONCE, "https://iam.example").challenge
    assert AuthRequest(NONCE, "https://evil.example").challenge[:32] != base[:32]
    assert AuthRequest(NONCE, "https://evil.example").challenge[32:] == base[32:]
    assert AuthRequest(bytes(32), "https://iam.example").challenge[32:] != base[32:]


def test_defaults() -> None:
    request = AuthRequest(NONCE)
    assert request.origin == DEFAULT_ORIGIN == "https://localhost"
    assert request.user_verification is True
    assert request.allow_last_try is False


def test_new_draws_a_32_byte_nonce_named_nonce() -> None:
    rng = _Drawn()
    request = AuthRequest.new("https://iam.example", rng=rng, allow_last_try=True)
    assert rng.calls == [("nonce", DEFAULT_NONCE_BYTES)]
    assert request.nonce == bytes([0xA5]) * 32
    assert request.allow_last_try is True


def test_a_recorded_nonce_replays() -> None:
    recording = RecordingRandom()
    recorded = AuthRequest.new("https://iam.example", rng=recording)
    assert recording.values == {"nonce": recorded.nonce}
    replayed = AuthRequest.new("https://iam.example", rng=ReplayRandom(recording.values))
    assert replayed == recorded


def test_new_without_a_source_is_random() -> None:
    first, second = AuthRequest.new(), AuthRequest.new()
    assert len(first.nonce) == 32
    assert first.nonce != second.nonce


def test_new_refuses_a_source_that_gives_the_wrong_length() -> None:
    class Short(RandomSource):
        def draw(self, name: str, size: int) -> bytes:
            return bytes(size - 1)

    with pytest.raises(ValueError, match="gave 31 bytes, 32 were asked"):
        AuthRequest.new(rng=Short())


@pytest.mark.parametrize("size", [0, MIN_NONCE_BYTES - 1, MAX_NONCE_BYTES + 1])
def test_nonce_size_is_bounded(size: int) -> None:
    with pytest.raises(ValueError, match=f"Nonce of {size} bytes"):
        AuthRequest(bytes(size))
    with pytest.raises(ValueError, match=f"Nonce size {size}"):
        AuthRequest.new(size=size)


@pytest.mark.parametrize("size", [MIN_NONCE_BYTES, MAX_NONCE_BYTES])
def test_nonce_bounds_are_inclusive(size: int) -> None:
    assert len(AuthRequest(bytes(size)).nonce) == size


def test_a_bytearray_nonce_is_copied() -> None:
    nonce = bytearray(NONCE)
    request = AuthRequest(nonce)  # type: ignore[arg-type]
    nonce[:] = bytes(32)
    assert request.nonce == NONCE
    assert isinstance(request.nonce, bytes)


def test_a_str_nonce_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="Nonce must be bytes"):
        AuthRequest("00" * 32)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "origin",
    [
        "https://localhost",
        "https://iam.chu-exemple.fr",
        "https://iam.example:8443",
        "https://127.0.0.1",
        "https://[::1]:8443",
        "http://localhost",
        "http://localhost:8080",
        "https://xn--hpital-bva.example",
    ],
)
def test_accepted_origins(origin: str) -> None:
    assert check_origin(origin) == origin
    assert AuthRequest(NONCE, origin).origin == origin


@pytest.mark.parametrize(
    "origin",
    [
        "",
        "iam.example",
        "https://",
        "https://iam.example/",
        "https://iam.example/login",
        "https://iam.example?x=1",
        "https://iam.example#f",
        "https://IAM.example",
        "HTTPS://iam.example",
        "https://user@iam.example",
        "https://iam.example:",
        "https://iam.example:0",
        "https://iam.example:08443",
        "https://iam.example:65536",
        "https://iam..example",
        "https://iam.example.",
        "https://-iam.example",
        "https://h\u00f4pital.example",
        "https://999.1.1.1",
        "https://[::g]",
        " https://iam.example",
        "https://iam.example\n",
        "http://iam.example",
        "http://127.0.0.1",
        "ftp://iam.example",
        "https://" + "a" * 63 + "b" + ".example",
    ],
)
def test_refused_origins(origin: str) -> None:
    with pytest.raises(ValueError, match="Origin"):
        check_origin(origin)
    with pytest.raises(ValueError, match="Origin"):
        AuthRequest(NONCE, origin)


def test_a_long_origin_is_refused_by_length_without_quoting_it() -> None:
    with pytest.raises(ValueError, match="Origin of 1000 characters") as raised:
        check_origin("https://" + "a." * 496)
    assert "a.a." not in str(raised.value)


def test_origin_message_is_cut_short() -> None:
    with pytest.raises(ValueError) as raised:
        check_origin("https://" + "A" * 200)
    assert len(str(raised.value)) < 150


def test_a_non_str_origin_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="Origin must be a str"):
        check_origin(b"https://localhost")  # type: ignore[arg-type]


def test_request_is_immutable() -> None:
    request = AuthRequest(NONCE)
    with pytest.raises(AttributeError):
        request.nonce = bytes(32)  # type: ignore[misc]


def test_static_pin_serves_its_pin_once() -> None:
    user = StaticPin("4826")
    assert isinstance(user, UserVerification)
    assert user.request_pin(3) == "4826"
    with pytest.raises(RuntimeError, match="once"):
        user.request_pin(2)
    assert user.asked == [3, 2]


def test_static_pin_hands_over_the_callers_bytearray() -> None:
    pin = bytearray(b"4826")
    assert StaticPin(pin).request_pin(None) is pin


def test_static_pin_repr_hides_the_pin() -> None:
    user = StaticPin("4826")
    assert "4826" not in repr(user)
    user.request_pin(3)
    assert "4826" not in repr(user)


def test_user_verification_is_abstract() -> None:
    with pytest.raises(TypeError):
        UserVerification()  # type: ignore[abstract]
