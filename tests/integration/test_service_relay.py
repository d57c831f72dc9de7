"""The badge relay of ``mie serve`` through pcscd + vpcd: the service's relay routes on uvicorn
in this process (the badge keys and second factor here), ``mie emulate desfire --state S`` on
vpcd, and ``mie agent --connect URL`` in its own process forwarding between them. Run under
``flock -o /tmp/mie-pcsc.lock`` (the vpcd ports are shared machine-wide)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mie.desfire.record import IdentityRecord
from mie.desfire.verify import BadgeVerifier
from mie.emulation.desfire_state import save_state
from mie.store.secondfactor import Argon2Parameters, SecondFactor
from mie.store.sqlite import SqliteStore
from tests.desfire.badges import KEYS, ORIGIN, RPPS, UID, badge_state, config, record
from tests.harness import READER0, Pcscd, emulator_process, mie_command
from tests.service.test_relay_service import Service

pytestmark = pytest.mark.pcsc

PIN = "2580"
WEAK = Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1, allow_weak=True)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    cfg = config()
    factor = SecondFactor(SqliteStore(tmp_path / "iam.db"), max_failures=3, parameters=WEAK)
    signed = IdentityRecord.parse(record(UID, cfg))
    factor.enrol(signed.badge_name, signed.file, PIN)
    running = Service(BadgeVerifier(cfg, keys=KEYS, second_factor=factor))
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def badge_file(tmp_path: Path) -> Path:
    path = tmp_path / "badge.json"
    save_state(path, badge_state(cfg=config()))
    return path


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


def test_badge_over_relay(pcscd: Pcscd, service: Service, badge_file: Path) -> None:
    with emulator_process("desfire", "--state", str(badge_file)):
        opened = service.open_session()
        agent = agent_process(opened["url"], "--pin-stdin", "--json")
        try:
            assert agent.stdin is not None
            agent.stdin.write(PIN + "\n")
            agent.stdin.flush()
            answer = service.result(opened["session"], wait=30)
            out, err = agent.communicate(timeout=30)
        finally:
            stop(agent)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["valid"] is True and body["level"] == "substantial"
    assert body["identity"]["id_nat"] == RPPS
    assert "second-factor PIN verified" in body["reasons"]
    assert agent.returncode == 0, err
    shown = json.loads(out)
    assert (shown["valid"], shown["level"], shown["evidence"]) == (True, "substantial", None)
    assert service.core.consumed == [bytes.fromhex(opened["nonce"])]


def test_agent_killed(pcscd: Pcscd, service: Service, badge_file: Path) -> None:
    with emulator_process("desfire", "--state", str(badge_file)):
        opened = service.open_session()
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
            answer = service.result(opened["session"], wait=30)
        finally:
            stop(agent)
        assert answer.status_code == 502, answer.text
        assert answer.json()["error"]["code"] == "reader_error"
        assert service.core.consumed == [bytes.fromhex(opened["nonce"])]
        # The node keeps serving: the next session logs in through a new agent.
        again = service.open_session()
        agent = agent_process(again["url"], "--pin-stdin")
        try:
            assert agent.stdin is not None
            agent.stdin.write(PIN + "\n")
            agent.stdin.flush()
            answer = service.result(again["session"], wait=30)
        finally:
            stop(agent)
    assert answer.status_code == 200, answer.text
    assert answer.json()["level"] == "substantial"
