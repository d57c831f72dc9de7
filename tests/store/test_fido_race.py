"""Done when (issue 10): verifiers handed the same FIDO2 assertion at the same time, on one
PostgreSQL (or one SQLite file, or threads on one MemoryStore), accept it exactly once (D9).

Each worker is a separate process (``spawn``) with its own store, or a thread with its own
connection; a barrier releases them together on every round, and every round hands all of them
the same signature counter: exactly one advances it, the others get ``suspected_clone``, and
the credential is never suspended (an equal counter is a replay, not a clone).

The first tests drive :meth:`~mie.store.base.Store.advance_counter`, the step two nodes contend
on. The last ones are the Done-when line itself: whole verifier nodes, each a ``spawn`` process
with its own store and its own :class:`~mie.fido.assertion.FidoVerifier` (policy and FIDO
metadata read from files, as a node does), handed the same assertion made by the emulated key
through python-fido2's client: signature, metadata and level checks pass on every node, and the
counter lets exactly one of them accept.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import queue
import threading
from collections import Counter
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

from mie.core.errors import MieError
from mie.emulation.fido_mds import TestMds
from mie.emulation.fido_pki import EMULATOR_AAGUID, TestAttestationPki
from mie.evidence import Evidence
from mie.fido.assertion import FidoVerifier
from mie.fido.authdata import AuthenticatorData
from mie.fido.mds import MetadataIndex
from mie.fido.policy import MetadataPolicy
from mie.store.base import Store
from mie.store.errors import CloneSuspectedError
from mie.store.memory import MemoryStore
from mie.verification import Expected
from tests.fido import assertion_kit as kit
from tests.store.targets import StoreTarget
from tests.store.test_credentials import CRED, RECORD, RP

ROUNDS = 50
WAIT = 120.0


def _race(target: StoreTarget, start: Barrier, answers: multiprocessing.Queue) -> None:
    """Advance the credential's counter to ``round`` on every round; put what happened."""
    outcomes: list[tuple[int, str]] = []
    with target.open() as store:
        for counter in range(RECORD.sign_count + 1, RECORD.sign_count + 1 + ROUNDS):
            start.wait(WAIT)
            try:
                store.advance_counter(RP, CRED, counter, allow_zero=False)
            except CloneSuspectedError as e:
                outcomes.append((counter, f"{e.code.value}:{e.suspended}"))
            else:
                outcomes.append((counter, "accepted"))
    answers.put(outcomes)


def _processes(target: StoreTarget, workers: int) -> list[list[tuple[int, str]]]:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(workers)
    answers: multiprocessing.Queue = context.Queue()
    started = [context.Process(target=_race, args=(target, start, answers)) for _ in range(workers)]
    for worker in started:
        worker.start()
    results = []
    try:
        for _ in started:
            results.append(answers.get(timeout=WAIT))
    except queue.Empty:
        pytest.fail(f"only {len(results)} of {workers} workers answered within {WAIT} s")
    finally:
        for worker in started:
            worker.join(WAIT)
            if worker.is_alive():
                worker.kill()
                worker.join(10)
    assert [worker.exitcode for worker in started] == [0] * workers
    return results


def _threads(target: StoreTarget, workers: int) -> list[list[tuple[int, str]]]:
    start = threading.Barrier(workers)
    answers: queue.Queue[list[tuple[int, str]]] = queue.Queue()
    started = [
        threading.Thread(target=_race, args=(target, start, answers)) for _ in range(workers)
    ]
    for worker in started:
        worker.start()
    for worker in started:
        worker.join(WAIT)
    assert not any(worker.is_alive() for worker in started)
    return [answers.get_nowait() for _ in started]


def _check(target: StoreTarget, results: list[list[tuple[int, str]]], workers: int) -> None:
    per_round: dict[int, Counter[str]] = {}
    for outcomes in results:
        assert len(outcomes) == ROUNDS
        for counter, outcome in outcomes:
            per_round.setdefault(counter, Counter())[outcome] += 1
    assert len(per_round) == ROUNDS
    for counter, seen in per_round.items():
        # Exactly one acceptance per assertion, counted; the others are replays.
        assert seen == Counter({"accepted": 1, "suspected_clone:None": workers - 1}), (
            counter,
            seen,
        )
    with target.open() as store:
        final = store.get_credential(RP, CRED)
    assert final.sign_count == RECORD.sign_count + ROUNDS
    assert final.suspended is None


def _register(target: StoreTarget) -> None:
    with target.open() as store:
        store.put_credential(RECORD)


@pytest.mark.parametrize("workers", [2, 4])
def test_processes_on_one_postgresql_accept_one_assertion_exactly_once(
    postgres_database: str, workers: int
) -> None:
    target = StoreTarget("postgres", postgres_database)
    _register(target)
    _check(target, _processes(target, workers), workers)


def test_threads_on_one_postgresql_accept_one_assertion_exactly_once(
    postgres_database: str,
) -> None:
    target = StoreTarget("postgres", postgres_database)
    _register(target)
    _check(target, _threads(target, 6), 6)


def test_processes_on_one_sqlite_file_accept_one_assertion_exactly_once(tmp_path: Path) -> None:
    target = StoreTarget("sqlite", str(tmp_path / "state.db"))
    _register(target)
    _check(target, _processes(target, 2), 2)


class _OneMemoryStore(StoreTarget):
    """Every worker opens the same in-memory store (one process: threads only)."""

    def __init__(self) -> None:
        super().__init__("memory", "")
        object.__setattr__(self, "_store", MemoryStore())

    def open(self, *, timeout: float = 10.0) -> MemoryStore:
        store: MemoryStore = self.__dict__["_store"]
        return store


