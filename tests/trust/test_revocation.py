"""CRL cache (atomic, damage detected), HTTP refresh, delta CRLs and OCSP on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import http.server
import socket
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mie.emulation.testpki import Gamme
from mie.trust import (
    CrlCache,
    CrlIndex,
    CrlSet,
    ErrorCode,
    RevocationMode,
    RevocationStatus,
    TrustStore,
    Usage,
    VerificationError,
    VerifierBuilder,
)
from mie.trust.cache import fetch_url
from tests.trust.conftest import NOW, Files, LocalServer, cli, make_cert, person, start_server


def _der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.DER)


def _publish(server: LocalServer, files: Files, revoked: list[int] | None = None) -> str:
    url = files.pki.crl_url(Gamme.FORT)
    name = url.rsplit("/", 1)[1]
    (server.root / "crl" / name).write_bytes(_der(files.pki.crl(Gamme.FORT, revoked)))
    return url


def _verify(files: Files, leaf: x509.Certificate, crls: CrlSet, **options: Any) -> Any:
    builder = (
        VerifierBuilder()
        .store(TrustStore.from_certificates([files.pki.roots[Gamme.FORT].certificate], test=True))
        .usage(Usage.AUTH)
        .crls(crls)
    )
    for name, value in options.items():
        builder = getattr(builder, name)(value)
    return builder.build().verify(leaf, [files.pki.intermediates[Gamme.FORT].certificate])


def _with_arl(files: Files) -> CrlSet:
    return CrlSet.of([CrlIndex.from_bytes(Path(files.arl()).read_bytes(), "arl")])


def test_http_refresh_then_offline_verify(
    capsys: pytest.CaptureFixture[str],
    files: Files,
    cps: Any,
    crl_server: LocalServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MIE_CRL_DIR", str(tmp_path / "crl"))
    url = _publish(crl_server, files, [cps.authentication.certificate.serial_number])
    code, out, _ = cli(capsys, "crl", "fetch", url, "--json")
    assert code == 0 and out["entries"] == 1
    leaf = files.cert("l.pem", cps.authentication.certificate)
    args = ["--intermediate", files.ca(), "--trust", files.root_cert(), "--crl", files.arl()]
    code, out, _ = cli(capsys, "verify-cert", leaf, "--json", *args)
    assert code == 1 and out["error"]["code"] == "revoked"
    code, out, _ = cli(capsys, "crl", "show", url, "--json")
    assert code == 0 and out["entries"] == 1


def test_cache_refresh_through_verifier(
    files: Files, cps: Any, crl_server: LocalServer, tmp_path: Path
) -> None:
    _publish(crl_server, files)
    cache = CrlCache(tmp_path / "cache", timeout=5)
    result = _verify(files, cps.authentication.certificate, _with_arl(files), crl_cache=cache)
    assert result.revocation is RevocationStatus.GOOD
    assert cache.path_for(files.pki.crl_url(Gamme.FORT)).exists()


@pytest.mark.parametrize("damage", ["garbage", "half", "flipped"])
def test_damaged_cache_is_never_good(
    capsys: pytest.CaptureFixture[str],
    files: Files,
    cps: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    damage: str,
) -> None:
    monkeypatch.setenv("MIE_CRL_DIR", str(tmp_path / "crl"))
    cache = CrlCache(tmp_path / "crl")
    url = files.pki.crl_url(Gamme.FORT)
    der = _der(files.pki.crl(Gamme.FORT, [7, 8, 9]))
    damaged = {
        "garbage": b"\x00garbage",
        "half": der[: len(der) // 2],  # a writer killed mid-way without atomic rename
        "flipped": der[:60] + bytes([der[60] ^ 0x01]) + der[61:],  # parses, signature fails
    }[damage]
    cache.path_for(url).parent.mkdir(parents=True)
    cache.path_for(url).write_bytes(damaged)
    leaf = files.cert("l.pem", cps.authentication.certificate)
    args = ["--intermediate", files.ca(), "--trust", files.root_cert(), "--crl", files.arl()]
    code, out, _ = cli(capsys, "verify-cert", leaf, "--json", *args)
    assert code == 1
    assert out["error"]["code"] == "revocation_unknown"


def test_damaged_cache_is_refetched(files: Files, crl_server: LocalServer, tmp_path: Path) -> None:
    url = _publish(crl_server, files, [11])
    cache = CrlCache(tmp_path / "c", timeout=5)
    cache.path_for(url).parent.mkdir(parents=True)
    cache.path_for(url).write_bytes(b"half a CRL")
    with pytest.raises(VerificationError) as info:
        cache.load(url)
    assert info.value.code is ErrorCode.REVOCATION_UNKNOWN
    assert cache.path_for(url).with_suffix(".corrupt").exists()
    index = cache.get(url)
    assert index.lookup(11) is not None
    assert CrlIndex.from_bytes(cache.path_for(url).read_bytes(), "re").lookup(11) is not None


def test_leftover_temporary_files_are_ignored_and_cleaned(tmp_path: Path) -> None:
    cache = CrlCache(tmp_path)
    (tmp_path / ".tmp-abc").write_bytes(b"partial")
    assert cache.load("http://127.0.0.1/x.crl") is None
    assert cache.clean_temporary() == 1


def test_fetch_timeout_is_revocation_unknown() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # accepts the connection at kernel level, never answers
        port = silent.getsockname()[1]
        with pytest.raises(VerificationError) as info:
            fetch_url(f"http://127.0.0.1:{port}/x.crl", timeout=0.5)
    assert info.value.code is ErrorCode.REVOCATION_UNKNOWN


def test_http_error_is_revocation_unknown(crl_server: LocalServer) -> None:
    with pytest.raises(VerificationError) as info:
        fetch_url(crl_server.base + "crl/missing.crl", timeout=5)
    assert info.value.code is ErrorCode.REVOCATION_UNKNOWN


def _delta(files: Files, base_number: int, number: int, revoked: list[tuple[int, Any]]) -> bytes:
    issuer = files.pki.intermediates[Gamme.FORT]
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(NOW - dt.timedelta(minutes=1))
        .next_update(NOW + dt.timedelta(days=1))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.DeltaCRLIndicator(base_number), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
        )
    )
    for serial, reason in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW)
        entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return _der(builder.sign(issuer.key, hashes.SHA256()))


def test_delta_crl_revokes_and_unrevokes(files: Files, cps: Any) -> None:
    leaf = cps.authentication.certificate
    base = files.pki.crl(Gamme.FORT, [leaf.serial_number])
    base_number = base.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    indexes = [CrlIndex(base, "base"), *_with_arl(files)]
    with pytest.raises(VerificationError) as info:
        _verify(files, leaf, CrlSet.of(indexes))
    assert info.value.code is ErrorCode.REVOKED
    removed = _delta(
        files,
        base_number,
        base_number + 1,
        [(leaf.serial_number, x509.ReasonFlags.remove_from_crl)],
    )
    result = _verify(files, leaf, CrlSet.of([*indexes, CrlIndex.from_bytes(removed, "delta")]))
    assert result.revocation is RevocationStatus.GOOD
    clean = CrlIndex(files.pki.crl(Gamme.FORT), "clean-base")
    number = clean.number or 0
    revoked = _delta(
        files, number, number + 1, [(leaf.serial_number, x509.ReasonFlags.key_compromise)]
    )
    with pytest.raises(VerificationError) as info:
        _verify(
            files, leaf, CrlSet.of([clean, *_with_arl(files), CrlIndex.from_bytes(revoked, "d")])
        )
    assert info.value.code is ErrorCode.REVOKED


class _Responder(http.server.BaseHTTPRequestHandler):
    status: ClassVar[dict[int, ocsp.OCSPCertStatus]] = {}
    signer: Any = None
    issuer: Any = None
    extra_certs: ClassVar[list[x509.Certificate]] = []

    def do_POST(self) -> None:
        request = ocsp.load_der_ocsp_request(self.rfile.read(int(self.headers["Content-Length"])))
        status = self.status.get(request.serial_number, ocsp.OCSPCertStatus.UNKNOWN)
        builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
            issuer_name_hash=request.issuer_name_hash,
            issuer_key_hash=request.issuer_key_hash,
            serial_number=request.serial_number,
            algorithm=request.hash_algorithm,
            cert_status=status,
            this_update=NOW - dt.timedelta(minutes=1),
            next_update=NOW + dt.timedelta(hours=1),
            revocation_time=NOW if status is ocsp.OCSPCertStatus.REVOKED else None,
            revocation_reason=None,
        )
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, self.signer.certificate)
        if self.extra_certs:
            builder = builder.certificates(self.extra_certs)
        body = builder.sign(self.signer.key, hashes.SHA256()).public_bytes(
            serialization.Encoding.DER
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/ocsp-response")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def responder(files: Files) -> Any:
    server, thread = start_server(_Responder)
    _Responder.signer = files.pki.intermediates[Gamme.FORT]
    _Responder.extra_certs = []
    _Responder.status = {}
    yield f"http://127.0.0.1:{server.server_address[1]}/", _Responder
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_ocsp_good_revoked_and_untrusted_responder(files: Files, responder: Any) -> None:
    url, handler = responder
    ca = files.pki.intermediates[Gamme.FORT]
    leaf = make_cert(ca, person(), ocsp_url=url).certificate
    handler.status[leaf.serial_number] = ocsp.OCSPCertStatus.GOOD
    result = _verify(files, leaf, _with_arl(files), ocsp=True)
    assert result.revocation is RevocationStatus.GOOD
    assert any("OCSP" in d and "good" in d for d in result.revocation_details)

    handler.status[leaf.serial_number] = ocsp.OCSPCertStatus.REVOKED
    with pytest.raises(VerificationError) as info:
        _verify(files, leaf, _with_arl(files), ocsp=True)
    assert info.value.code is ErrorCode.REVOKED

    # A delegated responder with OCSPSigning, issued by the CA, is accepted.
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "TEST OCSP FO PP")])
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING])
    delegated = make_cert(ca, name, extra=[(eku, False)])
    handler.signer, handler.extra_certs = delegated, [delegated.certificate]
    handler.status[leaf.serial_number] = ocsp.OCSPCertStatus.GOOD
    assert _verify(files, leaf, _with_arl(files), ocsp=True).revocation is RevocationStatus.GOOD

    # A responder the CA did not certify is ignored: no CRL either, so status is unknown.
    rogue = make_cert(files.pki.roots[Gamme.FORT], name, extra=[(eku, False)])
    handler.signer, handler.extra_certs = rogue, [rogue.certificate]
    with pytest.raises(VerificationError) as info:
        _verify(files, leaf, _with_arl(files), ocsp=True)
    assert info.value.code is ErrorCode.REVOCATION_UNKNOWN
    soft = _verify(files, leaf, _with_arl(files), ocsp=True, revocation=RevocationMode.SOFT)
    assert soft.revocation is RevocationStatus.UNKNOWN


def test_no_naive_datetimes(files: Files) -> None:
    with pytest.raises(ValueError, match="timezone"):
        VerifierBuilder().time(dt.datetime(2030, 1, 1))
    index = CrlIndex(files.pki.crl(Gamme.FORT), "x")
    assert index.this_update.tzinfo is not None and index.next_update is not None
    assert index.next_update.tzinfo is not None


def test_a_newer_cached_crl_that_lists_the_card_wins_over_a_given_good_one(
    files: Files, cps: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A --crl file that covers the card without listing it needs no download, but what the
    # cache already holds is still read: revoked by any current CRL is revoked.
    def fetch(url: str, **_: Any) -> bytes:
        raise AssertionError(f"downloaded {url}")

    monkeypatch.setattr("mie.trust.cache.fetch_url", fetch)
    serial = cps.authentication.certificate.serial_number
    crls = _with_arl(files)
    older = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    crls.add(CrlIndex.from_bytes(_der(files.pki.crl(Gamme.FORT, [], this_update=older)), "c"))
    cache = CrlCache(tmp_path / "cache", timeout=5)
    cached = cache.path_for(files.pki.crl_url(Gamme.FORT))
    cached.parent.mkdir(parents=True)
    cached.write_bytes(_der(files.pki.crl(Gamme.FORT, [serial])))
    with pytest.raises(VerificationError) as info:
        _verify(files, cps.authentication.certificate, crls, crl_cache=cache)
    assert info.value.code is ErrorCode.REVOKED


@pytest.mark.parametrize("revoked", [True, False], ids=["revoked", "good"])
def test_given_crl_answers_without_download(
    files: Files, cps: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, revoked: bool
) -> None:
    # A --crl file that is current for the leaf's issuer decides, as a fresh cached CRL would:
    # nothing is fetched (a builder saw a 404 warning logged for a revoked card with --crl).
    fetched: list[str] = []

    def fetch(url: str, **_: Any) -> bytes:
        fetched.append(url)
        raise VerificationError(ErrorCode.REVOCATION_UNKNOWN, f"HTTP 404 for {url}")

    monkeypatch.setattr("mie.trust.cache.fetch_url", fetch)
    serial = cps.authentication.certificate.serial_number
    crls = _with_arl(files)
    crls.add(CrlIndex.from_bytes(_der(files.pki.crl(Gamme.FORT, [serial] if revoked else [])), "c"))
    cache = CrlCache(tmp_path / "cache", timeout=5)
    leaf = cps.authentication.certificate
    if revoked:
        with pytest.raises(VerificationError) as info:
            _verify(files, leaf, crls, crl_cache=cache)
        assert info.value.code is ErrorCode.REVOKED
    else:
        assert _verify(files, leaf, crls, crl_cache=cache).revocation is RevocationStatus.GOOD
    assert fetched == []
    # Without the leaf's CRL, the cache still downloads it (and, unreachable, hard mode fails).
    with pytest.raises(VerificationError) as info:
        _verify(files, leaf, _with_arl(files), crl_cache=cache)
    assert info.value.code is ErrorCode.REVOCATION_UNKNOWN
    assert fetched == [files.pki.crl_url(Gamme.FORT)]
