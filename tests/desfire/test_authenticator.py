"""DesfireAuthenticator (plan §2.2) with the badge verifier, in process, on emulated badges
personalised as an enrolment leaves them: each UID source and scheme, the exact commands (D5),
the refusals with their contract codes, originality, the second factor and the probe."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mie.core.connection import SmartCardConnection, SmartCardConnectionWrapper, Transport
from mie.core.errors import (
    BadResponseError,
    CardRemovedError,
    ErrorCode,
    EvidenceFormatError,
    MieError,
    SignatureInvalidError,
    UnsupportedCardError,
)
from mie.desfire.authenticator import BoundRndA, DesfireAuthenticator
from mie.desfire.config import (
    BadgeConfig,
    BadgeConfigError,
    Originality,
    OriginalityRead,
    UidSource,
)
from mie.desfire.errors import (
    CardCryptogramError,
    DesfireAuthenticationError,
    DesfireStatusError,
    LegacyCryptoError,
    OriginalitySignatureError,
    RecordCopiedError,
    RecordUntrustedError,
    ResponseIntegrityError,
)
from mie.desfire.evidence import BadgeScheme, DesfireSessionEvidence
from mie.desfire.record import IdentityRecord
from mie.desfire.verify import NOT_REPLAYED, BadgeVerifier
from mie.emulation.base import EmulatedConnection
from mie.emulation.desfire import BadgeFaults, EmulatedDesfire
from mie.emulation.desfire_state import KeyType
from mie.evidence import Evidence
from mie.keys import KeyProvider
from mie.policy import AssuranceLevel
from mie.registry import FIDO_SELECT, AuthenticatorOptions, authenticator_for
from mie.request import AuthRequest, StaticPin, UserVerification
from mie.result import AuthenticatorInfo, AuthResult
from mie.store.errors import SecondFactorLockedError, WrongSecondFactorError
from mie.store.secondfactor import Argon2Parameters, SecondFactor
from mie.store.sqlite import SqliteStore
from mie.verification import login, verify_evidence
from tests.desfire.badges import (
    KEYS,
    OTHER_KEYS,
    OTHER_UID,
    OUTSIDER_KEYS,
    RPPS,
    UID,
    Counting,
    badge,
    badge_state,
    config,
    connect,
    counter_rng,
    record,
    request,
)

LOW, SUBSTANTIAL = AssuranceLevel.LOW, AssuranceLevel.SUBSTANTIAL
WEAK = Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1, allow_weak=True)
GET_DATA, SELECT, EV2_FIRST, MORE, CARD_UID, NON_FIRST, READ, READ_SIG = (
    0xCA,
    0x5A,
    0x71,
    0xAF,
    0x51,
    0x77,
    0xBD,
    0x3C,
)
AES_AUTH, KEY_SETTINGS, ISO_AUTH = 0xAA, 0x45, 0x1A
RECORD_READ = [READ, MORE, MORE, MORE]  # 200 bytes in FULL mode: 4 frames of <= 59


def run(
    cfg: BadgeConfig | None = None,
    card: EmulatedDesfire | None = None,
    *,
    user: UserVerification | None = None,
    second_factor: SecondFactor | None = None,
    keys: KeyProvider | None = KEYS,
    req: AuthRequest | None = None,
) -> tuple[AuthResult, DesfireAuthenticator]:
    """Authenticate ``card`` with ``cfg`` and verify in the same process (``mie auth``)."""
    cfg = cfg or config()
    card = card or badge(badge_state(cfg=cfg))
    authenticator = DesfireAuthenticator(connect(card), cfg, keys=KEYS)
    verifier = BadgeVerifier(cfg, keys=keys, second_factor=second_factor)
    return login(
        authenticator, req or request(), user=user, verifier=None, badges=verifier
    ), authenticator


# --- each UID source and scheme ------------------------------------------------------------


@pytest.mark.parametrize("source", list(UidSource))
@pytest.mark.parametrize("product", ["ev3", "ev2", "ev1"])
def test_each_uid_source_and_scheme_reads_the_bound_identity(
    source: UidSource, product: str
) -> None:
    # EV1 badges have no Read_Sig: originality is optional for them.
    originality = Originality.OPTIONAL if product == "ev1" else Originality.REQUIRED
    cfg = config(uid_source=source, originality=originality)
    card = badge(badge_state(cfg=cfg), product=product)
    result, authenticator = run(cfg, card)
    assert result.valid and result.level is LOW
    assert result.identity is not None and result.identity.id_nat == RPPS
    assert result.identity.test_card
    assert result.authenticator is not None and result.authenticator.serial == UID.hex()
    # The version is not known here: only an EV1 badge tells by refusing EV2.
    assert result.authenticator.kind == ("desfire-ev1" if product == "ev1" else "desfire")
    evidence = result.evidence
    assert isinstance(evidence, DesfireSessionEvidence)
    scheme = BadgeScheme.EV1_AES if product == "ev1" else BadgeScheme.EV2
    assert (evidence.scheme, evidence.uid, evidence.uid_source) == (scheme, UID, source)
    assert authenticator.info.serial == UID.hex()


# --- the commands (D5) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "originality", "read", "expected"),
    [
        # FF CA (the reader), Select, EV2First (2 APDUs), ReadData: 4 card commands, 8 APDUs.
        (
            UidSource.ANTICOLLISION,
            Originality.OFF,
            OriginalityRead.FULL,
            [GET_DATA, SELECT, EV2_FIRST, MORE, *RECORD_READ],
        ),
        # Random UID: + GetCardUID + EV2NonFirst (2): 7 card commands, 10 APDUs.
        (
            UidSource.GET_CARD_UID,
            Originality.OFF,
            OriginalityRead.FULL,
            [SELECT, EV2_FIRST, MORE, CARD_UID, NON_FIRST, MORE, *RECORD_READ],
        ),
        # Originality (the default, full): + Read_Sig last, inside the session, its answer 72
        # bytes (64 enciphered + MAC) in 2 frames: 8 card commands, 12 APDUs.
        (
            UidSource.GET_CARD_UID,
            Originality.REQUIRED,
            OriginalityRead.FULL,
            [SELECT, EV2_FIRST, MORE, CARD_UID, NON_FIRST, MORE, *RECORD_READ, READ_SIG, MORE],
        ),
        # Originality plain: + Read_Sig first, before authenticating: 8 commands, 11 APDUs.
        (
            UidSource.GET_CARD_UID,
            Originality.REQUIRED,
            OriginalityRead.PLAIN,
            [READ_SIG, SELECT, EV2_FIRST, MORE, CARD_UID, NON_FIRST, MORE, *RECORD_READ],
        ),
        (
            UidSource.ANTICOLLISION,
            Originality.REQUIRED,
            OriginalityRead.FULL,
            [GET_DATA, SELECT, EV2_FIRST, MORE, *RECORD_READ, READ_SIG, MORE],
        ),
        (
            UidSource.DIV_FILE,
            Originality.OFF,
            OriginalityRead.FULL,
            [SELECT, READ, EV2_FIRST, MORE, *RECORD_READ],
        ),
        (
            UidSource.DIV_FILE,
            Originality.REQUIRED,
            OriginalityRead.FULL,
            [SELECT, READ, EV2_FIRST, MORE, *RECORD_READ, READ_SIG, MORE],
        ),
    ],
)
def test_the_session_sends_the_protocol_minimum(
    source: UidSource, originality: Originality, read: OriginalityRead, expected: list[int]
) -> None:
    cfg = config(uid_source=source, originality=originality, originality_read=read)
    connection = connect(badge(badge_state(cfg=cfg)))
    evidence = DesfireAuthenticator(connection, cfg, keys=KEYS).authenticate(request())
    assert connection.commands == expected
    assert [e.command for e in evidence.transcript] == connection.sent
    if source is UidSource.ANTICOLLISION:
        assert connection.sent[0] == bytes.fromhex("ffca000000")


def test_an_ev1_badge_with_a_known_version_goes_straight_to_authenticate_aes() -> None:
    cfg = config(originality=Originality.OFF)
    card = badge(badge_state(cfg=cfg), product="ev1")
    connection = connect(card)
    authenticator = authenticator_for(connection, AuthenticatorOptions(badge=cfg, badge_keys=KEYS))
    assert isinstance(authenticator, DesfireAuthenticator)
    assert authenticator.info.kind == "desfire-ev1"
    evidence = authenticator.authenticate(request())
    # After the probe's GetVersion: AuthenticateAES twice, no EV2 attempt.
    assert connection.commands[1:] == [
        SELECT,
        AES_AUTH,
        MORE,
        CARD_UID,
        AES_AUTH,
        MORE,
        *RECORD_READ,
    ]
    assert evidence.scheme is BadgeScheme.EV1_AES
    result = verify_evidence(
        evidence, request(), verifier=None, badges=BadgeVerifier(cfg, keys=KEYS)
    )
    assert result.level is LOW


def test_an_ev1_badge_of_unknown_version_is_tried_in_ev2_first() -> None:
    cfg = config(originality=Originality.OFF)
    connection = connect(badge(badge_state(cfg=cfg), product="ev1"))
    evidence = DesfireAuthenticator(connection, cfg, keys=KEYS).authenticate(request())
    assert connection.commands[:3] == [SELECT, EV2_FIRST, AES_AUTH]
    assert evidence.scheme is BadgeScheme.EV1_AES


class AnswersEv1(SmartCardConnectionWrapper):
    """A relay (or agent) that answers ``911C`` to EV2First for an EV2/EV3 badge."""

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        if apdu[1] == EV2_FIRST:
            return b"", 0x911C
        return super().send_and_receive(apdu)


def test_an_ev2_badge_made_to_answer_as_ev1_is_read_under_ev1_unless_ev2_is_required() -> None:
    # Without require_ev2 the downgrade is accepted, and says so: scheme and reasons name EV1.
    cfg = config()
    card = badge(badge_state(cfg=cfg), product="ev3")
    evidence = DesfireAuthenticator(AnswersEv1(connect(card)), cfg, keys=KEYS).authenticate(
        request()
    )
    assert evidence.scheme is BadgeScheme.EV1_AES
    result = verify_evidence(
        evidence, request(), verifier=None, badges=BadgeVerifier(cfg, keys=KEYS)
    )
    assert result.level is LOW and "EV1 AES" in result.reasons[0]
    # With require_ev2: the live session stops at the 911C, the verifier refuses EV1 evidence.
    strict = config(require_ev2=True)
    connection = connect(badge(badge_state(cfg=strict), product="ev3"))
    with pytest.raises(UnsupportedCardError, match="require_ev2"):
        DesfireAuthenticator(AnswersEv1(connection), strict, keys=KEYS).authenticate(request())
    assert AES_AUTH not in connection.commands
    with pytest.raises(UnsupportedCardError, match="requires EV2"):
        verify_evidence(evidence, request(), verifier=None, badges=BadgeVerifier(strict, keys=KEYS))
    with pytest.raises(UnsupportedCardError, match="requires EV2"):
        verify_evidence(evidence, request(), verifier=None, badges=BadgeVerifier(strict, keys=None))
    # A real EV3 under require_ev2 is read as before.
    assert run(strict)[0].level is LOW


def test_an_ev1_version_under_require_ev2_is_refused_before_any_command() -> None:
    cfg = config(require_ev2=True, originality=Originality.OFF)
    connection = connect(badge(badge_state(cfg=cfg), product="ev1"))
    authenticator = authenticator_for(connection, AuthenticatorOptions(badge=cfg, badge_keys=KEYS))
    assert isinstance(authenticator, DesfireAuthenticator)
    probed = len(connection.sent)
    with pytest.raises(UnsupportedCardError, match="version says EV1"):
        authenticator.authenticate(request())
    assert len(connection.sent) == probed


# --- privacy: nothing static before the first authentication (random UID) -----------------


def _activation(card: EmulatedDesfire, cfg: BadgeConfig) -> DesfireSessionEvidence:
    """One activation of ``card`` (a new connection powers it on) and its authentication."""
    return DesfireAuthenticator(connect(card), cfg, keys=KEYS).authenticate(request())


def _before_first_authentication(evidence: DesfireSessionEvidence) -> list[bytes]:
    """The badge's answers (data and SW) up to and including its answer to the first
    authentication command."""
    first = next(i for i, e in enumerate(evidence.transcript) if e.command[1] == EV2_FIRST)
    return [e.response for e in evidence.transcript[: first + 1]]


def test_under_random_uid_the_default_session_gives_nothing_to_track_the_badge_by() -> None:
    # The RIE's random UID is there so badges cannot be tracked; the originality signature is
    # static (ECDSA over the real UID): in clear before authenticating, any reader sees it.
    cfg = config()
    assert cfg.random_uid and cfg.originality is Originality.REQUIRED
    assert cfg.originality_read is OriginalityRead.FULL
    card = badge(badge_state(cfg=cfg))
    one, two = _activation(card, cfg), _activation(card, cfg)
    assert one.originality is not None and one.originality == two.originality
    early_one, early_two = _before_first_authentication(one), _before_first_authentication(two)
    # Nothing answered before the first authentication carries data that is the same twice
    # (status-only answers aside), nor the signature.
    data_one = {r[:-2] for r in early_one if len(r) > 2}
    data_two = {r[:-2] for r in early_two if len(r) > 2}
    assert data_one and not data_one & data_two
    assert not any(one.originality in r for r in early_one + early_two)
    # Read_Sig comes after the authentications, its answer enciphered: other bytes each time,
    # none of them the signature.
    sig_one = [i for i, e in enumerate(one.transcript) if e.command[1] == READ_SIG]
    sig_two = [i for i, e in enumerate(two.transcript) if e.command[1] == READ_SIG]
    assert len(sig_one) == len(sig_two) == 1
    assert sig_one[0] > max(i for i, e in enumerate(one.transcript) if e.command[1] == NON_FIRST)

    def wire(evidence: DesfireSessionEvidence, at: int) -> bytes:
        return b"".join(e.response[:-2] for e in evidence.transcript[at:])

    assert wire(one, sig_one[0]) != wire(two, sig_two[0])
    assert one.originality not in wire(one, sig_one[0])
    # The static signature is nowhere in clear in either transcript.
    signature = one.originality
    assert not any(signature in e.response for e in one.transcript + two.transcript)


def test_originality_read_plain_is_trackable_under_random_uid() -> None:
    # The documented trade-off: plain reads the signature first, in clear, the same each time.
    cfg = config(originality_read=OriginalityRead.PLAIN)
    card = badge(badge_state(cfg=cfg))
    one, two = _activation(card, cfg), _activation(card, cfg)
    assert one.transcript[0].command[1] == READ_SIG
    assert one.transcript[0].response == two.transcript[0].response
    assert one.originality is not None and one.originality in one.transcript[0].response
    # The verifier's replay follows the configuration: the evidence verifies.
    result, _ = run(cfg, card)
    assert result.valid and result.level is LOW


def test_a_verifier_reading_the_other_way_does_not_verify_the_evidence() -> None:
    # The replay runs the configured order: a transcript made the other way does not replay.
    cfg = config()
    card = badge(badge_state(cfg=cfg))
    evidence = _activation(card, cfg)
    plain = BadgeVerifier(config(originality_read=OriginalityRead.PLAIN), keys=KEYS)
    with pytest.raises(SignatureInvalidError):
        plain.verify(evidence, request())


# --- refusals --------------------------------------------------------------------------------


def test_a_badge_under_another_master_key_is_key_mismatch_and_left_untouched() -> None:
    cfg = config()
    card = badge(badge_state(cfg=cfg, keys=OTHER_KEYS))
    before = copy.deepcopy(card.state)
    connection = connect(card)
    authenticator = DesfireAuthenticator(connection, cfg, keys=KEYS)
    with pytest.raises(DesfireAuthenticationError) as caught:
        authenticator.authenticate(request())
    assert caught.value.code is ErrorCode.KEY_MISMATCH
    # The diagnosis: GetKeySettings says AES keys, so the key is wrong.
    assert connection.commands == [SELECT, EV2_FIRST, MORE, KEY_SETTINGS]
    assert card.state == before


def test_a_record_copied_from_another_badge_is_refused() -> None:
    cfg = config()
    # Badge B, enrolled with its own keys, carries the record signed for badge A.
    card = badge(badge_state(OTHER_UID, cfg, file=record(UID, cfg)))
    with pytest.raises(RecordCopiedError) as caught:
        run(cfg, card)
    assert caught.value.code is ErrorCode.RECORD_COPIED
    assert caught.value.reason == RecordCopiedError.UID
    assert UID.hex() in str(caught.value) and OTHER_UID.hex() in str(caught.value)


def test_a_record_signed_by_another_authority_is_refused() -> None:
    cfg = config()
    card = badge(badge_state(cfg=cfg, file=record(UID, cfg, signer=OUTSIDER_KEYS)))
    with pytest.raises(RecordUntrustedError) as caught:
        run(cfg, card)
    assert caught.value.code is ErrorCode.RECORD_UNTRUSTED
    assert caught.value.reason == RecordUntrustedError.UNKNOWN_AUTHORITY


def test_an_edited_record_is_refused() -> None:
    cfg = config()
    file = bytearray(record(UID, cfg))
    issuer = file.index(b"CH Test")
    file[issuer + 6] ^= 0x01  # "CH Tesu": still a record, no longer the one signed
    card = badge(badge_state(cfg=cfg, file=bytes(file)))
    IdentityRecord.parse(bytes(file))  # it parses: the signature is what refuses it
    with pytest.raises(RecordUntrustedError) as caught:
        run(cfg, card)
    assert caught.value.reason == RecordUntrustedError.BAD_SIGNATURE


def test_a_des_application_is_legacy_crypto_unless_opted_in() -> None:
    cfg = config()
    card = badge(badge_state(cfg=cfg, key_type=KeyType.DES))
    before = copy.deepcopy(card.state)
    connection = connect(card)
    with pytest.raises(LegacyCryptoError) as caught:
        DesfireAuthenticator(connection, cfg, keys=KEYS).authenticate(request())
    assert caught.value.code is ErrorCode.LEGACY_CRYPTO
    assert connection.commands[-1] == KEY_SETTINGS and ISO_AUTH not in connection.commands
    assert card.state == before


def test_a_des_application_under_the_legacy_opt_in_has_no_level() -> None:
    cfg = config(legacy=True)
    card = badge(badge_state(cfg=cfg, key_type=KeyType.DES))
    result, _ = run(cfg, card)
    assert result.valid and result.level is None
    assert result.reasons[-1] == "legacy DES/3DES badge: not RIE-conformant, no level"
    assert isinstance(result.evidence, DesfireSessionEvidence)
    assert result.evidence.scheme is BadgeScheme.LEGACY
    # A verifier without the opt-in refuses the same evidence.
    with pytest.raises(LegacyCryptoError):
        verify_evidence(
            result.evidence, request(), verifier=None, badges=BadgeVerifier(config(), keys=KEYS)
        )


def test_a_des_ev1_badge_of_known_version_replays_under_the_legacy_opt_in() -> None:
    # The live session starts with AuthenticateAES (the probe said EV1), is diagnosed DES and
    # goes legacy; the replay must start as it did, not with EV2First.
    cfg = config(legacy=True, originality=Originality.OFF)
    connection = connect(badge(badge_state(cfg=cfg, key_type=KeyType.DES), product="ev1"))
    authenticator = authenticator_for(connection, AuthenticatorOptions(badge=cfg, badge_keys=KEYS))
    assert isinstance(authenticator, DesfireAuthenticator)
    evidence = authenticator.authenticate(request())
    assert evidence.scheme is BadgeScheme.LEGACY
    assert [e.command[1] for e in evidence.transcript][:4] == [
        SELECT,
        AES_AUTH,
        KEY_SETTINGS,
        ISO_AUTH,
    ]
    result = verify_evidence(
        evidence, request(), verifier=None, badges=BadgeVerifier(cfg, keys=KEYS)
    )
    assert result.valid and result.level is None


# --- originality -----------------------------------------------------------------------------

OTHER_ORIGINALITY = ec.derive_private_key(0x5EED, ec.SECP224R1())


@pytest.mark.parametrize(
    ("originality", "genuine", "reason"),
    [
        (Originality.REQUIRED, True, "originality signature verified (mie test badge)"),
        (Originality.OPTIONAL, True, "originality signature verified (mie test badge)"),
        (Originality.OPTIONAL, False, "originality signature not verified (optional)"),
        (Originality.OFF, True, "originality signature not checked"),
    ],
)
def test_originality_modes(originality: Originality, genuine: bool, reason: str) -> None:
    cfg = config(originality=originality)
    card = badge(badge_state(cfg=cfg))
    if not genuine:
        card = badge(badge_state(cfg=cfg), originality_key=OTHER_ORIGINALITY)
    result, _ = run(cfg, card)
    assert result.valid and result.level is LOW
    assert any(r.startswith(reason) for r in result.reasons), result.reasons


def test_a_required_originality_with_another_key_is_not_genuine() -> None:
    cfg = config(originality=Originality.REQUIRED)
    with pytest.raises(OriginalitySignatureError) as caught:
        run(cfg, badge(badge_state(cfg=cfg), originality_key=OTHER_ORIGINALITY))
    assert caught.value.code is ErrorCode.NOT_GENUINE


def test_the_nxp_keys_alone_do_not_trust_an_emulated_badge() -> None:
    cfg = config(originality_keys=("nxp",))
    with pytest.raises(OriginalitySignatureError):
        run(cfg)


def test_a_required_originality_on_a_badge_without_read_sig_is_not_genuine() -> None:
    cfg = config(originality=Originality.REQUIRED)
    with pytest.raises(OriginalitySignatureError, match="no originality signature"):
        run(cfg, badge(badge_state(cfg=cfg), product="ev1"))


# --- second factor ---------------------------------------------------------------------------


@pytest.fixture
def second_factor(tmp_path: Path) -> SecondFactor:
    factor = SecondFactor(SqliteStore(tmp_path / "mie.db"), max_failures=3, parameters=WEAK)
    signed = IdentityRecord.parse(record(UID, config()))
    factor.enrol(signed.badge_name, signed.file, "1234")
    return factor


def test_the_verifier_pin_makes_it_substantial(second_factor: SecondFactor) -> None:
    pin = StaticPin("1234")
    result, _ = run(user=pin, second_factor=second_factor)
    assert result.valid and result.level is SUBSTANTIAL
    assert pin.asked == [3]
    assert "second-factor PIN verified" in result.reasons


def test_a_wrong_pin_is_counted_then_the_badge_locks(second_factor: SecondFactor) -> None:
    asked = []
    for left in (2, 1, 0):
        pin = StaticPin("9999")
        with pytest.raises(WrongSecondFactorError) as caught:
            run(user=pin, second_factor=second_factor)
        assert caught.value.code is ErrorCode.INVALID_PIN
        assert caught.value.tries_left == left
        asked += pin.asked
    assert asked == [3, 2, 1]
    # Locked: the right PIN is not even asked for, and never gives a result.
    pin = StaticPin("1234")
    with pytest.raises(SecondFactorLockedError) as locked:
        run(user=pin, second_factor=second_factor)
    assert locked.value.code is ErrorCode.PIN_BLOCKED
    assert pin.asked == []


def test_a_right_pin_forgives_earlier_failures(second_factor: SecondFactor) -> None:
    with pytest.raises(WrongSecondFactorError):
        run(user=StaticPin("9999"), second_factor=second_factor)
    pin = StaticPin("1234")
    assert run(user=pin, second_factor=second_factor)[0].level is SUBSTANTIAL
    assert pin.asked == [2]
    assert second_factor.tries_left(IdentityRecord.parse(record()).badge_name) == 3


def test_without_a_user_or_when_not_requested_the_badge_is_possession(
    second_factor: SecondFactor,
) -> None:
    result, _ = run(second_factor=second_factor)
    assert result.level is LOW and "second factor not presented" in result.reasons
    pin = StaticPin("1234")
    result, _ = run(user=pin, second_factor=second_factor, req=request(user_verification=False))
    assert result.level is LOW and pin.asked == []


def test_the_pin_is_asked_only_after_the_badge_checks_passed(second_factor: SecondFactor) -> None:
    cfg = config()
    pin = StaticPin("9999")
    card = badge(badge_state(OTHER_UID, cfg, file=record(UID, cfg)))
    with pytest.raises(RecordCopiedError):
        run(cfg, card, user=pin, second_factor=second_factor)
    assert pin.asked == []
    assert second_factor.tries_left(IdentityRecord.parse(record()).badge_name) == 3


def test_the_pin_is_not_asked_when_the_presented_authenticator_names_another_badge(
    second_factor: SecondFactor,
) -> None:
    cfg = config()
    evidence = DesfireAuthenticator(
        connect(badge(badge_state(cfg=cfg))), cfg, keys=KEYS
    ).authenticate(request())
    verifier = BadgeVerifier(cfg, keys=KEYS, second_factor=second_factor)
    pin = StaticPin("9999")
    presented = AuthenticatorInfo("desfire-ev3", OTHER_UID.hex(), None, Transport.CONTACTLESS)
    with pytest.raises(EvidenceFormatError, match="names badge"):
        verifier.verify(evidence, request(), user=pin, authenticator=presented)
    assert pin.asked == []
    assert second_factor.tries_left(IdentityRecord.parse(record()).badge_name) == 3


# --- verifier without keys, evidence, determinism -------------------------------------------


def test_a_verifier_without_the_key_provider_grants_no_level() -> None:
    result, _ = run(keys=None)
    assert result.valid and result.level is None
    assert result.reasons[0] == NOT_REPLAYED
    assert result.identity is not None and result.identity.id_nat == RPPS


def test_the_evidence_round_trips_through_json() -> None:
    cfg = config()
    evidence = DesfireAuthenticator(connect(badge()), cfg, keys=KEYS).authenticate(request())
    text = json.dumps(evidence.to_json())
    loaded = Evidence.from_json(json.loads(text))
    assert loaded == evidence
    result = verify_evidence(loaded, request(), verifier=None, badges=BadgeVerifier(cfg, keys=KEYS))
    assert result.level is LOW
    assert result.to_json()["evidence"]["revocation"] is None


def test_the_same_request_and_badge_give_the_same_evidence() -> None:
    cfg = config()
    runs = [
        DesfireAuthenticator(connect(badge(rng=counter_rng())), cfg, keys=KEYS).authenticate(
            request()
        )
        for _ in range(2)
    ]
    assert runs[0].to_json() == runs[1].to_json()
    other = DesfireAuthenticator(connect(badge(rng=counter_rng())), cfg, keys=KEYS)
    assert other.authenticate(request(nonce=bytes(32))).transcript != runs[0].transcript


# --- the authenticator itself and the probe --------------------------------------------------


def test_rnd_a_is_bound_to_the_challenge_and_counts() -> None:
    first, second = BoundRndA(request().challenge), BoundRndA(request(nonce=bytes(32)).challenge)
    a0, a1 = first(16), first(16)
    assert a0 != a1 and a0 != second(16)
    assert BoundRndA(request().challenge)(8) == a0[:8]
    with pytest.raises(ValueError):
        BoundRndA(b"short")


def test_no_configuration_identifies_but_does_not_authenticate() -> None:
    card = badge(badge_state(cfg=config(uid_source=UidSource.ANTICOLLISION)))
    authenticator = DesfireAuthenticator(connect(card), None)
    identification = authenticator.identify()
    assert identification.authenticator.serial == UID.hex()
    assert identification.identity is None
    with pytest.raises(BadgeConfigError, match="No badge configuration"):
        authenticator.authenticate(request())


def test_a_random_uid_identifies_no_serial() -> None:
    assert DesfireAuthenticator(connect(badge()), config()).identify().authenticator.serial is None


def test_a_raw_challenge_is_refused() -> None:
    with pytest.raises(TypeError):
        DesfireAuthenticator(connect(badge()), config()).authenticate(b"x" * 64)  # type: ignore[arg-type]


def test_the_probe_recognises_a_contactless_desfire_badge() -> None:
    connection = connect(badge())
    authenticator = authenticator_for(connection, AuthenticatorOptions(badge=config()))
    assert isinstance(authenticator, DesfireAuthenticator)
    assert authenticator.info.kind == "desfire-ev3"
    assert authenticator.info.transport is Transport.CONTACTLESS
    assert connection.sent == [bytes.fromhex("9060000000")]


class _Other(Counting):
    """A contactless card that answers everything 6D00."""

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent.append(bytes(apdu))
        return b"", 0x6D00


def test_the_probe_leaves_other_cards_alone() -> None:
    other = _Other(connect(badge()))
    with pytest.raises(UnsupportedCardError):
        authenticator_for(other)
    # GetVersion, then the next contactless probe's (fido) SELECT of the FIDO applet.
    assert other.sent == [bytes.fromhex("9060000000"), FIDO_SELECT]
    contact = Counting(EmulatedConnection(badge(), Transport.CONTACT))
    with pytest.raises(UnsupportedCardError):
        authenticator_for(contact)
    assert contact.sent == []


def test_every_refusal_is_a_mie_error_with_a_code() -> None:
    for kind in (
        DesfireAuthenticationError,
        LegacyCryptoError,
        OriginalitySignatureError,
        RecordCopiedError,
        RecordUntrustedError,
    ):
        assert issubclass(kind, MieError) and kind.code is not None


# --- faults on the live session (the badge, or a man in the middle) --------------------------

Tamper = Callable[[int, bytes, bytes, int], tuple[bytes, int]]


class Middle(Counting):
    """Changes the answers: ``tamper(index, command, data, sw) -> (data, sw)``."""

    def __init__(self, inner: SmartCardConnection, tamper: Tamper) -> None:
        super().__init__(inner)
        self.tamper = tamper

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        data, sw = super().send_and_receive(apdu)
        return self.tamper(len(self.sent) - 1, bytes(apdu), data, sw)


def live(card: EmulatedDesfire, tamper: Tamper | None = None) -> DesfireSessionEvidence:
    connection: SmartCardConnection = connect(card)
    if tamper is not None:
        connection = Middle(connection, tamper)
    return DesfireAuthenticator(connection, config(), keys=KEYS).authenticate(request())


@pytest.mark.parametrize("bit", [0, 9, 31, 63])
def test_a_response_mac_off_by_one_bit_is_an_integrity_error(bit: int) -> None:
    card = badge()
    card.faults = BadgeFaults(flip_mac_bit=bit)
    with pytest.raises(ResponseIntegrityError) as caught:
        live(card)
    assert caught.value.code is ErrorCode.INTEGRITY_ERROR


def test_a_badge_answering_af_for_ever_is_malformed_within_bounds() -> None:
    card = badge()
    card.faults = BadgeFaults(af_forever=True)
    with pytest.raises(BadResponseError) as caught:
        live(card)
    assert caught.value.code is ErrorCode.MALFORMED


def test_replayed_badge_answers_are_refused() -> None:
    card = badge()
    live(card)  # the answers a replaying relay would serve again
    card.faults = BadgeFaults(replay_previous=True)
    with pytest.raises(MieError) as caught:
        live(card)
    assert caught.value.code in (ErrorCode.KEY_MISMATCH, ErrorCode.INTEGRITY_ERROR)


def _at(command: int, change: Callable[[bytes, int], tuple[bytes, int]]) -> Tamper:
    def tamper(index: int, apdu: bytes, data: bytes, sw: int) -> tuple[bytes, int]:
        return change(data, sw) if apdu[1] == command else (data, sw)

    return tamper


def test_a_badge_answer_without_rnd_a_prime_is_a_suspected_clone() -> None:
    # The second EV2First message's answer, E(TI || RndA' || caps), changed in its first block.
    seen: list[int] = []

    def answer(index: int, apdu: bytes, data: bytes, sw: int) -> tuple[bytes, int]:
        if apdu[1] == MORE and sw == 0x9100 and not seen:
            seen.append(index)
            return bytes([data[0] ^ 0x01]) + data[1:], sw
        return data, sw

    with pytest.raises(CardCryptogramError) as caught:
        live(badge(), answer)
    assert caught.value.code is ErrorCode.SUSPECTED_CLONE


@pytest.mark.parametrize(
    ("command", "change", "error"),
    [
        # The last record frame cut by one byte: its MAC no longer verifies.
        (MORE, lambda data, sw: (data[:-1], sw) if len(data) < 59 else (data, sw), MieError),
        (SELECT, lambda data, sw: (data, 0x91CA), DesfireStatusError),
        (SELECT, lambda data, sw: (data, 0x6A82), BadResponseError),
        (CARD_UID, lambda data, sw: (data[:-2], sw), ResponseIntegrityError),
        # Read_Sig in FULL mode: a cut frame no longer verifies.
        (READ_SIG, lambda data, sw: (data[:-1], sw), ResponseIntegrityError),
        (EV2_FIRST, lambda data, sw: (data[:8], sw), BadResponseError),
    ],
)
def test_cut_frames_and_unexpected_statuses_are_typed_errors(
    command: int, change: Callable[[bytes, int], tuple[bytes, int]], error: type[MieError]
) -> None:
    with pytest.raises(error):
        live(badge(), _at(command, change))


def test_a_badge_without_the_application_is_a_card_error() -> None:
    state = badge_state()
    state.applications.clear()
    with pytest.raises(DesfireStatusError) as caught:
        live(badge(state))
    assert caught.value.code is ErrorCode.CARD_ERROR


def test_a_badge_removed_mid_session_propagates_the_transport_error() -> None:
    def removed(index: int, apdu: bytes, data: bytes, sw: int) -> tuple[bytes, int]:
        if apdu[1] == CARD_UID:
            raise CardRemovedError("The badge left the field")
        return data, sw

    with pytest.raises(CardRemovedError):
        live(badge(), removed)
