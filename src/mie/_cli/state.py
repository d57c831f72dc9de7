"""What one CLI invocation shares between commands: how card connections are opened.

``mie record`` and ``mie replay`` run another ``mie`` command in process with a state that
records the connection it opens, or hands it a replayed one instead. A replay changes nothing on
the machine: its CRL cache only reads (:class:`~mie.trust.cache.ReadOnlyCrlCache`), and its
random source serves the recorded nonces.
"""

from __future__ import annotations

import errno
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mie._cli.output import JsonOutput
from mie.core.connection import SmartCardConnection
from mie.core.errors import (
    ErrorCode,
    MieError,
    NoCardError,
    NoReaderError,
    TransportError,
    TransportTimeoutError,
)
from mie.core.random import RandomSource, RecordingRandom
from mie.emulation.base import EmulatedCard, EmulatedConnection
from mie.transport.replay import RecordingConnection, ReplayConnection
from mie.trust.cache import CrlCache, ReadOnlyCrlCache

if TYPE_CHECKING:
    from fido2.ctap import CtapDevice

NFC_PREFIX = "nfc:"
"""How ``--reader`` names an nfcpy front end instead of a PC/SC reader."""
NFC_WAIT = 5.0
"""Seconds an NFC front end looks for a card."""
MAX_STDIN_PIN = 66
"""The most of a stdin line read for a PIN (64 characters, CR LF): every PIN rule is shorter,
so a longer line is refused by it, and never read whole into memory."""


def _check_udp_path(path: str) -> None:
    """Refuse an nfcpy ``udp:HOST:PORT`` path whose port is not one (nfcpy would take
    ``99999`` and look for a card there until the wait ends).

    :raises UsageError: the port is not a decimal number from 1 to 65535.
    """
    parts = path.split(":")
    if parts[0] != "udp" or len(parts) < 3:
        return
    port = parts[2]
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise UsageError(f"--reader nfc:{path}: the port must be a number from 1 to 65535")


class UsageError(MieError):
    """The command line cannot be carried out as given (exit 2)."""

    code = ErrorCode.USAGE


def read_stdin_pin() -> str:
    """:return: the first line of standard input, without its line end, read up to
    :data:`MAX_STDIN_PIN` characters (a PIN rule refuses what was cut)."""
    return sys.stdin.readline(MAX_STDIN_PIN).rstrip("\r\n")


def require_pcsc() -> None:
    """Import the PC/SC backend, :mod:`mie.transport.pcsc`, before a command uses it.

    :raises UsageError: pyscard is not installed (the message says how to install it).
    """
    try:
        import mie.transport.pcsc  # noqa: F401
    except ImportError as e:
        cause = e.__cause__ or e
        raise UsageError(f"PC/SC needs pyscard: pip install 'mie[pcsc]' ({cause})") from e


