"""Many verifications at once on one app: every distinct nonce accepted exactly once, each
replay refused, and the shared verifiers give the single-thread results (plan §9)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from mie.emulation.testpki import CardCredentials
from mie.service import ServiceConfig
from tests.service.conftest import LiveService, challenge, cpx_evidence, headers

THREADS = 16
PER_THREAD = 12


def test_concurrent_verifications(
    live_service: Callable[[ServiceConfig], LiveService],
    make_config: Callable[..., ServiceConfig],
    card: CardCredentials,
) -> None:
    live = live_service(make_config())
    single = httpx.post(
        f"{live.url}/v1/verify",
        headers=headers(),
        json=cpx_evidence(card, challenge(live)).to_json(),
    ).json()
    barrier = threading.Barrier(THREADS)

    def worker(index: int) -> list[tuple[int, dict[str, Any], int]]:
        out = []
        with httpx.Client(base_url=live.url, timeout=60) as client:
            nonces = []
            for _ in range(PER_THREAD):
                answer = client.post("/v1/challenges", headers=headers(), json={})
                nonces.append(bytes.fromhex(answer.json()["nonce"]))
            barrier.wait(timeout=60)
            for nonce in nonces:
                body = cpx_evidence(card, nonce).to_json()
                first = client.post("/v1/verify", headers=headers(), json=body)
                replay = client.post("/v1/verify", headers=headers(), json=body)
                out.append((first.status_code, first.json(), replay.status_code))
        return out

    with ThreadPoolExecutor(THREADS) as pool:
        results = [r for rs in pool.map(worker, range(THREADS)) for r in rs]
    assert len(results) == THREADS * PER_THREAD
    assert {status for status, _, _ in results} == {200}
    assert {replay for _, _, replay in results} == {409}
    nonces = {body["evidence"]["nonce"] for _, body, _ in results}
    assert len(nonces) == THREADS * PER_THREAD
    # Concurrent results are the single-thread one, but for their nonce, challenge, signature.
    varying = ("nonce", "challenge", "signature")
    for _, body, _ in results:
        assert body["level"] == single["level"] and body["identity"] == single["identity"]
        assert body["reasons"] == single["reasons"]
        assert {k: v for k, v in body["evidence"].items() if k not in varying} == {
            k: v for k, v in single["evidence"].items() if k not in varying
        }
