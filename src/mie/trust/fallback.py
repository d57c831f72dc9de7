"""The RFC 5280 engine (pyhanko-certvalidator), for what cryptography's verifier does not cover.

cryptography's verifier is strict (CA/B-style profile) and has no revocation; some RFC 5280-valid
paths (GeneralizedTime before 2050, names equal only after RFC 4518 preparation, DSA parameter
inheritance, self-issued key roll-over certificates, non-critical basicConstraints) and some CRL
forms (indirect CRLs, reason partitions, separate CRL-signing keys) need the full algorithm. This
module runs pyhanko-certvalidator on the same inputs and maps its errors to mie's codes. It is an
optional extra (``mie[rfc5280]``): without it those cases are rejected (fail closed).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any

from asn1crypto import crl as acrl  # type: ignore[import-untyped]
from asn1crypto import x509 as ax509

from mie.trust.errors import ErrorCode, VerificationError, describe, malformed


def available() -> bool:
    """:return: whether pyhanko-certvalidator can be imported."""
    try:
        import pyhanko_certvalidator  # noqa: F401
    except ImportError:
        return False
    return True


def validate(
    leaf: bytes,
    intermediates: Sequence[bytes],
    anchors: Sequence[bytes],
    crls: Sequence[bytes],
    at: dt.datetime,
    *,
    hard: bool,
    legacy_algorithms: bool,
) -> list[bytes]:
    """Validate a path with revocation the RFC 5280 way.

    :param leaf: the end-entity certificate (DER).
    :param intermediates: untrusted CA certificates that may complete a path (DER).
    :param anchors: trust anchors (DER).
    :param crls: CRLs (DER); only those whose issuer may matter are handed over.
    :param at: validation time.
    :param hard: revocation status must be established for every certificate.
    :param legacy_algorithms: accept SHA-1, RSA/DSA 1024 (conformance suites only).
    :return: the path, leaf first, anchor last (DER).
    :raises VerificationError: the mapped failure.
    """
    from pyhanko_certvalidator import CertificateValidator, ValidationContext
    from pyhanko_certvalidator.policy_decl import DisallowWeakAlgorithmsPolicy

    policy = (
        DisallowWeakAlgorithmsPolicy(
            weak_hash_algos=frozenset({"md2", "md5"}),
            rsa_key_size_threshold=1024,
            dsa_key_size_threshold=1024,
        )
        if legacy_algorithms
        else DisallowWeakAlgorithmsPolicy()
    )
    try:
        leaf_cert = _certificate(leaf)
        pool = [_certificate(d) for d in intermediates]
        context = ValidationContext(
            trust_roots=[_certificate(d) for d in anchors],
            other_certs=pool,
            crls=_relevant_crls(leaf_cert, pool, [_crl(c) for c in crls]),
            moment=at,
            revocation_mode="require" if hard else "soft-fail",
            allow_fetching=False,
            algorithm_usage_policy=policy,
            signature_validator=_inheriting_validator([leaf_cert, *pool]),
        )
        validator = CertificateValidator(leaf_cert, validation_context=context)
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as e:
        # asn1crypto decodes lazily: a broken input may only fail here, never as a verdict.
        raise malformed(f"The RFC 5280 engine cannot read its inputs ({describe(e)})") from e
    try:
        path = asyncio.run(validator.async_validate_path())
    except Exception as e:  # pyhanko raises a family of types; map them all.
        raise _mapped(e) from e
    return [c.dump() for c in reversed(list(path.iter_certs(include_root=True)))]


@functools.lru_cache(maxsize=4096)
def _certificate(der: bytes) -> ax509.Certificate:
    return ax509.Certificate.load(der, strict=True)


@functools.lru_cache(maxsize=256)
def _crl(der: bytes) -> acrl.CertificateList:
    return acrl.CertificateList.load(der, strict=True)


def _relevant_crls(
    leaf: ax509.Certificate, pool: list[ax509.Certificate], crls: list[acrl.CertificateList]
) -> list[acrl.CertificateList]:
    # Hand over only CRLs from names a path for this leaf can reach: pyhanko may otherwise
    # pick an unrelated CRL from a large pool.
    names = {leaf.issuer.hashable, *_crl_issuers(leaf)}
    grew = True
    while grew:
        grew = False
        for cert in pool:
            if cert.subject.hashable in names:
                for name in (cert.issuer.hashable, *_crl_issuers(cert)):
                    if name not in names:
                        names.add(name)
                        grew = True
    return [c for c in crls if c.issuer.hashable in names]


def _crl_issuers(cert: ax509.Certificate) -> list[str]:
    points = cert.crl_distribution_points_value
    found = []
    for point in points or []:
        for general in point["crl_issuer"] or []:
            if general.name == "directory_name":
                found.append(general.chosen.hashable)
    return found


def _inheriting_validator(certs: list[ax509.Certificate]) -> Any:
    """A signature validator that fills DSA parameters inherited from the issuer (RFC 3279
    §2.3.2). pyhanko applies inheritance along the path but not to CRL signer keys."""
    from asn1crypto import keys as akeys
    from pyhanko_certvalidator.sig_validate import DefaultSignatureValidator

    by_subject = {c.subject.hashable: c for c in certs}
    inherited: dict[bytes, Any] = {}
    for cert in certs:
        key = cert.public_key
        if key.algorithm != "dsa" or key["algorithm"]["parameters"].native is not None:
            continue
        issuer = by_subject.get(cert.issuer.hashable)
        while issuer is not None and issuer.public_key.algorithm == "dsa":
            parameters = issuer.public_key["algorithm"]["parameters"]
            if parameters.native is not None:
                inherited[key["public_key"].dump()] = parameters
                break
            issuer = by_subject.get(issuer.issuer.hashable)

    class Inheriting(DefaultSignatureValidator):
        def validate_signature(
            self,
            signature: bytes,
            signed_data: bytes,
            public_key_info: Any,
            *args: Any,
            **kwargs: Any,
        ) -> None:
            parameters = inherited.get(public_key_info["public_key"].dump())
            if parameters is not None and public_key_info["algorithm"]["parameters"].native is None:
                public_key_info = akeys.PublicKeyInfo(
                    {
                        "algorithm": {"algorithm": "dsa", "parameters": parameters},
                        "public_key": public_key_info["public_key"],
                    }
                )
            super().validate_signature(signature, signed_data, public_key_info, *args, **kwargs)

    return Inheriting()


_MESSAGE_CODES = (
    ("issuer name could not be matched", ErrorCode.NAME_CHAINING),
    ("signature", ErrorCode.BAD_SIGNATURE),
    ("is not a CA", ErrorCode.NOT_CA),
    ("maximum path length", ErrorCode.PATH_LENGTH),
    ("not allowed to sign certificates", ErrorCode.KEY_USAGE),
    ("not valid for the purpose", ErrorCode.KEY_USAGE),
    ("unsupported critical extension", ErrorCode.UNKNOWN_CRITICAL_EXTENSION),
    ("polic", ErrorCode.POLICY),
)


def _mapped(error: Exception) -> VerificationError:
    from pyhanko_certvalidator import errors

    message = describe(error)
    by_type = (
        (errors.RevokedError, ErrorCode.REVOKED),
        (errors.InsufficientRevinfoError, ErrorCode.REVOCATION_UNKNOWN),
        (errors.ExpiredError, ErrorCode.EXPIRED),
        (errors.NotYetValidError, ErrorCode.NOT_YET_VALID),
        (errors.DisallowedAlgorithmError, ErrorCode.BAD_SIGNATURE),
        (errors.PathBuildingError, ErrorCode.UNTRUSTED),
    )
    for kind, code in by_type:
        if isinstance(error, kind):
            return VerificationError(code, message)
    for fragment, code in _MESSAGE_CODES:
        if fragment in message:
            return VerificationError(code, message)
    return VerificationError(ErrorCode.UNTRUSTED, message)
