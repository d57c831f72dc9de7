from __future__ import annotations

import warnings

import pytest

from mie.core.apdu import CommandApdu
from mie.core.errors import (
    ApduError,
    ApduFormatError,
    ApplicationNotAvailableError,
    BadResponseError,
)
from mie.core.processors import (
    ISO7816_LAYERS,
    MAX_RESPONSE_CHAIN,
    ApduProcessor,
    ChainedProcessor,
    SecureMessagingProcessor,
    SmartCardProtocol,
    StackSettings,
    command_chaining,
    is_interindustry,
    response_chaining,
    wrong_length,
)
from tests.unit.fakes import ScriptFactory, h

OK = 0x9000
AID = h("E8 28 BD 08 0F 80 25 00 00 01 FF 00 10")
DATA_600 = bytes((i * 13) & 0xFF for i in range(600))


def test_case_4_command_is_sent_as_encoded(scripted: ScriptFactory) -> None:
    connection = scripted([(h("00 A4 04 00 02 3F 00 00"), h("62 00"), OK)])
    protocol = SmartCardProtocol(connection)
    assert protocol.transmit(CommandApdu(0, 0xA4, 4, 0, h("3F 00"), 256)) == (h("62 00"), OK)


def test_61xx_is_collected_with_several_get_response(scripted: ScriptFactory) -> None:
    first, second, third = bytes(range(3)), bytes(range(16)), bytes(range(5))
    connection = scripted(
        [
            (h("00 CA 9F 7F 00"), first, 0x6110),
            (h("00 C0 00 00 10"), second, 0x6105),
            (h("00 C0 00 00 05"), third, OK),
        ]
    )
    data, sw = SmartCardProtocol(connection).transmit(CommandApdu(0, 0xCA, 0x9F, 0x7F, le=256))
    assert (data, sw) == (first + second + third, OK)


def test_6100_asks_for_256_bytes(scripted: ScriptFactory) -> None:
    connection = scripted(
        [
            (h("00 B2 01 0C 00"), b"", 0x6100),
            (h("00 C0 00 00 00"), bytes(256), OK),
        ]
    )
    data, sw = SmartCardProtocol(connection).transmit(CommandApdu(0, 0xB2, 1, 0x0C, le=256))
    assert (len(data), sw) == (256, OK)


@pytest.mark.parametrize(
    ("cla", "get_response_cla"),
    [(0x00, 0x00), (0x01, 0x01), (0x03, 0x03), (0x0D, 0x01), (0x45, 0x45), (0x6F, 0x4F)],
)
def test_get_response_stays_on_the_logical_channel(
    scripted: ScriptFactory, cla: int, get_response_cla: int
) -> None:
    connection = scripted(
        [
            (bytes([cla]) + h("A4 04 00 08 80 25 00 00 01 FF 01 00 00"), b"", 0x6102),
            (bytes([get_response_cla]) + h("C0 00 00 02"), h("6F 00"), OK),
        ]
    )
    protocol = SmartCardProtocol(connection)
    apdu = CommandApdu(cla, 0xA4, 4, 0, h("80 25 00 00 01 FF 01 00"), 256)
    assert protocol.transmit(apdu) == (h("6F 00"), OK)


def test_6cxx_resends_with_le_from_sw2(scripted: ScriptFactory) -> None:
    connection = scripted(
        [
            (h("00 B0 00 00 00"), b"", 0x6C0A),
            (h("00 B0 00 00 0A"), b"MIE0000001", OK),
        ]
    )
    data, sw = SmartCardProtocol(connection).transmit(CommandApdu(0, 0xB0, 0, 0, le=256))
    assert (data, sw) == (b"MIE0000001", OK)


def test_6cxx_to_a_command_with_data_is_never_resent(scripted: ScriptFactory) -> None:
    # A VERIFY repeated behind the caller's back would spend a second PIN try.
    connection = scripted([(h("00 20 00 01 08 31 32 33 34 FF FF FF FF"), b"", 0x6C00)])
    apdu = CommandApdu(0, 0x20, 0, 1, h("31 32 33 34 FF FF FF FF"))
    assert SmartCardProtocol(connection).transmit(apdu) == (b"", 0x6C00)


