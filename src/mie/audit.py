"""The audit trail of ``mie serve``: one hash chain of records per sink and node (issue 11
plan §4, D12).

A record is one line of canonical JSON (keys sorted, ``separators=(",", ":")``, UTF-8 unescaped,
at most :data:`MAX_LINE` bytes) with exactly the members of :data:`RECORD_MEMBERS`::

    {"client":"keycloak","detail":null,"error":null,"event":"verify",
     "identity":{"id_nat":"810100099877","test":false},"level":"substantial",
     "mie":{"credential":null,"evidence":"x509-signature","kind":"cps3","serial":"2800000001"},
     "node":"node-a","nonce":"5f1c0e2a9b3d4c6e","prev":"<64 hex>","reasons":[...],
     "request":"0123456789abcdef","rp":"https://iam.example","seq":17,
     "session":"a1b2c3d4e5f60718","time":"2026-12-02T10:15:30.123Z","v":1}

``seq`` counts the sink's records from 1; ``prev`` is the SHA-256 (hex) of the previous line's
UTF-8 bytes (without its newline), 64 zeros for record 1. Editing, removing, inserting or
reordering a record breaks the next record's ``prev`` or ``seq``; :func:`verify_trail` names the
first record that does not follow. A record never holds a PIN, a key, a full nonce (only the
first 8 bytes of its SHA-256), an API key, a session id (likewise hashed), a certificate or a
name: the idNat is the only personal datum.

**Limit.** The chain proves order and integrity up to its last record. An edit of the *last*
record, or records cut from the end, leave a shorter valid chain: only an anchor kept elsewhere
catches them (``head=`` of :func:`verify_trail`: the store sink's head, the head the ``stop``
record and ``GET /v1/health`` show).

Sinks: :class:`FileSink` (JSON lines, ``O_APPEND``, ``flock``, ``fsync`` per record, as
:class:`mie.desfire.journal.Journal`) and :class:`StoreSink` (the store's ``mie_audit`` table).
:class:`AuditTrail` writes each record to every sink, each with its own ``seq`` and ``prev``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

from mie.core import strictjson
from mie.core.errors import ErrorCode, JsonFormatError, MieError
from mie.core.files import fsync_directory, write_all
from mie.store.errors import AuditConflictError, StoreError

if TYPE_CHECKING:
    from mie.result import AuthResult

logger = logging.getLogger(__name__)

VERSION = 1
MAX_LINE = 16 * 1024
"""The longest record, in bytes of UTF-8, without its newline."""
ZERO_DIGEST = "0" * 64
"""The ``prev`` of record 1."""
EVENTS = (
    "start",
    "verify",
    "relay",
    "fido.register",
    "fido.authenticate",
    "revoke",
    "temporary",
    "stop",
)
"""What a record is about: the node started (detail: version, configuration digest, a torn
tail cut), a verification (``verify``, ``relay``, the FIDO2 ceremonies), a lifecycle change
(``revoke``, ``temporary``), the node stopped (detail: its heads)."""
EVENT_MEMBERS = (
    "event",
    "request",
    "rp",
    "client",
    "mie",
    "identity",
    "level",
    "reasons",
    "error",
    "nonce",
    "session",
    "detail",
)
"""The members an event gives; :func:`encode_record` adds ``v``, ``seq``, ``prev``, ``time`` and
``node``."""
RECORD_MEMBERS = frozenset({"v", "seq", "prev", "time", "node", *EVENT_MEMBERS})
CLOCK_STEP = dt.timedelta(seconds=1)
"""How far back a record's time may go from the previous one's (a clock step)."""
_NODE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_SHORT = re.compile(r"[0-9a-f]{16}")
_REQUEST = re.compile(r"[A-Za-z0-9._~-]{1,64}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,18})")
_MAX_DEPTH = 8
_SHOWN = 40

Clock = Callable[[], dt.datetime]


class AuditError(MieError):
    """The audit trail cannot be used as asked: a file that cannot be opened or is not a
    regular file, one another process holds, a closed sink, an event that cannot be recorded
    (an unknown event, a value that is not JSON, a record over :data:`MAX_LINE`)."""

    code = ErrorCode.USAGE


class AuditUnavailableError(StoreError):
    """A sink could not record an event (a write, an ``fsync`` or the store failed): the event
    is not recorded there, the sink's head did not move, and the caller must not report the
    operation as done (the service answers 503 ``store_unavailable``)."""


class AuditChainError(MieError):
    """A trail whose chain is broken at one record.

    :param message: one line naming the record, the line and the problem.
    :param line: the line (1-based) of the first bad record.
    :param seq: the record's number in the chain (the one it should have).
    :param problem: what is wrong with it.
    """

    code = ErrorCode.INTEGRITY_ERROR

    def __init__(self, message: str, *, line: int, seq: int, problem: str) -> None:
        self.line = line
        self.seq = seq
        self.problem = problem
        super().__init__(message)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def short_digest(data: bytes) -> str:
    """:return: the first 8 bytes of ``SHA-256(data)``, hex: what a record keeps of a nonce or
    a session binding (enough to match two records, not to recover or replay the value)."""
    return hashlib.sha256(data).hexdigest()[:16]


def record_digest(line: str) -> str:
    """:return: the SHA-256 (hex) of a record's line (its UTF-8 bytes, without the newline):
    the next record's ``prev``."""
    return hashlib.sha256(line.encode("utf-8")).hexdigest()


