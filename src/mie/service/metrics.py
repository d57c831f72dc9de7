"""Prometheus metrics of one service app (its own registry, so a process can hold several).

No label carries an identity, a serial, a nonce, a session or a client key.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
KINDS = {"x509-signature": "cpx", "desfire-session": "badge", "webauthn-assertion": "fido2"}


def kind_of(evidence_type: str | None) -> str:
    """:return: the metric kind of an evidence type (``cpx``, ``badge``, ``fido2``,
    ``unknown``)."""
    return KINDS.get(evidence_type or "", "unknown")


def result_of(status: int) -> str:
    """:return: ``valid`` (2xx), ``refused`` (4xx) or ``failed`` (5xx)."""
    if status < 400:
        return "valid"
    return "refused" if status < 500 else "failed"


class Metrics:
    """The counters, histogram and gauge of plan §1.5, in a registry of their own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.authentications = Counter(
            "mie_authentications",
            "Verifications by MIE kind, result and error code",
            ("kind", "result", "code"),
            registry=r,
        )
        self.verify_seconds = Histogram(
            "mie_verify_seconds", "Time to verify evidence", ("kind",), buckets=_BUCKETS, registry=r
        )
        self.challenges = Counter("mie_challenges", "Nonces issued", ("purpose",), registry=r)
        self.store_errors = Counter("mie_store_errors", "Store operations that failed", registry=r)
        self.audit_records = Counter(
            "mie_audit_records", "Audit records written", ("sink",), registry=r
        )
        self.relay_sessions = Gauge(
            "mie_relay_sessions", "Relay sessions by state", ("state",), registry=r
        )
        self.http_requests = Counter(
            "mie_http_requests",
            "HTTP requests by route template and status",
            ("route", "status"),
            registry=r,
        )

    def authentication(self, kind: str, status: int, code: str | None, seconds: float) -> None:
        """Count one verification and its time."""
        self.authentications.labels(kind, result_of(status), code or "none").inc()
        self.verify_seconds.labels(kind).observe(seconds)

    def render(self) -> bytes:
        """:return: the Prometheus text exposition (0.0.4)."""
        return generate_latest(self.registry)


__all__ = ["KINDS", "Metrics", "kind_of", "result_of"]
