"""``webauthn-assertion`` evidence: the strict JSON round trip, every refusal, and the W3C JSON
(``to_webauthn`` / ``from_webauthn``) that python-fido2 and py_webauthn read unchanged."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from fido2.webauthn import AuthenticationResponse
from webauthn.helpers import parse_authentication_credential_json

from mie.core import strictjson
from mie.core.errors import EvidenceFormatError
from mie.evidence import Evidence
from mie.fido.evidence import WebAuthnAssertionEvidence
from mie.result import AuthResult
from mie.store.memory import MemoryStore
from tests.fido.assertion_kit import ORIGIN, RP_ID, new_key


@pytest.fixture(scope="module")
def evidence() -> WebAuthnAssertionEvidence:
    # A discoverable credential asked without an allow list: the key returns the user handle.
    key = new_key(MemoryStore(), resident_key=True)
    made, _ = key.assertion(allow=False)
    assert made.user_handle == key.record.user_handle
    return made


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_the_json_round_trip_is_exact(evidence: WebAuthnAssertionEvidence) -> None:
    obj = evidence.to_json()
    assert list(obj) == [
        "type",
        "nonce",
        "origin",
        "rp_id",
        "credential_id",
        "authenticator_data",
        "client_data_json",
        "signature",
        "user_handle",
        "revocation",
    ]
    assert obj["type"] == "webauthn-assertion" and obj["revocation"] is None
    text = json.dumps(obj)
    back = Evidence.from_json(strictjson.loads(text.encode(), "evidence", max_bytes=1 << 20))
    assert back == evidence
    assert back.to_json() == obj


def test_the_kind_loads_lazily_from_the_evidence_union() -> None:
    # A fresh interpreter: from_json imports mie.fido.evidence on the first webauthn-assertion.
    script = (
        "import sys, mie.evidence as e\n"
        "assert 'mie.fido.evidence' not in sys.modules\n"
        "try:\n"
        "    e.Evidence.from_json({'type': 'webauthn-assertion'})\n"
        "except Exception as x:\n"
        "    print(type(x).__name__, x)\n"
        "print('mie.fido.evidence' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.splitlines() == [
        "EvidenceFormatError The evidence has no 'nonce' field",
        "True",
    ]


def test_no_user_handle_reads_back_as_null(evidence: WebAuthnAssertionEvidence) -> None:
    bare = WebAuthnAssertionEvidence(
        evidence.nonce,
        evidence.origin,
        evidence.rp_id,
        evidence.credential_id,
        evidence.authenticator_data,
        evidence.client_data_json,
        evidence.signature,
    )
    obj = bare.to_json()
    assert obj["user_handle"] is None
    assert Evidence.from_json(obj) == bare
    assert "userHandle" not in bare.to_webauthn()["response"]


def test_a_saved_result_reads_back(evidence: WebAuthnAssertionEvidence) -> None:
    result = AuthResult(valid=True, reasons=("r",), evidence=evidence)
    assert AuthResult.from_json(json.loads(json.dumps(result.to_json()))).evidence == evidence


def test_repr_shows_no_client_data_or_nonce(evidence: WebAuthnAssertionEvidence) -> None:
    text = repr(evidence)
    assert RP_ID in text
    assert evidence.nonce.hex() not in text
    assert evidence.client_data_json.hex()[:16] not in text


def _with(obj: dict[str, Any], **changes: Any) -> dict[str, Any]:
    changed = dict(obj)
    for key, value in changes.items():
        if value is _DROP:
            del changed[key]
        else:
            changed[key] = value
    return changed


_DROP = object()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"nonce": _DROP}, "The evidence has no 'nonce' field"),
        ({"extra": 1}, "The evidence has an unexpected field 'extra'"),
        ({"revocation": "good"}, "evidence.revocation is not null (a FIDO2 key has none)"),
        ({"nonce": "00" * 15}, "evidence.nonce has 15 bytes, not 16 to 1024"),
        ({"nonce": "0" * 2050}, "evidence.nonce has over 1024 bytes of hex"),
        ({"nonce": "AB" * 16}, "evidence.nonce is not lower-case hex"),
        ({"origin": 1}, "evidence.origin is not a string"),
        ({"origin": "https://iam.example/"}, "is not https://host[:port]"),
        ({"rp_id": "IAM.example"}, "is not a lower-case host name"),
        ({"rp_id": None}, "evidence.rp_id is not a string"),
        ({"credential_id": ""}, "evidence.credential_id has 0 bytes, not 1 to 1023"),
        ({"credential_id": "00" * 1024}, "evidence.credential_id has over 1023 bytes of hex"),
        ({"authenticator_data": "00" * 36}, "has 36 bytes, not 37 to 1024"),
        ({"authenticator_data": "00" * 1025}, "has over 1024 bytes of hex"),
        ({"client_data_json": ""}, "evidence.client_data_json has 0 bytes, not 1 to 4096"),
        ({"client_data_json": "0" * 8194}, "has over 4096 bytes of hex"),
        ({"signature": ""}, "evidence.signature has 0 bytes, not 1 to 1024"),
        ({"signature": "0"}, "evidence.signature is not lower-case hex"),
        ({"user_handle": ""}, "evidence.user_handle has 0 bytes, not 1 to 64"),
        ({"user_handle": "00" * 65}, "evidence.user_handle has over 64 bytes of hex"),
        ({"user_handle": 5}, "evidence.user_handle is not lower-case hex"),
    ],
)
def test_the_json_is_strict(
    evidence: WebAuthnAssertionEvidence, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(EvidenceFormatError, match=None) as caught:
        Evidence.from_json(_with(evidence.to_json(), **changes))
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("nonce", bytearray(32), TypeError),
        ("nonce", b"\x00" * 15, ValueError),
        ("origin", "ftp://x", ValueError),
        ("rp_id", b"iam.example", TypeError),
        ("rp_id", "-bad-", ValueError),
        ("credential_id", "ab", TypeError),
        ("authenticator_data", b"\x00" * 1025, ValueError),
        ("client_data_json", b"", ValueError),
        ("signature", b"\x00" * 1025, ValueError),
        ("user_handle", b"", ValueError),
        ("user_handle", "id", TypeError),
    ],
)
def test_the_constructor_checks_its_fields(
    evidence: WebAuthnAssertionEvidence, field: str, value: object, error: type[Exception]
) -> None:
    fields: dict[str, Any] = {
        "nonce": evidence.nonce,
        "origin": evidence.origin,
        "rp_id": evidence.rp_id,
        "credential_id": evidence.credential_id,
        "authenticator_data": evidence.authenticator_data,
        "client_data_json": evidence.client_data_json,
        "signature": evidence.signature,
        "user_handle": evidence.user_handle,
    }
    fields[field] = value
    with pytest.raises(error):
        WebAuthnAssertionEvidence(**fields)


# --- The W3C JSON -----------------------------------------------------------------------------


def test_to_webauthn_is_the_w3c_authentication_response(
    evidence: WebAuthnAssertionEvidence,
) -> None:
    obj = evidence.to_webauthn()
    assert obj == {
        "id": _b64(evidence.credential_id),
        "rawId": _b64(evidence.credential_id),
        "type": "public-key",
        "response": {
            "clientDataJSON": _b64(evidence.client_data_json),
            "authenticatorData": _b64(evidence.authenticator_data),
            "signature": _b64(evidence.signature),
            "userHandle": _b64(evidence.user_handle or b""),
        },
        "clientExtensionResults": {},
        "authenticatorAttachment": "cross-platform",
    }
    again = WebAuthnAssertionEvidence.from_webauthn(
        json.loads(json.dumps(obj)), nonce=evidence.nonce, origin=ORIGIN, rp_id=RP_ID
    )
    assert again == evidence


def test_python_fido2_reads_to_webauthn(evidence: WebAuthnAssertionEvidence) -> None:
    response = AuthenticationResponse.from_dict(evidence.to_webauthn())
    assert response.raw_id == evidence.credential_id
    assert bytes(response.response.authenticator_data) == evidence.authenticator_data
    assert bytes(response.response.client_data) == evidence.client_data_json
    assert response.response.client_data.challenge == evidence.nonce
    assert response.response.signature == evidence.signature
    assert response.response.user_handle == evidence.user_handle
    # And its own mapping (what Fido2Client returns) reads back into the same evidence.
    back = WebAuthnAssertionEvidence.from_webauthn(
        response, nonce=evidence.nonce, origin=ORIGIN, rp_id=RP_ID
    )
    assert back == evidence


def test_py_webauthn_parses_to_webauthn(evidence: WebAuthnAssertionEvidence) -> None:
    credential = parse_authentication_credential_json(json.dumps(evidence.to_webauthn()))
    assert credential.raw_id == evidence.credential_id
    assert credential.response.authenticator_data == evidence.authenticator_data
    assert credential.response.client_data_json == evidence.client_data_json
    assert credential.response.signature == evidence.signature
    assert credential.response.user_handle == evidence.user_handle


def _response(obj: dict[str, Any], **changes: Any) -> dict[str, Any]:
    changed = dict(obj)
    changed["response"] = _with(obj["response"], **changes)
    return changed


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda o: "not an object", "The WebAuthn response is not a JSON object"),
        (lambda o: _with(o, rawId=_DROP), "The WebAuthn response has no 'rawId' field"),
        (lambda o: _with(o, extra=1), "The WebAuthn response has an unexpected field 'extra'"),
        (
            lambda o: _with(o, type="password"),
            "WebAuthn response.type 'password' is not public-key",
        ),
        (lambda o: _with(o, id="AAAA"), "WebAuthn response.id is not its rawId"),
        (lambda o: _with(o, clientExtensionResults=[]), "clientExtensionResults is not an object"),
        (lambda o: _with(o, authenticatorAttachment="usb"), "authenticatorAttachment is not"),
        (lambda o: _with(o, response=[]), "The WebAuthn response.response is not a JSON object"),
        (lambda o: _response(o, signature=_DROP), "response has no 'signature' field"),
        (lambda o: _response(o, attestationObject="AA"), "unexpected field 'attestationObject'"),
        (lambda o: _response(o, signature="AAAA=="), "signature is not unpadded base64url"),
        (lambda o: _response(o, signature="AA+/"), "signature is not unpadded base64url"),
        (lambda o: _response(o, signature="AB"), "signature is not canonical base64url"),
        (lambda o: _response(o, signature="A"), "signature is not unpadded base64url"),
        (lambda o: _response(o, signature=""), "signature has 0 bytes, not 1 to 1024"),
        (lambda o: _response(o, signature=7), "signature is not base64url of at most 1024 bytes"),
        (lambda o: _response(o, signature="A" * 1400), "not base64url of at most 1024 bytes"),
        (lambda o: _response(o, authenticatorData="AAAA"), "has 3 bytes, not 37 to 1024"),
        (lambda o: _response(o, userHandle=""), "userHandle has 0 bytes, not 1 to 64"),
    ],
)
def test_from_webauthn_is_strict(
    evidence: WebAuthnAssertionEvidence,
    change: Callable[[dict[str, Any]], Any],
    message: str,
) -> None:
    with pytest.raises(EvidenceFormatError) as caught:
        WebAuthnAssertionEvidence.from_webauthn(
            change(evidence.to_webauthn()), nonce=evidence.nonce, origin=ORIGIN, rp_id=RP_ID
        )
    assert message in str(caught.value)


def test_from_webauthn_takes_optional_members_absent_or_null(
    evidence: WebAuthnAssertionEvidence,
) -> None:
    obj = evidence.to_webauthn()
    del obj["clientExtensionResults"]
    obj["authenticatorAttachment"] = None
    obj["response"]["userHandle"] = None
    read = WebAuthnAssertionEvidence.from_webauthn(
        obj, nonce=evidence.nonce, origin=ORIGIN, rp_id=RP_ID
    )
    assert read.user_handle is None and read.signature == evidence.signature


def test_from_webauthn_checks_the_request_it_is_given(evidence: WebAuthnAssertionEvidence) -> None:
    with pytest.raises(EvidenceFormatError, match="rp_id"):
        WebAuthnAssertionEvidence.from_webauthn(
            evidence.to_webauthn(), nonce=evidence.nonce, origin=ORIGIN, rp_id="Not A Host"
        )
