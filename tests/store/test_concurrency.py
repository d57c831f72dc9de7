"""Done when: processes guessing the second-factor PIN of one badge at the same time, on one
PostgreSQL (or one SQLite file), never get more guesses than the lockout allows."""

from __future__ import annotations

import multiprocessing
import queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from mie.store.errors import SecondFactorLockedError, WrongSecondFactorError
from mie.store.secondfactor import SecondFactor
from tests.store.targets import WEAK, StoreTarget

RECORD = b"signed identity record of badge 04A1B2C3D4E5F6"
LIMIT = 25
WAIT = 120.0


def _guess_until_locked(
    target: StoreTarget, start: Barrier, answers: multiprocessing.Queue
) -> None:
    """Guess wrong PINs for the badge until it is locked; put how many were checked."""
    checked = 0
    with target.open() as store:
        second_factor = SecondFactor(store, max_failures=LIMIT, parameters=WEAK)
        start.wait(WAIT)
        for guess in range(10_000):
            try:
                second_factor.verify("badge", RECORD, f"{2000 + guess % 1000}")
            except WrongSecondFactorError:
                checked += 1
            except SecondFactorLockedError:
                break
    answers.put(checked)


def _run(target: StoreTarget, processes: int) -> list[int]:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes)
    answers: multiprocessing.Queue = context.Queue()
    workers = [
        context.Process(target=_guess_until_locked, args=(target, start, answers))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    counts = []
    try:
        for _ in workers:
            counts.append(answers.get(timeout=WAIT))
    except queue.Empty:
        pytest.fail(f"only {len(counts)} of {processes} workers answered within {WAIT} s")
    finally:
        for worker in workers:
            worker.join(WAIT)
            if worker.is_alive():
                worker.kill()
                worker.join(10)
    assert [worker.exitcode for worker in workers] == [0] * processes
    return counts


@pytest.mark.parametrize("processes", [2, 4])
def test_concurrent_guessers_on_postgresql_get_no_more_guesses_than_the_lockout(
    postgres_database: str, processes: int
) -> None:
    _check(StoreTarget("postgres", postgres_database), processes)


@pytest.mark.parametrize("processes", [2, 4])
def test_concurrent_guessers_on_one_sqlite_file_get_no_more_guesses_than_the_lockout(
    tmp_path: Path, processes: int
) -> None:
    _check(StoreTarget("sqlite", str(tmp_path / "state.db")), processes)


def _check(target: StoreTarget, processes: int) -> None:
    with target.open() as store:
        SecondFactor(store, max_failures=LIMIT, parameters=WEAK).enrol("badge", RECORD, "1111")
        counts = _run(target, processes)
        # Every guess a worker saw checked was counted, and the lockout stopped all of them.
        assert sum(counts) == LIMIT, counts
        assert store.secret_status("badge").failures == LIMIT
        with pytest.raises(SecondFactorLockedError):
            SecondFactor(store, max_failures=LIMIT, parameters=WEAK).verify("badge", RECORD, "1111")
