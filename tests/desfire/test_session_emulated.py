"""DesfireSession against the emulated badge, in process, with a man in the middle: what the
session does when the answers it gets are flipped, replayed, cut or endless, and that the badge
is left as it was. (The plain round trips of every command are in test_emulator.py.)"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mie.core.channel import CommMode
from mie.core.errors import BadResponseError, MieError
from mie.desfire import crypto
from mie.desfire.channel import Ev2Channel
from mie.desfire.errors import (
    CardCryptogramError,
    DesfireAuthenticationError,
    DesfireStatusError,
    ResponseIntegrityError,
)
from mie.desfire.session import DesfireSession
from mie.emulation.base import EmulatedConnection
from mie.emulation.desfire import TEST_ORIGINALITY_KEY, EmulatedDesfire
from mie.emulation.desfire_state import BadgeKey, BadgeState, KeyType, personalise

h = bytes.fromhex
UID = h("04958CAA5C5E80")
AID = h("494DF0")
PICC_KEY = h("00112233445566778899AABBCCDDEEFF")
APP_KEYS = [bytes([0x40 + i]) * 16 for i in range(5)]
RECORD = bytes(range(176))

Tamper = Callable[[int, bytes, bytes, int], tuple[bytes, int]]


class Middle(EmulatedConnection):
    """The emulated badge behind a hook that may change each answer (APDU index, command,
    data, sw) -> (data, sw)."""

    def __init__(self, card: EmulatedDesfire) -> None:
        super().__init__(card)
        self.sent: list[bytes] = []
        self.answers: list[tuple[bytes, int]] = []
        self.tamper: Tamper | None = None

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent.append(bytes(apdu))
        data, sw = super().send_and_receive(apdu)
        if self.tamper is not None:
            data, sw = self.tamper(len(self.sent) - 1, bytes(apdu), data, sw)
        self.answers.append((data, sw))
        return data, sw


def badge(*, random_uid: bool = True) -> EmulatedDesfire:
    state = BadgeState(UID, BadgeKey(PICC_KEY, 1, KeyType.AES))
    personalise(state, aid=AID, keys=APP_KEYS, record=RECORD, random_uid=random_uid)
    return EmulatedDesfire(state)


def identity_session(card: EmulatedDesfire) -> tuple[DesfireSession, Middle]:
    connection = Middle(card)
    session = DesfireSession(connection)
    session.select_application(AID)
    session.authenticate_ev2_first(1, APP_KEYS[1])
    assert session.get_card_uid() == UID
    session.authenticate_ev2_non_first(2, APP_KEYS[2])
    return session, connection


def test_the_d5_identity_read_counts_seven_commands_and_ten_apdus() -> None:
    session, connection = identity_session(badge())
    assert session.read_data(1, mode=CommMode.FULL) == RECORD
    commands = [apdu[1] for apdu in connection.sent]
    assert commands == [0x5A, 0x71, 0xAF, 0x51, 0x77, 0xAF, 0xBD, 0xAF, 0xAF, 0xAF]


@pytest.mark.parametrize("where", [0, 58, 59 * 3, 199])
def test_a_flipped_response_bit_returns_nothing_and_the_badge_goes_on(where: int) -> None:
    card = badge()
    session, connection = identity_session(card)
    start = len(connection.sent)
    frame, offset = divmod(where, 59)

    def flip(index: int, apdu: bytes, data: bytes, sw: int) -> tuple[bytes, int]:
        if index == start + frame:
            changed = bytearray(data)
            changed[offset] ^= 0x01
            return bytes(changed), sw
        return data, sw

    connection.tamper = flip
    before = copy.deepcopy(card.state)
    with pytest.raises(ResponseIntegrityError):
        session.read_data(1, mode=CommMode.FULL)
    assert session.protocol.channel is None and session.auth is None
    assert card.state == before
    connection.tamper = None
    session.authenticate_ev2_first(2, APP_KEYS[2])
    assert session.read_data(1, mode=CommMode.FULL) == RECORD


def test_a_replayed_answer_is_refused() -> None:
    session, connection = identity_session(badge())
    assert session.read_data(1, 0, 16, mode=CommMode.FULL) == RECORD[:16]
    previous = connection.answers[-1]
    connection.tamper = lambda index, apdu, data, sw: previous
    with pytest.raises(ResponseIntegrityError):
        session.read_data(1, 0, 16, mode=CommMode.FULL)


def test_a_cut_last_frame_is_refused() -> None:
    session, connection = identity_session(badge())
    start = len(connection.sent)

    def cut(index: int, apdu: bytes, data: bytes, sw: int) -> tuple[bytes, int]:
        return (data[:-1], sw) if index == start + 3 else (data, sw)

    connection.tamper = cut
    with pytest.raises(ResponseIntegrityError):
        session.read_data(1, mode=CommMode.FULL)


def test_a_badge_answering_af_forever() -> None:
    session, connection = identity_session(badge())
    connection.tamper = lambda index, apdu, data, sw: (data or b"\x00", 0x91AF)
    with pytest.raises(BadResponseError, match="kept answering AF"):
        session.read_data(1, mode=CommMode.FULL)
    assert session.protocol.channel is None


def test_a_wrong_key_leaves_the_badge_untouched() -> None:
    card = badge()
    before = copy.deepcopy(card.state)
    session = DesfireSession(Middle(card))
    session.select_application(AID)
    with pytest.raises(DesfireAuthenticationError) as caught:
        session.authenticate_ev2_first(2, APP_KEYS[3])
    assert caught.value.sw == 0x91AE
    assert card.state == before and session.auth is None


def test_a_reader_impersonated_badge_is_a_cryptogram_error() -> None:
    # Someone who does not know the key answers the second message with random bytes.
    session = DesfireSession(connection := Middle(badge()))
    session.select_application(AID)
    connection.tamper = lambda index, apdu, data, sw: (
        (bytes(32), sw) if apdu[1] == 0xAF else (data, sw)
    )
    with pytest.raises(CardCryptogramError):
        session.authenticate_ev2_first(2, APP_KEYS[2])
    assert session.protocol.channel is None


def test_an_error_status_ends_both_sides() -> None:
    card = badge()
    session, _ = identity_session(card)
    with pytest.raises(DesfireStatusError) as caught:
        session.read_data(7, mode=CommMode.FULL)
    assert caught.value.status.name == "FILE_NOT_FOUND"
    assert session.auth is None
    with pytest.raises(ValueError, match="authenticated session"):
        session.get_card_uid()
    session.authenticate_ev2_first(2, APP_KEYS[2])
    assert session.read_data(1, 0, 8, mode=CommMode.FULL) == RECORD[:8]


def test_select_application_ends_both_sides() -> None:
    session, _ = identity_session(badge())
    session.select_application(AID)
    assert session.auth is None
    # The host sends GetKeySettings plain now, and the badge, its session ended, answers it
    # plain (a badge still in session would have MACed it, and the parse would fail).
    assert session.get_key_settings().max_keys == 5


def test_the_originality_signature_of_the_emulated_badge() -> None:
    session = DesfireSession(Middle(badge(random_uid=False)))
    signature = session.read_signature()
    key = crypto.verify_originality_signature(UID, signature, [TEST_ORIGINALITY_KEY])
    assert key == TEST_ORIGINALITY_KEY
    with pytest.raises(ValueError, match="full mode outside a session"):
        session.read_signature(mode=CommMode.FULL)
    session.select_application(AID)
    session.authenticate_ev2_first(2, APP_KEYS[2])
    with pytest.raises(ValueError, match="plain mode inside a session"):
        session.read_signature(mode=CommMode.PLAIN)
    with pytest.raises(ValueError, match=r"PLAIN .* or FULL"):
        session.read_signature(mode=CommMode.MAC)
    # Inside the session: the same signature, and the session goes on.
    assert session.read_signature() == signature
    assert session.auth is not None
    assert session.read_data(1, mode=CommMode.FULL) == RECORD


def _read_sig_answer(connection: Middle) -> bytes:
    """The wire answer (all frames) to the last Read_Sig sent."""
    index = max(i for i, apdu in enumerate(connection.sent) if apdu[1] == 0x3C)
    frames = [connection.answers[index][0]]
    for apdu, (data, _) in zip(
        connection.sent[index + 1 :], connection.answers[index + 1 :], strict=True
    ):
        if apdu[1] != 0xAF:
            break
        frames.append(data)
    return b"".join(frames)


@pytest.mark.parametrize("ev1", [False, True])
def test_read_sig_inside_a_session_is_enciphered_and_differs_each_session(ev1: bool) -> None:
    card = badge()
    answers = []
    for _ in range(2):
        card.power_on()
        connection = Middle(card)
        session = DesfireSession(connection)
        session.select_application(AID)
        if ev1:
            session.authenticate_aes(2, APP_KEYS[2])
        else:
            session.authenticate_ev2_first(2, APP_KEYS[2])
        signature = session.read_signature()
        assert crypto.verify_originality_signature(UID, signature, [TEST_ORIGINALITY_KEY])
        wire = _read_sig_answer(connection)
        # EV2: E(sig ‖ 80 0…) ‖ MAC = 72 bytes; EV1: E(sig ‖ CRC32 ‖ 0…) = 64 bytes.
        assert len(wire) == (64 if ev1 else 72)
        assert signature not in wire
        answers.append(wire)
        assert session.read_data(1, mode=CommMode.FULL) == RECORD
    assert answers[0] != answers[1]


@pytest.mark.parametrize("where", [0, 30, 58, 59, 71])
def test_a_flipped_bit_of_the_protected_signature_returns_nothing(where: int) -> None:
    session, connection = identity_session(badge())
    start = len(connection.sent)
    frame, offset = divmod(where, 59)

    def flip(index: int, apdu: bytes, data: bytes, sw: int) -> tuple[bytes, int]:
        if index == start + frame:
            changed = bytearray(data)
            changed[offset] ^= 0x01
            return bytes(changed), sw
        return data, sw

    connection.tamper = flip
    with pytest.raises(ResponseIntegrityError):
        session.read_signature()
    assert session.protocol.channel is None and session.auth is None


def test_a_plain_signature_answered_inside_a_session_is_refused() -> None:
    plain = DesfireSession(Middle(badge())).read_signature()
    session, connection = identity_session(badge())
    connection.tamper = lambda index, apdu, data, sw: (plain, 0x9190)
    with pytest.raises(ResponseIntegrityError):
        session.read_signature()
    assert session.auth is None


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 9),
    st.integers(0, 63),
    st.integers(1, 255),
    st.one_of(st.none(), st.integers(0, 0xFFFF)),
)
def test_any_tampered_answer_never_yields_other_data(
    index: int, position: int, mask: int, sw: int | None
) -> None:
    # One answer of the D5 identity read changed (one byte XORed, or the status word replaced):
    # the session returns the true UID and record, or raises a typed error.
    def tamper(i: int, apdu: bytes, data: bytes, real_sw: int) -> tuple[bytes, int]:
        if i != index:
            return data, real_sw
        if sw is not None:
            return data, sw
        if not data:
            return b"\x00", real_sw
        changed = bytearray(data)
        changed[position % len(data)] ^= mask
        return bytes(changed), real_sw

    connection = Middle(badge())
    connection.tamper = tamper
    session = DesfireSession(connection)
    try:
        session.select_application(AID)
        session.authenticate_ev2_first(1, APP_KEYS[1])
        uid = session.get_card_uid()
        session.authenticate_ev2_non_first(2, APP_KEYS[2])
        record = session.read_data(1, mode=CommMode.FULL)
    except MieError:
        return
    except ValueError as e:  # a step refused, nothing sent, after a channel was dropped
        assert "session" in str(e), e
        return
    assert (uid, record) == (UID, RECORD)


def test_no_key_rnd_or_session_key_in_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    rnd_a = [bytes([0xA0 + i]) * 16 for i in range(2)]
    connection = Middle(badge())
    session = DesfireSession(connection, rng=lambda n: rnd_a.pop(0))
    secrets: list[bytes] = [*APP_KEYS, *rnd_a]
    with caplog.at_level(logging.DEBUG, logger="mie"):
        session.get_version()
        session.select_application(AID)
        session.authenticate_ev2_first(1, APP_KEYS[1])
        channel = session.protocol.channel
        assert isinstance(channel, Ev2Channel)
        secrets += [bytes(channel._enc or b""), bytes(channel._mac or b"")]
        session.get_card_uid()
        session.authenticate_ev2_non_first(2, APP_KEYS[2])
        session.read_data(1, mode=CommMode.FULL)
    text = caplog.text.lower() + " ".join(str(r.args) for r in caplog.records).lower()
    assert any(r.name == "mie.desfire.session" for r in caplog.records)
    for secret in secrets:
        assert secret.hex() not in text
    assert RECORD.hex() not in text


def test_the_reader_uid_of_the_emulated_badge_and_a_session_kept() -> None:
    card = badge()
    session, _ = identity_session(card)
    anticollision = session.reader_uid()
    assert len(anticollision) == 4 and anticollision[0] == 0x08
    assert session.auth is not None
    assert session.read_data(1, 0, 4, mode=CommMode.FULL) == RECORD[:4]
    assert DesfireSession(Middle(badge(random_uid=False))).reader_uid() == UID


# --- vectors/desfire-ev3-auth.json ---------------------------------------------------------------


def test_the_vector_recorder_makes_a_replayable_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The committed vector's recorder, run again: the same commands as the committed file (a
    # change in the session's exchanges shows here first: record the vector again), its nonce in
    # random, and it replays through mie replay with the configuration it names.
    from mie._cli.__main__ import run
    from mie.transport.replay import load_vector
    from tests.desfire.vector_badge import VECTOR, record_vector

    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.delenv("MIE_BADGE_CONFIG", raising=False)
    out, setup = tmp_path / "v.json", tmp_path / "badge"
    record_vector(out, setup)
    capsys.readouterr()
    recorded, committed = load_vector(out), load_vector(VECTOR)
    assert [e.command for e in recorded.exchanges] == [e.command for e in committed.exchanges]
    assert recorded.random == committed.random and set(recorded.random) == {"nonce"}
    assert (recorded.source, recorded.kind, recorded.command) == (
        "emulator",
        "desfire-ev3",
        ["auth", "--json"],
    )
    assert "not a real-card trace" in committed.description
    config = str(setup / "badge.json")
    for vector in (out, VECTOR):
        assert run(["replay", str(vector), "--", "auth", "--badge-config", config, "--json"]) == 0
        printed = capsys.readouterr()
        assert '"valid": true' in printed.out and '"id_nat": "810001234565"' in printed.out
        # The identity read (12 APDUs, Read_Sig's protected answer in 2 frames) and, before it,
        # the authenticator's probe of the badge.
        assert "Replayed 13 exchanges" in printed.err
    # Without the configuration the replay is bad usage, not a result.
    assert run(["replay", str(VECTOR)]) == 2
