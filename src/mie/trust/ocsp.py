"""OCSP (RFC 6960) status for one certificate, over HTTP POST with a deadline.

The response must be signed by the issuer itself or by a responder certificate the issuer
issued with the OCSPSigning extended key usage; it must answer for this certificate (CertID by
issuer name/key hash and serial) and be current (thisUpdate ≤ now ≤ nextUpdate, with a small
allowance for clock skew). Anything else is an ``unknown`` status, never ``good``.
"""

from __future__ import annotations

import datetime as dt
import time

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from mie.trust.cache import fetch_url
from mie.trust.crl import RevocationStatus, Status
from mie.trust.errors import VerificationError, describe

DEFAULT_TIMEOUT_S = 5.0
MAX_RESPONSE_BYTES = 64 * 1024
CLOCK_SKEW = dt.timedelta(minutes=5)


def ocsp_urls(cert: x509.Certificate) -> list[str]:
    """:return: the OCSP responder URLs of the certificate's AIA extension."""
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    return [
        str(d.access_location.value)
        for d in aia
        if d.access_method == AuthorityInformationAccessOID.OCSP
        and isinstance(d.access_location, x509.UniformResourceIdentifier)
    ]


def ocsp_status(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    at: dt.datetime,
    *,
    url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    deadline: float | None = None,
) -> Status:
    """Ask the certificate's OCSP responder for its status.

    Whatever the responder sends (garbage, an unknown signature algorithm, a responder key that
    cannot be loaded), the answer is a :class:`Status`: ``unknown`` unless the response verifies.

    :param cert: the certificate.
    :param issuer: its issuer.
    :param at: the check time (aware).
    :param url: the responder (default: the first AIA OCSP URL).
    :param timeout: longest wait for one network operation, seconds.
    :param deadline: :func:`time.monotonic` time by which the whole exchange must be over
        (the revocation deadline of a login; default: no more than ``timeout`` per operation).
    :return: good, revoked, or unknown with the reason.
    """
    urls = [url] if url else ocsp_urls(cert)
    if not urls:
        return Status(RevocationStatus.UNKNOWN, "no OCSP URL")
    try:
        return _ask(cert, issuer, at, urls[0], timeout, deadline)
    except VerificationError as e:
        return Status(RevocationStatus.UNKNOWN, f"OCSP {urls[0]}: {e.message}")
    # A response is outside bytes: whatever the parsers raise on it means "no answer".
    except Exception as e:
        return Status(RevocationStatus.UNKNOWN, f"OCSP {urls[0]}: unusable answer ({describe(e)})")


def _ask(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    at: dt.datetime,
    url: str,
    timeout: float,
    deadline: float | None,
) -> Status:
    # CertID hashes are SHA-1 in practice (RFC 6960, RFC 5019); they identify, not protect.
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()  # noqa: S303
    body = _post(url, request.public_bytes(serialization.Encoding.DER), timeout, deadline)
    response = ocsp.load_der_ocsp_response(body)
    return _judge(response, request, cert, issuer, at, url)


def _post(url: str, data: bytes, timeout: float, deadline: float | None = None) -> bytes:
    if deadline is None:
        deadline = time.monotonic() + 2 * timeout  # connect, then the answer
    return fetch_url(
        url,
        timeout=timeout,
        limit=MAX_RESPONSE_BYTES,
        deadline=deadline,
        data=data,
        content_type="application/ocsp-request",
    )


def _judge(
    response: ocsp.OCSPResponse,
    request: ocsp.OCSPRequest,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    at: dt.datetime,
    url: str,
) -> Status:
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        return Status(RevocationStatus.UNKNOWN, f"OCSP {url}: {response.response_status.name}")
    problem = _signature_problem(response, issuer, at)
    if problem:
        return Status(RevocationStatus.UNKNOWN, f"OCSP {url}: {problem}")
    for single in response.responses:
        if (
            single.serial_number == cert.serial_number
            and single.issuer_key_hash == request.issuer_key_hash
            and single.issuer_name_hash == request.issuer_name_hash
        ):
            return _single_status(single, at, url)
    return Status(RevocationStatus.UNKNOWN, f"OCSP {url}: no answer for this certificate")


def _single_status(single: ocsp.OCSPSingleResponse, at: dt.datetime, url: str) -> Status:
    if single.this_update_utc > at + CLOCK_SKEW:
        return Status(RevocationStatus.UNKNOWN, f"OCSP {url}: response from the future")
    if single.next_update_utc is None or single.next_update_utc < at - CLOCK_SKEW:
        return Status(RevocationStatus.UNKNOWN, f"OCSP {url}: response is stale")
    if single.certificate_status is ocsp.OCSPCertStatus.GOOD:
        return Status(RevocationStatus.GOOD, f"OCSP {url}: good")
    if single.certificate_status is ocsp.OCSPCertStatus.REVOKED:
        when = single.revocation_time_utc.isoformat() if single.revocation_time_utc else "?"
        return Status(RevocationStatus.REVOKED, f"OCSP {url}: revoked {when}")
    return Status(RevocationStatus.UNKNOWN, f"OCSP {url}: responder does not know it")


def _signature_problem(
    response: ocsp.OCSPResponse, issuer: x509.Certificate, at: dt.datetime
) -> str | None:
    signer = issuer
    if not _responder_is(response, issuer):
        delegated = [c for c in response.certificates if _responder_is(response, c)]
        if not delegated:
            return "responder certificate not found"
        signer = delegated[0]
        try:
            signer.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            return "responder certificate not issued by the CA"
        if not _is_ocsp_signer(signer, at):
            return "responder certificate lacks OCSPSigning or is not valid now"
    try:
        _verify(signer, response.signature, response.tbs_response_bytes, response)
    except UnsupportedAlgorithm:
        return "unsupported response signature algorithm"
    except (InvalidSignature, TypeError, ValueError):
        return "bad response signature"
    return None


def _verify(
    signer: x509.Certificate, signature: bytes, data: bytes, response: ocsp.OCSPResponse
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    key = signer.public_key()
    algorithm = response.signature_hash_algorithm
    if isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
        key.verify(signature, data, padding.PKCS1v15(), algorithm)
    elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
        key.verify(signature, data, ec.ECDSA(algorithm))
    else:
        raise TypeError("Unsupported OCSP signature key")


def _responder_is(response: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    if response.responder_name is not None:
        return response.responder_name == cert.subject
    digest = hashes.Hash(hashes.SHA1())  # noqa: S303 (RFC 6960 KeyHash is SHA-1 by definition)
    key_der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    from asn1crypto import keys as akeys  # type: ignore[import-untyped]

    digest.update(akeys.PublicKeyInfo.load(key_der, strict=True)["public_key"].contents[1:])
    return digest.finalize() == response.responder_key_hash


def _is_ocsp_signer(cert: x509.Certificate, at: dt.datetime) -> bool:
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        return False
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.OCSP_SIGNING in usages
