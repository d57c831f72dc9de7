"""The error contract is the library's: every error class carries its contract code."""

from __future__ import annotations

import json

import pytest

import mie.errors
from mie.cards.demo import DemoSession
from mie.core.errors import (
    ApduError,
    ApduFormatError,
    ApplicationNotAvailableError,
    BadResponseError,
    CardRemovedError,
    CardResetError,
    ErrorCode,
    EvidenceFormatError,
    InvalidPinError,
    JsonFormatError,
    LastTryRefusedError,
    MieError,
    NoCardError,
    NonceMismatchError,
    NoReaderError,
    OriginMismatchError,
    PcscUnavailableError,
    PinBlockedError,
    PinFormatError,
    ReaderBusyError,
    ReplayMismatchError,
    SecureMessagingError,
    SecurityStatusError,
    SignatureInvalidError,
    TlvError,
    TransportError,
    TransportTimeoutError,
    UnsupportedCardError,
    VectorFormatError,
    VerificationError,
)
from mie.emulation import EmulatedConnection, demo_card
from mie.emulation.iso7816 import DEMO_PIN_RULE

# DESIGN.md: the chain codes, then the authentication codes, the DESFire, FIDO2 and service
# codes, then the `usage` code of `--json` usage failures.
CONTRACT_CODES = {
    "expired",
    "not_yet_valid",
    "revoked",
    "untrusted",
    "bad_signature",
    "name_chaining",
    "not_ca",
    "path_length",
    "key_usage",
    "policy",
    "unknown_critical_extension",
    "revocation_unknown",
    "malformed",
    "invalid_pin",
    "last_try_refused",
    "pin_blocked",
    "no_card",
    "card_removed",
    "unsupported_card",
    "signature_invalid",
    "card_error",
    "reader_error",
    "nonce_mismatch",
    "origin_mismatch",
    # DESFire badges and their relay (issue 9, plan D8).
    "key_mismatch",
    "suspected_clone",
    "integrity_error",
    "record_untrusted",
    "record_copied",
    "not_genuine",
    "legacy_crypto",
    "relay_refused",
    # FIDO2 security keys (issue 10, plan D7).
    "rp_id_mismatch",
    "user_not_present",
    "user_not_verified",
    "credential_unknown",
    "already_registered",
    "counter_unsupported",
    "attestation_refused",
    "attestation_invalid",
    "aaguid_unknown",
    "metadata_status",
    "metadata_untrusted",
    "metadata_stale",
    "pin_auth_blocked",
    "pin_not_set",
    # The verification service and its shared state (issue 11, plan D4).
    "nonce_unknown",
    "store_unavailable",
    "unauthorized",
    "forbidden",
    "not_found",
    "too_large",
    "internal_error",
    "usage",
}

CLASS_CODES: list[tuple[type[MieError], ErrorCode | None]] = [
    (MieError, None),
    (TlvError, ErrorCode.MALFORMED),
    (ApduFormatError, ErrorCode.MALFORMED),
    (BadResponseError, ErrorCode.MALFORMED),
    (PinFormatError, ErrorCode.MALFORMED),
    (EvidenceFormatError, ErrorCode.MALFORMED),
    (JsonFormatError, ErrorCode.MALFORMED),
    (VectorFormatError, ErrorCode.MALFORMED),
    (ApduError, ErrorCode.CARD_ERROR),
    (ApplicationNotAvailableError, ErrorCode.CARD_ERROR),
    (SecurityStatusError, ErrorCode.CARD_ERROR),
    (SecureMessagingError, ErrorCode.CARD_ERROR),
    (TransportError, ErrorCode.READER_ERROR),
    (PcscUnavailableError, ErrorCode.READER_ERROR),
    (NoReaderError, ErrorCode.READER_ERROR),
    (CardResetError, ErrorCode.READER_ERROR),
    (ReaderBusyError, ErrorCode.READER_ERROR),
    (TransportTimeoutError, ErrorCode.READER_ERROR),
    (ReplayMismatchError, ErrorCode.READER_ERROR),
    (NoCardError, ErrorCode.NO_CARD),
    (CardRemovedError, ErrorCode.CARD_REMOVED),
    (UnsupportedCardError, ErrorCode.UNSUPPORTED_CARD),
    (SignatureInvalidError, ErrorCode.SIGNATURE_INVALID),
    (InvalidPinError, ErrorCode.INVALID_PIN),
    (PinBlockedError, ErrorCode.PIN_BLOCKED),
    (LastTryRefusedError, ErrorCode.LAST_TRY_REFUSED),
    (NonceMismatchError, ErrorCode.NONCE_MISMATCH),
    (OriginMismatchError, ErrorCode.ORIGIN_MISMATCH),
]


