"""The badge relay of ``mie serve`` through pcscd + vpcd (plan §7, Done 2 and "a relay agent
that disconnects"): the service app (``create_app`` of a ``ServiceConfig`` naming a badge
configuration with software keys and its second factor in the service's SQLite store) on uvicorn
in this process, ``mie emulate desfire --state S`` on vpcd, and ``mie agent --connect URL`` in its
own process forwarding between them. Run under ``flock -o /tmp/mie-pcsc.lock`` (the vpcd ports
are shared machine-wide)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from mie.desfire.config import BadgeConfig
from mie.desfire.record import IdentityRecord
from mie.emulation.desfire_state import save_state
from mie.store.secondfactor import Argon2Parameters, SecondFactor
from mie.store.sqlite import SqliteStore
from tests.desfire.badges import AUTHORITY_KEY, ISSUER, LABELS, RPPS, UID, badge_state, record
from tests.harness import READER0, Pcscd, emulator_process, mie_command, require_module

require_module("starlette", "the service tests need mie[service]")
require_module("httpx", "the service tests need httpx (a dev dependency)")

from mie.service.config import AuditConfig, RelayConfig, ServiceConfig  # noqa: E402
from tests.service.conftest import LiveService, serve  # noqa: E402

pytestmark = pytest.mark.pcsc

ORIGIN = "https://iam.example"
PIN = "2580"
WEAK = Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1, allow_weak=True)
HEADERS = {"Mie-Session": "login-1", "Content-Type": "application/json"}


def badge_deployment(directory: Path, database: Path) -> Path:
    """Write the badge configuration (mie-badge/1) of tests.desfire.badges' software keys, its
    second factor in ``database``; :return: its path."""
    masters = {label: (bytes([0x10 + i]) * 16).hex() for i, label in enumerate(LABELS)}
    private = AUTHORITY_KEY.private_numbers().private_value
    keys = {
        "format": "mie-keys/1",
        "aes128": masters,
        "ecdsa-p256": {"mie-authority": f"{private:064x}"},
    }
    key_file = directory / "keys.json"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(keys, handle)
    pem = AUTHORITY_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (directory / "authority.pem").write_bytes(pem)
    document: dict[str, Any] = {
        "format": "mie-badge/1",
        "keys": {"provider": "software", "file": "keys.json"},
        "authorities": [{"name": ISSUER, "pem": "authority.pem", "test": True}],
        "issuer": ISSUER,
        "originality_keys": ["mie-test"],
        "second_factor": {"store": f"sqlite:///{database}", "max_failures": 3},
    }
    path = directory / "badge.json"
    path.write_text(json.dumps(document))
    return path


@pytest.fixture
def deployment(tmp_path: Path) -> tuple[ServiceConfig, Path]:
    """The service's configuration, and the emulated badge's state file (PIN enrolled)."""
    database = tmp_path / "service.db"
    badge_path = badge_deployment(tmp_path, database)
    cfg = BadgeConfig.load(badge_path)
    signed = IdentityRecord.parse(record(UID, cfg))
    SecondFactor(SqliteStore(database), parameters=WEAK).enrol(signed.badge_name, signed.file, PIN)
    state = tmp_path / "badge-state.json"
    save_state(state, badge_state(cfg=cfg))
    config = ServiceConfig(
        origin=ORIGIN,
        node="node-a",
        store=f"sqlite:///{database}",
        badge_config=str(badge_path),
        audit=AuditConfig(file=None, store=False),
        relay=RelayConfig(session_timeout=60),
    )
    return config, state


@pytest.fixture
def service(deployment: tuple[ServiceConfig, Path]) -> Iterator[LiveService]:
    with serve(deployment[0]) as live:
        yield live


def open_session(live: LiveService) -> dict[str, Any]:
    answer = live.client.post("/v1/relay/sessions", content=b"{}", headers=HEADERS)
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def result(live: LiveService, session: str) -> Any:
    return live.client.get(f"/v1/relay/sessions/{session}?wait=30", headers=HEADERS)


def agent_process(url: str, *extra: str) -> subprocess.Popen[str]:
    command = mie_command("agent", "--connect", url, "--origin", ORIGIN, "--reader", READER0)
    return subprocess.Popen(
        [*command, "--timeout", "20", *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.communicate(timeout=10)


def test_badge_over_relay(
    pcscd: Pcscd, service: LiveService, deployment: tuple[ServiceConfig, Path]
) -> None:
    with emulator_process("desfire", "--state", str(deployment[1])):
        opened = open_session(service)
        agent = agent_process(opened["url"], "--pin-stdin", "--json")
        try:
            assert agent.stdin is not None
            agent.stdin.write(PIN + "\n")
            agent.stdin.flush()
            answer = result(service, opened["session"])
            out, err = agent.communicate(timeout=30)
        finally:
            stop(agent)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["valid"] is True and body["level"] == "substantial"
    assert body["identity"]["id_nat"] == RPPS
    assert body["evidence"]["nonce"] == opened["nonce"]
    assert "second-factor PIN verified" in body["reasons"]
    assert agent.returncode == 0, err
    shown = json.loads(out)
    assert (shown["valid"], shown["level"], shown["evidence"]) == (True, "substantial", None)
    # The nonce was consumed: the same session's result, or its evidence posted, is refused.
    again = service.client.get(f"/v1/relay/sessions/{opened['session']}?wait=0", headers=HEADERS)
    assert again.status_code == 409
    replay = service.client.post("/v1/verify", json=body["evidence"], headers=HEADERS)
    assert replay.status_code == 409 and replay.json()["error"]["code"] == "nonce_unknown"


def test_agent_killed(
    pcscd: Pcscd, service: LiveService, deployment: tuple[ServiceConfig, Path]
) -> None:
    with emulator_process("desfire", "--state", str(deployment[1])):
        opened = open_session(service)
        # --pin-stdin with nothing written: the agent waits there once the badge session ran.
        agent = agent_process(opened["url"], "--pin-stdin")
        try:
            pending = service.ctx.relay.find(opened["session"])
            deadline = time.monotonic() + 30
            while not pending._ready.is_set():  # the agent announced its card
                assert time.monotonic() < deadline and agent.poll() is None, "no card announced"
                time.sleep(0.02)
            agent.kill()
            agent.wait(10)
            answer = result(service, opened["session"])
        finally:
            stop(agent)
        assert answer.status_code == 502, answer.text
        assert answer.json()["error"]["code"] == "reader_error"
        # The node keeps serving: the next session logs in through a new agent.
        again = open_session(service)
        agent = agent_process(again["url"], "--pin-stdin")
        try:
            assert agent.stdin is not None
            agent.stdin.write(PIN + "\n")
            agent.stdin.flush()
            answer = result(service, again["session"])
        finally:
            stop(agent)
    assert answer.status_code == 200, answer.text
    assert answer.json()["level"] == "substantial"
    health = service.client.get("/v1/health")
    assert health.status_code == 200
