"""FIDO2 assertions verified per second: mie against python-fido2's and py_webauthn's servers.

One ES256 credential is registered in process on ``mie.emulation.ctap2.EmulatedAuthenticator``
(PIN set, packed attestation with the TEST batch key) through python-fido2's ``Fido2Client``,
its registration verified by ``Fido2Server`` and by ``mie.fido.registration.verify_registration``
(the policy trusts the TEST attestation root for the emulator's AAGUID only); then ``--count``
assertions are made in advance, each for its own 32-byte nonce with the PIN verified (UV), kept
as W3C JSON dicts (base64url, what an IAM receives from a browser).
Every row verifies the same assertions, in counter order:

- ``mie``: ``WebAuthnAssertionEvidence.from_webauthn`` + ``FidoVerifier.verify`` on a
  ``MemoryStore`` (evidence binding, client data, authenticator data, signature, the counter's
  compare-and-set, the level); ``mie_sqlite`` / ``mie_postgres`` the same on ``SqliteStore``
  (one file, WAL) and ``PostgresStore`` (``--postgres CONNINFO``; null without it);
- ``fido2_server``: ``Fido2Server.authenticate_complete`` (no counter check);
- ``py_webauthn``: ``webauthn.verify_authentication_response`` with
  ``credential_current_sign_count`` and ``require_user_verification``;
- ``floor``: one ECDSA P-256/SHA-256 verification of ``authData || SHA-256(clientDataJSON)``
  with ``cryptography``, nothing parsed.

A row must accept every assertion (the script stops otherwise). Each row is timed over all the
assertions in 5 passes after a warm-up, the store reset to the registered counter before each
pass (outside the timing); the rows take turns, every pass timing each row once, so a burst of
load on a shared machine falls on every row alike rather than on the one timed then; the figure
is a row's median pass, in assertions per second.
Run: ``.venv/bin/python benchmarks/bench_fido.py [--count N] [--postgres CONNINFO]``. The last
line printed is one JSON object: ``mie_per_s``, ``fido2_server_per_s``, ``py_webauthn_per_s``,
``floor_per_s``, ``mie_sqlite_per_s``, ``mie_postgres_per_s`` (null, the reason on stderr),
plus ``count`` and ``accepted`` (assertions accepted per row, per pass).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.attestation.base import AttestationVerifier
from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.server import Fido2Server
from fido2.webauthn import (
    AttestationConveyancePreference,
    AttestedCredentialData,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    UserVerificationRequirement,
)

from mie.emulation.ctap2 import EmulatedAuthenticator
from mie.emulation.fido_pki import EMULATOR_AAGUID, TestAttestationPki
from mie.fido.allowlist import AaguidAllowlist, AllowedKey
from mie.fido.assertion import FidoVerifier
from mie.fido.evidence import WebAuthnAssertionEvidence
from mie.fido.policy import FidoPolicy
from mie.fido.registration import RegistrationData, verify_registration
from mie.policy import AssuranceLevel
from mie.store.base import CredentialRecord, Store
from mie.trust.identity import Identity, parse_id_nat
from mie.verification import Expected

RP_ID = "iam.example"
ORIGIN = "https://iam.example"
PIN = "1234"
ID_NAT = "810100099877"  # an RPPS number (Luhn-valid) of the TEST range
WARM_UP = 100
PASSES = 5
REQUIRED = UserVerificationRequirement.REQUIRED


class _Pin(UserInteraction):
    """The PIN python-fido2's client asks for (the emulator's)."""

    def request_pin(self, permissions: Any, rp_id: str | None) -> str:
        return PIN


class _TestRoot(AttestationVerifier):
    """python-fido2's attestation check, anchored at the TEST attestation root."""

    def __init__(self, root: bytes) -> None:
        super().__init__()
        self.root = root

    def ca_lookup(self, attestation_result: Any, auth_data: Any) -> bytes:
        return self.root


