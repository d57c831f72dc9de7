"""Two ``mie serve`` processes on one PostgreSQL (issue 11, Done 3 and 4): 1,000 replays of
used nonces, alternating nodes, are all refused; a nonce posted to both nodes at once is
accepted exactly once; a revocation on one node is refused by the other; each node's audit
trail verifies with ``mie audit verify`` and an edited copy does not."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mie.emulation.testpki import CardCredentials
from tests.harness import mie_command, require_module
from tests.pg import postgres_database, postgres_server  # noqa: F401 - fixtures
from tests.service.conftest import (  # noqa: F401 - fixtures
    KEYS,
    ORIGIN,
    SCOPES,
    card,
    cpx_evidence,
    headers,
    pki,
    psc_allowing_test,
    trust_files,
)

httpx = require_module("httpx", "the service tests need httpx (a dev dependency)")
require_module("psycopg", "the PostgreSQL tests need psycopg (mie[store])")

START_DEADLINE = 60.0
_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


def store_uri(conninfo: str) -> str:
    """:return: the ``postgresql://`` URI of a ``key=value`` connection string."""
    fields = dict(part.split("=", 1) for part in conninfo.split())
    return (
        f"postgresql://{fields['user']}@{fields['host']}:{fields['port']}/{fields['dbname']}"
        "?connect_timeout=2"
    )


def write_config(
    directory: Path,
    node: str,
    store: str,
    trust: dict[str, list[str]],
    psc: str,
    **extra: Any,
) -> Path:
    """Write a ``mie-service/1`` file for ``node`` (its own audit file) and return its path."""
    import hashlib

    config = {
        "format": "mie-service/1",
        "origin": ORIGIN,
        "node": node,
        "store": store,
        "store_pool": 8,
        "clients": [
            {
                "name": name,
                "key_sha256": hashlib.sha256(key.encode()).hexdigest(),
                "scopes": sorted(SCOPES[name]),
            }
            for name, key in KEYS.items()
        ],
        "trust": {
            "anchors": trust["anchors"],
            "intermediates": trust["intermediates"],
            "crls": trust["crls"],
            "download": False,
        },
        "psc_claims": psc,
        "audit": {"file": str(audit_dir(directory) / f"audit-{node}.jsonl"), "store": True},
        **extra,
    }
    path = directory / f"{node}.json"
    path.write_text(json.dumps(config))
    return path


