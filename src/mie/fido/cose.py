"""COSE public keys (RFC 9052/9053) of FIDO2 credentials, read strictly into ``cryptography`` keys.

Three algorithms are known: ES256 (EC2, P-256), EdDSA (OKP, Ed25519) and RS256 (RSA 2048 to
4096 bits). A key must carry exactly the parameters of its type, no more, none missing; EC
points are checked to be on the curve. A known algorithm that the caller did not allow, and
any other algorithm or key type, is a refusal (``attestation_refused``), not a malformed key.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from mie.core import cbor
from mie.core.errors import SignatureInvalidError
from mie.fido.errors import AttestationRefusedError, CoseKeyFormatError

ES256 = -7
EDDSA = -8
RS256 = -257

ALGORITHM_NAMES = {ES256: "ES256", EDDSA: "EdDSA", RS256: "RS256"}
"""The COSE algorithms :mod:`mie` verifies, by identifier."""
DEFAULT_ALGORITHMS = frozenset({ES256, EDDSA})
"""The algorithms accepted unless the caller names others (RS256 is opt-in)."""

_KTY, _ALG = 1, 3
# (kty, alg) -> {label: parameter name}: exactly the labels a key of that type carries.
_LAYOUTS: dict[tuple[int, int], dict[int, str]] = {
    (2, ES256): {1: "kty", 3: "alg", -1: "crv", -2: "x", -3: "y"},
    (1, EDDSA): {1: "kty", 3: "alg", -1: "crv", -2: "x"},
    (3, RS256): {1: "kty", 3: "alg", -1: "n", -2: "e"},
}
_CURVES = {ES256: 1, EDDSA: 6}
_MIN_RSA_BYTES, _MAX_RSA_BYTES = 256, 512
_MAX_ECDSA_SIGNATURE = 72

# Stateless parameters, built once rather than at every verification.
_SHA256 = hashes.SHA256()
_ECDSA_SHA256 = ec.ECDSA(_SHA256)

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey


@dataclass(frozen=True)
class CoseKey:
    """A credential public key.

    :param alg: the COSE algorithm (:data:`ES256`, :data:`EDDSA` or :data:`RS256`).
    :param public_key: the key, as ``cryptography`` holds it.
    :param parameters: the COSE map it was read from.
    """

    alg: int
    public_key: PublicKey = field(repr=False)
    parameters: Mapping[int, Any] = field(repr=False, compare=False)

    @classmethod
    def parse(cls, obj: object, *, algorithms: Collection[int] = DEFAULT_ALGORITHMS) -> CoseKey:
        """Read a decoded COSE key map.

        :param obj: the map (from :func:`mie.core.cbor.decode`).
        :param algorithms: the COSE algorithms accepted.
        :raises CoseKeyFormatError: not a COSE key of its type (labels, types, sizes, point).
        :raises AttestationRefusedError: an algorithm or key type not supported or not allowed.
        """
        if not isinstance(obj, Mapping):
            raise CoseKeyFormatError("COSE key is not a CBOR map")
        kty, alg = obj.get(_KTY), obj.get(_ALG)
        if type(kty) is not int or type(alg) is not int:
            raise CoseKeyFormatError("COSE key has no integer kty (1) and alg (3)")
        layout = _LAYOUTS.get((kty, alg))
        if layout is None:
            raise AttestationRefusedError(
                f"COSE key type {kty} with algorithm {alg} is not supported"
            )
        if alg not in algorithms:
            raise AttestationRefusedError(f"COSE algorithm {ALGORITHM_NAMES[alg]} is not accepted")
        if set(obj) != set(layout):
            extra = sorted(set(obj) - set(layout), key=repr)
            missing = sorted(set(layout) - set(obj))
            raise CoseKeyFormatError(
                f"COSE {ALGORITHM_NAMES[alg]} key: labels {extra} not allowed, {missing} missing"
            )
        parameters = dict(obj)
        return cls(alg, _public_key(alg, parameters), parameters)

    @classmethod
    def from_bytes(
        cls, data: bytes, *, algorithms: Collection[int] = DEFAULT_ALGORITHMS
    ) -> CoseKey:
        """Read an encoded COSE key (as a credential store keeps it): one CBOR map, nothing after.

        :raises CborFormatError: not one strict CBOR item.
        """
        return cls.parse(cbor.decode(data, canonical=False, max_depth=2), algorithms=algorithms)

    @property
    def name(self) -> str:
        """:return: the algorithm's name (``ES256``, ``EdDSA``, ``RS256``)."""
        return ALGORITHM_NAMES[self.alg]

    def encode(self) -> bytes:
        """:return: the key in canonical CBOR."""
        return cbor.encode(self.parameters)

    def verify(self, signature: bytes, data: bytes) -> None:
        """Verify a WebAuthn signature (ES256: DER ECDSA; EdDSA: 64 bytes; RS256: PKCS#1 v1.5).

        :raises SignatureInvalidError: it does not verify, or has a length the algorithm never
            produces.
        """
        if not isinstance(signature, bytes) or not _length_ok(self, len(signature)):
            size = len(signature) if isinstance(signature, bytes) else "?"
            raise SignatureInvalidError(f"Signature of {size} bytes is not an {self.name} one")
        key = self.public_key
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, data, _ECDSA_SHA256)
            elif isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, data, padding.PKCS1v15(), _SHA256)
            else:
                key.verify(signature, data)
        except (InvalidSignature, ValueError) as e:
            raise SignatureInvalidError(f"{self.name} signature does not verify") from e


