"""Attestation statements (packed full and self, none) against a FidoPolicy: the leaf profile,
the signature, the model rules, the path to a root listed for the AAGUID (plan D5/D6), and
each fault of the TEST attestation PKI."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from mie.core import cbor
from mie.core.errors import ErrorCode, MieError, SignatureInvalidError, VerificationError
from mie.emulation.fido_mds import TestMds
from mie.emulation.fido_pki import (
    EMULATOR_AAGUID,
    OTHER_AAGUID,
    Fault,
    TestAttestationPki,
    fixed_test_key,
)
from mie.fido.allowlist import AaguidAllowlist, AllowedKey
from mie.fido.attestation import CHAIN_PREFIX, AttestationReport, verify_attestation
from mie.fido.authdata import AT, UP, UV, AuthenticatorData
from mie.fido.errors import (
    AttestationInvalidError,
    AttestationRefusedError,
    FidoPolicyError,
    MetadataStatusError,
    UnknownAaguidError,
)
from mie.fido.mds import MetadataIndex
from mie.fido.policy import FidoPolicy, MetadataPolicy
from mie.trust import RevocationStatus

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
RP_ID = "iam.example.fr"
CDH = hashlib.sha256(b'{"type":"webauthn.create"}').digest()
CREDENTIAL_KEY = ec.derive_private_key(12345, ec.SECP256R1())


@pytest.fixture(scope="module")
def pki() -> TestAttestationPki:
    return TestAttestationPki.generate(now=NOW)


def cose_key(key: ec.EllipticCurvePrivateKey = CREDENTIAL_KEY) -> bytes:
    numbers = key.public_key().public_numbers()
    return cbor.encode(
        {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
    )


def auth_data(aaguid: bytes = EMULATOR_AAGUID, flags: int = UP | UV | AT) -> AuthenticatorData:
    credential_id = bytes(range(32))
    raw = (
        hashlib.sha256(RP_ID.encode()).digest()
        + bytes([flags])
        + (0).to_bytes(4, "big")
        + aaguid
        + len(credential_id).to_bytes(2, "big")
        + credential_id
        + cose_key()
    )
    return AuthenticatorData.parse(raw)


def packed(pki: TestAttestationPki, data: AuthenticatorData, **changes: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {"alg": -7, "sig": pki.sign(data.raw + CDH), "x5c": pki.x5c}
    statement.update(changes)
    return statement


def allowlist(*keys: AllowedKey) -> AaguidAllowlist:
    return AaguidAllowlist(keys or (AllowedKey(EMULATOR_AAGUID, "emulator", test=True),))


def policy(pki: TestAttestationPki, **changes: Any) -> FidoPolicy:
    values: dict[str, Any] = {
        "rp_id": RP_ID,
        "allowlist": allowlist(),
        "attestation_roots": (pki.root.certificate,),
    }
    values.update(changes)
    return FidoPolicy(**values)


def verify(
    statement: dict[str, Any],
    data: AuthenticatorData,
    rules: FidoPolicy,
    fmt: str = "packed",
    **kwargs: Any,
) -> AttestationReport:
    return verify_attestation(fmt, statement, data, CDH, policy=rules, at=NOW, **kwargs)


def test_packed_full_attestation(pki: TestAttestationPki) -> None:
    data = auth_data()
    report = verify(packed(pki, data), data, policy(pki))
    assert report.format == "packed"
    assert report.type == "basic"
    assert report.attested
    assert report.summary == "packed/basic"
    assert report.aaguid == EMULATOR_AAGUID
    assert report.chain == (*pki.x5c, pki.root.der)
    assert report.anchor == "CN=mie TEST FIDO Attestation Root,O=mie TEST,C=FR"
    assert report.allowed is not None and report.allowed.name == "emulator"
    assert report.entry is None
    assert report.certification is None
    assert report.test is True
    assert report.revocation is RevocationStatus.UNKNOWN
    assert any("revocation not checked" in reason for reason in report.reasons)


def test_allowlist_entry_roots_are_used_for_their_model(pki: TestAttestationPki) -> None:
    data = auth_data()
    entry = AllowedKey(EMULATOR_AAGUID, "emulator", (pki.root.certificate,), test=False)
    report = verify(
        packed(pki, data), data, policy(pki, allowlist=allowlist(entry), attestation_roots=())
    )
    assert report.attested
    assert report.test is True  # the root itself is a TEST one


def test_a_root_listed_for_another_model_does_not_vouch(pki: TestAttestationPki) -> None:
    # The TEST root is the policy's fallback root, but the emulator's entry names its own root:
    # the chain must end there (plan D6), and it does not.
    other_root = TestAttestationPki.generate(now=NOW, fault=Fault.UNKNOWN_ROOT).issuing_root
    entries = (
        AllowedKey(EMULATOR_AAGUID, "emulator", (other_root.certificate,)),
        AllowedKey(OTHER_AAGUID, "other", (pki.root.certificate,)),
    )
    data = auth_data()
    with pytest.raises(VerificationError) as info:
        verify(packed(pki, data), data, policy(pki, allowlist=allowlist(*entries)))
    assert info.value.code is ErrorCode.UNTRUSTED
    assert info.value.message.startswith(CHAIN_PREFIX)


def test_no_root_listed_for_the_model(pki: TestAttestationPki) -> None:
    data = auth_data()
    with pytest.raises(VerificationError, match="no attestation root is listed") as info:
        verify(packed(pki, data), data, policy(pki, attestation_roots=()))
    assert info.value.code is ErrorCode.UNTRUSTED


def test_unknown_aaguid_refused(pki: TestAttestationPki) -> None:
    data = auth_data()
    rules = policy(pki, allowlist=allowlist(AllowedKey(OTHER_AAGUID, "other")))
    with pytest.raises(UnknownAaguidError, match="6d69652d-5445-5354-2d46-49444f320001"):
        verify(packed(pki, data), data, rules)


CHAIN_FAULTS = {
    Fault.EXPIRED_INTERMEDIATE: ErrorCode.EXPIRED,
    Fault.INTERMEDIATE_NOT_CA: ErrorCode.NOT_CA,
    Fault.PATH_LENGTH: ErrorCode.PATH_LENGTH,
    Fault.UNKNOWN_ROOT: ErrorCode.UNTRUSTED,
    Fault.EXPIRED_LEAF: ErrorCode.EXPIRED,
    Fault.LEAF_NOT_YET_VALID: ErrorCode.NOT_YET_VALID,
    Fault.LEAF_BAD_SIGNATURE: ErrorCode.BAD_SIGNATURE,
}
LEAF_FAULTS = {
    Fault.LEAF_IS_CA: "is a CA",
    Fault.LEAF_WITHOUT_BASIC_CONSTRAINTS: "no basicConstraints",
    Fault.LEAF_WRONG_OU: "OU is not 'Authenticator Attestation'",
    Fault.LEAF_WITHOUT_CN: "no single CN",
    Fault.LEAF_WITHOUT_AAGUID: "no AAGUID extension",
    Fault.LEAF_OTHER_AAGUID: "is for AAGUID 6d69652d-5445-5354-2d4f-544845520002",
    Fault.LEAF_AAGUID_CRITICAL: "AAGUID extension is critical",
    Fault.LEAF_AAGUID_NOT_OCTET_STRING: "not a DER OCTET STRING",
}


def test_every_fault_is_tested() -> None:
    assert set(CHAIN_FAULTS) | set(LEAF_FAULTS) == set(Fault)


@pytest.mark.parametrize("fault", list(CHAIN_FAULTS), ids=lambda f: f.value)
def test_chain_fault(pki: TestAttestationPki, fault: Fault) -> None:
    faulty = TestAttestationPki.generate(now=NOW, fault=fault)
    data = auth_data()
    with pytest.raises(VerificationError) as info:
        verify(packed(faulty, data), data, policy(pki))
    assert info.value.code is CHAIN_FAULTS[fault]
    assert info.value.message.startswith(CHAIN_PREFIX)


@pytest.mark.parametrize("fault", list(LEAF_FAULTS), ids=lambda f: f.value)
def test_leaf_fault(pki: TestAttestationPki, fault: Fault) -> None:
    faulty = TestAttestationPki.generate(now=NOW, fault=fault)
    data = auth_data()
    with pytest.raises(AttestationInvalidError, match=LEAF_FAULTS[fault]) as info:
        verify(packed(faulty, data), data, policy(pki))
    assert info.value.code is ErrorCode.ATTESTATION_INVALID


def test_signature_bit_flip(pki: TestAttestationPki) -> None:
    data = auth_data()
    statement = packed(pki, data)
    signature = bytearray(statement["sig"])
    signature[-1] ^= 1
    with pytest.raises(SignatureInvalidError):
        verify({**statement, "sig": bytes(signature)}, data, policy(pki))


def test_signature_over_other_client_data(pki: TestAttestationPki) -> None:
    data = auth_data()
    statement = packed(pki, data, sig=pki.sign(data.raw + bytes(32)))
    with pytest.raises(SignatureInvalidError):
        verify(statement, data, policy(pki))


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"alg": -8}, AttestationInvalidError, "not an EdDSA key"),
        ({"alg": -257}, AttestationInvalidError, "not an RS256 key"),
        ({"alg": -35}, AttestationRefusedError, "algorithm -35"),
        ({"alg": "ES256"}, AttestationInvalidError, "alg is not an integer"),
        ({"alg": True}, AttestationInvalidError, "alg is not an integer"),
        ({"sig": b""}, AttestationInvalidError, "sig is not a byte string"),
        ({"sig": "30"}, AttestationInvalidError, "sig is not a byte string"),
        ({"x5c": []}, AttestationInvalidError, "x5c is not an array of 1 to 5"),
        ({"x5c": [b"x"] * 6}, AttestationInvalidError, "x5c is not an array of 1 to 5"),
        ({"x5c": b"cert"}, AttestationInvalidError, "x5c is not an array"),
        ({"x5c": ["cert"]}, AttestationInvalidError, "non-byte string"),
        ({"ecdaaKeyId": b"k"}, AttestationRefusedError, "ECDAA"),
        ({"ver": "2.0"}, AttestationInvalidError, "unknown member 'ver'"),
    ],
)
def test_bad_packed_statement(
    pki: TestAttestationPki, changes: dict[str, Any], error: type[MieError], message: str
) -> None:
    data = auth_data()
    with pytest.raises(error, match=message):
        verify(packed(pki, data, **changes), data, policy(pki))


@pytest.mark.parametrize(
    "der",
    [b"\x30\x03\x02\x01\x01", b"\x30" + b"\x82\xff\xff" + bytes(65535), b"garbage"],
    ids=["not-a-certificate", "over-64k", "garbage"],
)
def test_unparseable_certificate_is_malformed(pki: TestAttestationPki, der: bytes) -> None:
    data = auth_data()
    with pytest.raises(VerificationError) as info:
        verify(packed(pki, data, x5c=[pki.x5c[0], der]), data, policy(pki))
    assert info.value.code is ErrorCode.MALFORMED
    assert info.value.message.startswith(CHAIN_PREFIX + "x5c[1]")


@pytest.mark.parametrize("fmt", ["fido-u2f", "tpm", "apple", "android-key", "android-safetynet"])
def test_other_formats_refused(pki: TestAttestationPki, fmt: str) -> None:
    data = auth_data()
    with pytest.raises(AttestationRefusedError, match="is not supported"):
        verify({"sig": b"x", "x5c": pki.x5c}, data, policy(pki), fmt=fmt)


def test_unknown_format_refused(pki: TestAttestationPki) -> None:
    data = auth_data()
    with pytest.raises(AttestationRefusedError, match="not a WebAuthn format"):
        verify({}, data, policy(pki), fmt="packed2")
    with pytest.raises(AttestationRefusedError, match="not a string"):
        verify({}, data, policy(pki), fmt=5)  # type: ignore[arg-type]


def test_none_attestation(pki: TestAttestationPki) -> None:
    data = auth_data()
    with pytest.raises(AttestationRefusedError, match="None attestation refused"):
        verify({}, data, policy(pki), fmt="none")
    report = verify({}, data, policy(pki, attestation="optional"), fmt="none")
    assert report.type == "none"
    assert report.summary == "none"
    assert not report.attested
    assert report.chain == ()
    assert report.anchor is None
    assert report.test is True  # the allowlist entry says TEST
    assert "claimed, not proven" in report.reasons[0]
    with pytest.raises(AttestationInvalidError, match="not empty"):
        verify({"sig": b"x"}, data, policy(pki, attestation="optional"), fmt="none")


def test_none_attestation_still_needs_a_listed_model(pki: TestAttestationPki) -> None:
    data = auth_data(aaguid=OTHER_AAGUID)
    with pytest.raises(UnknownAaguidError):
        verify({}, data, policy(pki, attestation="optional"), fmt="none")
    unlisted = FidoPolicy(RP_ID, attestation="optional")
    assert verify({}, data, unlisted, fmt="none").allowed is None


def self_statement(data: AuthenticatorData, alg: int = -7) -> dict[str, Any]:
    return {"alg": alg, "sig": CREDENTIAL_KEY.sign(data.raw + CDH, ec.ECDSA(hashes.SHA256()))}


def test_self_attestation(pki: TestAttestationPki) -> None:
    data = auth_data()
    with pytest.raises(AttestationRefusedError, match="Self attestation refused"):
        verify(self_statement(data), data, policy(pki))
    report = verify(self_statement(data), data, policy(pki, attestation="optional"))
    assert report.type == "self"
    assert report.summary == "packed/self"
    assert not report.attested
    with pytest.raises(AttestationInvalidError, match="not the credential key's"):
        verify(self_statement(data, alg=-8), data, policy(pki, attestation="optional"))
    forged = {
        "alg": -7,
        "sig": ec.generate_private_key(ec.SECP256R1()).sign(
            data.raw + CDH, ec.ECDSA(hashes.SHA256())
        ),
    }
    with pytest.raises(SignatureInvalidError):
        verify(forged, data, policy(pki, attestation="optional"))


def test_eddsa_leaf_alg_mismatch(pki: TestAttestationPki) -> None:
    # A statement saying ES256 must come with a P-256 leaf key: an Ed25519 one is refused.
    key = ed25519.Ed25519PrivateKey.generate()
    data = auth_data()
    leaf = (
        x509.CertificateBuilder()
        .subject_name(pki.leaf.certificate.subject)
        .issuer_name(pki.intermediate.certificate.subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            pki.leaf.certificate.extensions.get_extension_for_oid(
                x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")
            ).value,
            critical=False,
        )
        .sign(pki.intermediate.key, hashes.SHA256())
    )
    x5c = [leaf.public_bytes(serialization.Encoding.DER), pki.x5c[1]]
    with pytest.raises(AttestationInvalidError, match="not an ES256 key"):
        verify(packed(pki, data, x5c=x5c, sig=key.sign(data.raw + CDH)), data, policy(pki))


def _crl(issuer: Any, revoked: Sequence[int] = ()) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(NOW - dt.timedelta(hours=1))
        .next_update(NOW + dt.timedelta(days=7))
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(NOW - dt.timedelta(hours=2))
            .build()
        )
    return builder.sign(issuer.key, hashes.SHA256())


def test_crls_checked_when_given(pki: TestAttestationPki) -> None:
    data = auth_data()
    good = (_crl(pki.intermediate), _crl(pki.root))
    report = verify(packed(pki, data), data, policy(pki, crls=good))
    assert report.revocation is RevocationStatus.GOOD
    assert not any("revocation" in reason for reason in report.reasons)
    revoked = (_crl(pki.intermediate, [pki.leaf.certificate.serial_number]), _crl(pki.root))
    with pytest.raises(VerificationError) as info:
        verify(packed(pki, data), data, policy(pki, crls=revoked))
    assert info.value.code is ErrorCode.REVOKED
    assert info.value.message.startswith(CHAIN_PREFIX)


def test_allowlist_minimum_certification_needs_metadata(pki: TestAttestationPki) -> None:
    entry = AllowedKey(EMULATOR_AAGUID, "emulator", min_certification="L2", test=True)
    data = auth_data()
    with pytest.raises(MetadataStatusError, match="no known certification"):
        verify(packed(pki, data), data, policy(pki, allowlist=allowlist(entry)))


def test_metadata_policy_without_metadata_fails_closed(pki: TestAttestationPki) -> None:
    rules = policy(pki, metadata=MetadataPolicy(Path("mds.jwt")))
    data = auth_data()
    with pytest.raises(FidoPolicyError, match="none was loaded"):
        verify(packed(pki, data), data, rules)


def test_naive_time_refused(pki: TestAttestationPki) -> None:
    data = auth_data()
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_attestation(
            "packed", packed(pki, data), data, CDH, policy=policy(pki), at=NOW.replace(tzinfo=None)
        )


def test_no_attested_credential(pki: TestAttestationPki) -> None:
    raw = hashlib.sha256(RP_ID.encode()).digest() + bytes([UP | UV]) + bytes(4)
    with pytest.raises(AttestationInvalidError, match="no attested credential"):
        verify({}, AuthenticatorData.parse(raw), policy(pki), fmt="none")


def test_fixed_keys_are_the_pkis() -> None:
    # The signature tests rely on the leaf key being the fixed TEST one in every faulty PKI.
    assert TestAttestationPki.generate(
        now=NOW, fault=Fault.LEAF_WRONG_OU
    ).leaf_key.private_numbers() == (fixed_test_key("leaf").private_numbers())


def test_unknown_revocation_is_a_reason_not_a_warning(
    pki: TestAttestationPki, caplog: pytest.LogCaptureFixture
) -> None:
    data = auth_data()
    with caplog.at_level(logging.INFO, logger="mie"):
        report = verify(packed(pki, data), data, policy(pki))
    assert report.revocation is RevocationStatus.UNKNOWN
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # Outside an attestation check, mie.trust still warns.
    logging.getLogger("mie.trust.verify").warning("Revocation status unknown (soft mode): x")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING]


# FIDO metadata (TestMds blobs read by mie.fido.mds)


@pytest.fixture(scope="module")
def mds() -> TestMds:
    return TestMds.generate(now=NOW)


def index(mds: TestMds, *entries: dict[str, Any], **load: Any) -> MetadataIndex:
    blob_options = {k: load.pop(k) for k in ("next_update",) if k in load}
    return MetadataIndex.load(
        mds.blob(list(entries), **blob_options), root=mds.root, at=NOW, **load
    )


def test_metadata_entry_roots_and_certification(pki: TestAttestationPki, mds: TestMds) -> None:
    entry = mds.entry(
        EMULATOR_AAGUID, [pki.root.certificate], statuses=(("FIDO_CERTIFIED_L2", "2026-03-01"),)
    )
    rules = FidoPolicy(RP_ID, metadata=MetadataPolicy(Path("m.jwt"), min_certification="L2"))
    data = auth_data()
    report = verify(packed(pki, data), data, rules, metadata=index(mds, entry))
    assert report.attested
    assert report.certification == "L2"
    assert report.entry is not None
    assert report.allowed is None
    assert report.test is True  # the TEST attestation root


def test_allowlist_minimum_against_metadata(pki: TestAttestationPki, mds: TestMds) -> None:
    entry = mds.entry(EMULATOR_AAGUID, [], statuses=(("FIDO_CERTIFIED_L1", "2026-03-01"),))
    metadata = MetadataPolicy(Path("m.jwt"), min_certification=None)
    data = auth_data()
    for level, accepted in (("L1", True), ("L1plus", False), ("L2", False)):
        allowed = AllowedKey(EMULATOR_AAGUID, "emulator", min_certification=level, test=True)
        rules = policy(pki, allowlist=allowlist(allowed), metadata=metadata)
        if accepted:
            # The entry lists no root: the allowlisted model falls back to the policy's roots.
            report = verify(packed(pki, data), data, rules, metadata=index(mds, entry))
            assert report.certification == "L1"
        else:
            with pytest.raises(MetadataStatusError, match=f"asks {level} at least"):
                verify(packed(pki, data), data, rules, metadata=index(mds, entry))


def test_metadata_not_required_and_absent(pki: TestAttestationPki, mds: TestMds) -> None:
    other = mds.entry(OTHER_AAGUID, [pki.root.certificate])
    data = auth_data()
    optional = MetadataPolicy(Path("m.jwt"), required=False)
    # Absent from the metadata, not allowlisted: no root is listed for the model.
    with pytest.raises(VerificationError, match="no attestation root is listed"):
        verify(
            packed(pki, data),
            data,
            FidoPolicy(RP_ID, metadata=optional),
            metadata=index(mds, other),
        )
    required = FidoPolicy(RP_ID, metadata=MetadataPolicy(Path("m.jwt")))
    with pytest.raises(UnknownAaguidError, match="not in the FIDO metadata"):
        verify(packed(pki, data), data, required, metadata=index(mds, other))


def test_stale_metadata(pki: TestAttestationPki, mds: TestMds) -> None:
    entry = mds.entry(EMULATOR_AAGUID, [pki.root.certificate])
    past = (NOW - dt.timedelta(days=2)).date()
    data = auth_data()
    warn = FidoPolicy(RP_ID, metadata=MetadataPolicy(Path("m.jwt"), stale="warn"))
    report = verify(
        packed(pki, data), data, warn, metadata=index(mds, entry, next_update=past, stale="warn")
    )
    assert any("nextUpdate" in reason for reason in report.reasons)
    refuse = FidoPolicy(RP_ID, metadata=MetadataPolicy(Path("m.jwt")))
    with pytest.raises(MieError) as info:
        verify(
            packed(pki, data),
            data,
            refuse,
            metadata=index(mds, entry, next_update=past, stale="warn"),
        )
    assert info.value.code is ErrorCode.METADATA_STALE


def test_self_attestation_checked_against_metadata(pki: TestAttestationPki, mds: TestMds) -> None:
    entry = mds.entry(
        EMULATOR_AAGUID,
        [],
        statuses=(("FIDO_CERTIFIED_L1", "2026-01-01"), ("REVOKED", "2026-05-01")),
    )
    rules = FidoPolicy(RP_ID, attestation="optional", metadata=MetadataPolicy(Path("m.jwt")))
    data = auth_data()
    with pytest.raises(MetadataStatusError, match="REVOKED since 2026-05-01"):
        verify(self_statement(data), data, rules, metadata=index(mds, entry))


@pytest.mark.parametrize("fmt", ["packed", "none"])
def test_unattested_key_of_a_model_with_a_batch_compromise(
    pki: TestAttestationPki, mds: TestMds, fmt: str
) -> None:
    # A compromise report naming one batch's certificate: a self or none attested key shows no
    # chain, so nothing tells it is not of that batch: refused, as its assertions would be.
    entry = mds.entry(
        EMULATOR_AAGUID,
        [],
        statuses=(
            ("FIDO_CERTIFIED_L1", "2026-01-01"),
            ("ATTESTATION_KEY_COMPROMISE", "2026-05-01", pki.x5c[0]),
        ),
    )
    rules = FidoPolicy(RP_ID, attestation="optional", metadata=MetadataPolicy(Path("m.jwt")))
    data = auth_data()
    statement = self_statement(data) if fmt == "packed" else {}
    with pytest.raises(MetadataStatusError, match="ATTESTATION_KEY_COMPROMISE since 2026-05-01"):
        verify(statement, data, rules, fmt=fmt, metadata=index(mds, entry))
    # Not refused under a policy that does not refuse the status.
    lenient = FidoPolicy(
        RP_ID,
        attestation="optional",
        metadata=MetadataPolicy(Path("m.jwt"), refuse=frozenset({"REVOKED"})),
    )
    assert verify(statement, data, lenient, fmt=fmt, metadata=index(mds, entry)).type in (
        "self",
        "none",
    )
