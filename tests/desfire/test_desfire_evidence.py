"""mie.desfire.evidence: the ``desfire-session`` kind of the Evidence union (plan D3, §2.3)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from mie.core.errors import ErrorCode, EvidenceFormatError
from mie.desfire.config import UidSource
from mie.desfire.evidence import (
    MAX_EXCHANGE_BYTES,
    MAX_EXCHANGES,
    BadgeScheme,
    DesfireSessionEvidence,
    TranscriptExchange,
)
from mie.evidence import Evidence, X509SignatureEvidence, load_evidence_file

h = bytes.fromhex
NONCE = bytes(range(32))
ORIGIN = "https://iam.chu-exemple.fr"
RECORD = bytes(range(176))
SIGNATURE = bytes(range(100, 156))
TRANSCRIPT = (
    TranscriptExchange(h("ffca000000"), h("04a1b2c3d4e5f69000")),
    TranscriptExchange(h("905a00000349 4df000".replace(" ", "")), h("9100")),
    TranscriptExchange(h("9071000002020000"), bytes(16) + h("91af")),
)


def evidence(**change: Any) -> DesfireSessionEvidence:
    values: dict[str, Any] = {
        "nonce": NONCE,
        "origin": ORIGIN,
        "scheme": BadgeScheme.EV2,
        "aid": h("494df0"),
        "uid": h("04a1b2c3d4e5f6"),
        "uid_source": UidSource.ANTICOLLISION,
        "record": RECORD,
        "originality": SIGNATURE,
        "transcript": TRANSCRIPT,
    }
    values.update(change)
    return DesfireSessionEvidence(**values)


def test_the_json_is_the_contract() -> None:
    assert evidence().to_json() == {
        "type": "desfire-session",
        "nonce": NONCE.hex(),
        "origin": ORIGIN,
        "scheme": "ev2",
        "aid": "494df0",
        "uid": "04a1b2c3d4e5f6",
        "uid_source": "anticollision",
        "record": RECORD.hex(),
        "originality": SIGNATURE.hex(),
        "transcript": [
            {"c": "ffca000000", "r": "04a1b2c3d4e5f69000"},
            {"c": "905a000003494df000", "r": "9100"},
            {"c": "9071000002020000", "r": "00" * 16 + "91af"},
        ],
        "revocation": None,
    }


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"originality": None},
        {"scheme": BadgeScheme.EV1_AES, "uid_source": UidSource.GET_CARD_UID},
        {"scheme": BadgeScheme.LEGACY, "uid_source": UidSource.DIV_FILE},
        {"transcript": tuple(TranscriptExchange(bytes(300), bytes(300)) for _ in range(32))},
        {"transcript": (TranscriptExchange(bytes(4), bytes(2)),)},
    ],
)
def test_round_trip_through_the_union(change: dict[str, Any]) -> None:
    original = evidence(**change)
    text = json.dumps(original.to_json())
    back = Evidence.from_json(json.loads(text))
    assert isinstance(back, DesfireSessionEvidence)
    assert back == original
    assert DesfireSessionEvidence.from_json(json.loads(text)) == original


def test_the_x509_kind_is_not_a_badge_session() -> None:
    obj = evidence().to_json()
    with pytest.raises(EvidenceFormatError, match="is not DesfireSessionEvidence"):
        DesfireSessionEvidence.from_json({**obj, "type": X509SignatureEvidence.type})


def test_an_evidence_file_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(evidence().to_json()))
    loaded, authenticator = load_evidence_file(path)
    assert loaded == evidence() and authenticator is None


def test_the_repr_is_short_and_names_no_bytes_of_the_session() -> None:
    text = repr(evidence())
    assert "exchanges=3" in text and "04a1b2c3d4e5f6" in text
    assert RECORD.hex()[:16] not in text and "ffca" not in text


def _mutated(path: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(evidence().to_json())
    target = obj
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    last = keys[-1]
    if value is _DELETE:
        del target[last]
    else:
        target[int(last) if isinstance(target, list) else last] = value
    return obj


_DELETE = object()

BAD: list[tuple[str, Any, str]] = [
    ("nonce", _DELETE, "'nonce'"),
    ("nonce", "00" * 15, "nonce"),
    ("nonce", "00" * 1025, "nonce"),
    ("nonce", NONCE.hex().upper(), "nonce"),
    ("nonce", 5, "nonce"),
    ("origin", "https://IAM.example", "rigin"),
    ("origin", None, "origin"),
    ("scheme", "ev3", "scheme"),
    ("scheme", None, "scheme"),
    ("aid", "494d", "aid"),
    ("aid", "494df0ff", "aid"),
    ("uid", "04a1b2c3d4e5", "uid"),
    ("uid", "04a1b2c3d4e5f6a7", "uid"),
    ("uid", "04a1b2c3d4e5fg", "uid"),
    ("uid_source", "random", "uid_source"),
    ("record", "00" * 175, "record"),
    ("record", "00" * 177, "record"),
    ("record", "0" * 351, "record"),
    ("originality", "00" * 55, "originality"),
    ("originality", "00" * 57, "originality"),
    ("originality", _DELETE, "'originality'"),
    ("transcript", [], "transcript"),
    ("transcript", {"c": "00", "r": "9000"}, "transcript"),
    ("transcript", [{"c": "ffca000000", "r": "9000"}] * (MAX_EXCHANGES + 1), "transcript"),
    ("transcript.0", "ffca000000", "transcript[0]"),
    ("transcript.0.c", "ffca00", "transcript[0].c"),
    ("transcript.0.c", "00" * (MAX_EXCHANGE_BYTES + 1), "transcript[0].c"),
    ("transcript.0.c", "FFCA000000", "transcript[0].c"),
    ("transcript.0.r", "90", "transcript[0].r"),
    ("transcript.0.r", "00" * (MAX_EXCHANGE_BYTES + 1), "transcript[0].r"),
    ("transcript.0.r", None, "transcript[0].r"),
    ("transcript.1.c", _DELETE, "'c'"),
    ("transcript.1.x", "00", "'x'"),
    ("revocation", "good", "revocation"),
    ("extra", 1, "'extra'"),
]


@pytest.mark.parametrize(
    ("path", "value", "named"), BAD, ids=[f"{p}-{i}" for i, (p, _, _) in enumerate(BAD)]
)
def test_a_bad_field_is_refused(path: str, value: Any, named: str) -> None:
    obj = _mutated(path, value)
    with pytest.raises(EvidenceFormatError) as caught:
        Evidence.from_json(obj)
    assert named in str(caught.value)
    assert caught.value.code is ErrorCode.MALFORMED


def test_a_huge_hex_field_is_refused_before_it_is_decoded() -> None:
    obj = _mutated("transcript.0.r", "zz" * 10_000_000)
    with pytest.raises(EvidenceFormatError, match="over 300 bytes"):
        Evidence.from_json(obj)


def test_revocation_null_is_accepted_and_can_be_absent() -> None:
    obj = evidence().to_json()
    del obj["revocation"]
    assert Evidence.from_json(obj) == evidence()


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"nonce": b"short"}, ValueError),
        ({"nonce": NONCE.hex()}, TypeError),
        ({"origin": "http://example.org"}, ValueError),
        ({"scheme": "ev2"}, TypeError),
        ({"uid_source": "anticollision"}, TypeError),
        ({"aid": h("494d")}, ValueError),
        ({"uid": bytes(4)}, ValueError),
        ({"record": bytes(175)}, ValueError),
        ({"originality": bytes(55)}, ValueError),
        ({"originality": SIGNATURE.hex()}, ValueError),
        ({"transcript": list(TRANSCRIPT)}, TypeError),
        ({"transcript": ()}, ValueError),
        ({"transcript": TRANSCRIPT * 11}, ValueError),
    ],
)
def test_the_constructor_refuses(change: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        evidence(**change)


@pytest.mark.parametrize(
    ("command", "response", "error"),
    [
        (bytes(3), h("9000"), ValueError),
        (bytes(301), h("9000"), ValueError),
        (bytes(4), h("90"), ValueError),
        (bytes(4), bytes(301), ValueError),
        ("ffca000000", h("9000"), TypeError),
    ],
)
def test_an_exchange_is_bounded(command: Any, response: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        TranscriptExchange(command, response)


def test_registering_the_type_twice_with_another_class_fails() -> None:
    with pytest.raises(ValueError, match="already"):

        @Evidence.register
        class Impostor(DesfireSessionEvidence):
            pass
