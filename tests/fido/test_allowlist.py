"""The AAGUID allowlist (mie-fido-aaguids/1): strict load, entries, duplicates, bounds."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from mie.emulation.fido_pki import EMULATOR_AAGUID, OTHER_AAGUID, TestAttestationPki
from mie.fido.allowlist import (
    MAX_ALLOWLIST_BYTES,
    MAX_KEYS,
    AaguidAllowlist,
    AllowedKey,
    aaguid_text,
    certification_rank,
    is_test_root,
)
from mie.fido.errors import FidoPolicyError

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
EMULATOR = "6d69652d-5445-5354-2d46-49444f320001"


@pytest.fixture(scope="module")
def pki() -> TestAttestationPki:
    return TestAttestationPki.generate(now=NOW)


def document(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": "mie-fido-aaguids/1",
        "source": "test list",
        "updated": "2026-12-01",
        "keys": [{"aaguid": EMULATOR, "name": "emulator", "test": True}],
    }
    doc.update(changes)
    return doc


def write(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_example_file_loads() -> None:
    allowlist = AaguidAllowlist.load(EXAMPLES / "fido-aaguids.json")
    entry = allowlist.entry(EMULATOR_AAGUID)
    assert entry is not None
    assert entry.test is True
    assert entry.uuid == EMULATOR
    assert entry.roots == ()
    assert allowlist.entry(OTHER_AAGUID) is None
    assert len(allowlist) == 1


def test_load_with_roots_relative_to_the_file(tmp_path: Path, pki: TestAttestationPki) -> None:
    sub = tmp_path / "lists"
    sub.mkdir()
    (sub / "root.pem").write_bytes(pki.root_pem)
    key = {
        "aaguid": EMULATOR,
        "name": "emulator",
        "roots": ["root.pem"],
        "min_certification": "L2",
        "test": False,
    }
    path = write(sub / "a.json", document(keys=[key]))
    cwd = os.getcwd()
    os.chdir(tmp_path)  # relative to the file, not to the working directory
    try:
        allowlist = AaguidAllowlist.load(path)
    finally:
        os.chdir(cwd)
    entry = allowlist.entry(EMULATOR_AAGUID)
    assert entry is not None
    assert entry.roots == (pki.root.certificate,)
    assert entry.min_certification == "L2"
    assert entry.test is False
    assert allowlist.updated == dt.date(2026, 12, 1)
    assert allowlist.source == "test list"
    assert allowlist.path == path


def test_duplicate_aaguid_refused(tmp_path: Path) -> None:
    keys = [
        {"aaguid": EMULATOR, "name": "a", "test": True},
        {"aaguid": EMULATOR, "name": "b", "test": False},
    ]
    with pytest.raises(FidoPolicyError, match=r"keys\[1\]\.aaguid .* listed twice"):
        AaguidAllowlist.load(write(tmp_path / "a.json", document(keys=keys)))


def test_duplicate_aaguid_refused_in_code() -> None:
    one = AllowedKey(EMULATOR_AAGUID, "a")
    with pytest.raises(FidoPolicyError, match="listed twice"):
        AaguidAllowlist((one, AllowedKey(EMULATOR_AAGUID, "b", test=True)))


def test_duplicate_json_key_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('{"format": "mie-fido-aaguids/1", "format": "x"}')
    with pytest.raises(FidoPolicyError, match="duplicate key"):
        AaguidAllowlist.load(path)


BAD_DOCUMENTS: list[tuple[str, dict[str, Any], str]] = [
    ("format", document(format="mie-fido-aaguids/2"), "format is not"),
    ("extra member", {**document(), "more": 1}, "'more' is not a member"),
    ("missing source", {k: v for k, v in document().items() if k != "source"}, "source is missing"),
    ("empty source", document(source=""), "source is not a string"),
    ("date", document(updated="2026-13-01"), "updated is not a date"),
    ("date shape", document(updated="1.12.2026"), "updated is not a date"),
    ("keys not array", document(keys={}), "keys is not an array"),
    ("key not object", document(keys=["x"]), r"keys\[0\] is not a JSON object"),
    (
        "upper-case uuid",
        document(keys=[{"aaguid": EMULATOR.upper(), "name": "a", "test": True}]),
        "not a lower-case UUID",
    ),
    (
        "uuid without dashes",
        document(keys=[{"aaguid": EMULATOR.replace("-", ""), "name": "a", "test": True}]),
        "not a lower-case UUID",
    ),
    (
        "zero aaguid",
        document(keys=[{"aaguid": str(uuid.UUID(int=0)), "name": "a", "test": True}]),
        "all zero",
    ),
    (
        "missing test",
        document(keys=[{"aaguid": EMULATOR, "name": "a"}]),
        r"keys\[0\]\.test is missing",
    ),
    (
        "test not bool",
        document(keys=[{"aaguid": EMULATOR, "name": "a", "test": "false"}]),
        "test is not true or false",
    ),
    (
        "level",
        document(keys=[{"aaguid": EMULATOR, "name": "a", "test": True, "min_certification": "L4"}]),
        "min_certification is not one of",
    ),
    (
        "unknown key member",
        document(keys=[{"aaguid": EMULATOR, "name": "a", "test": True, "vendor": "x"}]),
        r"keys\[0\]\.'vendor' is not a member",
    ),
    (
        "name control char",
        document(keys=[{"aaguid": EMULATOR, "name": "a\nb", "test": True}]),
        "control character",
    ),
    (
        "roots not array",
        document(keys=[{"aaguid": EMULATOR, "name": "a", "test": True, "roots": "r.pem"}]),
        "roots is not an array",
    ),
    (
        "root missing",
        document(keys=[{"aaguid": EMULATOR, "name": "a", "test": True, "roots": ["none.pem"]}]),
        "does not exist",
    ),
]


@pytest.mark.parametrize(
    ("doc", "message"), [(d, m) for _, d, m in BAD_DOCUMENTS], ids=[i for i, _, _ in BAD_DOCUMENTS]
)
def test_bad_document_refused(tmp_path: Path, doc: dict[str, Any], message: str) -> None:
    with pytest.raises(FidoPolicyError, match=message):
        AaguidAllowlist.load(write(tmp_path / "a.json", doc))


def test_bad_root_file_refused(tmp_path: Path) -> None:
    (tmp_path / "r.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    )
    key = {"aaguid": EMULATOR, "name": "a", "test": True, "roots": ["r.pem"]}
    with pytest.raises(FidoPolicyError, match=r"keys\[0\]\.roots\[0\]"):
        AaguidAllowlist.load(write(tmp_path / "a.json", document(keys=[key])))


def test_not_json_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_bytes(b"\xff{")
    with pytest.raises(FidoPolicyError, match="not UTF-8"):
        AaguidAllowlist.load(path)


def test_size_bound(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_bytes(b" " * (MAX_ALLOWLIST_BYTES + 1))
    with pytest.raises(FidoPolicyError, match="larger than"):
        AaguidAllowlist.load(path)


def test_key_count_bound(tmp_path: Path) -> None:
    keys = [
        {"aaguid": str(uuid.UUID(int=n + 1)), "name": "k", "test": False}
        for n in range(MAX_KEYS + 1)
    ]
    with pytest.raises(FidoPolicyError, match="more than"):
        AaguidAllowlist.load(write(tmp_path / "a.json", document(keys=keys)))


def test_missing_file_and_fifo(tmp_path: Path) -> None:
    with pytest.raises(FidoPolicyError, match="does not exist"):
        AaguidAllowlist.load(tmp_path / "none.json")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(FidoPolicyError, match="not a regular file"):
        AaguidAllowlist.load(fifo)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"aaguid": b"short"}, "16 bytes"),
        ({"aaguid": bytes(16)}, "all-zero"),
        ({"name": ""}, "name"),
        ({"roots": ["not a certificate"]}, "roots"),
        ({"min_certification": "L9"}, "min_certification"),
        ({"test": "false"}, "test is not true or false"),
        ({"test": 1}, "test is not true or false"),
    ],
)
def test_allowed_key_checked_in_code(kwargs: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"aaguid": EMULATOR_AAGUID, "name": "k", **kwargs}
    with pytest.raises(FidoPolicyError, match=message):
        AllowedKey(**values)


def test_allowed_key_roots_list_becomes_tuple(pki: TestAttestationPki) -> None:
    roots: Any = [pki.root.certificate]
    key = AllowedKey(EMULATOR_AAGUID, "k", roots)
    assert key.roots == (pki.root.certificate,)
    assert isinstance(key.roots, tuple)


def _self_signed(name: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name.from_rfc4514_string(name)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def test_helpers(pki: TestAttestationPki) -> None:
    assert aaguid_text(EMULATOR_AAGUID) == EMULATOR
    assert certification_rank("L1") < certification_rank("L1plus") < certification_rank("L3plus")
    with pytest.raises(ValueError):
        certification_rank("L4")
    assert is_test_root(pki.root.certificate)
    assert not is_test_root(_self_signed("CN=Vendor FIDO Root CA,O=Vendor"))
    assert not is_test_root(_self_signed("CN=Vendor ATTESTATION Root,O=Contest Inc"))
