"""The audit table on every backend: one hash chain per node, appended only at its next
number (a taken or skipped number is AuditConflictError, never a fork), read back in order;
two processes appending to two chains at once (plan §2.3, D12)."""

from __future__ import annotations

import hashlib
import multiprocessing
import threading
from typing import Any

import pytest

from mie.store.base import Store
from mie.store.errors import AuditConflictError, StoreError, StoreInputError
from tests.store.targets import StoreTarget


def line(node: str, seq: int) -> str:
    return f'{{"node":"{node}","seq":{seq},"x":"é"}}'


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def append(store: Store, node: str, seq: int) -> None:
    text = line(node, seq)
    store.append_audit(node, seq, text, digest(text))


def test_append_head_and_lines(any_store: Store) -> None:
    assert any_store.audit_head("n1") is None
    assert any_store.audit_lines("n1") == ()
    for seq in range(1, 6):
        append(any_store, "n1", seq)
    append(any_store, "n2", 1)
    assert any_store.audit_head("n1") == (5, digest(line("n1", 5)))
    assert any_store.audit_head("n2") == (1, digest(line("n2", 1)))
    assert any_store.audit_lines("n1") == tuple(line("n1", s) for s in range(1, 6))
    assert any_store.audit_lines("n1", after=2, limit=2) == (line("n1", 3), line("n1", 4))
    assert any_store.audit_lines("n1", after=5) == ()


@pytest.mark.parametrize("seq", [1, 2, 4, 9], ids=["taken-first", "taken-head", "skipped", "far"])
def test_a_taken_or_skipped_number_is_a_conflict(any_store: Store, seq: int) -> None:
    append(any_store, "n1", 1)
    append(any_store, "n1", 2)
    with pytest.raises(AuditConflictError) as refused:
        any_store.append_audit("n1", seq, "{}", digest("{}"))
    assert isinstance(refused.value, StoreError)
    assert any_store.audit_head("n1") == (2, digest(line("n1", 2)))
    assert any_store.audit_lines("n1") == (line("n1", 1), line("n1", 2))


def test_a_chain_starts_at_one(any_store: Store) -> None:
    with pytest.raises(AuditConflictError):
        any_store.append_audit("n1", 2, "{}", digest("{}"))
    assert any_store.audit_head("n1") is None


@pytest.mark.parametrize(
    "args",
    [
        ("", 1, "{}", "0" * 64),
        ("a b", 1, "{}", "0" * 64),
        ("n" * 65, 1, "{}", "0" * 64),
        ("n1", 0, "{}", "0" * 64),
        ("n1", True, "{}", "0" * 64),
        ("n1", 2**63, "{}", "0" * 64),
        ("n1", 1, "", "0" * 64),
        ("n1", 1, "a\nb", "0" * 64),
        ("n1", 1, "a\x00b", "0" * 64),
        ("n1", 1, "x" * 16385, "0" * 64),
        ("n1", 1, "\ud800", "0" * 64),
        ("n1", 1, b"{}", "0" * 64),
        ("n1", 1, "{}", "0" * 63),
        ("n1", 1, "{}", "A" * 64),
    ],
    ids=repr,
)
def test_a_bad_record_is_a_typed_error(any_store: Store, args: tuple[Any, ...]) -> None:
    with pytest.raises(StoreInputError):
        any_store.append_audit(*args)
    assert any_store.audit_head("n1") is None


@pytest.mark.parametrize(
    ("after", "limit"), [(-1, 10), (0, 0), (0, 10001), (True, 10), (0, "10")], ids=repr
)
def test_a_bad_range_is_a_typed_error(any_store: Store, after: Any, limit: Any) -> None:
    with pytest.raises(StoreInputError):
        any_store.audit_lines("n1", after=after, limit=limit)


def test_a_16_kib_line_is_kept(any_store: Store) -> None:
    text = "x" * 16384
    any_store.append_audit("n1", 1, text, digest(text))
    assert any_store.audit_lines("n1") == (text,)


def test_threads_racing_for_one_number_fork_nothing(target: StoreTarget, store: Store) -> None:
    # Two writers of one node's chain (a misconfiguration): exactly one wins each number.
    writers, rounds = 4, 15
    start = threading.Barrier(writers)
    conflicts = [0] * writers

    def write(index: int) -> None:
        with target.open() as node:
            start.wait(60)
            for _ in range(rounds):
                head = node.audit_head("n1")
                seq = 1 if head is None else head[0] + 1
                text = f'{{"seq":{seq},"w":{index}}}'
                try:
                    node.append_audit("n1", seq, text, digest(text))
                except AuditConflictError:
                    conflicts[index] += 1

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    lines = store.audit_lines("n1", limit=10000)
    head = store.audit_head("n1")
    assert head is not None and head[0] == len(lines)
    assert [int(text.split(",")[0].split(":")[1]) for text in lines] == list(
        range(1, len(lines) + 1)
    )
    assert len(lines) + sum(conflicts) == writers * rounds


def _write_chain(target: StoreTarget, node: str, count: int) -> None:
    with target.open(timeout=30.0) as store:
        for seq in range(1, count + 1):
            append(store, node, seq)


def test_two_processes_append_to_two_chains(target: StoreTarget, store: Store) -> None:
    context = multiprocessing.get_context("spawn")
    count = 40
    nodes = [
        context.Process(target=_write_chain, args=(target, name, count)) for name in ("a", "b")
    ]
    for node in nodes:
        node.start()
    for node in nodes:
        node.join(120)
    assert [node.exitcode for node in nodes] == [0, 0]
    for name in ("a", "b"):
        assert store.audit_lines(name) == tuple(line(name, s) for s in range(1, count + 1))
        assert store.audit_head(name) == (count, digest(line(name, count)))
