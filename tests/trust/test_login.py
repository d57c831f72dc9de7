"""mie.trust.login: the CRL cache directory, trust files, the login verifier (downloading or
read-only) and the certificate report with its one TEST-anchor rule."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from mie.emulation.testpki import Gamme, Issued
from mie.policy import AssuranceLevel, Factor, MieKind, Proof
from mie.trust import (
    CrlIndex,
    ErrorCode,
    RevocationMode,
    RevocationStatus,
    TrustStore,
    VerificationError,
    VerifierBuilder,
)
from mie.trust.cache import CrlCache, ReadOnlyCrlCache
from mie.trust.login import (
    certificate_report,
    crl_directory,
    load_trust_files,
    login_verifier,
    read_input,
)
from tests.trust.conftest import Files, LocalServer, make_cert, person, spare_key

CARD_AND_PIN = Proof(MieKind.CPX_CARD, frozenset({Factor.POSSESSION, Factor.KNOWLEDGE}), None)


@pytest.fixture(autouse=True)
def _own_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIE_TRUST_DIR", str(tmp_path / "trust"))
    monkeypatch.setenv("MIE_CRL_DIR", str(tmp_path / "crl"))


def _publish(server: LocalServer, files: Files) -> str:
    url = files.pki.crl_url(Gamme.FORT)
    der = files.pki.crl(Gamme.FORT).public_bytes(serialization.Encoding.DER)
    (server.root / "crl" / url.rsplit("/", 1)[1]).write_bytes(der)
    return url


def test_crl_directory_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert crl_directory() == tmp_path / "crl"
    monkeypatch.delenv("MIE_CRL_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert crl_directory() == tmp_path / "xdg" / "mie" / "crl"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert crl_directory() == tmp_path / "home" / ".cache" / "mie" / "crl"


def test_read_input_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(VerificationError) as caught:
        read_input(tmp_path / "absent.pem")
    assert caught.value.code is ErrorCode.MALFORMED and "absent.pem" in caught.value.message


def test_load_trust_files_takes_str_and_paths(files: Files) -> None:
    anchors, pool, crls = load_trust_files([Path(files.root_cert())], [files.ca()], [files.crl()])
    assert [a.certificate for a in anchors] == [files.pki.roots[Gamme.FORT].certificate]
    assert [a.source for a in anchors] == ["explicit"]
    assert pool == [files.pki.intermediates[Gamme.FORT].certificate]
    assert len(crls) == 1


def test_downloading_login_verifier_fetches_and_caches(
    files: Files, cps: Any, crl_server: LocalServer, tmp_path: Path
) -> None:
    url = _publish(crl_server, files)
    verifier = login_verifier(
        trust=[files.root_cert()], intermediates=[files.ca()], crls=[files.arl()]
    )
    result = verifier.verify(cps.authentication.certificate)
    assert result.revocation is RevocationStatus.GOOD
    assert CrlCache(tmp_path / "crl").path_for(url).exists()


def test_read_only_login_verifier_never_downloads(
    files: Files, cps: Any, crl_server: LocalServer, tmp_path: Path
) -> None:
    url = _publish(crl_server, files)
    verifier = login_verifier(
        trust=[files.root_cert()], intermediates=[files.ca()], crls=[files.arl()], download=False
    )
    assert isinstance(verifier.crl_cache, ReadOnlyCrlCache)
    with pytest.raises(VerificationError) as caught:
        verifier.verify(cps.authentication.certificate)
    assert caught.value.code is ErrorCode.REVOCATION_UNKNOWN
    assert not (tmp_path / "crl").exists()
    # Once cached (mie crl fetch), the same check succeeds offline.
    CrlCache(tmp_path / "crl").refresh(url)
    assert verifier.verify(cps.authentication.certificate).revocation is RevocationStatus.GOOD


def test_read_only_login_verifier_makes_a_given_cache_read_only(tmp_path: Path) -> None:
    verifier = login_verifier(cache=CrlCache(tmp_path / "c", budget=3.0), download=False)
    assert isinstance(verifier.crl_cache, ReadOnlyCrlCache)
    assert verifier.crl_cache.directory == tmp_path / "c" and verifier.crl_cache.budget == 3.0


def test_login_verifier_options(files: Files, cps: Any) -> None:
    at = dt.datetime.now(dt.UTC) + dt.timedelta(days=5000)
    verifier = login_verifier(
        trust=[files.root_cert()],
        intermediates=[files.ca()],
        crls=[files.crl(), files.arl()],
        revocation=RevocationMode.SOFT,
        at=at,
        timeout=2.5,
    )
    assert verifier.at == at and not verifier.hard
    assert verifier.crl_cache is not None and verifier.crl_cache.budget == 2.5
    with pytest.raises(VerificationError) as caught:
        verifier.verify(cps.authentication.certificate)
    assert caught.value.code is ErrorCode.EXPIRED


def test_login_verifier_without_the_test_anchors_is_untrusted(files: Files, cps: Any) -> None:
    verifier = login_verifier(intermediates=[files.ca()], crls=[files.crl(), files.arl()])
    with pytest.raises(VerificationError) as caught:
        verifier.verify(cps.authentication.certificate)
    assert caught.value.code is ErrorCode.UNTRUSTED


def test_certificate_report_of_a_card(files: Files, cps: Any) -> None:
    verifier = login_verifier(
        trust=[files.root_cert()], intermediates=[files.ca()], crls=[files.crl(), files.arl()]
    )
    result = verifier.verify(cps.authentication.certificate)
    report = certificate_report(result, CARD_AND_PIN)
    assert report.identity.test_card is True
    assert report.level is AssuranceLevel.SUBSTANTIAL
    assert report.revocation is RevocationStatus.GOOD
    assert report.reasons[-1].startswith("FORT PERSONNES card certificate")
    assert report.revocation_details == result.revocation_details
    assert report.chain_der == result.chain and len(report.chain_der) == 3
    assert report.subjects == result.subjects and report.anchor == result.anchor


def _production_names() -> tuple[Issued, Issued]:
    key = spare_key()
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Operator test root")])
    root = make_cert(
        Issued(None, key),  # type: ignore[arg-type]  # self-signed
        root_name,
        ca=True,
        issuer_name=root_name,
        key=key,
        signing_key=key,
    )
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "IGC-SANTE"),
            x509.NameAttribute(NameOID.COMMON_NAME, "AC IGC-SANTE FORT PERSONNES"),
        ]
    )
    return root, make_cert(root, ca_name, ca=True)


@pytest.mark.parametrize("test_anchor", [True, False])
def test_a_test_anchor_makes_a_test_card(test_anchor: bool) -> None:
    root, ca = _production_names()
    leaf = make_cert(ca, person()).certificate
    store = TrustStore.from_certificates([root.certificate], test=test_anchor)
    builder = VerifierBuilder().store(store).revocation(RevocationMode.SOFT)
    result = builder.build().verify(leaf, [ca.certificate])
    report = certificate_report(result, CARD_AND_PIN)
    # Nothing in the leaf or its issuer's name says TEST: only the anchor does.
    assert report.identity.test_card is test_anchor
    assert report.revocation is RevocationStatus.UNKNOWN and report.level is None


def test_read_only_cache_reads_and_never_writes(files: Files, tmp_path: Path) -> None:
    url = files.pki.crl_url(Gamme.FORT)
    cache = ReadOnlyCrlCache(str(tmp_path / "ro"))
    assert cache.load(url) is None
    for call in (lambda: cache.get(url), lambda: cache.refresh(url)):
        with pytest.raises(VerificationError) as caught:
            call()
        assert caught.value.code is ErrorCode.REVOCATION_UNKNOWN
    assert not (tmp_path / "ro").exists()
    cache.directory.mkdir()
    (cache.directory / ".tmp-left").write_bytes(b"x")
    cache.path_for(url).write_bytes(b"damaged")
    with pytest.raises(VerificationError) as caught:
        cache.get(url)
    assert caught.value.code is ErrorCode.REVOCATION_UNKNOWN and "damaged" in caught.value.message
    assert cache.path_for(url).read_bytes() == b"damaged"
    assert cache.clean_temporary() == 0 and (cache.directory / ".tmp-left").exists()
    der = files.pki.crl(Gamme.FORT).public_bytes(serialization.Encoding.DER)
    cache.path_for(url).write_bytes(der)
    assert isinstance(cache.get(url), CrlIndex)


def test_read_input_refuses_a_fifo_or_a_directory_without_waiting(tmp_path: Path) -> None:
    # `--crl FIFO` with no writer would block a plain open() for ever.
    import os

    fifo = tmp_path / "crl.fifo"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path):
        with pytest.raises(VerificationError) as raised:
            read_input(path)
        assert raised.value.code is ErrorCode.MALFORMED
        assert str(path) in raised.value.message
