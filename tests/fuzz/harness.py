"""The fuzz oracle, input decoding helpers, a connection answering from fuzz bytes, a mutator.

The oracle (issue 7): an input may make :mod:`mie` raise only its own exceptions
(:class:`~mie.core.errors.MieError` and subclasses, :class:`~mie.trust.errors.VerificationError`
included), must not take more than one second, and an emulated card answers every command with
an ISO status word. A target signals a broken contract of its own (an emulator answer without a
status word, a round trip that does not hold) by raising :class:`OracleViolation`.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mie.core.apdu import split_response
from mie.core.connection import SmartCardConnection, Transport
from mie.core.errors import CardRemovedError, MieError

if TYPE_CHECKING:
    from tests.fuzz.context import Context

HANG_SECONDS = 1.0
SRC = str(Path(__file__).resolve().parents[2] / "src")

Run = Callable[[bytes], None]


@dataclass(frozen=True)
class Target:
    """One fuzz target.

    :param name: the name used by ``make fuzz`` and in reports.
    :param covers: what it covers (one line, for ``docs/reliability.md``).
    :param seeds: the seed inputs.
    :param prepare: expensive setup, once per process; returns the per-input function.
    :param max_len: the longest input the coverage-guided run generates.
    :param uninstrumented: modules left out of coverage (helpers the target runs, not tests).
    """

    name: str
    covers: str
    seeds: Callable[[Context], Iterable[bytes]]
    prepare: Callable[[Context], Run]
    max_len: int = 4096
    uninstrumented: tuple[str, ...] = ()


def swallow(step: Callable[[], object]) -> None:
    """Run one step of a target; mie's own exceptions are expected answers to bad input."""
    try:
        step()
    except MieError:
        pass


def scratch(name: str) -> Path:
    """A directory for the files one target writes per input, in memory when the system has
    /dev/shm (the CRL cache calls fsync). Directories of processes that are gone are removed:
    a fuzz process ends inside libFuzzer, which skips Python's exit handlers."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    for stale in base.glob("mie-fuzz-*-*"):
        pid = stale.name.split("-")[2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    directory = base / f"mie-fuzz-{os.getpid()}-{name}"
    directory.mkdir(exist_ok=True)
    atexit.register(shutil.rmtree, directory, True)
    return directory


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OracleViolation(Exception):  # noqa: N818 (a finding, not an error of mie)
    """A target's own contract check failed (not one of mie's exceptions, on purpose)."""


@dataclass(frozen=True)
class Finding:
    """One input that broke the oracle.

    :param kind: ``exception`` (a foreign exception), ``oracle`` (a contract check) or ``hang``.
    :param exception: the exception type name (``ValueError``), or ``hang``.
    :param message: its first line.
    :param where: the innermost ``src/mie`` frame (``mie/trust/parse.py:42``) or the raise site.
    :param seconds: how long the input took.
    """

    kind: str
    exception: str
    message: str
    where: str
    seconds: float

    @property
    def key(self) -> str:
        """:return: what tells two findings apart (same exception raised at the same place)."""
        return f"{self.kind}:{self.exception}@{self.where}"


def _where(error: BaseException) -> str:
    if isinstance(error, OracleViolation) and error.__cause__ is not None:
        error = error.__cause__
    frames = traceback.extract_tb(error.__traceback__)
    inside = [f for f in frames if f.filename.startswith(SRC)]
    frame = (inside or frames)[-1] if frames else None
    if frame is None:
        return "?"
    name = frame.filename[len(SRC) + 1 :] if frame.filename.startswith(SRC) else frame.filename
    return f"{name}:{frame.lineno}"


def check(run: Callable[[bytes], None], data: bytes) -> Finding | None:
    """Run one input through a target and judge it.

    :param run: the target's per-input function.
    :param data: the input.
    :return: the finding, or ``None`` when the oracle holds.
    """
    start = time.perf_counter()
    try:
        run(data)
    except MieError:
        pass
    except OracleViolation as e:
        return Finding("oracle", "OracleViolation", _first_line(e), _where(e), _since(start))
    except (Exception, RecursionError) as e:
        return Finding("exception", type(e).__name__, _first_line(e), _where(e), _since(start))
    seconds = _since(start)
    if seconds > HANG_SECONDS:
        return Finding("hang", "hang", f"input took {seconds:.2f} s", "-", seconds)
    return None


def _since(start: float) -> float:
    return time.perf_counter() - start


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else ""


class Reader:
    """Consumes a fuzz input as a sequence of fields (what atheris' data provider does, but
    deterministic and usable without atheris)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    @property
    def left(self) -> int:
        """:return: bytes not yet consumed."""
        return len(self.data) - self.offset

    def byte(self, default: int = 0) -> int:
        """:return: the next byte, or ``default`` at the end."""
        if self.offset >= len(self.data):
            return default
        self.offset += 1
        return self.data[self.offset - 1]

    def take(self, count: int) -> bytes:
        """:return: up to ``count`` next bytes."""
        chunk = self.data[self.offset : self.offset + count]
        self.offset += len(chunk)
        return chunk

    def record(self) -> bytes | None:
        """:return: the next length-prefixed record (2-byte big-endian length), or ``None``."""
        if self.left < 2:
            return None
        return self.take(int.from_bytes(self.take(2), "big"))

    def records(self) -> Iterator[bytes]:
        """:return: every remaining record."""
        while (item := self.record()) is not None:
            yield item


