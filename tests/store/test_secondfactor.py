"""The badge second factor on both backends: a PIN checked against an Argon2id hash bound to
the identity record, counted before it is checked, locked after the configured failures."""

from __future__ import annotations

from typing import Any

import argon2
import pytest

from mie.core.errors import ErrorCode, InvalidPinError, PinBlockedError, PinFormatError
from mie.core.pin import PinRule
from mie.store.base import Store
from mie.store.errors import (
    AlreadyEnrolledError,
    NotEnrolledError,
    SecondFactorLockedError,
    StoreCorruptError,
    StoreInputError,
    WrongSecondFactorError,
)
from mie.store.secondfactor import (
    MAX_RECORD_LENGTH,
    SECOND_FACTOR_PIN,
    Argon2Parameters,
    SecondFactor,
)
from tests.store.targets import WEAK

RECORD = b"\x30\x82signed identity record: badge 04A1B2C3D4E5F6, RPPS 10001234567"
OTHER_RECORD = b"\x30\x82signed identity record: badge 04FFEEDDCCBBAA, RPPS 10007654321"


@pytest.fixture
def factor(store: Store) -> SecondFactor:
    second_factor = SecondFactor(store, max_failures=3, parameters=WEAK)
    second_factor.enrol("b1", RECORD, "4821")
    return second_factor


def _stored_hash(store: Store, badge: str) -> str:
    # Reading the hash costs a guess; forgive it so the counter is unchanged.
    reservation = store.reserve_guess(badge, 1000)
    store.forgive_guesses(reservation)
    return reservation.secret_hash


def test_the_enrolled_pin_verifies(factor: SecondFactor) -> None:
    factor.verify("b1", RECORD, "4821")
    assert factor.tries_left("b1") == 3


def test_a_wrong_pin_is_counted_and_says_how_many_tries_are_left(factor: SecondFactor) -> None:
    with pytest.raises(WrongSecondFactorError) as wrong:
        factor.verify("b1", RECORD, "4822")
    assert wrong.value.tries_left == 2
    assert isinstance(wrong.value, InvalidPinError)
    assert wrong.value.code is ErrorCode.INVALID_PIN
    assert "4822" not in str(wrong.value) and "4821" not in str(wrong.value)
    assert factor.tries_left("b1") == 2


def test_the_lockout_refuses_even_the_right_pin(factor: SecondFactor) -> None:
    tries = []
    for pin in ("0000", "1111", "2222"):
        with pytest.raises(WrongSecondFactorError) as wrong:
            factor.verify("b1", RECORD, pin)
        tries.append(wrong.value.tries_left)
    assert tries == [2, 1, 0]
    with pytest.raises(SecondFactorLockedError) as locked:
        factor.verify("b1", RECORD, "4821")
    assert isinstance(locked.value, PinBlockedError)
    assert locked.value.code is ErrorCode.PIN_BLOCKED
    assert factor.tries_left("b1") == 0
    assert factor.store.secret_status("b1").failures == 3


def test_a_success_resets_the_counter(factor: SecondFactor) -> None:
    for pin in ("0000", "1111"):
        with pytest.raises(WrongSecondFactorError):
            factor.verify("b1", RECORD, pin)
    factor.verify("b1", RECORD, "4821")
    assert factor.tries_left("b1") == 3


def test_an_unlock_clears_the_lockout_and_keeps_the_pin(factor: SecondFactor) -> None:
    for pin in ("0000", "1111", "2222"):
        with pytest.raises(WrongSecondFactorError):
            factor.verify("b1", RECORD, pin)
    factor.unlock("b1")
    factor.verify("b1", RECORD, "4821")


def test_a_reenrolment_replaces_the_pin_and_clears_the_counter(factor: SecondFactor) -> None:
    with pytest.raises(WrongSecondFactorError):
        factor.verify("b1", RECORD, "0000")
    with pytest.raises(AlreadyEnrolledError):
        factor.enrol("b1", RECORD, "7777")
    factor.enrol("b1", RECORD, "7777", replace=True)
    assert factor.tries_left("b1") == 3
    with pytest.raises(WrongSecondFactorError):
        factor.verify("b1", RECORD, "4821")
    factor.verify("b1", RECORD, "7777")


def test_a_removed_badge_has_no_second_factor(factor: SecondFactor) -> None:
    factor.remove("b1")
    with pytest.raises(NotEnrolledError):
        factor.verify("b1", RECORD, "4821")
    with pytest.raises(NotEnrolledError):
        factor.tries_left("b1")


def test_a_pin_checked_against_another_record_is_wrong(factor: SecondFactor) -> None:
    with pytest.raises(WrongSecondFactorError):
        factor.verify("b1", OTHER_RECORD, "4821")
    assert factor.tries_left("b1") == 2


def test_a_hash_moved_to_another_badge_record_does_not_verify(factor: SecondFactor) -> None:
    factor.enrol("b2", OTHER_RECORD, "9999")
    factor.store.put_secret("b2", _stored_hash(factor.store, "b1"), replace=True)
    with pytest.raises(WrongSecondFactorError):
        factor.verify("b2", OTHER_RECORD, "4821")
    # The same hash still verifies where it belongs: the refusal is the record, not the hash.
    factor.verify("b1", RECORD, "4821")