def test_6cxx_answering_a_get_response_resends_the_get_response(scripted: ScriptFactory) -> None:
    fcp = bytes(range(0x18))
    connection = scripted(
        [
            (h("00 A4 02 04 02 01 01 00"), b"", 0x6120),
            (h("00 C0 00 00 20"), b"", 0x6C18),
            (h("00 C0 00 00 18"), fcp, OK),
        ]
    )
    data, sw = SmartCardProtocol(connection).transmit(CommandApdu(0, 0xA4, 2, 4, h("01 01"), 256))
    assert (data, sw) == (fcp, OK)


def test_a_second_6cxx_is_returned_not_resent(scripted: ScriptFactory) -> None:
    connection = scripted(
        [
            (h("00 B0 00 00 00"), b"", 0x6C0A),
            (h("00 B0 00 00 0A"), b"", 0x6C05),
        ]
    )
    assert SmartCardProtocol(connection).transmit(CommandApdu(0, 0xB0, 0, 0, le=256)) == (
        b"",
        0x6C05,
    )


def test_command_chaining_splits_600_bytes_and_puts_le_on_the_last_link(
    scripted: ScriptFactory,
) -> None:
    connection = scripted(
        [
            (h("10 DA 01 02 FF") + DATA_600[:255], b"", OK),
            (h("10 DA 01 02 FF") + DATA_600[255:510], b"", OK),
            (h("00 DA 01 02 5A") + DATA_600[510:] + h("00"), b"done", OK),
        ]
    )
    protocol = SmartCardProtocol(connection)
    assert protocol.transmit(CommandApdu(0, 0xDA, 1, 2, DATA_600, 256)) == (b"done", OK)


def test_command_chaining_keeps_the_logical_channel(scripted: ScriptFactory) -> None:
    data = bytes(300)
    connection = scripted(
        [
            (h("11 DB 3F FF FF") + data[:255], b"", OK),
            (h("01 DB 3F FF 2D") + data[255:], b"", OK),
        ]
    )
    assert SmartCardProtocol(connection).transmit(CommandApdu(1, 0xDB, 0x3F, 0xFF, data)) == (
        b"",
        OK,
    )


def test_a_chained_link_answered_with_an_error_stops_the_chain(scripted: ScriptFactory) -> None:
    connection = scripted(
        [
            (h("10 DA 01 02 FF") + DATA_600[:255], b"", OK),
            (h("10 DA 01 02 FF") + DATA_600[255:510], h("01"), 0x6884),
        ]
    )
    protocol = SmartCardProtocol(connection)
    assert protocol.transmit(CommandApdu(0, 0xDA, 1, 2, DATA_600, 256)) == (h("01"), 0x6884)


def test_extended_length_sends_one_command_when_configured(scripted: ScriptFactory) -> None:
    connection = scripted(
        [
            (h("00 DA 01 02 00 02 58") + DATA_600 + h("01 00"), b"", OK),
            (h("00 B0 00 00 00 03 E8"), bytes(1000), OK),
            (h("00 B0 00 00 10"), bytes(16), OK),
        ]
    )
    protocol = SmartCardProtocol(connection, extended_length=True)
    assert protocol.transmit(CommandApdu(0, 0xDA, 1, 2, DATA_600, 256)) == (b"", OK)
    assert protocol.transmit(CommandApdu(0, 0xB0, 0, 0, le=1000)) == (bytes(1000), OK)
    assert protocol.transmit(CommandApdu(0, 0xB0, 0, 0, le=16)) == (bytes(16), OK)


def test_extended_le_without_extended_length_raises_before_sending(
    scripted: ScriptFactory,
) -> None:
    connection = scripted([])
    with pytest.raises(ApduFormatError, match="extended length"):
        SmartCardProtocol(connection).transmit(CommandApdu(0, 0xB0, 0, 0, le=1000))