def records(items: list[bytes]) -> bytes:
    """Encode ``items`` as length-prefixed records (the inverse of :meth:`Reader.records`)."""
    return b"".join(len(i).to_bytes(2, "big") + i for i in items)


class FuzzConnection(SmartCardConnection):
    """Answers each command with the next record of the fuzz input (data then SW1 SW2).

    A record shorter than two bytes fails like a PC/SC backend given such a response
    (``ApduFormatError``); when the records run out the card is gone (``CardRemovedError``).

    :param data: the fuzz input, as :func:`records`.
    :param atr: the ATR the card reports.
    :param transport: how the card is reached.
    """

    def __init__(
        self, data: bytes | Reader, atr: bytes | None, transport: Transport = Transport.CONTACT
    ) -> None:
        self.reader = data if isinstance(data, Reader) else Reader(data)
        self._atr = atr
        self._transport = transport
        self.sent: list[bytes] = []

    @property
    def transport(self) -> Transport:
        return self._transport

    @property
    def atr(self) -> bytes | None:
        return self._atr

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent.append(bytes(apdu))
        answer = self.reader.record()
        if answer is None:
            raise CardRemovedError("The fuzz input has no more answers")
        return split_response(answer)


def mutate(data: bytes, rng: random.Random, dictionary: list[bytes] | None = None) -> bytes:
    """One deterministic mutation of ``data`` (bit flips, byte edits, splices, interesting values).

    :param data: the input to mutate.
    :param rng: the random source (seeded by the caller for a reproducible pass).
    :param dictionary: byte strings worth inserting (tags, headers of the seeds).
    :return: the mutated input.
    """
    buffer = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3, 5))):
        _MUTATORS[rng.randrange(len(_MUTATORS))](buffer, rng, dictionary or [])
    return bytes(buffer)


def _flip(buffer: bytearray, rng: random.Random, _: list[bytes]) -> None:
    if buffer:
        buffer[rng.randrange(len(buffer))] ^= 1 << rng.randrange(8)


def _set_byte(buffer: bytearray, rng: random.Random, _: list[bytes]) -> None:
    if buffer:
        buffer[rng.randrange(len(buffer))] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0x81, 0xFF))


def _random_byte(buffer: bytearray, rng: random.Random, _: list[bytes]) -> None:
    if buffer:
        buffer[rng.randrange(len(buffer))] = rng.randrange(256)


def _delete(buffer: bytearray, rng: random.Random, _: list[bytes]) -> None:
    if buffer:
        start = rng.randrange(len(buffer))
        del buffer[start : start + rng.randrange(1, 17)]


def _insert(buffer: bytearray, rng: random.Random, dictionary: list[bytes]) -> None:
    position = rng.randrange(len(buffer) + 1)
    if dictionary and rng.random() < 0.5:
        piece = rng.choice(dictionary)
    else:
        piece = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
    buffer[position:position] = piece


def _duplicate(buffer: bytearray, rng: random.Random, _: list[bytes]) -> None:
    if buffer:
        start = rng.randrange(len(buffer))
        piece = buffer[start : start + rng.randrange(1, 65)]
        position = rng.randrange(len(buffer) + 1)
        buffer[position:position] = piece


def _truncate(buffer: bytearray, rng: random.Random, _: list[bytes]) -> None:
    if buffer:
        del buffer[rng.randrange(len(buffer)) :]


_MUTATORS = (_flip, _flip, _set_byte, _random_byte, _delete, _insert, _duplicate, _truncate)


def minimize(run: Callable[[bytes], None], data: bytes, key: str, budget_s: float = 10.0) -> bytes:
    """Shrink ``data`` while it still gives the finding ``key`` (greedy chunk deletion).

    :param run: the target's per-input function.
    :param data: an input that gives the finding.
    :param key: the finding's :attr:`Finding.key`.
    :param budget_s: time allowed.
    :return: the smallest input found.
    """
    deadline = time.monotonic() + budget_s
    size = max(1, len(data) // 2)
    while size >= 1 and time.monotonic() < deadline:
        position, shrunk = 0, False
        while position < len(data) and time.monotonic() < deadline:
            candidate = data[:position] + data[position + size :]
            finding = check(run, candidate)
            if finding is not None and finding.key == key:
                data, shrunk = candidate, True
            else:
                position += size
        if not shrunk:
            size //= 2
    return data
