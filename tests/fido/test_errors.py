"""mie.fido.errors re-exports the four credential-store outcomes of mie.store.errors, loaded on
first use: importing it loads no mie.store."""

from __future__ import annotations

import pytest

import mie.store.errors
from mie.core.errors import ErrorCode
from mie.fido import errors
from tests.unit.test_import_weight import imported_modules

STORE_OUTCOMES = {
    "CredentialUnknownError": ErrorCode.CREDENTIAL_UNKNOWN,
    "AlreadyRegisteredError": ErrorCode.ALREADY_REGISTERED,
    "CloneSuspectedError": ErrorCode.SUSPECTED_CLONE,
    "CounterUnsupportedError": ErrorCode.COUNTER_UNSUPPORTED,
}


@pytest.mark.parametrize(("name", "code"), STORE_OUTCOMES.items())
def test_the_store_outcomes_are_the_store_classes(name: str, code: ErrorCode) -> None:
    assert name in errors.__all__ and name in dir(errors)
    kind = getattr(errors, name)
    assert kind is getattr(mie.store.errors, name)
    assert kind.code is code


def test_from_import_works_and_an_unknown_name_is_an_attribute_error() -> None:
    from mie.fido.errors import CloneSuspectedError

    assert CloneSuspectedError("counter went back", suspended="clone").suspended == "clone"
    with pytest.raises(AttributeError, match="no_such_error"):
        _ = errors.no_such_error
    # Only the four: the store's other classes are not FIDO2 outcomes.
    with pytest.raises(AttributeError, match="StoreError"):
        _ = errors.StoreError


def test_every_name_resolves() -> None:
    for name in errors.__all__:
        assert isinstance(getattr(errors, name), type), name


def test_importing_the_fido_errors_loads_no_store() -> None:
    modules = imported_modules("import mie.fido.errors")
    assert "mie.fido.errors" in modules
    assert [m for m in modules if m == "mie.store" or m.startswith("mie.store.")] == []
    # The guard is not vacuous: the first use loads the store's errors.
    used = imported_modules("import mie.fido.errors; mie.fido.errors.CredentialUnknownError")
    assert "mie.store.errors" in used
