"""Fuzz targets of the FIDO2 codecs: strict CBOR (mie.core.cbor), authenticator data, client data
JSON and COSE keys (mie.fido), see :mod:`tests.fuzz.targets`.

Seeds are built with mie's own encoder and fixed keys (no python-fido2, no randomness). Oracles:
what decodes in canonical form encodes back to the same bytes, and what decodes leniently
encodes to a canonical form that decodes to the same value; parsed authenticator data accounts
for every byte of its input; a parsed challenge is the one the JSON carries; a parsed COSE key
encodes to the map it was read from.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from mie.core import cbor
from mie.core.errors import CborFormatError, SignatureInvalidError
from mie.fido.authdata import AuthenticatorData
from mie.fido.clientdata import ClientData
from mie.fido.cose import EDDSA, ES256, RS256, CoseKey
from tests.fuzz.context import Context
from tests.fuzz.harness import OracleViolation, Reader, Run, Target, records

_ALL = frozenset({ES256, EDDSA, RS256})
_RP_ID_HASH = hashlib.sha256(b"iam.chu-exemple.fr").digest()
_AAGUID = bytes.fromhex("6d69652054455354206669646f320001")
_ORIGIN = "https://iam.chu-exemple.fr"


def _es256_key() -> dict[int, object]:
    key = ec.derive_private_key(0x6D6965, ec.SECP256R1()).public_key()
    point = key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return {1: 2, 3: ES256, -1: 1, -2: point[1:33], -3: point[33:]}


def _eddsa_key() -> dict[int, object]:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32))).public_key()
    return {1: 1, 3: EDDSA, -1: 6, -2: key.public_bytes_raw()}


def _rs256_key() -> dict[int, object]:
    n = (b"\xc5" + hashlib.sha512(b"mie").digest() * 4)[:255] + b"\x01"
    return {1: 3, 3: RS256, -1: n, -2: b"\x01\x00\x01"}


def _keys() -> list[dict[int, object]]:
    return [_es256_key(), _eddsa_key(), _rs256_key()]


def _authdata(flags: int, counter: int, key: dict[int, object] | None, ext: object = None) -> bytes:
    data = _RP_ID_HASH + bytes([flags]) + counter.to_bytes(4, "big")
    if key is not None:
        credential_id = hashlib.sha256(cbor.encode(key)).digest() + b"\x00" * 16
        data += _AAGUID + len(credential_id).to_bytes(2, "big") + credential_id + cbor.encode(key)
    if ext is not None:
        data += cbor.encode(ext)
    return data


def _authdata_seeds(context: Context) -> list[bytes]:
    seeds = [_authdata(0x05, 1, None), _authdata(0x1D, 0xFFFFFFFF, None)]
    seeds += [_authdata(0x45, 0, key) for key in _keys()]
    seeds.append(_authdata(0xC5, 0, _es256_key(), {"credProtect": 2, "hmac-secret": True}))
    seeds.append(_authdata(0x85, 9, None, {"credBlob": b"\x01\x02"}))
    return seeds


def _client_data(kind: str, challenge: bytes, **extra: object) -> bytes:
    text = base64.urlsafe_b64encode(challenge).rstrip(b"=").decode()
    obj = {"type": kind, "challenge": text, "origin": _ORIGIN, "crossOrigin": False, **extra}
    return json.dumps(obj, separators=(",", ":")).encode()


def _clientdata_seeds(context: Context) -> list[bytes]:
    return [
        _client_data("webauthn.get", bytes(range(32))),
        _client_data("webauthn.create", bytes(16)),
        _client_data("webauthn.get", b"\xff" * 64, other_keys_can_be_added_here="x"),
        b'{"type":"webauthn.get","challenge":"AAAAAAAAAAAAAAAAAAAAAA","origin":"http://localhost:8080"}',
    ]


def _cbor_seeds(context: Context) -> list[bytes]:
    es256 = _es256_key()
    info = {
        1: ["FIDO_2_0", "FIDO_2_1"],
        3: _AAGUID,
        4: {"rk": True, "up": True, "clientPin": False},
        5: 1200,
        6: [2, 1],
        10: [{"alg": -7, "type": "public-key"}, {"alg": -8, "type": "public-key"}],
    }
    attestation = {
        "fmt": "packed",
        "authData": _authdata(0x45, 0, es256),
        "attStmt": {"alg": -7, "sig": bytes(70), "x5c": [bytes(300)]},
    }
    items: list[object] = [info, attestation, *_keys(), [1, [2, 3], [4, 5]], -(1 << 64)]
    seeds = [cbor.encode(item) for item in items]
    # Lenient forms: non-minimal integers and keys out of canonical order.
    seeds += [bytes.fromhex("a203040102"), bytes.fromhex("1b00000000000000ff"), b"\xf6"]
    return seeds


def _cose_seeds(context: Context) -> list[bytes]:
    return [cbor.encode(key) for key in _keys()]


def _cbor_prepare(context: Context) -> Run:
    def run(data: bytes) -> None:
        try:
            value = cbor.decode(data, canonical=True)
        except CborFormatError:
            pass
        else:
            if cbor.encode(value) != data:
                raise OracleViolation("CBOR: a canonical decode does not encode back to its bytes")
        lenient = cbor.decode(data, canonical=False)
        encoded = cbor.encode(lenient)
        if cbor.encode(cbor.decode(encoded, canonical=True)) != encoded:
            raise OracleViolation("CBOR: the canonical form of a lenient decode does not read back")
        prefix, rest = cbor.decode_prefix(data + b"\x00", canonical=False)
        if rest != b"\x00" or cbor.encode(prefix) != encoded:
            raise OracleViolation("CBOR: decode_prefix disagrees with decode")

    return run


def _authdata_prepare(context: Context) -> Run:
    def run(data: bytes) -> None:
        parsed = AuthenticatorData.parse(data, algorithms=_ALL)
        used = 37
        if parsed.credential is not None:
            used += 18 + len(parsed.credential.credential_id) + len(parsed.credential.raw_key)
            if parsed.credential.public_key.encode() != cbor.encode(
                cbor.decode(parsed.credential.raw_key, canonical=False)
            ):
                raise OracleViolation("authData: the COSE key parsed is not the one in the data")
        if parsed.flags.ed != (parsed.extensions is not None):
            raise OracleViolation("authData: extensions read without the ED flag, or lost")
        if parsed.extensions is not None:
            if cbor.decode(data[used:], canonical=False) != parsed.extensions:
                raise OracleViolation("authData: the extensions are not the bytes after the key")
        elif used != len(data):
            raise OracleViolation("authData: bytes left unaccounted for")
        if parsed.raw != data or parsed.flags.at != (parsed.credential is not None):
            raise OracleViolation("authData: the parse does not match the flags or the bytes")

    return run


def _clientdata_prepare(context: Context) -> Run:
    def run(data: bytes) -> None:
        parsed = ClientData.parse(data)
        text = json.loads(data)["challenge"]
        if base64.urlsafe_b64encode(parsed.challenge).rstrip(b"=").decode() != text:
            raise OracleViolation("client data: the challenge read is not the one written")
        if not 16 <= len(parsed.challenge) <= 1024 or parsed.hash != hashlib.sha256(data).digest():
            raise OracleViolation("client data: a challenge out of bounds, or the wrong hash")

    return run


def _cose_prepare(context: Context) -> Run:
    signer = ec.derive_private_key(0x6D6965, ec.SECP256R1())
    message = b"mie fuzz"
    signature = signer.sign(message, ec.ECDSA(hashes.SHA256()))

    def run(data: bytes) -> None:
        key = CoseKey.from_bytes(data, algorithms=_ALL)
        if cbor.decode(key.encode(), canonical=True) != cbor.decode(data, canonical=False):
            raise OracleViolation("COSE: the key does not encode to the map it was read from")
        try:
            key.verify(signature, message)
        except SignatureInvalidError:
            return
        if key.parameters != _es256_key():
            raise OracleViolation("COSE: another key verified the seed key's signature")

    return run


_HID_CID = 0x6D696501  # the first channel the target's counting rng hands out


def _hid_report(cid: int, cmd: int, data: bytes) -> bytes:
    return (
        cid.to_bytes(4, "big") + bytes([0x80 | cmd]) + len(data).to_bytes(2, "big") + data
    ).ljust(64, b"\0")


def _ctaphid_seeds(context: Context) -> list[bytes]:
    init = _hid_report(0xFFFFFFFF, 0x06, b"mie-fuzz")
    ping = _hid_report(_HID_CID, 0x01, b"ping")
    get_info = _hid_report(_HID_CID, 0x10, b"\x04")
    long_ping = _hid_report(_HID_CID, 0x01, bytes(100))[:64]
    continuation = (_HID_CID.to_bytes(4, "big") + b"\x00" + bytes(59)).ljust(64, b"\0")
    return [
        records([init, ping]),
        records([init, get_info]),
        records([init, long_ping, continuation]),
        records([init, ping, _hid_report(_HID_CID, 0x11, b"\x01")]),
    ]


def _ctaphid_prepare(context: Context) -> Run:
    from mie.emulation.ctap2 import EmulatedAuthenticator
    from mie.emulation.ctaphid import CtapHidFraming

    engine = EmulatedAuthenticator()

    def run(data: bytes) -> None:
        counter = iter(range(_HID_CID, _HID_CID + 10_000))

        def rng(n: int) -> bytes:
            return next(counter).to_bytes(n, "big")

        framing = CtapHidFraming(engine, rng=rng)
        try:
            for report in Reader(data).records():
                framing.feed(report)
                _drain(framing)
            deadline = 50  # a CBOR command runs on a worker thread: let it answer
            while framing.busy and deadline:
                _drain(framing, timeout=0.01)
                deadline -= 1
            _drain(framing)
        finally:
            framing.close()

    return run


def _drain(framing: Any, timeout: float = 0.0) -> None:
    while (report := framing.read(timeout)) is not None:
        if len(report) != 64:
            raise OracleViolation(f"CTAPHID: a report of {len(report)} bytes")
        if report[4] == 0x80 | 0x3F and report[7] == 0x7F:
            raise OracleViolation("CTAPHID: an internal failure answered ERR_OTHER")
        timeout = 0.0


FIDO_TARGETS = [
    Target(
        "cbor-strict",
        "strict CBOR in both modes, canonical round trip and decode_prefix (mie.core.cbor)",
        _cbor_seeds,
        _cbor_prepare,
    ),
    Target(
        "fido-authdata",
        "WebAuthn authenticator data with attested credential and extensions (mie.fido.authdata)",
        _authdata_seeds,
        _authdata_prepare,
    ),
    Target(
        "fido-clientdata",
        "WebAuthn client data JSON: type, challenge, origin, crossOrigin (mie.fido.clientdata)",
        _clientdata_seeds,
        _clientdata_prepare,
    ),
    Target(
        "fido-cose",
        "COSE keys ES256/EdDSA/RS256 to cryptography keys, then a signature check (mie.fido.cose)",
        _cose_seeds,
        _cose_prepare,
        max_len=1024,
    ),
    Target(
        "ctaphid",
        "the emulated key's CTAPHID device side on report sequences: INIT, PING, WINK, CBOR to the "
        "CTAP engine, CANCEL, continuations, errors (mie.emulation.ctaphid)",
        _ctaphid_seeds,
        _ctaphid_prepare,
    ),
]
