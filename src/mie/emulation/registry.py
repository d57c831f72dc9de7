"""The emulated card kinds ``mie emulate`` and ``mie demo`` can build."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mie.core.paths import user_dir
from mie.emulation.base import EmulatedCard
from mie.emulation.cpx import CPE, CPS3, CPS3_CL, CpxProfile, build_chipdoc_card, build_ias_ecc_card
from mie.emulation.desfire import open_badge
from mie.emulation.iso7816 import DEMO_PIN, demo_card
from mie.emulation.testpki import TestPki, parse_identity


def default_pki_dir() -> Path:
    """Where emulators keep the TEST PKI they share (``$MIE_TEST_PKI`` or the user cache)."""
    return user_dir("cache", "testpki", env="MIE_TEST_PKI")


@dataclass(frozen=True)
class CardOptions:
    """What the operator may set on an emulated card.

    :param pin: the cardholder PIN.
    :param serial: the card serial, if the kind has one to set.
    :param identity: ``rpps=…``, ``adeli=…``, ``finess=…/…``, ``siret=…/…`` or ``psi=UUID``.
    :param pki_dir: where the TEST PKI's CAs are kept (created on first use).
    :param state: a DESFire badge's state file (created blank when missing).
    :param uid: a new DESFire badge's 7-byte UID.
    :param product: the DESFire product (``ev3``, ``ev2``, ``ev1``).
    """

    pin: str = DEMO_PIN
    serial: str | None = None
    identity: str | None = None
    pki_dir: Path | None = None
    state: Path | None = None
    uid: bytes | None = None
    product: str = "ev3"

    def pki(self) -> TestPki:
        """The TEST PKI, loaded from (or created in) :attr:`pki_dir`, with fresh CRLs published
        there (``root-*.pem`` are the TEST trust anchors, ``crl-*.der`` the CRLs)."""
        directory = self.pki_dir or default_pki_dir()
        pki = TestPki.load(directory)
        pki.publish_crls(directory)
        return pki


def _iso7816(options: CardOptions) -> EmulatedCard:
    if options.serial is None:
        return demo_card(pin=options.pin)
    return demo_card(serial=options.serial, pin=options.pin)


def _ias_ecc(profile: CpxProfile, card_type: str) -> Callable[[CardOptions], EmulatedCard]:
    def build(options: CardOptions) -> EmulatedCard:
        identity = parse_identity(options.identity, card_type)
        return build_ias_ecc_card(
            profile, identity, options.pki(), pin=options.pin, serial=options.serial or "2800000001"
        )

    return build


def _desfire(options: CardOptions) -> EmulatedCard:
    return open_badge(options.state, uid=options.uid, product=options.product)


def _chipdoc(card_type: str, label: str) -> Callable[[CardOptions], EmulatedCard]:
    def build(options: CardOptions) -> EmulatedCard:
        identity = parse_identity(options.identity, card_type)
        return build_chipdoc_card(
            identity,
            options.pki(),
            pin=options.pin,
            serial=options.serial or "2900000001",
            label=label,
        )

    return build


KINDS: dict[str, Callable[[CardOptions], EmulatedCard]] = {
    "iso7816": _iso7816,
    "cps3": _ias_ecc(CPS3, "CPS"),
    "cps3-cl": _ias_ecc(CPS3_CL, "CPS"),
    "cpe": _ias_ecc(CPE, "CPE"),
    "cps4": _chipdoc("CPS", "CPS4v1"),
    # Inferred: what the PSI card is is not public; mie emulates it as a ChipDoc card.
    "psi": _chipdoc("PSI", "PSIv1"),
    "desfire": _desfire,
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
