"""The badge verifier (plan §2.4) on recorded evidence: the verify-evidence path on JSON, every
transcript byte changed, evidence for another nonce or origin, fields that disagree with the
transcript, a verifier without keys, and the dispatch of mie.verification."""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mie.core.errors import (
    EvidenceFormatError,
    MieError,
    NonceMismatchError,
    OriginMismatchError,
    SignatureInvalidError,
)
from mie.desfire.authenticator import DesfireAuthenticator
from mie.desfire.config import BadgeConfig, Originality, UidSource
from mie.desfire.errors import (
    DesfireAuthenticationError,
    OriginalitySignatureError,
    RecordCopiedError,
    RecordFormatError,
    ResponseIntegrityError,
)
from mie.desfire.evidence import DesfireSessionEvidence, TranscriptExchange
from mie.desfire.verify import NOT_REPLAYED, BadgeVerifier, verify_badge_evidence
from mie.emulation.desfire_state import KeyType
from mie.evidence import Evidence, load_evidence_file
from mie.keys import ProviderClosedError
from mie.policy import AssuranceLevel
from mie.result import AuthenticatorInfo, AuthResult
from mie.verification import Expected, verify_evidence
from tests.desfire.badges import (
    AUTHORITY_KEY,
    KEYS,
    LABELS,
    NONCE,
    OTHER_KEYS,
    OTHER_UID,
    UID,
    badge,
    badge_state,
    config,
    connect,
    counter_rng,
    request,
)

CFG = config()


# The sessions whose transcripts are mutated: (uid source, product, legacy).
VECTORS = {
    "get-card-uid-ev3": (UidSource.GET_CARD_UID, "ev3", False),
    "anticollision-ev2": (UidSource.ANTICOLLISION, "ev2", False),
    "div-file-ev3": (UidSource.DIV_FILE, "ev3", False),
    "get-card-uid-ev1": (UidSource.GET_CARD_UID, "ev1", False),
    "legacy-des": (UidSource.GET_CARD_UID, "ev3", True),
}


def vector_config(name: str) -> BadgeConfig:
    source, product, legacy = VECTORS[name]
    originality = Originality.OPTIONAL if product == "ev1" else Originality.REQUIRED
    return config(uid_source=source, originality=originality, legacy=legacy)


@functools.cache
def recorded(name: str = "get-card-uid-ev3") -> DesfireSessionEvidence:
    """One badge session's evidence (the default has originality: the longest transcript)."""
    _, product, legacy = VECTORS[name]
    cfg = vector_config(name)
    key_type = KeyType.DES if legacy else KeyType.AES
    card = badge(badge_state(cfg=cfg, key_type=key_type), product=product, rng=counter_rng())
    return DesfireAuthenticator(connect(card), cfg, keys=KEYS).authenticate(request())


def check(evidence: DesfireSessionEvidence, **kwargs: Any) -> AuthResult:
    cfg = kwargs.pop("cfg", CFG)
    keys = kwargs.pop("keys", KEYS)
    expected = kwargs.pop("expected", request())
    return verify_evidence(
        evidence, expected, verifier=None, badges=BadgeVerifier(cfg, keys=keys), **kwargs
    )


def test_the_verify_evidence_path_on_json_round_tripped_evidence(tmp_path: Any) -> None:
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(recorded().to_json()))
    evidence, presented = load_evidence_file(path)
    assert presented is None and isinstance(evidence, DesfireSessionEvidence)
    result = check(evidence, expected=Expected(NONCE, request().origin))
    assert result.valid and result.level is AssuranceLevel.LOW
    # A saved result reads back and verifies again.
    saved = tmp_path / "result.json"
    saved.write_text(json.dumps(result.to_json()))
    again, authenticator = load_evidence_file(saved)
    assert again == evidence and authenticator is not None
    assert check(again, authenticator=authenticator).authenticator == authenticator


def _flipped(evidence: DesfireSessionEvidence, index: int, offset: int, *, command: bool) -> Any:
    exchanges = list(evidence.transcript)
    exchange = exchanges[index]
    data = bytearray(exchange.command if command else exchange.response)
    data[offset] ^= 0x01
    if command:
        exchanges[index] = TranscriptExchange(bytes(data), exchange.response)
    else:
        exchanges[index] = TranscriptExchange(exchange.command, bytes(data))
    return dataclasses.replace(evidence, transcript=tuple(exchanges))


def _positions(*, command: bool) -> list[tuple[str, int, int]]:
    return [
        (name, i, offset)
        for name in VECTORS
        for i, e in enumerate(recorded(name).transcript)
        for offset in range(len(e.command if command else e.response))
    ]


def _unbound(name: str, index: int) -> bool:
    """The one answer no MAC covers and whose value decides nothing but refuse-or-legacy: the
    plain GetKeySettings of the legacy diagnosis (after 91AE)."""
    return VECTORS[name][2] and recorded(name).transcript[index].command[1] == 0x45