def test_max_command_data_sets_the_chunk_size(scripted: ScriptFactory) -> None:
    data = bytes(range(10))
    connection = scripted(
        [
            (h("10 D6 00 00 04 00 01 02 03"), b"", OK),
            (h("10 D6 00 00 04 04 05 06 07"), b"", OK),
            (h("00 D6 00 00 02 08 09"), b"", OK),
        ]
    )
    protocol = SmartCardProtocol(connection)
    protocol.configure(max_command_data=4)
    assert protocol.transmit(CommandApdu(0, 0xD6, 0, 0, data)) == (b"", OK)


def test_t0_drops_le_on_case_4_and_fetches_the_answer(scripted: ScriptFactory) -> None:
    fci = bytes(range(0x12))
    connection = scripted(
        [
            (h("00 A4 04 00 0D") + AID, b"", 0x6112),
            (h("00 C0 00 00 12"), fci, OK),
            (h("00 B0 00 00 00"), bytes(256), OK),
        ]
    )
    protocol = SmartCardProtocol(connection, t0=True)
    assert protocol.transmit(CommandApdu(0, 0xA4, 4, 0, AID, 256)) == (fci, OK)
    assert protocol.transmit(CommandApdu(0, 0xB0, 0, 0, le=256)) == (bytes(256), OK)


def test_a_chain_of_exactly_the_maximum_get_response_is_accepted(scripted: ScriptFactory) -> None:
    script = [(h("00 CA 01 00 00"), h("00"), 0x6101)]
    script += [(h("00 C0 00 00 01"), h("01"), 0x6101)] * (MAX_RESPONSE_CHAIN - 1)
    script += [(h("00 C0 00 00 01"), h("02"), OK)]
    connection = scripted(script)
    data, sw = SmartCardProtocol(connection).transmit(CommandApdu(0, 0xCA, 1, 0, le=256))
    assert (data, sw) == (h("00") + h("01") * (MAX_RESPONSE_CHAIN - 1) + h("02"), OK)


def test_a_card_that_never_stops_answering_61xx_raises(scripted: ScriptFactory) -> None:
    script = [(h("00 CA 01 00 00"), h("00"), 0x6101)]
    script += [(h("00 C0 00 00 01"), h("01"), 0x6101)] * MAX_RESPONSE_CHAIN
    connection = scripted(script)
    with pytest.raises(BadResponseError, match="61xx"):
        SmartCardProtocol(connection).transmit(CommandApdu(0, 0xCA, 1, 0, le=256))


def test_send_apdu_returns_data_on_9000(scripted: ScriptFactory) -> None:
    connection = scripted([(h("00 CA 01 00 00"), h("01 02"), OK)])
    assert SmartCardProtocol(connection).send_apdu(0, 0xCA, 1, 0, le=256) == h("01 02")


def test_send_apdu_raises_apdu_error_keeping_data_and_sw(scripted: ScriptFactory) -> None:
    connection = scripted([(h("00 2A 9E 9A 02 01 02 00"), h("AB CD"), 0x6985)])
    with pytest.raises(ApduError, match="6985") as raised:
        SmartCardProtocol(connection).send_apdu(0, 0x2A, 0x9E, 0x9A, h("01 02"), 256)
    assert (raised.value.data, raised.value.sw) == (h("AB CD"), 0x6985)


def test_select_sends_p1_04_with_le_and_returns_the_fci(scripted: ScriptFactory) -> None:
    connection = scripted(
        [
            (h("00 A4 04 00 0D") + AID + h("00"), h("6F 00"), OK),
            (h("01 A4 04 0C 0D") + AID, b"", OK),
        ]
    )
    protocol = SmartCardProtocol(connection)
    assert protocol.select(AID) == h("6F 00")
    assert protocol.select(AID, p2=0x0C, cla=0x01) == b""


@pytest.mark.parametrize("sw", [0x6A82, 0x6A86, 0x6B00, 0x6D00])
def test_select_of_a_missing_application_raises_application_not_available(
    scripted: ScriptFactory, sw: int
) -> None:
    connection = scripted([(h("00 A4 04 00 0D") + AID + h("00"), b"", sw)])
    with pytest.raises(ApplicationNotAvailableError, match=AID.hex().upper()) as raised:
        SmartCardProtocol(connection).select(AID)
    assert raised.value.sw == sw
    assert isinstance(raised.value.__cause__, ApduError)