@dataclass(frozen=True)
class Assertion:
    """One assertion made in advance: its nonce, python-fido2's state, the W3C JSON."""

    nonce: bytes
    state: Mapping[str, Any]
    webauthn: Mapping[str, Any]
    auth_data: bytes
    client_data: bytes
    signature: bytes

    @property
    def sign_count(self) -> int:
        return int.from_bytes(self.auth_data[33:37], "big")


@dataclass(frozen=True)
class Setup:
    """The registered credential and the assertions every row verifies."""

    pki: TestAttestationPki
    credential: AttestedCredentialData
    record: CredentialRecord
    registration: Mapping[str, Any]
    assertions: tuple[Assertion, ...]


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _jsonable(response: Any) -> dict[str, Any]:
    """:return: python-fido2's response as plain W3C JSON (strings, no enums)."""
    value: dict[str, Any] = json.loads(json.dumps(dict(response)))
    return value


def make_setup(count: int) -> Setup:
    """Register one ES256 credential on the emulator and make ``count`` assertions with it."""
    pki = TestAttestationPki.generate()
    device = EmulatedAuthenticator(PIN, pki=pki, algorithms=(-7,))
    client = Fido2Client(device, DefaultClientDataCollector(ORIGIN), user_interaction=_Pin())
    server = Fido2Server(
        PublicKeyCredentialRpEntity(id=RP_ID, name="IAM"),
        attestation=AttestationConveyancePreference.DIRECT,
        verify_attestation=_TestRoot(pki.root.der),
    )
    user = PublicKeyCredentialUserEntity(
        name="bench", id=secrets.token_bytes(16), display_name="Bench"
    )
    options, state = server.register_begin(
        user, user_verification=REQUIRED, challenge=secrets.token_bytes(32)
    )
    response = client.make_credential(options.public_key)
    credential = server.register_complete(state, response).credential_data
    if credential is None:
        raise SystemExit("The registration gave no credential")
    # The same registration verified by mie: the record every mie row checks assertions with.
    data = RegistrationData.from_webauthn(
        _jsonable(response),
        nonce=bytes(options.public_key.challenge),
        origin=ORIGIN,
        rp_id=RP_ID,
        user_handle=bytes(user.id),
    )
    id_type, number = parse_id_nat(ID_NAT)
    registered = verify_registration(
        data,
        Expected(data.nonce, ORIGIN),
        identity=Identity(ID_NAT, id_type, number, None, None, None, None, True),
        policy=policy(pki),
        store=None,
    )
    if registered.level_cap is not AssuranceLevel.SUBSTANTIAL:
        raise SystemExit(f"Unexpected registration: {registered}")
    record = registered.record
    assertions = []
    for _ in range(count):
        nonce = secrets.token_bytes(32)
        request, state = server.authenticate_begin(
            [credential], user_verification=REQUIRED, challenge=nonce
        )
        answer = client.get_assertion(request.public_key).get_response(0)
        webauthn = _jsonable(answer)
        assertions.append(
            Assertion(
                nonce=nonce,
                state=state,
                webauthn=webauthn,
                auth_data=_b64(webauthn["response"]["authenticatorData"]),
                client_data=_b64(webauthn["response"]["clientDataJSON"]),
                signature=_b64(webauthn["response"]["signature"]),
            )
        )
    return Setup(pki, credential, record, _jsonable(response), tuple(assertions))


def policy(pki: TestAttestationPki) -> FidoPolicy:
    """The ``substantial`` profile (attested, UV, device-bound, counter) for this relying
    party, trusting the TEST attestation root for the emulator's model only."""
    model = AllowedKey(EMULATOR_AAGUID, "mie TEST emulated key", (pki.root.certificate,), test=True)
    return FidoPolicy(rp_id=RP_ID, allowlist=AaguidAllowlist((model,), source="bench"))


# The rows: a verifier of one assertion, raising when it refuses it.

Verify = Callable[[Assertion], None]


