"""parse_evidence_document: the three forms evidence is passed on in (bare, under "evidence",
a whole mie auth --json result), for a file (load_evidence_file) and a service request body
alike; every other shape is malformed, named as the caller names the document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mie.core import strictjson
from mie.core.connection import Transport
from mie.core.errors import ErrorCode, EvidenceFormatError, InvalidPinError
from mie.emulation.testpki import CardCredentials
from mie.evidence import X509SignatureEvidence, load_evidence_file, parse_evidence_document
from mie.result import AuthenticatorInfo, AuthResult
from mie.trust import RevocationStatus
from tests.trust.evidence_kit import signed_evidence

INFO = AuthenticatorInfo("cps3", "2800000001", bytes.fromhex("3b8f80"), Transport.CONTACT)
NAME = "request body"


def strict(obj: Any) -> Any:
    """:return: ``obj`` as the strict JSON reader gives it back (numbers kept as text)."""
    return strictjson.loads(json.dumps(obj).encode(), NAME, max_bytes=1 << 20)


def saved(evidence: X509SignatureEvidence) -> AuthResult:
    return AuthResult(
        True,
        authenticator=INFO,
        reasons=("signature verified",),
        evidence=evidence,
        revocation=RevocationStatus.GOOD,
    )


def test_the_three_forms_give_the_same_evidence(cps: CardCredentials) -> None:
    evidence = signed_evidence(cps.authentication)
    bare = evidence.to_json()
    assert parse_evidence_document(strict(bare), NAME) == (evidence, None)
    assert parse_evidence_document(strict({"evidence": bare}), NAME) == (evidence, None)
    whole = saved(evidence).to_json()
    assert parse_evidence_document(strict(whole), NAME) == (evidence, INFO)


def test_a_file_reads_as_the_document_it_holds(tmp_path: Path, cps: CardCredentials) -> None:
    evidence = signed_evidence(cps.authentication)
    for document in (
        evidence.to_json(),
        {"evidence": evidence.to_json()},
        saved(evidence).to_json(),
    ):
        path = tmp_path / "evidence.json"
        path.write_text(json.dumps(document))
        assert load_evidence_file(path) == parse_evidence_document(strict(document), NAME)


def test_a_failed_result_holds_no_evidence() -> None:
    failure = strict(AuthResult.failure(InvalidPinError(2), INFO).to_json())
    with pytest.raises(EvidenceFormatError, match="The result in request body holds no evidence"):
        parse_evidence_document(failure, NAME)


def test_evidence_null_holds_no_evidence() -> None:
    with pytest.raises(EvidenceFormatError, match="The request body holds no evidence") as caught:
        parse_evidence_document({"evidence": None}, NAME)
    assert caught.value.code is ErrorCode.MALFORMED


@pytest.mark.parametrize(
    "document",
    [
        [],
        "x",
        None,
        3,
        {},
        {"valid": True},
        {"nonce": "00" * 32},
    ],
    ids=["list", "string", "null", "number", "empty", "no evidence key", "no type"],
)
def test_another_shape_is_named_as_the_caller_names_it(document: object) -> None:
    with pytest.raises(
        EvidenceFormatError, match=r"^Request body holds neither evidence nor a result$"
    ):
        parse_evidence_document(document, NAME)


def test_evidence_beside_other_members_must_be_a_whole_result(cps: CardCredentials) -> None:
    # {"evidence", "authenticator"} is neither the evidence alone nor a result: the strict
    # result reader names what is missing, and the authenticator is never taken on its own.
    bare = signed_evidence(cps.authentication).to_json()
    for document in (
        {"evidence": bare, "authenticator": INFO.to_json()},
        {"evidence": bare, "extra": 1},
    ):
        with pytest.raises(EvidenceFormatError) as caught:
            parse_evidence_document(strict(document), NAME)
        assert caught.value.code is ErrorCode.MALFORMED


@pytest.mark.parametrize("where", ["bare", "under evidence", "whole result"])
def test_bad_evidence_is_malformed_in_every_form(where: str, cps: CardCredentials) -> None:
    evidence = signed_evidence(cps.authentication)
    bad = evidence.to_json() | {"signature": "zz"}
    document: Any = {
        "bare": bad,
        "under evidence": {"evidence": bad},
        "whole result": saved(evidence).to_json() | {"evidence": bad},
    }[where]
    with pytest.raises(EvidenceFormatError) as caught:
        parse_evidence_document(strict(document), NAME)
    assert caught.value.code is ErrorCode.MALFORMED
    assert "signature" in str(caught.value)


def test_an_unknown_type_is_refused_under_evidence_too(cps: CardCredentials) -> None:
    bare = signed_evidence(cps.authentication).to_json() | {"type": "desfire-mutual"}
    with pytest.raises(EvidenceFormatError, match="Unknown evidence type 'desfire-mutual'"):
        parse_evidence_document(strict({"evidence": bare}), NAME)