@dataclass
class CliState:
    """Per-invocation state.

    :param record: wrap every opened connection in a recorder.
    :param replay: serve this connection instead of opening one.
    :param output: whether JSON was asked for and printed (a recorded or replayed command
        shares the one of the ``mie record`` / ``mie replay`` invocation).

    :attr:`badge_reader` is the PC/SC reader :meth:`wait_for_badge` found a card in.
    :attr:`rng` is the random source of the invocation's card sessions (nonces): the recorded
    values in a replay, else fresh ones that a recording keeps in the vector's ``random``.
    """

    record: bool = False
    replay: ReplayConnection | None = None
    recorders: list[RecordingConnection] = field(default_factory=list)
    kind: str = "unknown"
    source: str = "real card"
    replay_used: bool = False
    badge_reader: str | None = None
    output: JsonOutput = field(default_factory=JsonOutput)
    rng: RandomSource = field(init=False)

    def __post_init__(self) -> None:
        # Nonces come from here: a replay serves the recorded ones (a vector without them exits 2),
        # anything else draws fresh ones and keeps them for a recording.
        self.rng = RecordingRandom() if self.replay is None else self.replay.vector.random_source()

    def _wrap(self, connection: SmartCardConnection) -> SmartCardConnection:
        if not self.record:
            return connection
        rng = self.rng if isinstance(self.rng, RecordingRandom) else None
        recorder = RecordingConnection(connection, rng=rng)
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
        """Open the card in ``reader`` (or the replayed session): over PC/SC, or, for a reader
        written ``nfc:PATH`` (``nfc:usb``, ``nfc:udp:HOST:PORT``...), through nfcpy
        (:class:`~mie.transport.nfc.NfcConnection` on the device path ``PATH``)."""
        if self.replay is not None:
            return self._replayed()
        if reader is not None and reader.startswith(NFC_PREFIX):
            return self._wrap(self._open_nfc(reader.removeprefix(NFC_PREFIX)))
        require_pcsc()
        from mie.transport.pcsc import PcscConnection

        connection = PcscConnection(reader)
        if connection.reader.startswith("Virtual PCD"):
            self.source = "emulator"
        return self._wrap(connection)

    def wait_for_badge(self, reader: str | None, timeout: float) -> SmartCardConnection:
        """Wait until a card is presented to ``reader`` (any PC/SC reader when ``None``), then
        open it as :meth:`open_reader` does.

        :param timeout: seconds to wait.
        :raises TransportTimeoutError: no card within ``timeout``.
        """
        if self.replay is not None:
            return self._replayed()
        if reader is not None and reader.startswith(NFC_PREFIX):
            try:
                return self._wrap(self._open_nfc(reader.removeprefix(NFC_PREFIX), timeout))
            except NoCardError as e:
                # An NFC front end that sensed nothing in the time is the PC/SC wait's timeout.
                raise TransportTimeoutError(f"No badge within {timeout:g} s ({e})") from e
        require_pcsc()
        from mie.transport.pcsc import wait_for_any_card, wait_for_card

        if reader is None:
            reader = wait_for_any_card(timeout).name
        else:
            wait_for_card(reader, timeout)
        self.badge_reader = reader
        return self.open_reader(reader)

    def wait_for_removal(self, reader: str | None, timeout: float) -> None:
        """Wait until the card is removed from ``reader`` (PC/SC). An NFC front end cannot
        tell a card left in the field from the next one: it is not waited for (a badge
        presented twice is known by its UID).

        :raises TransportTimeoutError: the card is still there after ``timeout``.
        """
        reader = reader or self.badge_reader
        if self.replay is not None or reader is None or reader.startswith(NFC_PREFIX):
            return
        require_pcsc()
        from mie.transport.pcsc import wait_for_removal

        wait_for_removal(reader, timeout)

    def _open_nfc(self, path: str, wait: float = NFC_WAIT) -> SmartCardConnection:
        if not path:
            raise UsageError("--reader nfc:: no nfcpy device path (nfc:usb, nfc:udp:HOST:PORT)")
        _check_udp_path(path)
        try:
            from mie.transport.nfc import NfcConnection

            connection = NfcConnection(path, wait=wait)
        except ImportError as e:
            raise UsageError(f"NFC needs nfcpy: pip install 'mie[nfc]' ({e})") from e
        except (ValueError, LookupError) as e:
            # nfcpy's answer to a device path it cannot parse.
            raise UsageError(f"--reader nfc:{path}: {e}") from e
        except TransportError as e:
            cause = e.__cause__
            if isinstance(cause, OSError) and cause.errno == errno.ENODEV:
                raise NoReaderError(f"--reader nfc:{path}: no such NFC front end") from e
            if isinstance(cause, socket.gaierror):
                raise NoReaderError(f"--reader nfc:{path}: no such host ({cause})") from e
            raise
        if path.startswith("udp:"):
            self.source = "emulator"
        return connection

    def open_emulated(self, card: EmulatedCard) -> SmartCardConnection:
        """Open an in-process emulated card (or the replayed session)."""
        if self.replay is not None:
            return self._replayed()
        self.source = "emulator"
        return self._wrap(EmulatedConnection(card))

    def open_key(self, spec: str | None) -> CtapDevice:
        """Open the FIDO2 key ``--key`` names (:func:`mie.transport.ctap.open_ctap_device`:
        ``hid:PATH``, ``socket:PATH``, ``pcsc:READER``, ``emulator[:STATE]``), or the only one
        :func:`~mie.transport.ctap.list_ctap_devices` finds.

        :raises UsageError: a spec of no known form, several keys and no ``--key``, or a
            command under ``mie replay`` (a FIDO2 key is not an APDU session).
        :raises NoCardError: no key attached (exit 1, ``no_card``).
        """
        if self.replay is not None or self.record:
            raise UsageError("A FIDO2 key session cannot be recorded or replayed")
        try:
            from mie.transport.ctap import KeySpecError, list_ctap_devices, open_ctap_device
        except ImportError as e:
            raise UsageError(f"FIDO2 keys need python-fido2: pip install 'mie[fido]' ({e})") from e
        if spec is None:
            found = list_ctap_devices()
            if not found:
                raise NoCardError("No FIDO2 key found: plug one in, or name it with --key")
            if len(found) > 1:
                names = ", ".join(repr(k.spec) for k in found)
                raise UsageError(f"Several FIDO2 keys ({names}): name one with --key")
            spec = found[0].spec
        try:
            device = open_ctap_device(spec)
        except KeySpecError as e:
            raise UsageError(str(e)) from e
        if spec.startswith(("emulator", "socket:")):
            self.source = "emulator"
        return device