def test_select_keeps_other_errors_as_apdu_error(scripted: ScriptFactory) -> None:
    connection = scripted([(h("00 A4 04 00 0D") + AID + h("00"), b"", 0x6982)])
    with pytest.raises(ApduError) as raised:
        SmartCardProtocol(connection).select(AID)
    assert type(raised.value) is ApduError
    assert raised.value.sw == 0x6982


MAC = h("8E 04 4D 41 43 21")


class AppendMac(SecureMessagingProcessor):
    """Stands in for a secure channel: sets the SM bits and appends a fixed 'MAC'."""

    def __init__(self, delegate: ApduProcessor) -> None:
        super().__init__(delegate)
        self.protected: list[CommandApdu] = []
        self.unprotected: list[tuple[bytes, int]] = []

    def protect(self, apdu: CommandApdu) -> CommandApdu:
        self.protected.append(apdu)
        return CommandApdu(apdu.cla | 0x0C, apdu.ins, apdu.p1, apdu.p2, apdu.data + MAC, apdu.le)

    def unprotect(self, data: bytes, sw: int) -> tuple[bytes, int]:
        self.unprotected.append((data, sw))
        assert data.endswith(MAC)
        return data[: -len(MAC)], sw


def test_secure_messaging_sees_the_whole_command_before_chaining(
    scripted: ScriptFactory,
) -> None:
    data = bytes(300)
    protected = data + MAC
    connection = scripted(
        [
            (h("1C DA 01 02 FF") + protected[:255], b"", OK),
            (h("0C DA 01 02 33") + protected[255:] + h("00"), h("52 45"), 0x6108),
            (h("00 C0 00 00 08"), h("53 50") + MAC, OK),
        ]
    )
    protocol = SmartCardProtocol(connection)
    layers: list[AppendMac] = []

    def build(delegate: ApduProcessor) -> AppendMac:
        layers.append(AppendMac(delegate))
        return layers[0]

    with pytest.deprecated_call():
        protocol.configure(secure_messaging=build)
    command = CommandApdu(0, 0xDA, 1, 2, data, 256)
    assert protocol.transmit(command) == (b"RESP", OK)
    assert layers[0].protected == [command]
    assert layers[0].unprotected == [(b"RESP" + MAC, OK)]


class Untouched(SecureMessagingProcessor):
    """A secure-messaging layer that changes nothing: shows what the layers below send."""

    def protect(self, apdu: CommandApdu) -> CommandApdu:
        return apdu

    def unprotect(self, data: bytes, sw: int) -> tuple[bytes, int]:
        return data, sw


def test_configure_keeps_t0_so_a_select_gets_no_le(scripted: ScriptFactory) -> None:
    # Configuring secure messaging used to rebuild the stack with t0=False: a T=0 SELECT then
    # went out with a trailing Le byte.
    connection = scripted([(h("00 A4 04 00 0D") + AID, h("6F 00"), OK)])
    protocol = SmartCardProtocol(connection, t0=True)
    with pytest.deprecated_call():
        protocol.configure(secure_messaging=Untouched)
    assert protocol.select(AID) == h("6F 00")
    assert protocol.settings.t0


def test_configure_keeps_extended_length(scripted: ScriptFactory) -> None:
    connection = scripted(
        [
            (h("00 DA 01 02 00 02 58") + DATA_600, b"", OK),
            (h("10 DA 01 02 00 01 2C") + DATA_600[:300], b"", OK),
            (h("00 DA 01 02 00 01 2C") + DATA_600[300:], b"", OK),
        ]
    )
    protocol = SmartCardProtocol(connection, extended_length=True)
    with pytest.deprecated_call():
        protocol.configure(secure_messaging=Untouched)
    assert protocol.transmit(CommandApdu(0, 0xDA, 1, 2, DATA_600)) == (b"", OK)
    protocol.configure(max_command_data=300, secure_messaging=None)
    assert protocol.transmit(CommandApdu(0, 0xDA, 1, 2, DATA_600)) == (b"", OK)
    assert protocol.settings.extended_length
    assert protocol.settings.max_command_data == 300