def floor_row(setup: Setup) -> Verify:
    """One ECDSA P-256/SHA-256 verification with ``cryptography``, nothing parsed."""
    key = setup.credential.public_key
    x, y = key[-2], key[-3]
    public = ec.EllipticCurvePublicNumbers(
        int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
    ).public_key()
    algorithm = ec.ECDSA(hashes.SHA256())

    def verify(a: Assertion) -> None:
        public.verify(a.signature, a.auth_data + hashlib.sha256(a.client_data).digest(), algorithm)

    return verify


def fido2_server_row(setup: Setup) -> Verify:
    """``Fido2Server.authenticate_complete``: binding, flags, signature (no counter)."""
    server = Fido2Server(PublicKeyCredentialRpEntity(id=RP_ID, name="IAM"))
    credentials = [setup.credential]

    def verify(a: Assertion) -> None:
        server.authenticate_complete(a.state, credentials, a.webauthn)

    return verify


def py_webauthn_row(setup: Setup) -> Verify:
    """py_webauthn's ``verify_authentication_response``, with the counter and UV required."""
    import webauthn

    public_key = setup.record.public_key

    def verify(a: Assertion) -> None:
        webauthn.verify_authentication_response(
            credential=dict(a.webauthn),
            expected_challenge=a.nonce,
            expected_rp_id=RP_ID,
            expected_origin=ORIGIN,
            credential_public_key=public_key,
            credential_current_sign_count=a.sign_count - 1,
            require_user_verification=True,
        )

    return verify


def mie_row(setup: Setup, store: Store) -> Verify:
    """``WebAuthnAssertionEvidence.from_webauthn`` + ``FidoVerifier.verify`` on ``store``: the
    assertion valid at level substantial for the registered professional."""
    verifier = FidoVerifier(policy(setup.pki), store)

    def verify(a: Assertion) -> None:
        evidence = WebAuthnAssertionEvidence.from_webauthn(
            a.webauthn, nonce=a.nonce, origin=ORIGIN, rp_id=RP_ID
        )
        result = verifier.verify(evidence, Expected(a.nonce, ORIGIN))
        if not result.valid or result.level is not AssuranceLevel.SUBSTANTIAL:
            raise SystemExit(f"mie: unexpected result {result.to_json()}")
        if result.identity is None or result.identity.id_nat != ID_NAT:
            raise SystemExit(f"mie: unexpected identity {result.to_json()}")

    return verify


# Timing


@dataclass
class Row:
    """A row of the table: its figure (or the reason there is none) and what it checks."""

    name: str
    checks: str
    per_s: float | None = None
    accepted: int | None = None
    reason: str | None = None


@dataclass
class Timed:
    """A row being timed: its verifier, its store's reset and the rate of each pass."""

    name: str
    verify: Verify
    reset: Callable[[], None]
    rates: list[float]


def time_rows(rows: Sequence[Timed], assertions: Sequence[Assertion]) -> None:
    """Warm every row up, then time ``PASSES`` passes over all the assertions, the rows taking
    turns within each pass (``rates`` gets one figure per pass).

    :raises SystemExit: a row refused an assertion.
    """
    for row in rows:
        row.reset()
        for a in assertions[:WARM_UP]:
            _checked(row.name, row.verify, a)
    for _ in range(PASSES):
        for row in rows:
            row.reset()
            verify, name = row.verify, row.name
            start = time.perf_counter()
            for a in assertions:
                _checked(name, verify, a)
            row.rates.append(len(assertions) / (time.perf_counter() - start))


def _checked(name: str, verify: Verify, assertion: Assertion) -> None:
    try:
        verify(assertion)
    except SystemExit:
        raise
    except Exception as e:
        raise SystemExit(
            f"{name} refused assertion {assertion.sign_count}: {type(e).__name__}: {e}"
        ) from e