def format_time(when: dt.datetime) -> str:
    """:return: ``when`` in UTC as ``YYYY-MM-DDTHH:MM:SS.mmmZ``.

    :raises ValueError: ``when`` has no time zone.
    """
    if when.tzinfo is None:
        raise ValueError("An audit time has a time zone")
    at = when.astimezone(dt.UTC)
    return (
        f"{at.year:04d}-{at.month:02d}-{at.day:02d}T{at.hour:02d}:{at.minute:02d}:"
        f"{at.second:02d}.{at.microsecond // 1000:03d}Z"
    )


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def _canonical(obj: object) -> str:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _check_value(value: object, where: str, depth: int = 0) -> None:
    """A record holds strings, integers, booleans, null, lists and objects only (a float has
    no single canonical text)."""
    if depth > _MAX_DEPTH:
        raise AuditError(f"Audit {where}: nested deeper than {_MAX_DEPTH}")
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if not _INT.fullmatch(str(value)):
            raise AuditError(f"Audit {where}: the integer is too large")
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_value(item, where, depth + 1)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise AuditError(f"Audit {where}: a key is not a string")
            _check_value(item, f"{where}.{key}", depth + 1)
        return
    raise AuditError(f"Audit {where}: {type(value).__name__} is not recorded")


def encode_record(
    fields: Mapping[str, Any], *, seq: int, prev: str, time: dt.datetime, node: str
) -> str:
    """Encode one record.

    :param fields: exactly the members of :data:`EVENT_MEMBERS` (:meth:`AuditEvent.fields`).
    :param seq: its number in the sink's chain (from 1).
    :param prev: the digest of the previous record's line (:data:`ZERO_DIGEST` for record 1).
    :param time: when (time-zone aware; kept to the millisecond).
    :param node: the node writing it (1 to 64 of ``A-Z a-z 0-9 . _ : -``).
    :return: the line, without its newline.
    :raises AuditError: a member missing or unknown, an unknown event, a value that is not
        recorded, lone surrogates, or a line over :data:`MAX_LINE` bytes.
    """
    keys = set(fields)
    if keys != set(EVENT_MEMBERS):
        wrong = sorted(keys ^ set(EVENT_MEMBERS))
        raise AuditError(f"Audit record: members {wrong} missing or unknown")
    if fields["event"] not in EVENTS:
        raise AuditError(f"Audit record: event {_shown(fields['event'])} is not one of {EVENTS}")
    if type(seq) is not int or seq < 1 or not _DIGEST.fullmatch(prev):
        raise AuditError("Audit record: seq is a positive integer, prev 64 hex digits")
    if not _NODE.fullmatch(node):
        raise AuditError("Audit record: the node is 1 to 64 of A-Z a-z 0-9 . _ : -")
    for key in EVENT_MEMBERS:
        _check_value(fields[key], key)
    record = {**fields, "v": VERSION, "seq": seq, "prev": prev, "time": format_time(time)}
    record["node"] = node
    try:
        line = _canonical(record)
        size = len(line.encode("utf-8"))
    except (TypeError, ValueError) as e:  # UnicodeEncodeError is a ValueError
        raise AuditError(f"Audit record: not recordable as JSON ({e})") from None
    if size > MAX_LINE:
        raise AuditError(f"Audit record: {size} bytes, more than {MAX_LINE}")
    return line