def test_configure_changes_only_what_it_is_given(scripted: ScriptFactory) -> None:
    protocol = SmartCardProtocol(scripted([]), extended_length=True, t0=True)
    protocol.configure(max_command_data=16)
    assert (protocol.settings.t0, protocol.settings.extended_length) == (True, True)
    protocol.configure(t0=False)
    assert (protocol.settings.t0, protocol.settings.max_command_data) == (False, 16)
    protocol.configure(max_command_data=None)
    assert protocol.settings.command_data_limit == 65535


def test_configure_refuses_a_bad_chunk_size_and_keeps_the_stack(scripted: ScriptFactory) -> None:
    protocol = SmartCardProtocol(scripted([]), t0=True)
    with pytest.raises(ValueError, match="max_command_data"):
        protocol.configure(max_command_data=0)
    assert protocol.settings.t0
    assert protocol.settings.max_command_data is None


@pytest.mark.parametrize(
    ("cla", "interindustry"),
    [
        (0x00, True),
        (0x03, True),
        (0x0C, True),
        (0x1F, True),
        (0x20, False),
        (0x3F, False),
        (0x40, True),
        (0x7F, True),
        (0x80, False),
        (0x90, False),
        (0xFF, False),
    ],
)
def test_interindustry_cla_values(cla: int, interindustry: bool) -> None:
    assert is_interindustry(cla) is interindustry


@pytest.mark.parametrize("cla", [0x90, 0x80, 0xA0, 0x20])
def test_a_chain_that_needs_a_non_interindustry_cla_raises_and_sends_nothing(
    scripted: ScriptFactory, cla: int
) -> None:
    # ORing 10 into 90 made DESFire's native CLA into 90|10 = 90 with another meaning.
    connection = scripted([])
    with pytest.raises(ApduFormatError, match="chaining"):
        SmartCardProtocol(connection).transmit(CommandApdu(cla, 0x3D, 0, 0, bytes(300)))
    assert connection.sent == []


def test_a_proprietary_cla_command_that_fits_is_sent_as_is(scripted: ScriptFactory) -> None:
    connection = scripted([(h("90 3D 00 00 FF") + bytes(255) + h("00"), b"", 0x9100)])
    protocol = SmartCardProtocol(connection)
    assert protocol.transmit(CommandApdu(0x90, 0x3D, 0, 0, bytes(255), 256)) == (b"", 0x9100)


def test_further_interindustry_cla_chains_with_bit_10(scripted: ScriptFactory) -> None:
    data = bytes(300)
    connection = scripted(
        [
            (h("55 DB 3F FF FF") + data[:255], b"", OK),
            (h("45 DB 3F FF 2D") + data[255:], b"", OK),
        ]
    )
    apdu = CommandApdu(0x45, 0xDB, 0x3F, 0xFF, data)
    assert SmartCardProtocol(connection).transmit(apdu) == (b"", OK)


# The stack is a recipe: DESFire will configure layers=(native_wrapping, af_chaining) and
# success={9000, 9100}. A trivial AF layer stands in for both here.

MAX_AF_FRAMES = 8


class AfChaining(ChainedProcessor):
    """Collects DESFire-style additional frames: ``91AF`` is answered with ``90 AF 00 00 00``."""

    def send_apdu(self, apdu: CommandApdu) -> tuple[bytes, int]:
        data, sw = self.delegate.send_apdu(apdu)
        chunks = [data]
        for _ in range(MAX_AF_FRAMES):
            if sw != 0x91AF:
                break
            data, sw = self.delegate.send_apdu(CommandApdu(0x90, 0xAF, 0, 0, le=256))
            chunks.append(data)
        return b"".join(chunks), sw


def af_chaining(delegate: ApduProcessor, settings: StackSettings) -> ApduProcessor:
    return AfChaining(delegate)


DESFIRE_SUCCESS = frozenset({0x9000, 0x9100})


def test_the_default_recipe_is_the_iso_one(scripted: ScriptFactory) -> None:
    protocol = SmartCardProtocol(scripted([]))
    assert protocol.layers == ISO7816_LAYERS == (wrong_length, response_chaining, command_chaining)
    assert protocol.settings.success == frozenset({OK})


