"""POST /v1/verify: a valid CPx evidence, and every nonce and binding refusal (issue 11, "Bad
input"): each answer has the status of its code, and the service keeps serving."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mie.emulation.testpki import CardCredentials
from mie.result import AuthResult
from mie.service import ServiceConfig
from mie.service.config import AuditConfig
from mie.service.errors import STATUS
from tests.service.conftest import (
    ORIGIN,
    LiveService,
    challenge,
    cpx_evidence,
    headers,
    post_verify,
    still_serving,
)


def _refused(answer: Any, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["valid"] is False
    assert body["error"]["code"] == code
    assert STATUS[code] == status
    return body


def test_valid_cpx_evidence_is_accepted(service: LiveService, card: CardCredentials) -> None:
    nonce = challenge(service)
    answer = post_verify(service, cpx_evidence(card, nonce))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["valid"] is True and body["error"] is None
    assert body["level"] == "substantial"
    assert body["identity"]["test_card"] is True
    assert body["evidence"]["revocation"] == "good"
    assert "psc_claims" in body and "audit" in body
    # The answer reads back as a result (without the service's two members).
    AuthResult.from_json({k: v for k, v in body.items() if k not in ("psc_claims", "audit")})


def test_a_whole_result_and_an_evidence_wrapper_are_taken(
    service: LiveService, card: CardCredentials
) -> None:
    nonce = challenge(service)
    evidence = cpx_evidence(card, nonce)
    result = AuthResult(True, evidence=evidence, reasons=("made on the workstation",))
    assert post_verify(service, result.to_json()).status_code == 200
    nonce = challenge(service)
    wrapped = {"evidence": cpx_evidence(card, nonce).to_json()}
    assert post_verify(service, wrapped).status_code == 200


def test_nonce_reused(service: LiveService, card: CardCredentials) -> None:
    evidence = cpx_evidence(card, challenge(service))
    assert post_verify(service, evidence).status_code == 200
    _refused(post_verify(service, evidence), 409, "nonce_unknown")
    still_serving(service, card)


def test_nonce_expired(
    live_service: Callable[[ServiceConfig], LiveService],
    make_config: Callable[..., ServiceConfig],
    card: CardCredentials,
) -> None:
    live = live_service(make_config())
    # The shortest lifetime a configuration takes is 30 s: the store's clock is moved instead.
    nonce = challenge(live)
    clock = live.ctx.store._clock
    live.ctx.store._clock = lambda: clock() + 301
    try:
        _refused(post_verify(live, cpx_evidence(card, nonce)), 409, "nonce_unknown")
    finally:
        live.ctx.store._clock = clock
    still_serving(live, card)


def test_nonce_never_issued(service: LiveService, card: CardCredentials) -> None:
    _refused(post_verify(service, cpx_evidence(card, bytes(32))), 409, "nonce_unknown")
    # Another size than the service's 32 bytes was never issued: refused the same way.
    _refused(post_verify(service, cpx_evidence(card, bytes(16))), 409, "nonce_unknown")
    still_serving(service, card)


def test_nonce_other_session(service: LiveService, card: CardCredentials) -> None:
    nonce = challenge(service, session="session-1")
    evidence = cpx_evidence(card, nonce)
    _refused(post_verify(service, evidence, session="session-2"), 409, "nonce_unknown")
    # First use, valid or not: the nonce is burnt for its own session too.
    _refused(post_verify(service, evidence, session="session-1"), 409, "nonce_unknown")
    still_serving(service, card)


def test_nonce_other_client(service: LiveService, card: CardCredentials) -> None:
    nonce = challenge(service, "keycloak", "session-1")
    evidence = cpx_evidence(card, nonce)
    _refused(post_verify(service, evidence, "esso", "session-1"), 409, "nonce_unknown")
    _refused(post_verify(service, evidence, "keycloak", "session-1"), 409, "nonce_unknown")
    still_serving(service, card)


def test_origin_differs(service: LiveService, card: CardCredentials) -> None:
    # A rogue site relayed the service's nonce: the card signed for the rogue origin.
    nonce = challenge(service)
    evidence = cpx_evidence(card, nonce, "https://rogue.example")
    _refused(post_verify(service, evidence), 422, "origin_mismatch")
    # The nonce is burnt: the same nonce signed for the right origin is refused too.
    _refused(post_verify(service, cpx_evidence(card, nonce)), 409, "nonce_unknown")
    still_serving(service, card)


def test_challenge_of_another_nonce(service: LiveService, card: CardCredentials) -> None:
    nonce = challenge(service)
    from mie.request import bound_challenge

    evidence = cpx_evidence(card, nonce, challenge=bound_challenge(ORIGIN, bytes(32)))
    _refused(post_verify(service, evidence), 422, "signature_invalid")
    still_serving(service, card)


def test_signature_by_another_key(service: LiveService, card: CardCredentials, pki: object) -> None:
    import dataclasses

    nonce = challenge(service)
    evidence = cpx_evidence(card, nonce)
    forged = dataclasses.replace(evidence, signature=bytes(len(evidence.signature)))
    _refused(post_verify(service, forged), 422, "signature_invalid")
    still_serving(service, card)


def test_unknown_evidence_kind(service: LiveService, card: CardCredentials) -> None:
    answer = post_verify(service, {"type": "x-future", "nonce": "00" * 32})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "malformed"
    still_serving(service, card)


def test_unknown_kind_consumes_no_nonce(service: LiveService, card: CardCredentials) -> None:
    nonce = challenge(service)
    answer = post_verify(service, {"type": "x-future", "nonce": nonce.hex()})
    assert answer.status_code == 400
    # A body that does not parse names no nonce: it is still there.
    assert post_verify(service, cpx_evidence(card, nonce)).status_code == 200


def test_fido_evidence_without_a_fido_policy(service: LiveService, card: CardCredentials) -> None:
    from mie.fido.evidence import WebAuthnAssertionEvidence

    nonce = challenge(service)
    evidence = WebAuthnAssertionEvidence(
        nonce, ORIGIN, "iam.example", b"\x01" * 16, b"\x00" * 37, b"{}", b"\x30" * 8, None
    )
    answer = post_verify(service, evidence.to_json())
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "malformed"
    assert "No FIDO2 verifier configured" in answer.json()["error"]["message"]
    still_serving(service, card)


def test_badge_evidence_without_a_badge_configuration(
    service: LiveService, card: CardCredentials
) -> None:
    nonce = challenge(service)
    answer = service.client.post(
        "/v1/verify",
        headers=headers(),
        json={"type": "desfire-session", "nonce": nonce.hex()},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "malformed"
    still_serving(service, card)


@pytest.mark.parametrize("key", ["", "x"])
def test_verify_needs_the_verify_scope(
    service: LiveService, card: CardCredentials, key: str
) -> None:
    nonce = challenge(service)
    answer = service.client.post(
        "/v1/verify", headers=headers("desk"), json=cpx_evidence(card, nonce).to_json()
    )
    assert answer.status_code == 403
    # Refused before the body is read: the nonce is still there.
    assert post_verify(service, cpx_evidence(card, nonce)).status_code == 200
    time.sleep(0)


def test_psc_claims_at_substantial(
    live_service: Callable[[ServiceConfig], LiveService],
    make_config: Callable[..., ServiceConfig],
    card: CardCredentials,
    psc_allowing_test: str,
) -> None:
    live = live_service(make_config(psc_claims=psc_allowing_test))
    answer = post_verify(live, cpx_evidence(card, challenge(live)))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    claims = body["psc_claims"]
    assert claims["SubjectNameID"] == body["identity"]["id_nat"]
    assert claims["acr"] == "eidas1" and claims["amr"] == ["sc", "pin", "mfa"]
    assert claims["family_name"] == "DUPONT" and isinstance(claims["auth_time"], int)


def test_the_packaged_mapping_refuses_test_identities(
    service: LiveService, card: CardCredentials
) -> None:
    body = post_verify(service, cpx_evidence(card, challenge(service))).json()
    assert body["valid"] is True and body["psc_claims"] is None
    assert any(r.startswith("PSC claims not emitted") for r in body["reasons"])


def test_every_verification_is_audited(
    live_service: Callable[[ServiceConfig], LiveService],
    make_config: Callable[..., ServiceConfig],
    card: CardCredentials,
    tmp_path: Path,
) -> None:
    from mie.audit import verify_trail

    trail = tmp_path / "audit.jsonl"
    live = live_service(make_config(audit=AuditConfig(file=str(trail), store=True)))
    evidence = cpx_evidence(card, challenge(live))
    answer = post_verify(live, evidence)
    assert answer.status_code == 200, answer.text
    stamp = answer.json()["audit"]
    assert stamp == {"node": "node-a", "seq": 2}  # after the start record
    assert post_verify(live, evidence).status_code == 409
    lines = trail.read_bytes().splitlines(keepends=True)
    report = verify_trail(lines)
    assert report.records == 3
    records = [json.loads(line) for line in lines]
    assert [r["event"] for r in records] == ["start", "verify", "verify"]
    assert records[1]["level"] == "substantial" and records[1]["error"] is None
    assert records[2]["error"]["code"] == "nonce_unknown"
    assert records[1]["client"] == "keycloak" and records[1]["request"]
    # Never the nonce or the session, only digests of them.
    text = trail.read_text()
    assert evidence.nonce.hex() not in text and "session-1" not in text
    # The store's chain holds the same records.
    assert len(live.ctx.store.audit_lines("node-a")) == 3


def test_a_success_the_audit_cannot_record_is_withheld(
    live_service: Callable[[ServiceConfig], LiveService],
    make_config: Callable[..., ServiceConfig],
    card: CardCredentials,
) -> None:
    from mie.store.errors import StoreError

    live = live_service(make_config(audit=AuditConfig(file=None, store=True)))
    store = live.ctx.store
    before = len(store.audit_lines("node-a"))
    append = store.append_audit

    def down(*args: object) -> None:
        raise StoreError("the audit table is down")

    store.append_audit = down
    evidence = cpx_evidence(card, challenge(live))
    try:
        answer = post_verify(live, evidence)
    finally:
        store.append_audit = append
    body = _refused(answer, 503, "store_unavailable")
    assert body["identity"] is None and body["level"] is None
    assert answer.headers["retry-after"] == "1"
    assert len(store.audit_lines("node-a")) == before
    # The nonce stays consumed; the service serves again once the sink is back.
    _refused(post_verify(live, evidence), 409, "nonce_unknown")
    still_serving(live, card)


def test_health_names_no_store_internals(
    service: LiveService, caplog: pytest.LogCaptureFixture
) -> None:
    # RS1: the unauthenticated /v1/health answered the store error's text, which names the
    # database's address (psycopg's "connection to server at ..."): it is logged instead.
    from mie.store.errors import StoreError

    store = service.ctx.store
    ping = store.ping
    text = 'PostgreSQL store unreachable: connection to server at "10.9.8.7", port 5432 failed'

    def down() -> None:
        raise StoreError(text)

    caplog.set_level(logging.WARNING, logger="mie")
    store.ping = down
    try:
        answer = service.client.get("/v1/health")
    finally:
        store.ping = ping
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "unavailable" and body["error"]["code"] == "store_unavailable"
    assert "10.9.8.7" not in answer.text
    assert "10.9.8.7" in caplog.text
    assert service.client.get("/v1/health").status_code == 200


def test_a_refused_requests_authenticator_is_recorded_as_claimed(
    live_service: Callable[[ServiceConfig], LiveService],
    make_config: Callable[..., ServiceConfig],
    card: CardCredentials,
    tmp_path: Path,
) -> None:
    # Review RS2: a replayed result with a forged authenticator wrote its kind and serial into
    # the trail as if they were the MIE presented.
    from mie.result import AuthenticatorInfo

    trail = tmp_path / "audit.jsonl"
    live = live_service(make_config(audit=AuditConfig(file=str(trail), store=False)))
    evidence = cpx_evidence(card, challenge(live))
    forged = AuthenticatorInfo("cps3", "2800000001", None, None)
    result = AuthResult(True, authenticator=forged, evidence=evidence, reasons=("forged",))
    assert post_verify(live, result.to_json()).status_code == 200
    assert post_verify(live, result.to_json()).status_code == 409
    records = [json.loads(line) for line in trail.read_bytes().splitlines()]
    accepted, refused = records[1], records[2]
    assert accepted["detail"] is None
    assert refused["error"]["code"] == "nonce_unknown"
    assert refused["detail"] == {"authenticator": "claimed, not verified"}
