"""The emulated card kinds ``mie emulate`` and ``mie demo`` can build."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mie.emulation.base import EmulatedCard
from mie.emulation.iso7816 import DEMO_PIN, demo_card


@dataclass(frozen=True)
class CardOptions:
    """What the operator may set on an emulated card.

    :param pin: the cardholder PIN.
    :param serial: the card serial, if the kind has one to set.
    """

    pin: str = DEMO_PIN
    serial: str | None = None


def _iso7816(options: CardOptions) -> EmulatedCard:
    if options.serial is None:
        return demo_card(pin=options.pin)
    return demo_card(serial=options.serial, pin=options.pin)


KINDS: dict[str, Callable[[CardOptions], EmulatedCard]] = {
    "iso7816": _iso7816,
}


def build_card(kind: str, options: CardOptions | None = None) -> EmulatedCard:
    """Build an emulated card.

    :param kind: one of :data:`KINDS`.
    :param options: PIN and identity settings.
    :return: a powered-on card.
    :raises ValueError: unknown kind.
    """
    factory = KINDS.get(kind)
    if factory is None:
        raise ValueError(f"Unknown card kind {kind!r} (known: {', '.join(sorted(KINDS))})")
    return factory(options or CardOptions())
