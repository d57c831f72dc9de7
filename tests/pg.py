"""A real PostgreSQL server for the tests, on 127.0.0.1 with a temporary data directory.

:class:`PostgresServer` runs ``initdb`` once and ``postgres`` on a fixed port, so a connection
string survives :meth:`PostgresServer.restart`. Fixtures: ``postgres_server`` (one server for
the session), ``postgres_database`` (an empty database per test, dropped after it) and
``restartable_postgres`` (a server of the test's own, which the test may stop and restart).

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

from tests.harness import missing

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


def _require_postgres() -> tuple[Path, str | None]:
    """:return: PostgreSQL's bin directory and the user to run it as (``None``: this one)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing("psycopg is not installed (pip install 'mie[store]')")
    bin_dir = _postgres_bin()
    if bin_dir is None:
        missing("PostgreSQL is not installed (Debian package postgresql)")
    if os.geteuid() != 0:
        return bin_dir, None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        missing("running as root and there is no postgres user to run PostgreSQL as")
    return bin_dir, "postgres"


class PostgresServer:
    """One PostgreSQL server in its own directory under ``top``, listening on 127.0.0.1:``port``.

    :param top: an empty directory for the data directory, the socket and the log.
    :param port: the TCP port, kept across restarts.
    """

    def __init__(self, top: Path, port: int) -> None:
        self.bin_dir, self.user = _require_postgres()
        self.top = top
        self.port = port
        self.data = top / "data"
        self.log = top / "postgres.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def conninfo(self) -> str:
        """:return: the connection string of the superuser ``mie`` on database ``postgres``."""
        return f"host=127.0.0.1 port={self.port} user=mie dbname=postgres"

    @property
    def running(self) -> bool:
        """:return: whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Create the data directory (first start only), start the server, wait until it
        accepts connections (at most 30 s)."""
        if self.running:
            return
        if not self.data.exists():
            if self.user is not None:
                account = pwd.getpwnam(self.user)
                os.chown(self.top, account.pw_uid, account.pw_gid)
            subprocess.run(
                [
                    *(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "mie"),
                    *("--auth=trust", "-E", "UTF8", "-N"),
                ],
                user=self.user,
                check=True,
                capture_output=True,
                timeout=INITDB_TIMEOUT,
            )
        command = [
            *(str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port)),
            *("-h", "127.0.0.1", "-k", str(self.top)),
            *("-c", "fsync=off", "-c", "max_connections=50"),
        ]
        with self.log.open("ab") as out:
            self._process = subprocess.Popen(
                command, user=self.user, stdout=out, stderr=out, start_new_session=True
            )
        try:
            _wait_ready(self._process, self.conninfo, self.log)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are ended, not waited for)."""
        if self._process is not None:
            _stop(self._process)
            self._process = None

    def restart(self) -> None:
        """Stop the server, then start it again on the same port and data."""
        self.stop()
        self.start()


@contextlib.contextmanager
def _server() -> Iterator[PostgresServer]:
    _require_postgres()
    top = Path(tempfile.mkdtemp(prefix="mie-pg-"))
    try:
        server = PostgresServer(top, _free_port())
        try:
            server.start()
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """:return: the connection string of a PostgreSQL superuser ``mie`` on a fresh server."""
    with _server() as server:
        yield server.conninfo


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


@pytest.fixture
def restartable_postgres() -> Iterator[PostgresServer]:
    """:return: a running server of this test's own (its data directory, a fixed port), which
    the test may :meth:`~PostgresServer.stop`, :meth:`~PostgresServer.start` and
    :meth:`~PostgresServer.restart`; stopped and removed after the test."""
    with _server() as server:
        yield server
