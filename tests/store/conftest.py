"""Fixtures of the store tests: a real PostgreSQL server started for the session on 127.0.0.1
(:mod:`tests.pg`), and a store on each backend.

Under ``CI=true`` a missing PostgreSQL or psycopg fails the tests instead of skipping them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mie.store.base import Store
from mie.store.memory import MemoryStore
from tests.pg import (
    _free_port,
    postgres_database,
    postgres_server,
    restartable_postgres,
)
from tests.store.targets import StoreTarget

__all__ = ["_free_port", "postgres_database", "postgres_server", "restartable_postgres"]


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> StoreTarget:
    """An empty store on each backend."""
    if request.param == "sqlite":
        return StoreTarget("sqlite", str(tmp_path / "state.db"))
    return StoreTarget("postgres", request.getfixturevalue("postgres_database"))


@pytest.fixture
def store(target: StoreTarget) -> Iterator[Store]:
    """A store opened on :func:`target`, closed after the test."""
    with target.open() as opened:
        yield opened


@pytest.fixture(params=["sqlite", "postgres", "memory"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty store on each backend, the in-memory one included (for tests of one store
    object; the tests of several nodes use :func:`target`)."""
    opened: Store
    if request.param == "memory":
        opened = MemoryStore()
    elif request.param == "sqlite":
        opened = StoreTarget("sqlite", str(tmp_path / "state.db")).open()
    else:
        opened = StoreTarget("postgres", request.getfixturevalue("postgres_database")).open()
    with opened:
        yield opened
