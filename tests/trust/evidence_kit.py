"""Evidence made the way a card makes it, with the keys of the test PKI."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from mie.emulation.testpki import Issued
from mie.evidence import X509SignatureEvidence
from mie.request import bound_challenge

NONCE = bytes(range(32))
ORIGIN = "https://iam.example"


def der(issued: Issued) -> bytes:
    return issued.certificate.public_bytes(serialization.Encoding.DER)


def signed_evidence(
    signer: Issued,
    *,
    nonce: bytes = NONCE,
    origin: str = ORIGIN,
    challenge: bytes | None = None,
    leaf: Issued | None = None,
) -> X509SignatureEvidence:
    """Evidence signed by ``signer``'s key over ``challenge`` (default: the bound challenge),
    carrying ``leaf``'s certificate (default: ``signer``'s)."""
    signed = bound_challenge(origin, nonce) if challenge is None else challenge
    signature = signer.key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    return X509SignatureEvidence(nonce, origin, signed, signature, (der(leaf or signer),))
