"""The schema step upgrades a database made by an older mie (issue 10's schema, the
statements copied here) in place, once, even with two nodes upgrading at once."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
from pathlib import Path

import pytest

from mie.store.errors import NonceUnknownError
from tests.store.targets import StoreTarget

#: The nonce table as issue 10 created it, with one nonce issued by an old node.
OLD_SQLITE = (
    "CREATE TABLE mie_nonce (nonce TEXT PRIMARY KEY, expires_at REAL NOT NULL)",
    "CREATE INDEX mie_nonce_expiry ON mie_nonce (expires_at)",
)
OLD_POSTGRES = (
    "CREATE TABLE mie_nonce (nonce text PRIMARY KEY, expires_at timestamptz NOT NULL)",
    "CREATE INDEX mie_nonce_expiry ON mie_nonce (expires_at)",
)
OLD_NONCE = bytes(range(32))
BINDING = b"\x07" * 32


def _old_database(kind: str, where: str) -> None:
    if kind == "sqlite":
        db = sqlite3.connect(where, isolation_level=None)
        try:
            for statement in OLD_SQLITE:
                db.execute(statement)
            db.execute(
                "INSERT INTO mie_nonce VALUES (?, strftime('%s', 'now') + 300.0)",
                (OLD_NONCE.hex(),),
            )
        finally:
            db.close()
        return
    import psycopg

    with psycopg.connect(where, autocommit=True) as pg:
        for statement in OLD_POSTGRES:
            pg.execute(statement)
        pg.execute(
            "INSERT INTO mie_nonce VALUES (%s, now() + interval '300 seconds')", (OLD_NONCE.hex(),)
        )


def _columns(kind: str, where: str) -> set[str]:
    if kind == "sqlite":
        db = sqlite3.connect(where)
        try:
            return {row[1] for row in db.execute("PRAGMA table_info(mie_nonce)")}
        finally:
            db.close()
    import psycopg

    with psycopg.connect(where) as pg:
        rows = pg.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'mie_nonce'"
        ).fetchall()
    return {row[0] for row in rows}


def test_an_old_database_gains_the_columns_and_keeps_its_nonces(target: StoreTarget) -> None:
    _old_database(target.kind, target.where)
    assert _columns(target.kind, target.where) == {"nonce", "expires_at"}
    with target.open() as store:
        assert {"binding", "context"} <= _columns(target.kind, target.where)
        # A nonce an old node issued has no binding: it is consumed without one.
        assert store.consume_nonce(OLD_NONCE) is None
        nonce = os.urandom(32)
        store.issue_nonce(nonce, 300, binding=BINDING, context="{}")
        assert store.consume_nonce(nonce, binding=BINDING) == "{}"
    with target.open() as again:  # the step runs again at every open, changing nothing
        again.ping()
    assert {"binding", "context"} <= _columns(target.kind, target.where)


def test_an_old_unbound_nonce_is_refused_to_a_binding(target: StoreTarget) -> None:
    _old_database(target.kind, target.where)
    with target.open() as store:
        with pytest.raises(NonceUnknownError):
            store.consume_nonce(OLD_NONCE, binding=BINDING)
        with pytest.raises(NonceUnknownError):
            store.consume_nonce(OLD_NONCE)


def _open(target: StoreTarget, start: multiprocessing.synchronize.Barrier) -> None:
    start.wait(60)
    with target.open(timeout=30.0) as store:
        store.ping()


def test_two_nodes_upgrading_at_once_both_succeed(target: StoreTarget, tmp_path: Path) -> None:
    for _ in range(3):  # a fresh old database each round: the race is on the upgrade
        where = target.where
        if target.kind == "sqlite":
            where = str(tmp_path / f"state-{os.urandom(4).hex()}.db")
        else:
            import psycopg

            with psycopg.connect(target.where, autocommit=True) as db:
                db.execute("DROP TABLE IF EXISTS mie_nonce")
        each = StoreTarget(target.kind, where)
        _old_database(each.kind, each.where)
        context = multiprocessing.get_context("spawn")
        start = context.Barrier(2)
        nodes = [context.Process(target=_open, args=(each, start)) for _ in range(2)]
        for node in nodes:
            node.start()
        for node in nodes:
            node.join(120)
        assert [node.exitcode for node in nodes] == [0, 0]
        assert {"binding", "context"} <= _columns(each.kind, each.where)
