"""mie.audit: the record, the chain, the file and store sinks, the trail (issue 11 plan §4.3)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mie.audit import (
    EVENT_MEMBERS,
    MAX_LINE,
    ZERO_DIGEST,
    AuditChainError,
    AuditError,
    AuditEvent,
    AuditTrail,
    AuditUnavailableError,
    FileSink,
    StoreSink,
    encode_record,
    record_digest,
    short_digest,
    verify_trail,
)
from mie.core.errors import ErrorCode, InvalidPinError
from mie.evidence import X509SignatureEvidence
from mie.policy import AssuranceLevel
from mie.result import AuthenticatorInfo, AuthResult
from mie.store.errors import AuditConflictError, StoreError
from mie.trust.identity import Identity

T0 = dt.datetime(2026, 12, 2, 10, 15, 30, 123456, tzinfo=dt.UTC)
NONCE = bytes(range(32))
BINDING = hashlib.sha256(b"mie session\0keycloak\0s-1").digest()
ORIGIN = "https://iam.example"


class Ticks:
    """A clock that moves 10 ms per reading (so records are ordered and times differ)."""

    def __init__(self, start: dt.datetime = T0) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(milliseconds=10)
        return self.now


def event(i: int = 0, **changes: Any) -> AuditEvent:
    values: dict[str, Any] = {
        "event": "verify",
        "request": f"{i:016x}",
        "rp": ORIGIN,
        "client": "keycloak",
        "mie": {"kind": "cps3", "serial": "2800000001", "credential": None, "evidence": "x509"},
        "identity": {"id_nat": "810100099877", "test": False},
        "level": "substantial",
        "reasons": ("two factors", "é — non-ASCII kept as UTF-8"),
        "nonce": short_digest(NONCE + bytes([i % 256])),
        "session": short_digest(BINDING),
    }
    values.update(changes)
    return AuditEvent(**values)


def write_trail(path: Path, count: int) -> bytes:
    sink = FileSink.open(path)
    trail = AuditTrail("node-a", [sink], clock=Ticks())
    for i in range(count):
        trail.append(event(i))
    trail.close()
    return path.read_bytes()


@pytest.fixture(scope="module")
def fifty(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    data = write_trail(tmp_path_factory.mktemp("audit") / "trail.jsonl", 50)
    return data.splitlines(keepends=True)


def chain_error(lines: list[bytes], head: str | None = None) -> AuditChainError:
    with pytest.raises(AuditChainError) as raised:
        verify_trail(lines, head=head)
    assert raised.value.code is ErrorCode.INTEGRITY_ERROR
    return raised.value


def head_of(lines: list[bytes]) -> str:
    return hashlib.sha256(lines[-1].rstrip(b"\n")).hexdigest()


# --- the record -------------------------------------------------------------------------------


def test_encoding_is_canonical_and_deterministic() -> None:
    fields = event(1).fields()
    line = encode_record(fields, seq=1, prev=ZERO_DIGEST, time=T0, node="node-a")
    assert line == encode_record(dict(fields), seq=1, prev=ZERO_DIGEST, time=T0, node="node-a")
    obj = json.loads(line)
    assert list(obj) == sorted(obj) and set(obj) == {
        *EVENT_MEMBERS,
        "v",
        "seq",
        "prev",
        "time",
        "node",
    }
    assert obj["time"] == "2026-12-02T10:15:30.123Z" and obj["v"] == 1 and obj["seq"] == 1
    assert "é" in line and ", " not in line and ": " not in line
    assert record_digest(line) == hashlib.sha256(line.encode()).hexdigest()
    paris = dt.timezone(dt.timedelta(hours=1))
    assert line == encode_record(
        fields, seq=1, prev=ZERO_DIGEST, time=T0.astimezone(paris), node="node-a"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.pop("detail"), "missing or unknown"),
        (lambda f: f.update(pin="1234"), "missing or unknown"),
        (lambda f: f.update(event="login"), "event"),
        (lambda f: f.update(detail={"ratio": 0.5}), "float is not recorded"),
        (lambda f: f.update(detail={"blob": b"\x00"}), "bytes is not recorded"),
        (lambda f: f.update(detail={1: "x"}), "key is not a string"),
        (lambda f: f.update(detail={"n": 10**30}), "too large"),
        (lambda f: f.update(detail={"x": "\udc80"}), "not recordable"),
        (lambda f: f.update(detail={"x": "a" * MAX_LINE}), "more than"),
    ],
)
def test_a_record_that_cannot_be_encoded_is_refused(
    change: Callable[[dict[str, Any]], Any], message: str
) -> None:
    fields = event().fields()
    change(fields)
    with pytest.raises(AuditError, match=message):
        encode_record(fields, seq=1, prev=ZERO_DIGEST, time=T0, node="node-a")


def test_seq_prev_node_and_time_are_checked_at_encoding() -> None:
    fields = event().fields()
    for kwargs in ({"seq": 0}, {"prev": "0" * 63}, {"node": "node a"}):
        args: dict[str, Any] = {"seq": 1, "prev": ZERO_DIGEST, "time": T0, "node": "n"} | kwargs
        with pytest.raises(AuditError):
            encode_record(fields, **args)
    with pytest.raises(ValueError, match="time zone"):
        encode_record(fields, seq=1, prev=ZERO_DIGEST, time=T0.replace(tzinfo=None), node="n")


def test_an_event_refuses_a_full_nonce_or_session_and_bad_ids() -> None:
    with pytest.raises(AuditError, match="never the value"):
        event(nonce=NONCE.hex())
    with pytest.raises(AuditError, match="never the value"):
        event(session=BINDING.hex())
    with pytest.raises(AuditError, match="request id"):
        event(request="a b")
    with pytest.raises(AuditError, match="not one of"):
        event(event="logout")


def test_an_event_from_a_result_keeps_no_secret_and_no_name() -> None:
    evidence = X509SignatureEvidence(NONCE, ORIGIN, bytes(64), b"\x01" * 256, (b"\x30\x00",))
    identity = Identity("810100099877", "RPPS", "10100099877", "Marie", "Curie", "10", "CPS", True)
    info = AuthenticatorInfo("cps3", "2800000001", None)
    ok = AuthResult(True, None, info, identity, AssuranceLevel.SUBSTANTIAL, ("why",), evidence)
    record = AuditEvent.from_result(
        "verify", ok, rp=ORIGIN, client="keycloak", nonce=NONCE, binding=BINDING, request_id="r1"
    )
    line = encode_record(record.fields(), seq=1, prev=ZERO_DIGEST, time=T0, node="n")
    obj = json.loads(line)
    assert obj["identity"] == {"id_nat": "810100099877", "test": True}
    assert obj["mie"] == {
        "kind": "cps3",
        "serial": "2800000001",
        "credential": None,
        "evidence": "x509-signature",
    }
    assert obj["nonce"] == hashlib.sha256(NONCE).hexdigest()[:16]
    assert obj["session"] == hashlib.sha256(BINDING).hexdigest()[:16]
    for secret in (NONCE.hex(), BINDING.hex(), "Marie", "Curie", (b"\x01" * 256).hex()):
        assert secret not in line
    failed = AuthResult.failure(InvalidPinError(2), info)
    record = AuditEvent.from_result(
        "verify", failed, rp=ORIGIN, client=None, nonce=None, binding=None, request_id=None
    )
    obj = json.loads(encode_record(record.fields(), seq=2, prev=ZERO_DIGEST, time=T0, node="n"))
    assert obj["error"] == {
        "code": "invalid_pin",
        "message": "Invalid PIN, 2 tries left",
        "tries_left": 2,
    }
    assert obj["nonce"] is None and obj["identity"] is None and obj["level"] is None


# --- the chain --------------------------------------------------------------------------------


def test_a_fifty_record_trail_verifies(fifty: list[bytes]) -> None:
    report = verify_trail(fifty)
    assert report.records == 50 and report.head == head_of(fifty) and report.node == "node-a"
    assert verify_trail(fifty, head=head_of(fifty)).records == 50
    assert verify_trail([]).records == 0 and verify_trail([]).head is None
    assert [json.loads(line)["seq"] for line in fifty] == list(range(1, 51))
    assert json.loads(fifty[0])["prev"] == ZERO_DIGEST
    assert json.loads(fifty[1])["prev"] == hashlib.sha256(fifty[0][:-1]).hexdigest()


K = 25  # the record edited: a middle one (record 26 checks its digest)


@pytest.mark.parametrize("sample", range(40))
def test_one_byte_changed(fifty: list[bytes], sample: int) -> None:
    original = fifty[K - 1]
    offset = sample * len(original) // 40
    for flip in (0x01, 0x20, 0x80):
        edited = bytearray(original)
        edited[offset] ^= flip
        lines = [*fifty[: K - 1], *bytes(edited).splitlines(keepends=True), *fifty[K:]]
        if b"\n" not in bytes(edited):
            # The newline itself changed: record K runs into record K+1.
            lines = [*fifty[: K - 1], bytes(edited) + fifty[K], *fifty[K + 1 :]]
        error = chain_error(lines)
        assert error.seq in (K, K + 1), (offset, flip, str(error))
        assert error.line in (K, K + 1)
        assert f"record {error.seq} (line {error.line})" in str(error)


def test_a_removed_record(fifty: list[bytes]) -> None:
    error = chain_error([*fifty[:9], *fifty[10:]])
    assert (error.seq, error.line) == (10, 10) and "seq is 11, not 10" in error.problem


def test_two_swapped_records(fifty: list[bytes]) -> None:
    error = chain_error([*fifty[:9], fifty[10], fifty[9], *fifty[11:]])
    assert error.seq == 10 and "seq is 11, not 10" in error.problem


def test_a_duplicated_record(fifty: list[bytes]) -> None:
    error = chain_error([*fifty[:10], fifty[9], *fifty[10:]])
    assert (error.seq, error.line) == (11, 11) and "seq is 10, not 11" in error.problem


def test_a_renumbered_record_breaks_prev(fifty: list[bytes]) -> None:
    # Record 10 removed and every later one renumbered: record 11 (now 10) names 10's digest.
    renumbered = []
    for line in fifty[10:]:
        obj = json.loads(line)
        obj["seq"] -= 1
        renumbered.append(
            json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
            + b"\n"
        )
    error = chain_error([*fifty[:9], *renumbered])
    assert error.seq == 10 and "prev is not the SHA-256 of record 9" in error.problem


def test_a_record_truncated_mid_line(fifty: list[bytes]) -> None:
    error = chain_error([*fifty[:20], fifty[20][:40]])
    assert error.seq == 21 and "torn" in error.problem


def test_a_crlf_line(fifty: list[bytes]) -> None:
    error = chain_error([*fifty[:5], fifty[5][:-1] + b"\r\n", *fifty[6:]])
    assert error.seq == 6 and "CR LF" in error.problem


def test_an_extra_member_even_re_chained(fifty: list[bytes]) -> None:
    obj = json.loads(fifty[0])
    obj["pin"] = "1234"
    line = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    error = chain_error([line + b"\n"])
    assert error.seq == 1 and "unknown member 'pin'" in error.problem


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda o: o.pop("rp"), "no rp member"),
        (lambda o: o.update(v=2), "v is not 1"),
        (lambda o: o.update(seq="1"), "seq is not an integer"),
        (lambda o: o.update(time="2026-12-02T10:15:30Z"), "time is not"),
        (lambda o: o.update(time="2026-13-02T10:15:30.000Z"), "not a date"),
        (lambda o: o.update(node="node b"), "node is not"),
        (lambda o: o.update(event="login"), "event 'login' is not known"),
    ],
)
def test_a_first_record_of_another_shape(
    fifty: list[bytes], edit: Callable[[dict[str, Any]], Any], problem: str
) -> None:
    obj = json.loads(fifty[0])
    edit(obj)
    line = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert problem in chain_error([line + b"\n"]).problem


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b"\n", "empty"),
        (b"[]\n", "not a JSON object"),
        (b'{"a":1,"a":1}\n', "duplicate key"),
        (b"\xff\n", "not strict JSON"),
        (b"x" * (MAX_LINE + 1) + b"\n", "longer than"),
        (b"x" * (MAX_LINE + 2), "longer than"),
    ],
)
def test_lines_that_are_not_records(line: bytes, problem: str) -> None:
    assert problem in chain_error([line]).problem


def test_a_record_re_encoded_with_spaces_or_escapes(fifty: list[bytes]) -> None:
    obj = json.loads(fifty[0])
    spaced = json.dumps(obj, sort_keys=True).encode() + b"\n"
    escaped = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    for line in (spaced, escaped):
        assert "canonical" in chain_error([line, *fifty[1:]]).problem


def test_another_nodes_record_or_a_clock_going_back(fifty: list[bytes], tmp_path: Path) -> None:
    second = json.loads(fifty[1])
    second["node"] = "node-b"
    line = json.dumps(second, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert "another node" in chain_error([fifty[0], line + b"\n"]).problem
    steps = iter([T0, T0 - dt.timedelta(milliseconds=900), T0 - dt.timedelta(seconds=3)])
    lines, prev = [], ZERO_DIGEST
    for seq, when in enumerate(steps, 1):
        text = encode_record(event().fields(), seq=seq, prev=prev, time=when, node="n")
        lines.append(text.encode() + b"\n")
        prev = record_digest(text)
    assert verify_trail(lines[:2]).records == 2  # 0.9 s back: a clock step, tolerated
    error = chain_error(lines)
    assert error.seq == 3 and "time goes back" in error.problem


def test_head_catches_a_cut_tail_or_an_edited_last_record(fifty: list[bytes]) -> None:
    head = head_of(fifty)
    assert verify_trail(fifty[:45]).records == 45  # the chain alone cannot tell
    error = chain_error(fifty[:45], head)
    assert (error.seq, error.line) == (45, 45) and "not the expected head" in error.problem
    last = json.loads(fifty[-1])
    last["level"] = "high"
    edited = json.dumps(last, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert verify_trail([*fifty[:-1], edited + b"\n"]).records == 50
    assert chain_error([*fifty[:-1], edited + b"\n"], head).seq == 50
    assert "empty" in chain_error([], head).problem
    with pytest.raises(ValueError, match="64"):
        verify_trail(fifty, head="abc")


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_edits_never_verify(fifty: list[bytes], data: st.DataObject) -> None:
    original = b"".join(fifty)
    head = head_of(fifty)
    kind = data.draw(st.sampled_from(["replace", "delete", "insert", "lines"]))
    edited = bytearray(original)
    if kind == "lines":
        lines = list(fifty)
        i = data.draw(st.integers(0, len(lines) - 1))
        j = data.draw(st.integers(0, len(lines) - 1))
        op = data.draw(st.sampled_from(["remove", "swap", "duplicate"]))
        if op == "remove":
            del lines[i]
        elif op == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        else:
            lines.insert(j, lines[i])
        edited = bytearray(b"".join(lines))
    else:
        at = data.draw(st.integers(0, len(original) - 1))
        size = data.draw(st.integers(1, 8))
        chunk = data.draw(st.binary(min_size=size, max_size=size))
        if kind == "replace":
            edited[at : at + size] = chunk
        elif kind == "delete":
            del edited[at : at + size]
        else:
            edited[at:at] = chunk
    if bytes(edited) == original:
        return
    with pytest.raises(AuditChainError):
        verify_trail(bytes(edited).splitlines(keepends=True), head=head)


# --- the file sink ------------------------------------------------------------------------------


def test_a_new_file_is_private_and_a_second_opener_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with FileSink.open(path) as sink:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and sink.head() is None
        with pytest.raises(AuditError, match="held by another process") as raised:
            FileSink.open(path)
        assert raised.value.code is ErrorCode.USAGE
    FileSink.open(path).close()  # released by close


def test_a_second_process_is_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "audit.jsonl"
    code = (
        "import sys\nfrom mie.audit import FileSink\n"
        "try:\n FileSink.open(sys.argv[1])\nexcept Exception as e:\n print(e)"
    )
    with FileSink.open(path):
        out = subprocess.run(
            [sys.executable, "-c", code, str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    assert "held by another process" in out.stdout


def test_a_torn_tail_is_cut_reported_and_the_chain_continues(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit.jsonl"
    lines = write_trail(path, 5).splitlines(keepends=True)
    with path.open("ab") as f:
        f.write(b'{"client":"keycloak","det')
    with caplog.at_level(logging.WARNING, logger="mie.audit"):
        sink = FileSink.open(path)
    assert sink.torn == 25 and "torn line of 25 bytes" in caplog.text
    assert path.read_bytes() == b"".join(lines) and sink.head() == (5, head_of(lines))
    trail = AuditTrail("node-a", [sink], clock=Ticks(T0 + dt.timedelta(seconds=5)))
    trail.append(event(6))
    stamp = trail.append(AuditEvent("start", detail={"version": "1"}))
    assert stamp.seq == 7 and stamp.node == "node-a"
    trail.append(AuditEvent("start"))
    trail.close()
    records = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert records[5]["detail"] is None  # not a start record
    assert records[6]["detail"] == {"version": "1", "torn_bytes": 25}
    assert records[7]["detail"] is None  # noted once
    with FileSink.open(path) as again:
        reopened = again.head()
        assert again.torn == 0 and reopened is not None and reopened[0] == 8
    assert verify_trail(path.read_bytes().splitlines(keepends=True)).records == 8


def test_a_broken_file_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = write_trail(path, 5).splitlines(keepends=True)
    path.write_bytes(b"".join([*lines[:2], *lines[3:]]))
    with pytest.raises(
        AuditChainError, match=r"not a valid audit trail: record 3 \(line 3\)"
    ) as raised:
        FileSink.open(path)
    assert raised.value.seq == 3
    FileSink.open(tmp_path / "other.jsonl").close()  # the refused one left no lock behind
    path.write_bytes(b"".join(lines))
    FileSink.open(path).close()


def test_a_file_that_is_not_regular_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(AuditError, match="not a regular file"):
        FileSink.open(fifo)
    with pytest.raises(AuditError, match="Cannot open"):
        FileSink.open(tmp_path)
    with pytest.raises(AuditError, match="Cannot open"):
        FileSink.open(tmp_path / "missing" / "audit.jsonl")


def test_a_failed_fsync_cuts_the_record_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    sink = FileSink.open(path)
    trail = AuditTrail("node-a", [sink], clock=Ticks())
    trail.append(event(1))
    before = path.read_bytes()
    real = os.fsync
    calls = {"n": 0}

    def failing(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(5, "Input/output error")
        real(fd)

    monkeypatch.setattr("mie.audit.os.fsync", failing)
    with pytest.raises(AuditUnavailableError, match="Input/output error") as raised:
        trail.append(event(2))
    assert raised.value.code is ErrorCode.STORE_UNAVAILABLE and isinstance(raised.value, StoreError)
    kept = sink.head()
    assert path.read_bytes() == before and kept is not None and kept[0] == 1
    monkeypatch.undo()
    assert trail.append(event(3)).seq == 2
    trail.close()
    assert verify_trail(path.read_bytes().splitlines(keepends=True)).records == 2


def test_a_closed_sink_refuses(tmp_path: Path) -> None:
    sink = FileSink.open(tmp_path / "a.jsonl")
    sink.close()
    sink.close()
    with pytest.raises(AuditError, match="closed"):
        sink.append(1, "{}", ZERO_DIGEST)


def test_a_sink_closed_under_a_trail_is_unavailable_not_a_usage_error(tmp_path: Path) -> None:
    sink = FileSink.open(tmp_path / "a.jsonl")
    trail = AuditTrail("node-a", [sink], clock=Ticks())
    trail.append(event(1))
    sink.close()  # what a failed cut-back does
    with pytest.raises(AuditUnavailableError, match="closed") as raised:
        trail.append(event(2))
    assert raised.value.code is ErrorCode.STORE_UNAVAILABLE


def test_threads_append_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail("node-a", [FileSink.open(path)])
    barrier = threading.Barrier(8)

    def work(n: int) -> None:
        barrier.wait()
        for i in range(40):
            trail.append(event(n * 100 + i))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    trail.close()
    assert verify_trail(path.read_bytes().splitlines(keepends=True)).records == 320


def test_a_clock_going_back_is_held_at_the_last_time(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    times = iter([T0, T0 - dt.timedelta(seconds=30), T0 + dt.timedelta(seconds=1)])
    trail = AuditTrail("node-a", [FileSink.open(path)], clock=lambda: next(times))
    for i in range(3):
        trail.append(event(i))
    trail.close()
    lines = path.read_bytes().splitlines(keepends=True)
    assert [json.loads(line)["time"] for line in lines][1] == "2026-12-02T10:15:30.123Z"
    assert verify_trail(lines).records == 3


# --- the store sink and the trail -------------------------------------------------------------


class AuditTable:
    """The store's audit API (plan §2.1) over a dict, able to fail: the unit tests' stand-in for
    a store (tests/store/test_audit_store.py tests the real ones)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], tuple[str, str]] = {}
        self.down = False
        self.lose_reply = False

    def audit_head(self, node: str) -> tuple[int, str] | None:
        if self.down:
            raise StoreError("The store is down")
        seqs = [seq for (n, seq) in self.rows if n == node]
        return (max(seqs), self.rows[(node, max(seqs))][1]) if seqs else None

    def append_audit(self, node: str, seq: int, line: str, digest: str) -> None:
        if self.down:
            raise StoreError("The store is down")
        if (node, seq) in self.rows:
            raise AuditConflictError(f"Audit record {seq} of node {node} is taken")
        self.rows[(node, seq)] = (line, digest)
        if self.lose_reply:
            raise StoreError("The reply was lost")

    def audit_lines(self, node: str, *, after: int = 0, limit: int = 1000) -> tuple[str, ...]:
        seqs = sorted(seq for (n, seq) in self.rows if n == node and seq > after)[:limit]
        return tuple(self.rows[(node, seq)][0] for seq in seqs)

    def lines(self, node: str) -> list[bytes]:
        return [line.encode() + b"\n" for line in self.audit_lines(node)]


