"""The secure-channel lifecycle of SmartCardProtocol, byte-exact through the toy MAC channel."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections.abc import Iterator

import pytest

from mie.core.apdu import CommandApdu
from mie.core.channel import CommMode, ExchangeContext, SecureChannel
from mie.core.connection import Transport
from mie.core.errors import ApduError, CardRemovedError, SecureMessagingError
from mie.core.processors import SmartCardProtocol
from mie.emulation.base import EmulatedConnection
from mie.emulation.iso7816 import DEMO_AID, Iso7816Card, demo_card
from tests.unit.fakes import ScriptedConnection, ScriptFactory, h
from tests.unit.toy_channel import (
    ToyCardChannel,
    ToyMacChannel,
    ToyNativeChannel,
    af_chaining,
    card_cryptogram,
    install_toy_handshake,
    open_toy_channel,
    session_key,
)

OK = 0x9000
KEY = h("00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F")
RND_A = h("A0") * 16
RND_B = h("B0") * 16
# Known answers of HMAC-SHA256 for KEY, RND_A and RND_B (computed once with Python's hmac).
CRYPTOGRAM = h("8E 09 75 F0 6B F9 78 C8")
KS = h("B7 58 B6 AC 40 39 20 75 F6 5E D3 A9 65 CF F0 7F")
HANDSHAKE = (h("80 F0 00 00 10") + RND_A + h("18"), RND_B + CRYPTOGRAM, OK)
SERIAL = b"MIE0000001"
READ_SERIAL = CommandApdu(0, 0xB0, 0x81, 0, le=10)
PIN_BLOCK = h("34 38 32 36 FF FF FF FF")


def mac(counter: int, *parts: bytes) -> bytes:
    """The toy MAC, written out again here so the tests do not trust the code under test."""
    message = counter.to_bytes(2, "big") + b"".join(parts)
    return hmac.new(KS, message, hashlib.sha256).digest()[:8]


def channel_on(
    scripted: ScriptFactory, script: list[tuple[bytes, bytes, int]], **settings: object
) -> tuple[SmartCardProtocol, ToyMacChannel, ScriptedConnection]:
    connection = scripted([HANDSHAKE, *script])
    protocol = SmartCardProtocol(connection, **settings)  # type: ignore[arg-type]
    return protocol, open_toy_channel(protocol, KEY, RND_A), connection


def test_the_known_answers_of_the_handshake() -> None:
    assert card_cryptogram(KEY, RND_A, RND_B) == CRYPTOGRAM
    assert session_key(KEY, RND_A, RND_B) == KS


def test_the_handshake_runs_on_the_plain_stack_then_the_channel_is_installed(
    scripted: ScriptFactory,
) -> None:
    protocol, channel, connection = channel_on(scripted, [])
    assert protocol.channel is channel
    assert connection.sent == [HANDSHAKE[0]]
    assert channel.counter == 0
    assert channel.contexts == []


def test_a_wrong_card_cryptogram_installs_no_channel(scripted: ScriptFactory) -> None:
    wrong = bytes([CRYPTOGRAM[0] ^ 1]) + CRYPTOGRAM[1:]
    protocol = SmartCardProtocol(scripted([(HANDSHAKE[0], RND_B + wrong, OK)]))
    with pytest.raises(SecureMessagingError, match="cryptogram"):
        open_toy_channel(protocol, KEY, RND_A)
    assert protocol.channel is None


def test_a_maced_command_and_its_response_byte_exact(scripted: ScriptFactory) -> None:
    header = h("00 B0 81 00")
    protocol, channel, _ = channel_on(
        scripted,
        [(h("04 B0 81 00 08") + mac(0, header) + h("0A"), SERIAL + mac(0, h("90 00"), SERIAL), OK)],
    )
    assert protocol.transmit(READ_SERIAL, mode=CommMode.MAC) == (SERIAL, OK)
    assert channel.counter == 1
    assert channel.contexts == [ExchangeContext(header, b"", 10, CommMode.MAC, CommMode.MAC)]


def test_a_plain_command_goes_through_the_channel_and_advances_the_counter(
    scripted: ScriptFactory,
) -> None:
    header = h("00 B0 81 00")
    protocol, channel, _ = channel_on(
        scripted,
        [
            (h("00 B0 81 00 0A"), SERIAL, OK),
            (
                h("04 B0 81 00 08") + mac(1, header) + h("0A"),
                SERIAL + mac(1, h("90 00"), SERIAL),
                OK,
            ),
        ],
    )
    assert protocol.send_apdu(0, 0xB0, 0x81, 0, le=10) == SERIAL
    assert channel.counter == 1
    assert protocol.send_apdu(0, 0xB0, 0x81, 0, le=10, mode=CommMode.MAC) == SERIAL
    assert channel.counter == 2
    assert [c.command_mode for c in channel.contexts] == [CommMode.PLAIN, CommMode.MAC]


def test_300_bytes_are_maced_once_then_chained(scripted: ScriptFactory) -> None:
    data = bytes((i * 11) & 0xFF for i in range(300))
    protected = data + mac(0, h("00 DA 01 02"), data)
    protocol, channel, _ = channel_on(
        scripted,
        [
            (h("14 DA 01 02 FF") + protected[:255], b"", OK),
            (
                h("04 DA 01 02 35") + protected[255:] + h("00"),
                b"OK" + mac(0, h("90 00"), b"OK"),
                OK,
            ),
        ],
    )
    command = CommandApdu(0, 0xDA, 1, 2, data, 256)
    assert protocol.transmit(command, mode=CommMode.MAC) == (b"OK", OK)
    assert len(channel.contexts) == 1
    assert channel.contexts[0].data == data


def test_a_maced_response_fetched_through_61xx_is_unwrapped_whole(
    scripted: ScriptFactory,
) -> None:
    response = SERIAL + mac(0, h("90 00"), SERIAL)
    protocol, _, _ = channel_on(
        scripted,
        [
            (h("04 B0 81 00 08") + mac(0, h("00 B0 81 00")) + h("0A"), response[:10], 0x6108),
            (h("00 C0 00 00 08"), response[10:], OK),
        ],
    )
    assert protocol.transmit(READ_SERIAL, mode=CommMode.MAC) == (SERIAL, OK)


def test_the_context_splits_the_command_header_from_the_data(scripted: ScriptFactory) -> None:
    body = h("AA BB")
    sent = h("01 02 03") + body
    protocol, channel, _ = channel_on(
        scripted,
        [
            (
                h("04 3D 00 00 0D") + sent + mac(0, h("00 3D 00 00 01 02 03"), body),
                mac(0, h("90 00")),
                OK,
            )
        ],
    )
    protocol.transmit(CommandApdu(0, 0x3D, 0, 0, sent), header_length=3, mode=CommMode.MAC)
    assert channel.contexts == [
        ExchangeContext(h("00 3D 00 00 01 02 03"), body, None, CommMode.MAC, CommMode.MAC)
    ]


class Recording(SecureChannel):
    """A channel that changes nothing and keeps what it is told."""

    def __init__(self) -> None:
        self.contexts: list[ExchangeContext] = []
        self.unwrapped: list[tuple[bytes, int]] = []
        self.drops = 0

    def wrap(self, apdu: CommandApdu, context: ExchangeContext) -> CommandApdu:
        self.contexts.append(context)
        return apdu

    def unwrap(self, data: bytes, sw: int, context: ExchangeContext) -> tuple[bytes, int]:
        self.unwrapped.append((data, sw))
        return data, sw

    def dropped(self) -> None:
        self.drops += 1


def test_the_context_carries_both_modes_and_le(scripted: ScriptFactory) -> None:
    protocol = SmartCardProtocol(scripted([(h("00 B0 00 00 04 01 02 03 04 10"), b"x", OK)]))
    channel = Recording()
    protocol.install_channel(channel)
    command = CommandApdu(0, 0xB0, 0, 0, h("01 02 03 04"), 16)
    protocol.transmit(command, header_length=4, mode=CommMode.FULL, response_mode=CommMode.MAC)
    assert channel.contexts == [
        ExchangeContext(h("00 B0 00 00 01 02 03 04"), b"", 16, CommMode.FULL, CommMode.MAC)
    ]
    assert channel.unwrapped == [(b"x", OK)]


@pytest.mark.parametrize("header_length", [-1, 5])
def test_a_header_longer_than_the_data_raises_before_sending(
    scripted: ScriptFactory, header_length: int
) -> None:
    protocol = SmartCardProtocol(scripted([]))
    with pytest.raises(ValueError, match="header_length"):
        protocol.transmit(CommandApdu(0, 0xB0, 0, 0, h("01 02 03 04")), header_length=header_length)


@pytest.mark.parametrize("cla", [0x00, 0x01])
def test_select_drops_the_channel_before_it_is_sent(scripted: ScriptFactory, cla: int) -> None:
    select = bytes([cla]) + h("A4 04 0C 08") + DEMO_AID
    protocol, channel, connection = channel_on(scripted, [(select, b"", OK)])
    protocol.select(DEMO_AID, p2=0x0C, cla=cla)
    assert protocol.channel is None
    assert channel.is_dropped
    assert channel.contexts == []
    with pytest.raises(SecureMessagingError, match="nothing was sent"):
        protocol.transmit(READ_SERIAL, mode=CommMode.MAC)
    assert len(connection.sent) == 2


def test_a_proprietary_a4_is_no_select(scripted: ScriptFactory) -> None:
    protocol, channel, _ = channel_on(scripted, [(h("90 A4 00 00 00"), b"", OK)])
    protocol.transmit(CommandApdu(0x90, 0xA4, 0, 0, le=256))
    assert protocol.channel is channel
    assert channel.counter == 1


@pytest.mark.parametrize("sw", [0x6982, 0x6A82, 0x63C2, 0x9100])
def test_a_status_word_outside_success_drops_the_channel(scripted: ScriptFactory, sw: int) -> None:
    protocol, channel, _ = channel_on(
        scripted, [(h("04 B0 81 00 08") + mac(0, h("00 B0 81 00")) + h("0A"), b"", sw)]
    )
    assert protocol.transmit(READ_SERIAL, mode=CommMode.MAC) == (b"", sw)
    assert protocol.channel is None
    assert channel.is_dropped


def test_send_apdu_raises_on_the_error_and_the_channel_is_gone(scripted: ScriptFactory) -> None:
    protocol, _, _ = channel_on(scripted, [(h("00 B0 81 00 0A"), b"", 0x6982)])
    with pytest.raises(ApduError) as raised:
        protocol.send_apdu(0, 0xB0, 0x81, 0, le=10)
    assert raised.value.sw == 0x6982
    assert protocol.channel is None


def test_a_status_word_in_the_success_set_keeps_the_channel(scripted: ScriptFactory) -> None:
    protocol, channel, _ = channel_on(
        scripted,
        [(h("04 B0 81 00 08") + mac(0, h("00 B0 81 00")) + h("0A"), mac(0, h("91 00")), 0x9100)],
        success=frozenset({0x9000, 0x9100}),
    )
    assert protocol.send_apdu(0, 0xB0, 0x81, 0, le=10, mode=CommMode.MAC) == b""
    assert protocol.channel is channel


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(SERIAL + bytes(8), id="wrong MAC"),
        pytest.param(SERIAL[:-1] + b"X" + mac(0, h("90 00"), SERIAL), id="data changed"),
        pytest.param(h("01 02 03"), id="too short"),
    ],
)
def test_a_response_that_does_not_verify_raises_and_drops_the_channel(
    scripted: ScriptFactory, response: bytes
) -> None:
    protocol, channel, connection = channel_on(
        scripted, [(h("04 B0 81 00 08") + mac(0, h("00 B0 81 00")) + h("0A"), response, OK)]
    )
    with pytest.raises(SecureMessagingError):
        protocol.transmit(READ_SERIAL, mode=CommMode.MAC)
    assert protocol.channel is None
    assert channel.is_dropped
    with pytest.raises(SecureMessagingError):
        protocol.transmit(READ_SERIAL, mode=CommMode.MAC)
    assert len(connection.sent) == 2


class RemovedAfter(ScriptedConnection):
    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        if self.position == len(self.script):
            raise CardRemovedError("Card removed")
        return super().send_and_receive(apdu)


def test_a_transport_failure_inside_an_exchange_drops_the_channel() -> None:
    protocol = SmartCardProtocol(RemovedAfter([HANDSHAKE]))
    channel = open_toy_channel(protocol, KEY, RND_A)
    with pytest.raises(CardRemovedError):
        protocol.transmit(READ_SERIAL, mode=CommMode.MAC)
    assert protocol.channel is None
    assert channel.is_dropped


def test_a_mode_the_channel_cannot_do_raises_and_drops_it(scripted: ScriptFactory) -> None:
    protocol, channel, _ = channel_on(scripted, [])
    with pytest.raises(ValueError, match="encryption"):
        protocol.transmit(READ_SERIAL, mode=CommMode.FULL)
    assert channel.is_dropped


@pytest.mark.parametrize("mode", [CommMode.MAC, CommMode.FULL])
def test_a_protected_mode_without_a_channel_sends_nothing(
    scripted: ScriptFactory, mode: CommMode
) -> None:
    protocol = SmartCardProtocol(scripted([]))
    with pytest.raises(SecureMessagingError, match="No secure channel"):
        protocol.transmit(READ_SERIAL, mode=mode)
    with pytest.raises(SecureMessagingError, match="No secure channel"):
        protocol.send_apdu(0, 0xB0, 0x81, 0, le=10, response_mode=mode)


def test_a_new_handshake_drops_the_old_channel_and_runs_plain(scripted: ScriptFactory) -> None:
    other_a = h("A1") * 16
    second = (
        h("80 F0 00 00 10") + other_a + h("18"),
        RND_B + card_cryptogram(KEY, other_a, RND_B),
        OK,
    )
    protocol, first, connection = channel_on(scripted, [second])
    channel = open_toy_channel(protocol, KEY, other_a)
    assert first.is_dropped
    assert first.contexts == []
    assert protocol.channel is channel
    assert connection.sent[-1] == second[0]


def test_installing_a_channel_drops_the_one_before(scripted: ScriptFactory) -> None:
    protocol = SmartCardProtocol(scripted([]))
    old, new = Recording(), Recording()
    protocol.install_channel(old)
    protocol.install_channel(old)
    assert old.drops == 0
    protocol.install_channel(new)
    assert (old.drops, new.drops, protocol.channel) == (1, 0, new)
    protocol.drop_channel()
    protocol.drop_channel()
    assert (new.drops, protocol.channel) == (1, None)


def test_configure_keeps_the_channel(scripted: ScriptFactory) -> None:
    protocol, channel, _ = channel_on(scripted, [])
    protocol.configure(max_command_data=16)
    assert protocol.channel is channel


# Against the emulator: the card side of the toy channel on the demo card.


def toy_card(t0: bool) -> Iso7816Card:
    card = demo_card(pin="4826", holder="Dr Test")
    card.t0 = t0
    install_toy_handshake(card, KEY, rnd_b=lambda: RND_B)
    card.handlers[0xDA] = lambda apdu: (apdu.data[::-1], OK)
    return card


@pytest.mark.parametrize("t0", [True, False], ids=["T=0", "T=1"])
def test_round_trip_against_the_emulated_card(t0: bool) -> None:
    card = toy_card(t0)
    protocol = SmartCardProtocol(EmulatedConnection(card, Transport.CONTACT), t0=t0)
    protocol.select(DEMO_AID, p2=0x0C)
    channel = open_toy_channel(protocol, KEY, RND_A)
    assert isinstance(card.secure_channel, ToyCardChannel)
    assert card.secure_channel.ks == KS
    assert protocol.send_apdu(0, 0xB0, 0x81, 0, le=10, mode=CommMode.MAC) == SERIAL
    assert protocol.send_apdu(0, 0xB0, 0x81, 0, le=10) == SERIAL
    protocol.send_apdu(0, 0x20, 0, 1, PIN_BLOCK, mode=CommMode.MAC)
    assert card.pin_verified
    assert protocol.send_apdu(0, 0xB0, 0x83, 0, le=7, mode=CommMode.MAC) == b"Dr Test"
    data = bytes(range(256)) + bytes(44)
    assert protocol.send_apdu(0, 0xDA, 0, 0, data, 256, mode=CommMode.MAC) == data[::-1]
    assert channel.counter == card.secure_channel.counter == 5
    # A wrong PIN: 63C2 closes the channel at both ends.
    _, sw = protocol.transmit(CommandApdu(0, 0x20, 0, 1, bytes(8)), mode=CommMode.MAC)
    assert sw == 0x63C2
    assert protocol.channel is None
    assert card.secure_channel is None


def test_the_emulated_card_refuses_a_tampered_command_and_closes_its_channel() -> None:
    card = toy_card(t0=True)
    protocol = SmartCardProtocol(EmulatedConnection(card), t0=True)
    open_toy_channel(protocol, KEY, RND_A)
    tampered = h("04 20 00 01 10") + PIN_BLOCK + bytes(8)
    assert card.process(tampered) == h("69 88")
    assert card.secure_channel is None
    assert not card.pin_verified
    assert card.tries_left == 3


def test_the_emulated_card_closes_its_channel_on_select_and_reset() -> None:
    card = toy_card(t0=True)
    protocol = SmartCardProtocol(EmulatedConnection(card), t0=True)
    open_toy_channel(protocol, KEY, RND_A)
    protocol.select(DEMO_AID, p2=0x0C)
    assert card.secure_channel is None
    open_toy_channel(protocol, KEY, RND_A)
    card.reset()
    assert card.secure_channel is None


def test_a_maced_command_the_card_has_no_channel_for_is_not_run() -> None:
    card = toy_card(t0=True)
    protocol = SmartCardProtocol(EmulatedConnection(card), t0=True)
    open_toy_channel(protocol, KEY, RND_A)
    card.reset()
    _, sw = protocol.transmit(CommandApdu(0, 0x20, 0, 1, PIN_BLOCK), mode=CommMode.MAC)
    assert sw == 0x6882
    assert (card.pin_verified, card.tries_left) == (False, 3)
    assert protocol.channel is None


def test_the_emulated_card_refuses_a_bad_handshake() -> None:
    card = toy_card(t0=True)
    assert card.process(h("80 F0 00 00 04 01 02 03 04 18")) == h("67 00")
    assert card.process(h("80 F0 01 00 10") + RND_A + h("18")) == h("6A 86")
    assert card.secure_channel is None
    assert card.process(h("80 F1 00 00 00")) == h("6D 00")


# DESFire EV2's shape: ISO-wrapped native commands, AF frames both ways, success 9100, the
# command MAC over Cmd || CmdCtr || TI || CmdHeader || CmdData before framing, the response MAC
# over RC || CmdCtr+1 || TI || RespData after collecting (HMAC-SHA256 for AES-CMAC).

TI = h("9D 00 C4 DF")
NATIVE_SUCCESS = frozenset({0x9000, 0x9100})


def native_mac(*parts: bytes) -> bytes:
    """The EV2-shaped MAC, written out again here."""
    return hmac.new(KS, b"".join(parts), hashlib.sha256).digest()[:8]


def le2(counter: int) -> bytes:
    return counter.to_bytes(2, "little")


def native_on(
    scripted: ScriptFactory, script: list[tuple[bytes, bytes, int]]
) -> tuple[SmartCardProtocol, ToyNativeChannel, ScriptedConnection]:
    connection = scripted(script)
    protocol = SmartCardProtocol(connection, layers=(af_chaining(16),), success=NATIVE_SUCCESS)
    channel = ToyNativeChannel(KS, TI)
    protocol.install_channel(channel)
    return protocol, channel, connection


WRITE_HEADER = h("01 000000 1E0000")  # WriteData: FileNo, offset, length (3 bytes LE each)
WRITE_DATA = bytes(range(0x30, 0x4E))  # 30 bytes


def test_a_native_command_is_maced_whole_then_cut_into_af_frames(scripted: ScriptFactory) -> None:
    protected = (
        WRITE_HEADER + WRITE_DATA + native_mac(h("3D"), le2(0), TI, WRITE_HEADER, WRITE_DATA)
    )
    assert len(protected) == 45
    protocol, channel, _ = native_on(
        scripted,
        [
            (h("90 3D 00 00 10") + protected[:16] + h("00"), b"", 0x91AF),
            (h("90 AF 00 00 10") + protected[16:32] + h("00"), b"", 0x91AF),
            (
                h("90 AF 00 00 0D") + protected[32:] + h("00"),
                native_mac(h("00"), le2(1), TI),
                0x9100,
            ),
        ],
    )
    command = CommandApdu(0x90, 0x3D, 0, 0, WRITE_HEADER + WRITE_DATA, 256)
    assert protocol.transmit(command, header_length=7, mode=CommMode.MAC) == (b"", 0x9100)
    (context,) = channel.contexts
    assert (context.ins, context.command_header, context.data) == (0x3D, WRITE_HEADER, WRITE_DATA)
    assert channel.counter == 1
    assert protocol.channel is channel


READ_HEADER = h("01 000000 200000")  # ReadData: 32 bytes of file 1
FILE = bytes(range(0xA0, 0xC0))


def test_a_chained_response_is_checked_whole_with_the_final_status(scripted: ScriptFactory) -> None:
    answer = FILE + native_mac(h("00"), le2(1), TI, FILE)
    read = h("90 BD 00 00 0F") + READ_HEADER + native_mac(h("BD"), le2(0), TI, READ_HEADER)
    protocol, channel, _ = native_on(
        scripted,
        [
            (read + h("00"), answer[:16], 0x91AF),
            (h("90 AF 00 00 00"), answer[16:32], 0x91AF),
            (h("90 AF 00 00 00"), answer[32:], 0x9100),
        ],
    )
    data = protocol.send_apdu(
        0x90, 0xBD, 0, 0, READ_HEADER, 256, header_length=7, mode=CommMode.MAC
    )
    assert data == FILE
    assert channel.counter == 1


def test_a_mac_over_the_last_frame_only_does_not_verify(scripted: ScriptFactory) -> None:
    per_frame = FILE + native_mac(h("00"), le2(1), TI, FILE[16:])
    read = h("90 BD 00 00 0F") + READ_HEADER + native_mac(h("BD"), le2(0), TI, READ_HEADER)
    protocol, channel, _ = native_on(
        scripted,
        [(read + h("00"), per_frame[:16], 0x91AF), (h("90 AF 00 00 00"), per_frame[16:], 0x9100)],
    )
    with pytest.raises(SecureMessagingError, match="does not verify"):
        protocol.transmit(
            CommandApdu(0x90, 0xBD, 0, 0, READ_HEADER, 256), header_length=7, mode=CommMode.MAC
        )
    assert protocol.channel is None
    assert channel.is_dropped


def test_a_plain_native_command_moves_the_counter_of_the_next_mac(scripted: ScriptFactory) -> None:
    key_version = native_mac(h("00"), le2(2), TI, h("10"))
    protocol, channel, _ = native_on(
        scripted,
        [
            (h("90 60 00 00 00"), h("04 01 01"), 0x91AF),
            (h("90 AF 00 00 00"), h("04 01 02"), 0x9100),
            (
                h("90 64 00 00 09 00") + native_mac(h("64"), le2(1), TI, h("00")) + h("00"),
                h("10") + key_version,
                0x9100,
            ),
        ],
    )
    assert protocol.send_apdu(0x90, 0x60, 0, 0, le=256) == h("04 01 01 04 01 02")
    assert channel.counter == 1
    version = protocol.send_apdu(0x90, 0x64, 0, 0, h("00"), 256, header_length=1, mode=CommMode.MAC)
    assert version == h("10")
    assert channel.counter == 2


def test_a_native_error_status_drops_the_channel(scripted: ScriptFactory) -> None:
    read = h("90 BD 00 00 0F") + READ_HEADER + native_mac(h("BD"), le2(0), TI, READ_HEADER)
    protocol, channel, connection = native_on(scripted, [(read + h("00"), b"", 0x91AE)])
    with pytest.raises(ApduError) as raised:
        protocol.send_apdu(0x90, 0xBD, 0, 0, READ_HEADER, 256, header_length=7, mode=CommMode.MAC)
    assert raised.value.sw == 0x91AE
    assert (protocol.channel, channel.is_dropped) == (None, True)
    with pytest.raises(SecureMessagingError, match="nothing was sent"):
        protocol.transmit(CommandApdu(0x90, 0xBD, 0, 0, READ_HEADER, 256), mode=CommMode.MAC)
    assert len(connection.sent) == 1


def test_select_application_drops_the_channel_before_it_is_sent(scripted: ScriptFactory) -> None:
    protocol, channel, connection = native_on(
        scripted, [(h("90 5A 00 00 03 01 00 00 00"), b"", 0x9100)]
    )
    assert protocol.send_apdu(0x90, 0x5A, 0, 0, h("01 00 00"), 256) == b""
    assert (protocol.channel, channel.is_dropped, channel.contexts) == (None, True, [])
    assert connection.remaining == 0


class Refusing(Recording):
    def drops_before(self, apdu: CommandApdu) -> bool:
        raise ValueError("no opinion")


def test_a_channel_whose_drop_rule_raises_is_dropped_and_nothing_is_sent(
    scripted: ScriptFactory,
) -> None:
    connection = scripted([])
    protocol = SmartCardProtocol(connection)
    channel = Refusing()
    protocol.install_channel(channel)
    with pytest.raises(ValueError, match="no opinion"):
        protocol.transmit(READ_SERIAL)
    assert (protocol.channel, channel.drops, connection.sent) == (None, 1, [])


@pytest.mark.parametrize("t0", [True, False], ids=["T=0", "T=1"])
def test_the_emulated_card_keeps_its_channel_on_a_status_word_it_counts_as_success(
    t0: bool,
) -> None:
    card = toy_card(t0)
    card.handlers[0xDB] = lambda apdu: (b"done", 0x9100)
    card.channel_success = frozenset({OK, 0x9100})
    protocol = SmartCardProtocol(EmulatedConnection(card), t0=t0, success=NATIVE_SUCCESS)
    channel = open_toy_channel(protocol, KEY, RND_A)
    assert protocol.transmit(CommandApdu(0, 0xDB, 0, 0, le=256), mode=CommMode.MAC) == (
        b"done",
        0x9100,
    )
    assert (protocol.channel, card.secure_channel is not None) == (channel, True)
    assert channel.counter == 1


def test_by_default_the_emulated_card_closes_its_channel_on_9100() -> None:
    card = toy_card(t0=False)
    card.handlers[0xDB] = lambda apdu: (b"done", 0x9100)
    protocol = SmartCardProtocol(EmulatedConnection(card))
    open_toy_channel(protocol, KEY, RND_A)
    assert protocol.transmit(CommandApdu(0, 0xDB, 0, 0, le=256), mode=CommMode.MAC) == (
        b"done",
        0x9100,
    )
    assert (protocol.channel, card.secure_channel) == (None, None)


class Unwrapping(Recording):
    """Finds the card's real status word inside the protected response (ISO SM's DO 99)."""

    def unwrap(self, data: bytes, sw: int, context: ExchangeContext) -> tuple[bytes, int]:
        return b"", 0x6982


def test_a_status_word_found_inside_the_protected_response_drops_the_channel(
    scripted: ScriptFactory,
) -> None:
    protocol = SmartCardProtocol(scripted([(h("00 B0 81 00 0A"), h("99 02 69 82"), OK)]))
    channel = Unwrapping()
    protocol.install_channel(channel)
    with pytest.raises(ApduError) as raised:
        protocol.send_apdu(0, 0xB0, 0x81, 0, le=10)
    assert raised.value.sw == 0x6982
    assert (protocol.channel, channel.drops) == (None, 1)


class Holding(ScriptedConnection):
    def __init__(self) -> None:
        super().__init__([])
        self.held: list[str] = []

    @contextlib.contextmanager
    def transaction(self, reset: bool = False) -> Iterator[None]:
        self.held.append(f"begin reset={reset}")
        yield
        self.held.append("end")


def test_a_channel_ends_with_the_outermost_transaction() -> None:
    connection = Holding()
    protocol = SmartCardProtocol(connection)
    channel = Recording()
    with protocol.transaction(reset=True):
        protocol.install_channel(channel)
        with protocol.transaction():
            pass
        assert (protocol.channel, channel.drops) == (channel, 0)
    assert (protocol.channel, channel.drops) == (None, 1)
    assert connection.held == ["begin reset=True", "begin reset=False", "end", "end"]
    with pytest.raises(KeyError), protocol.transaction():
        protocol.install_channel(channel)
        raise KeyError("x")
    assert (protocol.channel, channel.drops) == (None, 2)


def test_a_round_trip_in_a_transaction_that_resets_the_emulated_card() -> None:
    card = toy_card(t0=False)
    protocol = SmartCardProtocol(EmulatedConnection(card))
    with protocol.transaction(reset=True):
        protocol.select(DEMO_AID, p2=0x0C)
        channel = open_toy_channel(protocol, KEY, RND_A)
        assert protocol.send_apdu(0, 0xB0, 0x81, 0, le=10, mode=CommMode.MAC) == SERIAL
    assert (protocol.channel, card.secure_channel, channel.is_dropped) == (None, None, True)
