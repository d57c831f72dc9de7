"""The store interface on both backends: guesses reserved before they are checked, successes
that forgive only their own past, enrolments that void pending reservations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mie.store.base import Store
from mie.store.errors import (
    AlreadyEnrolledError,
    NotEnrolledError,
    SecondFactorChangedError,
    SecondFactorLockedError,
    StoreInputError,
)
from tests.store.targets import StoreTarget

HASH = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA"


def test_a_guess_is_counted_when_reserved_before_any_check(store: Store) -> None:
    store.put_secret("b1", HASH)
    first = store.reserve_guess("b1", 2)
    second = store.reserve_guess("b1", 2)
    assert (first.failures, second.failures) == (1, 2)
    assert second.ticket == first.ticket + 1
    assert first.secret_hash == HASH
    with pytest.raises(SecondFactorLockedError):
        store.reserve_guess("b1", 2)
    # The refused reservation counted nothing; a crash after a reservation keeps it counted.
    assert store.secret_status("b1").failures == 2


def test_a_higher_lockout_allows_more_guesses_on_the_same_counter(store: Store) -> None:
    store.put_secret("b1", HASH)
    store.reserve_guess("b1", 1)
    with pytest.raises(SecondFactorLockedError):
        store.reserve_guess("b1", 1)
    assert store.reserve_guess("b1", 2).failures == 2


def test_a_success_forgives_only_the_guesses_up_to_its_own(store: Store) -> None:
    store.put_secret("b1", HASH)
    mine = store.reserve_guess("b1", 5)
    other = store.reserve_guess("b1", 5)
    store.forgive_guesses(mine)
    assert store.secret_status("b1").failures == 1
    store.forgive_guesses(other)
    assert store.secret_status("b1").failures == 0


def test_a_late_success_forgives_nothing_reserved_after_a_later_one(store: Store) -> None:
    store.put_secret("b1", HASH)
    early = store.reserve_guess("b1", 5)
    late = store.reserve_guess("b1", 5)
    store.forgive_guesses(late)
    store.reserve_guess("b1", 5)
    store.forgive_guesses(early)
    assert store.secret_status("b1").failures == 1


def test_a_reenrolment_voids_the_reservations_made_before_it(store: Store) -> None:
    store.put_secret("b1", HASH)
    pending = store.reserve_guess("b1", 5)
    store.reserve_guess("b1", 5)
    store.put_secret("b1", HASH, replace=True)
    assert store.secret_status("b1").failures == 0
    store.reserve_guess("b1", 5)
    with pytest.raises(SecondFactorChangedError):
        store.forgive_guesses(pending)
    assert store.secret_status("b1").failures == 1


def test_a_removal_and_new_enrolment_void_the_old_reservations(store: Store) -> None:
    store.put_secret("b1", HASH)
    pending = store.reserve_guess("b1", 5)
    store.delete_secret("b1")
    with pytest.raises(SecondFactorChangedError):
        store.forgive_guesses(pending)
    store.put_secret("b1", HASH)
    store.reserve_guess("b1", 5)
    with pytest.raises(SecondFactorChangedError):
        store.forgive_guesses(pending)
    assert store.secret_status("b1").failures == 1


def test_an_enrolled_badge_is_not_replaced_unless_asked(store: Store) -> None:
    store.put_secret("b1", HASH)
    generation = store.secret_status("b1").generation
    with pytest.raises(AlreadyEnrolledError):
        store.put_secret("b1", HASH.replace("c2Fsd", "c2Fsf"))
    assert store.reserve_guess("b1", 5).secret_hash == HASH
    assert store.secret_status("b1").generation == generation
    store.put_secret("b1", HASH.replace("c2Fsd", "c2Fsf"), replace=True)
    assert store.secret_status("b1").generation != generation
    assert store.reserve_guess("b1", 5).secret_hash != HASH


def test_clearing_the_failures_unlocks_and_keeps_the_hash(store: Store) -> None:
    store.put_secret("b1", HASH)
    store.reserve_guess("b1", 1)
    with pytest.raises(SecondFactorLockedError):
        store.reserve_guess("b1", 1)
    store.clear_failures("b1")
    assert store.reserve_guess("b1", 1).secret_hash == HASH


def test_badges_have_separate_counters(store: Store) -> None:
    store.put_secret("b1", HASH)
    store.put_secret("b2", HASH)
    store.reserve_guess("b1", 1)
    assert store.reserve_guess("b2", 1).failures == 1


@pytest.mark.parametrize(
    "operation",
    [
        lambda s: s.reserve_guess("nobody", 3),
        lambda s: s.clear_failures("nobody"),
        lambda s: s.delete_secret("nobody"),
        lambda s: s.secret_status("nobody"),
    ],
    ids=["reserve", "clear", "delete", "status"],
)
def test_a_badge_never_enrolled_is_refused(
    store: Store, operation: Callable[[Store], object]
) -> None:
    with pytest.raises(NotEnrolledError):
        operation(store)


@pytest.mark.parametrize("badge", ["", "a" * 129, "a b", "é", "a;b", "a\n", None, b"ab"])
def test_a_bad_badge_name_is_a_typed_error(store: Store, badge: Any) -> None:
    with pytest.raises(StoreInputError):
        store.put_secret(badge, HASH)
    with pytest.raises(StoreInputError):
        store.reserve_guess(badge, 3)


def test_the_longest_badge_name_is_accepted(store: Store) -> None:
    store.put_secret("A" * 128, HASH)
    assert store.secret_status("A" * 128).failures == 0


@pytest.mark.parametrize("limit", [0, -1, 1001, True, "3", 2.0])
def test_a_bad_lockout_is_a_typed_error(store: Store, limit: Any) -> None:
    store.put_secret("b1", HASH)
    with pytest.raises(StoreInputError):
        store.reserve_guess("b1", limit)
    assert store.secret_status("b1").failures == 0


@pytest.mark.parametrize("secret_hash", ["", "x" * 513, "tab\there", "é", None])
def test_a_bad_hash_is_refused(store: Store, secret_hash: Any) -> None:
    with pytest.raises(StoreInputError):
        store.put_secret("b1", secret_hash)
    with pytest.raises(NotEnrolledError):
        store.secret_status("b1")


def test_two_stores_on_one_backend_share_the_state(target: StoreTarget, store: Store) -> None:
    store.put_secret("b1", HASH)
    with target.open() as again:
        again.reserve_guess("b1", 2)
    assert store.reserve_guess("b1", 2).failures == 2
