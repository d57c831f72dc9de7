"""The device-side API: authenticate(AuthRequest, user=) -> Evidence, the lazy PIN, the hooks.

The user's PIN is asked only when the card said how many tries remain, exactly once; a user
that cancels (raises) stops everything: the status query is the last exchange (issue 8, "Bad
input and faults").
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mie.auth import CpxAuthenticator
from mie.certcache import CertificateCache
from mie.emulation import EmulatedConnection
from mie.emulation.registry import CardOptions, build_card
from mie.errors import (
    InvalidPinError,
    LastTryRefusedError,
    PinBlockedError,
    PinFormatError,
    UnsupportedCardError,
)
from mie.evidence import X509SignatureEvidence
from mie.request import AuthRequest, StaticPin, UserVerification
from mie.transport.replay import RecordingConnection
from tests.cards.logins import log_in

ORIGIN = "https://iam.chu-exemple.fr"
SIGNING_KINDS = ["cps3", "cpe", "cps4", "psi"]
INS_VERIFY, INS_MSE, INS_INTERNAL_AUTHENTICATE, INS_PSO = 0x20, 0x22, 0x88, 0x2A


class CancelledError(Exception):
    pass


class CancellingUser(UserVerification):
    def __init__(self) -> None:
        self.asked: list[int | None] = []

    def request_pin(self, tries_left: int | None) -> str:
        self.asked.append(tries_left)
        raise CancelledError


def _connect(kind: str, options: CardOptions) -> RecordingConnection:
    return RecordingConnection(EmulatedConnection(build_card(kind, options)))


def _commands(connection: RecordingConnection, start: int = 0) -> list[bytes]:
    return [bytes.fromhex(e.command.replace("*", "0")) for e in connection.exchanges[start:]]


def _presented_a_pin(commands: list[bytes]) -> bool:
    return any(c[1] == INS_VERIFY and len(c) > 4 for c in commands)


@pytest.mark.parametrize("kind", SIGNING_KINDS)
def test_the_card_signs_sha256_origin_then_sha256_nonce(kind: str, options: CardOptions) -> None:
    request = AuthRequest.new(ORIGIN)
    authenticator = CpxAuthenticator(_connect(kind, options), chain_checked=False)
    evidence = authenticator.authenticate(request, user=StaticPin("4826"))
    assert isinstance(evidence, X509SignatureEvidence)
    bound = hashlib.sha256(ORIGIN.encode()).digest() + hashlib.sha256(request.nonce).digest()
    assert evidence.challenge == bound
    assert (evidence.nonce, evidence.origin) == (request.nonce, ORIGIN)
    key = x509.load_der_x509_certificate(evidence.chain[0]).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(evidence.signature, bound, padding.PKCS1v15(), hashes.SHA256())
    assert authenticator.info.serial is not None and authenticator.info.serial.isdigit()


@pytest.mark.parametrize("kind", ["cps3", "cps4"])
def test_the_pin_is_asked_once_after_the_status_query_with_the_tries_left(
    kind: str, options: CardOptions
) -> None:
    connection = _connect(kind, options)
    user = StaticPin("4826")
    CpxAuthenticator(connection, chain_checked=False).authenticate(AuthRequest.new(), user=user)
    assert user.asked == [3]


@pytest.mark.parametrize("kind", ["cps3", "cps4"])
def test_a_user_who_cancels_stops_the_authentication_at_the_status_query(
    kind: str, options: CardOptions
) -> None:
    connection = _connect(kind, options)
    user = CancellingUser()
    with pytest.raises(CancelledError):
        CpxAuthenticator(connection, chain_checked=False).authenticate(AuthRequest.new(), user=user)
    assert user.asked == [3]
    commands = _commands(connection)
    assert commands[-1][1:4] == bytes([INS_VERIFY, 0x00, 0x01]) and len(commands[-1]) == 4
    assert not _presented_a_pin(commands)
    assert not any(c[1] in (INS_MSE, INS_INTERNAL_AUTHENTICATE, INS_PSO) for c in commands)


def test_wrong_pins_count_down_in_what_the_user_is_told(options: CardOptions) -> None:
    authenticator = CpxAuthenticator(_connect("cps3", options), chain_checked=False)
    seen = []
    for _ in range(2):
        user = StaticPin("0000")
        with pytest.raises(InvalidPinError):
            authenticator.authenticate(AuthRequest.new(), user=user)
        seen += user.asked
    user = StaticPin("4826")
    with pytest.raises(LastTryRefusedError):
        authenticator.authenticate(AuthRequest.new(), user=user)
    assert seen == [3, 2]
    assert user.asked == [], "the PIN was asked although it could not be presented"
    user = StaticPin("4826")
    authenticator.authenticate(AuthRequest.new(allow_last_try=True), user=user)
    assert user.asked == [1]


def test_a_blocked_pin_is_never_asked(options: CardOptions) -> None:
    authenticator = CpxAuthenticator(_connect("cps3", options), chain_checked=False)
    for _ in range(3):
        with pytest.raises((InvalidPinError, PinBlockedError)):
            authenticator.authenticate(AuthRequest.new(allow_last_try=True), user=StaticPin("0000"))
    user = StaticPin("4826")
    with pytest.raises(PinBlockedError):
        authenticator.authenticate(AuthRequest.new(allow_last_try=True), user=user)
    assert user.asked == []


@pytest.mark.parametrize("pin", ["123", "123456789", "12a4", "", "١٢٣٤"])
def test_a_malformed_pin_is_refused_after_the_status_query_and_never_sent(
    pin: str, options: CardOptions
) -> None:
    connection = _connect("cps3", options)
    with pytest.raises(PinFormatError) as raised:
        CpxAuthenticator(connection, chain_checked=False).authenticate(
            AuthRequest.new(), user=StaticPin(pin)
        )
    assert not _presented_a_pin(_commands(connection))
    if pin:
        assert pin not in str(raised.value)


@pytest.mark.parametrize(
    "request_",
    [AuthRequest(bytes(32), user_verification=False)],
    ids=["no-user-verification"],
)
def test_a_request_without_user_verification_is_refused_before_anything_is_sent(
    request_: AuthRequest, options: CardOptions
) -> None:
    connection = _connect("cps3", options)
    user = StaticPin("4826")
    with pytest.raises(ValueError, match="user verification"):
        CpxAuthenticator(connection, chain_checked=False).authenticate(request_, user=user)
    assert connection.exchanges == [] and user.asked == []


def test_no_user_is_refused_before_anything_is_sent(options: CardOptions) -> None:
    connection = _connect("cps3", options)
    with pytest.raises(ValueError, match="user="):
        CpxAuthenticator(connection, chain_checked=False).authenticate(AuthRequest.new())
    assert connection.exchanges == []


def test_a_contactless_card_is_refused_before_anything_is_sent(options: CardOptions) -> None:
    connection = _connect("cps3-cl", options)
    user = StaticPin("4826")
    authenticator = CpxAuthenticator(connection, chain_checked=False)
    with pytest.raises(UnsupportedCardError, match="contactless"):
        authenticator.authenticate(AuthRequest.new(), user=user)
    assert connection.exchanges == [] and user.asked == []


@pytest.mark.parametrize("kind", ["cps3", "cps4"])
def test_a_bytearray_pin_is_wiped(kind: str, options: CardOptions) -> None:
    for value, raised in ((b"4826", None), (b"0000", InvalidPinError), (b"12a4", PinFormatError)):
        pin = bytearray(value)
        authenticator = CpxAuthenticator(_connect(kind, options), chain_checked=False)
        if raised is None:
            authenticator.authenticate(AuthRequest.new(), user=StaticPin(pin))
        else:
            with pytest.raises(raised):
                authenticator.authenticate(AuthRequest.new(), user=StaticPin(pin))
        assert pin == bytearray(len(value))


def test_info_has_the_serial_once_read(options: CardOptions) -> None:
    authenticator = CpxAuthenticator(_connect("cpe", options), chain_checked=False)
    assert authenticator.info.serial is None
    assert authenticator.info.kind == "cps3"
    authenticator.authenticate(AuthRequest.new(), user=StaticPin("4826"))
    assert authenticator.info.kind == "cpe"
    assert authenticator.info.serial == "2800000001"


@pytest.mark.parametrize("kind", ["cps3", "cps4"])
def test_accepted_caches_the_certificate_and_the_next_login_reads_none(
    kind: str, options: CardOptions
) -> None:
    card, cache = build_card(kind, options), CertificateCache()
    first = CpxAuthenticator(EmulatedConnection(card), cache=cache, chain_checked=False)
    evidence = first.authenticate(AuthRequest.new(), user=StaticPin("4826"))
    assert len(cache) == 0, "cached before the verifier accepted the evidence"
    first.accepted(evidence, chain_verified=False)
    assert len(cache) == 1
    connection = RecordingConnection(EmulatedConnection(card))
    second = CpxAuthenticator(connection, cache=cache, chain_checked=False)
    second.authenticate(AuthRequest.new(), user=StaticPin("4826"))
    reads = [c for c in _commands(connection) if c[1] == 0xB0 and not c[2] & 0x80]
    assert reads == []


def test_an_unverified_cache_entry_never_serves_a_chain_checked_authenticator(
    options: CardOptions,
) -> None:
    card, cache = build_card("cps3", options), CertificateCache()
    first = CpxAuthenticator(EmulatedConnection(card), cache=cache, chain_checked=False)
    first.accepted(
        first.authenticate(AuthRequest.new(), user=StaticPin("4826")), chain_verified=False
    )
    connection = RecordingConnection(EmulatedConnection(card))
    CpxAuthenticator(connection, cache=cache).authenticate(
        AuthRequest.new(), user=StaticPin("4826")
    )
    assert any(c[1] == 0xB0 and not c[2] & 0x80 for c in _commands(connection))


def test_rejected_forgets_a_cached_certificate_that_served(options: CardOptions) -> None:
    card, cache = build_card("cps3", options), CertificateCache()
    first = CpxAuthenticator(EmulatedConnection(card), cache=cache)
    first.accepted(
        first.authenticate(AuthRequest.new(), user=StaticPin("4826")), chain_verified=True
    )
    second = CpxAuthenticator(EmulatedConnection(card), cache=cache)
    evidence = second.authenticate(AuthRequest.new(), user=StaticPin("4826"))
    second.rejected(evidence)
    assert len(cache) == 0
    second.accepted(evidence, chain_verified=True)
    assert len(cache) == 0, "a hook ran twice for one evidence"


def test_hooks_ignore_evidence_they_did_not_make(options: CardOptions) -> None:
    card, cache = build_card("cps3", options), CertificateCache()
    authenticator = CpxAuthenticator(EmulatedConnection(card), cache=cache)
    evidence = authenticator.authenticate(AuthRequest.new(), user=StaticPin("4826"))
    other = AuthRequest.new()
    forged = X509SignatureEvidence(
        nonce=other.nonce,
        origin=other.origin,
        challenge=other.challenge,
        signature=evidence.signature,
        chain=evidence.chain,
    )
    authenticator.accepted(forged, chain_verified=True)
    assert len(cache) == 0
    authenticator.accepted(evidence, chain_verified=True)
    assert len(cache) == 1


def test_a_raw_challenge_is_never_signed(options: CardOptions) -> None:
    # The deprecated authenticate(challenge, pin) of B2 is gone (commit F): a relayed challenge
    # has nothing to bind it to the relying party.
    connection = _connect("cps3", options)
    authenticator = CpxAuthenticator(connection, chain_checked=False)
    with pytest.raises(TypeError, match="AuthRequest"):
        authenticator.authenticate(bytes(32), user=StaticPin("4826"))  # type: ignore[arg-type]
    assert connection.exchanges == []


@pytest.mark.parametrize("kind", ["cps3", "cps4"])
def test_a_login_through_a_recording_wrapper_leaves_no_pin_verified(
    kind: str, options: CardOptions
) -> None:
    # Issue 8, done-when: the wrapper forwards transaction(reset=True), so the card is reset
    # when the login ends even though the connection stays open.
    recorder = _connect(kind, options)
    log_in(CpxAuthenticator(recorder, chain_checked=False))
    assert recorder.send_and_receive(bytes.fromhex("00A4040C0DE828BD080F8025000001FF0010"))[1] == (
        0x9000
    )
    assert recorder.send_and_receive(bytes.fromhex("00200001"))[1] == 0x63C3


@pytest.mark.parametrize("kind", ["cps3", "cps4"])
def test_pin_refusals_keep_the_status_word_of_the_card_as_their_cause(
    kind: str, options: CardOptions
) -> None:
    # The status query's answer is the cause of a refusal made before any PIN is sent:
    # 63C1 for the last try, and the card's own blocked answer (not a made-up 6983).
    connection = _connect(kind, options)
    authenticator = CpxAuthenticator(connection, chain_checked=False)
    for _ in range(2):
        with pytest.raises(InvalidPinError):
            authenticator.authenticate(AuthRequest.new(allow_last_try=True), user=StaticPin("0000"))
    with pytest.raises(LastTryRefusedError) as refused:
        authenticator.authenticate(AuthRequest.new(), user=StaticPin("4826"))
    assert refused.value.__cause__ is not None
    assert getattr(refused.value.__cause__, "sw", None) == 0x63C1
    with pytest.raises(PinBlockedError):
        authenticator.authenticate(AuthRequest.new(allow_last_try=True), user=StaticPin("0000"))
    start = len(connection.exchanges)
    user = StaticPin("4826")
    with pytest.raises(PinBlockedError) as blocked:
        authenticator.authenticate(AuthRequest.new(allow_last_try=True), user=user)
    assert user.asked == []
    answered = [int.from_bytes(e.response[-2:], "big") for e in connection.exchanges[start:]]
    cause = blocked.value.__cause__
    assert cause is not None and getattr(cause, "sw", None) in answered
