"""`mie verify-cert --json` on generated IGC-Santé-like chains: success and every error code."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from mie.emulation.testpki import CardIdentity, Gamme, default_rpps
from mie.emulation.testpki import TestPki as Pki
from mie.trust import CrlCache, ErrorCode, ReadOnlyCrlCache, VerificationError
from mie.trust.cache import OfflineCrlCache
from mie.trust.login import login_verifier
from mie.trust.store import OperatorStore
from tests.trust.conftest import NOW, Files, LocalServer, cli, make_cert, person


def verify(capsys: pytest.CaptureFixture[str], files: Files, leaf: str, *extra: str) -> Any:
    return cli(
        capsys,
        "verify-cert",
        leaf,
        "--json",
        "--intermediate",
        files.ca(),
        "--trust",
        files.root_cert(),
        *extra,
    )


def crls(files: Files, revoked: list[int] | None = None) -> list[str]:
    return ["--crl", files.crl(Gamme.FORT, revoked), "--crl", files.arl()]


def test_cps_authentication_certificate_is_valid_and_substantial(
    capsys: pytest.CaptureFixture[str], files: Files, cps: Any
) -> None:
    leaf = files.cert("leaf.pem", cps.authentication.certificate)
    code, out, _ = verify(capsys, files, leaf, *crls(files))
    assert code == 0, out
    assert out["valid"] is True and out["error"] is None
    assert out["level"] == "substantial"
    assert out["revocation"] == "good"
    assert out["identity"] == {
        "id_nat": "8" + default_rpps(),
        "id_type": "RPPS",
        "id": default_rpps(),
        "given_name": "JEAN",
        "family_name": "DUPONT",
        "profession_code": "10",
        "card_type": "CPS",
        "test_card": True,
    }
    assert out["chain"][0].endswith(",T=Médecin,C=FR")
    assert f"CN=8{default_rpps()}" in out["chain"][0]
    assert out["chain"][-1] == out["trust_anchor"]
    assert "TEST AC RACINE IGC-SANTE FORT" in out["trust_anchor"]


def test_cpe_is_low(capsys: pytest.CaptureFixture[str], files: Files, pki: Pki) -> None:
    cpe = pki.issue_card(CardIdentity("FINESS", "760021832/000000018", "CPE"), "2800000002")
    leaf = files.cert("cpe.pem", cpe.authentication.certificate)
    code, out, _ = cli(
        capsys,
        "verify-cert",
        leaf,
        "--json",
        "--intermediate",
        files.ca(Gamme.STANDARD),
        "--trust",
        files.root_cert(Gamme.STANDARD),
        "--crl",
        files.crl(Gamme.STANDARD),
        "--crl",
        files.arl(Gamme.STANDARD),
    )
    assert code == 0, out
    assert out["level"] == "low"
    assert out["identity"]["id_type"] == "FINESS"
    assert out["identity"]["card_type"] == "CPE"


def _expect(code: int, out: dict[str, Any], error: str) -> None:
    assert code == 1, out
    assert out["valid"] is False
    assert out["error"]["code"] == error, out["error"]
    assert out["identity"] is None and out["level"] is None


def test_expired(capsys: pytest.CaptureFixture[str], files: Files, pki: Pki) -> None:
    old = make_cert(
        pki.intermediates[Gamme.FORT],
        person(),
        not_before=NOW - dt.timedelta(days=30),
        not_after=NOW - dt.timedelta(days=1),
    )
    code, out, _ = verify(capsys, files, files.cert("l.pem", old.certificate), *crls(files))
    _expect(code, out, "expired")


def test_at_moves_the_clock(capsys: pytest.CaptureFixture[str], files: Files, cps: Any) -> None:
    leaf = files.cert("leaf.pem", cps.authentication.certificate)
    later = (NOW + dt.timedelta(days=5 * 365)).isoformat()
    code, out, _ = verify(capsys, files, leaf, *crls(files), "--at", later)
    _expect(code, out, "expired")


def test_naive_at_is_refused(capsys: pytest.CaptureFixture[str], files: Files, cps: Any) -> None:
    leaf = files.cert("leaf.pem", cps.authentication.certificate)
    code, _, err = verify(capsys, files, leaf, "--at", "2030-01-01T00:00:00")
    assert code == 2
    assert "time zone" in err


def test_not_yet_valid(capsys: pytest.CaptureFixture[str], files: Files, pki: Pki) -> None:
    future = make_cert(
        pki.intermediates[Gamme.FORT], person(), not_before=NOW + dt.timedelta(days=2)
    )
    code, out, _ = verify(capsys, files, files.cert("l.pem", future.certificate), *crls(files))
    _expect(code, out, "not_yet_valid")


def test_revoked(capsys: pytest.CaptureFixture[str], files: Files, cps: Any) -> None:
    leaf = cps.authentication.certificate
    code, out, _ = verify(
        capsys, files, files.cert("l.pem", leaf), *crls(files, [5, leaf.serial_number])
    )
    _expect(code, out, "revoked")


def test_revoked_intermediate(capsys: pytest.CaptureFixture[str], files: Files, cps: Any) -> None:
    from tests.trust.conftest import root_crl

    serial = files.pki.intermediates[Gamme.FORT].certificate.serial_number
    arl = files.write("arl.crl", root_crl(files.pki, Gamme.FORT, [serial]))
    leaf = files.cert("l.pem", cps.authentication.certificate)
    code, out, _ = verify(capsys, files, leaf, "--crl", files.crl(), "--crl", arl)
    _expect(code, out, "revoked")


def test_wrong_key(capsys: pytest.CaptureFixture[str], files: Files, pki: Pki) -> None:
    from tests.trust.conftest import spare_key

    forged = make_cert(pki.intermediates[Gamme.FORT], person(), signing_key=spare_key())
    code, out, _ = verify(capsys, files, files.cert("l.pem", forged.certificate), *crls(files))
    _expect(code, out, "bad_signature")


def test_broken_name_chaining(capsys: pytest.CaptureFixture[str], files: Files, pki: Pki) -> None:
    other = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "TEST AC IGC-SANTE AUTRE")])
    leaf = make_cert(pki.intermediates[Gamme.FORT], person(), issuer_name=other)
    code, out, _ = verify(capsys, files, files.cert("l.pem", leaf.certificate), *crls(files))
    _expect(code, out, "name_chaining")


def test_non_ca_intermediate(capsys: pytest.CaptureFixture[str], files: Files, pki: Pki) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "TEST NOT A CA")])
    fake_ca = make_cert(pki.roots[Gamme.FORT], name, auth=True)
    leaf = make_cert(fake_ca, person())
    code, out, _ = cli(
        capsys,
        "verify-cert",
        files.cert("l.pem", leaf.certificate),
        "--json",
        "--intermediate",
        files.cert("fake.pem", fake_ca.certificate),
        "--trust",
        files.root_cert(),
        *crls(files),
    )
    _expect(code, out, "not_ca")


def test_path_length_exceeded(capsys: pytest.CaptureFixture[str], files: Files, pki: Pki) -> None:
    # The PERSONNES intermediate has pathLen 0: a CA below it breaks the constraint.
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "TEST SOUS-AC")])
    sub = make_cert(pki.intermediates[Gamme.FORT], name, ca=True)
    leaf = make_cert(sub, person())
    code, out, _ = verify(
        capsys,
        files,
        files.cert("l.pem", leaf.certificate),
        "--intermediate",
        files.cert("sub.pem", sub.certificate),
        *crls(files),
    )
    _expect(code, out, "path_length")


def test_unknown_critical_extension(
    capsys: pytest.CaptureFixture[str], files: Files, pki: Pki
) -> None:
    odd = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.250.1.999.1"), b"\x05\x00")
    leaf = make_cert(pki.intermediates[Gamme.FORT], person(), extra=[(odd, True)])
    code, out, _ = verify(capsys, files, files.cert("l.pem", leaf.certificate), *crls(files))
    _expect(code, out, "unknown_critical_extension")


def test_signature_certificate_for_authentication(
    capsys: pytest.CaptureFixture[str], files: Files, cps: Any
) -> None:
    leaf = files.cert("sign.pem", cps.signature.certificate)
    code, out, _ = verify(capsys, files, leaf, *crls(files))
    _expect(code, out, "key_usage")
    code, out, _ = verify(capsys, files, leaf, *crls(files), "--usage", "sign")
    assert code == 0, out
    assert out["level"] == "low"


def test_missing_crl(capsys: pytest.CaptureFixture[str], files: Files, cps: Any) -> None:
    leaf = files.cert("l.pem", cps.authentication.certificate)
    code, out, _ = verify(capsys, files, leaf, "--crl", files.arl())
    _expect(code, out, "revocation_unknown")


def test_stale_crl(capsys: pytest.CaptureFixture[str], files: Files, cps: Any) -> None:
    leaf = files.cert("l.pem", cps.authentication.certificate)
    stale = files.crl(Gamme.FORT, this_update=NOW - dt.timedelta(days=10))
    code, out, _ = verify(capsys, files, leaf, "--crl", stale, "--crl", files.arl())
    _expect(code, out, "revocation_unknown")
    assert "stale" in out["error"]["message"]


def test_crl_with_bad_signature(capsys: pytest.CaptureFixture[str], files: Files, cps: Any) -> None:
    der = files.pki.crl(Gamme.FORT).public_bytes(serialization.Encoding.DER)
    tampered = files.write("bad.crl", der[:-1] + bytes([der[-1] ^ 1]))
    leaf = files.cert("l.pem", cps.authentication.certificate)
    code, out, _ = verify(capsys, files, leaf, "--crl", tampered, "--crl", files.arl())
    _expect(code, out, "revocation_unknown")


def test_soft_revocation_says_unknown(
    capsys: pytest.CaptureFixture[str], files: Files, cps: Any
) -> None:
    leaf = files.cert("l.pem", cps.authentication.certificate)
    code, out, _ = verify(capsys, files, leaf, "--revocation", "soft")
    assert code == 0, out
    assert out["valid"] is True
    assert out["revocation"] == "unknown"


def test_untrusted_without_test_anchor(
    capsys: pytest.CaptureFixture[str], files: Files, cps: Any
) -> None:
    leaf = files.cert("l.pem", cps.authentication.certificate)
    code, out, _ = cli(capsys, "verify-cert", leaf, "--json", "--intermediate", files.ca())
    _expect(code, out, "untrusted")


def test_text_output(capsys: pytest.CaptureFixture[str], files: Files, cps: Any) -> None:
    leaf = files.cert("l.pem", cps.authentication.certificate)
    code = __import__("mie._cli.__main__", fromlist=["run"]).run(
        [
            "verify-cert",
            leaf,
            "--intermediate",
            files.ca(),
            "--trust",
            files.root_cert(),
            *crls(files),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "valid: yes" in out and "level: substantial" in out


# Issue 7, items 17, 18 and 24.

ANS = Path(__file__).resolve().parents[3] / "shared" / "data" / "ans"


def _operator_store(pki: Pki, directory: Path) -> None:
    store = OperatorStore(directory)
    store.add_all(
        [
            *(i.certificate for i in pki.roots.values()),
            *(i.certificate for i in pki.intermediates.values()),
        ],
        allow_test=True,
    )


def test_real_test_card_is_untrusted_not_forged_under_the_emulator_pki(
    capsys: pytest.CaptureFixture[str], pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The emulator's TEST CAs carry the names of the real ANS TEST CAs, with other keys.
    real = ANS / "test-cps3-signature-infirmier.pem"
    if not real.exists():
        pytest.skip(f"ANS data missing at {real}")
    monkeypatch.setenv("MIE_TRUST_DIR", str(tmp_path / "trust"))
    _operator_store(pki, tmp_path / "trust")
    at = "2021-06-01T00:00:00+00:00"  # inside the real certificate's validity
    code, out, _ = cli(capsys, "verify-cert", str(real), "--json", "--usage", "sign", "--at", at)
    _expect(code, out, "untrusted")
    assert "known only with another key" in out["error"]["message"]


def test_forged_signature_with_the_issuer_key_id_is_bad_signature(
    capsys: pytest.CaptureFixture[str], pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.trust.conftest import spare_key

    monkeypatch.setenv("MIE_TRUST_DIR", str(tmp_path / "trust"))
    _operator_store(pki, tmp_path / "trust")
    # make_cert writes the real issuer's key identifier; the signature is another key's.
    forged = make_cert(pki.intermediates[Gamme.FORT], person(), signing_key=spare_key())
    path = tmp_path / "forged.pem"
    path.write_bytes(forged.certificate.public_bytes(serialization.Encoding.PEM))
    code, out, _ = cli(capsys, "verify-cert", str(path), "--json", "--revocation", "soft")
    _expect(code, out, "bad_signature")


def _cache_crls(pki: Pki, directory: Path) -> None:
    cache = CrlCache(directory)
    for url, crl in (
        (pki.crl_url(Gamme.FORT), pki.crl(Gamme.FORT)),
        (pki.arl_url(Gamme.FORT), pki.crl(Gamme.FORT, authority=True)),
    ):
        path = cache.path_for(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(crl.public_bytes(serialization.Encoding.DER))


def test_cached_crls_cover_cas_from_the_trust_store(
    capsys: pytest.CaptureFixture[str],
    pki: Pki,
    cps: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As after `mie auth`: both CRLs cached, the CAs in the operator store, only the leaf given.
    monkeypatch.setenv("MIE_TRUST_DIR", str(tmp_path / "trust"))
    monkeypatch.setenv("MIE_CRL_DIR", str(tmp_path / "crl"))
    _operator_store(pki, tmp_path / "trust")
    _cache_crls(pki, tmp_path / "crl")
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(cps.authentication.certificate.public_bytes(serialization.Encoding.PEM))
    code, out, _ = cli(capsys, "verify-cert", str(leaf), "--json")
    assert code == 0, out
    assert out["revocation"] == "good"
    assert len([r for r in out["reasons"] if r.startswith(("chain[0]", "chain[1]"))]) == 2


def test_leaf_file_with_its_chain_uses_the_others_as_intermediates(
    capsys: pytest.CaptureFixture[str],
    files: Files,
    cps: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MIE_TRUST_DIR", str(tmp_path / "empty"))
    leaf = cps.authentication.certificate
    ca = files.pki.intermediates[Gamme.FORT].certificate
    both = files.write(
        "fullchain.pem", b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, ca))
    )
    args = ("--json", "--trust", files.root_cert(), *crls(files))
    code, out, _ = cli(capsys, "verify-cert", both, *args)
    assert code == 0, out
    assert out["identity"]["id_nat"] == "8" + default_rpps()
    assert len(out["chain"]) == 3
    # The first certificate is the one verified: the same file in the other order is refused.
    swapped = files.write(
        "swapped.pem", b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (ca, leaf))
    )
    code, out, _ = cli(capsys, "verify-cert", swapped, *args)
    assert code == 1 and out["valid"] is False


# verify-cert builds its verifier with login_verifier(download=False): the CRL cache is read,
# never filled from the network; a damaged cache file is reported and moved aside.


def test_verify_cert_never_downloads_a_crl_it_could_fetch(
    capsys: pytest.CaptureFixture[str],
    files: Files,
    cps: Any,
    crl_server: LocalServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MIE_CRL_DIR", str(tmp_path / "crl"))
    url = files.pki.crl_url(Gamme.FORT)
    der = files.pki.crl(Gamme.FORT).public_bytes(serialization.Encoding.DER)
    (crl_server.root / "crl" / url.rsplit("/", 1)[1]).write_bytes(der)
    leaf = files.cert("l.pem", cps.authentication.certificate)
    code, out, _ = verify(capsys, files, leaf, "--crl", files.arl(), "--revocation", "soft")
    assert code == 0, out
    assert out["revocation"] == "unknown"
    assert not CrlCache(tmp_path / "crl").path_for(url).exists()
    # Once `mie crl fetch` cached it, the same check is good, offline.
    assert cli(capsys, "crl", "fetch", url, "--json")[0] == 0
    code, out, _ = verify(capsys, files, leaf, "--crl", files.arl())
    assert code == 0, out
    assert out["revocation"] == "good"


def test_damaged_cached_crl_is_reported_moved_aside_and_never_good(
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    files: Files,
    cps: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MIE_CRL_DIR", str(tmp_path / "crl"))
    url = files.pki.crl_url(Gamme.FORT)
    path = CrlCache(tmp_path / "crl").path_for(url)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"damaged")
    leaf = files.cert("l.pem", cps.authentication.certificate)
    with caplog.at_level(logging.WARNING, logger="mie"):
        code, out, _ = verify(capsys, files, leaf, "--crl", files.arl(), "--revocation", "soft")
    assert code == 0, out
    assert out["revocation"] == "unknown"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"Cached CRL for {url} is damaged" in w for w in warnings), warnings
    assert path.with_suffix(".corrupt").read_bytes() == b"damaged" and not path.exists()
    path.write_bytes(b"damaged")
    code, out, _ = verify(capsys, files, leaf, "--crl", files.arl())
    _expect(code, out, "revocation_unknown")


def test_offline_cache_reads_moves_a_damaged_file_aside_and_never_downloads(
    files: Files, cps: Any, tmp_path: Path
) -> None:
    url = files.pki.crl_url(Gamme.FORT)
    cache = OfflineCrlCache(tmp_path / "c")
    with pytest.raises(VerificationError) as caught:
        cache.get(url)
    assert caught.value.code is ErrorCode.REVOCATION_UNKNOWN
    assert "never downloads" in caught.value.message
    with pytest.raises(VerificationError) as caught:
        cache.refresh(url)
    assert caught.value.code is ErrorCode.REVOCATION_UNKNOWN
    assert not (tmp_path / "c").exists()
    (tmp_path / "c").mkdir()
    cache.path_for(url).write_bytes(b"damaged")
    # The read-only cache leaves the file where it is; the offline one moves it aside.
    with pytest.raises(VerificationError):
        ReadOnlyCrlCache(tmp_path / "c").get(url)
    assert cache.path_for(url).exists()
    with pytest.raises(VerificationError):
        cache.get(url)
    assert not cache.path_for(url).exists()
    assert cache.path_for(url).with_suffix(".corrupt").exists()
    # A stale cached CRL is returned as it is, for the verifier to judge.
    stale = files.pki.crl(Gamme.FORT, this_update=NOW - dt.timedelta(days=10))
    cache.path_for(url).write_bytes(stale.public_bytes(serialization.Encoding.DER))
    assert cache.get(url).next_update == stale.next_update_utc


def test_read_only_login_verifier_keeps_a_given_offline_cache(tmp_path: Path) -> None:
    given = OfflineCrlCache(tmp_path / "c", budget=3.0)
    verifier = login_verifier(cache=given, download=False)
    assert verifier.crl_cache is given
    downloading = login_verifier(cache=CrlCache(tmp_path / "c"), download=False)
    assert type(downloading.crl_cache) is ReadOnlyCrlCache