def test_threads_on_one_memory_store_accept_one_assertion_exactly_once() -> None:
    target = _OneMemoryStore()
    _register(target)
    _check(target, _threads(target, 6), 6)


# --- the same race through whole verifier nodes (Done when, line 3) ---------------------------

VERIFIER_ROUNDS = 50


@dataclass(frozen=True)
class _Node:
    """What a verifier node is started with: its store and the policy's files."""

    target: StoreTarget
    blob: Path
    root: Path


def _node_verifier(node: _Node, store: Store) -> FidoVerifier:
    metadata = MetadataPolicy(blob=node.blob, root=node.root)
    index = MetadataIndex.from_policy(metadata, at=dt.datetime.now(dt.UTC))
    return FidoVerifier(kit.policy(metadata=metadata), store, metadata=index)


def _verify_race(
    node: _Node,
    start: Barrier,
    assertions: list[tuple[dict[str, Any], bytes]],
    answers: multiprocessing.Queue,
) -> None:
    """Verify each assertion (its evidence JSON and nonce) when the barrier lets all nodes go."""
    outcomes: list[tuple[int, str]] = []
    with node.target.open() as store:
        verifier = _node_verifier(node, store)
        for round_, (evidence_json, nonce) in enumerate(assertions):
            evidence = Evidence.from_json(evidence_json)
            start.wait(WAIT)
            try:
                result = verifier.verify(evidence, Expected(nonce, kit.ORIGIN))
            except CloneSuspectedError as e:
                outcomes.append((round_, f"{e.code.value}:{e.suspended}"))
            except MieError as e:
                outcomes.append((round_, f"error {e.code}: {e}"))
            else:
                level = result.level.value if result.level else None
                outcomes.append((round_, f"valid:{result.valid}:{level}"))
    answers.put(outcomes)


def _assertions(key: kit.Key, rounds: int) -> list[tuple[dict[str, Any], bytes]]:
    made = []
    for _ in range(rounds):
        evidence, expected = key.assertion()
        made.append((evidence.to_json(), expected.nonce))
    return made


def _nodes(
    node: _Node, workers: int, assertions: list[tuple[dict[str, Any], bytes]]
) -> list[list[tuple[int, str]]]:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(workers)
    answers: multiprocessing.Queue = context.Queue()
    started = [
        context.Process(target=_verify_race, args=(node, start, assertions, answers))
        for _ in range(workers)
    ]
    for worker in started:
        worker.start()
    results = []
    try:
        for _ in started:
            results.append(answers.get(timeout=WAIT))
    except queue.Empty:
        pytest.fail(f"only {len(results)} of {workers} verifier nodes answered within {WAIT} s")
    finally:
        for worker in started:
            worker.join(WAIT)
            if worker.is_alive():
                worker.kill()
                worker.join(10)
    assert [worker.exitcode for worker in started] == [0] * workers
    return results


def _node(target: StoreTarget, tmp_path: Path) -> _Node:
    """Write the FIDO metadata files (the emulator's model listed, certified L2) a node reads."""
    mds = TestMds.generate()
    pki = TestAttestationPki.generate()
    entry = mds.entry(
        EMULATOR_AAGUID, [pki.root.certificate], statuses=[("FIDO_CERTIFIED_L2", "2026-01-01")]
    )
    blob, root = tmp_path / "mds.jwt", tmp_path / "mds-root.pem"
    blob.write_bytes(mds.blob([entry]))
    root.write_bytes(mds.root_pem)
    return _Node(target, blob, root)


def _race_verifiers(target: StoreTarget, tmp_path: Path, workers: int) -> None:
    node = _node(target, tmp_path)
    with target.open() as store:
        key = kit.new_key(store)
    assertions = _assertions(key, VERIFIER_ROUNDS)
    counters = [
        AuthenticatorData.parse(bytes.fromhex(e["authenticator_data"])).sign_count
        for e, _ in assertions
    ]
    assert counters == sorted(set(counters)), counters  # fresh, increasing assertions
    results = _nodes(node, workers, assertions)
    per_round: dict[int, Counter[str]] = {}
    for outcomes in results:
        assert len(outcomes) == VERIFIER_ROUNDS
        for round_, outcome in outcomes:
            per_round.setdefault(round_, Counter())[outcome] += 1
    for round_ in range(VERIFIER_ROUNDS):
        # Exactly one node accepts each assertion (at substantial: attested by the metadata,
        # UV, device-bound); every other one sees a replay, which suspends nothing.
        expected = Counter({"valid:True:substantial": 1, "suspected_clone:None": workers - 1})
        assert per_round[round_] == expected, (round_, per_round[round_])
    with target.open() as store:
        final = store.get_credential(kit.RP_ID, key.record.credential_id)
    assert final.sign_count == counters[-1]
    assert final.suspended is None


@pytest.mark.parametrize("workers", [2, 3])
def test_verifier_nodes_on_one_postgresql_accept_one_assertion_exactly_once(
    postgres_database: str, tmp_path: Path, workers: int
) -> None:
    _race_verifiers(StoreTarget("postgres", postgres_database), tmp_path, workers)


def test_verifier_nodes_on_one_sqlite_file_accept_one_assertion_exactly_once(
    tmp_path: Path,
) -> None:
    _race_verifiers(StoreTarget("sqlite", str(tmp_path / "state.db")), tmp_path, 2)
