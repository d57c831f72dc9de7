"""mie: authenticate French health professionals with every ANS electronic identification means.

The package is layered (see ``docs/architecture.md``): :mod:`mie.core` holds the APDU and TLV
codecs, the :class:`~mie.core.SmartCardConnection` interface and the APDU processor stack;
hardware backends live in :mod:`mie.transport` and are optional extras; emulated cards live in
:mod:`mie.emulation`.
"""

from __future__ import annotations

# Not ``typing.TYPE_CHECKING``: importing typing alone costs ~10 ms at every start (mypy and ruff
# treat this name the same way).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mie.auth import (
        Authenticator,
        AuthResult,
        CertificateCache,
        CpxAuthenticator,
        Evidence,
        open_authenticator,
    )

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The public names load on first use: ``import mie`` stays cheap, so the ``mie`` command
    # can catch a Ctrl-C during its imports (see mie._cli.__main__).
    if name in __all__:
        import mie.auth

        return getattr(mie.auth, name)
    raise AttributeError(f"module 'mie' has no attribute {name!r}")


__all__ = [
    "AuthResult",
    "Authenticator",
    "CertificateCache",
    "CpxAuthenticator",
    "Evidence",
    "open_authenticator",
]
