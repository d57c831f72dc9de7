"""Every error of mie.store carries a contract code, so a failure result can always be built."""

from __future__ import annotations

import inspect

import pytest

import mie.store.errors
from mie.core.errors import ErrorCode, MieError
from mie.result import ErrorInfo
from mie.store.errors import (
    NonceUnknownError,
    SecondFactorLockedError,
    StoreInputError,
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
    assert len(CLASSES) == 14


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
    assert ErrorInfo.from_exception(NonceUnknownError()).code is ErrorCode.NONCE_MISMATCH
    assert isinstance(StoreInputError("Bad"), ValueError)
