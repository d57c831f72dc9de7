"""What one CLI invocation shares between commands: how card connections are opened.

``mie record`` and ``mie replay`` run another ``mie`` command in process with a state that
records the connection it opens, or hands it a replayed one instead.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from mie.core.connection import SmartCardConnection
from mie.core.errors import MieError
from mie.emulation.base import EmulatedCard, EmulatedConnection
from mie.transport.replay import RecordingConnection, ReplayConnection


class UsageError(MieError):
    """The command line cannot be carried out as given (exit 2)."""


@dataclass
class CliState:
    """Per-invocation state.

    :param record: wrap every opened connection in a recorder.
    :param replay: serve this connection instead of opening one.
    """

    record: bool = False
    replay: ReplayConnection | None = None
    recorders: list[RecordingConnection] = field(default_factory=list)
    kind: str = "unknown"
    source: str = "real card"
    random: dict[str, str] = field(default_factory=dict)
    replay_used: bool = False

    def draw_random(self, name: str, size: int) -> bytes:
        """Draw ``size`` random bytes, or serve the value a replayed session recorded.

        Values drawn are kept in :attr:`random`, so a recording can store them.
        """
        if self.replay is not None:
            recorded = self.replay.vector.random.get(name)
            if recorded is None:
                raise UsageError(f"The vector has no recorded random value {name!r}")
            return bytes.fromhex(recorded)
        value = secrets.token_bytes(size)
        self.random[name] = value.hex()
        return value

    def _wrap(self, connection: SmartCardConnection) -> SmartCardConnection:
        if not self.record:
            return connection
        recorder = RecordingConnection(connection)
        self.recorders.append(recorder)
        return recorder

    def _replayed(self) -> SmartCardConnection:
        assert self.replay is not None  # noqa: S101 - checked by the callers
        if self.replay_used:
            raise UsageError("The vector holds one card session; the command opened a second one")
        self.replay_used = True
        return self.replay

    def open_reader(self, reader: str | None) -> SmartCardConnection:
        """Open the card in ``reader`` over PC/SC (or the replayed session)."""
        if self.replay is not None:
            return self._replayed()
        from mie.transport.pcsc import PcscConnection

        connection = PcscConnection(reader)
        if connection.reader.startswith("Virtual PCD"):
            self.source = "emulator"
        return self._wrap(connection)

    def open_emulated(self, card: EmulatedCard) -> SmartCardConnection:
        """Open an in-process emulated card (or the replayed session)."""
        if self.replay is not None:
            return self._replayed()
        self.source = "emulator"
        return self._wrap(EmulatedConnection(card))
