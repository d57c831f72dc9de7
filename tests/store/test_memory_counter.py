"""MemoryStore.advance_counter builds the advanced record without dataclasses.replace (review of
issue 10: ~3 µs per assertion, the largest non-crypto cost of the benchmark), with the same value
and the same locking (the threads' tests: tests/store/test_concurrency.py, test_fido_race.py)."""

from __future__ import annotations

import dataclasses
import time
import timeit

from mie.store.base import CredentialRecord
from mie.store.memory import MemoryStore
from tests.store.test_credentials import CRED, RECORD, RP


def test_the_advanced_record_is_what_replace_gives() -> None:
    store = MemoryStore(clock=lambda: 1_790_000_000.5)
    store.put_credential(RECORD)
    advanced = store.advance_counter(RP, CRED, 9, allow_zero=False)
    expected = dataclasses.replace(RECORD, sign_count=9, last_used_at=1_790_000_000.5)
    assert type(advanced) is CredentialRecord
    assert advanced == expected and hash(advanced) == hash(expected)
    assert vars(advanced) == vars(expected) and repr(advanced) == repr(expected)
    assert store.get_credential(RP, CRED) == advanced
    assert RECORD.sign_count == 5 and RECORD.last_used_at is None  # the old record unchanged
    try:
        advanced.sign_count = 10  # type: ignore[misc]
    except dataclasses.FrozenInstanceError:
        pass
    else:
        raise AssertionError("the advanced record is not frozen")


def test_the_shortcut_stays_equivalent_to_replace() -> None:
    # The record is built from its __dict__: true only while CredentialRecord runs nothing in
    # __init__ beyond setting its fields, and has no slots.
    assert not hasattr(CredentialRecord, "__post_init__")
    assert not hasattr(CredentialRecord, "__slots__")
    assert set(vars(RECORD)) == {f.name for f in dataclasses.fields(CredentialRecord)}


def test_advancing_costs_less_than_one_replace() -> None:
    # Before the fix an advance was a replace plus the checks and the lock: never cheaper.
    # Both timed alike, the best of five, so a load burst slows both.
    store = MemoryStore(clock=time.time)
    store.put_credential(RECORD)
    counter = iter(range(6, 10**9))

    def advance() -> None:
        store.advance_counter(RP, CRED, next(counter), allow_zero=False)

    def replace() -> None:
        dataclasses.replace(RECORD, sign_count=7, last_used_at=1.0)

    number = 20_000
    advancing = min(timeit.repeat(advance, number=number, repeat=5))
    replacing = min(timeit.repeat(replace, number=number, repeat=5))
    assert advancing < replacing, f"advance {advancing:.3f} s, replace {replacing:.3f} s"
