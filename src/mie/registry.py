"""Which authenticator a connection holds: probes tried in order, and the PC/SC entry point.

A probe looks at a connection (the ATR, a DESFire GetVersion, the FIDO applet's SELECT) and
returns the authenticator for it, or ``None`` when the connection holds something else. They are
tried in order: demo, CPx (by ATR), DESFire and FIDO2 (contactless only), so a CPS3-CL card or a
DESFire badge is never sent the FIDO SELECT. :func:`open_authenticator` is what an application
(and the ``mie`` command) calls; no caller dispatches on ATRs itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mie.auth import Authenticator, CpxAuthenticator, SerialBinding
from mie.cards.cpx import detect_family
from mie.cards.demo import DEMO_ATR, DemoAuthenticator
from mie.certcache import CertificateCache
from mie.core.connection import SmartCardConnection, Transport
from mie.core.errors import UnsupportedCardError

if TYPE_CHECKING:
    from mie.desfire.config import BadgeConfig
    from mie.keys.base import KeyProvider

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuthenticatorOptions:
    """How the authenticators a probe builds are set up.

    :param cache: certificates shared across logins (``None``: each authenticator has its own).
    :param serial_binding: where a CPx card's reported serial comes from.
    :param chain_checked: whether results are chain-checked (``login`` with a verifier), so that
        only certificates whose chain verified are taken from the cache.
    :param badge: the configuration a DESFire badge authenticates with (``None``: a badge is
        recognised, and refuses to authenticate).
    :param badge_keys: the key provider a badge authenticates with (``None``: the one
        ``badge`` names, opened for each authentication); it stays the caller's to close.
    :param fido_rp_id: the relying party id a FIDO2 key authenticates for (``None``: the
        host of each request's origin).
    :param fido_credentials: the credential ids a FIDO2 key may use (empty: its discoverable
        credentials).
    :param fido_on_touch: called when a FIDO2 key waits for the user's touch.
    """

    cache: CertificateCache | None = None
    serial_binding: SerialBinding = SerialBinding.CERTIFICATE
    chain_checked: bool = True
    badge: BadgeConfig | None = None
    badge_keys: KeyProvider | None = None
    fido_rp_id: str | None = None
    fido_credentials: tuple[bytes, ...] = ()
    fido_on_touch: Callable[[], None] | None = None


Probe = Callable[[SmartCardConnection, AuthenticatorOptions], Authenticator | None]

_PROBES: dict[str, Probe] = {}
_LOCK = threading.Lock()


def register_probe(name: str, probe: Probe) -> None:
    """Add a probe after the ones registered so far (a name already registered is replaced in
    place, keeping its turn).

    :param name: what the probe recognises, e.g. ``"cpx"``.
    :param probe: returns the authenticator, or ``None`` for a connection it does not know. It
        must send nothing that changes the card's state.
    """
    with _LOCK:
        _PROBES[name] = probe


def probes() -> tuple[str, ...]:
    """:return: the names of the registered probes, in the order they are tried."""
    with _LOCK:
        return tuple(_PROBES)


def authenticator_for(
    connection: SmartCardConnection, options: AuthenticatorOptions | None = None
) -> Authenticator:
    """The authenticator for the card on ``connection``, from the first probe that knows it.

    :param connection: an open connection; the authenticator uses it and closes it when closed.
    :param options: how the authenticator is set up.
    :return: the authenticator.
    :raises UnsupportedCardError: no probe knows the card (the message names the ATR).
    """
    chosen = options if options is not None else AuthenticatorOptions()
    with _LOCK:
        candidates = list(_PROBES.items())
    for name, probe in candidates:
        authenticator = probe(connection, chosen)
        if authenticator is not None:
            logger.debug("Card recognised by probe %s", name)
            return authenticator
    atr = connection.atr
    shown = atr.hex() if atr else "none"
    raise UnsupportedCardError(f"Unsupported card: ATR {shown} is not a known authenticator", atr)


def open_authenticator(
    reader: str | None = None,
    *,
    connection: SmartCardConnection | None = None,
    options: AuthenticatorOptions | None = None,
) -> Authenticator:
    """Connect to the card in a PC/SC reader (or take ``connection``) and return its authenticator.

    :param reader: reader name or a unique part of it; ``None`` takes the first reader with a
        card. Ignored when ``connection`` is given.
    :param connection: a connection opened by the caller; it is not closed on failure (only a
        connection this function opened is).
    :param options: how the authenticator is set up; the chain is checked by the verifier
        (:func:`mie.verification.login`).
    :raises UnsupportedCardError: the card is not a supported authenticator.
    :raises TransportError: no reader, no card, or PC/SC fails.
    """
    owned = connection is None
    if connection is None:
        from mie.transport.pcsc import PcscConnection

        connection = PcscConnection(reader)
    try:
        return authenticator_for(connection, options)
    except BaseException:
        if owned:
            connection.close()
        raise


def _demo_probe(
    connection: SmartCardConnection, options: AuthenticatorOptions
) -> Authenticator | None:
    return DemoAuthenticator(connection) if connection.atr == DEMO_ATR else None


def _cpx_probe(
    connection: SmartCardConnection, options: AuthenticatorOptions
) -> Authenticator | None:
    try:
        detect_family(connection.atr)
    except UnsupportedCardError:
        return None
    return CpxAuthenticator(
        connection,
        cache=options.cache,
        serial_binding=options.serial_binding,
        chain_checked=options.chain_checked,
    )


# GetVersion (native 60, ISO-wrapped): a DESFire badge answers its hardware frame and 91AF.
DESFIRE_GET_VERSION = bytes.fromhex("9060000000")
_DESFIRE_MORE = 0x91AF
_NXP = 0x04
# Hardware types of the DESFire family (native IC, Light, microcontroller, applet...).
DESFIRE_HW_TYPES = frozenset({0x01, 0x08, 0x81, 0x83, 0x91, 0xA1})


def _desfire_probe(
    connection: SmartCardConnection, options: AuthenticatorOptions
) -> Authenticator | None:
    """A contactless card answering GetVersion's first frame as an NXP DESFire does. The
    chain it opens is left pending: the badge's next command aborts it."""
    if connection.transport is not Transport.CONTACTLESS:
        return None
    data, sw = connection.send_and_receive(DESFIRE_GET_VERSION)
    if sw != _DESFIRE_MORE or len(data) != 7 or data[0] != _NXP:
        return None
    if data[1] not in DESFIRE_HW_TYPES:
        return None
    # Loaded only for a badge: the DESFire session code is not needed for a CPx card.
    from mie.desfire.authenticator import DesfireAuthenticator
    from mie.desfire.types import ChipVersion

    return DesfireAuthenticator(
        connection, options.badge, keys=options.badge_keys, version=ChipVersion.parse(data)
    )


# SELECT of the FIDO applet (CTAP 2.1 §11.3.1), Le present.
FIDO_SELECT = bytes.fromhex("00A4040008A0000006472F000100")
_FIDO_VERSIONS = frozenset({b"FIDO_2_0", b"U2F_V2"})


def _fido_probe(
    connection: SmartCardConnection, options: AuthenticatorOptions
) -> Authenticator | None:
    """A contactless card whose FIDO applet answers the SELECT (a security key over NFC).

    :raises UnsupportedCardError: the applet does not speak CTAP2 (a U2F-only key).
    """
    if connection.transport is not Transport.CONTACTLESS:
        return None
    data, sw = connection.send_and_receive(FIDO_SELECT)
    if sw >> 8 == 0x61:  # the answer waits for GET RESPONSE (T=0 style), as python-fido2 reads it
        data, sw = connection.send_and_receive(bytes([0x00, 0xC0, 0x00, 0x00, sw & 0xFF]))
    if sw != 0x9000 or data not in _FIDO_VERSIONS:
        return None
    # Loaded only for a key: python-fido2 (the fido extra) is not needed for a card.
    from mie.fido.authenticator import Fido2Authenticator
    from mie.fido.errors import CtapStatusError
    from mie.transport.ctap import SmartCardCtapDevice

    name = getattr(connection, "reader", "") or "contactless FIDO key"
    try:
        device = SmartCardCtapDevice(connection, name=name)
    except CtapStatusError as e:
        raise UnsupportedCardError(
            f"A FIDO key that does not speak CTAP2 ({data.decode('ascii')})", connection.atr
        ) from e
    return Fido2Authenticator(
        device,
        rp_id=options.fido_rp_id,
        credentials=options.fido_credentials,
        transport=Transport.CONTACTLESS,
        atr=connection.atr,
        on_touch=options.fido_on_touch,
    )


register_probe("demo", _demo_probe)
register_probe("cpx", _cpx_probe)
register_probe("desfire", _desfire_probe)
register_probe("fido", _fido_probe)
