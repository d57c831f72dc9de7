"""The credentials of the emulated security key and how they sign.

A :class:`StoredCredential` keeps its private key in clear: this is an emulator, never a real
key. No repr shows a key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

ES256 = -7
EDDSA = -8
ALGORITHMS = (ES256, EDDSA)
"""The COSE algorithms the emulator can create credentials for, by preference."""

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def generate_key(alg: int) -> PrivateKey:
    """:return: a new private key for COSE algorithm ``alg`` (ES256 or EdDSA)."""
    if alg == ES256:
        return ec.generate_private_key(ec.SECP256R1())
    if alg == EDDSA:
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"COSE algorithm {alg} is not one the emulator makes")


def cose_public_key(key: PrivateKey) -> dict[int, Any]:
    """:return: the COSE_Key map of ``key``'s public half (ES256 EC2 P-256, or EdDSA OKP)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        numbers = key.public_key().public_numbers()
        return {
            1: 2,
            3: ES256,
            -1: 1,
            -2: numbers.x.to_bytes(32, "big"),
            -3: numbers.y.to_bytes(32, "big"),
        }
    raw = key.public_key().public_bytes_raw()
    return {1: 1, 3: EDDSA, -1: 6, -2: raw}


def sign(key: PrivateKey, data: bytes) -> bytes:
    """:return: the WebAuthn signature of ``data``: DER ECDSA with SHA-256, or Ed25519."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    return key.sign(data)


@dataclass
class StoredCredential:
    """One credential on the key.

    :param id: the credential id (random).
    :param rp_id: the relying party id it was made for.
    :param rp_id_hash: SHA-256 of ``rp_id``.
    :param user: the user entity given at creation (``id``, ``name``, ``displayName``).
    :param alg: its COSE algorithm.
    :param private_key: its private key (never in a repr).
    :param sign_count: the per-credential signature counter.
    :param discoverable: a resident (discoverable) credential.
    :param created: the key's creation sequence number (newest first in discovery).
    """

    id: bytes
    rp_id: str
    rp_id_hash: bytes
    user: dict[str, Any]
    alg: int
    private_key: PrivateKey = field(repr=False)
    sign_count: int = 0
    discoverable: bool = False
    created: int = 0

    @property
    def cose_key(self) -> dict[int, Any]:
        """:return: the credential public key as a COSE_Key map."""
        return cose_public_key(self.private_key)

    def sign(self, data: bytes) -> bytes:
        """:return: the signature of ``data`` with the credential key."""
        return sign(self.private_key, data)
