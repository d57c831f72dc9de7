"""Emulated cards and the hosts that present them to clients.

Emulators are product code: ``mie demo`` and CI run on them, and independent clients (pcscd,
OpenSC) must accept them. A card is any :class:`EmulatedCard`; :class:`VpcdHost` puts one into pcscd
through vsmartcard's vpcd driver, :class:`EmulatedConnection` hands one to :mod:`mie` in process.
"""

from __future__ import annotations

from mie.emulation.base import EmulatedCard, EmulatedConnection
from mie.emulation.iso7816 import DF, EF, Iso7816Card, demo_card
from mie.emulation.vpcd import VPCD_PORT, VpcdHost

__all__ = [
    "DF",
    "EF",
    "VPCD_PORT",
    "EmulatedCard",
    "EmulatedConnection",
    "Iso7816Card",
    "VpcdHost",
    "demo_card",
]
