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


# Issue 11 (plan D3): a nonce bound to a session, with a context another node needs.

BINDING = bytes(range(32))
OTHER_BINDING = bytes(range(1, 33))
CONTEXT = '{"purpose":"fido.register","rp_id":"iam.chu-exemple.fr"}'


def test_a_bound_nonce_gives_its_context_to_the_same_binding(any_store: Store) -> None:
    nonce = os.urandom(32)
    any_store.issue_nonce(nonce, 300, binding=BINDING, context=CONTEXT)
    assert any_store.consume_nonce(nonce, binding=BINDING) == CONTEXT
    with pytest.raises(NonceUnknownError):
        any_store.consume_nonce(nonce, binding=BINDING)


def test_a_nonce_without_context_gives_none(any_store: Store) -> None:
    bound, plain = os.urandom(32), os.urandom(32)
    any_store.issue_nonce(bound, 300, binding=BINDING)
    any_store.issue_nonce(plain, 300)
    assert any_store.consume_nonce(bound, binding=BINDING) is None
    assert any_store.consume_nonce(plain) is None


@pytest.mark.parametrize(
    ("issued", "presented"),
    [(BINDING, OTHER_BINDING), (BINDING, None), (None, BINDING), (BINDING, BINDING[:16])],
    ids=["other", "bound-presented-none", "unbound-presented-one", "prefix"],
)
def test_another_binding_is_unknown_and_burns_the_nonce(
    any_store: Store, issued: bytes | None, presented: bytes | None
) -> None:
    nonce = os.urandom(32)
    any_store.issue_nonce(nonce, 300, binding=issued, context=CONTEXT)
    with pytest.raises(NonceUnknownError) as refused:
        any_store.consume_nonce(nonce, binding=presented)
    assert str(refused.value) == str(NonceUnknownError())  # one outcome, nothing more said
    # First use, valid or not: the right binding comes too late.
    with pytest.raises(NonceUnknownError):
        any_store.consume_nonce(nonce, binding=issued)


def test_an_expired_bound_nonce_is_unknown_even_with_its_binding(any_store: Store) -> None:
    nonce = os.urandom(32)
    any_store.issue_nonce(nonce, 0.1, binding=BINDING, context=CONTEXT)
    time.sleep(0.3)
    with pytest.raises(NonceUnknownError):
        any_store.consume_nonce(nonce, binding=BINDING)


@pytest.mark.parametrize("length", [1, 2048])
def test_a_context_up_to_2048_characters_round_trips(any_store: Store, length: int) -> None:
    nonce = os.urandom(32)
    context = ("é" * length)[:length]  # characters, not bytes: 4096 bytes of UTF-8
    any_store.issue_nonce(nonce, 300, context=context)
    assert any_store.consume_nonce(nonce) == context


@pytest.mark.parametrize("context", ["", "x" * 2049, "a\x00b", "\ud800", b"{}", 7], ids=repr)
def test_a_bad_context_is_a_typed_error_and_issues_nothing(any_store: Store, context: Any) -> None:
    nonce = os.urandom(32)
    with pytest.raises(StoreInputError):
        any_store.issue_nonce(nonce, 300, context=context)
    with pytest.raises(NonceUnknownError):
        any_store.consume_nonce(nonce)


@pytest.mark.parametrize("binding", [b"", b"x" * 65, "x" * 32, bytearray(32), 1], ids=repr)
def test_a_bad_binding_is_a_typed_error(any_store: Store, binding: Any) -> None:
    nonce = os.urandom(32)
    with pytest.raises(StoreInputError):
        any_store.issue_nonce(nonce, 300, binding=binding)
    any_store.issue_nonce(nonce, 300, binding=BINDING)
    with pytest.raises(StoreInputError):
        any_store.consume_nonce(nonce, binding=binding)
    # Refused before the store was asked: the nonce is still there for its session.
    assert any_store.consume_nonce(nonce, binding=BINDING) is None


def test_nodes_racing_with_bindings_consume_once_and_only_the_bound_one_wins(
    target: StoreTarget, store: Store
) -> None:
    # Several nodes present one nonce at once, half with the wrong binding: whoever comes
    # first consumes it; at most one succeeds, and only with the right binding.
    nonce = os.urandom(32)
    store.issue_nonce(nonce, 300, binding=BINDING, context=CONTEXT)
    nodes = 6
    start = threading.Barrier(nodes)
    outcomes: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def consume(index: int) -> None:
        with target.open() as node:
            start.wait(60)
            try:
                found = node.consume_nonce(nonce, binding=BINDING if index % 2 else OTHER_BINDING)
            except NonceUnknownError:
                found = "unknown"
        with lock:
            outcomes.append((index, found))

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(nodes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(outcomes) == nodes
    winners = [i for i, found in outcomes if found == CONTEXT]
    assert len(winners) <= 1 and all(i % 2 for i in winners)
    assert sum(found == "unknown" for _, found in outcomes) == nodes - len(winners)
    with pytest.raises(NonceUnknownError):
        store.consume_nonce(nonce, binding=BINDING)


def test_ping_answers(any_store: Store) -> None:
    any_store.ping()