@pytest.mark.parametrize(("name", "index", "offset"), _positions(command=False))
def test_every_response_byte_changed_is_a_typed_error(name: str, index: int, offset: int) -> None:
    evidence = recorded(name)
    assert check(evidence, cfg=vector_config(name)).valid
    changed = _flipped(evidence, index, offset, command=False)
    if _unbound(name, index) and offset < 2:
        # Another settings byte or key count, still DES keys: the same legacy result, no level.
        assert check(changed, cfg=vector_config(name)).level is None
        return
    with pytest.raises(MieError):
        check(changed, cfg=vector_config(name))


def test_a_legacy_diagnosis_changed_to_aes_keys_is_refused() -> None:
    evidence = recorded("legacy-des")
    index = next(i for i, e in enumerate(evidence.transcript) if e.command[1] == 0x45)
    exchanges = list(evidence.transcript)
    answer = bytearray(exchanges[index].response)
    answer[1] |= 0x80  # the key type bits now say AES
    exchanges[index] = TranscriptExchange(exchanges[index].command, bytes(answer))
    with pytest.raises(DesfireAuthenticationError):
        check(
            dataclasses.replace(evidence, transcript=tuple(exchanges)),
            cfg=vector_config("legacy-des"),
        )


@pytest.mark.parametrize(("name", "index", "offset"), _positions(command=True))
def test_every_command_byte_changed_is_refused(name: str, index: int, offset: int) -> None:
    changed = _flipped(recorded(name), index, offset, command=True)
    with pytest.raises(MieError):
        check(changed, cfg=vector_config(name))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_random_changes_to_a_transcript_never_verify(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(n for n in VECTORS if not VECTORS[n][2])))
    evidence = recorded(name)
    exchanges = list(evidence.transcript)
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(exchanges) - 1))
        exchange = exchanges[index]
        response = bytearray(exchange.response)
        at = data.draw(st.integers(0, len(response) - 1))
        response[at] ^= data.draw(st.integers(1, 255))
        exchanges[index] = TranscriptExchange(exchange.command, bytes(response))
    assume(tuple(exchanges) != evidence.transcript)  # two changes of one byte may cancel
    with pytest.raises(MieError):
        check(dataclasses.replace(evidence, transcript=tuple(exchanges)), cfg=vector_config(name))


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_no_response_moved_to_another_exchange_or_reordered_verifies(name: str) -> None:
    # Another exchange's answer in place of one (e.g. data + 9100 for SelectApplication's bare
    # 9100), or two neighbours swapped: never valid.
    evidence, cfg = recorded(name), vector_config(name)
    exchanges = list(evidence.transcript)
    variants = []
    for i, exchange in enumerate(exchanges):
        for other in exchanges:
            if other.response != exchange.response:
                changed = [*exchanges]
                changed[i] = TranscriptExchange(exchange.command, other.response)
                variants.append(changed)
        if i + 1 < len(exchanges) and exchanges[i + 1] != exchange:
            swapped = [*exchanges]
            swapped[i], swapped[i + 1] = exchanges[i + 1], exchange
            variants.append(swapped)
    for variant in variants:
        with pytest.raises(MieError):
            check(dataclasses.replace(evidence, transcript=tuple(variant)), cfg=cfg)


def test_a_transcript_cut_short_or_extended_is_refused() -> None:
    evidence = recorded()
    with pytest.raises(MieError):
        check(dataclasses.replace(evidence, transcript=evidence.transcript[:-1]))
    extra = (*evidence.transcript, evidence.transcript[-1])
    with pytest.raises(SignatureInvalidError, match="does not verify"):
        check(dataclasses.replace(evidence, transcript=extra))


def test_evidence_for_another_origin_or_nonce_is_refused() -> None:
    evidence = recorded()
    with pytest.raises(OriginMismatchError):
        check(evidence, expected=request(origin="https://other.example.fr"))
    with pytest.raises(NonceMismatchError):
        check(evidence, expected=request(nonce=bytes(32)))
    # Relabelled for the new request: RndA is bound to the nonce, so the replay differs.
    relabelled = dataclasses.replace(evidence, nonce=bytes(32))
    with pytest.raises(SignatureInvalidError, match="does not verify with this key and nonce"):
        check(relabelled, expected=request(nonce=bytes(32)))
    moved = dataclasses.replace(evidence, origin="https://other.example.fr")
    with pytest.raises(SignatureInvalidError):
        check(moved, expected=request(origin="https://other.example.fr"))


@pytest.mark.parametrize("where", [0, 40, 58])
def test_a_changed_byte_of_the_protected_signature_answer_fails_the_replay(where: int) -> None:
    # originality_read full (the default): Read_Sig's answer is enciphered and MACed in the
    # transcript; a changed byte fails its MAC in the replay, whatever originality says.
    evidence = recorded()
    at = next(i for i, e in enumerate(evidence.transcript) if e.command[1] == 0x3C)
    assert at > 4  # after the authentications, not first
    exchange = evidence.transcript[at]
    changed = bytearray(exchange.response)
    changed[where] ^= 0x01
    transcript = list(evidence.transcript)
    transcript[at] = TranscriptExchange(exchange.command, bytes(changed))
    with pytest.raises(ResponseIntegrityError):
        check(dataclasses.replace(evidence, transcript=tuple(transcript)))


