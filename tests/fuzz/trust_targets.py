"""Fuzz targets of the trust code: certificates, CRLs (parsed, fetched, cached), OCSP answers,
and a probe of time against input size (see :mod:`tests.fuzz.targets` for the registry)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509 import ocsp

from mie.cards.iso7816 import MAX_FILE_SIZE
from mie.core.connection import Transport
from mie.core.errors import InvalidPinError
from mie.core.tlv import parse_tlvs
from mie.evidence import Evidence, X509SignatureEvidence, load_evidence_file
from mie.request import bound_challenge
from mie.result import AuthenticatorInfo, AuthResult
from mie.transport import replay
from mie.trust import CrlCache, CrlIndex, CrlSet, ErrorCode, VerificationError, load_certificates
from mie.trust import cache as crl_cache_module
from mie.trust import ocsp as ocsp_module
from mie.trust.parse import load_crl
from mie.verification import Expected, verify_evidence
from tests.fuzz.context import DATA, Context
from tests.fuzz.harness import OracleViolation, Run, Target, scratch, swallow


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _certificate_seeds(context: Context) -> list[bytes]:
    seeds = [path.read_bytes() for path in sorted((DATA / "ans").glob("*.pem"))]
    seeds += [_der(x509.load_pem_x509_certificate(s)) for s in seeds]
    seeds += [path.read_bytes() for path in sorted((DATA / "pkits" / "certs").glob("*.crt"))]
    chain = [
        i.certificate for i in [*context.pki.roots.values(), *context.pki.intermediates.values()]
    ]
    seeds.append(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
    seeds.append(pkcs7.serialize_certificates(chain, serialization.Encoding.DER))
    seeds.append(pkcs7.serialize_certificates(chain, serialization.Encoding.PEM))
    leaf = context.credentials("cps3").authentication.certificate
    seeds.append(leaf.public_bytes(serialization.Encoding.PEM))
    return seeds


def _certificate_prepare(context: Context) -> Run:
    def run(data: bytes) -> None:
        load_certificates(data, "fuzz")

    return run


def _leaf_and_issuer(context: Context) -> tuple[x509.Certificate, x509.Certificate]:
    leaf = context.credentials("cps3").authentication.certificate
    issuer = next(
        i.certificate
        for i in context.pki.intermediates.values()
        if i.certificate.subject == leaf.issuer
    )
    return leaf, issuer


def _crl_seeds(context: Context) -> list[bytes]:
    seeds = [crl.public_bytes(serialization.Encoding.DER) for crl in context.crl_list]
    seeds.append(context.crl_list[0].public_bytes(serialization.Encoding.PEM))
    leaf, _ = _leaf_and_issuer(context)
    revoked = context.pki.crl(next(iter(context.pki.intermediates)), [leaf.serial_number, 7, 2**64])
    seeds.append(revoked.public_bytes(serialization.Encoding.DER))
    seeds += [path.read_bytes() for path in sorted((DATA / "pkits" / "crls").glob("*.crl"))]
    return seeds


def _crl_prepare(context: Context) -> Run:
    leaf, issuer = _leaf_and_issuer(context)
    verifier = context.verifier()

    def run(data: bytes) -> None:
        swallow(lambda: load_crl(data, "fuzz"))
        index = CrlIndex.from_bytes(data, "fuzz")
        index.lookup(leaf.serial_number)
        swallow(lambda: index.signed_by(issuer))
        with_it = dataclasses.replace(verifier, crls=CrlSet.of([index, *context.crls]))
        swallow(lambda: with_it.verify(leaf))

    return run


def _distribution_point_seeds(context: Context) -> list[bytes]:
    return [crl.public_bytes(serialization.Encoding.DER) for crl in context.crl_list[:2]]


class _Served:
    """What the patched download function answers (the transport edge of the CRL cache)."""

    body = b""


@contextlib.contextmanager
def _patched(module: Any, name: str, replacement: Callable[..., bytes]) -> Iterator[None]:
    """Replace ``module.name`` (a network call) for the duration of one input."""
    if not hasattr(module, name):
        raise RuntimeError(f"{module.__name__}.{name} is gone: update the fuzz targets")
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(module, name, original)


def _served(*args: Any, **kwargs: Any) -> bytes:
    return _Served.body


def _crl_fetch_prepare(context: Context) -> Run:
    leaf, _ = _leaf_and_issuer(context)
    directory = scratch("crl")
    cache = CrlCache(directory)
    verifier = context.verifier(crl_cache=cache)
    allowed = {ErrorCode.REVOKED, ErrorCode.REVOCATION_UNKNOWN}

    def run(data: bytes) -> None:
        for leftover in directory.iterdir():
            leftover.unlink()
        _Served.body = data
        try:
            with _patched(crl_cache_module, "fetch_url", _served):
                verifier.verify(leaf)
        except VerificationError as e:
            if e.code not in allowed:
                raise OracleViolation(
                    f"a CRL served at the distribution point gave {e.code.value}, not "
                    "revocation_unknown"
                ) from e

    return run


def _crl_cache_prepare(context: Context) -> Run:
    directory = scratch("crlcache")
    cache = CrlCache(directory)
    good = context.crl_list[0].public_bytes(serialization.Encoding.DER)
    url = "http://127.0.0.1:8088/crl/fuzz.crl"

    def run(data: bytes) -> None:
        for leftover in directory.iterdir():
            leftover.unlink()
        path = cache.path_for(url)
        path.write_bytes(data)
        _Served.body = good
        try:
            cache.load(url)
        except VerificationError as e:
            if e.code is not ErrorCode.REVOCATION_UNKNOWN:
                raise OracleViolation(f"a damaged cache file gave {e.code.value}") from e
            if path.exists() and path.read_bytes() == data:
                raise OracleViolation("a damaged cache file was not moved aside") from e
        with _patched(crl_cache_module, "fetch_url", _served):
            refreshed = cache.get(url, dt.datetime.now(dt.UTC))
        if refreshed is None:
            raise OracleViolation("the CRL cache returned nothing")

    return run


# OCSP CertIDs hash with SHA-1 in practice (RFC 6960, RFC 5019): they identify, not protect.
_SHA1 = hashes.SHA1()  # noqa: S303


def _ocsp_seeds(context: Context) -> list[bytes]:
    leaf, issuer = _leaf_and_issuer(context)
    issuer_key = next(i.key for i in context.pki.intermediates.values() if i.certificate == issuer)
    now = dt.datetime.now(dt.UTC)
    seeds = []
    for status in (
        ocsp.OCSPCertStatus.GOOD,
        ocsp.OCSPCertStatus.REVOKED,
        ocsp.OCSPCertStatus.UNKNOWN,
    ):
        revoked_at = now - dt.timedelta(days=1) if status is ocsp.OCSPCertStatus.REVOKED else None
        builder = ocsp.OCSPResponseBuilder().add_response(
            leaf,
            issuer,
            _SHA1,
            status,
            now - dt.timedelta(minutes=1),
            now + dt.timedelta(days=1),
            revoked_at,
            None,
        )
        for encoding in (ocsp.OCSPResponderEncoding.HASH, ocsp.OCSPResponderEncoding.NAME):
            response = builder.responder_id(encoding, issuer).sign(issuer_key, hashes.SHA256())
            seeds.append(response.public_bytes(serialization.Encoding.DER))
    responder = context.credentials("cpe").authentication
    delegated = (
        ocsp.OCSPResponseBuilder()
        .add_response(leaf, issuer, _SHA1, ocsp.OCSPCertStatus.GOOD, now, now, None, None)
        .responder_id(ocsp.OCSPResponderEncoding.HASH, responder.certificate)
        .certificates([responder.certificate])
        .sign(responder.key, hashes.SHA256())
    )
    seeds.append(delegated.public_bytes(serialization.Encoding.DER))
    unsuccessful = ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER)
    seeds.append(unsuccessful.public_bytes(serialization.Encoding.DER))
    return seeds


def _ocsp_prepare(context: Context) -> Run:
    leaf, issuer = _leaf_and_issuer(context)

    def run(data: bytes) -> None:
        def post(*args: Any, **kwargs: Any) -> bytes:
            return data

        with _patched(ocsp_module, "_post", post):
            ocsp_module.ocsp_status(
                leaf, issuer, dt.datetime.now(dt.UTC), url="http://127.0.0.1:9/"
            )

    return run


# --- evidence files: what an IAM reads from a workstation ---------------------------------------

EVIDENCE_NONCE = bytes(range(32))
EVIDENCE_ORIGIN = "https://iam.example"


def _evidence(context: Context) -> X509SignatureEvidence:
    credentials = context.credentials("cps3")
    signed = bound_challenge(EVIDENCE_ORIGIN, EVIDENCE_NONCE)
    signature = credentials.authentication.key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    chain = (_der(credentials.authentication.certificate), *map(_der, credentials.chain))
    return X509SignatureEvidence(EVIDENCE_NONCE, EVIDENCE_ORIGIN, signed, signature, chain[:1])


def _evidence_seeds(context: Context) -> list[bytes]:
    evidence = _evidence(context)
    info = AuthenticatorInfo("cps3", "2800000011", context.atr("cps3"), Transport.CONTACT)
    valid = AuthResult(True, authenticator=info, reasons=("signature verified",), evidence=evidence)
    failed = AuthResult.failure(InvalidPinError(2), info)
    objects = [evidence.to_json(), valid.to_json(), failed.to_json()]
    seeds = [json.dumps(o).encode() for o in objects]
    seeds.append(json.dumps(objects[0], indent=2).encode())
    return seeds


def _evidence_prepare(context: Context) -> Run:
    directory = scratch("evidence")
    path = directory / "evidence.json"
    verifier = context.verifier()
    expected = Expected(EVIDENCE_NONCE, EVIDENCE_ORIGIN)

    def run(data: bytes) -> None:
        path.write_bytes(data)
        evidence, _ = load_evidence_file(path)
        if Evidence.from_json(json.loads(json.dumps(evidence.to_json()))) != evidence:
            raise OracleViolation("evidence read from a file does not round-trip through JSON")
        result = verify_evidence(evidence, expected, verifier=verifier)
        if not result.valid or result.identity is None:
            raise OracleViolation("verify_evidence returned without raising, but not valid")

    return run


# --- size and nesting: a unit repeated into a large input ----------------------------------------

MAX_REPEATED = 128 * 1024


def _repeated_seeds(context: Context) -> list[bytes]:
    units = [
        b"-----BEGIN CERTIFICATE-----\n",
        b"-----BEGIN X509 CRL-----\r\n",
        b"-----BEGIN PKCS7-----\nMIIB\n",
        b"[",
        b'{"exchanges":[',
        b"\x30\x80",
        b"\x30\x84\x00\x00\x00\x00",
        b"\x7f\x49\x81\x80",
        b"\x00",
    ]
    return [count + unit for unit in units for count in (b"\x00\x10", b"\x10\x00", b"\xff\xff")]


def _repeated_prepare(context: Context) -> Run:
    directory = scratch("repeated")
    path = directory / "vector.json"

    def run(data: bytes) -> None:
        if len(data) < 3:
            return
        unit = data[2:]
        count = min(int.from_bytes(data[:2], "big") + 1, MAX_REPEATED // len(unit))
        big = unit * count
        swallow(lambda: load_certificates(big, "fuzz"))
        swallow(lambda: CrlIndex.from_bytes(big, "fuzz"))
        # Card files are at most 32 KB (mie.cards.iso7816.MAX_FILE_SIZE).
        swallow(lambda: parse_tlvs(big[: MAX_FILE_SIZE + 1]))
        path.write_bytes(big)
        replay.load_vector(path)

    return run


TRUST_TARGETS = [
    Target(
        "certificates",
        "certificates in PEM, DER, PKCS#7 (mie.trust.parse.load_certificates)",
        _certificate_seeds,
        _certificate_prepare,
        max_len=16384,
    ),
    Target(
        "crl",
        "CRLs: load_crl, CrlIndex, and a chain check using them",
        _crl_seeds,
        _crl_prepare,
        max_len=16384,
    ),
    Target(
        "crl-fetch",
        "a CRL served at the distribution point, through CrlCache and the verifier",
        _distribution_point_seeds,
        _crl_fetch_prepare,
        max_len=16384,
    ),
    Target(
        "crl-cache",
        "a damaged CRL cache file (CrlCache.load, then get)",
        _distribution_point_seeds,
        _crl_cache_prepare,
        max_len=16384,
    ),
    Target(
        "ocsp",
        "OCSP answers (mie.trust.ocsp.ocsp_status on a fuzz response)",
        _ocsp_seeds,
        _ocsp_prepare,
    ),
    Target(
        "evidence",
        "evidence and saved results (load_evidence_file, then verify_evidence)",
        _evidence_seeds,
        _evidence_prepare,
        max_len=16384,
    ),
    Target(
        "repeated",
        "a unit repeated to 128 KB into the certificate, CRL, vector (and 32 KB TLV) parsers",
        _repeated_seeds,
        _repeated_prepare,
        max_len=256,
        # A probe of time against size: coverage tracing of 128 KB inputs would be the cost.
        uninstrumented=("mie",),
    ),
]
