"""The emulated card kinds ``mie emulate`` and ``mie demo`` can build."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mie.core.paths import user_dir
from mie.emulation.base import EmulatedCard
from mie.emulation.cpx import CPE, CPS3, CPS3_CL, CpxProfile, build_chipdoc_card, build_ias_ecc_card
from mie.emulation.desfire import open_badge
from mie.emulation.iso7816 import DEMO_PIN, demo_card
from mie.emulation.testpki import TestPki, parse_identity

if TYPE_CHECKING:
    from mie.emulation.ctap2 import EmulatedAuthenticator


def default_pki_dir() -> Path:
    """Where emulators keep the TEST PKI they share (``$MIE_TEST_PKI`` or the user cache)."""
    return user_dir("cache", "testpki", env="MIE_TEST_PKI")


@dataclass(frozen=True)
class FidoKeyOptions:
    """What the operator may set on an emulated FIDO2 key (``mie emulate fido2``).

    :param pin: the key's PIN (``None``: no PIN set, or the state file's).
    :param attestation: ``packed`` (TEST batch key), ``self`` or ``none``.
    :param counter: ``per-credential``, ``global`` or ``zero``.
    :param algorithms: the COSE algorithms offered, by preference.
    :param backup_eligible: set the BE flag (a syncable credential).
    :param touch: seconds before the emulated user touches (0: at once), ``None`` never.
    :param transports: getInfo's transports (``nfc`` on vpcd, ``usb`` on a HID socket).
    :param fail_after: test fault: answer this many APDUs, then leave the field (vpcd).
    :param select_version: the applet's SELECT answer on vpcd, ``FIDO_2_0`` or ``U2F_V2`` (a
        dual-protocol key, as most real NFC keys).
    """

    pin: str | None = field(default=None, repr=False)
    attestation: str = "packed"
    counter: str = "per-credential"
    algorithms: tuple[int, ...] = (-7, -8)
    backup_eligible: bool = False
    touch: float | None = 0.0
    transports: tuple[str, ...] = ("nfc",)
    fail_after: int | None = None
    select_version: str = "FIDO_2_0"


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
    :param fido: a FIDO2 key's settings (its state file is :attr:`state`, its attestation
        PKI in :attr:`pki_dir`).
    """

    pin: str = DEMO_PIN
    serial: str | None = None
    identity: str | None = None
    pki_dir: Path | None = None
    state: Path | None = None
    uid: bytes | None = None
    product: str = "ev3"
    fido: FidoKeyOptions | None = None

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


def build_fido_key(options: CardOptions) -> EmulatedAuthenticator:
    """The CTAP engine of an emulated FIDO2 key, its attestation PKI loaded from (or created
    in) :attr:`CardOptions.pki_dir` (``fido-attestation-root.pem`` is the TEST root).

    :raises ValueError: an option out of range, or one the state file contradicts.
    :raises JsonFormatError: the state file is not a ``mie-fido-state/1`` document.
    :raises OSError: the state file or the PKI directory cannot be written.
    """
    from mie.emulation.ctap2 import EmulatedAuthenticator, Touch
    from mie.emulation.fido_pki import TestAttestationPki

    key = options.fido or FidoKeyOptions()
    touch = Touch.never() if key.touch is None else Touch.after(key.touch)
    return EmulatedAuthenticator(
        key.pin,
        attestation=key.attestation,  # type: ignore[arg-type]  # checked by the engine
        counter=key.counter,  # type: ignore[arg-type]
        algorithms=key.algorithms,
        backup_eligible=key.backup_eligible,
        touch=touch,
        pki=TestAttestationPki.load(options.pki_dir or default_pki_dir()),
        transports=key.transports,
        state=options.state,
    )


def _fido2(options: CardOptions) -> EmulatedCard:
    from mie.emulation.fido_applet import EmulatedFidoApplet

    key = options.fido or FidoKeyOptions()
    return EmulatedFidoApplet(
        build_fido_key(options),
        fail_after=key.fail_after,
        select_version=key.select_version.encode("ascii"),
    )


KINDS: dict[str, Callable[[CardOptions], EmulatedCard]] = {
    "iso7816": _iso7816,
    "cps3": _ias_ecc(CPS3, "CPS"),
    "cps3-cl": _ias_ecc(CPS3_CL, "CPS"),
    "cpe": _ias_ecc(CPE, "CPE"),
    "cps4": _chipdoc("CPS", "CPS4v1"),
    # Inferred: what the PSI card is is not public; mie emulates it as a ChipDoc card.
    "psi": _chipdoc("PSI", "PSIv1"),
    "desfire": _desfire,
    "fido2": _fido2,
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
