"""MemoryStore.advance_counter builds the advanced record without dataclasses.replace (review of
issue 10: ~3 µs per assertion, the largest non-crypto cost of the benchmark), with the same value
and the same locking (the threads' tests: tests/store/test_concurrency.py, test_fido_race.py). Its
cost is measured by benchmarks/bench_fido.py, never by a timed test."""

from __future__ import annotations

import dataclasses

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
