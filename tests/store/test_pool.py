"""PostgresStore's bounded connection pool: threads share at most ``pool_size`` server
connections, and after the server drops them one call fails, then the store reconnects."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

from mie.store.errors import NonceUnknownError, NotEnrolledError, StoreError, StoreInputError
from tests.pg import PostgresServer


def _connections(admin_conninfo: str, database: str) -> int:
    import psycopg

    with psycopg.connect(admin_conninfo, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _database(conninfo: str) -> str:
    return dict(part.split("=", 1) for part in conninfo.split())["dbname"]


@pytest.mark.parametrize("size", [0, 65, True, 2.0, "8"])
def test_a_pool_size_out_of_range_is_refused(postgres_database: str, size: Any) -> None:
    from mie.store.postgres import PostgresStore

    with pytest.raises(StoreInputError):
        PostgresStore(postgres_database, pool_size=size)


def test_threads_share_at_most_pool_size_connections(
    postgres_server: str, postgres_database: str
) -> None:
    from mie.store.postgres import PostgresStore

    threads, rounds, size = 16, 100, 8
    peak = 0
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)
    with PostgresStore(postgres_database, pool_size=size) as store:
        assert store.pool_size == size

        def work() -> None:
            try:
                start.wait(60)
                for _ in range(rounds):
                    nonce = os.urandom(32)
                    store.issue_nonce(nonce, 300, binding=b"b" * 32)
                    store.consume_nonce(nonce, binding=b"b" * 32)
                    with pytest.raises(NonceUnknownError):
                        store.consume_nonce(nonce, binding=b"b" * 32)
            except BaseException as e:  # reported by the main thread
                errors.append(e)

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for worker in workers:
            worker.start()
        start.wait(60)
        while any(worker.is_alive() for worker in workers):
            peak = max(peak, _connections(postgres_server, _database(postgres_database)))
            for worker in workers:
                worker.join(0.05)
        assert errors == []
        opened = _connections(postgres_server, _database(postgres_database))
    assert 1 < peak <= size  # threads did run at once, never past the bound
    assert opened <= size
    assert _connections(postgres_server, _database(postgres_database)) == 0  # close() closed them


def test_after_the_server_drops_every_connection_one_call_fails_then_it_reconnects(
    postgres_server: str, postgres_database: str
) -> None:
    import psycopg

    from mie.store.postgres import PostgresStore

    with PostgresStore(postgres_database, pool_size=4) as store:
        # Fill the pool: four calls at once leave four idle connections.
        start = threading.Barrier(4)

        def hold() -> None:
            start.wait(60)
            store.ping()

        holders = [threading.Thread(target=hold) for _ in range(4)]
        for holder in holders:
            holder.start()
        for holder in holders:
            holder.join(60)
        assert _connections(postgres_server, _database(postgres_database)) >= 2
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
                " AND pid <> pg_backend_pid()",
                (_database(postgres_database),),
            )
        with pytest.raises(StoreError):
            store.ping()  # the idle connection it took was dead: the others are closed too
        store.ping()  # a new connection; no second failure for the other dead ones
        nonce = os.urandom(32)
        store.issue_nonce(nonce, 300)
        assert store.consume_nonce(nonce) is None


def test_a_refusal_raised_mid_call_keeps_the_connection(postgres_database: str) -> None:
    from mie.store.postgres import PostgresStore

    with PostgresStore(postgres_database, pool_size=1) as store:
        store.ping()
        (first,) = store._idle
        # reserve_guess raises inside its cursor block: no psycopg error, the connection serves.
        with pytest.raises(NotEnrolledError):
            store.reserve_guess("nobody", 3)
        assert store._idle == [first] and not first.closed


def test_a_server_restart_costs_at_most_one_failed_call(
    restartable_postgres: PostgresServer,
) -> None:
    from mie.store.postgres import PostgresStore

    server = restartable_postgres
    with PostgresStore(server.conninfo, pool_size=4, connect_timeout=2.0) as store:
        nonce = os.urandom(32)
        store.issue_nonce(nonce, 300, binding=b"s" * 32, context="{}")
        server.stop()
        with pytest.raises(StoreError):
            store.ping()  # down: a typed error within the connect deadline, no retry
        server.start()
        failures = 0
        for _ in range(2):
            try:
                store.ping()
            except StoreError:
                failures += 1
        assert failures <= 1
        store.ping()
        # The nonce issued before the restart is still there, once.
        assert store.consume_nonce(nonce, binding=b"s" * 32) == "{}"
        with pytest.raises(NonceUnknownError):
            store.consume_nonce(nonce, binding=b"s" * 32)