def test_fields_that_are_not_what_the_session_read_are_refused() -> None:
    evidence = recorded()
    other = recorded("div-file-ev3")
    with pytest.raises(SignatureInvalidError, match="uid"):
        check(dataclasses.replace(evidence, uid=OTHER_UID))
    with pytest.raises(SignatureInvalidError, match="record"):
        check(dataclasses.replace(evidence, record=bytes(176)))
    with pytest.raises(SignatureInvalidError, match="originality"):
        check(dataclasses.replace(evidence, originality=None))
    with pytest.raises(SignatureInvalidError, match="div-file"):
        check(other)


def test_another_key_provider_does_not_verify_the_transcript() -> None:
    with pytest.raises(SignatureInvalidError, match="does not verify with this key"):
        check(recorded(), keys=OTHER_KEYS)


def test_without_a_key_provider_the_record_is_checked_and_no_level_granted() -> None:
    evidence = recorded()
    result = check(evidence, keys=None)
    assert result.valid and result.level is None
    assert result.reasons[0] == NOT_REPLAYED and result.reasons[-1] == "no level granted"
    # The record checks still run: a copy or a broken record is refused.
    with pytest.raises(RecordCopiedError):
        check(dataclasses.replace(evidence, uid=OTHER_UID), keys=None)
    with pytest.raises(RecordFormatError):
        check(dataclasses.replace(evidence, record=bytes(176)), keys=None)


def test_a_presented_authenticator_must_name_the_badge() -> None:
    presented = AuthenticatorInfo("desfire-ev3", OTHER_UID.hex(), None)
    with pytest.raises(EvidenceFormatError, match="names badge"):
        check(recorded(), authenticator=presented)
    unnamed = dataclasses.replace(presented, serial=None)
    result = check(recorded(), authenticator=unnamed)
    assert result.authenticator == dataclasses.replace(unnamed, serial=UID.hex())


def test_badge_evidence_needs_a_badge_verifier() -> None:
    with pytest.raises(EvidenceFormatError, match="No badge verifier"):
        verify_evidence(recorded(), request(), verifier=None)


def test_the_badge_verifier_is_callable_directly() -> None:
    verifier = BadgeVerifier(config(originality=Originality.OPTIONAL), keys=KEYS)
    direct = verifier.verify(recorded(), request())
    assert direct.level is AssuranceLevel.LOW
    assert verify_badge_evidence(recorded(), request(), verifier).reasons == direct.reasons


def test_evidence_from_json_loads_the_desfire_kind_on_demand() -> None:
    obj = json.loads(json.dumps(recorded().to_json()))
    assert Evidence.from_json(obj) == recorded()


def test_a_verifier_opened_from_a_configuration_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    masters = {label: (bytes([0x10 + i]) * 16).hex() for i, label in enumerate(LABELS)}
    scalar = f"{AUTHORITY_KEY.private_numbers().private_value:064x}"
    document = {"format": "mie-keys/1", "aes128": masters, "ecdsa-p256": {"mie-authority": scalar}}
    keys.write_text(json.dumps(document))
    keys.chmod(0o600)
    pem = AUTHORITY_KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "authority.pem").write_bytes(pem)
    badge_json = {
        "format": "mie-badge/1",
        "keys": {"provider": "software", "file": "keys.json"},
        "authorities": [{"name": "CH Test", "pem": "authority.pem", "test": True}],
        "originality_keys": ["mie-test"],
        "second_factor": {"store": "sqlite:badges.db", "max_failures": 3},
    }
    (tmp_path / "badge.json").write_text(json.dumps(badge_json))
    cfg = BadgeConfig.load(tmp_path / "badge.json")
    with BadgeVerifier.open(cfg) as verifier:
        assert verifier.keys is not None and verifier.second_factor is not None
        result = verifier.verify(recorded(), request())
        # The store is there, this badge has no PIN in it: possession only.
        assert result.level is AssuranceLevel.LOW
        assert "no second factor enrolled for this badge: possession only" in result.reasons
    assert (tmp_path / "badges.db").exists()
    with pytest.raises(ProviderClosedError):
        verifier.keys.diversify("mie-read", bytes(17))


def test_originality_required_given_as_a_string_still_requires_the_signature() -> None:
    # Rv-Z: BadgeConfig(originality="required") (a str, not the enum) let a session whose
    # Read_Sig was answered 911C through: "originality signature not verified (optional)", LOW.
    evidence = recorded()
    at = next(i for i, e in enumerate(evidence.transcript) if e.command[1] == 0x3C)
    refused = TranscriptExchange(evidence.transcript[at].command, bytes.fromhex("911C"))
    stripped = dataclasses.replace(
        evidence, transcript=(*evidence.transcript[:at], refused), originality=None
    )
    with pytest.raises(OriginalitySignatureError):
        check(stripped, cfg=config(originality="required"))
