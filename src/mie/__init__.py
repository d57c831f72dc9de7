"""mie: authenticate French health professionals with every ANS electronic identification means.

The package is layered (see ``docs/architecture.md``): :mod:`mie.core` holds the APDU and TLV
codecs, the connection interfaces and the APDU processor stack; hardware backends live in
:mod:`mie.transport` and are optional extras; emulated cards live in :mod:`mie.emulation`.

The public names below load on first use, each from its own module, so ``import mie`` loads no
card, trust or ASN.1 code (``tests/unit/test_import_weight.py`` keeps it so).
"""

from __future__ import annotations

# Not ``typing.TYPE_CHECKING``: importing typing alone costs ~10 ms at every start (mypy and ruff
# treat this name the same way).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mie.auth import Authenticator, CpxAuthenticator
    from mie.certcache import CertificateCache
    from mie.errors import ErrorCode
    from mie.evidence import Evidence
    from mie.policy import AssuranceLevel
    from mie.registry import open_authenticator
    from mie.request import AuthRequest, StaticPin, UserVerification
    from mie.result import AuthenticatorInfo, AuthResult, Identification
    from mie.trust.identity import Identity
    from mie.verification import Expected, login, verify_evidence

__version__ = "0.1.0"

# Public name -> the module that defines it (the TYPE_CHECKING imports above list the same).
_EXPORTS = {
    "AssuranceLevel": "mie.policy",
    "AuthRequest": "mie.request",
    "AuthResult": "mie.result",
    "Authenticator": "mie.auth",
    "AuthenticatorInfo": "mie.result",
    "CertificateCache": "mie.certcache",
    "CpxAuthenticator": "mie.auth",
    "ErrorCode": "mie.errors",
    "Evidence": "mie.evidence",
    "Expected": "mie.verification",
    "Identification": "mie.result",
    "Identity": "mie.trust.identity",
    "StaticPin": "mie.request",
    "UserVerification": "mie.request",
    "login": "mie.verification",
    "open_authenticator": "mie.registry",
    "verify_evidence": "mie.verification",
}


def __getattr__(name: str) -> Any:
    # The public names load on first use: ``import mie`` stays cheap, so the ``mie`` command
    # can catch a Ctrl-C during its imports (see mie._cli.__main__).
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mie' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "AssuranceLevel",
    "AuthRequest",
    "AuthResult",
    "Authenticator",
    "AuthenticatorInfo",
    "CertificateCache",
    "CpxAuthenticator",
    "ErrorCode",
    "Evidence",
    "Expected",
    "Identification",
    "Identity",
    "StaticPin",
    "UserVerification",
    "login",
    "open_authenticator",
    "verify_evidence",
]
