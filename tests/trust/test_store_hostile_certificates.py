"""Certificates cryptography loads but cannot fully read raise only mie's errors, in one line
(issue 7, items 12 and 13): identity, verifier, trust store, and `mie verify-cert --json`.

The card path hands certificates loaded by cryptography alone (no strict asn1crypto pass), so
these are built as cryptography objects; the CLI cases go through the strict file parser too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from asn1crypto import core as acore  # type: ignore[import-untyped]
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import ExtensionOID

from mie.emulation.testpki import OID_NOS_PROFESSION, Gamme, Issued
from mie.emulation.testpki import TestPki as Pki
from mie.trust import (
    ErrorCode,
    RevocationMode,
    TrustStore,
    VerificationError,
    VerifierBuilder,
    identity_from_certificate,
)
from mie.trust.store import Anchor, OperatorStore
from tests.trust.conftest import NOW, Files, cli, make_cert, person

RSA_ENCRYPTION = bytes.fromhex("06092A864886F70D010101")
UNKNOWN_KEY = bytes.fromhex("06092A864886F70D010163")  # 1.2.840.113549.1.1.99
COMMON_NAME = bytes.fromhex("0603550403")


def _tlv(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes([tag, size]) + body
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + body


def _patched(cert: x509.Certificate, issuer: Issued, change: Callable[[bytes], bytes]) -> bytes:
    """The certificate with its TBS bytes changed by ``change``, signed again by ``issuer``."""
    parsed = ax509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    tbs = change(parsed["tbs_certificate"].dump())
    signature = issuer.key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    algorithm = parsed["signature_algorithm"].dump()
    return _tlv(0x30, tbs + algorithm + acore.OctetBitString(signature).dump())


def _retag_common_name(tag: int) -> Callable[[bytes], bytes]:
    def change(tbs: bytes) -> bytes:
        # The subject's CN is the last one in the TBS (the issuer's comes first).
        at = tbs.rindex(COMMON_NAME) + len(COMMON_NAME)
        return tbs[:at] + bytes([tag]) + tbs[at + 1 :]

    return change


def _unknown_key(tbs: bytes) -> bytes:
    assert tbs.count(RSA_ENCRYPTION) == 1
    return tbs.replace(RSA_ENCRYPTION, UNKNOWN_KEY)


def _duplicate_extension(tbs: bytes) -> bytes:
    parsed = ax509.TbsCertificate.load(tbs)
    extensions = list(parsed["extensions"])
    parsed["extensions"] = ax509.Extensions([*extensions, extensions[0]])
    return bytes(parsed.dump(force=True))


def _leaf(pki: Pki, **kw: object) -> Issued:
    return make_cert(pki.intermediates[Gamme.FORT], person(), **kw)  # type: ignore[arg-type]


def _hostile(pki: Pki) -> dict[str, x509.Certificate]:
    issuer = pki.intermediates[Gamme.FORT]
    plain = _leaf(pki).certificate
    x400 = x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x02\xa3\x00")
    huge = x509.UnrecognizedExtension(OID_NOS_PROFESSION, _tlv(0x02, b"\x01" + b"\x00" * 2000))
    ders = {
        "duplicate-extension": _patched(plain, issuer, _duplicate_extension),
        "unknown-key": _patched(plain, issuer, _unknown_key),
        "cn-integer": _patched(plain, issuer, _retag_common_name(0x02)),
        "cn-bit-string": _patched(plain, issuer, _retag_common_name(0x03)),
        "cn-ia5": _patched(plain, issuer, _retag_common_name(0x16)),
        "x400-address": _leaf(pki, extra=[(x400, False)]).certificate.public_bytes(
            serialization.Encoding.DER
        ),
        "huge-nos-integer": _leaf(pki, extra=[(huge, False)]).certificate.public_bytes(
            serialization.Encoding.DER
        ),
    }
    return {name: x509.load_der_x509_certificate(der) for name, der in ders.items()}


NAMES = [
    "duplicate-extension",
    "unknown-key",
    "cn-integer",
    "cn-bit-string",
    "cn-ia5",
    "x400-address",
    "huge-nos-integer",
]
# Problems only the identity reader sees (the chain check reads no names or NOS values), and
# one only the chain check sees (the identity needs no key).
IDENTITY_ONLY = {"cn-ia5", "huge-nos-integer"}
CHAIN_ONLY = {"unknown-key"}


def _one_line_malformed(error: VerificationError) -> None:
    assert error.code is ErrorCode.MALFORMED, error.message
    assert "\n" not in error.message and len(error.message) < 300, error.message


@pytest.mark.parametrize("name", [n for n in NAMES if n not in CHAIN_ONLY])
def test_identity_raises_malformed(pki: Pki, name: str) -> None:
    cert = _hostile(pki)[name]
    with pytest.raises(VerificationError) as caught:
        identity_from_certificate(cert)
    _one_line_malformed(caught.value)


def _verifier(pki: Pki) -> VerifierBuilder:
    store = TrustStore.from_certificates([pki.roots[Gamme.FORT].certificate], test=True)
    return VerifierBuilder().store(store).revocation(RevocationMode.SOFT)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in IDENTITY_ONLY])
def test_verifier_raises_malformed_for_a_leaf(pki: Pki, name: str) -> None:
    cert = _hostile(pki)[name]
    with pytest.raises(VerificationError) as caught:
        _verifier(pki).build().verify(cert, [pki.intermediates[Gamme.FORT].certificate])
    _one_line_malformed(caught.value)


def test_verifier_raises_malformed_for_an_intermediate_with_an_unknown_key(pki: Pki) -> None:
    root = pki.roots[Gamme.FORT]
    ca = x509.load_der_x509_certificate(
        _patched(pki.intermediates[Gamme.FORT].certificate, root, _unknown_key)
    )
    with pytest.raises(VerificationError) as caught:
        _verifier(pki).build().verify(_leaf(pki).certificate, [ca])
    _one_line_malformed(caught.value)


def test_trust_store_refuses_an_unreadable_anchor(pki: Pki) -> None:
    root = pki.roots[Gamme.FORT]
    broken = x509.load_der_x509_certificate(_patched(root.certificate, root, _duplicate_extension))
    with pytest.raises(VerificationError) as caught:
        TrustStore([Anchor(broken, None, None, True, "explicit")])
    _one_line_malformed(caught.value)
    with pytest.raises(VerificationError) as caught:
        OperatorStore(Path("unused")).check(broken, allow_test=True)
    _one_line_malformed(caught.value)


@pytest.mark.parametrize("name", NAMES)
def test_verify_cert_json_for_hostile_leaf(
    capsys: pytest.CaptureFixture[str],
    files: Files,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    monkeypatch.setenv("MIE_TRUST_DIR", str(tmp_path / "empty"))
    der = _hostile(files.pki)[name].public_bytes(serialization.Encoding.DER)
    path = files.write(f"{name}.der", der)
    args = ("--json", "--intermediate", files.ca(), "--trust", files.root_cert())
    code, out, err = cli(
        capsys, "verify-cert", path, *args, "--crl", files.crl(), "--crl", files.arl()
    )
    assert code == 2, out
    assert out["valid"] is False and out["error"]["code"] == "malformed"
    assert f"{name}.der" in out["error"]["message"]
    assert err.count("\n") == 1 and err.startswith("mie: error: ") and "internal" not in err


def test_rfc5280_engine_raises_malformed_for_inputs_it_cannot_read(pki: Pki) -> None:
    from mie.trust import fallback

    if not fallback.available():
        pytest.skip("pyhanko-certvalidator is not installed (mie[rfc5280])")
    leaf = _leaf(pki).certificate.public_bytes(serialization.Encoding.DER)
    with pytest.raises(VerificationError) as caught:
        fallback.validate(
            leaf, [], [b"\x30\x03\x02\x01\x00"], [], NOW, hard=True, legacy_algorithms=False
        )
    _one_line_malformed(caught.value)
