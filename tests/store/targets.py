"""Where a test store lives, in a form a worker process can receive and open again."""

from __future__ import annotations

from dataclasses import dataclass

from mie.store.base import Store
from mie.store.secondfactor import Argon2Parameters

#: Argon2id at its lowest cost, so a check takes microseconds and the tests exercise the store.
WEAK = Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1, allow_weak=True)


@dataclass(frozen=True)
class StoreTarget:
    """A backend (``sqlite`` or ``postgres``) and its file path or connection string."""

    kind: str
    where: str

    def open(self, *, timeout: float = 10.0) -> Store:
        if self.kind == "sqlite":
            from mie.store.sqlite import SqliteStore

            return SqliteStore(self.where, busy_timeout=timeout)
        from mie.store.postgres import PostgresStore

        return PostgresStore(self.where, connect_timeout=timeout, statement_timeout=timeout)
