"""The one injectable random source: nonces now, secure-channel challenges (RndA) next.

Every random value the library draws has a name (``"nonce"``, ``"rnd_a"``), so a recording can
keep it and a replay can serve it again: a recorded session replays byte for byte without the
CLI's help. A name drawn again in one session is numbered: ``nonce``, ``nonce.1``, ``nonce.2``.
"""

from __future__ import annotations

import abc
import secrets
from collections.abc import Mapping

from mie.core.errors import VectorFormatError


class RandomSource(abc.ABC):
    """Where random bytes come from."""

    @abc.abstractmethod
    def draw(self, name: str, size: int) -> bytes:
        """:param name: what the value is for (recorded under that name).
        :param size: how many bytes.
        :return: ``size`` random bytes."""


class SystemRandom(RandomSource):
    """The operating system's cryptographic random source."""

    def draw(self, name: str, size: int) -> bytes:
        return secrets.token_bytes(size)


class _Numbered:
    """Names each draw: the first ``name`` as given, the next ones ``name.1``, ``name.2``…"""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def key(self, name: str) -> str:
        count = self._counts.get(name, 0)
        self._counts[name] = count + 1
        return name if count == 0 else f"{name}.{count}"


class RecordingRandom(RandomSource):
    """Draws from ``inner`` and keeps every value, by name, in :attr:`values`.

    :param inner: the source drawn from (default :class:`SystemRandom`).
    """

    def __init__(self, inner: RandomSource | None = None) -> None:
        self.inner = inner if inner is not None else SystemRandom()
        self.values: dict[str, bytes] = {}
        self._names = _Numbered()

    def draw(self, name: str, size: int) -> bytes:
        value = self.inner.draw(name, size)
        self.values[self._names.key(name)] = value
        return value


class ReplayRandom(RandomSource):
    """Serves values recorded by :class:`RecordingRandom`, in the same order of names.

    :param values: the recorded values, by name.
    :raises VectorFormatError: (from :meth:`draw`) a value was not recorded, or has another size.
    """

    def __init__(self, values: Mapping[str, bytes]) -> None:
        self.values = dict(values)
        self._names = _Numbered()

    def draw(self, name: str, size: int) -> bytes:
        key = self._names.key(name)
        value = self.values.get(key)
        if value is None:
            raise VectorFormatError(f"The vector has no recorded random value {key!r}")
        if len(value) != size:
            raise VectorFormatError(
                f"The vector's random value {key!r} has {len(value)} bytes, not {size}"
            )
        return value
