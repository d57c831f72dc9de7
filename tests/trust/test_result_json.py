"""AuthResult, Identification and Evidence JSON: the contract shape, and a strict from_json
that reads back exactly what to_json wrote and refuses any other shape."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from mie.core.connection import Transport
from mie.core.errors import (
    ApduError,
    BadResponseError,
    CardRemovedError,
    CardResetError,
    ErrorCode,
    EvidenceFormatError,
    InvalidPinError,
    MieError,
    NoCardError,
    NonceMismatchError,
    SignatureInvalidError,
)
from mie.emulation.testpki import CardCredentials
from mie.evidence import MAX_CHAIN, Evidence, X509SignatureEvidence
from mie.policy import AssuranceLevel
from mie.result import (
    AuthenticatorInfo,
    AuthResult,
    CardInfo,
    ErrorInfo,
    Identification,
    identity_from_json,
)
from mie.trust import RevocationStatus, VerificationError, identity_from_certificate
from mie.trust.parse import der_to_pem
from tests.trust.evidence_kit import NONCE, ORIGIN, signed_evidence

ATR = bytes.fromhex("3bbf1300818031fe45455041")
INFO = AuthenticatorInfo("cps3", "2800000001", ATR, Transport.CONTACT)


def _identity(cps: CardCredentials) -> Any:
    identity = identity_from_certificate(cps.authentication.certificate)
    # card_serial is not part of the JSON contract.
    return type(identity)(**{**identity.__dict__, "card_serial": None})


def _valid(cps: CardCredentials) -> AuthResult:
    return AuthResult(
        valid=True,
        authenticator=INFO,
        identity=_identity(cps),
        level=AssuranceLevel.SUBSTANTIAL,
        reasons=("signature verified", "revocation good"),
        evidence=signed_evidence(cps.authentication),
        revocation=RevocationStatus.GOOD,
    )


def _through_text(obj: dict[str, Any]) -> Any:
    return json.loads(json.dumps(obj))


def test_valid_result_round_trip(cps: CardCredentials) -> None:
    result = _valid(cps)
    data = _through_text(result.to_json())
    assert list(data) == [
        "valid",
        "error",
        "authenticator",
        "identity",
        "level",
        "reasons",
        "evidence",
    ]
    assert list(data["evidence"]) == [
        "type", "challenge", "nonce", "origin", "signature", "chain", "revocation",
    ]  # fmt: skip
    assert data["evidence"]["revocation"] == "good"
    assert data["authenticator"] == {
        "kind": "cps3", "serial": "2800000001", "atr": ATR.hex(), "transport": "contact",
    }  # fmt: skip
    again = AuthResult.from_json(data)
    assert again == result
    assert again.to_json() == data


def test_evidence_json_is_lower_case_and_pem(cps: CardCredentials) -> None:
    evidence = signed_evidence(cps.authentication)
    data = evidence.to_json()
    assert data["type"] == "x509-signature"
    assert data["nonce"] == NONCE.hex() and data["origin"] == ORIGIN
    for key in ("challenge", "nonce", "signature"):
        assert data[key] == data[key].lower()
    assert data["chain"] == [der_to_pem(evidence.chain[0])]
    assert data["chain"][0] == cps.authentication.certificate_pem().decode()
    assert data["revocation"] is None
    assert Evidence.from_json(data) == evidence
    assert X509SignatureEvidence.from_json(data) == evidence


@pytest.mark.parametrize(
    ("error", "code", "tries"),
    [
        (InvalidPinError(2), ErrorCode.INVALID_PIN, 2),
        (CardRemovedError("gone"), ErrorCode.CARD_REMOVED, None),
        (CardResetError("x"), ErrorCode.READER_ERROR, None),
        (ApduError(b"", 0x6A80), ErrorCode.CARD_ERROR, None),
        (BadResponseError("short"), ErrorCode.MALFORMED, None),
        (SignatureInvalidError("no"), ErrorCode.SIGNATURE_INVALID, None),
        (NonceMismatchError("other"), ErrorCode.NONCE_MISMATCH, None),
        (VerificationError(ErrorCode.REVOKED, "revoked"), ErrorCode.REVOKED, None),
    ],
)
def test_failure_results_carry_the_library_code(
    error: MieError, code: ErrorCode, tries: int | None
) -> None:
    info = ErrorInfo.from_exception(error)
    assert (info.code, info.tries_left, info.message) == (code, tries, str(error))
    result = AuthResult.failure(error, INFO)
    data = _through_text(result.to_json())
    expected_error = {"code": code.value, "message": str(error)}
    if code is ErrorCode.INVALID_PIN:
        expected_error["tries_left"] = tries  # type: ignore[assignment]
    assert data == {
        "valid": False,
        "error": expected_error,
        "authenticator": INFO.to_json(),
        "identity": None,
        "level": None,
        "reasons": [],
        "evidence": None,
    }
    assert AuthResult.from_json(data) == result


def test_an_error_without_a_code_has_no_failure_result() -> None:
    with pytest.raises(ValueError, match="no contract error code"):
        AuthResult.failure(MieError("?"))


def test_result_invariants() -> None:
    with pytest.raises(ValueError):
        AuthResult(valid=True, error=ErrorInfo(ErrorCode.NO_CARD, "x"))
    with pytest.raises(ValueError):
        AuthResult(valid=False)
    with pytest.raises(ValueError):
        AuthResult(valid=True, revocation=RevocationStatus.GOOD)
    listed = AuthResult(valid=True, reasons=["a", "b"])  # type: ignore[arg-type]
    assert listed.reasons == ("a", "b")
    # Immutable: a result handed to an IAM cannot be turned valid, or given a level, later.
    failed = AuthResult.failure(NoCardError("No card"), None)
    for field, value in (("valid", True), ("level", AssuranceLevel.SUBSTANTIAL)):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(failed, field, value)
    assert failed.valid is False and failed.level is None


def test_identification_json_and_deprecated_card(cps: CardCredentials) -> None:
    identification = Identification(INFO, _identity(cps), cps.authentication.certificate)
    data = identification.to_json()
    assert data == {"authenticator": INFO.to_json(), "identity": _identity(cps).to_json()}
    assert identity_from_json(_through_text(data["identity"])) == _identity(cps)
    with pytest.warns(DeprecationWarning):
        assert identification.card is INFO
    badge = Identification(AuthenticatorInfo("iso7816", None, None), None)
    assert badge.to_json()["identity"] is None and badge.certificate is None
    assert CardInfo is AuthenticatorInfo
    assert AuthenticatorInfo("demo", None, None).to_json()["transport"] is None


Change = Callable[[dict[str, Any]], None]


def _set(path: str, value: object) -> Change:
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = data
        for key in parents:
            target = target[key]
        target[last] = value

    return change


def _delete(path: str) -> Change:
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = data
        for key in parents:
            target = target[key]
        del target[last]

    return change


RESULT_DEFECTS: dict[str, Change] = {
    "extra key": _set("extra", 1),
    "missing key": _delete("reasons"),
    "valid not bool": _set("valid", 1),
    "valid with error": _set("error", {"code": "no_card", "message": "x"}),
    "unknown level": _set("level", "medium"),
    "reasons not strings": _set("reasons", [1]),
    "reasons a tuple-like string": _set("reasons", "abc"),
    "identity extra key": _set("identity.card_serial", "x"),
    "identity unknown type": _set("identity.id_type", "NIR"),
    "identity unknown card type": _set("identity.card_type", "CPZ"),
    "identity test_card not bool": _set("identity.test_card", "yes"),
    "identity name not string": _set("identity.given_name", 3),
    "authenticator missing transport": _delete("authenticator.transport"),
    "authenticator unknown transport": _set("authenticator.transport", "bluetooth"),
    "authenticator upper-case atr": _set("authenticator.atr", ATR.hex().upper()),
    "evidence revocation unknown value": _set("evidence.revocation", "fine"),
    "evidence not object": _set("evidence", "x509"),
    "error unknown code": _set("error", {"code": "oops", "message": "x"}),
}


@pytest.mark.parametrize("defect", sorted(RESULT_DEFECTS))
def test_result_of_another_shape_is_an_evidence_format_error(
    cps: CardCredentials, defect: str
) -> None:
    data = _through_text(_valid(cps).to_json())
    RESULT_DEFECTS[defect](data)
    with pytest.raises(EvidenceFormatError) as caught:
        AuthResult.from_json(data)
    assert caught.value.code is ErrorCode.MALFORMED
    assert "\n" not in str(caught.value)


def test_error_object_keeps_tries_left_only_for_invalid_pin() -> None:
    message = "Invalid PIN, 2 tries left"
    pin = {"code": "invalid_pin", "message": message, "tries_left": 2}
    assert ErrorInfo.from_json(pin) == ErrorInfo(ErrorCode.INVALID_PIN, message, 2)
    for bad in (
        {"code": "invalid_pin", "message": "m"},
        {"code": "no_card", "message": "m", "tries_left": None},
        {"code": "invalid_pin", "message": "m", "tries_left": True},
        {"code": "invalid_pin", "message": "m", "tries_left": -1},
    ):
        with pytest.raises(EvidenceFormatError):
            ErrorInfo.from_json(bad)


EVIDENCE_DEFECTS: dict[str, Change] = {
    "unknown type": _set("type", "x509-signature-v9"),
    "type not a string": _set("type", 1),
    "missing type": _delete("type"),
    "missing nonce": _delete("nonce"),
    "missing origin": _delete("origin"),
    "missing chain": _delete("chain"),
    "extra key": _set("challenge_hash", "00"),
    "upper-case hex": lambda d: d.update(signature=d["signature"].upper()),
    "odd hex": lambda d: d.update(nonce=d["nonce"][:-1]),
    "short nonce": _set("nonce", "00" * 15),
    "short challenge": lambda d: d.update(challenge=d["challenge"][:-2]),
    "empty signature": _set("signature", ""),
    "origin with path": _set("origin", ORIGIN + "/login"),
    "origin not a string": _set("origin", ["https://iam.example"]),
    "chain empty": _set("chain", []),
    "chain not a list": lambda d: d.update(chain=d["chain"][0]),
    "chain of two blocks in one entry": lambda d: d.update(chain=[d["chain"][0] * 2]),
    "chain entry with text": lambda d: d.update(chain=["issuer: x\n" + d["chain"][0]]),
    "chain entry a CRL block": lambda d: d.update(
        chain=[d["chain"][0].replace("CERTIFICATE", "X509 CRL")]
    ),
    "chain entry bad base64": lambda d: d.update(chain=[d["chain"][0].replace("M", "*", 1)]),
    "chain too long": lambda d: d.update(chain=d["chain"] * (MAX_CHAIN + 1)),
}


@pytest.mark.parametrize("defect", sorted(EVIDENCE_DEFECTS))
def test_evidence_of_another_shape_is_an_evidence_format_error(
    cps: CardCredentials, defect: str
) -> None:
    data = _through_text(signed_evidence(cps.authentication).to_json())
    EVIDENCE_DEFECTS[defect](data)
    with pytest.raises(EvidenceFormatError) as caught:
        Evidence.from_json(data)
    assert caught.value.code is ErrorCode.MALFORMED
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200


@pytest.mark.parametrize("value", [None, [], "x", 3])
def test_evidence_that_is_not_an_object(value: object) -> None:
    with pytest.raises(EvidenceFormatError):
        Evidence.from_json(value)


def test_evidence_without_revocation_reads(cps: CardCredentials) -> None:
    data = signed_evidence(cps.authentication).to_json()
    del data["revocation"]
    assert Evidence.from_json(data) == signed_evidence(cps.authentication)


def test_evidence_constructor_checks_its_fields(cps: CardCredentials) -> None:
    good = signed_evidence(cps.authentication)
    for changes in (
        {"nonce": b"short"},
        {"origin": "ftp://x"},
        {"challenge": bytes(32)},
        {"signature": b""},
        {"chain": ()},
        {"chain": [good.chain[0]]},
        {"nonce": bytearray(32)},
    ):
        fields = {**good.__dict__, **changes}
        with pytest.raises((ValueError, TypeError)):
            X509SignatureEvidence(**fields)


def test_a_registered_type_cannot_be_taken_twice() -> None:
    class Other(X509SignatureEvidence):
        pass

    with pytest.raises(ValueError, match="already"):
        Evidence.register(Other)
    assert copy.copy(Evidence._TYPES)["x509-signature"] is X509SignatureEvidence


def _all_error_classes() -> set[type[MieError]]:
    import importlib
    import pkgutil

    import mie

    for module in pkgutil.walk_packages(mie.__path__, "mie."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    found: set[type[MieError]] = set()
    todo = [MieError]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in found and sub.__module__.startswith("mie."):
                found.add(sub)
                todo.append(sub)
    return found


# The classes that take their code per instance, each with how to make one.
_PER_INSTANCE: dict[str, Callable[[], MieError]] = {
    "VerificationError": lambda: VerificationError(ErrorCode.EXPIRED, "Leaf expired"),
    "AuthFailedError": lambda: _auth_failed(),
}


def _auth_failed() -> MieError:
    from mie._cli.auth import AuthFailedError

    return AuthFailedError({"code": "revoked", "message": "Revoked"})


def test_every_error_class_of_the_package_has_a_contract_code() -> None:
    # ErrorInfo.from_exception raises ValueError for an error without a code: there is none, in
    # any module (a new class without a code fails here, not in a user's failure result).
    classes = set(_all_error_classes())
    assert len(classes) >= 28
    for kind in sorted(classes, key=lambda k: k.__name__):
        if kind.__name__ in _PER_INSTANCE:
            error = _PER_INSTANCE[kind.__name__]()
            assert type(error) is kind
        else:
            assert isinstance(kind.code, ErrorCode), f"{kind.__qualname__} has no code"
            error = kind.__new__(kind)
            Exception.__init__(error, "Some problem")
        assert ErrorInfo.from_exception(error).code is error.code
    assert {k.__name__ for k in classes} >= set(_PER_INSTANCE)


def test_the_base_error_is_never_raised_without_a_code() -> None:
    import ast
    from pathlib import Path

    import mie

    for path in Path(mie.__path__[0]).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                name = node.exc.func
                assert not (isinstance(name, ast.Name) and name.id == "MieError"), path


@pytest.mark.parametrize("key", ["nonce", "challenge", "signature"])
def test_huge_hex_is_refused_before_it_is_decoded(
    cps: CardCredentials, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = signed_evidence(cps.authentication).to_json()
    data[key] = "00" * 4_000_000
    decoded: list[int] = []
    real = bytes.fromhex

    class Spy(bytes):
        @classmethod
        def fromhex(cls, text: str) -> bytes:  # type: ignore[override]
            decoded.append(len(text))
            return real(text)

    monkeypatch.setattr("mie.evidence.bytes", Spy, raising=False)
    with pytest.raises(EvidenceFormatError, match=f"evidence.{key} has over"):
        Evidence.from_json(data)
    assert all(size < 10_000 for size in decoded)
