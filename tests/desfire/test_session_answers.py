"""Whatever a badge (or a relay, or a replay file) answers, DesfireSession raises a typed MieError
or returns checked data: never another exception (the property the fuzz targets check too)."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from mie.core.apdu import CommandApdu
from mie.core.channel import CommMode, ExchangeContext
from mie.core.connection import SmartCardConnection, Transport
from mie.core.errors import MieError, SecureMessagingError
from mie.desfire.channel import Ev1Channel, Ev2Channel
from mie.desfire.session import DesfireSession
from mie.desfire.types import FileSettings, KeySettings, Version

SW = st.one_of(
    st.sampled_from([0x9100, 0x91AF, 0x91AE, 0x919D, 0x9190, 0x9000, 0x6A82]),
    st.integers(0, 0xFFFF),
)
ANSWER = st.tuples(st.binary(max_size=80), SW)


class Answers(SmartCardConnection):
    """Serves drawn answers to whatever is sent, then 91AE."""

    def __init__(self, answers: list[tuple[bytes, int]]) -> None:
        self.answers = list(answers)

    @property
    def transport(self) -> Transport:
        return Transport.CONTACTLESS

    @property
    def atr(self) -> bytes | None:
        return None

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        return self.answers.pop(0) if self.answers else (b"", 0x91AE)


def _calls(session: DesfireSession) -> list[Callable[[], object]]:
    key = bytes(16)
    return [
        session.get_version,
        lambda: session.read_signature(),
        lambda: session.select_application(b"\x49\x4d\xf0"),
        lambda: session.authenticate_ev2_first(1, key),
        session.get_card_uid,
        lambda: session.authenticate_ev2_non_first(2, key),
        lambda: session.read_data(1, mode=CommMode.FULL),
        lambda: session.get_file_settings(1),
        lambda: session.authenticate_aes(0, key),
        lambda: session.read_data(1, 0, 16, mode=CommMode.MAC),
        lambda: session.write_data(1, b"x" * 70, mode=CommMode.FULL),
        session.get_key_settings,
        session.get_application_ids,
    ]


@settings(max_examples=300, deadline=None)
@given(st.lists(ANSWER, max_size=40), st.binary(min_size=16, max_size=16))
def test_any_answers_raise_only_typed_errors(answers: list[tuple[bytes, int]], rnd: bytes) -> None:
    session = DesfireSession(Answers(answers), rng=lambda n: rnd[:n])
    for call in _calls(session):
        try:
            call()
        except MieError:
            pass
        except ValueError as e:  # only the "needs a session" refusals, raised before sending
            assert "session" in str(e) or "before authenticating" in str(e), e


CONTEXTS = [
    ExchangeContext.of(CommandApdu(0x90, 0xBD, 0, 0, bytes(7)), 7, CommMode.MAC, mode)
    for mode in (CommMode.PLAIN, CommMode.MAC, CommMode.FULL)
]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(CONTEXTS), st.booleans())
def test_a_channel_unwraps_any_bytes_or_raises_secure_messaging(
    data: bytes, context: ExchangeContext, ev2: bool
) -> None:
    channel = Ev2Channel(bytes(16), bytes(16), bytes(4)) if ev2 else Ev1Channel(bytes(16))
    try:
        out, sw = channel.unwrap(data, 0x9100, context)
    except SecureMessagingError:
        return
    assert sw == 0x9100 and len(out) <= len(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=70))
def test_the_answer_parsers_raise_only_typed_errors(data: bytes) -> None:
    for parse in (Version.parse, FileSettings.parse, KeySettings.parse):
        try:
            parse(data)
        except MieError:
            pass
