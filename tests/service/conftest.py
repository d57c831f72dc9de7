"""Fixtures of the service tests: a TEST card, trust files, configurations, and a live service
(uvicorn on a thread, 127.0.0.1, port 0) with an httpx client."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from mie.emulation.testpki import CardCredentials, CardIdentity, Gamme, TestPki, default_rpps
from mie.evidence import X509SignatureEvidence
from mie.request import bound_challenge
from tests.harness import require_module

require_module("starlette", "the service tests need mie[service]")
require_module("uvicorn", "the service tests need mie[service]")
httpx = require_module("httpx", "the service tests need httpx (a dev dependency)")

import uvicorn  # noqa: E402

from mie.service import ServiceConfig, create_app  # noqa: E402
from mie.service.app import uvicorn_config  # noqa: E402
from mie.service.config import AuditConfig, Client  # noqa: E402

ORIGIN = "https://iam.example"
KEYS = {"keycloak": "key-keycloak-0123456789", "esso": "key-esso-9876543210", "desk": "key-desk-55"}
SCOPES = {
    "keycloak": frozenset({"verify"}),
    "esso": frozenset({"verify"}),
    "desk": frozenset({"enrol", "admin"}),
}
SESSION = "session-1"


def client_of(name: str) -> Client:
    """:return: the configured client ``name`` (its key's digest)."""
    return Client(name, hashlib.sha256(KEYS[name].encode()).digest(), SCOPES[name])


def headers(name: str = "keycloak", session: str | None = SESSION) -> dict[str, str]:
    """:return: the headers of a call by client ``name`` for ``session``."""
    out = {"Authorization": f"Bearer {KEYS[name]}"}
    if session is not None:
        out["Mie-Session"] = session
    return out


@pytest.fixture(scope="session")
def pki(test_pki_dir: Path) -> TestPki:
    return TestPki.load(test_pki_dir)


@pytest.fixture(scope="session")
def card(pki: TestPki) -> CardCredentials:
    """A CPS card of the TEST PKI (its keys sign here: no pcscd)."""
    return pki.issue_card(CardIdentity("RPPS", default_rpps(), "CPS"), "2800000001")


@pytest.fixture(scope="session")
def trust_files(pki: TestPki, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """The TEST roots as anchor files, their CAs, and fresh CRLs of every CA as CRL files."""
    directory = tmp_path_factory.mktemp("service-trust")
    anchors, intermediates, crls = [], [], []
    for gamme in (Gamme.FORT, Gamme.STANDARD):
        root = directory / f"root-{gamme.value.lower()}.pem"
        root.write_bytes(pki.roots[gamme].certificate_pem())
        anchors.append(str(root))
        ca = directory / f"ca-{gamme.value.lower()}.pem"
        ca.write_bytes(pki.intermediates[gamme].certificate_pem())
        intermediates.append(str(ca))
        for authority in (False, True):
            crl = directory / f"crl-{gamme.value.lower()}-{int(authority)}.der"
            der = pki.crl(gamme, authority=authority).public_bytes(serialization.Encoding.DER)
            crl.write_bytes(der)
            crls.append(str(crl))
    return {"anchors": anchors, "intermediates": intermediates, "crls": crls}


@pytest.fixture
def make_config(tmp_path: Path, trust_files: dict[str, list[str]]) -> Callable[..., ServiceConfig]:
    """A factory of configurations: SQLite in ``tmp_path``, the TEST trust, three clients."""

    def make(**overrides: Any) -> ServiceConfig:
        values: dict[str, Any] = {
            "origin": ORIGIN,
            "node": "node-a",
            "store": f"sqlite:///{tmp_path / 'service.db'}",
            "clients": tuple(client_of(n) for n in KEYS),
            "trust": _trust(trust_files),
            "audit": AuditConfig(file=None, store=False),
        }
        values.update(overrides)
        return ServiceConfig(**values)

    return make


def _trust(files: dict[str, list[str]]) -> Any:
    from mie.service.config import TrustConfig

    return TrustConfig(
        anchors=tuple(files["anchors"]),
        intermediates=tuple(files["intermediates"]),
        crls=tuple(files["crls"]),
        download=False,
    )


@dataclass
class LiveService:
    """A service running on a thread.

    :param url: its base URL.
    :param client: an httpx client on it.
    :param app: the ASGI application.
    :param server: the uvicorn server.
    """

    url: str
    client: Any
    app: Any
    server: uvicorn.Server

    @property
    def ctx(self) -> Any:
        return self.app.state.mie


@contextlib.contextmanager
def serve(config: ServiceConfig) -> Iterator[LiveService]:
    """Run ``config``'s app with uvicorn on 127.0.0.1, a free port, until the block ends."""
    app = create_app(config)
    server = uvicorn.Server(uvicorn_config(app, config, "127.0.0.1", 0))
    thread = threading.Thread(target=server.run, name="mie-serve", daemon=True)
    thread.start()
    for _ in range(200):
        if server.started or not thread.is_alive():
            break
        threading.Event().wait(0.05)
    if not server.started:
        server.should_exit = True
        thread.join(10)
        raise RuntimeError("the service did not start")
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield LiveService(url, client, app, server)
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture
def live_service() -> Iterator[Callable[[ServiceConfig], LiveService]]:
    """Start services (``live_service(config)``); every one is stopped at the end."""
    with contextlib.ExitStack() as stack:
        yield lambda config: stack.enter_context(serve(config))


@pytest.fixture
def service(
    live_service: Callable[[ServiceConfig], LiveService], make_config: Callable[..., ServiceConfig]
) -> LiveService:
    """One live service of the default configuration."""
    return live_service(make_config())


def cpx_evidence(
    card: CardCredentials, nonce: bytes, origin: str = ORIGIN, *, challenge: bytes | None = None
) -> X509SignatureEvidence:
    """Evidence as a CPx card makes it: its authentication key signs the bound challenge."""
    signed = bound_challenge(origin, nonce) if challenge is None else challenge
    key = card.authentication.key
    signature = key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    der = card.authentication.certificate.public_bytes(serialization.Encoding.DER)
    return X509SignatureEvidence(nonce, origin, signed, signature, (der,))


def challenge(live: LiveService, name: str = "keycloak", session: str | None = SESSION) -> bytes:
    """:return: a nonce the service issued to ``name`` for ``session``."""
    answer = live.client.post("/v1/challenges", headers=headers(name, session), json={})
    assert answer.status_code == 201, answer.text
    return bytes.fromhex(answer.json()["nonce"])


def post_verify(
    live: LiveService, body: Any, name: str = "keycloak", session: str | None = SESSION
) -> Any:
    """:return: the answer to ``POST /v1/verify`` of ``body`` (evidence or JSON)."""
    if isinstance(body, X509SignatureEvidence):
        body = body.to_json()
    return live.client.post("/v1/verify", headers=headers(name, session), json=body)


def still_serving(live: LiveService, card: CardCredentials) -> None:
    """The service answers its health check and verifies a fresh evidence."""
    assert live.client.get("/v1/health").status_code == 200
    nonce = challenge(live)
    answer = post_verify(live, cpx_evidence(card, nonce))
    assert answer.status_code == 200, answer.text
    assert answer.json()["valid"] is True


@pytest.fixture(scope="session")
def psc_allowing_test(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PSC claims mapping that is the packaged one, but emits claims for TEST identities."""
    import importlib.resources
    import json

    data = json.loads(importlib.resources.files("mie").joinpath("psc-claims.json").read_text())
    data["test_identities"] = "allow"
    path = tmp_path_factory.mktemp("psc") / "psc-claims.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.fixture(scope="session")
def fido_policy_file(test_pki_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A FIDO policy for the service's origin: attestation required, the emulator's TEST model
    allowlisted, its TEST attestation root trusted."""
    import json

    from mie.emulation.fido_pki import EMULATOR_AAGUID, TestAttestationPki

    pki = TestAttestationPki.load(test_pki_dir)
    directory = tmp_path_factory.mktemp("fido-policy")
    (directory / "root.pem").write_bytes(
        pki.root.certificate.public_bytes(serialization.Encoding.PEM)
    )
    import uuid

    allowlist = {
        "format": "mie-fido-aaguids/1",
        "source": "the service tests",
        "updated": "2026-12-01",
        "keys": [{"aaguid": str(uuid.UUID(bytes=EMULATOR_AAGUID)), "name": "TEST", "test": True}],
    }
    (directory / "aaguids.json").write_text(json.dumps(allowlist))
    policy = {
        "format": "mie-fido-policy/1",
        "rp_id": "iam.example",
        "attestation": "required",
        "allowlist": "aaguids.json",
        "metadata": None,
        "attestation_roots": ["root.pem"],
        "crls": [],
        "require_uv": True,
        "backup_eligible": "low",
        "counter": "required",
        "algorithms": ["ES256", "EdDSA"],
    }
    (directory / "policy.json").write_text(json.dumps(policy))
    return str(directory / "policy.json")


@pytest.fixture
def device(test_pki_dir: Path) -> Any:
    """An emulated FIDO2 key (PIN 1234) attested by the run's TEST attestation PKI."""
    from mie.emulation.ctap2 import EmulatedAuthenticator
    from mie.emulation.fido_pki import TestAttestationPki

    return EmulatedAuthenticator("1234", pki=TestAttestationPki.load(test_pki_dir))


@pytest.fixture
def fido_config(
    make_config: Callable[..., ServiceConfig], fido_policy_file: str, psc_allowing_test: str
) -> Callable[..., ServiceConfig]:
    """A factory of configurations with FIDO2 (the TEST policy) and a PSC mapping allowing
    TEST identities."""

    def make(**changes: Any) -> ServiceConfig:
        return make_config(fido_policy=fido_policy_file, psc_claims=psc_allowing_test, **changes)

    return make
