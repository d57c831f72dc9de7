"""`mie trust import` is all or nothing (issue 7, item 16), and the operator store's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mie._cli.__main__ import run
from mie.emulation.testpki import Gamme
from mie.emulation.testpki import TestPki as Pki
from mie.trust import ErrorCode, TrustStore, VerificationError, load_certificates
from mie.trust.store import OperatorStore, fingerprint

ANS = Path(__file__).resolve().parents[3] / "shared" / "data" / "ans"


def _ans(name: str) -> x509.Certificate:
    path = ANS / name
    if not path.exists():
        pytest.skip(f"ANS data missing at {path}")
    (cert,) = load_certificates(path.read_bytes(), name)
    return cert


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@pytest.fixture
def store_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "trust"
    monkeypatch.setenv("MIE_TRUST_DIR", str(directory))
    return directory


def _stored(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.is_file())


def _import(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(["trust", "import", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_root_followed_by_a_leaf_stores_nothing(
    capsys: pytest.CaptureFixture[str], store_dir: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(_pem(_ans("acr-el.pem"), _ans("test-cps3-signature-infirmier.pem")))
    code, out, err = _import(capsys, str(bundle), "--json")
    assert code == 2
    assert _stored(store_dir) == []
    # No JSON claims an import that did not happen (under --json, at most the error object).
    assert out == "" or set(json.loads(out)) == {"error"}
    assert err.count("\n") == 1 and err.startswith("mie: error: ")
    assert "certificate 2 of 2" in err and "not a CA" in err and "nothing imported" in err


def test_production_ca_then_test_ca_without_test_stores_nothing(
    capsys: pytest.CaptureFixture[str], store_dir: Path, tmp_path: Path, pki: Pki
) -> None:
    production = _ans("acr-el.pem")
    test_root = pki.roots[Gamme.FORT].certificate
    bundle = tmp_path / "mixed.pem"
    bundle.write_bytes(_pem(production, test_root))
    code, out, err = _import(capsys, str(bundle))
    assert code == 2
    assert _stored(store_dir) == []
    assert out == ""
    assert "certificate 2 of 2" in err and "--test" in err
    # With --test both are stored, and the JSON says exactly what `trust list` then shows.
    code, out, _ = _import(capsys, str(bundle), "--test", "--json")
    assert code == 0
    imported = json.loads(out)["imported"]
    assert [r["sha256"] for r in imported] == [fingerprint(production), fingerprint(test_root)]
    assert run(["trust", "list", "--json"]) == 0
    listed = {
        r["sha256"]: r
        for r in json.loads(capsys.readouterr().out)["certificates"]
        if r["source"] == "operator"
    }
    assert {r["sha256"]: r for r in imported} == listed


def test_a_failed_write_removes_what_the_import_created(store_dir: Path, pki: Pki) -> None:
    root = pki.roots[Gamme.FORT].certificate
    ca = pki.intermediates[Gamme.FORT].certificate
    store = OperatorStore(store_dir)
    store_dir.mkdir()
    (store_dir / "intermediates").write_bytes(b"")  # a file where the folder should be
    with pytest.raises(OSError):
        store.add_all([root, ca], allow_test=True)
    assert _stored(store_dir) == ["intermediates"]


def test_a_failed_write_keeps_what_was_stored_before(store_dir: Path, pki: Pki) -> None:
    root = pki.roots[Gamme.FORT].certificate
    ca = pki.intermediates[Gamme.FORT].certificate
    store = OperatorStore(store_dir)
    assert store.add(root, allow_test=True) == "anchor"
    before = _stored(store_dir)
    (store_dir / "intermediates").write_bytes(b"")
    with pytest.raises(OSError):
        store.add_all([root, ca], allow_test=True)
    assert _stored(store_dir) == sorted([*before, "intermediates"])
    assert [a.certificate for a in store.anchors()] == [root]


def test_duplicates_in_a_bundle_are_imported_once(
    capsys: pytest.CaptureFixture[str], store_dir: Path, tmp_path: Path, pki: Pki
) -> None:
    root = pki.roots[Gamme.FORT].certificate
    bundle = tmp_path / "twice.pem"
    bundle.write_bytes(_pem(root, root))
    code, out, _ = _import(capsys, str(bundle), "--test", "--json")
    assert code == 0
    assert len(json.loads(out)["imported"]) == 1


def test_a_store_file_with_two_certificates_is_malformed(store_dir: Path, pki: Pki) -> None:
    folder = store_dir / "anchors"
    folder.mkdir(parents=True)
    planted = folder / "planted.pem"
    planted.write_bytes(
        _pem(pki.roots[Gamme.FORT].certificate, pki.roots[Gamme.STANDARD].certificate)
    )
    with pytest.raises(VerificationError) as caught:
        TrustStore.default(store_dir)
    assert caught.value.code is ErrorCode.MALFORMED
    assert "planted.pem" in caught.value.message and "2 certificates" in caught.value.message


def test_test_option_does_not_mark_a_production_root_as_test(
    capsys: pytest.CaptureFixture[str], store_dir: Path, tmp_path: Path, pki: Pki
) -> None:
    production = _ans("acr-el.pem")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(_pem(production, pki.roots[Gamme.FORT].certificate))
    code, out, _ = _import(capsys, str(bundle), "--test", "--json")
    assert code == 0
    flags = {r["sha256"]: r["test"] for r in json.loads(out)["imported"]}
    assert flags == {
        fingerprint(production): False,
        fingerprint(pki.roots[Gamme.FORT].certificate): True,
    }
