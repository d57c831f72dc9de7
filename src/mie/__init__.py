"""mie: authenticate French health professionals with every ANS electronic identification means.

The package is layered (see ``docs/architecture.md``): :mod:`mie.core` holds the APDU and TLV
codecs, the :class:`~mie.core.SmartCardConnection` interface and the APDU processor stack;
hardware backends live in :mod:`mie.transport` and are optional extras; emulated cards live in
:mod:`mie.emulation`.
"""

from __future__ import annotations

from mie.auth import (
    Authenticator,
    AuthResult,
    CertificateCache,
    CpxAuthenticator,
    Evidence,
    open_authenticator,
)

__version__ = "0.1.0"

__all__ = [
    "AuthResult",
    "Authenticator",
    "CertificateCache",
    "CpxAuthenticator",
    "Evidence",
    "open_authenticator",
]