def test_a_failing_store_sink_leaves_the_file_advanced_and_raises(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    table = AuditTable()
    trail = AuditTrail("node-a", [FileSink.open(path), StoreSink(table, "node-a")], clock=Ticks())
    first = trail.append(event(1))
    assert [h[0] for h in first.heads] == [1, 1]
    table.down = True
    with pytest.raises(AuditUnavailableError, match="StoreSink") as raised:
        trail.append(event(2))
    assert raised.value.code is ErrorCode.STORE_UNAVAILABLE
    assert verify_trail(path.read_bytes().splitlines(keepends=True)).records == 2
    assert len(table.rows) == 1
    table.down = False
    third = trail.append(event(3))
    assert [h[0] for h in third.heads] == [3, 2]  # each sink its own chain
    trail.close()
    file_report = verify_trail(path.read_bytes().splitlines(keepends=True), head=third.heads[0][1])
    stored = table.audit_head("node-a")
    assert stored is not None
    store_report = verify_trail(table.lines("node-a"), head=stored[1])
    assert (file_report.records, store_report.records) == (3, 2)


def test_a_lost_store_reply_is_followed_by_a_re_read_head() -> None:
    table = AuditTable()
    trail = AuditTrail("node-a", [StoreSink(table, "node-a")], clock=Ticks())
    trail.append(event(1))
    table.lose_reply = True
    with pytest.raises(AuditUnavailableError, match="reply was lost"):
        trail.append(event(2))
    table.lose_reply = False
    assert trail.append(event(3)).seq == 3  # record 2 is in the store: the chain goes on from it
    assert verify_trail(table.lines("node-a")).records == 3


def test_a_second_writer_of_a_node_chain_gets_a_conflict_never_a_fork() -> None:
    table = AuditTable()
    one = AuditTrail("node-a", [StoreSink(table, "node-a")], clock=Ticks())
    two = AuditTrail(
        "node-a", [StoreSink(table, "node-a")], clock=Ticks(T0 + dt.timedelta(seconds=1))
    )
    one.append(event(1))
    with pytest.raises(AuditUnavailableError, match="taken"):
        two.append(event(2))
    assert two.append(event(3)).seq == 2
    assert verify_trail(table.lines("node-a")).records == 2


def test_a_trail_needs_a_sink_a_node_and_a_readable_head() -> None:
    table = AuditTable()
    with pytest.raises(AuditError, match="at least one sink"):
        AuditTrail("node-a", [])
    with pytest.raises(AuditError, match="node"):
        AuditTrail("node a", [StoreSink(table, "node-a")])
    with pytest.raises(AuditError, match="node"):
        StoreSink(table, "")
    table.down = True
    with pytest.raises(AuditUnavailableError, match="down"):
        AuditTrail("node-a", [StoreSink(table, "node-a")])


def test_a_trail_refuses_a_sink_holding_another_nodes_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_trail(path, 3)
    with FileSink.open(path) as sink:
        assert sink.chain_node == "node-a"
        with pytest.raises(AuditError, match="chain of node node-a, not node-b"):
            AuditTrail("node-b", [sink])
    with pytest.raises(AuditError, match="chain of node node-a, not node-b"):
        AuditTrail("node-b", [StoreSink(AuditTable(), "node-a")])


def test_times_never_go_back_from_one_run_to_the_next(tmp_path: Path) -> None:
    # The file's last record is at T0 + 30 ms; the next run's clock says an hour before.
    path = tmp_path / "audit.jsonl"
    write_trail(path, 3)
    table = AuditTable()
    AuditTrail("node-a", [StoreSink(table, "node-a")], clock=Ticks()).append(event(1))
    earlier = T0 - dt.timedelta(hours=1)
    for sink in (FileSink.open(path), StoreSink(table, "node-a")):
        trail = AuditTrail("node-a", [sink], clock=lambda: earlier)
        trail.append(event(9))
        trail.close()
    lines = path.read_bytes().splitlines(keepends=True)
    assert json.loads(lines[-1])["time"] == json.loads(lines[-2])["time"]
    assert verify_trail(lines).records == 4
    assert verify_trail(table.lines("node-a")).records == 2


# --- the store sink on the real stores ------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def real_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    from mie.store.memory import MemoryStore
    from mie.store.sqlite import SqliteStore

    store = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "mie.db")
    yield store
    store.close()


