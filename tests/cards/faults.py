"""A connection wrapper that corrupts chosen card answers, for fault tests."""

from __future__ import annotations

from collections.abc import Callable

from mie.core.connection import SmartCardConnection, Transport

Rewrite = Callable[[bytes, bytes, int], tuple[bytes, int] | None]


class CorruptingConnection(SmartCardConnection):
    """Passes commands through and lets ``rewrite(command, data, sw)`` replace an answer."""

    def __init__(self, inner: SmartCardConnection, rewrite: Rewrite) -> None:
        self.inner = inner
        self.rewrite = rewrite
        self.commands: list[bytes] = []

    @property
    def transport(self) -> Transport:
        return self.inner.transport

    @property
    def atr(self) -> bytes | None:
        return self.inner.atr

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self.commands.append(apdu)
        data, sw = self.inner.send_and_receive(apdu)
        replaced = self.rewrite(apdu, data, sw)
        return replaced if replaced is not None else (data, sw)
