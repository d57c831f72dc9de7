"""Recorded APDU sessions ("vectors"): the file format, recording and replay.

A vector is one JSON object: ``description``, ``source`` (``"emulator"``, ``"real card"``,
``"NXP AN…"``), ``kind``, ``atr`` (hex or null), ``exchanges`` (``[{"c": hex, "r": hex}]``) and
``random`` (values injected so a replay is byte-exact). ``command`` (optional) holds the ``mie``
arguments that produced the session, so ``mie replay`` can run them again.

PIN-carrying command data is never written: it appears as ``*`` characters (see
:func:`mie.core.log.redact_command`), and replay matches a command by its redacted form.

Vector files come from other people (they are made to be shared), so reading one is strict and
bounded: at most :data:`MAX_VECTOR_BYTES`, JSON without numbers or duplicate keys, every field
checked; anything else is a :class:`~mie.core.errors.VectorFormatError` naming the file.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from mie.core import strictjson
from mie.core.connection import (
    SmartCardConnection,
    SmartCardConnectionWrapper,
    Transport,
    transport_from_atr,
)
from mie.core.errors import JsonFormatError, ReplayMismatchError, VectorFormatError
from mie.core.files import atomic_write
from mie.core.log import MASK_CHAR, redact_command
from mie.core.random import RecordingRandom, ReplayRandom

MAX_VECTOR_BYTES = 8 * 1024 * 1024
"""Largest vector file read (a recorded CPx session is a few KB)."""

_COMMAND_RE = re.compile(r"(?:[0-9a-f]{2}|\*\*)+")
_HEX_RE = re.compile(r"(?:[0-9a-f]{2})*")
_KEYS = {"description", "source", "kind", "atr", "exchanges", "random", "command"}
# ISO 7816-3 ATRs are 2 to 33 bytes; an extended command APDU is at most 4 + 3 + 65535 + 3 bytes
# and a response at most 65536 data bytes and the status word.
_ATR_BYTES = (2, 33)
_MAX_COMMAND_BYTES = 65545
_MAX_RESPONSE_BYTES = 65538


@dataclass(frozen=True)
class Exchange:
    """One command and its response.

    :param command: the command as lowercase hex, PIN data masked with ``*``.
    :param response: the response APDU (data and status word).
    """

    command: str
    response: bytes


@dataclass
class Vector:
    """A recorded session.

    :param description: what the session does.
    :param source: where it came from (``emulator``, ``real card``, or a document reference).
    :param kind: the card kind (``iso7816``, ``cps3``...).
    :param atr: the card's ATR, if known.
    :param exchanges: the commands and responses, in order.
    :param random: random values the client drew, injected again on replay.
    :param command: the ``mie`` arguments that produced the session, if recorded by ``mie record``.
    """

    description: str
    source: str
    kind: str
    atr: bytes | None = None
    exchanges: list[Exchange] = field(default_factory=list)
    random: dict[str, str] = field(default_factory=dict)
    command: list[str] | None = None

    def to_json(self) -> dict[str, Any]:
        """:return: the JSON object of the vector format."""
        obj: dict[str, Any] = {
            "description": self.description,
            "source": self.source,
            "kind": self.kind,
            "atr": self.atr.hex() if self.atr is not None else None,
            "exchanges": [{"c": e.command, "r": e.response.hex()} for e in self.exchanges],
            "random": dict(self.random),
        }
        if self.command is not None:
            obj["command"] = list(self.command)
        return obj

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the vector atomically and durably (a reader never sees a half-written file).

        :param path: the destination file.
        """
        text = json.dumps(self.to_json(), indent=1) + "\n"
        # A vector is an ordinary file (PINs are never in it): readable by others. A missing
        # directory is the caller's mistake (a mistyped --out or --trace), not created.
        atomic_write(path, text.encode("utf-8"), mode=0o644, parents=False)

    def random_source(self) -> ReplayRandom:
        """:return: a random source that serves the recorded :attr:`random` values again.

        :raises VectorFormatError: (from its ``draw``) a value the session draws was not recorded.
        """
        return ReplayRandom({name: bytes.fromhex(value) for name, value in self.random.items()})

    @classmethod
    def from_json(cls, obj: object) -> Vector:
        """Build a vector from its parsed JSON, checking every field.

        :param obj: the parsed JSON.
        :return: the vector.
        :raises VectorFormatError: a field is missing, unknown or of the wrong form.
        """
        if not isinstance(obj, dict):
            raise VectorFormatError("Vector must be a JSON object")
        unknown = set(obj) - _KEYS
        if unknown:
            names = ", ".join(_shown(k) for k in sorted(unknown)[:5])
            raise VectorFormatError(f"Unknown vector fields: {names}")
        return cls(
            description=_text(obj, "description"),
            source=_text(obj, "source"),
            kind=_text(obj, "kind"),
            atr=_atr(obj),
            exchanges=_exchanges(obj.get("exchanges")),
            random=_random(obj.get("random", {})),
            command=_command(obj.get("command")),
        )


def _shown(name: str) -> str:
    # Names come from the file: quoted (control characters escaped) and cut short.
    return strictjson.shown(name)


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise VectorFormatError(f"Vector field {key!r} must be a non-empty string")
    return value


