"""MIFARE DESFire EV1/EV2/EV3 badges as identification means (issue 9).

The submodules load on demand: ``import mie.desfire.crypto`` needs only :mod:`cryptography`
and :mod:`mie.core.errors`, never the card, trust or ASN.1 code. The names below are imported
from their modules on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mie.core.channel import CommMode
    from mie.desfire.authenticator import DesfireAuthenticator
    from mie.desfire.config import BadgeConfig
    from mie.desfire.evidence import DesfireSessionEvidence
    from mie.desfire.session import DesfireSession
    from mie.desfire.types import AccessRights, FileSettings, KeySettings, KeyType, Version
    from mie.desfire.verify import BadgeVerifier

_EXPORTS = {
    "BadgeConfig": "mie.desfire.config",
    "BadgeVerifier": "mie.desfire.verify",
    "CommMode": "mie.core.channel",
    "DesfireAuthenticator": "mie.desfire.authenticator",
    "DesfireSession": "mie.desfire.session",
    "DesfireSessionEvidence": "mie.desfire.evidence",
    "AccessRights": "mie.desfire.types",
    "FileSettings": "mie.desfire.types",
    "KeySettings": "mie.desfire.types",
    "KeyType": "mie.desfire.types",
    "Version": "mie.desfire.types",
}

__all__ = [
    "AccessRights",
    "BadgeConfig",
    "BadgeVerifier",
    "CommMode",
    "DesfireAuthenticator",
    "DesfireSession",
    "DesfireSessionEvidence",
    "FileSettings",
    "KeySettings",
    "KeyType",
    "Version",
]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mie.desfire' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
