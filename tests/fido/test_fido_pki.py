"""The TEST FIDO attestation PKI: profile (asn1crypto), chain (openssl, mie.trust), python-fido2."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import core  # type: ignore[import-untyped]
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mie.emulation import fido_pki
from mie.emulation.fido_pki import (
    EMULATOR_AAGUID,
    OTHER_AAGUID,
    Fault,
    TestAttestationPki,
    fixed_test_key,
)
from mie.trust import RevocationMode, TrustStore, Usage, VerificationError, VerifierBuilder
from tests.harness import missing

NOW = dt.datetime(2026, 12, 1, 15, 40, 7, tzinfo=dt.UTC)
DAY = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
AAGUID_OID = "1.3.6.1.4.1.45724.1.1.4"

CHAIN_FAULTS = {
    Fault.EXPIRED_INTERMEDIATE: ("expired", "certificate has expired"),
    Fault.INTERMEDIATE_NOT_CA: ("not_ca", "key usage does not include certificate signing"),
    Fault.PATH_LENGTH: ("path_length", "path length constraint exceeded"),
    Fault.UNKNOWN_ROOT: ("untrusted", "unable to get local issuer certificate"),
    Fault.EXPIRED_LEAF: ("expired", "certificate has expired"),
    Fault.LEAF_NOT_YET_VALID: ("not_yet_valid", "certificate is not yet valid"),
    Fault.LEAF_BAD_SIGNATURE: ("bad_signature", "certificate signature failure"),
    Fault.LEAF_AAGUID_CRITICAL: ("unknown_critical_extension", "unhandled critical extension"),
}
PROFILE_FAULTS = [f for f in Fault if f not in CHAIN_FAULTS]


def _generate(fault: Fault | None = None, now: dt.datetime = NOW) -> TestAttestationPki:
    return TestAttestationPki.generate(now=now, fault=fault)


def _parse(der: bytes) -> ax509.Certificate:
    return ax509.Certificate.load(der, strict=True)


def _subject(der: bytes) -> list[tuple[str, str, str]]:
    rdns = _parse(der)["tbs_certificate"]["subject"].chosen
    return [
        (a["type"].native, a["value"].native, type(a["value"].chosen).__name__)
        for rdn in rdns
        for a in rdn
    ]


def _extensions(der: bytes) -> dict[str, tuple[bool, Any]]:
    """:return: OID -> (critical, parsed value, or the raw contents of an unknown extension)."""
    found = {}
    for extension in _parse(der)["tbs_certificate"]["extensions"]:
        value = extension["extn_value"]
        parsed = value.contents if extension["extn_id"].dotted == AAGUID_OID else value.native
        found[extension["extn_id"].dotted] = (extension["critical"].native, parsed)
    return found


def _aaguid_extension(der: bytes) -> tuple[bool, bytes]:
    critical, contents = _extensions(der)[AAGUID_OID]
    return critical, contents


def _validity(der: bytes) -> tuple[dt.datetime, dt.datetime]:
    validity = _parse(der)["tbs_certificate"]["validity"]
    return validity["not_before"].native, validity["not_after"].native


def test_emulator_aaguid_is_pinned() -> None:
    assert str(uuid.UUID(bytes=EMULATOR_AAGUID)) == "6d69652d-5445-5354-2d46-49444f320001"
    assert len(OTHER_AAGUID) == 16
    assert OTHER_AAGUID != EMULATOR_AAGUID


@pytest.mark.parametrize(
    ("label", "spki_sha256"),
    [
        ("root", "eb904b08b31e41137bbbbd689b301c36861f7397632830d543aeabef1e97a6b2"),
        ("leaf", "877a75f10339beb98dfe1e4a3b5b16861842545632a58c7c8ab354864506407a"),
    ],
)
def test_keys_are_fixed(label: str, spki_sha256: str) -> None:
    # Pinned: TEST metadata and saved directories signed over these keys stay verifiable.
    spki = (
        fixed_test_key(label)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert hashlib.sha256(spki).hexdigest() == spki_sha256
    pki = _generate()
    issued = pki.root if label == "root" else pki.leaf
    assert issued.certificate.public_key() == issued.key.public_key()
    assert issued.key.private_numbers() == fixed_test_key(label).private_numbers()


def test_same_utc_day_same_bytes_next_day_other_dates() -> None:
    early = _generate(now=DAY + dt.timedelta(seconds=1))
    late = _generate(now=dt.datetime(2026, 12, 2, 0, 59, tzinfo=dt.timezone(dt.timedelta(hours=2))))
    assert (early.root.der, early.x5c) == (late.root.der, late.x5c)
    tomorrow = _generate(now=DAY + dt.timedelta(days=1, seconds=1))
    assert tomorrow.root.der != early.root.der
    assert _validity(tomorrow.root.der)[0] == DAY


def test_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        TestAttestationPki.generate(now=dt.datetime(2026, 12, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        TestAttestationPki.load(tmp_path / "pki", now=dt.datetime(2026, 12, 1))
    assert not (tmp_path / "pki").exists()
    with pytest.raises(ValueError, match="16 bytes"):
        TestAttestationPki.generate(now=NOW, aaguid=b"\x00" * 15)


def test_leaf_meets_the_packed_attestation_profile() -> None:
    der = _generate().leaf.der
    tbs = _parse(der)["tbs_certificate"]
    assert tbs["version"].native == "v3"
    assert tbs["serial_number"].native > 0
    assert tbs["signature"]["algorithm"].native == "sha256_ecdsa"
    assert tbs["subject_public_key_info"]["algorithm"]["parameters"].chosen.native == "secp256r1"
    assert _subject(der) == [
        ("country_name", "FR", "PrintableString"),
        ("organization_name", "mie TEST", "UTF8String"),
        ("organizational_unit_name", "Authenticator Attestation", "UTF8String"),
        ("common_name", "mie TEST emulated authenticator", "UTF8String"),
    ]
    extensions = _extensions(der)
    assert extensions["2.5.29.19"] == (True, {"ca": False, "path_len_constraint": None})
    assert extensions["2.5.29.15"] == (True, {"digital_signature"})
    assert "2.5.29.35" in extensions
    assert "2.5.29.14" in extensions
    critical, contents = _aaguid_extension(der)
    assert critical is False
    assert core.OctetString.load(contents, strict=True).native == EMULATOR_AAGUID
    assert _validity(der) == (DAY - dt.timedelta(days=1), DAY + dt.timedelta(days=5 * 365))


def test_other_aaguid_parameter_goes_into_the_leaf() -> None:
    pki = TestAttestationPki.generate(now=NOW, aaguid=OTHER_AAGUID)
    contents = _aaguid_extension(pki.leaf.der)[1]
    assert core.OctetString.load(contents, strict=True).native == OTHER_AAGUID
    assert pki.aaguid == OTHER_AAGUID


@pytest.mark.parametrize(("position", "path_length", "years"), [("root", 1, 20), ("ca", 0, 10)])
def test_ca_certificates(position: str, path_length: int, years: int) -> None:
    pki = _generate()
    issued = pki.root if position == "root" else pki.intermediate
    extensions = _extensions(issued.der)
    assert extensions["2.5.29.19"] == (True, {"ca": True, "path_len_constraint": path_length})
    assert extensions["2.5.29.15"] == (True, {"key_cert_sign", "crl_sign"})
    assert {"2.5.29.14", "2.5.29.35"} <= extensions.keys()
    assert _validity(issued.der) == (
        DAY - dt.timedelta(days=1),
        DAY + dt.timedelta(days=years * 365),
    )
    assert issued.certificate.issuer == pki.root.certificate.subject
    assert "TEST" in issued.certificate.subject.rfc4514_string()
    assert pki.x5c == [pki.leaf.der, pki.intermediate.der]


def test_sign_is_the_batch_key() -> None:
    pki = _generate()
    signature = pki.sign(b"authData" + bytes(32))
    public = pki.leaf.certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, b"authData" + bytes(32), ec.ECDSA(hashes.SHA256()))
    assert pki.leaf_key is pki.leaf.key


def _openssl(pki: TestAttestationPki, directory: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("openssl") is None:
        missing("openssl is not installed (Debian package openssl)")
    (directory / "root.pem").write_bytes(pki.root_pem)
    (directory / "untrusted.pem").write_bytes(b"".join(issued.pem for issued in pki.chain[1:]))
    (directory / "leaf.pem").write_bytes(pki.leaf.pem)
    command = ["openssl", "verify", "-x509_strict", "-purpose", "any"]
    command += ["-attime", str(int(NOW.timestamp())), "-CAfile", str(directory / "root.pem")]
    command += ["-untrusted", str(directory / "untrusted.pem"), str(directory / "leaf.pem")]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def test_openssl_verifies_the_good_chain(tmp_path: Path) -> None:
    result = _openssl(_generate(), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("leaf.pem: OK")


@pytest.mark.parametrize("fault", list(CHAIN_FAULTS), ids=lambda f: f.value)
def test_openssl_refuses_chain_faults(fault: Fault, tmp_path: Path) -> None:
    result = _openssl(_generate(fault), tmp_path)
    assert result.returncode != 0
    assert CHAIN_FAULTS[fault][1] in result.stdout + result.stderr


@pytest.mark.parametrize("fault", PROFILE_FAULTS, ids=lambda f: f.value)
def test_openssl_accepts_profile_faults(fault: Fault, tmp_path: Path) -> None:
    # The chain is sound: only the attestation profile is wrong, which the verifier must check
    # itself.
    result = _openssl(_generate(fault), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def _verify(pki: TestAttestationPki) -> None:
    verifier = (
        VerifierBuilder()
        .store(TrustStore.from_certificates([pki.root.certificate], test=True))
        .usage(Usage.ANY)
        .time(NOW)
        .revocation(RevocationMode.SOFT)
        .build()
    )
    result = verifier.verify(pki.leaf.certificate, [c.certificate for c in pki.chain[1:]])
    assert result.chain == (*pki.x5c, pki.root.der)


def test_mie_trust_verifies_the_good_chain() -> None:
    _verify(_generate())


@pytest.mark.parametrize("fault", list(CHAIN_FAULTS), ids=lambda f: f.value)
def test_mie_trust_codes(fault: Fault) -> None:
    with pytest.raises(VerificationError) as caught:
        _verify(_generate(fault))
    assert caught.value.code.value == CHAIN_FAULTS[fault][0]


@pytest.mark.parametrize("fault", PROFILE_FAULTS, ids=lambda f: f.value)
def test_mie_trust_does_not_check_the_attestation_profile(fault: Fault) -> None:
    # What the FIDO verifier has to check on top of mie.trust (attestation_invalid).
    _verify(_generate(fault))


def _signed_by(der: bytes, label: str) -> bool:
    certificate = x509.load_der_x509_certificate(der)
    try:
        fixed_test_key(label).public_key().verify(
            certificate.signature, certificate.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256())
        )
    except InvalidSignature:
        return False
    return True


def _subject_types(der: bytes) -> dict[str, str]:
    return {kind: value for kind, value, _ in _subject(der)}


def _octets(der: bytes) -> bytes:
    return core.OctetString.load(_aaguid_extension(der)[1], strict=True).native


NAMED: dict[Fault, tuple[str, Callable[[bytes], bool]]] = {
    Fault.EXPIRED_INTERMEDIATE: ("intermediate", lambda d: _validity(d)[1] < NOW),
    Fault.INTERMEDIATE_NOT_CA: ("intermediate", lambda d: not _extensions(d)["2.5.29.19"][1]["ca"]),
    Fault.PATH_LENGTH: (
        "sub-ca",
        lambda d: _extensions(d)["2.5.29.19"][1]["ca"] and "Sub-CA" in str(_subject(d)),
    ),
    Fault.UNKNOWN_ROOT: ("intermediate", lambda d: "Unknown Root" in str(_parse(d).issuer.native)),
    Fault.EXPIRED_LEAF: ("leaf", lambda d: _validity(d)[1] < NOW),
    Fault.LEAF_NOT_YET_VALID: ("leaf", lambda d: _validity(d)[0] > NOW),
    Fault.LEAF_BAD_SIGNATURE: ("leaf", lambda d: not _signed_by(d, "intermediate")),
    Fault.LEAF_IS_CA: ("leaf", lambda d: _extensions(d)["2.5.29.19"][1]["ca"]),
    Fault.LEAF_WITHOUT_BASIC_CONSTRAINTS: ("leaf", lambda d: "2.5.29.19" not in _extensions(d)),
    Fault.LEAF_WRONG_OU: (
        "leaf",
        lambda d: _subject_types(d)["organizational_unit_name"] != "Authenticator Attestation",
    ),
    Fault.LEAF_WITHOUT_CN: ("leaf", lambda d: "common_name" not in _subject_types(d)),
    Fault.LEAF_WITHOUT_AAGUID: ("leaf", lambda d: AAGUID_OID not in _extensions(d)),
    Fault.LEAF_OTHER_AAGUID: ("leaf", lambda d: _octets(d) == OTHER_AAGUID),
    Fault.LEAF_AAGUID_CRITICAL: (
        "leaf",
        lambda d: _aaguid_extension(d) == (True, b"\x04\x10" + EMULATOR_AAGUID),
    ),
    Fault.LEAF_AAGUID_NOT_OCTET_STRING: (
        "leaf",
        lambda d: _aaguid_extension(d) == (False, EMULATOR_AAGUID),
    ),
}


def test_every_fault_is_named() -> None:
    assert set(NAMED) == set(Fault)


@pytest.mark.parametrize("fault", list(Fault), ids=lambda f: f.value)
def test_fault_builds_the_certificate_it_names(fault: Fault) -> None:
    good, bad = _generate(), _generate(fault)
    which, check = NAMED[fault]
    faulty = {"leaf": bad.leaf, "intermediate": bad.intermediate, "sub-ca": bad.chain[1]}[which]
    assert check(faulty.der)
    assert not check((good.leaf if which == "leaf" else good.intermediate).der)
    # Only the named certificate differs (the leaf too when a CA is inserted above it).
    assert bad.root.der == good.root.der
    if which == "leaf":
        assert bad.x5c[1:] == good.x5c[1:]
        assert bad.leaf.der != good.leaf.der
    elif which == "intermediate":
        assert bad.leaf.der == good.leaf.der
        assert bad.intermediate.der != good.intermediate.der
    else:
        assert bad.intermediate.der == good.intermediate.der
        assert len(bad.chain) == 3
    assert bad.fault is fault


def test_bad_signature_leaf_names_the_ca_but_another_key_signed_it() -> None:
    pki = _generate(Fault.LEAF_BAD_SIGNATURE)
    leaf, ca = pki.leaf.certificate, pki.intermediate.certificate
    assert leaf.issuer == ca.subject
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    with pytest.raises(InvalidSignature):
        leaf.verify_directly_issued_by(ca)
    _generate().leaf.certificate.verify_directly_issued_by(ca)


def test_unknown_root_keeps_the_genuine_root_as_anchor() -> None:
    pki = _generate(Fault.UNKNOWN_ROOT)
    assert pki.root.der == _generate().root.der
    assert pki.issuing_root.der != pki.root.der
    pki.intermediate.certificate.verify_directly_issued_by(pki.issuing_root.certificate)


def _packed(pki: TestAttestationPki) -> tuple[Any, Any]:
    """python-fido2 (independent) verifies a packed statement signed by the leaf."""
    try:
        from fido2 import cbor
        from fido2.attestation.packed import PackedAttestation
        from fido2.webauthn import AuthenticatorData
    except ImportError:
        missing("python-fido2 is not installed (pip install 'mie[fido]')")
    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    cose = {
        1: 2,
        3: -7,
        -1: 1,
        -2: numbers.x.to_bytes(32, "big"),
        -3: numbers.y.to_bytes(32, "big"),
    }
    credential_id = bytes(range(16))
    raw = hashlib.sha256(b"iam.example").digest() + b"\x45" + bytes(4) + EMULATOR_AAGUID
    raw += len(credential_id).to_bytes(2, "big") + credential_id + cbor.encode(cose)
    client_data_hash = hashlib.sha256(b"client data").digest()
    statement = {"alg": -7, "sig": pki.sign(raw + client_data_hash), "x5c": pki.x5c}
    verify = PackedAttestation().verify
    return verify, (statement, AuthenticatorData(raw), client_data_hash)


def test_python_fido2_accepts_the_good_leaf() -> None:
    verify, arguments = _packed(_generate())
    result = verify(*arguments)
    assert result.trust_path == _generate().x5c


@pytest.mark.parametrize(
    "fault",
    [
        Fault.LEAF_IS_CA,
        Fault.LEAF_WITHOUT_BASIC_CONSTRAINTS,
        Fault.LEAF_WRONG_OU,
        Fault.LEAF_WITHOUT_CN,
        Fault.LEAF_OTHER_AAGUID,
        Fault.LEAF_AAGUID_CRITICAL,
        Fault.LEAF_AAGUID_NOT_OCTET_STRING,
    ],
    ids=lambda f: f.value,
)
def test_python_fido2_refuses_profile_faults(fault: Fault) -> None:
    verify, arguments = _packed(_generate(fault))
    from fido2.attestation.base import InvalidData

    with pytest.raises(InvalidData):
        verify(*arguments)


def test_python_fido2_accepts_a_leaf_without_aaguid() -> None:
    # WebAuthn §8.2.1 makes the extension optional for a single-model root: mie's verifier is
    # stricter (issue 10), python-fido2 is not, so this fault is mie's own to refuse.
    verify, arguments = _packed(_generate(Fault.LEAF_WITHOUT_AAGUID))
    verify(*arguments)


def _same(one: TestAttestationPki, other: TestAttestationPki) -> bool:
    return (one.root.der, one.x5c, one.aaguid) == (other.root.der, other.x5c, other.aaguid)


def test_load_saves_once_and_reads_back(tmp_path: Path) -> None:
    first = TestAttestationPki.load(tmp_path, now=NOW)
    assert _same(first, _generate())
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        [
            fido_pki.ROOT_FILE,
            fido_pki.INTERMEDIATE_FILE,
            fido_pki.LEAF_FILE,
            fido_pki.LAYOUT_FILE,
            fido_pki.LOCK_FILE,
        ]
    )
    assert (tmp_path / fido_pki.ROOT_FILE).stat().st_mode & 0o777 == 0o644
    later = TestAttestationPki.load(tmp_path, now=NOW + dt.timedelta(days=30))
    assert later.x5c == first.x5c
    assert later.root.der == first.root.der


@pytest.mark.parametrize("damage", ["layout", "foreign-key", "garbage", "expired"])
def test_load_rebuilds_what_it_cannot_use(tmp_path: Path, damage: str) -> None:
    TestAttestationPki.load(tmp_path, now=NOW)
    at = NOW
    if damage == "layout":
        (tmp_path / fido_pki.LAYOUT_FILE).write_text("0\n")
    elif damage == "foreign-key":
        other = TestAttestationPki.generate(now=NOW, fault=Fault.UNKNOWN_ROOT).issuing_root
        (tmp_path / fido_pki.ROOT_FILE).write_bytes(other.pem)
    elif damage == "garbage":
        (tmp_path / fido_pki.LEAF_FILE).write_bytes(b"-----BEGIN CERTIFICATE-----\nAA\n")
    else:
        at = NOW + dt.timedelta(days=6 * 365)
    rebuilt = TestAttestationPki.load(tmp_path, now=at)
    assert _same(rebuilt, _generate(now=at))
    assert (tmp_path / fido_pki.ROOT_FILE).read_bytes() == rebuilt.root_pem


def test_a_faulty_pki_is_not_saved(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not saved"):
        _generate(Fault.LEAF_WRONG_OU).save(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_test_root_is_never_trusted_by_default(tmp_path: Path) -> None:
    root = _generate().root.certificate
    assert root not in TrustStore.bundled()
    assert root not in TrustStore.default(tmp_path / "operator")
    assert all("mie TEST FIDO" not in a.name for a in TrustStore.default(tmp_path / "operator"))