def store_lines(store: Any, node: str) -> list[bytes]:
    return [line.encode() + b"\n" for line in store.audit_lines(node)]


def test_a_store_sink_on_a_real_store(real_store: Any, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(
        "node-a", [FileSink.open(path), StoreSink(real_store, "node-a")], clock=Ticks()
    )
    for i in range(20):
        trail.append(event(i))
    trail.close()
    file_lines = path.read_bytes().splitlines(keepends=True)
    assert store_lines(real_store, "node-a") == file_lines  # one chain each, the same records
    head = real_store.audit_head("node-a")
    assert head == (20, head_of(file_lines))
    assert verify_trail(store_lines(real_store, "node-a"), head=head[1]).records == 20
    # A restart continues the store's chain where it stands.
    again = AuditTrail("node-a", [StoreSink(real_store, "node-a")], clock=Ticks())
    assert again.append(event(99)).seq == 21
    assert verify_trail(store_lines(real_store, "node-a")).records == 21
    assert real_store.audit_lines("node-b") == ()


def test_two_writers_of_one_node_chain_on_a_real_store(real_store: Any) -> None:
    one = AuditTrail("node-a", [StoreSink(real_store, "node-a")], clock=Ticks())
    two = AuditTrail("node-a", [StoreSink(real_store, "node-a")], clock=Ticks())
    one.append(event(1))
    with pytest.raises(AuditUnavailableError) as raised:
        two.append(event(2))
    assert isinstance(raised.value.__cause__, AuditConflictError) or "taken" in str(raised.value)
    assert two.append(event(3)).seq == 2  # re-read head: one chain, never a fork
    with pytest.raises(AuditUnavailableError):
        one.append(event(4))  # its head is behind now: refused, then re-read
    assert one.append(event(5)).seq == 3
    assert verify_trail(store_lines(real_store, "node-a")).records == 3
