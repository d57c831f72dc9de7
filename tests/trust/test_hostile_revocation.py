"""Hostile CRLs, CRL cache files and OCSP answers through a real HTTP server on 127.0.0.1.

Regression tests for issue 7 items 3 (download path), 4, 10, 11 and 23: whatever a distribution
point, a cache file or a responder holds, revocation is ``unknown`` (then fail closed), never an
exception out of the verifier; the cache survives concurrent readers of a damaged file; one
deadline bounds all the downloads of a verification.
"""

from __future__ import annotations

import datetime as dt
import http.server
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from asn1crypto import crl as acrl  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import mie.trust.cache as cache_module
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
from mie.trust.cache import atomic_write, fetch_url
from tests.trust.conftest import NOW, Files, LocalServer, cli, make_cert, person, start_server
from tests.trust.test_hostile_inputs import children, der_header, resigned, zero_sequence

SHA256_RSA = bytes.fromhex("2a864886f70d01010b")  # OID 1.2.840.113549.1.1.11
UNKNOWN_ALGORITHM = bytes.fromhex("2a864886f70d01017f")  # same length, assigned to nothing


def _der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.DER)


def _crl(files: Files, entries: list[tuple[int, list[x509.ExtensionType]]]) -> bytes:
    """A CRL of the FORT CA listing ``entries`` (serial, entry extensions)."""
    ca = files.pki.intermediates[Gamme.FORT]
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(NOW - dt.timedelta(minutes=5))
        .next_update(NOW + dt.timedelta(days=1))
        .add_extension(x509.CRLNumber(77), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), False
        )
    )
    for serial, extensions in entries:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW)
        for extension in extensions:
            entry = entry.add_extension(extension, critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return _der(builder.sign(ca.key, hashes.SHA256()))


def _resign_crl(files: Files, der: bytes, change: Callable[[bytes], bytes]) -> bytes:
    """``der`` with its TBSCertList changed by ``change`` and signed again by the FORT CA."""
    tbs, algorithm, _ = children(der)
    tbs = change(tbs)
    key = files.pki.intermediates[Gamme.FORT].key
    bits = b"\x00" + key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    body = tbs + algorithm + der_header(0x03, len(bits)) + bits
    return der_header(0x30, len(body)) + body


def _retag(marker: bytes, old: int, new: int, skip: int = 0) -> Callable[[bytes], bytes]:
    """Change the tag byte ``skip`` bytes after ``marker`` (an extension's OID and header)."""

    def change(tbs: bytes) -> bytes:
        at = tbs.index(marker) + len(marker) + skip
        assert tbs[at] == old
        return tbs[:at] + bytes([new]) + tbs[at + 1 :]

    return change


def _duplicate_crl_extension(tbs: bytes) -> bytes:
    parsed = acrl.TbsCertList.load(tbs)
    extensions = parsed["crl_extensions"]
    extensions.append(acrl.TBSCertListExtension.load(extensions[0].dump()))
    return bytes(parsed.dump(force=True))


def _hostile_crls(files: Files, serial: int) -> dict[str, bytes]:
    reason: list[x509.ExtensionType] = [x509.CRLReason(x509.ReasonFlags.key_compromise)]
    invalidity: list[x509.ExtensionType] = [x509.InvalidityDate(dt.datetime(2026, 1, 2, 3, 4))]
    point = x509.IssuingDistributionPoint(
        [x509.UniformResourceIdentifier("http://x/c.crl")], None, False, False, None, False, False
    )
    listed_reason = _crl(files, [(serial, reason)])
    listed_date = _crl(files, [(serial, invalidity)])
    plain = _crl(files, [(serial + 1, [])])
    ca = files.pki.intermediates[Gamme.FORT]
    with_idp = _der(
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(NOW - dt.timedelta(minutes=5))
        .next_update(NOW + dt.timedelta(days=1))
        .add_extension(x509.CRLNumber(78), critical=False)
        .add_extension(point, critical=True)
        .sign(ca.key, hashes.SHA256())
    )
    return {
        # The reproducer of item 4: the CRLNumber INTEGER retagged as an OCTET STRING.
        "crl-number-retagged": _resign_crl(
            files, plain, _retag(bytes.fromhex("0603551d140403"), 0x02, 0x04)
        ),
        "idp-retagged": _resign_crl(
            files, with_idp, _retag(bytes.fromhex("0603551d1c0101ff04"), 0x30, 0x31, skip=1)
        ),
        "duplicate-extension": _resign_crl(files, plain, _duplicate_crl_extension),
        "reason-retagged": _resign_crl(
            files, listed_reason, _retag(bytes.fromhex("0603551d150403"), 0x0A, 0x02)
        ),
        "invalidity-date-retagged": _resign_crl(
            files, listed_date, _retag(bytes.fromhex("0603551d180411"), 0x18, 0x04)
        ),
        "unknown-signature-algorithm": plain.replace(SHA256_RSA, UNKNOWN_ALGORITHM),
        "zeros": zero_sequence(3_000_000),
        "garbage": b"\x00garbage",
    }


HOSTILE = [
    "crl-number-retagged",
    "idp-retagged",
    "duplicate-extension",
    "reason-retagged",
    "invalidity-date-retagged",
    "unknown-signature-algorithm",
    "zeros",
    "garbage",
]


def _trust(files: Files) -> TrustStore:
    return TrustStore.from_certificates([files.pki.roots[Gamme.FORT].certificate], test=True)


def _arl(files: Files) -> CrlIndex:
    return CrlIndex.from_bytes(Path(files.arl()).read_bytes(), "arl")


def _verifier(files: Files, cache: CrlCache | None, **options: Any) -> Any:
    builder = (
        VerifierBuilder()
        .store(_trust(files))
        .usage(Usage.AUTH)
        .crls(options.pop("crls", CrlSet.of([_arl(files)])))
    )
    if cache is not None:
        builder = builder.crl_cache(cache)
    for name, value in options.items():
        builder = getattr(builder, name)(value)
    return builder.build()


def _leaf(files: Files, url: str, **kw: Any) -> x509.Certificate:
    return make_cert(files.pki.intermediates[Gamme.FORT], person(), crl_url=url, **kw).certificate


def _publish(server: LocalServer, name: str, data: bytes) -> str:
    (server.root / "crl" / name).write_bytes(data)
    return server.base + "crl/" + name


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_crl_at_distribution_point_is_unknown(
    files: Files, crl_server: LocalServer, tmp_path: Path, name: str
) -> None:
    url = crl_server.base + f"crl/hostile-{name}.crl"
    leaf = _leaf(files, url)
    _publish(crl_server, f"hostile-{name}.crl", _hostile_crls(files, leaf.serial_number)[name])
    verifier = _verifier(files, CrlCache(tmp_path / "cache", timeout=5))
    with pytest.raises(VerificationError) as info:
        verifier.verify(leaf, [files.pki.intermediates[Gamme.FORT].certificate])
    assert info.value.code is ErrorCode.REVOCATION_UNKNOWN
    assert "\n" not in info.value.message
    soft = _verifier(
        files, CrlCache(tmp_path / "cache", timeout=5), revocation=RevocationMode.SOFT
    ).verify(leaf, [files.pki.intermediates[Gamme.FORT].certificate])
    assert soft.revocation is RevocationStatus.UNKNOWN


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_crl_given_to_the_verifier_is_never_an_exception(files: Files, name: str) -> None:
    leaf = _leaf(files, "http://127.0.0.1:9/none.crl")
    data = _hostile_crls(files, leaf.serial_number)[name]
    try:
        index = CrlIndex.from_bytes(data, name)
    except VerificationError as e:
        assert e.code is ErrorCode.MALFORMED and "\n" not in e.message
        return
    # Parsed: entry-level damage must still make the status unknown, not raise.
    verifier = _verifier(files, None, crls=CrlSet.of([index, _arl(files)]))
    with pytest.raises(VerificationError) as info:
        verifier.verify(leaf, [files.pki.intermediates[Gamme.FORT].certificate])
    assert info.value.code is ErrorCode.REVOCATION_UNKNOWN


def test_retagged_crl_in_cache_is_moved_aside_and_refetched(
    capsys: pytest.CaptureFixture[str],
    files: Files,
    crl_server: LocalServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = crl_server.base + "crl/cached-retagged.crl"
    leaf = _leaf(files, url)
    hostile = _hostile_crls(files, leaf.serial_number)["crl-number-retagged"]
    cache = CrlCache(tmp_path / "crl", timeout=5)
    atomic_write(cache.path_for(url), hostile)
    # verify-cert reads the cache only: exit 1 with the contract JSON, not an asn1 message.
    monkeypatch.setenv("MIE_CRL_DIR", str(tmp_path / "crl"))
    path = files.cert("leaf.pem", leaf)
    args = ["--intermediate", files.ca(), "--trust", files.root_cert(), "--crl", files.arl()]
    code, out, err = cli(capsys, "verify-cert", path, "--json", *args)
    assert code == 1, err
    assert out["error"]["code"] == "revocation_unknown"
    assert "internal error" not in err
    assert cache.path_for(url).with_suffix(".corrupt").read_bytes() == hostile
    # The next download replaces it.
    _publish(crl_server, "cached-retagged.crl", _der(files.pki.crl(Gamme.FORT)))
    atomic_write(cache.path_for(url), hostile)
    with pytest.raises(VerificationError) as info:
        cache.load(url)
    assert info.value.code is ErrorCode.REVOCATION_UNKNOWN
    assert not cache.path_for(url).exists()
    assert len(cache.get(url)) == 0
    assert CrlIndex.from_bytes(cache.path_for(url).read_bytes(), "refetched").number is not None


def test_oversized_download_is_unknown(
    files: Files, crl_server: LocalServer, tmp_path: Path
) -> None:
    url = _publish(crl_server, "big.crl", zero_sequence(3_000_000))
    with pytest.raises(VerificationError) as info:
        CrlCache(tmp_path, timeout=5, max_bytes=1_000_000).refresh(url)
    assert info.value.code is ErrorCode.REVOCATION_UNKNOWN
    assert "larger than 1000000 bytes" in info.value.message
    with pytest.raises(VerificationError) as info:
        CrlCache(tmp_path, timeout=5).refresh(url)  # within the limit, but not a CRL
    assert info.value.code is ErrorCode.REVOCATION_UNKNOWN
    assert "did not return a CRL" in info.value.message


# --- item 11: concurrent readers of a damaged cache file -----------------------------------------


def test_threads_reading_a_damaged_file_see_unknown_or_absent(files: Files, tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/damaged.crl"
    cache = CrlCache(tmp_path / "c")
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def reader() -> None:
        start.wait()
        for _ in range(40):
            try:
                result = "absent" if cache.load(url) is None else "good"
            except VerificationError as e:
                result = e.code.value
            except Exception as e:  # what the old code raised: FileNotFoundError
                result = type(e).__name__
            with lock:
                outcomes.append(result)

    for round_ in range(4):
        atomic_write(cache.path_for(url), b"\x30\x03half" + bytes([round_]))
        threads = [threading.Thread(target=reader) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert len(outcomes) == 4 * 320
    assert set(outcomes) <= {"absent", "revocation_unknown"}, set(outcomes)
    assert cache.path_for(url).with_suffix(".corrupt").exists()


def test_quarantine_keeps_a_file_refreshed_meanwhile(
    files: Files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "http://127.0.0.1:9/raced.crl"
    cache = CrlCache(tmp_path / "c")
    good = _der(files.pki.crl(Gamme.FORT, [5]))
    atomic_write(cache.path_for(url), b"damaged")

    class RefreshLandsDuringParse(CrlIndex):
        # Another thread's refresh lands between this reader's read and its quarantine.
        @classmethod
        def from_bytes(cls, data: bytes, source: str, *, max_bytes: int | None = None) -> CrlIndex:
            try:
                return CrlIndex.from_bytes(data, source, max_bytes=max_bytes)
            finally:
                atomic_write(cache.path_for(url), good)

    monkeypatch.setattr(cache_module, "CrlIndex", RefreshLandsDuringParse)
    with pytest.raises(VerificationError):
        cache.load(url)
    monkeypatch.undo()
    assert cache.path_for(url).read_bytes() == good
    index = cache.load(url)
    assert index is not None and index.lookup(5) is not None


# --- item 23: one deadline for the revocation step -----------------------------------------------


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        yield f"http://127.0.0.1:{silent.getsockname()[1]}/"


def test_hanging_distribution_points_share_one_deadline(
    files: Files, silent_url: str, tmp_path: Path
) -> None:
    points = x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                [x509.UniformResourceIdentifier(silent_url + n)], None, None, None
            )
            for n in ("a.crl", "b.crl")
        ]
    )
    leaf = make_cert(
        files.pki.intermediates[Gamme.FORT], person(), extra=[(points, False)]
    ).certificate
    # Before: two sequential 10 s timeouts (20 s) for one login.
    verifier = _verifier(files, CrlCache(tmp_path, timeout=10, budget=1.5))
    start = time.monotonic()
    with pytest.raises(VerificationError) as info:
        verifier.verify(leaf, [files.pki.intermediates[Gamme.FORT].certificate])
    elapsed = time.monotonic() - start
    assert info.value.code is ErrorCode.REVOCATION_UNKNOWN
    assert elapsed < 6, elapsed
    # The budget is per verification: a second check gets its own.
    start = time.monotonic()
    with pytest.raises(VerificationError):
        verifier.verify(leaf, [files.pki.intermediates[Gamme.FORT].certificate])
    assert 1 < time.monotonic() - start < 6


class _Trickle(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        try:
            for _ in range(600):  # one byte every 0.1 s: each read succeeds well within timeout
                self.wfile.write(b"\x30")
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass

    def log_message(self, *args: Any) -> None:
        pass


def test_trickling_server_does_not_extend_the_deadline() -> None:
    server, thread = start_server(_Trickle)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/c.crl"
        start = time.monotonic()
        with pytest.raises(VerificationError) as info:
            fetch_url(url, timeout=5, deadline=time.monotonic() + 1.0)
        assert time.monotonic() - start < 4
        assert info.value.code is ErrorCode.REVOCATION_UNKNOWN
        assert "within" in info.value.message
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_no_time_left_is_unknown_without_network() -> None:
    with pytest.raises(VerificationError) as info:
        fetch_url("http://127.0.0.1:9/c.crl", deadline=time.monotonic() - 1)
    assert info.value.code is ErrorCode.REVOCATION_UNKNOWN and "no time left" in info.value.message


# --- item 10: OCSP answers that cannot be used ---------------------------------------------------


class _HostileResponder(http.server.BaseHTTPRequestHandler):
    signer: Any = None
    extra: ClassVar[list[x509.Certificate]] = []
    mangle: Callable[[bytes], bytes] = staticmethod(lambda body: body)

    def do_POST(self) -> None:
        request = ocsp.load_der_ocsp_request(self.rfile.read(int(self.headers["Content-Length"])))
        builder = (
            ocsp.OCSPResponseBuilder()
            .add_response_by_hash(
                issuer_name_hash=request.issuer_name_hash,
                issuer_key_hash=request.issuer_key_hash,
                serial_number=request.serial_number,
                algorithm=request.hash_algorithm,
                cert_status=ocsp.OCSPCertStatus.GOOD,
                this_update=NOW - dt.timedelta(minutes=1),
                next_update=NOW + dt.timedelta(hours=1),
                revocation_time=None,
                revocation_reason=None,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, self.signer.certificate)
        )
        if self.extra:
            builder = builder.certificates(self.extra)
        body = type(self).mangle(
            builder.sign(self.signer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
        )
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _unloadable_responder(files: Files) -> Any:
    """A delegated OCSP responder certificate whose EC point is off the curve."""
    key = ec.generate_private_key(ec.SECP256R1())
    ca = files.pki.intermediates[Gamme.FORT]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "TEST OCSP BROKEN KEY")])
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING])
    good = make_cert(ca, name, key=key, extra=[(eku, False)])  # type: ignore[arg-type]

    def change(tbs: Any) -> None:
        info = tbs["subject_public_key_info"]
        point = bytearray(info["public_key"].native)
        point[-1] ^= 0x01
        info["public_key"] = bytes(point)

    der = resigned(files, good.certificate.public_bytes(serialization.Encoding.DER), change)
    return type(good)(x509.load_der_x509_certificate(der), key)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "answer", ["unknown-signature-algorithm", "unloadable-responder-key", "garbage", "truncated"]
)
def test_unusable_ocsp_answer_falls_back_to_crls(files: Files, answer: str) -> None:
    server, thread = start_server(_HostileResponder)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        ca = files.pki.intermediates[Gamme.FORT]
        _HostileResponder.signer, _HostileResponder.extra = ca, []
        _HostileResponder.mangle = staticmethod(lambda body: body)
        if answer == "unknown-signature-algorithm":
            _HostileResponder.mangle = staticmethod(
                lambda body: body.replace(SHA256_RSA, UNKNOWN_ALGORITHM)
            )
        elif answer == "unloadable-responder-key":
            # The client hashes the key of each certificate the response carries.
            broken = _unloadable_responder(files)
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "TEST OCSP FO PP")])
            eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING])
            delegated = make_cert(ca, name, extra=[(eku, False)])
            _HostileResponder.signer = delegated
            _HostileResponder.extra = [broken.certificate, delegated.certificate]
        elif answer == "garbage":
            _HostileResponder.mangle = staticmethod(lambda body: b"\x30\x03\x0a\x01")
        else:
            _HostileResponder.mangle = staticmethod(lambda body: body[: len(body) // 2])
        leaf = make_cert(ca, person(), ocsp_url=url).certificate
        good_crl = CrlIndex(files.pki.crl(Gamme.FORT), "crl")
        verifier = _verifier(files, None, crls=CrlSet.of([good_crl, _arl(files)]), ocsp=True)
        result = verifier.verify(leaf, [ca.certificate])
        assert result.revocation is RevocationStatus.GOOD
        assert "not listed in crl" in result.revocation_details[0]
        without_crl = _verifier(files, None, ocsp=True)
        with pytest.raises(VerificationError) as info:
            without_crl.verify(leaf, [ca.certificate])
        assert info.value.code is ErrorCode.REVOCATION_UNKNOWN
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