def _fresh(store: Store, record: CredentialRecord) -> Callable[[], None]:
    """:return: a reset putting ``record`` back in ``store`` at its registered counter."""

    def reset() -> None:
        from mie.store.errors import CredentialUnknownError

        try:
            store.delete_credential(record.rp_id, record.credential_id)
        except CredentialUnknownError:
            pass
        store.put_credential(record)

    return reset


@contextmanager
def stores(work: Path, postgres: str | None) -> Iterator[dict[str, Store | str]]:
    """:return: the memory, SQLite and PostgreSQL stores, or the reason one is missing."""
    from mie.store.memory import MemoryStore
    from mie.store.sqlite import SqliteStore

    opened: dict[str, Store | str] = {
        "mie": MemoryStore(),
        "mie_sqlite": SqliteStore(work / "mie.db"),
    }
    if postgres is None:
        opened["mie_postgres"] = "no PostgreSQL given (--postgres CONNINFO or MIE_BENCH_POSTGRES)"
    else:
        try:
            from mie.store.postgres import PostgresStore

            opened["mie_postgres"] = PostgresStore(postgres)
        except ImportError:
            opened["mie_postgres"] = "psycopg is not installed (pip install 'mie[store]')"
    try:
        yield opened
    finally:
        for store in opened.values():
            if isinstance(store, Store):
                store.close()


def run_rows(setup: Setup, work: Path, postgres: str | None) -> list[Row]:
    """:return: every row of the table, measured (or with the reason it is not)."""
    assertions = setup.assertions
    rows = [
        Row("mie", "counter, level"),
        Row("fido2_server", "no counter, no level"),
        Row("py_webauthn", "counter, no level"),
        Row("floor", "signature only"),
        Row("mie_sqlite", "counter, level, persisted"),
        Row("mie_postgres", "counter, level, persisted"),
    ]
    peers: dict[str, Callable[[], Verify]] = {
        "fido2_server": lambda: fido2_server_row(setup),
        "py_webauthn": lambda: py_webauthn_row(setup),
        "floor": lambda: floor_row(setup),
    }
    with stores(work, postgres) as opened:
        timed = []
        for row in rows:
            if row.name in peers:
                timed.append(Timed(row.name, peers[row.name](), lambda: None, []))
                continue
            store = opened[row.name]
            if isinstance(store, str):
                row.reason = store
                continue
            timed.append(Timed(row.name, mie_row(setup, store), _fresh(store, setup.record), []))
        time_rows(timed, assertions)
    rates = {t.name: t.rates for t in timed}
    for row in rows:
        if row.name in rates:
            row.per_s, row.accepted = statistics.median(rates[row.name]), len(assertions)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=5000, help="assertions per pass")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("MIE_BENCH_POSTGRES"),
        help="PostgreSQL connection string of an empty database (the mie_postgres row)",
    )
    args = parser.parse_args()
    if not 1 <= args.count <= 1_000_000:
        parser.error("--count must be from 1 to 1000000")
    setup = make_setup(args.count)
    with tempfile.TemporaryDirectory(prefix="mie-bench-fido-") as tmp:
        rows = run_rows(setup, Path(tmp), args.postgres)
    figures = {row.name: row for row in rows}
    floor = figures["floor"].per_s
    print(f"{'verifier':14} {'per second':>11} {'x floor':>8}  checks")
    for row in rows:
        if row.per_s is None:
            print(f"{row.name:14} {'null':>11} {'':>8}  {row.checks} ({row.reason})")
            continue
        ratio = f"{row.per_s / floor:8.2f}" if floor else f"{'':>8}"
        print(f"{row.name:14} {row.per_s:11.0f} {ratio}  {row.checks}")
    for row in rows:
        if row.reason is not None:
            print(f"{row.name}: {row.reason}", file=sys.stderr)
    print(
        json.dumps(
            {
                **{f"{row.name}_per_s": _rounded(row.per_s) for row in rows},
                "count": args.count,
                "accepted": {row.name: row.accepted for row in rows},
            }
        )
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


if __name__ == "__main__":
    main()