@dataclass(frozen=True)
class AuditEvent:
    """What one record says, before its place in a chain is known.

    :param event: one of :data:`EVENTS`.
    :param request: the request id (1 to 64 of ``A-Z a-z 0-9 . _ ~ -``), or ``None``.
    :param rp: the relying party (the service's origin), or ``None``.
    :param client: the calling client's name, or ``None``.
    :param mie: ``{"kind", "serial", "credential", "evidence"}``, or ``None``.
    :param identity: ``{"id_nat", "test"}``, or ``None``.
    :param level: the level granted, or ``None``.
    :param reasons: why.
    :param error: the contract error object (``tries_left`` inside it), or ``None``.
    :param nonce: :func:`short_digest` of the nonce, or ``None``.
    :param session: :func:`short_digest` of the session binding, or ``None``.
    :param detail: anything else the event needs (strings, integers, booleans, lists,
        objects), or ``None``.
    :raises AuditError: an unknown event, or a request, nonce or session of another form.
    """

    event: str
    request: str | None = None
    rp: str | None = None
    client: str | None = None
    mie: Mapping[str, Any] | None = None
    identity: Mapping[str, Any] | None = None
    level: str | None = None
    reasons: tuple[str, ...] = ()
    error: Mapping[str, Any] | None = None
    nonce: str | None = None
    session: str | None = None
    detail: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise AuditError(f"Audit event {_shown(self.event)} is not one of {EVENTS}")
        if self.request is not None and not _REQUEST.fullmatch(self.request):
            raise AuditError("Audit request id: 1 to 64 of A-Z a-z 0-9 . _ ~ -")
        for name in ("nonce", "session"):
            value = getattr(self, name)
            if value is not None and not _SHORT.fullmatch(value):
                raise AuditError(f"Audit {name}: 16 hex digits (short_digest), never the value")
        object.__setattr__(self, "reasons", tuple(self.reasons))

    def fields(self) -> dict[str, Any]:
        """:return: the members of :data:`EVENT_MEMBERS` (input of :func:`encode_record`)."""
        obj = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in ("mie", "identity", "error", "detail"):
            if obj[name] is not None:
                obj[name] = dict(obj[name])
        obj["reasons"] = list(self.reasons)
        return obj

    @classmethod
    def from_result(
        cls,
        event: str,
        result: AuthResult,
        *,
        rp: str | None,
        client: str | None,
        nonce: bytes | None,
        binding: bytes | None,
        request_id: str | None,
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        """The record of a verification's outcome.

        :param event: ``verify``, ``relay``, ``fido.register`` or ``fido.authenticate``.
        :param result: the outcome (valid or not).
        :param rp: the service's origin.
        :param client: the calling client.
        :param nonce: the nonce used (only its :func:`short_digest` is kept).
        :param binding: the session binding (only its :func:`short_digest` is kept).
        :param request_id: the request id.
        :param detail: anything else.
        :return: the event.
        """
        identity = None
        if result.identity is not None:
            identity = {"id_nat": result.identity.id_nat, "test": result.identity.test_card}
        return cls(
            event,
            request=request_id,
            rp=rp,
            client=client,
            mie=_mie_of(result),
            identity=identity,
            level=result.level.value if result.level is not None else None,
            reasons=result.reasons,
            error=result.error.to_json() if result.error is not None else None,
            nonce=short_digest(nonce) if nonce is not None else None,
            session=short_digest(binding) if binding is not None else None,
            detail=detail,
        )


def _mie_of(result: AuthResult) -> dict[str, Any] | None:
    info, evidence = result.authenticator, result.evidence
    if info is None and evidence is None:
        return None
    credential = None
    uid = getattr(evidence, "uid", None)
    credential_id = getattr(evidence, "credential_id", None)
    if isinstance(uid, bytes):
        credential = f"badge:{uid.hex()}"
    elif isinstance(credential_id, bytes):
        import base64

        text = base64.urlsafe_b64encode(credential_id).rstrip(b"=").decode("ascii")
        credential = f"fido2:{text}"
    kind = info.kind if info is not None else None
    if kind is None and evidence is not None:
        kind = {"desfire-session": "desfire", "webauthn-assertion": "fido2"}.get(evidence.type)
    return {
        "kind": kind,
        "serial": info.serial if info is not None else None,
        "credential": credential,
        "evidence": evidence.type if evidence is not None else None,
    }


# --- verification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TrailReport:
    """A trail that verified.

    :param records: how many records it holds.
    :param head: the digest of its last record (``None`` when empty): the anchor to keep.
    :param node: the node that wrote it (``None`` when empty).
    :param last_time: its last record's time (``None`` when empty).
    """

    records: int
    head: str | None
    node: str | None = None
    last_time: dt.datetime | None = None


class _BadRecordError(Exception):
    def __init__(self, problem: str) -> None:
        self.problem = problem


def _number(value: object, name: str) -> int:
    text = value.text if isinstance(value, strictjson.Number) else None
    if text is None or not _INT.fullmatch(text):
        raise _BadRecordError(f"{name} is not an integer")
    return int(text)


def _plain(value: object) -> object:
    """The parsed value with strict JSON's numbers turned back into integers (a record has no
    other numbers), so it can be re-encoded canonically."""
    if isinstance(value, strictjson.Number):
        if not _INT.fullmatch(value.text):
            raise _BadRecordError(f"the number {_shown(value.text)} is not an integer of a record")
        return int(value.text)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


@dataclass
class _Chain:
    seq: int = 0
    head: str = ZERO_DIGEST
    node: str | None = None
    time: dt.datetime | None = None


def _check_line(raw: bytes, chain: _Chain) -> tuple[str, dt.datetime]:
    """:return: the record's node and time once ``raw`` (a line with its newline) follows
    ``chain``.

    :raises _BadRecordError: it does not.
    """
    if not raw.endswith(b"\n"):
        if len(raw) > MAX_LINE:
            raise _BadRecordError(f"the line is longer than {MAX_LINE} bytes")
        raise _BadRecordError(
            "the line has no final newline (torn: the writer stopped in the middle)"
        )
    body = raw[:-1]
    if body.endswith(b"\r"):
        raise _BadRecordError("the line ends with CR LF, not LF")
    if len(body) > MAX_LINE:
        raise _BadRecordError(f"the line is longer than {MAX_LINE} bytes")
    if not body:
        raise _BadRecordError("the line is empty")
    try:
        obj = strictjson.loads(body, "the record", max_bytes=MAX_LINE)
    except JsonFormatError as e:
        raise _BadRecordError(f"not strict JSON ({e})") from None
    if not isinstance(obj, dict):
        raise _BadRecordError("not a JSON object")
    missing = RECORD_MEMBERS - obj.keys()
    extra = obj.keys() - RECORD_MEMBERS
    if extra:
        raise _BadRecordError(f"unknown member {_shown(sorted(extra)[0])}")
    if missing:
        raise _BadRecordError(f"no {sorted(missing)[0]} member")
    if _number(obj["v"], "v") != VERSION:
        raise _BadRecordError(f"v is not {VERSION}")
    if _canonical(_plain(obj)).encode("utf-8") != body:
        raise _BadRecordError(
            "not in canonical form (keys sorted, no spaces, UTF-8 unescaped): rewritten"
        )
    seq = _number(obj["seq"], "seq")
    if seq != chain.seq + 1:
        raise _BadRecordError(
            f"seq is {seq}, not {chain.seq + 1} (a record removed, duplicated or reordered)"
        )
    prev = obj["prev"]
    if prev != chain.head:
        what = (
            "64 zeros (the first record)"
            if chain.seq == 0
            else f"the SHA-256 of record {chain.seq}"
        )
        raise _BadRecordError(f"prev is not {what} (edited, removed or reordered)")
    node = obj["node"]
    if not isinstance(node, str) or not _NODE.fullmatch(node):
        raise _BadRecordError("node is not 1 to 64 of A-Z a-z 0-9 . _ : -")
    if chain.node is not None and node != chain.node:
        raise _BadRecordError(
            f"node is {node}, the trail's is {chain.node} (another node's record)"
        )
    if obj["event"] not in EVENTS:
        raise _BadRecordError(f"event {_shown(obj['event'])} is not known")
    when = obj["time"]
    if not isinstance(when, str) or not _TIME.fullmatch(when):
        raise _BadRecordError("time is not YYYY-MM-DDTHH:MM:SS.mmmZ")
    try:
        time = _parse_time(when)
    except ValueError:
        raise _BadRecordError("time is not a date and time") from None
    if chain.time is not None and time < chain.time - CLOCK_STEP:
        raise _BadRecordError(
            f"time goes back more than {CLOCK_STEP.seconds} s from record {chain.seq}"
        )
    return node, time


def verify_trail(lines: Iterable[bytes], *, head: str | None = None) -> TrailReport:
    """Check a trail's chain, stopping at the first bad record.

    Each line (with its newline) must be a record of the exact member set, version 1, in
    canonical form, numbered one after the previous, whose ``prev`` is the previous line's
    digest, of the same node, its time not more than :data:`CLOCK_STEP` before the previous
    one's. Lines are read one at a time: a file of any length is checked in bounded memory.

    :param lines: the lines, each ending with ``\\n`` (a file opened in binary mode is one).
    :param head: the digest the last record must have (64 hex), catching a cut tail or an
        edited last record; ``None``: not checked (see the module docstring's limit).
    :return: the report.
    :raises AuditChainError: the first record that does not follow, or a last digest that is
        not ``head``.
    :raises ValueError: ``head`` is not 64 lower-case hex digits.
    """
    if head is not None and not _DIGEST.fullmatch(head):
        raise ValueError("The expected head is 64 lower-case hex digits")
    chain = _Chain()
    number = 0
    for number, raw in enumerate(lines, 1):
        try:
            node, time = _check_line(raw, chain)
        except _BadRecordError as bad:
            seq = chain.seq + 1
            raise AuditChainError(
                f"record {seq} (line {number}): {bad.problem}",
                line=number,
                seq=seq,
                problem=bad.problem,
            ) from None
        body = raw[:-1]
        chain = _Chain(chain.seq + 1, hashlib.sha256(body).hexdigest(), node, time)
    if head is not None and (chain.seq == 0 or chain.head != head):
        if chain.seq == 0:
            problem = f"the trail is empty, a last record of SHA-256 {head} was expected"
        else:
            problem = (
                f"its SHA-256 is {chain.head}, not the expected head {head} (records cut from "
                "the end, or the last one edited)"
            )
        raise AuditChainError(
            f"record {chain.seq} (line {number}): {problem}",
            line=number,
            seq=chain.seq,
            problem=problem,
        )
    if chain.seq == 0:
        return TrailReport(0, None)
    return TrailReport(chain.seq, chain.head, chain.node, chain.time)


# --- sinks ----------------------------------------------------------------------------------


class AuditSink(Protocol):
    """Where records go: one chain per sink and node."""

    def head(self) -> tuple[int, str] | None:
        """:return: ``(seq, digest)`` of the last record, or ``None`` when there is none."""
        ...

    def append(self, seq: int, line: str, digest: str) -> None:
        """Record ``line`` (record ``seq``, whose digest is ``digest``) durably, or raise."""
        ...

    def close(self) -> None:
        """Release what the sink holds."""
        ...


class FileSink:
    """A JSON-lines audit file open for appending (open it with :meth:`open`).

    At open, the file (created mode 0600) is locked against a second writer, its whole chain
    verified (a broken one refuses to open: the trail must be looked at, not extended), and a
    torn last line (the process died while writing it, so that record was never reported as
    done) cut off with a WARNING; :attr:`torn` says how many bytes were cut, for the next
    ``start`` record. Each :meth:`append` writes the line and ``fsync`` s it before returning;
    a write that fails is cut back, so the file never keeps half a record.

    :param path: the file.
    :param fd: its descriptor, ``O_APPEND`` and locked.
    :param report: what the file held.
    :param size: its length in bytes.
    :param torn: bytes of a torn last line cut at open.
    """

    def __init__(self, path: Path, fd: int, report: TrailReport, size: int, torn: int) -> None:
        self.path = path
        self.torn = torn
        self.report = report
        self._fd: int | None = fd
        self._size = size
        self._head = (report.records, report.head) if report.head is not None else None
        self._lock = threading.Lock()

    @property
    def chain_node(self) -> str | None:
        """:return: the node whose chain the file held when opened (``None``: empty)."""
        return self.report.node

    def last_time(self) -> dt.datetime | None:
        """:return: the time of the file's last record when opened, or ``None``."""
        return self.report.last_time

    def __repr__(self) -> str:
        return f"FileSink({str(self.path)!r}, {self._head[0] if self._head else 0} records)"

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> FileSink:
        """Open (or create) an audit file, lock it, verify it, cut a torn last line.

        :param path: the file.
        :return: the sink.
        :raises AuditError: it cannot be opened or read, is not a regular file, or another
            process holds it.
        :raises AuditChainError: its chain is broken.
        """
        file = Path(path)
        name = f"audit file {str(file)!r}"
        created = not file.exists()
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(file, flags, 0o600)
        except OSError as e:
            raise AuditError(f"Cannot open the {name} ({e.strerror})") from e
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise AuditError(f"Cannot use the {name}: not a regular file")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise AuditError(f"The {name} is held by another process") from None
                raise AuditError(f"Cannot lock the {name} ({e.strerror})") from e
            os.set_blocking(fd, True)
            report, valid, torn = _read_file(fd, name)
            if torn:
                logger.warning(
                    "The %s ends with a torn line of %d bytes (a process stopped while writing "
                    "it; that record was never reported done): it is cut off",
                    name,
                    torn,
                )
                os.ftruncate(fd, valid)
                os.fsync(fd)
            if created:
                fsync_directory(file.parent)
        except OSError as e:
            os.close(fd)
            raise AuditError(f"Cannot read the {name} ({e.strerror})") from e
        except BaseException:
            os.close(fd)
            raise
        return cls(file, fd, report, valid, torn)

    def head(self) -> tuple[int, str] | None:
        """:return: ``(seq, digest)`` of the last record written, or ``None``."""
        return self._head

    def append(self, seq: int, line: str, digest: str) -> None:
        """Append one record and ``fsync`` it before returning.

        :raises AuditError: the sink is closed, or ``seq`` does not follow its head.
        :raises AuditUnavailableError: the write or the ``fsync`` failed (the file is cut
            back to the record before).
        """
        data = line.encode("utf-8") + b"\n"
        with self._lock:
            if self._fd is None:
                raise AuditError(f"The audit file {str(self.path)!r} is closed")
            expected = (self._head[0] if self._head else 0) + 1
            if seq != expected:
                raise AuditError(f"Audit file record {seq} does not follow {expected - 1}")
            try:
                write_all(self._fd, data)
                os.fsync(self._fd)
            except OSError as e:
                self._cut_back()
                raise AuditUnavailableError(
                    f"Cannot write the audit file {str(self.path)!r} ({e.strerror})"
                ) from e
            self._size += len(data)
            self._head = (seq, digest)

    def _cut_back(self) -> None:
        assert self._fd is not None  # noqa: S101 - the caller checked
        try:
            os.ftruncate(self._fd, self._size)
            os.fsync(self._fd)
        except OSError:
            # The file may keep part of a record: stop writing to it (reopening cuts it).
            logger.error("Cannot cut the audit file %r back: it is closed", str(self.path))
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Release the lock and close the file; closing twice does nothing."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _read_file(fd: int, name: str) -> tuple[TrailReport, int, int]:
    """:return: the report of the file's complete lines, their length, and the length of a
    torn last line (no final newline) left out."""
    os.lseek(fd, 0, os.SEEK_SET)
    state = {"valid": 0, "torn": 0}
    with os.fdopen(os.dup(fd), "rb") as handle:

        def complete() -> Iterator[bytes]:
            while True:
                line = handle.readline(MAX_LINE + 2)
                if not line:
                    return
                if not line.endswith(b"\n") and len(line) <= MAX_LINE + 1:
                    if not handle.read(1):  # the last line: torn
                        state["torn"] = len(line)
                        return
                state["valid"] += len(line)
                yield line

        try:
            report = verify_trail(complete())
        except AuditChainError as e:
            raise AuditChainError(
                f"{name[:1].upper()}{name[1:]} is not a valid audit trail: {e}",
                line=e.line,
                seq=e.seq,
                problem=e.problem,
            ) from None
    return report, state["valid"], state["torn"]


class StoreSink:
    """A node's chain in the store (``audit_head``, ``append_audit``, ``audit_lines``): the
    insert of a record is one statement keyed by (node, seq), so a second writer of the same
    chain gets :class:`~mie.store.errors.AuditConflictError`, never a fork.

    :param store: the store.
    :param node: the node whose chain this is.
    """

    def __init__(self, store: Any, node: str) -> None:
        if not _NODE.fullmatch(node):
            raise AuditError("Audit node: 1 to 64 of A-Z a-z 0-9 . _ : -")
        self.store = store
        self.node = node

    def __repr__(self) -> str:
        return f"StoreSink({self.node!r})"

    @property
    def chain_node(self) -> str:
        """:return: the node whose chain this is."""
        return self.node

    def last_time(self) -> dt.datetime | None:
        """:return: the time of the node's last record in the store, or ``None`` (none, or
        unreadable: the chain's check will say).

        :raises StoreError: the store failed.
        """
        head = self.store.audit_head(self.node)
        if head is None:
            return None
        found = self.store.audit_lines(self.node, after=int(head[0]) - 1, limit=1)
        try:
            return _parse_time(json.loads(found[0])["time"])
        except (IndexError, KeyError, TypeError, ValueError):
            return None

    def head(self) -> tuple[int, str] | None:
        """:return: the store's ``(seq, digest)`` of the node's last record, or ``None``.

        :raises StoreError: the store failed.
        """
        found = self.store.audit_head(self.node)
        return None if found is None else (int(found[0]), str(found[1]))

    def append(self, seq: int, line: str, digest: str) -> None:
        """:raises StoreError: the store failed, or (``AuditConflictError``) ``seq`` is taken."""
        self.store.append_audit(self.node, seq, line, digest)

    def close(self) -> None:
        """Nothing to release (the store is closed by its owner)."""


# --- the trail ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditStamp:
    """Where an event was recorded.

    :param node: the node.
    :param seq: its number in the first sink's chain.
    :param heads: per sink, in order, ``(seq, digest)`` of the record written.
    """

    node: str
    seq: int
    heads: tuple[tuple[int, str], ...]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AuditTrail:
    """Writes each event to every sink, each in its own chain (its own ``seq`` and ``prev``).

    Thread-safe: one lock orders the records. A torn last line a :class:`FileSink` cut at open
    is noted in that sink's next ``start`` record (``detail.torn_bytes``). An event is recorded
    when :meth:`append` returns; if a sink fails, :class:`AuditUnavailableError` is raised
    (after the other sinks were tried: a sink that succeeded keeps its record), that sink's
    head does not move, and it re-reads its head before its next record (a store whose reply
    was lost may hold it).

    :param node: the node (1 to 64 of ``A-Z a-z 0-9 . _ : -``).
    :param sinks: where records go (at least one).
    :param clock: ``clock() -> datetime`` (UTC now by default); a clock that steps back is
        held at the last time written, so the trail's times never go back.
    :raises AuditError: a bad node, no sink, or a sink holding another node's chain.
    :raises AuditUnavailableError: a sink's head cannot be read.
    """

    def __init__(
        self, node: str, sinks: Sequence[AuditSink], *, clock: Clock | None = None
    ) -> None:
        if not _NODE.fullmatch(node):
            raise AuditError("Audit node: 1 to 64 of A-Z a-z 0-9 . _ : -")
        if not sinks:
            raise AuditError("An audit trail needs at least one sink")
        self.node = node
        self.sinks = tuple(sinks)
        self._clock = clock if clock is not None else _utc_now
        self._lock = threading.Lock()
        self._last: dt.datetime | None = None
        for sink in self.sinks:
            owner = getattr(sink, "chain_node", None)
            if owner is not None and owner != node:
                raise AuditError(f"{sink!r} holds the chain of node {owner}, not {node}")
        self._heads: list[tuple[int, str] | None] = [self._read_head(s) for s in self.sinks]
        self._stale = [False] * len(self.sinks)
        # A torn tail a FileSink cut at open is noted in that sink's next start record.
        self._torn = [int(getattr(s, "torn", 0) or 0) for s in self.sinks]
        # The trail's times never go back, from one run to the next either.
        self._last = max(
            (t for t in (self._read_time(s) for s in self.sinks) if t is not None), default=None
        )

    def __repr__(self) -> str:
        return f"AuditTrail({self.node!r}, {list(self.sinks)!r})"

    @staticmethod
    def _read_head(sink: AuditSink) -> tuple[int, str] | None:
        try:
            return sink.head()
        except StoreError as e:
            raise AuditUnavailableError(f"Cannot read the head of {sink!r} ({e})") from e

    @staticmethod
    def _read_time(sink: AuditSink) -> dt.datetime | None:
        last_time = getattr(sink, "last_time", None)
        if last_time is None:
            return None
        try:
            found = last_time()
        except StoreError as e:
            raise AuditUnavailableError(f"Cannot read the head of {sink!r} ({e})") from e
        return found if isinstance(found, dt.datetime) else None

    def heads(self) -> tuple[tuple[int, str] | None, ...]:
        """:return: per sink, ``(seq, digest)`` of its last record as this trail knows it."""
        with self._lock:
            return tuple(self._heads)

    def append(self, event: AuditEvent) -> AuditStamp:
        """Record ``event`` in every sink.

        :return: where it was recorded.
        :raises AuditError: the event cannot be encoded.
        :raises AuditUnavailableError: a sink failed (its head kept).
        """
        fields = event.fields()
        with self._lock:
            now = self._clock()
            if self._last is not None and now < self._last:
                now = self._last
            self._last = now
            written: list[tuple[int, str]] = []
            failures: list[str] = []
            for index, sink in enumerate(self.sinks):
                try:
                    written.append(self._append_one(index, sink, fields, now))
                except (StoreError, OSError) as e:
                    self._stale[index] = True
                    if isinstance(e, AuditConflictError):
                        logger.error(
                            "Audit: another writer uses node %s's chain in %r", self.node, sink
                        )
                    failures.append(f"{sink!r}: {e}")
        if failures:
            raise AuditUnavailableError(
                "The audit trail could not record it: " + "; ".join(failures)
            )
        return AuditStamp(self.node, written[0][0], tuple(written))

    def _append_one(
        self, index: int, sink: AuditSink, fields: Mapping[str, Any], now: dt.datetime
    ) -> tuple[int, str]:
        if self._stale[index]:
            self._heads[index] = self._read_head(sink)
            self._stale[index] = False
        head = self._heads[index]
        seq, prev = (head[0] + 1, head[1]) if head is not None else (1, ZERO_DIGEST)
        torn = self._torn[index]
        if torn and fields["event"] == "start":
            fields = {**fields, "detail": {**(fields["detail"] or {}), "torn_bytes": torn}}
        line = encode_record(fields, seq=seq, prev=prev, time=now, node=self.node)
        digest = record_digest(line)
        try:
            sink.append(seq, line, digest)
        except AuditError as e:
            # A sink that cannot take the record (closed after a failed cut-back, or behind its
            # file): unavailable, as a failed write is, not the caller's usage error.
            raise AuditUnavailableError(str(e)) from e
        self._heads[index] = (seq, digest)
        if fields["event"] == "start":
            self._torn[index] = 0
        return seq, digest

    def close(self) -> None:
        """Close every sink."""
        for sink in self.sinks:
            sink.close()


__all__ = [
    "EVENTS",
    "EVENT_MEMBERS",
    "MAX_LINE",
    "RECORD_MEMBERS",
    "ZERO_DIGEST",
    "AuditChainError",
    "AuditError",
    "AuditEvent",
    "AuditSink",
    "AuditStamp",
    "AuditTrail",
    "AuditUnavailableError",
    "FileSink",
    "StoreSink",
    "TrailReport",
    "encode_record",
    "format_time",
    "record_digest",
    "short_digest",
    "verify_trail",
]