def _length_ok(key: CoseKey, size: int) -> bool:
    if key.alg == ES256:
        return 8 <= size <= _MAX_ECDSA_SIGNATURE
    if key.alg == EDDSA:
        return size == 64
    public = key.public_key
    return isinstance(public, rsa.RSAPublicKey) and size == (public.key_size + 7) // 8


def _field(parameters: Mapping[int, Any], label: int, name: str, size: int | None) -> bytes:
    value = parameters[label]
    if not isinstance(value, bytes):
        raise CoseKeyFormatError(f"COSE key parameter {name} ({label}) is not a byte string")
    if size is not None and len(value) != size:
        raise CoseKeyFormatError(f"COSE key parameter {name} is {len(value)} bytes, not {size}")
    return value


def _public_key(alg: int, parameters: Mapping[int, Any]) -> PublicKey:
    if alg in _CURVES:
        curve = parameters[-1]
        if type(curve) is not int or curve != _CURVES[alg]:
            raise CoseKeyFormatError(
                f"COSE {ALGORITHM_NAMES[alg]} key on curve {curve!r}, not {_CURVES[alg]}"
            )
    if alg == ES256:
        x, y = _field(parameters, -2, "x", 32), _field(parameters, -3, "y", 32)
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + x + y)
        except ValueError as error:
            raise CoseKeyFormatError("COSE ES256 key: the point is not on P-256") from error
    if alg == EDDSA:
        return ed25519.Ed25519PublicKey.from_public_bytes(_field(parameters, -2, "x", 32))
    n, exponent = _field(parameters, -1, "n", None), _field(parameters, -2, "e", None)
    if not _MIN_RSA_BYTES <= len(n) <= _MAX_RSA_BYTES or n[0] == 0:
        raise CoseKeyFormatError(f"COSE RS256 modulus of {len(n)} bytes: 256 to 512, no leading 0")
    e = int.from_bytes(exponent, "big")
    if not 1 <= len(exponent) <= 4 or exponent[0] == 0 or not e & 1 or e < 3:
        raise CoseKeyFormatError("COSE RS256 exponent is not an odd integer of 1 to 4 bytes, >= 3")
    try:
        return rsa.RSAPublicNumbers(e, int.from_bytes(n, "big")).public_key()
    except ValueError as error:
        raise CoseKeyFormatError(f"COSE RS256 key refused: {error}") from error
