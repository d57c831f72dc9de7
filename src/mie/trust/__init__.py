"""ANS (IGC-Santé) trust: anchors, path validation, revocation, identity from certificates.

Typical use::

    from mie.trust import TrustStore, VerifierBuilder, Usage, identity_from_certificate

    verifier = VerifierBuilder().store(TrustStore.default()).usage(Usage.AUTH).crls(crls).build()
    result = verifier.verify(leaf, intermediates)   # raises VerificationError
    identity = identity_from_certificate(result.leaf)

The verifier of a login (default and operator stores, the CRL cache directory, downloads or
read-only) and the report of a verified certificate are in :mod:`mie.trust.login`. Nothing here
imports a hardware stack.
"""

from __future__ import annotations

from mie.trust.cache import CrlCache, ReadOnlyCrlCache
from mie.trust.crl import CrlIndex, CrlSet, RevocationStatus
from mie.trust.errors import ErrorCode, VerificationError
from mie.trust.identity import Identity, identity_from_certificate
from mie.trust.parse import load_certificates, load_crl
from mie.trust.store import Anchor, CaClass, Domain, Gamme, TrustStore, classify
from mie.trust.verify import (
    Profile,
    RevocationMode,
    Usage,
    VerificationResult,
    Verifier,
    VerifierBuilder,
)

__all__ = [
    "Anchor",
    "CaClass",
    "CrlCache",
    "CrlIndex",
    "CrlSet",
    "Domain",
    "ErrorCode",
    "Gamme",
    "Identity",
    "Profile",
    "ReadOnlyCrlCache",
    "RevocationMode",
    "RevocationStatus",
    "TrustStore",
    "Usage",
    "VerificationError",
    "VerificationResult",
    "Verifier",
    "VerifierBuilder",
    "classify",
    "identity_from_certificate",
    "load_certificates",
    "load_crl",
]
