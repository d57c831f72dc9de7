"""Fuzz targets of the service's own inputs kept on disk (see :mod:`tests.fuzz.targets`): an audit
trail (``audit-line``: :func:`mie.audit.verify_trail`, then :meth:`mie.audit.FileSink.open` on the
same bytes) and a PSC claims mapping (``psc-mapping``: :meth:`mie.psc.PscMapping.load`).

Oracles. ``audit-line``: a trail accepted is one of canonical records numbered 1..n, each naming
the digest of the line before, and verifies again with its own head; :class:`FileSink` opens
exactly the bytes :func:`verify_trail` accepts (a torn last line cut off, nothing else), and a
record appended then keeps the whole file valid. ``psc-mapping``: an accepted mapping reads back
through ``to_json``/``from_json`` unchanged, and the claims it gives a valid ``substantial``
result carry its ``acr`` and ``amr`` for that class, or it refuses with ``PscRefusedError``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Iterable

from mie.audit import (
    MAX_LINE,
    AuditChainError,
    AuditError,
    AuditEvent,
    AuditTrail,
    FileSink,
    TrailReport,
    encode_record,
    record_digest,
    short_digest,
    verify_trail,
)
from mie.core.errors import MieError
from mie.desfire.config import UidSource
from mie.desfire.evidence import BadgeScheme, DesfireSessionEvidence, TranscriptExchange
from mie.evidence import X509SignatureEvidence
from mie.fido.evidence import WebAuthnAssertionEvidence
from mie.policy import AssuranceLevel
from mie.psc import PscMapping, PscRefusedError, mie_class, psc_claims
from mie.result import AuthResult
from mie.trust.identity import Identity
from tests.fuzz.context import Context
from tests.fuzz.harness import OracleViolation, Run, Target, scratch

_T0 = dt.datetime(2026, 12, 2, 10, 15, 30, tzinfo=dt.UTC)
_ORIGIN = "https://iam.example"
_NONCE = bytes(range(32))
_LINES = re.compile(rb"[^\n]*\n|[^\n]+\Z")


def _lines(data: bytes) -> list[bytes]:
    """The file's lines as a reader sees them: split at LF only, each with its LF."""
    return _LINES.findall(data)


def _trail(count: int, *, start: int = 0) -> bytes:
    prev, out = "0" * 64, []
    for i in range(count):
        event = AuditEvent(
            ("start", "verify", "relay", "revoke", "stop")[(start + i) % 5],
            request=f"{i:016x}",
            rp=_ORIGIN,
            client="keycloak",
            identity={"id_nat": "810100099877", "test": i % 2 == 0},
            level="substantial" if i % 3 else None,
            reasons=("two factors", "é"),
            error={"code": "nonce_unknown", "message": "no"} if i % 4 == 3 else None,
            nonce=short_digest(_NONCE + bytes([i])),
            detail={"n": i, "list": [1, "x", None, True]} if i % 2 else None,
        )
        when = _T0 + dt.timedelta(milliseconds=10 * i)
        line = encode_record(event.fields(), seq=i + 1, prev=prev, time=when, node="node-a")
        out.append(line.encode("utf-8") + b"\n")
        prev = record_digest(line)
    return b"".join(out)


def _audit_seeds(context: Context) -> Iterable[bytes]:
    full = _trail(6)
    yield full
    yield _trail(1)
    yield full[:-10]  # torn
    yield full + b'{"v":1'
    yield full.replace(b"\n", b"\r\n", 1)
    yield b""
    yield b"\n"


def _check_accepted(lines: list[bytes], head: str | None, records: int) -> None:
    prev = "0" * 64
    for seq, raw in enumerate(lines, 1):
        obj = json.loads(raw)
        canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if canonical.encode("utf-8") + b"\n" != raw or obj["seq"] != seq or obj["prev"] != prev:
            raise OracleViolation(f"verify_trail accepted record {seq} that does not follow")
        prev = hashlib.sha256(raw[:-1]).hexdigest()
    if records != len(lines) or head != (prev if lines else None):
        raise OracleViolation("verify_trail's report is not the trail's count and head")


