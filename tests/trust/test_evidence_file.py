"""load_evidence_file: a saved result or bare evidence; strict JSON (D3: not JSON is a
JsonFormatError, JSON of the wrong shape an EvidenceFormatError)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from mie.core import strictjson
from mie.core.connection import Transport
from mie.core.errors import ErrorCode, EvidenceFormatError, InvalidPinError, JsonFormatError
from mie.emulation.testpki import CardCredentials
from mie.evidence import MAX_EVIDENCE_BYTES, load_evidence_file
from mie.result import AuthenticatorInfo, AuthResult
from mie.trust import RevocationStatus
from tests.trust.evidence_kit import signed_evidence

INFO = AuthenticatorInfo("cps3", "2800000001", bytes.fromhex("3b8f80"), Transport.CONTACT)


def _write(tmp_path: Path, data: bytes | str) -> Path:
    path = tmp_path / "evidence.json"
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_bare_evidence(tmp_path: Path, cps: CardCredentials) -> None:
    evidence = signed_evidence(cps.authentication)
    path = _write(tmp_path, json.dumps(evidence.to_json(), indent=2))
    assert load_evidence_file(path) == (evidence, None)
    assert load_evidence_file(str(path)) == (evidence, None)


def test_saved_result(tmp_path: Path, cps: CardCredentials) -> None:
    evidence = signed_evidence(cps.authentication)
    result = AuthResult(
        True,
        authenticator=INFO,
        reasons=("signature verified",),
        evidence=evidence,
        revocation=RevocationStatus.GOOD,
    )
    path = _write(tmp_path, json.dumps(result.to_json()))
    assert load_evidence_file(path) == (evidence, INFO)


def test_saved_failure_holds_no_evidence(tmp_path: Path) -> None:
    failure = AuthResult.failure(InvalidPinError(2), INFO)
    text = json.dumps(failure.to_json())
    # Strict JSON keeps numbers as text; tries_left still reads.
    assert AuthResult.from_json(strictjson.loads(text.encode(), "x", max_bytes=10_000)) == failure
    with pytest.raises(EvidenceFormatError, match="holds no evidence") as caught:
        load_evidence_file(_write(tmp_path, text))
    assert caught.value.code is ErrorCode.MALFORMED


@pytest.mark.parametrize("text", ["[]", "3", '"x"', "null", '{"valid": true}', "{}"])
def test_json_of_another_shape(tmp_path: Path, text: str) -> None:
    with pytest.raises(EvidenceFormatError):
        load_evidence_file(_write(tmp_path, text))


def test_unknown_type_is_named(tmp_path: Path, cps: CardCredentials) -> None:
    data = signed_evidence(cps.authentication).to_json() | {"type": "desfire-mutual"}
    with pytest.raises(EvidenceFormatError, match="Unknown evidence type 'desfire-mutual'"):
        load_evidence_file(_write(tmp_path, json.dumps(data)))


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b'{"type": "x509-signature", "type": "x509-signature"}',
        b'{"type": "x509-signature"',
        b"\xff\xfe{}",
        b'{"type": "\\ud800"}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["text", "duplicate key", "truncated", "not utf-8", "lone surrogate", "deep"],
)
def test_not_strict_json(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(JsonFormatError) as caught:
        load_evidence_file(_write(tmp_path, data))
    assert caught.value.code is ErrorCode.MALFORMED and "evidence.json" in str(caught.value)


def test_too_large(tmp_path: Path, cps: CardCredentials) -> None:
    text = json.dumps(signed_evidence(cps.authentication).to_json())
    padded = text[:-1] + " " * (MAX_EVIDENCE_BYTES - len(text) + 1) + "}"
    with pytest.raises(JsonFormatError, match="larger than"):
        load_evidence_file(_write(tmp_path, padded))


def test_unreadable(tmp_path: Path) -> None:
    for path in (tmp_path / "absent.json", tmp_path):
        with pytest.raises(JsonFormatError, match="Cannot read"):
            load_evidence_file(path)


def test_a_fifo_or_a_directory_is_refused_without_waiting(tmp_path: Path) -> None:
    # A FIFO with no writer would block a plain open() for ever.
    fifo = tmp_path / "evidence.fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    for path in (fifo, tmp_path):
        with pytest.raises(JsonFormatError, match="Cannot read evidence file"):
            load_evidence_file(path)
    assert time.monotonic() - started < 5
