"""Issue 9's Done-when for the relay through pcscd + vpcd: the keys stay on the IAM side (a
SoftHSM2 token in this process), the badge is `mie emulate desfire --state S` on vpcd, and
`mie agent` forwards between them from its own process, which holds no key: its imports
(`python -X importtime`), argv and environment are checked. Both subprocesses run with HOME and
every MIE_*/XDG_* variable (and SOFTHSM2_CONF) scrubbed. Run under `flock -o /tmp/mie-pcsc.lock`
(the vpcd ports are shared machine-wide)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mie.desfire.authenticator import DesfireAuthenticator
from mie.desfire.config import BadgeConfig, KeyLabels
from mie.desfire.record import AuthorityKey, IdentityRecord, SignedRecord
from mie.desfire.verify import BadgeVerifier
from mie.emulation.desfire_state import BadgeKey, BadgeState, personalise, save_state
from mie.keys.base import KeyProvider
from mie.policy import AssuranceLevel
from mie.relay.errors import RelayClosedError, RelayRefusedError
from mie.relay.iam import RelayConnection, RelayPin, RelayServer
from mie.request import AuthRequest
from mie.result import AuthResult
from mie.store.secondfactor import Argon2Parameters, SecondFactor
from mie.store.sqlite import SqliteStore
from mie.verification import login
from tests.harness import READER0, Pcscd
from tests.keys.conftest import SoftHsm, softhsm  # noqa: F401 - the session's token fixture

pytestmark = pytest.mark.pcsc

try:
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11.util.ec import encode_named_curve_parameters

    from mie.keys.pkcs11 import Pkcs11KeyProvider
except ImportError:
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("python-pkcs11 is not installed (pip install 'mie[hsm]')", allow_module_level=True)

UID = bytes.fromhex("04a1b2c3d4e5f6")
ORIGIN = "https://iam.example"
RPPS = "810001234565"
ISSUER = "CH Relais"
PIN = "2580"
WEAK = Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1, allow_weak=True)
FORBIDDEN = ("mie.keys", "mie.desfire.crypto", "mie.desfire.authenticator")
TIMEOUT = 60


@dataclass(frozen=True)
class Iam:
    """The IAM's side: the badge configuration, its key provider (the token) and second factor."""

    config: BadgeConfig
    keys: KeyProvider
    second_factor: SecondFactor
    secrets: tuple[str, ...]
    """Every key value and PIN of the test, in hex or as typed, none of which the agent holds."""


def scrubbed_env(home: Path) -> dict[str, str]:
    """A new user's environment: no MIE_*, XDG_* or SOFTHSM2_CONF, HOME a fresh directory."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MIE_", "XDG_")) and k not in ("HOME", "SOFTHSM2_CONF")
    }
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)
    return env


def _master_keys(hsm: SoftHsm, labels: KeyLabels) -> list[bytes]:
    """Create the four AES masters (non-extractable) and the authority's P-256 key in the token;
    :return: the master values (kept to check nothing of them reaches the agent)."""
    values = [secrets.token_bytes(16) for _ in range(4)]
    with hsm.session() as session:
        masters = (labels.picc, labels.app, labels.uid_read, labels.read)
        for label, value in zip(masters, values, strict=True):
            session.create_object(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.AES,
                    Attribute.VALUE: value,
                    Attribute.LABEL: label,
                    Attribute.TOKEN: True,
                    Attribute.SIGN: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                }
            )
        parameters = session.create_domain_parameters(
            KeyType.EC,
            {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True,
        )
        parameters.generate_keypair(
            store=True,
            label=labels.authority,
            private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
        )
    return values


def enrolled_state(config: BadgeConfig, keys: KeyProvider) -> tuple[BadgeState, SignedRecord]:
    """A badge enrolled under the token's masters, as plan §2.3 lays it out (random UID on)."""
    labels = config.labels
    app = keys.diversify(labels.app, config.diversification_input(UID))
    uid_read = keys.diversify(labels.uid_read, config.uid_read_input())
    read = keys.diversify(labels.read, config.diversification_input(UID))
    key_id = config.authorities[0].key_id
    record = IdentityRecord(UID, config.aid, RPPS, ISSUER, dt.date(2026, 12, 1), key_id)
    signed = IdentityRecord.parse(record.sign(keys, labels.authority))
    state = BadgeState(UID, BadgeKey(keys.diversify(labels.picc, config.picc_input(UID)), 1))
    personalise(
        state,
        aid=config.aid,
        keys=[app, uid_read, read, app, app],
        record=signed.file,
        random_uid=True,
    )
    return state, signed