def _hex(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not _HEX_RE.fullmatch(value):
        raise VectorFormatError(f"{what} must be lowercase hex")
    return bytes.fromhex(value)


def _atr(obj: dict[str, Any]) -> bytes | None:
    value = obj.get("atr")
    if value is None:
        return None
    atr = _hex(value, "Vector field 'atr'")
    low, high = _ATR_BYTES
    if not low <= len(atr) <= high:
        raise VectorFormatError(f"Vector field 'atr' must be {low} to {high} bytes")
    return atr


def _exchanges(value: object) -> list[Exchange]:
    if not isinstance(value, list):
        raise VectorFormatError("Vector field 'exchanges' must be a list")
    result = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != {"c", "r"}:
            raise VectorFormatError(f"Exchange {i} must be an object with exactly 'c' and 'r'")
        command = item["c"]
        if (
            not isinstance(command, str)
            or not 8 <= len(command) <= 2 * _MAX_COMMAND_BYTES
            or not _COMMAND_RE.fullmatch(command)
        ):
            raise VectorFormatError(f"Exchange {i}: 'c' must be a command in lowercase hex")
        response = _hex(item["r"], f"Exchange {i}: 'r'")
        if len(response) < 2:
            raise VectorFormatError(f"Exchange {i}: 'r' has no status word")
        if len(response) > _MAX_RESPONSE_BYTES:
            raise VectorFormatError(f"Exchange {i}: 'r' is longer than a response APDU")
        result.append(Exchange(command, response))
    return result


def _random(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and _HEX_RE.fullmatch(v) for k, v in value.items()
    ):
        raise VectorFormatError("Vector field 'random' must map names to lowercase hex")
    return dict(value)


def _command(value: object) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise VectorFormatError("Vector field 'command' must be a list of strings")
    return list(value)


def parse_vector(data: bytes, name: str = "<bytes>") -> Vector:
    """Parse the bytes of a vector file, strictly.

    :param data: the file's content (UTF-8 JSON).
    :param name: what to call the file in messages.
    :return: the vector.
    :raises VectorFormatError: for any content that is not a vector (the only exception raised).
    """
    where = f"Vector {name!r}"
    try:
        obj = strictjson.loads(data, f"vector {name!r}", max_bytes=MAX_VECTOR_BYTES)
    except JsonFormatError as e:
        raise VectorFormatError(str(e)) from e
    try:
        return Vector.from_json(obj)
    except VectorFormatError as e:
        raise VectorFormatError(f"{where}: {e}") from e


def load_vector(path: str | os.PathLike[str]) -> Vector:
    """Load and check a vector file: the one way tests and the CLI read vectors.

    :param path: the JSON file (read up to :data:`MAX_VECTOR_BYTES`, never further).
    :return: the vector.
    :raises VectorFormatError: the file cannot be read or does not follow the format.
    """
    name = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_VECTOR_BYTES + 1)
    except OSError as e:
        raise VectorFormatError(f"Cannot read vector {name!r}: {e.strerror or e}") from e
    return parse_vector(data, name)


class RecordingConnection(SmartCardConnectionWrapper):
    """Wraps a connection and records every exchange, PIN data masked; transactions, ATR and
    transport are the inner connection's.

    :param inner: the connection to record.
    :param rng: the random source the session draws from, if its values are to be recorded
        with the exchanges (they become the vector's ``random``).
    """

    def __init__(self, inner: SmartCardConnection, *, rng: RecordingRandom | None = None) -> None:
        super().__init__(inner)
        self.rng = rng
        self.exchanges: list[Exchange] = []

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        data, sw = self.inner.send_and_receive(apdu)
        self.exchanges.append(Exchange(redact_command(apdu), data + sw.to_bytes(2, "big")))
        return data, sw

    def vector(self, description: str, source: str, kind: str) -> Vector:
        """:return: the session recorded so far as a vector (with the random values drawn)."""
        random = {} if self.rng is None else {k: v.hex() for k, v in self.rng.values.items()}
        return Vector(description, source, kind, self.atr, list(self.exchanges), random)


class ReplayConnection(SmartCardConnection):
    """Serves a recorded session; the first command that differs from the recording raises.

    :param vector: the recorded session.
    :param transport: how the recorded card was reached; ``None``: read from the recorded ATR.
    """

    def __init__(self, vector: Vector, transport: Transport | None = None) -> None:
        self.vector = vector
        self._transport = transport
        self.position = 0

    @property
    def transport(self) -> Transport:
        return self._transport if self._transport is not None else transport_from_atr(self.atr)

    @property
    def atr(self) -> bytes | None:
        return self.vector.atr

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        actual = redact_command(apdu)
        if self.position >= len(self.vector.exchanges):
            raise ReplayMismatchError(
                f"Exchange {self.position}: the recording has ended, got command {actual}"
            )
        expected = self.vector.exchanges[self.position]
        if actual != expected.command:
            raise ReplayMismatchError(
                f"Exchange {self.position}: expected command {expected.command}, got {actual}"
            )
        self.position += 1
        response = expected.response
        return response[:-2], int.from_bytes(response[-2:], "big")

    def assert_complete(self) -> None:
        """Raise unless every recorded exchange was replayed.

        :raises ReplayMismatchError: commands of the recording were never sent.
        """
        left = len(self.vector.exchanges) - self.position
        if left:
            raise ReplayMismatchError(
                f"Replay stopped at exchange {self.position}: {left} recorded exchanges not sent"
            )


__all__ = [
    "MASK_CHAR",
    "MAX_VECTOR_BYTES",
    "Exchange",
    "RecordingConnection",
    "ReplayConnection",
    "Vector",
    "load_vector",
    "parse_vector",
]
