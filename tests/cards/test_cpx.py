"""CPx sessions and CpxAuthenticator against the emulated cards, in process."""

from __future__ import annotations

import dataclasses
import logging
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mie.auth import CertificateCache, CpxAuthenticator
from mie.cards.cpx import CpxFamily, detect_family
from mie.core.log import TRAFFIC
from mie.emulation import EmulatedConnection
from mie.emulation.cpx import IasEccCard
from mie.emulation.registry import CardOptions, build_card
from mie.errors import (
    BadResponseError,
    InvalidPinError,
    LastTryRefusedError,
    PinBlockedError,
    SignatureInvalidError,
    UnsupportedCardError,
)
from mie.transport.replay import RecordingConnection
from tests.cards.faults import CorruptingConnection

SIGNING_KINDS = ["cps3", "cpe", "cps4", "psi"]


def _connect(kind: str, options: CardOptions) -> RecordingConnection:
    return RecordingConnection(EmulatedConnection(build_card(kind, options)))


def _verify_independently(der: bytes, challenge: bytes, signature: bytes) -> None:
    key = x509.load_der_x509_certificate(der).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.parametrize("kind", SIGNING_KINDS)
def test_each_card_kind_signs_a_challenge_that_verifies_with_its_certificate(
    kind: str, options: CardOptions
) -> None:
    challenge = os.urandom(32)
    result = CpxAuthenticator(_connect(kind, options), check_chain=None).authenticate(
        challenge, "4826"
    )
    evidence = result.evidence
    assert evidence.challenge == challenge
    _verify_independently(evidence.chain[0], challenge, evidence.signature)
    assert result.authenticator.serial is not None and result.authenticator.serial.isdigit()


def test_contactless_cps3_identifies_but_never_presents_a_pin(options: CardOptions) -> None:
    connection = _connect("cps3-cl", options)
    authenticator = CpxAuthenticator(connection, check_chain=None)
    identification = authenticator.identify()
    assert identification.card.kind == "cps3-cl"
    assert identification.certificate is not None
    assert identification.certificate.subject.rfc4514_string()
    sent = len(connection.exchanges)
    with pytest.raises(UnsupportedCardError):
        authenticator.authenticate(os.urandom(32), "4826")
    assert len(connection.exchanges) == sent


def test_warm_authentication_is_select_pin_status_verify_mse_sign(options: CardOptions) -> None:
    connection = _connect("cps3", options)
    authenticator = CpxAuthenticator(connection, check_chain=None)
    authenticator.authenticate(os.urandom(32), "4826")
    before = len(connection.exchanges)
    authenticator.authenticate(os.urandom(32), "4826")
    instructions = [bytes.fromhex(e.command[:4])[1] for e in connection.exchanges[before:]]
    assert instructions == [0xA4, 0x20, 0x20, 0x22, 0x88, 0xC0]


def test_cache_is_never_trusted_for_another_card(options: CardOptions) -> None:
    cache = CertificateCache()
    first = CpxAuthenticator(_connect("cps3", options), cache=cache, check_chain=None)
    first_result = first.authenticate(os.urandom(32), "4826")
    other = dataclasses.replace(options, serial="2800000077")
    second = CpxAuthenticator(_connect("cps3", other), cache=cache, check_chain=None)
    challenge = os.urandom(32)
    result = second.authenticate(challenge, "4826")
    assert result.authenticator.serial == "2800000077"
    assert result.evidence.chain[0] != first_result.evidence.chain[0]
    _verify_independently(result.evidence.chain[0], challenge, result.evidence.signature)


def test_wrong_pins_count_down_then_the_last_try_is_refused_without_sending(
    options: CardOptions,
) -> None:
    connection = _connect("cps3", options)
    authenticator = CpxAuthenticator(connection, check_chain=None)
    with pytest.raises(InvalidPinError) as first:
        authenticator.authenticate(os.urandom(32), "0000")
    assert first.value.tries_left == 2
    with pytest.raises(InvalidPinError) as second:
        authenticator.authenticate(os.urandom(32), "0000")
    assert second.value.tries_left == 1
    sent = len(connection.exchanges)
    with pytest.raises(LastTryRefusedError):
        authenticator.authenticate(os.urandom(32), "0000")
    verifies = [e for e in connection.exchanges[sent:] if e.command[2:4] == "20"]
    assert verifies and all(len(e.command) == 8 for e in verifies), "a PIN was presented"
    result = authenticator.authenticate(os.urandom(32), "4826", allow_last_try=True)
    assert result.evidence.signature