@pytest.fixture
def iam(softhsm: SoftHsm, tmp_path: Path) -> Iterator[tuple[Iam, Path]]:  # noqa: F811
    """The IAM's keys in the token, and the badge state file enrolled under them."""
    suffix = secrets.token_hex(4)
    labels = KeyLabels(*(f"{name}-{suffix}" for name in ("picc", "app", "uid", "read", "auth")))
    masters = _master_keys(softhsm, labels)
    with Pkcs11KeyProvider(softhsm.module, softhsm.token_label, lambda: softhsm.pin) as keys:
        authority = AuthorityKey.of(keys.public_key(labels.authority), ISSUER, test=True)
        config = BadgeConfig(
            labels=labels,
            authorities=(authority,),
            issuer=ISSUER,
            originality_keys=("mie-test",),
        )
        state, signed = enrolled_state(config, keys)
        second_factor = SecondFactor(SqliteStore(tmp_path / "iam.db"), parameters=WEAK)
        second_factor.enrol(signed.badge_name, signed.file, PIN)
        application = state.applications[config.aid]
        badge_keys = [k.key.hex() for k in [*application.keys, state.picc_key]]
        known = (*badge_keys, *(m.hex() for m in masters), softhsm.pin, PIN)
        path = tmp_path / "badge.json"
        save_state(path, state)
        yield Iam(config, keys, second_factor, known), path


@contextlib.contextmanager
def badge_on_vpcd(state: Path, home: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`mie emulate desfire --state S` in its own process until the block ends."""
    from mie.transport.pcsc import wait_for_card, wait_for_removal

    command = [sys.executable, "-m", "mie", "emulate", "desfire", "--state", str(state)]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=scrubbed_env(home)
    )
    try:
        wait_for_card(READER0, timeout=15)
        yield process
    finally:
        _stop(process)
        if process.stderr:
            process.stderr.close()
        with contextlib.suppress(Exception):
            wait_for_removal(READER0, timeout=10)


def _stop(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def start_agent(url: str, home: Path, *extra: str) -> subprocess.Popen[str]:
    """`python -X importtime -m mie agent --connect URL …` as a new user's process."""
    command = [sys.executable, "-X", "importtime", "-m", "mie", "agent", "--connect", url]
    command += ["--origin", ORIGIN, "--reader", READER0, "--timeout", "20", *extra]
    return subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=scrubbed_env(home),
    )


def imports(stderr: str) -> list[str]:
    """:return: the modules a ``-X importtime`` run reports."""
    return [
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    ]


def messages(stderr: str) -> list[str]:
    """:return: the stderr lines that are not ``-X importtime`` lines."""
    return [line for line in stderr.splitlines() if not line.startswith("import time:")]


def process_memory_of(pid: int) -> tuple[str, str]:
    """:return: the live process's command line and environment, as the kernel has them."""
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    environ = Path(f"/proc/{pid}/environ").read_bytes().replace(b"\0", b"\n").decode()
    return cmdline, environ


def iam_login(connection: RelayConnection, iam: Iam, request: AuthRequest) -> AuthResult:
    authenticator = DesfireAuthenticator(connection, iam.config, keys=iam.keys)
    verifier = BadgeVerifier(iam.config, keys=iam.keys, second_factor=iam.second_factor)
    return login(authenticator, request, user=RelayPin(connection), verifier=None, badges=verifier)