def test_the_enum_holds_exactly_the_contract_codes() -> None:
    assert {code.value for code in ErrorCode} == CONTRACT_CODES


def test_a_code_is_its_contract_string_in_json() -> None:
    assert json.dumps({"code": ErrorCode.NONCE_MISMATCH}) == '{"code": "nonce_mismatch"}'
    assert ErrorCode("card_error") is ErrorCode.CARD_ERROR


@pytest.mark.parametrize(("kind", "code"), CLASS_CODES, ids=lambda v: getattr(v, "__name__", v))
def test_each_error_class_carries_its_code(kind: type[MieError], code: ErrorCode | None) -> None:
    assert kind.code is code


def test_a_verification_error_carries_the_code_it_was_given() -> None:
    error = VerificationError(ErrorCode.EXPIRED, "leaf\nexpired")
    assert error.code is ErrorCode.EXPIRED and str(error) == "leaf expired"
    assert VerificationError(ErrorCode.MALFORMED, "x").is_malformed


def test_trust_codes_are_the_same_objects() -> None:
    from mie.trust import ErrorCode as TrustErrorCode
    from mie.trust import VerificationError as TrustVerificationError

    assert TrustErrorCode is ErrorCode
    assert TrustVerificationError is VerificationError


def test_every_error_class_is_exported_from_mie_errors() -> None:
    for kind, _ in CLASS_CODES:
        assert getattr(mie.errors, kind.__name__) is kind
    assert mie.errors.ErrorCode is ErrorCode
    assert mie.errors.VerificationError is VerificationError


def test_pin_errors_are_not_apdu_errors() -> None:
    assert not isinstance(InvalidPinError(2), ApduError)
    assert not isinstance(PinBlockedError(), ApduError)
    assert not isinstance(LastTryRefusedError(), ApduError)
    assert InvalidPinError(2).tries_left == 2
    assert str(InvalidPinError(2)) == "Invalid PIN, 2 tries left"
    assert str(InvalidPinError(1)) == "Invalid PIN, 1 try left"


def test_a_pin_format_error_is_still_a_value_error() -> None:
    assert isinstance(PinFormatError("PIN must be 4 to 8 digits"), ValueError)


def test_a_wrong_pin_keeps_the_status_word_as_its_cause() -> None:
    card = demo_card(pin="4826", holder="Dr Test")
    session = DemoSession(EmulatedConnection(card))
    with pytest.raises(InvalidPinError) as raised:
        session.verify_pin(DEMO_PIN_RULE.pad("9999"))
    cause = raised.value.__cause__
    assert isinstance(cause, ApduError) and cause.sw == 0x63C2
    assert raised.value.tries_left == 2


def test_a_blocked_pin_keeps_the_status_word_as_its_cause() -> None:
    card = demo_card(pin="4826", holder="Dr Test")
    session = DemoSession(EmulatedConnection(card))
    card.tries_left = 0
    with pytest.raises(PinBlockedError) as raised:
        session.verify_pin(DEMO_PIN_RULE.pad("4826"), allow_last_try=True)
    cause = raised.value.__cause__
    assert isinstance(cause, ApduError) and cause.sw == 0x6983
