"""CPx sessions and CpxAuthenticator against the emulated cards, in process, through
:func:`mie.verification.login` without a verifier (chains: test_chain.py)."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mie.auth import CertificateCache, CpxAuthenticator
from mie.cards.cpx import CpxFamily, detect_family
from mie.core.connection import SmartCardConnection
from mie.core.log import TRAFFIC
from mie.emulation import EmulatedConnection
from mie.emulation.cpx import IasEccCard
from mie.emulation.registry import CardOptions, build_card
from mie.errors import (
    BadResponseError,
    InvalidPinError,
    LastTryRefusedError,
    PinBlockedError,
    PinFormatError,
    SignatureInvalidError,
    UnsupportedCardError,
)
from mie.request import AuthRequest, StaticPin
from mie.transport.replay import RecordingConnection
from tests.cards.faults import CorruptingConnection
from tests.cards.logins import evidence_of, log_in

SIGNING_KINDS = ["cps3", "cpe", "cps4", "psi"]


def _connect(kind: str, options: CardOptions) -> RecordingConnection:
    return RecordingConnection(EmulatedConnection(build_card(kind, options)))


def _unchecked(
    connection: SmartCardConnection, cache: CertificateCache | None = None
) -> CpxAuthenticator:
    return CpxAuthenticator(connection, cache=cache, chain_checked=False)


def _verify_independently(der: bytes, challenge: bytes, signature: bytes) -> None:
    key = x509.load_der_x509_certificate(der).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.parametrize("kind", SIGNING_KINDS)
def test_each_card_kind_signs_a_challenge_that_verifies_with_its_certificate(
    kind: str, options: CardOptions
) -> None:
    request = AuthRequest.new()
    result = log_in(_unchecked(_connect(kind, options)), request=request)
    evidence = evidence_of(result)
    assert evidence.challenge == request.challenge
    _verify_independently(evidence.chain[0], request.challenge, evidence.signature)
    assert result.authenticator is not None
    assert result.authenticator.serial is not None and result.authenticator.serial.isdigit()


def test_contactless_cps3_identifies_but_never_presents_a_pin(options: CardOptions) -> None:
    connection = _connect("cps3-cl", options)
    authenticator = _unchecked(connection)
    identification = authenticator.identify()
    assert identification.authenticator.kind == "cps3-cl"
    assert identification.certificate is not None
    assert identification.certificate.subject.rfc4514_string()
    sent = len(connection.exchanges)
    with pytest.raises(UnsupportedCardError):
        log_in(authenticator)
    assert len(connection.exchanges) == sent


def test_warm_authentication_is_select_pin_status_verify_mse_sign(options: CardOptions) -> None:
    connection = _connect("cps3", options)
    authenticator = _unchecked(connection)
    log_in(authenticator)
    before = len(connection.exchanges)
    log_in(authenticator)
    instructions = [bytes.fromhex(e.command[:4])[1] for e in connection.exchanges[before:]]
    assert instructions == [0xA4, 0x20, 0x20, 0x22, 0x88, 0xC0]


def test_cache_is_never_trusted_for_another_card(options: CardOptions) -> None:
    cache = CertificateCache()
    first = _unchecked(_connect("cps3", options), cache)
    first_result = log_in(first)
    other = dataclasses.replace(options, serial="2800000077")
    second = _unchecked(_connect("cps3", other), cache)
    request = AuthRequest.new()
    result = log_in(second, request=request)
    assert result.authenticator is not None and result.authenticator.serial == "2800000077"
    evidence = evidence_of(result)
    assert evidence.chain[0] != evidence_of(first_result).chain[0]
    _verify_independently(evidence.chain[0], request.challenge, evidence.signature)


def test_wrong_pins_count_down_then_the_last_try_is_refused_without_sending(
    options: CardOptions,
) -> None:
    connection = _connect("cps3", options)
    authenticator = _unchecked(connection)
    with pytest.raises(InvalidPinError) as first:
        log_in(authenticator, "0000")
    assert first.value.tries_left == 2
    with pytest.raises(InvalidPinError) as second:
        log_in(authenticator, "0000")
    assert second.value.tries_left == 1
    sent = len(connection.exchanges)
    with pytest.raises(LastTryRefusedError):
        log_in(authenticator, "0000")
    verifies = [e for e in connection.exchanges[sent:] if e.command[2:4] == "20"]
    assert verifies and all(len(e.command) == 8 for e in verifies), "a PIN was presented"
    result = log_in(authenticator, allow_last_try=True)
    assert evidence_of(result).signature


def test_forced_last_try_blocks_the_card_and_then_nothing_is_sent(options: CardOptions) -> None:
    authenticator = _unchecked(_connect("cps3", options))
    for _ in range(2):
        with pytest.raises(InvalidPinError):
            log_in(authenticator, "0000")
    with pytest.raises(PinBlockedError):
        log_in(authenticator, "0000", allow_last_try=True)
    with pytest.raises(PinBlockedError):
        log_in(authenticator, allow_last_try=True)


@pytest.mark.parametrize("pin", ["123", "123456789", "12a4", "", "١٢٣٤"])
def test_malformed_pin_is_refused_before_it_is_sent(pin: str, options: CardOptions) -> None:
    # The PIN is asked once the card said the tries left: only SELECT and the status query.
    connection = _connect("cps3", options)
    with pytest.raises(PinFormatError) as raised:
        log_in(_unchecked(connection), pin)
    assert [e.command[:8] for e in connection.exchanges] == ["00a4040c", "00200001"]
    assert len(connection.exchanges[-1].command) == 8
    if pin:
        assert pin not in str(raised.value)


def test_short_challenge_is_refused(options: CardOptions) -> None:
    with pytest.raises(ValueError, match="Nonce of 5 bytes, expected 16"):
        log_in(_unchecked(_connect("cps3", options)), request=AuthRequest(b"short"))


def test_unknown_atr_is_named_in_the_error() -> None:
    with pytest.raises(UnsupportedCardError, match="3B0980"):
        detect_family(bytes.fromhex("3B0980") + b"MIE-GEN1")


def test_pin_never_reaches_the_traffic_log(
    options: CardOptions, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(TRAFFIC, logger="mie")
    log_in(_unchecked(EmulatedConnection(build_card("cps3", options))))
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
        _unchecked(connection).identify()


def test_ef_sn_with_bad_tlv_is_a_bad_response(options: CardOptions) -> None:
    connection = _corrupt(
        "cps3",
        options,
        lambda c, d: c[:3] == b"\x00\xb0\x9c",
        lambda d, sw: (d[:1] + b"\x81" + d[2:], sw),
    )
    with pytest.raises(BadResponseError, match=r"EF\.SN"):
        _unchecked(connection).identify()


def test_signature_of_wrong_length_is_refused(options: CardOptions) -> None:
    connection = _corrupt(
        "cps3", options, lambda c, d: c[1] == 0xC0 and len(d) == 256, lambda d, sw: (d[:-1], sw)
    )
    with pytest.raises(SignatureInvalidError, match="255 bytes"):
        log_in(_unchecked(connection))


def test_certificate_that_does_not_parse_is_a_bad_response(options: CardOptions) -> None:
    connection = _corrupt(
        "cps3",
        options,
        lambda c, d: c[:2] == b"\x00\xb0" and d.startswith(b"\x30\x82"),
        lambda d, sw: (b"\x31" + d[1:], sw),
    )
    with pytest.raises(BadResponseError, match="does not parse"):
        _unchecked(connection).identify()


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
        log_in(_unchecked(EmulatedConnection(card)))


def test_pin_block_is_wiped_after_use(options: CardOptions) -> None:
    from mie.cards.cpx import CPX_PIN, CpxSession

    session = CpxSession(EmulatedConnection(build_card("cps3", options)))
    block = CPX_PIN.pad("4826")
    session.verify_pin(block)
    assert block == bytearray(8)


def test_logging_at_debug_names_operations_not_values(
    options: CardOptions, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mie")
    log_in(_unchecked(EmulatedConnection(build_card("cps3", options))))
    assert "Verifying PIN" in caplog.text
    assert "4826" not in caplog.text


@pytest.mark.parametrize("kind", ["cps3", "cps4"])
def test_callers_pin_bytearray_is_wiped_after_success(kind: str, options: CardOptions) -> None:
    pin = bytearray(b"4826")
    log_in(_unchecked(_connect(kind, options)), pin)
    assert pin == bytearray(4)


@pytest.mark.parametrize("kind", ["cps3", "cps4"])
def test_callers_pin_bytearray_is_wiped_after_an_invalid_pin(
    kind: str, options: CardOptions
) -> None:
    pin = bytearray(b"0000")
    with pytest.raises(InvalidPinError):
        log_in(_unchecked(_connect(kind, options)), pin)
    assert pin == bytearray(4)


@pytest.mark.parametrize(
    ("nonce", "pin", "raised"),
    [
        (b"short", bytearray(b"4826"), ValueError),
        (bytes(32), bytearray(b"12a4"), PinFormatError),
        (bytes(32), bytearray(b"4826"), UnsupportedCardError),
    ],
    ids=["short-challenge", "malformed-pin", "contactless"],
)
def test_callers_pin_bytearray_is_wiped_when_nothing_was_sent(
    nonce: bytes, pin: bytearray, raised: type[Exception], options: CardOptions
) -> None:
    # A PIN handed over (the malformed one, asked after the status query) is wiped; a PIN never
    # asked for stays the caller's, untouched.
    kind = "cps3-cl" if raised is UnsupportedCardError else "cps3"
    user, given = StaticPin(pin), bytes(pin)
    with pytest.raises(raised):
        _unchecked(_connect(kind, options)).authenticate(AuthRequest(nonce), user=user)
    assert pin == (bytearray(len(pin)) if user.asked else bytearray(given))
    assert len(user.asked) == (1 if kind == "cps3" and len(nonce) >= 16 else 0)


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
