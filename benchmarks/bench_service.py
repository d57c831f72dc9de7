"""Verifications per second through ``mie serve``, against the in-process verification floor.

Nodes are real ``mie serve`` processes on 127.0.0.1 (a ``--config`` file written here, port 0,
ready once they print their listening line), each with its audit trail in a file and in the
store. Clients are ``--clients`` processes, each running ``--concurrency`` coroutines on one
keep-alive ``httpx.AsyncClient``. Every verification has two phases:

1. (untimed, all of them first) ``POST /v1/challenges`` for the client's session, then the
   proof: a TEST CPS card's authentication key signs ``bound_challenge(origin, nonce)`` (RSA
   PKCS#1 v1.5), or an emulated FIDO2 key (``EmulatedAuthenticator``, PIN verified) makes an
   assertion for the nonce through python-fido2's client;
2. (timed) ``POST /v1/verify`` of that evidence; every answer must be 200 and valid at level
   ``substantial`` (the script stops otherwise). Latency is the round trip of one POST;
   throughput is the requests of phase 2 over its wall time (first start to last answer).

Each FIDO2 credential (one per coroutine, registered in the node's store before it starts) is
verified in the order of its counter, by one coroutine. Rows:

- ``floor``: ``verify_evidence`` of pre-made CPx evidence with the same trust (anchors,
  intermediates, CRL files, no download), in process, one thread, no HTTP, no store;
  ``floor_fido``: ``FidoVerifier`` on a ``MemoryStore``, in process, one thread;
- ``one_node_sqlite``: CPx through one node on SQLite; ``one_node_sqlite_fido``: FIDO2 there;
- ``two_nodes_postgres``: CPx through two nodes sharing one PostgreSQL (``--postgres
  CONNINFO`` or ``MIE_BENCH_POSTGRES``, an empty database; null without it, the reason on
  stderr): each challenge is issued by one node and its evidence posted to the other.

After each node row: the used nonces are posted again (10 of them: each must be 409
``nonce_unknown``), and each node's audit trail (file and store chain) passes ``mie audit
verify`` and holds one valid ``verify`` record per request. Run:
``.venv/bin/python benchmarks/bench_service.py [--count N] [--clients P] [--concurrency C]
[--postgres CONNINFO]``. The last line is one JSON object: ``verify_per_s``, ``p99_ms``,
``p50_ms``, ``floor_per_s``, ``two_node_per_s``, ``two_node_p99_ms``, ``fido_per_s``,
``fido_p99_ms``, ``fido_floor_per_s``, ``clients`` (P x C), ``cpus``, ``count``, ``accepted``
(per row).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import os
import queue
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from mie.emulation.testpki import CardCredentials, CardIdentity, Gamme, TestPki, default_rpps
from mie.evidence import X509SignatureEvidence
from mie.policy import AssuranceLevel
from mie.request import bound_challenge
from mie.verification import Expected, verify_evidence

ORIGIN = "https://iam.example"
RP_ID = "iam.example"
CLIENT = "bench"
API_KEY = "bench-api-key-0123456789abcdef"
PIN = "1234"
ID_NAT = "810100099877"
START_DELAY_S = 3.0
"""Seconds between handing the work to the client processes and their common start."""
NODE_START_S = 60.0
REPLAYS = 10
WARM_UP = 20
"""Verifications made before a floor row is timed (caches, first-call costs)."""
HEADERS = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}


@dataclass(frozen=True)
class Job:
    """One verification: where its challenge came from, where it is posted, the body."""

    url: str
    session: str
    body: bytes


@dataclass
class Row:
    """A row of the table: its figures (or the reason there are none) and what it checks."""

    name: str
    checks: str
    per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    accepted: int | None = None
    reason: str | None = None


@dataclass
class Setup:
    """The TEST PKI, its card, the trust files every node and the floor use."""

    work: Path
    pki: TestPki
    card: CardCredentials
    anchors: list[str] = field(default_factory=list)
    intermediates: list[str] = field(default_factory=list)
    crls: list[str] = field(default_factory=list)


def make_setup(work: Path) -> Setup:
    """A TEST PKI (``$MIE_TEST_PKI`` if set, else a new one), a CPS card, trust files."""
    directory = os.environ.get("MIE_TEST_PKI") or str(work / "pki")
    pki = TestPki.load(directory)
    card = pki.issue_card(CardIdentity("RPPS", default_rpps(), "CPS"), "2800000001")
    setup = Setup(work, pki, card)
    trust = work / "trust"
    trust.mkdir()
    for gamme in (Gamme.FORT, Gamme.STANDARD):
        root = trust / f"root-{gamme.value.lower()}.pem"
        root.write_bytes(pki.roots[gamme].certificate_pem())
        setup.anchors.append(str(root))
        ca = trust / f"ca-{gamme.value.lower()}.pem"
        ca.write_bytes(pki.intermediates[gamme].certificate_pem())
        setup.intermediates.append(str(ca))
        for authority in (False, True):
            crl = trust / f"crl-{gamme.value.lower()}-{int(authority)}.der"
            crl.write_bytes(
                pki.crl(gamme, authority=authority).public_bytes(serialization.Encoding.DER)
            )
            setup.crls.append(str(crl))
    return setup


def cpx_body(card: CardCredentials, nonce: bytes) -> bytes:
    """:return: the JSON of CPx evidence for ``nonce``, as the card signs it."""
    signed = bound_challenge(ORIGIN, nonce)
    signature = card.authentication.key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    der = card.authentication.certificate.public_bytes(serialization.Encoding.DER)
    evidence = X509SignatureEvidence(nonce, ORIGIN, signed, signature, (der,))
    return json.dumps(evidence.to_json()).encode()


# FIDO2: one emulated key and credential per lane.


class Fido:
    """The FIDO2 side: the TEST attestation PKI, the policy file, one key per lane."""

    def __init__(self, work: Path, lanes: int) -> None:
        from mie.emulation.fido_pki import EMULATOR_AAGUID, TestAttestationPki

        self.pki = TestAttestationPki.generate()
        directory = work / "fido"
        directory.mkdir()
        root = directory / "attestation-root.pem"
        root.write_bytes(self.pki.root.certificate.public_bytes(serialization.Encoding.PEM))
        aaguid = str(uuid.UUID(bytes=EMULATOR_AAGUID))
        allowlist = {
            "format": "mie-fido-aaguids/1",
            "source": "bench_service.py",
            "updated": "2026-12-01",
            "keys": [
                {"aaguid": aaguid, "name": "mie TEST key", "roots": [root.name], "test": True}
            ],
        }
        (directory / "aaguids.json").write_text(json.dumps(allowlist))
        self.policy_file = directory / "fido-policy.json"
        self.policy_file.write_text(
            json.dumps({"format": "mie-fido-policy/1", "rp_id": RP_ID, "allowlist": "aaguids.json"})
        )
        self.keys = [self._key() for _ in range(lanes)]
        self.records: list[Any] = []

    def _key(self) -> Any:
        from mie.emulation.ctap2 import EmulatedAuthenticator

        return EmulatedAuthenticator(PIN, pki=self.pki, algorithms=(-7,))

    def policy(self) -> Any:
        from mie.fido.policy import FidoPolicy

        return FidoPolicy.load(self.policy_file)

    def client(self, lane: int) -> Any:
        from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction

        class Pin(UserInteraction):
            def request_pin(self, permissions: Any, rp_id: str | None) -> str:
                return PIN

        return Fido2Client(
            self.keys[lane], DefaultClientDataCollector(ORIGIN), user_interaction=Pin()
        )

    def register(self) -> None:
        """Make one credential per key (verified by mie's registration check)."""
        from fido2.webauthn import (
            AttestationConveyancePreference,
            PublicKeyCredentialCreationOptions,
            PublicKeyCredentialParameters,
            PublicKeyCredentialRpEntity,
            PublicKeyCredentialType,
            PublicKeyCredentialUserEntity,
        )

        from mie.fido.registration import RegistrationData, verify_registration
        from mie.trust.identity import Identity, parse_id_nat

        id_type, number = parse_id_nat(ID_NAT)
        identity = Identity(ID_NAT, id_type, number, None, None, None, None, True)
        policy = self.policy()
        for lane in range(len(self.keys)):
            nonce = secrets.token_bytes(32)
            user = secrets.token_bytes(16)
            options = PublicKeyCredentialCreationOptions(
                rp=PublicKeyCredentialRpEntity(id=RP_ID, name="IAM"),
                user=PublicKeyCredentialUserEntity(name=f"bench{lane}", id=user),
                challenge=nonce,
                pub_key_cred_params=[
                    PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=-7)
                ],
                attestation=AttestationConveyancePreference.DIRECT,
            )
            response = self.client(lane).make_credential(options)
            data = RegistrationData.from_webauthn(
                _plain(response), nonce=nonce, origin=ORIGIN, rp_id=RP_ID, user_handle=user
            )
            registered = verify_registration(
                data, Expected(nonce, ORIGIN), identity=identity, policy=policy, store=None
            )
            self.records.append(registered.record)

    def store_into(self, store: Any) -> None:
        """Put every credential in ``store`` at its registered counter."""
        from mie.store.errors import CredentialUnknownError

        for record in self.records:
            try:
                store.delete_credential(record.rp_id, record.credential_id)
            except CredentialUnknownError:
                pass
            store.put_credential(record)

    def assertion(self, lane: int, nonce: bytes) -> dict[str, Any]:
        """:return: the W3C JSON of an assertion of lane ``lane``'s credential for ``nonce``."""
        from fido2.webauthn import (
            PublicKeyCredentialDescriptor,
            PublicKeyCredentialRequestOptions,
            PublicKeyCredentialType,
            UserVerificationRequirement,
        )

        record = self.records[lane]
        options = PublicKeyCredentialRequestOptions(
            challenge=nonce,
            rp_id=RP_ID,
            allow_credentials=[
                PublicKeyCredentialDescriptor(
                    type=PublicKeyCredentialType.PUBLIC_KEY, id=record.credential_id
                )
            ],
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        return _plain(self.client(lane).get_assertion(options).get_response(0))

    def body(self, lane: int, nonce: bytes) -> bytes:
        """:return: the JSON of mie's FIDO2 evidence for ``nonce``."""
        from mie.fido.evidence import WebAuthnAssertionEvidence

        evidence = WebAuthnAssertionEvidence.from_webauthn(
            self.assertion(lane, nonce), nonce=nonce, origin=ORIGIN, rp_id=RP_ID
        )
        return json.dumps(evidence.to_json()).encode()


def _plain(response: Any) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(json.dumps(dict(response)))
    return value


# Nodes


def write_config(setup: Setup, name: str, store: str, fido: Fido | None) -> Path:
    """:return: a ``mie-service/1`` file of node ``name`` on ``store``."""
    directory = setup.work / name
    directory.mkdir(exist_ok=True)
    config: dict[str, Any] = {
        "format": "mie-service/1",
        "origin": ORIGIN,
        "node": name,
        "store": store,
        "nonce_lifetime": 3600,
        "limits": {"concurrency": 16},
        "clients": [
            {
                "name": CLIENT,
                "key_sha256": hashlib.sha256(API_KEY.encode()).hexdigest(),
                "scopes": ["verify"],
            }
        ],
        "trust": {
            "anchors": setup.anchors,
            "intermediates": setup.intermediates,
            "crls": setup.crls,
            "download": False,
        },
        "audit": {"file": str(directory / "audit.jsonl"), "store": True},
    }
    if fido is not None:
        config["fido_policy"] = str(fido.policy_file)
    path = directory / "service.json"
    path.write_text(json.dumps(config, indent=1))
    return path


@contextmanager
def node(config: Path, work: Path) -> Iterator[str]:
    """Run ``mie serve --config CONFIG --port 0``; :return: its base URL. Stopped by SIGTERM
    at the end of the block (it must exit 0)."""
    env = {**os.environ, "MIE_CRL_DIR": str(work / "crl-cache"), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mie", "serve", "--config", str(config), "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url, lines = _listening(process)
        yield url
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=NODE_START_S)
        if code != 0:
            time.sleep(0.5)  # the pump thread reads the last lines
            rest = "".join(lines.get_nowait() for _ in range(lines.qsize()))
            raise SystemExit(f"mie serve {config} exited {code}: {rest[-2000:]}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _listening(process: subprocess.Popen[str]) -> tuple[str, queue.Queue[str]]:
    """:return: the URL of the node's listening line (stderr read on a thread: a select on a
    buffered pipe misses lines read ahead)."""
    assert process.stderr is not None  # noqa: S101 - piped above
    lines: queue.Queue[str] = queue.Queue()
    stream = process.stderr

    def pump() -> None:
        # Drains stderr for the node's whole life: a full pipe would stop the node.
        for line in iter(stream.readline, ""):
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    seen = []
    end = time.monotonic() + NODE_START_S
    while time.monotonic() < end:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if not line:
            break
        seen.append(line)
        if line.startswith("mie serve: node ") and " listening on " in line:
            return line.rsplit(" ", 1)[1].strip(), lines
    raise SystemExit("mie serve did not start: " + "".join(seen)[-2000:])


# Phase 1: challenges and proofs (untimed)


def challenge(client: httpx.Client, url: str, session: str) -> bytes:
    """:return: a nonce node ``url`` issued for ``session``."""
    answer = client.post(
        f"{url}/v1/challenges", headers={**HEADERS, "Mie-Session": session}, content=b"{}"
    )
    if answer.status_code != 201:
        raise SystemExit(f"POST /v1/challenges: {answer.status_code} {answer.text[:300]}")
    return bytes.fromhex(answer.json()["nonce"])


def make_lanes(
    count: int,
    lanes: int,
    issuers: Sequence[str],
    verifiers: Sequence[str],
    prove: Callable[[int, bytes], bytes],
) -> list[list[Job]]:
    """``count`` jobs over ``lanes`` lanes (job i in lane i % lanes, in order): job i's challenge
    from ``issuers[i % n]``, its evidence posted to ``verifiers[i % n]``."""
    out: list[list[Job]] = [[] for _ in range(lanes)]
    with httpx.Client(timeout=60) as client:
        for i in range(count):
            lane = i % lanes
            session = f"bench-session-{lane}"
            nonce = challenge(client, issuers[i % len(issuers)], session)
            out[lane].append(Job(verifiers[i % len(verifiers)], session, prove(lane, nonce)))
    return out


# Phase 2: the timed POSTs, from client processes


Posted = tuple[list[float], float, float, list[str]]
"""What a client process did: its latencies (s), its start and end, its refusals."""


def _client_process(work: tuple[list[list[Job]], float]) -> Posted:
    lanes, start_at = work
    return asyncio.run(_post_lanes(lanes, start_at))


async def _post_lanes(lanes: list[list[Job]], start_at: float) -> Posted:
    limits = httpx.Limits(max_connections=len(lanes), max_keepalive_connections=len(lanes))
    latencies: list[float] = []
    failures: list[str] = []
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        # One untimed request per lane opens the keep-alive connections.
        await asyncio.gather(*(client.get(f"{lane[0].url}/v1/health") for lane in lanes if lane))
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        began = time.monotonic()

        async def lane_run(jobs: list[Job]) -> None:
            for job in jobs:
                sent = time.perf_counter()
                answer = await client.post(
                    f"{job.url}/v1/verify",
                    headers={**HEADERS, "Mie-Session": job.session},
                    content=job.body,
                )
                latencies.append(time.perf_counter() - sent)
                problem = _refusal(answer)
                if problem is not None:
                    failures.append(problem)

        await asyncio.gather(*(lane_run(jobs) for jobs in lanes))
        ended = time.monotonic()
    return latencies, began, ended, failures


def _refusal(answer: httpx.Response) -> str | None:
    if answer.status_code != 200:
        return f"{answer.status_code} {answer.text[:300]}"
    result = answer.json()
    if result.get("valid") is not True or result.get("level") != AssuranceLevel.SUBSTANTIAL.value:
        return f"200 but {json.dumps(result)[:300]}"
    return None


def post_all(lanes: list[list[Job]], clients: int) -> tuple[list[float], float]:
    """Post every job, lane by lane in order, from ``clients`` processes.

    :return: the latencies (s) and the wall time of the phase.
    :raises SystemExit: an answer that is not 200 valid at level substantial.
    """
    shares = [lanes[i::clients] for i in range(clients)]
    start_at = time.monotonic() + START_DELAY_S
    context = multiprocessing.get_context("spawn")
    with context.Pool(clients) as pool:
        results = pool.map(_client_process, [(share, start_at) for share in shares if share])
    latencies = [x for r in results for x in r[0]]
    failures = [x for r in results for x in r[3]]
    if failures:
        raise SystemExit(f"{len(failures)} verifications refused, first: {failures[0]}")
    wall = max(r[2] for r in results) - min(r[1] for r in results)
    return latencies, wall


def check_replays(lanes: list[list[Job]]) -> None:
    """Post used evidence again: each must be refused ``nonce_unknown`` (409)."""
    jobs = [job for lane in lanes for job in lane][:REPLAYS]
    with httpx.Client(timeout=60) as client:
        for job in jobs:
            answer = client.post(
                f"{job.url}/v1/verify",
                headers={**HEADERS, "Mie-Session": job.session},
                content=job.body,
            )
            code = (answer.json().get("error") or {}).get("code")
            if answer.status_code != 409 or code != "nonce_unknown":
                raise SystemExit(f"a replay was answered {answer.status_code} {answer.text[:300]}")


def check_audit(config: Path, store: str, node_name: str, verifies: int) -> None:
    """The node's audit file and store chain verify; the file holds ``verifies`` valid
    ``verify`` records."""
    trail = config.parent / "audit.jsonl"
    for args in ([str(trail)], ["--store", store, "--node", node_name]):
        out = subprocess.run(
            [sys.executable, "-m", "mie", "audit", "verify", *args],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if out.returncode != 0:
            raise SystemExit(f"mie audit verify {' '.join(args)}: {out.stderr.strip()}")
    valid = 0
    with trail.open("rb") as f:
        for line in f:
            record = json.loads(line)
            valid += record["event"] == "verify" and record["error"] is None
    if valid != verifies:
        raise SystemExit(f"{trail}: {valid} valid verify records, {verifies} expected")


def figures(row: Row, latencies: list[float], wall: float) -> None:
    ms = sorted(x * 1000 for x in latencies)
    row.accepted = len(ms)
    row.per_s = len(ms) / wall
    row.p50_ms = statistics.median(ms)
    row.p99_ms = statistics.quantiles(ms, n=100, method="inclusive")[98] if len(ms) > 1 else ms[0]


# Rows


def floor_row(setup: Setup, count: int) -> Row:
    """``verify_evidence`` of pre-made CPx evidence, in process, one thread."""
    from mie.evidence import parse_evidence_document
    from mie.trust.login import login_verifier

    row = Row("floor", "chain + CRL, in process")
    verifier = login_verifier(
        trust=setup.anchors, intermediates=setup.intermediates, crls=setup.crls, download=False
    )
    made = []
    for _ in range(WARM_UP + count):
        nonce = secrets.token_bytes(32)
        evidence, _ = parse_evidence_document(json.loads(cpx_body(setup.card, nonce)), "bench")
        made.append((evidence, Expected(nonce, ORIGIN)))
    for evidence, expected in made[:WARM_UP]:
        verify_evidence(evidence, expected, verifier=verifier)
    latencies = []
    began = time.perf_counter()
    for evidence, expected in made[WARM_UP:]:
        sent = time.perf_counter()
        result = verify_evidence(evidence, expected, verifier=verifier)
        latencies.append(time.perf_counter() - sent)
        if not result.valid or result.level is not AssuranceLevel.SUBSTANTIAL:
            raise SystemExit(f"floor: unexpected result {result.to_json()}")
    figures(row, latencies, time.perf_counter() - began)
    return row


def floor_fido_row(fido: Fido, count: int) -> Row:
    """``FidoVerifier`` on a ``MemoryStore``, in process, one thread."""
    from mie.fido.assertion import FidoVerifier
    from mie.fido.evidence import WebAuthnAssertionEvidence
    from mie.store.memory import MemoryStore

    row = Row("floor_fido", "signature, counter, level, in process")
    store = MemoryStore()
    fido.store_into(store)
    verifier = FidoVerifier(fido.policy(), store)
    made = []
    for _ in range(WARM_UP + count):
        nonce = secrets.token_bytes(32)
        made.append((fido.assertion(0, nonce), nonce))
    latencies: list[float] = []
    began = 0.0
    for index, (webauthn, nonce) in enumerate(made):
        if index == WARM_UP:
            latencies, began = [], time.perf_counter()
        sent = time.perf_counter()
        evidence = WebAuthnAssertionEvidence.from_webauthn(
            webauthn, nonce=nonce, origin=ORIGIN, rp_id=RP_ID
        )
        result = verifier.verify(evidence, Expected(nonce, ORIGIN))
        latencies.append(time.perf_counter() - sent)
        if not result.valid or result.level is not AssuranceLevel.SUBSTANTIAL:
            raise SystemExit(f"floor_fido: unexpected result {result.to_json()}")
    figures(row, latencies, time.perf_counter() - began)
    # The lane-0 credential's counter moved on the emulator: the service rows start from the
    # store's copy at registration, which the emulator's later counters still exceed.
    return row


def node_row(
    row: Row,
    setup: Setup,
    stores: Sequence[str],
    count: int,
    clients: int,
    lanes: int,
    fido: Fido | None,
    *,
    prefix: str,
) -> None:
    """Measure one row: nodes (one per store URL), phase 1, phase 2, replays, audit."""
    names = [f"{prefix}-{chr(ord('a') + i)}" for i in range(len(stores))]
    configs = [write_config(setup, n, s, fido) for n, s in zip(names, stores, strict=True)]
    if fido is not None:
        _put_credentials(fido, stores[0])
    with ExitStack() as stack:
        urls = [stack.enter_context(node(c, setup.work)) for c in configs]
        # Two nodes: each challenge is issued by one node and its evidence posted to the other.
        verifiers = urls[1:] + urls[:1]
        prove = (lambda lane, nonce: cpx_body(setup.card, nonce)) if fido is None else fido.body
        jobs = make_lanes(count, lanes, urls, verifiers, prove)
        latencies, wall = post_all(jobs, clients)
        figures(row, latencies, wall)
        check_replays(jobs)
    per_node = [sum(1 for lane in jobs for j in lane if j.url == url) for url in urls]
    for config, name, store, verifies in zip(configs, names, stores, per_node, strict=True):
        check_audit(config, store, name, verifies)


def _put_credentials(fido: Fido, store_url: str) -> None:
    from mie._cli.options import open_store

    store = open_store(store_url)
    assert store is not None  # noqa: S101 - a URL, not none
    with store:
        fido.store_into(store)


def postgres_url(conninfo: str) -> str:
    """:return: ``conninfo`` as the ``postgresql://`` URL ``mie serve --store`` takes (a
    ``key=value`` string converted)."""
    if conninfo.startswith(("postgresql://", "postgres://")):
        return conninfo
    from urllib.parse import quote

    from psycopg.conninfo import conninfo_to_dict

    parts = {k: str(v) for k, v in conninfo_to_dict(conninfo).items()}
    user = quote(parts.pop("user", ""), safe="")
    password = parts.pop("password", None)
    auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    host = parts.pop("host", "127.0.0.1")
    port = parts.pop("port", "5432")
    database = quote(parts.pop("dbname", "postgres"), safe="")
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in sorted(parts.items()))
    return f"postgresql://{auth}{host}:{port}/{database}" + (f"?{query}" if query else "")


def run_rows(args: argparse.Namespace, work: Path) -> list[Row]:
    setup = make_setup(work)
    lanes = args.clients * args.concurrency
    rows = [
        Row("floor", "chain + CRL, in process"),
        Row("floor_fido", "signature, counter, level, in process"),
        Row("one_node_sqlite", "nonce, chain + CRL, audit file + store"),
        Row("one_node_sqlite_fido", "nonce, signature, counter, audit file + store"),
        Row("two_nodes_postgres", "nonce across nodes, chain + CRL, audit file + store"),
    ]
    by_name = {row.name: row for row in rows}
    rows[0] = by_name["floor"] = floor_row(setup, args.count)
    fido = Fido(work, lanes)
    fido.register()
    sqlite = f"sqlite:{work / 'one-node.db'}"
    node_row(by_name["one_node_sqlite"], setup, [sqlite], args.count, args.clients, lanes, None,
             prefix="sqlite")  # fmt: skip
    fido_sqlite = f"sqlite:{work / 'one-node-fido.db'}"
    node_row(by_name["one_node_sqlite_fido"], setup, [fido_sqlite], args.count, args.clients,
             lanes, fido, prefix="fido")  # fmt: skip
    rows[1] = floor_fido_row(fido, args.count)
    two = by_name["two_nodes_postgres"]
    if args.postgres is None:
        two.reason = "no PostgreSQL given (--postgres CONNINFO or MIE_BENCH_POSTGRES)"
    else:
        url = postgres_url(args.postgres)
        node_row(two, setup, [url, url], args.count, args.clients, lanes, None, prefix="pg")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=5000, help="verifications per row")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--concurrency", type=int, default=8, help="coroutines per client")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("MIE_BENCH_POSTGRES"),
        help="PostgreSQL connection string of an empty database (the two-node row)",
    )
    args = parser.parse_args()
    if not 2 <= args.count <= 1_000_000:
        parser.error("--count must be from 2 to 1000000")
    if not 1 <= args.clients <= 64 or not 1 <= args.concurrency <= 256:
        parser.error("--clients 1 to 64, --concurrency 1 to 256")
    if args.count < args.clients * args.concurrency:
        parser.error("--count must be at least --clients x --concurrency (one job per lane)")
    with tempfile.TemporaryDirectory(prefix="mie-bench-service-") as tmp:
        rows = run_rows(args, Path(tmp))
    by_name = {row.name: row for row in rows}
    floor = by_name["floor"].per_s
    fido_floor = by_name["floor_fido"].per_s
    print(f"{'row':22} {'per second':>11} {'x floor':>8} {'p50 ms':>8} {'p99 ms':>8}  checks")
    for row in rows:
        if row.per_s is None:
            print(
                f"{row.name:22} {'null':>11} {'':>8} {'':>8} {'':>8}  {row.checks} ({row.reason})"
            )
            continue
        base = fido_floor if "fido" in row.name else floor
        ratio = f"{row.per_s / base:8.2f}" if base else f"{'':>8}"
        print(
            f"{row.name:22} {row.per_s:11.0f} {ratio} {row.p50_ms:8.2f} {row.p99_ms:8.2f}  "
            f"{row.checks}"
        )
    for row in rows:
        if row.reason is not None:
            print(f"{row.name}: {row.reason}", file=sys.stderr)
    one, two, fido_row = (
        by_name["one_node_sqlite"],
        by_name["two_nodes_postgres"],
        by_name["one_node_sqlite_fido"],
    )
    print(
        json.dumps(
            {
                "verify_per_s": _r(one.per_s),
                "p99_ms": _r(one.p99_ms, 2),
                "p50_ms": _r(one.p50_ms, 2),
                "floor_per_s": _r(floor),
                "two_node_per_s": _r(two.per_s),
                "two_node_p99_ms": _r(two.p99_ms, 2),
                "fido_per_s": _r(fido_row.per_s),
                "fido_p99_ms": _r(fido_row.p99_ms, 2),
                "fido_floor_per_s": _r(fido_floor),
                "clients": args.clients * args.concurrency,
                "cpus": os.cpu_count(),
                "count": args.count,
                "accepted": {row.name: row.accepted for row in rows},
            }
        )
    )


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


if __name__ == "__main__":
    main()