def test_a_session_swaps_the_recipe_and_the_success_status_words(scripted: ScriptFactory) -> None:
    connection = scripted(
        [
            (h("00 A4 04 00 07 D2 76 00 00 85 01 00"), b"", OK),
            (h("90 60 00 00 00"), h("04 01 01"), 0x91AF),
            (h("90 AF 00 00 00"), h("04 01 02"), 0x91AF),
            (h("90 AF 00 00 00"), h("01 02 03"), 0x9100),
            (h("90 6A 00 00 00"), b"", 0x91AE),
        ]
    )
    protocol = SmartCardProtocol(connection, t0=True)
    protocol.select(h("D2 76 00 00 85 01 00"))
    protocol.configure(layers=(af_chaining,), success=DESFIRE_SUCCESS)
    assert protocol.send_apdu(0x90, 0x60, 0, 0, le=256) == h("04 01 01 04 01 02 01 02 03")
    with pytest.raises(ApduError) as raised:
        protocol.send_apdu(0x90, 0x6A, 0, 0, le=256)
    assert raised.value.sw == 0x91AE
    assert protocol.settings.t0
    assert protocol.layers == (af_chaining,)


def test_the_recipe_and_success_set_can_be_given_at_construction(scripted: ScriptFactory) -> None:
    connection = scripted([(h("90 60 00 00 00"), h("04"), 0x9100)])
    protocol = SmartCardProtocol(connection, layers=(af_chaining,), success=DESFIRE_SUCCESS)
    assert protocol.send_apdu(0x90, 0x60, 0, 0, le=256) == h("04")


def test_without_the_iso_layers_nothing_chains_or_fetches_61xx(scripted: ScriptFactory) -> None:
    connection = scripted([(h("00 B0 00 00 00"), h("01"), 0x6101)])
    protocol = SmartCardProtocol(connection, layers=())
    assert protocol.transmit(CommandApdu(0, 0xB0, 0, 0, le=256)) == (h("01"), 0x6101)
    with pytest.raises(ApduFormatError, match="extended length"):
        protocol.transmit(CommandApdu(0, 0xDA, 0, 0, bytes(300)))


def test_9100_is_an_error_unless_the_session_says_otherwise(scripted: ScriptFactory) -> None:
    connection = scripted([(h("90 60 00 00 00"), h("04"), 0x9100)])
    with pytest.raises(ApduError) as raised:
        SmartCardProtocol(connection).send_apdu(0x90, 0x60, 0, 0, le=256)
    assert raised.value.sw == 0x9100


def test_layers_receive_the_settings(scripted: ScriptFactory) -> None:
    seen: list[StackSettings] = []

    def spy(delegate: ApduProcessor, settings: StackSettings) -> ApduProcessor:
        seen.append(settings)
        return delegate

    protocol = SmartCardProtocol(scripted([]), t0=True, layers=(spy,))
    protocol.configure(max_command_data=10)
    assert seen == [StackSettings(t0=True), StackSettings(t0=True, max_command_data=10)]


@pytest.mark.parametrize(
    "settings",
    [
        {"success": frozenset()},
        {"success": frozenset({0x1234})},
        {"success": {0x9000}},
        {"max_command_data": 65536},
    ],
)
def test_bad_settings_are_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        StackSettings(**settings)  # type: ignore[arg-type]


def test_configure_refuses_bad_layers_and_keeps_the_stack(scripted: ScriptFactory) -> None:
    protocol = SmartCardProtocol(scripted([]))
    with pytest.raises(ValueError, match="layers"):
        protocol.configure(layers=[af_chaining])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="success"):
        protocol.configure(success=frozenset(), layers=(af_chaining,))
    assert protocol.layers == ISO7816_LAYERS
    assert protocol.settings.success == frozenset({OK})


def test_configure_without_secure_messaging_does_not_warn(scripted: ScriptFactory) -> None:
    protocol = SmartCardProtocol(scripted([]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        protocol.configure(t0=True, secure_messaging=None)
