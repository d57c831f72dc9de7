"""Card application sessions. Each is a ``<Name>Session`` built on a
:class:`~mie.core.SmartCardConnection`."""

from __future__ import annotations

from mie.cards.iso7816 import Iso7816Session, PinStatus

__all__ = ["Iso7816Session", "PinStatus"]
