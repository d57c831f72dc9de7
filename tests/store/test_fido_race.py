"""Done when (issue 10): verifiers handed the same FIDO2 assertion at the same time, on one
PostgreSQL (or one SQLite file, or threads on one MemoryStore), accept it exactly once (D9).

Each worker is a separate process (``spawn``) with its own store, or a thread with its own
connection; a barrier releases them together on every round, and every round hands all of them
the same signature counter: exactly one advances it, the others get ``suspected_clone``, and
the credential is never suspended (an equal counter is a replay, not a clone).

The verifier's signature check comes before the counter (plan §4.4) and is not racy; this test
drives :meth:`~mie.store.base.Store.advance_counter`, the step two nodes contend on. The same
race through ``mie.fido``'s verifier belongs with it (plan §5.3, S3).
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
from collections import Counter
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from mie.store.errors import CloneSuspectedError
from mie.store.memory import MemoryStore
from tests.store.targets import StoreTarget
from tests.store.test_credentials import CRED, RECORD, RP

ROUNDS = 50
WAIT = 120.0


def _race(target: StoreTarget, start: Barrier, answers: multiprocessing.Queue) -> None:
    """Advance the credential's counter to ``round`` on every round; put what happened."""
    outcomes: list[tuple[int, str]] = []
    with target.open() as store:
        for counter in range(RECORD.sign_count + 1, RECORD.sign_count + 1 + ROUNDS):
            start.wait(WAIT)
            try:
                store.advance_counter(RP, CRED, counter, allow_zero=False)
            except CloneSuspectedError as e:
                outcomes.append((counter, f"{e.code.value}:{e.suspended}"))
            else:
                outcomes.append((counter, "accepted"))
    answers.put(outcomes)


def _processes(target: StoreTarget, workers: int) -> list[list[tuple[int, str]]]:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(workers)
    answers: multiprocessing.Queue = context.Queue()
    started = [context.Process(target=_race, args=(target, start, answers)) for _ in range(workers)]
    for worker in started:
        worker.start()
    results = []
    try:
        for _ in started:
            results.append(answers.get(timeout=WAIT))
    except queue.Empty:
        pytest.fail(f"only {len(results)} of {workers} workers answered within {WAIT} s")
    finally:
        for worker in started:
            worker.join(WAIT)
            if worker.is_alive():
                worker.kill()
                worker.join(10)
    assert [worker.exitcode for worker in started] == [0] * workers
    return results


def _threads(target: StoreTarget, workers: int) -> list[list[tuple[int, str]]]:
    start = threading.Barrier(workers)
    answers: queue.Queue[list[tuple[int, str]]] = queue.Queue()
    started = [
        threading.Thread(target=_race, args=(target, start, answers)) for _ in range(workers)
    ]
    for worker in started:
        worker.start()
    for worker in started:
        worker.join(WAIT)
    assert not any(worker.is_alive() for worker in started)
    return [answers.get_nowait() for _ in started]


def _check(target: StoreTarget, results: list[list[tuple[int, str]]], workers: int) -> None:
    per_round: dict[int, Counter[str]] = {}
    for outcomes in results:
        assert len(outcomes) == ROUNDS
        for counter, outcome in outcomes:
            per_round.setdefault(counter, Counter())[outcome] += 1
    assert len(per_round) == ROUNDS
    for counter, seen in per_round.items():
        # Exactly one acceptance per assertion, counted; the others are replays.
        assert seen == Counter({"accepted": 1, "suspected_clone:None": workers - 1}), (
            counter,
            seen,
        )
    with target.open() as store:
        final = store.get_credential(RP, CRED)
    assert final.sign_count == RECORD.sign_count + ROUNDS
    assert final.suspended is None


def _register(target: StoreTarget) -> None:
    with target.open() as store:
        store.put_credential(RECORD)


@pytest.mark.parametrize("workers", [2, 4])
def test_processes_on_one_postgresql_accept_one_assertion_exactly_once(
    postgres_database: str, workers: int
) -> None:
    target = StoreTarget("postgres", postgres_database)
    _register(target)
    _check(target, _processes(target, workers), workers)


def test_threads_on_one_postgresql_accept_one_assertion_exactly_once(
    postgres_database: str,
) -> None:
    target = StoreTarget("postgres", postgres_database)
    _register(target)
    _check(target, _threads(target, 6), 6)


def test_processes_on_one_sqlite_file_accept_one_assertion_exactly_once(tmp_path: Path) -> None:
    target = StoreTarget("sqlite", str(tmp_path / "state.db"))
    _register(target)
    _check(target, _processes(target, 2), 2)


class _OneMemoryStore(StoreTarget):
    """Every worker opens the same in-memory store (one process: threads only)."""

    def __init__(self) -> None:
        super().__init__("memory", "")
        object.__setattr__(self, "_store", MemoryStore())

    def open(self, *, timeout: float = 10.0) -> MemoryStore:
        store: MemoryStore = self.__dict__["_store"]
        return store


def test_threads_on_one_memory_store_accept_one_assertion_exactly_once() -> None:
    target = _OneMemoryStore()
    _register(target)
    _check(target, _threads(target, 6), 6)