def test_the_same_pin_on_two_badges_gives_two_different_hashes(factor: SecondFactor) -> None:
    factor.enrol("b2", RECORD, "4821")
    assert _stored_hash(factor.store, "b1") != _stored_hash(factor.store, "b2")


@pytest.mark.parametrize(
    "pin",
    ["482", "482112345", "48a1", "48 1", "\uff14\uff18\uff12\uff11", "", "4" * 10_000, b"48\xff1"],
    ids=["short", "long", "letter", "space", "fullwidth", "empty", "oversize", "bytes"],
)
def test_a_pin_the_rule_refuses_is_a_typed_error_and_not_counted(
    factor: SecondFactor, pin: str | bytes
) -> None:
    with pytest.raises(PinFormatError) as refused:
        factor.verify("b1", RECORD, pin)
    assert refused.value.code is ErrorCode.MALFORMED
    assert factor.tries_left("b1") == 3
    with pytest.raises(PinFormatError):
        factor.enrol("b2", RECORD, pin)
    with pytest.raises(NotEnrolledError):
        factor.tries_left("b2")


@pytest.mark.parametrize(
    "record", [b"", b"x" * (MAX_RECORD_LENGTH + 1), "text record", None], ids=repr
)
def test_a_bad_record_is_a_typed_error_and_not_counted(factor: SecondFactor, record: Any) -> None:
    with pytest.raises(StoreInputError):
        factor.verify("b1", record, "4821")
    assert factor.tries_left("b1") == 3


def test_a_deployment_sets_its_own_pin_rule(store: Store) -> None:
    six = SecondFactor(store, rule=PinRule(6, 6, True), parameters=WEAK)
    with pytest.raises(PinFormatError):
        six.enrol("b1", RECORD, "4821")
    six.enrol("b1", RECORD, "482100")
    six.verify("b1", RECORD, "482100")
    assert SECOND_FACTOR_PIN == PinRule(4, 8, True)


@pytest.mark.parametrize("outcome", ["right", "wrong", "refused"])
def test_a_bytearray_pin_is_wiped_on_every_path(factor: SecondFactor, outcome: str) -> None:
    pin = bytearray({"right": b"4821", "wrong": b"4822", "refused": b"48a1"}[outcome])
    if outcome == "right":
        factor.verify("b1", RECORD, pin)
    else:
        expected = WrongSecondFactorError if outcome == "wrong" else PinFormatError
        with pytest.raises(expected):
            factor.verify("b1", RECORD, pin)
    assert pin == bytearray(len(pin))
    enrolled = bytearray(b"5555")
    factor.enrol("b3", RECORD, enrolled)
    assert enrolled == bytearray(4)
    factor.verify("b3", RECORD, "5555")


@pytest.mark.parametrize(
    "stored", ["garbage", "$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"]
)
def test_a_stored_hash_that_is_not_argon2id_fails_closed(factor: SecondFactor, stored: str) -> None:
    factor.store.put_secret("b1", stored, replace=True)
    with pytest.raises(StoreCorruptError):
        factor.verify("b1", RECORD, "4821")
    assert factor.tries_left("b1") == 2


def test_the_hash_is_argon2id_with_the_configured_cost(factor: SecondFactor) -> None:
    parameters = argon2.extract_parameters(_stored_hash(factor.store, "b1"))
    assert parameters.type is argon2.Type.ID
    assert (parameters.time_cost, parameters.memory_cost, parameters.parallelism) == (1, 8, 1)
    assert (parameters.hash_len, parameters.salt_len) == (32, 16)


def test_a_check_reads_the_cost_from_the_hash(factor: SecondFactor) -> None:
    stronger = Argon2Parameters(time_cost=2, memory_kib=19 * 1024, parallelism=1)
    SecondFactor(factor.store, parameters=stronger).verify("b1", RECORD, "4821")


def test_the_default_cost_is_rfc_9106_low_memory() -> None:
    default = Argon2Parameters()
    profile = argon2.profiles.RFC_9106_LOW_MEMORY
    assert (default.time_cost, default.memory_kib, default.parallelism) == (
        profile.time_cost,
        profile.memory_cost,
        profile.parallelism,
    )
    assert (default.hash_len, default.salt_len) == (profile.hash_len, profile.salt_len)


@pytest.mark.parametrize(
    "cost",
    [
        {"memory_kib": 1024},
        {"time_cost": 1},
        {"parallelism": 0},
        {"parallelism": 4, "memory_kib": 16, "allow_weak": True},
        {"hash_len": 8},
        {"salt_len": 8},
    ],
    ids=repr,
)
def test_a_cost_below_the_floor_or_out_of_range_is_refused(cost: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Argon2Parameters(**cost)


def test_a_weak_cost_needs_the_explicit_argument() -> None:
    assert Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1, allow_weak=True)


@pytest.mark.parametrize("limit", [0, 1001])
def test_a_bad_lockout_is_refused_at_construction(store: Store, limit: int) -> None:
    with pytest.raises(StoreInputError):
        SecondFactor(store, max_failures=limit)


def test_a_check_that_dies_before_its_answer_keeps_the_guess_counted(
    factor: SecondFactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(encoded: str, secret: bytearray) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr("mie.store.secondfactor._matches", crash)
    with pytest.raises(KeyboardInterrupt):
        factor.verify("b1", RECORD, "4821")
    monkeypatch.undo()
    assert factor.tries_left("b1") == 2
