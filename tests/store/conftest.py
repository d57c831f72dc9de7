"""Fixtures of the store tests: a real PostgreSQL server started for the session on 127.0.0.1,
and a store on each backend.

PostgreSQL refuses to run as root: when the tests run as root, initdb and postgres run as the
``postgres`` user, in a temporary directory it owns. Under ``CI=true`` a missing PostgreSQL or
psycopg fails the tests instead of skipping them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mie.store.base import Store
from tests.harness import missing
from tests.store.targets import StoreTarget

PG_BIN_DIRS = "/usr/lib/postgresql/*/bin"
INITDB_TIMEOUT = 120.0
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
_DATABASES = itertools.count()


def _postgres_bin() -> Path | None:
    found = [d for d in Path("/").glob(PG_BIN_DIRS.lstrip("/")) if (d / "initdb").exists()]
    return max(found, key=lambda d: int(d.parent.name)) if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_ready(process: subprocess.Popen[bytes], conninfo: str, log: Path) -> None:
    import psycopg

    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"postgres exited with {process.returncode}: see {log}")
        with contextlib.suppress(psycopg.OperationalError):
            psycopg.connect(conninfo, connect_timeout=2).close()
            return
        time.sleep(0.1)
    raise RuntimeError(f"postgres was not ready within {READY_TIMEOUT} s: see {log}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    # SIGINT is PostgreSQL's fast shutdown: sessions are ended, not waited for.
    process.send_signal(signal.SIGINT)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """:return: the connection string of a PostgreSQL superuser ``mie`` on a fresh server."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing("psycopg is not installed (pip install 'mie[store]')")
    bin_dir = _postgres_bin()
    if bin_dir is None:
        missing("PostgreSQL is not installed (Debian package postgresql)")
    user: str | None = None
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            missing("running as root and there is no postgres user to run PostgreSQL as")
        user = "postgres"
    top = Path(tempfile.mkdtemp(prefix="mie-pg-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        if user is not None:
            os.chown(top, account.pw_uid, account.pw_gid)
        data = top / "data"
        subprocess.run(
            [bin_dir / "initdb", "-D", data, "-U", "mie", "--auth=trust", "-E", "UTF8", "-N"],
            user=user,
            check=True,
            capture_output=True,
            timeout=INITDB_TIMEOUT,
        )
        port = _free_port()
        log = top / "postgres.log"
        server: list[str | Path] = [bin_dir / "postgres", "-D", data, "-p", str(port)]
        settings: list[str | Path] = [
            "-h",
            "127.0.0.1",
            "-k",
            top,
            "-c",
            "fsync=off",
            "-c",
            "max_connections=50",
        ]
        with log.open("ab") as out:
            process = subprocess.Popen(
                [*server, *settings],
                user=user,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        conninfo = f"host=127.0.0.1 port={port} user=mie dbname=postgres"
        _wait_ready(process, conninfo, log)
        yield conninfo
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def postgres_database(postgres_server: str) -> Iterator[str]:
    """:return: the connection string of an empty database, dropped after the test."""
    import psycopg

    name = f"mie_test_{os.getpid()}_{next(_DATABASES)}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield postgres_server.replace("dbname=postgres", f"dbname={name}")
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


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
