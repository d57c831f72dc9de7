"""Bad input is ``malformed`` naming the file (exit 2); real ANS certificates; trust store CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms  # type: ignore[import-untyped]
from asn1crypto import x509 as ax509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from mie.trust import (
    ErrorCode,
    TrustStore,
    VerificationError,
    identity_from_certificate,
    load_certificates,
)
from mie.trust.identity import parse_id_nat
from tests.trust.conftest import Files, cli

ANS = Path(__file__).resolve().parents[3] / "shared" / "data" / "ans"
ELEMENTAIRE_SHA256 = (
    "2d:9e:22:ca:19:f7:77:c6:b7:45:25:7c:72:3e:cb:8d:"
    "f3:c3:5f:a6:f1:f6:ec:36:b8:36:00:c9:73:46:96:7f"
)


def _ans(name: str) -> bytes:
    path = ANS / name
    if not path.exists():
        pytest.skip(f"ANS data missing at {path}")
    return path.read_bytes()


def test_real_test_cps3_identity() -> None:
    (cert,) = load_certificates(_ans("test-cps3-signature-infirmier.pem"), "cps3")
    identity = identity_from_certificate(cert)
    assert identity.id_type == "ADELI"
    assert identity.id_nat == "00B6087510"
    assert identity.id == "0B6087510"
    assert identity.profession_code == "60"
    assert identity.card_type == "CPS"
    assert identity.test_card is True
    assert (identity.given_name, identity.family_name) == ("OLIVIER", "INFIRMCS ADELI8751")
    assert identity.card_serial == "8025000001/2800636234"


def test_real_elementaire_root_is_in_default_store(capsys: pytest.CaptureFixture[str]) -> None:
    store = TrustStore.bundled()
    (anchor,) = list(store)
    assert anchor.fingerprint == ELEMENTAIRE_SHA256
    assert anchor.gamme is not None and anchor.gamme.value == "ELEMENTAIRE"
    assert not anchor.test
    code, out, _ = cli(capsys, "trust", "list", "--json")
    assert code == 0
    assert ELEMENTAIRE_SHA256 in [c["sha256"] for c in out["certificates"]]


@pytest.mark.parametrize(
    ("id_nat", "expected"),
    [
        ("899700075122", ("RPPS", "99700075122")),
        ("00B6087510", ("ADELI", "0B6087510")),
        ("3760021832/000000018", ("FINESS", "760021832/000000018")),
        ("500000000029751/CPAT0001", ("SIRET", "00000000029751/CPAT0001")),
        ("4187512751/X1", ("SIREN", "187512751/X1")),
        ("4f0b7c1e-5d2a-4c8e-9a3b-6e1f2d7c8b90", ("PSI", "4f0b7c1e-5d2a-4c8e-9a3b-6e1f2d7c8b90")),
    ],
)
def test_id_nat_forms(id_nat: str, expected: tuple[str, str]) -> None:
    assert parse_id_nat(id_nat) == expected


@pytest.mark.parametrize("id_nat", ["899700075123", "2123456789", "0ABC", "5123/X", "3760021832"])
def test_broken_identifiers_are_malformed(id_nat: str) -> None:
    with pytest.raises(VerificationError) as info:
        parse_id_nat(id_nat)
    assert info.value.code is ErrorCode.MALFORMED


def _resigned(files: Files, der: bytes, change: Any) -> bytes:
    """Re-encode a certificate after ``change`` and sign it again with the FORT CA key."""
    cert = ax509.Certificate.load(der)
    tbs = cert["tbs_certificate"]
    change(tbs)
    key = files.pki.intermediates[next(iter(files.pki.intermediates))].key
    signature = key.sign(tbs.dump(force=True), padding.PKCS1v15(), hashes.SHA256())
    return ax509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": cert["signature_algorithm"],
            "signature_value": signature,
        }
    ).dump(force=True)


def _bad_inputs(files: Files, cps: Any) -> dict[str, bytes]:
    der = cps.authentication.certificate.public_bytes(serialization.Encoding.DER)
    start = der.index(b"\x17\x0d")  # notBefore UTCTime
    bad_time = der[: start + 2] + b"991332250000Z" + der[start + 15 :]

    def negative(tbs: Any) -> None:
        tbs["serial_number"] = -42

    return {
        "truncated.der": der[:-20],
        "garbage.der": b"\x30\x82\x01\x00" + b"\x00" * 16,
        "garbage.pem": b"-----BEGIN CERTIFICATE-----\nTUlF!!!\n-----END CERTIFICATE-----\n",
        "truncated.pem": b"-----BEGIN CERTIFICATE-----\nMIIB\n",
        "negative-serial.der": _resigned(files, der, negative),
        "bad-time.der": bad_time,
    }


@pytest.mark.parametrize(
    "name",
    [
        "truncated.der",
        "garbage.der",
        "garbage.pem",
        "truncated.pem",
        "negative-serial.der",
        "bad-time.der",
    ],
)
def test_bad_leaf_is_malformed(
    capsys: pytest.CaptureFixture[str], files: Files, cps: Any, name: str
) -> None:
    path = files.write(name, _bad_inputs(files, cps)[name])
    code, out, err = cli(capsys, "verify-cert", path, "--json", "--trust", files.root_cert())
    assert code == 2
    assert out["error"]["code"] == "malformed"
    assert name in out["error"]["message"]
    assert name in err and "Traceback" not in err


def test_crl_that_does_not_parse(
    capsys: pytest.CaptureFixture[str], files: Files, cps: Any
) -> None:
    leaf = files.cert("l.pem", cps.authentication.certificate)
    crl = files.write("broken.crl", b"\x30\x03\x02\x01")
    code, out, _ = cli(capsys, "verify-cert", leaf, "--json", "--crl", crl)
    assert code == 2
    assert out["error"]["code"] == "malformed" and "broken.crl" in out["error"]["message"]


def test_p7b_without_certificates(capsys: pytest.CaptureFixture[str], files: Files) -> None:
    empty = cms.ContentInfo(
        {
            "content_type": "signed_data",
            "content": {
                "version": "v1",
                "digest_algorithms": [],
                "encap_content_info": {"content_type": "data"},
                "signer_infos": [],
            },
        }
    )
    path = files.write("empty.p7b", empty.dump())
    code, _, err = cli(capsys, "trust", "import", path)
    assert code == 2
    assert "empty.p7b" in err and "no certificate" in err


def test_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = cli(capsys, "verify-cert", str(tmp_path / "nope.pem"), "--json")
    assert code == 2 and "nope.pem" in out["error"]["message"]


def _p7b(*certs: Any) -> bytes:
    return cms.ContentInfo(
        {
            "content_type": "signed_data",
            "content": {
                "version": "v1",
                "digest_algorithms": [],
                "encap_content_info": {"content_type": "data"},
                "certificates": [
                    ax509.Certificate.load(c.public_bytes(serialization.Encoding.DER))
                    for c in certs
                ],
                "signer_infos": [],
            },
        }
    ).dump()


def test_trust_import_list_remove(
    capsys: pytest.CaptureFixture[str],
    files: Files,
    cps: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mie.emulation.testpki import Gamme

    monkeypatch.setenv("MIE_TRUST_DIR", str(tmp_path / "trust"))
    root = files.pki.roots[Gamme.FORT].certificate
    bundle = files.write("chain.p7b", _p7b(root, files.pki.intermediates[Gamme.FORT].certificate))
    code, _, err = cli(capsys, "trust", "import", bundle)
    assert code == 2 and "--test" in err  # TEST CAs only on explicit request
    code, out, _ = cli(capsys, "trust", "import", bundle, "--test", "--json")
    assert code == 0
    kinds = {r["kind"]: r for r in out["imported"]}
    assert kinds["anchor"]["gamme"] == "FORT" and kinds["anchor"]["test"] is True
    assert kinds["intermediate"]["domain"] == "PERSONNES"
    # The operator store now completes and anchors the chain; the result is flagged TEST.
    leaf = files.cert("l.pem", cps.authentication.certificate)
    code, out, _ = cli(capsys, "verify-cert", leaf, "--json", "--revocation", "soft")
    assert code == 0, out
    assert out["identity"]["test_card"] is True
    code, out, _ = cli(capsys, "trust", "list", "--json")
    assert len(out["certificates"]) == 3
    code, _, _ = cli(capsys, "trust", "remove", kinds["anchor"]["sha256"][:23])
    assert code == 0
    code, out, _ = cli(capsys, "verify-cert", leaf, "--json", "--revocation", "soft")
    assert code == 1 and out["error"]["code"] == "untrusted"


def test_import_real_root_der(
    capsys: pytest.CaptureFixture[str],
    files: Files,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MIE_TRUST_DIR", str(tmp_path / "trust"))
    (root,) = load_certificates(_ans("acr-el.pem"), "acr-el.pem")
    path = files.write("ACR-EL.cer", root.public_bytes(serialization.Encoding.DER))
    code, out, _ = cli(capsys, "trust", "import", path, "--json")
    assert code == 0
    (row,) = out["imported"]
    assert row["sha256"] == ELEMENTAIRE_SHA256 and row["gamme"] == "ELEMENTAIRE"
    assert row["not_after"].startswith("2033-06-25")
