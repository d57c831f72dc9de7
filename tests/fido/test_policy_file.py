"""The FIDO policy (mie-fido-policy/1): strict load, defaults, relative paths, and the checks of a
policy built in code (a wrong choice or a non-bool flag fails closed)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from mie.emulation.fido_pki import EMULATOR_AAGUID, TestAttestationPki
from mie.fido.allowlist import AaguidAllowlist, AllowedKey
from mie.fido.errors import FidoPolicyError
from mie.fido.policy import (
    DEFAULT_REFUSE,
    MAX_POLICY_BYTES,
    REVOKED,
    FidoPolicy,
    MetadataPolicy,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
EMULATOR = "6d69652d-5445-5354-2d46-49444f320001"
ALLOWLIST = AaguidAllowlist((AllowedKey(EMULATOR_AAGUID, "emulator", test=True),))


@pytest.fixture(scope="module")
def pki() -> TestAttestationPki:
    return TestAttestationPki.generate(now=NOW)


@pytest.fixture
def folder(tmp_path: Path, pki: TestAttestationPki) -> Path:
    """A directory with an allowlist, a root and a CRL next to the policy."""
    (tmp_path / "aaguids.json").write_text(
        json.dumps(
            {
                "format": "mie-fido-aaguids/1",
                "source": "test",
                "updated": "2026-12-01",
                "keys": [{"aaguid": EMULATOR, "name": "emulator", "test": True}],
            }
        )
    )
    (tmp_path / "root.pem").write_bytes(pki.root_pem)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(pki.root.certificate.subject)
        .last_update(NOW - dt.timedelta(days=1))
        .next_update(NOW + dt.timedelta(days=30))
        .sign(pki.root.key, hashes.SHA256())
    )
    (tmp_path / "root.crl").write_bytes(crl.public_bytes(serialization.Encoding.DER))
    return tmp_path


def write(folder: Path, doc: object, name: str = "policy.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(doc))
    return path


def base(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": "mie-fido-policy/1",
        "rp_id": "iam.chu-exemple.fr",
        "allowlist": "aaguids.json",
    }
    doc.update(changes)
    return doc


def test_example_file_loads() -> None:
    policy = FidoPolicy.load(EXAMPLES / "fido-policy.json")
    assert policy.rp_id == "iam.chu-exemple.fr"
    assert policy.attestation == "required"
    assert policy.allowlist is not None
    assert policy.allowlist.entry(EMULATOR_AAGUID) is not None
    assert policy.metadata is None
    assert policy.algorithms == (-7, -8)
    assert policy.require_uv is True


def test_defaults_are_the_substantial_profile(folder: Path) -> None:
    policy = FidoPolicy.load(write(folder, base()))
    assert policy.attestation == "required"
    assert policy.attested_only
    assert policy.require_uv is True
    assert policy.backup_eligible == "low"
    assert policy.counter == "required"
    assert policy.algorithms == (-7, -8)
    assert policy.attestation_roots == ()
    assert policy.crls == ()
    in_code = FidoPolicy("iam.chu-exemple.fr", allowlist=ALLOWLIST)
    for name in ("attestation", "require_uv", "backup_eligible", "counter", "algorithms"):
        assert getattr(policy, name) == getattr(in_code, name)


def test_every_member(folder: Path, pki: TestAttestationPki) -> None:
    doc = base(
        attestation="optional",
        metadata={
            "blob": "mds.jwt",
            "root": "mds-root.pem",
            "required": False,
            "min_certification": "L2",
            "refuse": ["REVOKED", "RETIRED"],
            "stale": "warn",
        },
        attestation_roots=["root.pem"],
        crls=["root.crl"],
        require_uv=False,
        backup_eligible="refuse",
        counter="allow-zero",
        algorithms=["EdDSA", "RS256"],
    )
    sub = folder / "sub"
    sub.mkdir()
    cwd = os.getcwd()
    os.chdir(sub)  # paths resolve against the policy file's directory, not the working one
    try:
        policy = FidoPolicy.load(write(folder, doc))
    finally:
        os.chdir(cwd)
    assert policy.attestation == "optional"
    assert policy.metadata == MetadataPolicy(
        folder / "mds.jwt",
        folder / "mds-root.pem",
        False,
        "L2",
        frozenset({"REVOKED", "RETIRED"}),
        "warn",
    )
    assert policy.attestation_roots == (pki.root.certificate,)
    assert len(policy.crls) == 1
    assert len(policy.crl_set()) == 1
    assert policy.require_uv is False
    assert policy.backup_eligible == "refuse"
    assert policy.counter == "allow-zero"
    assert policy.algorithms == (-8, -257)


def test_metadata_defaults(folder: Path) -> None:
    policy = FidoPolicy.load(write(folder, base(allowlist=None, metadata={"blob": "/abs/mds.jwt"})))
    assert policy.allowlist is None
    metadata = policy.metadata
    assert metadata is not None
    assert metadata.blob == Path("/abs/mds.jwt")
    assert metadata.root is None
    assert metadata.required is True
    assert metadata.min_certification == "L1"
    assert metadata.refuse == DEFAULT_REFUSE
    assert REVOKED in metadata.refuse
    assert metadata.stale == "refuse"
    nulls = FidoPolicy.load(
        write(folder, base(metadata={"blob": "m", "root": None, "min_certification": None}))
    )
    assert nulls.metadata is not None
    assert nulls.metadata.root is None
    assert nulls.metadata.min_certification is None


def test_attested_only_needs_allowlist_or_metadata(folder: Path) -> None:
    with pytest.raises(FidoPolicyError, match="needs an AAGUID allowlist or FIDO metadata"):
        FidoPolicy.load(write(folder, base(allowlist=None)))
    with pytest.raises(FidoPolicyError, match="needs an AAGUID allowlist or FIDO metadata"):
        FidoPolicy("iam.chu-exemple.fr")
    optional = FidoPolicy.load(write(folder, base(allowlist=None, attestation="optional")))
    assert optional.allowlist is None
    assert FidoPolicy("iam.chu-exemple.fr", attestation="optional").metadata is None


BAD_POLICIES: list[tuple[str, dict[str, Any], str]] = [
    ("format", base(format="mie-fido-policy/2"), "format is not"),
    ("unknown member", base(level="high"), "'level' is not a member"),
    ("no rp_id", {"format": "mie-fido-policy/1", "allowlist": "aaguids.json"}, "rp_id is missing"),
    ("upper-case rp_id", base(rp_id="IAM.example.fr"), "rp_id is not a lower-case host"),
    ("rp_id with port", base(rp_id="iam.example.fr:443"), "rp_id is not a lower-case host"),
    ("rp_id number", base(rp_id=5), "rp_id is not a string"),
    ("attestation", base(attestation="preferred"), "attestation is not one of required, optional"),
    ("require_uv string", base(require_uv="true"), "require_uv is not true or false"),
    ("require_uv number", base(require_uv=1), "require_uv is not true or false"),
    ("backup_eligible", base(backup_eligible="substantial"), "backup_eligible is not one of"),
    ("counter", base(counter="none"), "counter is not one of"),
    ("algorithm name", base(algorithms=["ES384"]), "algorithms is not one of"),
    ("algorithm number", base(algorithms=[-7]), "algorithms is not one of"),
    ("algorithms empty", base(algorithms=[]), "algorithms is empty"),
    ("algorithms twice", base(algorithms=["ES256", "ES256"]), "names one twice"),
    ("allowlist missing", base(allowlist="other.json"), "does not exist"),
    ("allowlist not string", base(allowlist=["aaguids.json"]), "allowlist is not a string"),
    ("roots not array", base(attestation_roots="root.pem"), "attestation_roots is not an array"),
    ("root missing", base(attestation_roots=["none.pem"]), "does not exist"),
    ("crl is a certificate", base(crls=["root.pem"]), r"crls\[0\]"),
    ("metadata not object", base(metadata="mds.jwt"), "metadata is not a JSON object"),
    ("metadata no blob", base(metadata={"required": True}), "metadata.blob is missing"),
    ("metadata member", base(metadata={"blob": "m", "url": "x"}), r"metadata\.'url' is not"),
    ("metadata required", base(metadata={"blob": "m", "required": "yes"}), "metadata.required is"),
    ("metadata level", base(metadata={"blob": "m", "min_certification": "L0"}), "min_certific"),
    ("metadata refuse", base(metadata={"blob": "m", "refuse": ["BROKEN"]}), "metadata.refuse is"),
    (
        "metadata refuse certified",
        base(metadata={"blob": "m", "refuse": ["FIDO_CERTIFIED_L1"]}),
        "metadata.refuse is",
    ),
    (
        "metadata refuse twice",
        base(metadata={"blob": "m", "refuse": ["REVOKED", "REVOKED"]}),
        "twice",
    ),
    ("metadata stale", base(metadata={"blob": "m", "stale": "ignore"}), "metadata.stale is"),
]


@pytest.mark.parametrize(
    ("doc", "message"), [(d, m) for _, d, m in BAD_POLICIES], ids=[i for i, _, _ in BAD_POLICIES]
)
def test_bad_policy_refused(folder: Path, doc: dict[str, Any], message: str) -> None:
    path = write(folder, doc)
    with pytest.raises(FidoPolicyError, match=message) as info:
        FidoPolicy.load(path)
    assert info.value.code.value == "malformed"


def test_not_json_and_size_bound(folder: Path) -> None:
    path = folder / "policy.json"
    path.write_text('{"format": "mie-fido-policy/1", "rp_id": "a", "rp_id": "b"}')
    with pytest.raises(FidoPolicyError, match="duplicate key"):
        FidoPolicy.load(path)
    path.write_text('{"format": "mie-fido-policy/1", "rp_id": "a", "require_uv": NaN}')
    with pytest.raises(FidoPolicyError, match="not JSON"):
        FidoPolicy.load(path)
    path.write_bytes(b" " * (MAX_POLICY_BYTES + 1))
    with pytest.raises(FidoPolicyError, match="larger than"):
        FidoPolicy.load(path)
    with pytest.raises(FidoPolicyError, match="does not exist"):
        FidoPolicy.load(folder / "none.json")


CODE_CHOICES: list[tuple[str, object, str]] = [
    ("attestation", "Required", "attestation is not one of"),
    ("attestation", None, "attestation is not one of"),
    ("backup_eligible", "LOW", "backup_eligible is not one of"),
    ("counter", "allow_zero", "counter is not one of"),
    ("require_uv", "false", "require_uv is not true or false"),
    ("require_uv", 0, "require_uv is not true or false"),
    ("require_uv", None, "require_uv is not true or false"),
    ("algorithms", (), "algorithms is empty"),
    ("algorithms", (-7, -7), "twice"),
    ("algorithms", (-35,), "algorithm -35 is not one of"),
    ("algorithms", (True,), "algorithm True is not one of"),
    ("algorithms", "ES256", "algorithms is not a sequence"),
    ("attestation_roots", ("root.pem",), "attestation_roots is not a sequence of Certificate"),
    ("crls", (b"crl",), "crls is not a sequence"),
    ("allowlist", "aaguids.json", "allowlist is not an AaguidAllowlist"),
    ("metadata", {"blob": "m"}, "metadata is not a MetadataPolicy"),
    ("rp_id", "https://iam.example.fr", "rp_id is not a lower-case host"),
    ("rp_id", b"iam.example.fr", "rp_id is not a lower-case host"),
]


@pytest.mark.parametrize(("name", "value", "message"), CODE_CHOICES)
def test_policy_built_in_code_fails_closed(name: str, value: object, message: str) -> None:
    values: dict[str, Any] = {"rp_id": "iam.example.fr", "allowlist": ALLOWLIST, name: value}
    with pytest.raises(FidoPolicyError, match=message):
        FidoPolicy(**values)


def test_policy_built_in_code_normalises_sequences(pki: TestAttestationPki) -> None:
    roots: Any = [pki.root.certificate]
    algorithms: Any = [-8]
    policy = FidoPolicy(
        "iam.example.fr", allowlist=ALLOWLIST, attestation_roots=roots, algorithms=algorithms
    )
    assert policy.attestation_roots == (pki.root.certificate,)
    assert policy.algorithms == (-8,)
    with pytest.raises(AttributeError):
        policy.require_uv = False  # type: ignore[misc]


METADATA_CHOICES: list[tuple[str, object, str]] = [
    ("blob", None, "blob is not a file name"),
    ("blob", 5, "blob is not a file name"),
    ("root", b"root.pem", "root is not a file name"),
    ("required", "true", "required is not true or false"),
    ("min_certification", "FIDO_CERTIFIED_L1", "min_certification is not one of"),
    ("refuse", "REVOKED", "refuse is not a set of statuses"),
    ("refuse", {"revoked"}, "refuse is not one of"),
    ("refuse", 5, "refuse is not a set of statuses"),
    ("stale", "Refuse", "stale is not one of"),
]


@pytest.mark.parametrize(("name", "value", "message"), METADATA_CHOICES)
def test_metadata_policy_built_in_code_fails_closed(name: str, value: object, message: str) -> None:
    values: dict[str, Any] = {"blob": Path("mds.jwt"), name: value}
    with pytest.raises(FidoPolicyError, match=message):
        MetadataPolicy(**values)


def test_metadata_policy_in_code() -> None:
    metadata = MetadataPolicy("mds.jwt", refuse=["REVOKED"])  # type: ignore[arg-type]
    assert metadata.blob == Path("mds.jwt")
    assert metadata.refuse == frozenset({"REVOKED"})
    policy = FidoPolicy("iam.example.fr", metadata=metadata)
    assert policy.metadata is metadata
