"""SqliteStore keeps one connection per thread: the same transactions, durability and errors."""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from mie.store.errors import CloneSuspectedError, StoreTimeoutError
from mie.store.sqlite import SqliteStore
from tests.store.test_credentials import CRED, HASH, RECORD, RP


def _counter_on_disk(path: Path) -> int:
    # Another connection, as another process would open the file.
    raw = sqlite3.connect(path)
    try:
        (count,) = raw.execute(
            "SELECT sign_count FROM mie_fido_credential WHERE credential_id = ?", (CRED.hex(),)
        ).fetchone()
    finally:
        raw.close()
    assert isinstance(count, int)
    return count


def test_a_moved_counter_is_committed_when_advance_counter_returns(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    store.put_credential(RECORD)
    store.advance_counter(RP, CRED, 6, allow_zero=False)
    assert _counter_on_disk(path) == 6
    store.advance_counter(RP, CRED, 9, allow_zero=False)
    assert _counter_on_disk(path) == 9
    with pytest.raises(CloneSuspectedError):
        store.advance_counter(RP, CRED, 9, allow_zero=False)
    assert _counter_on_disk(path) == 9
    store.close()


def test_each_thread_has_its_own_connection_and_one_lock_serialises_them(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    store.put_credential(RECORD)
    counters = iter(range(6, 6 + 4 * 50))
    taken = threading.Lock()
    accepted: list[int] = []
    refused: list[int] = []

    def advance() -> None:
        for _ in range(50):
            with taken:
                counter = next(counters)
            try:
                store.advance_counter(RP, CRED, counter, allow_zero=False)
                accepted.append(counter)
            except CloneSuspectedError:
                refused.append(counter)

    threads = [threading.Thread(target=advance) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # Counters handed out in order may arrive out of order: a lower one after a higher one is
    # a clone suspicion; the stored counter is the highest accepted.
    assert accepted
    assert len(accepted) + len(refused) == 200
    stored = store.get_credential(RP, CRED)
    assert stored.sign_count == max(accepted)
    store.close()


def test_the_store_works_again_after_close_and_after_a_lock_timeout(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path, busy_timeout=0.2)
    store.put_secret("b1", HASH)
    store.close()
    assert store.reserve_guess("b1", 3).failures == 1
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreTimeoutError):
            store.reserve_guess("b1", 3)
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    assert store.reserve_guess("b1", 3).failures == 2
    store.close()
    store.close()


def test_a_refusal_inside_a_transaction_rolls_back_and_keeps_the_connection(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "state.db")
    store.put_credential(RECORD)
    with pytest.raises(ZeroDivisionError), store._transaction() as db:
        db.execute("UPDATE mie_fido_credential SET sign_count = 99")
        raise ZeroDivisionError
    assert store.get_credential(RP, CRED).sign_count == RECORD.sign_count
    store.advance_counter(RP, CRED, 7, allow_zero=False)
    assert store.get_credential(RP, CRED).sign_count == 7
    store.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    store.put_credential(RECORD)
    store.advance_counter(RP, CRED, 6, allow_zero=False)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        code = 1
        try:
            store.advance_counter(RP, CRED, 7, allow_zero=False)
            store.close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's connection still serves, and sees the child's commit.
    assert store.get_credential(RP, CRED).sign_count == 7
    store.advance_counter(RP, CRED, 8, allow_zero=False)
    assert _counter_on_disk(path) == 8
    store.close()


def test_a_thread_that_ends_takes_its_connection_along(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    store.put_credential(RECORD)

    def read() -> None:
        assert store.get_credential(RP, CRED).sign_count == RECORD.sign_count

    for _ in range(20):
        thread = threading.Thread(target=read)
        thread.start()
        thread.join(timeout=30)
    gc.collect()
    # This thread's connection, and none of the 20 threads' that ended (no descriptor leak).
    assert len(store._opened) == 1
    store.close()
    assert len(store._opened) == 0
