"""Fuzz targets of the DESFire badge data: the identity record file, the badge configuration and
``desfire-session`` evidence (see :mod:`tests.fuzz.targets` for the registry).

The enrolment authority is a fixed P-256 scalar, so the runner that makes the seeds and the
processes that judge them agree on it without sharing files.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mie.core import strictjson
from mie.desfire.config import BadgeConfig, UidSource
from mie.desfire.evidence import BadgeScheme, DesfireSessionEvidence, TranscriptExchange
from mie.desfire.record import AuthorityKey, IdentityRecord, check_binding, verify
from mie.evidence import MAX_EVIDENCE_BYTES, Evidence
from mie.keys import SoftwareKeyProvider
from tests.fuzz.context import Context
from tests.fuzz.harness import OracleViolation, Run, Target, scratch, swallow

_AUTHORITY = ec.derive_private_key(0x1D5A_7E57_F022, ec.SECP256R1())
_LABEL = "mie-authority"
_UID = bytes.fromhex("04a1b2c3d4e5f6")
_AID = bytes.fromhex("494df0")
_PSI = "0f8fad5b-d9cb-469f-a165-70867728950e"


@functools.cache
def _authority() -> AuthorityKey:
    return AuthorityKey.of(_AUTHORITY.public_key(), "fuzz authority")


def _records() -> list[bytes]:
    provider = SoftwareKeyProvider(signing_keys={_LABEL: _AUTHORITY})
    key_id = _authority().key_id
    records = [
        IdentityRecord(_UID, _AID, "810001234565", "CH Exemple", dt.date(2026, 12, 1), key_id),
        IdentityRecord(_UID, _AID, _PSI, "é" * 15, dt.date(2000, 2, 29), key_id),
        IdentityRecord(bytes(7), bytes(3), "810001234565", "x", dt.date(9999, 12, 31), key_id),
    ]
    return [r.sign(provider, _LABEL) for r in records]


# --- the identity record ---------------------------------------------------------------------


def _record_seeds(context: Context) -> list[bytes]:
    return [*_records(), bytes(176), b""]


def _record_prepare(context: Context) -> Run:
    authority = _authority()

    def run(data: bytes) -> None:
        signed = IdentityRecord.parse(data)
        if signed.record.encode_body() != signed.body:
            raise OracleViolation("identity record: re-encoding a strict parse changed the body")
        if signed.file != data:
            raise OracleViolation("identity record: the parsed file is not the input")
        swallow(lambda: verify(signed, [authority]))
        swallow(lambda: check_binding(signed.record, uid=_UID, aid=_AID))

    return run


# --- the badge configuration -----------------------------------------------------------------


def _config_objects() -> list[dict[str, Any]]:
    full = {
        "format": "mie-badge/1",
        "aid": "494df0",
        "system_id": "4d49452d485350",
        "keys": {"provider": "software", "file": "keys.json"},
        "labels": {"picc": "p", "app": "a", "uid_read": "u", "read": "r", "authority": "k"},
        "authorities": [{"name": "CH", "pem": "authority.pem", "test": True}],
        "issuer": "CH Exemple",
        "uid_source": "div-file",
        "random_uid": True,
        "originality": "optional",
        "originality_keys": ["nxp", "mie-test"],
        "second_factor": {"store": "sqlite:mie.db", "max_failures": 5},
        "legacy": False,
    }
    pkcs11 = {
        "format": "mie-badge/1",
        "keys": {"provider": "pkcs11", "module": "m.so", "token": "mie", "pin_env": "PIN"},
        "uid_source": "anticollision",
        "random_uid": False,
        "second_factor": {"store": "postgresql://127.0.0.1/mie"},
    }
    return [{"format": "mie-badge/1"}, full, pkcs11]


def _config_seeds(context: Context) -> list[bytes]:
    objects = _config_objects()
    return [*(json.dumps(o).encode() for o in objects), json.dumps(objects[1], indent=1).encode()]


def _paths(value: object) -> bool:
    """:return: whether a parsed value holds a string that could leave the scratch directory."""
    if isinstance(value, str):
        return value.startswith("/") or ".." in value or "sqlite://" in value
    if isinstance(value, dict):
        return any(_paths(v) for v in value.values())
    if isinstance(value, list):
        return any(_paths(v) for v in value)
    return False


def _config_prepare(context: Context) -> Run:
    directory = scratch("badge-config")
    (directory / "authority.pem").write_bytes(
        _AUTHORITY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    def run(data: bytes) -> None:
        obj = strictjson.loads(data, "fuzz", max_bytes=64 * 1024)
        if _paths(obj):
            return  # the file system outside the scratch directory is not the parser's input
        config = BadgeConfig.from_json(obj, base=directory)
        if len(config.diversification_input(_UID)) not in range(16, 32):
            raise OracleViolation("badge configuration: a diversification input out of 16..31")

    return run


# --- desfire-session evidence ----------------------------------------------------------------


def _evidence_seeds(context: Context) -> list[bytes]:
    transcript = (
        TranscriptExchange(bytes.fromhex("ffca000000"), _UID + bytes.fromhex("9000")),
        TranscriptExchange(bytes.fromhex("905a000003494df000"), bytes.fromhex("9100")),
        TranscriptExchange(bytes.fromhex("9071000002020000"), bytes(16) + bytes.fromhex("91af")),
    )
    record = _records()[0]
    seeds = []
    for originality, scheme in ((bytes(56), BadgeScheme.EV2), (None, BadgeScheme.EV1_AES)):
        evidence = DesfireSessionEvidence(
            bytes(range(32)),
            "https://iam.example.org",
            scheme,
            _AID,
            _UID,
            UidSource.GET_CARD_UID,
            record,
            originality,
            transcript,
        )
        seeds.append(json.dumps(evidence.to_json()).encode())
    return seeds


def _evidence_prepare(context: Context) -> Run:
    def run(data: bytes) -> None:
        obj = strictjson.loads(data, "fuzz", max_bytes=MAX_EVIDENCE_BYTES)
        evidence = Evidence.from_json(obj)
        if Evidence.from_json(json.loads(json.dumps(evidence.to_json()))) != evidence:
            raise OracleViolation("desfire-session evidence does not round-trip through JSON")
        if isinstance(evidence, DesfireSessionEvidence):
            swallow(lambda: IdentityRecord.parse(evidence.record))

    return run


DESFIRE_TARGETS = [
    Target(
        "desfire-record",
        "badge identity record files (IdentityRecord.parse, verify, check_binding)",
        _record_seeds,
        _record_prepare,
        max_len=512,
    ),
    Target(
        "badge-config",
        "badge configuration JSON (BadgeConfig.from_json, authority PEM files read)",
        _config_seeds,
        _config_prepare,
        max_len=8192,
    ),
    Target(
        "desfire-evidence",
        "desfire-session evidence JSON (Evidence.from_json, then the record it carries)",
        _evidence_seeds,
        _evidence_prepare,
        max_len=16384,
    ),
]