def test_the_iam_authenticates_the_badge_with_its_hsm_through_mie_agent(
    pcscd: Pcscd, iam: tuple[Iam, Path], tmp_path: Path
) -> None:
    keys, state = iam
    request = AuthRequest.new(ORIGIN)
    with badge_on_vpcd(state, tmp_path / "emulator"), RelayServer() as server:
        pending = server.expect(request, timeout=TIMEOUT)
        agent = start_agent(pending.url, tmp_path / "agent", "--pin-stdin", "--json")
        try:
            assert agent.stdin is not None
            agent.stdin.write(PIN + "\n")
            agent.stdin.flush()
            connection = pending.connection(30)
            cmdline, environ = process_memory_of(agent.pid)
            started = time.perf_counter()
            result = iam_login(connection, keys, request)
            elapsed_ms = (time.perf_counter() - started) * 1000
            connection.finish(result)
            out, err = agent.communicate(timeout=30)
        finally:
            _stop(agent)
    assert result.valid and result.level is AssuranceLevel.SUBSTANTIAL
    assert result.identity is not None and result.identity.id_nat == RPPS
    assert "second-factor PIN verified" in result.reasons
    # The agent printed the IAM's outcome and exited 0, with nothing on stderr but imports.
    assert agent.returncode == 0, err
    shown = json.loads(out)
    assert (shown["valid"], shown["level"], shown["evidence"]) == (True, "substantial", None)
    assert shown["identity"]["id_nat"] == RPPS
    assert messages(err) == []
    # The workstation process holds no key: no key code loaded, none in argv or environment.
    loaded = imports(err)
    assert {"mie.relay.agent", "mie.transport.pcsc"} <= set(loaded)
    assert [m for m in loaded if m.startswith(FORBIDDEN)] == []
    for secret in keys.secrets:
        assert secret.lower() not in cmdline.lower() and secret.lower() not in environ.lower()
    assert "SOFTHSM2_CONF" not in environ and "MIE_" not in environ
    print(f"relay login through pcscd: {elapsed_ms:.0f} ms")


def test_an_agent_killed_mid_session_is_a_closed_relay(
    pcscd: Pcscd, iam: tuple[Iam, Path], tmp_path: Path
) -> None:
    _, state = iam
    request = AuthRequest.new(ORIGIN)
    with badge_on_vpcd(state, tmp_path / "emulator"), RelayServer() as server:
        pending = server.expect(request, timeout=TIMEOUT)
        agent = start_agent(pending.url, tmp_path / "agent")
        try:
            connection = pending.connection(30)
            connection.send_and_receive(bytes.fromhex("905a00000349 4df0 00".replace(" ", "")))
            agent.kill()
            agent.wait(10)
            started = time.monotonic()
            with pytest.raises(RelayClosedError):
                connection.send_and_receive(bytes.fromhex("9060000000"))
            assert time.monotonic() - started <= connection.apdu_timeout + 0.5
        finally:
            _stop(agent)


def test_a_cps_card_in_the_reader_is_refused_by_the_agent_process(
    pcscd: Pcscd, tmp_path: Path
) -> None:
    from tests.harness import emulator_process

    trace = tmp_path / "cps3.json"
    request = AuthRequest.new(ORIGIN)
    with emulator_process("cps3", "--trace", str(trace)), RelayServer() as server:
        pending = server.expect(request, timeout=TIMEOUT)
        agent = start_agent(pending.url, tmp_path / "agent")
        try:
            with pytest.raises(RelayRefusedError, match="not a DESFire badge"):
                pending.connection(30)
            _, err = agent.communicate(timeout=30)
        finally:
            _stop(agent)
    assert agent.returncode == 1
    assert messages(err) == [
        "mie: error: relay_refused: Relay refused: not a DESFire badge "
        "(GetVersion answered SW 6E00 with 0 bytes)"
    ]
    # The CPS card heard one command, the agent's own GetVersion.
    exchanges = json.loads(trace.read_text())["exchanges"]
    assert [e["c"] for e in exchanges] == ["9060000000"]
