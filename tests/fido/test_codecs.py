"""mie.fido's WebAuthn codecs (authenticator data, client data, COSE keys) on structures that
python-fido2 builds, and every refusal on bytes."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from mie.core import cbor
from mie.core.errors import (
    CborFormatError,
    ErrorCode,
    MieError,
    PinAuthBlockedError,
    PinBlockedError,
    SignatureInvalidError,
    TransportTimeoutError,
)
from mie.fido import errors
from mie.fido.authdata import AuthenticatorData, AuthFlags
from mie.fido.clientdata import ClientData
from mie.fido.cose import EDDSA, ES256, RS256, CoseKey
from mie.fido.errors import (
    AttestationRefusedError,
    AuthDataFormatError,
    ClientDataFormatError,
    CoseKeyFormatError,
)
from tests.harness import require_module

webauthn = require_module("fido2.webauthn", "python-fido2 (mie[fido]) builds the data")
fido2_cose = require_module("fido2.cose", "python-fido2 (mie[fido]) builds the keys")

RP_ID_HASH = hashlib.sha256(b"iam.chu-exemple.fr").digest()
AAGUID = bytes.fromhex("6d69652054455354206669646f320001")
FLAG = webauthn.AuthenticatorData.FLAG
NONCE = bytes(range(32))
ORIGIN = "https://iam.chu-exemple.fr"


def _spki(key: Any) -> bytes:
    return bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _es256() -> tuple[ec.EllipticCurvePrivateKey, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    return key, fido2_cose.ES256.from_cryptography_key(key.public_key())


def _registration(
    cose_key: Any, *, credential_id: bytes = b"\x01" * 48, extensions: Any = None, flags: int = 0
) -> bytes:
    credential = webauthn.AttestedCredentialData.create(AAGUID, credential_id, cose_key)
    flags |= FLAG.UP | FLAG.UV | FLAG.AT | (FLAG.ED if extensions else 0)
    return bytes(webauthn.AuthenticatorData.create(RP_ID_HASH, flags, 0, credential, extensions))


# --- authenticator data ------------------------------------------------------------------------


def test_assertion_data_is_37_bytes_with_flags_and_counter() -> None:
    raw = bytes(webauthn.AuthenticatorData.create(RP_ID_HASH, FLAG.UP | FLAG.UV, 7))
    data = AuthenticatorData.parse(raw)
    assert len(raw) == 37 and data.raw == raw
    assert data.rp_id_hash == RP_ID_HASH and data.sign_count == 7
    assert data.flags == AuthFlags(up=True, uv=True, be=False, bs=False, at=False, ed=False)
    assert data.credential is None and data.extensions is None


def test_registration_data_carries_the_credential_and_its_cose_key() -> None:
    key, cose_key = _es256()
    raw = _registration(cose_key, flags=FLAG.BE | FLAG.BS)
    data = AuthenticatorData.parse(raw)
    theirs = webauthn.AuthenticatorData(raw)
    assert data.flags.at and data.flags.be and data.flags.bs and not data.flags.ed
    assert data.credential is not None
    assert data.credential.aaguid == AAGUID == bytes(theirs.credential_data.aaguid)
    assert data.credential.credential_id == theirs.credential_data.credential_id
    assert data.credential.raw_key == cbor.encode(dict(cose_key))
    assert data.credential.public_key.alg == ES256
    assert _spki(data.credential.public_key.public_key) == _spki(key.public_key())


def test_extensions_after_the_credential_and_alone() -> None:
    _, cose_key = _es256()
    data = AuthenticatorData.parse(_registration(cose_key, extensions={"credProtect": 2}))
    assert data.extensions == {"credProtect": 2} and data.credential is not None
    raw = bytes(
        webauthn.AuthenticatorData.create(RP_ID_HASH, FLAG.UP | FLAG.ED, 1, b"", {"x": True})
    )
    assert AuthenticatorData.parse(raw).extensions == {"x": True}


def test_eddsa_and_opt_in_rs256_credentials() -> None:
    ed = ed25519.Ed25519PrivateKey.generate()
    data = AuthenticatorData.parse(
        _registration(fido2_cose.EdDSA.from_cryptography_key(ed.public_key()))
    )
    assert data.credential is not None and data.credential.public_key.name == "EdDSA"
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raw = _registration(fido2_cose.RS256.from_cryptography_key(rsa_key.public_key()))
    with pytest.raises(AttestationRefusedError, match="RS256 is not accepted"):
        AuthenticatorData.parse(raw)
    parsed = AuthenticatorData.parse(raw, algorithms={ES256, RS256})
    assert parsed.credential is not None and parsed.credential.public_key.alg == RS256


def test_trailing_byte_after_cose_key() -> None:
    _, cose_key = _es256()
    raw = _registration(cose_key)
    with pytest.raises(AuthDataFormatError, match=f"1 trailing bytes at offset {len(raw)}"):
        AuthenticatorData.parse(raw + b"\x00")


def test_trailing_byte_after_37_bytes() -> None:
    raw = bytes(webauthn.AuthenticatorData.create(RP_ID_HASH, FLAG.UP, 1))
    with pytest.raises(AuthDataFormatError, match="1 trailing bytes at offset 37"):
        AuthenticatorData.parse(raw + b"\x00")


def test_extensions_must_end_the_data() -> None:
    raw = bytes(webauthn.AuthenticatorData.create(RP_ID_HASH, FLAG.UP | FLAG.ED, 1, b"", {"a": 1}))
    with pytest.raises(AuthDataFormatError, match="trailing bytes at offset"):
        AuthenticatorData.parse(raw + b"\x01")


def _header(flags: int) -> bytes:
    return RP_ID_HASH + bytes([flags]) + (5).to_bytes(4, "big")


REFUSED_AUTHDATA = [
    ("short", _header(0x01)[:36], "36 bytes, not 37 to 4096"),
    ("long", _header(0x01) + bytes(4100), "bytes, not 37 to 4096"),
    ("rfu bit 0x02", _header(0x03), "reserved bits set"),
    ("rfu bit 0x20", _header(0x21), "reserved bits set"),
    ("bs without be", _header(0x11), r"backed up \(BS\) but not eligible"),
    ("at without data", _header(0x41), "AT flag set but no attested credential data at offset 37"),
    ("at, short header", _header(0x41) + AAGUID + b"\x00", "no attested credential data"),
    ("credential id 0", _header(0x41) + AAGUID + b"\x00\x00" + b"\xa0", "credential id of 0"),
    ("credential id 1024", _header(0x41) + AAGUID + b"\x04\x00" + bytes(1100), "of 1024 bytes"),
    (
        "credential id past end",
        _header(0x41) + AAGUID + b"\x00\x20" + bytes(8),
        "runs past the end",
    ),
    ("no cose key", _header(0x41) + AAGUID + b"\x00\x01\x07", "unexpected end of data"),
    (
        "cose key not cbor",
        _header(0x41) + AAGUID + b"\x00\x01\x07\xa1\x01",
        "credential public key",
    ),
    ("cose key a float", _header(0x41) + AAGUID + b"\x00\x01\x07\xf9\x3c\x00", "offset 56"),
    ("ed without extensions", _header(0x81), "extensions: CBOR at offset 37"),
    ("extensions not a map", _header(0x81) + b"\x01", "not a map of named outputs"),
    ("extensions empty", _header(0x81) + b"\xa0", "not a map of named outputs"),
    ("extensions int keys", _header(0x81) + b"\xa1\x01\x02", "not a map of named outputs"),
    ("extensions duplicate", _header(0x81) + bytes.fromhex("a2616101616102"), "duplicate map key"),
    ("at and ed, data then nothing", _header(0xC1), "AT flag set"),
]


@pytest.mark.parametrize(
    ("raw", "words"), [r[1:] for r in REFUSED_AUTHDATA], ids=[r[0] for r in REFUSED_AUTHDATA]
)
def test_authenticator_data_refusals(raw: bytes, words: str) -> None:
    with pytest.raises(AuthDataFormatError, match=words) as raised:
        AuthenticatorData.parse(raw)
    assert raised.value.code is ErrorCode.MALFORMED


def test_credential_id_of_1023_bytes_is_the_longest() -> None:
    _, cose_key = _es256()
    data = AuthenticatorData.parse(_registration(cose_key, credential_id=b"\x05" * 1023))
    assert data.credential is not None and len(data.credential.credential_id) == 1023


def test_cose_key_refusal_inside_authenticator_data() -> None:
    _, cose_key = _es256()
    broken = dict(cose_key)
    broken[-2] = broken[-2][:31]
    with pytest.raises(CoseKeyFormatError, match="x is 31 bytes"):
        AuthenticatorData.parse(_registration(broken))


def test_bad_argument_types() -> None:
    with pytest.raises(TypeError):
        AuthenticatorData.parse(bytearray(37))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ClientData.parse("{}")  # type: ignore[arg-type]


# --- signatures ---------------------------------------------------------------------------------


def test_each_algorithm_verifies_what_the_key_signed() -> None:
    message = bytes(webauthn.AuthenticatorData.create(RP_ID_HASH, FLAG.UP, 1)) + bytes(32)
    es = ec.generate_private_key(ec.SECP256R1())
    ed = ed25519.Ed25519PrivateKey.generate()
    rs = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = [
        (
            fido2_cose.ES256.from_cryptography_key(es.public_key()),
            es.sign(message, ec.ECDSA(hashes.SHA256())),
        ),
        (fido2_cose.EdDSA.from_cryptography_key(ed.public_key()), ed.sign(message)),
        (
            fido2_cose.RS256.from_cryptography_key(rs.public_key()),
            rs.sign(message, padding.PKCS1v15(), hashes.SHA256()),
        ),
    ]
    for cose_key, signature in cases:
        key = CoseKey.from_bytes(cbor.encode(dict(cose_key)), algorithms={ES256, EDDSA, RS256})
        key.verify(signature, message)
        flipped = signature[:-1] + bytes([signature[-1] ^ 1])
        with pytest.raises(SignatureInvalidError, match="does not verify"):
            key.verify(flipped, message)
        with pytest.raises(SignatureInvalidError):
            key.verify(signature, message + b"\x00")
        with pytest.raises(SignatureInvalidError, match="bytes is not an"):
            key.verify(signature + bytes(200), message)


# --- COSE keys ----------------------------------------------------------------------------------


def _es256_map() -> dict[int, Any]:
    return dict(_es256()[1])


def test_cose_key_encodes_as_python_fido2_does() -> None:
    _, cose_key = _es256()
    key = CoseKey.parse(dict(cose_key))
    assert key.encode() == cbor.encode(dict(cose_key))
    assert _spki(CoseKey.from_bytes(key.encode()).public_key) == _spki(key.public_key)


def _not_on_curve() -> dict[int, Any]:
    obj = _es256_map()
    y = bytearray(obj[-3])
    y[-1] ^= 1
    obj[-3] = bytes(y)
    return obj


def _changed(**changes: Any) -> dict[int, Any]:
    obj = _es256_map()
    labels = {"kty": 1, "alg": 3, "crv": -1, "x": -2, "y": -3}
    for name, value in changes.items():
        if value is None:
            del obj[labels[name]]
        else:
            obj[labels[name]] = value
    return obj


COSE_REFUSED = [
    ("not a map", [1, 2], CoseKeyFormatError, "not a CBOR map"),
    ("point not on curve", _not_on_curve(), CoseKeyFormatError, "not on P-256"),
    ("x of 31 bytes", _changed(x=bytes(31)), CoseKeyFormatError, "x is 31 bytes, not 32"),
    ("y text", _changed(y="y"), CoseKeyFormatError, "y .-3. is not a byte string"),
    ("extra label", {**_es256_map(), 2: b"kid"}, CoseKeyFormatError, r"labels \[2\] not allowed"),
    ("missing y", _changed(y=None), CoseKeyFormatError, r"\[-3\] missing"),
    ("no alg", _changed(alg=None), CoseKeyFormatError, "no integer kty"),
    ("alg bool", _changed(alg=True), CoseKeyFormatError, "no integer kty"),
    ("curve P-384", _changed(crv=2), CoseKeyFormatError, "on curve 2, not 1"),
    ("curve true", _changed(crv=True), CoseKeyFormatError, "on curve True"),
    ("ES384", _changed(alg=-35), AttestationRefusedError, "algorithm -35 is not supported"),
    ("kty OKP with ES256", _changed(kty=1), AttestationRefusedError, "type 1 with algorithm -7"),
    (
        "alg -257 without RS256 allowed",
        {1: 3, 3: -257, -1: b"\x80" + bytes(255), -2: b"\x01\x00\x01"},
        AttestationRefusedError,
        "RS256 is not accepted",
    ),
]


@pytest.mark.parametrize(
    ("obj", "kind", "words"), [c[1:] for c in COSE_REFUSED], ids=[c[0] for c in COSE_REFUSED]
)
def test_cose_key_refusals(obj: Any, kind: type[MieError], words: str) -> None:
    with pytest.raises(kind, match=words):
        CoseKey.parse(obj)


@pytest.mark.parametrize(
    ("n", "e", "words"),
    [
        (b"\x80" + bytes(254), b"\x01\x00\x01", "modulus of 255 bytes"),
        (b"\x00" + bytes(255), b"\x01\x00\x01", "no leading 0"),
        (b"\x80" + bytes(255), b"\x01\x00\x00", "exponent"),
        (b"\x80" + bytes(255), b"\x00\x01", "exponent"),
        (b"\x80" + bytes(255), b"\x01", "exponent"),
        (b"\x80" + bytes(255), bytes(5) + b"\x01", "exponent"),
    ],
)
def test_rsa_key_bounds(n: bytes, e: bytes, words: str) -> None:
    with pytest.raises(CoseKeyFormatError, match=words):
        CoseKey.parse({1: 3, 3: -257, -1: n, -2: e}, algorithms={RS256})


def test_eddsa_key_must_be_on_ed25519() -> None:
    ed = fido2_cose.EdDSA.from_cryptography_key(ed25519.Ed25519PrivateKey.generate().public_key())
    assert CoseKey.parse(dict(ed)).alg == EDDSA
    with pytest.raises(CoseKeyFormatError, match="on curve 7, not 6"):
        CoseKey.parse({**dict(ed), -1: 7})


def test_stored_cose_key_bytes_are_one_strict_item() -> None:
    encoded = cbor.encode(_es256_map())
    with pytest.raises(CborFormatError, match="trailing"):
        CoseKey.from_bytes(encoded + b"\x00")


# --- client data --------------------------------------------------------------------------------


def _client_data(**members: Any) -> bytes:
    obj = {
        "type": "webauthn.get",
        "challenge": base64.urlsafe_b64encode(NONCE).rstrip(b"=").decode(),
        "origin": ORIGIN,
        "crossOrigin": False,
    }
    obj.update(members)
    return json.dumps({k: v for k, v in obj.items() if v is not None}).encode()


def test_client_data_from_python_fido2() -> None:
    for kind in ("webauthn.get", "webauthn.create"):
        theirs = webauthn.CollectedClientData.create(kind, NONCE, ORIGIN)
        ours = ClientData.parse(bytes(theirs))
        assert (ours.type, ours.challenge, ours.origin) == (kind, NONCE, ORIGIN)
        assert ours.hash == theirs.hash == hashlib.sha256(bytes(theirs)).digest()


def test_client_data_members_that_are_accepted() -> None:
    assert ClientData.parse(_client_data(crossOrigin=None)).challenge == NONCE
    assert ClientData.parse(_client_data(other={"a": [1.5]})).origin == ORIGIN
    sixteen = base64.urlsafe_b64encode(bytes(16)).rstrip(b"=").decode()
    assert ClientData.parse(_client_data(challenge=sixteen)).challenge == bytes(16)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


CLIENT_REFUSED = [
    ("padding", _client_data(challenge=_b64(bytes(17)) + "=="), "not unpadded base64url"),
    ("standard alphabet", _client_data(challenge="+/" + _b64(bytes(30))), "not unpadded base64url"),
    ("non-canonical tail", _client_data(challenge=_b64(bytes(16))[:-1] + "B"), "not canonical"),
    ("impossible length", _client_data(challenge="A" * 25), "not unpadded base64url"),
    ("15 bytes", _client_data(challenge=_b64(bytes(15))), "of 15 bytes, not 16 to 1024"),
    ("1025 bytes", _client_data(challenge=_b64(bytes(1025))), "of 1025 bytes"),
    ("crossOrigin true", _client_data(crossOrigin=True), "crossOrigin is true"),
    ("crossOrigin text", _client_data(crossOrigin="false"), "crossOrigin is not a boolean"),
    ("topOrigin", _client_data(topOrigin="https://other.example"), "topOrigin"),
    ("unknown type", _client_data(type="payment.get"), "type 'payment.get' is not known"),
    ("type missing", _client_data(type=None), "type is missing"),
    ("challenge number", _client_data(challenge=5), "challenge is not a string"),
    ("plain http", _client_data(origin="http://iam.chu-exemple.fr"), "origin: Origin"),
    ("origin with slash", _client_data(origin=ORIGIN + "/"), "origin: Origin"),
    (
        "duplicate key",
        _client_data()[:-1] + b', "type": "webauthn.create"}',
        "duplicate key 'type'",
    ),
    ("too large", _client_data(pad="x" * 4096), "larger than 4096 bytes"),
    ("not UTF-8", b'{"type": "\xff"}', "not UTF-8"),
    ("not an object", b"[]", "not a JSON object"),
    ("not JSON", b"{", "is not JSON"),
]


@pytest.mark.parametrize(
    ("raw", "words"), [c[1:] for c in CLIENT_REFUSED], ids=[c[0] for c in CLIENT_REFUSED]
)
def test_client_data_refusals(raw: bytes, words: str) -> None:
    with pytest.raises(ClientDataFormatError, match=words) as raised:
        ClientData.parse(raw)
    assert raised.value.code is ErrorCode.MALFORMED


# --- error classes ------------------------------------------------------------------------------

D7: dict[type[MieError], ErrorCode] = {
    errors.RpIdMismatchError: ErrorCode.RP_ID_MISMATCH,
    errors.UserNotPresentError: ErrorCode.USER_NOT_PRESENT,
    errors.UserNotVerifiedError: ErrorCode.USER_NOT_VERIFIED,
    errors.AttestationRefusedError: ErrorCode.ATTESTATION_REFUSED,
    errors.AttestationInvalidError: ErrorCode.ATTESTATION_INVALID,
    errors.UnknownAaguidError: ErrorCode.AAGUID_UNKNOWN,
    errors.MetadataStatusError: ErrorCode.METADATA_STATUS,
    errors.MetadataUntrustedError: ErrorCode.METADATA_UNTRUSTED,
    errors.MetadataStaleError: ErrorCode.METADATA_STALE,
    errors.PinNotSetError: ErrorCode.PIN_NOT_SET,
    errors.PinAuthBlockedError: ErrorCode.PIN_AUTH_BLOCKED,
    errors.CborFormatError: ErrorCode.MALFORMED,
    errors.AuthDataFormatError: ErrorCode.MALFORMED,
    errors.ClientDataFormatError: ErrorCode.MALFORMED,
    errors.CoseKeyFormatError: ErrorCode.MALFORMED,
    errors.MetadataFormatError: ErrorCode.MALFORMED,
    errors.FidoPolicyError: ErrorCode.MALFORMED,
    errors.TouchTimeoutError: ErrorCode.READER_ERROR,
    errors.CtapStatusError: ErrorCode.CARD_ERROR,
    # The store's four outcomes, re-exported from mie.store.errors.
    errors.CredentialUnknownError: ErrorCode.CREDENTIAL_UNKNOWN,
    errors.AlreadyRegisteredError: ErrorCode.ALREADY_REGISTERED,
    errors.CloneSuspectedError: ErrorCode.SUSPECTED_CLONE,
    errors.CounterUnsupportedError: ErrorCode.COUNTER_UNSUPPORTED,
}


def test_the_d7_classes_carry_their_codes() -> None:
    assert set(errors.__all__) == {kind.__name__ for kind in D7}
    for kind, code in D7.items():
        assert kind.code is code, kind.__name__
        assert getattr(errors, kind.__name__) is kind


def test_pin_auth_blocked_is_a_pin_block_with_its_own_code() -> None:
    error = PinAuthBlockedError()
    assert isinstance(error, PinBlockedError) and error.code is ErrorCode.PIN_AUTH_BLOCKED
    assert "plugged in again" in str(error)
    assert issubclass(errors.TouchTimeoutError, TransportTimeoutError)
    assert errors.CtapStatusError(0x2E).status == 0x2E
    assert str(errors.CtapStatusError(0x2E)) == "CTAP error 0x2E"
    assert isinstance(errors.FidoPolicyError("x"), ValueError)


def test_the_codecs_load_no_python_fido2_and_no_device_code() -> None:
    from tests.unit.test_import_weight import imported_modules

    modules = imported_modules(
        "import mie.fido, mie.fido.authdata, mie.fido.clientdata, mie.fido.cose, mie.fido.errors"
    )
    assert "mie.fido.authdata" in modules and "mie.core.cbor" in modules
    heavy = ("fido2", "mie.trust", "mie.cards", "mie.auth", "mie.transport", "smartcard")
    assert [m for m in modules if m.startswith(heavy)] == []