def audit_dir(directory: Path) -> Path:
    """:return: where the nodes' audit files go: memory when the system has /dev/shm (each
    record is fsync'd: on a disk, 2,000 records would take most of the test's time)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        target = shm / f"mie-audit-{os.getpid()}-{directory.name}"
        target.mkdir(exist_ok=True)
        return target
    return directory


@dataclass
class Node:
    """A ``mie serve`` process."""

    name: str
    url: str
    process: subprocess.Popen[str]
    audit: Path
    stderr: list[str]

    def client(self) -> Any:
        return httpx.Client(base_url=self.url, timeout=30)


@contextlib.contextmanager
def mie_serve(config: Path, node: str) -> Iterator[Node]:
    """Run ``mie serve --config CONFIG --port 0`` until the block ends (SIGTERM, then exit 0
    expected)."""
    process = subprocess.Popen(
        mie_command("serve", "--config", str(config), "--port", "0"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            match = _LISTENING.search(line)
            if match and not url:
                url.append(match[1])
                found.set()
        found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        found.wait(START_DEADLINE)
        if not url:
            raise AssertionError(f"mie serve {node} did not start: {''.join(lines)[-2000:]}")
        audit = audit_dir(config.parent) / f"audit-{node}.jsonl"
        yield Node(node, url[0], process, audit, lines)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        reader.join(10)


@pytest.fixture
def two_nodes(
    tmp_path: Path,
    postgres_database: str,  # noqa: F811
    trust_files: dict[str, list[str]],  # noqa: F811
    psc_allowing_test: str,  # noqa: F811
) -> Iterator[tuple[Node, Node]]:
    store = store_uri(postgres_database)
    config_a = write_config(tmp_path, "node-a", store, trust_files, psc_allowing_test)
    config_b = write_config(tmp_path, "node-b", store, trust_files, psc_allowing_test)
    try:
        with mie_serve(config_a, "node-a") as a, mie_serve(config_b, "node-b") as b:
            yield a, b
    finally:
        shutil.rmtree(audit_dir(tmp_path), ignore_errors=True)


def _challenge(client: Any) -> bytes:
    answer = client.post("/v1/challenges", headers=headers(), json={})
    assert answer.status_code == 201, answer.text
    return bytes.fromhex(answer.json()["nonce"])


def _verify(client: Any, body: dict[str, Any]) -> Any:
    return client.post("/v1/verify", headers=headers(), json=body)


def test_thousand_replays(
    two_nodes: tuple[Node, Node],
    card: CardCredentials,  # noqa: F811
    tmp_path: Path,
) -> None:
    a, b = two_nodes
    with a.client() as client_a, b.client() as client_b:
        clients = (client_a, client_b)
        used = []
        for i in range(100):
            # Issued on one node, used on the other.
            nonce = _challenge(clients[i % 2])
            body = cpx_evidence(card, nonce).to_json()
            answer = _verify(clients[(i + 1) % 2], body)
            assert answer.status_code == 200, answer.text
            assert answer.json()["psc_claims"]["SubjectNameID"]
            used.append(body)
    replays = [(used[i % 100], i % 2) for i in range(1000)]

    local = threading.local()

    def replay(item: tuple[dict[str, Any], int]) -> int:
        body, side = item
        if not hasattr(local, "clients"):
            local.clients = (a.client(), b.client())
        answer = _verify(local.clients[side], body)
        assert answer.json()["error"]["code"] in ("nonce_unknown", None)
        return int(answer.status_code)

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(replay, replays))
    assert statuses.count(200) == 0
    assert statuses.count(409) == 1000
    _check_trails(a, b, tmp_path)


def test_simultaneous_first_use(
    two_nodes: tuple[Node, Node],
    card: CardCredentials,  # noqa: F811
) -> None:
    a, b = two_nodes
    with a.client() as client:
        bodies = [cpx_evidence(card, _challenge(client)).to_json() for _ in range(50)]
    barrier = threading.Barrier(2)

    def post(node: Node, body: dict[str, Any]) -> int:
        with node.client() as client:
            barrier.wait(30)
            return int(_verify(client, body).status_code)

    with ThreadPoolExecutor(2) as pool:
        for body in bodies:
            first = pool.submit(post, a, body)
            second = pool.submit(post, b, body)
            statuses = sorted((first.result(), second.result()))
            assert statuses == [200, 409], statuses


def test_revoked_on_one_node_refused_on_the_other(
    two_nodes: tuple[Node, Node],
    card: CardCredentials,  # noqa: F811
) -> None:
    a, b = two_nodes
    uid = "04a1b2c3d4e5f6"
    with a.client() as client_a, b.client() as client_b:
        body = {"mie": f"badge:{uid}", "reason": "stolen"}
        answer = client_a.post("/v1/mie/revocations", headers=headers("desk", None), json=body)
        assert answer.status_code == 201, answer.text
        found = client_b.get(f"/v1/mie/badge:{uid}", headers=headers("desk", None))
        assert found.status_code == 200 and found.json()["revocation"]["reason"] == "stolen"


def _check_trails(a: Node, b: Node, tmp_path: Path) -> None:
    """Done 4: each node's trail verifies; an edited copy fails naming the next record."""
    for node in (a, b):
        done = subprocess.run(
            mie_command("audit", "verify", str(node.audit)),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "chain intact" in done.stdout + done.stderr
    edited = tmp_path / "edited.jsonl"
    shutil.copy(a.audit, edited)
    lines = edited.read_text().splitlines(keepends=True)
    record = json.loads(lines[1])
    record["level"] = "high" if record["level"] != "high" else "low"
    lines[1] = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    edited.write_text("".join(lines))
    done = subprocess.run(
        mie_command("audit", "verify", str(edited)), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "integrity_error" in done.stderr and "record 3" in done.stderr, done.stderr
