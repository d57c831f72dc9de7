"""Fault injection for card tests: a connection that corrupts chosen answers, the rewrites the
issue-7 reproducers need, and a random mutator of card answers for property tests."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from mie.core.connection import SmartCardConnection, SmartCardConnectionWrapper
from mie.emulation.cpx import FID_APP, FID_CERT_AUT, IasEccCard
from mie.emulation.iso7816 import DF, EF

Rewrite = Callable[[bytes, bytes, int], tuple[bytes, int] | None]

INS_READ_BINARY = 0xB0


class CorruptingConnection(SmartCardConnectionWrapper):
    """Passes commands through and lets ``rewrite(command, data, sw)`` replace an answer."""

    def __init__(self, inner: SmartCardConnection, rewrite: Rewrite) -> None:
        super().__init__(inner)
        self.rewrite = rewrite
        self.commands: list[bytes] = []

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self.commands.append(apdu)
        data, sw = self.inner.send_and_receive(apdu)
        replaced = self.rewrite(apdu, data, sw)
        return replaced if replaced is not None else (data, sw)


class FailingConnection(SmartCardConnectionWrapper):
    """Passes the first ``at`` exchanges through, then raises ``error`` at exchange ``at``
    (counted from 0) and at every later one, without sending it: a card removed, or a reader
    that fails, at a chosen point.

    :param inner: the connection.
    :param at: the index of the first exchange that fails.
    :param error: what that exchange raises.
    :param before: called once, just before the first failure (e.g. ``card.power_off``, so
        the card loses its volatile state as a removed card does).
    """

    def __init__(
        self,
        inner: SmartCardConnection,
        *,
        at: int,
        error: Exception,
        before: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(inner)
        self.at, self.error, self.before = at, error, before
        self.commands: list[bytes] = []
        self.failed = False

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        if len(self.commands) >= self.at:
            if not self.failed and self.before is not None:
                self.before()
            self.failed = True
            raise self.error
        self.commands.append(apdu)
        return self.inner.send_and_receive(apdu)


class Once:
    """Applies ``rewrite`` until it changes one answer, then lets everything through.

    :param rewrite: the fault.
    """

    def __init__(self, rewrite: Rewrite) -> None:
        self.rewrite = rewrite
        self.fired = 0

    def __call__(self, command: bytes, data: bytes, sw: int) -> tuple[bytes, int] | None:
        if self.fired:
            return None
        replaced = self.rewrite(command, data, sw)
        if replaced is not None:
            self.fired += 1
        return replaced


def alter_file_byte(content: bytes, index: int, value: int) -> Once:
    """Set byte ``index`` of the file ``content`` to ``value`` in the READ BINARY answer (by
    offset) that carries it, once.

    :param content: the whole file, as the card holds it.
    :param index: the byte of the file to change.
    :param value: its new value.
    """

    def rewrite(command: bytes, data: bytes, sw: int) -> tuple[bytes, int] | None:
        if len(command) < 4 or command[1] != INS_READ_BINARY or command[2] & 0x80:
            return None
        offset = int.from_bytes(command[2:4], "big")
        if not offset <= index < offset + len(data) or content[offset : offset + len(data)] != data:
            return None
        altered = bytearray(data)
        altered[index - offset] = value
        return bytes(altered), sw

    return Once(rewrite)


def replace_ef_sn(ef_sn: bytes) -> Rewrite:
    """Answer every READ BINARY of EF.SN (SFI ``1C``) with ``ef_sn``."""

    def rewrite(command: bytes, data: bytes, sw: int) -> tuple[bytes, int] | None:
        if command[:3] == bytes([0x00, INS_READ_BINARY, 0x9C]):
            return ef_sn, sw
        return None

    return rewrite


def plant_certificate(card: IasEccCard, der: bytes) -> None:
    """Replace the authentication certificate file of an emulated CPx card with ``der``."""
    app = card.mf.child(FID_APP)
    assert isinstance(app, DF)
    certificate_file = app.child(FID_CERT_AUT)
    assert isinstance(certificate_file, EF)
    certificate_file.data = der


@dataclass(frozen=True)
class Mutation:
    """One change to one card answer.

    :param target: which answer to change (counted among ``only_ins`` answers, or all of them).
    :param only_ins: count only answers to this INS (``None``: every answer).
    :param kind: ``bytes`` (overwrite some bytes), ``truncate``, ``insert`` or ``sw``.
    :param seed: drives the positions and values.
    """

    target: int
    only_ins: int | None
    kind: str
    seed: int

    def apply(self, data: bytes, sw: int) -> tuple[bytes, int]:
        """:return: the mutated answer."""
        rng = random.Random(self.seed)  # noqa: S311 - reproducible faults, not secrets
        changed = bytearray(data)
        if self.kind == "bytes" and changed:
            for _ in range(rng.choice([1, 1, 1, 2, 4])):
                changed[rng.randrange(len(changed))] = rng.randrange(256)
        elif self.kind == "truncate" and changed:
            del changed[rng.randrange(len(changed)) :]
        elif self.kind == "insert":
            at = rng.randrange(len(changed) + 1)
            changed[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4)))
        elif self.kind == "sw":
            high = rng.choice([0x61, 0x6C, 0x62, 0x63, 0x69, 0x6A, 0x90, rng.randrange(256)])
            sw = high << 8 | rng.randrange(256)
        return bytes(changed), sw


def mutating(mutations: list[Mutation]) -> Rewrite:
    """A rewrite applying each mutation to the answer it targets."""
    counts: dict[int | None, int] = {}

    def rewrite(command: bytes, data: bytes, sw: int) -> tuple[bytes, int] | None:
        result: tuple[bytes, int] | None = None
        for ins in {None, command[1] if len(command) > 1 else None}:
            counts[ins] = counts.get(ins, 0) + 1
            for mutation in mutations:
                if mutation.only_ins == ins and mutation.target == counts[ins] - 1:
                    result = mutation.apply(*(result or (data, sw)))
        return result

    return rewrite
