"""What each backend adds to the interface: SQLite's file, WAL mode and busy deadline;
PostgreSQL's timeouts, reconnection and concurrent schema creation."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mie.store.errors import StoreError, StoreInputError, StoreTimeoutError
from mie.store.sqlite import SqliteStore
from tests.store.conftest import _free_port

HASH = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA"


@pytest.mark.parametrize("path", ["", ":memory:"])
def test_sqlite_refuses_a_database_other_processes_cannot_share(path: str) -> None:
    with pytest.raises(StoreInputError):
        SqliteStore(path)


@pytest.mark.parametrize("timeout", [0, -1.0, 601])
def test_sqlite_refuses_a_busy_timeout_out_of_range(tmp_path: Path, timeout: float) -> None:
    with pytest.raises(StoreInputError):
        SqliteStore(tmp_path / "state.db", busy_timeout=timeout)


def test_sqlite_file_is_in_wal_mode_and_takes_a_path_object(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "state.db") as store:
        store.put_secret("b1", HASH)
        assert store.path == str(tmp_path / "state.db")
    check = sqlite3.connect(tmp_path / "state.db")
    try:
        assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        check.close()


def test_sqlite_busy_timeout_is_a_deadline_on_the_write_lock(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db", busy_timeout=0.2)
    store.put_secret("b1", HASH)
    holder = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreTimeoutError):
            store.reserve_guess("b1", 3)
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    assert store.reserve_guess("b1", 3).failures == 1


def test_sqlite_file_that_cannot_be_opened_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        SqliteStore(tmp_path / "missing-directory" / "state.db")


def test_importing_the_store_loads_no_backend() -> None:
    script = (
        "import sys, mie.store, mie.store.secondfactor\n"
        "print(sorted(m for m in ('psycopg', 'sqlite3', 'mie.store.postgres',"
        " 'mie.store.sqlite', 'mie.trust', 'mie.cards') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert loaded.stdout.strip() == "[]"


def test_postgres_refuses_timeouts_out_of_range(postgres_database: str) -> None:
    from mie.store.postgres import PostgresStore

    with pytest.raises(StoreInputError):
        PostgresStore(postgres_database, connect_timeout=0)
    with pytest.raises(StoreInputError):
        PostgresStore(postgres_database, statement_timeout=601)


def test_postgres_unreachable_is_a_store_error(postgres_server: str) -> None:
    from mie.store.postgres import PostgresStore

    with pytest.raises(StoreError):
        PostgresStore(f"host=127.0.0.1 port={_free_port()} user=mie dbname=x", connect_timeout=2)


def test_postgres_statement_timeout_bounds_the_wait_for_a_row_lock(postgres_database: str) -> None:
    import psycopg

    from mie.store.postgres import PostgresStore

    store = PostgresStore(postgres_database, statement_timeout=0.3)
    store.put_secret("b1", HASH)
    with psycopg.connect(postgres_database) as holder:
        holder.execute("SELECT 1 FROM mie_second_factor WHERE badge = 'b1' FOR UPDATE")
        with pytest.raises(StoreTimeoutError):
            store.reserve_guess("b1", 3)
        holder.rollback()
    # The cancelled reservation counted nothing, and the store connects again.
    assert store.secret_status("b1").failures == 0
    assert store.reserve_guess("b1", 3).failures == 1
    store.close()


def test_postgres_store_connects_again_after_its_session_ends(postgres_database: str) -> None:
    import psycopg

    from mie.store.postgres import PostgresStore

    with PostgresStore(postgres_database) as store:
        store.put_secret("b1", HASH)
        with psycopg.connect(postgres_database, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        with pytest.raises(StoreError):
            store.reserve_guess("b1", 3)
        assert store.reserve_guess("b1", 3).failures == 1


def test_postgres_schema_is_created_once_by_nodes_starting_together(
    postgres_database: str,
) -> None:
    from mie.store.postgres import PostgresStore

    errors: list[BaseException] = []

    def start() -> None:
        try:
            PostgresStore(postgres_database).close()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
