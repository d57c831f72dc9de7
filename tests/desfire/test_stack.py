"""The DESFire stack recipe on scripted bytes: native wrapping, AF chaining both ways, the
authentication pass-through and the bounds (reference desfire.md §6)."""

from __future__ import annotations

import pytest

from mie.core.apdu import CommandApdu
from mie.core.errors import ApduFormatError, BadResponseError
from mie.core.processors import SmartCardProtocol
from mie.desfire.errors import DesfireStatusError
from mie.desfire.stack import (
    DESFIRE_LAYERS,
    DESFIRE_SUCCESS,
    MAX_FRAMES,
    AfChainingProcessor,
    native_wrapping,
)
from tests.desfire.ev2_ref import MORE, OK, new_session, wrapped
from tests.unit.fakes import ScriptedConnection, h

# A real EV1 8K badge's GetVersion (desfire.md §6, ELM).
EV1_FRAMES = [h("04010101001A05"), h("04010101041A05"), h("04063F72633480BA4519E3204913")]


def protocol(connection: ScriptedConnection) -> SmartCardProtocol:
    return SmartCardProtocol(connection, layers=DESFIRE_LAYERS, success=DESFIRE_SUCCESS)


def test_get_version_is_one_command_of_three_frames() -> None:
    session, connection = new_session(
        [
            (h("9060000000"), EV1_FRAMES[0], MORE),
            (h("90AF000000"), EV1_FRAMES[1], MORE),
            (h("90AF000000"), EV1_FRAMES[2], OK),
        ]
    )
    version = session.get_version()
    assert connection.remaining == 0
    assert version.product == "EV1"
    assert (version.hw.vendor, version.hw.type, version.hw.major) == (0x04, 0x01, 0x01)
    assert version.sw.minor == 0x04
    assert version.uid == h("04063F72633480")
    assert version.batch == h("BA4519E320")
    assert (version.week, version.year) == (0x49, 0x13)
    assert version.storage_bytes == 8192


def test_a_random_uid_badge_shows_no_uid() -> None:
    frames = EV1_FRAMES[0] + EV1_FRAMES[1] + bytes(7) + h("BA4519E3204913")
    session, _ = new_session([(h("9060000000"), frames, OK)])
    assert session.get_version().uid is None


def test_get_version_too_short_is_malformed() -> None:
    session, _ = new_session([(h("9060000000"), bytes(27), OK)])
    with pytest.raises(BadResponseError):
        session.get_version()


def test_every_command_goes_with_le_00() -> None:
    session, connection = new_session([(h("905A00000349 4DF0 00"), b"", OK)])
    session.select_application(h("494DF0"))
    assert connection.sent == [h("905A000003494DF000")]
    assert session.aid == h("494DF0")


@pytest.mark.parametrize("sw", [0x9000, 0x6A82, 0x6700, 0x90AF])
def test_a_status_word_outside_91xx_is_malformed(sw: int) -> None:
    session, _ = new_session([(h("905A000003494DF000"), b"", sw)])
    with pytest.raises(BadResponseError, match="not a DESFire status"):
        session.select_application(h("494DF0"))


@pytest.mark.parametrize(
    "apdu",
    [
        CommandApdu(0x00, 0xA4, 0x04, 0x00, h("D2760000850100")),
        CommandApdu(0x90, 0x5A, 0x01, 0x00, h("494DF0")),
        CommandApdu(0x90, 0xAF, 0x00, 0x00, bytes(256)),
    ],
)
def test_the_wrapping_refuses_what_is_no_wrapped_frame(apdu: CommandApdu) -> None:
    connection = ScriptedConnection([])
    with pytest.raises(ApduFormatError):
        protocol(connection).transmit(apdu)
    assert connection.sent == []


def test_a_long_command_goes_in_54_byte_frames() -> None:
    data = bytes(range(256)) + bytes(31)  # 287 bytes: 5 frames of 54, then 17
    parts = [data[i : i + 54] for i in range(0, 287, 54)]
    assert [len(p) for p in parts] == [54, 54, 54, 54, 54, 17]
    script = [(wrapped(0x3D, parts[0]), b"", MORE)]
    script += [(wrapped(0xAF, p), b"", MORE) for p in parts[1:-1]]
    script += [(wrapped(0xAF, parts[-1]), b"", OK)]
    connection = ScriptedConnection(script)
    assert protocol(connection).transmit(CommandApdu(0x90, 0x3D, 0, 0, data)) == (b"", OK)
    assert connection.remaining == 0


def test_a_command_frame_answered_otherwise_ends_the_chain() -> None:
    data = bytes(100)
    connection = ScriptedConnection([(wrapped(0x3D, data[:54]), b"", 0x917E)])
    assert protocol(connection).transmit(CommandApdu(0x90, 0x3D, 0, 0, data)) == (b"", 0x917E)
    assert connection.remaining == 0