def test_forced_last_try_blocks_the_card_and_then_nothing_is_sent(options: CardOptions) -> None:
    authenticator = CpxAuthenticator(_connect("cps3", options), check_chain=None)
    for _ in range(2):
        with pytest.raises(InvalidPinError):
            authenticator.authenticate(os.urandom(32), "0000")
    with pytest.raises(PinBlockedError):
        authenticator.authenticate(os.urandom(32), "0000", allow_last_try=True)
    with pytest.raises(PinBlockedError):
        authenticator.authenticate(os.urandom(32), "4826", allow_last_try=True)


@pytest.mark.parametrize("pin", ["123", "123456789", "12a4", "", "١٢٣٤"])
def test_malformed_pin_is_refused_before_anything_is_sent(pin: str, options: CardOptions) -> None:
    connection = _connect("cps3", options)
    with pytest.raises(ValueError) as raised:
        CpxAuthenticator(connection, check_chain=None).authenticate(os.urandom(32), pin)
    assert connection.exchanges == []
    if pin:
        assert pin not in str(raised.value)


def test_short_challenge_is_refused(options: CardOptions) -> None:
    with pytest.raises(ValueError, match="at least 16"):
        CpxAuthenticator(_connect("cps3", options), check_chain=None).authenticate(b"short", "4826")


def test_unknown_atr_is_named_in_the_error() -> None:
    with pytest.raises(UnsupportedCardError, match="3B0980"):
        detect_family(bytes.fromhex("3B0980") + b"MIE-GEN1")


