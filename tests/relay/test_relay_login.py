"""The Done-when of item 6 in process: the IAM runs DesfireAuthenticator with its keys over the
relay exactly as it would locally (same evidence bytes), the verifier asks the second-factor PIN
through the relay, and the agent gets the outcome; real WebSockets on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mie.desfire.authenticator import DesfireAuthenticator
from mie.desfire.config import BadgeConfig, UidSource
from mie.desfire.errors import DesfireAuthenticationError
from mie.desfire.record import IdentityRecord
from mie.desfire.verify import BadgeVerifier
from mie.emulation.desfire import EmulatedDesfire
from mie.keys.base import KeyProvider
from mie.policy import AssuranceLevel
from mie.relay.iam import RelayConnection, RelayPin, RelayServer
from mie.request import AuthRequest, StaticPin, UserVerification
from mie.result import AuthResult
from mie.store.errors import WrongSecondFactorError
from mie.store.secondfactor import Argon2Parameters, SecondFactor
from mie.store.sqlite import SqliteStore
from mie.verification import login
from tests.desfire.badges import (
    KEYS,
    OTHER_KEYS,
    RPPS,
    UID,
    badge,
    badge_state,
    config,
    connect,
    counter_rng,
    record,
    request,
)
from tests.relay.peers import AgentThread, Reader, start_agent

WEAK = Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1, allow_weak=True)
PIN = "1234"


@pytest.fixture
def server() -> Iterator[RelayServer]:
    with RelayServer(apdu_timeout=5.0, pin_timeout=5.0) as relay:
        yield relay


@pytest.fixture
def second_factor(tmp_path: Path) -> SecondFactor:
    factor = SecondFactor(SqliteStore(tmp_path / "mie.db"), max_failures=3, parameters=WEAK)
    signed = IdentityRecord.parse(record(UID, config()))
    factor.enrol(signed.badge_name, signed.file, PIN)
    return factor


def relayed(
    server: RelayServer, card: EmulatedDesfire, auth: AuthRequest, pin: UserVerification | None
) -> tuple[RelayConnection, AgentThread, Reader]:
    reader = Reader(card)
    pending = server.expect(auth, timeout=30)
    agent = start_agent(pending.url, reader, origin=auth.origin, pin=pin)
    return pending.connection(10), agent, reader


def iam_login(
    connection: RelayConnection,
    cfg: BadgeConfig,
    auth: AuthRequest,
    *,
    second_factor: SecondFactor | None = None,
    keys: KeyProvider = KEYS,
) -> AuthResult:
    """What the IAM runs: the authenticator over the relay, the verifier asking the PIN there."""
    authenticator = DesfireAuthenticator(connection, cfg, keys=keys)
    verifier = BadgeVerifier(cfg, keys=keys, second_factor=second_factor)
    return login(authenticator, auth, user=RelayPin(connection), verifier=None, badges=verifier)


def local_evidence(cfg: BadgeConfig, auth: AuthRequest, seed: int) -> str:
    card = badge(badge_state(cfg=cfg), rng=counter_rng(seed))
    evidence = DesfireAuthenticator(connect(card), cfg, keys=KEYS).authenticate(auth)
    return json.dumps(evidence.to_json())


@pytest.mark.parametrize("source", list(UidSource))
def test_the_iam_authenticates_the_badge_over_the_relay_as_it_would_locally(
    server: RelayServer, source: UidSource
) -> None:
    cfg = config(uid_source=source)
    auth = request()
    card = badge(badge_state(cfg=cfg), rng=counter_rng(5))
    connection, agent, reader = relayed(server, card, auth, None)
    authenticator = DesfireAuthenticator(connection, cfg, keys=KEYS)
    evidence = authenticator.authenticate(auth)
    assert json.dumps(evidence.to_json()) == local_evidence(cfg, auth, 5)
    result = login(
        DesfireAuthenticator(connection, cfg, keys=KEYS),
        request(nonce=bytes(range(1, 33))),
        user=None,
        verifier=None,
        badges=BadgeVerifier(cfg, keys=KEYS),
    )
    assert result.valid and result.level is AssuranceLevel.LOW
    connection.finish(result)
    agent.join()
    assert agent.error is None and agent.result is not None
    assert agent.result.valid and agent.result.level is AssuranceLevel.LOW
    assert agent.result.identity is not None and agent.result.identity.id_nat == RPPS
    assert agent.result.evidence is None
    # The card saw the agent's GetVersion, then only the IAM's commands.
    assert reader.sent[0] == bytes.fromhex("9060000000")


def test_the_second_factor_pin_is_asked_through_the_relay(
    server: RelayServer, second_factor: SecondFactor
) -> None:
    pin = StaticPin(PIN)
    auth = request()
    connection, agent, _ = relayed(server, badge(), auth, pin)
    result = iam_login(connection, config(), auth, second_factor=second_factor)
    assert result.valid and result.level is AssuranceLevel.SUBSTANTIAL
    assert "second-factor PIN verified" in result.reasons
    assert pin.asked == [3]
    connection.finish(result)
    agent.join()
    assert agent.result is not None and agent.result.level is AssuranceLevel.SUBSTANTIAL


def test_a_wrong_pin_typed_at_the_workstation_is_counted(
    server: RelayServer, second_factor: SecondFactor
) -> None:
    auth = request()
    connection, agent, _ = relayed(server, badge(), auth, StaticPin("9999"))
    with pytest.raises(WrongSecondFactorError) as caught:
        iam_login(connection, config(), auth, second_factor=second_factor)
    assert caught.value.tries_left == 2
    connection.finish(AuthResult.failure(caught.value))
    agent.join()
    assert agent.result is not None and not agent.result.valid
    assert agent.result.error is not None and agent.result.error.code.value == "invalid_pin"


def test_a_badge_of_another_master_key_is_refused_over_the_relay(server: RelayServer) -> None:
    state = badge_state(keys=OTHER_KEYS)
    card = badge(state)
    before = badge_state(keys=OTHER_KEYS)
    auth = request()
    connection, agent, _ = relayed(server, card, auth, None)
    with pytest.raises(DesfireAuthenticationError) as caught:
        iam_login(connection, config(), auth)
    assert caught.value.code.value == "key_mismatch"
    assert card.state == before
    connection.finish(AuthResult.failure(caught.value))
    agent.join()
    assert agent.result is not None and agent.result.error is not None
    assert agent.result.error.code.value == "key_mismatch"