def test_response_frames_are_collected_whole() -> None:
    connection = ScriptedConnection(
        [
            (wrapped(0xBD, h("01000000000000")), b"A" * 59, MORE),
            (wrapped(0xAF), b"B" * 59, MORE),
            (wrapped(0xAF), b"C" * 3, OK),
        ]
    )
    data, sw = protocol(connection).transmit(CommandApdu(0x90, 0xBD, 0, 0, h("01000000000000")))
    assert (data, sw) == (b"A" * 59 + b"B" * 59 + b"CCC", OK)


@pytest.mark.parametrize("cmd", [0x71, 0x77, 0xAA, 0x1A, 0x0A, 0xAF])
def test_an_authentication_91af_is_handed_to_the_session(cmd: int) -> None:
    connection = ScriptedConnection([(wrapped(cmd, h("0000")), bytes(16), MORE)])
    assert protocol(connection).transmit(CommandApdu(0x90, cmd, 0, 0, h("0000"))) == (
        bytes(16),
        MORE,
    )
    assert connection.remaining == 0


def test_a_badge_answering_af_forever_is_malformed() -> None:
    script = [(wrapped(0x60), bytes(7), MORE)] + [(wrapped(0xAF), bytes(7), MORE)] * MAX_FRAMES
    session, connection = new_session(script)
    with pytest.raises(BadResponseError, match="kept answering AF"):
        session.get_version()
    assert len(connection.sent) == MAX_FRAMES


def test_more_than_64_kib_of_frames_is_malformed() -> None:
    # More frames allowed than 64 KiB needs: the size bound stops first (258 * 255 > 65536).
    script = [(wrapped(0x60), bytes(255), MORE)] + [(wrapped(0xAF), bytes(255), MORE)] * 257
    connection = ScriptedConnection(script)
    layers = (
        native_wrapping,
        lambda delegate, settings: AfChainingProcessor(delegate, max_frames=1000),
    )
    stack = SmartCardProtocol(connection, layers=layers, success=DESFIRE_SUCCESS)
    with pytest.raises(BadResponseError, match="kept answering AF"):
        stack.transmit(CommandApdu(0x90, 0x60, 0, 0))
    assert len(connection.sent) == 258


def test_an_error_status_is_typed_with_its_status() -> None:
    session, _ = new_session([(h("905A000003494DF000"), b"", 0x91A0)])
    with pytest.raises(DesfireStatusError) as caught:
        session.select_application(h("494DF0"))
    assert caught.value.status.name == "APPLICATION_NOT_FOUND"
    assert (caught.value.sw, caught.value.command) == (0x91A0, 0x5A)
    assert session.aid == bytes(3)


def test_an_unknown_status_reads_unknown() -> None:
    session, _ = new_session([(h("905A000003494DF000"), b"", 0x9142)])
    with pytest.raises(DesfireStatusError) as caught:
        session.select_application(h("494DF0"))
    assert caught.value.status.name == "UNKNOWN"
    assert caught.value.sw == 0x9142


def test_the_package_exports_load_on_demand() -> None:
    import mie.desfire

    for name in mie.desfire.__all__:
        assert getattr(mie.desfire, name).__name__ == name
    with pytest.raises(AttributeError, match="no attribute 'Ev0'"):
        _ = mie.desfire.Ev0


@pytest.mark.parametrize("uid", [h("08A1B2C3"), h("04958CAA5C5E80"), bytes(10)])
def test_the_reader_uid_comes_from_the_reader(uid: bytes) -> None:
    session, connection = new_session([(h("FFCA000000"), uid, 0x9000)])
    assert session.reader_uid() == uid
    assert connection.remaining == 0


@pytest.mark.parametrize(("data", "sw"), [(h("04958CAA5C5E80"), 0x6A81), (bytes(5), 0x9000)])
def test_a_reader_uid_answer_out_of_shape(data: bytes, sw: int) -> None:
    session, _ = new_session([(h("FFCA000000"), data, sw)])
    with pytest.raises(BadResponseError):
        session.reader_uid()


def test_detach_channel_removes_it_without_dropping_it() -> None:
    from mie.desfire.channel import Ev2Channel

    connection = ScriptedConnection([(wrapped(0x60), bytes(28), OK)])
    stack = protocol(connection)
    assert stack.detach_channel() is None
    channel = Ev2Channel(bytes(16), bytes(16), bytes(4), cmd_ctr=5)
    stack.install_channel(channel)
    assert stack.detach_channel() is channel
    assert stack.channel is None and not channel.is_dropped and channel.cmd_ctr == 5
    # Nothing protects the next command any more, and the detached channel does not count it.
    stack.transmit(CommandApdu(0x90, 0x60, 0, 0))
    assert channel.cmd_ctr == 5
