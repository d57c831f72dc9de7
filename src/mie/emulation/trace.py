"""Emulator traces: every exchange a host serves, written in the vector format (PINs masked)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from mie.core.log import redact_command
from mie.emulation.vpcd import ExchangeObserver
from mie.transport.replay import Exchange, Vector


class TraceWriter(ExchangeObserver):
    """Collects exchanges and rewrites the trace file at each session boundary.

    The file is replaced atomically, so it is always a complete vector, even if the emulator
    is killed between sessions. It is written (empty) at once, so a path that cannot be
    written fails before the emulator serves anything.

    :param path: the trace file.
    :param kind: the emulated card kind.
    :param atr: the card's ATR.
    :raises OSError: the file cannot be written.
    """

    def __init__(self, path: str | os.PathLike[str], kind: str, atr: bytes) -> None:
        self.path = Path(path)
        self.vector = Vector(
            description=f"Trace of an emulated {kind} card, as served through vpcd",
            source="emulator",
            kind=kind,
            atr=atr,
        )
        self._lock = threading.Lock()
        self.vector.save(self.path)
        self._dirty = False

    def exchange(self, command: bytes, response: bytes) -> None:
        with self._lock:
            self.vector.exchanges.append(Exchange(redact_command(command), response))
            self._dirty = True

    def session_end(self) -> None:
        with self._lock:
            if self._dirty:
                self.vector.save(self.path)
                self._dirty = False