def test_pin_never_reaches_the_traffic_log(
    options: CardOptions, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(TRAFFIC, logger="mie")
    CpxAuthenticator(
        EmulatedConnection(build_card("cps3", options)), check_chain=None
    ).authenticate(os.urandom(32), "4826")
    messages = [r.getMessage().lower() for r in caplog.records]
    assert "send: 0020000108****************" in messages
    # Signatures and certificates are random hex that may hold "4826" by chance: the PIN block
    # (ASCII digits then FF padding) must be absent everywhere, the digits from every non-hex line.
    assert all("34383236ffffffff" not in m for m in messages)
    assert all("4826" not in m for m in messages if not m.startswith(("send:", "recv:")))


def test_emulator_accepts_both_mse_tag_orders(options: CardOptions) -> None:
    card = build_card("cps3", options)
    assert isinstance(card, IasEccCard)
    assert card.process(bytes.fromhex("002241A406840182800102"))[-2:] == b"\x90\x00"
    assert card.process(bytes.fromhex("002241A406800102840182"))[-2:] == b"\x90\x00"
    assert card.process(bytes.fromhex("002241A406840199800102"))[-2:] == b"\x6a\x88"


def _corrupt(kind: str, options: CardOptions, predicate, replacement) -> CorruptingConnection:  # type: ignore[no-untyped-def]
    inner = EmulatedConnection(build_card(kind, options))

    def rewrite(command: bytes, data: bytes, sw: int) -> tuple[bytes, int] | None:
        return replacement(data, sw) if predicate(command, data) else None

    return CorruptingConnection(inner, rewrite)


def test_truncated_fcp_is_a_bad_response(options: CardOptions) -> None:
    connection = _corrupt(
        "cps3", options, lambda c, d: d.startswith(b"\x62"), lambda d, sw: (d[:-3], sw)
    )
    with pytest.raises(BadResponseError, match="FCP"):
        CpxAuthenticator(connection, check_chain=None).identify()


def test_ef_sn_with_bad_tlv_is_a_bad_response(options: CardOptions) -> None:
    connection = _corrupt(
        "cps3",
        options,
        lambda c, d: c[:3] == b"\x00\xb0\x9c",
        lambda d, sw: (d[:1] + b"\x81" + d[2:], sw),
    )
    with pytest.raises(BadResponseError, match=r"EF\.SN"):
        CpxAuthenticator(connection, check_chain=None).identify()


def test_signature_of_wrong_length_is_refused(options: CardOptions) -> None:
    connection = _corrupt(
        "cps3", options, lambda c, d: c[1] == 0xC0 and len(d) == 256, lambda d, sw: (d[:-1], sw)
    )
    with pytest.raises(SignatureInvalidError, match="255 bytes"):
        CpxAuthenticator(connection, check_chain=None).authenticate(os.urandom(32), "4826")


def test_certificate_that_does_not_parse_is_a_bad_response(options: CardOptions) -> None:
    connection = _corrupt(
        "cps3",
        options,
        lambda c, d: c[:2] == b"\x00\xb0" and d.startswith(b"\x30\x82"),
        lambda d, sw: (b"\x31" + d[1:], sw),
    )
    with pytest.raises(BadResponseError, match="does not parse"):
        CpxAuthenticator(connection, check_chain=None).identify()


def test_certificate_of_another_key_fails_the_signature_check(options: CardOptions) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    from mie.emulation.cpx import FID_APP, FID_CERT_AUT
    from mie.emulation.iso7816 import DF, EF

    stranger = build_card("cps3", dataclasses.replace(options, serial="2800000099"))
    assert isinstance(stranger, IasEccCard) and stranger.credentials is not None
    foreign = stranger.credentials.authentication.certificate.public_bytes(Encoding.DER)
    card = build_card("cps3", options)
    assert isinstance(card, IasEccCard)
    app = card.mf.child(FID_APP)
    assert isinstance(app, DF)
    certificate_file = app.child(FID_CERT_AUT)
    assert isinstance(certificate_file, EF)
    certificate_file.data = foreign
    with pytest.raises(SignatureInvalidError, match="does not verify"):
        CpxAuthenticator(EmulatedConnection(card), check_chain=None).authenticate(
            os.urandom(32), "4826"
        )


def test_pin_block_is_wiped_after_use(options: CardOptions) -> None:
    from mie.cards.cpx import CpxSession
    from mie.core.pin import format_pin

    session = CpxSession(EmulatedConnection(build_card("cps3", options)))
    block = format_pin("4826")
    session.verify_pin(block)
    assert block == bytearray(8)


def test_logging_at_debug_names_operations_not_values(
    options: CardOptions, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mie")
    CpxAuthenticator(
        EmulatedConnection(build_card("cps3", options)), check_chain=None
    ).authenticate(os.urandom(32), "4826")
    assert "Verifying PIN" in caplog.text
    assert "4826" not in caplog.text


@pytest.mark.parametrize("kind", ["cps3", "cps4"])
def test_callers_pin_bytearray_is_wiped_after_success(kind: str, options: CardOptions) -> None:
    pin = bytearray(b"4826")
    CpxAuthenticator(_connect(kind, options), check_chain=None).authenticate(os.urandom(32), pin)
    assert pin == bytearray(4)


@pytest.mark.parametrize("kind", ["cps3", "cps4"])
def test_callers_pin_bytearray_is_wiped_after_an_invalid_pin(
    kind: str, options: CardOptions
) -> None:
    pin = bytearray(b"0000")
    with pytest.raises(InvalidPinError):
        CpxAuthenticator(_connect(kind, options), check_chain=None).authenticate(
            os.urandom(32), pin
        )
    assert pin == bytearray(4)


@pytest.mark.parametrize(
    ("challenge", "pin", "raised"),
    [
        (b"short", bytearray(b"4826"), ValueError),
        (bytes(32), bytearray(b"12a4"), ValueError),
        (bytes(32), bytearray(b"4826"), UnsupportedCardError),
    ],
    ids=["short-challenge", "malformed-pin", "contactless"],
)
def test_callers_pin_bytearray_is_wiped_when_nothing_was_sent(
    challenge: bytes, pin: bytearray, raised: type[Exception], options: CardOptions
) -> None:
    kind = "cps3-cl" if raised is UnsupportedCardError else "cps3"
    with pytest.raises(raised):
        CpxAuthenticator(_connect(kind, options), check_chain=None).authenticate(challenge, pin)
    assert pin == bytearray(len(pin))


@pytest.mark.parametrize(
    ("atr", "family"),
    [
        # The CPS4 T=0 ATR of cps-cards.md §1, and a 17-byte ATR the fuzzer found: the
        # pattern's mask had 16 bytes, and zip(strict=True) raised ValueError.
        ("3BDC18FF0000122500648000040100 9000", CpxFamily.CPS4),
        ("3BDC18FF0000122500648000040100 9010", None),
        ("3BAC00402A0012250064800003100090 00", CpxFamily.CPS3),
    ],
)
def test_every_atr_is_a_family_or_unsupported(atr: str, family: CpxFamily | None) -> None:
    value = bytes.fromhex(atr.replace(" ", ""))
    if family is None:
        with pytest.raises(UnsupportedCardError):
            detect_family(value)
    else:
        assert detect_family(value) is family
