"""Fake connections for byte-exact unit tests (STYLE H11)."""

from __future__ import annotations

from collections.abc import Callable

from mie.core.connection import SmartCardConnection, SmartCardConnectionWrapper, Transport

Script = list[tuple[bytes, bytes, int]]


def h(text: str) -> bytes:
    """Bytes from spaced hex, as cards are documented."""
    return bytes.fromhex(text)


class ScriptedConnection(SmartCardConnection):
    """Asserts each APDU sent equals the next scripted command and serves its scripted answer.

    :param script: ``(expected command, response data, status word)`` in order.
    :param atr: the ATR to report.
    """

    def __init__(
        self,
        script: Script,
        atr: bytes | None = None,
        transport: Transport = Transport.CONTACT,
    ) -> None:
        self.script = list(script)
        self.position = 0
        self.sent: list[bytes] = []
        self._atr = atr
        self._transport = transport

    @property
    def transport(self) -> Transport:
        return self._transport

    @property
    def atr(self) -> bytes | None:
        return self._atr

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent.append(bytes(apdu))
        assert self.position < len(self.script), (
            f"APDU {self.position} ({apdu.hex()}) sent after the end of the script"
        )
        expected, data, sw = self.script[self.position]
        assert apdu.hex() == expected.hex(), f"APDU {self.position}"
        self.position += 1
        return data, sw

    @property
    def remaining(self) -> int:
        return len(self.script) - self.position


class CountingConnection(SmartCardConnectionWrapper):
    """Passes APDUs through to another connection and keeps a copy of each."""

    def __init__(self, connection: SmartCardConnection) -> None:
        super().__init__(connection)
        self.sent: list[bytes] = []

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent.append(bytes(apdu))
        return self.inner.send_and_receive(apdu)


ScriptFactory = Callable[..., ScriptedConnection]
