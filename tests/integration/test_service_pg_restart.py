"""PostgreSQL restarted under a running ``mie serve`` (issue 11, "Bad input": a store restart
mid-run): during the outage only 503 ``store_unavailable`` JSON (never a 500, the process
alive), successes again soon after, every accepted nonce accepted once, and the audit file
holds exactly one success record per 200."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from mie.emulation.testpki import CardCredentials
from tests.integration.test_service_nodes import audit_dir, mie_serve, store_uri, write_config
from tests.pg import PostgresServer, restartable_postgres  # noqa: F401 - fixture
from tests.service.conftest import (  # noqa: F401 - fixtures
    card,
    cpx_evidence,
    headers,
    pki,
    psc_allowing_test,
    trust_files,
)

THREADS = 8
RECOVERY_DEADLINE = 10.0


def test_postgres_restart_mid_run(
    restartable_postgres: PostgresServer,  # noqa: F811
    tmp_path: Path,
    trust_files: dict[str, list[str]],  # noqa: F811
    psc_allowing_test: str,  # noqa: F811
    card: CardCredentials,  # noqa: F811
) -> None:
    try:
        _run(restartable_postgres, tmp_path, trust_files, psc_allowing_test, card)
    finally:
        shutil.rmtree(audit_dir(tmp_path), ignore_errors=True)


def _run(
    server: PostgresServer,
    directory: Path,
    trust: dict[str, list[str]],
    psc: str,
    holder: CardCredentials,
) -> None:

    store = store_uri(server.conninfo)
    # The file is the only sink: a success the store could not record is no record at all.
    config = write_config(
        directory, "node-a", store, trust, psc,
        audit={"file": str(audit_dir(directory) / "audit-node-a.jsonl"), "store": False},
    )  # fmt: skip
    accepted: list[str] = []
    seen: list[tuple[float, int, str | None]] = []
    lock = threading.Lock()
    stop = threading.Event()
    restarted: list[float] = []

    with mie_serve(config, "node-a") as node:

        def loop() -> None:
            with node.client() as client:
                while not stop.is_set():
                    answer = client.post("/v1/challenges", headers=headers(), json={})
                    _record(seen, lock, answer)
                    if answer.status_code != 201:
                        continue
                    body = cpx_evidence(holder, bytes.fromhex(answer.json()["nonce"])).to_json()
                    answer = client.post("/v1/verify", headers=headers(), json=body)
                    _record(seen, lock, answer)
                    if answer.status_code == 200:
                        with lock:
                            accepted.append(json.dumps(body))

        threads = [threading.Thread(target=loop, daemon=True) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        time.sleep(2)
        restarted.append(time.monotonic())
        server.restart()
        restarted.append(time.monotonic())
        deadline = restarted[1] + RECOVERY_DEADLINE
        while time.monotonic() < deadline:
            with lock:
                if any(t > restarted[1] and s == 200 for t, s, _ in seen):
                    break
            time.sleep(0.1)
        time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join(30)
        assert node.process.poll() is None, "".join(node.stderr)[-2000:]
        statuses = {(s, c) for _, s, c in seen}
        assert statuses <= {(201, None), (200, None), (503, "store_unavailable")}, statuses
        assert (503, "store_unavailable") in statuses
        assert any(t > restarted[1] and s == 200 for t, s, _ in seen), "no success after"
        assert len(accepted) == len(set(accepted))
        # Each accepted evidence replayed once: refused.
        with node.client() as client:
            for body in accepted:
                answer = client.post("/v1/verify", headers=headers(), json=json.loads(body))
                assert answer.status_code == 409, answer.text
            assert client.get("/v1/health").status_code == 200
    from mie.audit import verify_trail

    lines = node.audit.read_bytes().splitlines(keepends=True)
    verify_trail(lines)
    records = [json.loads(line) for line in lines]
    successes = [r for r in records if r["event"] == "verify" and r["error"] is None]
    assert len(successes) == len(accepted)


def _record(seen: list[tuple[float, int, str | None]], lock: threading.Lock, answer: Any) -> None:
    code = None
    if answer.status_code >= 400:
        assert answer.headers["content-type"].startswith("application/json"), answer.text
        code = answer.json()["error"]["code"]
    with lock:
        seen.append((time.monotonic(), answer.status_code, code))