def _audit_prepare(context: Context) -> Run:
    path = scratch("audit-line") / "trail.jsonl"

    def run(data: bytes) -> None:
        lines = _lines(data)
        try:
            report = verify_trail(lines)
        except AuditChainError:
            report = None
        if report is not None:
            _check_accepted(lines, report.head, report.records)
            if report.head is not None and verify_trail(lines, head=report.head) != report:
                raise OracleViolation("an accepted trail does not verify with its own head")
        # FileSink cuts a last line without LF (torn) unless it is too long to be a record.
        tail = data[data.rfind(b"\n") + 1 :]
        if len(tail) > MAX_LINE + 1:
            tail = b""
        complete = data[: len(data) - len(tail)]
        try:
            expected: TrailReport | None = verify_trail(_lines(complete))
        except AuditChainError:
            expected = None
        if os.path.exists(path):
            os.unlink(path)
        with open(path, "wb") as f:
            f.write(data)
        try:
            sink = FileSink.open(path)
        except AuditChainError:
            if expected is not None:
                raise OracleViolation("FileSink refused a trail verify_trail accepts") from None
            return
        if expected is None or sink.report != expected:
            sink.close()
            raise OracleViolation("FileSink opened a trail verify_trail refuses")
        with sink:
            with open(path, "rb") as f:
                kept = f.read()
            if kept != complete or sink.torn != len(tail):
                raise OracleViolation("FileSink kept other bytes than the complete lines")
            try:
                trail = AuditTrail("node-a", [sink], clock=lambda: _T0)
            except AuditError:
                if sink.chain_node in (None, "node-a"):
                    raise
                return  # another node's chain: refused, as it must be
            trail.append(AuditEvent("start", detail={"torn": sink.torn}))
        with open(path, "rb") as f:
            after = f.read()
        try:
            verify_trail(_lines(after))
        except AuditChainError as e:
            raise OracleViolation(f"the trail is broken after an append: {e}") from e

    return run


# --- psc-mapping ------------------------------------------------------------------------------


def _result(mie: str, level: AssuranceLevel, test: bool) -> AuthResult:
    identity = Identity("810100099877", "RPPS", "10100099877", None, None, None, None, test)
    evidence: X509SignatureEvidence | DesfireSessionEvidence | WebAuthnAssertionEvidence
    if mie == "cpx":
        evidence = X509SignatureEvidence(_NONCE, _ORIGIN, bytes(64), b"\x01" * 256, (b"\x30",))
    elif mie == "badge":
        exchange = TranscriptExchange(b"\x90\x60\x00\x00\x00", b"\x91\x00")
        evidence = DesfireSessionEvidence(
            _NONCE,
            _ORIGIN,
            BadgeScheme.EV2,
            bytes(3),
            bytes(7),
            UidSource.GET_CARD_UID,
            bytes(176),
            None,
            (exchange,),
        )
    else:
        evidence = WebAuthnAssertionEvidence(
            _NONCE, _ORIGIN, "iam.example", b"\x01" * 16, bytes(37), b"{}", b"\x02" * 70
        )
    return AuthResult(True, None, None, identity, level, (), evidence)


_RESULTS = [
    _result(mie, level, test)
    for mie in ("cpx", "badge", "fido2")
    for level in (AssuranceLevel.SUBSTANTIAL, AssuranceLevel.HIGH)
    for test in (False, True)
]


def _psc_seeds(context: Context) -> Iterable[bytes]:
    default = PscMapping.default().to_json()
    yield json.dumps(default).encode()
    yield json.dumps({**default, "test_identities": "allow", "minimum": "high"}).encode()
    yield json.dumps({**default, "amr": {"cpx": {"high": ["sc", "pin", "mfa", "x:1"]}}}).encode()
    yield json.dumps({**default, "acr": {"substantial": "eidas1"}}).encode()
    yield json.dumps({**default, "extra": None}).encode()
    yield b'{"format":"mie-psc-claims/1","minimum":1e999}'
    yield b"[]"


def _psc_prepare(context: Context) -> Run:
    path = scratch("psc-mapping") / "psc-claims.json"

    def run(data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data)
        try:
            mapping = PscMapping.load(path)
        except MieError:
            return
        if PscMapping.from_json(json.loads(json.dumps(mapping.to_json()))) != mapping:
            raise OracleViolation("an accepted mapping does not read back through to_json")
        for result in _RESULTS:
            assert result.level is not None
            try:
                claims = psc_claims(result, mapping, auth_time=_T0)
            except PscRefusedError:
                continue
            amr = mapping.amr[mie_class(result)][result.level]
            if claims.acr != mapping.acr[result.level] or claims.amr != amr:
                raise OracleViolation("claims other than the mapping's row")
            if result.identity is not None and result.identity.test_card:
                if mapping.test_identities != "allow":
                    raise OracleViolation("a TEST identity got claims the mapping refuses")

    return run


SERVICE_TARGETS = [
    Target(
        "audit-line",
        "audit trails: verify_trail on fuzz lines, then FileSink.open (torn tail) and an append",
        _audit_seeds,
        _audit_prepare,
        max_len=40000,
    ),
    Target(
        "psc-mapping",
        "PSC claims mapping files (PscMapping.load, strict mie-psc-claims/1) and the claims given",
        _psc_seeds,
        _psc_prepare,
        max_len=8192,
    ),
]
