"""Fixtures for trust tests: a TEST PKI whose CRL points at a local HTTP server, chain builders."""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mie._cli.__main__ import run
from mie.emulation.testpki import CardIdentity, Gamme, Issued, card_subject, default_rpps
from mie.emulation.testpki import TestPki as Pki

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class LocalServer:
    """An http.server on 127.0.0.1 serving ``root``."""

    root: Path
    server: http.server.ThreadingHTTPServer
    thread: threading.Thread

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_server(
    handler: type[http.server.BaseHTTPRequestHandler] | Callable[..., Any],
) -> tuple[http.server.ThreadingHTTPServer, threading.Thread]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture(scope="session")
def crl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    root = tmp_path_factory.mktemp("www")
    (root / "crl").mkdir()
    server, thread = start_server(functools.partial(_QuietHandler, directory=str(root)))
    local = LocalServer(root, server, thread)
    yield local
    local.stop()


@pytest.fixture(scope="session")
def pki(crl_server: LocalServer) -> Pki:
    return Pki(crl_base_url=crl_server.base + "crl/")


@pytest.fixture(scope="session")
def cps(pki: Pki) -> Any:
    return pki.issue_card(CardIdentity("RPPS", default_rpps(), "CPS"), "2800000001")


@pytest.fixture
def files(tmp_path: Path, pki: Pki) -> Files:
    return Files(tmp_path, pki)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class Files:
    """Writes certificates and CRLs of a test into its temporary directory."""

    def __init__(self, root: Path, pki: Pki) -> None:
        self.root = root
        self.pki = pki

    def write(self, name: str, data: bytes) -> str:
        path = self.root / name
        path.write_bytes(data)
        return str(path)

    def cert(self, name: str, cert: x509.Certificate) -> str:
        return self.write(name, pem(cert))

    def root_cert(self, gamme: Gamme = Gamme.FORT) -> str:
        return self.cert(f"root-{gamme.value}.pem", self.pki.roots[gamme].certificate)

    def ca(self, gamme: Gamme = Gamme.FORT) -> str:
        return self.cert(f"ca-{gamme.value}.pem", self.pki.intermediates[gamme].certificate)

    def crl(self, gamme: Gamme = Gamme.FORT, revoked: list[int] | None = None, **kw: Any) -> str:
        crl = self.pki.crl(gamme, revoked, **kw)
        return self.write(f"crl-{gamme.value}.crl", crl.public_bytes(serialization.Encoding.DER))

    def arl(self, gamme: Gamme = Gamme.FORT) -> str:
        """The root's CRL covering the intermediate."""
        return self.write(f"arl-{gamme.value}.crl", root_crl(self.pki, gamme))


def root_crl(pki: Pki, gamme: Gamme, revoked: list[int] | None = None) -> bytes:
    root = pki.roots[gamme]
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root.certificate.subject)
        .last_update(NOW - dt.timedelta(hours=1))
        .next_update(NOW + dt.timedelta(days=30))
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root.key.public_key()), False
        )
    )
    for serial in revoked or []:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW).build()
        )
    return builder.sign(root.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@functools.cache
def spare_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_cert(
    issuer: Issued,
    subject: x509.Name,
    *,
    ca: bool = False,
    path_length: int | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    auth: bool = True,
    issuer_name: x509.Name | None = None,
    signing_key: rsa.RSAPrivateKey | None = None,
    extra: list[tuple[x509.ExtensionType, bool]] | None = None,
    crl_url: str | None = None,
    ocsp_url: str | None = None,
    key: rsa.RSAPrivateKey | None = None,
) -> Issued:
    """A certificate with every knob a negative test needs."""
    key = key or spare_key()
    start = not_before or NOW - dt.timedelta(hours=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name or issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after or start + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=ca)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
        )
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
    elif auth:
        usage = x509.KeyUsage(True, False, True, False, False, False, False, False, False)
    else:
        usage = x509.KeyUsage(False, True, False, False, False, False, False, False, False)
    builder = builder.add_extension(usage, critical=True)
    if crl_url:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), False)
    if ocsp_url:
        access = x509.AccessDescription(
            x509.oid.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
        )
        builder = builder.add_extension(x509.AuthorityInformationAccess([access]), False)
    for value, critical in extra or []:
        builder = builder.add_extension(value, critical)
    return Issued(builder.sign(signing_key or issuer.key, hashes.SHA256()), key)


def person(id_nat: str | None = None) -> x509.Name:
    id_nat = id_nat or "8" + default_rpps()
    return card_subject(CardIdentity("RPPS", id_nat[1:], "CPS"))


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    """Run ``mie`` in process; return exit code, parsed JSON (if any) and stderr."""
    code = run(list(args))
    captured = capsys.readouterr()
    data = json.loads(captured.out) if captured.out.strip().startswith("{") else {}
    return code, data, captured.err
