"""GET /metrics: counters by kind, result and code; the histogram counts every verification;
no label carries a nonce, a session or an identity."""

from __future__ import annotations

import re

from mie.emulation.testpki import CardCredentials
from tests.service.conftest import LiveService, challenge, cpx_evidence, post_verify


def _samples(service: LiveService) -> dict[str, float]:
    answer = service.client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    out = {}
    for line in answer.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def _value(samples: dict[str, float], name: str) -> float:
    return samples.get(name, 0.0)


def test_counters_move_by_kind_result_and_code(service: LiveService, card: CardCredentials) -> None:
    valid = 'mie_authentications_total{code="none",kind="cpx",result="valid"}'
    reused = 'mie_authentications_total{code="nonce_unknown",kind="cpx",result="refused"}'
    origin = 'mie_authentications_total{code="origin_mismatch",kind="cpx",result="refused"}'
    count = 'mie_verify_seconds_count{kind="cpx"}'
    before = _samples(service)
    evidence = cpx_evidence(card, challenge(service))
    assert post_verify(service, evidence).status_code == 200
    assert post_verify(service, evidence).status_code == 409
    rogue = cpx_evidence(card, challenge(service), "https://rogue.example")
    assert post_verify(service, rogue).status_code == 422
    after = _samples(service)
    assert _value(after, valid) - _value(before, valid) == 1
    assert _value(after, reused) - _value(before, reused) == 1
    assert _value(after, origin) - _value(before, origin) == 1
    assert _value(after, count) - _value(before, count) == 3
    issued = 'mie_challenges_total{purpose="verify"}'
    assert _value(after, issued) - _value(before, issued) == 2
    route = 'mie_http_requests_total{route="/v1/verify",status="200"}'
    assert _value(after, route) - _value(before, route) == 1


def test_no_label_carries_a_secret(service: LiveService, card: CardCredentials) -> None:
    nonce = challenge(service)
    assert post_verify(service, cpx_evidence(card, nonce)).status_code == 200
    text = service.client.get("/metrics").text
    assert nonce.hex() not in text
    assert "session-1" not in text and "keycloak" not in text
    assert not re.search(r"8101000\d+", text)
