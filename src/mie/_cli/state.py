"""What one CLI invocation shares between commands: how card connections are opened.

``mie record`` and ``mie replay`` run another ``mie`` command in process with a state that
records the connection it opens, or hands it a replayed one instead. A replay changes nothing on
the machine: its CRL cache only reads (:class:`ReadOnlyCrlCache`).
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from mie._cli.output import JsonOutput
from mie.core.connection import SmartCardConnection
from mie.core.errors import MieError
from mie.emulation.base import EmulatedCard, EmulatedConnection
from mie.transport.replay import RecordingConnection, ReplayConnection
from mie.trust import CrlCache, CrlIndex, ErrorCode, VerificationError


class UsageError(MieError):
    """The command line cannot be carried out as given (exit 2)."""

    code = ErrorCode.USAGE


def require_pcsc() -> None:
    """Import the PC/SC backend, :mod:`mie.transport.pcsc`, before a command uses it.

    :raises UsageError: pyscard is not installed (the message says how to install it).
    """
    try:
        import mie.transport.pcsc  # noqa: F401
    except ImportError as e:
        cause = e.__cause__ or e
        raise UsageError(f"PC/SC needs pyscard: pip install 'mie[pcsc]' ({cause})") from e


class ReadOnlyCrlCache(CrlCache):
    """A CRL cache that only reads: it never downloads, and never writes, moves or removes a
    file (what ``mie replay`` uses, so a shared vector cannot change the machine).

    A CRL not in the cache, or damaged, is ``revocation_unknown``; a stale one is returned
    as it is, for the verifier to judge.
    """

    def load(self, url: str) -> CrlIndex | None:
        """The cached CRL for ``url``, or ``None`` when absent (a damaged file stays put).

        :raises VerificationError: ``revocation_unknown`` when the file cannot be read or parsed.
        """
        path = self.path_for(url)
        try:
            with path.open("rb") as handle:
                data = handle.read(self.limit + 1)  # past the limit, the parser refuses it
        except FileNotFoundError:
            return None
        except OSError as e:
            raise VerificationError(
                ErrorCode.REVOCATION_UNKNOWN, f"cached CRL for {url}: cannot read ({e.strerror})"
            ) from e
        try:
            return CrlIndex.from_bytes(data, f"{url} (cache {path.name})", max_bytes=self.limit)
        except VerificationError as e:
            raise VerificationError(
                ErrorCode.REVOCATION_UNKNOWN, f"cached CRL for {url} is damaged: {e.message}"
            ) from e

    def refresh(self, url: str) -> CrlIndex:
        """Never downloads.

        :raises VerificationError: always, ``revocation_unknown``.
        """
        raise VerificationError(
            ErrorCode.REVOCATION_UNKNOWN, f"not downloading {url}: a replay uses the cache only"
        )

    def get(self, url: str, at: dt.datetime | None = None) -> CrlIndex:
        """The cached CRL for ``url``, whatever its nextUpdate.

        :raises VerificationError: ``revocation_unknown`` when it is not cached or damaged.
        """
        cached = self.load(url)
        if cached is None:
            raise VerificationError(
                ErrorCode.REVOCATION_UNKNOWN,
                f"no cached CRL for {url} (a replay never downloads; run: mie crl fetch {url})",
            )
        return cached

    def clean_temporary(self) -> int:
        """Removes nothing. :return: 0."""
        return 0


@dataclass
class CliState:
    """Per-invocation state.

    :param record: wrap every opened connection in a recorder.
    :param replay: serve this connection instead of opening one.
    :param output: whether JSON was asked for and printed (a recorded or replayed command
        shares the one of the ``mie record`` / ``mie replay`` invocation).
    """

    record: bool = False
    replay: ReplayConnection | None = None
    recorders: list[RecordingConnection] = field(default_factory=list)
    kind: str = "unknown"
    source: str = "real card"
    random: dict[str, str] = field(default_factory=dict)
    replay_used: bool = False
    output: JsonOutput = field(default_factory=JsonOutput)

    def draw_random(self, name: str, size: int) -> bytes:
        """Draw ``size`` random bytes, or serve the value a replayed session recorded.

        Values drawn are kept in :attr:`random`, so a recording can store them.

        :raises UsageError: a replayed vector has no value of that name, or not of ``size`` bytes.
        """
        if self.replay is not None:
            recorded = self.replay.vector.random.get(name)
            if recorded is None:
                raise UsageError(f"The vector has no recorded random value {name!r}")
            value = bytes.fromhex(recorded)
            if len(value) != size:
                raise UsageError(
                    f"The vector's random value {name!r} has {len(value)} bytes, not {size}"
                )
            return value
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

    def crl_cache(self, directory: Path) -> CrlCache:
        """:return: the CRL cache in ``directory`` for this invocation: read-only in a replay."""
        if self.replay is not None:
            return ReadOnlyCrlCache(directory)
        return CrlCache(directory)

    def open_reader(self, reader: str | None) -> SmartCardConnection:
        """Open the card in ``reader`` over PC/SC (or the replayed session)."""
        if self.replay is not None:
            return self._replayed()
        require_pcsc()
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
