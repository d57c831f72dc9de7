"""Every error of mie.store carries a contract code, so a failure result can always be built."""

from __future__ import annotations

import inspect

import pytest

import mie.errors
import mie.store.errors
from mie.core.errors import ErrorCode, MieError
from mie.result import ErrorInfo
from mie.store.errors import (
    AuditConflictError,
    MieRevokedError,
    NonceUnknownError,
    SecondFactorChangedError,
    SecondFactorLockedError,
    StoreCorruptError,
    StoreError,
    StoreInputError,
    StoreTimeoutError,
    TemporaryExpiredError,
    TemporaryIdentityError,
    WrongSecondFactorError,
)

CLASSES = sorted(
    (
        k
        for _, k in inspect.getmembers(mie.store.errors, inspect.isclass)
        if issubclass(k, MieError) and k.__module__ == "mie.store.errors"
    ),
    key=lambda k: k.__name__,
)


def test_the_module_has_its_error_classes() -> None:
    assert len(CLASSES) == 18


@pytest.mark.parametrize("kind", CLASSES, ids=lambda k: k.__name__)
def test_every_store_error_has_a_contract_code(kind: type[MieError]) -> None:
    assert isinstance(kind.code, ErrorCode)
    error = kind.__new__(kind)
    Exception.__init__(error, "Some problem")
    assert ErrorInfo.from_exception(error).code is kind.code


def test_the_pin_outcomes_carry_the_card_codes() -> None:
    wrong = ErrorInfo.from_exception(WrongSecondFactorError(2))
    assert (wrong.code, wrong.tries_left) == (ErrorCode.INVALID_PIN, 2)
    assert wrong.to_json()["tries_left"] == 2
    assert ErrorInfo.from_exception(SecondFactorLockedError()).code is ErrorCode.PIN_BLOCKED
    assert isinstance(StoreInputError("Bad"), ValueError)


def test_a_nonce_the_store_does_not_hold_is_nonce_unknown() -> None:
    # Issue 11 (plan D4): the contract's own code, no longer the nearest one (nonce_mismatch).
    info = ErrorInfo.from_exception(NonceUnknownError())
    assert info.code is ErrorCode.NONCE_UNKNOWN
    assert info.to_json() == {"code": "nonce_unknown", "message": str(NonceUnknownError())}


@pytest.mark.parametrize(
    "kind",
    [
        StoreError,
        StoreTimeoutError,
        StoreCorruptError,
        SecondFactorChangedError,
        AuditConflictError,
    ],
    ids=lambda k: k.__name__,
)
def test_the_store_failing_is_store_unavailable(kind: type[StoreError]) -> None:
    # Issue 11 (plan D4): the store's failures were reader_error, as a reader's.
    assert issubclass(kind, StoreError)
    assert ErrorInfo.from_exception(kind("Database unreachable")).code is (
        ErrorCode.STORE_UNAVAILABLE
    )


def test_a_revoked_mie_carries_its_revocation() -> None:
    revocation = object()
    error = MieRevokedError(
        "badge 04a1b2c3d4e5f6 revoked (lost) at 2026-12-01T10:00:00Z", revocation=revocation
    )
    assert error.revocation is revocation and error.code is ErrorCode.REVOKED
    assert str(error) == "badge 04a1b2c3d4e5f6 revoked (lost) at 2026-12-01T10:00:00Z"
    assert MieRevokedError("fido2:AAAA revoked").revocation is None
    assert ErrorInfo.from_exception(error).to_json()["code"] == "revoked"


def test_a_temporary_mie_outside_its_grant_is_expired_or_policy() -> None:
    grant = object()
    expired = TemporaryExpiredError("temporary badge 04a1 expired at T", grant=grant)
    other = TemporaryIdentityError("temporary badge 04a1 granted for another idNat", grant=grant)
    assert (expired.code, expired.grant) == (ErrorCode.EXPIRED, grant)
    assert (other.code, other.grant) == (ErrorCode.POLICY, grant)
    assert TemporaryExpiredError("x").grant is None and TemporaryIdentityError("x").grant is None
    assert not isinstance(expired, StoreError) and not isinstance(other, StoreError)


@pytest.mark.parametrize("kind", CLASSES, ids=lambda k: k.__name__)
def test_every_store_error_is_exported_from_mie_errors(kind: type[MieError]) -> None:
    assert getattr(mie.errors, kind.__name__) is kind
    assert kind.__name__ in mie.errors.__all__


@pytest.mark.parametrize(
    "error",
    [
        NonceUnknownError(),
        MieRevokedError("badge 04a1b2c3d4e5f6 revoked (lost)"),
        TemporaryExpiredError("temporary key expired"),
        TemporaryIdentityError("temporary key granted for another idNat"),
        AuditConflictError("audit record node-a/17 already written"),
        StoreError("Database unreachable"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_the_cli_takes_the_service_outcomes_as_failed_checks(error: MieError) -> None:
    # DESIGN.md: nonce_unknown and the lifecycle outcomes are failed checks (exit 1), not bad
    # usage; NonceUnknownError and the three lifecycle classes were exit 2 before issue 11.
    from mie._cli.app import exit_code_for

    assert exit_code_for(error) == 1
