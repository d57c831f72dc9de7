"""Single-use challenge nonces on both backends: issued with an expiry, consumed exactly once,
even by several nodes at once."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from mie.store.base import Store
from mie.store.errors import NonceUnknownError, StoreInputError
from tests.store.targets import StoreTarget


def test_an_issued_nonce_is_consumed_once(store: Store) -> None:
    nonce = os.urandom(32)
    store.issue_nonce(nonce, 300)
    store.consume_nonce(nonce)
    with pytest.raises(NonceUnknownError):
        store.consume_nonce(nonce)


def test_a_nonce_never_issued_is_unknown(store: Store) -> None:
    store.issue_nonce(os.urandom(32), 300)
    with pytest.raises(NonceUnknownError):
        store.consume_nonce(os.urandom(32))


def test_an_expired_nonce_is_unknown(store: Store) -> None:
    expired, alive = os.urandom(32), os.urandom(32)
    store.issue_nonce(expired, 0.1)
    store.issue_nonce(alive, 300)
    time.sleep(0.3)
    with pytest.raises(NonceUnknownError):
        store.consume_nonce(expired)
    store.consume_nonce(alive)


def test_an_expired_nonce_is_purged_and_may_be_issued_again(store: Store) -> None:
    nonce = os.urandom(32)
    store.issue_nonce(nonce, 0.1)
    time.sleep(0.3)
    store.issue_nonce(nonce, 300)
    store.consume_nonce(nonce)


def test_a_nonce_issued_twice_is_refused(store: Store) -> None:
    nonce = os.urandom(32)
    store.issue_nonce(nonce, 300)
    with pytest.raises(StoreInputError):
        store.issue_nonce(nonce, 300)
    store.consume_nonce(nonce)


@pytest.mark.parametrize("nonce", [b"x" * 15, b"x" * 65, "x" * 32, bytearray(32), None], ids=repr)
def test_a_bad_nonce_is_a_typed_error(store: Store, nonce: Any) -> None:
    with pytest.raises(StoreInputError):
        store.issue_nonce(nonce, 300)
    with pytest.raises(StoreInputError):
        store.consume_nonce(nonce)


@pytest.mark.parametrize("lifetime", [0, -1, 3601, True, "300", None])
def test_a_bad_lifetime_is_a_typed_error(store: Store, lifetime: Any) -> None:
    nonce = os.urandom(32)
    with pytest.raises(StoreInputError):
        store.issue_nonce(nonce, lifetime)
    with pytest.raises(NonceUnknownError):
        store.consume_nonce(nonce)


def test_nodes_consuming_one_nonce_at_once_succeed_exactly_once(
    target: StoreTarget, store: Store
) -> None:
    nonce = os.urandom(32)
    store.issue_nonce(nonce, 300)
    nodes = 8
    start = threading.Barrier(nodes)
    outcomes: list[str] = []
    lock = threading.Lock()

    def consume() -> None:
        with target.open() as node:
            start.wait(60)
            try:
                node.consume_nonce(nonce)
                outcome = "consumed"
            except NonceUnknownError:
                outcome = "unknown"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=consume) for _ in range(nodes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["consumed"] + ["unknown"] * (nodes - 1)
